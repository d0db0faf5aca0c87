//! Collecting the same figure over several runs and printing medians.

use std::collections::BTreeMap;

/// Figures by name, one value per run, in the order they were first recorded.
#[derive(Debug, Default)]
pub struct Report {
    order: Vec<String>,
    values: BTreeMap<String, (Vec<f64>, String)>,
}

impl Report {
    pub fn record(&mut self, name: &str, unit: &str, value: f64) {
        if !self.values.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.values.entry(name.to_string()).or_insert_with(|| (Vec::new(), unit.to_string())).0.push(value);
    }

    pub fn median(&self, name: &str) -> Option<f64> {
        self.values.get(name).map(|(v, _)| median(v))
    }

    /// A Markdown table: figure, median, min, max, runs.
    pub fn table(&self) -> String {
        let mut out = String::from("| figure | median | min | max | runs |\n|---|---:|---:|---:|---:|\n");
        for name in &self.order {
            let (v, unit) = &self.values[name];
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            out.push_str(&format!("| {name} | {} {unit} | {} | {} | {} |\n", fmt(median(v)), fmt(min), fmt(max), v.len()));
        }
        out
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Three significant figures, with thousands separators for big numbers.
pub fn fmt(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x.abs() >= 1000.0 {
        let r = x.round() as i64;
        let s = r.abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if r < 0 { format!("-{out}") } else { out }
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_formatting() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(fmt(1234567.4), "1,234,567");
        assert_eq!(fmt(12.345), "12.3");
        let mut r = Report::default();
        r.record("x", "ops/s", 1.0);
        r.record("x", "ops/s", 3.0);
        r.record("x", "ops/s", 2.0);
        assert!(r.table().contains("| x | 2.00 ops/s | 1.00 | 3.00 | 3 |"), "{}", r.table());
    }
}
