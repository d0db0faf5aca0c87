//! The Raft network of a single-node deployment: there are no peers to reach.
//!
//! Every group here has one member, so openraft never calls these (a one-member group elects
//! itself and commits alone). If it ever did (a membership naming another node), the answer is
//! "unreachable" with the reason, and openraft backs off. The Cap'n Proto transport between OM
//! nodes (schema/capnp/raft.capnp) replaces this with the 3-node cluster.

use std::future::Future;

use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, RaftNetworkFactory, RaftNetworkV2};

use crate::raft::state_machine::Snapshot;
use crate::raft::types::{TypeConfig, Vote};

#[derive(Debug, Clone, Copy, Default)]
pub struct NoPeers;

#[derive(Debug)]
pub struct NoPeer {
    target: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("node {0} is not reachable: this OM runs without a Raft transport (single node)")]
struct NoTransport(u64);

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeer;
    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> NoPeer {
        NoPeer { target }
    }
}

impl NoPeer {
    fn unreachable(&self) -> Unreachable<TypeConfig> {
        Unreachable::new(&NoTransport(self.target))
    }
}

impl RaftNetworkV2<TypeConfig> for NoPeer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(&mut self, _rpc: AppendEntriesRequest<TypeConfig>, _option: RPCOption) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn vote(&mut self, _rpc: VoteRequest<TypeConfig>, _option: RPCOption) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn full_snapshot(
        &mut self, _vote: Vote, _snapshot: Snapshot, _cancel: impl Future<Output = ReplicationClosed> + 'static, _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(self.unreachable()))
    }
}
