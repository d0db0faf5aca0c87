//! Every bound of the WAL in one place, with compile-time checks on how they relate.

/// Bytes of a record header: crc32 (4) + kind (1) + reserved (3) + payload length (4) +
/// batch offset (4) + log index (8) + term (8).
pub const HEADER_BYTES: usize = 32;

/// Records start on multiples of this within a batch, so a recovery scan for "is there any valid
/// record after this bad spot" only has to test one candidate position in eight.
pub const RECORD_ALIGN_BYTES: usize = 8;

/// The smallest sector we write in. Batches start on sector boundaries (see the crate docs); the
/// storage may ask for more (O_DIRECT on a 4 KiB-sector device), never less.
pub const SECTOR_BYTES_MIN: u64 = 512;

/// Default size of a segment file. Pre-zeroing one costs tens of milliseconds on this host
/// class, paid once per segment; 64 MiB holds ~250k 200-byte entries.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;

/// Default largest payload of one record. A Raft entry bigger than this must be split by the
/// caller; the bound keeps a corrupt length field from ever causing a large read.
pub const PAYLOAD_BYTES_MAX_DEFAULT: u32 = 4 << 20;

/// Magic at the start of every segment header's payload.
pub const SEGMENT_MAGIC: [u8; 8] = *b"STRATOSW";

/// On-disk format version; bump on any change to the layout in the crate docs.
pub const FORMAT_VERSION: u32 = 1;

/// A vote blob is small (Raft's vote is a term and a node id); bound it anyway.
pub const VOTE_BYTES_MAX: usize = 4096;

/// Chunk in which a new segment is zero-filled.
pub const ZERO_FILL_CHUNK_BYTES: usize = 1 << 20;

/// Segment file name: 20 decimal digits of the segment sequence number, then this suffix.
pub const SEGMENT_SUFFIX: &str = ".wal";

const _: () = assert!(HEADER_BYTES % RECORD_ALIGN_BYTES == 0);
const _: () = assert!(SECTOR_BYTES_MIN as usize % RECORD_ALIGN_BYTES == 0);
const _: () = assert!(SEGMENT_BYTES_DEFAULT >= 4 * (PAYLOAD_BYTES_MAX_DEFAULT as u64 + 8192));
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= u32::MAX as u64, "batch offsets are u32");

/// The most bytes [`crate::Wal::read_entries`] reads from disk in one request: consecutive
/// entries of a segment are read together (one request instead of one per entry, which made a
/// restarted node's log replay take seconds per 10k entries), in spans up to this size.
pub const READ_SPAN_BYTES: usize = 1 << 20;
