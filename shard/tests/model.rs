//! The state machine against a plain BTreeMap model of the namespace.
//!
//! Random command sequences over a small universe of names (so that collisions, missing
//! parents, non-empty deletes and quota limits happen often) run through `ShardState::apply`
//! and through the model; outcomes must agree in kind, the visible namespace must agree after
//! every step, and `check_invariants` must hold after every apply. Retries repeat earlier
//! (client, request) pairs and must get the first outcome back without a second effect.
//! Snapshots are taken and loaded in the middle; replaying the log from scratch must give the
//! same state hash.

use std::collections::BTreeMap;

use proptest::prelude::*;
use stratos_shard::*;

const VOLS: [&str; 3] = ["vol-a", "vol-b", "vol-c"];
const BUCKETS: [&str; 3] = ["bkt-a", "bkt-b", "bkt-c"];
const KEYS: [&str; 4] = ["k1", "k2", "dir/k3", "dir/k4"];
const USERS: [&str; 3] = ["root", "alice", "bob"];

#[derive(Debug, Clone)]
enum TOp {
    CreateVolume { v: usize, owner: usize, ns_quota: Option<u64> },
    DeleteVolume { v: usize, who: usize },
    CreateBucket { v: usize, b: usize, who: usize, bytes_quota: Option<u64> },
    DeleteBucket { v: usize, b: usize, who: usize },
    OpenKey { v: usize, b: usize, k: usize, blocks: usize, who: usize },
    Commit { pick: usize, used: usize, len: u64, wrong_key: bool },
    Delete { v: usize, b: usize, k: usize },
    DeleteMany { v: usize, b: usize, ks: Vec<usize> },
    Rename { v: usize, b: usize, from: usize, to: usize },
    Expire { advance_ms: u64 },
    Retry { back: usize },
    SnapshotRoundTrip,
    /// Begins a snapshot written a step at a time while the other operations go on.
    SnapshotBegin,
    SnapshotStep { budget: usize },
}

fn op() -> impl Strategy<Value = TOp> {
    prop_oneof![
        3 => (0..3usize, 0..3usize, proptest::option::weighted(0.2, 1..3u64)).prop_map(|(v, owner, ns_quota)| TOp::CreateVolume { v, owner, ns_quota }),
        1 => (0..3usize, 0..3usize).prop_map(|(v, who)| TOp::DeleteVolume { v, who }),
        4 => (0..3usize, 0..3usize, 0..3usize, proptest::option::weighted(0.2, 1..5000u64)).prop_map(|(v, b, who, bytes_quota)| TOp::CreateBucket { v, b, who, bytes_quota }),
        1 => (0..3usize, 0..3usize, 0..3usize).prop_map(|(v, b, who)| TOp::DeleteBucket { v, b, who }),
        6 => (0..3usize, 0..3usize, 0..4usize, 0..3usize, 0..3usize).prop_map(|(v, b, k, blocks, who)| TOp::OpenKey { v, b, k, blocks, who }),
        6 => (0..8usize, 0..3usize, 0..2000u64, proptest::bool::weighted(0.1)).prop_map(|(pick, used, len, wrong_key)| TOp::Commit { pick, used, len, wrong_key }),
        2 => (0..3usize, 0..3usize, 0..4usize).prop_map(|(v, b, k)| TOp::Delete { v, b, k }),
        1 => (0..3usize, 0..3usize, proptest::collection::vec(0..4usize, 0..4)).prop_map(|(v, b, ks)| TOp::DeleteMany { v, b, ks }),
        2 => (0..3usize, 0..3usize, 0..4usize, 0..4usize).prop_map(|(v, b, from, to)| TOp::Rename { v, b, from, to }),
        1 => (0..20_000u64).prop_map(|advance_ms| TOp::Expire { advance_ms }),
        2 => (0..20usize).prop_map(|back| TOp::Retry { back }),
        1 => Just(TOp::SnapshotRoundTrip),
        1 => Just(TOp::SnapshotBegin),
        3 => (0..4usize).prop_map(|budget| TOp::SnapshotStep { budget }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct MVolume { owner: String, ns_quota: u64 }
#[derive(Debug, Clone, PartialEq)]
struct MBucket { owner: String, bytes_quota: u64 }
#[derive(Debug, Clone, PartialEq)]
struct MOpen { v: String, b: String, k: String, blocks: Vec<BlockLocation>, expires_ms: u64 }

#[derive(Debug, Default)]
struct Model {
    volumes: BTreeMap<String, MVolume>,
    buckets: BTreeMap<(String, String), MBucket>,
    keys: BTreeMap<(String, String, String), (u64, Vec<BlockLocation>)>,
    open: BTreeMap<u64, MOpen>,
    deleted: Vec<BlockLocation>,
}

impl Model {
    fn bucket_missing(&self, v: &str, b: &str) -> Option<&'static str> {
        if !self.buckets.contains_key(&(v.into(), b.into())) {
            return Some(if self.volumes.contains_key(v) { "BucketNotFound" } else { "VolumeNotFound" });
        }
        None
    }
    fn may_write(&self, who: &str, v: &str, b: &str) -> bool {
        who == "root" || self.buckets[&(v.to_string(), b.to_string())].owner == who || self.volumes[v].owner == who
    }
    fn used_bytes(&self, v: &str, b: &str) -> u64 {
        self.keys.iter().filter(|((kv, kb, _), _)| kv == v && kb == b).map(|(_, (s, _))| s * 3).sum()
    }
}

fn code(o: &Outcome) -> &'static str {
    match o {
        Ok(_) => "Ok",
        Err(e) => match e {
            OmError::InvalidName { .. } => "InvalidName",
            OmError::InvalidArgument(_) => "InvalidArgument",
            OmError::VolumeNotFound(_) => "VolumeNotFound",
            OmError::VolumeExists(_) => "VolumeExists",
            OmError::VolumeNotEmpty(..) => "VolumeNotEmpty",
            OmError::BucketNotFound(_) => "BucketNotFound",
            OmError::BucketExists(_) => "BucketExists",
            OmError::BucketNotEmpty(..) => "BucketNotEmpty",
            OmError::KeyNotFound(_) => "KeyNotFound",
            OmError::KeyExists(_) => "KeyExists",
            OmError::OpenKeyNotFound(..) => "OpenKeyNotFound",
            OmError::QuotaExceeded { .. } => "QuotaExceeded",
            OmError::PermissionDenied { .. } => "PermissionDenied",
            OmError::RetryTooOld { .. } => "RetryTooOld",
            OmError::KeyBusy(_) => "KeyBusy",
            OmError::NeedsAllowance { .. } => "NeedsAllowance",
            OmError::S3SecretNotFound(_) => "S3SecretNotFound",
            OmError::PreconditionFailed(_) => "PreconditionFailed",
            OmError::NoSuchUpload(_) => "NoSuchUpload",
            OmError::InvalidPart(_) => "InvalidPart",
        },
    }
}

fn principal(who: &str) -> Principal {
    if who == "root" { Principal::admin(who) } else { Principal::user(who) }
}

struct Harness {
    state: ShardState,
    model: Model,
    log: Vec<(u64, Vec<u8>)>,
    sent: Vec<(Command, Outcome)>,
    log_index: u64,
    time_ms: u64,
    next_block: u64,
    request_id: u64,
    /// A snapshot being written: its build, the bytes so far, the state's hash at its begin.
    building: Option<(SnapshotBuild, Vec<u8>, u64)>,
}

impl Harness {
    fn apply(&mut self, who: &str, op: Op) -> Outcome {
        self.request_id += 1;
        let cmd = Command {
            ctx: CommandContext { client_id: 7, request_id: self.request_id, time_ms: self.time_ms, principal: principal(who), bucket: None },
            op,
        };
        self.apply_cmd(cmd)
    }

    fn apply_cmd(&mut self, cmd: Command) -> Outcome {
        self.log_index += 1;
        // Commands travel as bytes, as they will through the Raft log.
        let bytes = cmd.encode().to_vec();
        let decoded = Command::decode(&bytes).expect("a command decodes");
        assert_eq!(decoded, cmd);
        let out = self.state.apply(self.log_index, &decoded);
        self.log.push((self.log_index, bytes));
        self.sent.push((cmd, out.clone()));
        if let Err(e) = self.state.check_invariants() {
            panic!("invariant broken after {:?}: {e}", self.sent.last().map(|s| &s.0.op));
        }
        out
    }
}

fn run(ops: Vec<TOp>) -> Result<(), TestCaseError> {
    let mut h = Harness { state: ShardState::new(), model: Model::default(), log: vec![], sent: vec![], log_index: 0, time_ms: 1_000_000, next_block: 1, request_id: 0, building: None };
    for op in ops {
        h.time_ms += 1;
        match op {
            TOp::CreateVolume { v, owner, ns_quota } => {
                let (vol, owner) = (VOLS[v], USERS[owner]);
                let out = h.apply("root", Op::CreateVolume { volume: vol.into(), owner: owner.into(), admin: "root".into(), quota_bytes: QUOTA_UNLIMITED, quota_namespace: ns_quota.unwrap_or(QUOTA_UNLIMITED), acls: vec![], metadata: vec![] });
                let want = if h.model.volumes.contains_key(vol) { "VolumeExists" } else {
                    h.model.volumes.insert(vol.into(), MVolume { owner: owner.into(), ns_quota: ns_quota.unwrap_or(QUOTA_UNLIMITED) });
                    "Ok"
                };
                prop_assert_eq!(code(&out), want, "{:?}", out);
            }
            TOp::DeleteVolume { v, who } => {
                let (vol, who) = (VOLS[v], USERS[who]);
                let out = h.apply(who, Op::DeleteVolume { volume: vol.into() });
                let want = match h.model.volumes.get(vol) {
                    None => "VolumeNotFound",
                    Some(m) if who != "root" && m.owner != who => "PermissionDenied",
                    Some(_) if h.model.buckets.keys().any(|(bv, _)| bv == vol) => "VolumeNotEmpty",
                    Some(_) => { h.model.volumes.remove(vol); "Ok" }
                };
                prop_assert_eq!(code(&out), want, "{:?}", out);
            }
            TOp::CreateBucket { v, b, who, bytes_quota } => {
                let (vol, bkt, who) = (VOLS[v], BUCKETS[b], USERS[who]);
                let out = h.apply(who, Op::CreateBucket { volume: vol.into(), bucket: bkt.into(), owner: None, versioning: false, replication: Replication::RatisThree, quota_bytes: bytes_quota.unwrap_or(QUOTA_UNLIMITED), quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] });
                let want = match h.model.volumes.get(vol) {
                    None => "VolumeNotFound",
                    Some(m) if who != "root" && m.owner != who => "PermissionDenied",
                    Some(_) if h.model.buckets.contains_key(&(vol.into(), bkt.into())) => "BucketExists",
                    Some(m) if h.model.buckets.keys().filter(|(bv, _)| bv == vol).count() as u64 + 1 > m.ns_quota => "QuotaExceeded",
                    Some(_) => { h.model.buckets.insert((vol.into(), bkt.into()), MBucket { owner: who.into(), bytes_quota: bytes_quota.unwrap_or(QUOTA_UNLIMITED) }); "Ok" }
                };
                prop_assert_eq!(code(&out), want, "{:?}", out);
            }
            TOp::DeleteBucket { v, b, who } => {
                let (vol, bkt, who) = (VOLS[v], BUCKETS[b], USERS[who]);
                let out = h.apply(who, Op::DeleteBucket { volume: vol.into(), bucket: bkt.into() });
                let want = if let Some(m) = h.model.bucket_missing(vol, bkt) { m }
                    else if !h.model.may_write(who, vol, bkt) { "PermissionDenied" }
                    else if h.model.keys.keys().any(|(kv, kb, _)| kv == vol && kb == bkt) || h.model.open.values().any(|o| o.v == vol && o.b == bkt) { "BucketNotEmpty" }
                    else { h.model.buckets.remove(&(vol.into(), bkt.into())); "Ok" };
                prop_assert_eq!(code(&out), want, "{:?}", out);
            }
            TOp::OpenKey { v, b, k, blocks, who } => {
                let (vol, bkt, key, who) = (VOLS[v], BUCKETS[b], KEYS[k], USERS[who]);
                let blocks: Vec<BlockLocation> = (0..blocks).map(|_| { h.next_block += 1; BlockLocation { container_id: 1, local_id: h.next_block, pipeline_id: 9, length: 0 } }).collect();
                let expires_ms = h.time_ms + 10_000;
                let out = h.apply(who, Op::OpenKey { volume: vol.into(), bucket: bkt.into(), key: key.into(), replication: None, blocks: blocks.clone(), expires_ms, metadata: vec![] });
                let want = if let Some(m) = h.model.bucket_missing(vol, bkt) { m } else if !h.model.may_write(who, vol, bkt) { "PermissionDenied" } else { "Ok" };
                prop_assert_eq!(code(&out), want, "{:?}", out);
                if let Ok(Reply::KeyOpened { open_id, .. }) = out {
                    h.model.open.insert(open_id, MOpen { v: vol.into(), b: bkt.into(), k: key.into(), blocks, expires_ms });
                } else {
                    // Blocks of a refused open were never recorded: nothing to free.
                }
            }
            TOp::Commit { pick, used, len, wrong_key } => {
                let Some((&open_id, o)) = h.model.open.iter().nth(pick % h.model.open.len().max(1)).map(|(a, b)| (a, b.clone())) else { continue };
                let used = used.min(o.blocks.len());
                let blocks: Vec<BlockLocation> = o.blocks[..used].iter().map(|b| BlockLocation { length: len, ..*b }).collect();
                let size = len * used as u64;
                let key = if wrong_key { "not-the-key".to_string() } else { o.k.clone() };
                let out = h.apply("root", Op::CommitKey { volume: o.v.clone(), bucket: o.b.clone(), key: key.clone(), open_id, data_size: size, blocks: blocks.clone() });
                let path = (o.v.clone(), o.b.clone(), o.k.clone());
                let old = h.model.keys.get(&path).map(|k| k.0 * 3).unwrap_or(0);
                let quota = h.model.buckets[&(o.v.clone(), o.b.clone())].bytes_quota;
                let want = if wrong_key { "OpenKeyNotFound" }
                    else if size * 3 > old && h.model.used_bytes(&o.v, &o.b) - old + size * 3 > quota { "QuotaExceeded" }
                    else {
                        h.model.open.remove(&open_id);
                        if let Some((_, old_blocks)) = h.model.keys.insert(path, (size, blocks.clone())) {
                            h.model.deleted.extend(old_blocks);
                        }
                        h.model.deleted.extend(o.blocks[used..].iter().copied());
                        "Ok"
                    };
                prop_assert_eq!(code(&out), want, "{:?}", out);
            }
            TOp::Delete { v, b, k } => {
                let (vol, bkt, key) = (VOLS[v], BUCKETS[b], KEYS[k]);
                let out = h.apply("root", Op::DeleteKey { volume: vol.into(), bucket: bkt.into(), key: key.into() });
                let want = if let Some(m) = h.model.bucket_missing(vol, bkt) { m } else {
                    match h.model.keys.remove(&(vol.into(), bkt.into(), key.into())) {
                        Some((_, blocks)) => { h.model.deleted.extend(blocks); "Ok" }
                        None => "KeyNotFound",
                    }
                };
                prop_assert_eq!(code(&out), want, "{:?}", out);
            }
            TOp::DeleteMany { v, b, ks } => {
                let (vol, bkt) = (VOLS[v], BUCKETS[b]);
                let names: Vec<String> = ks.iter().map(|&k| KEYS[k].to_string()).collect();
                let out = h.apply("root", Op::DeleteKeys { volume: vol.into(), bucket: bkt.into(), keys: names.clone() });
                if let Some(m) = h.model.bucket_missing(vol, bkt) {
                    prop_assert_eq!(code(&out), m);
                } else {
                    let mut missing = vec![];
                    let mut deleted = 0;
                    for n in &names {
                        match h.model.keys.remove(&(vol.into(), bkt.into(), n.clone())) {
                            Some((_, blocks)) => { h.model.deleted.extend(blocks); deleted += 1; }
                            None => missing.push(n.clone()),
                        }
                    }
                    prop_assert_eq!(out, Ok(Reply::KeysDeleted { deleted, missing }));
                }
            }
            TOp::Rename { v, b, from, to } => {
                let (vol, bkt, from, to) = (VOLS[v], BUCKETS[b], KEYS[from], KEYS[to]);
                let out = h.apply("root", Op::RenameKey { volume: vol.into(), bucket: bkt.into(), from: from.into(), to: to.into() });
                let want = if from == to { "InvalidArgument" } else if let Some(m) = h.model.bucket_missing(vol, bkt) { m }
                    else if h.model.keys.contains_key(&(vol.into(), bkt.into(), to.into())) { "KeyExists" }
                    else { match h.model.keys.remove(&(vol.into(), bkt.into(), from.into())) {
                        Some(k) => { h.model.keys.insert((vol.into(), bkt.into(), to.into()), k); "Ok" }
                        None => "KeyNotFound",
                    } };
                prop_assert_eq!(code(&out), want, "{:?}", out);
            }
            TOp::Expire { advance_ms } => {
                h.time_ms += advance_ms;
                let now = h.time_ms;
                let out = h.apply("root", Op::ExpireOpenKeys { limit: 1000 });
                let expired: Vec<u64> = h.model.open.iter().filter(|(_, o)| o.expires_ms <= now).map(|(id, _)| *id).collect();
                for id in &expired {
                    let o = h.model.open.remove(id).expect("listed");
                    h.model.deleted.extend(o.blocks);
                }
                prop_assert_eq!(out, Ok(Reply::Expired { open_keys: expired.len() as u64, sessions: 0 }));
            }
            TOp::Retry { back } => {
                let retryable: Vec<(Command, Outcome)> = h.sent.iter().filter(|(c, _)| c.op.is_retryable()).cloned().collect();
                let Some((cmd, first)) = retryable.iter().rev().nth(back % retryable.len().max(1)).cloned() else { continue };
                let before = h.state.snapshot();
                let op = format!("{:?}", cmd.op);
                let out = h.apply_cmd(cmd);
                prop_assert_eq!(&out, &first, "a retry must get the first outcome");
                // No second effect: only the applied index and the retry cache's bookkeeping may
                // differ; every table of the namespace is the same, byte for byte.
                let after = h.state.snapshot();
                prop_assert!(tables_of(&before) == tables_of(&after), "a retry of {} changed the namespace", op);
            }
            TOp::SnapshotRoundTrip => {
                let snap = h.state.snapshot();
                let loaded = ShardState::load_snapshot(&snap).expect("a fresh snapshot loads");
                loaded.check_invariants().map_err(TestCaseError::fail)?;
                prop_assert_eq!(loaded.state_hash(), h.state.state_hash());
                h.state = loaded;
                // A snapshot being written of the state replaced (as an install does) fails.
                if let Some((mut b, mut bytes, _)) = h.building.take() {
                    prop_assert!(matches!(h.state.snapshot_step(&mut b, &mut bytes, 10), Err(SnapshotError::Replaced)));
                }
            }
            TOp::SnapshotBegin => {
                let hash = h.state.state_hash();
                // After some bytes, as the server writes the group's head first: frames must
                // not assume they start 8-aligned in the buffer.
                let mut bytes = vec![0xAB; 3];
                match h.state.begin_snapshot(&mut bytes) {
                    Some(b) => {
                        prop_assert!(h.building.is_none());
                        h.building = Some((b, bytes, hash));
                    }
                    None => prop_assert!(h.building.is_some(), "a snapshot refused with none being written"),
                }
            }
            TOp::SnapshotStep { budget } => {
                if let Some((mut b, mut bytes, hash)) = h.building.take() {
                    if h.state.snapshot_step(&mut b, &mut bytes, budget).expect("a step") {
                        check_written(&bytes, hash)?;
                    } else {
                        h.building = Some((b, bytes, hash));
                    }
                }
            }
        }
        compare(&h.state, &h.model)?;
    }
    if let Some((mut b, mut bytes, hash)) = h.building.take() {
        while !h.state.snapshot_step(&mut b, &mut bytes, 2).expect("a step") {}
        check_written(&bytes, hash)?;
        compare(&h.state, &h.model)?;
    }
    // Replaying the same log into a fresh state, twice, gives identical states.
    let replay = |log: &[(u64, Vec<u8>)]| {
        let mut s = ShardState::new();
        for (i, bytes) in log {
            let _ = s.apply(*i, &Command::decode(bytes).expect("logged commands decode"));
        }
        s.state_hash()
    };
    let (a, b) = (replay(&h.log), replay(&h.log));
    prop_assert_eq!(a, b);
    prop_assert_eq!(a, h.state.state_hash());
    Ok(())
}

/// A snapshot's table frames: all of it after the small-state frame (the applied index, the
/// retry sessions, the counters) and the sessions' outcome frames, by the format in
/// stratos-shard's `snapshot` module: a 32-byte header, then frames of `kind u32 | count u32 |
/// len u32 | crc32 u32 | payload`, the small state (kind 1) first, then outcomes (kind 8).
fn tables_of(snapshot: &[u8]) -> &[u8] {
    let word = |at: usize| u32::from_le_bytes(snapshot[at..at + 4].try_into().expect("4 bytes")) as usize;
    assert_eq!(word(32), 1, "the small-state frame comes first");
    let mut at = 32 + 16 + word(40);
    while word(at) == 8 {
        at += 16 + word(at + 8);
    }
    &snapshot[at..]
}

/// A snapshot written a step at a time while commands applied loads as the state it began on.
fn check_written(bytes: &[u8], hash_at_begin: u64) -> Result<(), TestCaseError> {
    let loaded = ShardState::load_snapshot(&bytes[3..]).map_err(|e| TestCaseError::fail(format!("a snapshot written in steps loads: {e}")))?;
    prop_assert_eq!(loaded.state_hash(), hash_at_begin, "the snapshot is the state at its begin");
    Ok(())
}

fn compare(s: &ShardState, m: &Model) -> Result<(), TestCaseError> {
    let vols: Vec<String> = s.list_volumes(None, "", "", 100).expect("a listing").items.iter().map(|v| v.name.to_string()).collect();
    prop_assert_eq!(vols, m.volumes.keys().cloned().collect::<Vec<_>>());
    for user in USERS {
        let mine: Vec<String> = s.list_volumes(Some(user), "", "", 100).expect("a listing").items.iter().map(|v| v.name.to_string()).collect();
        let want: Vec<String> = m.volumes.iter().filter(|(_, v)| v.owner == user).map(|(n, _)| n.clone()).collect();
        prop_assert_eq!(mine, want);
    }
    for v in m.volumes.keys() {
        let buckets: Vec<String> = s.list_buckets(v, "", "", 100).expect("a listing").items.iter().map(|b| b.name.to_string()).collect();
        let want: Vec<String> = m.buckets.keys().filter(|(bv, _)| bv == v).map(|(_, b)| b.clone()).collect();
        prop_assert_eq!(buckets, want);
    }
    for (v, b) in m.buckets.keys() {
        let page = s.list_keys(v, b, "", "", 100).expect("a listing");
        let got: Vec<(String, u64)> = page.items.iter().map(|k| (k.name.to_string(), k.record.data_size.to_native())).collect();
        let want: Vec<(String, u64)> = m.keys.iter().filter(|((kv, kb, _), _)| kv == v && kb == b).map(|((_, _, k), (s, _))| (k.clone(), *s)).collect();
        prop_assert_eq!(&got, &want);
        // Paging by one reaches the same keys in the same order.
        let mut after = String::new();
        let mut paged = vec![];
        loop {
            let p = s.list_keys(v, b, "", &after, 1).expect("a listing");
            let Some(k) = p.items.first() else { break };
            paged.push(k.name.to_string());
            after = k.name.to_string();
            if !p.truncated { break; }
        }
        prop_assert_eq!(paged, want.iter().map(|w| w.0.clone()).collect::<Vec<_>>());
        let dir: Vec<String> = s.list_keys(v, b, "dir/", "", 100).expect("a listing").items.iter().map(|k| k.name.to_string()).collect();
        prop_assert_eq!(dir, want.iter().filter(|w| w.0.starts_with("dir/")).map(|w| w.0.clone()).collect::<Vec<_>>());
    }
    let mut deleted: Vec<BlockLocation> = s.list_deleted_blocks(None, 1_000_000).iter().flat_map(|(_, r)| r.blocks.iter().map(|b| b.native())).collect();
    let mut want = m.deleted.clone();
    deleted.sort();
    want.sort();
    prop_assert_eq!(deleted, want, "the deleted-blocks queue");
    prop_assert_eq!(s.stats().open_keys, m.open.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
    #[test]
    fn the_state_machine_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}
