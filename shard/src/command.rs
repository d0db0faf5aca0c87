//! Commands: what a Raft entry carries. Everything non-deterministic (time, the caller's
//! identity, pre-allocated blocks, expiry) is decided by the leader *before* proposing and
//! travels in the command (Ozone's preExecute rule); object ids come from the
//! group's sequence in `apply`.

use rkyv::{Archive, Deserialize, Serialize};

use crate::records::{Acl, BlockLocation, KeyRecord, MetadataPair, Replication};

/// What a key shard needs to know of a bucket it does not hold: in a sharded namespace the
/// bucket records live in the meta group, and the leader of a key shard copies these facts from
/// its node's view of the meta group into the command (after checking the caller's rights
/// there). The shard trusts them, except that a bucket it has fenced refuses every key write:
/// that is what makes a bucket delete safe against concurrent key writes (see `FenceBucket`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BucketRef {
    pub bucket_id: u64,
    pub volume_id: u64,
    pub replication: Replication,
    pub quota_bytes: u64,
    pub quota_namespace: u64,
    pub volume_quota_bytes: u64,
    /// The meta group's log index at which the bucket's record last changed: a quota
    /// allowance is good only in the epoch it was granted in (see [`Allowance`]).
    pub quota_epoch: u64,
    /// The same for the volume's record.
    pub volume_quota_epoch: u64,
}

/// A bucket's usage on the key shards other than the one a commit applies on, read by the
/// leader just before it proposes the commit. Usage is checked at apply as this shard's own
/// (exact) plus this. A commit applied on another shard after the read and before this apply
/// is not in it: only commits that overlap in time can overshoot a quota together.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Elsewhere {
    /// Keys of the bucket on the other shards.
    pub keys: u64,
    /// Replicated bytes of the bucket on the other shards.
    pub bytes: u64,
    /// Replicated bytes of the bucket's volume (all its buckets) on the other shards.
    pub volume_bytes: u64,
}

/// What a key shard may use of a quota (per bucket: bytes and keys; per volume: bytes), as the
/// meta group granted it; and the grant the meta group keeps per (scope, shard). The meta group
/// grants so that the grants of all shards sum to at most the quota, and a shard's allowance is
/// never above its grant (grants are raised in the meta group first, lowered in the shard
/// first, each step versioned), so the shards' usages sum to at most the quota, whatever
/// crashes and races. The epoch of the record the grant was made under is kept (its
/// `update_id`, a meta log index): an allowance of another epoch than the command's facts name
/// allows no growth, so a changed quota needs new grants (a quota value alone would not do:
/// 6, then 9, then 6 again would revive allowances granted under the first 6). See docs/om.md,
/// "Quotas".
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Allowance {
    /// Replicated bytes this shard may hold in the scope.
    pub bytes: u64,
    /// Keys this shard may hold in the scope (buckets only).
    pub keys: u64,
    /// Raised by every grant; a `SetAllowance` older than the shard's allowance is ignored.
    pub version: u64,
    /// The `update_id` of the bucket's (volume's) record when granted.
    pub epoch: u64,
}

/// The meta group's record of what it granted a key shard for a scope: the allowance, and what
/// the shard held when it last asked or released. The other shards' room is the quota less,
/// per shard, the larger of the two: a quota lowered below the usage leaves no room.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Grant {
    pub allowance: Allowance,
    pub held_bytes: u64,
    pub held_keys: u64,
}

/// The caller, as authenticated by the server.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Principal {
    pub user: String,
    pub groups: Vec<String>,
    /// An OM administrator (from the server's configuration).
    pub admin: bool,
}

/// The user name of a caller nobody authenticated (an S3 request without a signature). No
/// certificate or S3 access key names it (names there hold no `:`) and no bucket can be
/// created by it, so it owns nothing and holds only what WORLD entries grant.
pub const ANONYMOUS: &str = ":anonymous";

/// The group every authenticated caller is in (S3's `AuthenticatedUsers`): an ACL entry of
/// kind GROUP with this name matches every principal but [`ANONYMOUS`].
pub const AUTHENTICATED: &str = ":authenticated";

impl Principal {
    pub fn anonymous() -> Self {
        Self { user: ANONYMOUS.to_string(), groups: vec![], admin: false }
    }
    pub fn is_anonymous(&self) -> bool {
        self.user == ANONYMOUS
    }
    /// Whether an ACL entry for group `group` names this principal.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group) || (group == AUTHENTICATED && !self.is_anonymous())
    }
    pub fn admin(user: &str) -> Self {
        Self { user: user.to_string(), groups: vec![], admin: true }
    }
    pub fn user(user: &str) -> Self {
        Self { user: user.to_string(), groups: vec![], admin: false }
    }
}

/// Facts the leader fixed for this command.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct CommandContext {
    /// With `request_id`, identifies the request across retries; 0 = no retry protection.
    pub client_id: u64,
    pub request_id: u64,
    /// Leader's wall clock when it accepted the request (ms since the Unix epoch).
    pub time_ms: u64,
    pub principal: Principal,
    /// The key operation's bucket as the leader saw it in the meta group (sharded namespace);
    /// `None` where this state holds the bucket records itself (one-shard tests and tools).
    pub bucket: Option<BucketRef>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum Op {
    CreateVolume {
        volume: String,
        owner: String,
        admin: String,
        quota_bytes: u64,
        quota_namespace: u64,
        acls: Vec<Acl>,
        metadata: Vec<MetadataPair>,
    },
    DeleteVolume { volume: String },
    SetVolumeOwner { volume: String, owner: String },
    SetVolumeQuota { volume: String, quota_bytes: Option<u64>, quota_namespace: Option<u64> },
    CreateBucket {
        volume: String,
        bucket: String,
        /// Defaults to the caller.
        owner: Option<String>,
        versioning: bool,
        replication: Replication,
        quota_bytes: u64,
        quota_namespace: u64,
        acls: Vec<Acl>,
        metadata: Vec<MetadataPair>,
    },
    DeleteBucket { volume: String, bucket: String },
    SetBucketProperty {
        volume: String,
        bucket: String,
        owner: Option<String>,
        versioning: Option<bool>,
        replication: Option<Replication>,
        quota_bytes: Option<u64>,
        quota_namespace: Option<u64>,
    },
    /// Starts writing a key with the blocks the leader pre-allocated; returns the open session id.
    OpenKey {
        volume: String,
        bucket: String,
        key: String,
        /// Defaults to the bucket's.
        replication: Option<Replication>,
        blocks: Vec<BlockLocation>,
        expires_ms: u64,
        metadata: Vec<MetadataPair>,
    },
    /// Adds one more block to an open key (keys larger than their pre-allocated blocks).
    AllocateBlock { volume: String, bucket: String, key: String, open_id: u64, block: BlockLocation },
    /// Makes the open key visible with its final blocks (a subset of those allocated, with their
    /// written lengths). An existing key is replaced; its blocks, and allocated blocks left
    /// unused, go to the deleted-blocks queue.
    CommitKey { volume: String, bucket: String, key: String, open_id: u64, data_size: u64, blocks: Vec<BlockLocation> },
    DeleteKey { volume: String, bucket: String, key: String },
    /// Deletes what exists of `keys`; the outcome lists the missing ones (S3 DeleteObjects).
    DeleteKeys { volume: String, bucket: String, keys: Vec<String> },
    RenameKey { volume: String, bucket: String, from: String, to: String },
    /// Drops open keys whose expiry is at or before the command's time (at most `limit`);
    /// their blocks go to the deleted-blocks queue.
    ExpireOpenKeys { limit: u32 },
    /// Forgets retry sessions idle for longer than the session limit.
    ExpireSessions,
    /// The SCM has taken the deleted-blocks batches up to and including `up_to_seq`.
    PurgeDeletedBlocks { up_to_seq: u64 },
    /// Meta group: marks a bucket as being deleted (new key writes are refused by leaders) or
    /// clears the mark when the delete is given up. Replies `BucketMarked` with the bucket's
    /// object id, which the fence commands name.
    SetBucketDeleting { volume: String, bucket: String, deleting: bool },
    /// Key shard (admin only, with `ctx.bucket`): from now on refuse (`fenced`) or accept again
    /// key writes in the bucket; replies `BucketUsage` with this shard's keys and open keys in it
    /// at that point of the log. A delete proceeds only if every shard, once fenced, is empty.
    FenceBucket { fenced: bool },
    /// Key shard, step 1 of renaming `from` (here) to `to` (on shard `dest_shard`): records a
    /// rename intent and marks `from` as moving (writes to it are refused with `KeyBusy` until
    /// the rename finishes; reads still see it). Replies `RenameStarted` with the intent's id
    /// and the key's record, which step 2 copies.
    RenameOut { volume: String, bucket: String, from: String, to: String, dest_shard: u32 },
    /// Key shard, step 2, on the destination (admin only, as steps 3): creates `to` from
    /// `record` unless `to` exists.
    /// The outcome is remembered under (`source_shard`, `txn`) for
    /// [`crate::constants::RENAME_IN_RETENTION_MS`]: a repeated step 2 gets the same answer.
    RenameIn { volume: String, bucket: String, to: String, source_shard: u32, txn: u64, record: KeyRecord },
    /// Key shard, step 3, on the source: with `commit` (step 2 succeeded) deletes `from`, whose
    /// blocks now belong to `to`; without, gives the rename up. An unknown `txn` is done.
    RenameFinish { txn: u64, commit: bool },
    /// Gives up an open key at once (an interrupted or failed upload): the open key is dropped
    /// and its blocks go to the deleted-blocks queue now rather than at its expiry. Replies
    /// `Done`; an open key that is no longer there (committed, expired, aborted) is
    /// `OpenKeyNotFound`. Appended last: the archived tags of the other variants stay as logged.
    AbortKey { volume: String, bucket: String, key: String, open_id: u64 },
    /// `CommitKey` into a bucket (or volume) with a quota, in a sharded namespace: with the
    /// bucket's and its volume's usage on the other key shards, as the leader read it
    /// (linearizably) just before proposing, so the quota holds for the bucket as a whole, not
    /// for each shard's part (see [`Elsewhere`]). New variants go last: the archived tags of
    /// the others stay as logged.
    CommitKeyCounted {
        volume: String,
        bucket: String,
        key: String,
        open_id: u64,
        data_size: u64,
        blocks: Vec<BlockLocation>,
        elsewhere: Elsewhere,
    },
    /// `CommitKey` into a bucket (or volume) with a quota, in a sharded namespace: the growth
    /// must fit this shard's allowances for the bucket and the volume ([`Allowance`], granted
    /// by the meta group). If it does not, nothing changes and the outcome is
    /// `OmError::NeedsAllowance` (not remembered for retries): the leader obtains a larger
    /// allowance and proposes the commit again. Replaces `CommitKeyCounted`, which could
    /// overshoot with commits racing on other shards (still applied as logged).
    CommitKeyAllowed { volume: String, bucket: String, key: String, open_id: u64, data_size: u64, blocks: Vec<BlockLocation> },
    /// Key shard: take the meta group's grant for `scope` (a bucket's or a volume's object id)
    /// as this shard's allowance, if its version is newer than the allowance's. OM-internal.
    SetAllowance { scope: u64, allowance: Allowance },
    /// Key shard: lower the allowance for `scope` to what this shard uses now (never raise it);
    /// replies `Allowance`: the usage (what the grant may come down to) and the allowance's
    /// version (unchanged; 0 if none). OM-internal.
    ReleaseAllowance { scope: u64 },
    /// Meta group: grant key shard group `shard` an allowance for the bucket (or, `bucket`
    /// None, the volume): up to `want_*`, at most what the quota leaves beside the other
    /// shards' grants, never below its grant under the same quota nor below what it holds
    /// (`holding_*`, its usage as its leader read it). Replies `Granted`. OM-internal.
    GrantQuota { volume: String, bucket: Option<String>, shard: u32, want_bytes: u64, want_keys: u64, holding_bytes: u64, holding_keys: u64 },
    /// Meta group: set `shard`'s grant for `scope` to its released usage, if no grant was made
    /// since (`version` still the grant's). Replies `Allowance`: the grant as it stands.
    /// OM-internal.
    LowerGrant { scope: u64, shard: u32, bytes: u64, keys: u64, version: u64 },
    /// Meta group: the S3 secret of access key `access_id` (a principal's name, as Ozone's
    /// `s3 getsecret` makes it): the one it has, else `fresh` (chosen by the proposing OM, so
    /// that applying stays deterministic), kept. The principal itself or an administrator.
    /// Replies `S3Secret`.
    GetS3Secret { access_id: String, fresh: String },
    /// Meta group: forgets `access_id`'s S3 secret (`s3 revokesecret`); its signatures stop
    /// verifying. The principal itself or an administrator. Replies `Done`.
    RevokeS3Secret { access_id: String },
    /// `CommitKey` (or, `allowed`, `CommitKeyAllowed`) that also sets `metadata` over the open
    /// key's (what is known once the data is written: S3's ETag) and applies only if
    /// `condition` holds of the key's present version (S3's conditional PUT), else
    /// `PreconditionFailed` and nothing changes. Checked at apply, in log order: of two racing
    /// writers with `Absent`, exactly one wins.
    CommitKeyWith {
        volume: String,
        bucket: String,
        key: String,
        open_id: u64,
        data_size: u64,
        blocks: Vec<BlockLocation>,
        metadata: Vec<MetadataPair>,
        condition: Condition,
        allowed: bool,
    },
    /// Changes a committed key's metadata in place (S3 object tagging): drops the pairs whose
    /// name starts with `remove_prefix` (none if empty), then sets `set` over the rest, if
    /// `condition` holds. Blocks, size and times stay. Replies `Done`.
    SetKeyMetadata { volume: String, bucket: String, key: String, set: Vec<MetadataPair>, remove_prefix: String, condition: Condition },
    /// Starts multipart upload `upload_id` (made by the proposing OM) of `key`. Replies
    /// `UploadStarted`. The upload counts as an open key of its bucket until it ends.
    InitiateUpload { volume: String, bucket: String, key: String, upload_id: String, replication: Option<Replication>, metadata: Vec<MetadataPair> },
    /// Makes open key `open_id` of `key` (written as for `CommitKey`) part `part` of the upload;
    /// a part of that number before is replaced and its blocks freed. Replies `Done`.
    CommitPart { volume: String, bucket: String, key: String, upload_id: String, part: u32, open_id: u64, data_size: u64, blocks: Vec<BlockLocation>, etag: String },
    /// Makes `key` of the listed parts (ascending, with their ETags; all but the last at least
    /// `PART_BYTES_MIN`), committed as `CommitKeyWith` would with `etag` and `condition`
    /// (`allowed`: against this shard's quota allowances); unlisted parts are freed and the
    /// upload ends. Replies `KeyCommitted`.
    CompleteUpload {
        volume: String,
        bucket: String,
        key: String,
        upload_id: String,
        parts: Vec<(u32, String)>,
        etag: String,
        condition: Condition,
        allowed: bool,
    },
    /// Ends the upload and frees its parts. Replies `Done`.
    AbortUpload { volume: String, bucket: String, key: String, upload_id: String },
    /// Ends (as `AbortUpload`) up to `limit` uploads begun before `created_before_ms`.
    /// Housekeeping; replies `Expired` with the count in `open_keys`.
    ExpireUploads { created_before_ms: u64, limit: u32 },
    /// Changes a bucket's metadata in place (its S3 settings, such as default encryption):
    /// drops the pairs whose name starts with `remove_prefix` (none if empty), then sets `set`
    /// over the rest. The bucket's owner (or an administrator) only. Replies `Done`.
    SetBucketMetadata { volume: String, bucket: String, set: Vec<MetadataPair>, remove_prefix: String },
    /// `CommitPart` whose part keeps an additional checksum (`checksum`, opaque here: the S3
    /// gateway's `ALGORITHM:base64`, at most a metadata value's bytes), for the completion to
    /// combine. Appended after the others, so log entries written before keep their meaning; a
    /// part without a checksum is still proposed as `CommitPart`.
    CommitPartWithChecksum {
        volume: String,
        bucket: String,
        key: String,
        upload_id: String,
        part: u32,
        open_id: u64,
        data_size: u64,
        blocks: Vec<BlockLocation>,
        etag: String,
        checksum: String,
    },
    /// `CompleteUpload` whose listed parts may name their checksums (number, ETag, checksum:
    /// empty, or what the part must have been committed with, so that pairs made from the
    /// checksums the caller read describe the parts the key gets), and that also sets the pairs
    /// `set` on the key (the S3 gateway's checksum of the whole object), after `etag` and
    /// before the part sizes. Appended, as `CommitPartWithChecksum`; a completion without
    /// either is still proposed as `CompleteUpload`.
    CompleteUploadWith {
        volume: String,
        bucket: String,
        key: String,
        upload_id: String,
        parts: Vec<(u32, String, String)>,
        etag: String,
        set: Vec<MetadataPair>,
        condition: Condition,
        allowed: bool,
    },
    /// Meta group: replaces a bucket's ACL entries (S3's PutBucketAcl, Ozone's `bucket
    /// setacl`). Whoever holds WRITE_ACL on the bucket: its owner, its volume's owner or admin,
    /// an administrator, or an entry's grantee. Replies `Done`. Appended after the others, so
    /// log entries written before keep their meaning.
    SetBucketAcls { volume: String, bucket: String, acls: Vec<Acl> },
    /// Key shard: replaces a committed key's ACL entries (S3's PutObjectAcl and a write's
    /// canned ACL), which may grant READ (and READ_ACL) of this key alone to callers without
    /// READ on its bucket. Needs WRITE_ACL on the bucket, checked as a key write's right is.
    /// Replies `Done`. Appended, as `SetBucketAcls`.
    SetKeyAcls { volume: String, bucket: String, key: String, acls: Vec<Acl> },
    /// `CommitKeyWith` whose new version gets `acls` as its own entries (S3's canned ACL or
    /// grants of a PUT). Needs only the commit's right (WRITE on the bucket): the writer of a
    /// version may set its ACL, as S3 lets the writer of an object set the object's, and the
    /// version replaces whatever the key held. Appended, as `SetBucketAcls`.
    CommitKeyWithAcls {
        volume: String,
        bucket: String,
        key: String,
        open_id: u64,
        data_size: u64,
        blocks: Vec<BlockLocation>,
        metadata: Vec<MetadataPair>,
        condition: Condition,
        allowed: bool,
        acls: Vec<Acl>,
    },
    /// Key shard, housekeeping (administrators only, with `ctx.bucket`): deletes each listed
    /// key whose present version is still the one the leader found expired under the bucket's
    /// lifecycle rules (its `update_id`, the log index of its last change): a key written,
    /// tagged or renamed since stays. A key being renamed away is skipped. Blocks go to the
    /// deleted-blocks queue, as a delete's. Replies `Expired` with the count deleted in
    /// `open_keys`. Appended, as `SetBucketAcls`.
    ExpireKeys { volume: String, bucket: String, keys: Vec<(String, u64)> },
    /// `CompleteUploadWith` that also gives the key its own ACL entries (S3's canned ACL or
    /// grants of the upload), in the same apply, so the object is never visible with others:
    /// as `CommitKeyWithAcls`, the completion's right (WRITE on the bucket) is enough. Appended,
    /// as `SetBucketAcls`; a completion without entries is still proposed as before.
    CompleteUploadWithAcls {
        volume: String,
        bucket: String,
        key: String,
        upload_id: String,
        parts: Vec<(u32, String, String)>,
        etag: String,
        set: Vec<MetadataPair>,
        condition: Condition,
        allowed: bool,
        acls: Vec<Acl>,
    },
    /// Meta group: edits a bucket's ACL entries in place (Ozone's `bucket addacl` and
    /// `removeacl`): each entry of `add` grants its rights to its grantee (merged into the
    /// grantee's entry, else appended), then each of `remove` takes its rights from its
    /// grantee (an entry left with none goes). Applied here, not read, changed and replaced by
    /// the client, so that two edits racing both count. The right is `SetBucketAcls`'. Replies
    /// `Done`. Appended, as `SetBucketAcls`.
    EditBucketAcls { volume: String, bucket: String, add: Vec<Acl>, remove: Vec<Acl> },
    /// Key shard: `EditBucketAcls` for a committed key's own entries (Ozone's `key addacl` and
    /// `removeacl`); the right is `SetKeyAcls`'. Replies `Done`. Appended, as `SetBucketAcls`.
    EditKeyAcls { volume: String, bucket: String, key: String, add: Vec<Acl>, remove: Vec<Acl> },
    /// Key shard: `SetKeyAcls` (`set`) or `EditKeyAcls` (`add`, `remove`; `set` None) by a
    /// caller whom the key's own entries grant WRITE_ACL where its bucket's do not (S3's
    /// WRITE_ACP on an object, which its writer holds as its owner). The leader proposes it in
    /// place of either when the bucket refuses the caller; the right is checked against the
    /// version present when it applies, so a version written meanwhile by someone else (with
    /// entries of its own, or none) is not changed by a grant of the one before. Appended.
    KeyAclsByKeyGrant { volume: String, bucket: String, key: String, set: Option<Vec<Acl>>, add: Vec<Acl>, remove: Vec<Acl> },
    /// Key shard: `SetKeyAcls` only if the key's present version is the one whose `update_id`
    /// its caller read, else `PreconditionFailed` and nothing changes (`setAcls` with
    /// `ifUpdateId`). S3's PutObjectAcl builds the entries from the version it read (its
    /// owner's FULL_CONTROL): applied to an overwrite by someone else, they would hand that
    /// version to the first one's owner. `by_key`: as `KeyAclsByKeyGrant`, the right is the
    /// key's own WRITE_ACL (the leader found the bucket refusing). Appended.
    SetKeyAclsIf { volume: String, bucket: String, key: String, acls: Vec<Acl>, update_id: u64, by_key: bool },
}

/// What must hold of a key's present version for a write to apply.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub enum Condition {
    #[default]
    Any,
    /// No key of this name exists (S3's `If-None-Match: *`).
    Absent,
    /// The key exists and has this metadata pair (S3's `If-Match` on the ETag); no key is
    /// `KeyNotFound`, as S3 answers it (404).
    Matches(MetadataPair),
    /// The key exists (S3's `If-Match: *`); no key is `KeyNotFound`. Added after the others,
    /// so log entries written before keep their meaning.
    Present,
    /// No key of this name has this metadata pair: none at all, or one with another value (S3's
    /// `If-None-Match` with an ETag).
    NotMatches(MetadataPair),
}

impl Op {
    /// Whether the outcome is remembered for retries. Housekeeping commands are idempotent.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Op::ExpireOpenKeys { .. } | Op::ExpireSessions | Op::PurgeDeletedBlocks { .. } | Op::SetBucketDeleting { .. } | Op::FenceBucket { .. }
                | Op::RenameIn { .. } | Op::RenameFinish { .. } | Op::SetAllowance { .. } | Op::ReleaseAllowance { .. }
                | Op::GrantQuota { .. } | Op::LowerGrant { .. } | Op::ExpireUploads { .. } | Op::ExpireKeys { .. }
        )
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Command {
    pub ctx: CommandContext,
    pub op: Op,
}

/// Why bytes are not a command.
#[derive(Debug, thiserror::Error)]
#[error("malformed command ({len} bytes): {reason}")]
pub struct DecodeError {
    pub len: usize,
    pub reason: String,
}

impl Command {
    /// The log payload of this command.
    pub fn encode(&self) -> rkyv::util::AlignedVec {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("serializing a command into memory cannot fail")
    }

    /// Decodes (and fully validates) a log payload. Bytes from disk or network go through here
    /// once; nothing downstream re-checks them.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        // rkyv wants the root 8-aligned; log payloads may sit anywhere in a read buffer.
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<Command, rkyv::rancor::BoxedError>(&aligned)
            .map_err(|e| DecodeError { len: bytes.len(), reason: e.to_string() })
    }
}
