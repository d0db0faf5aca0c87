//! One Raft group on this executor: its WAL, state machine and `Raft`, and the proposer that
//! batches commands into entries.
//!
//! Batching: request handlers queue commands with [`Group::propose`]; a pump task takes what
//! has queued (up to [`COMMANDS_PER_ENTRY_MAX`]) into one proposal and hands it to openraft,
//! keeping up to [`PROPOSALS_IN_FLIGHT_MAX`] proposals in flight. Under load, commands queue
//! while a proposal is being made durable, so entries grow and fdatasyncs stay few; with one
//! client, each command is its own entry and waits for one fdatasync.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use openraft::{BasicNode, Config, SnapshotPolicy};
use stratos_shard::{Command, Outcome};
use stratos_wal::{DmaStorage, Wal, WalConfig};

use crate::local_oneshot as oneshot;
use crate::log_store::LogStore;
use crate::network::Network;
use crate::transport::{PeerAddr, Transport};
use crate::state_machine::{GroupState, StateMachine};
use crate::types::{COMMANDS_PER_ENTRY_MAX, Proposal, Raft};

/// Proposals handed to openraft and not yet answered, per group.
pub const PROPOSALS_IN_FLIGHT_MAX: usize = 64;
/// Commands waiting for a proposal, per group; beyond this, callers wait (back-pressure).
pub const QUEUED_COMMANDS_MAX: usize = 64 * COMMANDS_PER_ENTRY_MAX;

// The retry window keeps far more outcomes per client than a group can have in flight (queued
// or proposed): a retry of anything a client may still wait on finds its first outcome.
const _: () = assert!(
    stratos_shard::constants::RETRY_OUTCOMES_PER_CLIENT_MAX >= 4 * (QUEUED_COMMANDS_MAX + PROPOSALS_IN_FLIGHT_MAX * COMMANDS_PER_ENTRY_MAX)
);

/// Why a proposal got no outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// With the leader's client RPC address, when known.
    #[error("not the leader of this group; the leader is {0:?}")]
    NotLeader(Option<String>),
    #[error("the group is unavailable: {0}")]
    Unavailable(String),
}

/// Settings of a group's Raft (from the OM configuration).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub node_id: u64,
    /// The members a new group starts with (every OM node, this one included), by node id.
    /// Every node initializes its groups with the same members; Raft elects one leader.
    pub members: BTreeMap<u64, PeerAddr>,
    /// This node joins an existing cluster: a new group is not initialized, and waits for its
    /// leader (elsewhere) to add this node (`stratos admin add`).
    pub join: bool,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// Build a snapshot (and purge the log before it) after this many entries ...
    pub snapshot_after_entries: u64,
    /// ... or after this many bytes of log, whichever comes first (0: entries only) ...
    pub snapshot_after_bytes: u64,
    /// ... but in either case not before the log holds this fraction of the last snapshot's
    /// size (0: no such floor). See [`Group::snapshot_trigger`].
    pub snapshot_log_ratio: f64,
    /// Log entries kept behind a snapshot, for followers that lag a little (beyond them, a
    /// follower installs the snapshot).
    pub snapshot_logs_to_keep: u64,
    pub wal_segment_bytes: u64,
    /// Keep a spare segment ready (see `Wal::prepare_spare`).
    pub wal_spare_segment: bool,
}

type Waiter = (usize, oneshot::Sender<Result<Vec<Outcome>, ProposeError>>);

/// When a group asks for a snapshot (see [`Group::snapshot_trigger`]).
#[derive(Debug, Clone, Copy)]
pub struct SnapshotTrigger {
    pub entries: u64,
    pub bytes: u64,
    pub ratio: f64,
    pub segment_bytes: u64,
}

impl SnapshotTrigger {
    /// Whether a snapshot is due, given the entries since the last one, the bytes written since
    /// the last request, the log's bytes on disk and (asked only when the rest says yes) the last
    /// snapshot's size.
    pub fn due(&self, entries: u64, written: u64, log_bytes: u64, snapshot_bytes: impl FnOnce() -> u64) -> bool {
        let counted = (self.entries > 0 && entries >= self.entries) || (self.bytes > 0 && written >= self.bytes);
        counted && (self.ratio <= 0.0 || log_bytes as f64 >= self.ratio * snapshot_bytes() as f64)
    }
}

pub struct Group {
    pub id: u32,
    pub raft: Raft,
    pub state: Rc<GroupState>,
    pub log: LogStore,
    queue: RefCell<VecDeque<Command>>,
    waiters: RefCell<VecDeque<Waiter>>,
    in_flight: Cell<usize>,
    pump_wake: local_event::Event,
    space_wake: local_event::Event,
    dir: PathBuf,
    /// Commands per proposal (one Raft entry each): how well the pump batches.
    pub entry_commands: RefCell<stratos_wal::Log2Histogram>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("id", &self.id).field("dir", &self.dir).finish()
    }
}

impl Group {
    /// Opens (or creates) the group in `dir`: recovers the WAL, loads the snapshot, starts Raft,
    /// and on first start makes this node the only member. Must run on the owning executor.
    ///
    /// Returned boxed: at opt-level 3 rustc shares no generic instances between crates, and an
    /// `async fn`'s body is compiled again in every crate that polls it, openraft's whole core
    /// (`Raft::new` spawns it) with it. Boxed, the OM and the tests use this crate's instance.
    pub fn open<'a>(id: u32, dir: &'a Path, cfg: &'a GroupConfig, transport: Rc<Transport>) -> Pin<Box<dyn Future<Output = anyhow::Result<Rc<Group>>> + 'a>> {
        Box::pin(Self::open_here(id, dir, cfg, transport))
    }

    async fn open_here(id: u32, dir: &Path, cfg: &GroupConfig, transport: Rc<Transport>) -> anyhow::Result<Rc<Group>> {
        std::fs::create_dir_all(dir.join("wal"))?;
        let recovering = std::time::Instant::now();
        let storage = DmaStorage::open(dir.join("wal")).await?;
        let (wal, report) = Wal::open(storage, WalConfig { segment_bytes: cfg.wal_segment_bytes, ..WalConfig::default() })
            .await
            .map_err(|e| anyhow::anyhow!("group {id}: opening its log in {}: {e}", dir.display()))?;
        if let Some(torn) = &report.torn_tail {
            eprintln!("{} group {id}: cut a torn log tail: {torn:?}", stratos_common::process::who());
        }
        let log = LogStore::new(wal);
        let loading = std::time::Instant::now();
        let sm = StateMachine::open(dir, id)?;
        let loaded = sm.shared.applied_log_index();
        let loaded_in = loading.elapsed();
        let state = sm.shared.clone();
        let config = Config {
            cluster_name: "stratos".into(),
            election_timeout_min: cfg.election_timeout_min_ms,
            election_timeout_max: cfg.election_timeout_max_ms,
            heartbeat_interval: cfg.heartbeat_interval_ms,
            // Snapshots are asked for by `snapshot_trigger`, which weighs the log against the
            // state; openraft's own policy counts entries only.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: cfg.snapshot_logs_to_keep,
            // Entries per append message: with up to 256 commands per entry this keeps one
            // message a few MiB, far below the transport's message limit.
            max_payload_entries: 64,
            // Pre-Vote: a replica asks whether it could win before it raises its term. Without
            // it, a replica cut off from its peers (a partition, a node started while the
            // others are down) raised its term at every election timeout (term 23 after 10 s),
            // and once it could talk again its higher term made the healthy leader step down:
            // one more election, and writes paused for it, on every heal. openraft leaves it
            // off by default; the transport has carried pre-votes all along.
            enable_pre_vote: Some(true),
            ..Config::default()
        }
        .validate()?;
        // openraft re-applies the log up to the commit point the WAL kept (see
        // `LogStore::save_committed`) before it returns; entries past it wait for a leader.
        let reapplying = std::time::Instant::now();
        let raft = Raft::new(cfg.node_id, Arc::new(config), Network { transport, group: id }, log.clone(), sm).await.map_err(|e| anyhow::anyhow!("group {id}: {e}"))?;
        let applied = state.applied_log_index();
        if loaded > 0 || applied > 0 {
            // What a restart spends, phase by phase (a fresh group says nothing).
            let snapshot = if loaded > 0 { format!("loaded its snapshot up to index {loaded} in {:.2} s", loaded_in.as_secs_f64()) } else { "no snapshot".to_string() };
            eprintln!(
                "{} group {id}: recovered its log in {:.2} s, {snapshot}, re-applied the log up to index {applied} in {:.2} s",
                stratos_common::process::who(),
                (loading - recovering).as_secs_f64(),
                reapplying.elapsed().as_secs_f64()
            );
        }
        if !cfg.join && !raft.is_initialized().await? {
            let members: BTreeMap<u64, BasicNode> = cfg.members.iter().map(|(id, a)| (*id, BasicNode { addr: a.to_string() })).collect();
            raft.initialize(members).await.map_err(|e| anyhow::anyhow!("group {id}: initializing: {e}"))?;
        }
        let group = Rc::new(Group {
            id,
            raft,
            state,
            log,
            queue: RefCell::new(VecDeque::new()),
            waiters: RefCell::new(VecDeque::new()),
            in_flight: Cell::new(0),
            pump_wake: local_event::Event::default(),
            space_wake: local_event::Event::default(),
            dir: dir.to_path_buf(),
            entry_commands: RefCell::default(),
        });
        glommio::spawn_local(Group::pump(Rc::downgrade(&group))).detach();
        if cfg.wal_spare_segment {
            glommio::spawn_local(Group::make_spares(Rc::downgrade(&group))).detach();
        }
        if cfg.snapshot_after_entries > 0 || cfg.snapshot_after_bytes > 0 {
            let policy = SnapshotTrigger { entries: cfg.snapshot_after_entries, bytes: cfg.snapshot_after_bytes, ratio: cfg.snapshot_log_ratio, segment_bytes: cfg.wal_segment_bytes };
            glommio::spawn_local(Group::snapshot_trigger(Rc::downgrade(&group), policy)).detach();
        }
        Ok(group)
    }

    /// The group's directory (WAL, snapshot).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The leader this node knows of (id and addresses), if any.
    pub fn leader(&self) -> Option<(u64, PeerAddr)> {
        let m = self.raft.metrics();
        let m = openraft_rt::WatchReceiver::borrow_watched(&m);
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?;
        Some((id, PeerAddr::parse(&node.addr)))
    }

    /// A copy of openraft's current metrics of this group (role, term, leader, indexes).
    pub fn metrics_now(&self) -> openraft::RaftMetrics<crate::types::TypeConfig> {
        openraft_rt::WatchReceiver::borrow_watched(&self.raft.metrics()).clone()
    }

    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// Waits until this replica has applied log index `index` (a follower read's read index).
    pub async fn wait_applied(&self, index: u64, timeout: std::time::Duration) -> Result<(), ProposeError> {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "read index applied")
            .await
            .map(|_| ())
            .map_err(|e| ProposeError::Unavailable(format!("group {}: waiting to apply index {index}: {e}", self.id)))
    }

    /// Waits until this group has a leader (this node, for a one-member group) and has applied
    /// everything it knows to be committed. Not "its whole log": under load a follower's log
    /// always runs ahead of the commit index (entries are appended before they commit), so a
    /// restarted node waited out the whole timeout per group before it said ready.
    ///
    /// "Knows to be committed" needs a commit index from a leader (`cluster_committed`): the
    /// commit index is not stored (openraft's `save_committed` is not implemented), so a
    /// restarted replica knows none until the leader's first append, and passed at once, then
    /// replayed its log after saying ready (seen: ready after 0.8 s, two groups at applied 0
    /// of 22k).
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> anyhow::Result<()> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| m.current_leader.is_some() && m.cluster_committed.is_some() && m.last_applied.map(|l| l.index) >= m.local_committed.map(|l| l.index),
                "leader elected and committed log applied",
            )
            .await;
        m.map(|_| ()).map_err(|e| {
            if !matches!(e, openraft::metrics::WaitError::Timeout(..)) {
                return anyhow::anyhow!("group {}: {e}", self.id);
            }
            // openraft's timeout message carries its whole metrics struct; an operator needs these.
            let m = self.metrics_now();
            let leader = m.current_leader.map_or_else(|| "no leader known (are the other nodes up and reachable?)".to_string(), |l| format!("leader node {l}"));
            let committed = m.cluster_committed.map_or_else(|| "no commit index heard from a leader".to_string(), |c| format!("commit index {}", c.index));
            let applied = m.last_applied.map_or(0, |l| l.index);
            anyhow::anyhow!("group {}: not ready after {timeout:?}: {leader}, term {}, {:?}; {committed}, applied {applied}", self.id, m.current_term, m.state)
        })
    }

    /// Proposes commands (in order, as one unit: they land in the same entry) and returns their
    /// outcomes once committed and applied.
    pub async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, ProposeError> {
        assert!(!commands.is_empty() && commands.len() <= COMMANDS_PER_ENTRY_MAX, "propose 1..={COMMANDS_PER_ENTRY_MAX} commands");
        while self.queue.borrow().len() + commands.len() > QUEUED_COMMANDS_MAX {
            self.space_wake.listen().await;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().push_back((commands.len(), tx));
        self.queue.borrow_mut().extend(commands);
        self.pump_wake.notify();
        rx.await.map_err(|_| ProposeError::Unavailable("the group stopped".into()))?
    }

    /// Keeps a spare WAL segment ready, so that a segment rollover is a rename instead of a
    /// 64 MiB zero-fill on the flush path (measured: 32-65 ms flushes, the p99 of writes).
    async fn make_spares(this: std::rc::Weak<Group>) {
        loop {
            glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
            let Some(g) = this.upgrade() else { return };
            if g.log.wal().needs_spare()
                && let Err(e) = g.log.wal().prepare_spare().await
            {
                eprintln!("{} group {}: preparing a spare WAL segment failed ({e}); segments are created on the flush path", stratos_common::process::who(), g.id);
            }
        }
    }

    /// Asks for a snapshot once the log since the last one is long enough: `entries` entries,
    /// or `bytes` bytes written since the last request (or since the node started), whichever
    /// comes first, and in either case not before the log on disk holds `ratio` times the last
    /// snapshot's size.
    ///
    /// Bytes, because an entry holds 1 to 256 commands: loading 6M keys at 64 per call wrote
    /// 1.7 GB of log per shard without reaching 100,000 entries, so openraft's policy (entries
    /// only) took no snapshot and a restart replayed it all (13.9 s). The floor, because a
    /// snapshot costs time proportional to the state, so with fixed counts
    /// alone a growing namespace spends a growing share of the core on snapshots: loading 20M
    /// keys, each shard's last snapshots (10M keys, 11 s paced) ran back to back, one every
    /// 256 MiB of log, and the load's last 25 s ran at half its median rate. With the floor,
    /// snapshot work per byte of log stays bounded as the state grows, and a restart replays at
    /// most about `ratio` times the snapshot it loads.
    async fn snapshot_trigger(this: std::rc::Weak<Group>, policy: SnapshotTrigger) {
        // What was written and applied when a snapshot was last asked for: the counts start
        // there too, so a request is not repeated while openraft's metrics still show the
        // snapshot before it.
        let (mut mark, mut applied_mark) = (0u64, 0u64);
        loop {
            glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
            let Some(g) = this.upgrade() else { return };
            if g.state.shard.borrow().is_snapshotting() {
                continue;
            }
            let written = g.log.wal().stats().bytes_written;
            let since = openraft_rt::WatchReceiver::borrow_watched(&g.raft.metrics()).snapshot.map_or(0, |s| s.index);
            let applied = g.state.applied_log_index();
            let entries = applied.saturating_sub(since.max(applied_mark));
            let log_bytes = g.log.wal().segment_count() as u64 * policy.segment_bytes;
            if !policy.due(entries, written.saturating_sub(mark), log_bytes, || std::fs::metadata(g.dir.join("snapshot")).map_or(0, |m| m.len())) {
                continue;
            }
            (mark, applied_mark) = (written, applied);
            if let Err(e) = g.raft.trigger().snapshot().await {
                eprintln!("{} group {}: asking for a snapshot: {e}", stratos_common::process::who(), g.id);
            }
        }
    }

    async fn pump(this: std::rc::Weak<Group>) {
        loop {
            let Some(g) = this.upgrade() else { return };
            let listener = g.pump_wake.listen();
            if g.queue.borrow().is_empty() || g.in_flight.get() >= PROPOSALS_IN_FLIGHT_MAX {
                drop(g);
                listener.await;
                continue;
            }
            // Take whole units (a caller's commands stay in one entry) up to the entry limit.
            let mut commands = Vec::new();
            let mut units = Vec::new();
            {
                let mut waiters = g.waiters.borrow_mut();
                let mut queue = g.queue.borrow_mut();
                while let Some((n, _)) = waiters.front() {
                    if !commands.is_empty() && commands.len() + n > COMMANDS_PER_ENTRY_MAX {
                        break;
                    }
                    let (n, tx) = waiters.pop_front().expect("front exists");
                    commands.extend(queue.drain(..n));
                    units.push((n, tx));
                }
            }
            g.space_wake.notify();
            g.entry_commands.borrow_mut().record(commands.len() as u64);
            g.in_flight.set(g.in_flight.get() + 1);
            let group = g.clone();
            glommio::spawn_local(async move {
                let result = group.raft.client_write(Proposal::new(commands)).await;
                group.in_flight.set(group.in_flight.get() - 1);
                group.pump_wake.notify();
                match result {
                    Ok(resp) => {
                        let mut outcomes = resp.data.0.into_iter();
                        for (n, tx) in units {
                            let _ = tx.send(Ok(outcomes.by_ref().take(n).collect()));
                        }
                    }
                    Err(e) => {
                        let err = match e.forward_to_leader() {
                            Some(f) => ProposeError::NotLeader(f.leader_node.as_ref().map(|n| PeerAddr::parse(&n.addr).rpc)),
                            None => ProposeError::Unavailable(e.to_string()),
                        };
                        for (_, tx) in units {
                            let _ = tx.send(Err(err.clone()));
                        }
                    }
                }
            })
            .detach();
        }
    }

    /// Waits until reads at this moment are linearizable: this node is still the leader and has
    /// applied everything committed before the call (openraft's read index).
    ///
    /// openraft's future is ~4.7 KiB, and a future holds the largest of those it awaits: kept
    /// inline, it made every caller's future as large, a write's too (its cold path asks for a
    /// read index), and each level of the call chain moved those bytes again (the move into
    /// capnp-rpc's box at dispatch alone: ~1.3k of the OM's ~77.5k instructions per key; 0.6k
    /// and 76.1k boxed). Boxed, it costs one allocation per read barrier.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        match Box::pin(self.raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(match e.forward_to_leader() {
                Some(f) => ProposeError::NotLeader(f.leader_node.as_ref().map(|n| PeerAddr::parse(&n.addr).rpc)),
                None => ProposeError::Unavailable(e.to_string()),
            }),
        }
    }

    /// The current term, when this node leads the group and is its only voter (so no other
    /// node can commit to it). From openraft's metrics: a membership this node appended shows
    /// there before the entry can reach anyone, so a caller that starts every membership change
    /// itself (and stops trusting this first) is never behind a change. Read without copying:
    /// a single node asks this on every meta fence, and `voter_ids()` collects a set each time.
    pub fn solo_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = openraft_rt::WatchReceiver::borrow_watched(&m);
        // The voters (the union of the joint configs) are exactly this node.
        let configs = m.membership_config.membership().get_joint_config();
        let alone = configs.iter().all(|c| c.iter().all(|v| *v == m.id)) && configs.iter().any(|c| c.contains(&m.id));
        (alone && m.current_leader == Some(m.id)).then_some(m.current_term)
    }

    /// Voters in the group's current membership (1: this node alone, no quorum round).
    pub fn voters(&self) -> usize {
        let m = self.raft.metrics();
        openraft_rt::WatchReceiver::borrow_watched(&m).membership_config.membership().voter_ids().count()
    }

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
        let _ = self.log.wal().sync().await;
    }
}

/// A single-threaded notification: `listen()` before checking a condition, `notify()` after
/// changing it; no wake-up is lost between the two.
pub mod local_event {
    use std::cell::RefCell;
    use std::future::Future;
    use std::pin::Pin;
    use std::rc::Rc;
    use std::task::{Context, Poll, Waker};

    #[derive(Debug, Default)]
    struct Slot {
        fired: bool,
        waker: Option<Waker>,
    }

    #[derive(Debug, Default)]
    pub struct Event {
        listeners: RefCell<Vec<Rc<RefCell<Slot>>>>,
    }

    #[derive(Debug)]
    pub struct Listener(Rc<RefCell<Slot>>);

    impl Event {
        pub fn listen(&self) -> Listener {
            let slot = Rc::new(RefCell::new(Slot::default()));
            self.listeners.borrow_mut().push(slot.clone());
            Listener(slot)
        }
        pub fn notify(&self) {
            for s in self.listeners.borrow_mut().drain(..) {
                let mut s = s.borrow_mut();
                s.fired = true;
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        }
    }

    impl Future for Listener {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let mut s = self.0.borrow_mut();
            if s.fired {
                Poll::Ready(())
            } else {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SnapshotTrigger;

    #[test]
    fn a_snapshot_is_due_by_entries_or_bytes_and_not_before_the_log_weighs_its_share() {
        let t = SnapshotTrigger { entries: 100, bytes: 1_000, ratio: 0.5, segment_bytes: 64 };
        let never = || -> u64 { panic!("the snapshot's size is asked only when a count is reached") };
        assert!(!t.due(99, 999, 10_000, never));
        assert!(t.due(100, 0, 0, || 0), "no snapshot yet: no floor");
        assert!(t.due(0, 1_000, 500, || 1_000), "the log holds half the snapshot");
        assert!(!t.due(100, 1_000, 499, || 1_000), "a count is reached, the log is under half the snapshot");
        let no_floor = SnapshotTrigger { ratio: 0.0, ..t };
        assert!(no_floor.due(100, 0, 0, || 1 << 40));
        let entries_only = SnapshotTrigger { bytes: 0, ..t };
        assert!(!entries_only.due(0, u64::MAX, u64::MAX, never));
    }
}
