//! The shard state: tables, usage counters, the retry cache; `apply` and the reads.
//!
//! Tables (each a `BTreeSet<Entry>`, see [`crate::memtable`]):
//! - volumes, keyed by name → [`VolumeRecord`]
//! - buckets, keyed by `volume \0 bucket` → [`BucketRecord`]
//! - keys, one set per bucket object id, keyed by key name → [`KeyRecord`]
//! - open keys, keyed by open id (u64 big-endian) → [`OpenKeyRecord`], plus an expiry index
//! - the per-user volume list, `owner \0 volume`
//! - deleted blocks, keyed by sequence number (u64 big-endian) → [`DeletedBlocksRecord`]
//!
//! Usage counters (keys, bytes, open keys, buckets) are plain values beside the records, so the
//! hot path never re-serializes a bucket; `check_invariants` recomputes them from the tables.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::command::{Allowance, BucketRef, Command, Elsewhere, Grant, Op, Principal};
use crate::apply_keys::Limit;
use crate::constants::*;
use crate::memtable::{Entry, probe};
use crate::table::Table;
use crate::outcome::{OmError, Outcome, Reply};
use crate::records::*;
use crate::retry_order::{RetryOrder, Slot};

/// Counters of one volume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct VolumeUsage {
    pub buckets: u64,
    /// Replicated bytes of all keys of all its buckets.
    pub used_bytes: u64,
}

/// Counters of one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BucketUsage {
    pub keys: u64,
    /// Replicated bytes: data size × replication factor, summed over keys (as Ozone counts).
    pub used_bytes: u64,
    pub open_keys: u64,
}

/// Recent outcomes of one client, for answering retries (see [`RETRY_WINDOW_MS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Session {
    pub last_seen_ms: u64,
    /// The highest request id whose outcome was forgotten: a retry of a request at or below
    /// it that is not remembered is answered `RetryTooOld` (it may have been applied).
    pub forgotten_max: Option<u64>,
    /// By request id.
    pub outcomes: BTreeMap<u64, Remembered>,
}

/// One remembered outcome, with where and when it was applied.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Remembered {
    pub log_index: u64,
    pub time_ms: u64,
    /// Boxed in memory, inline in a snapshot ([`InlineBox`]). An `Outcome` is 128 bytes, and a
    /// session's B-tree moves its values as it forgets from the front: with the outcome inline,
    /// `Session::forget` was 4.8% of a 6M-key restart's CPU (memmove of B-tree leaves).
    #[rkyv(with = InlineBox)]
    pub outcome: Box<Outcome>,
}

/// Archives a `Box<T>` as `T` itself, so boxing a field in memory leaves the snapshot format
/// as it was.
#[derive(Debug)]
pub struct InlineBox;

impl<T: rkyv::Archive> rkyv::with::ArchiveWith<Box<T>> for InlineBox {
    type Archived = T::Archived;
    type Resolver = T::Resolver;

    fn resolve_with(field: &Box<T>, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        T::resolve(field, resolver, out)
    }
}

impl<T: rkyv::Serialize<S>, S: rkyv::rancor::Fallible + ?Sized> rkyv::with::SerializeWith<Box<T>, S> for InlineBox {
    fn serialize_with(field: &Box<T>, s: &mut S) -> Result<Self::Resolver, S::Error> {
        T::serialize(field, s)
    }
}

impl<T: rkyv::Archive, D: rkyv::rancor::Fallible + ?Sized> rkyv::with::DeserializeWith<T::Archived, Box<T>, D> for InlineBox
where
    T::Archived: rkyv::Deserialize<T, D>,
{
    fn deserialize_with(field: &T::Archived, d: &mut D) -> Result<Box<T>, D::Error> {
        Ok(Box::new(rkyv::Deserialize::deserialize(field, d)?))
    }
}

impl Session {
    fn forget(&mut self, request_id: u64) -> Option<Remembered> {
        let r = self.outcomes.remove(&request_id);
        self.forgotten_max = self.forgotten_max.max(Some(request_id));
        r
    }
}

/// A cross-shard rename in progress on its source shard (see `Op::RenameOut`).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RenameIntent {
    pub volume: String,
    pub bucket: String,
    pub bucket_id: u64,
    pub volume_id: u64,
    pub from: String,
    pub to: String,
    pub dest_shard: u32,
    /// Command time of step 1: the re-driver finishes intents older than a few seconds.
    pub started_ms: u64,
}

/// A remembered step 2 of a cross-shard rename (see `Op::RenameIn`).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RenameArrival {
    pub time_ms: u64,
    pub outcome: Outcome,
}

/// A page of a listing.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// More items match after the last one returned.
    pub truncated: bool,
}

#[derive(Debug)]
pub struct VolumeInfo<'a> {
    pub name: &'a str,
    pub record: &'a ArchivedVolumeRecord,
    pub usage: VolumeUsage,
}

#[derive(Debug)]
pub struct BucketInfo<'a> {
    pub volume: &'a str,
    pub name: &'a str,
    pub record: &'a ArchivedBucketRecord,
    pub usage: BucketUsage,
}

#[derive(Debug)]
pub struct KeyInfo<'a> {
    pub name: &'a str,
    pub record: &'a ArchivedKeyRecord,
}

/// The namespace of one shard.
#[derive(Debug, Default)]
pub struct ShardState {
    /// The Raft group this state belongs to (0 the meta group, or a whole namespace in one
    /// state; 1.. the key shards): the top bits of every object id it hands out.
    pub(crate) group: u32,
    /// The last object sequence number handed out (see [`Ids`]).
    pub(crate) object_seq: u64,
    pub(crate) applied_log_index: u64,
    pub(crate) volumes: Table,
    pub(crate) buckets: Table,
    pub(crate) keys: BTreeMap<u64, Table>,
    pub(crate) open_keys: Table,
    pub(crate) open_key_expiry: BTreeSet<(u64, u64)>,
    pub(crate) user_volumes: BTreeSet<Vec<u8>>,
    pub(crate) deleted_blocks: Table,
    pub(crate) next_deleted_seq: u64,
    pub(crate) volume_usage: BTreeMap<u64, VolumeUsage>,
    pub(crate) bucket_usage: BTreeMap<u64, BucketUsage>,
    pub(crate) sessions: BTreeMap<u64, Session>,
    /// Every remembered outcome in log order; the window forgets from its front. Derived from
    /// `sessions`.
    pub(crate) retry_order: RetryOrder,
    /// Buckets this shard knows only from commands (`ctx.bucket`, sharded namespace): the latest
    /// facts seen, and whether the bucket is fenced (its delete is in progress or done).
    pub(crate) bucket_refs: BTreeMap<u64, (BucketRef, bool)>,
    /// Cross-shard renames started here and not finished, by intent id.
    pub(crate) renames_out: BTreeMap<u64, RenameIntent>,
    /// Keys of `renames_out` (bucket id, name): writes to them are refused. Derived.
    pub(crate) moving: BTreeSet<(u64, String)>,
    /// Outcomes of renames' step 2 here, by (source shard, intent id).
    pub(crate) renames_in: BTreeMap<(u32, u64), RenameArrival>,
    /// Key shards: this shard's quota allowances, by scope (a bucket's or a volume's object id).
    pub(crate) allowances: BTreeMap<u64, Allowance>,
    /// Meta group: the allowances granted, by (scope, key shard group).
    pub(crate) grants: BTreeMap<(u64, u32), Grant>,
    /// Meta group: S3 secrets by access key id (a principal's name; Ozone's s3SecretTable).
    pub(crate) s3_secrets: BTreeMap<String, String>,
    /// Key shards: multipart uploads in progress, by (bucket id, key, upload id).
    pub(crate) uploads: BTreeMap<(u64, String, String), UploadRecord>,
    /// Their parts, one record each, by (bucket id, key, upload id, part number).
    pub(crate) parts: BTreeMap<(u64, String, String, u32), PartRecord>,
    /// The bucket facts carried by the command being applied (not state).
    pub(crate) carried: Option<BucketRef>,
    /// Reused serializer memory (not state).
    pub(crate) scratch: Scratch,
    /// A snapshot is being read from the frozen tables (see `crate::table`; not state). While
    /// it is, a bucket's key table is never dropped when it empties: the snapshot still reads
    /// it.
    pub(crate) snapshotting: bool,
    /// While a snapshot writes the retry sessions: what it still has to write of them as they
    /// were when it began (see [`crate::snapshot::SessionFreeze`]; not state).
    pub(crate) session_freeze: Option<crate::snapshot::SessionFreeze>,
}

/// Serializer memory reused across applies; not part of the state.
#[derive(Default)]
pub(crate) struct Scratch {
    buffer: AlignedVec,
    arena: rkyv::ser::allocator::Arena,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scratch")
    }
}

/// Hands out the object ids of one command: `group << 52 | seq`, the group's next sequence
/// numbers (see [`crate::constants::GROUP_ID_BITS`]). Every replica of a group hands out the
/// same ids, since the sequence is state; ids of different groups never meet.
pub(crate) struct Ids {
    group: u32,
    seq: u64,
}

impl Ids {
    pub(crate) fn next(&mut self) -> u64 {
        assert!(self.seq < OBJECT_SEQ_MAX, "group {} has handed out all {OBJECT_SEQ_MAX} object ids", self.group);
        self.seq += 1;
        object_id(self.group, self.seq)
    }
}

/// The id of object `seq` of group `group` (see [`crate::constants::GROUP_ID_BITS`]).
pub fn object_id(group: u32, seq: u64) -> u64 {
    assert!(group < GROUPS_MAX && (1..=OBJECT_SEQ_MAX).contains(&seq), "object {seq} of group {group} is beyond the id layout");
    (u64::from(group) << OBJECT_SEQ_BITS) | seq
}

/// The group that created object `id`, and its sequence number there.
pub fn object_id_parts(id: u64) -> (u32, u64) {
    ((id >> OBJECT_SEQ_BITS) as u32, id & OBJECT_SEQ_MAX)
}

pub(crate) fn bucket_key(volume: &str, bucket: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(volume.len() + 1 + bucket.len());
    k.extend_from_slice(volume.as_bytes());
    k.push(0);
    k.extend_from_slice(bucket.as_bytes());
    k
}

pub(crate) fn user_volume_key(owner: &str, volume: &str) -> Vec<u8> {
    bucket_key(owner, volume)
}

fn utf8(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("names are stored from &str and validated on snapshot load")
}

impl ShardState {
    /// The state of group 0: the meta group, or a whole namespace in one state (tests, tools).
    pub fn new() -> Self {
        Self::default()
    }

    /// The empty state of Raft group `group` (its object ids carry the group; see
    /// [`crate::constants::GROUP_ID_BITS`]).
    pub fn for_group(group: u32) -> Self {
        assert!(group < GROUPS_MAX, "group {group}: a cluster has group ids below {GROUPS_MAX}");
        Self { group, ..Self::default() }
    }

    /// The Raft group this state belongs to.
    pub fn group(&self) -> u32 {
        self.group
    }

    /// The log index of the last applied command.
    pub fn applied_log_index(&self) -> u64 {
        self.applied_log_index
    }

    /// Applies one command at `log_index`. Deterministic: same state + same command = same
    /// result and same new state on every replica. Log indexes must increase.
    pub fn apply(&mut self, log_index: u64, cmd: &Command) -> Outcome {
        let outcome = self.apply_command(log_index, cmd);
        // Whatever this command made the sessions forget (by time, a bound, an idle session)
        // may have left stale places in the retry order: compact them here, once per command.
        self.retry_order.settle(&self.sessions);
        outcome
    }

    fn apply_command(&mut self, log_index: u64, cmd: &Command) -> Outcome {
        assert!(
            log_index > self.applied_log_index,
            "log index {log_index} applied after {}: replays must start from a matching snapshot",
            self.applied_log_index
        );
        self.applied_log_index = log_index;
        let ctx = &cmd.ctx;
        self.forget_expired_outcomes(ctx.time_ms);
        let remember = ctx.client_id != 0 && cmd.op.is_retryable();
        if remember {
            if let Some(previous) = self.retry_outcome(ctx.client_id, ctx.request_id) {
                return previous;
            }
        }
        let mut ids = Ids { group: self.group, seq: self.object_seq };
        self.carried = ctx.bucket;
        let outcome = self.apply_op(log_index, cmd, &mut ids);
        self.carried = None;
        self.object_seq = ids.seq;
        // A commit short of its quota allowance changed nothing and is proposed again once the
        // leader has more: remembering it would answer that repeat with this refusal.
        if remember && !matches!(outcome, Err(OmError::NeedsAllowance { .. })) {
            self.remember(log_index, ctx.client_id, ctx.request_id, ctx.time_ms, outcome.clone());
        }
        outcome
    }

    /// The first outcome of a retried request; `RetryTooOld` if it may have been applied and
    /// is forgotten; None for a request not seen (to apply).
    fn retry_outcome(&self, client_id: u64, request_id: u64) -> Option<Outcome> {
        let s = self.sessions.get(&client_id)?;
        if let Some(r) = s.outcomes.get(&request_id) {
            return Some((*r.outcome).clone());
        }
        s.forgotten_max.is_some_and(|m| request_id <= m).then_some(Err(OmError::RetryTooOld { client_id, request_id }))
    }

    /// Whether this state remembers the outcome of the request `request_id` of `client_id`
    /// (or may have applied and forgotten it): a retry that the log would answer as before.
    pub fn remembers(&self, client_id: u64, request_id: u64) -> bool {
        client_id != 0 && self.retry_outcome(client_id, request_id).is_some()
    }

    /// Remembers a new request's outcome, within the per-client and total bounds (the oldest
    /// goes first: the client's lowest request id, then the group's first in log order).
    fn remember(&mut self, log_index: u64, client_id: u64, request_id: u64, time_ms: u64, outcome: Outcome) {
        let s = self.sessions.entry(client_id).or_default();
        s.last_seen_ms = s.last_seen_ms.max(time_ms);
        let before = s.outcomes.insert(request_id, Remembered { log_index, time_ms, outcome: Box::new(outcome) });
        assert!(before.is_none(), "request {request_id} of client {client_id} applied twice (a retry must be answered)");
        let over = s.outcomes.len() > RETRY_OUTCOMES_PER_CLIENT_MAX;
        self.retry_order.push(Slot { log_index, client: client_id, request: request_id, time_ms });
        if over {
            // The client's lowest request id: usually its oldest, but it may be the one just
            // remembered (requests of one client can reach a group out of order).
            let s = self.sessions.get(&client_id).expect("remembered above");
            let oldest = *s.outcomes.keys().next().expect("over the bound, so not empty");
            self.forget_outcome(client_id, oldest);
            self.retry_order.forgotten(1);
        }
        if self.retry_order.live() > RETRY_OUTCOMES_MAX {
            let slot = self.retry_order.pop_front_if(&self.sessions, |_| true).expect("over the bound, so not empty");
            self.forget_outcome(slot.client, slot.request);
        }
    }

    /// Forgets one remembered outcome. A snapshot writing the sessions keeps it if the
    /// snapshot holds it and has not written it yet.
    fn forget_outcome(&mut self, client_id: u64, request_id: u64) {
        let s = self.sessions.get_mut(&client_id).expect("only remembered outcomes are forgotten");
        let r = s.forget(request_id).expect("only remembered outcomes are forgotten");
        if let Some(f) = &mut self.session_freeze {
            f.keep(client_id, request_id, r);
        }
    }

    /// Forgets the outcomes remembered for longer than the retry window at command time `t`.
    /// Commands' times come from successive leaders' clocks and may step back a little: an
    /// outcome behind a younger one in log order is forgotten a little later, never earlier.
    fn forget_expired_outcomes(&mut self, t: u64) {
        while let Some(slot) = self.retry_order.pop_front_if(&self.sessions, |s| s.time_ms.saturating_add(RETRY_WINDOW_MS) < t) {
            self.forget_outcome(slot.client, slot.request);
        }
    }

    fn apply_op(&mut self, log_index: u64, cmd: &Command, ids: &mut Ids) -> Outcome {
        let ctx = &cmd.ctx;
        let p = &ctx.principal;
        let t = ctx.time_ms;
        match &cmd.op {
            Op::CreateVolume { volume, owner, admin, quota_bytes, quota_namespace, acls, metadata } => {
                self.create_volume(ids, log_index, p, t, volume, owner, admin, *quota_bytes, *quota_namespace, acls, metadata)
            }
            Op::DeleteVolume { volume } => self.delete_volume(p, volume),
            Op::SetVolumeOwner { volume, owner } => self.set_volume_owner(log_index, p, t, volume, owner),
            Op::SetVolumeQuota { volume, quota_bytes, quota_namespace } => {
                self.set_volume_quota(log_index, p, t, volume, *quota_bytes, *quota_namespace)
            }
            Op::CreateBucket { volume, bucket, owner, versioning, replication, quota_bytes, quota_namespace, acls, metadata } => self
                .create_bucket(
                    ids, log_index, p, t, volume, bucket, owner.as_deref(), *versioning, *replication, *quota_bytes,
                    *quota_namespace, acls, metadata,
                ),
            Op::DeleteBucket { volume, bucket } => self.delete_bucket(p, volume, bucket),
            Op::SetBucketProperty { volume, bucket, owner, versioning, replication, quota_bytes, quota_namespace } => self
                .set_bucket_property(
                    log_index, p, t, volume, bucket, owner.as_deref(), *versioning, *replication, *quota_bytes, *quota_namespace,
                ),
            Op::OpenKey { volume, bucket, key, replication, blocks, expires_ms, metadata } => {
                self.open_key_op(ids, p, t, volume, bucket, key, *replication, blocks, *expires_ms, metadata)
            }
            Op::AllocateBlock { volume, bucket, key, open_id, block } => {
                self.allocate_block(p, volume, bucket, key, *open_id, block)
            }
            Op::CommitKey { volume, bucket, key, open_id, data_size, blocks } => {
                self.commit_key(ids, log_index, p, t, volume, bucket, key, *open_id, *data_size, blocks, Limit::Whole(Elsewhere::default()))
            }
            Op::CommitKeyCounted { volume, bucket, key, open_id, data_size, blocks, elsewhere } => {
                self.commit_key(ids, log_index, p, t, volume, bucket, key, *open_id, *data_size, blocks, Limit::Whole(*elsewhere))
            }
            Op::DeleteKey { volume, bucket, key } => self.delete_keys(ids, log_index, p, volume, bucket, std::slice::from_ref(key), true),
            Op::DeleteKeys { volume, bucket, keys } => self.delete_keys(ids, log_index, p, volume, bucket, keys, false),
            Op::RenameKey { volume, bucket, from, to } => self.rename_key(log_index, p, t, volume, bucket, from, to),
            Op::ExpireOpenKeys { limit } => Ok(self.expire_open_keys(ids, log_index, t, *limit)),
            Op::ExpireSessions => {
                let before = self.sessions.len();
                let idle: Vec<u64> = self.sessions.iter().filter(|(_, s)| s.last_seen_ms.saturating_add(SESSION_IDLE_MS_MAX) < t).map(|(c, _)| *c).collect();
                for client in idle {
                    let s = self.sessions.remove(&client).expect("listed above");
                    self.retry_order.forgotten(s.outcomes.len());
                    if let Some(f) = &mut self.session_freeze {
                        s.outcomes.into_iter().for_each(|(request, r)| f.keep(client, request, r));
                    }
                }
                self.renames_in.retain(|_, a| a.time_ms.saturating_add(RENAME_IN_RETENTION_MS) >= t);
                Ok(Reply::Expired { open_keys: 0, sessions: (before - self.sessions.len()) as u64 })
            }
            Op::PurgeDeletedBlocks { up_to_seq } => {
                if !p.admin {
                    return Err(denied(p, "purge the deleted-blocks queue"));
                }
                while self.deleted_blocks.first().is_some_and(|e| seq_of(e.key()) <= *up_to_seq) {
                    self.deleted_blocks.pop_first();
                }
                Ok(Reply::Done)
            }
            Op::SetBucketDeleting { volume, bucket, deleting } => self.set_bucket_deleting(log_index, p, volume, bucket, *deleting),
            Op::FenceBucket { fenced } => {
                if !p.admin {
                    return Err(denied(p, "fence a bucket"));
                }
                let Some(r) = self.carried else {
                    return Err(OmError::InvalidArgument("fencing a bucket needs the bucket's facts".into()));
                };
                self.bucket_refs.insert(r.bucket_id, (r, *fenced));
                let u = self.bucket_usage.get(&r.bucket_id).copied().unwrap_or_default();
                Ok(Reply::BucketUsage { keys: u.keys, open_keys: u.open_keys })
            }
            Op::RenameOut { volume, bucket, from, to, dest_shard } => self.rename_out(ids, p, t, volume, bucket, from, to, *dest_shard),
            Op::RenameIn { volume, bucket, to, source_shard, txn, record } => {
                self.rename_in(ids, log_index, p, t, volume, bucket, to, *source_shard, *txn, record)
            }
            Op::RenameFinish { txn, commit } => self.rename_finish(p, *txn, *commit),
            Op::AbortKey { volume, bucket, key, open_id } => self.abort_key(ids, log_index, p, volume, bucket, key, *open_id),
            Op::CommitKeyAllowed { volume, bucket, key, open_id, data_size, blocks } => {
                self.commit_key(ids, log_index, p, t, volume, bucket, key, *open_id, *data_size, blocks, Limit::Allowed)
            }
            Op::CommitKeyWith { volume, bucket, key, open_id, data_size, blocks, metadata, condition, allowed } => {
                let limit = if *allowed { Limit::Allowed } else { Limit::Whole(Elsewhere::default()) };
                self.commit_key_with(ids, log_index, p, t, volume, bucket, key, *open_id, *data_size, blocks, limit, Some((metadata, condition, &[])))
            }
            Op::CommitKeyWithAcls { volume, bucket, key, open_id, data_size, blocks, metadata, condition, allowed, acls } => {
                let limit = if *allowed { Limit::Allowed } else { Limit::Whole(Elsewhere::default()) };
                self.commit_key_with(ids, log_index, p, t, volume, bucket, key, *open_id, *data_size, blocks, limit, Some((metadata, condition, acls)))
            }
            Op::SetKeyMetadata { volume, bucket, key, set, remove_prefix, condition } => {
                self.set_key_metadata(log_index, p, volume, bucket, key, set, remove_prefix, condition)
            }
            Op::InitiateUpload { volume, bucket, key, upload_id, replication, metadata } => {
                self.initiate_upload(p, t, volume, bucket, key, upload_id, *replication, metadata)
            }
            Op::CommitPart { volume, bucket, key, upload_id, part, open_id, data_size, blocks, etag } => {
                self.commit_part(ids, log_index, p, t, volume, bucket, key, upload_id, *part, *open_id, *data_size, blocks, etag, "")
            }
            Op::CommitPartWithChecksum { volume, bucket, key, upload_id, part, open_id, data_size, blocks, etag, checksum } => {
                self.commit_part(ids, log_index, p, t, volume, bucket, key, upload_id, *part, *open_id, *data_size, blocks, etag, checksum)
            }
            Op::CompleteUpload { volume, bucket, key, upload_id, parts, etag, condition, allowed } => {
                let limit = if *allowed { Limit::Allowed } else { Limit::Whole(Elsewhere::default()) };
                let parts: Vec<(u32, String, String)> = parts.iter().map(|(n, e)| (*n, e.clone(), String::new())).collect();
                self.complete_upload(ids, log_index, p, t, volume, bucket, key, upload_id, &parts, etag, &[], condition, limit, &[])
            }
            Op::CompleteUploadWith { volume, bucket, key, upload_id, parts, etag, set, condition, allowed } => {
                let limit = if *allowed { Limit::Allowed } else { Limit::Whole(Elsewhere::default()) };
                self.complete_upload(ids, log_index, p, t, volume, bucket, key, upload_id, parts, etag, set, condition, limit, &[])
            }
            Op::CompleteUploadWithAcls { volume, bucket, key, upload_id, parts, etag, set, condition, allowed, acls } => {
                let limit = if *allowed { Limit::Allowed } else { Limit::Whole(Elsewhere::default()) };
                self.complete_upload(ids, log_index, p, t, volume, bucket, key, upload_id, parts, etag, set, condition, limit, acls)
            }
            Op::AbortUpload { volume, bucket, key, upload_id } => self.abort_upload(ids, log_index, p, volume, bucket, key, upload_id),
            Op::SetBucketMetadata { volume, bucket, set, remove_prefix } => self.set_bucket_metadata(log_index, p, t, volume, bucket, set, remove_prefix),
            Op::ExpireKeys { volume, bucket, keys } => {
                if !p.admin {
                    return Err(denied(p, "expire keys"));
                }
                self.expire_keys(ids, log_index, p, volume, bucket, keys)
            }
            Op::ExpireUploads { created_before_ms, limit } => {
                if !p.admin {
                    return Err(denied(p, "expire multipart uploads"));
                }
                Ok(self.expire_uploads(ids, log_index, *created_before_ms, *limit))
            }
            Op::SetAllowance { scope, allowance } => self.set_allowance(p, *scope, *allowance),
            Op::ReleaseAllowance { scope } => self.release_allowance(p, *scope),
            Op::GrantQuota { volume, bucket, shard, want_bytes, want_keys, holding_bytes, holding_keys } => {
                self.grant_quota(p, volume, bucket.as_deref(), *shard, *want_bytes, *want_keys, *holding_bytes, *holding_keys)
            }
            Op::LowerGrant { scope, shard, bytes, keys, version } => self.lower_grant(p, *scope, *shard, *bytes, *keys, *version),
            Op::GetS3Secret { access_id, fresh } => self.get_s3_secret(p, access_id, fresh),
            Op::RevokeS3Secret { access_id } => self.revoke_s3_secret(p, access_id),
            Op::SetBucketAcls { volume, bucket, acls } => self.set_bucket_acls(log_index, p, t, volume, bucket, acls),
            Op::SetKeyAcls { volume, bucket, key, acls } => self.set_key_acls(log_index, p, volume, bucket, key, acls),
            Op::EditBucketAcls { volume, bucket, add, remove } => self.edit_bucket_acls(log_index, p, t, volume, bucket, add, remove),
            Op::EditKeyAcls { volume, bucket, key, add, remove } => self.edit_key_acls(log_index, p, volume, bucket, key, add, remove),
            Op::KeyAclsByKeyGrant { volume, bucket, key, set, add, remove } => self.key_acls_by_key_grant(log_index, p, volume, bucket, key, set.as_deref(), add, remove),
            Op::SetKeyAclsIf { volume, bucket, key, acls, update_id, by_key } => self.set_key_acls_if(log_index, p, volume, bucket, key, acls, *update_id, *by_key),
        }
    }

    /// Serializes a record into a fresh entry. The output buffer and rkyv's scratch arena are
    /// kept in the state and reused (rkyv's default keeps the arena in a thread-local and
    /// tracks shared pointers in a fresh hash map per call: together a third of a key write's
    /// instructions, measured with callgrind). Records hold no shared pointers, so the
    /// low-level serializer, which does not track sharing, is enough.
    pub(crate) fn entry_of<T>(&mut self, key: &[u8], record: &T) -> Entry
    where
        T: for<'a> rkyv::Serialize<rkyv::api::low::LowSerializer<AlignedVec, rkyv::ser::allocator::ArenaHandle<'a>, rancor::Error>>,
    {
        let scratch = &mut self.scratch;
        let mut buf = std::mem::take(&mut scratch.buffer);
        buf.clear();
        let buf = rkyv::api::low::to_bytes_in_with_alloc::<_, _, rancor::Error>(record, buf, scratch.arena.acquire())
            .expect("serializing into memory cannot fail");
        let e = Entry::new(key, &buf);
        scratch.buffer = buf;
        e
    }

    /// Queues blocks for deletion by the SCM, in batches of at most
    /// [`DELETED_BATCH_BLOCKS_MAX`] (consecutive sequence numbers, in the order given). The
    /// batches of one command share its object id: the id counter moves as it did before
    /// batches were split, so ids stay as they were for every command.
    pub(crate) fn queue_deleted(&mut self, ids: &mut Ids, log_index: u64, mut blocks: Vec<BlockLocation>) {
        if blocks.is_empty() {
            return;
        }
        let object_id = ids.next();
        while !blocks.is_empty() {
            let rest = blocks.split_off(blocks.len().min(DELETED_BATCH_BLOCKS_MAX));
            let seq = self.next_deleted_seq;
            self.next_deleted_seq += 1;
            let rec = DeletedBlocksRecord { object_id, update_id: log_index, blocks };
            let e = self.entry_of(&seq.to_be_bytes(), &rec);
            self.deleted_blocks.insert(e);
            blocks = rest;
        }
    }

    // ----- reads -----

    pub fn volume_info(&self, volume: &str) -> Result<VolumeInfo<'_>, OmError> {
        probe!(k = volume);
        let e = self.volumes.get(&*k).ok_or_else(|| OmError::VolumeNotFound(volume.to_string()))?;
        Ok(self.volume_info_of(e))
    }

    fn volume_info_of<'a>(&'a self, e: &'a Entry) -> VolumeInfo<'a> {
        let record: &ArchivedVolumeRecord = e.view();
        let usage = self.volume_usage.get(&record.object_id.to_native()).copied().unwrap_or_default();
        VolumeInfo { name: utf8(e.key()), record, usage }
    }

    /// Volumes, all or of one owner, by name.
    pub fn list_volumes(&self, owner: Option<&str>, prefix: &str, start_after: &str, limit: usize) -> Result<Page<VolumeInfo<'_>>, OmError> {
        check_limit(limit)?;
        // Names first (one more than the limit tells whether the page is truncated).
        let mut names: Vec<&[u8]> = Vec::new();
        match owner {
            Some(owner) => {
                let base = user_volume_key(owner, "");
                let from = start_bound(&base, prefix, start_after);
                for k in self.user_volumes.range::<[u8], _>((from.bound(from.key()), Bound::Unbounded)) {
                    match k.strip_prefix(&base[..]) {
                        Some(vol) if vol.starts_with(prefix.as_bytes()) && names.len() <= limit => names.push(vol),
                        _ => break,
                    }
                }
            }
            None => {
                let from = start_bound(b"", prefix, start_after);
                probe!(f = from.key());
                for e in self.volumes.range((from.bound(&*f), Bound::Unbounded)) {
                    if !e.key().starts_with(prefix.as_bytes()) || names.len() > limit {
                        break;
                    }
                    names.push(e.key());
                }
            }
        }
        let truncated = names.len() > limit;
        names.truncate(limit);
        let items = names.into_iter().filter_map(|n| self.volume_info(utf8(n)).ok()).collect();
        Ok(Page { items, truncated })
    }

    pub fn bucket_info(&self, volume: &str, bucket: &str) -> Result<BucketInfo<'_>, OmError> {
        let e = self.bucket_entry(volume, bucket)?;
        Ok(self.bucket_info_of(e))
    }

    fn bucket_info_of<'a>(&'a self, e: &'a Entry) -> BucketInfo<'a> {
        let k = e.key();
        let sep = k.iter().position(|&b| b == 0).expect("bucket keys hold a separator");
        let record: &ArchivedBucketRecord = e.view();
        let usage = self.bucket_usage.get(&record.object_id.to_native()).copied().unwrap_or_default();
        BucketInfo { volume: utf8(&k[..sep]), name: utf8(&k[sep + 1..]), record, usage }
    }

    pub(crate) fn bucket_entry(&self, volume: &str, bucket: &str) -> Result<&Entry, OmError> {
        probe!(k = volume, [0u8], bucket);
        self.buckets.get(&*k).ok_or_else(|| {
            probe!(v = volume);
            if self.volumes.contains(&*v) {
                OmError::BucketNotFound(format!("{volume}/{bucket}"))
            } else {
                OmError::VolumeNotFound(volume.to_string())
            }
        })
    }

    pub fn list_buckets(&self, volume: &str, prefix: &str, start_after: &str, limit: usize) -> Result<Page<BucketInfo<'_>>, OmError> {
        check_limit(limit)?;
        probe!(v = volume);
        if !self.volumes.contains(&*v) {
            return Err(OmError::VolumeNotFound(volume.to_string()));
        }
        let base = bucket_key(volume, "");
        let from = start_bound(&base, prefix, start_after);
        let mut items = Vec::new();
        let mut truncated = false;
        probe!(f = from.key());
        for e in self.buckets.range((from.bound(&*f), Bound::Unbounded)) {
            let Some(name) = e.key().strip_prefix(&base[..]) else { break };
            if !name.starts_with(prefix.as_bytes()) {
                break;
            }
            if items.len() == limit {
                truncated = true;
                break;
            }
            items.push(self.bucket_info_of(e));
        }
        Ok(Page { items, truncated })
    }

    pub fn lookup_key(&self, volume: &str, bucket: &str, key: &str) -> Result<&ArchivedKeyRecord, OmError> {
        let b: &ArchivedBucketRecord = self.bucket_entry(volume, bucket)?.view();
        probe!(k = key);
        self.keys
            .get(&b.object_id.to_native())
            .and_then(|set| set.get(&*k))
            .map(|e| e.view::<ArchivedKeyRecord>())
            .ok_or_else(|| OmError::KeyNotFound(format!("{volume}/{bucket}/{key}")))
    }

    /// Keys of a bucket in name order: those starting with `prefix`, after `start_after`.
    pub fn list_keys(&self, volume: &str, bucket: &str, prefix: &str, start_after: &str, limit: usize) -> Result<Page<KeyInfo<'_>>, OmError> {
        check_limit(limit)?;
        let b: &ArchivedBucketRecord = self.bucket_entry(volume, bucket)?.view();
        self.list_keys_in(b.object_id.to_native(), prefix, start_after, limit)
    }

    /// A key by bucket object id (key shards of a sharded namespace, which hold no bucket records).
    pub fn lookup_key_in(&self, bucket_id: u64, key: &str) -> Option<&ArchivedKeyRecord> {
        probe!(k = key);
        self.keys.get(&bucket_id).and_then(|set| set.get(&*k)).map(|e| e.view::<ArchivedKeyRecord>())
    }

    /// Whether the entries of `key`'s present version grant `p` `right` (none where there is
    /// no such key).
    pub fn key_grants(&self, bucket_id: u64, key: &str, p: &Principal, right: u16) -> bool {
        self.lookup_key_in(bucket_id, key).is_some_and(|k| acls_allow(p, &k.acls, right))
    }

    /// Keys of a bucket by object id, in name order (see [`Self::list_keys`]).
    pub fn list_keys_in(&self, bucket_id: u64, prefix: &str, start_after: &str, limit: usize) -> Result<Page<KeyInfo<'_>>, OmError> {
        self.list_keys_rolled_up(bucket_id, prefix, start_after, limit, "")
    }

    /// [`Self::list_keys_in`] with a `delimiter` (none when empty): of the keys under one common
    /// prefix ([`crate::names::common_prefix`]) only the first comes back, and the listing
    /// seeks past the rest of them, so that a page of common prefixes costs at most one seek
    /// each, not a walk over every key below them (S3's listings with a delimiter, the S3
    /// gateway).
    pub fn list_keys_rolled_up(&self, bucket_id: u64, prefix: &str, start_after: &str, limit: usize, delimiter: &str) -> Result<Page<KeyInfo<'_>>, OmError> {
        check_limit(limit)?;
        let mut items = Vec::new();
        let mut truncated = false;
        if let Some(set) = self.keys.get(&bucket_id) {
            let mut from = start_bound(b"", prefix, start_after);
            // The common prefix of the key listed last, if it has one.
            let mut group: Option<&str> = None;
            'seek: loop {
                probe!(f = from.key());
                for e in set.range((from.bound(&*f), Bound::Unbounded)) {
                    if !e.key().starts_with(prefix.as_bytes()) {
                        break 'seek;
                    }
                    if let Some(g) = group
                        && e.key().starts_with(g.as_bytes())
                    {
                        // A second key of the group just listed: seek past all of them (a group
                        // of one key costs no seek).
                        let Some(next) = past(g.as_bytes()) else { break 'seek };
                        from = Start::Included(next);
                        group = None;
                        continue 'seek;
                    }
                    if items.len() == limit {
                        truncated = true;
                        break 'seek;
                    }
                    let name = utf8(e.key());
                    items.push(KeyInfo { name, record: e.view() });
                    group = crate::names::common_prefix(name, prefix, delimiter);
                }
                break;
            }
        }
        Ok(Page { items, truncated })
    }

    /// This shard's counters of a bucket (zero if it never saw the bucket).
    pub fn bucket_usage_of(&self, bucket_id: u64) -> BucketUsage {
        self.bucket_usage.get(&bucket_id).copied().unwrap_or_default()
    }

    /// This shard's replicated bytes in a volume.
    pub fn volume_used_bytes_of(&self, volume_id: u64) -> u64 {
        self.volume_usage.get(&volume_id).map_or(0, |u| u.used_bytes)
    }

    pub fn open_key(&self, open_id: u64) -> Option<&ArchivedOpenKeyRecord> {
        probe!(k = open_id.to_be_bytes());
        self.open_keys.get(&*k).map(|e| e.view())
    }

    /// Deleted-block batches with sequence number above `after_seq`, oldest first.
    pub fn list_deleted_blocks(&self, after_seq: Option<u64>, limit: usize) -> Vec<(u64, &ArchivedDeletedBlocksRecord)> {
        probe!(from = after_seq.map_or(0, |s| s + 1).to_be_bytes());
        self.deleted_blocks.range((Bound::Included(&*from), Bound::Unbounded)).take(limit).map(|e| (seq_of(e.key()), e.view())).collect()
    }

    /// Whether `p` holds `right` on a bucket (for read paths; `apply` checks on its own).
    pub fn check_bucket_access(&self, p: &Principal, volume: &str, bucket: &str, right: u16) -> Result<(), OmError> {
        let e = self.bucket_entry(volume, bucket)?;
        if self.bucket_allows(p, volume, e.view(), right) {
            Ok(())
        } else {
            Err(denied(p, &format!("access {volume}/{bucket}")))
        }
    }

    pub(crate) fn bucket_allows(&self, p: &Principal, volume: &str, b: &ArchivedBucketRecord, right: u16) -> bool {
        if p.admin || b.owner.as_str() == p.user || acls_allow(p, &b.acls, right) {
            return true;
        }
        probe!(k = volume);
        self.volumes.get(&*k).is_some_and(|v| {
            let v: &ArchivedVolumeRecord = v.view();
            v.owner.as_str() == p.user || v.admin.as_str() == p.user
        })
    }

    /// Counts for reports: entries per table and heap bytes of all entries.
    pub fn stats(&self) -> ShardStats {
        let keys: usize = self.keys.values().map(|t| t.len()).sum();
        let entry_bytes: usize = self.keys.values().flat_map(|s| s.iter()).map(Entry::heap_bytes).sum();
        ShardStats {
            volumes: self.volumes.len(),
            buckets: self.buckets.len(),
            keys,
            open_keys: self.open_keys.len(),
            deleted_block_batches: self.deleted_blocks.len(),
            sessions: self.sessions.len(),
            key_entry_bytes: entry_bytes,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardStats {
    pub volumes: usize,
    pub buckets: usize,
    pub keys: usize,
    pub open_keys: usize,
    pub deleted_block_batches: usize,
    pub sessions: usize,
    /// Heap bytes of the key entries themselves (not the B-tree nodes around them).
    pub key_entry_bytes: usize,
}

pub(crate) fn seq_of(key: &[u8]) -> u64 {
    u64::from_be_bytes(key.try_into().expect("deleted-block keys are 8 bytes"))
}

pub(crate) fn denied(p: &Principal, action: &str) -> OmError {
    OmError::PermissionDenied { user: p.user.clone(), action: action.to_string() }
}

pub(crate) fn acls_allow(p: &Principal, acls: &[ArchivedAcl], right: u16) -> bool {
    acls.iter().any(|a| {
        a.rights.to_native() & right == right
            && match a.kind {
                ArchivedAclKind::User => a.name.as_str() == p.user,
                ArchivedAclKind::Group => p.in_group(a.name.as_str()),
                ArchivedAclKind::World => true,
            }
    })
}

/// Whether ACL entries grant `right` to `p` (for servers holding native copies of ACLs).
pub fn acls_allow_native(p: &Principal, acls: &[Acl], right: u16) -> bool {
    acls.iter().any(|a| {
        a.rights & right == right
            && match a.kind {
                AclKind::User => a.name == p.user,
                AclKind::Group => p.in_group(&a.name),
                AclKind::World => true,
            }
    })
}

fn check_limit(limit: usize) -> Result<(), OmError> {
    if limit == 0 || limit > LIST_LIMIT_MAX {
        return Err(OmError::InvalidArgument(format!("list limit must be 1..={LIST_LIMIT_MAX}, is {limit}")));
    }
    Ok(())
}

/// Where a listing starts.
enum Start {
    Included(Vec<u8>),
    Excluded(Vec<u8>),
}

impl Start {
    fn key(&self) -> &[u8] {
        match self {
            Start::Included(k) | Start::Excluded(k) => k,
        }
    }

    /// This start's kind of bound, at `at` (the key itself, or a probe built from it).
    fn bound<T>(&self, at: T) -> Bound<T> {
        match self {
            Start::Included(_) => Bound::Included(at),
            Start::Excluded(_) => Bound::Excluded(at),
        }
    }
}

/// The least byte string greater than every string that starts with `group` (None: there is
/// none, `group` being all 0xFF bytes; UTF-8 names never hold such a byte).
fn past(group: &[u8]) -> Option<Vec<u8>> {
    let end = group.iter().rposition(|&b| b != 0xFF)?;
    let mut next = group[..=end].to_vec();
    next[end] += 1;
    Some(next)
}

/// The first table key a listing may return: `base ++ max(prefix, successor(start_after))`.
fn start_bound(base: &[u8], prefix: &str, start_after: &str) -> Start {
    let mut p = base.to_vec();
    p.extend_from_slice(prefix.as_bytes());
    if start_after.is_empty() {
        return Start::Included(p);
    }
    let mut s = base.to_vec();
    s.extend_from_slice(start_after.as_bytes());
    if s >= p { Start::Excluded(s) } else { Start::Included(p) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Remembered` as it was before its outcome was boxed: snapshots hold this layout.
    #[derive(rkyv::Archive, rkyv::Serialize)]
    struct Inline {
        log_index: u64,
        time_ms: u64,
        outcome: Outcome,
    }

    #[test]
    fn a_boxed_outcome_archives_as_the_inline_one_did() {
        let outcomes = [
            Ok(Reply::KeyOpened { open_id: 7, blocks: vec![] }),
            Ok(Reply::KeyCommitted { object_id: 9, replaced: true }),
            Err(OmError::KeyNotFound("vol/bkt/k".into())),
        ];
        for outcome in outcomes {
            let boxed = Remembered { log_index: 3, time_ms: 5, outcome: Box::new(outcome.clone()) };
            let inline = Inline { log_index: 3, time_ms: 5, outcome };
            let a = rkyv::to_bytes::<rancor::Error>(&boxed).expect("archive");
            let b = rkyv::to_bytes::<rancor::Error>(&inline).expect("archive");
            assert_eq!(&a[..], &b[..]);
            let back = rkyv::from_bytes::<Remembered, rancor::Error>(&b).expect("read the inline layout");
            assert_eq!(back, boxed);
        }
    }
}
