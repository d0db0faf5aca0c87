//! The openraft type configuration of every Stratos group (the meta group and the key shards).
//!
//! One Raft entry carries a *proposal*: a batch of up to [`COMMANDS_PER_ENTRY_MAX`] shard
//! commands, encoded once by the leader (rkyv) and stored in the WAL as they are. Batching in the
//! entry amortises openraft's per-entry work; the WAL's group commit amortises fdatasync across
//! entries. Command `i` of the entry at log index `n` is applied at shard index `n << 8 | i`, so
//! shard indexes (a record's update id) stay unique and ordered within the group; this bounds a
//! group's log to 2^48 entries (nine years at a million entries per second). Object ids do not
//! derive from it (see `stratos_shard::constants::GROUP_ID_BITS`).

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use rkyv::rancor;
use rkyv::util::AlignedVec;
use stratos_shard::{Command, Outcome};

use crate::runtime::GlommioRuntime;

/// Commands one entry carries at most (the low 8 bits of the shard index).
pub const COMMANDS_PER_ENTRY_MAX: usize = 256;

/// The shard index of command `position` of the entry at `log_index`.
pub fn shard_index(log_index: u64, position: usize) -> u64 {
    assert!(position < COMMANDS_PER_ENTRY_MAX, "entry {log_index} carries more than {COMMANDS_PER_ENTRY_MAX} commands");
    assert!(log_index < 1 << 48, "log index {log_index} beyond the 2^48 entries a group may hold");
    (log_index << 8) | position as u64
}

thread_local! {
    /// Bytes per command of the last proposal this thread encoded (see [`Proposal::new`]).
    static BYTES_PER_COMMAND: Cell<usize> = const { Cell::new(256) };
}

/// A batch of encoded commands (cheap to clone: openraft keeps copies in flight).
#[derive(Clone)]
pub struct Proposal {
    bytes: Rc<AlignedVec>,
    /// The commands themselves, on the node that made the proposal, until it applies them: the
    /// leader applies the entry from a clone of this `Proposal` (openraft hands it over through
    /// the log store's cache), so it takes them instead of decoding its own bytes. Not part of
    /// the entry: followers, the WAL and a restart decode the bytes. A leader profile at one key
    /// per call put that decode, and the copy of the commands `encode` made to serialize them,
    /// at 2-3% of the OM's CPU.
    made_from: Option<Rc<Cell<Option<Vec<Command>>>>>,
}

impl Proposal {
    pub fn new(commands: Vec<Command>) -> Self {
        assert!(!commands.is_empty() && commands.len() <= COMMANDS_PER_ENTRY_MAX, "a proposal carries 1..={COMMANDS_PER_ENTRY_MAX} commands, not {}", commands.len());
        // Sized from the last proposal made on this thread: grown from empty, the buffer was
        // reallocated and copied several times per entry (~600 instructions per key under
        // `omkg --batch 1`, callgrind). Commands of one workload are of much the same size; a
        // proposal after one of larger commands over-allocates at most 1 KiB per command, once.
        let capacity = BYTES_PER_COMMAND.get().min(1024) * commands.len();
        let bytes = rkyv::api::high::to_bytes_in::<_, rancor::Error>(&commands, AlignedVec::<16>::with_capacity(capacity))
            .expect("serializing into memory cannot fail");
        BYTES_PER_COMMAND.set(bytes.len().div_ceil(commands.len()).next_multiple_of(16));
        Self { bytes: Rc::new(bytes), made_from: Some(Rc::new(Cell::new(Some(commands)))) }
    }

    /// From WAL or network bytes: validated when decoded ([`Self::commands`]).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut v = AlignedVec::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        Self { bytes: Rc::new(v), made_from: None }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The commands. The first call on the node that made the proposal (on any clone of it)
    /// takes those it was made from, which are not kept after; every other call decodes the
    /// bytes and validates them fully (bytes from disk or the network are untrusted).
    pub fn commands(&self) -> Result<Vec<Command>, String> {
        if let Some(commands) = self.made_from.as_ref().and_then(|c| c.take()) {
            return Ok(commands);
        }
        let commands = rkyv::from_bytes::<Vec<Command>, rancor::BoxedError>(&self.bytes).map_err(|e| e.to_string())?;
        if commands.is_empty() || commands.len() > COMMANDS_PER_ENTRY_MAX {
            return Err(format!("a proposal of {} commands", commands.len()));
        }
        Ok(commands)
    }
}

impl fmt::Debug for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proposal({} bytes)", self.bytes.len())
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What applying a proposal gave: one outcome per command, in order.
#[derive(Debug, Clone)]
pub struct Applied(pub Vec<Outcome>);

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
        AsyncRuntime = GlommioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig, crate::state_machine::StateMachine>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Membership = openraft::Membership<u64, openraft::BasicNode>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;

pub fn log_id(term: u64, log_index: u64) -> LogId {
    openraft::LogId::new_term_index(term, log_index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratos_shard::{CommandContext, Op, Principal};

    fn command(request_id: u64) -> Command {
        let ctx = CommandContext { client_id: 42, request_id, time_ms: 1_000, principal: Principal::admin("root"), bucket: None };
        Command { ctx, op: Op::DeleteKey { volume: "vol".into(), bucket: "bkt".into(), key: format!("k{request_id}") } }
    }

    /// The proposing node takes its commands once, from any clone; after that, and on every
    /// other node, the bytes are decoded, to the same commands.
    #[test]
    fn the_proposer_takes_its_commands_once_and_the_bytes_say_the_same() {
        let commands = vec![command(1), command(2)];
        let p = Proposal::new(commands.clone());
        let clone = p.clone();
        let first = clone.commands().expect("the commands it was made from");
        assert_eq!(first, commands);
        assert!(p.made_from.as_ref().is_some_and(|c| c.take().is_none()), "taken, for every clone");
        assert_eq!(p.commands().expect("decoded"), commands);
        assert_eq!(Proposal::from_bytes(p.bytes()).commands().expect("decoded elsewhere"), commands);
        assert!(Proposal::from_bytes(&p.bytes()[..8]).commands().is_err(), "bad bytes are an error");
    }
}
