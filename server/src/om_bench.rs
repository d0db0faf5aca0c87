//! Load generators against a running cluster, named as Apache Ozone's freon names them:
//! `ombg` (buckets), `omkg` (open + commit keys, metadata only), `ockg` (keys with data through
//! the datanodes), `ockr` (read keys back and verify their bytes), `ommg` (a metadata mix),
//! `lookup`, and `ome` (echo).
//!
//! Closed loop: `-t` workers, each with one call in flight, until `--duration` has passed or
//! `-n` operations were started (whichever comes first; with `-n` alone there is no time
//! limit). `omkg --rate` runs open loop instead, at a fixed arrival rate, with latency from the
//! intended send time (no coordinated omission). For omkg one op is one key: an open and a
//! commit, two durable Raft writes. Every run prints ops/s, latency percentiles from an HDR
//! histogram (µs, per call), errors by kind, and with `--json FILE` writes the same and ops per
//! second over time (for `bench plot`); on a terminal a progress line shows live ops/s.

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
    /// etcd://HOST:PORT, to run the same workload on etcd (see bench/etcd.sh).
    #[arg(long, default_value = "127.0.0.1:9862", env = "STRATOS_OM")]
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
    /// Fixed arrival rate in keys per second (open loop; -t caps the calls in flight). Latency
    /// is measured from each call's intended send time. Default: closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
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
    #[arg(long, default_value_t = 4096)]
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
    fn report(&self, name: &str, unit: &str, json: Option<&PathBuf>) -> anyhow::Result<()> {
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
        if s.by_kind.len() > 1 || s.errors > 0 {
            println!("{name}: errors by kind: {}", s.by_kind.iter().map(|(k, n)| format!("{k} × {n}")).collect::<Vec<_>>().join(", "));
        }
        if let Some(path) = json {
            let v = serde_json::json!({
                "name": name, "unit": unit, "ops": s.ops, "seconds": secs, "opsPerSecond": s.ops as f64 / secs,
                "bytes": s.bytes, "errors": s.errors, "errorsByKind": s.by_kind,
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

/// Closed loop: `threads` workers, each calling `call(client, worker, round)` back to back
/// while the run lets it (time, -n); a call that succeeds counts `ops_per_call` operations and
/// one latency sample, one that fails an error.
async fn closed_loop<T, E: std::fmt::Display, Fut>(common: &Common, clients: &[Rc<Client>], run: &Rc<Run>, ops_per_call: u64, call: impl Fn(Rc<Client>, usize, u64) -> Fut + Clone + 'static)
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut tasks = Vec::new();
    for w in 0..common.threads {
        let (c, run, call) = (clients[w % clients.len()].clone(), run.clone(), call.clone());
        tasks.push(glommio::spawn_local(async move {
            let mut round = 0u64;
            while run.next(ops_per_call) {
                let t0 = Instant::now();
                match call(c.clone(), w, round).await {
                    Ok(_) => run.done(ops_per_call, 0, Some(t0)),
                    Err(e) => run.error(e.to_string()),
                }
                round += 1;
            }
        }));
    }
    for t in tasks {
        t.await;
    }
}

/// Opens `names` in one `batch` call and commits them in the next; counts committed keys and
/// errors in `run`. False if a call failed as a whole (no latency sample then).
async fn open_commit(c: &Client, volume: &str, bucket: &str, names: &[String], run: &Run) -> bool {
    let opened = c
        .batch(names.len() as u32, |i, op| {
            let mut g = op.init_open_key();
            g.set_volume(volume);
            g.set_bucket(bucket);
            g.set_key(names[i as usize].as_str());
            g.reborrow().init_replication().set_none(());
        })
        .await;
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            run.error(e.to_string());
            return false;
        }
    };
    let mut todo: Vec<(usize, u64)> = Vec::with_capacity(names.len());
    for (i, o) in opened.into_iter().enumerate() {
        match o {
            Ok(Done::KeyOpened { open_id, .. }) => todo.push((i, open_id)),
            Ok(other) => run.error(format!("{other:?}")),
            Err(e) => run.error(e.to_string()),
        }
    }
    if todo.is_empty() {
        return false;
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
        .await;
    match committed {
        Ok(outs) => {
            for o in outs {
                match o {
                    Ok(_) => run.done(1, 0, None),
                    Err(e) => run.error(e.to_string()),
                }
            }
            true
        }
        Err(e) => {
            run.error(e.to_string());
            false
        }
    }
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
        if !open_commit(c, volume, bucket, chunk, &setup).await || setup.stats.borrow().errors > 0 {
            anyhow::bail!("writing the keys the benchmark reads: {}", setup.stats.borrow().first_error.clone().unwrap_or_default());
        }
    }
    Ok(())
}

pub fn omkg(a: OmkgArgs) -> anyhow::Result<()> {
    if let Some(addr) = a.common.om.strip_prefix("etcd://") {
        return omkg_etcd(addr.trim_end_matches('/').to_string(), a);
    }
    let cpu = a.common.cpu;
    on_executor(cpu, move || {
        Box::pin(async move {
            let clients = connect(&a.common).await?;
            ensure_bucket(&clients[0], &a.volume, &a.bucket).await?;
            let run = Run::new(&a.common);
            let what = match a.rate {
                Some(r) => format!("omkg --rate {r}"),
                None => "omkg".to_string(),
            };
            run.show_progress(what.clone());
            let start = run.start;
            let prefix = Rc::new(format!("k{:08x}", rand::random::<u32>()));
            let (volume, bucket, batch) = (Rc::new(a.volume.clone()), Rc::new(a.bucket.clone()), a.batch.max(1));
            let names_of = move |prefix: &str, unit: u64| -> Vec<String> { (0..u64::from(batch)).map(|i| format!("{prefix}/{:012}", unit * u64::from(batch) + i)).collect() };
            let mut tasks = Vec::new();
            match a.rate {
                // Open loop: call j (of `batch` keys) is due at start + j·batch/rate; its latency
                // runs from that intended time, so waiting for a free slot (at most -t calls in
                // flight) counts, and a stall is not hidden (no coordinated omission).
                Some(rate) => {
                    let slots = Rc::new(glommio::sync::Semaphore::new(a.common.threads as u64));
                    let interval = Duration::from_secs_f64(f64::from(batch) / rate.max(1.0));
                    let mut unit = 0u64;
                    loop {
                        let due = start + interval.mul_f64(unit as f64);
                        if run.deadline.is_some_and(|d| due >= d) || !run.next(u64::from(batch)) {
                            break;
                        }
                        let now = Instant::now();
                        if due > now {
                            glommio::timer::sleep(due - now).await;
                        }
                        let (c, run, slots, volume, bucket) = (clients[unit as usize % clients.len()].clone(), run.clone(), slots.clone(), volume.clone(), bucket.clone());
                        let names = names_of(&prefix, unit);
                        tasks.push(glommio::spawn_local(async move {
                            let Ok(_permit) = slots.acquire_permit(1).await else { return };
                            if open_commit(&c, &volume, &bucket, &names, &run).await {
                                run.done(0, 0, Some(due));
                            }
                        }));
                        unit += 1;
                    }
                }
                // Closed loop: -t workers, each with one call in flight.
                None => {
                    for w in 0..a.common.threads {
                        let (c, run, volume, bucket, prefix) = (clients[w % clients.len()].clone(), run.clone(), volume.clone(), bucket.clone(), prefix.clone());
                        let threads = a.common.threads as u64;
                        tasks.push(glommio::spawn_local(async move {
                            let mut unit = w as u64;
                            while run.next(u64::from(batch)) {
                                let names = names_of(&prefix, unit);
                                unit += threads;
                                let t0 = Instant::now();
                                if open_commit(&c, &volume, &bucket, &names, &run).await {
                                    run.done(0, 0, Some(t0));
                                }
                            }
                        }));
                    }
                }
            }
            for t in tasks {
                t.await;
            }
            run.report(&what, "keys", a.common.json.as_ref())
        })
    })?
}

pub fn lookup(a: LookupArgs) -> anyhow::Result<()> {
    let cpu = a.common.cpu;
    on_executor(cpu, move || {
        Box::pin(async move {
            let clients = connect(&a.common).await?;
            let c0 = clients[0].clone();
            ensure_bucket(&c0, &a.volume, &a.bucket).await?;
            let names: Rc<Vec<String>> = Rc::new((0..a.keys).map(|i| format!("lookup/{i:010}")).collect());
            write_keys(&c0, &a.common, &a.volume, &a.bucket, &names).await?;
            let (vol, bkt) = (Rc::new(a.volume.clone()), Rc::new(a.bucket.clone()));
            let batch = a.batch.max(1) as usize;
            let what = if batch == 1 { "lookup".to_string() } else { format!("lookup --batch {batch}") };
            let run = Run::new(&a.common);
            run.show_progress(what.clone());
            closed_loop(&a.common, &clients, &run, batch as u64, move |c, w, round| {
                let first = (w * 7919 + round as usize * 104_729) % names.len();
                let (names, vol, bkt) = (names.clone(), vol.clone(), bkt.clone());
                async move {
                    if batch == 1 {
                        return c.lookup_key(&vol, &bkt, &names[first]).await.map(|_| ());
                    }
                    let keys: Vec<&str> = (0..batch).map(|j| names[(first + j * 7) % names.len()].as_str()).collect();
                    // Every key was written: a missing one is an error, not a lookup.
                    c.lookup_keys(&vol, &bkt, &keys).await?.into_iter().try_for_each(|r| r.map(|_| ()))
                }
            })
            .await;
            run.report(&what, "lookups", a.common.json.as_ref())
        })
    })?
}

pub fn ome(a: OmeArgs) -> anyhow::Result<()> {
    let cpu = a.common.cpu;
    on_executor(cpu, move || {
        Box::pin(async move {
            let clients = connect(&a.common).await?;
            let (payload, raft) = (Rc::new(vec![7u8; a.payload_bytes]), a.raft);
            let what = if a.raft { "ome --raft" } else { "ome" };
            let run = Run::new(&a.common);
            run.show_progress(what.to_string());
            closed_loop(&a.common, &clients, &run, 1, move |c, _, _| {
                let payload = payload.clone();
                async move { c.echo(&payload, raft).await }
            })
            .await;
            run.report(what, "calls", a.common.json.as_ref())
        })
    })?
}

/// Freon's ombg: bucket creations in one volume (meta-group writes), one per call.
pub fn ombg(a: OmbgArgs) -> anyhow::Result<()> {
    let cpu = a.common.cpu;
    on_executor(cpu, move || {
        Box::pin(async move {
            let clients = connect(&a.common).await?;
            ensure_volume(&clients[0], &a.volume).await?;
            let run = Run::new(&a.common);
            run.show_progress("ombg".into());
            let (tag, volume) = (rand::random::<u32>(), Rc::new(a.volume.clone()));
            closed_loop(&a.common, &clients, &run, 1, move |c, w, round| {
                let volume = volume.clone();
                async move {
                    let name = format!("b{tag:08x}-{w}-{round}");
                    c.submit(|op| {
                        let mut g = op.init_create_bucket();
                        g.set_volume(volume.as_str());
                        g.set_bucket(name.as_str());
                    })
                    .await
                }
            })
            .await;
            run.report("ombg", "buckets", a.common.json.as_ref())
        })
    })?
}

/// Freon's ommg: a metadata mix, one operation per call, picked by weight: key creation (open
/// + commit), key lookup, a page of keys, bucket info.
pub fn ommg(a: OmmgArgs) -> anyhow::Result<()> {
    let weights = [a.create, a.lookup, a.list, a.info];
    let total: u32 = weights.iter().sum();
    anyhow::ensure!(total > 0, "every weight is 0: nothing to run");
    let cpu = a.common.cpu;
    on_executor(cpu, move || {
        Box::pin(async move {
            let clients = connect(&a.common).await?;
            ensure_bucket(&clients[0], &a.volume, &a.bucket).await?;
            let names: Rc<Vec<String>> = Rc::new((0..a.keys.max(1)).map(|i| format!("ommg/{i:010}")).collect());
            write_keys(&clients[0], &a.common, &a.volume, &a.bucket, &names).await?;
            let run = Run::new(&a.common);
            run.show_progress("ommg".into());
            let (vol, bkt, tag, limit) = (Rc::new(a.volume.clone()), Rc::new(a.bucket.clone()), rand::random::<u32>(), a.list_limit);
            closed_loop(&a.common, &clients, &run, 1, move |c, w, round| {
                let (names, vol, bkt) = (names.clone(), vol.clone(), bkt.clone());
                // A fixed, well-mixed sequence per worker (no RNG state to share).
                let x = (w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ round.wrapping_mul(0xBF58_476D_1CE4_E5B9);
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
                async move {
                    let r: Result<(), String> = match kind {
                        Some(0) => create_key(&c, &vol, &bkt, &format!("ommg-new/{tag:08x}-{w}-{round}")).await,
                        Some(1) => c.lookup_key(&vol, &bkt, &key).await.map(|_| ()).map_err(|e| e.to_string()),
                        Some(2) => c.list_keys(&vol, &bkt, "ommg/", &key, limit).await.map(|_| ()).map_err(|e| e.to_string()),
                        _ => c.bucket_info(&vol, &bkt).await.map(|_| ()).map_err(|e| e.to_string()),
                    };
                    r
                }
            })
            .await;
            run.report("ommg", "operations", a.common.json.as_ref())
        })
    })?
}

/// (takes, waits) summed over the OM's cores, from its /prom page.
fn block_counters(http: &str) -> Option<(u64, u64)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(http).ok()?;
    write!(s, "GET /prom HTTP/1.0\r\n\r\n").ok()?;
    let mut page = String::new();
    s.read_to_string(&mut page).ok()?;
    let sum = |family: &str| -> u64 { page.lines().filter(|l| l.starts_with(family)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum() };
    Some((sum("stratos_om_block_takes_total{"), sum("stratos_om_block_waits_total{")))
}

/// The bytes ockg writes as `key` (`size` of them): the key's name, then a fixed pattern. ockr
/// checks every byte against this.
fn content(pattern: &[u8], key: &str) -> Vec<u8> {
    let mut v = pattern.to_vec();
    let n = key.len().min(v.len());
    v[..n].copy_from_slice(&key.as_bytes()[..n]);
    v
}

fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) as u8).collect()
}

/// Freon's ockg: the full write path with data. Each worker puts keys of `--size` bytes (open,
/// write to every datanode of the pipeline, putBlock durable there, commit), one at a time.
/// Reports keys/s, MB/s and the share of opens that waited for the SCM.
pub fn ockg(a: OckgArgs) -> anyhow::Result<()> {
    let cpu = a.common.cpu;
    let before = a.http.as_deref().and_then(block_counters);
    let http = a.http.clone();
    let size = a.size;
    on_executor(cpu, move || {
        Box::pin(async move {
            let clients = connect(&a.common).await?;
            ensure_bucket(&clients[0], &a.volume, &a.bucket).await?;
            let pattern = Rc::new(pattern(a.size));
            let run = Run::new(&a.common);
            let name = format!("ockg {size} B");
            run.show_progress(name.clone());
            let tag = rand::random::<u32>();
            let mut tasks = Vec::new();
            for w in 0..a.common.threads {
                let (c, run, pattern, volume, bucket) = (clients[w % clients.len()].clone(), run.clone(), pattern.clone(), a.volume.clone(), a.bucket.clone());
                tasks.push(glommio::spawn_local(async move {
                    let mut dns = stratos_client::data::Datanodes::default();
                    let mut round = 0u64;
                    while run.next(1) {
                        let t0 = Instant::now();
                        let key = format!("ockg-{tag:08x}-{w}-{round}");
                        let data = content(&pattern, &key);
                        match stratos_client::data::put(&c, &mut dns, &volume, &bucket, &key, &data, &mut |_| {}).await {
                            Ok(n) => run.done(1, n, Some(t0)),
                            Err(e) => run.error(e.to_string()),
                        }
                        round += 1;
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
            run.report(&name, "keys", a.common.json.as_ref())?;
            let s = run.stats.borrow();
            println!("{name}: {:.1} MB/s of key data (each byte written to every datanode of its pipeline)", s.bytes as f64 / run.start.elapsed().as_secs_f64() / 1e6);
            anyhow::Ok(())
        })
    })??;
    match (before, http.as_deref().and_then(block_counters)) {
        (Some((t0, w0)), Some((t1, w1))) if t1 > t0 => {
            println!("ockg: {} of {} block takes waited for the SCM ({:.3}%)", w1 - w0, t1 - t0, (w1 - w0) as f64 * 100.0 / (t1 - t0) as f64)
        }
        _ => println!("ockg: share of opens that waited for the SCM unknown (give --http with the OM's HTTP address)"),
    }
    Ok(())
}

/// Freon's ockr: reads back the keys ockg wrote (names starting with `--prefix`) and checks
/// every byte; a key whose bytes differ is an error of kind `content differs`.
pub fn ockr(a: OckrArgs) -> anyhow::Result<()> {
    let cpu = a.common.cpu;
    on_executor(cpu, move || {
        Box::pin(async move {
            let clients = connect(&a.common).await?;
            let mut names = Vec::new();
            let mut start = String::new();
            loop {
                let (page, more) = clients[0].list_keys(&a.volume, &a.bucket, &a.prefix, &start, 1000).await?;
                for k in &page {
                    names.push((k["name"].as_str().unwrap_or_default().to_string(), k["dataSize"].as_u64().unwrap_or(0)));
                }
                match names.last() {
                    Some((last, _)) if more => start = last.clone(),
                    _ => break,
                }
            }
            anyhow::ensure!(!names.is_empty(), "no keys under /{}/{}/{}* to read (run ockg first)", a.volume, a.bucket, a.prefix);
            eprintln!("ockr: {} keys to read", names.len());
            let names = Rc::new(names);
            let run = Run::new(&a.common);
            run.show_progress("ockr".into());
            let next = Rc::new(Cell::new(0usize));
            let patterns: Rc<RefCell<BTreeMap<u64, Rc<Vec<u8>>>>> = Rc::default();
            let mut tasks = Vec::new();
            for w in 0..a.common.threads {
                let (c, run, names, next, patterns, volume, bucket) = (clients[w % clients.len()].clone(), run.clone(), names.clone(), next.clone(), patterns.clone(), a.volume.clone(), a.bucket.clone());
                tasks.push(glommio::spawn_local(async move {
                    let mut dns = stratos_client::data::Datanodes::default();
                    loop {
                        // Each key once, in list order, unless -n or the time ends it first.
                        let i = next.get();
                        if i >= names.len() || !run.next(1) {
                            break;
                        }
                        next.set(i + 1);
                        let (key, size) = &names[i];
                        let t0 = Instant::now();
                        let mut out = Vec::with_capacity(*size as usize);
                        match stratos_client::data::get_key(&c, &mut dns, &volume, &bucket, key, &mut out, &mut |_| {}).await {
                            Ok(n) => {
                                let p = patterns.borrow_mut().entry(n).or_insert_with(|| Rc::new(pattern(n as usize))).clone();
                                if out == content(&p, key) {
                                    run.done(1, n, Some(t0));
                                } else {
                                    run.error(format!("content differs: /{volume}/{bucket}/{key}"));
                                }
                            }
                            Err(e) => run.error(e.to_string()),
                        }
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
            run.report("ockr", "keys", a.common.json.as_ref())?;
            let s = run.stats.borrow();
            println!("ockr: {:.1} MB/s read and verified", s.bytes as f64 / run.start.elapsed().as_secs_f64() / 1e6);
            anyhow::Ok(())
        })
    })?
}

/// `omkg --om etcd://HOST:PORT`: the same workload against etcd, for a side-by-side ratio
/// (bench/etcd.sh). The mapping keeps the durable replicated writes per key equal: Stratos
/// writes a key as an open (one Raft entry on the key's shard) and a commit (another), so on
/// etcd one key is a put of the open record (`/open/<key>`) and then one transaction that puts
/// the key and deletes its open record: two etcd Raft entries, each fdatasync'ed on a majority
/// before etcd answers, as Stratos's are. Values are 128 bytes (about a Stratos key record).
/// etcd has no multi-key batch in this mapping, so each worker (`-t`) has one key in flight;
/// compare at equal `-t` (in-flight requests), Stratos's batching being part of what is
/// compared. The client speaks etcd's v3 JSON gateway (HTTP/1.1 keep-alive, one connection
/// per worker), which costs etcd some CPU that its gRPC API would not.
fn omkg_etcd(addr: String, a: OmkgArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.rate.is_none(), "--rate is not supported with an etcd target");
    on_executor(a.common.cpu, move || {
        Box::pin(async move {
            let run = Run::new(&a.common);
            run.show_progress("omkg (etcd)".into());
            let prefix = Rc::new(format!("{}/{}/k{:08x}", a.volume, a.bucket, rand::random::<u32>()));
            let value = b64(&[b'v'; 128]);
            let mut tasks = Vec::new();
            for w in 0..a.common.threads {
                let (run, prefix, value, addr) = (run.clone(), prefix.clone(), value.clone(), addr.clone());
                tasks.push(glommio::spawn_local(async move {
                    let mut conn = match Http::connect(&addr).await {
                        Ok(c) => c,
                        Err(e) => return run.error(e),
                    };
                    let mut i = 0u64;
                    while run.next(1) {
                        let key = format!("{prefix}/{w:04}/{i:012}");
                        i += 1;
                        let (k, open) = (b64(key.as_bytes()), b64(format!("/open/{key}").as_bytes()));
                        let t0 = Instant::now();
                        let put = format!(r#"{{"key":"{open}","value":"{value}"}}"#);
                        let txn = format!(r#"{{"success":[{{"requestPut":{{"key":"{k}","value":"{value}"}}}},{{"requestDeleteRange":{{"key":"{open}"}}}}]}}"#);
                        let r = match conn.post("/v3/kv/put", &put).await {
                            Ok(_) => conn.post("/v3/kv/txn", &txn).await,
                            Err(e) => Err(e),
                        };
                        match r {
                            Ok(_) => run.done(1, 0, Some(t0)),
                            Err(e) => {
                                run.error(e);
                                match Http::connect(&addr).await {
                                    Ok(c) => conn = c,
                                    Err(e) => return run.error(e),
                                }
                            }
                        }
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
            run.report("omkg (etcd)", "keys", a.common.json.as_ref())
        })
    })?
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if k <= c.len() { A[(n >> shift) as usize & 63] as char } else { '=' });
        }
    }
    out
}

/// A minimal HTTP/1.1 keep-alive client for etcd's JSON gateway (answers carry Content-Length).
struct Http {
    stream: futures_lite::io::BufReader<glommio::net::TcpStream>,
    host: String,
}

impl Http {
    async fn connect(addr: &str) -> Result<Http, String> {
        let s = glommio::net::TcpStream::connect(addr).await.map_err(|e| format!("etcd at {addr}: {e}"))?;
        let _ = s.set_nodelay(true);
        Ok(Http { stream: futures_lite::io::BufReader::new(s), host: addr.to_string() })
    }

    /// POSTs `body`; the answer's body if the status is 200.
    async fn post(&mut self, path: &str, body: &str) -> Result<Vec<u8>, String> {
        use futures_lite::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let req = format!("POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", self.host, body.len());
        let io = |e: std::io::Error| format!("etcd: {e}");
        self.stream.get_mut().write_all(req.as_bytes()).await.map_err(io)?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await.map_err(io)?;
        let status = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut length = None;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await.map_err(io)? == 0 {
                return Err("etcd closed the connection".into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let Some(length) = length.filter(|n| *n <= 1 << 20) else { return Err("etcd: an answer without a usable Content-Length".into()) };
        let mut out = vec![0; length];
        self.stream.read_exact(&mut out).await.map_err(io)?;
        if status != "200" {
            return Err(format!("etcd: HTTP {status}: {}", String::from_utf8_lossy(&out[..out.len().min(200)])));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod etcd_tests {
    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(super::b64(b""), "");
        assert_eq!(super::b64(b"f"), "Zg==");
        assert_eq!(super::b64(b"fo"), "Zm8=");
        assert_eq!(super::b64(b"foo"), "Zm9v");
        assert_eq!(super::b64(b"foobar"), "Zm9vYmFy");
    }
}
