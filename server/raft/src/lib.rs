//! stratos-raft: openraft on glommio, its log on stratos-wal, its state machine a stratos-shard.
//!
//! - [`runtime`]: openraft's `AsyncRuntime` on glommio (it passes openraft's runtime
//!   conformance suite), so each group lives on its shard's executor with no `Send` bounds.
//! - [`types`], [`codec`]: the type configuration and the encoding of entries and snapshots.
//! - [`log_store`]: the Raft log and vote on a stratos-wal (one ordered, fsynced stream).
//! - [`state_machine`]: a stratos-shard applied in log order; snapshots as rkyv images.
//! - [`transport`], [`network`]: Raft traffic between nodes over Cap'n Proto, one connection
//!   per pair of executors carrying many groups' messages, with two lanes per peer; forwarded
//!   writes and read indexes ride on it too.
//! - [`group`]: one Raft group (its Raft, log, state machine and the batching proposer).
//! - [`local_oneshot`]: a one-shot channel for one executor (proposals' outcomes, openraft's),
//!   from `stratos-common`, which the S3 gateway shares.
//! - [`faults`]: fault injection for partition tests (`STRATOS_FAULTS`).
//!
//! It knows nothing of the OM's request path: the OM decides what to propose and where.

pub mod codec;
pub mod faults;
pub mod group;
pub use stratos_common::local_oneshot;
pub mod log_store;
pub mod network;
pub mod runtime;
pub mod state_machine;
pub mod transport;
pub mod types;
