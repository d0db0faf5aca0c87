//! Load generators against a running OM, as Ozone's freon names them: `omkg` (open + commit
//! keys, metadata only), `lookup`, and `ome` (echo). Closed loop: `-t` workers, each with one
//! call in flight; a call carries `--batch` keys (the `batch` RPC), so keys in flight are
//! `t × batch`. Latency is per call, from send to reply (HDR histogram, µs). `omkg --rate`
//! runs open loop instead, at a fixed arrival rate, with latency from the intended send time.
//! For omkg one op is one key: an open and a commit, two durable Raft writes.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use stratos_client::{Client, Done};

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The OM (host:port).
    #[arg(long, default_value = "127.0.0.1:9862", env = "STRATOS_OM")]
    pub om: String,
    /// Concurrent workers (each one call in flight).
    #[arg(short = 't', long, default_value_t = 16)]
    pub threads: usize,
    /// Connections the workers share (round robin).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Run time in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
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

struct Stats {
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    latency_us: Histogram<u64>,
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

fn report(name: &str, unit: &str, s: &Stats, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    let h = &s.latency_us;
    println!(
        "{name}: {:.0} {unit}/s ({} {unit} in {secs:.2} s), call latency µs p50 {} p90 {} p99 {} p99.9 {} max {}, errors {}{}",
        s.ops as f64 / secs,
        s.ops,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        s.errors,
        s.first_error.as_ref().map_or(String::new(), |e| format!(" (first: {e})"))
    );
}

async fn connect(c: &Common) -> anyhow::Result<Vec<Rc<Client>>> {
    let mut out = Vec::new();
    for _ in 0..c.connections.max(1) {
        out.push(Rc::new(Client::connect(&c.om, "root").await?));
    }
    Ok(out)
}

async fn ensure_bucket(c: &Client, volume: &str, bucket: &str) -> anyhow::Result<()> {
    let v = c.submit(|op| {
        let mut g = op.init_create_volume();
        g.set_volume(volume);
        g.set_owner("root");
    });
    match v.await {
        Ok(_) => {}
        Err(e) if e.to_string().contains("ALREADY_EXISTS") => {}
        Err(e) => return Err(e.into()),
    }
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

fn new_stats() -> Rc<RefCell<Stats>> {
    Rc::new(RefCell::new(Stats { ops: 0, errors: 0, first_error: None, latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds") }))
}

fn record_error(s: &RefCell<Stats>, e: String) {
    let mut s = s.borrow_mut();
    s.errors += 1;
    s.first_error.get_or_insert(e);
}

/// Closed loop: `threads` workers until `duration` has passed, each repeating
/// `call(client, worker, round)`; an Ok counts one op and its latency, an Err one error.
/// Each worker calls `call` back to back until the deadline; a call that succeeds counts
/// `ops_per_call` operations and one latency sample.
async fn closed_loop<T, Fut>(
    common: &Common, clients: &[Rc<Client>], ops_per_call: u64, call: impl Fn(Rc<Client>, usize, u64) -> Fut + Clone + 'static,
) -> (Rc<RefCell<Stats>>, Duration)
where
    Fut: std::future::Future<Output = Result<T, stratos_client::ClientError>>,
{
    let stats = new_stats();
    let deadline = Instant::now() + Duration::from_secs_f64(common.duration);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..common.threads {
        let (c, stats, call) = (clients[w % clients.len()].clone(), stats.clone(), call.clone());
        tasks.push(glommio::spawn_local(async move {
            let mut round = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match call(c.clone(), w, round).await {
                    Ok(_) => {
                        let mut s = stats.borrow_mut();
                        s.ops += ops_per_call;
                        let _ = s.latency_us.record((t0.elapsed().as_micros() as u64).max(1));
                    }
                    Err(e) => record_error(&stats, e.to_string()),
                }
                round += 1;
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    (stats, start.elapsed())
}

/// Opens `names` in one `batch` call and commits them in the next; counts committed keys and
/// errors in `stats`. False if a call failed as a whole (no latency sample then).
async fn open_commit(c: &Client, volume: &str, bucket: &str, names: &[String], stats: &RefCell<Stats>) -> bool {
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
            record_error(stats, e.to_string());
            return false;
        }
    };
    let mut todo: Vec<(usize, u64)> = Vec::with_capacity(names.len());
    for (i, o) in opened.into_iter().enumerate() {
        match o {
            Ok(Done::KeyOpened { open_id, .. }) => todo.push((i, open_id)),
            Ok(other) => record_error(stats, format!("{other:?}")),
            Err(e) => record_error(stats, e.to_string()),
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
            let mut s = stats.borrow_mut();
            for o in outs {
                match o {
                    Ok(_) => s.ops += 1,
                    Err(e) => {
                        s.errors += 1;
                        s.first_error.get_or_insert(e.to_string());
                    }
                }
            }
            true
        }
        Err(e) => {
            record_error(stats, e.to_string());
            false
        }
    }
}

pub fn omkg(a: OmkgArgs) -> anyhow::Result<()> {
    let cpu = a.common.cpu;
    on_executor(cpu, move || {
        Box::pin(async move {
            let clients = connect(&a.common).await?;
            ensure_bucket(&clients[0], &a.volume, &a.bucket).await?;
            let stats = new_stats();
            let duration = Duration::from_secs_f64(a.common.duration);
            let start = Instant::now();
            let deadline = start + duration;
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
                        if due >= deadline {
                            break;
                        }
                        let now = Instant::now();
                        if due > now {
                            glommio::timer::sleep(due - now).await;
                        }
                        let (c, stats, slots, volume, bucket) = (clients[unit as usize % clients.len()].clone(), stats.clone(), slots.clone(), volume.clone(), bucket.clone());
                        let names = names_of(&prefix, unit);
                        tasks.push(glommio::spawn_local(async move {
                            let Ok(_permit) = slots.acquire_permit(1).await else { return };
                            if open_commit(&c, &volume, &bucket, &names, &stats).await {
                                let _ = stats.borrow_mut().latency_us.record((due.elapsed().as_micros() as u64).max(1));
                            }
                        }));
                        unit += 1;
                    }
                }
                // Closed loop: -t workers, each with one call in flight.
                None => {
                    for w in 0..a.common.threads {
                        let (c, stats, volume, bucket, prefix) = (clients[w % clients.len()].clone(), stats.clone(), volume.clone(), bucket.clone(), prefix.clone());
                        tasks.push(glommio::spawn_local(async move {
                            let mut unit = w as u64;
                            while Instant::now() < deadline {
                                let names = names_of(&prefix, unit);
                                unit += a.common.threads as u64;
                                let t0 = Instant::now();
                                if open_commit(&c, &volume, &bucket, &names, &stats).await {
                                    let _ = stats.borrow_mut().latency_us.record((t0.elapsed().as_micros() as u64).max(1));
                                }
                            }
                        }));
                    }
                }
            }
            for t in tasks {
                t.await;
            }
            let what = match a.rate {
                Some(r) => format!("omkg --rate {r}"),
                None => "omkg".to_string(),
            };
            report(&what, "keys", &stats.borrow(), start.elapsed());
            Ok::<_, anyhow::Error>(())
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
            // The keys to look up, written as omkg writes them.
            let setup = new_stats();
            for chunk in names.chunks(256) {
                if !open_commit(&c0, &a.volume, &a.bucket, chunk, &setup).await || setup.borrow().errors > 0 {
                    anyhow::bail!("writing the keys to look up: {}", setup.borrow().first_error.clone().unwrap_or_default());
                }
            }
            let (vol, bkt) = (Rc::new(a.volume.clone()), Rc::new(a.bucket.clone()));
            let batch = a.batch.max(1) as usize;
            let (stats, elapsed) = closed_loop(&a.common, &clients, batch as u64, move |c, w, round| {
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
            let what = if batch == 1 { "lookup".to_string() } else { format!("lookup --batch {batch}") };
            report(&what, "lookups", &stats.borrow(), elapsed);
            Ok::<_, anyhow::Error>(())
        })
    })?
}

pub fn ome(a: OmeArgs) -> anyhow::Result<()> {
    let cpu = a.common.cpu;
    on_executor(cpu, move || {
        Box::pin(async move {
            let clients = connect(&a.common).await?;
            let (payload, raft) = (Rc::new(vec![7u8; a.payload_bytes]), a.raft);
            let (stats, elapsed) = closed_loop(&a.common, &clients, 1, move |c, _, _| {
                let payload = payload.clone();
                async move { c.echo(&payload, raft).await }
            })
            .await;
            report(if a.raft { "ome --raft" } else { "ome" }, "calls", &stats.borrow(), elapsed);
            Ok::<_, anyhow::Error>(())
        })
    })?
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

/// Freon's ockg: the full write path with data. Each worker puts keys of `--size` random bytes
/// (open, write to every datanode of the pipeline, putBlock durable there, commit), one at a
/// time. Reports keys/s, MB/s and the share of opens that waited for the SCM.
pub fn ockg(a: OckgArgs) -> anyhow::Result<()> {
    let cpu = a.common.cpu;
    let before = a.http.as_deref().and_then(block_counters);
    let http = a.http.clone();
    let size = a.size;
    on_executor(cpu, move || {
        Box::pin(async move {
            let clients = connect(&a.common).await?;
            ensure_bucket(&clients[0], &a.volume, &a.bucket).await?;
            let data: Rc<Vec<u8>> = Rc::new((0..a.size).map(|i| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) as u8).collect());
            let stats = new_stats();
            let deadline = Instant::now() + Duration::from_secs_f64(a.common.duration);
            let start = Instant::now();
            let run = rand::random::<u32>();
            let mut tasks = Vec::new();
            for w in 0..a.common.threads {
                let (c, stats, data, volume, bucket) = (clients[w % clients.len()].clone(), stats.clone(), data.clone(), a.volume.clone(), a.bucket.clone());
                tasks.push(glommio::spawn_local(async move {
                    let mut dns = stratos_client::data::Datanodes::default();
                    let mut round = 0u64;
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        let key = format!("ockg-{run:08x}-{w}-{round}");
                        match stratos_client::data::put(&c, &mut dns, &volume, &bucket, &key, &*data, &mut |_| {}).await {
                            Ok(_) => {
                                let mut s = stats.borrow_mut();
                                s.ops += 1;
                                let _ = s.latency_us.record((t0.elapsed().as_micros() as u64).max(1));
                            }
                            Err(e) => record_error(&stats, e.to_string()),
                        }
                        round += 1;
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
            let elapsed = start.elapsed();
            let s = stats.borrow();
            report(&format!("ockg {size} B"), "keys", &s, elapsed);
            println!("ockg {size} B: {:.1} MB/s of key data (each byte written to every datanode of its pipeline)", s.ops as f64 * size as f64 / elapsed.as_secs_f64() / 1e6);
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
