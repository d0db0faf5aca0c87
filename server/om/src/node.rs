//! An OM node: formats or opens the data directory, starts one pinned glommio executor per
//! core with its groups, listeners and mesh, prints `ready`, and stops cleanly on SIGTERM or
//! SIGINT (every group's WAL is synced; kill -9 loses nothing acknowledged either, since an
//! acknowledgement waits for fdatasync).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use glommio::{LocalExecutorBuilder, Placement};
use stratos_common::process::{install_signal_handlers, wait_stop};
use stratos_raft::group::{Group, GroupConfig};
use stratos_raft::transport::{PeerAddr, Transport, answer_hello, read_hello};
use stratos_schema::om_capnp::ozone_manager;
use tokio::sync::mpsc;

use crate::coalesce::Coalesce;
use crate::config::OmConfig;
use crate::core::{Core, MESH_QUEUE_MAX, META_GROUP, MetaBroadcast, Msg, core_of_group};
use crate::meta_view::{MetaView, changes_of, full_view};
use crate::service::OmService;

/// The shards a new data directory gets when none are asked for (`shards` 0): one per executor
/// on a single node given fewer executors than CPUs, else one per CPU. Every group has its own
/// WAL, so two shards on one core make two group commits, each flushing about half of what the
/// core writes: on the 2-vCPU VM `om --executors 1` with two shards took 1.3-2.2× the flushes of
/// one and more CPU per key in every measured pair (docs/om.md, "Shape"). A cluster keeps one
/// per CPU: its leaders spread over its nodes by shard.
fn default_shards(executors: usize, cluster: bool, cpus: usize) -> u32 {
    let n = if executors != 0 && !cluster { executors.min(cpus) } else { cpus };
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

/// The shard count is fixed when a data directory is formatted: it decides where keys live.
/// `shards` 0 formats `default` (see [`default_shards`]).
fn format_or_check(dir: &Path, shards: u32, default: u32) -> anyhow::Result<u32> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    let path = dir.join("FORMAT");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let stored: u32 = s
                .lines()
                .find_map(|l| l.strip_prefix("shards="))
                .and_then(|v| v.trim().parse().ok())
                .with_context(|| format!("{} is not a Stratos format file", path.display()))?;
            if shards != 0 && shards != stored {
                bail!("{} was formatted with {stored} shards; --shards {shards} cannot change that", dir.display());
            }
            Ok(stored)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let n = if shards == 0 { default } else { shards };
            // Group ids are the top bits of every object id (see `GROUP_ID_BITS`).
            let max = stratos_shard::constants::SHARDS_MAX;
            if n > max {
                bail!("{n} shards: a cluster has at most {max} key shards (their group ids are part of every object id)");
            }
            let tmp = dir.join("FORMAT.tmp");
            std::fs::write(&tmp, format!("stratos-om-format=1\nshards={n}\n"))?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()?;
            Ok(n)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// What a started node tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    pub rpc: SocketAddr,
    pub http: Option<SocketAddr>,
    pub shards: u32,
    pub cores: usize,
}

impl Ready {
    /// "2 shards on 1 core": the layout, for ready lines.
    pub fn layout(&self) -> String {
        let s = |n: usize| if n == 1 { "" } else { "s" };
        format!("{} shard{} on {} core{}", self.shards, s(self.shards as usize), self.cores, s(self.cores))
    }
}

/// The most `meta_fence_interval_us` may be: every key request may wait that long for a fence.
pub const META_FENCE_INTERVAL_US_MAX: u64 = 1_000_000;

/// Runs an OM node until SIGTERM/SIGINT (or `stratos_common::process::request_stop`). `on_ready` is called once every
/// group has a leader and every listener is bound.
pub fn run(cfg: &OmConfig, on_ready: impl FnOnce(&Ready)) -> anyhow::Result<()> {
    // A thin generic shell over a function that is not: a generic function is compiled in each
    // crate that calls it, with every future it spawns, so the whole node was compiled again in
    // the `stratos` binary (240 of CI's 1,615 s of compiling, `cargo build --timings`).
    run_node(cfg, Box::new(on_ready))
}

fn run_node(cfg: &OmConfig, on_ready: Box<dyn FnOnce(&Ready) + '_>) -> anyhow::Result<()> {
    // Checked once, before anything starts (each core would otherwise report it).
    if !(cfg.snapshot_log_ratio.is_finite() && cfg.snapshot_log_ratio >= 0.0) {
        bail!("snapshot_log_ratio {} must be a number, 0 or more (0: no floor)", cfg.snapshot_log_ratio);
    }
    // A fence waits up to the interval, and a request's wait for its view gives up after 5 s.
    if cfg.meta_fence_interval_us > META_FENCE_INTERVAL_US_MAX {
        bail!("meta_fence_interval_us {} is more than {META_FENCE_INTERVAL_US_MAX} (one second)", cfg.meta_fence_interval_us);
    }
    if cfg.connection_calls_max == 0 {
        bail!("connection_calls_max must be at least 1 (calls one client connection may have in flight)");
    }
    install_signal_handlers();
    stratos_common::process::set_who(format!("om node {}", cfg.node_id));
    let data_dir = cfg.data_dir.clone().context("no data directory given")?;
    // One set of TLS files secures every link of the node: the client ports, Raft, the SCM,
    // HTTP. Loaded once here, before the data directory is touched, so that a wrong file stops
    // the start with its name and leaves nothing behind.
    let tls = cfg.tls_files()?.map(|f| stratos_common::tls::NodeTls::load(&f, stratos_common::tls::Role::Om)).transpose()?;
    let cluster = cfg.join || !cfg.peers.is_empty();
    if let Some(t) = &tls {
        t.check_host(&cfg.rpc_address.ip().to_string())?;
        if cluster {
            t.check_host(cfg.raft_address.rsplit_once(':').map_or("", |(h, _)| h))?;
        }
    }
    let host_cpus = stratos_common::process::host_cpus();
    let shards = format_or_check(&data_dir, cfg.shards, default_shards(cfg.executors, cluster, host_cpus))?;
    let cores = if cfg.executors == 0 { host_cpus } else { cfg.executors };
    let cores = cores.min(shards as usize).max(1);
    let mut senders = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..cores {
        let (tx, rx) = mpsc::channel::<Msg>(MESH_QUEUE_MAX);
        senders.push(tx);
        inboxes.push(Some(rx));
    }
    let members = cfg.members(cfg.rpc_address)?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<(usize, SocketAddr, Option<SocketAddr>, u16)>>();
    // Each core's own client port (see `OmConfig::core_ports`), published once all are bound.
    let core_ports: Arc<std::sync::OnceLock<Vec<u16>>> = Arc::default();
    let solo: Arc<crate::core::SoloMeta> = Arc::default();
    let mut handles = Vec::new();
    // Core 0 binds the client port first (claiming it; with port 0, learning which); the other
    // cores bind the same one once it tells. Until then every core opens its groups and waits
    // for their leaders in parallel with the others (see `start_core`).
    let mut binds = Vec::new();
    for index in 0..cores {
        let placement = match &cfg.cpus {
            Some(cpus) if !cpus.is_empty() => Placement::Fixed(cpus[index % cpus.len()]),
            _ if cfg.pin => Placement::Fixed(index % host_cpus),
            _ => Placement::Unbound,
        };
        let mesh = senders.clone();
        let inbox = inboxes[index].take().expect("one inbox per core");
        let cfg = cfg.clone();
        let data_dir = data_dir.clone();
        let ready_tx = ready_tx.clone();
        let members = members.clone();
        let ports = core_ports.clone();
        let solo = solo.clone();
        let tls = tls.clone();
        let bind = if index == 0 {
            Bind::Claim(cfg.rpc_address)
        } else {
            let (tx, rx) = tokio::sync::oneshot::channel();
            binds.push(tx);
            Bind::AfterCore0(rx)
        };
        let builder = LocalExecutorBuilder::new(placement).name(&format!("om-core-{index}")).io_memory(cfg.io_memory_bytes).spin_before_park(Duration::from_micros(cfg.spin_us));
        let handle = builder
            .spawn(move || async move {
                let started = start_core(index, cores, shards, &cfg, &data_dir, bind, members, mesh, inbox, ports, solo, tls).await;
                match started {
                    Ok((core, rpc, http, port)) => {
                        let _ = ready_tx.send(Ok((index, rpc, http, port)));
                        wait_stop().await;
                        stop_groups(&core).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.context(format!("core {index}"))));
                    }
                }
            })
            .map_err(|e| anyhow::anyhow!("starting executor {index}: {e}"))?;
        handles.push(handle);
    }
    let (mut rpc_addr, mut http_addr) = (cfg.rpc_address, None);
    let mut ports = vec![0u16; cores];
    for _ in 0..cores {
        let (index, rpc, http, port) = ready_rx.recv().context("a core stopped before it was ready")??;
        ports[index] = port;
        if index == 0 {
            (rpc_addr, http_addr) = (rpc, http);
            for tx in binds.drain(..) {
                let _ = tx.send(rpc);
            }
        }
    }
    let _ = core_ports.set(ports);
    on_ready(&Ready { rpc: rpc_addr, http: http_addr, shards, cores });
    for h in handles {
        h.join().map_err(|e| anyhow::anyhow!("an executor failed: {e:?}"))?;
    }
    Ok(())
}

/// How long a core's groups get to stop their Raft after SIGTERM or Ctrl-C.
const GROUP_STOP_WITHIN: Duration = Duration::from_secs(10);

/// Stops `core`'s groups' Raft (their tasks end, their logs are synced once more), together,
/// within [`GROUP_STOP_WITHIN`]. Past it the node stops anyway, naming the groups that held it:
/// a process asked to stop must stop (a service manager would kill it a minute or two later),
/// and nothing acknowledged is lost by it, since every entry was fdatasync'ed before it was
/// acknowledged (`stratos_raft::log`); the last sync only spares a restart re-appending entries
/// nobody was told of.
async fn stop_groups(core: &Core) {
    let running: Rc<RefCell<std::collections::BTreeSet<u32>>> = Rc::new(RefCell::new(core.groups.keys().copied().collect()));
    let stops = futures_util::future::join_all(core.groups.iter().map(|(id, g)| {
        let (id, g, running) = (*id, g.clone(), running.clone());
        async move {
            stratos_common::process::hang_point("raft-stop").await;
            g.shutdown().await;
            running.borrow_mut().remove(&id);
        }
    }));
    if glommio::timer::timeout(GROUP_STOP_WITHIN, async { Ok(stops.await) }).await.is_err() {
        eprintln!(
            "{} core {}: the Raft of group(s) {:?} did not stop within {GROUP_STOP_WITHIN:?}; stopping without it (every acknowledged write is already durable in its log)",
            stratos_common::process::who(),
            core.index,
            running.borrow()
        );
    }
}

/// Where a core binds the client port.
enum Bind {
    /// Core 0: this address, after making sure no other process listens there.
    Claim(SocketAddr),
    /// The other cores: the address core 0 bound, once it has (SO_REUSEPORT).
    AfterCore0(tokio::sync::oneshot::Receiver<SocketAddr>),
}

#[allow(clippy::too_many_arguments)]
async fn start_core(
    index: usize, cores: usize, shards: u32, cfg: &OmConfig, data_dir: &Path, bind: Bind, members: BTreeMap<u64, PeerAddr>, mesh: Vec<mpsc::Sender<Msg>>,
    inbox: mpsc::Receiver<Msg>, core_ports: Arc<std::sync::OnceLock<Vec<u16>>>, solo: Arc<crate::core::SoloMeta>, tls: Option<stratos_common::tls::NodeTls>,
) -> anyhow::Result<(Rc<Core>, SocketAddr, Option<SocketAddr>, u16)> {
    let clustered = members.len() > 1 || cfg.join;
    let transport = Transport::new(cfg.node_id, cores as u32, index as u32, shards, tls.as_ref().map(|t| t.client.clone()));
    let gcfg = GroupConfig {
        node_id: cfg.node_id,
        members,
        join: cfg.join,
        election_timeout_min_ms: cfg.election_timeout_min_ms,
        election_timeout_max_ms: cfg.election_timeout_max_ms,
        heartbeat_interval_ms: cfg.heartbeat_interval_ms,
        snapshot_after_entries: cfg.snapshot_after_entries,
        snapshot_after_bytes: cfg.snapshot_after_bytes,
        snapshot_log_ratio: cfg.snapshot_log_ratio,
        snapshot_logs_to_keep: cfg.snapshot_logs_to_keep,
        wal_segment_bytes: cfg.wal_segment_bytes,
        wal_spare_segment: cfg.wal_spare_segment,
    };
    let mut groups = foldhash::HashMap::default();
    let owned: Vec<u32> = (0..=shards).filter(|g| core_of_group(*g, cores) == index).collect();
    // A core's groups open together: one's reads (recovering its WAL is mostly waiting on the
    // device) overlap another's CPU work (loading its snapshot, re-applying its log). One after
    // the other, core 0 finished the meta group's recovery (0.13-0.2 s of reading, most of it
    // the zeros of its preallocated segments) before its shard began.
    let opened = futures_util::future::join_all(owned.iter().map(|&g| {
        let dir: PathBuf = if g == META_GROUP { data_dir.join("meta") } else { data_dir.join(format!("shard-{:04}", g - 1)) };
        let (gcfg, transport) = (&gcfg, transport.clone());
        async move { Group::open(g, &dir, gcfg, transport).await.map(|group| (g, group)) }
    }))
    .await;
    for opened in opened {
        let (g, group) = opened?;
        groups.insert(g, group);
    }
    if !clustered {
        let replaying = std::time::Instant::now();
        for g in groups.values() {
            g.wait_ready(Duration::from_secs(30)).await?;
        }
        // Worth a line when a restart replayed a long log (a fresh node says nothing).
        if replaying.elapsed() > Duration::from_millis(500) {
            eprintln!("{} core {index}: groups elected and their logs replayed in {:.2} s", stratos_common::process::who(), replaying.elapsed().as_secs_f64());
        }
    }
    let core = Rc::new(Core {
        index,
        cores,
        shards,
        groups,
        mesh: mesh.clone(),
        view: RefCell::new(MetaView::default()),
        admins: cfg.admins.clone(),
        admin_groups: cfg.admin_groups.clone(),
        open_key_ttl_ms: cfg.open_key_ttl_ms,
        multipart_upload_ttl_ms: cfg.multipart_upload_ttl_ms,
        lifecycle_day_ms: cfg.lifecycle_day_secs.max(1).saturating_mul(1000),
        housekeeping_interval_ms: cfg.housekeeping_interval_ms,
        connection_calls_max: cfg.connection_calls_max,
        stats: Default::default(),
        // Core 0's fences are the read indexes of the meta group; other cores ask it.
        fences: Rc::new(if index == 0 { Coalesce::paced(Duration::from_micros(cfg.meta_fence_interval_us)) } else { Coalesce::default() }),
        core_ports,
        solo,
        data: cfg.scm_address.as_ref().map(|scm| {
            crate::datapath::DataPath::new(crate::datapath::DataPathConfig {
                scm_address: scm.clone(),
                block_bytes: cfg.block_bytes,
                block_pool_size: cfg.block_pool_size,
                token_lifetime_ms: cfg.block_token_lifetime_ms,
                scm_poll_ms: cfg.scm_poll_ms,
                tls: tls.as_ref().map(|t| t.client.clone()),
            })
        }),
        transport,
        tls,
    });
    if let Some(dp) = &core.data {
        // The map first (keys sign the first tokens), then pools for every shard.
        if let Err(e) = dp.refresh_map().await {
            if e.contains("TLS") {
                eprintln!("{} core {index}: the SCM at {} refuses this node's TLS ({e}); writes with data fail until the certificates are fixed", stratos_common::process::who(), dp.cfg.scm_address);
            } else {
                eprintln!("{} core {index}: the SCM at {} does not answer yet ({e}); writes with data wait for it", stratos_common::process::who(), dp.cfg.scm_address);
            }
        }
        dp.warm(0..shards);
        glommio::spawn_local(dp.clone().refill_pools()).detach();
        glommio::spawn_local(core.clone().scm_duties()).detach();
    }
    // The meta group (core 0) feeds every core's view: the whole state now, changes as they apply.
    if let Some(meta) = core.groups.get(&META_GROUP) {
        let broadcast = Rc::new(MetaBroadcast { queue: RefCell::new(VecDeque::new()), wake: Default::default() });
        let initial = Arc::new(full_view(&meta.state.shard.borrow()));
        let index0 = meta.state.applied_log_index();
        core.view.borrow_mut().apply(index0, &initial);
        core.solo.applied.store(index0, std::sync::atomic::Ordering::Release);
        broadcast.queue.borrow_mut().push_back((index0, initial));
        let (c, b) = (Rc::downgrade(&core), broadcast.clone());
        *meta.state.on_apply.borrow_mut() = Some(Box::new(move |state, commands, outcomes, log_index| {
            let changes = Arc::new(changes_of(state, commands, outcomes));
            if let Some(core) = c.upgrade() {
                core.view.borrow_mut().apply(log_index, &changes);
                // Before the entry's replies leave (see `SoloMeta`).
                core.solo.applied.store(log_index, std::sync::atomic::Ordering::Release);
            }
            b.queue.borrow_mut().push_back((log_index, changes));
            b.wake.notify();
        }));
        let (c, b) = (Rc::downgrade(&core), broadcast.clone());
        *meta.state.on_reset.borrow_mut() = Some(Box::new(move |state, log_index| {
            let changes = Arc::new(full_view(state));
            if let Some(core) = c.upgrade() {
                core.view.borrow_mut().apply(log_index, &changes);
                // Before the entry's replies leave (see `SoloMeta`).
                core.solo.applied.store(log_index, std::sync::atomic::Ordering::Release);
            }
            b.queue.borrow_mut().push_back((log_index, changes));
            b.wake.notify();
        }));
        glommio::spawn_local(broadcast.run(mesh)).detach();
    }
    glommio::spawn_local(core.clone().serve_mesh(inbox)).detach();
    if let Some(path) = stratos_raft::faults::file() {
        glommio::spawn_local(stratos_raft::faults::watch(path, index)).detach();
    }
    if clustered {
        if index == 0 {
            let listener = stratos_common::rpc::listen_exclusive(&cfg.raft_address).map_err(|e| anyhow::anyhow!("binding the OM Raft address {}: {e}", cfg.raft_address))?;
            glommio::spawn_local(accept_raft(core.clone(), listener)).detach();
        }
        if cfg.balance_leaders {
            glommio::spawn_local(core.clone().balance_leaders()).detach();
        }
        // The peers may start later: a group without a leader yet answers UNAVAILABLE (clients
        // retry) rather than holding this node back.
        // A joining node's groups get a leader only once the cluster added it. The groups are
        // waited for together: one after another, a node whose peers are all down took 10 s per
        // group to start serving.
        let waits = core.groups.values().filter(|_| !cfg.join).map(|g| g.wait_ready(Duration::from_secs(10)));
        for e in futures_util::future::join_all(waits).await.into_iter().filter_map(Result::err) {
            eprintln!("{} core {index}: {e}; serving anyway", stratos_common::process::who());
        }
    }
    // The meta leader makes the S3 volume before it says ready, so that a gateway's first
    // request after `ready` finds it (it answered 503 for up to 200 ms otherwise). Any other
    // node, a failed write, or one that cannot commit within 5 s (a leader that lost its
    // peers: this core would not serve until it did) leaves it to `ensure_s3_volume`.
    if !cfg.join {
        let create = std::pin::pin!(core.create_s3_volume());
        let _ = futures_util::future::select(create, std::pin::pin!(glommio::timer::sleep(Duration::from_secs(5)))).await;
    }
    glommio::spawn_local(core.clone().redrive_renames()).detach();
    glommio::spawn_local(core.clone().housekeeping()).detach();
    glommio::spawn_local(core.clone().lifecycle()).detach();
    glommio::spawn_local(core.clone().ensure_s3_volume()).detach();

    // Every core listens on the client port (SO_REUSEPORT: the kernel spreads connections over
    // them); core 0 first makes sure no other process listens there.
    let bind = match bind {
        Bind::Claim(a) => stratos_common::rpc::claim_shared_port(a).map_err(|e| anyhow::anyhow!("binding the OM RPC address {a}: {e}"))?,
        Bind::AfterCore0(rx) => rx.await.context("core 0 stopped before it bound the RPC address")?,
    };
    let listener = stratos_common::rpc::listen_shared(bind).map_err(|e| anyhow::anyhow!("binding the OM RPC address {bind}: {e}"))?;
    let rpc = listener.local_addr().map_err(|e| anyhow::anyhow!("{e}"))?;
    let tls = core.tls.as_ref().map(|t| t.server.clone());
    glommio::spawn_local(accept_clients(core.clone(), listener, tls.clone())).detach();
    // This core's own port: a connection there is served here, where this core's shards live.
    let port = if cfg.core_ports {
        let base = cfg.core_port_base;
        let want = if base == 0 { 0 } else { base.checked_add(index as u16).with_context(|| format!("--core-port-base {base} + core {index} is past port 65535"))? };
        let addr = SocketAddr::new(cfg.rpc_address.ip(), want);
        let listener = stratos_common::rpc::listen_exclusive(addr).map_err(|e| anyhow::anyhow!("binding core {index}'s client port {addr} (--core-port-base, or --core-ports false): {e}"))?;
        let port = listener.local_addr().map_err(|e| anyhow::anyhow!("{e}"))?.port();
        glommio::spawn_local(accept_clients(core.clone(), listener, tls)).detach();
        port
    } else {
        0
    };
    let http = if index == 0 {
        match cfg.http_address {
            Some(addr) => Some(crate::http::serve(core.clone(), addr, core.tls.as_ref().map(|t| t.http.clone()))?),
            None => None,
        }
    } else {
        None
    };
    Ok((core, rpc, http, port))
}

/// Serves the client connections `listener` accepts, on this core; with `tls`, each after its
/// TLS handshake (the client's certificate required), as the principal the certificate names.
async fn accept_clients(core: Rc<Core>, listener: glommio::net::TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    loop {
        match listener.accept().await {
            Ok(stream) => match &tls {
                None => serve_connection(core.clone(), stream),
                Some(config) => {
                    glommio::spawn_local(serve_tls(core.clone(), stream, config.clone())).detach();
                }
            },
            Err(e) => {
                eprintln!("{} core {}: accept failed: {e}", stratos_common::process::who(), core.index);
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Core 0's Raft listener: reads each connection's hello and hands the connection to the
/// executor it names (one connection per pair of executors; see schema/capnp/raft.capnp).
async fn accept_raft(core: Rc<Core>, listener: glommio::net::TcpListener) {
    loop {
        let mut stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}: Raft accept failed: {e}", stratos_common::process::who());
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let core = core.clone();
        glommio::spawn_local(async move {
            let hello = glommio::timer::timeout(Duration::from_secs(5), async { Ok(read_hello(&mut stream).await) }).await;
            let peer = stream.peer_addr().map_or_else(|_| "?".into(), |a| a.to_string());
            let hello = match hello {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => {
                    // Tell the sender too (a newer or older build logs it on its side).
                    let _ = answer_hello(&mut stream, Some(&e)).await;
                    return eprintln!("{}: Raft connection from {peer}: {e}", stratos_common::process::who());
                }
                Err(_) => return eprintln!("{}: Raft connection from {peer}: no hello within 5 s", stratos_common::process::who()),
            };
            if let Some(why) = hello.refusal(core.cores as u32, core.shards, core.tls.is_some()) {
                let _ = answer_hello(&mut stream, Some(&why)).await;
                return eprintln!("{}: Raft connection from {peer} refused: {why}", stratos_common::process::who());
            }
            if answer_hello(&mut stream, None).await.is_err() {
                return;
            }
            let target = hello.core;
            if target == 0 {
                return crate::peer::serve(core, stream);
            }
            use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
            // SAFETY: dup of an open socket we own; the copy is owned by the message alone.
            let fd = unsafe { libc::dup(stream.as_raw_fd()) };
            if fd < 0 {
                return eprintln!("{}: Raft connection from {peer}: dup failed: {}", stratos_common::process::who(), std::io::Error::last_os_error());
            }
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            drop(stream);
            let _ = core.mesh[target as usize].send(Msg::RaftConnection(fd)).await;
        })
        .detach();
    }
}

fn serve_connection(core: Rc<Core>, stream: glommio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let calls_max = core.connection_calls_max;
    let (client, gate): (ozone_manager::Client, _) = stratos_common::rpc::gated_client(OmService { core, caller: None }, calls_max);
    stratos_common::rpc::serve_stream_gated(stream, client.client, gate);
}

/// One TLS client connection: the handshake (rustls checks the client's certificate against
/// the cluster CA, dates included), then the caller the certificate names, then the service.
async fn serve_tls(core: Rc<Core>, stream: glommio::net::TcpStream, config: Arc<rustls::ServerConfig>) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().map_or_else(|_| "?".into(), |a| a.to_string());
    let what = format!("{} core {}", stratos_common::process::who(), core.index);
    let Some((tls, caller)) = stratos_common::rpc::accept_tls(stream, config, &what, &peer).await else { return };
    let calls_max = core.connection_calls_max;
    let (client, gate): (ozone_manager::Client, _) = stratos_common::rpc::gated_client(OmService { core, caller: Some(Rc::new(caller)) }, calls_max);
    stratos_common::rpc::serve_stream_gated(tls, client.client, gate);
}

#[cfg(test)]
mod tests {
    /// One node given fewer executors than CPUs formats one shard per executor; a cluster, or
    /// executors left to the CPU count, one per CPU; never none.
    #[test]
    fn a_single_node_formats_a_shard_per_executor() {
        assert_eq!(super::default_shards(1, false, 2), 1);
        assert_eq!(super::default_shards(4, false, 16), 4);
        assert_eq!(super::default_shards(0, false, 16), 16, "executors unset: one per CPU");
        assert_eq!(super::default_shards(32, false, 16), 16, "never more than the CPUs");
        assert_eq!(super::default_shards(1, true, 2), 2, "a cluster: one per CPU");
        assert_eq!(super::default_shards(0, false, 0), 1);
    }

    #[test]
    fn the_ready_layout_counts_in_words() {
        let r = |shards, cores| super::Ready { rpc: "127.0.0.1:1".parse().expect("address"), http: None, shards, cores };
        assert_eq!(r(1, 1).layout(), "1 shard on 1 core");
        assert_eq!(r(2, 1).layout(), "2 shards on 1 core");
        assert_eq!(r(4, 2).layout(), "4 shards on 2 cores");
    }
}
