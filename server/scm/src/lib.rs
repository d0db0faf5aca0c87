//! `stratos scm`: the Storage Container Manager, on one glommio executor.
//!
//! It keeps the datanode registry, forms pipelines (RATIS/THREE: three healthy datanodes;
//! RATIS/ONE: one), opens a container per pipeline and closes it at `container_bytes`, hands
//! out blocks in batches, generates and rotates the block-token secret keys, and turns the OMs'
//! deleted blocks into delete commands for the datanodes that hold them.
//!
//! State changes are [`state::Rec`]s in a stratos-wal log (one entry each, JSON payload, crc32
//! framed by the WAL); **every answer that depends on a change waits for its fdatasync**, so an
//! id handed out is on disk and is never handed out again after a crash. Every
//! `checkpoint_every` records the whole state is written to the file `checkpoint` (magic
//! `STRATOSC`, version, crc32, the index of the last record it includes, JSON; written to a
//! temporary name, fsynced, renamed, directory fsynced) and only then is the log purged up to
//! that index, so the log stays small and a restart replays little. Recovery loads the
//! checkpoint (a bad crc is an error naming the file) and replays the records after it.

pub mod args;

pub mod service;
pub mod state;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context;
use glommio::{LocalExecutorBuilder, Placement};
use state::{Key, Rec, ScmState};
use stratos_common::process::now_ms;
use stratos_wal::{DmaStorage, LogId, Wal, WalConfig};

/// Records between checkpoints (the default of `checkpoint_every`).
pub const CHECKPOINT_EVERY: u64 = 10_000;
/// The WAL's term for every SCM record (there is no election: one SCM).
const TERM: u64 = 1;
/// Largest record (a checkpoint holds the whole state, delete backlog included).
const RECORD_BYTES_MAX: u32 = 16 << 20;

#[derive(Debug, Clone)]
pub struct ScmConfig {
    pub data_dir: PathBuf,
    /// Where OMs and datanodes reach the SCM [default 0.0.0.0:9863].
    pub rpc_address: SocketAddr,
    /// A datanode silent for longer is dead: no new blocks on its pipelines [default 30 s].
    pub dead_after_ms: u64,
    /// A container closes when its allocated blocks would exceed this [default 5 GB, as Ozone].
    pub container_bytes: u64,
    /// A new block-token secret key every this often [default 1 day].
    pub key_rotation_ms: u64,
    /// The longest a block token may live; a key stays valid `key_rotation_ms` plus this, so
    /// every token signed with it expires before it does [default 1 day].
    pub token_lifetime_ms: u64,
    pub wal_segment_bytes: u64,
    /// Write a checkpoint and purge the log every this many records [default 10000].
    pub checkpoint_every: u64,
    /// The SCM's certificate, when the cluster is secured (issue 20): TLS on its port, every
    /// caller's role checked (see `service`).
    pub tls: Option<stratos_common::tls::NodeTls>,
    /// Calls one connection may have in flight before the SCM stops reading it (see
    /// [`stratos_common::rpc::Gate`]) [default 1024].
    pub connection_calls_max: usize,
    /// The status port: `/health` and `/prom` ([`Scm::status_numbers`]); None (the default
    /// here; `stratos scm` serves 0.0.0.0:9876, Ozone's SCM HTTP port): not served.
    pub http_address: Option<SocketAddr>,
}

impl Default for ScmConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("scm-data"),
            rpc_address: SocketAddr::from(([0, 0, 0, 0], 9863)),
            dead_after_ms: 30_000,
            container_bytes: 5_000_000_000,
            key_rotation_ms: 86_400_000,
            token_lifetime_ms: 86_400_000,
            wal_segment_bytes: 64 << 20,
            checkpoint_every: CHECKPOINT_EVERY,
            tls: None,
            connection_calls_max: 1024,
            http_address: None,
        }
    }
}

pub struct Scm {
    pub cfg: ScmConfig,
    pub state: RefCell<ScmState>,
    wal: Wal<DmaStorage>,
    next_index: Cell<u64>,
    since_checkpoint: Cell<u64>,
    last_seen: RefCell<HashMap<u64, Instant>>,
    cursor: Cell<usize>,
    checkpointing: Cell<bool>,
    /// When this process opened the state: liveness is not state, so every datanode looks dead
    /// until it beats; no repair starts within `dead_after_ms` of this.
    opened: Instant,
}

impl std::fmt::Debug for Scm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scm").field("data_dir", &self.cfg.data_dir).field("next_index", &self.next_index.get()).finish()
    }
}

impl Scm {
    /// Opens (or creates) the SCM's log and replays it.
    pub async fn open(cfg: ScmConfig) -> anyhow::Result<Rc<Scm>> {
        let dir = cfg.data_dir.join("wal");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let storage = DmaStorage::open(&dir).await.with_context(|| format!("opening {}", dir.display()))?;
        let (wal, report) = Wal::open(storage, WalConfig { segment_bytes: cfg.wal_segment_bytes, payload_bytes_max: RECORD_BYTES_MAX })
            .await
            .with_context(|| format!("opening the SCM log in {}", dir.display()))?;
        if let Some(t) = &report.torn_tail {
            eprintln!("scm: recovered the log in {}: cut a torn tail ({t:?})", dir.display());
        }
        let (mut state, checkpointed) = load_checkpoint(&cfg.data_dir)?;
        let mut replayed = 0;
        // Entries run from the first kept one to the last; an empty log continues after its
        // purge point (a checkpoint purged everything before it), or at 1.
        let next = match wal.last_log_id() {
            Some(last) => last.log_index + 1,
            None => wal.purged().map_or(1, |p| p.log_index + 1),
        };
        let first = if wal.last_log_id().is_some() { wal.first_log_index().max(checkpointed + 1) } else { next };
        // In chunks, each read in spans (Wal::read_entries), not one disk read per record.
        let mut from = first;
        while from < next {
            let to = next.min(from + 4096);
            let records = wal.read_entries(from, to).await.with_context(|| format!("reading SCM records {from}..{to} in {}", dir.display()))?;
            for (index, bytes) in (from..to).zip(records) {
                let rec: Rec = serde_json::from_slice(&bytes).with_context(|| format!("SCM record {index} in {} is not a record this SCM knows", dir.display()))?;
                state.apply(&rec);
                replayed += 1;
            }
            from = to;
        }
        let scm = Rc::new(Scm {
            cfg,
            state: RefCell::new(state),
            wal,
            next_index: Cell::new(next),
            since_checkpoint: Cell::new(replayed),
            last_seen: RefCell::new(HashMap::new()),
            cursor: Cell::new(0),
            checkpointing: Cell::new(false),
            opened: Instant::now(),
        });
        scm.rotate_keys_if_due().await?;
        Ok(scm)
    }

    /// Applies `recs` and makes them durable; returns once their fdatasync returned. Callers
    /// answer only after this: that is what makes every answer durable.
    pub async fn commit(self: &Rc<Self>, recs: Vec<Rec>) -> anyhow::Result<()> {
        let mut last = None;
        for rec in &recs {
            // Appended first: an append refused (too large, a poisoned log) leaves the state
            // as it was. Once appended, the record is applied; if its flush then fails the log
            // is poisoned and every later commit fails, so nothing is answered from it.
            last = Some(self.append(rec)?);
            self.state.borrow_mut().apply(rec);
        }
        if let Some(t) = last {
            self.wal.wait_durable(t).await.context("making the SCM log durable")?;
        }
        if self.since_checkpoint.get() >= self.cfg.checkpoint_every.max(1) && !self.checkpointing.get() {
            self.checkpointing.set(true);
            let me = self.clone();
            glommio::spawn_local(async move {
                if let Err(e) = me.checkpoint().await {
                    eprintln!("scm: checkpoint: {e:#}");
                }
                me.checkpointing.set(false);
            })
            .detach();
        }
        Ok(())
    }

    /// Writes the state to the checkpoint file, then purges the log up to what it includes.
    async fn checkpoint(&self) -> anyhow::Result<()> {
        let (image, index) = (self.state.borrow().clone(), self.next_index.get() - 1);
        self.since_checkpoint.set(0);
        // Everything the image includes is durable in the log before the image replaces it.
        self.wal.sync().await.context("syncing the SCM log")?;
        write_checkpoint(&self.cfg.data_dir, &image, index)?;
        let t = self.wal.purge(LogId { log_index: index, term: TERM }).context("purging the SCM log")?;
        self.wal.wait_durable(t).await.context("purging the SCM log")?;
        Ok(())
    }

    fn append(&self, rec: &Rec) -> anyhow::Result<stratos_wal::Ticket> {
        let bytes = serde_json::to_vec(rec).context("encoding an SCM record")?;
        let index = self.next_index.get();
        let t = self.wal.append_entry(index, TERM, &bytes).context("appending to the SCM log")?;
        self.next_index.set(index + 1);
        self.since_checkpoint.set(self.since_checkpoint.get() + 1);
        Ok(t)
    }

    /// Makes a new secret key when none exists or the newest is older than the rotation period.
    pub async fn rotate_keys_if_due(self: &Rc<Self>) -> anyhow::Result<()> {
        let now = now_ms();
        let due = self.state.borrow().current_key().is_none_or(|k| k.created_ms.saturating_add(self.cfg.key_rotation_ms) <= now);
        if due {
            let id = self.state.borrow().next_key_id;
            let secret: [u8; 32] = rand::random();
            let key = Key { id, secret: secret.to_vec(), created_ms: now, expires_ms: now + self.cfg.key_rotation_ms + self.cfg.token_lifetime_ms };
            self.commit(vec![Rec::Key(key)]).await?;
        }
        Ok(())
    }

    pub fn saw(&self, datanode: u64) {
        self.last_seen.borrow_mut().insert(datanode, Instant::now());
    }

    /// What the SCM reports of itself, each as (its name in the `status` call's JSON, its
    /// Prometheus series, the series' type, help, value): one list, so the two never differ.
    pub fn status_numbers(&self) -> Vec<(&'static str, &'static str, &'static str, &'static str, u64)> {
        let healthy = self.healthy().len() as u64;
        let s = self.state.borrow();
        let n = |len: usize| len as u64;
        vec![
            ("datanodes", "datanodes", "gauge", "Datanodes registered.", n(s.datanodes.len())),
            ("healthyDatanodes", "healthy_datanodes", "gauge", "Datanodes heard from within --dead-after-ms.", healthy),
            ("pipelines", "pipelines", "gauge", "Pipelines (three datanodes each, or one).", n(s.pipelines.len())),
            ("containers", "containers", "gauge", "Containers.", n(s.containers.len())),
            ("openContainers", "open_containers", "gauge", "Containers open for new blocks (one per pipeline).", n(s.open_container.len())),
            ("blocksAllocated", "blocks_allocated_total", "counter", "Blocks allocated to OMs.", s.blocks_allocated),
            ("nextLocalId", "next_local_id", "gauge", "The next block id the SCM hands out.", s.next_local_id),
            ("pendingDeleteTransactions", "pending_delete_transactions", "gauge", "Block deletions sent to datanodes and not yet confirmed.", n(s.deletes.len())),
            ("repairsInProgress", "repairs_in_progress", "gauge", "Pipelines being repaired after a member died.", n(s.repairs.len())),
            ("containersToCopy", "containers_to_copy", "gauge", "Containers those repairs still have to copy.", s.repairs.values().map(|r| r.pending.len() as u64).sum()),
            ("repairsDone", "repairs_done_total", "counter", "Pipeline repairs finished.", s.repairs_done),
            ("containersRepaired", "containers_repaired_total", "counter", "Containers copied by pipeline repairs.", s.containers_repaired),
            ("secretKeys", "secret_keys", "gauge", "Block-token secret keys held (current and still valid).", n(s.keys.len())),
        ]
    }

    /// [`Self::status_numbers`] in Prometheus text (the status port's `/prom`).
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        for (_, name, kind, help, value) in self.status_numbers() {
            stratos_common::status_http::single(&mut out, &format!("stratos_scm_{name}"), kind, help, "", value);
        }
        out
    }

    /// Datanodes that beat within `dead_after_ms`.
    pub fn healthy(&self) -> BTreeSet<u64> {
        let limit = Duration::from_millis(self.cfg.dead_after_ms);
        self.last_seen.borrow().iter().filter(|(_, t)| t.elapsed() <= limit).map(|(d, _)| *d).collect()
    }

    /// Re-replication: the records that start a repair of each pipeline with a dead member and
    /// none under way (a healthy datanode outside the pipeline, the one in the fewest pipelines
    /// and repairs, copies its containers from a surviving member, then takes the dead one's
    /// place), and that cancel repairs whose target or source died or whose dead member came
    /// back. Called by [`Scm::repair_planner`] alone, so no two plans race.
    pub fn plan_repairs(&self) -> Vec<Rec> {
        if self.opened.elapsed() < Duration::from_millis(self.cfg.dead_after_ms) {
            return Vec::new();
        }
        let healthy = self.healthy();
        let state = self.state.borrow();
        let mut recs = Vec::new();
        for (pipeline, r) in &state.repairs {
            if !healthy.contains(&r.target) || !healthy.contains(&r.source) || healthy.contains(&r.dead) {
                recs.push(Rec::RepairCancelled { pipeline: *pipeline });
            }
        }
        let mut load: HashMap<u64, usize> = HashMap::new();
        for p in state.pipelines.values() {
            for m in &p.members {
                *load.entry(*m).or_default() += 1;
            }
        }
        for r in state.repairs.values() {
            *load.entry(r.target).or_default() += 1;
        }
        for (id, p) in &state.pipelines {
            if state.repairs.contains_key(id) {
                continue;
            }
            let Some(dead) = p.members.iter().copied().find(|m| !healthy.contains(m)) else { continue };
            // A pipeline of one (RATIS/ONE) has no survivor to copy from.
            let Some(source) = p.members.iter().copied().find(|m| healthy.contains(m)) else { continue };
            let Some(target) = healthy.iter().copied().filter(|d| !p.members.contains(d)).min_by_key(|d| (load.get(d).copied().unwrap_or(0), *d)) else { continue };
            *load.entry(target).or_default() += 1;
            let pending = state.containers.iter().filter(|(_, c)| c.pipeline == *id).map(|(c, _)| *c).collect();
            recs.push(Rec::RepairStarted { pipeline: *id, repair: state::Repair { dead, target, source, pending, started_ms: now_ms() } });
        }
        recs
    }

    /// How often repairs are planned: a tenth of `dead_after_ms` (50 ms to 500 ms), so a repair
    /// starts at most that long after its datanode is found dead.
    pub fn repair_period(&self) -> Duration {
        Duration::from_millis((self.cfg.dead_after_ms / 10).clamp(50, 500))
    }

    /// Plans repairs every [`Scm::repair_period`] and records them. Planning is a pass over
    /// every pipeline, so it runs on this one timer, not on each datanode's heartbeat (which
    /// would cost O(pipelines) per beat, O(datanodes²) a second, and let two beats plan the same
    /// repair at once); a target learns its copies on its next beat.
    pub async fn repair_planner(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(self.repair_period()).await;
            let recs = self.plan_repairs();
            if recs.is_empty() {
                continue;
            }
            if let Err(e) = self.commit(recs.clone()).await {
                eprintln!("scm: recording repairs: {e:#}");
                continue;
            }
            for r in &recs {
                match r {
                    Rec::RepairStarted { pipeline, repair } => eprintln!(
                        "scm: datanode {} of pipeline {pipeline} is dead: datanode {} copies its {} containers from datanode {}, then replaces it",
                        repair.dead,
                        repair.target,
                        repair.pending.len(),
                        repair.source
                    ),
                    Rec::RepairCancelled { pipeline } => eprintln!("scm: the repair of pipeline {pipeline} stopped (a datanode of it died or came back); it is planned again"),
                    _ => {}
                }
            }
        }
    }

    pub fn next_cursor(&self, n: usize) -> usize {
        let c = self.cursor.get();
        self.cursor.set(c.wrapping_add(n));
        c
    }

    /// Keys that are still valid, for OMs and datanodes.
    pub fn live_keys(&self) -> Vec<Key> {
        let now = now_ms();
        self.state.borrow().keys.iter().filter(|k| k.expires_ms > now).cloned().collect()
    }
}

const CHECKPOINT_MAGIC: &[u8; 8] = b"STRATOSC";
const CHECKPOINT_VERSION: u32 = 1;
const CHECKPOINT_HEADER: usize = 8 + 4 + 4 + 8;

/// The checkpointed state and the index of the last record it includes (0: none).
fn load_checkpoint(dir: &std::path::Path) -> anyhow::Result<(ScmState, u64)> {
    let path = dir.join("checkpoint");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((ScmState::fresh(), 0)),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let bad = |why: &str| anyhow::anyhow!("{} is not a valid SCM checkpoint: {why}", path.display());
    if bytes.len() < CHECKPOINT_HEADER || &bytes[..8] != CHECKPOINT_MAGIC {
        return Err(bad("bad magic or too short"));
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    if u32_at(8) != CHECKPOINT_VERSION {
        return Err(bad(&format!("version {}", u32_at(8))));
    }
    if crc32fast::hash(&bytes[16..]) != u32_at(12) {
        return Err(bad("crc mismatch at offset 16"));
    }
    let index = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let state = serde_json::from_slice(&bytes[CHECKPOINT_HEADER..]).map_err(|e| bad(&e.to_string()))?;
    Ok((state, index))
}

fn write_checkpoint(dir: &std::path::Path, state: &ScmState, index: u64) -> anyhow::Result<()> {
    let mut body = index.to_le_bytes().to_vec();
    serde_json::to_writer(&mut body, state).context("encoding the SCM checkpoint")?;
    let mut out = CHECKPOINT_MAGIC.to_vec();
    out.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    let (tmp, path) = (dir.join("checkpoint.tmp"), dir.join("checkpoint"));
    // Blocking file I/O on the SCM's executor: a few ms every `checkpoint_every` records.
    std::fs::write(&tmp, &out).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::File::open(&tmp)?.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {}", tmp.display()))?;
    std::fs::File::open(dir)?.sync_all().with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// What a started SCM tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    pub rpc: SocketAddr,
    /// The status port, where one is served.
    pub status: Option<SocketAddr>,
}

/// Runs the SCM until SIGTERM/SIGINT.
pub fn run(cfg: ScmConfig, on_ready: impl FnOnce(&Ready) + Send + 'static) -> anyhow::Result<()> {
    // A thin generic shell over a function that is not: a generic function is compiled in each
    // crate that calls it, with every future it spawns, so the whole SCM was compiled again in
    // the `stratos` binary (240 of CI's 1,615 s of compiling, `cargo build --timings`).
    run_scm(cfg, Box::new(on_ready))
}

fn run_scm(cfg: ScmConfig, on_ready: Box<dyn FnOnce(&Ready) + Send>) -> anyhow::Result<()> {
    stratos_common::process::install_signal_handlers();
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("scm")
        .io_memory(1 << 20)
        .spawn(move || async move {
            if let Some(t) = &cfg.tls {
                t.check_host(&cfg.rpc_address.ip().to_string())?;
            }
            let scm = Scm::open(cfg).await?;
            let listener = stratos_common::rpc::listen_exclusive(scm.cfg.rpc_address).map_err(|e| anyhow::anyhow!("binding the SCM address {}: {e}", scm.cfg.rpc_address))?;
            let rpc = listener.local_addr().map_err(|e| anyhow::anyhow!("{e}"))?;
            let s = scm.clone();
            let tls = scm.cfg.tls.as_ref().map(|t| t.server.clone());
            // Every connection is gated: nothing the SCM answers waits for its caller's next
            // message, so a paused connection always opens again.
            let calls_max = scm.cfg.connection_calls_max;
            glommio::spawn_local(stratos_common::rpc::accept_loop(listener, "scm", tls, move |caller| {
                let (c, gate): (stratos_schema::scm_capnp::storage_container_manager::Client, _) = stratos_common::rpc::gated_client(service::ScmService { scm: s.clone(), caller }, calls_max);
                (c.client, Some(gate))
            }))
            .detach();
            glommio::spawn_local(scm.clone().repair_planner()).detach();
            let s = scm.clone();
            glommio::spawn_local(async move {
                let every = Duration::from_millis((s.cfg.key_rotation_ms / 8).clamp(10, 60_000));
                loop {
                    glommio::timer::sleep(every).await;
                    if let Err(e) = s.rotate_keys_if_due().await {
                        eprintln!("scm: rotating the block-token key: {e:#}");
                    }
                }
            })
            .detach();
            let (s, tls) = (scm.clone(), scm.cfg.tls.as_ref().map(|t| t.http.clone()));
            let status = stratos_common::status_http::serve_if(scm.cfg.http_address, tls, "SCM HTTP", "the SCM's RPC port is another: 9863 by default", move || s.metrics()).map_err(anyhow::Error::msg)?;
            on_ready(&Ready { rpc, status });
            stratos_common::process::wait_stop().await;
            scm.wal.sync().await.context("syncing the SCM log")?;
            anyhow::Ok(())
        })
        .map_err(|e| anyhow::anyhow!("starting the SCM executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("SCM executor: {e:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_a_flipped_byte_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_checkpoint(dir.path()).expect("none yet"), (ScmState::fresh(), 0));
        let mut s = ScmState::fresh();
        s.apply(&Rec::Datanode { id: 4, address: "127.0.0.1:9".into(), certificate: Some("dn-4".into()) });
        s.apply(&Rec::Allocated { next_local_id: 77, blocks: 76, bytes: vec![] });
        write_checkpoint(dir.path(), &s, 42).expect("written");
        assert_eq!(load_checkpoint(dir.path()).expect("loads"), (s, 42));
        let path = dir.path().join("checkpoint");
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let e = load_checkpoint(dir.path()).expect_err("corrupt").to_string();
        assert!(e.contains(&path.display().to_string()) && e.contains("crc"), "{e}");
    }
}
