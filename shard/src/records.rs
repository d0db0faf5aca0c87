//! The records of the namespace, stored as rkyv-archived bytes in the memtable.
//!
//! Layout choices that keep a key small (the per-key memory goal is ≤ 200 bytes): a key record
//! does not contain its own name or bucket (both are in the memtable key); a block location
//! does not store its offset in the key, which is the sum of the lengths before it.

use rkyv::{Archive, Deserialize, Serialize};

/// Replication of a key's blocks (Ozone's RATIS/ONE and RATIS/THREE).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[repr(u8)]
pub enum Replication {
    RatisOne = 1,
    RatisThree = 3,
}

impl Replication {
    /// Copies of each byte: the factor by which usage counts a key's size.
    pub fn factor(self) -> u64 {
        self as u64
    }
}

impl ArchivedReplication {
    pub fn native(&self) -> Replication {
        match self {
            ArchivedReplication::RatisOne => Replication::RatisOne,
            ArchivedReplication::RatisThree => Replication::RatisThree,
        }
    }
}

/// Bucket layout. Only OBJECT_STORE exists so far; FILE_SYSTEM_OPTIMIZED comes later.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[repr(u8)]
pub enum BucketLayout {
    ObjectStore = 1,
}

/// Who an ACL entry names.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[repr(u8)]
pub enum AclKind {
    User = 1,
    Group = 2,
    World = 3,
}

/// Rights bits of an ACL entry (Ozone's ACL rights).
pub mod rights {
    pub const READ: u16 = 1;
    pub const WRITE: u16 = 1 << 1;
    pub const CREATE: u16 = 1 << 2;
    pub const LIST: u16 = 1 << 3;
    pub const DELETE: u16 = 1 << 4;
    pub const READ_ACL: u16 = 1 << 5;
    pub const WRITE_ACL: u16 = 1 << 6;
    pub const ALL: u16 = (1 << 7) - 1;

    /// Rights by Ozone's names, as errors print them: `WRITE`, `READ|LIST`.
    pub fn names(rights: u16) -> String {
        const NAMES: [(u16, &str); 7] =
            [(READ, "READ"), (WRITE, "WRITE"), (CREATE, "CREATE"), (LIST, "LIST"), (DELETE, "DELETE"), (READ_ACL, "READ_ACL"), (WRITE_ACL, "WRITE_ACL")];
        let named: Vec<&str> = NAMES.iter().filter(|(bit, _)| rights & bit != 0).map(|(_, n)| *n).collect();
        if named.is_empty() { format!("{rights:#x}") } else { named.join("|") }
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Acl {
    pub kind: AclKind,
    /// User or group name; empty for `World`.
    pub name: String,
    pub rights: u16,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct MetadataPair {
    pub key: String,
    pub value: String,
}

/// Where a block's replicas are: the SCM's container and the block's id within it, the
/// pipeline (set of datanodes) that holds it, and the block's length in bytes.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct BlockLocation {
    pub container_id: u64,
    pub local_id: u64,
    pub pipeline_id: u64,
    pub length: u64,
}

impl ArchivedBlockLocation {
    pub fn native(&self) -> BlockLocation {
        BlockLocation {
            container_id: self.container_id.to_native(),
            local_id: self.local_id.to_native(),
            pipeline_id: self.pipeline_id.to_native(),
            length: self.length.to_native(),
        }
    }

    /// Block identity (container, local id), which a commit must match against the open key.
    pub fn id(&self) -> (u64, u64) {
        (self.container_id.to_native(), self.local_id.to_native())
    }
}

/// Quota value meaning "no limit".
pub const QUOTA_UNLIMITED: u64 = u64::MAX;

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct VolumeRecord {
    pub object_id: u64,
    pub update_id: u64,
    pub owner: String,
    pub admin: String,
    pub created_ms: u64,
    pub modified_ms: u64,
    /// Bound on the bytes (replicated) of all keys of all its buckets.
    pub quota_bytes: u64,
    /// Bound on its number of buckets.
    pub quota_namespace: u64,
    pub acls: Vec<Acl>,
    pub metadata: Vec<MetadataPair>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BucketRecord {
    pub object_id: u64,
    pub update_id: u64,
    pub volume_id: u64,
    pub owner: String,
    pub created_ms: u64,
    pub modified_ms: u64,
    pub layout: BucketLayout,
    /// Stored and reported; object versions are not kept yet (an overwrite replaces).
    pub versioning: bool,
    pub replication: Replication,
    /// Bound on the bytes (replicated) of its keys.
    pub quota_bytes: u64,
    /// Bound on its number of keys.
    pub quota_namespace: u64,
    pub acls: Vec<Acl>,
    pub metadata: Vec<MetadataPair>,
    /// A delete is in progress: leaders refuse new key writes (meta group only).
    pub deleting: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct KeyRecord {
    pub object_id: u64,
    /// Log index of the last change.
    pub update_id: u64,
    pub created_ms: u64,
    pub modified_ms: u64,
    pub data_size: u64,
    pub replication: Replication,
    pub blocks: Vec<BlockLocation>,
    pub metadata: Vec<MetadataPair>,
    pub acls: Vec<Acl>,
}

/// A key being written: its pre-allocated blocks and when it expires if never committed.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct OpenKeyRecord {
    /// Also the open session's id: the client names it in `AllocateBlock` and `CommitKey`.
    pub object_id: u64,
    pub bucket_id: u64,
    pub key: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub replication: Replication,
    pub blocks: Vec<BlockLocation>,
    pub metadata: Vec<MetadataPair>,
}

/// A multipart upload in progress (S3's), on the shard of its key: what the key gets when the
/// upload completes.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct UploadRecord {
    pub created_ms: u64,
    pub replication: Replication,
    pub metadata: Vec<MetadataPair>,
}

/// One part of a multipart upload: its own record (a part commit writes only it).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct PartRecord {
    pub etag: String,
    pub size: u64,
    pub modified_ms: u64,
    pub blocks: Vec<BlockLocation>,
    /// The part's additional checksum as its writer gave it (the S3 gateway's
    /// `ALGORITHM:base64`), kept for the completion that combines them; empty for none. Added
    /// in snapshot version 11 (a version 10 part has none).
    pub checksum: String,
}

/// Blocks no key references any more, queued for the SCM to delete.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct DeletedBlocksRecord {
    pub object_id: u64,
    pub update_id: u64,
    pub blocks: Vec<BlockLocation>,
}
