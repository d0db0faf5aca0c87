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
//! [`CHECKPOINT_EVERY`] records the whole state is written as one record and the log before it
//! is purged, so the log stays small and a restart replays little.

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
use stratos_wal::{DmaStorage, LogId, Wal, WalConfig};

use crate::om::core::now_ms;
use state::{Key, Rec, ScmState};

/// Records between checkpoints.
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
        let mut state = ScmState::fresh();
        let mut replayed = 0;
        // Entries run from the first kept one to the last; an empty log continues after its
        // purge point (a checkpoint purged everything before it), or at 1.
        let next = match wal.last_log_id() {
            Some(last) => last.log_index + 1,
            None => wal.purged().map_or(1, |p| p.log_index + 1),
        };
        let first = if wal.last_log_id().is_some() { wal.first_log_index() } else { next };
        for index in first..next {
            let bytes = wal.read_entry(index).await.with_context(|| format!("reading SCM record {index} in {}", dir.display()))?;
            let rec: Rec = serde_json::from_slice(&bytes).with_context(|| format!("SCM record {index} in {} is not a record this SCM knows", dir.display()))?;
            state.apply(&rec);
            replayed += 1;
        }
        let scm = Rc::new(Scm {
            cfg,
            state: RefCell::new(state),
            wal,
            next_index: Cell::new(next),
            since_checkpoint: Cell::new(replayed),
            last_seen: RefCell::new(HashMap::new()),
            cursor: Cell::new(0),
        });
        scm.rotate_keys_if_due().await?;
        Ok(scm)
    }

    /// Applies `recs` and makes them durable; returns once their fdatasync returned. Callers
    /// answer only after this: that is what makes every answer durable.
    pub async fn commit(&self, recs: Vec<Rec>) -> anyhow::Result<()> {
        if recs.is_empty() {
            return Ok(());
        }
        let mut last = None;
        for rec in &recs {
            self.state.borrow_mut().apply(rec);
            last = Some(self.append(rec)?);
        }
        if self.since_checkpoint.get() >= CHECKPOINT_EVERY {
            // The whole state as one record, then purge what precedes it: a replay starts there.
            let image = Rec::Checkpoint(Box::new(self.state.borrow().clone()));
            // Durable with the purge marker that follows it (the log is ordered).
            let _ = self.append(&image)?;
            let at = self.next_index.get() - 1;
            // The purge marker follows the checkpoint in the log, so it is durable only with it.
            last = Some(self.wal.purge(LogId { log_index: at - 1, term: TERM }).context("purging the SCM log")?);
            self.since_checkpoint.set(0);
        }
        if let Some(t) = last {
            self.wal.wait_durable(t).await.context("making the SCM log durable")?;
        }
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
    pub async fn rotate_keys_if_due(&self) -> anyhow::Result<()> {
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

    /// Datanodes that beat within `dead_after_ms`.
    pub fn healthy(&self) -> BTreeSet<u64> {
        let limit = Duration::from_millis(self.cfg.dead_after_ms);
        self.last_seen.borrow().iter().filter(|(_, t)| t.elapsed() <= limit).map(|(d, _)| *d).collect()
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

/// What a started SCM tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    pub rpc: SocketAddr,
}

/// Runs the SCM until SIGTERM/SIGINT.
pub fn run(cfg: ScmConfig, on_ready: impl FnOnce(&Ready) + Send + 'static) -> anyhow::Result<()> {
    crate::om::node::install_signal_handlers();
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("scm")
        .io_memory(1 << 20)
        .spawn(move || async move {
            let scm = Scm::open(cfg).await?;
            let listener = glommio::net::TcpListener::bind(scm.cfg.rpc_address).map_err(|e| anyhow::anyhow!("binding the SCM address {}: {e}", scm.cfg.rpc_address))?;
            let rpc = listener.local_addr().map_err(|e| anyhow::anyhow!("{e}"))?;
            let s = scm.clone();
            glommio::spawn_local(crate::rpc::accept_loop(listener, "scm", move || {
                let c: stratos_schema::scm_capnp::storage_container_manager::Client = capnp_rpc::new_client(service::ScmService { scm: s.clone() });
                c.client
            }))
            .detach();
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
            on_ready(&Ready { rpc });
            crate::om::node::wait_stop().await;
            scm.wal.sync().await.context("syncing the SCM log")?;
            anyhow::Ok(())
        })
        .map_err(|e| anyhow::anyhow!("starting the SCM executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("SCM executor: {e:?}"))?
}
