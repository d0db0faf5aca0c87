//! stratos-shard: the OM namespace state machine.
//!
//! Volumes, buckets, keys, open keys, the deleted-blocks queue and the per-user volume list,
//! as rkyv-archived records in an ordered memtable ([`memtable`]); reads hand out archived
//! views without deserializing.
//!
//! Its one rule: [`ShardState::apply`] is a deterministic function of the state, the log index
//! and the command. This crate does no I/O, reads no clock and draws no random numbers: time,
//! the caller and pre-allocated blocks come in the [`Command`]; object ids are the group's
//! id and a sequence the state counts (unique across the cluster). Replicas that apply the same log reach the same state, byte for byte
//! ([`ShardState::state_hash`]). Business failures are [`OmError`] values, never panics;
//! panics are reserved for broken invariants of this crate itself.

mod apply_keys;
mod apply_meta;
mod apply_quota;
mod apply_rename;
mod apply_upload;
pub mod command;
pub mod constants;
mod invariants;
pub mod memtable;
pub mod names;
pub mod outcome;
pub mod records;
mod retry_order;
mod slab;
mod snapshot;
mod state;
pub mod table;

pub use command::{Allowance, BucketRef, Condition, Grant, Command, CommandContext, DecodeError, Elsewhere, Op, Principal};
pub use apply_meta::{S3_SECRET_CHARS, edited_acls};
pub use apply_upload::ListedUpload;
pub use outcome::{OmError, Outcome, Reply};
pub use records::{Acl, AclKind, BlockLocation, MetadataPair, QUOTA_UNLIMITED, Replication, rights};
pub use snapshot::{FRAME_ENTRIES as SNAPSHOT_FRAME_ENTRIES, VERSION as SNAPSHOT_FORMAT_VERSION, SnapshotBuild, SnapshotError};
pub use state::{acls_allow_native, object_id, object_id_parts, RenameArrival, RenameIntent, BucketInfo, BucketUsage, KeyInfo, Page, ShardState, ShardStats, VolumeInfo, VolumeUsage};
