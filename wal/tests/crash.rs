//! Crash consistency on the simulated disk: after a crash at any point, recovery yields a state
//! the writer passed through, at or after the last point it was told "durable".
//!
//! The model is the list of logical states (entries, purge point, vote) after every operation.
//! An operation whose ticket resolved is acknowledged; recovery must return one of the states
//! from the last acknowledged one to the last attempted one: never less (lost data), never
//! something else (invented or reordered data).

use futures_lite::future::block_on;
use proptest::prelude::*;
use stratos_wal::{AppendError, FlushError, LogId, OpenError, ReadError, SimDisk, SimRng, Wal, WalConfig};

const SECTOR: u64 = 512;

fn config() -> WalConfig {
    // Small segments so that rotation, sealing and segment deletion happen constantly.
    WalConfig { segment_bytes: 16 * 1024, payload_bytes_max: 1024 }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Model {
    entries: Vec<(u64, u64, Vec<u8>)>,
    next: Option<u64>,
    purged: Option<LogId>,
    vote: Option<Vec<u8>>,
    committed: Option<LogId>,
}

impl Model {
    fn first(&self) -> u64 {
        self.entries.first().map_or(self.next.unwrap_or(0), |e| e.0)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append { count: usize, size: usize },
    Sync,
    Truncate { back: u64 },
    Purge { forward: u64 },
    Vote(u8),
    /// Marks the entry `back` before the last one committed.
    Commit { back: u64 },
    CrashAfter { ops: u64, seed: u64 },
    Reopen,
    FailSync,
    /// The owner's background task makes a spare segment (renamed into place at rollover).
    PrepareSpare,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..6, 0usize..700).prop_map(|(count, size)| Op::Append { count, size }),
        4 => Just(Op::Sync),
        1 => (0u64..6).prop_map(|back| Op::Truncate { back }),
        1 => (0u64..12).prop_map(|forward| Op::Purge { forward }),
        1 => any::<u8>().prop_map(Op::Vote),
        2 => (0u64..4).prop_map(|back| Op::Commit { back }),
        2 => (0u64..12, any::<u64>()).prop_map(|(ops, seed)| Op::CrashAfter { ops, seed }),
        1 => Just(Op::Reopen),
        1 => Just(Op::FailSync),
        2 => Just(Op::PrepareSpare),
    ]
}

fn payload(index: u64, term: u64, size: usize) -> Vec<u8> {
    (0..size).map(|i| (index as usize * 31 + term as usize * 7 + i) as u8).collect()
}

async fn observe(wal: &Wal<SimDisk>) -> Model {
    let first = wal.first_log_index();
    let next = wal.next_log_index();
    let mut entries = Vec::new();
    for i in first..next.unwrap_or(first) {
        let p = wal.read_entry(i).await.unwrap_or_else(|e| panic!("read {i}: {e}"));
        entries.push((i, wal.entry_term(i).expect("term of a live entry"), p));
    }
    // Batched reads (spans of a few records, of one, of many; ranges cut at both ends) read
    // exactly what reads one by one read, from disk and from the unflushed batch alike.
    let end = next.unwrap_or(first);
    for span in [0, 300, 1000, 1 << 20] {
        for (from, to) in [(first, end), (first + 1, end), (first, end.saturating_sub(2)), (first + 2, end.saturating_sub(1))] {
            if from >= to {
                continue;
            }
            let got = wal.read_entries_spanned(from, to, span).await.unwrap_or_else(|e| panic!("read {from}..{to} in spans of {span}: {e}"));
            let want: Vec<Vec<u8>> = entries.iter().filter(|e| (from..to).contains(&e.0)).map(|e| e.2.clone()).collect();
            assert_eq!(got, want, "entries {from}..{to} read in spans of {span} bytes");
        }
    }
    if end > first {
        assert!(matches!(wal.read_entries(first, end + 1).await, Err(ReadError::OutOfRange { .. })), "a range past the end is an error");
    }
    Model { entries, next, purged: wal.purged(), vote: wal.vote(), committed: wal.committed() }
}

/// What a run did, for tests that must know their crash points were reached.
#[derive(Debug, Default)]
struct Ran {
    /// Restarts because the power-loss budget of a `CrashAfter` was spent.
    power_losses: u32,
    /// Storage operations from the fresh open to the end (meaningful for a run without
    /// restarts: a crash resets the disk's count).
    storage_ops: u64,
}

/// Runs `ops` against a WAL on a simulated disk, checking every recovery against the model.
fn run(ops: Vec<Op>) -> Result<Ran, TestCaseError> {
    block_on(async {
        let disk = SimDisk::new(SECTOR);
        let (mut wal, _) = Wal::open(disk.clone(), config()).await.expect("fresh open");
        let ops_at_open = disk.ops();
        let mut ran = Ran::default();
        let mut model = Model::default();
        // States the disk may hold after a crash: [0] is the acknowledged one.
        let mut candidates = vec![model.clone()];
        let mut term = 1u64;
        let mut pending_crash: Option<u64> = None;
        for op in ops {
            match op {
                Op::Append { count, size } => {
                    for _ in 0..count {
                        let index = model.next.unwrap_or(1);
                        let p = payload(index, term, size);
                        match wal.append_entry(index, term, &p) {
                            Ok(_) => {
                                model.entries.push((index, term, p));
                                model.next = Some(index + 1);
                                candidates.push(model.clone());
                            }
                            Err(AppendError::Poisoned(_)) => break,
                            Err(e) => return Err(TestCaseError::fail(format!("append: {e}"))),
                        }
                    }
                }
                Op::Truncate { back } => {
                    let Some(next) = model.next else { continue };
                    let from = next.saturating_sub(back).max(model.first());
                    if model.purged.is_some_and(|p| from <= p.log_index) {
                        continue;
                    }
                    if wal.truncate_suffix(from).is_ok() {
                        model.entries.retain(|e| e.0 < from);
                        model.next = Some(from);
                        if model.committed.is_some_and(|c| c.log_index >= from) {
                            model.committed = None;
                        }
                        term += 1; // a new leader wrote the replacement entries
                        candidates.push(model.clone());
                    }
                }
                Op::Purge { forward } => {
                    let up_to = model.first() + forward;
                    if model.purged.is_some_and(|p| up_to < p.log_index) {
                        continue;
                    }
                    let purged_term = model.entries.iter().find(|e| e.0 == up_to).map_or(term, |e| e.1);
                    let id = LogId { log_index: up_to, term: purged_term };
                    if wal.purge(id).is_ok() {
                        model.entries.retain(|e| e.0 > up_to);
                        model.purged = Some(id);
                        if model.next.is_none_or(|n| n <= up_to) {
                            model.next = Some(up_to + 1);
                        }
                        candidates.push(model.clone());
                    }
                }
                Op::Vote(v) => {
                    if wal.save_vote(&[v; 9]).is_ok() {
                        model.vote = Some(vec![v; 9]);
                        candidates.push(model.clone());
                    }
                }
                Op::Commit { back } => {
                    let Some(&(index, t, _)) = model.entries.iter().rev().nth(back as usize) else { continue };
                    let id = LogId { log_index: index, term: t };
                    if wal.mark_committed(id).is_ok() {
                        model.committed = Some(id);
                        candidates.push(model.clone());
                    }
                }
                Op::Sync => {
                    if wal.sync().await.is_ok() {
                        candidates = vec![model.clone()];
                    }
                }
                Op::FailSync => disk.fail_next_sync(),
                Op::PrepareSpare => {
                    let _ = wal.prepare_spare().await;
                }
                Op::CrashAfter { ops, seed } => {
                    disk.set_power_loss_after(ops);
                    pending_crash = Some(seed);
                }
                Op::Reopen => {}
            }
            // The machine dies once the op budget is spent (or a sync failed and we stop), or
            // when asked to restart cleanly.
            let poisoned = wal.poisoned().is_some();
            let restart = matches!(op, Op::Reopen) || poisoned || disk.powered_off();
            if !restart {
                continue;
            }
            ran.power_losses += u32::from(disk.powered_off());
            // A restart is always a power loss: unsynced writes may or may not survive.
            let seed = pending_crash.take().unwrap_or(0);
            let what = disk.crash(&mut SimRng::new(seed));
            drop(wal);
            let (w, _report) = match Wal::open(disk.clone(), config()).await {
                Ok(x) => x,
                Err(e @ OpenError::Corrupt { .. }) => {
                    return Err(TestCaseError::fail(format!("recovery called a crash corruption: {e} ({what})")));
                }
                Err(e) => return Err(TestCaseError::fail(format!("reopen: {e}"))),
            };
            wal = w;
            let found = observe(&wal).await;
            let Some(pos) = candidates.iter().position(|c| *c == found) else {
                return Err(TestCaseError::fail(format!(
                    "recovered a state the writer never had ({what}).\nfound: {found:?}\nacknowledged: {:?}\nlatest: {:?}",
                    candidates[0], candidates.last()
                )));
            };
            model = candidates[pos].clone();
            candidates = vec![model.clone()];
            if let Some((_, t, _)) = model.entries.last() {
                term = term.max(*t);
            }
            term += 1;
        }
        ran.storage_ops = disk.ops() - ops_at_open;
        Ok(ran)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn recovery_returns_an_acknowledged_or_later_state(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        run(ops)?;
    }
}

/// Every crash point of a fixed workload, with its own tearing seed each: the power fails after
/// exactly 0, 1, … N storage operations, N being all the workload does, so every iteration
/// crashes (and recovers and checks) at a different point and no iteration runs crash-free.
#[test]
fn every_crash_point_of_a_workload() {
    let body = || {
        let mut ops = Vec::new();
        for i in 0..30 {
            ops.push(Op::Append { count: 3, size: 100 + (i * 37) % 400 });
            if i % 3 == 0 {
                ops.push(Op::Sync);
            }
            if i == 10 {
                ops.push(Op::Purge { forward: 10 });
            }
            if i == 15 {
                ops.push(Op::Truncate { back: 2 });
            }
        }
        ops.push(Op::Sync);
        ops
    };
    // The workload's crash points: its storage operations, counted on a run without a crash.
    let clean = run(body()).unwrap_or_else(|e| panic!("the workload without a crash: {e}"));
    assert_eq!(clean.power_losses, 0);
    let points = clean.storage_ops;
    let syncs = body().iter().filter(|op| matches!(op, Op::Sync)).count() as u64;
    assert!(points >= syncs, "the workload does {points} storage operations, fewer than its {syncs} syncs");
    let workload = |crash_after: u64| {
        let mut ops = vec![Op::CrashAfter { ops: crash_after, seed: crash_after * 7919 }];
        ops.extend(body());
        ops
    };
    for crash_after in 0..=points {
        let ran = run(workload(crash_after)).unwrap_or_else(|e| panic!("crash after {crash_after} of {points} ops: {e}"));
        assert_eq!(ran.power_losses, 1, "the power failed after {crash_after} of the workload's {points} storage operations");
    }
    // One past the last point is no crash at all: the count above is exact, not short.
    let ran = run(workload(points + 1)).unwrap_or_else(|e| panic!("crash after {} ops: {e}", points + 1));
    assert_eq!(ran.power_losses, 0, "a budget past the workload's {points} operations never runs out");
}

/// A fresh log on `disk` with entries 1..=3 (100 bytes of `i` each, term 1), each synced as
/// its own batch: the header batch is sector 0, so the records start at 512, 1024 and 1536.
async fn three_batches(disk: &SimDisk) -> Wal<SimDisk> {
    let (wal, _) = Wal::open(disk.clone(), config()).await.expect("open");
    for i in 1..=3 {
        let _ = wal.append_entry(i, 1, &[i as u8; 100]).expect("append");
        wal.sync().await.expect("sync");
    }
    wal
}

#[test]
fn bit_rot_after_recovery_fails_a_batched_read_naming_the_record() {
    block_on(async {
        let disk = SimDisk::new(SECTOR);
        let wal = three_batches(&disk).await;
        let name = disk.file_names()[0].clone();
        disk.flip_bit(&name, 1024 + 40, 3);
        match wal.read_entries(1, 4).await {
            Err(ReadError::Corrupt { file, offset, reason }) => {
                assert_eq!(file, format!("sim:{name}"));
                assert_eq!(offset, 1024, "the second record, not the span's start");
                assert!(reason.contains("crc32 mismatch"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        assert_eq!(wal.read_entries(1, 2).await.unwrap(), vec![vec![1u8; 100]], "the records before it still read");
        assert_eq!(wal.read_entries(3, 4).await.unwrap(), vec![vec![3u8; 100]], "and those after it");
    });
}

#[test]
fn bit_rot_before_a_later_batch_is_corruption_naming_file_and_offset() {
    block_on(async {
        let disk = SimDisk::new(SECTOR);
        drop(three_batches(&disk).await);
        let name = disk.file_names()[0].clone();
        disk.flip_bit(&name, 512 + 40, 3);
        let err = Wal::open(disk.clone(), config()).await.unwrap_err();
        match err {
            OpenError::Corrupt { file, offset, reason } => {
                assert_eq!(file, format!("sim:{name}"));
                assert_eq!(offset, 512);
                assert!(reason.contains("crc32 mismatch"), "{reason}");
            }
            e => panic!("expected corruption, got {e}"),
        }
    });
}

#[test]
fn a_torn_last_batch_is_cut_and_the_log_continues_in_a_sealing_segment() {
    block_on(async {
        let disk = SimDisk::new(SECTOR);
        let (wal, _) = Wal::open(disk.clone(), config()).await.unwrap();
        let _ = wal.append_entry(1, 1, &[1; 100]).unwrap();
        wal.sync().await.unwrap();
        let _ = wal.append_entry(2, 1, &[2; 100]).unwrap();
        wal.sync().await.unwrap();
        drop(wal);
        // Damage the last batch (the second entry): as if its write had been torn.
        let name = disk.file_names()[0].clone();
        disk.flip_bit(&name, 1024 + 40, 0);
        let (wal, report) = Wal::open(disk.clone(), config()).await.unwrap();
        let torn = report.torn_tail.expect("a torn tail");
        assert_eq!(torn.offset, 1024);
        assert_eq!(wal.next_log_index(), Some(2));
        assert_eq!(disk.file_names().len(), 2, "sealed: a new segment continues the log");
        let _ = wal.append_entry(2, 2, b"again").unwrap();
        wal.sync().await.unwrap();
        drop(wal);
        let (wal, report) = Wal::open(disk.clone(), config()).await.unwrap();
        assert!(report.torn_tail.is_none(), "the torn bytes are never read as log again");
        assert_eq!(wal.read_entry(2).await.unwrap(), b"again");
        assert_eq!(wal.read_entry(1).await.unwrap(), vec![1; 100]);
    });
}

#[test]
fn a_failed_fdatasync_poisons_the_log_for_good() {
    block_on(async {
        let disk = SimDisk::new(SECTOR);
        let (wal, _) = Wal::open(disk.clone(), config()).await.unwrap();
        let t = wal.append_entry(1, 1, b"x").unwrap();
        disk.fail_next_sync();
        // The waiter is told why: the disk's own error, not a generic failure.
        let FlushError::Poisoned(why) = wal.wait_durable(t).await.expect_err("a failed fdatasync is not durable");
        assert!(why.contains("simulated fdatasync EIO"), "the poison names the failed fdatasync: {why}");
        assert_eq!(wal.poisoned().as_deref(), Some(why.as_str()));
        // Never retried: later syncs fail even though the disk would now succeed, with the
        // first failure's reason.
        let FlushError::Poisoned(again) = wal.sync().await.expect_err("a poisoned log never syncs again");
        assert_eq!(again, why);
        match wal.append_entry(2, 1, b"y") {
            Err(AppendError::Poisoned(r)) => assert_eq!(r, why),
            other => panic!("an append to a poisoned log: {other:?}"),
        }
    });
}

/// Appends entries 1..=200 of 300 bytes and syncs them: several segments' worth. Returns the
/// number of files on the disk.
async fn fill_segments(wal: &Wal<SimDisk>, disk: &SimDisk) -> usize {
    for i in 1..=200 {
        let _ = wal.append_entry(i, 3, &[7; 300]).expect("append");
    }
    wal.sync().await.expect("sync");
    let files = disk.file_names().len();
    assert!(files > 4, "the workload spans segments ({files})");
    files
}

#[test]
fn purge_deletes_dead_segments_and_keeps_the_purge_point_and_vote() {
    block_on(async {
        let disk = SimDisk::new(SECTOR);
        let (wal, _) = Wal::open(disk.clone(), config()).await.unwrap();
        let _ = wal.save_vote(b"term 3, voted for node 2").unwrap();
        let before = fill_segments(&wal, &disk).await;
        let _ = wal.purge(LogId { log_index: 190, term: 3 }).unwrap();
        wal.sync().await.unwrap();
        let after = disk.file_names().len();
        assert!(after < before, "segments holding only purged entries are deleted ({before} -> {after})");
        drop(wal);
        let (wal, _) = Wal::open(disk.clone(), config()).await.unwrap();
        assert_eq!(wal.purged(), Some(LogId { log_index: 190, term: 3 }));
        assert_eq!(wal.first_log_index(), 191);
        assert_eq!(wal.vote().as_deref(), Some(&b"term 3, voted for node 2"[..]));
        assert_eq!(wal.read_entry(200).await.unwrap(), vec![7; 300]);
    });
}

/// A purge appended while an earlier batch is between its write and its fdatasync: that
/// batch's completion must not delete segments by the purge, which is not durable yet. Before
/// the fix it did, and a crash then left the log without the purge record and without the
/// segments it covered: reopened, its first entry lay beyond the purge point it knew of.
#[test]
fn segments_are_deleted_only_once_the_purge_that_allows_it_is_durable() {
    block_on(async {
        let disk = SimDisk::new(SECTOR);
        let (wal, _) = Wal::open(disk.clone(), config()).await.unwrap();
        let segments = fill_segments(&wal, &disk).await;
        let t = wal.append_entry(201, 3, &[7; 300]).unwrap();
        disk.hold_syncs();
        {
            let mut flush = std::pin::pin!(wal.wait_durable(t));
            assert!(futures_lite::future::poll_once(flush.as_mut()).await.is_none(), "the flush waits on its fdatasync");
            let _ = wal.purge(LogId { log_index: 190, term: 3 }).unwrap();
            disk.release_syncs();
            flush.await.unwrap();
        }
        assert_eq!(disk.file_names().len(), segments, "no segment goes before the purge is durable");
        // Power lost before the purge's own flush: everything is still there, from entry 1.
        let _ = disk.crash(&mut SimRng::new(7));
        drop(wal);
        let (wal, _) = Wal::open(disk.clone(), config()).await.unwrap();
        assert_eq!((wal.purged(), wal.first_log_index()), (None, 1));
        assert_eq!(wal.read_entry(201).await.unwrap(), vec![7; 300]);
        // Made durable, the purge deletes what it covers.
        let _ = wal.purge(LogId { log_index: 190, term: 3 }).unwrap();
        wal.sync().await.unwrap();
        assert!(disk.file_names().len() < segments, "the purge's own flush cleans up");
        assert_eq!(wal.first_log_index(), 191);
    });
}

#[test]
fn a_commit_mark_costs_no_flush_and_outlives_the_segment_it_was_written_in() {
    block_on(async {
        let disk = SimDisk::new(SECTOR);
        let (wal, _) = Wal::open(disk.clone(), config()).await.unwrap();
        for i in 1..=20 {
            let _ = wal.append_entry(i, 3, &[7; 300]).unwrap();
        }
        wal.sync().await.unwrap();
        assert!(matches!(wal.mark_committed(LogId { log_index: 21, term: 3 }), Err(AppendError::CommitBeyondEnd { .. })), "a mark past the log's end is refused");
        let ops = disk.ops();
        wal.mark_committed(LogId { log_index: 20, term: 3 }).unwrap();
        assert_eq!(disk.ops(), ops, "a mark writes nothing by itself");
        assert_eq!(wal.committed(), Some(LogId { log_index: 20, term: 3 }));
        // Lost with the power: nothing flushed it.
        let _ = disk.crash(&mut SimRng::new(1));
        drop(wal);
        let (wal, _) = Wal::open(disk.clone(), config()).await.unwrap();
        assert_eq!(wal.committed(), None);
        // Written by the next flush, then restated by every later segment's header: purging the
        // segment that held the record keeps it.
        wal.mark_committed(LogId { log_index: 20, term: 3 }).unwrap();
        for i in 21..=200 {
            let _ = wal.append_entry(i, 3, &[7; 300]).unwrap();
        }
        wal.sync().await.unwrap();
        let _ = wal.purge(LogId { log_index: 190, term: 3 }).unwrap();
        wal.sync().await.unwrap();
        assert!(!disk.file_names().iter().any(|n| n.starts_with("00000000000000000001")), "the first segment is gone: {:?}", disk.file_names());
        drop(wal);
        let (wal, _) = Wal::open(disk.clone(), config()).await.unwrap();
        assert_eq!(wal.committed(), Some(LogId { log_index: 20, term: 3 }));
        // A truncation below the mark forgets it (Raft never does this; the log does not lie).
        wal.mark_committed(LogId { log_index: 199, term: 3 }).unwrap();
        let _ = wal.truncate_suffix(199).unwrap();
        assert_eq!(wal.committed(), None);
    });
}

#[test]
fn a_missing_middle_segment_is_reported() {
    block_on(async {
        let disk = SimDisk::new(SECTOR);
        let (wal, _) = Wal::open(disk.clone(), config()).await.unwrap();
        for i in 1..=150 {
            let _ = wal.append_entry(i, 1, &[1; 300]).unwrap();
        }
        wal.sync().await.unwrap();
        drop(wal);
        let names = disk.file_names();
        assert!(names.len() >= 3);
        use stratos_wal::Storage;
        disk.remove(&names[1]).await.unwrap();
        let err = Wal::open(disk.clone(), config()).await.unwrap_err().to_string();
        assert!(err.contains("segment missing"), "{err}");
    });
}

/// A prepared spare becomes the next segment at rollover (renamed, not created on the flush
/// path), a new spare can follow, and the log reads back whole after a reopen (which removes a
/// leftover spare).
#[test]
fn a_prepared_spare_becomes_the_next_segment() {
    block_on(async {
        let disk = SimDisk::new(SECTOR);
        let (wal, _) = Wal::open(disk.clone(), config()).await.expect("open");
        assert!(wal.needs_spare());
        wal.prepare_spare().await.expect("spare");
        assert!(!wal.needs_spare());
        assert!(disk.file_names().contains(&"spare.wal".to_string()));
        // 16 KiB segments: 100 entries of 600 bytes fill several.
        for round in 0..100u64 {
            let index = round + 1;
            let _ = wal.append_entry(index, 1, &payload(index, 1, 600)).expect("append");
            wal.sync().await.expect("sync");
            if round % 10 == 0 && wal.needs_spare() {
                wal.prepare_spare().await.expect("spare");
            }
        }
        let stats = wal.stats();
        assert!(stats.spares_used >= 2, "spares were used: {stats:?}");
        assert!(stats.segments_created > stats.spares_used, "and some rollovers found no spare ready: {stats:?}");
        let before = observe(&wal).await;
        drop(wal);
        let (wal, _) = Wal::open(disk.clone(), config()).await.expect("reopen");
        assert_eq!(observe(&wal).await, before);
        assert!(!disk.file_names().contains(&"spare.wal".to_string()), "a leftover spare is removed at open");
    });
}
