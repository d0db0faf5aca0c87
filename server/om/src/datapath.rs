//! The OM's side of the data path, one per core: its connection to the SCM, pools of
//! pre-allocated blocks, the SCM's cluster map (datanodes, pipelines, block-token keys), block
//! tokens for replies, and the push of deleted blocks to the SCM.
//!
//! **Pools.** Blocks are non-deterministic input, so they are chosen before proposing (like
//! time and ids' owners). They are taken where the request is parsed: each core keeps a pool per
//! (key shard, replication), refilled in the background by one batched `allocateBlocks` call
//! when it falls below a quarter of `block_pool_size`. Taking them on the connection's core
//! means no cross-core hop and no SCM round trip on the hot path; the cost is that idle pools
//! hold up to `cores × shards × 2 × block_pool_size` block ids (ids only: nothing is written
//! on a datanode until a client writes, and the SCM's counters are 64-bit). An `openKey` that
//! finds its pool short calls the SCM itself and counts as a wait
//! (`stratos_om_block_waits_total`, against `stratos_om_block_takes_total`). If the SCM is down
//! writes fail with `UNAVAILABLE` naming it once the pool is empty; reads need no SCM (only the
//! cluster map, cached).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use foldhash::{HashMap, HashMapExt};

use stratos_common::process::now_ms;
use stratos_common::token::{self, MODE_READ, MODE_WRITE, SecretKey};
use stratos_schema::om_capnp::{self, Status};
use stratos_schema::scm_capnp::{self, storage_container_manager as scm_rpc};
use stratos_shard::{BlockLocation, Replication};

use crate::convert::WireError;

/// Blocks preallocated for one `openKey` at most (the rest come from `allocateBlock`).
pub const PREALLOCATE_MAX: u64 = 64;

#[derive(Debug, Clone)]
pub struct DataPathConfig {
    pub scm_address: String,
    pub block_bytes: u64,
    pub block_pool_size: u32,
    pub token_lifetime_ms: u64,
    /// How often the cluster map is fetched again, and deleted blocks pushed.
    pub scm_poll_ms: u64,
    /// The OM's certificate as a TLS client of the SCM (a secured cluster).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

#[derive(Debug, Default)]
pub struct DataPathStats {
    pub takes: Cell<u64>,
    pub waits: Cell<u64>,
    pub refills: Cell<u64>,
    pub refill_errors: Cell<u64>,
    pub deleted_blocks_pushed: Cell<u64>,
}

pub struct DataPath {
    pub cfg: DataPathConfig,
    scm: stratos_common::rpc::Redial<scm_rpc::Client>,
    keys: RefCell<Vec<SecretKey>>,
    datanodes: RefCell<HashMap<u64, String>>,
    pipelines: RefCell<HashMap<u64, Vec<u64>>>,
    pools: RefCell<HashMap<(u32, Replication), VecDeque<BlockLocation>>>,
    refill_wake: stratos_raft::group::local_event::Event,
    pub stats: DataPathStats,
}

impl std::fmt::Debug for DataPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPath").field("scm", &self.cfg.scm_address).finish()
    }
}

fn scm_repl(r: Replication) -> scm_capnp::Replication {
    match r {
        Replication::RatisOne => scm_capnp::Replication::RatisOne,
        Replication::RatisThree => scm_capnp::Replication::RatisThree,
    }
}

fn unavailable(scm: &str, e: impl std::fmt::Display) -> WireError {
    WireError::new(Status::Unavailable, format!("no blocks: the SCM at {scm}: {e}"))
}

/// A block as a reply shows it: the token and the pipeline's datanodes.
#[derive(Debug, Clone, Default)]
pub struct Decorated {
    pub token: Vec<u8>,
    pub datanodes: Vec<(u64, String)>,
}

impl DataPath {
    pub fn new(cfg: DataPathConfig) -> Rc<Self> {
        Rc::new(Self {
            scm: stratos_common::rpc::Redial::new(&cfg.scm_address, cfg.tls.clone()),
            cfg,
            keys: RefCell::default(),
            datanodes: RefCell::default(),
            pipelines: RefCell::default(),
            pools: RefCell::default(),
            refill_wake: Default::default(),
            stats: Default::default(),
        })
    }

    /// takes, waits, refills, refill errors, deleted blocks pushed (the metrics page's order).
    pub fn counters(&self) -> crate::metrics::DataCounters {
        let s = &self.stats;
        [s.takes.get(), s.waits.get(), s.refills.get(), s.refill_errors.get(), s.deleted_blocks_pushed.get()]
    }

    /// Fetches datanodes, pipelines and secret keys from the SCM.
    pub async fn refresh_map(&self) -> Result<(), String> {
        let r = async {
            let scm = self.scm.get().await.map_err(|e| e.to_string())?;
            let reply = scm.cluster_map_request().send().promise.await.map_err(|e| e.to_string())?;
            let r = reply.get().map_err(|e| e.to_string())?;
            let mut datanodes = HashMap::new();
            for d in r.get_datanodes().map_err(|e| e.to_string())?.iter() {
                datanodes.insert(d.get_id(), d.get_address().map_err(|e| e.to_string())?.to_string().map_err(|e| e.to_string())?);
            }
            let mut pipelines = HashMap::new();
            for p in r.get_pipelines().map_err(|e| e.to_string())?.iter() {
                pipelines.insert(p.get_id(), p.get_members().map_err(|e| e.to_string())?.iter().collect());
            }
            let keys = r.get_keys().and_then(stratos_common::token::secret_keys).map_err(|e| e.to_string())?;
            *self.datanodes.borrow_mut() = datanodes;
            *self.pipelines.borrow_mut() = pipelines;
            *self.keys.borrow_mut() = keys;
            Ok(())
        }
        .await;
        if r.is_err() {
            self.scm.forget();
        }
        r
    }

    /// Makes sure the pipelines of `blocks` are in the cached map (one SCM call on a miss).
    pub async fn ensure_pipelines(&self, blocks: impl Iterator<Item = u64>) {
        let missing = {
            let p = self.pipelines.borrow();
            blocks.into_iter().any(|id| id != 0 && !p.contains_key(&id))
        };
        if missing {
            let _ = self.refresh_map().await;
        }
    }

    async fn allocate(&self, count: u32, replication: Replication, owner: &str, exclude: &[u64]) -> Result<Vec<BlockLocation>, WireError> {
        let scm = self.scm.get().await.map_err(|e| unavailable(&self.cfg.scm_address, e))?;
        let mut req = scm.allocate_blocks_request();
        let mut p = req.get();
        p.set_count(count);
        p.set_replication(scm_repl(replication));
        p.set_owner(owner);
        p.set_block_bytes(self.cfg.block_bytes);
        let mut l = p.init_exclude(exclude.len() as u32);
        for (i, d) in exclude.iter().enumerate() {
            l.set(i as u32, *d);
        }
        let reply = match req.send().promise.await {
            Ok(r) => r,
            Err(e) => {
                self.scm.forget();
                return Err(unavailable(&self.cfg.scm_address, e));
            }
        };
        let r = reply.get().map_err(|e| unavailable(&self.cfg.scm_address, e))?;
        if r.has_error() {
            let e = r.get_error().ok().and_then(|t| t.to_str().ok()).unwrap_or("").to_string();
            return Err(WireError::new(Status::Unavailable, format!("no blocks: the SCM refused: {e}")));
        }
        let blocks: Vec<BlockLocation> = r
            .get_blocks()
            .map_err(|e| unavailable(&self.cfg.scm_address, e))?
            .iter()
            .map(|b| BlockLocation { container_id: b.get_container_id(), local_id: b.get_local_id(), pipeline_id: b.get_pipeline_id(), length: 0 })
            .collect();
        self.ensure_pipelines(blocks.iter().map(|b| b.pipeline_id)).await;
        Ok(blocks)
    }

    /// Hands deleted blocks of `shard` (its queue up to batch `up_to_seq`) to the SCM; `Ok`
    /// once the SCM made them durable.
    pub async fn push_deleted(&self, shard: u32, up_to_seq: u64, blocks: &[(u64, u64)]) -> Result<(), String> {
        let scm = self.scm.get().await.map_err(|e| e.to_string())?;
        let mut req = scm.delete_blocks_request();
        req.get().set_shard(shard);
        req.get().set_up_to_seq(up_to_seq);
        let mut l = req.get().init_blocks(blocks.len() as u32);
        for (i, (c, b)) in blocks.iter().enumerate() {
            let mut x = l.reborrow().get(i as u32);
            x.set_container_id(*c);
            x.set_local_id(*b);
        }
        let reply = req.send().promise.await.map_err(|e| {
            self.scm.forget();
            e.to_string()
        })?;
        let r = reply.get().map_err(|e| e.to_string())?;
        if r.has_error() {
            return Err(r.get_error().map_err(|e| e.to_string())?.to_string().map_err(|e| e.to_string())?);
        }
        self.stats.deleted_blocks_pushed.set(self.stats.deleted_blocks_pushed.get() + blocks.len() as u64);
        Ok(())
    }

    /// Blocks for `bytes` of a key of shard `shard` (at least one, at most `PREALLOCATE_MAX`).
    pub async fn for_open(&self, shard: u32, replication: Replication, bytes: u64, owner: &str) -> Result<Vec<BlockLocation>, WireError> {
        let n = bytes.div_ceil(self.cfg.block_bytes).clamp(1, PREALLOCATE_MAX) as usize;
        self.take(shard, replication, n, owner).await
    }

    /// One more block for an open key; with `exclude`, straight from the SCM.
    pub async fn for_allocate(&self, shard: u32, replication: Replication, exclude: &[u64], owner: &str) -> Result<BlockLocation, WireError> {
        if exclude.is_empty() {
            return Ok(self.take(shard, replication, 1, owner).await?.remove(0));
        }
        self.stats.takes.set(self.stats.takes.get() + 1);
        self.stats.waits.set(self.stats.waits.get() + 1);
        Ok(self.allocate(1, replication, owner, exclude).await?.remove(0))
    }

    async fn take(&self, shard: u32, replication: Replication, n: usize, owner: &str) -> Result<Vec<BlockLocation>, WireError> {
        self.stats.takes.set(self.stats.takes.get() + 1);
        let low = (self.cfg.block_pool_size as usize / 4).max(1);
        {
            let mut pools = self.pools.borrow_mut();
            let pool = pools.entry((shard, replication)).or_default();
            if pool.len() >= n {
                let out: Vec<BlockLocation> = pool.drain(..n).collect();
                if pool.len() < low {
                    self.refill_wake.notify();
                }
                return Ok(out);
            }
        }
        // The pool is short: this open waits for the SCM (and refills the pool on the way).
        self.stats.waits.set(self.stats.waits.get() + 1);
        let want = (n as u32).saturating_add(self.cfg.block_pool_size).min(stratos_schema::scm_limits::ALLOCATE_MAX);
        // Boxed: the SCM call's future is ~2.8 KiB, which every open would otherwise carry
        // (and move) though nearly all are served from the pool above.
        let mut got = Box::pin(self.allocate(want.max(n as u32), replication, owner, &[])).await?;
        let out: Vec<BlockLocation> = got.drain(..n).collect();
        self.pools.borrow_mut().entry((shard, replication)).or_default().extend(got);
        Ok(out)
    }

    /// Keeps every pool that was used above its low-water mark, in the background.
    pub async fn refill_pools(self: Rc<Self>) {
        loop {
            let listener = self.refill_wake.listen();
            let low = (self.cfg.block_pool_size as usize / 4).max(1);
            let short: Vec<(u32, Replication)> = self.pools.borrow().iter().filter(|(_, p)| p.len() < low).map(|(k, _)| *k).collect();
            if short.is_empty() {
                listener.await;
                continue;
            }
            for (shard, replication) in short {
                match self.allocate(self.cfg.block_pool_size, replication, "om", &[]).await {
                    Ok(blocks) => {
                        self.stats.refills.set(self.stats.refills.get() + 1);
                        self.pools.borrow_mut().entry((shard, replication)).or_default().extend(blocks);
                    }
                    Err(_) => {
                        self.stats.refill_errors.set(self.stats.refill_errors.get() + 1);
                        // The SCM is away: try again later, not in a loop.
                        glommio::timer::sleep(Duration::from_millis(self.cfg.scm_poll_ms.min(1000))).await;
                    }
                }
            }
        }
    }

    /// Starts a pool for each of `shards` (RATIS/THREE, the default replication) so the first
    /// opens do not wait.
    pub fn warm(&self, shards: impl Iterator<Item = u32>) {
        let mut pools = self.pools.borrow_mut();
        for s in shards {
            pools.entry((s, Replication::RatisThree)).or_default();
        }
        self.refill_wake.notify();
    }

    /// The token and datanodes of `block` for a reply: a write token (up to the block size)
    /// or a read token (up to its length), expiring after `token_lifetime_ms` or with its key.
    pub fn decorate(&self, block: &BlockLocation, write: bool, owner: &str, object_id: u64) -> Decorated {
        let now = now_ms();
        let token = self
            .keys
            .borrow()
            .iter()
            .filter(|k| k.expires_ms > now)
            .max_by_key(|k| k.created_ms)
            .map(|k| {
                let fields = token::TokenFields {
                    modes: if write { MODE_WRITE } else { MODE_READ },
                    key_id: k.id,
                    object_id,
                    container_id: block.container_id,
                    local_id: block.local_id,
                    max_length: if write { self.cfg.block_bytes } else { block.length },
                    expires_ms: (now + self.cfg.token_lifetime_ms).min(k.expires_ms),
                    owner: owner.to_string(),
                };
                token::sign(&fields, k)
            })
            .unwrap_or_default();
        let dns = self.datanodes.borrow();
        let datanodes = self
            .pipelines
            .borrow()
            .get(&block.pipeline_id)
            .map(|m| m.iter().map(|d| (*d, dns.get(d).cloned().unwrap_or_default())).collect())
            .unwrap_or_default();
        Decorated { token, datanodes }
    }
}

/// How the reply of one call shows blocks: with a token for `owner` and datanodes (data path
/// on) or bare (an OM without an SCM).
#[derive(Debug, Clone, Copy)]
pub struct Decor<'a> {
    pub dp: Option<&'a DataPath>,
    pub owner: &'a str,
}

impl Decor<'_> {
    pub fn set_block(&self, mut b: om_capnp::block_location::Builder<'_>, block: &BlockLocation, write: bool, object_id: u64) {
        crate::convert::set_block(b.reborrow(), block);
        if let Some(dp) = self.dp {
            let d = dp.decorate(block, write, self.owner, object_id);
            b.set_token(&d.token);
            let mut l = b.init_datanodes(d.datanodes.len() as u32);
            for (i, (id, addr)) in d.datanodes.iter().enumerate() {
                let mut r = l.reborrow().get(i as u32);
                r.set_id(*id);
                r.set_address(addr);
            }
        }
    }
}
