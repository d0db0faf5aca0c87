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

/// CPU time this process has used so far, user and system, from getrusage.
pub fn own_cpu() -> (std::time::Duration, std::time::Duration) {
    // SAFETY: an all-zero rusage is a valid value of that plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let d = |t: libc::timeval| std::time::Duration::from_micros(u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0));
    (d(u.ru_utime), d(u.ru_stime))
}

/// Resident set size of this process in bytes, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}
