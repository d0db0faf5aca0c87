//! stratos-bench: measurements of Stratos, reported as medians of several runs.
//!
//! So far the foundation's figures: the WAL (durable appends/s and MB/s by batch size and by
//! concurrency, with latency percentiles) and the shard state machine (open+commit applies/s,
//! lookups/s, memory per key, snapshot write and load rates), and `plot`, which draws what the
//! freon-style generators against a running OM (`ombg`, `omkg`, …, in the server crate) wrote
//! with `--json`.
//!
//! Nothing here is a test: these are run by hand (`stratos bench …`) and their output goes in
//! bench/RESULTS.md with the command that produced it.

pub mod plot;
pub mod report;
pub mod shard_bench;
pub mod wal_bench;

/// Resident set size of this process in bytes, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}
