//! What `apply` returns: business outcomes as data, computed identically on every replica.
//! They are mapped to wire status codes in one function (in the server, with the schema).

use rkyv::{Archive, Deserialize, Serialize};

use crate::records::{BlockLocation, KeyRecord};

/// A business failure. Never a panic: bad input and missing objects are ordinary outcomes.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[rkyv(derive(Debug))]
pub enum OmError {
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName { what: String, name: String, reason: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("volume {0} not found")]
    VolumeNotFound(String),
    #[error("volume {0} already exists")]
    VolumeExists(String),
    #[error("volume {0} is not empty: it has {1} bucket(s)")]
    VolumeNotEmpty(String, u64),
    #[error("bucket {0} not found")]
    BucketNotFound(String),
    #[error("bucket {0} already exists")]
    BucketExists(String),
    #[error("bucket {0} is not empty: {1} key(s), {2} open key(s)")]
    BucketNotEmpty(String, u64, u64),
    #[error("key {0} not found")]
    KeyNotFound(String),
    #[error("key {0} already exists")]
    KeyExists(String),
    #[error("no open key {0} with session {1}")]
    OpenKeyNotFound(String, u64),
    #[error("{what} quota exceeded: {used} used + {adding} > {quota}")]
    QuotaExceeded { what: String, used: u64, adding: u64, quota: u64 },
    #[error("permission denied: {user} may not {action}")]
    PermissionDenied { user: String, action: String },
    #[error("key {0} is being renamed; retry in a moment")]
    KeyBusy(String),
    #[error("retry of request {request_id} from client {client_id} is older than the retry window; its outcome is unknown")]
    RetryTooOld { client_id: u64, request_id: u64 },
    /// A `CommitKeyAllowed` needs more of the quota of `scope` than this shard was allowed:
    /// the shard's usage would be `bytes` and `keys`, growing by `adding_*`. Nothing changed;
    /// the leader asks the meta group for more (OM-internal: never a client's answer).
    #[error("this shard's quota allowance for object {scope} is too small: {bytes} bytes and {keys} keys needed")]
    NeedsAllowance { scope: u64, bytes: u64, keys: u64, adding_bytes: u64, adding_keys: u64 },
    #[error("no S3 secret for {0}")]
    S3SecretNotFound(String),
    /// A conditional write whose condition did not hold of the key (`Condition`).
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("no multipart upload {0}")]
    NoSuchUpload(String),
    /// A multipart completion's part list is wrong; the message starts with S3's code
    /// (`InvalidPart`, `InvalidPartOrder`, `EntityTooSmall`).
    #[error("{0}")]
    InvalidPart(String),
}

/// A successful outcome.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum Reply {
    Done,
    Created { object_id: u64 },
    KeyOpened { open_id: u64, blocks: Vec<BlockLocation> },
    BlockAllocated { block: BlockLocation },
    KeyCommitted { object_id: u64, replaced: bool },
    KeysDeleted { deleted: u64, missing: Vec<String> },
    Expired { open_keys: u64, sessions: u64 },
    BucketMarked { bucket_id: u64 },
    BucketUsage { keys: u64, open_keys: u64 },
    RenameStarted { txn: u64, record: KeyRecord },
    /// A key shard's allowance after `ReleaseAllowance`.
    Allowance { allowance: crate::command::Allowance },
    /// The meta group's grant (`GrantQuota`) for `scope`, and the other shards' grants summed.
    Granted { scope: u64, allowance: crate::command::Allowance, others_bytes: u64, others_keys: u64 },
    /// An S3 access key and its secret (`GetS3Secret`).
    S3Secret { access_id: String, secret: String },
    /// A multipart upload began (`InitiateUpload`).
    UploadStarted { upload_id: String },
}

pub type Outcome = Result<Reply, OmError>;
