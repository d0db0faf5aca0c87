//! The gateway's counters, served as Prometheus text on its status port (`--http-address`,
//! Ozone's s3g webadmin port, 19878): requests by method and status class, their time to the
//! answer's head, client connections, and the OM lookups that GETs and HEADs shared (their
//! batching, [`crate::lookups`], seen from the gateway).
//!
//! Each executor counts into its own [`CoreMetrics`], which only that executor writes: a
//! relaxed load and store per count, no locked instruction and no cache line shared between
//! cores on the request path. The status port (on executor 0) sums every core's at each scrape;
//! a scrape may see one core's counts a request apart from another's, never a count going back.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stratos_common::status_http::family;

/// The methods requests are counted by (anything else counts as `other`).
pub const METHODS: [&str; 7] = ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "other"];
/// Status classes: 1xx and 2xx count as `2xx` (an answer's final status is never 1xx).
pub const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];
/// Upper bounds of the request-time histogram's buckets, in seconds (then +Inf).
pub const BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

/// One executor's counts (a cache line or more of its own).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CoreMetrics {
    requests: [[AtomicU64; CLASSES.len()]; METHODS.len()],
    /// Requests by the first bucket their time fits (the last: over every bound).
    time: [AtomicU64; BUCKETS.len() + 1],
    time_sum_us: AtomicU64,
    connections_accepted: AtomicU64,
    connections_closed: AtomicU64,
    tls_handshake_failures: AtomicU64,
    lookup_calls: AtomicU64,
    lookup_keys: AtomicU64,
}

/// Adds `n` to a counter only this executor writes.
fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl CoreMetrics {
    /// A request answered with `status`, its answer's head ready `took` after its head came.
    pub fn request(&self, method: &str, status: u16, took: Duration) {
        let m = METHODS.iter().position(|x| *x == method).unwrap_or(METHODS.len() - 1);
        let class = match status {
            0..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        add(&self.requests[m][class], 1);
        let secs = took.as_secs_f64();
        let bucket = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        add(&self.time[bucket], 1);
        add(&self.time_sum_us, took.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    pub fn connection_accepted(&self) {
        add(&self.connections_accepted, 1);
    }

    pub fn connection_closed(&self) {
        add(&self.connections_closed, 1);
    }

    pub fn tls_handshake_failed(&self) {
        add(&self.tls_handshake_failures, 1);
    }

    /// One call to the OM that looked up `keys` keys for GETs and HEADs.
    pub fn lookup_call(&self, keys: u64) {
        add(&self.lookup_calls, 1);
        add(&self.lookup_keys, keys);
    }

    /// Lookup calls sent so far, and the keys they carried.
    pub fn lookups(&self) -> (u64, u64) {
        (get(&self.lookup_calls), get(&self.lookup_keys))
    }
}

/// Every executor's counts.
#[derive(Debug)]
pub struct Metrics {
    cores: Vec<Arc<CoreMetrics>>,
}

impl Metrics {
    pub fn new(cores: usize) -> Arc<Metrics> {
        Arc::new(Metrics { cores: (0..cores.max(1)).map(|_| Arc::default()).collect() })
    }

    /// Executor `i`'s counts.
    pub fn core(&self, i: usize) -> Arc<CoreMetrics> {
        self.cores[i % self.cores.len()].clone()
    }

    fn sum(&self, f: impl Fn(&CoreMetrics) -> &AtomicU64) -> u64 {
        self.cores.iter().map(|c| get(f(c))).fold(0, u64::wrapping_add)
    }

    /// The counts of every executor together, as Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        family(&mut out, "stratos_s3g_requests_total", "counter", "S3 requests answered, by method and status class.");
        for (m, method) in METHODS.iter().enumerate() {
            for (k, class) in CLASSES.iter().enumerate() {
                let _ = writeln!(out, "stratos_s3g_requests_total{{method=\"{method}\",code=\"{class}\"}} {}", self.sum(|c| &c.requests[m][k]));
            }
        }
        family(&mut out, "stratos_s3g_request_seconds", "histogram", "Time from a request's head to its answer's head (a body streams after it).");
        let mut cumulative = 0u64;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.sum(|c| &c.time[i]);
            let _ = writeln!(out, "stratos_s3g_request_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.sum(|c| &c.time[BUCKETS.len()]);
        let _ = writeln!(out, "stratos_s3g_request_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "stratos_s3g_request_seconds_sum {}", self.sum(|c| &c.time_sum_us) as f64 / 1e6);
        let _ = writeln!(out, "stratos_s3g_request_seconds_count {cumulative}");
        let accepted = self.sum(|c| &c.connections_accepted);
        let closed = self.sum(|c| &c.connections_closed);
        let (calls, keys) = (self.sum(|c| &c.lookup_calls), self.sum(|c| &c.lookup_keys));
        let singles: [(&str, &str, &str, u64); 6] = [
            ("stratos_s3g_connections_accepted_total", "counter", "Client connections accepted.", accepted),
            ("stratos_s3g_connections_open", "gauge", "Client connections open now.", accepted.saturating_sub(closed)),
            ("stratos_s3g_tls_handshake_failures_total", "counter", "Client connections closed because their TLS handshake failed or took too long.", self.sum(|c| &c.tls_handshake_failures)),
            ("stratos_s3g_om_lookup_calls_total", "counter", "Calls to the OM that looked up objects for GETs and HEADs (gathered: see docs/s3.md).", calls),
            ("stratos_s3g_om_lookups_total", "counter", "Objects those calls looked up (lookups per call: the batching achieved).", keys),
            ("stratos_s3g_executors", "gauge", "The gateway's executors (one per core).", self.cores.len() as u64),
        ];
        for (name, kind, help, value) in singles {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> u64 {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or_else(|| panic!("no {series} in {text}"))
    }

    #[test]
    fn every_core_s_counts_add_up_and_the_histogram_is_cumulative() {
        let m = Metrics::new(2);
        let (a, b) = (m.core(0), m.core(1));
        a.request("GET", 200, Duration::from_micros(300));
        b.request("GET", 206, Duration::from_millis(3));
        b.request("PUT", 403, Duration::from_secs(9));
        a.request("PATCH", 501, Duration::from_millis(1));
        a.connection_accepted();
        b.connection_accepted();
        b.connection_closed();
        a.lookup_call(3);
        b.lookup_call(1);
        let t = m.render();
        assert_eq!(value(&t, "stratos_s3g_requests_total{method=\"GET\",code=\"2xx\"}"), 2);
        assert_eq!(value(&t, "stratos_s3g_requests_total{method=\"PUT\",code=\"4xx\"}"), 1);
        assert_eq!(value(&t, "stratos_s3g_requests_total{method=\"other\",code=\"5xx\"}"), 1, "an unknown method counts as other");
        assert_eq!(value(&t, "stratos_s3g_request_seconds_bucket{le=\"0.0005\"}"), 1);
        assert_eq!(value(&t, "stratos_s3g_request_seconds_bucket{le=\"0.001\"}"), 2, "cumulative");
        assert_eq!(value(&t, "stratos_s3g_request_seconds_bucket{le=\"0.005\"}"), 3);
        assert_eq!(value(&t, "stratos_s3g_request_seconds_bucket{le=\"2.5\"}"), 3);
        assert_eq!(value(&t, "stratos_s3g_request_seconds_bucket{le=\"+Inf\"}"), 4, "over every bound");
        assert_eq!(value(&t, "stratos_s3g_request_seconds_count"), 4);
        assert_eq!(value(&t, "stratos_s3g_connections_accepted_total"), 2);
        assert_eq!(value(&t, "stratos_s3g_connections_open"), 1);
        assert_eq!(value(&t, "stratos_s3g_om_lookup_calls_total"), 2);
        assert_eq!(value(&t, "stratos_s3g_om_lookups_total"), 4);
        assert!(t.contains("stratos_s3g_request_seconds_sum 9.0043\n"), "{t}");
    }
}
