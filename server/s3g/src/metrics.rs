//! The gateway's counters, served as Prometheus text on its status port (`--http-address`,
//! Ozone's s3g webadmin port, 19878): requests by method and status class, and by S3 operation
//! (`GetObject`, `PutObject`, `ListObjectsV2`, …: what Ozone's S3GatewayMetrics counts per
//! operation) with their time to the answer's head, client connections, and the OM lookups that
//! GETs and HEADs shared (their batching, [`crate::lookups`], seen from the gateway).
//!
//! Each executor counts into its own [`CoreMetrics`], which only that executor writes: a
//! relaxed load and store per count, no locked instruction and no cache line shared between
//! cores on the request path. The status port (on executor 0) sums every core's at each scrape;
//! a scrape may see one core's counts a request apart from another's, never a count going back.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stratos_common::status_http::{family, single};

/// The methods requests are counted by (anything else counts as `other`).
pub const METHODS: [&str; 7] = ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "other"];
/// Status classes: 1xx and 2xx count as `2xx` (an answer's final status is never 1xx).
pub const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];
/// Upper bounds of the request-time histogram's buckets, in seconds (then +Inf).
pub const BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

/// The S3 operations requests are counted by, with AWS's API names; a request of no known
/// shape (a sub-resource this gateway refuses, say) counts as `Other`, the last.
pub const OPERATIONS: [&str; 62] = [
    // The most frequent first: the name is looked up in this list once per request.
    "GetObject", "HeadObject", "PutObject", "ListBuckets", "CreateBucket", "HeadBucket", "DeleteBucket", "ListObjects", "ListObjectsV2", "ListObjectVersions",
    "ListMultipartUploads", "GetBucketLocation", "DeleteObjects", "PostObject", "PreflightRequest", "GetBucketAcl", "PutBucketAcl",
    "GetBucketCors", "PutBucketCors", "DeleteBucketCors", "GetBucketTagging", "PutBucketTagging", "DeleteBucketTagging",
    "GetBucketEncryption", "PutBucketEncryption", "DeleteBucketEncryption", "GetBucketPolicyStatus", "GetBucketPolicy",
    "PutBucketPolicy", "DeleteBucketPolicy", "GetBucketVersioning", "PutBucketVersioning", "GetBucketLifecycleConfiguration",
    "PutBucketLifecycleConfiguration", "DeleteBucketLifecycle", "GetBucketWebsite", "PutBucketWebsite", "DeleteBucketWebsite",
    "GetObjectLockConfiguration", "PutObjectLockConfiguration", "GetPublicAccessBlock", "PutPublicAccessBlock",
    "DeletePublicAccessBlock", "GetBucketOwnershipControls", "PutBucketOwnershipControls", "DeleteBucketOwnershipControls",
    "GetBucketLogging", "PutBucketLogging", "CopyObject", "DeleteObject",
    "GetObjectTagging", "PutObjectTagging", "DeleteObjectTagging", "GetObjectAcl", "PutObjectAcl", "GetObjectAttributes",
    "CreateMultipartUpload", "UploadPart", "UploadPartCopy", "CompleteMultipartUpload", "AbortMultipartUpload", "ListParts",
];

/// A bucket's sub-resources (the query parameter that names one) and the operations that GET,
/// PUT and DELETE it are, where they exist.
const BUCKET_SUBRESOURCES: [(&str, &str, &str, &str); 15] = [
    ("acl", "GetBucketAcl", "PutBucketAcl", ""),
    ("cors", "GetBucketCors", "PutBucketCors", "DeleteBucketCors"),
    ("tagging", "GetBucketTagging", "PutBucketTagging", "DeleteBucketTagging"),
    ("encryption", "GetBucketEncryption", "PutBucketEncryption", "DeleteBucketEncryption"),
    ("policyStatus", "GetBucketPolicyStatus", "", ""),
    ("policy", "GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"),
    ("location", "GetBucketLocation", "", ""),
    ("versioning", "GetBucketVersioning", "PutBucketVersioning", ""),
    ("uploads", "ListMultipartUploads", "", ""),
    ("versions", "ListObjectVersions", "", ""),
    ("lifecycle", "GetBucketLifecycleConfiguration", "PutBucketLifecycleConfiguration", "DeleteBucketLifecycle"),
    ("website", "GetBucketWebsite", "PutBucketWebsite", "DeleteBucketWebsite"),
    ("object-lock", "GetObjectLockConfiguration", "PutObjectLockConfiguration", ""),
    ("publicAccessBlock", "GetPublicAccessBlock", "PutPublicAccessBlock", "DeletePublicAccessBlock"),
    ("ownershipControls", "GetBucketOwnershipControls", "PutBucketOwnershipControls", "DeleteBucketOwnershipControls"),
];

/// What a request is, by its shape alone (before it is authenticated, so that refused ones
/// count too): its method, whether it names a bucket and a key, its raw query's parameter
/// names, an `x-amz-copy-source` header, a form upload's content type. An index into
/// [`OPERATIONS`] (`OPERATIONS.len()` for `Other`).
pub fn operation(method: &str, bucket: bool, key: bool, raw_query: &str, copy_source: bool, form: bool) -> usize {
    // A parameter named `q`, with or without a value (most requests have no query at all).
    let has = |q: &str| !raw_query.is_empty() && raw_query.split('&').any(|p| p.strip_prefix(q).is_some_and(|v| v.is_empty() || v.starts_with('=')));
    let name = match (bucket, key) {
        (false, _) => match method {
            "GET" => "ListBuckets",
            _ => "",
        },
        (true, false) => {
            let sub = BUCKET_SUBRESOURCES.iter().find(|s| has(s.0));
            match (method, sub) {
                ("OPTIONS", _) => "PreflightRequest",
                ("GET", Some(s)) => s.1,
                ("HEAD", None) => "HeadBucket",
                ("GET", None) if raw_query.split('&').any(|p| p == "list-type=2") => "ListObjectsV2",
                ("GET", None) => "ListObjects",
                ("PUT", Some(s)) => s.2,
                ("PUT", None) if raw_query.is_empty() => "CreateBucket",
                ("DELETE", Some(s)) => s.3,
                ("DELETE", None) if raw_query.is_empty() => "DeleteBucket",
                ("POST", _) if has("delete") => "DeleteObjects",
                ("POST", _) if form && raw_query.is_empty() => "PostObject",
                _ => "",
            }
        }
        (true, true) => match method {
            "OPTIONS" => "PreflightRequest",
            "PUT" if has("uploadId") && has("partNumber") => if copy_source { "UploadPartCopy" } else { "UploadPart" },
            "PUT" if has("tagging") => "PutObjectTagging",
            "PUT" if has("acl") => "PutObjectAcl",
            // Any other query (SDKs add `x-id=PutObject`) is the object's PUT, as the router takes it.
            "PUT" => if copy_source { "CopyObject" } else { "PutObject" },
            "GET" if has("tagging") => "GetObjectTagging",
            "GET" if has("attributes") => "GetObjectAttributes",
            "GET" if has("uploadId") => "ListParts",
            "GET" if has("acl") => "GetObjectAcl",
            "GET" => "GetObject",
            "HEAD" => "HeadObject",
            "DELETE" if has("tagging") => "DeleteObjectTagging",
            "DELETE" if has("uploadId") => "AbortMultipartUpload",
            "DELETE" => "DeleteObject",
            "POST" if has("uploads") => "CreateMultipartUpload",
            "POST" if has("uploadId") => "CompleteMultipartUpload",
            _ => "",
        },
    };
    OPERATIONS.iter().position(|o| *o == name).unwrap_or(OPERATIONS.len())
}

/// One operation's counts on one executor.
#[derive(Debug, Default)]
struct OperationCounts {
    by_class: [AtomicU64; CLASSES.len()],
    /// Requests by the first bucket their time fits (the last: over every bound).
    time: [AtomicU64; BUCKETS.len() + 1],
    time_sum_us: AtomicU64,
}

/// One executor's counts (a cache line or more of its own).
#[derive(Debug)]
#[repr(align(128))]
pub struct CoreMetrics {
    requests: [[AtomicU64; CLASSES.len()]; METHODS.len()],
    /// By [`operation`], `Other` last; the whole request histogram is their sum.
    operations: Box<[OperationCounts]>,
    connections_accepted: AtomicU64,
    connections_closed: AtomicU64,
    tls_handshake_failures: AtomicU64,
    lookup_calls: AtomicU64,
    lookup_keys: AtomicU64,
    md5_paired: AtomicU64,
    md5_alone: AtomicU64,
}

/// Adds `n` to a counter only this executor writes.
fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Default for CoreMetrics {
    fn default() -> Self {
        CoreMetrics {
            requests: Default::default(),
            operations: (0..=OPERATIONS.len()).map(|_| OperationCounts::default()).collect(),
            connections_accepted: AtomicU64::default(),
            connections_closed: AtomicU64::default(),
            tls_handshake_failures: AtomicU64::default(),
            lookup_calls: AtomicU64::default(),
            lookup_keys: AtomicU64::default(),
            md5_paired: AtomicU64::default(),
            md5_alone: AtomicU64::default(),
        }
    }
}

impl CoreMetrics {
    /// A request of `operation` (from [`operation`]) answered with `status`, its answer's head
    /// ready `took` after its head came.
    pub fn request(&self, method: &str, operation: usize, status: u16, took: Duration) {
        let m = METHODS.iter().position(|x| *x == method).unwrap_or(METHODS.len() - 1);
        let class = match status {
            0..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        add(&self.requests[m][class], 1);
        let op = &self.operations[operation.min(OPERATIONS.len())];
        add(&op.by_class[class], 1);
        let secs = took.as_secs_f64();
        let bucket = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        add(&op.time[bucket], 1);
        add(&op.time_sum_us, took.as_micros().min(u128::from(u64::MAX)) as u64);
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

    /// Uploads' bytes hashed for their MD5s two uploads at a time, and alone
    /// ([`crate::md5pairs`]).
    pub fn md5_hashed(&self, paired: u64, alone: u64) {
        add(&self.md5_paired, paired);
        add(&self.md5_alone, alone);
    }

    /// The bytes hashed in pairs and alone so far.
    pub fn md5_counts(&self) -> (u64, u64) {
        (get(&self.md5_paired), get(&self.md5_alone))
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
        // Every executor's histogram of each operation, and of all together.
        let ops = OPERATIONS.len() + 1;
        let time = |o: usize, i: usize| self.sum(|c| &c.operations[o].time[i]);
        let hist: Vec<[u64; BUCKETS.len() + 1]> = (0..ops).map(|o| std::array::from_fn(|i| time(o, i))).collect();
        let sums: Vec<u64> = (0..ops).map(|o| self.sum(|c| &c.operations[o].time_sum_us)).collect();
        let all: [u64; BUCKETS.len() + 1] = std::array::from_fn(|i| hist.iter().map(|h| h[i]).sum());
        let histogram = |out: &mut String, name: &str, labels: &str, h: &[u64; BUCKETS.len() + 1], sum_us: u64| {
            let sep = if labels.is_empty() { "" } else { "," };
            let mut cumulative = 0u64;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h[i];
                let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
            }
            cumulative += h[BUCKETS.len()];
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}");
            let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
            let _ = writeln!(out, "{name}_sum{braces} {}", sum_us as f64 / 1e6);
            let _ = writeln!(out, "{name}_count{braces} {cumulative}");
        };
        family(&mut out, "stratos_s3g_request_seconds", "histogram", "Time from a request's head to its answer's head (a body streams after it).");
        histogram(&mut out, "stratos_s3g_request_seconds", "", &all, sums.iter().sum());
        // Per operation: only those the gateway has answered since it started (a series
        // appears with its first request), so a scrape is not ~60 empty histograms long.
        let name = |o: usize| OPERATIONS.get(o).copied().unwrap_or("Other");
        let seen: Vec<usize> = (0..ops).filter(|&o| hist[o].iter().any(|&n| n > 0)).collect();
        family(&mut out, "stratos_s3g_operations_total", "counter", "S3 requests answered, by operation (AWS's API names; Other: no known shape) and status class.");
        for &o in &seen {
            for (k, class) in CLASSES.iter().enumerate() {
                let _ = writeln!(out, "stratos_s3g_operations_total{{operation=\"{}\",code=\"{class}\"}} {}", name(o), self.sum(|c| &c.operations[o].by_class[k]));
            }
        }
        family(&mut out, "stratos_s3g_operation_seconds", "histogram", "Time from a request's head to its answer's head, by operation.");
        for &o in &seen {
            histogram(&mut out, "stratos_s3g_operation_seconds", &format!("operation=\"{}\"", name(o)), &hist[o], sums[o]);
        }
        family(&mut out, "stratos_s3g_md5_bytes_total", "counter", "Uploaded bytes hashed for their MD5 (ETag, Content-MD5) two uploads at a time, and alone.");
        let _ = writeln!(out, "stratos_s3g_md5_bytes_total{{hashed=\"paired\"}} {}", self.sum(|c| &c.md5_paired));
        let _ = writeln!(out, "stratos_s3g_md5_bytes_total{{hashed=\"alone\"}} {}", self.sum(|c| &c.md5_alone));
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
            single(&mut out, name, kind, help, "", value);
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
        let (get, put, other) = (operation("GET", true, true, "", false, false), operation("PUT", true, true, "", false, false), OPERATIONS.len());
        a.request("GET", get, 200, Duration::from_micros(300));
        b.request("GET", get, 206, Duration::from_millis(3));
        b.request("PUT", put, 403, Duration::from_secs(9));
        a.request("PATCH", other, 501, Duration::from_millis(1));
        a.connection_accepted();
        b.connection_accepted();
        b.connection_closed();
        a.lookup_call(3);
        b.lookup_call(1);
        a.md5_hashed(2 << 20, 4096);
        b.md5_hashed(0, 100);
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
        assert_eq!(value(&t, "stratos_s3g_md5_bytes_total{hashed=\"paired\"}"), 2 << 20);
        assert_eq!(value(&t, "stratos_s3g_md5_bytes_total{hashed=\"alone\"}"), 4196, "summed over the executors");
        assert!(t.contains("stratos_s3g_request_seconds_sum 9.0043\n"), "{t}");
        // By operation: each series with its own count, the histograms cumulative per operation.
        for (series, want) in [
            ("operations_total{operation=\"GetObject\",code=\"2xx\"}", 2),
            ("operations_total{operation=\"PutObject\",code=\"4xx\"}", 1),
            ("operations_total{operation=\"Other\",code=\"5xx\"}", 1),
            ("operation_seconds_bucket{operation=\"GetObject\",le=\"0.001\"}", 1),
            ("operation_seconds_bucket{operation=\"GetObject\",le=\"+Inf\"}", 2),
            ("operation_seconds_count{operation=\"PutObject\"}", 1),
        ] {
            assert_eq!(value(&t, &format!("stratos_s3g_{series}")), want, "{series}");
        }
        assert!(t.contains("stratos_s3g_operation_seconds_sum{operation=\"PutObject\"} 9\n"), "{t}");
        assert!(!t.contains("operation=\"DeleteObject\""), "an operation not yet asked for has no series: {t}");
    }

    /// Each request shape is the operation AWS names it, refused sub-resources `Other`.
    #[test]
    fn a_request_is_the_s3_operation_aws_names_it() {
        let name = |method: &str, bucket: bool, key: bool, query: &str, copy: bool, form: bool| OPERATIONS.get(operation(method, bucket, key, query, copy, form)).copied().unwrap_or("Other");
        let cases: [(&str, bool, bool, &str, bool, bool, &str); 32] = [
            ("GET", false, false, "", false, false, "ListBuckets"),
            ("PUT", false, false, "", false, false, "Other"),
            ("PUT", true, false, "", false, false, "CreateBucket"),
            ("HEAD", true, false, "", false, false, "HeadBucket"),
            ("DELETE", true, false, "", false, false, "DeleteBucket"),
            ("GET", true, false, "prefix=a&delimiter=%2F", false, false, "ListObjects"),
            ("GET", true, false, "list-type=2&prefix=a", false, false, "ListObjectsV2"),
            ("GET", true, false, "uploads&prefix=a", false, false, "ListMultipartUploads"),
            ("GET", true, false, "versions", false, false, "ListObjectVersions"),
            ("GET", true, false, "location", false, false, "GetBucketLocation"),
            ("PUT", true, false, "policy", false, false, "PutBucketPolicy"),
            ("DELETE", true, false, "cors", false, false, "DeleteBucketCors"),
            ("GET", true, false, "lifecycle", false, false, "GetBucketLifecycleConfiguration"),
            ("PUT", true, false, "publicAccessBlock", false, false, "PutPublicAccessBlock"),
            ("DELETE", true, false, "acl", false, false, "Other"),
            ("PUT", true, false, "notification", false, false, "Other"),
            ("POST", true, false, "delete", false, false, "DeleteObjects"),
            ("POST", true, false, "", false, true, "PostObject"),
            ("OPTIONS", true, true, "", false, false, "PreflightRequest"),
            ("GET", true, true, "", false, false, "GetObject"),
            ("GET", true, true, "response-content-type=a%2Fb&x-id=GetObject", false, false, "GetObject"),
            ("HEAD", true, true, "partNumber=2", false, false, "HeadObject"),
            ("PUT", true, true, "x-id=PutObject", false, false, "PutObject"),
            ("PUT", true, true, "", true, false, "CopyObject"),
            ("PUT", true, true, "partNumber=3&uploadId=u", false, false, "UploadPart"),
            ("PUT", true, true, "partNumber=3&uploadId=u", true, false, "UploadPartCopy"),
            ("PUT", true, true, "tagging", false, false, "PutObjectTagging"),
            ("GET", true, true, "uploadId=u&max-parts=10", false, false, "ListParts"),
            ("DELETE", true, true, "uploadId=u", false, false, "AbortMultipartUpload"),
            ("POST", true, true, "uploads", false, false, "CreateMultipartUpload"),
            ("POST", true, true, "uploadId=u", false, false, "CompleteMultipartUpload"),
            ("POST", true, true, "select&select-type=2", false, false, "Other"),
        ];
        for (method, bucket, key, query, copy, form, want) in cases {
            assert_eq!(name(method, bucket, key, query, copy, form), want, "{method} bucket {bucket} key {key} ?{query} copy {copy} form {form}");
        }
        // Every name is listed once, and every sub-resource's operations are among them.
        for (i, o) in OPERATIONS.iter().enumerate() {
            assert_eq!(OPERATIONS.iter().position(|x| x == o), Some(i), "{o} listed twice");
        }
        for s in BUCKET_SUBRESOURCES {
            for o in [s.1, s.2, s.3].into_iter().filter(|o| !o.is_empty()) {
                assert!(OPERATIONS.contains(&o), "{o} is not in OPERATIONS");
            }
        }
    }
}
