//! stratos-bench: measurements of Stratos, reported as medians of several runs.
//!
//! - [`freon`]: load generators against a running cluster, named as Apache Ozone's freon names
//!   them (`ombg`, `omkg`, `ockg`, `ockr`, `ommg`, `lookup`, `ome`), closed or open loop, with
//!   HDR latency percentiles and `--json` output; `omkg` also drives etcd for a same-run ratio.
//! - [`wal_bench`], [`shard_bench`]: the WAL (durable appends/s and MB/s by batch size and by
//!   concurrency) and the shard state machine (applies/s, lookups/s, memory per key, snapshot
//!   write and load rates) on one core.
//! - [`plot`]: draws what the generators wrote with `--json`; [`report`]: tables of medians.
//! - [`cli`]: the `stratos bench` subcommands and their flags.
//!
//! Nothing here is a test: these are run by hand (`stratos bench …`) and their output goes in
//! bench/RESULTS.md with the command that produced it.

pub mod cli;
pub mod freon;
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
