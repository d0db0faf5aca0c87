//! `stratos`: one binary for every role, mirroring the `ozone` command.
//!
//! The roles (`om`, `scm`, `datanode`, `dev`, `sh`, `admin`) arrive with the issues that build
//! them. What exists now measures the foundation: `stratos bench wal|shard|foundation` and
//! `stratos tune`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use stratos_bench::report::Report;
use stratos_bench::{shard_bench, wal_bench};

// mimalloc: ~15–20% more pipelined RPC throughput than glibc malloc on this host class
// (../shared/FINDINGS.md), and smaller per-key overhead for the memtable's one-allocation entries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "stratos", version, about = "Stratos: a thread-per-core, Raft-replicated namespace server for an object store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure Stratos; every figure is a median over --runs runs.
    #[command(subcommand)]
    Bench(Bench),
    /// Probe this host: cores, memlock, io_uring, and the data directory's fdatasync latency.
    Tune {
        /// Directory whose file system is probed (the one you would put WAL segments on).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: PathBuf,
        /// fdatasyncs to time.
        #[arg(long, default_value_t = 2000)]
        syncs: usize,
    },
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// The write-ahead log on real files: durable appends/s by batch size and concurrency.
    Wal(WalArgs),
    /// The namespace state machine on one core: applies/s, lookups/s, bytes/key, snapshots.
    Shard(ShardArgs),
    /// Both, at sizes that finish in about a minute: the demonstration of the foundation.
    Foundation {
        /// Directory for WAL segments and snapshot files (a temp dir is made inside it).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
struct WalArgs {
    /// Directory for WAL segments (a fresh subdirectory per measurement, removed afterwards).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// Records per durable point, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 256])]
    batch: Vec<usize>,
    /// Concurrent appenders (each appends one record and waits for it), comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize])]
    concurrency: Vec<usize>,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 200)]
    record_bytes: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Pin the WAL's executor to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
}

#[derive(Args, Debug)]
struct ShardArgs {
    /// Keys created (open + commit each).
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Directory for the snapshot file.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut progress = |line: &str| eprintln!("{line}");
    match cli.command {
        Command::Bench(Bench::Wal(a)) => {
            let mut report = Report::default();
            wal_bench::run(&wal_options(a), &mut report, &mut progress)?;
            print!("{}", report.table());
        }
        Command::Bench(Bench::Shard(a)) => {
            let mut report = Report::default();
            shard_bench::run(&shard_bench::ShardBenchOptions { keys: a.keys, runs: a.runs, dir: a.dir }, &mut report, &mut progress)?;
            print!("{}", report.table());
        }
        Command::Bench(Bench::Foundation { dir }) => {
            print_host(&dir)?;
            let mut report = Report::default();
            let wal = WalArgs { dir: dir.clone(), batch: vec![1, 16, 256], concurrency: vec![64], record_bytes: 200, seconds: 2.0, runs: 1, cpu: None };
            wal_bench::run(&wal_options(wal), &mut report, &mut progress)?;
            shard_bench::run(&shard_bench::ShardBenchOptions { keys: 1_000_000, runs: 1, dir }, &mut report, &mut progress)?;
            print!("{}", report.table());
        }
        Command::Tune { dir, syncs } => {
            print_host(&dir)?;
            let l = stratos_tuning::probe_fdatasync(&dir, syncs).with_context(|| format!("probing fdatasync in {}", dir.display()))?;
            println!("fdatasync of 4 KiB writes ({} samples): p50 {} µs, p90 {} µs, p99 {} µs, max {} µs", l.count, l.p50, l.p90, l.p99, l.max);
            println!("→ one WAL group commit costs about p50; that many syncs per second per shard ({:.0}) bound a shard's durable batches, so throughput comes from batching.", 1e6 / l.p50.max(1) as f64);
        }
    }
    Ok(())
}

fn wal_options(a: WalArgs) -> wal_bench::WalBenchOptions {
    wal_bench::WalBenchOptions { dir: a.dir, batch_sizes: a.batch, concurrency: a.concurrency, record_bytes: a.record_bytes, seconds: a.seconds, runs: a.runs, cpu: a.cpu }
}

fn print_host(dir: &std::path::Path) -> anyhow::Result<()> {
    let f = stratos_tuning::host_facts();
    let memlock = f.memlock_bytes.map_or("unknown".to_string(), |b| if b == u64::MAX { "unlimited".into() } else { format!("{} KiB", b / 1024) });
    let uring = match f.io_uring_disabled {
        Some(0) | None => "allowed",
        Some(1) => "restricted to a group",
        Some(_) => "disabled",
    };
    println!("host: {} cores, kernel {}, memlock {memlock}, io_uring {uring}, data dir {}", f.cores, f.kernel, dir.display());
    Ok(())
}
