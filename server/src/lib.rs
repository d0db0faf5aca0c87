//! stratos-server: the roles of the `stratos` binary (OM, SCM, datanode) and what wires them:
//! glommio executors, Cap'n Proto RPC and openraft. It is the only crate that knows all three.
//!
//! So far: [`raft::runtime`], openraft's async runtime on glommio.

pub mod raft;
