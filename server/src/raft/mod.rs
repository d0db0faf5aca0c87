//! Raft wiring: openraft on glommio, its log on stratos-wal, its state machine a stratos-shard.

pub mod codec;
pub mod faults;
pub mod group;
pub mod log_store;
pub mod network;
pub mod runtime;
pub mod state_machine;
pub mod transport;
pub mod types;
