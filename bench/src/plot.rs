//! `stratos bench plot FILE.json… -o OUT.svg|png`: draws what the load generators wrote with
//! `--json` (no external tool): on top, ops per second over time, one line per file; below,
//! latency against throughput, p50 and p99 (log scale), one curve per series, a series being the
//! files that share a label (`--label`, else the generator's name without its `--rate`), its
//! points sorted by throughput. Runs of one generator at several `--rate`s thus draw the
//! latency-vs-throughput curve; a closed-loop run adds its saturation point.
//!
//! Text needs a TrueType font: plotters draws with ab_glyph (pure Rust, no fontconfig), given
//! the bytes of the font found by [`find_font`].

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One `--json` file's figures, as far as the plot needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFile {
    pub file: String,
    /// The series it belongs to.
    pub label: String,
    pub ops_per_second: f64,
    pub unit: String,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Ops completed in each whole second of the run.
    pub timeline: Vec<f64>,
}

/// Reads a `--json` file; an error names the file and what is missing.
pub fn load(path: &Path) -> anyhow::Result<RunFile> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))?;
    let field = |k: &str| v.get(k).ok_or_else(|| anyhow!("{}: no \"{k}\" (not a file from `stratos bench … --json`?)", path.display()));
    let name = field("name")?.as_str().unwrap_or_default().to_string();
    let label = match v.get("label").and_then(|l| l.as_str()) {
        Some(l) if !l.is_empty() => l.to_string(),
        _ => series_label(&name),
    };
    let num = |x: &serde_json::Value| x.as_f64().ok_or_else(|| anyhow!("{}: a number was expected", path.display()));
    let seconds = num(field("seconds")?)?;
    let lat = field("latencyMicros")?;
    let mut timeline = field("opsPerSecondOverTime")?.as_array().ok_or_else(|| anyhow!("{}: opsPerSecondOverTime is not a list", path.display()))?.iter().map(num).collect::<anyhow::Result<Vec<f64>>>()?;
    // The last second is partial (the run ended inside it): keep the seconds the run covered
    // at least 90% of, rather than draw a dip.
    timeline.truncate(((seconds + 0.1).floor() as usize).max(1));
    Ok(RunFile {
        file: path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned()),
        label,
        ops_per_second: num(field("opsPerSecond")?)?,
        unit: v.get("unit").and_then(|u| u.as_str()).unwrap_or("ops").to_string(),
        p50_us: num(lat.get("p50").unwrap_or(&serde_json::Value::Null))?,
        p99_us: num(lat.get("p99").unwrap_or(&serde_json::Value::Null))?,
        timeline,
    })
}

/// The series a run belongs to when it was given no `--label`: its generator's name without
/// the rate, so "omkg --rate 20000" and "omkg" runs are one curve. The generators write it
/// into their JSON; files without one get it here.
pub fn series_label(name: &str) -> String {
    name.split(" --rate").next().unwrap_or_default().to_string()
}

/// The font plot text is drawn with: `$STRATOS_FONT`, else the first of the usual sans-serif
/// TrueType files of Linux distributions, else any `.ttf` under /usr/share/fonts.
pub fn find_font() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("STRATOS_FONT") {
        return Ok(PathBuf::from(p));
    }
    const KNOWN: [&str; 8] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
        "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    ];
    if let Some(p) = KNOWN.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Ok(p);
    }
    let mut dirs = vec![PathBuf::from("/usr/share/fonts")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("ttf")) {
                return Ok(p);
            }
        }
    }
    bail!("no TrueType font found to draw the plot's text: install one (Debian: apt-get install fonts-dejavu-core) or name a .ttf file in STRATOS_FONT")
}

fn register_font() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let path = find_font().map_err(|e| e.to_string())?;
        let bytes = std::fs::read(&path).map_err(|e| format!("reading the font {}: {e}", path.display()))?;
        // plotters keeps fonts for the life of the process; so does this one registration.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| format!("{} is not a TrueType/OpenType font plotters can read", path.display()))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Plot width and height in pixels.
pub const SIZE: (u32, u32) = (1100, 900);

/// Draws `inputs` into `out`: SVG or PNG by its extension.
pub fn plot(inputs: &[PathBuf], out: &Path) -> anyhow::Result<()> {
    if inputs.is_empty() {
        bail!("no input files: give the JSON files that `stratos bench … --json FILE` wrote");
    }
    let runs = inputs.iter().map(|p| load(p)).collect::<anyhow::Result<Vec<_>>>()?;
    register_font()?;
    let ext = out.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("svg") => {
            let root = SVGBackend::new(out, SIZE).into_drawing_area();
            draw(&root, &runs)?;
            root.present().map_err(|e| anyhow!("writing {}: {e}", out.display()))
        }
        Some("png") => {
            let mut rgb = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
                draw(&root, &runs)?;
                root.present().map_err(|e| anyhow!("drawing: {e}"))?;
            }
            write_png(out, &rgb)
        }
        _ => bail!("{}: the output must end in .svg or .png", out.display()),
    }
}

fn write_png(out: &Path, rgb: &[u8]) -> anyhow::Result<()> {
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().with_context(|| format!("writing {}", out.display()))?;
    w.write_image_data(rgb).with_context(|| format!("writing {}", out.display()))?;
    w.finish().with_context(|| format!("writing {}", out.display()))
}

/// The figure: throughput over time on top, latency against throughput below.
fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, runs: &[RunFile]) -> anyhow::Result<()> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing: {e}");
    root.fill(&WHITE).map_err(e)?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2);
    let unit = runs.first().map_or("ops", |r| r.unit.as_str());

    // Throughput over time: one line per file.
    let secs = runs.iter().map(|r| r.timeline.len()).max().unwrap_or(1).max(1) as f64;
    let peak = runs.iter().flat_map(|r| r.timeline.iter().copied()).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&top)
        .caption(format!("throughput over time ({unit}/s)"), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..secs, 0f64..peak * 1.1)
        .map_err(e)?;
    chart.configure_mesh().x_desc("seconds since the start").y_desc(format!("{unit}/s")).y_label_formatter(&|v| si(*v)).draw().map_err(e)?;
    for (i, r) in runs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(r.timeline.iter().enumerate().map(|(s, v)| (s as f64 + 0.5, *v)), color.stroke_width(2)))
            .map_err(e)?
            .label(format!("{} ({})", r.file, r.label))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).position(SeriesLabelPosition::LowerRight).draw().map_err(e)?;

    // Latency against throughput: per series, p50 (circles) and p99 (triangles).
    let mut labels: Vec<&str> = Vec::new();
    for r in runs {
        if !labels.contains(&r.label.as_str()) {
            labels.push(&r.label);
        }
    }
    let max_x = runs.iter().map(|r| r.ops_per_second).fold(1.0, f64::max) * 1.1;
    let lo = runs.iter().map(|r| r.p50_us.min(r.p99_us)).fold(f64::INFINITY, f64::min).max(1.0) / 2.0;
    let hi = runs.iter().map(|r| r.p99_us.max(r.p50_us)).fold(1.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("latency per call against throughput (p50 ●, p99 ▲)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..max_x, (lo..hi).log_scale())
        .map_err(e)?;
    chart.configure_mesh().x_desc(format!("{unit}/s")).y_desc("µs").x_label_formatter(&|v| si(*v)).y_label_formatter(&|v| si(*v)).draw().map_err(e)?;
    for (i, label) in labels.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut pts: Vec<&RunFile> = runs.iter().filter(|r| r.label == *label).collect();
        pts.sort_by(|a, b| a.ops_per_second.total_cmp(&b.ops_per_second));
        let p50: Vec<(f64, f64)> = pts.iter().map(|r| (r.ops_per_second, r.p50_us.max(1.0))).collect();
        let p99: Vec<(f64, f64)> = pts.iter().map(|r| (r.ops_per_second, r.p99_us.max(1.0))).collect();
        chart
            .draw_series(LineSeries::new(p50.clone(), color.stroke_width(2)))
            .map_err(e)?
            .label(label.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(p50.iter().map(|p| Circle::new(*p, 4, color.filled()))).map_err(e)?;
        chart.draw_series(LineSeries::new(p99.clone(), color.stroke_width(1))).map_err(e)?;
        chart.draw_series(p99.iter().map(|p| TriangleMarker::new(*p, 5, color.filled()))).map_err(e)?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).position(SeriesLabelPosition::UpperLeft).draw().map_err(e)?;
    Ok(())
}

/// 1234567 → "1.23M", 45000 → "45k": axis labels that stay short.
fn si(v: f64) -> String {
    let short = |x: f64, suffix: &str| {
        let s = format!("{x:.2}");
        format!("{}{suffix}", s.trim_end_matches('0').trim_end_matches('.'))
    };
    match v.abs() {
        a if a >= 1e6 => short(v / 1e6, "M"),
        a if a >= 1e3 => short(v / 1e3, "k"),
        _ => format!("{v:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_run(dir: &Path, file: &str, name: &str, ops: f64, p50: u64, p99: u64, timeline: &[u64]) -> PathBuf {
        let v = serde_json::json!({
            "name": name, "unit": "keys", "ops": 1, "seconds": timeline.len() as f64 + 0.3, "opsPerSecond": ops,
            "latencyMicros": {"p50": p50, "p90": p50, "p99": p99, "p999": p99, "max": p99, "count": 1},
            "opsPerSecondOverTime": timeline,
        });
        let p = dir.join(file);
        std::fs::write(&p, serde_json::to_vec(&v).expect("json")).expect("write");
        p
    }

    #[test]
    fn loads_series_and_drops_the_partial_last_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write_run(dir.path(), "a.json", "omkg --rate 20000", 19_800.0, 900, 4_000, &[19_000, 20_000, 6_000]);
        let r = load(&p).expect("load");
        assert_eq!(r.label, "omkg");
        assert_eq!(r.file, "a");
        // seconds = 3.3: three whole seconds are kept.
        assert_eq!(r.timeline, vec![19_000.0, 20_000.0, 6_000.0]);
        // A run timed a hair short of 3 s still covered its third second.
        let v = serde_json::json!({"name": "x", "seconds": 2.998, "opsPerSecond": 1.0, "latencyMicros": {"p50": 1, "p99": 2}, "opsPerSecondOverTime": [1, 2, 3]});
        std::fs::write(&p, v.to_string()).expect("write");
        assert_eq!(load(&p).expect("load").timeline.len(), 3);
        let v = serde_json::json!({"name": "x", "seconds": 2.5, "opsPerSecond": 1.0, "latencyMicros": {"p50": 1, "p99": 2}, "opsPerSecondOverTime": [1, 2, 3]});
        std::fs::write(&p, v.to_string()).expect("write");
        assert_eq!(load(&p).expect("load").timeline.len(), 2);
        std::fs::write(&p, "{\"name\": \"x\"}").expect("write");
        let err = load(&p).expect_err("missing fields").to_string();
        assert!(err.contains("a.json") && err.contains("seconds"), "{err}");
    }

    #[test]
    fn draws_svg_and_png_with_every_series_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = vec![
            write_run(dir.path(), "r10k.json", "omkg --rate 10000", 9_990.0, 700, 2_000, &[9_900, 10_000, 10_050]),
            write_run(dir.path(), "r40k.json", "omkg --rate 40000", 39_000.0, 1_500, 9_000, &[38_000, 40_000, 39_000]),
            write_run(dir.path(), "etcd.json", "omkg (etcd)", 1_400.0, 40_000, 90_000, &[1_300, 1_500, 1_400]),
        ];
        let svg = dir.path().join("out.svg");
        plot(&files, &svg).expect("svg plot");
        let text = std::fs::read_to_string(&svg).expect("read svg");
        for want in ["throughput over time", "r10k (omkg)", "r40k (omkg)", "etcd (omkg (etcd))", "latency per call"] {
            assert!(text.contains(want), "{want} missing from the SVG");
        }
        let png = dir.path().join("out.png");
        plot(&files, &png).expect("png plot");
        let bytes = std::fs::read(&png).expect("read png");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let dec = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("png header");
        assert_eq!((dec.info().width, dec.info().height), SIZE);
        let err = plot(&files, &dir.path().join("out.gif")).expect_err("gif is refused").to_string();
        assert!(err.contains(".svg or .png"), "{err}");
    }

    #[test]
    fn short_axis_labels() {
        assert_eq!(si(45_000.0), "45k");
        assert_eq!(si(1_250.0), "1.25k");
        assert_eq!(si(2_000_000.0), "2M");
        assert_eq!(si(512.0), "512");
    }
}
