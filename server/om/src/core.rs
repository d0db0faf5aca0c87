//! One executor ("core") of an OM node: the groups it owns, its view of the meta group, and
//! the channel mesh to the other cores. Nothing here is shared across threads: cores exchange
//! [`Msg`]s over bounded channels, and a request for another core's group travels as one.
//!
//! The core keeps its groups, its mesh and the request path (writes, reads, forwarding to a
//! leader on another node, linearizable reads, meta fences). What each core also runs beside it
//! lives in its own module, as more `impl Core` blocks with their own small state:
//! [`crate::balance`], [`crate::membership`], [`crate::rename`], [`crate::housekeeping`],
//! [`crate::scm_duties`], and the metrics gathering in [`crate::metrics`].
//!
//! Placement: the meta group is group 0, on core 0; key shard `s` is group `s + 1`, on core
//! `s % cores`. A key belongs to shard `crc32(volume \0 bucket \0 key) % shards`; the shard
//! count is fixed when the data directory is formatted, so this hash is part of the on-disk
//! format.

use std::cell::RefCell;
use foldhash::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use stratos_schema::om_capnp::Status;
use stratos_shard::{BucketUsage, Command, OmError, Op, Reply, rights};
use tokio::sync::{mpsc, oneshot};

use crate::convert::{BucketView, KeyView, VolumeView, WireError};
use crate::meta_view::{Change, MetaView};
use crate::coalesce::Coalesce;
use crate::quota::{Need, allowed_commits};
use crate::membership::MemberChange;
use crate::metrics::CoreStats;
use stratos_raft::group::{Group, ProposeError};
use stratos_raft::transport::{Out, PeerAddr, Transport};
use stratos_raft::types::Proposal;

pub const META_GROUP: u32 = 0;
/// Messages queued to one core at most (per sender: tokio's channel bounds the total).
pub const MESH_QUEUE_MAX: usize = 4096;
/// A write forwarded to a group's leader on another node, or a read index asked of it, is
/// given up after this long (the caller sees UNAVAILABLE and retries with the same ids).
pub const PEER_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `fut`, or UNAVAILABLE after [`PEER_CALL_TIMEOUT`]: a leader cut off from its quorum
/// neither commits nor confirms a read index, and its clients must hear so (and retry, with the
/// same request ids, wherever a quorum is) instead of waiting for the partition to heal.
/// On [`crate::deadline`]'s coarse timer (it fires up to a tick late): every write of every
/// call waits here, and a reactor timer each cost about 2% of the OM's CPU.
pub(crate) async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> Result<T, WireError> {
    crate::deadline::timeout(PEER_CALL_TIMEOUT, fut)
        .await
        .map_err(|_| WireError::new(Status::Unavailable, format!("{what}: no answer within {PEER_CALL_TIMEOUT:?} (this node may be cut off from a majority); the outcome is unknown, retry")))
}

use stratos_common::process::now_ms;

/// A command the OM itself issues (fences, rename steps, housekeeping): as an administrator,
/// with no retry identity (these commands are idempotent or remembered otherwise).
pub fn om_command(op: Op) -> Command {
    Command { ctx: stratos_shard::CommandContext { client_id: 0, request_id: 0, time_ms: now_ms(), principal: stratos_shard::Principal::admin("om"), bucket: None }, op }
}

pub use stratos_schema::shard_of;

/// What the cores of one node share so that a meta fence costs nothing while this node is the
/// meta group's only voter (a single-node OM, the common development and small-site shape).
///
/// Why that is safe: a meta write is acknowledged only after core 0 applied it, and core 0
/// stores its view's index in `applied` as it applies (before any reply for the entry can
/// leave). With one voter, no other node can commit to the meta group, so `applied` covers
/// every meta write acknowledged anywhere. `term` is the term in which that was established,
/// with a full read index first (its wait covers entries committed before a restart); 0 when
/// off. Only this node can change the membership while it leads alone, and it turns `term` off
/// before it starts (see `change_members_here`): a stale `term` read by another core is from a
/// moment when the node still was the only voter.
#[derive(Debug, Default)]
pub struct SoloMeta {
    /// Core 0's meta-view index, stored when it applies a meta entry.
    pub applied: std::sync::atomic::AtomicU64,
    /// The term in which this node leads the meta group as its only voter (0: not known to).
    pub term: std::sync::atomic::AtomicU64,
    /// Meta membership changes started (a solo term found during one is not kept).
    pub changes_started: std::sync::atomic::AtomicU64,
    /// Meta membership changes not (yet) known to have finished: while any is, no solo fence.
    /// A change that failed or timed out is never counted as finished: openraft may still apply
    /// it, so solo fences stay off until the node restarts.
    pub changing: std::sync::atomic::AtomicU64,
}

pub fn group_of_shard(shard: u32) -> u32 {
    shard + 1
}

pub fn core_of_group(group: u32, cores: usize) -> usize {
    if group == META_GROUP { 0 } else { (group - 1) as usize % cores }
}

/// Outcomes of a write, and the meta index the owner had applied when answering.
pub type WriteReply = (Vec<Result<Reply, WireError>>, u64);

#[derive(Debug)]
pub enum Query {
    VolumeInfo(String),
    ListVolumes { owner: Option<String>, prefix: String, start_after: String, limit: usize },
    BucketInfo(String, String),
    ListBuckets { volume: String, prefix: String, start_after: String, limit: usize },
    /// This shard's usage of each bucket id.
    BucketUsages(Vec<u64>),
    /// This shard's bytes in each volume id.
    VolumeUsed(Vec<u64>),
    /// A bucket's keys in this shard; with a delimiter, each common prefix's first only.
    ListKeysIn { bucket_id: u64, prefix: String, start_after: String, limit: usize, delimiter: String },
    /// Keys of one bucket on this shard, with their positions in the caller's list.
    /// Keys looked up as `principal`, who needs `right` (READ, or READ_ACL to read their ACLs).
    LookupKeys { principal: stratos_shard::Principal, volume: String, bucket: String, keys: Vec<(usize, String)>, right: u16 },
    /// The S3 secret of an access key (meta group).
    S3Secret(String),
    /// A multipart upload's record and parts after a part number (the key's shard).
    ListParts { bucket_id: u64, key: String, upload_id: String, marker: u32, limit: usize },
    /// A bucket's multipart uploads on this shard (key prefix, after (key, upload id)).
    /// With each upload the value of its metadata pair named `with` (empty: none); with a
    /// delimiter, each common prefix's first upload only.
    ListUploadsIn { bucket_id: u64, prefix: String, after: (String, String), limit: usize, with: String, delimiter: String },
}

#[derive(Debug)]
pub enum ReadResult {
    Volumes(Vec<VolumeView>, bool),
    Buckets(Vec<BucketView>, bool),
    Usages(Vec<BucketUsage>),
    Used(Vec<u64>),
    Keys(Vec<KeyView>, bool),
    KeyLookups(Vec<(usize, Result<KeyView, WireError>)>),
    Secret(String),
    Parts(stratos_shard::records::UploadRecord, Vec<(u32, stratos_shard::records::PartRecord)>, bool),
    Uploads(Vec<stratos_shard::ListedUpload>, bool),
}

#[derive(Debug)]
pub enum Msg {
    /// Propose `commands` to `group`. With `fill`, the owner first checks the caller's rights and
    /// copies the bucket's facts from its meta view into each command (key shards).
    Write { group: u32, commands: Vec<Command>, fill: bool, min_meta: u64, reply: oneshot::Sender<WriteReply> },
    Read { group: u32, query: Query, min_meta: u64, reply: oneshot::Sender<Result<ReadResult, WireError>> },
    /// Meta-group changes, in log order (from core 0).
    Meta { log_index: u64, changes: Arc<Vec<Change>> },
    /// A Raft connection accepted by core 0 for this core (its hello named it): the socket.
    RaftConnection(std::os::fd::OwnedFd),
    /// Move a group's leadership (see [`Core::transfer`]).
    Transfer { group: u32, to: u64, reply: oneshot::Sender<Result<(), WireError>> },
    /// The leader (client address, "" if none known) of each group this core owns.
    Leaders { reply: oneshot::Sender<Vec<(u32, String)>> },
    /// Change the membership of each group this core leads (see [`Core::change_members`]).
    Members { change: MemberChange, reply: oneshot::Sender<Result<Vec<u32>, WireError>> },
    /// A meta fence for another core (core 0 answers; see [`Core::meta_fence`]).
    MetaFence { reply: oneshot::Sender<Result<u64, WireError>> },
    /// This core's metrics: its groups' samples and its meta-view index.
    Metrics { hashes: bool, reply: oneshot::Sender<crate::metrics::CoreMetrics> },
    /// The replication an open key of `group` (a group of this core) was opened with (see
    /// [`Core::open_replication`]).
    OpenReplication { group: u32, open_id: u64, reply: oneshot::Sender<Option<stratos_shard::records::Replication>> },
}

pub struct Core {
    pub index: usize,
    pub cores: usize,
    pub shards: u32,
    pub groups: HashMap<u32, Rc<Group>>,
    pub mesh: Vec<mpsc::Sender<Msg>>,
    pub view: RefCell<MetaView>,
    pub admins: Vec<String>,
    pub admin_groups: Vec<String>,
    pub open_key_ttl_ms: u64,
    pub multipart_upload_ttl_ms: u64,
    /// A day of S3 lifecycle rules, in ms (`OmConfig::lifecycle_day_secs`).
    pub lifecycle_day_ms: u64,
    pub housekeeping_interval_ms: u64,
    /// `OmConfig::connection_calls_max`: each client connection's [`stratos_common::rpc::Gate`].
    pub connection_calls_max: usize,
    pub stats: CoreStats,
    /// The data path (SCM connection, block pools, tokens); `None` for a metadata-only OM.
    pub data: Option<Rc<crate::datapath::DataPath>>,
    /// Raft traffic, forwarded writes and read indexes to the other OM nodes.
    pub transport: Rc<Transport>,
    /// This node's certificate, when the cluster is secured (issue 20): for Raft connections
    /// this core takes over from core 0 (see `peer::serve`).
    pub tls: Option<stratos_common::tls::NodeTls>,
    /// Meta fences in flight on this core, shared by the requests that wait for them.
    pub fences: Rc<Coalesce>,
    /// Each core's own client port on this node (empty until every core has bound its own;
    /// zeros with `--core-ports false`).
    pub core_ports: Arc<std::sync::OnceLock<Vec<u16>>>,
    /// Meta fences answered at once while this node is the meta group's only voter.
    pub solo: Arc<SoloMeta>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("index", &self.index).field("groups", &self.groups.keys().collect::<Vec<_>>()).finish()
    }
}

pub(crate) fn unavailable(what: &str) -> WireError {
    WireError::new(Status::Unavailable, format!("{what}: the OM is shutting down"))
}

impl Core {
    /// Waits until this core's meta view has reached `index` (read-your-writes).
    pub async fn wait_meta(&self, index: u64) {
        loop {
            let listener = self.view.borrow().advanced.listen();
            if self.view.borrow().log_index >= index {
                return;
            }
            listener.await;
        }
    }

    pub fn meta_index(&self) -> u64 {
        self.view.borrow().log_index
    }

    /// A meta fence: a meta-view index that includes every meta write acknowledged before this
    /// call (on any node). A request that checks buckets and rights against the view (key
    /// writes, lookups, listings) waits for its core's view to reach it, so a node whose meta
    /// replica lags (a follower, a node just restarted) never answers from an older namespace
    /// than a client has already seen acknowledged: creating a bucket on one node and writing
    /// a key into it through another always works, and a revoked right is never honoured.
    ///
    /// Core 0 (which holds the meta replica) linearizes a read of the meta group (the leader's
    /// read index: a quorum heartbeat round, no clock trusted; see [`Core::linearize`]), waits
    /// to apply it, and answers with its view's index; other cores ask core 0 over the mesh.
    /// Fences are shared ([`Coalesce`]) on both sides, so under load a core costs the meta
    /// leader one quorum round per round trip, not one per request.
    ///
    /// On core 0 of a node whose meta group has other voters, fences are paced
    /// (`meta_fence_interval_us`): each costs a quorum round, and off the meta leader a call to
    /// it first, which under load is a visible share of every node's CPU. Alone, nothing waits:
    /// after the first read index of its term, a node that is the meta group's only voter
    /// answers a fence at once from core 0's applied index, with no read index and no mesh
    /// message ([`SoloMeta`]; measured −9% of the OM's CPU per key under `ockg`).
    pub async fn meta_fence(self: &Rc<Self>) -> Result<u64, WireError> {
        if let Some(index) = self.solo_fence() {
            self.stats.solo_fence();
            return Ok(index);
        }
        let pace = self.index == 0 && self.group(META_GROUP).voters() > 1;
        // Boxed: the round (a read index, or a mesh message) would otherwise be part of every
        // call's future, which capnp-rpc moves whole into its box at dispatch.
        Box::pin(self.fences.get(pace, || {
            let me = self.clone();
            async move {
                if me.index == 0 {
                    let g = me.group(META_GROUP).clone();
                    let (term, started) = (g.solo_term(), me.solo.changes_started.load(Ordering::Acquire));
                    me.linearize(&g).await?;
                    // A full read index in this term while alone: later fences need none.
                    if let Some(t) = term.filter(|t| me.solo.changing.load(Ordering::Acquire) == 0 && me.solo.changes_started.load(Ordering::Acquire) == started && g.solo_term() == Some(*t)) {
                        me.solo.term.store(t, Ordering::Release);
                    }
                    return Ok(me.meta_index());
                }
                let (reply, rx) = oneshot::channel();
                me.mesh[0].send(Msg::MetaFence { reply }).await.map_err(|_| unavailable("meta fence"))?;
                rx.await.map_err(|_| unavailable("meta fence"))?
            }
        }))
        .await
    }

    /// A meta fence without a round, when [`SoloMeta`] allows one. Core 0 checks its meta
    /// group's current term and membership itself (turning solo fences off when they changed);
    /// other cores trust its word.
    fn solo_fence(&self) -> Option<u64> {
        let term = self.solo.term.load(Ordering::Acquire);
        if term == 0 {
            return None;
        }
        if self.index != 0 {
            return Some(self.solo.applied.load(Ordering::Acquire));
        }
        if self.solo.changing.load(Ordering::Acquire) == 0 && self.group(META_GROUP).solo_term() == Some(term) {
            return Some(self.meta_index());
        }
        self.solo.term.store(0, Ordering::Release);
        None
    }

    /// `min_meta` raised to a fresh [`Core::meta_fence`].
    pub async fn fresh_meta(self: &Rc<Self>, min_meta: u64) -> Result<u64, WireError> {
        Ok(min_meta.max(self.meta_fence().await?))
    }

    /// Waits until this core's view reaches `index`, or UNAVAILABLE after
    /// [`PEER_CALL_TIMEOUT`] (a meta replica cut off from its leader never gets there).
    pub async fn wait_meta_within(&self, index: u64) -> Result<(), WireError> {
        // Nearly always the view is already there: then no timer, no message to format. The
        // wait is boxed, so that this future stays a few words in every call's.
        if self.meta_index() >= index {
            return Ok(());
        }
        Box::pin(within(&format!("waiting for this node's namespace to reach meta index {index}"), self.wait_meta(index))).await
    }

    /// Writes to a group on whichever core owns it.
    pub async fn write(&self, group: u32, commands: Vec<Command>, fill: bool, min_meta: u64) -> WriteReply {
        let n = commands.len();
        let core = core_of_group(group, self.cores);
        self.stats.routed(core == self.index);
        if core == self.index {
            return self.owner_write(group, commands, fill, min_meta).await;
        }
        let (tx, rx) = oneshot::channel();
        if self.mesh[core].send(Msg::Write { group, commands, fill, min_meta, reply: tx }).await.is_err() {
            return (vec![Err(unavailable("write")); n], 0);
        }
        rx.await.unwrap_or_else(|_| (vec![Err(unavailable("write")); n], 0))
    }

    /// The replication open key `open_id` of `group` was opened with (it may name another than
    /// its bucket's), from the group's replica on its own core; asked over the mesh when that is
    /// another core (an allocateBlock that landed elsewhere: a client that does not route by
    /// shard, or core ports off). `None` when that replica has not applied the open (a lagging
    /// follower; the leader answered the open only after applying it) or the core is gone: the
    /// caller then takes the bucket's. No Raft read: the open key's replication never changes.
    pub async fn open_replication(&self, group: u32, open_id: u64) -> Option<stratos_shard::records::Replication> {
        let core = core_of_group(group, self.cores);
        if core == self.index {
            return self.open_replication_here(group, open_id);
        }
        let (tx, rx) = oneshot::channel();
        self.mesh[core].send(Msg::OpenReplication { group, open_id, reply: tx }).await.ok()?;
        rx.await.ok().flatten()
    }

    fn open_replication_here(&self, group: u32, open_id: u64) -> Option<stratos_shard::records::Replication> {
        let g = self.groups.get(&group)?;
        let state = g.state.shard.borrow();
        state.open_key(open_id).map(|o| o.replication.native())
    }

    pub async fn read(&self, group: u32, query: Query, min_meta: u64) -> Result<ReadResult, WireError> {
        let core = core_of_group(group, self.cores);
        self.stats.routed(core == self.index);
        if core == self.index {
            return self.local_read(group, query, min_meta).await;
        }
        let (tx, rx) = oneshot::channel();
        self.mesh[core].send(Msg::Read { group, query, min_meta, reply: tx }).await.map_err(|_| unavailable("read"))?;
        rx.await.map_err(|_| unavailable("read"))?
    }

    /// Asks every other core over the mesh (`ask` builds the message around the reply
    /// channel) and collects the answers by core; a core that is gone answers None.
    pub(crate) async fn ask_others<T>(&self, ask: impl Fn(oneshot::Sender<T>) -> Msg) -> Vec<(usize, Option<T>)> {
        let mut out = Vec::new();
        for (i, tx) in self.mesh.iter().enumerate() {
            if i == self.index {
                continue;
            }
            let (reply, rx) = oneshot::channel();
            let answer = if tx.send(ask(reply)).await.is_ok() { rx.await.ok() } else { None };
            out.push((i, answer));
        }
        out
    }

    /// Each group's leader as this node knows it (client address, "" if none), by group id
    /// (0 = meta, s + 1 = shard s): for clients that send each key to its leader.
    pub async fn leaders(self: &Rc<Self>) -> Vec<String> {
        let mut out = vec![String::new(); self.shards as usize + 1];
        let mut put = |pairs: Vec<(u32, String)>| pairs.into_iter().for_each(|(g, a)| out[g as usize] = a);
        put(self.leaders_here());
        for (_, pairs) in self.ask_others(|reply| Msg::Leaders { reply }).await {
            put(pairs.unwrap_or_default());
        }
        out
    }

    /// Per group: the port of this node's core that owns it (0: none, or not known yet).
    pub fn group_ports(&self) -> Vec<u16> {
        let ports = self.core_ports.get();
        (0..=self.shards).map(|g| ports.and_then(|p| p.get(core_of_group(g, self.cores))).copied().unwrap_or(0)).collect()
    }

    pub(crate) fn leaders_here(&self) -> Vec<(u32, String)> {
        self.groups.iter().map(|(&id, g)| (id, g.leader().map(|(_, a)| a.rpc).unwrap_or_default())).collect()
    }

    pub(crate) fn group(&self, id: u32) -> &Rc<Group> {
        self.groups.get(&id).unwrap_or_else(|| panic!("core {} asked for group {id}, which it does not own", self.index))
    }

    /// A write on the core that owns `group`: proposed here if this node leads the group,
    /// forwarded to the leader's node otherwise (over the Raft transport, so it rides in the
    /// same batches as the group's Raft traffic). With no leader known, proposing here gives
    /// NOT_LEADER, which the client retries.
    async fn owner_write(&self, group: u32, commands: Vec<Command>, fill: bool, min_meta: u64) -> WriteReply {
        let g = self.group(group);
        if !g.is_leader()
            && let Some((leader, addr)) = g.leader()
            && leader != self.transport.me
        {
            // Boxed: a forward (rare) would otherwise double the size of every local write's
            // future, which each call moves whole into its box at dispatch.
            return Box::pin(self.forward(group, leader, &addr, commands, fill, min_meta)).await;
        }
        self.local_write(group, commands, fill, min_meta).await
    }

    async fn forward(&self, group: u32, leader: u64, addr: &PeerAddr, commands: Vec<Command>, fill: bool, min_meta: u64) -> WriteReply {
        let n = commands.len();
        let failed = |status: Status, why: String| (vec![Err(WireError::new(status, why)); n], 0);
        let proposal = Proposal::new(commands).bytes().to_vec();
        let call = self.transport.call(leader, &addr.raft, group, Out::Forward { proposal, fill, min_meta });
        match within(&format!("forwarding a write of group {group} to its leader, node {leader}"), call).await {
            Ok(Ok(bytes)) => crate::peer::decode_forward_reply(&bytes).unwrap_or_else(|e| failed(Status::Internal, format!("node {leader}: {e}"))),
            Ok(Err(e)) => failed(Status::Unavailable, format!("forwarding a write of group {group} to its leader, node {leader}: {e}")),
            Err(e) => (vec![Err(e); n], 0),
        }
    }

    /// Waits until a read of `g` here is linearizable. On the leader: openraft's read index
    /// (a heartbeat round to a quorum confirms leadership; no clock is trusted, so no lease
    /// and no clock-drift bound is involved). On a follower: the leader's read index, asked
    /// over the transport, then this replica applies up to it and serves the read itself.
    pub async fn linearize(&self, g: &Group) -> Result<(), WireError> {
        let remote = if g.is_leader() { None } else { Some(g.leader().ok_or_else(|| WireError::from(ProposeError::NotLeader(None)))?) };
        let Some((leader, addr)) = remote.filter(|(leader, _)| *leader != self.transport.me) else {
            return within("confirming leadership for a read", g.read_barrier()).await?.map_err(WireError::from);
        };
        // A follower's way, boxed: its peer call and wait are ~1.6 KiB of future that every
        // read and write on a leader would otherwise carry (and move at each await above).
        Box::pin(self.linearize_at(g, leader, addr)).await
    }

    /// [`Self::linearize`] on a follower: the leader's read index, then this replica's apply.
    async fn linearize_at(&self, g: &Group, leader: u64, addr: PeerAddr) -> Result<(), WireError> {
        let call = self.transport.call(leader, &addr.raft, g.id, Out::ReadIndex);
        let index = match within(&format!("asking the leader of group {}, node {leader}, for its read index", g.id), call).await? {
            Ok(b) if b.len() == 8 => u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            Ok(b) => return Err(WireError::new(Status::Internal, format!("node {leader}: a read index of {} bytes", b.len()))),
            Err(e) => return Err(WireError { status: Status::NotLeader, message: format!("group {}: {e}", g.id), leader_hint: addr.rpc }),
        };
        g.wait_applied(index, PEER_CALL_TIMEOUT).await.map_err(WireError::from)
    }

    /// Proposes on this node, whether or not it leads the group (housekeeping, forwarded writes).
    pub async fn local_write(&self, group: u32, commands: Vec<Command>, fill: bool, min_meta: u64) -> WriteReply {
        let started = std::time::Instant::now();
        let reply = self.local_write_inner(group, commands, fill, min_meta).await;
        let errors = reply.0.iter().filter(|o| o.is_err()).count();
        self.stats.write_done(group, reply.0.len(), errors, started.elapsed().as_micros() as u64);
        reply
    }

    async fn local_write_inner(&self, group: u32, mut commands: Vec<Command>, fill: bool, min_meta: u64) -> WriteReply {
        if let Err(e) = self.wait_meta_within(min_meta).await {
            return (vec![Err(e); commands.len()], self.meta_index());
        }
        let g = self.group(group);
        // Outcomes decided before proposing (no bucket, no right), by position; empty while
        // there are none, which is nearly always: then nothing here allocates.
        let n = commands.len();
        let mut early: Vec<Option<Result<Reply, WireError>>> = Vec::new();
        // Changes of a key's entries that its bucket refuses the caller, by position, with
        // that refusal: proposed only where the key grants them.
        let mut by_key: Vec<(usize, stratos_shard::OmError)> = Vec::new();
        if fill {
            let view = self.view.borrow();
            for (i, c) in commands.iter_mut().enumerate() {
                let (volume, bucket, right) = match &c.op {
                    Op::OpenKey { volume, bucket, .. }
                    | Op::AllocateBlock { volume, bucket, .. }
                    | Op::CommitKey { volume, bucket, .. }
                    | Op::AbortKey { volume, bucket, .. }
                    | Op::CommitKeyCounted { volume, bucket, .. }
                    | Op::CommitKeyAllowed { volume, bucket, .. }
                    | Op::CommitKeyWith { volume, bucket, .. }
                    | Op::CommitKeyWithAcls { volume, bucket, .. }
                    | Op::SetKeyMetadata { volume, bucket, .. }
                    | Op::InitiateUpload { volume, bucket, .. }
                    | Op::CommitPart { volume, bucket, .. }
                    | Op::CommitPartWithChecksum { volume, bucket, .. }
                    | Op::CompleteUpload { volume, bucket, .. }
                    | Op::CompleteUploadWith { volume, bucket, .. }
                    | Op::CompleteUploadWithAcls { volume, bucket, .. }
                    | Op::AbortUpload { volume, bucket, .. }
                    | Op::RenameKey { volume, bucket, .. }
                    | Op::RenameOut { volume, bucket, .. }
                    | Op::RenameIn { volume, bucket, .. } => (volume, bucket, rights::WRITE),
                    Op::DeleteKey { volume, bucket, .. } | Op::DeleteKeys { volume, bucket, .. } | Op::ExpireKeys { volume, bucket, .. } => (volume, bucket, rights::DELETE),
                    Op::SetKeyAcls { volume, bucket, .. }
                    | Op::EditKeyAcls { volume, bucket, .. }
                    | Op::KeyAclsByKeyGrant { volume, bucket, .. }
                    | Op::SetKeyAclsIf { volume, bucket, .. } => (volume, bucket, rights::WRITE_ACL),
                    other => panic!("a non-key command {other:?} sent for bucket facts"),
                };
                match view.key_bucket(&c.ctx.principal, volume, bucket, right) {
                    Ok(r) => c.ctx.bucket = Some(r),
                    // A key's own entries may grant what its bucket's refuse (S3's WRITE_ACP on
                    // an object): asked below, once this replica has applied what its group
                    // committed; the shard asks again against the version there when it
                    // applies (`KeyAclsByKeyGrant`), which may be another by then.
                    Err(refused @ stratos_shard::OmError::PermissionDenied { .. }) if right == rights::WRITE_ACL => {
                        match view.key_bucket(&stratos_shard::Principal::admin("om"), volume, bucket, rights::READ) {
                            Ok(r) => {
                                c.ctx.bucket = Some(r);
                                by_key_grant(&mut c.op);
                                by_key.push((i, refused));
                            }
                            Err(e) => {
                                early.resize(n, None);
                                early[i] = Some(Err(e.into()));
                            }
                        }
                    }
                    // A rename's step 2 is proposed even so: without facts the shard answers
                    // BUCKET_NOT_FOUND and remembers it, so a repeat can never succeed later
                    // (after step 1 was given up on this answer).
                    Err(_) if matches!(c.op, Op::RenameIn { .. }) => {}
                    Err(e) => {
                        early.resize(n, None);
                        early[i] = Some(Err(e.into()));
                    }
                }
            }
        }
        if !by_key.is_empty() {
            // A caller the key's present version does not grant costs no log entry. Asked
            // after this replica applied what its group committed (a grant acknowledged by a
            // leader before it is granted here too), and never of a retry whose request the
            // shard remembers (a change that took its caller's own grant away is answered as
            // it was the first time).
            let linearized = self.linearize(g).await;
            let shard = g.state.shard.borrow();
            for (i, refused) in by_key {
                let c = &commands[i];
                let key = match &c.op {
                    Op::KeyAclsByKeyGrant { key, .. } | Op::SetKeyAclsIf { key, .. } => key.as_str(),
                    _ => "",
                };
                let bucket_id = c.ctx.bucket.map_or(0, |b| b.bucket_id);
                let refuse = match &linearized {
                    Err(e) => Some(e.clone()),
                    Ok(()) if shard.remembers(c.ctx.client_id, c.ctx.request_id) || shard.key_grants(bucket_id, key, &c.ctx.principal, rights::WRITE_ACL) => None,
                    Ok(()) => Some(refused.into()),
                };
                if let Some(e) = refuse {
                    early.resize(n, None);
                    early[i] = Some(Err(e));
                }
            }
        }
        if fill && group != META_GROUP && self.shards >= 2 {
            allowed_commits(&mut commands, &early);
        }
        let propose: Vec<Command> = if early.is_empty() {
            commands
        } else {
            commands.into_iter().zip(&early).filter(|(_, e)| e.is_none()).map(|(c, _)| c).collect()
        };
        // A commit short of its quota allowance is proposed again once the allowance is
        // raised: keep a copy (only of such commits, which only buckets with quotas make).
        // Built only when the batch holds such a commit: the hot path allocates nothing more.
        let allowed = |c: &Command| matches!(c.op, Op::CommitKeyAllowed { .. } | Op::CommitKeyWith { allowed: true, .. } | Op::CommitKeyWithAcls { allowed: true, .. } | Op::CompleteUpload { allowed: true, .. } | Op::CompleteUploadWith { allowed: true, .. } | Op::CompleteUploadWithAcls { allowed: true, .. });
        let again: Vec<Option<Command>> = if propose.iter().any(allowed) { propose.iter().map(|c| allowed(c).then(|| c.clone())).collect() } else { Vec::new() };
        let mut proposed = if propose.is_empty() {
            Vec::new().into_iter()
        } else {
            match within("committing a write", g.propose(propose)).await.and_then(|r| r.map_err(WireError::from)) {
                Ok(outcomes) => {
                    let mut out = Vec::with_capacity(outcomes.len());
                    let mut again = again.into_iter();
                    for o in outcomes {
                        out.push(match (o, again.next().flatten()) {
                            (Err(OmError::NeedsAllowance { scope, bytes, keys, adding_bytes, adding_keys }), Some(c)) => {
                                let need = Need { scope, bytes, keys, adding_bytes, adding_keys };
                                Box::pin(self.commit_with_allowance(group, c, need, min_meta)).await
                            }
                            (o, _) => o.map_err(WireError::from),
                        });
                    }
                    out.into_iter()
                }
                Err(e) => {
                    let n = if early.is_empty() { n } else { early.iter().filter(|e| e.is_none()).count() };
                    vec![Err(e); n].into_iter()
                }
            }
        };
        let outcomes = if early.is_empty() {
            proposed.collect()
        } else {
            early.into_iter().map(|e| e.unwrap_or_else(|| proposed.next().expect("one outcome per proposed command"))).collect()
        };
        let meta_index = if group == META_GROUP { g.state.applied_log_index() } else { self.meta_index() };
        (outcomes, meta_index)
    }

    async fn local_read(&self, group: u32, query: Query, min_meta: u64) -> Result<ReadResult, WireError> {
        let started = std::time::Instant::now();
        let r = self.local_read_inner(group, query, min_meta).await;
        self.stats.read_done(group, r.is_ok(), started.elapsed().as_micros() as u64);
        r
    }

    async fn local_read_inner(&self, group: u32, query: Query, min_meta: u64) -> Result<ReadResult, WireError> {
        self.wait_meta_within(min_meta).await?;
        let g = self.group(group);
        // Linearizable on the leader and on followers alike (see `linearize`).
        self.linearize(g).await?;
        let shard = g.state.shard.borrow();
        Ok(match query {
            Query::VolumeInfo(v) => {
                let i = shard.volume_info(&v)?;
                ReadResult::Volumes(vec![volume_view(&i)], false)
            }
            Query::ListVolumes { owner, prefix, start_after, limit } => {
                let page = shard.list_volumes(owner.as_deref(), &prefix, &start_after, limit)?;
                ReadResult::Volumes(page.items.iter().map(volume_view).collect(), page.truncated)
            }
            Query::BucketInfo(v, b) => {
                let i = shard.bucket_info(&v, &b)?;
                ReadResult::Buckets(vec![bucket_view(&i)], false)
            }
            Query::ListBuckets { volume, prefix, start_after, limit } => {
                let page = shard.list_buckets(&volume, &prefix, &start_after, limit)?;
                ReadResult::Buckets(page.items.iter().map(bucket_view).collect(), page.truncated)
            }
            Query::ListParts { bucket_id, key, upload_id, marker, limit } => {
                let (u, parts, truncated) = shard.list_parts(bucket_id, &key, &upload_id, marker, limit)?;
                ReadResult::Parts(u, parts, truncated)
            }
            Query::ListUploadsIn { bucket_id, prefix, after, limit, with, delimiter } => {
                let (list, truncated) = shard.list_uploads_in(bucket_id, &prefix, (&after.0, &after.1), limit, &with, &delimiter);
                ReadResult::Uploads(list, truncated)
            }
            Query::S3Secret(id) => match shard.s3_secret(&id) {
                Some(secret) => ReadResult::Secret(secret.to_string()),
                None => return Err(OmError::S3SecretNotFound(id).into()),
            },
            Query::BucketUsages(ids) => ReadResult::Usages(ids.iter().map(|id| shard.bucket_usage_of(*id)).collect()),
            Query::VolumeUsed(ids) => ReadResult::Used(ids.iter().map(|id| shard.volume_used_bytes_of(*id)).collect()),
            Query::LookupKeys { principal, volume, bucket, keys, right } => {
                // Without the right (READ, or READ_ACL for an ACL) on the bucket, a key's own
                // entries may grant it (S3's object ACLs: a public-read object in a private
                // bucket); a key that is not there, or whose entries do not, is the bucket's
                // refusal (nothing said of its existence).
                let view = self.view.borrow();
                let (r, refused) = match view.key_bucket(&principal, &volume, &bucket, right) {
                    Ok(r) => (r, None),
                    Err(e @ stratos_shard::OmError::PermissionDenied { .. }) => (view.key_bucket(&stratos_shard::Principal::admin("om"), &volume, &bucket, rights::READ)?, Some(e)),
                    Err(e) => return Err(e.into()),
                };
                // Whoever may list the bucket learns that a key is missing anyway: to such a
                // caller a missing key is not found (S3's answer to a holder of ListBucket).
                let refused = refused.map(|e| (e, view.key_bucket(&principal, &volume, &bucket, rights::LIST).is_ok()));
                ReadResult::KeyLookups(
                    keys.into_iter()
                        .map(|(pos, key)| {
                            let k = shard.lookup_key_in(r.bucket_id, &key).map(|k| KeyView::of(&key, k));
                            let k = match (k, &refused) {
                                (Some(k), Some((e, _))) if !stratos_shard::acls_allow_native(&principal, &k.record.acls, right) => Err(e.clone()),
                                (Some(k), _) => Ok(k),
                                (None, Some((e, false))) => Err(e.clone()),
                                (None, _) => Err(stratos_shard::OmError::KeyNotFound(format!("{volume}/{bucket}/{key}"))),
                            };
                            (pos, k.map_err(Into::into))
                        })
                        .collect(),
                )
            }
            Query::ListKeysIn { bucket_id, prefix, start_after, limit, delimiter } => {
                let page = shard.list_keys_rolled_up(bucket_id, &prefix, &start_after, limit, &delimiter)?;
                ReadResult::Keys(page.items.iter().map(|k| KeyView::of(k.name, k.record)).collect(), page.truncated)
            }
        })
    }

    /// Serves messages from other cores until every sender is gone.
    pub async fn serve_mesh(self: Rc<Self>, mut inbox: mpsc::Receiver<Msg>) {
        while let Some(msg) = inbox.recv().await {
            match msg {
                Msg::Meta { log_index, changes } => self.view.borrow_mut().apply(log_index, &changes),
                Msg::Metrics { hashes, reply } => {
                    let _ = reply.send(self.core_metrics(hashes));
                }
                Msg::RaftConnection(fd) => {
                    use std::os::fd::{FromRawFd, IntoRawFd};
                    // SAFETY: the fd is a connected TCP socket that this message owned alone.
                    let stream = unsafe { glommio::net::TcpStream::from_raw_fd(fd.into_raw_fd()) };
                    crate::peer::serve(self.clone(), stream);
                }
                Msg::Write { group, commands, fill, min_meta, reply } => {
                    let me = self.clone();
                    glommio::spawn_local(async move {
                        let _ = reply.send(me.owner_write(group, commands, fill, min_meta).await);
                    })
                    .detach();
                }
                Msg::Leaders { reply } => {
                    let _ = reply.send(self.leaders_here());
                }
                Msg::OpenReplication { group, open_id, reply } => {
                    let _ = reply.send(self.open_replication_here(group, open_id));
                }
                Msg::Members { change, reply } => {
                    let me = self.clone();
                    glommio::spawn_local(async move {
                        let _ = reply.send(me.change_members_here(&change).await);
                    })
                    .detach();
                }
                Msg::MetaFence { reply } => {
                    let me = self.clone();
                    glommio::spawn_local(async move {
                        let _ = reply.send(me.meta_fence().await);
                    })
                    .detach();
                }
                Msg::Transfer { group, to, reply } => {
                    let me = self.clone();
                    glommio::spawn_local(async move {
                        let _ = reply.send(me.transfer(group, to).await);
                    })
                    .detach();
                }
                Msg::Read { group, query, min_meta, reply } => {
                    let me = self.clone();
                    glommio::spawn_local(async move {
                        let _ = reply.send(me.local_read(group, query, min_meta).await);
                    })
                    .detach();
                }
            }
        }
    }
}

/// `SetKeyAcls` or `EditKeyAcls` as `KeyAclsByKeyGrant`, `SetKeyAclsIf` with `by_key`, for a
/// caller whom the key's bucket refuses WRITE_ACL.
fn by_key_grant(op: &mut Op) {
    *op = match std::mem::replace(op, Op::ExpireSessions) {
        Op::SetKeyAcls { volume, bucket, key, acls } => Op::KeyAclsByKeyGrant { volume, bucket, key, set: Some(acls), add: Vec::new(), remove: Vec::new() },
        Op::EditKeyAcls { volume, bucket, key, add, remove } => Op::KeyAclsByKeyGrant { volume, bucket, key, set: None, add, remove },
        Op::SetKeyAclsIf { volume, bucket, key, acls, update_id, .. } => Op::SetKeyAclsIf { volume, bucket, key, acls, update_id, by_key: true },
        other => other,
    };
}

fn volume_view(i: &stratos_shard::VolumeInfo<'_>) -> VolumeView {
    VolumeView { name: i.name.to_string(), record: rkyv::deserialize::<_, rkyv::rancor::Error>(i.record).expect("archived records deserialize"), usage: i.usage }
}

fn bucket_view(i: &stratos_shard::BucketInfo<'_>) -> BucketView {
    BucketView {
        volume: i.volume.to_string(),
        name: i.name.to_string(),
        record: rkyv::deserialize::<_, rkyv::rancor::Error>(i.record).expect("archived records deserialize"),
        usage: i.usage,
    }
}

/// Sends meta changes to every other core in log order (core 0 applied them already). The
/// apply hook only queues; this task does the (possibly waiting) sends.
pub struct MetaBroadcast {
    pub queue: RefCell<std::collections::VecDeque<(u64, Arc<Vec<Change>>)>>,
    pub wake: stratos_raft::group::local_event::Event,
}

impl std::fmt::Debug for MetaBroadcast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetaBroadcast")
    }
}

impl MetaBroadcast {
    pub async fn run(self: Rc<Self>, mesh: Vec<mpsc::Sender<Msg>>) {
        loop {
            let listener = self.wake.listen();
            let next = self.queue.borrow_mut().pop_front();
            match next {
                Some((log_index, changes)) => {
                    for tx in &mesh[1..] {
                        if tx.send(Msg::Meta { log_index, changes: changes.clone() }).await.is_err() {
                            return;
                        }
                    }
                }
                None => listener.await,
            }
        }
    }
}
