//! One Raft group on stratos-wal: proposals commit and apply, survive a restart (log replay and
//! snapshot + tail), and retries are answered, not re-applied.

use std::time::Duration;

use stratos_raft::group::{Group, GroupConfig};
use stratos_raft::transport::{PeerAddr, Transport};
use stratos_shard::*;

fn cfg(snapshot_after_entries: u64) -> GroupConfig {
    GroupConfig {
        node_id: 1,
        members: [(1, PeerAddr { raft: "127.0.0.1:0".into(), rpc: "127.0.0.1:0".into() })].into(),
        join: false,
        election_timeout_min_ms: 150,
        election_timeout_max_ms: 300,
        heartbeat_interval_ms: 50,
        snapshot_after_entries,
        snapshot_after_bytes: 0,
        snapshot_log_ratio: 0.0,
        snapshot_logs_to_keep: 1000,
        wal_segment_bytes: 16 << 20,
        wal_spare_segment: true,
    }
}

fn cmd(request_id: u64, op: Op) -> Command {
    Command { ctx: CommandContext { client_id: 42, request_id, time_ms: 1_000, principal: Principal::admin("root"), bucket: None }, op }
}

fn volume(name: &str) -> Op {
    Op::CreateVolume { volume: name.into(), owner: "u".into(), admin: "root".into(), quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] }
}

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(1 << 20).spawn(move || async move { f().await }).expect("executor").join().expect("join");
}

#[test]
fn proposals_survive_restart_with_and_without_snapshots() {
    for snapshot_after in [5, 1_000_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let p = path.clone();
        run(move || async move {
            let g = Group::open(7, &p, &cfg(snapshot_after), Transport::new(1, 1, 0, 8, None)).await.expect("open");
            g.wait_ready(Duration::from_secs(10)).await.expect("ready");
            // More entries than one piece of a replay (APPLY_READ_ENTRIES), so a restart
            // without a snapshot applies its log in several pieces.
            for i in 0..(2 * stratos_raft::log_store::APPLY_READ_ENTRIES + 20) {
                let out = g.propose(vec![cmd(i + 1, volume(&format!("vol{i:03}")))]).await.expect("propose");
                assert!(matches!(out[..], [Ok(Reply::Created { .. })]), "{out:?}");
            }
            // Snapshots are asked for by a task that looks every 100 ms: wait for one, so what
            // follows is a tail to replay after it.
            if snapshot_after == 5 {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while !p.join("snapshot").exists() {
                    assert!(std::time::Instant::now() < deadline, "no snapshot after 10 s");
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                }
            }
            // A batch is one entry; outcomes come back in order.
            let out = g.propose(vec![cmd(10_000, volume("batch-a")), cmd(10_001, volume("batch-a")), cmd(10_002, volume("batch-b"))]).await.expect("batch");
            assert!(matches!(out[..], [Ok(_), Err(OmError::VolumeExists(_)), Ok(_)]), "{out:?}");
            // A retry of request 1 is answered from the retry cache.
            let again = g.propose(vec![cmd(1, volume("vol000"))]).await.expect("retry");
            assert!(matches!(again[..], [Ok(Reply::Created { .. })]), "a retry is answered with the first outcome: {again:?}");
            g.shutdown().await;
        });
        let p = path.clone();
        run(move || async move {
            let g = Group::open(7, &p, &cfg(snapshot_after), Transport::new(1, 1, 0, 8, None)).await.expect("reopen");
            g.wait_ready(Duration::from_secs(10)).await.expect("ready");
            g.read_barrier().await.expect("barrier");
            let shard = g.state.shard.borrow();
            let page = shard.list_volumes(None, "", "", 1000).expect("list");
            let proposed = 2 * stratos_raft::log_store::APPLY_READ_ENTRIES as usize + 20 + 2;
            assert_eq!(page.items.len(), proposed, "every acknowledged volume is back (snapshot every {snapshot_after})");
            shard.check_invariants().expect("invariants");
        });
        if snapshot_after == 5 {
            assert!(path.join("snapshot").exists(), "a snapshot was written");
        }
    }
}

/// The apply hook (which labels the meta view) sees every applied entry, the initial membership
/// and a leader's blank entry included, so the index it was last given is the applied index: a
/// view labelled so never waits for an index that no proposal will bring. (It used to see
/// proposals only; a node restarted from a snapshot taken at a blank entry then labelled its
/// view ahead of its peers', and key writes waited on them for that index until timing out.)
/// A reopened group has re-applied its committed log before the hook can be set; the hook is
/// then given every index after the one applied when it was set.
#[test]
fn the_apply_hook_is_given_every_applied_index_blank_entries_too() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    for round in 0..2u64 {
        let p = path.clone();
        run(move || async move {
            let g = Group::open(7, &p, &cfg(1_000_000), Transport::new(1, 1, 0, 8, None)).await.expect("open");
            // Round 0: a fresh group, nothing applied yet; the log will hold the initial
            // membership (0), the first leader's blank entry (1) and the proposal (2). Round 1:
            // `open` re-applied those; the node leads again (its vote was committed), and the
            // proposal is index 3.
            let (first, target) = if round == 0 { (0, 2) } else { (g.state.applied_log_index() + 1, g.state.applied_log_index() + 1) };
            assert!(round == 0 || first == 3, "round 1: open re-applied up to {}", first - 1);
            let seen = Rc::new(RefCell::new(Vec::new()));
            let s = seen.clone();
            *g.state.on_apply.borrow_mut() = Some(Box::new(move |_, _, _, index| s.borrow_mut().push(index)));
            g.wait_ready(Duration::from_secs(10)).await.expect("ready");
            let out = g.propose(vec![cmd(1 + round, volume(&format!("vol{round}")))]).await.expect("propose");
            assert!(matches!(out[..], [Ok(Reply::Created { .. })]), "{out:?}");
            let start = std::time::Instant::now();
            while g.state.applied_log_index() < target {
                assert!(start.elapsed() < Duration::from_secs(10), "round {round}: applied {} of {target}; the hook was given {:?}; {}", g.state.applied_log_index(), seen.borrow(), g.metrics_now());
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            let applied = g.state.applied_log_index();
            let seen = seen.borrow().clone();
            assert_eq!(seen, (first..=applied).collect::<Vec<_>>(), "round {round}: the hook must be given every index from {first} up to the applied one, {applied}");
            g.shutdown().await;
        });
    }
}

/// A replica that cannot reach its peers keeps its term (Pre-Vote): it used to raise it at every
/// election timeout, and the first heartbeat answer carrying that term made a healthy leader
/// step down when the partition healed.
#[test]
fn a_replica_cut_off_from_its_peers_does_not_raise_its_term() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        // Two peers nobody listens for: every vote and pre-vote to them fails at once.
        let unreachable = |port: u16| PeerAddr { raft: format!("127.0.0.1:{port}"), rpc: format!("127.0.0.1:{port}") };
        let dead = [std::net::TcpListener::bind("127.0.0.1:0").expect("bind"), std::net::TcpListener::bind("127.0.0.1:0").expect("bind")].map(|l| l.local_addr().expect("addr").port());
        let mut c = cfg(1_000_000);
        c.members = [(1, unreachable(0)), (2, unreachable(dead[0])), (3, unreachable(dead[1]))].into();
        let g = Group::open(7, &path, &c, Transport::new(1, 1, 0, 8, None)).await.expect("open");
        // Initializing starts one election (term 1) at once; after that, about ten election
        // timeouts (150-300 ms each, plus the lease) must pass without another term.
        let metrics = || g.metrics_now();
        glommio::timer::sleep(Duration::from_millis(500)).await;
        let early = metrics();
        glommio::timer::sleep(Duration::from_secs(3)).await;
        let late = metrics();
        assert_eq!(late.current_leader, None, "no leader without a quorum");
        assert!(early.current_term <= 1, "{early}");
        assert_eq!(late.current_term, early.current_term, "a replica that cannot win must not raise its term: {late}");
        g.shutdown().await;
    });
}

/// The WAL keeps the commit point (a mark riding on the next flush, restated by every segment
/// header), and a reopened group re-applies its log up to it while it opens, before any
/// election: openraft otherwise read the whole log since the snapshot, 64 entries at a time, to
/// look for a membership entry, and re-applied it only once a leader said what was committed.
/// Snapshots left unfinished by the stop are removed.
#[test]
fn a_reopened_group_reapplies_its_committed_log_while_it_opens() {
    use openraft::storage::RaftLogStorage;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let applied = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (p, a) = (path.clone(), applied.clone());
    run(move || async move {
        let g = Group::open(7, &p, &cfg(1_000_000), Transport::new(1, 1, 0, 8, None)).await.expect("open");
        g.wait_ready(Duration::from_secs(10)).await.expect("ready");
        for i in 0..(2 * stratos_raft::log_store::APPLY_READ_ENTRIES + 20) {
            g.propose(vec![cmd(i + 1, volume(&format!("vol{i:03}")))]).await.expect("propose");
        }
        a.store(g.state.applied_log_index(), std::sync::atomic::Ordering::SeqCst);
        g.shutdown().await;
    });
    let before = applied.load(std::sync::atomic::Ordering::SeqCst);
    // As a node stopped while writing a snapshot and receiving another leaves them.
    std::fs::write(path.join("snapshot.tmp"), [7u8; 4096]).expect("write");
    std::fs::write(path.join("snapshot.recv"), [7u8; 100]).expect("write");
    let p = path.clone();
    run(move || async move {
        let g = Group::open(7, &p, &cfg(1_000_000), Transport::new(1, 1, 0, 8, None)).await.expect("reopen");
        assert!(!p.join("snapshot.tmp").exists() && !p.join("snapshot.recv").exists(), "unfinished snapshots are removed at open");
        let committed = g.log.clone().read_committed().await.expect("read committed");
        assert_eq!(committed.map(|c| c.index), Some(before), "the commit point of the last apply was kept");
        assert!(g.state.applied_log_index() >= before, "applied {} when open returned; {before} were committed", g.state.applied_log_index());
        assert_eq!(g.state.shard.borrow().list_volumes(None, "", "", 1000).expect("list").items.len(), 2 * stratos_raft::log_store::APPLY_READ_ENTRIES as usize + 20);
        g.shutdown().await;
    });
}

/// A read barrier's future stays small (openraft's own, ~4.7 KiB, is boxed): every OM read and
/// write future holds the largest future it awaits, and a write's awaits a read barrier on a
/// cold path, so an inline one made each key operation's future ~5 KiB larger, moved again at
/// every level of the call chain. The barrier still works: a lone leader passes it.
#[test]
fn a_read_barrier_is_a_small_future_and_passes_on_a_lone_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let g = Group::open(7, &path, &cfg(1_000_000), Transport::new(1, 1, 0, 8, None)).await.expect("open");
        g.wait_ready(Duration::from_secs(10)).await.expect("ready");
        let barrier = g.read_barrier();
        let size = std::mem::size_of_val(&barrier);
        assert!(size <= 512, "a read barrier's future is {size} bytes");
        barrier.await.expect("a lone leader's read barrier");
        g.shutdown().await;
    });
}
