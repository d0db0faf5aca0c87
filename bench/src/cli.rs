//! `stratos bench …`: the subcommands, their flags, and what each runs. The generators against a
//! running cluster are in [`crate::freon`]; the WAL and shard measurements in
//! [`crate::wal_bench`] and [`crate::shard_bench`].

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::freon;
use crate::report::Report;
use crate::{shard_bench, wal_bench};

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// The write-ahead log on real files: durable appends/s by batch size and concurrency.
    Wal(WalArgs),
    /// The namespace state machine on one core: applies/s, lookups/s, bytes/key, snapshots.
    Shard(ShardArgs),
    /// Freon's omkg against a running OM: open + commit keys (metadata only), pipelined.
    Omkg(crate::freon::OmkgArgs),
    /// Freon's ockg against a running cluster: the full write path with data (open, write to the
    /// datanodes, commit), keys/s and MB/s.
    Ockg(crate::freon::OckgArgs),
    /// Freon's ockr: read back the keys ockg wrote and verify every byte: each key once, or
    /// round and round for -n reads or --duration seconds.
    Ockr(crate::freon::OckrArgs),
    /// The S3 gateway: PUT or GET objects of --size bytes, or LIST pages, one object per
    /// signed request, each worker on its own keep-alive connection (run ockg/ockr beside it
    /// for the gateway's overhead; bench/s3.sh does).
    S3(crate::freon::S3Args),
    /// Freon's ombg: bucket creations.
    Ombg(crate::freon::OmbgArgs),
    /// Freon's ommg: a metadata mix (create / lookup / list / info, weights as flags).
    Ommg(crate::freon::OmmgArgs),
    /// Lookups of keys against a running OM (it writes the keys first), pipelined.
    Lookup(crate::freon::LookupArgs),
    /// Freon's ome: echo calls (the RPC path alone; --raft adds a Raft read-index round).
    Ome(crate::freon::OmeArgs),
    /// Draw what `bench … --json FILE` wrote: throughput over time, and latency (p50, p99)
    /// against throughput, one curve per label (runs at several --rate make the curve).
    Plot {
        /// JSON files written by the generators' --json.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The image to write: .svg or .png. Text is drawn with a TrueType font found on the
        /// system (DejaVu, Liberation, …) or named in STRATOS_FONT.
        #[arg(short = 'o', long)]
        out: PathBuf,
    },
    /// Both, at sizes that finish in about a minute: the demonstration of the foundation.
    Foundation {
        /// Directory for WAL segments and snapshot files (a temp dir is made inside it).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct WalArgs {
    /// Directory for WAL segments (a fresh subdirectory per measurement, removed afterwards).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub dir: PathBuf,
    /// Records per durable point, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 256])]
    pub batch: Vec<usize>,
    /// Concurrent appenders (each appends one record and waits for it), comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize])]
    pub concurrency: Vec<usize>,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 200)]
    pub record_bytes: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Pin the WAL's executor to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ShardArgs {
    /// Keys created (open + commit each).
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: usize,
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Directory for the snapshot file.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub dir: PathBuf,
}

/// Runs one `stratos bench` subcommand; progress goes to stderr, the report to stdout.
pub fn run(bench: Bench) -> anyhow::Result<()> {
    // Against an OM with TLS (the default of `stratos dev`), the generators connect as the
    // certificate in STRATOS_CA/STRATOS_CERT/STRATOS_KEY, as `stratos sh` does.
    stratos_client::tls::use_client_env()?;
    let mut progress = |line: &str| eprintln!("{line}");
    match bench {
        Bench::Omkg(a) => freon::omkg(a)?,
        Bench::Ockg(a) => freon::ockg(a)?,
        Bench::S3(a) => freon::s3(a)?,
        Bench::Ockr(a) => freon::ockr(a)?,
        Bench::Ombg(a) => freon::ombg(a)?,
        Bench::Ommg(a) => freon::ommg(a)?,
        Bench::Lookup(a) => freon::lookup(a)?,
        Bench::Ome(a) => freon::ome(a)?,
        Bench::Plot { files, out } => {
            crate::plot::plot(&files, &out)?;
            println!("wrote {} ({} runs)", out.display(), files.len());
        }
        Bench::Wal(a) => {
            let mut report = Report::default();
            wal_bench::run(&wal_options(a), &mut report, &mut progress)?;
            print!("{}", report.table());
        }
        Bench::Shard(a) => {
            let mut report = Report::default();
            shard_bench::run(&shard_bench::ShardBenchOptions { keys: a.keys, runs: a.runs, dir: a.dir }, &mut report, &mut progress)?;
            print!("{}", report.table());
        }
        Bench::Foundation { dir } => {
            print!("{}", stratos_tuning::cli::describe_host(&stratos_tuning::probe(&dir), &dir));
            let mut report = Report::default();
            let wal = WalArgs { dir: dir.clone(), batch: vec![1, 16, 256], concurrency: vec![64], record_bytes: 200, seconds: 2.0, runs: 1, cpu: None };
            wal_bench::run(&wal_options(wal), &mut report, &mut progress)?;
            shard_bench::run(&shard_bench::ShardBenchOptions { keys: 1_000_000, runs: 1, dir }, &mut report, &mut progress)?;
            print!("{}", report.table());
        }
    }
    Ok(())
}

fn wal_options(a: WalArgs) -> wal_bench::WalBenchOptions {
    wal_bench::WalBenchOptions { dir: a.dir, batch_sizes: a.batch, concurrency: a.concurrency, record_bytes: a.record_bytes, seconds: a.seconds, runs: a.runs, cpu: a.cpu }
}
