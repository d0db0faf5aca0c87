//! Load generators against a running cluster, named as Apache Ozone's freon names them:
//! `ombg` (buckets), `omkg` (open + commit keys, metadata only), `ockg` (keys with data through
//! the datanodes), `ockr` (read keys back and verify their bytes), `ommg` (a metadata mix),
//! `lookup`, and `ome` (echo); and `s3`, the S3 gateway at one object per request.
//!
//! Every generator runs through [`drive`]: closed loop, `-t` workers each with one call in
//! flight, until `--duration` has passed or `-n` operations were started (whichever comes first;
//! with `-n` alone there is no time limit); or, with `--rate`, open loop at a fixed arrival rate
//! (at most `-t` calls in flight), latency measured from each call's intended send time, so a
//! stall is not hidden (no coordinated omission). For omkg one op is one key: an open and a
//! commit, two durable Raft writes. Every run prints ops/s, latency percentiles from an HDR
//! histogram (µs, per call), errors by kind, and with `--json FILE` writes the same and ops per
//! second over time (for `stratos bench plot`); on a terminal a progress line shows live ops/s.
//! `--key-size` pads generated key names to a size.

mod data;
mod etcd;
mod s3;
#[cfg(feature = "etcd-grpc")]
mod etcd_grpc;

pub use data::{ockg, ockr};
pub use s3::{S3Args, S3Op, s3};
use etcd::omkg_etcd;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use stratos_client::{Client, Done};

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The OM (host:port; several, comma-separated, for a cluster). `omkg` also takes
    /// etcd+grpc://HOST:PORT (etcd's gRPC API; a build with --features etcd-grpc) or
    /// etcd://HOST:PORT (its JSON gateway), to run the same workload on etcd (see bench/etcd.sh).
    #[arg(long, visible_alias = "target", default_value = "127.0.0.1:9862", env = "STRATOS_OM")]
    pub om: String,
    /// Concurrent workers (each one call in flight).
    #[arg(short = 't', long, default_value_t = 16)]
    pub threads: usize,
    /// Connections the workers share (round robin).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Run time in seconds [default: 5, or no limit with -n].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Operations to run (then stop) [default: no limit].
    #[arg(short = 'n', long = "count")]
    pub count: Option<u64>,
    /// Also write the results as JSON (with ops per second over time) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// CPU to pin the load generator to (default: unpinned).
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Fixed arrival rate in ops per second (open loop; -t caps the calls in flight). Latency
    /// is measured from each call's intended send time. Default: closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Pad generated key names with '_' to this many bytes (their unique part stays first, so
    /// prefixes and order are kept) [default: natural names, about 20 bytes].
    #[arg(long)]
    pub key_size: Option<usize>,
    /// The series name written to --json (`bench plot` draws files with one label as one
    /// curve) [default: the generator's name without --rate].
    #[arg(long)]
    pub label: Option<String>,
}

impl Common {
    /// `name` padded to --key-size.
    fn key(&self, mut name: String) -> String {
        if let Some(n) = self.key_size {
            while name.len() < n {
                name.push('_');
            }
        }
        name
    }
}

#[derive(Args, Debug)]
pub struct OmkgArgs {
    #[command(flatten)]
    pub common: Common,
    /// Keys per call (each call opens `batch` keys, the next commits them).
    #[arg(long, default_value_t = 64)]
    pub batch: u32,
    #[arg(long, default_value = "benchvol")]
    pub volume: String,
    #[arg(long, default_value = "benchbucket")]
    pub bucket: String,
    /// etcd targets only: bytes of the value stored per key (a Stratos omkg key is metadata
    /// only; its committed record is about this size).
    #[arg(long, default_value_t = 128)]
    pub value_size: usize,
    /// Spread the keys over this many directories, `d000000/` to `dNNNNNN/` in front of each
    /// name (key i in directory i mod N), so that a listing with the delimiter `/` meets N
    /// common prefixes (bench/s3.sh's LIST). 0: none, every name under the run's one prefix.
    #[arg(long, default_value_t = 0)]
    pub dirs: u64,
}

#[derive(Args, Debug)]
pub struct LookupArgs {
    #[command(flatten)]
    pub common: Common,
    /// Keys written first, then looked up at random.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u32,
    #[arg(long, default_value = "benchvol")]
    pub volume: String,
    #[arg(long, default_value = "lookupbucket")]
    pub bucket: String,
    /// Keys per call: 1 uses `lookupKey`, more use `lookupKeys` (one message, one leadership
    /// confirmation per shard). Each key counts as one lookup.
    #[arg(long, default_value_t = 1)]
    pub batch: u32,
}

#[derive(Args, Debug)]
pub struct OmeArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Also confirm leadership through the meta group's Raft read index.
    #[arg(long)]
    pub raft: bool,
}

#[derive(Args, Debug)]
pub struct OmbgArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value = "benchvol")]
    pub volume: String,
}

#[derive(Args, Debug)]
pub struct OmmgArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value = "benchvol")]
    pub volume: String,
    #[arg(long, default_value = "ommgbucket")]
    pub bucket: String,
    /// Keys written first (lookups and lists read them).
    #[arg(long, default_value_t = 1000)]
    pub keys: u32,
    /// Weight of key creations (open + commit).
    #[arg(long, default_value_t = 1)]
    pub create: u32,
    /// Weight of key lookups.
    #[arg(long, default_value_t = 4)]
    pub lookup: u32,
    /// Weight of key listings (one page of --list-limit).
    #[arg(long, default_value_t = 1)]
    pub list: u32,
    /// Weight of bucket infos.
    #[arg(long, default_value_t = 1)]
    pub info: u32,
    #[arg(long, default_value_t = 100)]
    pub list_limit: u32,
}

#[derive(Args, Debug)]
pub struct OckgArgs {
    #[command(flatten)]
    pub common: Common,
    /// Bytes per key (e.g. 4096 or 1048576).
    #[arg(long, visible_alias = "value-size", default_value_t = 4096)]
    pub size: usize,
    #[arg(long, default_value = "benchvol")]
    pub volume: String,
    #[arg(long, default_value = "ockgbucket")]
    pub bucket: String,
    /// The OM's HTTP address, to read how many openKeys waited for the SCM [default: none].
    #[arg(long)]
    pub http: Option<String>,
}

#[derive(Args, Debug)]
pub struct OckrArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value = "benchvol")]
    pub volume: String,
    #[arg(long, default_value = "ockgbucket")]
    pub bucket: String,
    /// Read the keys whose names start with this (ockg's keys by default).
    #[arg(long, default_value = "ockg-")]
    pub prefix: String,
}

/// One run's measurements.
struct Stats {
    ops: u64,
    errors: u64,
    by_kind: BTreeMap<String, u64>,
    first_error: Option<String>,
    latency_us: Histogram<u64>,
    /// Ops completed in each second since the start.
    timeline: Vec<u64>,
    bytes: u64,
}

/// A run: its stats, when it ends (time or count), and how many ops were started.
struct Run {
    stats: RefCell<Stats>,
    start: Instant,
    /// This process's CPU time (user, system) when the run started.
    cpu_start: (Duration, Duration),
    deadline: Option<Instant>,
    count: Option<u64>,
    started: Cell<u64>,
    finished: Cell<bool>,
}

impl Run {
    fn new(c: &Common) -> Rc<Run> {
        let secs = c.duration.or(if c.count.is_some() { None } else { Some(5.0) });
        let start = Instant::now();
        Rc::new(Run {
            stats: RefCell::new(Stats {
                ops: 0,
                errors: 0,
                by_kind: BTreeMap::new(),
                first_error: None,
                latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
                timeline: Vec::new(),
                bytes: 0,
            }),
            start,
            cpu_start: crate::own_cpu(),
            deadline: secs.map(|s| start + Duration::from_secs_f64(s)),
            count: c.count,
            started: Cell::new(0),
            finished: Cell::new(false),
        })
    }

    /// Whether a worker may start a call of `ops` more operations (time and -n left).
    fn next(&self, ops: u64) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        if self.count.is_some_and(|n| self.started.get() >= n) {
            return false;
        }
        self.started.set(self.started.get() + ops);
        true
    }

    /// `ops` completed (and `bytes` moved); a latency sample from `since` when given.
    fn done(&self, ops: u64, bytes: u64, since: Option<Instant>) {
        let mut s = self.stats.borrow_mut();
        s.ops += ops;
        s.bytes += bytes;
        let sec = self.start.elapsed().as_secs() as usize;
        if s.timeline.len() <= sec {
            s.timeline.resize(sec + 1, 0);
        }
        s.timeline[sec] += ops;
        if let Some(t0) = since {
            let _ = s.latency_us.record((t0.elapsed().as_micros() as u64).max(1));
        }
    }

    /// A call's outcome: `Ok((ops, bytes))` counts them and a latency sample from `since`
    /// (none if the call completed no op), `Err` one error.
    fn finish(&self, outcome: Result<(u64, u64), String>, since: Instant) {
        match outcome {
            Ok((0, _)) => {}
            Ok((ops, bytes)) => self.done(ops, bytes, Some(since)),
            Err(e) => self.error(e),
        }
    }

    fn error(&self, e: String) {
        let mut s = self.stats.borrow_mut();
        s.errors += 1;
        // The kind: the status word the OM or datanode put first (`KEY_NOT_FOUND: …`), else
        // the first words of the message.
        let kind = e.split(':').next().unwrap_or("").split_whitespace().take(4).collect::<Vec<_>>().join(" ");
        *s.by_kind.entry(kind).or_default() += 1;
        s.first_error.get_or_insert(e);
    }

    /// A live progress line on stderr, once a second, while the run lasts (terminals only).
    fn show_progress(self: &Rc<Self>, name: String) {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return;
        }
        let run = self.clone();
        glommio::spawn_local(async move {
            let mut last = 0;
            while !run.finished.get() {
                glommio::timer::sleep(Duration::from_secs(1)).await;
                let ops = run.stats.borrow().ops;
                let total = run.count.map_or(String::new(), |n| format!(" of {n}"));
                eprint!("\r{name}: {:.0} s, {ops}{total} ops, {} ops/s now, {} errors   ", run.start.elapsed().as_secs_f64(), ops - last, run.stats.borrow().errors);
                last = ops;
            }
            eprintln!();
        })
        .detach();
    }

    /// Prints the summary (and writes --json): `unit` names what an op is.
    fn report(&self, name: &str, unit: &str, common: &Common) -> anyhow::Result<()> {
        self.finished.set(true);
        let secs = self.start.elapsed().as_secs_f64();
        let s = self.stats.borrow();
        let h = &s.latency_us;
        let q = |x: f64| if h.is_empty() { 0 } else { h.value_at_quantile(x) };
        println!(
            "{name}: {:.0} ops/s ({} {unit} in {secs:.2} s), call latency µs p50 {} p90 {} p99 {} p99.9 {} max {}, errors {}{}",
            s.ops as f64 / secs,
            s.ops,
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            h.max(),
            s.errors,
            s.first_error.as_ref().map_or(String::new(), |e| format!(" (first: {e})"))
        );
        // The generator's own CPU per op: on a host whose speed drifts (shared VMs), a server's
        // CPU per op divided by this is steadier than either rate, since both slow together.
        let (user, system) = crate::own_cpu();
        let (user, system) = (user.saturating_sub(self.cpu_start.0), system.saturating_sub(self.cpu_start.1));
        let per_op = |d: Duration| if s.ops == 0 { 0.0 } else { d.as_secs_f64() * 1e6 / s.ops as f64 };
        println!("{name}: generator CPU {:.1} µs per {} (user {:.1}, system {:.1})", per_op(user + system), unit.trim_end_matches('s'), per_op(user), per_op(system));
        if s.by_kind.len() > 1 || s.errors > 0 {
            println!("{name}: errors by kind: {}", s.by_kind.iter().map(|(k, n)| format!("{k} × {n}")).collect::<Vec<_>>().join(", "));
        }
        if let Some(path) = &common.json {
            let v = serde_json::json!({
                "name": name, "unit": unit, "ops": s.ops, "seconds": secs, "opsPerSecond": s.ops as f64 / secs,
                "label": common.label.clone().unwrap_or_else(|| crate::plot::series_label(name)),
                "target": common.om, "threads": common.threads, "rate": common.rate, "keySize": common.key_size,
                "bytes": s.bytes, "errors": s.errors, "errorsByKind": s.by_kind,
                "generatorCpuMicrosPerOp": per_op(user + system),
                "latencyMicros": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": h.max(), "count": h.len()},
                "opsPerSecondOverTime": s.timeline,
            });
            std::fs::write(path, serde_json::to_vec_pretty(&v)?).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

fn on_executor<T: Send + 'static>(cpu: Option<usize>, f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static) -> anyhow::Result<T> {
    let placement = cpu.map_or(glommio::Placement::Unbound, glommio::Placement::Fixed);
    glommio::LocalExecutorBuilder::new(placement)
        .io_memory(1 << 20)
        .spawn(move || async move { f().await })
        .map_err(|e| anyhow::anyhow!("starting the load generator: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("load generator: {e}"))
}

async fn connect(c: &Common) -> anyhow::Result<Vec<Rc<Client>>> {
    let mut out = Vec::new();
    for _ in 0..c.connections.max(1) {
        out.push(Rc::new(Client::connect(&c.om, "root").await?));
    }
    Ok(out)
}

async fn ensure_volume(c: &Client, volume: &str) -> anyhow::Result<()> {
    let v = c.submit(|op| {
        let mut g = op.init_create_volume();
        g.set_volume(volume);
        g.set_owner("root");
    });
    match v.await {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("ALREADY_EXISTS") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn ensure_bucket(c: &Client, volume: &str, bucket: &str) -> anyhow::Result<()> {
    ensure_volume(c, volume).await?;
    let b = c.submit(|op| {
        let mut g = op.init_create_bucket();
        g.set_volume(volume);
        g.set_bucket(bucket);
        g.set_replication(stratos_schema::om_capnp::Replication::RatisThree);
    });
    match b.await {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("ALREADY_EXISTS") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Runs `call(seq)` until the run ends (time, -n), `seq` numbering the calls 0, 1, 2, … A call
/// returns `Ok((ops, bytes))` or an error; each is counted in `run`, with a latency sample per
/// call.
///
/// Closed loop (no --rate): `-t` workers, each starting its next call when the last returns;
/// latency from the call's start. Open loop (--rate R): call j is due at start + j·ops_per_call/R
/// whether or not earlier calls returned, at most `-t` in flight; its latency runs from when it
/// was due, so waiting for a free slot counts and a stall of the server is not hidden by the
/// generator slowing down (no coordinated omission).
async fn drive<Fut>(common: &Common, run: &Rc<Run>, ops_per_call: u64, call: impl Fn(u64) -> Fut + Clone + 'static)
where
    Fut: std::future::Future<Output = Result<(u64, u64), String>> + 'static,
{
    let workers = common.threads.max(1);
    match common.rate {
        Some(rate) => {
            let slots = Rc::new(glommio::sync::Semaphore::new(workers as u64));
            let in_flight = Rc::new(Cell::new(0usize));
            let interval = Duration::from_secs_f64(ops_per_call as f64 / rate.max(1e-3));
            let mut seq = 0u64;
            loop {
                let due = run.start + interval.mul_f64(seq as f64);
                if run.deadline.is_some_and(|d| due >= d) || !run.next(ops_per_call) {
                    break;
                }
                let now = Instant::now();
                if due > now {
                    glommio::timer::sleep(due - now).await;
                }
                let (run, slots, in_flight, call) = (run.clone(), slots.clone(), in_flight.clone(), call.clone());
                in_flight.set(in_flight.get() + 1);
                glommio::spawn_local(async move {
                    if let Ok(_permit) = slots.acquire_permit(1).await {
                        run.finish(call(seq).await, due);
                    }
                    in_flight.set(in_flight.get() - 1);
                })
                .detach();
                seq += 1;
            }
            while in_flight.get() > 0 {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        }
        None => {
            let seq = Rc::new(Cell::new(0u64));
            let mut tasks = Vec::new();
            for _ in 0..workers {
                let (run, seq, call) = (run.clone(), seq.clone(), call.clone());
                tasks.push(glommio::spawn_local(async move {
                    while run.next(ops_per_call) {
                        let n = seq.get();
                        seq.set(n + 1);
                        let t0 = Instant::now();
                        run.finish(call(n).await, t0);
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
        }
    }
}

/// The client call `seq` uses (round robin over --connections).
fn pick(clients: &[Rc<Client>], seq: u64) -> Rc<Client> {
    clients[seq as usize % clients.len()].clone()
}

/// What a generator names its run: its name, and the rate when open loop.
fn title(name: &str, common: &Common) -> String {
    match common.rate {
        Some(r) => format!("{name} --rate {r}"),
        None => name.to_string(),
    }
}

/// Opens `names` in one `batch` call and commits them in the next: the keys committed, each
/// key that failed alone counted as an error in `run`; `Err` if a call failed as a whole.
async fn open_commit(c: &Client, volume: &str, bucket: &str, names: &[String], run: &Run) -> Result<(u64, u64), String> {
    let opened = c
        .batch(names.len() as u32, |i, op| {
            let mut g = op.init_open_key();
            g.set_volume(volume);
            g.set_bucket(bucket);
            g.set_key(names[i as usize].as_str());
            g.reborrow().init_replication().set_none(());
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut todo: Vec<(usize, u64)> = Vec::with_capacity(names.len());
    for (i, o) in opened.into_iter().enumerate() {
        match o {
            Ok(Done::KeyOpened { open_id, .. }) => todo.push((i, open_id)),
            Ok(other) => run.error(format!("{other:?}")),
            Err(e) => run.error(e.to_string()),
        }
    }
    if todo.is_empty() {
        return Ok((0, 0));
    }
    let committed = c
        .batch(todo.len() as u32, |i, op| {
            let (k, id) = todo[i as usize];
            let mut g = op.init_commit_key();
            g.set_volume(volume);
            g.set_bucket(bucket);
            g.set_key(names[k].as_str());
            g.set_open_id(id);
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut done = 0;
    for o in committed {
        match o {
            Ok(_) => done += 1,
            Err(e) => run.error(e.to_string()),
        }
    }
    Ok((done, 0))
}

/// One key created: an open, then a commit (two calls, two durable writes).
async fn create_key(c: &Client, volume: &str, bucket: &str, name: &str) -> Result<(), String> {
    let opened = c
        .submit(|op| {
            let mut g = op.init_open_key();
            g.set_volume(volume);
            g.set_bucket(bucket);
            g.set_key(name);
        })
        .await
        .map_err(|e| e.to_string())?;
    let Done::KeyOpened { open_id, .. } = opened else { return Err(format!("unexpected reply to openKey: {opened:?}")) };
    c.submit(|op| {
        let mut g = op.init_commit_key();
        g.set_volume(volume);
        g.set_bucket(bucket);
        g.set_key(name);
        g.set_open_id(open_id);
    })
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Writes `names` as omkg does, before a measurement that reads them.
async fn write_keys(c: &Client, common: &Common, volume: &str, bucket: &str, names: &[String]) -> anyhow::Result<()> {
    let setup = Run::new(&Common { count: None, duration: None, ..common.clone() });
    for chunk in names.chunks(256) {
        let r = open_commit(c, volume, bucket, chunk, &setup).await;
        if let Some(e) = r.err().or_else(|| setup.stats.borrow().first_error.clone()) {
            anyhow::bail!("writing the keys the benchmark reads: {e}");
        }
    }
    Ok(())
}

pub fn omkg(a: OmkgArgs) -> anyhow::Result<()> {
    if a.dirs > 0 && a.common.om.starts_with("etcd") {
        // Refused rather than ignored: a run that meant directories would measure flat names.
        anyhow::bail!("omkg --dirs {}: the etcd targets write flat names (directories are for the S3 gateway's listings); leave --dirs out with --om {}", a.dirs, a.common.om);
    }
    if let Some(addr) = a.common.om.strip_prefix("etcd+grpc://") {
        #[cfg(feature = "etcd-grpc")]
        return etcd_grpc::omkg_etcd_grpc(addr.trim_end_matches('/').to_string(), a);
        #[cfg(not(feature = "etcd-grpc"))]
        anyhow::bail!("omkg --om etcd+grpc://{addr}: this build has no etcd gRPC client; build with `cargo build --release --features etcd-grpc` (needs Debian's protobuf-compiler), as bench/etcd.sh does");
    }
    if let Some(addr) = a.common.om.strip_prefix("etcd://") {
        return omkg_etcd(addr.trim_end_matches('/').to_string(), a);
    }
    on_executor(a.common.cpu, move || {
        Box::pin(async move {
            let clients = Rc::new(connect(&a.common).await?);
            ensure_bucket(&clients[0], &a.volume, &a.bucket).await?;
            let run = Run::new(&a.common);
            let what = title("omkg", &a.common);
            run.show_progress(what.clone());
            let (prefix, batch, dirs) = (format!("k{:08x}", rand::random::<u32>()), u64::from(a.batch.max(1)), a.dirs);
            let (volume, bucket, common) = (Rc::new(a.volume.clone()), Rc::new(a.bucket.clone()), Rc::new(a.common.clone()));
            let r = run.clone();
            let name = move |i: u64| if dirs == 0 { format!("{prefix}/{i:012}") } else { format!("d{:06}/{prefix}/{i:012}", i % dirs) };
            drive(&a.common, &run, batch, move |seq| {
                let names: Vec<String> = (0..batch).map(|i| common.key(name(seq * batch + i))).collect();
                let (c, run, volume, bucket) = (pick(&clients, seq), r.clone(), volume.clone(), bucket.clone());
                async move { open_commit(&c, &volume, &bucket, &names, &run).await }
            })
            .await;
            run.report(&what, "keys", &a.common)
        })
    })?
}

pub fn lookup(a: LookupArgs) -> anyhow::Result<()> {
    on_executor(a.common.cpu, move || {
        Box::pin(async move {
            let clients = Rc::new(connect(&a.common).await?);
            let c0 = clients[0].clone();
            ensure_bucket(&c0, &a.volume, &a.bucket).await?;
            let names: Rc<Vec<String>> = Rc::new((0..a.keys.max(1)).map(|i| a.common.key(format!("lookup/{i:010}"))).collect());
            write_keys(&c0, &a.common, &a.volume, &a.bucket, &names).await?;
            let (vol, bkt) = (Rc::new(a.volume.clone()), Rc::new(a.bucket.clone()));
            let batch = a.batch.max(1) as usize;
            let what = title(&if batch == 1 { "lookup".to_string() } else { format!("lookup --batch {batch}") }, &a.common);
            let run = Run::new(&a.common);
            run.show_progress(what.clone());
            drive(&a.common, &run, batch as u64, move |seq| {
                let first = (seq as usize).wrapping_mul(104_729) % names.len();
                let (c, names, vol, bkt) = (pick(&clients, seq), names.clone(), vol.clone(), bkt.clone());
                async move {
                    if batch == 1 {
                        return c.lookup_key(&vol, &bkt, &names[first]).await.map(|_| (1, 0)).map_err(|e| e.to_string());
                    }
                    let keys: Vec<&str> = (0..batch).map(|j| names[(first + j * 7) % names.len()].as_str()).collect();
                    // Every key was written: a missing one is an error, not a lookup.
                    let found = c.lookup_keys(&vol, &bkt, &keys).await.map_err(|e| e.to_string())?;
                    found.into_iter().try_for_each(|r| r.map(|_| ())).map(|_| (batch as u64, 0)).map_err(|e| e.to_string())
                }
            })
            .await;
            run.report(&what, "lookups", &a.common)
        })
    })?
}

pub fn ome(a: OmeArgs) -> anyhow::Result<()> {
    on_executor(a.common.cpu, move || {
        Box::pin(async move {
            let clients = Rc::new(connect(&a.common).await?);
            let (payload, raft) = (Rc::new(vec![7u8; a.payload_bytes]), a.raft);
            let what = title(if a.raft { "ome --raft" } else { "ome" }, &a.common);
            let run = Run::new(&a.common);
            run.show_progress(what.clone());
            drive(&a.common, &run, 1, move |seq| {
                let (c, payload) = (pick(&clients, seq), payload.clone());
                async move { c.echo(&payload, raft).await.map(|_| (1, 0)).map_err(|e| e.to_string()) }
            })
            .await;
            run.report(&what, "calls", &a.common)
        })
    })?
}

/// Freon's ombg: bucket creations in one volume (meta-group writes), one per call.
pub fn ombg(a: OmbgArgs) -> anyhow::Result<()> {
    on_executor(a.common.cpu, move || {
        Box::pin(async move {
            let clients = Rc::new(connect(&a.common).await?);
            ensure_volume(&clients[0], &a.volume).await?;
            let what = title("ombg", &a.common);
            let run = Run::new(&a.common);
            run.show_progress(what.clone());
            let (tag, volume) = (rand::random::<u32>(), Rc::new(a.volume.clone()));
            drive(&a.common, &run, 1, move |seq| {
                let (c, volume) = (pick(&clients, seq), volume.clone());
                async move {
                    let name = format!("b{tag:08x}-{seq}");
                    c.submit(|op| {
                        let mut g = op.init_create_bucket();
                        g.set_volume(volume.as_str());
                        g.set_bucket(name.as_str());
                    })
                    .await
                    .map(|_| (1, 0))
                    .map_err(|e| e.to_string())
                }
            })
            .await;
            run.report(&what, "buckets", &a.common)
        })
    })?
}

/// Freon's ommg: a metadata mix, one operation per call, picked by weight: key creation (open
/// + commit), key lookup, a page of keys, bucket info.
pub fn ommg(a: OmmgArgs) -> anyhow::Result<()> {
    let weights = [a.create, a.lookup, a.list, a.info];
    let total: u32 = weights.iter().sum();
    anyhow::ensure!(total > 0, "every weight is 0: nothing to run");
    on_executor(a.common.cpu, move || {
        Box::pin(async move {
            let clients = Rc::new(connect(&a.common).await?);
            ensure_bucket(&clients[0], &a.volume, &a.bucket).await?;
            let names: Rc<Vec<String>> = Rc::new((0..a.keys.max(1)).map(|i| a.common.key(format!("ommg/{i:010}"))).collect());
            write_keys(&clients[0], &a.common, &a.volume, &a.bucket, &names).await?;
            let what = title("ommg", &a.common);
            let run = Run::new(&a.common);
            run.show_progress(what.clone());
            let (vol, bkt, tag, limit, common) = (Rc::new(a.volume.clone()), Rc::new(a.bucket.clone()), rand::random::<u32>(), a.list_limit, Rc::new(a.common.clone()));
            drive(&a.common, &run, 1, move |seq| {
                let (c, names, vol, bkt) = (pick(&clients, seq), names.clone(), vol.clone(), bkt.clone());
                // A fixed, well-mixed sequence (no RNG state to share).
                let x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (seq >> 7).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                let mut pick = (x >> 33) as u32 % total;
                let kind = weights.iter().position(|wt| {
                    if pick < *wt {
                        true
                    } else {
                        pick -= wt;
                        false
                    }
                });
                let key = names[(x % names.len() as u64) as usize].clone();
                let new_key = common.key(format!("ommg-new/{tag:08x}-{seq}"));
                async move {
                    match kind {
                        Some(0) => create_key(&c, &vol, &bkt, &new_key).await,
                        Some(1) => c.lookup_key(&vol, &bkt, &key).await.map(|_| ()).map_err(|e| e.to_string()),
                        Some(2) => c.list_keys(&vol, &bkt, "ommg/", &key, limit).await.map(|_| ()).map_err(|e| e.to_string()),
                        _ => c.bucket_info(&vol, &bkt).await.map(|_| ()).map_err(|e| e.to_string()),
                    }
                    .map(|_| (1, 0))
                }
            })
            .await;
            run.report(&what, "operations", &a.common)
        })
    })?
}
