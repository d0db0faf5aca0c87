//! The SCM's state and the records that change it.
//!
//! Every change is a [`Rec`]: the SCM builds it, applies it here and appends it to its WAL, and
//! answers the caller only once the WAL made it durable. Recovery applies the durable records
//! in order, so the state after a restart is the state at the last durable record. Because an
//! allocation's answer waits for the record that advanced `next_local_id` past its ids, no
//! block id is ever issued twice, whatever the crash.
//!
//! What is not state: datanode liveness (heartbeat times live in memory; after a restart every
//! datanode is dead until it beats again) and the round-robin cursor over pipelines.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Replication of a pipeline: `One` = one datanode, `Three` = three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Repl {
    One,
    Three,
}

impl Repl {
    pub fn width(self) -> usize {
        match self {
            Repl::One => 1,
            Repl::Three => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    pub replication: Repl,
    /// Datanode ids, sorted.
    pub members: Vec<u64>,
}

/// A pipeline whose member `dead` died: `target` copies every container in `pending` from
/// `source` (a surviving member), and when the last is copied takes `dead`'s place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repair {
    pub dead: u64,
    pub target: u64,
    pub source: u64,
    pub pending: BTreeSet<u64>,
    pub started_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub pipeline: u64,
    /// Bytes of the blocks allocated in it (each counted at the full block size).
    pub allocated_bytes: u64,
    pub open: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub id: u32,
    pub secret: Vec<u8>,
    pub created_ms: u64,
    pub expires_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteTx {
    pub blocks: Vec<(u64, u64)>,
    /// Datanodes that hold some of the blocks and have not yet reported the delete done.
    pub pending: BTreeSet<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScmState {
    pub datanodes: BTreeMap<u64, String>,
    pub pipelines: BTreeMap<u64, Pipeline>,
    pub containers: BTreeMap<u64, Container>,
    /// The open container of each pipeline.
    pub open_container: BTreeMap<u64, u64>,
    pub keys: Vec<Key>,
    pub deletes: BTreeMap<u64, DeleteTx>,
    /// Per OM shard, the last deleted-blocks batch taken.
    pub shard_seq: BTreeMap<u32, u64>,
    pub next_datanode_id: u64,
    pub next_pipeline_id: u64,
    pub next_container_id: u64,
    pub next_local_id: u64,
    pub next_key_id: u32,
    pub next_txn: u64,
    /// Blocks ever allocated (for status and tests).
    pub blocks_allocated: u64,
    /// In a secured cluster, the certificate name each datanode registered with: its id is
    /// bound to it (another certificate cannot register, beat or take over as that datanode).
    #[serde(default)]
    pub certificates: BTreeMap<u64, String>,
    /// Pipeline repairs under way (re-replication after a member died), by pipeline.
    #[serde(default)]
    pub repairs: BTreeMap<u64, Repair>,
    /// Pipeline repairs finished, and containers copied by them (for status and benchmarks).
    #[serde(default)]
    pub repairs_done: u64,
    #[serde(default)]
    pub containers_repaired: u64,
    /// Moves with every datanode registration (a new datanode or a new address): datanodes
    /// fetch the list again when theirs is older.
    #[serde(default)]
    pub datanodes_version: u64,
}

/// One change. Applying a record is deterministic and idempotent in effect on the id counters
/// (they only move forward).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rec {
    Datanode {
        id: u64,
        address: String,
        /// The certificate name the datanode registered with (a secured cluster).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        certificate: Option<String>,
    },
    Pipeline { id: u64, pipeline: Pipeline },
    Container { id: u64, pipeline: u64 },
    ContainerClosed { id: u64 },
    /// Blocks were allocated: ids below `next_local_id` are taken; `bytes` per container.
    Allocated { next_local_id: u64, blocks: u64, bytes: Vec<(u64, u64)> },
    /// A new secret key; keys expired at `key.created_ms` are dropped.
    Key(Key),
    DeleteTx { txn: u64, shard: u32, up_to_seq: u64, tx: DeleteTx },
    DeleteDone { txn: u64, datanode: u64 },
    /// A repair of `pipeline` starts (with no container to copy, it finishes at once).
    RepairStarted { pipeline: u64, repair: Repair },
    /// The repair's target copied `container`; with the last, it replaces the dead member.
    RepairCopied { pipeline: u64, container: u64 },
    /// The repair stopped (its target or source died, or the dead member came back).
    RepairCancelled { pipeline: u64 },
}

impl ScmState {
    pub fn fresh() -> Self {
        Self { next_datanode_id: 1, next_pipeline_id: 1, next_container_id: 1, next_local_id: 1, next_key_id: 1, next_txn: 1, ..Default::default() }
    }

    pub fn apply(&mut self, rec: &Rec) {
        match rec {
            Rec::Datanode { id, address, certificate } => {
                self.datanodes.insert(*id, address.clone());
                self.datanodes_version += 1;
                if let Some(name) = certificate {
                    self.certificates.insert(*id, name.clone());
                }
                // A datanode may name its own id (it keeps it across SCM data loss).
                self.next_datanode_id = self.next_datanode_id.max(id.saturating_add(1));
            }
            Rec::Pipeline { id, pipeline } => {
                self.pipelines.insert(*id, pipeline.clone());
                self.next_pipeline_id = self.next_pipeline_id.max(id + 1);
            }
            Rec::Container { id, pipeline } => {
                self.containers.insert(*id, Container { pipeline: *pipeline, allocated_bytes: 0, open: true });
                self.open_container.insert(*pipeline, *id);
                self.next_container_id = self.next_container_id.max(id + 1);
            }
            Rec::ContainerClosed { id } => {
                if let Some(c) = self.containers.get_mut(id) {
                    c.open = false;
                    if self.open_container.get(&c.pipeline) == Some(id) {
                        self.open_container.remove(&c.pipeline);
                    }
                }
            }
            Rec::Allocated { next_local_id, blocks, bytes } => {
                self.next_local_id = self.next_local_id.max(*next_local_id);
                self.blocks_allocated += blocks;
                for (c, b) in bytes {
                    if let Some(c) = self.containers.get_mut(c) {
                        c.allocated_bytes += b;
                    }
                }
            }
            Rec::Key(k) => {
                self.keys.retain(|old| old.expires_ms > k.created_ms);
                self.keys.push(k.clone());
                self.next_key_id = self.next_key_id.max(k.id.wrapping_add(1).max(1));
            }
            Rec::DeleteTx { txn, shard, up_to_seq, tx } => {
                if !tx.pending.is_empty() {
                    self.deletes.insert(*txn, tx.clone());
                }
                let seq = self.shard_seq.entry(*shard).or_default();
                *seq = (*seq).max(*up_to_seq);
                self.next_txn = self.next_txn.max(txn + 1);
            }
            Rec::DeleteDone { txn, datanode } => {
                if let Some(tx) = self.deletes.get_mut(txn) {
                    tx.pending.remove(datanode);
                    if tx.pending.is_empty() {
                        self.deletes.remove(txn);
                    }
                }
            }
            Rec::RepairStarted { pipeline, repair } => {
                self.repairs.insert(*pipeline, repair.clone());
                self.finish_repair(*pipeline);
            }
            Rec::RepairCopied { pipeline, container } => {
                if let Some(r) = self.repairs.get_mut(pipeline)
                    && r.pending.remove(container)
                {
                    self.containers_repaired += 1;
                }
                self.finish_repair(*pipeline);
            }
            Rec::RepairCancelled { pipeline } => {
                self.repairs.remove(pipeline);
            }
        }
    }

    /// A repair with nothing left to copy: its target takes the dead member's place (members
    /// stay sorted), and deletes still owed by the dead member are owed by the target instead
    /// (it copied those blocks too).
    fn finish_repair(&mut self, pipeline: u64) {
        let Some(r) = self.repairs.get(&pipeline).filter(|r| r.pending.is_empty()).cloned() else { return };
        self.repairs.remove(&pipeline);
        self.repairs_done += 1;
        if let Some(p) = self.pipelines.get_mut(&pipeline) {
            p.members.retain(|m| *m != r.dead);
            if !p.members.contains(&r.target) {
                p.members.push(r.target);
            }
            p.members.sort_unstable();
        }
        let containers: BTreeSet<u64> = self.containers.iter().filter(|(_, c)| c.pipeline == pipeline).map(|(id, _)| *id).collect();
        // Containers the dead datanode still holds by some other pipeline.
        let still_dead: BTreeSet<u64> = self
            .containers
            .iter()
            .filter(|(_, c)| self.pipelines.get(&c.pipeline).is_some_and(|p| p.members.contains(&r.dead)))
            .map(|(id, _)| *id)
            .collect();
        for tx in self.deletes.values_mut() {
            if tx.pending.contains(&r.dead) && tx.blocks.iter().any(|(c, _)| containers.contains(c)) {
                tx.pending.insert(r.target);
                if !tx.blocks.iter().any(|(c, _)| still_dead.contains(c)) {
                    tx.pending.remove(&r.dead);
                }
            }
        }
        self.deletes.retain(|_, tx| !tx.pending.is_empty());
    }

    /// The datanodes holding container `c` (empty if unknown).
    pub fn holders(&self, container: u64) -> &[u64] {
        self.containers.get(&container).and_then(|c| self.pipelines.get(&c.pipeline)).map_or(&[], |p| &p.members)
    }

    /// The newest key, which signs new tokens.
    pub fn current_key(&self) -> Option<&Key> {
        self.keys.iter().max_by_key(|k| k.created_ms)
    }
}

/// A planned allocation: the records to apply, in order, and the blocks as (container, local
/// id, pipeline).
pub type Plan = (Vec<Rec>, Vec<(u64, u64, u64)>);

/// Why blocks cannot be allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AllocError(pub String);

/// Plans an allocation of `count` blocks of `block_bytes` on pipelines of `replication` whose
/// members are all in `healthy` and none in `exclude`: the records to apply, in order, and the
/// blocks as (container, local id, pipeline). Pipelines are created as needed, up to about two
/// per healthy datanode (Ozone's default pipeline limit) with distinct member sets; blocks are
/// spread round-robin over the usable pipelines starting at `cursor`. Containers close when the
/// next block would take them past `container_bytes`.
#[allow(clippy::too_many_arguments)]
pub fn plan_allocation(
    state: &ScmState, count: u32, replication: Repl, block_bytes: u64, container_bytes: u64, healthy: &BTreeSet<u64>, exclude: &BTreeSet<u64>, cursor: usize,
) -> Result<Plan, AllocError> {
    let width = replication.width();
    let candidates: Vec<u64> = healthy.iter().copied().filter(|d| !exclude.contains(d)).collect();
    if candidates.len() < width {
        return Err(AllocError(format!(
            "{replication:?} replication needs {width} healthy datanodes outside the exclude list; {} healthy, {} of them excluded",
            match healthy.len() {
                1 => "1 is".to_string(),
                n => format!("{n} are"),
            },
            healthy.len() - candidates.len()
        )));
    }
    let usable = |p: &Pipeline| p.replication == replication && p.members.iter().all(|m| candidates.contains(m));
    let mut sim = state.clone();
    let mut recs = Vec::new();
    let mut pipes: Vec<u64> = sim.pipelines.iter().filter(|(_, p)| usable(p)).map(|(id, _)| *id).collect();
    // Grow the usable set towards ~2 pipelines per candidate datanode (of `width` members each).
    let target = (candidates.len() * 2 / width).max(1);
    while pipes.len() < target {
        // The candidates in fewest pipelines first; skip a member set that already exists.
        let mut load: Vec<(usize, u64)> = candidates.iter().map(|d| (sim.pipelines.values().filter(|p| p.members.contains(d)).count(), *d)).collect();
        load.sort();
        let mut members: Vec<u64> = load.iter().take(width).map(|(_, d)| *d).collect();
        members.sort();
        if sim.pipelines.values().any(|p| p.replication == replication && p.members == members) {
            break;
        }
        let rec = Rec::Pipeline { id: sim.next_pipeline_id, pipeline: Pipeline { replication, members } };
        pipes.push(sim.next_pipeline_id);
        sim.apply(&rec);
        recs.push(rec);
    }
    let mut blocks = Vec::with_capacity(count as usize);
    let mut bytes: BTreeMap<u64, u64> = BTreeMap::new();
    let mut next_local = sim.next_local_id;
    for i in 0..count as usize {
        let pipeline = pipes[(cursor + i) % pipes.len()];
        let mut container = sim.open_container.get(&pipeline).copied();
        if let Some(c) = container {
            let used = sim.containers[&c].allocated_bytes + bytes.get(&c).copied().unwrap_or(0);
            if used.saturating_add(block_bytes) > container_bytes && used > 0 {
                let rec = Rec::ContainerClosed { id: c };
                sim.apply(&rec);
                recs.push(rec);
                container = None;
            }
        }
        let container = match container {
            Some(c) => c,
            None => {
                let rec = Rec::Container { id: sim.next_container_id, pipeline };
                let id = sim.next_container_id;
                sim.apply(&rec);
                recs.push(rec);
                id
            }
        };
        *bytes.entry(container).or_default() += block_bytes;
        blocks.push((container, next_local, pipeline));
        next_local += 1;
    }
    recs.push(Rec::Allocated { next_local_id: next_local, blocks: u64::from(count), bytes: bytes.into_iter().collect() });
    Ok((recs, blocks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_datanodes(n: u64) -> ScmState {
        let mut s = ScmState::fresh();
        for id in 1..=n {
            s.apply(&Rec::Datanode { id, address: format!("127.0.0.1:{}", 1000 + id), certificate: None });
        }
        s
    }

    fn allocate(s: &mut ScmState, count: u32, healthy: &[u64], exclude: &[u64], container_bytes: u64) -> Result<Vec<(u64, u64, u64)>, AllocError> {
        let (recs, blocks) = plan_allocation(s, count, Repl::Three, 100, container_bytes, &healthy.iter().copied().collect(), &exclude.iter().copied().collect(), 0)?;
        for r in &recs {
            s.apply(r);
        }
        Ok(blocks)
    }

    #[test]
    fn ids_are_unique_containers_close_at_their_size_and_replay_gives_the_same_state() {
        let mut s = with_datanodes(4);
        let mut log = Vec::new();
        let mut seen = BTreeSet::new();
        for round in 0..20 {
            let exclude: Vec<u64> = if round % 3 == 0 { vec![round % 4 + 1] } else { vec![] };
            let (recs, blocks) = plan_allocation(&s, 7, Repl::Three, 100, 1000, &(1..=4).collect(), &exclude.iter().copied().collect(), round as usize).expect("allocates");
            for r in &recs {
                s.apply(r);
                log.push(r.clone());
            }
            for (c, l, p) in blocks {
                assert!(seen.insert(l), "local id {l} issued twice");
                assert!(!s.pipelines[&p].members.iter().any(|m| exclude.contains(m)), "block on an excluded datanode");
                assert_eq!(s.containers[&c].pipeline, p);
            }
        }
        for c in s.containers.values() {
            assert!(c.allocated_bytes <= 1000, "container over its size: {c:?}");
        }
        let mut replay = with_datanodes(4);
        for r in &log {
            replay.apply(r);
        }
        assert_eq!(replay, s);
        let image: ScmState = serde_json::from_slice(&serde_json::to_vec(&s).expect("encodes")).expect("decodes");
        assert_eq!(image, s, "a checkpoint image holds the whole state");
    }

    #[test]
    fn too_few_datanodes_is_a_clear_error() {
        let mut s = with_datanodes(3);
        let e = allocate(&mut s, 1, &[1, 2, 3], &[2], 1000).expect_err("only 2 usable");
        assert!(e.0.contains("needs 3 healthy datanodes"), "{e}");
        assert_eq!(allocate(&mut s, 2, &[1, 2, 3], &[], 1000).expect("3 healthy").len(), 2);
        // With one dead, no pipeline of three is usable.
        assert!(allocate(&mut s, 1, &[1, 3], &[], 1000).is_err());
    }

    #[test]
    fn deletes_finish_when_every_holder_reported() {
        let mut s = with_datanodes(3);
        let blocks = allocate(&mut s, 1, &[1, 2, 3], &[], 1000).expect("allocates");
        let holders: BTreeSet<u64> = s.holders(blocks[0].0).iter().copied().collect();
        s.apply(&Rec::DeleteTx { txn: 1, shard: 0, up_to_seq: 5, tx: DeleteTx { blocks: vec![(blocks[0].0, blocks[0].1)], pending: holders.clone() } });
        assert_eq!(s.shard_seq[&0], 5);
        for d in holders {
            assert!(s.deletes.contains_key(&1));
            s.apply(&Rec::DeleteDone { txn: 1, datanode: d });
        }
        assert!(s.deletes.is_empty());
    }

    #[test]
    fn a_repair_swaps_the_dead_member_only_when_every_container_is_copied_and_moves_its_deletes() {
        let mut s = with_datanodes(4);
        let blocks = allocate(&mut s, 3, &[1, 2, 3], &[], 200).expect("allocates");
        let pipeline = s.containers[&blocks[0].0].pipeline;
        assert_eq!(s.pipelines[&pipeline].members, vec![1, 2, 3]);
        let containers: BTreeSet<u64> = s.containers.iter().filter(|(_, c)| c.pipeline == pipeline).map(|(id, _)| *id).collect();
        assert!(containers.len() >= 2, "{containers:?}");
        s.apply(&Rec::DeleteTx { txn: 1, shard: 0, up_to_seq: 1, tx: DeleteTx { blocks: vec![(blocks[0].0, blocks[0].1)], pending: [1, 2, 3].into() } });
        s.apply(&Rec::RepairStarted { pipeline, repair: Repair { dead: 2, target: 4, source: 1, pending: containers.clone(), started_ms: 0 } });
        let mut left = containers.len();
        for c in &containers {
            assert_eq!(s.pipelines[&pipeline].members, vec![1, 2, 3], "swapped with {left} containers to copy");
            s.apply(&Rec::RepairCopied { pipeline, container: *c });
            // A repeat (a report that crossed a restart) changes nothing.
            s.apply(&Rec::RepairCopied { pipeline, container: *c });
            left -= 1;
        }
        assert_eq!(s.pipelines[&pipeline].members, vec![1, 3, 4]);
        assert!(s.repairs.is_empty());
        assert_eq!((s.repairs_done, s.containers_repaired), (1, containers.len() as u64));
        // The dead member's delete is owed by its replacement now.
        assert_eq!(s.deletes[&1].pending, [1, 3, 4].into());
        // A cancelled repair changes no member.
        s.apply(&Rec::RepairStarted { pipeline, repair: Repair { dead: 3, target: 2, source: 1, pending: containers, started_ms: 0 } });
        s.apply(&Rec::RepairCancelled { pipeline });
        assert_eq!(s.pipelines[&pipeline].members, vec![1, 3, 4]);
        assert!(s.repairs.is_empty());
    }
}
