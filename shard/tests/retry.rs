//! The retry window: a retry of a request a client may still be waiting on gets its first
//! outcome; a retry of a request the window forgot gets `RetryTooOld`, never a second apply.
//! The window is a time (command time, replicated), bounded in memory per client and in all.

use stratos_shard::constants::{RETRY_OUTCOMES_MAX, RETRY_OUTCOMES_PER_CLIENT_MAX, RETRY_WINDOW_MS, SESSION_IDLE_MS_MAX};
use stratos_shard::*;

const T0: u64 = 1_800_000_000_000;

/// A delete of a key that is not there: the cheapest command with an outcome to remember.
fn missing() -> Op {
    Op::DeleteKey { volume: "vol".into(), bucket: "bkt".into(), key: "none".into() }
}

struct S {
    state: ShardState,
    log_index: u64,
}

impl S {
    fn new() -> Self {
        let mut s = Self { state: ShardState::new(), log_index: 0 };
        let op = Op::CreateVolume { volume: "vol".into(), owner: "u".into(), admin: "root".into(), quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] };
        s.apply(0, 0, T0, op).expect("volume");
        let op = Op::CreateBucket { volume: "vol".into(), bucket: "bkt".into(), owner: None, versioning: false, replication: Replication::RatisOne, quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] };
        s.apply(0, 0, T0, op).expect("bucket");
        s
    }

    /// Applies one command of `client` (0: none) without checking invariants (the callers
    /// apply hundreds of thousands and check at the end).
    fn apply(&mut self, client_id: u64, request_id: u64, time_ms: u64, op: Op) -> Outcome {
        self.log_index += 1;
        let ctx = CommandContext { client_id, request_id, time_ms, principal: Principal::admin("root"), bucket: None };
        self.state.apply(self.log_index, &Command { ctx, op })
    }

    /// An open key: a cheap command whose outcome (its open id) differs from every other's.
    fn open(&mut self, client_id: u64, request_id: u64, time_ms: u64, key: &str) -> Outcome {
        let op = Op::OpenKey { volume: "vol".into(), bucket: "bkt".into(), key: key.into(), replication: None, blocks: vec![], expires_ms: u64::MAX, metadata: vec![] };
        self.apply(client_id, request_id, time_ms, op)
    }
}

/// Retries failed during failover (issue 19, item 8): the window held each client's last 256
/// outcomes, fewer than one client keeps in flight (`bench omkg -t 16 --batch 64`), so a retry
/// after a leader kill got `RetryTooOld`.
#[test]
fn a_retry_of_the_first_of_5000_requests_in_flight_gets_its_first_outcome() {
    let mut s = S::new();
    let firsts: Vec<Outcome> = (1..=5_000).map(|r| s.open(7, r, T0 + r, &format!("k{r}"))).collect();
    s.state.check_invariants().expect("invariants");
    // Another client's commands in between do not push client 7's outcomes out either.
    for r in 1..=5_000 {
        s.open(8, r, T0 + 5_000, &format!("other{r}")).expect("open");
    }
    // The retries come through a snapshot (a new leader may have loaded one).
    let mut back = S { state: ShardState::load_snapshot(&s.state.snapshot()).expect("load"), log_index: s.log_index };
    assert_eq!(back.state.state_hash(), s.state.state_hash());
    let open_keys = back.state.stats().open_keys;
    for r in [1, 2, 2_500, 5_000] {
        let again = back.open(7, r, T0 + 60_000, &format!("k{r}"));
        assert_eq!(again, firsts[r as usize - 1], "retry of request {r}");
    }
    assert_eq!(back.state.stats().open_keys, open_keys, "no retry was applied again");
    back.state.check_invariants().expect("invariants");
}

#[test]
fn a_retry_older_than_the_time_window_is_refused_not_reapplied() {
    let mut s = S::new();
    let first = s.open(7, 1, T0, "k");
    assert!(first.is_ok(), "{first:?}");
    // At the window's end the outcome is still there ...
    assert_eq!(s.open(7, 1, T0 + RETRY_WINDOW_MS, "k"), first);
    // ... and forgotten as soon as any command's time passes it (any client's: here none).
    s.apply(0, 0, T0 + RETRY_WINDOW_MS + 1, Op::ExpireOpenKeys { limit: 1 }).expect("a command later");
    let late = s.open(7, 1, T0 + RETRY_WINDOW_MS + 1, "k");
    assert_eq!(late, Err(OmError::RetryTooOld { client_id: 7, request_id: 1 }));
    assert_eq!(s.state.stats().open_keys, 1, "nothing was applied twice");
    // A new request of the same client is applied as usual.
    assert!(s.open(7, 2, T0 + RETRY_WINDOW_MS + 1, "k2").is_ok());
    s.state.check_invariants().expect("invariants");
    // Idle sessions go, and with them the outcomes they held.
    let out = s.apply(0, 0, T0 + 3 * RETRY_WINDOW_MS, Op::ExpireSessions);
    assert_eq!(out, Ok(Reply::Expired { open_keys: 0, sessions: 1 }));
    s.state.check_invariants().expect("invariants");
}

/// The memory bounds: one client beyond its share loses its own oldest outcomes (and a retry of
/// those is refused), not anyone else's; all clients beyond the total lose the oldest in log
/// order.
#[test]
fn the_window_is_bounded_per_client_and_in_all() {
    let mut s = S::new();
    let per_client = RETRY_OUTCOMES_PER_CLIENT_MAX as u64;
    let first_of_9 = s.apply(9, 1, T0, missing());
    for r in 1..=per_client + 3 {
        let _ = s.apply(7, r, T0, missing());
    }
    s.state.check_invariants().expect("invariants");
    for r in 1..=3 {
        let again = s.apply(7, r, T0, missing());
        assert_eq!(again, Err(OmError::RetryTooOld { client_id: 7, request_id: r }));
    }
    assert!(matches!(s.apply(7, 4, T0, missing()), Err(OmError::KeyNotFound(_))));
    assert_eq!(s.apply(9, 1, T0, missing()), first_of_9, "client 9's outcome is kept");

    // Fill the group's window with other clients: client 9's outcome is the oldest in log order.
    let total = RETRY_OUTCOMES_MAX as u64;
    let mut client = 100;
    let mut remembered = per_client + 1;
    while remembered < total + 1 {
        for r in 1..=per_client.min(total + 1 - remembered) {
            let _ = s.apply(client, r, T0, missing());
            remembered += 1;
        }
        client += 1;
    }
    s.state.check_invariants().expect("invariants");
    let again = s.apply(9, 1, T0, missing());
    assert_eq!(again, Err(OmError::RetryTooOld { client_id: 9, request_id: 1 }));
}

/// A client over its own bound forgets its oldest outcomes out of log order; the group's
/// bound then still forgets the oldest outcomes remembered, in log order, never one of another
/// client, and the places of the outcomes forgotten early do not pile up behind an older one
/// (the invariant check bounds them).
#[test]
fn outcomes_forgotten_out_of_log_order_are_skipped_and_do_not_pile_up() {
    let mut s = S::new();
    let per_client = RETRY_OUTCOMES_PER_CLIENT_MAX as u64;
    let _ = s.apply(6, 1, T0, missing());
    for r in 1..=3 * per_client {
        let _ = s.apply(7, r, T0, missing());
    }
    s.state.check_invariants().expect("invariants after a client forgot twice its bound behind client 6");
    // Clients 8 and 9 fill the rest of the group's window, and two more: the group forgets
    // client 6's outcome, then client 7's oldest remembered (request 2 × per_client + 1).
    for r in 1..per_client {
        let _ = s.apply(8, r, T0, missing());
    }
    let _ = s.apply(9, 1, T0, missing());
    let _ = s.apply(9, 2, T0, missing());
    s.state.check_invariants().expect("invariants");
    assert_eq!(s.apply(6, 1, T0, missing()), Err(OmError::RetryTooOld { client_id: 6, request_id: 1 }));
    let oldest = 2 * per_client + 1;
    assert_eq!(s.apply(7, oldest, T0, missing()), Err(OmError::RetryTooOld { client_id: 7, request_id: oldest }));
    assert!(matches!(s.apply(7, oldest + 1, T0, missing()), Err(OmError::KeyNotFound(_))), "the next one is remembered");
    assert!(matches!(s.apply(8, 1, T0, missing()), Err(OmError::KeyNotFound(_))), "client 8's first is remembered");
    // A snapshot rebuilds the order from the sessions alone.
    let back = ShardState::load_snapshot(&s.state.snapshot()).expect("load");
    assert_eq!(back.state_hash(), s.state.state_hash());
}

/// A client over its bound whose newest request has its lowest id (requests of one client can
/// reach a group out of order): that outcome is the one forgotten, at once, and its retry is
/// refused, never applied twice.
#[test]
fn a_client_over_its_bound_forgets_its_lowest_request_even_the_newest() {
    let mut s = S::new();
    let per_client = RETRY_OUTCOMES_PER_CLIENT_MAX as u64;
    for r in 2..=per_client + 1 {
        let _ = s.apply(7, r, T0, missing());
    }
    let first = s.open(7, 1, T0, "late");
    assert!(first.is_ok(), "{first:?}");
    s.state.check_invariants().expect("invariants");
    assert_eq!(s.open(7, 1, T0, "late"), Err(OmError::RetryTooOld { client_id: 7, request_id: 1 }));
    assert_eq!(s.state.stats().open_keys, 1, "the late request was applied once");
    assert!(matches!(s.apply(7, 2, T0, missing()), Err(OmError::KeyNotFound(_))), "request 2 is still remembered");
}

/// Which outcome the window forgets must not depend on the places of outcomes forgotten early:
/// a replica that loaded a snapshot (its order rebuilt from the sessions) and one that applied
/// the whole log (its order holding such places) forget the same ones and stay equal, through
/// the group's bound, the time window with a clock that stepped back, and idle sessions dropped.
#[test]
fn a_replica_from_a_snapshot_forgets_exactly_what_the_others_do() {
    let mut s = S::new();
    let per_client = RETRY_OUTCOMES_PER_CLIENT_MAX as u64;
    // Client 6 first, then client 7 past its bound: 500 places forgotten behind client 6's.
    let _ = s.apply(6, 1, T0, missing());
    for r in 1..=per_client + 500 {
        let _ = s.apply(7, r, T0 + 1, missing());
    }
    let mut back = S { state: ShardState::load_snapshot(&s.state.snapshot()).expect("load"), log_index: s.log_index };
    fn both(s: &mut S, back: &mut S, client: u64, request: u64, t: u64, op: Op) -> Outcome {
        let a = s.apply(client, request, t, op.clone());
        assert_eq!(a, back.apply(client, request, t, op), "client {client} request {request}");
        a
    }
    let same = |s: &S, back: &S| s.state.state_hash() == back.state.state_hash();
    // The group's bound: clients 8 and 9 push out client 6's outcome and client 7's oldest.
    for r in 1..per_client {
        let _ = both(&mut s, &mut back, 8, r, T0 + 2, missing());
    }
    for r in 1..=600 {
        let _ = both(&mut s, &mut back, 9, r, T0 + 2, missing());
    }
    assert!(same(&s, &back), "equal after the group's bound");
    assert!(matches!(both(&mut s, &mut back, 6, 1, T0 + 2, missing()), Err(OmError::RetryTooOld { .. })));
    // The clock steps back (a new leader's), then the window passes for the older times only.
    let _ = both(&mut s, &mut back, 10, 1, T0 - 1_000, missing());
    let _ = both(&mut s, &mut back, 11, 1, T0 + 2 + RETRY_WINDOW_MS + 1, missing());
    assert!(same(&s, &back), "equal after the time window");
    // Idle sessions go.
    let out = both(&mut s, &mut back, 0, 0, T0 + 3 * RETRY_WINDOW_MS, Op::ExpireSessions);
    assert!(matches!(out, Ok(Reply::Expired { .. })), "{out:?}");
    assert!(same(&s, &back), "equal after idle sessions dropped");
    s.state.check_invariants().expect("invariants of the replica that applied everything");
    back.state.check_invariants().expect("invariants of the replica from the snapshot");
}

/// Dropping idle sessions can leave most of the order stale behind one younger outcome (command
/// times from successive leaders may step back); it is compacted by the command that did it.
#[test]
fn sessions_dropped_behind_a_younger_outcome_leave_no_pile_of_places() {
    let mut s = S::new();
    let _ = s.apply(1, 1, T0 + 10_000, missing());
    for r in 1..=2_000 {
        let _ = s.apply(2, r, T0, missing());
    }
    s.state.check_invariants().expect("invariants");
    let out = s.apply(0, 0, T0 + SESSION_IDLE_MS_MAX + 1, Op::ExpireSessions);
    assert_eq!(out, Ok(Reply::Expired { open_keys: 0, sessions: 1 }));
    s.state.check_invariants().expect("invariants after client 2's session went");
    assert!(matches!(s.apply(1, 1, T0 + SESSION_IDLE_MS_MAX + 1, missing()), Err(OmError::KeyNotFound(_))), "client 1's outcome is kept");
}

/// Steps `b` to the end, `budget` entries a step; the bytes written after the 3 stray bytes.
fn finish(s: &mut S, b: &mut SnapshotBuild, bytes: &mut Vec<u8>, budget: usize) {
    while !s.state.snapshot_step(b, bytes, budget).expect("a step") {}
}

/// A snapshot writes the retry sessions' outcomes a step at a time while commands go on, so
/// the outcomes of its moment that the window forgets before a step reaches them (its bound per
/// client and in all, its time, idle sessions) must still be written, and those remembered
/// after its begin must not be. Loaded, it is the state of its begin, and answers retries as
/// that state did.
#[test]
fn a_snapshot_written_while_the_window_forgets_holds_the_outcomes_of_its_begin() {
    let mut s = S::new();
    let per_client = RETRY_OUTCOMES_PER_CLIENT_MAX as u64;
    let firsts: Vec<Outcome> = (1..=300).map(|r| s.open(5, r, T0, &format!("five{r}"))).collect();
    for r in 1..=per_client {
        let _ = s.apply(7, r, T0 + 1, missing());
    }
    for c in 20..40 {
        let _ = s.apply(c, 1, T0 + 2, missing());
    }
    let at_begin = s.state.state_hash();
    let mut bytes = vec![0xAB; 3];
    let mut b = s.state.begin_snapshot(&mut bytes).expect("no snapshot is being written");
    // Client 5's 300 outcomes and client 7's first 700 are written ...
    assert!(!s.state.snapshot_step(&mut b, &mut bytes, 1_000).expect("a step"));
    // ... then client 7 goes past its bound: its lowest requests go, some written, some not.
    for r in per_client + 1..=per_client + 2_000 {
        let _ = s.apply(7, r, T0 + 3, missing());
    }
    assert!(!s.state.snapshot_step(&mut b, &mut bytes, 500).expect("a step"));
    // The group's bound: new clients push out the oldest in log order (client 5's, written,
    // and client 7's oldest, written or not).
    let total = RETRY_OUTCOMES_MAX as u64;
    for r in 1..=total - per_client {
        let _ = s.apply(8, r, T0 + 4, missing());
    }
    assert!(!s.state.snapshot_step(&mut b, &mut bytes, 700).expect("a step"));
    // The time window passes for everything before, and the sessions idle since go.
    let _ = s.apply(9, 1, T0 + 4 + RETRY_WINDOW_MS + 1, missing());
    let out = s.apply(0, 0, T0 + 4 + SESSION_IDLE_MS_MAX + 1, Op::ExpireSessions);
    assert!(matches!(out, Ok(Reply::Expired { sessions, .. }) if sessions >= 20), "{out:?}");
    s.state.check_invariants().expect("invariants while the snapshot is written");
    finish(&mut s, &mut b, &mut bytes, 3_000);
    let back = ShardState::load_snapshot(&bytes[3..]).expect("the snapshot loads");
    back.check_invariants().expect("invariants of the loaded snapshot");
    assert_eq!(back.state_hash(), at_begin, "the snapshot is the state at its begin");
    // The loaded state answers the retries the state at the begin would have.
    let mut back = S { state: back, log_index: s.log_index };
    for r in [1, 150, 300] {
        assert_eq!(back.open(5, r, T0 + 5, &format!("five{r}")), firsts[r as usize - 1], "client 5's request {r}");
    }
    assert!(matches!(back.apply(7, 1, T0 + 5, missing()), Err(OmError::KeyNotFound(_))), "client 7's first is remembered");
    // And the state that went on is as it would be without a snapshot.
    assert_eq!(s.apply(5, 1, T0 + 4 + SESSION_IDLE_MS_MAX + 2, missing()), Err(OmError::KeyNotFound("vol/bkt/none".into())));
}

/// Random interleavings of commands of a few clients (with the time jumping past the window),
/// idle sessions dropped, and steps of a snapshot: every snapshot written loads as the state of
/// its begin, and a snapshot given up leaves nothing behind.
mod interleaved {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Act {
        /// A command of client `client` at the current time plus `later` ms.
        Command { client: u64, later: u64 },
        ExpireSessions,
        Begin,
        Step { budget: usize },
        Abort,
    }

    fn act() -> impl Strategy<Value = Act> {
        prop_oneof![
            8 => (1..5u64, prop_oneof![4 => 0..10u64, 1 => Just(RETRY_WINDOW_MS / 2 + 1)]).prop_map(|(client, later)| Act::Command { client, later }),
            1 => Just(Act::ExpireSessions),
            1 => Just(Act::Begin),
            3 => (1..4usize).prop_map(|budget| Act::Step { budget }),
            1 => Just(Act::Abort),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn every_snapshot_is_the_state_of_its_begin(acts in proptest::collection::vec(act(), 1..120)) {
            let mut s = S::new();
            let mut t = T0;
            let mut requests = [0u64; 5];
            let mut building: Option<(SnapshotBuild, Vec<u8>, u64)> = None;
            for act in acts {
                match act {
                    Act::Command { client, later } => {
                        t += later;
                        requests[client as usize] += 1;
                        let _ = s.apply(client, requests[client as usize], t, missing());
                    }
                    Act::ExpireSessions => {
                        let _ = s.apply(0, 0, t, Op::ExpireSessions);
                    }
                    Act::Begin => {
                        if building.is_none() {
                            let hash = s.state.state_hash();
                            let mut bytes = vec![0xAB; 3];
                            let b = s.state.begin_snapshot(&mut bytes).expect("none is being written");
                            building = Some((b, bytes, hash));
                        }
                    }
                    Act::Step { budget } => {
                        if let Some((mut b, mut bytes, hash)) = building.take() {
                            if s.state.snapshot_step(&mut b, &mut bytes, budget).expect("a step") {
                                let back = ShardState::load_snapshot(&bytes[3..]).map_err(|e| TestCaseError::fail(e.to_string()))?;
                                prop_assert_eq!(back.state_hash(), hash);
                            } else {
                                building = Some((b, bytes, hash));
                            }
                        }
                    }
                    Act::Abort => {
                        if building.take().is_some() {
                            s.state.abort_snapshot();
                        }
                    }
                }
                s.state.check_invariants().map_err(TestCaseError::fail)?;
            }
            if let Some((mut b, mut bytes, hash)) = building.take() {
                finish(&mut s, &mut b, &mut bytes, 1);
                let back = ShardState::load_snapshot(&bytes[3..]).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(back.state_hash(), hash);
            }
        }
    }
}
