//! The wire edge: Cap'n Proto messages to shard operations (validating every name, size and
//! list length before anything reaches a shard), and results back to messages. Status codes
//! are mapped in one place, [`status_of`].

use capnp::text;
use stratos_raft::group::ProposeError;
use stratos_schema::om_capnp::{self, Status};
use stratos_shard::constants::*;
use stratos_shard::names::{check_key_name, check_resource_name, check_user_name};
use stratos_shard::records::{ArchivedKeyRecord, BucketRecord, VolumeRecord};
use stratos_shard::{Acl, AclKind, BlockLocation, BucketUsage, Condition, MetadataPair, OmError, Op, Reply, Replication, VolumeUsage};

use crate::datapath::Decor;

/// A refusal at the edge or from the cluster: a status and a message (and a leader hint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub status: Status,
    pub message: String,
    pub leader_hint: String,
}

impl WireError {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), leader_hint: String::new() }
    }
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(Status::Malformed, message)
    }
}

impl From<capnp::Error> for WireError {
    fn from(e: capnp::Error) -> Self {
        WireError::malformed(format!("malformed message: {e}"))
    }
}

impl From<OmError> for WireError {
    fn from(e: OmError) -> Self {
        WireError::new(status_of(&e), e.to_string())
    }
}

impl From<ProposeError> for WireError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::NotLeader(hint) => WireError { status: Status::NotLeader, message: "not the leader".into(), leader_hint: hint.unwrap_or_default() },
            ProposeError::Unavailable(m) => WireError::new(Status::Unavailable, m),
        }
    }
}

/// The one mapping from business outcomes to wire status codes.
pub fn status_of(e: &OmError) -> Status {
    match e {
        OmError::InvalidName { .. } => Status::InvalidName,
        OmError::InvalidArgument(_) => Status::InvalidArgument,
        OmError::VolumeNotFound(_) => Status::VolumeNotFound,
        OmError::VolumeExists(_) => Status::VolumeExists,
        OmError::VolumeNotEmpty(..) => Status::VolumeNotEmpty,
        OmError::BucketNotFound(_) => Status::BucketNotFound,
        OmError::BucketExists(_) => Status::BucketExists,
        OmError::BucketNotEmpty(..) => Status::BucketNotEmpty,
        OmError::KeyNotFound(_) => Status::KeyNotFound,
        OmError::KeyExists(_) => Status::KeyExists,
        OmError::OpenKeyNotFound(..) => Status::OpenKeyNotFound,
        OmError::QuotaExceeded { .. } => Status::QuotaExceeded,
        OmError::PermissionDenied { .. } => Status::PermissionDenied,
        OmError::RetryTooOld { .. } => Status::RetryTooOld,
        OmError::KeyBusy(_) => Status::KeyBusy,
        OmError::S3SecretNotFound(_) => Status::S3SecretNotFound,
        OmError::PreconditionFailed(_) => Status::PreconditionFailed,
        OmError::NoSuchUpload(_) => Status::NoSuchUpload,
        OmError::InvalidPart(_) => Status::InvalidPart,
        // OM-internal (the leader obtains more and proposes again); never a client's answer,
        // but if it were, the commit was not applied: retry.
        OmError::NeedsAllowance { .. } => Status::Unavailable,
    }
}

/// An access key id: a user's name, or empty for the caller.
fn access_id(t: capnp::Result<text::Reader<'_>>) -> Result<String, WireError> {
    let s = text(t, "access key id", USER_NAME_BYTES_MAX + 1)?;
    if !s.is_empty() {
        check_user_name("access key id", &s)?;
    }
    Ok(s)
}

/// A new S3 secret: 40 letters and digits from the OS's generator (≈ 238 bits).
fn fresh_s3_secret() -> String {
    use rand::RngExt;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..stratos_shard::S3_SECRET_CHARS).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}

/// A bounded UTF-8 text field: too long is INVALID_ARGUMENT, not UTF-8 is INVALID_NAME.
pub fn text(t: capnp::Result<text::Reader<'_>>, what: &str, max_bytes: usize) -> Result<String, WireError> {
    use stratos_common::rpc::TextError;
    stratos_common::rpc::text(t, what, max_bytes).map_err(|e| match e {
        TextError::Capnp(e) => WireError::from(e),
        TextError::TooLong { .. } => WireError::new(Status::InvalidArgument, e.to_string()),
        TextError::NotUtf8 { .. } => WireError::new(Status::InvalidName, e.to_string()),
    })
}

/// A name that is too long is a bad name (INVALID_NAME), not a bad argument.
fn name_text(t: capnp::Result<text::Reader<'_>>, what: &str, max_bytes: usize) -> Result<String, WireError> {
    text(t, what, max_bytes).map_err(|e| if e.status == Status::InvalidArgument { WireError { status: Status::InvalidName, ..e } } else { e })
}

/// A volume or bucket name: too long is refused before it is copied, in the same words as the
/// name rules use (a 64-byte and a 65-byte name got two different messages).
///
/// `label` is the name's kind followed by " name" ("volume name"): spelled out by the callers,
/// as formatting it here cost an allocation per name on every call, and the kind derived from it.
fn resource_name(t: capnp::Result<text::Reader<'_>>, label: &'static str) -> Result<String, WireError> {
    let what = label.strip_suffix(" name").unwrap_or(label);
    let s = match stratos_common::rpc::text(t, label, RESOURCE_NAME_BYTES_MAX) {
        Ok(s) => s,
        Err(stratos_common::rpc::TextError::TooLong { len, .. }) => {
            let reason = format!("length must be {}..={RESOURCE_NAME_BYTES_MAX}, is {len}", stratos_shard::constants::RESOURCE_NAME_BYTES_MIN);
            return Err(OmError::InvalidName { what: what.to_string(), name: format!("<{len} bytes>"), reason }.into());
        }
        Err(e @ stratos_common::rpc::TextError::NotUtf8 { .. }) => return Err(WireError::new(Status::InvalidName, e.to_string())),
        Err(stratos_common::rpc::TextError::Capnp(e)) => return Err(WireError::from(e)),
    };
    check_resource_name(what, &s)?;
    Ok(s)
}

pub fn volume_name(t: capnp::Result<text::Reader<'_>>) -> Result<String, WireError> {
    resource_name(t, "volume name")
}

pub fn bucket_name(t: capnp::Result<text::Reader<'_>>) -> Result<String, WireError> {
    resource_name(t, "bucket name")
}

pub fn key_name(t: capnp::Result<text::Reader<'_>>) -> Result<String, WireError> {
    let s = name_text(t, "key name", KEY_NAME_BYTES_MAX + 1)?;
    check_key_name(&s)?;
    Ok(s)
}

fn user_name(t: capnp::Result<text::Reader<'_>>, what: &'static str) -> Result<String, WireError> {
    let s = text(t, what, USER_NAME_BYTES_MAX + 1)?;
    check_user_name(what, &s)?;
    Ok(s)
}

/// An optional user name: empty means "not given".
fn optional_user(t: capnp::Result<text::Reader<'_>>, what: &'static str) -> Result<Option<String>, WireError> {
    let s = text(t, what, USER_NAME_BYTES_MAX + 1)?;
    if s.is_empty() {
        return Ok(None);
    }
    check_user_name(what, &s)?;
    Ok(Some(s))
}

fn bounded(len: u32, max: usize, what: &str) -> Result<(), WireError> {
    if len as usize > max {
        return Err(WireError::new(Status::InvalidArgument, format!("{len} {what}, at most {max}")));
    }
    Ok(())
}

fn replication(r: Result<om_capnp::Replication, capnp::NotInSchema>) -> Result<Replication, WireError> {
    match r {
        Ok(om_capnp::Replication::RatisOne) => Ok(Replication::RatisOne),
        Ok(om_capnp::Replication::RatisThree) => Ok(Replication::RatisThree),
        Err(e) => Err(WireError::malformed(format!("unknown replication {}", e.0))),
    }
}

fn optional_replication(r: capnp::Result<om_capnp::optional_replication::Reader<'_>>) -> Result<Option<Replication>, WireError> {
    match r?.which().map_err(|e| WireError::malformed(format!("unknown union member {}", e.0)))? {
        om_capnp::optional_replication::None(()) => Ok(None),
        om_capnp::optional_replication::Some(r) => replication(r).map(Some),
    }
}

fn acls(list: capnp::Result<capnp::struct_list::Reader<'_, om_capnp::acl::Owned>>) -> Result<Vec<Acl>, WireError> {
    let list = list?;
    bounded(list.len(), ACLS_MAX, "ACL entries")?;
    let mut out = Vec::with_capacity(list.len() as usize);
    for a in list.iter() {
        let kind = match a.get_kind() {
            Ok(om_capnp::acl::Kind::User) => AclKind::User,
            Ok(om_capnp::acl::Kind::Group) => AclKind::Group,
            Ok(om_capnp::acl::Kind::World) => AclKind::World,
            Err(e) => return Err(WireError::malformed(format!("unknown ACL kind {}", e.0))),
        };
        let name = text(a.get_name(), "ACL name", USER_NAME_BYTES_MAX)?;
        out.push(Acl { kind, name, rights: a.get_rights() });
    }
    Ok(out)
}

type PairField<'a> = Option<capnp::Result<om_capnp::metadata_pair::Reader<'a>>>;

/// A write's condition from its `ifAbsent` and `ifPresent` flags and `ifMatch` and
/// `ifNoneMatch` pairs (if set), which exclude each other.
fn write_condition(what: &str, if_absent: bool, if_present: bool, if_match: PairField<'_>, if_none_match: PairField<'_>) -> Result<Condition, WireError> {
    match (if_absent, if_present, if_match, if_none_match) {
        (false, false, None, None) => Ok(Condition::Any),
        (true, false, None, None) => Ok(Condition::Absent),
        (false, true, None, None) => Ok(Condition::Present),
        (false, false, Some(m), None) => Ok(Condition::Matches(pair(m)?)),
        (false, false, None, Some(m)) => Ok(Condition::NotMatches(pair(m)?)),
        _ => Err(WireError::new(Status::InvalidArgument, format!("a {what} may have one of ifAbsent, ifPresent, ifMatch and ifNoneMatch, not more"))),
    }
}

fn pair(m: capnp::Result<om_capnp::metadata_pair::Reader<'_>>) -> Result<MetadataPair, WireError> {
    let m = m?;
    Ok(MetadataPair { key: text(m.get_key(), "metadata key", METADATA_KEY_BYTES_MAX)?, value: text(m.get_value(), "metadata value", METADATA_VALUE_BYTES_MAX)? })
}

fn metadata(list: capnp::Result<capnp::struct_list::Reader<'_, om_capnp::metadata_pair::Owned>>) -> Result<Vec<MetadataPair>, WireError> {
    let list = list?;
    bounded(list.len(), METADATA_PAIRS_MAX, "metadata pairs")?;
    let mut out = Vec::with_capacity(list.len() as usize);
    for m in list.iter() {
        out.push(MetadataPair { key: text(m.get_key(), "metadata key", METADATA_KEY_BYTES_MAX)?, value: text(m.get_value(), "metadata value", METADATA_VALUE_BYTES_MAX)? });
    }
    Ok(out)
}

fn blocks(list: capnp::Result<capnp::struct_list::Reader<'_, om_capnp::block_location::Owned>>) -> Result<Vec<BlockLocation>, WireError> {
    let list = list?;
    bounded(list.len(), BLOCKS_PER_KEY_MAX, "blocks")?;
    Ok(list
        .iter()
        .map(|b| BlockLocation { container_id: b.get_container_id(), local_id: b.get_local_id(), pipeline_id: b.get_pipeline_id(), length: b.get_length() })
        .collect())
}

/// A quota on the wire: 0 = unlimited (create) or unchanged (update).
fn quota_or_unlimited(q: u64) -> u64 {
    if q == 0 { stratos_shard::QUOTA_UNLIMITED } else { q }
}

fn quota_update(q: u64) -> Option<u64> {
    (q != 0).then_some(q)
}

/// Where an operation goes: the meta group, or the shard of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Meta,
    /// A key operation, by the [`stratos_schema::key_hash`] of its volume, bucket, and the key
    /// that picks the shard (the names themselves are in the operation: no copies).
    Key { hash: u32 },
}

/// Parses one operation. `open_key_ttl_ms` and `now_ms` fix the open key's expiry (the leader
/// decides non-deterministic facts before proposing).
pub fn operation(r: om_capnp::operation::Reader<'_>, now_ms: u64, open_key_ttl_ms: u64) -> Result<(Op, Target), WireError> {
    use om_capnp::operation::Which;
    let which = r.which().map_err(|e| WireError::malformed(format!("unknown operation {}", e.0)))?;
    let key_target = |v: &str, b: &str, k: &str| Target::Key { hash: stratos_schema::key_hash(v, b, k) };
    Ok(match which {
        Which::CreateVolume(g) => {
            let owner = user_name(g.get_owner(), "owner")?;
            let op = Op::CreateVolume {
                volume: volume_name(g.get_volume())?,
                // Ozone makes the creator the admin; the wire has no caller here, so the owner.
                admin: optional_user(g.get_admin(), "admin")?.unwrap_or_else(|| owner.clone()),
                owner,
                quota_bytes: quota_or_unlimited(g.get_quota_bytes()),
                quota_namespace: quota_or_unlimited(g.get_quota_namespace()),
                acls: acls(g.get_acls())?,
                metadata: metadata(g.get_metadata())?,
            };
            (op, Target::Meta)
        }
        Which::DeleteVolume(g) => (Op::DeleteVolume { volume: volume_name(g.get_volume())? }, Target::Meta),
        Which::SetVolumeOwner(g) => (Op::SetVolumeOwner { volume: volume_name(g.get_volume())?, owner: user_name(g.get_owner(), "owner")? }, Target::Meta),
        Which::SetVolumeQuota(g) => (
            Op::SetVolumeQuota { volume: volume_name(g.get_volume())?, quota_bytes: quota_update(g.get_quota_bytes()), quota_namespace: quota_update(g.get_quota_namespace()) },
            Target::Meta,
        ),
        Which::CreateBucket(g) => (
            Op::CreateBucket {
                volume: volume_name(g.get_volume())?,
                bucket: bucket_name(g.get_bucket())?,
                owner: optional_user(g.get_owner(), "owner")?,
                versioning: g.get_versioning(),
                replication: replication(g.get_replication())?,
                quota_bytes: quota_or_unlimited(g.get_quota_bytes()),
                quota_namespace: quota_or_unlimited(g.get_quota_namespace()),
                acls: acls(g.get_acls())?,
                metadata: metadata(g.get_metadata())?,
            },
            Target::Meta,
        ),
        Which::DeleteBucket(g) => (Op::DeleteBucket { volume: volume_name(g.get_volume())?, bucket: bucket_name(g.get_bucket())? }, Target::Meta),
        Which::SetBucketProperty(g) => (
            Op::SetBucketProperty {
                volume: volume_name(g.get_volume())?,
                bucket: bucket_name(g.get_bucket())?,
                owner: optional_user(g.get_owner(), "owner")?,
                versioning: match g.get_versioning() {
                    Ok(om_capnp::Tristate::Unchanged) => None,
                    Ok(om_capnp::Tristate::No) => Some(false),
                    Ok(om_capnp::Tristate::Yes) => Some(true),
                    Err(e) => return Err(WireError::malformed(format!("unknown versioning value {}", e.0))),
                },
                replication: optional_replication(g.get_replication())?,
                quota_bytes: quota_update(g.get_quota_bytes()),
                quota_namespace: quota_update(g.get_quota_namespace()),
            },
            Target::Meta,
        ),
        Which::OpenKey(g) => {
            let (volume, bucket, key) = (volume_name(g.get_volume())?, bucket_name(g.get_bucket())?, key_name(g.get_key())?);
            let target = key_target(&volume, &bucket, &key);
            let op = Op::OpenKey {
                volume,
                bucket,
                key,
                replication: optional_replication(g.get_replication())?,
                // Filled in by the service from the block pool (see `alloc_request`); without
                // an SCM a key is opened without blocks (metadata only).
                blocks: Vec::new(),
                expires_ms: now_ms + open_key_ttl_ms,
                metadata: metadata(g.get_metadata())?,
            };
            (op, target)
        }
        Which::AllocateBlock(g) => {
            let (volume, bucket, key) = (volume_name(g.get_volume())?, bucket_name(g.get_bucket())?, key_name(g.get_key())?);
            let target = key_target(&volume, &bucket, &key);
            // The block is filled in by the service (see `alloc_request`).
            let block = BlockLocation { container_id: 0, local_id: 0, pipeline_id: 0, length: 0 };
            (Op::AllocateBlock { volume, bucket, key, open_id: g.get_open_id(), block }, target)
        }
        Which::CommitKey(g) => {
            let (volume, bucket, key) = (volume_name(g.get_volume())?, bucket_name(g.get_bucket())?, key_name(g.get_key())?);
            let target = key_target(&volume, &bucket, &key);
            let (open_id, data_size, blocks) = (g.get_open_id(), g.get_data_size(), blocks(g.get_blocks())?);
            let set = metadata(g.get_metadata())?;
            let condition = write_condition("commit", g.get_if_absent(), g.get_if_present(), g.has_if_match().then(|| g.get_if_match()), g.has_if_none_match().then(|| g.get_if_none_match()))?;
            let with_acls = acls(g.get_acls())?;
            // The plain form stays the plain command (the hot path's log records as before).
            let op = if !with_acls.is_empty() {
                Op::CommitKeyWithAcls { volume, bucket, key, open_id, data_size, blocks, metadata: set, condition, allowed: false, acls: with_acls }
            } else if set.is_empty() && condition == Condition::Any {
                Op::CommitKey { volume, bucket, key, open_id, data_size, blocks }
            } else {
                Op::CommitKeyWith { volume, bucket, key, open_id, data_size, blocks, metadata: set, condition, allowed: false }
            };
            (op, target)
        }
        Which::SetBucketMetadata(g) => {
            let remove_prefix = text(g.get_remove_prefix(), "metadata prefix", METADATA_KEY_BYTES_MAX)?;
            (Op::SetBucketMetadata { volume: volume_name(g.get_volume())?, bucket: bucket_name(g.get_bucket())?, set: metadata(g.get_set())?, remove_prefix }, Target::Meta)
        }
        Which::SetKeyMetadata(g) => {
            let (volume, bucket, key) = (volume_name(g.get_volume())?, bucket_name(g.get_bucket())?, key_name(g.get_key())?);
            let target = key_target(&volume, &bucket, &key);
            let remove_prefix = text(g.get_remove_prefix(), "metadata prefix", METADATA_KEY_BYTES_MAX)?;
            let condition = if g.has_if_match() { Condition::Matches(pair(g.get_if_match())?) } else { Condition::Any };
            (Op::SetKeyMetadata { volume, bucket, key, set: metadata(g.get_set())?, remove_prefix, condition }, target)
        }
        Which::SetAcls(g) => {
            let (volume, bucket) = (volume_name(g.get_volume())?, bucket_name(g.get_bucket())?);
            let acls = acls(g.get_acls())?;
            let update_id = g.get_if_update_id();
            if g.get_key()?.is_empty() {
                if update_id != 0 {
                    return Err(WireError::new(Status::InvalidArgument, "ifUpdateId applies to a key's entries, not a bucket's".to_string()));
                }
                (Op::SetBucketAcls { volume, bucket, acls }, Target::Meta)
            } else {
                let key = key_name(g.get_key())?;
                let target = key_target(&volume, &bucket, &key);
                match update_id {
                    0 => (Op::SetKeyAcls { volume, bucket, key, acls }, target),
                    update_id => (Op::SetKeyAclsIf { volume, bucket, key, acls, update_id, by_key: false }, target),
                }
            }
        }
        Which::EditAcls(g) => {
            let (volume, bucket) = (volume_name(g.get_volume())?, bucket_name(g.get_bucket())?);
            let (add, remove) = (acls(g.get_add())?, acls(g.get_remove())?);
            if g.get_key()?.is_empty() {
                (Op::EditBucketAcls { volume, bucket, add, remove }, Target::Meta)
            } else {
                let key = key_name(g.get_key())?;
                let target = key_target(&volume, &bucket, &key);
                (Op::EditKeyAcls { volume, bucket, key, add, remove }, target)
            }
        }
        // The secret a new access key gets is made here, by the OM that proposes it (applying
        // must be deterministic); an access key that has one keeps it.
        Which::GetS3Secret(g) => (Op::GetS3Secret { access_id: access_id(g.get_access_id())?, fresh: fresh_s3_secret() }, Target::Meta),
        Which::RevokeS3Secret(g) => (Op::RevokeS3Secret { access_id: access_id(g.get_access_id())? }, Target::Meta),
        Which::AbortKey(g) => {
            let (volume, bucket, key) = (volume_name(g.get_volume())?, bucket_name(g.get_bucket())?, key_name(g.get_key())?);
            let target = key_target(&volume, &bucket, &key);
            (Op::AbortKey { volume, bucket, key, open_id: g.get_open_id() }, target)
        }
        Which::InitiateUpload(g) => {
            let (volume, bucket, key) = (volume_name(g.get_volume())?, bucket_name(g.get_bucket())?, key_name(g.get_key())?);
            let target = key_target(&volume, &bucket, &key);
            // The id is made here, by the OM that proposes it (applying is deterministic):
            // time-ordered, so a key's uploads list in the order they began.
            let upload_id = format!("{now_ms:012x}{:016x}", rand::random::<u64>());
            (Op::InitiateUpload { volume, bucket, key, upload_id, replication: optional_replication(g.get_replication())?, metadata: metadata(g.get_metadata())? }, target)
        }
        Which::CommitPart(g) => {
            let (volume, bucket, key) = (volume_name(g.get_volume())?, bucket_name(g.get_bucket())?, key_name(g.get_key())?);
            let target = key_target(&volume, &bucket, &key);
            let upload_id = text(g.get_upload_id(), "upload id", UPLOAD_ID_BYTES_MAX)?;
            let etag = text(g.get_etag(), "ETag", METADATA_VALUE_BYTES_MAX)?;
            let checksum = text(g.get_checksum(), "part checksum", METADATA_VALUE_BYTES_MAX)?;
            let (part, open_id, data_size, blocks) = (g.get_part_number(), g.get_open_id(), g.get_data_size(), blocks(g.get_blocks())?);
            // Without a checksum, the command as builds before this one wrote it.
            let op = if checksum.is_empty() {
                Op::CommitPart { volume, bucket, key, upload_id, part, open_id, data_size, blocks, etag }
            } else {
                Op::CommitPartWithChecksum { volume, bucket, key, upload_id, part, open_id, data_size, blocks, etag, checksum }
            };
            (op, target)
        }
        Which::CompleteUpload(g) => {
            let (volume, bucket, key) = (volume_name(g.get_volume())?, bucket_name(g.get_bucket())?, key_name(g.get_key())?);
            let target = key_target(&volume, &bucket, &key);
            let upload_id = text(g.get_upload_id(), "upload id", UPLOAD_ID_BYTES_MAX)?;
            let list = g.get_parts()?;
            bounded(list.len(), PARTS_MAX as usize, "parts")?;
            let mut parts = Vec::with_capacity(list.len() as usize);
            for p in list.iter() {
                let checksum = text(p.get_checksum(), "part checksum", METADATA_VALUE_BYTES_MAX)?;
                parts.push((p.get_part_number(), text(p.get_etag(), "ETag", METADATA_VALUE_BYTES_MAX)?, checksum));
            }
            let condition =
                write_condition("completion", g.get_if_absent(), g.get_if_present(), g.has_if_match().then(|| g.get_if_match()), g.has_if_none_match().then(|| g.get_if_none_match()))?;
            let etag = text(g.get_etag(), "ETag", METADATA_VALUE_BYTES_MAX)?;
            let set = metadata(g.get_set())?;
            let with_acls = acls(g.get_acls())?;
            let op = if !with_acls.is_empty() {
                Op::CompleteUploadWithAcls { volume, bucket, key, upload_id, parts, etag, set, condition, allowed: false, acls: with_acls }
            } else if set.is_empty() && parts.iter().all(|(.., checksum)| checksum.is_empty()) {
                let parts = parts.into_iter().map(|(n, etag, _)| (n, etag)).collect();
                Op::CompleteUpload { volume, bucket, key, upload_id, parts, etag, condition, allowed: false }
            } else {
                Op::CompleteUploadWith { volume, bucket, key, upload_id, parts, etag, set, condition, allowed: false }
            };
            (op, target)
        }
        Which::AbortUpload(g) => {
            let (volume, bucket, key) = (volume_name(g.get_volume())?, bucket_name(g.get_bucket())?, key_name(g.get_key())?);
            let target = key_target(&volume, &bucket, &key);
            (Op::AbortUpload { volume, bucket, key, upload_id: text(g.get_upload_id(), "upload id", UPLOAD_ID_BYTES_MAX)? }, target)
        }
        Which::DeleteKey(g) => {
            let (volume, bucket, key) = (volume_name(g.get_volume())?, bucket_name(g.get_bucket())?, key_name(g.get_key())?);
            let target = key_target(&volume, &bucket, &key);
            (Op::DeleteKey { volume, bucket, key }, target)
        }
        Which::DeleteKeys(g) => {
            let (volume, bucket) = (volume_name(g.get_volume())?, bucket_name(g.get_bucket())?);
            let list = g.get_keys()?;
            bounded(list.len(), KEYS_PER_DELETE_MAX, "keys in one delete")?;
            let mut keys = Vec::with_capacity(list.len() as usize);
            for k in list.iter() {
                keys.push(key_name(k)?);
            }
            // Split per shard by the caller (service); the target names the first key.
            let first = keys.first().cloned().unwrap_or_default();
            let target = key_target(&volume, &bucket, &first);
            (Op::DeleteKeys { volume, bucket, keys }, target)
        }
        Which::RenameKey(g) => {
            let (volume, bucket) = (volume_name(g.get_volume())?, bucket_name(g.get_bucket())?);
            let (from, to) = (key_name(g.get_from())?, key_name(g.get_to())?);
            let target = key_target(&volume, &bucket, &from);
            (Op::RenameKey { volume, bucket, from, to }, target)
        }
    })
}

/// What an operation needs from the block pool before it is proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocRequest {
    /// `openKey`: blocks for this many bytes (at least one block).
    Open { bytes: u64 },
    /// `allocateBlock`: one block on none of these datanodes.
    One { exclude: Vec<u64> },
}

/// Datanodes one `allocateBlock` may exclude.
pub const EXCLUDE_MAX: usize = 1024;

pub fn alloc_request(r: om_capnp::operation::Reader<'_>) -> Result<Option<AllocRequest>, WireError> {
    use om_capnp::operation::Which;
    Ok(match r.which().map_err(|e| WireError::malformed(format!("unknown operation {}", e.0)))? {
        Which::OpenKey(g) => Some(AllocRequest::Open { bytes: g.get_data_size() }),
        Which::AllocateBlock(g) => {
            let l = g.get_exclude_datanodes()?;
            bounded(l.len(), EXCLUDE_MAX, "excluded datanodes")?;
            Some(AllocRequest::One { exclude: l.iter().collect() })
        }
        _ => None,
    })
}

pub fn set_error(mut b: om_capnp::error::Builder<'_>, e: &WireError) {
    b.set_status(e.status);
    b.set_message(&e.message);
    b.set_leader_hint(&e.leader_hint);
}

pub fn set_block(mut b: om_capnp::block_location::Builder<'_>, block: &BlockLocation) {
    b.set_container_id(block.container_id);
    b.set_local_id(block.local_id);
    b.set_pipeline_id(block.pipeline_id);
    b.set_length(block.length);
}

pub fn set_outcome(mut b: om_capnp::outcome::Builder<'_>, o: &Result<Reply, WireError>, decor: &Decor<'_>) {
    match o {
        Err(e) => set_error(b.init_error(), e),
        Ok(Reply::Done | Reply::Expired { .. } | Reply::BucketMarked { .. } | Reply::BucketUsage { .. } | Reply::RenameStarted { .. }
            | Reply::Allowance { .. } | Reply::Granted { .. }) => b.set_done(()),
        Ok(Reply::Created { object_id }) => b.init_created().set_object_id(*object_id),
        Ok(Reply::KeyOpened { open_id, blocks }) => {
            let mut k = b.init_key_opened();
            k.set_open_id(*open_id);
            let mut list = k.init_blocks(blocks.len() as u32);
            for (i, block) in blocks.iter().enumerate() {
                decor.set_block(list.reborrow().get(i as u32), block, true, *open_id);
            }
        }
        Ok(Reply::BlockAllocated { block }) => decor.set_block(b.init_block_allocated(), block, true, 0),
        Ok(Reply::KeyCommitted { object_id, replaced }) => {
            let mut k = b.init_key_committed();
            k.set_object_id(*object_id);
            k.set_replaced(*replaced);
        }
        Ok(Reply::UploadStarted { upload_id }) => b.init_upload_started().set_upload_id(upload_id.as_str()),
        Ok(Reply::S3Secret { access_id, secret }) => {
            let mut s = b.init_s3_secret();
            s.set_access_id(access_id.as_str());
            s.set_secret(secret.as_str());
        }
        Ok(Reply::KeysDeleted { deleted, missing }) => {
            let mut k = b.init_keys_deleted();
            k.set_deleted(*deleted);
            let mut list = k.init_missing(missing.len() as u32);
            for (i, m) in missing.iter().enumerate() {
                list.set(i as u32, m.as_str());
            }
        }
    }
}

fn wire_replication(r: Replication) -> om_capnp::Replication {
    match r {
        Replication::RatisOne => om_capnp::Replication::RatisOne,
        Replication::RatisThree => om_capnp::Replication::RatisThree,
    }
}

fn set_acls(mut list: capnp::struct_list::Builder<'_, om_capnp::acl::Owned>, acls: &[Acl]) {
    for (i, a) in acls.iter().enumerate() {
        let mut b = list.reborrow().get(i as u32);
        b.set_kind(match a.kind {
            AclKind::User => om_capnp::acl::Kind::User,
            AclKind::Group => om_capnp::acl::Kind::Group,
            AclKind::World => om_capnp::acl::Kind::World,
        });
        b.set_name(&a.name);
        b.set_rights(a.rights);
    }
}

fn set_metadata(mut list: capnp::struct_list::Builder<'_, om_capnp::metadata_pair::Owned>, m: &[MetadataPair]) {
    for (i, p) in m.iter().enumerate() {
        let mut b = list.reborrow().get(i as u32);
        b.set_key(&p.key);
        b.set_value(&p.value);
    }
}

/// A volume as the cluster reports it: its record and usage summed over shards.
#[derive(Debug, Clone)]
pub struct VolumeView {
    pub name: String,
    pub record: VolumeRecord,
    pub usage: VolumeUsage,
}

#[derive(Debug, Clone)]
pub struct BucketView {
    pub volume: String,
    pub name: String,
    pub record: BucketRecord,
    pub usage: BucketUsage,
}

/// A key, copied out of its shard (to cross cores).
#[derive(Debug, Clone)]
pub struct KeyView {
    pub name: String,
    pub record: stratos_shard::records::KeyRecord,
}

impl KeyView {
    pub fn of(name: &str, r: &ArchivedKeyRecord) -> Self {
        Self { name: name.to_string(), record: rkyv::deserialize::<_, rkyv::rancor::Error>(r).expect("archived records deserialize") }
    }
}

pub fn set_volume(mut b: om_capnp::volume_info::Builder<'_>, v: &VolumeView) {
    b.set_name(&v.name);
    b.set_owner(&v.record.owner);
    b.set_admin(&v.record.admin);
    b.set_created_ms(v.record.created_ms);
    b.set_modified_ms(v.record.modified_ms);
    b.set_quota_bytes(v.record.quota_bytes);
    b.set_quota_namespace(v.record.quota_namespace);
    b.set_used_bytes(v.usage.used_bytes);
    b.set_buckets(v.usage.buckets);
    b.set_object_id(v.record.object_id);
    b.set_update_id(v.record.update_id);
    set_acls(b.reborrow().init_acls(v.record.acls.len() as u32), &v.record.acls);
    set_metadata(b.init_metadata(v.record.metadata.len() as u32), &v.record.metadata);
}

pub fn set_bucket(mut b: om_capnp::bucket_info::Builder<'_>, v: &BucketView) {
    b.set_volume(&v.volume);
    b.set_name(&v.name);
    b.set_owner(&v.record.owner);
    b.set_created_ms(v.record.created_ms);
    b.set_modified_ms(v.record.modified_ms);
    b.set_versioning(v.record.versioning);
    b.set_replication(wire_replication(v.record.replication));
    b.set_quota_bytes(v.record.quota_bytes);
    b.set_quota_namespace(v.record.quota_namespace);
    b.set_used_bytes(v.usage.used_bytes);
    b.set_keys(v.usage.keys);
    b.set_open_keys(v.usage.open_keys);
    b.set_object_id(v.record.object_id);
    b.set_update_id(v.record.update_id);
    set_acls(b.reborrow().init_acls(v.record.acls.len() as u32), &v.record.acls);
    set_metadata(b.init_metadata(v.record.metadata.len() as u32), &v.record.metadata);
}

pub fn set_key(mut b: om_capnp::key_info::Builder<'_>, volume: &str, bucket: &str, k: &KeyView, decor: &Decor<'_>) {
    let r = &k.record;
    b.set_volume(volume);
    b.set_bucket(bucket);
    b.set_name(&k.name);
    b.set_data_size(r.data_size);
    b.set_replication(wire_replication(r.replication));
    b.set_created_ms(r.created_ms);
    b.set_modified_ms(r.modified_ms);
    b.set_object_id(r.object_id);
    b.set_update_id(r.update_id);
    let mut list = b.reborrow().init_blocks(r.blocks.len() as u32);
    for (i, block) in r.blocks.iter().enumerate() {
        decor.set_block(list.reborrow().get(i as u32), block, false, r.object_id);
    }
    set_metadata(b.reborrow().init_metadata(r.metadata.len() as u32), &r.metadata);
    if !r.acls.is_empty() {
        set_acls(b.init_acls(r.acls.len() as u32), &r.acls);
    }
}

/// The edge for one serialized `Operation` message, read with the limits the server sets per
/// call: what the fuzz target (`server/fuzz`, `edge_operation`) and the property test
/// (`server/tests/edge.rs`) feed with hostile bytes. An error, never a panic.
pub fn operation_from_bytes(bytes: &[u8], now_ms: u64, open_key_ttl_ms: u64) -> Result<(Op, Target), WireError> {
    let mut options = capnp::message::ReaderOptions::new();
    options.traversal_limit_in_words(Some(stratos_common::rpc::TRAVERSAL_WORDS_MAX)).nesting_limit(stratos_common::rpc::NESTING_MAX);
    let mut slice = bytes;
    let message = capnp::serialize::read_message_from_flat_slice(&mut slice, options)?;
    operation(message.get_root()?, now_ms, open_key_ttl_ms)
}

/// For the fuzz target and the property test: `bytes` through the edge, and what passes applied
/// to a fresh shard (as a key shard with bucket facts, or the meta group), whose invariants must
/// hold afterwards. Panics only if they do not: that is the finding.
pub fn fuzz_edge_operation(bytes: &[u8]) {
    if let Ok((op, target)) = operation_from_bytes(bytes, 1_000, 60_000) {
        let bucket = matches!(target, Target::Key { .. }).then_some(stratos_shard::BucketRef {
            bucket_id: 1,
            volume_id: 2,
            replication: Replication::RatisThree,
            quota_bytes: stratos_shard::QUOTA_UNLIMITED,
            quota_namespace: stratos_shard::QUOTA_UNLIMITED,
            volume_quota_bytes: stratos_shard::QUOTA_UNLIMITED,
            quota_epoch: 0,
            volume_quota_epoch: 0,
        });
        let ctx = stratos_shard::CommandContext { client_id: 1, request_id: 1, time_ms: 1_000, principal: stratos_shard::Principal::admin("root"), bucket };
        let mut s = stratos_shard::ShardState::new();
        let _ = s.apply(1, &stratos_shard::Command { ctx, op });
        if let Err(e) = s.check_invariants() {
            panic!("an operation that passed the edge broke the shard's invariants: {e}");
        }
    }
}
