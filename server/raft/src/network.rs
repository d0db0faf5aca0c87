//! openraft's network for one group: every RPC becomes one message on this executor's
//! [`Transport`], which batches the messages of all the executor's groups per peer.
//!
//! Errors (a peer that cannot be dialled, a broken connection, a deadline passed, a reply that
//! does not decode) are reported as `Unreachable`, so openraft backs off before the next try.
//! A single-node deployment has no peers and never calls these.

use std::future::Future;
use std::pin::pin;
use std::rc::Rc;

use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, RaftNetworkFactory, RaftNetworkV2};

use crate::codec;
use crate::state_machine::{Snapshot, SnapshotFile, snapshot_id};
use crate::transport::{Out, PeerAddr, SNAPSHOT_CHUNK_BYTES, Transport};
use crate::types::{TypeConfig, Vote};

/// The network factory of group `group`.
#[derive(Debug, Clone)]
pub struct Network {
    pub transport: Rc<Transport>,
    pub group: u32,
}

#[derive(Debug)]
pub struct Peer {
    transport: Rc<Transport>,
    group: u32,
    target: u64,
    raft_addr: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

fn unreachable(why: String) -> Unreachable<TypeConfig> {
    Unreachable::new(&TransportError(why))
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;
    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer { transport: self.transport.clone(), group: self.group, target, raft_addr: PeerAddr::parse(&node.addr).raft }
    }
}

impl Peer {
    /// One message and its answer, within `deadline`.
    async fn call(&self, out: Out, deadline: std::time::Duration) -> Result<Vec<u8>, String> {
        let call = self.transport.call(self.target, &self.raft_addr, self.group, out);
        match glommio::timer::timeout(deadline, async { Ok(call.await) }).await {
            Ok(r) => r,
            Err(_) => Err(format!("node {} at {} did not answer within {deadline:?}", self.target, self.raft_addr)),
        }
    }

    async fn rpc<T>(&self, out: Out, option: &RPCOption, decode: impl Fn(&[u8]) -> Result<T, String>) -> Result<T, RPCError<TypeConfig>> {
        let bytes = self.call(out, option.hard_ttl()).await.map_err(|e| RPCError::Unreachable(unreachable(e)))?;
        decode(&bytes).map_err(|e| RPCError::Unreachable(unreachable(format!("node {} sent a reply that does not decode: {e}", self.target))))
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = SnapshotFile;

    async fn append_entries(&mut self, rpc: AppendEntriesRequest<TypeConfig>, option: RPCOption) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(Out::Append(codec::encode_append(&rpc)), &option, codec::decode_append_reply).await
    }

    async fn vote(&mut self, rpc: VoteRequest<TypeConfig>, option: RPCOption) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(Out::Vote(codec::encode_vote_request(&rpc)), &option, codec::decode_vote_reply).await
    }

    async fn pre_vote(&mut self, rpc: VoteRequest<TypeConfig>, option: RPCOption) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(Out::PreVote(codec::encode_vote_request(&rpc)), &option, codec::decode_vote_reply).await
    }

    async fn transfer_leader(&mut self, req: TransferLeaderRequest<TypeConfig>, option: RPCOption) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(Out::Transfer(codec::encode_transfer(&req)), &option, codec::decode_transfer_reply).await
    }

    /// Sends the snapshot file (meta and image, both crc-checked) in chunks of
    /// [`SNAPSHOT_CHUNK_BYTES`], one at a time, each read from the file when it is sent (by the
    /// blocking-thread pool): the snapshot is never in memory whole. The last chunk's answer is
    /// the peer's vote.
    async fn full_snapshot(
        &mut self, vote: Vote, snapshot: Snapshot, cancel: impl Future<Output = ReplicationClosed> + 'static, option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let file = snapshot.snapshot;
        let id = format!("{}-{}", snapshot_id(snapshot.meta.last_log_id), rand::random::<u32>());
        let vote_bytes = codec::encode_vote(&vote);
        let mut cancel = pin!(cancel);
        let mut offset = 0u64;
        loop {
            if let Some(closed) = futures_lite::future::poll_once(cancel.as_mut()).await {
                return Err(StreamingError::Closed(closed));
            }
            let end = (offset + SNAPSHOT_CHUNK_BYTES as u64).min(file.len);
            let done = end == file.len;
            let f = file.file.clone();
            let data = glommio::executor()
                .spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let mut data = vec![0u8; (end - offset) as usize];
                    f.read_exact_at(&mut data, offset).map(|()| data)
                })
                .await
                .map_err(|e| StreamingError::Unreachable(unreachable(format!("reading the snapshot at offset {offset} to send it: {e}"))))?;
            let chunk = Out::Chunk { vote: vote_bytes.clone(), id: id.clone(), offset, data, done };
            // A chunk may wait for the peer to write the whole snapshot: a generous deadline.
            let deadline = option.hard_ttl().max(std::time::Duration::from_secs(30));
            let answer = self.call(chunk, deadline).await.map_err(|e| StreamingError::Unreachable(unreachable(e)))?;
            if done {
                let mut r = codec::Reader(&answer);
                let v = r.take(17).and_then(codec::decode_vote).map_err(|e| StreamingError::Unreachable(unreachable(format!("node {}: snapshot reply: {e}", self.target))))?;
                return Ok(SnapshotResponse::new(v));
            }
            offset = end;
        }
    }
}
