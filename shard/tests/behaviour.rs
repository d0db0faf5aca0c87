//! Targeted behaviours the model test does not reach: ACLs, volume quotas, hostile snapshots,
//! and what errors say (the retry window: `retry.rs`).

use stratos_shard::*;

use crate::carried::Shard;

struct S {
    state: ShardState,
    log_index: u64,
    request_id: u64,
}

impl S {
    fn new() -> Self {
        Self { state: ShardState::new(), log_index: 0, request_id: 0 }
    }
    fn run(&mut self, who: Principal, op: Op) -> Outcome {
        self.request_id += 1;
        self.log_index += 1;
        let cmd = Command { ctx: CommandContext { client_id: 1, request_id: self.request_id, time_ms: 5_000, principal: who, bucket: None }, op };
        let out = self.state.apply(self.log_index, &cmd);
        self.state.check_invariants().expect("invariants");
        out
    }
    fn volume(&mut self, name: &str, owner: &str, quota_bytes: u64) {
        let op = Op::CreateVolume { volume: name.into(), owner: owner.into(), admin: "root".into(), quota_bytes, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] };
        self.run(Principal::admin("root"), op).expect("volume");
    }
    fn bucket(&mut self, who: Principal, v: &str, b: &str, acls: Vec<Acl>) -> Outcome {
        self.run(who, Op::CreateBucket { volume: v.into(), bucket: b.into(), owner: None, versioning: false, replication: Replication::RatisOne, quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls, metadata: vec![] })
    }
    fn put(&mut self, who: Principal, v: &str, b: &str, k: &str, size: u64) -> Outcome {
        let block = BlockLocation { container_id: 1, local_id: self.log_index + 100, pipeline_id: 1, length: size };
        let open = self.run(who.clone(), Op::OpenKey { volume: v.into(), bucket: b.into(), key: k.into(), replication: None, blocks: vec![block], expires_ms: 60_000, metadata: vec![] })?;
        let Reply::KeyOpened { open_id, .. } = open else { panic!("{open:?}") };
        self.run(who, Op::CommitKey { volume: v.into(), bucket: b.into(), key: k.into(), open_id, data_size: size, blocks: vec![block] })
    }
}

#[test]
fn a_bucket_acl_grants_writes_to_a_named_user_and_nobody_else() {
    let mut s = S::new();
    s.volume("vol1", "alice", QUOTA_UNLIMITED);
    let acl = Acl { kind: AclKind::User, name: "carol".into(), rights: rights::WRITE | rights::READ };
    s.bucket(Principal::user("alice"), "vol1", "shared", vec![acl]).unwrap();
    assert!(s.put(Principal::user("carol"), "vol1", "shared", "k", 10).is_ok());
    let err = s.put(Principal::user("mallory"), "vol1", "shared", "k", 10).unwrap_err();
    assert_eq!(err.to_string(), "permission denied: mallory may not write keys in vol1/shared");
    assert!(s.state.check_bucket_access(&Principal::user("carol"), "vol1", "shared", rights::READ).is_ok());
    assert!(s.state.check_bucket_access(&Principal::user("mallory"), "vol1", "shared", rights::READ).is_err());
}

#[test]
fn the_volume_bytes_quota_bounds_all_its_buckets_together() {
    let mut s = S::new();
    s.volume("vol1", "alice", 100);
    let alice = Principal::user("alice");
    s.bucket(alice.clone(), "vol1", "bk1", vec![]).unwrap();
    s.bucket(alice.clone(), "vol1", "bk2", vec![]).unwrap();
    s.put(alice.clone(), "vol1", "bk1", "k", 60).unwrap();
    let err = s.put(alice.clone(), "vol1", "bk2", "k", 50).unwrap_err();
    assert!(matches!(err, OmError::QuotaExceeded { used: 60, adding: 50, quota: 100, .. }), "{err}");
    // An overwrite with a smaller size is always allowed, and frees room.
    s.put(alice.clone(), "vol1", "bk1", "k", 10).unwrap();
    s.put(alice, "vol1", "bk2", "k", 50).unwrap();
    assert_eq!(s.state.volume_info("vol1").unwrap().usage.used_bytes, 60);
}

#[test]
fn bad_names_and_arguments_say_what_is_wrong() {
    let mut s = S::new();
    let e = s.run(Principal::admin("root"), Op::CreateVolume { volume: "Vol_1".into(), owner: "a".into(), admin: "a".into(), quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] }).unwrap_err();
    assert_eq!(e.to_string(), "invalid volume name \"Vol_1\": character 'V' is not allowed (lowercase letters, digits, '-' and '.')");
    let e = s.run(Principal::user("bob"), Op::CreateVolume { volume: "vol1".into(), owner: "a".into(), admin: "a".into(), quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] }).unwrap_err();
    assert!(matches!(e, OmError::PermissionDenied { .. }));
    s.volume("vol1", "root", QUOTA_UNLIMITED);
    s.bucket(Principal::admin("root"), "vol1", "bkt", vec![]).unwrap();
    let e = s.put(Principal::admin("root"), "vol1", "bkt", &"x".repeat(1025), 1).unwrap_err();
    assert!(e.to_string().starts_with("invalid key name"), "{e}");
    let e = s.put(Principal::admin("root"), "vol1", "nope", "k", 1).unwrap_err();
    assert_eq!(e.to_string(), "bucket vol1/nope not found");
    let e = s.state.list_keys("vol1", "bkt", "", "", 0).unwrap_err();
    assert!(e.to_string().contains("list limit"), "{e}");
}

#[test]
fn a_commit_may_not_claim_blocks_it_was_not_given() {
    let mut s = S::new();
    s.volume("vol1", "root", QUOTA_UNLIMITED);
    s.bucket(Principal::admin("root"), "vol1", "bkt", vec![]).unwrap();
    let mine = BlockLocation { container_id: 1, local_id: 1, pipeline_id: 1, length: 5 };
    let Ok(Reply::KeyOpened { open_id, .. }) = s.run(Principal::admin("root"), Op::OpenKey { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), replication: None, blocks: vec![mine], expires_ms: 60_000, metadata: vec![] }) else { panic!() };
    let theirs = BlockLocation { local_id: 99, ..mine };
    let e = s.run(Principal::admin("root"), Op::CommitKey { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), open_id, data_size: 5, blocks: vec![theirs] }).unwrap_err();
    assert_eq!(e.to_string(), "invalid argument: block 1:99 was not allocated to this key");
    let e = s.run(Principal::admin("root"), Op::CommitKey { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), open_id, data_size: 6, blocks: vec![mine] }).unwrap_err();
    assert!(e.to_string().contains("sum of the block lengths"), "{e}");
}

#[test]
fn a_damaged_snapshot_is_an_error_never_a_panic() {
    let mut s = S::new();
    s.volume("vol1", "root", QUOTA_UNLIMITED);
    s.bucket(Principal::admin("root"), "vol1", "bkt", vec![]).unwrap();
    s.put(Principal::admin("root"), "vol1", "bkt", "k", 3).unwrap();
    let snap = s.state.snapshot();
    assert!(ShardState::load_snapshot(&snap).is_ok());
    // The frames' offsets, by the format (a 32-byte header, then frames of a 16-byte header
    // whose third word is the payload's length): each error must name the frame it is in.
    let mut frames = vec![];
    let mut at = 32;
    while at < snap.len() {
        frames.push(at);
        at += 16 + u32::from_le_bytes(snap[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
    }
    assert_eq!(at, snap.len(), "the frames tile the file");
    assert!(frames.len() >= 5, "small state, volumes, buckets, keys, end: {frames:?}");
    let frame_of = |i: usize| *frames.iter().rev().find(|&&f| f <= i).expect("past the header");
    for i in (0..snap.len()).step_by(7) {
        let mut bad = snap.clone();
        bad[i] ^= 0x40;
        let e = ShardState::load_snapshot(&bad).expect_err(&format!("flip at {i} went unnoticed"));
        match (i, &e) {
            (0..8, SnapshotError::Magic) => {}
            (8..12, SnapshotError::Version(v)) => assert_eq!(*v, u32::from_le_bytes(bad[8..12].try_into().expect("4 bytes")), "{e}"),
            (12..32, SnapshotError::Malformed(why)) => assert!(why.contains("reserved header bytes"), "{e}"),
            (32.., SnapshotError::Frame { offset, .. } | SnapshotError::Incomplete(offset)) => {
                assert_eq!(*offset as usize, frame_of(i), "a flip at {i} is blamed on the frame that holds it: {e}");
            }
            _ => panic!("a flip at {i}: {e}"),
        }
    }
    // A cut file is incomplete, at the frame that was cut; a file too short for its header is
    // no snapshot.
    for cut in [snap.len() - 1, snap.len() - 24, 40] {
        match ShardState::load_snapshot(&snap[..cut]).expect_err("a cut snapshot") {
            SnapshotError::Incomplete(offset) => assert_eq!(offset as usize, frame_of(cut), "cut at {cut}"),
            e => panic!("cut at {cut}: {e}"),
        }
    }
    assert!(matches!(ShardState::load_snapshot(b""), Err(SnapshotError::Magic)));
    assert!(matches!(ShardState::load_snapshot(&snap[..31]), Err(SnapshotError::Magic)));
}

#[test]
fn malformed_command_bytes_are_an_error() {
    let cmd = Command { ctx: CommandContext { client_id: 1, request_id: 1, time_ms: 1, principal: Principal::user("u"), bucket: None }, op: Op::ExpireSessions };
    let bytes = cmd.encode().to_vec();
    assert_eq!(Command::decode(&bytes).unwrap(), cmd);
    // Every cut is refused (never a panic, and never another command), the error naming the
    // length it was given.
    for cut in 0..bytes.len() {
        let e = Command::decode(&bytes[..cut]).expect_err(&format!("{cut} of {} bytes decoded", bytes.len()));
        assert_eq!(e.len, cut, "{e}");
        assert!(!e.reason.is_empty(), "the error says why: {e}");
    }
    let mut junk = bytes.clone();
    for b in junk.iter_mut() {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    assert!(Command::decode(&junk).is_err());
}

#[test]
fn a_quota_cannot_be_set_below_what_is_in_use() {
    let mut s = S::new();
    s.volume("vol1", "alice", QUOTA_UNLIMITED);
    let alice = Principal::user("alice");
    s.bucket(alice.clone(), "vol1", "bk1", vec![]).unwrap();
    s.put(alice.clone(), "vol1", "bk1", "k", 60).unwrap();
    let set = |quota_bytes| Op::SetBucketProperty { volume: "vol1".into(), bucket: "bk1".into(), owner: None, versioning: None, replication: None, quota_bytes: Some(quota_bytes), quota_namespace: None };
    let e = s.run(alice.clone(), set(59)).unwrap_err();
    assert_eq!(e.to_string(), "invalid argument: bucket bytes quota 59 is below the 60 bytes in use");
    let e = s.run(alice.clone(), set(0)).unwrap_err();
    assert!(matches!(&e, OmError::InvalidArgument(why) if why.contains("must be positive")), "{e}");
    s.run(alice, set(60)).unwrap();
    let e = s.run(Principal::admin("root"), Op::SetVolumeQuota { volume: "vol1".into(), quota_bytes: None, quota_namespace: Some(0) }).unwrap_err();
    assert!(e.to_string().contains("must be positive"), "{e}");
}

#[test]
fn an_aborted_open_key_frees_its_blocks_at_once_and_cannot_be_committed() {
    let mut s = S::new();
    s.volume("vol1", "alice", QUOTA_UNLIMITED);
    let alice = Principal { user: "alice".into(), groups: vec![], admin: false };
    s.bucket(alice.clone(), "vol1", "bkt", vec![]).unwrap();
    let block = BlockLocation { container_id: 3, local_id: 7, pipeline_id: 1, length: 0 };
    let open = Op::OpenKey { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), replication: None, blocks: vec![block], expires_ms: 60_000, metadata: vec![] };
    let Ok(Reply::KeyOpened { open_id, .. }) = s.run(alice.clone(), open) else { panic!() };
    let abort = |key: &str| Op::AbortKey { volume: "vol1".into(), bucket: "bkt".into(), key: key.into(), open_id };
    let queued = |s: &S| s.state.list_deleted_blocks(None, 100).iter().flat_map(|(_, r)| r.blocks.iter().map(|b| (b.container_id.to_native(), b.local_id.to_native()))).collect::<Vec<_>>();
    assert!(queued(&s).is_empty());

    // Another user without write rights, and the wrong key name, change nothing.
    let bob = Principal { user: "bob".into(), groups: vec![], admin: false };
    assert!(matches!(s.run(bob, abort("k")), Err(OmError::PermissionDenied { .. })));
    assert!(matches!(s.run(alice.clone(), abort("other")), Err(OmError::OpenKeyNotFound(..))));
    assert!(s.state.open_key(open_id).is_some());

    assert_eq!(s.run(alice.clone(), abort("k")), Ok(Reply::Done));
    assert!(s.state.open_key(open_id).is_none(), "the open key is gone");
    assert_eq!(queued(&s), vec![(3, 7)], "its block is queued for deletion now, not at expiry");
    let b = s.state.bucket_info("vol1", "bkt").unwrap();
    assert_eq!(s.state.bucket_usage_of(b.record.object_id.to_native()).open_keys, 0);

    // A second abort (a retry under a new request id) and a late commit both find nothing.
    assert!(matches!(s.run(alice.clone(), abort("k")), Err(OmError::OpenKeyNotFound(..))));
    let commit = Op::CommitKey { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), open_id, data_size: 0, blocks: vec![] };
    assert!(matches!(s.run(alice, commit), Err(OmError::OpenKeyNotFound(..))));
    assert!(s.state.lookup_key("vol1", "bkt", "k").is_err());
}

/// One command may free more blocks than the SCM takes in one `deleteBlocks` call (100,000):
/// the OM hands the queue over in whole batches, so one batch that large would stop the shard's
/// queue for good. A delete of two keys of 65,536 and 40,000 blocks queues batches of at most
/// `DELETED_BATCH_BLOCKS_MAX`, every block once, in order, and purging them empties the queue.
/// (Committing those keys compared every pair of blocks: 3.3 s in a release build.)
#[test]
fn a_command_that_frees_many_blocks_queues_batches_the_scm_accepts() {
    let mut s = S::new();
    s.volume("vol1", "alice", QUOTA_UNLIMITED);
    let alice = Principal::user("alice");
    s.bucket(alice.clone(), "vol1", "bkt", vec![]).unwrap();
    let mut next = 0u64;
    let mut all = Vec::new();
    for (key, n) in [("big", constants::BLOCKS_PER_KEY_MAX), ("large", 40_000)] {
        let blocks: Vec<BlockLocation> = (0..n)
            .map(|_| {
                next += 1;
                BlockLocation { container_id: 1 + next / 1000, local_id: next, pipeline_id: 1, length: 0 }
            })
            .collect();
        let open = Op::OpenKey { volume: "vol1".into(), bucket: "bkt".into(), key: key.into(), replication: None, blocks: blocks.clone(), expires_ms: 60_000, metadata: vec![] };
        let Ok(Reply::KeyOpened { open_id, .. }) = s.run(alice.clone(), open) else { panic!("open {key}") };
        let written: Vec<BlockLocation> = blocks.iter().map(|b| BlockLocation { length: 1, ..*b }).collect();
        let commit = |blocks: Vec<BlockLocation>| Op::CommitKey { volume: "vol1".into(), bucket: "bkt".into(), key: key.into(), open_id, data_size: blocks.len() as u64, blocks };
        // Large block lists are checked as strictly as small ones (through sorted ids).
        let mut foreign = written[..n - 1].to_vec();
        foreign.push(BlockLocation { container_id: 999_999, local_id: 5, pipeline_id: 1, length: 1 });
        let e = s.run(alice.clone(), commit(foreign)).unwrap_err();
        assert_eq!(e.to_string(), "invalid argument: block 999999:5 was not allocated to this key");
        let mut twice = written[..n - 1].to_vec();
        twice.push(written[7]);
        let e = s.run(alice.clone(), commit(twice)).unwrap_err();
        assert_eq!(e.to_string(), format!("invalid argument: block {}:{} is listed twice", written[7].container_id, written[7].local_id));
        s.run(alice.clone(), commit(written)).unwrap();
        all.extend(blocks.iter().map(|b| (b.container_id, b.local_id)));
    }
    assert!(s.state.list_deleted_blocks(None, 100).is_empty());
    let delete = Op::DeleteKeys { volume: "vol1".into(), bucket: "bkt".into(), keys: vec!["big".into(), "large".into()] };
    s.run(alice, delete).unwrap();

    let batches = s.state.list_deleted_blocks(None, 100);
    let sizes: Vec<usize> = batches.iter().map(|(_, r)| r.blocks.len()).collect();
    assert_eq!(sizes.len(), all.len().div_ceil(constants::DELETED_BATCH_BLOCKS_MAX), "{sizes:?}");
    assert!(sizes.iter().all(|n| *n <= constants::DELETED_BATCH_BLOCKS_MAX), "{sizes:?}");
    let seqs: Vec<u64> = batches.iter().map(|(q, _)| *q).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "consecutive sequence numbers: {seqs:?}");
    let queued: Vec<(u64, u64)> = batches.iter().flat_map(|(_, r)| r.blocks.iter().map(|b| (b.container_id.to_native(), b.local_id.to_native()))).collect();
    assert_eq!(queued, all, "every freed block queued exactly once, in the order freed");

    let last = *seqs.last().unwrap();
    s.run(Principal::admin("om"), Op::PurgeDeletedBlocks { up_to_seq: last }).unwrap();
    assert!(s.state.list_deleted_blocks(None, 100).is_empty());
}

#[test]
fn rights_are_named_as_ozone_names_them() {
    assert_eq!(rights::names(rights::WRITE), "WRITE");
    assert_eq!(rights::names(rights::READ | rights::LIST), "READ|LIST");
    assert_eq!(rights::names(0), "0x0");
}

/// S3 secrets (issue 21): a principal gets one secret and gets the same one again (the OM's
/// fresh proposal is ignored once one exists); another user can neither read nor revoke it;
/// an administrator can; a revoked secret is gone and the next one is new; the table is in
/// snapshots and in the state hash.
#[test]
fn s3_secrets_are_per_principal_stable_and_revocable() {
    let mut s = S::new();
    let fresh = |c: char| c.to_string().repeat(40);
    let get = |s: &mut S, who: Principal, id: &str, f: &str| s.run(who, Op::GetS3Secret { access_id: id.into(), fresh: f.into() });
    let first = get(&mut s, Principal::user("alice"), "alice", &fresh('a'));
    assert_eq!(first, Ok(Reply::S3Secret { access_id: "alice".into(), secret: fresh('a') }));
    assert_eq!(get(&mut s, Principal::user("alice"), "alice", &fresh('b')), first, "the secret it has, not a new one");
    assert_eq!(s.state.s3_secret("alice"), Some(fresh('a').as_str()));
    let hash = s.state.state_hash();
    let back = ShardState::load_snapshot(&s.state.snapshot()).expect("loads");
    assert_eq!((back.s3_secret("alice"), back.state_hash()), (Some(fresh('a').as_str()), hash));

    assert!(matches!(get(&mut s, Principal::user("bob"), "alice", &fresh('c')), Err(OmError::PermissionDenied { .. })));
    assert!(matches!(s.run(Principal::user("bob"), Op::RevokeS3Secret { access_id: "alice".into() }), Err(OmError::PermissionDenied { .. })));
    assert!(matches!(get(&mut s, Principal::user("bob"), "bob", "short"), Err(OmError::InvalidArgument(_))));
    assert_eq!(get(&mut s, Principal::admin("root"), "alice", &fresh('d')), first, "an administrator reads it");

    assert_eq!(s.run(Principal::user("alice"), Op::RevokeS3Secret { access_id: "alice".into() }), Ok(Reply::Done));
    assert_ne!(s.state.state_hash(), hash);
    assert_eq!(s.state.s3_secret("alice"), None);
    assert_eq!(s.run(Principal::user("alice"), Op::RevokeS3Secret { access_id: "alice".into() }), Err(OmError::S3SecretNotFound("alice".into())));
    assert_eq!(get(&mut s, Principal::user("alice"), "alice", &fresh('e')), Ok(Reply::S3Secret { access_id: "alice".into(), secret: fresh('e') }));
}

#[test]
fn a_conditional_commit_applies_only_if_its_condition_holds_and_sets_metadata() {
    let mut s = S::new();
    s.volume("vol1", "alice", QUOTA_UNLIMITED);
    let alice = Principal::user("alice");
    s.bucket(alice.clone(), "vol1", "bkt", vec![]).unwrap();
    let pair = |k: &str, v: &str| MetadataPair { key: k.into(), value: v.into() };
    let meta = |s: &S| -> Vec<MetadataPair> {
        s.state.lookup_key("vol1", "bkt", "k").unwrap().metadata.iter().map(|m| MetadataPair { key: m.key.to_string(), value: m.value.to_string() }).collect()
    };
    let mut next_block = 500;
    let mut open = |s: &mut S| {
        next_block += 1;
        let block = BlockLocation { container_id: 1, local_id: next_block, pipeline_id: 1, length: 4 };
        let op = Op::OpenKey { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), replication: None, blocks: vec![block], expires_ms: 60_000, metadata: vec![pair("content-type", "text/plain")] };
        let Ok(Reply::KeyOpened { open_id, .. }) = s.run(Principal::user("alice"), op) else { panic!("open") };
        (open_id, block)
    };
    let commit = |open_id, block, etag: &str, condition| Op::CommitKeyWith {
        volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), open_id, data_size: 4, blocks: vec![block],
        metadata: vec![pair("etag", etag)], condition, allowed: false,
    };
    // If-Match (an ETag, or *) of a key that does not exist: not found, as S3 answers it.
    let (a, ba) = open(&mut s);
    assert!(matches!(s.run(alice.clone(), commit(a, ba, "e1", Condition::Matches(pair("etag", "e0")))), Err(OmError::KeyNotFound(_))));
    assert!(matches!(s.run(alice.clone(), commit(a, ba, "e1", Condition::Present)), Err(OmError::KeyNotFound(_))));
    // Two writers race with If-None-Match: *: the first applied wins, the second changes nothing.
    let (b, bb) = open(&mut s);
    assert!(matches!(s.run(alice.clone(), commit(a, ba, "e1", Condition::Absent)), Ok(Reply::KeyCommitted { replaced: false, .. })));
    assert!(matches!(s.run(alice.clone(), commit(b, bb, "e2", Condition::Absent)), Err(OmError::PreconditionFailed(_))));
    assert_eq!(meta(&s), vec![pair("content-type", "text/plain"), pair("etag", "e1")], "the open key's metadata with the commit's set over it");
    assert!(s.state.open_key(b).is_some(), "the refused writer's open key stays, for its abort");
    // If-Match: only over the version it names.
    assert!(matches!(s.run(alice.clone(), commit(b, bb, "e2", Condition::Matches(pair("etag", "other")))), Err(OmError::PreconditionFailed(_))));
    assert!(matches!(s.run(alice.clone(), commit(b, bb, "e2", Condition::Matches(pair("etag", "e1")))), Ok(Reply::KeyCommitted { replaced: true, .. })));
    assert_eq!(meta(&s)[1], pair("etag", "e2"));
    // If-None-Match with an ETag: refused over that version, taken over another; If-Match: *
    // over any.
    let (c, bc) = open(&mut s);
    assert!(matches!(s.run(alice.clone(), commit(c, bc, "e3", Condition::NotMatches(pair("etag", "e2")))), Err(OmError::PreconditionFailed(_))));
    assert!(matches!(s.run(alice.clone(), commit(c, bc, "e3", Condition::NotMatches(pair("etag", "e1")))), Ok(Reply::KeyCommitted { replaced: true, .. })));
    let (d, bd) = open(&mut s);
    assert!(matches!(s.run(alice.clone(), commit(d, bd, "e2", Condition::Present)), Ok(Reply::KeyCommitted { replaced: true, .. })));
    assert_eq!(meta(&s)[1], pair("etag", "e2"));

    // Metadata changed in place (tagging): a prefix dropped, pairs set; blocks and size stay.
    let tag = |set: Vec<MetadataPair>, condition| Op::SetKeyMetadata { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), set, remove_prefix: "tag:".into(), condition };
    s.run(alice.clone(), tag(vec![pair("tag:a", "1"), pair("tag:b", "2")], Condition::Any)).unwrap();
    s.run(alice.clone(), tag(vec![pair("tag:c", "3")], Condition::Matches(pair("etag", "e2")))).unwrap();
    assert_eq!(meta(&s), vec![pair("content-type", "text/plain"), pair("etag", "e2"), pair("tag:c", "3")]);
    let k = s.state.lookup_key("vol1", "bkt", "k").unwrap();
    assert_eq!((k.data_size.to_native(), k.blocks.len()), (4, 1));
    assert!(matches!(s.run(alice.clone(), tag(vec![], Condition::Matches(pair("etag", "e1")))), Err(OmError::PreconditionFailed(_))));
    assert!(matches!(s.run(Principal::user("mallory"), tag(vec![], Condition::Any)), Err(OmError::PermissionDenied { .. })));
    let missing = Op::SetKeyMetadata { volume: "vol1".into(), bucket: "bkt".into(), key: "nope".into(), set: vec![], remove_prefix: String::new(), condition: Condition::Any };
    assert!(matches!(s.run(alice.clone(), missing), Err(OmError::KeyNotFound(_))));
    let too_many: Vec<MetadataPair> = (0..70).map(|i| pair(&format!("tag:{i}"), "v")).collect();
    assert!(matches!(s.run(alice, tag(too_many, Condition::Any)), Err(OmError::InvalidArgument(_))));
}

#[test]
fn a_buckets_owner_alone_edits_its_metadata_and_it_survives_a_snapshot() {
    let mut s = S::new();
    s.volume("vol1", "alice", QUOTA_UNLIMITED);
    let alice = Principal::user("alice");
    // Bob may write keys in the bucket, but its settings are its owner's.
    let bob_writes = Acl { kind: AclKind::User, name: "bob".into(), rights: rights::WRITE | rights::READ };
    s.bucket(alice.clone(), "vol1", "bkt", vec![bob_writes]).unwrap();
    let pair = |k: &str, v: &str| MetadataPair { key: k.into(), value: v.into() };
    let edit = |set: Vec<MetadataPair>, remove_prefix: &str| Op::SetBucketMetadata { volume: "vol1".into(), bucket: "bkt".into(), set, remove_prefix: remove_prefix.into() };
    let meta = |s: &S| -> Vec<MetadataPair> {
        s.state.bucket_info("vol1", "bkt").unwrap().record.metadata.iter().map(|m| MetadataPair { key: m.key.to_string(), value: m.value.to_string() }).collect()
    };
    assert_eq!(s.run(alice.clone(), edit(vec![pair("s3:encryption", "AES256"), pair("other", "x")], "")), Ok(Reply::Done));
    assert_eq!(meta(&s), vec![pair("s3:encryption", "AES256"), pair("other", "x")]);
    assert_eq!(s.run(alice.clone(), edit(vec![pair("s3:encryption", "aws:kms:k1")], "")), Ok(Reply::Done));
    assert_eq!(meta(&s), vec![pair("s3:encryption", "aws:kms:k1"), pair("other", "x")], "a pair of the same name is replaced in place");
    assert!(matches!(s.run(Principal::user("bob"), edit(vec![], "s3:")), Err(OmError::PermissionDenied { .. })));
    assert_eq!(s.run(Principal::admin("root"), edit(vec![], "s3:")), Ok(Reply::Done));
    assert_eq!(meta(&s), vec![pair("other", "x")]);
    let missing = Op::SetBucketMetadata { volume: "vol1".into(), bucket: "nope".into(), set: vec![], remove_prefix: String::new() };
    assert!(matches!(s.run(alice.clone(), missing), Err(OmError::BucketNotFound(_))));
    let too_long = vec![pair(&"k".repeat(stratos_shard::constants::METADATA_KEY_BYTES_MAX + 1), "v")];
    assert!(matches!(s.run(alice, edit(too_long, "")), Err(OmError::InvalidArgument(_))));
    let snap = s.state.snapshot();
    let loaded = ShardState::load_snapshot(&snap).expect("load");
    assert_eq!(loaded.state_hash(), s.state.state_hash());
    assert_eq!(loaded.bucket_info("vol1", "bkt").unwrap().record.metadata.len(), 1);
}

#[test]
fn a_multipart_upload_keeps_one_record_per_part_and_completes_into_a_key() {
    let mut s = S::new();
    s.volume("vol1", "alice", QUOTA_UNLIMITED);
    let alice = Principal::user("alice");
    s.bucket(alice.clone(), "vol1", "bkt", vec![]).unwrap();
    let start = Op::InitiateUpload { volume: "vol1".into(), bucket: "bkt".into(), key: "big".into(), upload_id: "u1".into(), replication: None, metadata: vec![MetadataPair { key: "m".into(), value: "1".into() }] };
    assert_eq!(s.run(alice.clone(), start), Ok(Reply::UploadStarted { upload_id: "u1".into() }));
    let mut next = 900;
    let mut part = |s: &mut S, n: u32, size: u64, etag: &str| {
        next += 1;
        let block = BlockLocation { container_id: 2, local_id: next, pipeline_id: 1, length: size };
        let open = Op::OpenKey { volume: "vol1".into(), bucket: "bkt".into(), key: "big".into(), replication: None, blocks: vec![block], expires_ms: 60_000, metadata: vec![] };
        let Ok(Reply::KeyOpened { open_id, .. }) = s.run(Principal::user("alice"), open) else { panic!("open") };
        let commit = Op::CommitPart { volume: "vol1".into(), bucket: "bkt".into(), key: "big".into(), upload_id: "u1".into(), part: n, open_id, data_size: size, blocks: vec![block], etag: etag.into() };
        s.run(Principal::user("alice"), commit).map(|_| block)
    };
    let mb5 = 5 << 20;
    let b1 = part(&mut s, 1, mb5, "e1").unwrap();
    let old2 = part(&mut s, 2, mb5, "old").unwrap();
    let b2 = part(&mut s, 2, mb5, "e2").unwrap();
    let b3 = part(&mut s, 3, 10, "e3").unwrap();
    let unlisted = part(&mut s, 4, 10, "e4").unwrap();
    let queued = |s: &S| s.state.list_deleted_blocks(None, 100).iter().flat_map(|(_, r)| r.blocks.iter().map(|b| b.local_id.to_native())).collect::<Vec<_>>();
    assert_eq!(queued(&s), vec![old2.local_id], "a replaced part's blocks are freed at once");
    let b = s.state.bucket_info("vol1", "bkt").unwrap().record.object_id.to_native();
    let (_, parts, more) = s.state.list_parts(b, "big", "u1", 1, 2).unwrap();
    assert_eq!((parts.iter().map(|(n, p)| (*n, p.etag.as_str())).collect::<Vec<_>>(), more), (vec![(2, "e2"), (3, "e3")], true));
    let listed = |value: &str| vec![ListedUpload { key: "big".into(), upload_id: "u1".into(), created_ms: 5_000, value: value.into() }];
    assert_eq!(s.state.list_uploads_in(b, "b", ("", ""), 10, "", "").0, listed(""));
    assert_eq!(s.state.list_uploads_in(b, "b", ("", ""), 10, "m", "").0, listed("1"), "with the value of the pair asked for");
    assert_eq!(s.state.list_uploads_in(b, "b", ("", ""), 10, "absent", "").0, listed(""));
    let bad_part = |s: &S| matches!(s.state.lookup_key("vol1", "bkt", "big"), Err(OmError::KeyNotFound(_)));
    let complete = |parts: Vec<(u32, &str)>| Op::CompleteUpload {
        volume: "vol1".into(), bucket: "bkt".into(), key: "big".into(), upload_id: "u1".into(),
        parts: parts.into_iter().map(|(n, e)| (n, e.to_string())).collect(), etag: "x-3".into(), condition: Condition::Any, allowed: false,
    };
    for (parts, code) in [
        (vec![(2, "e2"), (1, "e1")], "InvalidPartOrder"),
        (vec![(1, "e1"), (2, "old")], "InvalidPart"),
        (vec![(1, "e1"), (5, "e5")], "InvalidPart"),
        (vec![(3, "e3"), (4, "e4")], "EntityTooSmall"),
    ] {
        match s.run(alice.clone(), complete(parts.clone())) {
            Err(OmError::InvalidPart(m)) => assert!(m.starts_with(code), "{parts:?}: {m}"),
            other => panic!("{parts:?}: {other:?}"),
        }
        assert!(bad_part(&s), "a refused completion makes no key");
    }
    assert!(matches!(s.run(Principal::user("mallory"), complete(vec![(1, "e1")])), Err(OmError::PermissionDenied { .. })));
    assert!(matches!(s.run(alice.clone(), complete(vec![(1, "\"e1\""), (2, "e2"), (3, "e3")])), Ok(Reply::KeyCommitted { replaced: false, .. })));
    let k = s.state.lookup_key("vol1", "bkt", "big").unwrap();
    assert_eq!(k.data_size.to_native(), 2 * mb5 + 10);
    assert_eq!(k.blocks.iter().map(|b| b.local_id.to_native()).collect::<Vec<_>>(), vec![b1.local_id, b2.local_id, b3.local_id], "the parts' blocks, in order");
    assert_eq!(k.metadata.iter().map(|m| (m.key.as_str(), m.value.as_str())).collect::<Vec<_>>(), vec![("m", "1"), ("etag", "x-3"), ("parts", "1:2:5242880,3:1:10")], "the parts' sizes kept");
    assert!(queued(&s).contains(&unlisted.local_id), "a part not listed is freed");
    assert!(matches!(s.run(alice.clone(), complete(vec![(1, "e1")])), Err(OmError::NoSuchUpload(_))), "the upload is over");
    assert_eq!(s.state.bucket_usage_of(b).open_keys, 0);

    // An upload whose metadata leaves room for the ETag alone completes without its part sizes.
    let full: Vec<MetadataPair> = (0..63).map(|i| MetadataPair { key: format!("m{i}"), value: "v".into() }).collect();
    s.run(alice.clone(), Op::InitiateUpload { volume: "vol1".into(), bucket: "bkt".into(), key: "full".into(), upload_id: "f1".into(), replication: None, metadata: full }).unwrap();
    let Ok(Reply::KeyOpened { open_id, .. }) = s.run(alice.clone(), Op::OpenKey { volume: "vol1".into(), bucket: "bkt".into(), key: "full".into(), replication: None, blocks: vec![BlockLocation { container_id: 9, local_id: 900, pipeline_id: 1, length: 10 }], expires_ms: 60_000, metadata: vec![] }) else { panic!("open") };
    s.run(alice.clone(), Op::CommitPart { volume: "vol1".into(), bucket: "bkt".into(), key: "full".into(), upload_id: "f1".into(), part: 1, open_id, data_size: 10, blocks: vec![BlockLocation { container_id: 9, local_id: 900, pipeline_id: 1, length: 10 }], etag: "p1".into() }).unwrap();
    let done = Op::CompleteUpload { volume: "vol1".into(), bucket: "bkt".into(), key: "full".into(), upload_id: "f1".into(), parts: vec![(1, "p1".into())], etag: "x-1".into(), condition: Condition::Any, allowed: false };
    assert!(matches!(s.run(alice.clone(), done), Ok(Reply::KeyCommitted { .. })));
    let k = s.state.lookup_key("vol1", "bkt", "full").unwrap();
    assert_eq!((k.metadata.len(), k.metadata.iter().any(|m| m.key.as_str() == "parts")), (64, false));

    // Abort frees every part; expiry ends old uploads; uploads survive a snapshot.
    let start = |id: &str| Op::InitiateUpload { volume: "vol1".into(), bucket: "bkt".into(), key: "k2".into(), upload_id: id.into(), replication: None, metadata: vec![] };
    s.run(alice.clone(), start("a1")).unwrap();
    s.run(alice.clone(), start("a2")).unwrap();
    assert!(matches!(s.run(alice.clone(), Op::DeleteBucket { volume: "vol1".into(), bucket: "bkt".into() }), Err(OmError::BucketNotEmpty(..))));
    let back = ShardState::load_snapshot(&s.state.snapshot()).expect("loads");
    assert_eq!(back.list_uploads_in(b, "", ("", ""), 10, "", "").0.len(), 2, "uploads are in snapshots");
    s.run(alice.clone(), Op::AbortUpload { volume: "vol1".into(), bucket: "bkt".into(), key: "k2".into(), upload_id: "a1".into() }).unwrap();
    assert!(matches!(s.run(alice.clone(), Op::AbortUpload { volume: "vol1".into(), bucket: "bkt".into(), key: "k2".into(), upload_id: "a1".into() }), Err(OmError::NoSuchUpload(_))));
    assert!(matches!(s.run(alice.clone(), Op::ExpireUploads { created_before_ms: 10_000, limit: 10 }), Err(OmError::PermissionDenied { .. })));
    assert_eq!(s.run(Principal::admin("om"), Op::ExpireUploads { created_before_ms: 10_000, limit: 10 }), Ok(Reply::Expired { open_keys: 1, sessions: 0 }));
    assert_eq!(s.state.bucket_usage_of(b).open_keys, 0);
}

#[test]
fn parts_keep_their_checksums_and_a_completion_sets_more_pairs() {
    let mut s = S::new();
    s.volume("vol1", "alice", QUOTA_UNLIMITED);
    let alice = Principal::user("alice");
    s.bucket(alice.clone(), "vol1", "bkt", vec![]).unwrap();
    s.run(alice.clone(), Op::InitiateUpload { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), upload_id: "u1".into(), replication: None, metadata: vec![] }).unwrap();
    let part = |s: &mut S, n: u32, checksum: &str| {
        let block = BlockLocation { container_id: 3, local_id: 700 + u64::from(n), pipeline_id: 1, length: 10 };
        let open = Op::OpenKey { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), replication: None, blocks: vec![block], expires_ms: 60_000, metadata: vec![] };
        let Ok(Reply::KeyOpened { open_id, .. }) = s.run(Principal::user("alice"), open) else { panic!("open") };
        let (volume, bucket, key, upload_id, etag) = ("vol1".into(), "bkt".into(), "k".into(), "u1".into(), format!("e{n}"));
        s.run(Principal::user("alice"), Op::CommitPartWithChecksum { volume, bucket, key, upload_id, part: n, open_id, data_size: 10, blocks: vec![block], etag, checksum: checksum.into() })
    };
    part(&mut s, 1, "CRC32:AAAAAQ==").unwrap();
    assert!(matches!(part(&mut s, 2, &"x".repeat(2049)), Err(OmError::InvalidArgument(_))), "a checksum is bounded as a metadata value");
    part(&mut s, 2, "CRC32:AAAAAg==").unwrap();
    let b = s.state.bucket_info("vol1", "bkt").unwrap().record.object_id.to_native();
    let listed = |s: &S| s.state.list_parts(b, "k", "u1", 0, 10).unwrap().1.iter().map(|(n, p)| (*n, p.checksum.clone())).collect::<Vec<_>>();
    assert_eq!(listed(&s), [(1, "CRC32:AAAAAQ==".to_string()), (2, "CRC32:AAAAAg==".to_string())]);
    // The checksums survive a snapshot.
    assert_eq!(listed(&S { state: ShardState::load_snapshot(&s.state.snapshot()).expect("loads"), log_index: 0, request_id: 0 }), listed(&s));
    let pair = |k: &str, v: &str| MetadataPair { key: k.into(), value: v.into() };
    // Parts of 10 bytes: every part but the last is too small, so a completion lists one.
    let complete = |set: Vec<MetadataPair>, checksum: &str| Op::CompleteUploadWith {
        volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), upload_id: "u1".into(), parts: vec![(2, "e2".into(), checksum.into())],
        etag: "x-1".into(), set, condition: Condition::Any, allowed: false,
    };
    for own in ["etag", "parts"] {
        assert!(matches!(s.run(alice.clone(), complete(vec![pair(own, "v")], "")), Err(OmError::InvalidArgument(_))), "{own} is the completion's own");
    }
    let set = vec![pair("checksum:crc32", "AAAAAw==-1"), pair("checksum:type", "COMPOSITE")];
    match s.run(alice.clone(), complete(set.clone(), "CRC32:AAAAAQ==")) {
        Err(OmError::InvalidPart(m)) => assert!(m.contains("part 2 has checksum CRC32:AAAAAg==, not CRC32:AAAAAQ=="), "{m}"),
        other => panic!("a part listed with another checksum: {other:?}"),
    }
    assert!(matches!(s.run(alice.clone(), complete(set, "CRC32:AAAAAg==")), Ok(Reply::KeyCommitted { .. })));
    let k = s.state.lookup_key("vol1", "bkt", "k").unwrap();
    let pairs: Vec<(&str, &str)> = k.metadata.iter().map(|m| (m.key.as_str(), m.value.as_str())).collect();
    assert_eq!(pairs, [("etag", "x-1"), ("checksum:crc32", "AAAAAw==-1"), ("checksum:type", "COMPOSITE"), ("parts", "2:1:10")]);
}

#[test]
fn a_completion_gives_the_key_its_acl_in_the_same_apply() {
    let mut s = S::new();
    s.volume("vol1", "alice", QUOTA_UNLIMITED);
    let (alice, bob) = (Principal::user("alice"), Principal::user("bob"));
    // A bucket bob may write in (S3's public-read-write grants WRITE), not change ACLs of.
    let writers = Acl { kind: AclKind::User, name: "bob".into(), rights: rights::WRITE };
    s.bucket(alice.clone(), "vol1", "bkt", vec![writers]).unwrap();
    s.run(bob.clone(), Op::InitiateUpload { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), upload_id: "u1".into(), replication: None, metadata: vec![] }).unwrap();
    let block = BlockLocation { container_id: 3, local_id: 801, pipeline_id: 1, length: 10 };
    let open = Op::OpenKey { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), replication: None, blocks: vec![block], expires_ms: 60_000, metadata: vec![] };
    let Ok(Reply::KeyOpened { open_id, .. }) = s.run(bob.clone(), open) else { panic!("open") };
    let commit = Op::CommitPart { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), upload_id: "u1".into(), part: 1, open_id, data_size: 10, blocks: vec![block], etag: "e1".into() };
    s.run(bob.clone(), commit).unwrap();
    let complete = |condition: Condition, acls: Vec<Acl>| Op::CompleteUploadWithAcls {
        volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), upload_id: "u1".into(), parts: vec![(1, "e1".into(), String::new())],
        etag: "x-1".into(), set: vec![], condition, allowed: false, acls,
    };
    let world = Acl { kind: AclKind::World, name: String::new(), rights: rights::READ };
    // Refused entries, or a refused condition: no key, and the upload stays for another try.
    let bad = vec![Acl { kind: AclKind::World, name: "someone".into(), rights: rights::READ }];
    assert!(matches!(s.run(bob.clone(), complete(Condition::Any, bad)), Err(OmError::InvalidArgument(_))));
    assert!(matches!(s.run(bob.clone(), complete(Condition::Present, vec![world.clone()])), Err(OmError::KeyNotFound(_))));
    assert!(s.state.lookup_key("vol1", "bkt", "k").is_err());
    let b = s.state.bucket_info("vol1", "bkt").unwrap().record.object_id.to_native();
    assert!(s.state.list_parts(b, "k", "u1", 0, 10).is_ok(), "the upload is still there");
    // The writer's completion (WRITE alone, as a PUT's commit with entries) makes the key with them.
    assert!(matches!(s.run(bob.clone(), complete(Condition::Any, vec![world.clone()])), Ok(Reply::KeyCommitted { .. })));
    let k = s.state.lookup_key("vol1", "bkt", "k").unwrap();
    assert_eq!(k.acls.iter().map(|a| (a.name.to_string(), a.rights.to_native())).collect::<Vec<_>>(), vec![(String::new(), rights::READ)]);
    assert!(acls_allow_native(&Principal::anonymous(), &[world], rights::READ));
    let loaded = ShardState::load_snapshot(&s.state.snapshot()).expect("load");
    assert_eq!(loaded.state_hash(), s.state.state_hash());
}

#[test]
fn anonymous_callers_hold_what_world_entries_grant_and_acls_change_with_write_acl() {
    let mut s = S::new();
    s.volume("vol1", "alice", QUOTA_UNLIMITED);
    let (alice, bob, anon) = (Principal::user("alice"), Principal::user("bob"), Principal::anonymous());
    let world = |rights| Acl { kind: AclKind::World, name: String::new(), rights };
    // WORLD may hold CREATE on a volume (S3's `s3v` does), yet an anonymous caller makes no
    // bucket: a bucket needs an owner.
    let open = Op::CreateVolume { volume: "open".into(), owner: "alice".into(), admin: "root".into(), quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![world(rights::CREATE | rights::READ | rights::LIST)], metadata: vec![] };
    s.run(Principal::admin("root"), open).unwrap();
    let r = s.bucket(anon.clone(), "open", "bkt", vec![]);
    assert!(matches!(r, Err(OmError::PermissionDenied { .. })), "{r:?}");
    assert!(s.bucket(bob.clone(), "open", "bkt", vec![]).is_ok(), "a named caller may, by the same entry");
    s.bucket(alice.clone(), "vol1", "bkt", vec![]).unwrap();
    s.put(alice.clone(), "vol1", "bkt", "k", 4).unwrap();
    assert!(s.state.check_bucket_access(&anon, "vol1", "bkt", rights::LIST).is_err());

    // A bucket's entries: replaced by a holder of WRITE_ACL (its owner here), nobody else.
    let set_bucket = |acls| Op::SetBucketAcls { volume: "vol1".into(), bucket: "bkt".into(), acls };
    for who in [bob.clone(), anon.clone()] {
        assert!(matches!(s.run(who, set_bucket(vec![world(rights::ALL)])), Err(OmError::PermissionDenied { .. })));
    }
    assert_eq!(s.run(alice.clone(), set_bucket(vec![world(rights::LIST | rights::WRITE | rights::DELETE)])), Ok(Reply::Done));
    assert!(s.state.check_bucket_access(&anon, "vol1", "bkt", rights::LIST).is_ok());
    assert!(s.state.check_bucket_access(&anon, "vol1", "bkt", rights::READ).is_err(), "S3's public-read-write lists and writes, never reads every key");
    assert!(s.put(anon.clone(), "vol1", "bkt", "dropped", 4).is_ok());
    // Writing and deleting keys is not changing or deleting the bucket: its owner's (or a
    // WRITE_ACL holder's), not everyone's.
    s.bucket(alice.clone(), "vol1", "empty", vec![world(rights::LIST | rights::WRITE | rights::DELETE)]).unwrap();
    let take = |b: &str| Op::SetBucketProperty { volume: "vol1".into(), bucket: b.into(), owner: Some("bob".into()), versioning: None, replication: None, quota_bytes: Some(1), quota_namespace: None };
    for who in [bob.clone(), anon.clone()] {
        assert!(matches!(s.run(who.clone(), take("empty")), Err(OmError::PermissionDenied { .. })));
        assert!(matches!(s.run(who.clone(), Op::DeleteBucket { volume: "vol1".into(), bucket: "empty".into() }), Err(OmError::PermissionDenied { .. })));
        assert!(matches!(s.run(who, Op::SetBucketDeleting { volume: "vol1".into(), bucket: "empty".into(), deleting: true }), Err(OmError::PermissionDenied { .. })));
    }
    let grant_bob = vec![Acl { kind: AclKind::User, name: "bob".into(), rights: rights::WRITE_ACL }];
    s.run(alice.clone(), Op::SetBucketAcls { volume: "vol1".into(), bucket: "empty".into(), acls: grant_bob }).unwrap();
    assert_eq!(s.run(bob.clone(), Op::DeleteBucket { volume: "vol1".into(), bucket: "empty".into() }), Ok(Reply::Done));
    let bad = vec![Acl { kind: AclKind::World, name: "someone".into(), rights: rights::READ }];
    assert!(matches!(s.run(alice.clone(), set_bucket(bad.clone())), Err(OmError::InvalidArgument(_))));

    // A key's entries: WRITE on the bucket is not enough to change them (else a public bucket's
    // writers could publish every private key in it); WRITE_ACL is.
    let set_key = |key: &str, acls| Op::SetKeyAcls { volume: "vol1".into(), bucket: "bkt".into(), key: key.into(), acls };
    assert!(matches!(s.run(anon.clone(), set_key("k", vec![world(rights::READ)])), Err(OmError::PermissionDenied { .. })));
    assert_eq!(s.run(alice.clone(), set_key("k", vec![world(rights::READ)])), Ok(Reply::Done));
    let acls_of = |s: &S, k: &str| s.state.lookup_key("vol1", "bkt", k).unwrap().acls.iter().map(|a| (a.name.to_string(), a.rights.to_native())).collect::<Vec<_>>();
    assert_eq!(acls_of(&s, "k"), vec![(String::new(), rights::READ)]);
    assert!(matches!(s.run(alice.clone(), set_key("nope", vec![])), Err(OmError::KeyNotFound(_))));
    assert!(matches!(s.run(alice.clone(), set_key("k", bad)), Err(OmError::InvalidArgument(_))));

    // The writer of a version gives it entries with its commit, by WRITE alone (as S3 lets the
    // writer of an object set its ACL); an overwrite without them starts with none.
    let block = BlockLocation { container_id: 1, local_id: 900, pipeline_id: 1, length: 4 };
    let opened = s.run(anon.clone(), Op::OpenKey { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), replication: None, blocks: vec![block], expires_ms: 60_000, metadata: vec![] });
    let Ok(Reply::KeyOpened { open_id, .. }) = opened else { panic!("{opened:?}") };
    let authenticated = Acl { kind: AclKind::Group, name: command::AUTHENTICATED.into(), rights: rights::READ };
    let commit = Op::CommitKeyWithAcls { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), open_id, data_size: 4, blocks: vec![block], metadata: vec![], condition: Condition::Any, allowed: false, acls: vec![authenticated.clone()] };
    assert!(matches!(s.run(anon.clone(), commit), Ok(Reply::KeyCommitted { replaced: true, .. })));
    assert_eq!(acls_of(&s, "k"), vec![(command::AUTHENTICATED.to_string(), rights::READ)]);
    assert!(acls_allow_native(&bob, std::slice::from_ref(&authenticated), rights::READ), "every named caller is authenticated");
    assert!(!acls_allow_native(&anon, std::slice::from_ref(&authenticated), rights::READ), "the anonymous one is not");
    assert!(acls_allow_native(&anon, &[world(rights::READ)], rights::READ));
    let snap = s.state.snapshot();
    let loaded = ShardState::load_snapshot(&snap).expect("load");
    assert_eq!(loaded.state_hash(), s.state.state_hash());
    s.put(alice, "vol1", "bkt", "k", 4).unwrap();
    assert!(acls_of(&s, "k").is_empty(), "an overwrite starts with no entries of its own");
}

#[test]
fn expiry_deletes_only_the_versions_the_leader_found_expired() {
    let mut s = S::new();
    s.volume("vol1", "alice", QUOTA_UNLIMITED);
    let alice = Principal::user("alice");
    s.bucket(alice.clone(), "vol1", "bkt", vec![]).unwrap();
    for k in ["old", "rewritten", "kept"] {
        s.put(alice.clone(), "vol1", "bkt", k, 10).unwrap();
    }
    let seen = |s: &S, k: &str| s.state.lookup_key("vol1", "bkt", k).unwrap().update_id.to_native();
    let (old, rewritten) = (seen(&s, "old"), seen(&s, "rewritten"));
    // Written again after the leader looked: that version was not found expired.
    s.put(alice.clone(), "vol1", "bkt", "rewritten", 10).unwrap();
    let expire = Op::ExpireKeys { volume: "vol1".into(), bucket: "bkt".into(), keys: vec![("old".into(), old), ("rewritten".into(), rewritten), ("gone".into(), 1)] };
    assert!(matches!(s.run(alice.clone(), expire.clone()), Err(OmError::PermissionDenied { .. })), "housekeeping alone");
    assert_eq!(s.run(Principal::admin("om"), expire.clone()), Ok(Reply::Expired { open_keys: 1, sessions: 0 }));
    assert!(s.state.lookup_key("vol1", "bkt", "old").is_err());
    assert!(s.state.lookup_key("vol1", "bkt", "rewritten").is_ok());
    assert!(s.state.lookup_key("vol1", "bkt", "kept").is_ok());
    let b = s.state.bucket_info("vol1", "bkt").unwrap().record.object_id.to_native();
    assert_eq!(s.state.bucket_usage_of(b).keys, 2);
    // Applied again (a retried proposal), it changes nothing.
    assert_eq!(s.run(Principal::admin("om"), expire), Ok(Reply::Expired { open_keys: 0, sessions: 0 }));
}

#[test]
fn a_keys_own_write_acl_lets_its_grantee_change_its_entries() {
    let mut s = S::new();
    s.volume("vol1", "alice", QUOTA_UNLIMITED);
    let (alice, bob, carol) = (Principal::user("alice"), Principal::user("bob"), Principal::user("carol"));
    let user = |name: &str, rights| Acl { kind: AclKind::User, name: name.into(), rights };
    s.bucket(alice.clone(), "vol1", "bkt", vec![user("bob", rights::WRITE)]).unwrap();
    s.put(alice.clone(), "vol1", "bkt", "k", 4).unwrap();
    let set_key = |key: &str, acls| Op::SetKeyAcls { volume: "vol1".into(), bucket: "bkt".into(), key: key.into(), acls };
    let key_acls = |s: &S| s.state.lookup_key("vol1", "bkt", "k").unwrap().acls.iter().map(|a| (a.name.to_string(), a.rights.to_native())).collect::<Vec<_>>();

    // WRITE on the bucket does not let bob change a key's entries, nor do entries of the key
    // that grant him less than WRITE_ACL.
    assert!(matches!(s.run(bob.clone(), set_key("k", vec![user("bob", rights::ALL)])), Err(OmError::PermissionDenied { .. })));
    s.run(alice.clone(), set_key("k", vec![user("bob", rights::READ | rights::READ_ACL)])).unwrap();
    assert!(matches!(s.run(bob.clone(), set_key("k", vec![user("bob", rights::ALL)])), Err(OmError::PermissionDenied { .. })));
    // WRITE_ACL in the key's own entries does: he replaces and edits them.
    s.run(alice.clone(), set_key("k", vec![user("bob", rights::WRITE_ACL)])).unwrap();
    let b = s.state.bucket_info("vol1", "bkt").unwrap().record.object_id.to_native();
    assert!(s.state.key_grants(b, "k", &bob, rights::WRITE_ACL), "what the leader asks before it proposes");
    assert!(!s.state.key_grants(b, "k", &carol, rights::WRITE_ACL) && !s.state.key_grants(b, "nope", &bob, rights::WRITE_ACL));
    assert_eq!(s.run(bob.clone(), set_key("k", vec![user("bob", rights::WRITE_ACL), user("carol", rights::READ)])), Ok(Reply::Done));
    let edit = Op::EditKeyAcls { volume: "vol1".into(), bucket: "bkt".into(), key: "k".into(), add: vec![user("carol", rights::READ_ACL)], remove: vec![] };
    assert_eq!(s.run(bob.clone(), edit), Ok(Reply::Done));
    assert_eq!(key_acls(&s), vec![("bob".into(), rights::WRITE_ACL), ("carol".into(), rights::READ | rights::READ_ACL)]);
    // carol's READ and READ_ACL on the key let her change nothing; a key that is not there is
    // the bucket's refusal to bob, not news of its absence.
    assert!(matches!(s.run(carol.clone(), set_key("k", vec![])), Err(OmError::PermissionDenied { .. })));
    assert!(matches!(s.run(bob.clone(), set_key("nope", vec![])), Err(OmError::PermissionDenied { .. })));

    // alice writes the key again: the new version starts with no entries, and bob's grant
    // went with the version it was on.
    s.put(alice.clone(), "vol1", "bkt", "k", 8).unwrap();
    assert!(matches!(s.run(bob.clone(), set_key("k", vec![])), Err(OmError::PermissionDenied { .. })));
    assert!(key_acls(&s).is_empty());

    // A change that takes its caller's own grant away, retried with the same request id (its
    // answer lost): answered as the first time from the retry window, which the leader asks
    // before it would refuse a caller the key no longer grants.
    s.run(alice, set_key("k", vec![user("bob", rights::WRITE_ACL)])).unwrap();
    let drop_own = Command { ctx: CommandContext { client_id: 1, request_id: 999, time_ms: 5_000, principal: bob, bucket: None }, op: set_key("k", vec![user("carol", rights::READ)]) };
    assert!(!s.state.remembers(1, 999));
    s.log_index += 1;
    assert_eq!(s.state.apply(s.log_index, &drop_own), Ok(Reply::Done));
    assert!(s.state.remembers(1, 999) && !s.state.remembers(1, 1000) && !s.state.remembers(0, 999));
    assert!(!s.state.key_grants(b, "k", &Principal::user("bob"), rights::WRITE_ACL));
    s.log_index += 1;
    assert_eq!(s.state.apply(s.log_index, &drop_own), Ok(Reply::Done), "the retry is answered as the first time");
    assert_eq!(key_acls(&s), vec![("carol".into(), rights::READ)]);
    let snap = s.state.snapshot();
    assert_eq!(ShardState::load_snapshot(&snap).expect("load").state_hash(), s.state.state_hash());
}

fn user(name: &str, rights: u16) -> Acl {
    Acl { kind: AclKind::User, name: name.into(), rights }
}

#[test]
fn a_change_by_a_keys_own_grant_applies_to_the_version_that_grants_it() {
    // The leader proposes `KeyAclsByKeyGrant` where the bucket refused the caller.
    let mut shard = Shard::new();
    let by_grant = |set: Option<Vec<Acl>>, add: Vec<Acl>| Op::KeyAclsByKeyGrant { volume: "vol".into(), bucket: "bkt".into(), key: "k".into(), set, add, remove: vec![] };
    let acls = |shard: &Shard| shard.acls_of("k").map(|(_, acls)| acls);

    shard.put("k", 4).unwrap();
    // Nobody's grant yet: refused, as a key that is not there would be.
    assert!(matches!(shard.by("bob", by_grant(None, vec![user("bob", rights::READ)])), Err(OmError::PermissionDenied { .. })));
    let set = Op::SetKeyAcls { volume: "vol".into(), bucket: "bkt".into(), key: "k".into(), acls: vec![user("bob", rights::WRITE_ACL)] };
    shard.by("alice", set).unwrap();
    let out = shard.by("bob", by_grant(None, vec![user("carol", rights::READ)]));
    assert_eq!((out, acls(&shard)), (Ok(Reply::Done), Some(vec![("bob".into(), rights::WRITE_ACL), ("carol".into(), rights::READ)])));
    assert!(matches!(shard.by("carol", by_grant(Some(vec![]), vec![])), Err(OmError::PermissionDenied { .. })));
    // The key is written again: the new version has no entries of its own, and bob's grant
    // went with the version it was on.
    shard.put("k", 4).unwrap();
    let out = shard.by("bob", by_grant(Some(vec![user("bob", rights::ALL)]), vec![]));
    assert!(matches!(out, Err(OmError::PermissionDenied { .. })), "{out:?}");
    assert_eq!(acls(&shard), Some(vec![]));
}

#[test]
fn a_change_of_one_version_leaves_another_alone() {
    // `SetKeyAclsIf` (PutObjectAcl's form): the entries were built from the version the caller
    // read, and apply to that version only, by the bucket's right or (`by_key`) the key's own.
    let mut shard = Shard::new();
    let set_if = |key: &str, acls: Vec<Acl>, update_id: u64, by_key: bool| Op::SetKeyAclsIf { volume: "vol".into(), bucket: "bkt".into(), key: key.into(), acls, update_id, by_key };
    let version = |shard: &Shard| shard.acls_of("k").expect("the key is there").0;

    shard.put("k", 4).unwrap();
    let v1 = version(&shard);
    // Another version's id: nothing changes.
    let out = shard.by("alice", set_if("k", vec![user("bob", rights::ALL)], v1 + 1, false));
    assert!(matches!(out, Err(OmError::PreconditionFailed(ref m)) if m.contains("vol/bkt/k")), "{out:?}");
    assert_eq!(shard.acls_of("k"), Some((v1, vec![])));
    // A caller whom neither the bucket nor the key grants learns nothing of the version.
    assert!(matches!(shard.by("carol", set_if("k", vec![], v1 + 1, true)), Err(OmError::PermissionDenied { .. })));
    // The version read: set, and the change makes another version of the entries.
    assert_eq!(shard.by("alice", set_if("k", vec![user("bob", rights::WRITE_ACL)], v1, false)), Ok(Reply::Done));
    let (v2, acls) = shard.acls_of("k").expect("still there");
    assert!(v2 > v1);
    assert_eq!(acls, vec![("bob".into(), rights::WRITE_ACL)]);
    assert!(matches!(shard.by("alice", set_if("k", vec![], v1, false)), Err(OmError::PreconditionFailed(_))));
    // bob's own grant, on the version he read.
    assert_eq!(shard.by("bob", set_if("k", vec![user("bob", rights::WRITE_ACL), user("dave", rights::READ)], v2, true)), Ok(Reply::Done));
    let v3 = version(&shard);
    // The key is written again: bob's change built from v3 applies neither by his grant (gone
    // with v3) nor, by the bucket's right, to the new version.
    shard.put("k", 4).unwrap();
    let v4 = version(&shard);
    assert!(matches!(shard.by("bob", set_if("k", vec![user("bob", rights::ALL)], v3, true)), Err(OmError::PermissionDenied { .. })));
    let out = shard.by("alice", set_if("k", vec![user("bob", rights::ALL)], v3, false));
    assert!(matches!(out, Err(OmError::PreconditionFailed(_))), "{out:?}");
    assert_eq!(shard.acls_of("k"), Some((v4, vec![])));
    assert!(matches!(shard.by("alice", set_if("nope", vec![], v4, false)), Err(OmError::KeyNotFound(_))));
}

#[test]
fn acl_edits_add_and_remove_rights_in_place() {
    let mut s = S::new();
    s.volume("vol1", "alice", QUOTA_UNLIMITED);
    let (alice, bob) = (Principal::user("alice"), Principal::user("bob"));
    let user = |name: &str, rights| Acl { kind: AclKind::User, name: name.into(), rights };
    s.bucket(alice.clone(), "vol1", "bkt", vec![user("carol", rights::READ)]).unwrap();
    s.put(alice.clone(), "vol1", "bkt", "k", 4).unwrap();
    let bucket_acls = |s: &S| s.state.bucket_info("vol1", "bkt").unwrap().record.acls.iter().map(|a| (a.name.to_string(), a.rights.to_native())).collect::<Vec<_>>();
    let edit_bucket = |add, remove| Op::EditBucketAcls { volume: "vol1".into(), bucket: "bkt".into(), add, remove };

    // Two edits one after the other (as two racing callers' are applied) both count, and the
    // entry that was there stays.
    assert_eq!(s.run(alice.clone(), edit_bucket(vec![user("bob", rights::READ)], vec![])), Ok(Reply::Done));
    assert_eq!(s.run(alice.clone(), edit_bucket(vec![user("dave", rights::LIST)], vec![])), Ok(Reply::Done));
    assert_eq!(bucket_acls(&s), vec![("carol".into(), rights::READ), ("bob".into(), rights::READ), ("dave".into(), rights::LIST)]);
    // Rights merge into the grantee's entry; removing some keeps the rest, removing the last
    // drops the entry; removing what a grantee does not hold changes nothing.
    s.run(alice.clone(), edit_bucket(vec![user("bob", rights::LIST | rights::WRITE)], vec![])).unwrap();
    s.run(alice.clone(), edit_bucket(vec![], vec![user("bob", rights::WRITE), user("dave", rights::ALL), user("erin", rights::READ)])).unwrap();
    assert_eq!(bucket_acls(&s), vec![("carol".into(), rights::READ), ("bob".into(), rights::READ | rights::LIST)]);
    assert!(s.state.check_bucket_access(&bob, "vol1", "bkt", rights::LIST).is_ok());
    // The right is setacl's: bob (READ, LIST) may not edit; an empty edit and a bad entry are
    // refused; an edit past the entry limit is refused and changes nothing.
    assert!(matches!(s.run(bob.clone(), edit_bucket(vec![user("bob", rights::ALL)], vec![])), Err(OmError::PermissionDenied { .. })));
    assert!(matches!(s.run(alice.clone(), edit_bucket(vec![], vec![])), Err(OmError::InvalidArgument(_))));
    let bad = Acl { kind: AclKind::World, name: "someone".into(), rights: rights::READ };
    assert!(matches!(s.run(alice.clone(), edit_bucket(vec![], vec![bad])), Err(OmError::InvalidArgument(_))));
    let many: Vec<Acl> = (0..constants::ACLS_MAX).map(|i| user(&format!("u{i}"), rights::READ)).collect();
    assert!(matches!(s.run(alice.clone(), edit_bucket(many, vec![])), Err(OmError::InvalidArgument(_))));
    assert_eq!(bucket_acls(&s).len(), 2);

    // A key's own entries, by WRITE_ACL on the bucket.
    let edit_key = |key: &str, add, remove| Op::EditKeyAcls { volume: "vol1".into(), bucket: "bkt".into(), key: key.into(), add, remove };
    let key_acls = |s: &S| s.state.lookup_key("vol1", "bkt", "k").unwrap().acls.iter().map(|a| (a.name.to_string(), a.rights.to_native())).collect::<Vec<_>>();
    assert!(matches!(s.run(bob.clone(), edit_key("k", vec![user("bob", rights::READ_ACL)], vec![])), Err(OmError::PermissionDenied { .. })));
    assert_eq!(s.run(alice.clone(), edit_key("k", vec![user("bob", rights::READ | rights::READ_ACL)], vec![])), Ok(Reply::Done));
    assert_eq!(s.run(alice.clone(), edit_key("k", vec![], vec![user("bob", rights::READ)])), Ok(Reply::Done));
    assert_eq!(key_acls(&s), vec![("bob".into(), rights::READ_ACL)]);
    assert!(matches!(s.run(alice.clone(), edit_key("nope", vec![user("bob", rights::READ)], vec![])), Err(OmError::KeyNotFound(_))));
    let snap = s.state.snapshot();
    assert_eq!(ShardState::load_snapshot(&snap).expect("load").state_hash(), s.state.state_hash());
}

proptest::proptest! {
    /// An edit grants exactly what it adds and takes exactly what it removes, per grantee; a
    /// grantee it does not name keeps its rights; no entry is left empty.
    #[test]
    fn an_acl_edit_changes_the_named_grantees_rights_alone(
        old in proptest::collection::vec((0..4usize, 0u16..128), 0..6),
        add in proptest::collection::vec((0..4usize, 0u16..128), 0..4),
        remove in proptest::collection::vec((0..4usize, 0u16..128), 0..4),
    ) {
        let names = ["ann", "ben", "cat", "dan"];
        let entries = |v: &[(usize, u16)]| v.iter().map(|&(n, r)| Acl { kind: AclKind::User, name: names[n].into(), rights: r }).collect::<Vec<_>>();
        let (old_e, add_e, remove_e) = (entries(&old), entries(&add), entries(&remove));
        let new = edited_acls(&old_e, &add_e, &remove_e);
        let held = |list: &[Acl], n: &str| list.iter().filter(|a| a.name == n).fold(0u16, |r, a| r | a.rights);
        for n in names {
            let (added, removed) = (held(&add_e, n), held(&remove_e, n));
            proptest::prop_assert_eq!(held(&new, n), (held(&old_e, n) | added) & !removed, "{}", n);
        }
        proptest::prop_assert!(new.iter().all(|a| a.rights != 0));
        // Entries are never made more of: at most one new entry per grantee added.
        proptest::prop_assert!(new.len() <= old_e.len() + names.len());
    }
}
