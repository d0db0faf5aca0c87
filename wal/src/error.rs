//! One error enum per operation (STYLE.md): opening (recovery), appending, making durable, reading.

use std::io;

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{op} {file}: {source}")]
    Io { op: &'static str, file: String, source: io::Error },
    /// A record that must be valid is not, and later durable data proves it was written whole:
    /// the log refuses to open rather than silently dropping acknowledged entries.
    #[error("corrupt write-ahead log: {file} at offset {offset}: {reason}")]
    Corrupt { file: String, offset: u64, reason: String },
    #[error("invalid WAL configuration: {0}")]
    Config(String),
    #[error("making the recovered log durable failed: {0}")]
    Flush(#[from] FlushError),
}

/// Why a record was not appended. Nothing was appended when this is returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AppendError {
    #[error("the log is poisoned by an earlier I/O failure: {0}")]
    Poisoned(String),
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: u32 },
    #[error("entry {got} does not follow the last entry: expected log index {expected}")]
    NonContiguous { expected: u64, got: u64 },
    #[error("cannot truncate from log index {from}: the log holds [{first}, {next})")]
    TruncateOutOfRange { from: u64, first: u64, next: u64 },
    #[error("cannot purge up to {up_to}: already purged up to {purged}")]
    PurgeBackwards { up_to: u64, purged: u64 },
    #[error("cannot mark entry {log_index} committed: the log ends before it (next index {next})")]
    CommitBeyondEnd { log_index: u64, next: u64 },
}

/// Why records are not known durable. After this the log is poisoned: an fsync failure is never
/// retried, because the kernel may have dropped the dirty pages it failed to write (fsyncgate).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FlushError {
    #[error("the log is poisoned by an earlier I/O failure: {0}")]
    Poisoned(String),
}

/// Why an entry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("log index {log_index} is not in the log [{first}, {next})")]
    OutOfRange { log_index: u64, first: u64, next: u64 },
    #[error("reading {file} at offset {offset}: {source}")]
    Io { file: String, offset: u64, source: io::Error },
    #[error("corrupt record in {file} at offset {offset}: {reason}")]
    Corrupt { file: String, offset: u64, reason: String },
}
