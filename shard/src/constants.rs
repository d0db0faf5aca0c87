//! Every bound of the namespace, checked at the edge of `apply` (and, later, at the RPC edge).

/// Volume and bucket names: 3..=63 bytes (S3 and Ozone rules).
pub const RESOURCE_NAME_BYTES_MIN: usize = 3;
pub const RESOURCE_NAME_BYTES_MAX: usize = 63;
/// Key names: 1..=1024 bytes of UTF-8 (S3's limit).
pub const KEY_NAME_BYTES_MAX: usize = 1024;
/// User and group names.
pub const USER_NAME_BYTES_MAX: usize = 256;
/// User metadata per volume, bucket or key.
pub const METADATA_PAIRS_MAX: usize = 64;
pub const METADATA_KEY_BYTES_MAX: usize = 128;
pub const METADATA_VALUE_BYTES_MAX: usize = 2048;
/// ACL entries per volume, bucket or key.
pub const ACLS_MAX: usize = 32;
/// Blocks of one key: 65,536 blocks of 256 MB is 16 TiB, beyond S3's 5 TiB object limit.
pub const BLOCKS_PER_KEY_MAX: usize = 65_536;
/// Keys in one `DeleteKeys` command.
pub const KEYS_PER_DELETE_MAX: usize = 10_000;
/// Open keys expired by one `ExpireOpenKeys` command (bounds the size of one apply).
pub const EXPIRE_BATCH_MAX: u32 = 10_000;
/// Entries returned by one list call.
pub const LIST_LIMIT_MAX: usize = 10_000;
/// Outcomes remembered per client for retries. A client keeps fewer requests than this in
/// flight; a retry older than the window is answered `RetryTooOld`, never applied twice.
pub const RETRY_WINDOW_PER_CLIENT: usize = 256;
/// Sessions idle for longer than this (in command time) are dropped by `ExpireSessions`.
pub const SESSION_IDLE_MS_MAX: u64 = 10 * 60 * 1000;
/// How long a destination shard remembers the outcome of a cross-shard rename's second step
/// (`RenameIn`), so that a re-drive after a crash gets the same answer. A source shard re-drives
/// an unfinished rename within seconds of electing a leader; a week covers any outage.
pub const RENAME_IN_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;
/// Objects one command may create (object ids are `log_index << 8 | n`).
pub const OBJECTS_PER_COMMAND_MAX: u64 = 256;

const _: () = assert!(OBJECTS_PER_COMMAND_MAX == 1 << 8);
const _: () = assert!(KEY_NAME_BYTES_MAX <= u16::MAX as usize);
