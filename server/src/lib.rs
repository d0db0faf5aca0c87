//! stratos-server: the roles of the `stratos` binary (OM, SCM, datanode) and what wires them:
//! glommio executors, Cap'n Proto RPC and openraft. It is the only crate that knows all three.
//!
//! - [`raft`]: openraft on glommio, its log on stratos-wal, its state machine a stratos-shard.
//! - [`om`]: the OM node (executors, groups, the OzoneManager service, metrics).
//! - [`scm`]: the Storage Container Manager: datanodes, pipelines, containers, block allocation,
//!   block-token secret keys, deleted blocks; persisted with stratos-wal.
//! - [`datanode`]: block data in container directories, checked with block tokens.
//! - [`token`]: block tokens (HMAC-SHA256).

pub mod datanode;
pub mod om;
pub mod raft;
pub mod rpc;
pub mod scm;
pub mod token;
