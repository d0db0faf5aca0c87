//! Cross-shard rename (stratos-shard's `apply_rename`): the three steps on two key shards, the
//! pinned source key, remembered answers, and a property test that drives the steps in any
//! order, repeated, with client retries and concurrent writes to the new name.

use proptest::prelude::*;
use stratos_shard::records::KeyRecord;
use stratos_shard::*;

use crate::carried::Shard;

const SOURCE: u32 = 0;

/// The rename's own steps, on a key shard of [`Shard`].
impl Shard {
    fn out(&mut self, request: u64, from: &str, to: &str) -> Outcome {
        self.run_as((42, request), Principal::user("u"), Op::RenameOut { volume: "vol".into(), bucket: "bkt".into(), from: from.into(), to: to.into(), dest_shard: 1 })
    }
    fn copy_in(&mut self, txn: u64, to: &str, record: &KeyRecord) -> Outcome {
        let op = Op::RenameIn { volume: "vol".into(), bucket: "bkt".into(), to: to.into(), source_shard: SOURCE, txn, record: record.clone() };
        self.run_as((0, 0), Principal::admin("om"), op)
    }
    fn finish(&mut self, txn: u64, commit: bool) -> Outcome {
        self.run_as((0, 0), Principal::admin("om"), Op::RenameFinish { txn, commit })
    }
}

/// `to`, as the destination holds it, is the source's record under a new name: the same data
/// (blocks, size, replication), metadata, ACLs and creation time. Only what names the new
/// object differs: its object id and update id come from the destination shard's log, and its
/// modification time is the copy's.
fn assert_moved(to: &KeyRecord, from: &KeyRecord) {
    assert_eq!(to.blocks, from.blocks, "blocks");
    assert_eq!(to.data_size, from.data_size, "size");
    assert_eq!(to.replication, from.replication, "replication");
    assert_eq!(to.metadata, from.metadata, "metadata");
    assert_eq!(to.acls, from.acls, "ACLs");
    assert_eq!(to.created_ms, from.created_ms, "creation time");
    assert_eq!(KeyRecord { object_id: from.object_id, update_id: from.update_id, modified_ms: from.modified_ms, ..to.clone() }, *from, "nothing else differs");
}

fn started(o: Outcome) -> (u64, KeyRecord) {
    match o {
        Ok(Reply::RenameStarted { txn, record }) => (txn, record),
        other => panic!("not started: {other:?}"),
    }
}

#[test]
fn a_rename_moves_the_key_and_its_usage_and_pins_the_source_meanwhile() {
    let (mut a, mut b) = (Shard::new(), Shard::new());
    let metadata = vec![MetadataPair { key: "content-type".into(), value: "image/jpeg".into() }, MetadataPair { key: "team".into(), value: "storage".into() }];
    a.put_with("from", 10, metadata.clone()).expect("put");
    let source = a.record_of("from").expect("the source key");
    assert_eq!(source.metadata, metadata);
    let (txn, record) = started(a.out(1, "from", "to"));
    assert_eq!(record, source, "step 1 hands over the source's record as stored");

    // While the rename runs, `from` is readable but not writable, and cannot be renamed again.
    assert!(a.size_of("from").is_some());
    assert!(matches!(a.put("from", 3), Err(OmError::KeyBusy(_))));
    assert!(matches!(a.delete("from"), Err(OmError::KeyBusy(_))));
    assert!(matches!(a.out(2, "from", "other"), Err(OmError::KeyBusy(_))));
    let many = a.run(Op::DeleteKeys { volume: "vol".into(), bucket: "bkt".into(), keys: vec!["from".into(), "x".into()] });
    assert!(matches!(many, Err(OmError::KeyBusy(_))), "{many:?}");
    // A snapshot in the middle keeps the intent and the pin.
    let back = ShardState::load_snapshot(&a.state.snapshot()).expect("load");
    assert_eq!(back.state_hash(), a.state.state_hash());
    assert_eq!(back.renames_out().len(), 1);

    // Only the OM (an administrator) runs steps 2 and 3.
    let denied = b.run(Op::RenameIn { volume: "vol".into(), bucket: "bkt".into(), to: "to".into(), source_shard: SOURCE, txn, record: record.clone() });
    assert!(matches!(denied, Err(OmError::PermissionDenied { .. })), "{denied:?}");
    assert!(matches!(a.run(Op::RenameFinish { txn, commit: true }), Err(OmError::PermissionDenied { .. })));

    assert_eq!(b.copy_in(txn, "to", &record), Ok(Reply::Done));
    assert_eq!(b.copy_in(txn, "to", &record), Ok(Reply::Done), "a repeated step 2 gets the same answer");
    let moved = b.record_of("to").expect("the destination key exists after step 2");
    assert_moved(&moved, &source);
    assert_ne!(moved.object_id, 0);
    assert_eq!(moved.update_id, b.log_index - 1, "written by the first step 2, not by its repeat");
    assert_eq!(b.state.bucket_usage_of(7), BucketUsage { keys: 1, used_bytes: 30, open_keys: 0 });
    assert_eq!(a.finish(txn, true), Ok(Reply::Done));
    assert_eq!(a.finish(txn, true), Ok(Reply::Done), "finishing twice changes nothing");
    assert_eq!(a.size_of("from"), None);
    assert_eq!(b.record_of("to"), Some(moved), "finishing on the source leaves the destination as it was");
    assert_eq!(a.state.bucket_usage_of(7), BucketUsage { keys: 0, used_bytes: 0, open_keys: 1 }, "the refused put left its open key");
    assert_eq!(a.state.volume_used_bytes_of(9), 0);
    assert!(a.state.renames_out().is_empty());
    // The name is free again on the source shard.
    a.put("from", 4).expect("put after the rename");

    // The client's retry of step 1 gets the first answer (the same intent id).
    assert_eq!(started(a.out(1, "from", "to")).0, txn);
}

#[test]
fn a_refused_copy_is_remembered_and_the_source_is_released() {
    let (mut a, mut b) = (Shard::new(), Shard::new());
    a.put("from", 10).expect("put");
    let source = a.record_of("from").expect("the source key");
    b.put("to", 1).expect("to exists");
    let existing = b.record_of("to").expect("the destination key");
    let (txn, record) = started(a.out(1, "from", "to"));
    let refused = b.copy_in(txn, "to", &record);
    assert!(matches!(refused, Err(OmError::KeyExists(_))), "{refused:?}");
    assert_eq!(b.record_of("to"), Some(existing), "a refused copy leaves the existing key alone");
    assert_eq!(a.finish(txn, false), Ok(Reply::Done));
    assert_eq!(a.record_of("from"), Some(source), "given up: the key stays, as it was");
    a.put("from", 11).expect("writable again");
    // Even once `to` is gone, a repeated step 2 of that rename keeps its first answer: it can
    // never create `to` after step 1 was given up.
    b.delete("to").expect("delete to");
    assert_eq!(b.copy_in(txn, "to", &record), refused);
    assert_eq!(b.size_of("to"), None);
    // Snapshots keep the remembered answers.
    let back = ShardState::load_snapshot(&b.state.snapshot()).expect("load");
    assert_eq!(back.state_hash(), b.state.state_hash());
}

#[derive(Debug, Clone)]
enum Step {
    /// The client asks (again, with the same request id, or anew).
    Start { retry: bool },
    /// The driver (or a re-driver) runs step 2 for the latest intent.
    Copy,
    /// The driver finishes the latest intent by step 2's first answer.
    Finish,
    /// Other clients write the new name, or delete it; or snapshot-restore a shard.
    PutTo,
    DeleteTo,
    Restore { source: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        any::<bool>().prop_map(|retry| Step::Start { retry }),
        Just(Step::Copy),
        Just(Step::Copy),
        Just(Step::Finish),
        Just(Step::PutTo),
        Just(Step::DeleteTo),
        any::<bool>().prop_map(|source| Step::Restore { source }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// In any interleaving: step 2 always answers the same for one intent; the source key is
    /// pinned exactly while an intent is open; a committed rename leaves the key only at the new
    /// name (with the source's blocks, size and metadata, unless another client replaced it
    /// since), a given-up one only at the old, unchanged; invariants hold after every apply.
    #[test]
    fn any_interleaving_keeps_the_key_in_exactly_the_right_place(steps in proptest::collection::vec(step(), 1..40)) {
        let (mut a, mut b) = (Shard::new(), Shard::new());
        a.put_with("from", 10, vec![MetadataPair { key: "k".into(), value: "v".into() }]).expect("put");
        let source = a.record_of("from").expect("the source key");
        // `to` is (still) the copy step 2 made: no other client wrote or deleted it since.
        let mut to_is_copy = false;
        let mut request = 1u64;
        let mut answers = std::collections::HashMap::new();
        // The latest intent: (txn, record, step 2's first answer, finished).
        let mut current: Option<(u64, KeyRecord, Option<Outcome>, bool)> = None;
        for s in steps {
            match s {
                Step::Start { retry } => {
                    if !retry { request += 1; }
                    let answer = a.out(request, "from", "to");
                    // A retry gets the request's first answer, whatever happened since.
                    if let Some(first) = answers.get(&request) {
                        prop_assert_eq!(&answer, first);
                        continue;
                    }
                    answers.insert(request, answer.clone());
                    match answer {
                        Ok(Reply::RenameStarted { txn, record }) => current = Some((txn, record, None, false)),
                        Err(OmError::KeyBusy(_)) => prop_assert!(current.as_ref().is_some_and(|c| !c.3), "busy without an open intent"),
                        Err(OmError::KeyNotFound(_)) => prop_assert!(a.size_of("from").is_none()),
                        other => prop_assert!(false, "step 1: {other:?}"),
                    }
                }
                Step::Copy => if let Some((txn, record, first, _)) = current.as_mut() {
                    prop_assert_eq!(&*record, &source, "step 1 hands over the source's record");
                    let answer = b.copy_in(*txn, "to", record);
                    match first {
                        Some(f) => prop_assert_eq!(&answer, f, "step 2 answered differently"),
                        None => {
                            if answer.is_ok() {
                                assert_moved(&b.record_of("to").expect("step 2 created the key"), &source);
                                to_is_copy = true;
                            }
                            *first = Some(answer);
                        }
                    }
                },
                Step::Finish => if let Some((txn, _, Some(first), finished)) = current.as_mut() {
                    let commit = first.is_ok();
                    a.finish(*txn, commit).expect("finish");
                    if !*finished {
                        if commit {
                            prop_assert_eq!(a.size_of("from"), None);
                        } else {
                            prop_assert_eq!(a.size_of("from"), Some(10));
                        }
                    }
                    *finished = true;
                },
                // Either may be refused (a missing key, say); whichever succeeds replaces `to`.
                Step::PutTo => if b.put("to", 1).is_ok() { to_is_copy = false; },
                Step::DeleteTo => if b.delete("to").is_ok() { to_is_copy = false; },
                Step::Restore { source } => {
                    let s = if source { &mut a } else { &mut b };
                    let back = ShardState::load_snapshot(&s.state.snapshot()).expect("load");
                    prop_assert_eq!(back.state_hash(), s.state.state_hash());
                    s.state = back;
                }
            }
            // The pin: `from` refuses writes exactly while an intent is open.
            let open = current.as_ref().is_some_and(|c| !c.3);
            prop_assert_eq!(a.state.renames_out().len(), usize::from(open));
        }
        // The key is in one place: at `from` unless a rename committed (`to` may have been
        // overwritten or deleted by other clients since, which is theirs to do).
        let committed = current.as_ref().is_some_and(|c| c.3 && matches!(c.2, Some(Ok(_))));
        prop_assert_eq!(a.size_of("from").is_some(), !committed);
        if committed {
            if to_is_copy {
                assert_moved(&b.record_of("to").expect("the renamed key"), &source);
            }
        } else {
            prop_assert_eq!(a.record_of("from"), Some(source), "a rename not committed leaves the key as it was");
        }
    }
}
