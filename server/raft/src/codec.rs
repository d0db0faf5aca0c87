//! Byte layouts of what openraft asks us to persist: entries (as WAL payloads), the vote, and
//! memberships (in entries and snapshot headers). All little-endian. The WAL frames each payload
//! with a crc and carries the entry's log index and term, so the payload holds only the rest:
//!
//! ```text
//! entry      = kind u8, then: 0 blank | 1 proposal bytes (rkyv Vec<Command>) | 2 membership
//! membership = configs u32, per config: voters u32, voter ids u64…; nodes u32, per node: id u64,
//!              address length u32, address bytes (UTF-8)
//! vote       = term u64 | voted_for u64 | committed u8
//! ```
//!
//! Raft messages between nodes (`schema/capnp/raft.capnp` carries them as `Data`):
//! ```text
//! log id?    = has u8 | term u64 | index u64
//! append     = vote | prev log id? | leader commit? | count u32, per entry: index u64 | term u64 |
//!              length u32 | entry
//! append ok  = 0 success | 1 partial, log id? | 2 conflict | 3 higher vote, vote
//! vote req   = vote | last log id? | leadership transfer u8
//! vote reply = vote | granted u8 | last log id?
//! transfer   = from vote | to node u64 | last log id?
//! transfer ok = 0 | 1 vote changed, expected vote, actual vote | 2 not flushed, log id?, log id?
//! ```
//! Decoders return an error naming what is wrong; they never panic on any input.

use std::collections::{BTreeMap, BTreeSet};

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, EntryPayload};

use crate::types::{Entry, LogId, Membership, Proposal, TypeConfig, Vote, log_id};

const KIND_BLANK: u8 = 0;
const KIND_PROPOSAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;
/// Bounds on a decoded membership (far above any real cluster; they cap allocation on bad bytes).
const CONFIGS_MAX: u32 = 4;
const NODES_MAX: u32 = 1024;
const ADDRESS_BYTES_MAX: u32 = 1024;

pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    out.clear();
    match &entry.payload {
        EntryPayload::Blank => out.push(KIND_BLANK),
        EntryPayload::Normal(p) => {
            out.push(KIND_PROPOSAL);
            out.extend_from_slice(p.bytes());
        }
        EntryPayload::Membership(m) => {
            out.push(KIND_MEMBERSHIP);
            encode_membership(m, out);
        }
    }
}

pub fn decode_entry(log_index: u64, term: u64, bytes: &[u8]) -> Result<Entry, String> {
    let (&kind, rest) = bytes.split_first().ok_or("empty entry payload")?;
    let payload = match kind {
        KIND_BLANK if rest.is_empty() => EntryPayload::Blank,
        KIND_PROPOSAL => EntryPayload::Normal(Proposal::from_bytes(rest)),
        KIND_MEMBERSHIP => {
            let mut r = Reader(rest);
            let m = decode_membership(&mut r)?;
            r.end()?;
            EntryPayload::Membership(m)
        }
        other => return Err(format!("entry kind {other} (or a blank entry with a body)")),
    };
    Ok(Entry { log_id: log_id(term, log_index), payload })
}

pub fn encode_membership(m: &Membership, out: &mut Vec<u8>) {
    let configs = m.get_joint_config();
    out.extend_from_slice(&(configs.len() as u32).to_le_bytes());
    for c in configs {
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        for id in c {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    let nodes: Vec<_> = m.nodes().collect();
    out.extend_from_slice(&(nodes.len() as u32).to_le_bytes());
    for (id, node) in nodes {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(node.addr.len() as u32).to_le_bytes());
        out.extend_from_slice(node.addr.as_bytes());
    }
}

pub fn decode_membership(r: &mut Reader<'_>) -> Result<Membership, String> {
    let n_configs = r.u32()?;
    if n_configs == 0 || n_configs > CONFIGS_MAX {
        return Err(format!("membership with {n_configs} configs"));
    }
    let mut configs = Vec::new();
    for _ in 0..n_configs {
        let n = r.u32()?;
        if n > NODES_MAX {
            return Err(format!("a config of {n} voters"));
        }
        let mut c = BTreeSet::new();
        for _ in 0..n {
            c.insert(r.u64()?);
        }
        configs.push(c);
    }
    let n_nodes = r.u32()?;
    if n_nodes > NODES_MAX {
        return Err(format!("membership of {n_nodes} nodes"));
    }
    let mut nodes = BTreeMap::new();
    for _ in 0..n_nodes {
        let id = r.u64()?;
        let len = r.u32()?;
        if len > ADDRESS_BYTES_MAX {
            return Err(format!("node address of {len} bytes"));
        }
        let addr = std::str::from_utf8(r.take(len as usize)?).map_err(|_| "node address is not UTF-8")?;
        nodes.insert(id, BasicNode { addr: addr.to_string() });
    }
    Membership::new(configs, nodes).map_err(|e| format!("invalid membership: {e}"))
}

pub fn encode_vote(v: &Vote) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.extend_from_slice(&v.leader_id.term.to_le_bytes());
    out.extend_from_slice(&v.leader_id.voted_for.to_le_bytes());
    out.push(u8::from(v.committed));
    out
}

pub fn decode_vote(bytes: &[u8]) -> Result<Vote, String> {
    let mut r = Reader(bytes);
    let (term, voted_for, committed) = (r.u64()?, r.u64()?, r.take(1)?[0]);
    r.end()?;
    match committed {
        0 => Ok(Vote::new(term, voted_for)),
        1 => Ok(Vote::new_committed(term, voted_for)),
        other => Err(format!("vote committed flag {other}")),
    }
}

/// Entries one append message carries at most when decoded (a cap on allocation).
const ENTRIES_PER_MESSAGE_MAX: u32 = 1 << 20;

fn put_log_id(out: &mut Vec<u8>, id: Option<&LogId>) {
    out.push(u8::from(id.is_some()));
    out.extend_from_slice(&id.map_or(0, |l| l.leader_id.term).to_le_bytes());
    out.extend_from_slice(&id.map_or(0, |l| l.index).to_le_bytes());
}

fn get_log_id(r: &mut Reader<'_>) -> Result<Option<LogId>, String> {
    let has = r.take(1)?[0];
    let (term, index) = (r.u64()?, r.u64()?);
    match has {
        0 => Ok(None),
        1 => Ok(Some(log_id(term, index))),
        other => Err(format!("log id flag {other}")),
    }
}

fn get_vote(r: &mut Reader<'_>) -> Result<Vote, String> {
    decode_vote(r.take(17)?)
}

fn get_bool(r: &mut Reader<'_>) -> Result<bool, String> {
    match r.take(1)?[0] {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(format!("boolean {other}")),
    }
}

pub fn encode_append(m: &AppendEntriesRequest<TypeConfig>) -> Vec<u8> {
    let mut out = encode_vote(&m.vote);
    put_log_id(&mut out, m.prev_log_id.as_ref());
    put_log_id(&mut out, m.leader_commit.as_ref());
    out.extend_from_slice(&(m.entries.len() as u32).to_le_bytes());
    let mut payload = Vec::new();
    for e in &m.entries {
        encode_entry(e, &mut payload);
        out.extend_from_slice(&e.log_id.index.to_le_bytes());
        out.extend_from_slice(&e.log_id.leader_id.term.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
    }
    out
}

pub fn decode_append(bytes: &[u8]) -> Result<AppendEntriesRequest<TypeConfig>, String> {
    let mut r = Reader(bytes);
    let vote = get_vote(&mut r)?;
    let prev_log_id = get_log_id(&mut r)?;
    let leader_commit = get_log_id(&mut r)?;
    let n = r.u32()?;
    if n > ENTRIES_PER_MESSAGE_MAX {
        return Err(format!("an append of {n} entries"));
    }
    let mut entries = Vec::with_capacity(n.min(4096) as usize);
    for _ in 0..n {
        let (index, term, len) = (r.u64()?, r.u64()?, r.u32()?);
        entries.push(decode_entry(index, term, r.take(len as usize)?)?);
    }
    r.end()?;
    Ok(AppendEntriesRequest { vote, prev_log_id, entries, leader_commit })
}

pub fn encode_append_reply(m: &AppendEntriesResponse<TypeConfig>) -> Vec<u8> {
    let mut out = Vec::with_capacity(18);
    match m {
        AppendEntriesResponse::Success => out.push(0),
        AppendEntriesResponse::PartialSuccess(id) => {
            out.push(1);
            put_log_id(&mut out, id.as_ref());
        }
        AppendEntriesResponse::Conflict => out.push(2),
        AppendEntriesResponse::HigherVote(v) => {
            out.push(3);
            out.extend_from_slice(&encode_vote(v));
        }
    }
    out
}

pub fn decode_append_reply(bytes: &[u8]) -> Result<AppendEntriesResponse<TypeConfig>, String> {
    let mut r = Reader(bytes);
    let m = match r.take(1)?[0] {
        0 => AppendEntriesResponse::Success,
        1 => AppendEntriesResponse::PartialSuccess(get_log_id(&mut r)?),
        2 => AppendEntriesResponse::Conflict,
        3 => AppendEntriesResponse::HigherVote(get_vote(&mut r)?),
        other => return Err(format!("append reply kind {other}")),
    };
    r.end()?;
    Ok(m)
}

pub fn encode_vote_request(m: &VoteRequest<TypeConfig>) -> Vec<u8> {
    let mut out = encode_vote(&m.vote);
    put_log_id(&mut out, m.last_log_id.as_ref());
    out.push(u8::from(m.leadership_transfer));
    out
}

pub fn decode_vote_request(bytes: &[u8]) -> Result<VoteRequest<TypeConfig>, String> {
    let mut r = Reader(bytes);
    let vote = get_vote(&mut r)?;
    let last_log_id = get_log_id(&mut r)?;
    let leadership_transfer = get_bool(&mut r)?;
    r.end()?;
    Ok(VoteRequest { vote, last_log_id, leadership_transfer })
}

pub fn encode_vote_reply(m: &VoteResponse<TypeConfig>) -> Vec<u8> {
    let mut out = encode_vote(&m.vote);
    out.push(u8::from(m.vote_granted));
    put_log_id(&mut out, m.last_log_id.as_ref());
    out
}

pub fn decode_vote_reply(bytes: &[u8]) -> Result<VoteResponse<TypeConfig>, String> {
    let mut r = Reader(bytes);
    let vote = get_vote(&mut r)?;
    let vote_granted = get_bool(&mut r)?;
    let last_log_id = get_log_id(&mut r)?;
    r.end()?;
    Ok(VoteResponse { vote, vote_granted, last_log_id })
}

pub fn encode_transfer(m: &TransferLeaderRequest<TypeConfig>) -> Vec<u8> {
    let mut out = encode_vote(m.from_leader());
    out.extend_from_slice(&m.to_node_id().to_le_bytes());
    put_log_id(&mut out, m.last_log_id());
    out
}

pub fn decode_transfer(bytes: &[u8]) -> Result<TransferLeaderRequest<TypeConfig>, String> {
    let mut r = Reader(bytes);
    let from = get_vote(&mut r)?;
    let to = r.u64()?;
    let last = get_log_id(&mut r)?;
    r.end()?;
    Ok(TransferLeaderRequest::new(from, to, last))
}

pub fn encode_transfer_reply(m: &TransferLeaderResponse<TypeConfig>) -> Vec<u8> {
    use openraft::raft::TransferLeaderError as E;
    let mut out = Vec::new();
    match m {
        Ok(()) => out.push(0),
        Err(E::VoteChanged { expected, actual }) => {
            out.push(1);
            out.extend_from_slice(&encode_vote(expected));
            out.extend_from_slice(&encode_vote(actual));
        }
        Err(E::LogNotFlushed { expected, actual }) => {
            out.push(2);
            put_log_id(&mut out, expected.as_ref());
            put_log_id(&mut out, actual.as_ref());
        }
    }
    out
}

pub fn decode_transfer_reply(bytes: &[u8]) -> Result<TransferLeaderResponse<TypeConfig>, String> {
    use openraft::raft::TransferLeaderError as E;
    let mut r = Reader(bytes);
    let m = match r.take(1)?[0] {
        0 => Ok(()),
        1 => Err(E::VoteChanged { expected: get_vote(&mut r)?, actual: get_vote(&mut r)? }),
        2 => Err(E::LogNotFlushed { expected: get_log_id(&mut r)?, actual: get_log_id(&mut r)? }),
        other => return Err(format!("transfer reply kind {other}")),
    };
    r.end()?;
    Ok(m)
}

/// A cursor over untrusted bytes.
#[derive(Debug)]
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("truncated: wanted {n} more bytes, {} left", self.0.len()));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    pub fn end(&self) -> Result<(), String> {
        if self.0.is_empty() { Ok(()) } else { Err(format!("{} trailing bytes", self.0.len())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_votes_round_trip_and_garbage_is_an_error() {
        let m = Membership::new(vec![BTreeSet::from([1, 2, 3])], BTreeMap::from([(1, BasicNode { addr: "a:1".into() }), (2, BasicNode { addr: "b:2".into() }), (3, BasicNode { addr: "c:3".into() })])).expect("membership");
        for payload in [EntryPayload::Blank, EntryPayload::Membership(m)] {
            let e = Entry { log_id: log_id(3, 9), payload };
            let mut b = Vec::new();
            encode_entry(&e, &mut b);
            let back = decode_entry(9, 3, &b).expect("decode");
            assert_eq!(format!("{back:?}"), format!("{e:?}"));
            for cut in 0..b.len() {
                let _ = decode_entry(9, 3, &b[..cut]); // any prefix: an error or a shorter valid entry, never a panic
            }
        }
        let v = Vote::new_committed(7, 2);
        assert_eq!(decode_vote(&encode_vote(&v)), Ok(v));
        assert!(decode_vote(&[0; 16]).is_err());
        assert!(decode_vote(&[0; 18]).is_err());
        assert!(decode_entry(1, 1, &[9]).is_err());
    }
}
