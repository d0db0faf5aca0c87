//! stratos-tuning: what the host offers, measured rather than assumed.
//!
//! So far: the facts the WAL's performance depends on (cores, memlock limit, io_uring being
//! allowed) and the data directory's fdatasync latency, measured the way the WAL syncs (4 KiB
//! written into a pre-zeroed file, then fdatasync). The recommended configuration and the
//! tuning guide for NVMe hosts come with the benchmarks issue (#6).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use hdrhistogram::Histogram;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyUs {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl LatencyUs {
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// A histogram for microsecond latencies from 1 µs to 100 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("static histogram bounds are valid")
}

/// Measures `count` fdatasyncs of 4 KiB writes at increasing offsets of a pre-zeroed file in
/// `dir` (the WAL's pattern). The file is removed afterwards.
pub fn probe_fdatasync(dir: &Path, count: usize) -> io::Result<LatencyUs> {
    const WRITE_BYTES: usize = 4096;
    let path = dir.join(".stratos-fsync-probe");
    let result = (|| {
        let file: File = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        let size = (count * WRITE_BYTES) as u64;
        let zeros = vec![0u8; 1 << 20];
        let mut pos = 0;
        while pos < size {
            let n = (size - pos).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], pos)?;
            pos += n as u64;
        }
        file.sync_all()?;
        let block = vec![0x5Au8; WRITE_BYTES];
        let mut h = latency_histogram();
        for i in 0..count {
            file.write_all_at(&block, (i * WRITE_BYTES) as u64)?;
            let t = Instant::now();
            file.sync_data()?;
            h.record((t.elapsed().as_micros() as u64).max(1)).expect("within bounds");
        }
        Ok(LatencyUs::of(&h))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// Facts about this host that decide how Stratos should run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub cores: usize,
    pub memlock_bytes: Option<u64>,
    pub io_uring_disabled: Option<u32>,
    pub kernel: String,
}

pub fn host_facts() -> HostFacts {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let memlock_bytes = {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we pass and has no other effect.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } == 0;
        ok.then_some(r.rlim_cur)
    };
    let io_uring_disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok().and_then(|s| s.trim().parse().ok());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    HostFacts { cores, memlock_bytes, io_uring_disabled, kernel }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fdatasync_probe_measures_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let l = probe_fdatasync(dir.path(), 20).unwrap();
        assert_eq!(l.count, 20);
        assert!(l.p50 >= 1 && l.p50 <= l.p99 && l.p99 <= l.max);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn host_facts_are_read() {
        let f = host_facts();
        assert!(f.cores >= 1);
        assert!(!f.kernel.is_empty());
    }
}
