//! `stratos datanode`: stores block data ([`store`]) and serves it over Cap'n Proto, checking a
//! block token on every call ([`stratos_common::token`]). It registers with the SCM (its id is kept in
//! `DATANODE_ID` in its directory), then heartbeats: each beat reports the delete transactions
//! it carried out and brings back new ones and the current secret keys.

pub mod args;

pub mod blocklog;
pub mod store;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context;
use capnp::capability::Rc as CapRc;
use glommio::{LocalExecutorBuilder, Placement};
use stratos_common::process::now_ms;
use stratos_common::token::{self, MODE_READ, MODE_WRITE, SecretKey, TokenError};
use stratos_schema::datanode_capnp::{self, DnStatus, datanode as dn_rpc};
use stratos_schema::scm_capnp::storage_container_manager as scm_rpc;

use crate::store::{Store, StoreConfig, StoreError};

#[derive(Debug, Clone)]
pub struct DatanodeConfig {
    pub data_dir: PathBuf,
    /// Where clients reach this datanode [default 0.0.0.0:9859].
    pub rpc_address: SocketAddr,
    /// The address registered with the SCM, as clients dial it [default: the bound address,
    /// with 127.0.0.1 for an unspecified IP].
    pub advertise: Option<SocketAddr>,
    pub scm_address: String,
    pub heartbeat_ms: u64,
    /// The datanode's certificate, when the cluster is secured (issue 20): TLS on its port
    /// (any certificate of the cluster's CA; block tokens authorize), and as the SCM's client
    /// (its registration is bound to this certificate's name).
    pub tls: Option<stratos_common::tls::NodeTls>,
    /// How blocks are stored: small ones in container logs, large ones in files.
    pub store: StoreConfig,
    /// Calls one client connection may have in flight before the datanode stops reading it
    /// (see [`stratos_common::rpc::Gate`]) [default 1024].
    pub connection_calls_max: usize,
    /// The status port: `/health` and `/prom` ([`Datanode::metrics`]) [default 0.0.0.0:9882,
    /// Ozone's datanode HTTP port]; None: not served.
    pub http_address: Option<SocketAddr>,
}

impl Default for DatanodeConfig {
    fn default() -> Self {
        Self { data_dir: PathBuf::from("datanode-data"), rpc_address: SocketAddr::from(([0, 0, 0, 0], 9859)), advertise: None, scm_address: "127.0.0.1:9863".into(), heartbeat_ms: 2000, tls: None, store: StoreConfig::default(), connection_calls_max: 1024, http_address: Some(SocketAddr::from(([0, 0, 0, 0], 9882))) }
    }
}

/// Most blocks one `listBlocks` call returns.
const LIST_BLOCKS_MAX: u32 = 100_000;
/// Most datanodes after this one in a chained write (replication is at most three today).
const CHAIN_MAX: u32 = 4;
/// How long a chained write waits for the next datanode: less than the client's 30 s, so the
/// client hears which datanode failed before it gives up on the first.
const CHAIN_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Datanode {
    pub cfg: DatanodeConfig,
    pub store: Store,
    keys: RefCell<HashMap<u32, SecretKey>>,
    scm: stratos_common::rpc::Redial<scm_rpc::Client>,
    id: Cell<u64>,
    address: RefCell<String>,
    /// Delete transactions carried out, to report on the next beat.
    done: RefCell<Vec<u64>>,
    last_key_fetch: Cell<Option<std::time::Instant>>,
    /// Addresses of the cluster's datanodes (from the SCM's cluster map): a chained write is
    /// forwarded only to one of them, never to an address a client made up.
    datanodes: RefCell<std::collections::HashSet<String>>,
    /// The SCM's version of that list (heartbeats bring a newer one).
    datanodes_version: Cell<u64>,
    /// Connections to the datanodes chained writes go to.
    peers: RefCell<HashMap<String, Rc<stratos_common::rpc::Redial<dn_rpc::Client>>>>,
    /// Container copies for pipeline repairs: (pipeline, container) queued or running, the queue
    /// with each one's source, the workers draining it, and copies finished but not yet reported.
    copying: RefCell<std::collections::HashSet<(u64, u64)>>,
    copy_queue: RefCell<std::collections::VecDeque<(u64, u64, String)>>,
    copy_workers: Cell<usize>,
    copied: RefCell<Vec<(u64, u64)>>,
    /// Blocks copied by repairs since the start (for the log line and the benchmark).
    blocks_copied: Cell<u64>,
}

/// Blocks of one container copied at once during a repair (each its own read and put; small
/// ones share the block log's group commits), and containers copied at once: at most
/// 4 × 16 reads of up to 4 MiB in flight (256 MiB).
const COPY_PARALLEL: usize = 16;
const COPY_WORKERS: usize = 4;

impl std::fmt::Debug for Datanode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datanode").field("id", &self.id.get()).field("dir", &self.cfg.data_dir).finish()
    }
}

fn read_id(dir: &Path) -> anyhow::Result<u64> {
    match std::fs::read_to_string(dir.join("DATANODE_ID")) {
        Ok(s) => s.trim().parse().with_context(|| format!("{} holds no datanode id", dir.join("DATANODE_ID").display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).context("reading DATANODE_ID"),
    }
}

fn write_id(dir: &Path, id: u64) -> anyhow::Result<()> {
    let tmp = dir.join("DATANODE_ID.tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("DATANODE_ID"))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

impl Datanode {
    /// This datanode's counters in Prometheus text (its status port's `/prom`): the block
    /// store's (blocks put to the log and to files, the log's flushes, fdatasyncs and records,
    /// compactions, bytes buffered, the read cache's hits and misses), blocks copied back to
    /// full replication, and what its Cap'n Proto connections sent.
    pub fn metrics(&self) -> String {
        let s = self.store.stats();
        let w = self.store.log_stats();
        let wire = stratos_common::rpc::wire_counters();
        let id = self.id.get();
        let rows: [(&str, &str, &str, u64); 16] = [
            ("small_blocks_put_total", "counter", "Blocks written to the block log (small blocks).", s.small_blocks_put),
            ("file_blocks_put_total", "counter", "Blocks written to a file of their own.", s.file_blocks_put),
            ("block_log_flushes_total", "counter", "Group commits of the block log.", s.log_flushes),
            ("block_log_fdatasyncs_total", "counter", "fdatasync calls of the block log.", w.fdatasyncs),
            ("block_log_records_total", "counter", "Records appended to the block log (records per flush: how well writes share an fdatasync).", s.log_records),
            ("block_log_bytes_written_total", "counter", "Bytes written to the block log.", w.bytes_written),
            ("block_log_segments_created_total", "counter", "Block log segments created.", w.segments_created),
            ("block_log_segments_removed_total", "counter", "Block log segments removed after compaction.", w.segments_removed),
            ("compactions_total", "counter", "Compactions of the block log.", s.compactions),
            ("compacted_bytes_total", "counter", "Bytes of live blocks copied by compactions.", s.bytes_compacted),
            ("buffered_bytes", "gauge", "Bytes of small blocks held in memory between their first write and their putBlock.", s.buffered_bytes),
            ("read_cache_hits_total", "counter", "Reads of small blocks served from the read cache.", s.read_cache_hits),
            ("read_cache_misses_total", "counter", "Reads of small blocks that read the disk.", s.read_cache_misses),
            ("blocks_copied_total", "counter", "Blocks copied here from another datanode to restore a container's replication.", self.blocks_copied.get()),
            ("rpc_writes_total", "counter", "Writes of this datanode's Cap'n Proto connections to their sockets (each carries what one turn of the executor wrote).", wire.writes),
            ("rpc_reads_paused_total", "counter", "Times a client connection stopped being read because its calls in flight reached --connection-calls-max.", wire.reads_paused),
        ];
        let (mut out, labels) = (String::new(), format!("datanode=\"{id}\""));
        for (name, kind, help, value) in rows {
            stratos_common::status_http::single(&mut out, &format!("stratos_datanode_{name}"), kind, help, &labels, value);
        }
        out
    }

    fn learn_keys(&self, keys: Vec<SecretKey>) {
        let now = now_ms();
        let mut k = self.keys.borrow_mut();
        k.retain(|_, v| v.expires_ms > now);
        for key in keys {
            k.insert(key.id, key);
        }
    }

    /// Registers with the SCM (retrying until it answers) and keeps the id it gives. A
    /// refusal (another datanode's certificate, a certificate of the wrong role or CA) is
    /// final: the start fails with the SCM's reason rather than retrying for ever.
    async fn register(&self) -> anyhow::Result<()> {
        let mut delay = Duration::from_millis(100);
        // Plain connections the SCM ended at once, in a row (see below).
        let mut cut_at_once = 0;
        loop {
            let r = async {
                let scm = self.scm.get().await.map_err(|e| match e {
                    stratos_common::ClientError::Tls { .. } => Err(anyhow::anyhow!("{e}")),
                    e => Ok(anyhow::anyhow!("{e}")),
                })?;
                let mut req = scm.register_datanode_request();
                req.get().set_id(self.id.get());
                req.get().set_address(self.address.borrow().as_str());
                let plain = self.cfg.tls.is_none();
                let reply = req.send().promise.await.map_err(|e| {
                    let text = e.to_string();
                    match stratos_common::tls::explain_call_error(&text) {
                        Some(why) => Err(anyhow::anyhow!("{why}")),
                        None if text.contains("permission denied") => Err(anyhow::anyhow!("{text}")),
                        // A TLS server closes a plain connection at its first bytes: every try
                        // would end the same way. Three in a row, not one: an SCM killed
                        // mid-answer ends a connection so once.
                        None if plain && e.kind == capnp::ErrorKind::PrematureEndOfFile && cut_at_once >= 2 => {
                            Err(anyhow::anyhow!("{text}: the SCM closed the connection at once; it requires TLS, so give this datanode --tls-ca, --tls-cert and --tls-key"))
                        }
                        None => Ok(anyhow::anyhow!("{text}")),
                    }
                })?;
                let r = reply.get().map_err(|e| Ok(e.into()))?;
                if r.has_error() {
                    let why = r.get_error().ok().and_then(|t| t.to_str().ok()).unwrap_or("?").to_string();
                    return Err(Err(anyhow::anyhow!("the SCM refused the registration: {why}")));
                }
                Ok(r.get_id())
            }
            .await;
            let r = match r {
                Err(Err(fatal)) => return Err(fatal.context(format!("registering with the SCM at {}", self.cfg.scm_address))),
                Err(Ok(e)) => {
                    cut_at_once = if e.to_string().contains("Premature end of file") { cut_at_once + 1 } else { 0 };
                    Err(e)
                }
                Ok(id) => Ok(id),
            };
            match r {
                Ok(id) => {
                    if id != self.id.get() {
                        write_id(&self.cfg.data_dir, id)?;
                        self.id.set(id);
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.scm.forget();
                    eprintln!("datanode: registering with the SCM at {}: {e:#}; retrying in {delay:?}", self.cfg.scm_address);
                    // SIGINT or SIGTERM while waiting for the SCM: stop, not retry for ever.
                    let stop = std::pin::pin!(stratos_common::process::wait_stop());
                    if let futures_util::future::Either::Left(_) = futures_util::future::select(stop, std::pin::pin!(glommio::timer::sleep(delay))).await {
                        anyhow::bail!("stopped before the SCM at {} took the registration", self.cfg.scm_address);
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Drains the queue of container copies, one at a time; a failed one is dropped (the SCM
    /// asks again with the next heartbeat).
    async fn copy_worker(self: Rc<Self>) {
        loop {
            let Some((pipeline, container, source)) = self.copy_queue.borrow_mut().pop_front() else { break };
            let started = std::time::Instant::now();
            match self.copy_container(pipeline, container, &source).await {
                Ok(n) => {
                    eprintln!("datanode {}: copied container {container} ({n} blocks) from {source} for pipeline {pipeline} in {:?}", self.id.get(), started.elapsed());
                    self.copied.borrow_mut().push((pipeline, container));
                }
                Err(e) => eprintln!("datanode {}: copying container {container} from {source}: {e}; the SCM asks again", self.id.get()),
            }
            self.copying.borrow_mut().remove(&(pipeline, container));
        }
        self.copy_workers.set(self.copy_workers.get() - 1);
    }

    /// Copies every complete block of `container` from the datanode at `source` that this one
    /// lacks, with read tokens it signs itself (it holds the SCM's secret keys); returns how many
    /// it copied. A block deleted on the source meanwhile is skipped.
    async fn copy_container(&self, pipeline: u64, container: u64, source: &str) -> Result<u64, String> {
        let peer = self.peer(source).await?;
        let client = peer.get().await.map_err(|e| {
            peer.forget();
            e.to_string()
        })?;
        let dn = stratos_client::data::Datanode::new(client, Rc::new(stratos_client::runtime::Glommio));
        let blocks = stratos_client::data::list_blocks(&dn, container).await?;
        let key = self.keys.borrow().values().max_by_key(|k| k.created_ms).cloned().ok_or("no block-token key from the SCM yet")?;
        let owner = format!("datanode-{}", self.id.get());
        let mut copied = 0;
        for batch in blocks.chunks(COPY_PARALLEL) {
            let results = futures_util::future::join_all(batch.iter().map(|&(local, length)| {
                let (dn, key, owner) = (&dn, &key, &owner);
                async move {
                    if self.store.length(container, local).await.is_ok() {
                        return Ok(false);
                    }
                    // A copy cut short before (a failed read) starts the block again.
                    self.store.abandon(container, local);
                    let fields = token::TokenFields { modes: MODE_READ, key_id: key.id, object_id: 0, container_id: container, local_id: local, max_length: length, expires_ms: now_ms() + 600_000, owner: owner.clone() };
                    let block = stratos_client::Block { container_id: container, local_id: local, pipeline_id: pipeline, length, token: token::sign(&fields, key), datanodes: Vec::new() };
                    let mut at = 0;
                    loop {
                        let want = (length - at).min(store::CALL_BYTES_MAX) as u32;
                        let data = match stratos_client::data::read_chunk(dn, &block, at, want).await {
                            Ok((d, _)) => d,
                            Err(e) if e.starts_with("NotFound") => return Ok(false),
                            Err(e) => return Err(format!("reading block {container}/{local}: {e}")),
                        };
                        if !data.is_empty() {
                            self.store.write(container, local, at, &data).await.map_err(|e| e.to_string())?;
                        }
                        at += data.len() as u64;
                        if at >= length || data.is_empty() {
                            break;
                        }
                    }
                    if at != length {
                        return Err(format!("block {container}/{local}: {at} of {length} bytes read"));
                    }
                    self.store.finish(container, local, length).await.map_err(|e| e.to_string())?;
                    Ok(true)
                }
            }))
            .await;
            for r in results {
                if r? {
                    copied += 1;
                }
            }
        }
        self.blocks_copied.set(self.blocks_copied.get() + copied);
        Ok(copied)
    }

    /// One heartbeat: report deletes done, carry out the SCM's delete commands, learn keys.
    async fn beat(self: &Rc<Self>) -> anyhow::Result<()> {
        let scm = self.scm.get().await?;
        let done = self.done.borrow().clone();
        let copied = self.copied.borrow().clone();
        let mut req = scm.heartbeat_request();
        req.get().set_id(self.id.get());
        let mut l = req.get().init_deletes_done(done.len() as u32);
        for (i, t) in done.iter().enumerate() {
            l.set(i as u32, *t);
        }
        req.get().set_datanodes_version(self.datanodes_version.get());
        let mut l = req.get().init_replicated(copied.len() as u32);
        for (i, (p, c)) in copied.iter().enumerate() {
            let mut x = l.reborrow().get(i as u32);
            x.set_pipeline_id(*p);
            x.set_container_id(*c);
        }
        let reply = req.send().promise.await?;
        let r = reply.get()?;
        if r.has_error() {
            let e = r.get_error()?.to_str()?.to_string();
            if e.contains("register first") {
                self.register().await?;
            }
            anyhow::bail!("{e}");
        }
        self.done.borrow_mut().retain(|t| !done.contains(t));
        self.copied.borrow_mut().retain(|c| !copied.contains(c));
        if r.get_datanodes_version() != 0 && r.get_datanodes_version() != self.datanodes_version.get() {
            let list = r.get_datanodes()?.iter().filter_map(|a| a.ok()?.to_str().ok().map(str::to_string)).collect();
            self.learn_datanodes(list, r.get_datanodes_version());
        }
        self.learn_keys(stratos_common::token::secret_keys(r.get_keys()?)?);
        for cmd in r.get_replicate()?.iter() {
            let (pipeline, container) = (cmd.get_pipeline_id(), cmd.get_container_id());
            let source = cmd.get_source()?.to_str()?.to_string();
            if self.copied.borrow().contains(&(pipeline, container)) || !self.copying.borrow_mut().insert((pipeline, container)) {
                continue;
            }
            self.copy_queue.borrow_mut().push_back((pipeline, container, source));
        }
        while self.copy_workers.get() < COPY_WORKERS && !self.copy_queue.borrow().is_empty() {
            self.copy_workers.set(self.copy_workers.get() + 1);
            glommio::spawn_local(self.clone().copy_worker()).detach();
        }
        for d in r.get_deletes()?.iter() {
            let blocks: Vec<(u64, u64)> = d.get_blocks()?.iter().map(|b| (b.get_container_id(), b.get_local_id())).collect();
            self.store.delete(&blocks).await?;
            self.done.borrow_mut().push(d.get_txn());
        }
        Ok(())
    }

    async fn heartbeats(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(Duration::from_millis(self.cfg.heartbeat_ms)).await;
            if let Err(e) = self.beat().await {
                self.scm.forget();
                eprintln!("datanode {}: heartbeat to the SCM at {}: {e:#}", self.id.get(), self.cfg.scm_address);
            }
        }
    }

    /// Learns the SCM's current secret keys and datanodes, at most once a second (a token of a
    /// key not seen yet, a chained write to a datanode not known yet).
    async fn fetch_cluster_map(&self) {
        self.fetch_cluster_map_within(Duration::from_secs(1)).await;
    }

    /// [`Datanode::fetch_cluster_map`] unless one was fetched within `recent`.
    async fn fetch_cluster_map_within(&self, recent: Duration) {
        if self.last_key_fetch.get().is_some_and(|t| t.elapsed() <= recent) {
            return;
        }
        self.last_key_fetch.set(Some(std::time::Instant::now()));
        let Ok(scm) = self.scm.get().await else { return };
        let Ok(reply) = scm.cluster_map_request().send().promise.await else { return };
        let Ok(r) = reply.get() else { return };
        if let Ok(keys) = r.get_keys().and_then(stratos_common::token::secret_keys) {
            self.learn_keys(keys);
        }
        if let Ok(list) = r.get_datanodes() {
            let addresses = list.iter().filter_map(|d| d.get_address().ok()?.to_str().ok().map(str::to_string)).collect();
            self.learn_datanodes(addresses, 0);
        }
    }

    /// The one writer of the cluster's datanode list: from a heartbeat with the SCM's version of
    /// it, or from the cluster map with none (0), after which the next heartbeat asks for the
    /// SCM's list again (version 0 never matches), so heartbeats stay its authority.
    fn learn_datanodes(&self, list: std::collections::HashSet<String>, version: u64) {
        *self.datanodes.borrow_mut() = list;
        self.datanodes_version.set(version);
    }

    /// The connection to the datanode at `address`, which must be one of the cluster's. One
    /// not known yet (it registered since the last look: a cluster just started) is looked up
    /// again, at most every 100 ms, for up to a second.
    async fn peer(&self, address: &str) -> Result<Rc<stratos_common::rpc::Redial<dn_rpc::Client>>, String> {
        let mut tries = 0;
        while !self.datanodes.borrow().contains(address) {
            if tries == 10 {
                return Err(format!("{address} is not a datanode of this cluster (as the SCM at {} knows it)", self.cfg.scm_address));
            }
            if tries > 0 {
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
            self.fetch_cluster_map_within(Duration::from_millis(100)).await;
            tries += 1;
        }
        let tls = self.cfg.tls.as_ref().map(|t| t.client.clone());
        Ok(self.peers.borrow_mut().entry(address.to_string()).or_insert_with(|| Rc::new(stratos_common::rpc::Redial::new(address, tls))).clone())
    }

    /// Sends a chained write on to `next[0]` with the rest of `next`; on failure returns the
    /// address of the datanode that failed (the next one, or one after it) and why.
    async fn forward(&self, p: &dn_rpc::write_chained_params::Reader<'_>, next: &[String]) -> Result<(), Chained> {
        let to = &next[0];
        let failed = |e: String| Chained { at: to.clone(), status: DnStatus::IoError, message: e };
        let peer = self.peer(to).await.map_err(failed)?;
        let client = peer.get().await.map_err(|e| {
            peer.forget();
            failed(e.to_string())
        })?;
        let piece = stratos_client::data::Piece {
            token: p.get_token().map_err(|e| failed(e.to_string()))?,
            container_id: p.get_container_id(),
            local_id: p.get_local_id(),
            offset: p.get_offset(),
            data: p.get_data().map_err(|e| failed(e.to_string()))?,
            finish: p.get_finish(),
            length: p.get_length(),
        };
        let rest: Vec<&str> = next[1..].iter().map(String::as_str).collect();
        let call = stratos_client::data::send_chained(&client, &piece, &rest);
        let r = match futures_util::future::select(std::pin::pin!(call), std::pin::pin!(glommio::timer::sleep(CHAIN_TIMEOUT))).await {
            futures_util::future::Either::Left((r, _)) => r.map_err(|f| Chained { at: f.at.unwrap_or_else(|| to.clone()), status: f.status.unwrap_or(DnStatus::IoError), message: f.message }),
            futures_util::future::Either::Right(_) => Err(failed(format!("no answer within {CHAIN_TIMEOUT:?}"))),
        };
        if r.as_ref().is_err_and(|c| c.at == *to) {
            peer.forget();
        }
        r
    }

    /// Checks a token, fetching the SCM's keys once (at most every second) if it names a key
    /// this datanode has not seen yet (a rotation it has not heard of).
    async fn check(&self, token_bytes: &[u8], block: (u64, u64), mode: u8, end: u64) -> Result<(), TokenError> {
        let id = token::key_id_of(token_bytes)?;
        if !self.keys.borrow().contains_key(&id) {
            self.fetch_cluster_map().await;
        }
        let key = self.keys.borrow().get(&id).cloned().ok_or(TokenError::UnknownKey(id))?;
        token::verify(token_bytes, &key, block, mode, end, now_ms()).map(|_| ())
    }
}

/// A chained write's failure further down the chain: where, and what that datanode said.
struct Chained {
    at: String,
    status: DnStatus,
    message: String,
}

#[derive(Debug)]
struct DnService {
    dn: Rc<Datanode>,
}

fn set_err(mut e: datanode_capnp::dn_error::Builder<'_>, status: DnStatus, message: String) {
    e.set_status(status);
    e.set_message(message);
}

fn store_status(e: &StoreError) -> DnStatus {
    match e {
        StoreError::BadRequest(_) => DnStatus::BadRequest,
        StoreError::NotFound(..) => DnStatus::NotFound,
        StoreError::Corrupt { .. } | StoreError::CorruptRecord { .. } => DnStatus::Corrupt,
        StoreError::Io { .. } => DnStatus::IoError,
    }
}

impl dn_rpc::Server for DnService {
    async fn write_chunk(self: CapRc<Self>, params: dn_rpc::WriteChunkParams, mut results: dn_rpc::WriteChunkResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (c, l, offset) = (p.get_container_id(), p.get_local_id(), p.get_offset());
        let data = p.get_data()?;
        let end = offset.saturating_add(data.len() as u64);
        if let Err(e) = self.dn.check(p.get_token()?, (c, l), MODE_WRITE, end).await {
            set_err(results.get().init_error(), DnStatus::TokenRefused, e.to_string());
            return Ok(());
        }
        if let Err(e) = self.dn.store.write(c, l, offset, data).await {
            set_err(results.get().init_error(), store_status(&e), e.to_string());
        }
        Ok(())
    }

    async fn put_block(self: CapRc<Self>, params: dn_rpc::PutBlockParams, mut results: dn_rpc::PutBlockResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (c, l, length) = (p.get_container_id(), p.get_local_id(), p.get_length());
        if let Err(e) = self.dn.check(p.get_token()?, (c, l), MODE_WRITE, length).await {
            set_err(results.get().init_error(), DnStatus::TokenRefused, e.to_string());
            return Ok(());
        }
        if let Err(e) = self.dn.store.finish(c, l, length).await {
            set_err(results.get().init_error(), store_status(&e), e.to_string());
        }
        Ok(())
    }

    async fn read_chunk(self: CapRc<Self>, params: dn_rpc::ReadChunkParams, mut results: dn_rpc::ReadChunkResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (c, l, offset, length) = (p.get_container_id(), p.get_local_id(), p.get_offset(), u64::from(p.get_length()));
        if let Err(e) = self.dn.check(p.get_token()?, (c, l), MODE_READ, offset.saturating_add(length)).await {
            set_err(results.get().init_error(), DnStatus::TokenRefused, e.to_string());
            return Ok(());
        }
        match self.dn.store.read(c, l, offset, length).await {
            Ok((data, block_len)) => {
                let mut r = results.get();
                r.set_data(&data);
                r.set_block_length(block_len);
            }
            Err(e) => set_err(results.get().init_error(), store_status(&e), e.to_string()),
        }
        Ok(())
    }

    async fn write_chained(self: CapRc<Self>, params: dn_rpc::WriteChainedParams, results: dn_rpc::WriteChainedResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (c, l, offset, finish, length) = (p.get_container_id(), p.get_local_id(), p.get_offset(), p.get_finish(), p.get_length());
        let me = self.dn.address.borrow().clone();
        let fail = |mut results: dn_rpc::WriteChainedResults, at: &str, status: DnStatus, message: String| {
            let mut r = results.get();
            r.set_failed_at(at);
            set_err(r.init_error(), status, message);
        };
        let data = p.get_data()?;
        let end = offset.saturating_add(data.len() as u64).max(if finish { length } else { 0 });
        if let Err(e) = self.dn.check(p.get_token()?, (c, l), MODE_WRITE, end).await {
            fail(results, &me, DnStatus::TokenRefused, e.to_string());
            return Ok(());
        }
        let next = p.get_next()?;
        if next.len() > CHAIN_MAX {
            fail(results, &me, DnStatus::BadRequest, format!("{} datanodes after this one, at most {CHAIN_MAX}", next.len()));
            return Ok(());
        }
        let mut hops = Vec::with_capacity(next.len() as usize);
        for a in next.iter() {
            match stratos_common::rpc::text(Ok(a?), "a next datanode's address", 256) {
                Ok(a) => hops.push(a),
                Err(e) => {
                    fail(results, &me, DnStatus::BadRequest, e.to_string());
                    return Ok(());
                }
            }
        }
        // This datanode's write and the rest of the chain's run at once.
        let here = async {
            if !data.is_empty() {
                self.dn.store.write(c, l, offset, data).await?;
            }
            if finish {
                self.dn.store.finish(c, l, length).await?;
            }
            Ok::<(), StoreError>(())
        };
        let there = async {
            if hops.is_empty() {
                return Ok(());
            }
            self.dn.forward(&p, &hops).await
        };
        let (here, there) = futures_util::future::join(here, there).await;
        match (here, there) {
            (Err(e), _) => fail(results, &me, store_status(&e), e.to_string()),
            (Ok(()), Err(c)) => fail(results, &c.at, c.status, c.message),
            (Ok(()), Ok(())) => {}
        }
        Ok(())
    }

    async fn list_blocks(self: CapRc<Self>, params: dn_rpc::ListBlocksParams, mut results: dn_rpc::ListBlocksResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (c, after, max) = (p.get_container_id(), p.get_start_after(), p.get_max_blocks());
        if max == 0 || max > LIST_BLOCKS_MAX {
            set_err(results.get().init_error(), DnStatus::BadRequest, format!("maxBlocks {max}: from 1 to {LIST_BLOCKS_MAX}"));
            return Ok(());
        }
        match self.dn.store.list(c).await {
            Ok(all) => {
                let from = all.partition_point(|(l, _)| *l <= after);
                let page = &all[from..all.len().min(from + max as usize)];
                let mut r = results.get();
                r.set_more(from + page.len() < all.len());
                let mut list = r.init_blocks(page.len() as u32);
                for (i, (l, len)) in page.iter().enumerate() {
                    let mut b = list.reborrow().get(i as u32);
                    b.set_local_id(*l);
                    b.set_length(*len);
                }
            }
            Err(e) => set_err(results.get().init_error(), store_status(&e), e.to_string()),
        }
        Ok(())
    }
}

/// What a started datanode tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    pub rpc: SocketAddr,
    pub id: u64,
    /// The status port, where one is served.
    pub status: Option<SocketAddr>,
}

/// Runs a datanode until SIGTERM/SIGINT.
pub fn run(cfg: DatanodeConfig, on_ready: impl FnOnce(&Ready) + Send + 'static) -> anyhow::Result<()> {
    // A thin generic shell over a function that is not: a generic function is compiled in each
    // crate that calls it, with every future it spawns, so the whole datanode was compiled again in
    // the `stratos` binary (240 of CI's 1,615 s of compiling, `cargo build --timings`).
    run_datanode(cfg, Box::new(on_ready))
}

fn run_datanode(cfg: DatanodeConfig, on_ready: Box<dyn FnOnce(&Ready) + Send>) -> anyhow::Result<()> {
    stratos_common::process::install_signal_handlers();
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let id = read_id(&cfg.data_dir)?;
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("datanode")
        .io_memory(1 << 20)
        .spawn(move || async move {
            let listener = stratos_common::rpc::listen_exclusive(cfg.rpc_address).map_err(|e| anyhow::anyhow!("binding the datanode address {}: {e}", cfg.rpc_address))?;
            let bound = listener.local_addr().map_err(|e| anyhow::anyhow!("{e}"))?;
            let advertise = cfg.advertise.unwrap_or_else(|| if bound.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], bound.port())) } else { bound });
            if let Some(t) = &cfg.tls {
                t.check_host(&advertise.ip().to_string())?;
            }
            let started = std::time::Instant::now();
            let (store, opened) = Store::open(cfg.data_dir.clone(), cfg.store).await.map_err(|e| anyhow::anyhow!("opening the block store in {}: {e}", cfg.data_dir.display()))?;
            if let Some(t) = &opened.torn_tail {
                eprintln!("datanode: cut the block log's torn tail at {} offset {} ({})", t.file, t.offset, t.reason);
            }
            if opened.blocks > 0 {
                eprintln!(
                    "datanode: opened the block log in {:?}: {} segments, {} small blocks, {} MiB live, {} MiB dead",
                    started.elapsed(),
                    opened.segments,
                    opened.blocks,
                    opened.live_bytes >> 20,
                    opened.dead_bytes >> 20
                );
            }
            let dn = Rc::new(Datanode {
                store,
                scm: stratos_common::rpc::Redial::new(&cfg.scm_address, cfg.tls.as_ref().map(|t| t.client.clone())),
                cfg,
                keys: RefCell::default(),
                id: Cell::new(id),
                address: RefCell::new(advertise.to_string()),
                done: RefCell::default(),
                last_key_fetch: Cell::new(None),
                datanodes: RefCell::default(),
                datanodes_version: Cell::new(0),
                peers: RefCell::default(),
                copying: RefCell::default(),
                copy_queue: RefCell::default(),
                copy_workers: Cell::new(0),
                copied: RefCell::default(),
                blocks_copied: Cell::new(0),
            });
            let d = dn.clone();
            // Any certificate of the cluster's CA may connect (a user's client, an OM); what it
            // may read or write, its block tokens say.
            //
            // A client's connection (a user's, an OM's, the gateway's) is gated: its calls in
            // flight are bounded, so one that pipelines writes faster than the disk takes them
            // is held back by TCP instead of buffered. Another datanode's is not: a chained
            // write waits on the next datanode's answer, and datanodes forward to each other
            // in every order, so gates on their connections could close in a cycle; their
            // calls in flight are bounded by the gated client calls that began them. Without
            // TLS nobody is proven to be a datanode, and nothing is gated.
            let tls = dn.cfg.tls.as_ref().map(|t| t.server.clone());
            let calls_max = dn.cfg.connection_calls_max;
            glommio::spawn_local(stratos_common::rpc::accept_loop(listener, "datanode", tls, move |id| {
                let service = DnService { dn: d.clone() };
                match id {
                    Some(id) if id.role != stratos_common::tls::Role::Datanode => {
                        let (c, gate): (dn_rpc::Client, _) = stratos_common::rpc::gated_client(service, calls_max);
                        (c.client, Some(gate))
                    }
                    _ => {
                        let c: dn_rpc::Client = capnp_rpc::new_client(service);
                        (c.client, None)
                    }
                }
            }))
            .detach();
            dn.register().await?;
            // The first beat brings the secret keys; until then every token is refused.
            if let Err(e) = dn.beat().await {
                eprintln!("datanode {}: first heartbeat: {e:#}", dn.id.get());
            }
            glommio::spawn_local(dn.clone().heartbeats()).detach();
            let d = dn.clone();
            glommio::spawn_local(async move {
                loop {
                    glommio::timer::sleep(Duration::from_secs(1)).await;
                    d.store.maintain().await;
                }
            })
            .detach();
            let (d, tls) = (dn.clone(), dn.cfg.tls.as_ref().map(|t| t.http.clone()));
            let status = stratos_common::status_http::serve_if(dn.cfg.http_address, tls, "datanode HTTP", "the datanode's RPC port is another: 9859 by default", move || d.metrics()).map_err(anyhow::Error::msg)?;
            on_ready(&Ready { rpc: advertise, id: dn.id.get(), status });
            stratos_common::process::wait_stop().await;
            anyhow::Ok(())
        })
        .map_err(|e| anyhow::anyhow!("starting the datanode executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("datanode executor: {e:?}"))?
}
