//! WAL figures: durable appends/s and MB/s at fixed batch sizes (append B records, one sync),
//! and under concurrency (T tasks each appending one record and waiting for it), with the
//! latency of each durable point. Runs on one pinned glommio executor, on real files.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context;
use glommio::{LocalExecutorBuilder, Placement};
use stratos_tuning::{LatencyUs, latency_histogram};
use stratos_wal::{DmaStorage, Wal, WalConfig};

use crate::report::Report;

#[derive(Debug, Clone)]
pub struct WalBenchOptions {
    /// Parent directory; each measurement uses a fresh subdirectory, removed afterwards.
    pub dir: PathBuf,
    pub batch_sizes: Vec<usize>,
    pub concurrency: Vec<usize>,
    pub record_bytes: usize,
    pub seconds: f64,
    pub runs: usize,
    /// Pin the executor to this CPU.
    pub cpu: Option<usize>,
}

/// One measurement's result.
#[derive(Debug, Clone, Copy)]
pub struct WalRun {
    pub appends_per_s: f64,
    pub payload_mb_per_s: f64,
    pub disk_mb_per_s: f64,
    pub records_per_sync: f64,
    pub latency: LatencyUs,
}

pub fn run(opts: &WalBenchOptions, report: &mut Report, progress: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    for run in 0..opts.runs {
        for &b in &opts.batch_sizes {
            let r = measure(opts, Mode::Batch(b))?;
            progress(&format!("run {}: batch {b:>4}: {:>9.0} appends/s {:>7.1} MB/s  sync p50 {} µs p99 {} µs", run + 1, r.appends_per_s, r.payload_mb_per_s, r.latency.p50, r.latency.p99));
            report.record(&format!("WAL batch {b}: durable appends/s"), "/s", r.appends_per_s);
            report.record(&format!("WAL batch {b}: payload MB/s"), "MB/s", r.payload_mb_per_s);
            report.record(&format!("WAL batch {b}: write+fdatasync p50"), "µs", r.latency.p50 as f64);
            report.record(&format!("WAL batch {b}: write+fdatasync p99"), "µs", r.latency.p99 as f64);
        }
        for &t in &opts.concurrency {
            let r = measure(opts, Mode::Concurrent(t))?;
            progress(&format!("run {}: {t:>4} appenders: {:>9.0} appends/s, {:.1} records/sync, p50 {} µs p99 {} µs", run + 1, r.appends_per_s, r.records_per_sync, r.latency.p50, r.latency.p99));
            report.record(&format!("WAL {t} concurrent appenders: durable appends/s"), "/s", r.appends_per_s);
            report.record(&format!("WAL {t} concurrent appenders: records per fdatasync"), "", r.records_per_sync);
            report.record(&format!("WAL {t} concurrent appenders: append-to-durable p99"), "µs", r.latency.p99 as f64);
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Batch(usize),
    Concurrent(usize),
}

pub fn measure(opts: &WalBenchOptions, mode: Mode) -> anyhow::Result<WalRun> {
    let dir = tempfile::Builder::new().prefix("wal-bench-").tempdir_in(&opts.dir).with_context(|| format!("creating a directory in {}", opts.dir.display()))?;
    let path = dir.path().to_path_buf();
    let (record_bytes, seconds) = (opts.record_bytes, opts.seconds);
    let placement = opts.cpu.map_or(Placement::Unbound, Placement::Fixed);
    LocalExecutorBuilder::new(placement)
        .name("wal-bench")
        .spawn(move || async move { measure_on_executor(&path, mode, record_bytes, seconds).await })
        .map_err(|e| anyhow::anyhow!("starting the glommio executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("executor failed: {e}"))?
}

async fn measure_on_executor(path: &Path, mode: Mode, record_bytes: usize, seconds: f64) -> anyhow::Result<WalRun> {
    let storage = DmaStorage::open(path).await?;
    let (wal, _) = Wal::open(storage, WalConfig::default()).await?;
    let wal = Rc::new(wal);
    let payload = vec![0xA5u8; record_bytes];
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let next = Rc::new(Cell::new(1u64));
    let start = Instant::now();
    let mut h = latency_histogram();
    match mode {
        Mode::Batch(b) => {
            while Instant::now() < deadline {
                let t = Instant::now();
                for _ in 0..b {
                    let i = next.get();
                    next.set(i + 1);
                    let _ = wal.append_entry(i, 1, &payload)?;
                }
                wal.sync().await?;
                h.record((t.elapsed().as_micros() as u64).max(1))?;
            }
        }
        Mode::Concurrent(tasks) => {
            let hists: Vec<_> = (0..tasks)
                .map(|_| {
                    let (wal, next, payload) = (wal.clone(), next.clone(), payload.clone());
                    glommio::spawn_local(async move {
                        let mut h = latency_histogram();
                        while Instant::now() < deadline {
                            let t = Instant::now();
                            let i = next.get();
                            next.set(i + 1);
                            let ticket = wal.append_entry(i, 1, &payload)?;
                            wal.wait_durable(ticket).await?;
                            h.record((t.elapsed().as_micros() as u64).max(1))?;
                        }
                        anyhow::Ok(h)
                    })
                })
                .collect();
            for task in hists {
                h.add(task.await?)?;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = wal.stats();
    let records = (next.get() - 1) as f64;
    Ok(WalRun {
        appends_per_s: records / elapsed,
        payload_mb_per_s: records * record_bytes as f64 / elapsed / 1e6,
        disk_mb_per_s: stats.bytes_written as f64 / elapsed / 1e6,
        records_per_sync: records / stats.fdatasyncs.max(1) as f64,
        latency: LatencyUs::of(&h),
    })
}
