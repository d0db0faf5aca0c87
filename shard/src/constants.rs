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
/// 256: an S3 tag key (128 characters) under its metadata prefix fits.
pub const METADATA_KEY_BYTES_MAX: usize = 256;
pub const METADATA_VALUE_BYTES_MAX: usize = 2048;
/// ACL entries per volume, bucket or key.
pub const ACLS_MAX: usize = 32;
/// Blocks of one key: 65,536 blocks of 256 MB is 16 TiB, beyond S3's 5 TiB object limit.
pub const BLOCKS_PER_KEY_MAX: usize = 65_536;
/// Keys in one `DeleteKeys` command.
pub const KEYS_PER_DELETE_MAX: usize = 10_000;
/// Blocks in one deleted-blocks batch (one record of the queue the OM hands to the SCM, whole
/// batches at a time). A command that frees more (a `DeleteKeys` of large keys, an expiry of
/// many open keys) queues several batches: one batch over the SCM's `deleteBlocks` limit
/// (100,000) could never be handed over, and the shard's queue would stop behind it.
pub const DELETED_BATCH_BLOCKS_MAX: usize = 50_000;
/// Open keys expired by one `ExpireOpenKeys` command (bounds the size of one apply).
pub const EXPIRE_BATCH_MAX: u32 = 10_000;
/// Entries returned by one list call.
pub const LIST_LIMIT_MAX: usize = 10_000;
/// The retry window: a group remembers the outcome of each retryable command for this long in
/// command time (`ctx.time_ms`, replicated, so every replica forgets at the same log index), as
/// Ratis's retry cache does. A retry within the window gets the first outcome; a retry of a
/// request forgotten is answered `RetryTooOld` (its outcome is unknown), never applied twice.
/// The window was a count, each client's last 256 outcomes, and a client keeps more in flight
/// than that (`bench omkg -t 16 --batch 64`): retries after a leader kill failed.
pub const RETRY_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Outcomes remembered per client per group at most, so one client cannot fill the window of
/// all. Four times the most commands a group has in flight (its queue and its proposals:
/// `stratos_raft::group`, which checks this at compile time), so a client could only lose a
/// remembered outcome early by applying 98,304 newer commands in one group while it waits.
/// Beyond it, the client's oldest outcome (lowest request id) is forgotten.
pub const RETRY_OUTCOMES_PER_CLIENT_MAX: usize = 131_072;
/// Outcomes remembered per group at most, all clients together: the window's memory bound.
/// A remembered outcome costs ≈ 250-300 bytes (a 128-byte boxed outcome; its request id, log
/// index and time in its session's B-tree; 64-128 bytes of the log-order deque, whose capacity
/// doubles: see `retry_order.rs`), so this is ≈ 65-80 MB per group at worst. Beyond it, the oldest outcome in log order is forgotten before
/// its time: at 100,000 commands a second in one group the window is then 2.6 s, still longer
/// than a leader election (the time a retry waits).
pub const RETRY_OUTCOMES_MAX: usize = 262_144;
/// Sessions idle for longer than this (in command time) are dropped by `ExpireSessions`, with
/// what they knew of forgotten requests. Not shorter than the window: a session's outcomes are
/// all forgotten by then.
pub const SESSION_IDLE_MS_MAX: u64 = 10 * 60 * 1000;

const _: () = assert!(SESSION_IDLE_MS_MAX >= RETRY_WINDOW_MS);
const _: () = assert!(RETRY_OUTCOMES_PER_CLIENT_MAX <= RETRY_OUTCOMES_MAX);
/// How long a destination shard remembers the outcome of a cross-shard rename's second step
/// (`RenameIn`), so that a re-drive after a crash gets the same answer. A source shard re-drives
/// an unfinished rename within seconds of electing a leader; a week covers any outage.
pub const RENAME_IN_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;
/// Object ids are unique across the cluster: `group << 52 | seq`, the Raft group that created
/// the object (0 the meta group, 1..=[`SHARDS_MAX`] the key shards) in the top
/// [`GROUP_ID_BITS`] bits, and that group's object sequence number (1, 2, 3 ... in log order,
/// counted by the state and kept in its snapshots) in the low [`OBJECT_SEQ_BITS`]. An id never
/// repeats, is never 0, and ids of one group grow with its log. A key keeps the id its open key
/// was given (a cross-shard rename gives it an id of the destination's group).
///
/// Why a sequence and not the log index (Ozone's `txIndex << 8`): the shard index a command is
/// applied at takes 56 bits already (a group's 2^48 log entries × 256 commands per entry; see
/// `stratos_raft::types`), so the group would not fit beside it. A group creates at most one or
/// two objects per command, so 2^52 sequence numbers last 142 years at a million objects a
/// second, more than one core applies.
pub const GROUP_ID_BITS: u32 = 12;
pub const OBJECT_SEQ_BITS: u32 = 64 - GROUP_ID_BITS;
/// Raft groups a cluster may have: the meta group and up to 4,095 key shards (shards are one
/// per core of an OM host; 4,095 is far beyond any host).
pub const GROUPS_MAX: u32 = 1 << GROUP_ID_BITS;
pub const SHARDS_MAX: u32 = GROUPS_MAX - 1;
/// Sequence numbers a group hands out at most (1..=this).
pub const OBJECT_SEQ_MAX: u64 = (1 << OBJECT_SEQ_BITS) - 1;

const _: () = assert!(GROUP_ID_BITS + OBJECT_SEQ_BITS == 64);
const _: () = assert!(SHARDS_MAX + 1 == GROUPS_MAX, "group ids 0..GROUPS_MAX: the meta group and the key shards");
const _: () = assert!(KEY_NAME_BYTES_MAX <= u16::MAX as usize);

/// Parts of one multipart upload (S3's part numbers 1..=10000).
pub const PARTS_MAX: u32 = 10_000;
/// The smallest part but the last of a completed multipart upload (S3's 5 MiB).
pub const PART_BYTES_MIN: u64 = 5 << 20;
/// Upload ids are made by the OM: this many characters.
pub const UPLOAD_ID_BYTES_MAX: usize = 64;
