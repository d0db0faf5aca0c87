//! stratos-server: the roles of the `stratos` binary (OM, SCM, datanode) and what wires them:
//! glommio executors, Cap'n Proto RPC and openraft. It is the only crate that knows all three.
//!
//! - [`raft`]: openraft on glommio, its log on stratos-wal, its state machine a stratos-shard.
//! - [`om`]: the OM node (executors, groups, the OzoneManager service, metrics).

pub mod om;
pub mod raft;
