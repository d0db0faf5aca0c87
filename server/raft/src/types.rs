//! The openraft type configuration of every Stratos group (the meta group and the key shards).
//!
//! One Raft entry carries a *proposal*: a batch of up to [`COMMANDS_PER_ENTRY_MAX`] shard
//! commands, encoded once by the leader (rkyv) and stored in the WAL as they are. Batching in the
//! entry amortises openraft's per-entry work; the WAL's group commit amortises fdatasync across
//! entries. Command `i` of the entry at log index `n` is applied at shard index `n << 8 | i`, so
//! shard indexes (a record's update id) stay unique and ordered within the group; this bounds a
//! group's log to 2^48 entries (nine years at a million entries per second). Object ids do not
//! derive from it (see `stratos_shard::constants::GROUP_ID_BITS`).

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

/// A batch of encoded commands (cheap to clone: openraft keeps copies in flight).
#[derive(Clone)]
pub struct Proposal {
    bytes: Rc<AlignedVec>,
}

impl Proposal {
    pub fn encode(commands: &[Command]) -> Self {
        assert!(!commands.is_empty() && commands.len() <= COMMANDS_PER_ENTRY_MAX, "a proposal carries 1..={COMMANDS_PER_ENTRY_MAX} commands, not {}", commands.len());
        let bytes = rkyv::to_bytes::<rancor::Error>(&commands.to_vec()).expect("serializing into memory cannot fail");
        Self { bytes: Rc::new(bytes) }
    }

    /// From WAL or network bytes: validated when decoded ([`Self::commands`]).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut v = AlignedVec::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        Self { bytes: Rc::new(v) }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The commands, fully validated (bytes from disk are untrusted).
    pub fn commands(&self) -> Result<Vec<Command>, String> {
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
