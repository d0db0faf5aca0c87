//! The Raft transport, receiving side: a `RaftTransport` capability per connection, served by
//! the executor that owns the connection's groups (the node's Raft listener hands each
//! connection to the executor its hello names). The messages of one call are handled
//! concurrently: they belong to different groups, and openraft sends at most one request per
//! group and target at a time. The call is answered once all of them are done, which is why
//! the sender keeps messages that may wait on the cluster (`readIndex`, `forward`, snapshot
//! chunks) on a connection apart from openraft's own (`Lane` in `raft/transport.rs`).
//!
//! Besides openraft's own messages, two serve the OM's requests on any node:
//! - `readIndex`: the leader confirms its leadership with a quorum and returns its commit index;
//!   a follower that applied that index serves a linearizable read locally (openraft's follower
//!   read).
//! - `forward`: a write that reached a follower, proposed by the leader. It is never forwarded
//!   again: if the receiver is not the leader either, the answer says so.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use capnp::capability::Rc as CapRc;
use rkyv::rancor;
use rkyv::util::AlignedVec;
use stratos_raft::codec;
use stratos_raft::state_machine::{Snapshot, SnapshotFile};
use stratos_raft::transport::Out;
use stratos_raft::types::Proposal;
use stratos_schema::om_capnp::Status;
use stratos_schema::raft_capnp::{group_message, raft_transport};
use stratos_shard::Reply;

use crate::convert::WireError;
use crate::core::{Core, WriteReply};

/// A snapshot received in chunks is refused beyond this size (a bound on memory).
pub const SNAPSHOT_BYTES_MAX: usize = 1 << 36;

/// The bytes of a forwarded write's answer: the leader's meta index, then the outcomes (rkyv),
/// each error as (status, message, leader hint).
type WireOutcomes = Vec<Result<Reply, (u16, String, String)>>;

pub fn encode_forward_reply(reply: &WriteReply) -> Vec<u8> {
    let outcomes: WireOutcomes = reply.0.iter().map(|o| o.clone().map_err(|e| (e.status as u16, e.message, e.leader_hint))).collect();
    let mut out = reply.1.to_le_bytes().to_vec();
    out.extend_from_slice(&rkyv::to_bytes::<rancor::Error>(&outcomes).expect("serializing into memory cannot fail"));
    out
}

pub fn decode_forward_reply(bytes: &[u8]) -> Result<WriteReply, String> {
    if bytes.len() < 8 {
        return Err("a forwarded write's answer of fewer than 8 bytes".into());
    }
    let meta = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len() - 8);
    aligned.extend_from_slice(&bytes[8..]);
    let outcomes = rkyv::from_bytes::<WireOutcomes, rancor::BoxedError>(&aligned).map_err(|e| format!("a forwarded write's answer does not decode: {e}"))?;
    let outcomes = outcomes
        .into_iter()
        .map(|o| {
            o.map_err(|(status, message, leader_hint)| WireError { status: Status::try_from(status).unwrap_or(Status::Internal), message, leader_hint })
        })
        .collect();
    Ok((outcomes, meta))
}


fn parse(m: group_message::Reader<'_>) -> Result<Out, String> {
    use group_message::Which;
    let e = |e: capnp::Error| e.to_string();
    Ok(match m.which().map_err(|e| format!("an unknown message kind {}", e.0))? {
        Which::Vote(b) => Out::Vote(b.map_err(e)?.to_vec()),
        Which::PreVote(b) => Out::PreVote(b.map_err(e)?.to_vec()),
        Which::AppendEntries(b) => Out::Append(b.map_err(e)?.to_vec()),
        Which::TransferLeader(b) => Out::Transfer(b.map_err(e)?.to_vec()),
        Which::ReadIndex(()) => Out::ReadIndex,
        Which::Forward(f) => {
            let f = f.map_err(e)?;
            Out::Forward { proposal: f.get_proposal().map_err(e)?.to_vec(), fill: f.get_fill(), min_meta: f.get_min_meta() }
        }
        Which::InstallSnapshot(c) => {
            let c = c.map_err(e)?;
            let id = c.get_snapshot_id().map_err(e)?.to_str().map_err(|_| "a snapshot id that is not UTF-8")?.to_string();
            Out::Chunk { vote: c.get_vote().map_err(e)?.to_vec(), id, offset: c.get_offset(), data: c.get_data().map_err(e)?.to_vec(), done: c.get_done() }
        }
    })
}

/// One Raft connection's server.
#[derive(Debug)]
pub struct RaftServer {
    pub core: Rc<Core>,
    /// Snapshots being received, per group: (snapshot id, the file they go to, bytes so far).
    snapshots: RefCell<HashMap<u32, (String, std::fs::File, u64)>>,
}

impl RaftServer {
    pub fn new(core: Rc<Core>) -> Self {
        Self { core, snapshots: RefCell::default() }
    }

    async fn handle(&self, group: u32, m: Result<Out, String>) -> Result<Vec<u8>, String> {
        let m = m?;
        let Some(g) = self.core.groups.get(&group).cloned() else {
            return Err(format!("group {group} is not on executor {} of node {} (do all nodes run the same executor count?)", self.core.index, self.core.transport.me));
        };
        let raft = &g.raft;
        let s = |e: &dyn std::fmt::Display| e.to_string();
        match m {
            Out::Append(b) => raft.append_entries(codec::decode_append(&b)?).await.map(|r| codec::encode_append_reply(&r)).map_err(|e| s(&e)),
            Out::Vote(b) => raft.vote(codec::decode_vote_request(&b)?).await.map(|r| codec::encode_vote_reply(&r)).map_err(|e| s(&e)),
            Out::PreVote(b) => raft.pre_vote(codec::decode_vote_request(&b)?).await.map(|r| codec::encode_vote_reply(&r)).map_err(|e| s(&e)),
            Out::Transfer(b) => raft.handle_transfer_leader(codec::decode_transfer(&b)?).await.map(|r| codec::encode_transfer_reply(&r)).map_err(|e| s(&e)),
            Out::ReadIndex => match raft.get_read_linearizer(openraft::ReadPolicy::ReadIndex).await {
                Ok(l) => Ok(l.read_log_id().index().to_le_bytes().to_vec()),
                Err(e) => Err(format!("node {} cannot give group {group}'s read index: {e}", self.core.transport.me)),
            },
            Out::Forward { proposal, fill, min_meta } => {
                let commands = Proposal::from_bytes(&proposal).commands().map_err(|e| format!("a forwarded write does not decode: {e}"))?;
                if commands.len() > stratos_raft::types::COMMANDS_PER_ENTRY_MAX {
                    return Err(format!("a forwarded write of {} commands", commands.len()));
                }
                Ok(encode_forward_reply(&self.core.local_write(group, commands, fill, min_meta).await))
            }
            Out::Chunk { vote, id, offset, data, done } => {
                let vote = codec::decode_vote(&vote)?;
                // Chunks go to `<group>/snapshot.recv` as they come (never the whole snapshot
                // in memory); the install loads the state from that file and renames it.
                let path = g.dir().join("snapshot.recv");
                let file = {
                    let mut snaps = self.snapshots.borrow_mut();
                    if offset == 0 {
                        let f = std::fs::File::create(&path).map_err(|e| format!("group {group}: creating {}: {e}", path.display()))?;
                        snaps.insert(group, (id.clone(), f, 0));
                    }
                    let Some((have, f, written)) = snaps.get_mut(&group) else {
                        return Err(format!("group {group}: a snapshot chunk at offset {offset} with no snapshot started"));
                    };
                    if *have != id || *written != offset {
                        return Err(format!("group {group}: snapshot chunk {id}@{offset} does not follow {have}@{written}"));
                    }
                    if *written + data.len() as u64 > SNAPSHOT_BYTES_MAX as u64 {
                        snaps.remove(&group);
                        return Err(format!("group {group}: a snapshot larger than {SNAPSHOT_BYTES_MAX} bytes"));
                    }
                    use std::io::Write;
                    if let Err(e) = f.write_all(&data) {
                        snaps.remove(&group);
                        return Err(format!("group {group}: writing {}: {e}", path.display()));
                    }
                    *written += data.len() as u64;
                    if !done {
                        return Ok(Vec::new());
                    }
                    snaps.remove(&group).map(|(_, f, len)| (f, len)).expect("present")
                };
                drop(file);
                let received = SnapshotFile::open(&path).map_err(|e| format!("group {group}: reopening {}: {e}", path.display()))?;
                let received = SnapshotFile { received_at: Some(path), ..received };
                let meta = received.meta().map_err(|e| format!("group {group}: received snapshot {id}: {e}"))?;
                let snapshot = Snapshot { meta: openraft::SnapshotMeta { last_log_id: meta.last_log_id, last_membership: meta.last_membership }, snapshot: received };
                raft.install_full_snapshot(vote, snapshot).await.map(|r| codec::encode_vote(&r.vote)).map_err(|e| s(&e))
            }
        }
    }
}

impl raft_transport::Server for RaftServer {
    async fn send(self: CapRc<Self>, params: raft_transport::SendParams, mut results: raft_transport::SendResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let from = p.get_from_node();
        if stratos_raft::faults::cut(self.core.transport.me, from) {
            return Err(capnp::Error::disconnected(format!("node {from} is cut off from node {} ({} fault injection)", self.core.transport.me, stratos_raft::faults::ENV)));
        }
        let list = p.get_messages()?;
        let incoming: Vec<(u32, Result<Out, String>)> = list.iter().map(|m| (m.get_group_id(), parse(m))).collect();
        let answers = futures_util::future::join_all(incoming.into_iter().map(|(g, m)| self.handle(g, m))).await;
        let mut replies = results.get().init_replies(answers.len() as u32);
        for (i, a) in answers.iter().enumerate() {
            let mut r = replies.reborrow().get(i as u32);
            match a {
                Ok(b) => r.set_ok(b),
                Err(e) => r.set_error(e),
            }
        }
        Ok(())
    }
}

/// Serves Raft traffic on an accepted connection whose hello was read (and accepted) by core
/// 0. In a secured cluster the connection turns into TLS here, on the executor that serves
/// it: the peer must present an OM certificate of the cluster's CA, and its hello again inside
/// TLS, naming this executor (the plain hello only chose where to hand the connection).
pub fn serve(core: Rc<Core>, stream: glommio::net::TcpStream) {
    let Some(tls) = core.tls.clone() else {
        let client: raft_transport::Client = capnp_rpc::new_client(RaftServer::new(core));
        return stratos_common::rpc::serve_connection(stream, client.client);
    };
    glommio::spawn_local(async move {
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().map_or_else(|_| "?".into(), |a| a.to_string());
        let what = format!("{} core {} (Raft)", stratos_common::process::who(), core.index);
        let Some((mut stream, id)) = stratos_common::rpc::accept_tls(stratos_common::rpc::under_tls(stream), tls.server, &what, &peer).await else { return };
        if id.role != stratos_common::tls::Role::Om {
            return eprintln!("{what}: Raft connection from {peer} refused: the certificate of {} {} is not an OM's", id.role.as_str(), id.name);
        }
        let hello = glommio::timer::timeout(Duration::from_secs(5), async { Ok(stratos_raft::transport::read_hello(&mut stream).await) }).await;
        let refusal = match hello {
            Ok(Ok(h)) if h.core as usize != core.index => Some(format!("its hello inside TLS names executor {}, and the connection was handed to executor {}", h.core, core.index)),
            Ok(Ok(h)) => h.refusal(core.cores as u32, core.shards, true),
            // `admin add`'s check of a peer hangs up here, having proved it could get this far.
            Ok(Err(_)) => return,
            Err(_) => Some("no hello inside TLS within 5 s".into()),
        };
        if let Some(why) = refusal {
            return eprintln!("{what}: Raft connection from {peer} ({}) refused: {why}", id.name);
        }
        let client: raft_transport::Client = capnp_rpc::new_client(RaftServer::new(core));
        stratos_common::rpc::serve_stream(stream, client.client);
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_replies_round_trip_and_garbage_is_an_error() {
        let reply: WriteReply = (vec![Ok(Reply::Created { object_id: 7 }), Err(WireError { status: Status::NotLeader, message: "m".into(), leader_hint: "h:1".into() })], 42);
        let back = decode_forward_reply(&encode_forward_reply(&reply)).expect("decodes");
        assert_eq!(back.1, 42);
        assert_eq!(back.0[0].as_ref().ok(), Some(&Reply::Created { object_id: 7 }));
        let e = back.0[1].as_ref().expect_err("an error");
        assert_eq!((e.status, e.message.as_str(), e.leader_hint.as_str()), (Status::NotLeader, "m", "h:1"));
        assert!(decode_forward_reply(&[1, 2, 3]).is_err());
        assert!(decode_forward_reply(&[0; 20]).is_err());
    }
}
