//! The retry window's log order: which remembered outcome to forget first.
//!
//! Every apply of a retryable command remembers its outcome, and once the window is full (its
//! bound or its time) forgets the oldest. This was a `BTreeMap` keyed by log index: an insert at
//! its end and a `pop_first` per command in a tree of up to `RETRY_OUTCOMES_MAX` entries, which
//! cost as much as the operation itself (a follower profile on three nodes: `remember` 5.2% of
//! the CPU, `apply_op` 4.2%; a shard-only loop of open and commit: 480 ns of 870 ns per command).
//!
//! Outcomes are remembered in log order, so a deque appended at the back and consumed at the
//! front holds that order at O(1) per command. The two other ways an outcome goes (a client over
//! its own bound, an idle session dropped) remove it from its session only; its slot here turns
//! stale and is skipped when it reaches the front. A slot is live while its session still holds
//! the outcome of that request *at that log index* (log indexes are unique, so a request id
//! reused after its session was dropped does not revive an old slot). So that stale slots
//! cannot pile up behind an old live one, the deque is compacted after a command that left it
//! holding more than twice its live slots plus [`SLACK`]: each compaction's cost is paid by the
//! stale slots it removes, O(1) per command amortised.
//!
//! Memory: 32 bytes a slot, and the deque's capacity grows by doubling, so a full window
//! (`RETRY_OUTCOMES_MAX`, pushed before the oldest is popped) holds 2^19 slots, 16 MiB; stale
//! slots up to the compaction bound can double that.
//!
//! Which outcome goes first depends only on the live slots, never on where stale ones lie: a
//! replica that loaded a snapshot (its order rebuilt, no stale slots) forgets exactly what a
//! replica that applied the same log did, so their states stay equal.
//!
//! Derived from the sessions (rebuilt on snapshot load, never stored).

use std::collections::{BTreeMap, VecDeque};

use crate::state::Session;

/// One remembered outcome's place: log index, client, request id, command time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Slot {
    pub log_index: u64,
    pub client: u64,
    pub request: u64,
    pub time_ms: u64,
}

impl Slot {
    /// Whether `sessions` still remember this slot's outcome.
    fn live(&self, sessions: &BTreeMap<u64, Session>) -> bool {
        sessions.get(&self.client).and_then(|s| s.outcomes.get(&self.request)).is_some_and(|r| r.log_index == self.log_index)
    }
}

/// Stale slots tolerated before a compaction, beyond the live count (a small window compacts
/// rarely too).
const SLACK: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct RetryOrder {
    /// Ascending log index; live and stale slots.
    slots: VecDeque<Slot>,
    /// How many of `slots` are live: the outcomes remembered in all sessions.
    live: usize,
}

impl RetryOrder {
    /// The order of the outcomes `sessions` remember.
    pub fn rebuild(sessions: &BTreeMap<u64, Session>) -> Self {
        let mut slots: Vec<Slot> = sessions
            .iter()
            .flat_map(|(client, s)| {
                s.outcomes.iter().map(|(request, r)| Slot { log_index: r.log_index, client: *client, request: *request, time_ms: r.time_ms })
            })
            .collect();
        slots.sort_unstable();
        Self { live: slots.len(), slots: slots.into() }
    }

    /// The outcomes remembered.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Appends a newly remembered outcome; its log index is above every other's.
    pub fn push(&mut self, slot: Slot) {
        debug_assert!(self.slots.back().is_none_or(|b| b.log_index < slot.log_index), "outcomes are remembered in log order");
        self.slots.push_back(slot);
        self.live += 1;
    }

    /// Drops the stale slots once they outnumber the live ones (plus [`SLACK`]). Called after
    /// each command, so the bound holds between commands ([`Self::compact_enough`]).
    pub fn settle(&mut self, sessions: &BTreeMap<u64, Session>) {
        if !self.compact_enough() {
            self.slots.retain(|s| s.live(sessions));
            debug_assert_eq!(self.slots.len(), self.live);
        }
    }

    /// A live slot's outcome was forgotten by its session (the client's bound, or the session
    /// dropped): the slot is stale from now on.
    pub fn forgotten(&mut self, n: usize) {
        self.live -= n;
    }

    /// The oldest live slot, dropping stale ones before it.
    pub fn front(&mut self, sessions: &BTreeMap<u64, Session>) -> Option<Slot> {
        while let Some(s) = self.slots.front() {
            if s.live(sessions) {
                return Some(*s);
            }
            self.slots.pop_front();
        }
        None
    }

    /// Removes the oldest live slot if `take` says so (one liveness check for both); its
    /// caller forgets the outcome in its session.
    pub fn pop_front_if(&mut self, sessions: &BTreeMap<u64, Session>, take: impl FnOnce(&Slot) -> bool) -> Option<Slot> {
        let s = self.front(sessions).filter(take)?;
        self.slots.pop_front();
        self.live -= 1;
        Some(s)
    }

    /// The live slots in order (for the invariant check).
    pub fn live_slots<'a>(&'a self, sessions: &'a BTreeMap<u64, Session>) -> impl Iterator<Item = Slot> + 'a {
        self.slots.iter().copied().filter(move |s| s.live(sessions))
    }

    /// Whether the stale slots are within the compaction bound.
    pub fn compact_enough(&self) -> bool {
        self.slots.len() <= 2 * self.live + SLACK
    }

    /// Whether the slots, live and stale, are in strictly ascending log order.
    pub fn ordered(&self) -> bool {
        self.slots.iter().zip(self.slots.iter().skip(1)).all(|(a, b)| a.log_index < b.log_index)
    }
}
