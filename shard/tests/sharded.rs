//! A key shard of a sharded namespace: it holds no bucket records, takes the bucket's facts from
//! the command, and refuses key writes in a fenced bucket (the bucket-delete protocol).

use stratos_shard::*;

const T: u64 = 5_000;

fn facts(bucket_id: u64) -> BucketRef {
    BucketRef { bucket_id, volume_id: 9, replication: Replication::RatisThree, quota_bytes: QUOTA_UNLIMITED, quota_namespace: 2, volume_quota_bytes: QUOTA_UNLIMITED, quota_epoch: 0, volume_quota_epoch: 0 }
}

struct Shard {
    state: ShardState,
    log_index: u64,
}

impl Shard {
    fn run(&mut self, bucket: Option<BucketRef>, who: Principal, op: Op) -> Outcome {
        self.log_index += 1;
        let cmd = Command { ctx: CommandContext { client_id: 0, request_id: 0, time_ms: T, principal: who, bucket }, op };
        let out = self.state.apply(self.log_index, &cmd);
        self.state.check_invariants().expect("invariants");
        out
    }
    fn put(&mut self, bucket_id: u64, key: &str) -> Outcome {
        let b = Some(facts(bucket_id));
        let block = BlockLocation { container_id: 1, local_id: self.log_index + 1, pipeline_id: 1, length: 10 };
        let open = Op::OpenKey { volume: "vol".into(), bucket: "bkt".into(), key: key.into(), replication: None, blocks: vec![block], expires_ms: T + 1, metadata: vec![] };
        let Reply::KeyOpened { open_id, .. } = self.run(b, Principal::user("u"), open)? else { panic!("not opened") };
        self.run(b, Principal::user("u"), Op::CommitKey { volume: "vol".into(), bucket: "bkt".into(), key: key.into(), open_id, data_size: 10, blocks: vec![block] })
    }
    fn fence(&mut self, bucket_id: u64, fenced: bool) -> Outcome {
        self.run(Some(facts(bucket_id)), Principal::admin("om"), Op::FenceBucket { fenced })
    }
}

#[test]
fn a_key_shard_takes_bucket_facts_from_the_command() {
    let mut s = Shard { state: ShardState::new(), log_index: 0 };
    s.put(77, "a").expect("put a");
    let k = s.state.lookup_key_in(77, "a").expect("key a");
    assert_eq!(k.replication.native(), Replication::RatisThree, "the bucket's replication comes from the facts");
    assert_eq!(s.state.bucket_usage_of(77), BucketUsage { keys: 1, used_bytes: 30, open_keys: 0 });
    assert_eq!(s.state.volume_used_bytes_of(9), 30);
    s.put(77, "b").expect("put b");
    let third = s.put(77, "c");
    assert!(matches!(third, Err(OmError::QuotaExceeded { .. })), "the carried namespace quota holds: {third:?}");
    let page = s.state.list_keys_in(77, "", "", 10).expect("list");
    assert_eq!(page.items.iter().map(|k| k.name).collect::<Vec<_>>(), ["a", "b"]);

    // Snapshots keep the carried references and the fences.
    s.fence(77, true).expect("fence");
    let back = ShardState::load_snapshot(&s.state.snapshot()).expect("load");
    assert_eq!(back.state_hash(), s.state.state_hash());
}

#[test]
fn a_fenced_bucket_refuses_key_writes_and_reports_what_it_holds() {
    let mut s = Shard { state: ShardState::new(), log_index: 0 };
    s.put(5, "k").expect("put");
    let block = BlockLocation { container_id: 2, local_id: 1, pipeline_id: 1, length: 0 };
    let open = Op::OpenKey { volume: "vol".into(), bucket: "bkt".into(), key: "open".into(), replication: None, blocks: vec![block], expires_ms: T + 1, metadata: vec![] };
    s.run(Some(facts(5)), Principal::user("u"), open.clone()).expect("open");

    assert_eq!(s.fence(5, true), Ok(Reply::BucketUsage { keys: 1, open_keys: 1 }));
    let refused = s.run(Some(facts(5)), Principal::user("u"), open.clone());
    assert!(matches!(&refused, Err(OmError::BucketNotFound(m)) if m.contains("being deleted")), "{refused:?}");
    assert!(matches!(s.put(5, "x"), Err(OmError::BucketNotFound(_))));

    // Another bucket is not affected; unfencing (a delete given up) accepts writes again.
    s.put(6, "k").expect("other bucket");
    assert_eq!(s.fence(5, false), Ok(Reply::BucketUsage { keys: 1, open_keys: 1 }));
    s.put(5, "y").expect("after unfence");

    // Only an administrator (the OM itself) may fence.
    let denied = s.run(Some(facts(5)), Principal::user("u"), Op::FenceBucket { fenced: true });
    assert!(matches!(denied, Err(OmError::PermissionDenied { .. })), "{denied:?}");
}

#[test]
fn a_bucket_being_deleted_is_marked_in_the_meta_group() {
    let mut m = Shard { state: ShardState::new(), log_index: 0 };
    let root = Principal::admin("root");
    m.run(None, root.clone(), Op::CreateVolume { volume: "vol".into(), owner: "u".into(), admin: "root".into(), quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] }).expect("volume");
    let Ok(Reply::Created { object_id }) = m.run(None, Principal::user("u"), Op::CreateBucket { volume: "vol".into(), bucket: "bkt".into(), owner: None, versioning: false, replication: Replication::RatisOne, quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] }) else { panic!("bucket") };
    let other = m.run(None, Principal::user("eve"), Op::SetBucketDeleting { volume: "vol".into(), bucket: "bkt".into(), deleting: true });
    assert!(matches!(other, Err(OmError::PermissionDenied { .. })), "{other:?}");
    assert_eq!(m.run(None, Principal::user("u"), Op::SetBucketDeleting { volume: "vol".into(), bucket: "bkt".into(), deleting: true }), Ok(Reply::BucketMarked { bucket_id: object_id }));
    assert!(m.state.bucket_info("vol", "bkt").expect("info").record.deleting);
}

/// Object ids repeated across groups (issue 19, item 4): each group derived them from its own
/// log index, so keys of one bucket on two shards, written at the same log index, shared an id
/// (135 of 184 ids of one bucket were shared). Ids now carry the group.
#[test]
fn object_ids_are_unique_across_groups_and_snapshots() {
    let mut meta = Shard { state: ShardState::new(), log_index: 0 };
    let root = Principal::admin("root");
    let Ok(Reply::Created { object_id: volume_id }) = meta.run(None, root.clone(), Op::CreateVolume { volume: "vol".into(), owner: "u".into(), admin: "root".into(), quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] }) else { panic!("volume") };
    let Ok(Reply::Created { object_id: bucket_id }) = meta.run(None, root, Op::CreateBucket { volume: "vol".into(), bucket: "bkt".into(), owner: None, versioning: false, replication: Replication::RatisOne, quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] }) else { panic!("bucket") };
    let mut shards = [Shard { state: ShardState::for_group(1), log_index: 0 }, Shard { state: ShardState::for_group(2), log_index: 0 }];
    let ids = |s: &Shard| -> Vec<u64> { s.state.list_keys_in(bucket_id, "", "", 100).expect("list").items.iter().map(|k| k.record.object_id.to_native()).collect() };
    for (i, s) in shards.iter_mut().enumerate() {
        s.put(bucket_id, &format!("{i}-0")).expect("put");
    }
    // A shard restarted from its snapshot goes on with its own sequence.
    let back = ShardState::load_snapshot(&shards[1].state.snapshot()).expect("load");
    assert_eq!(back.group(), 2, "the snapshot keeps the group");
    shards[1].state = back;
    shards[1].put(bucket_id, "1-1").expect("put after the snapshot");

    let mut all = vec![volume_id, bucket_id];
    all.extend(ids(&shards[0]));
    all.extend(ids(&shards[1]));
    assert_eq!(all.len(), 2 + 3, "{all:?}");
    let distinct: std::collections::BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "object ids repeat across groups: {all:x?}");
    for id in ids(&shards[1]) {
        assert_eq!(object_id_parts(id).0, 2, "key id {id:#x} names its group");
    }
}

/// Quotas were checked per shard (issue 19, item 5): a bucket's keys on each shard were held to
/// the whole quota, so a namespace quota of 3 held 6 keys on two shards, and the refusal said
/// "3 used + 1 > 3". A counted commit checks the bucket as a whole: this shard's usage plus the
/// other shards' usage the leader carried.
#[test]
fn a_counted_commit_holds_the_quota_for_the_bucket_as_a_whole() {
    let facts = BucketRef { bucket_id: 4, volume_id: 9, replication: Replication::RatisOne, quota_bytes: 100, quota_namespace: 3, volume_quota_bytes: 150, quota_epoch: 0, volume_quota_epoch: 0 };
    let mut s = Shard { state: ShardState::for_group(2), log_index: 0 };
    let put = |s: &mut Shard, key: &str, size: u64, elsewhere: Elsewhere| -> Outcome {
        let block = BlockLocation { container_id: 1, local_id: s.log_index + 1, pipeline_id: 1, length: size };
        let open = Op::OpenKey { volume: "vol".into(), bucket: "bkt".into(), key: key.into(), replication: None, blocks: vec![block], expires_ms: T + 1, metadata: vec![] };
        let Reply::KeyOpened { open_id, .. } = s.run(Some(facts), Principal::user("u"), open)? else { panic!("not opened") };
        s.run(Some(facts), Principal::user("u"), Op::CommitKeyCounted { volume: "vol".into(), bucket: "bkt".into(), key: key.into(), open_id, data_size: size, blocks: vec![block], elsewhere })
    };
    // Two keys (20 bytes) of the bucket are on another shard.
    let two_elsewhere = Elsewhere { keys: 2, bytes: 20, volume_bytes: 20 };
    put(&mut s, "a", 10, two_elsewhere).expect("the third key");
    let refused = put(&mut s, "b", 10, two_elsewhere).expect_err("a fourth key");
    assert_eq!(refused, OmError::QuotaExceeded { what: "bucket vol/bkt namespace".into(), used: 3, adding: 1, quota: 3 });
    assert_eq!(refused.to_string(), "bucket vol/bkt namespace quota exceeded: 3 used + 1 > 3");
    // Bytes: 10 here and 90 elsewhere leave no room for an overwrite that grows "a".
    let ninety = Elsewhere { keys: 2, bytes: 90, volume_bytes: 90 };
    let refused = put(&mut s, "a", 11, ninety).expect_err("a larger overwrite");
    assert_eq!(refused.to_string(), "bucket vol/bkt bytes quota exceeded: 100 used + 1 > 100");
    put(&mut s, "a", 10, ninety).expect("an overwrite of the same size");
    // The volume's bytes on other shards count against its quota (other buckets' too).
    let volume_full = Elsewhere { keys: 0, bytes: 0, volume_bytes: 140 };
    let refused = put(&mut s, "a", 20, volume_full).expect_err("beyond the volume quota");
    assert_eq!(refused.to_string(), "volume vol bytes quota exceeded: 150 used + 10 > 150");
    assert_eq!(s.state.bucket_usage_of(4), BucketUsage { keys: 1, used_bytes: 10, open_keys: 3 });
}

/// A listing with a delimiter, against the rule stated plainly: the keys after `start_after`
/// under `prefix`, in name order, each common prefix's keys rolled up into the first of them
/// (S3's rule: the prefix, then up to and including the delimiter's first occurrence after
/// it), at most `limit`, truncated when more follow. The shard seeks past each common prefix
/// instead of walking its keys; this checks that it lands where the walk would have.
mod rolled_up {
    use super::*;
    use proptest::prelude::*;

    fn unlimited(bucket_id: u64) -> BucketRef {
        BucketRef { quota_namespace: QUOTA_UNLIMITED, ..facts(bucket_id) }
    }

    fn expected(names: &std::collections::BTreeSet<String>, prefix: &str, start_after: &str, limit: usize, delimiter: &str) -> (Vec<String>, bool) {
        let mut rolled: Vec<String> = Vec::new();
        let mut last_group: Option<String> = None;
        for n in names.iter().filter(|n| n.starts_with(prefix) && n.as_str() > start_after) {
            let group = names::common_prefix(n, prefix, delimiter).map(str::to_string);
            if group.is_some() && group == last_group {
                continue;
            }
            last_group = group;
            rolled.push(n.clone());
        }
        let truncated = rolled.len() > limit;
        rolled.truncate(limit);
        (rolled, truncated)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        #[test]
        fn a_rolled_up_listing_is_the_walk_s_answer(
            names in proptest::collection::btree_set("[ab-][ab/-]{0,5}", 1..40),
            prefix in prop_oneof![Just(""), Just("a"), Just("a/"), Just("b-")],
            start_after in prop_oneof![Just(String::new()), "[ab/-]{1,4}"],
            delimiter in prop_oneof![Just(""), Just("/"), Just("-"), Just("/-")],
            limit in 1usize..8,
        ) {
            let mut s = Shard { state: ShardState::new(), log_index: 0 };
            for n in &names {
                let b = Some(unlimited(3));
                let block = BlockLocation { container_id: 1, local_id: s.log_index + 1, pipeline_id: 1, length: 10 };
                let open = Op::OpenKey { volume: "vol".into(), bucket: "bkt".into(), key: n.clone(), replication: None, blocks: vec![block], expires_ms: T + 1, metadata: vec![] };
                let Ok(Reply::KeyOpened { open_id, .. }) = s.run(b, Principal::user("u"), open) else { panic!("not opened") };
                s.run(b, Principal::user("u"), Op::CommitKey { volume: "vol".into(), bucket: "bkt".into(), key: n.clone(), open_id, data_size: 10, blocks: vec![block] }).expect("commit");
            }
            let page = s.state.list_keys_rolled_up(3, prefix, &start_after, limit, delimiter).expect("list");
            let got: Vec<String> = page.items.iter().map(|k| k.name.to_string()).collect();
            let (want, truncated) = expected(&names, prefix, &start_after, limit, delimiter);
            prop_assert_eq!(&got, &want, "names {:?}, prefix {:?}, after {:?}, delimiter {:?}, limit {}", names, prefix, start_after, delimiter, limit);
            prop_assert_eq!(page.truncated, truncated);
        }

        /// The same rule for multipart uploads (ListMultipartUploads): in (key, upload id) order
        /// after a (key, upload id) marker, each common prefix's uploads rolled up into its
        /// first. Keys hold one to three uploads, so a group's first key may have more than one,
        /// and a marker may fall between a key's uploads. Also checks that a bucket's other
        /// uploads (before and after it in the table) are not listed.
        #[test]
        fn a_rolled_up_upload_listing_is_the_walk_s_answer(
            keys in proptest::collection::btree_map("[ab-][ab/-]{0,5}", 1usize..4, 1..30),
            prefix in prop_oneof![Just(""), Just("a"), Just("a/"), Just("b-")],
            after in prop_oneof![Just((String::new(), String::new())), ("[ab/-]{1,4}", prop_oneof![Just(String::new()), Just("u1".to_string()), Just("u2".to_string())])],
            delimiter in prop_oneof![Just(""), Just("/"), Just("-"), Just("/-")],
            limit in 1usize..8,
        ) {
            let mut s = Shard { state: ShardState::new(), log_index: 0 };
            let mut uploads = std::collections::BTreeSet::new();
            for (bucket_id, key, n) in keys.iter().map(|(k, n)| (3, k.as_str(), *n)).chain([(2, "a", 1), (4, "a", 1)]) {
                for i in 1..=n {
                    let id = format!("u{i}");
                    let start = Op::InitiateUpload { volume: "vol".into(), bucket: "bkt".into(), key: key.into(), upload_id: id.clone(), replication: None, metadata: vec![] };
                    s.run(Some(unlimited(bucket_id)), Principal::user("u"), start).expect("initiate");
                    if bucket_id == 3 {
                        uploads.insert((key.to_string(), id));
                    }
                }
            }
            let (list, more) = s.state.list_uploads_in(3, prefix, (&after.0, &after.1), limit, "", delimiter);
            let got: Vec<(String, String)> = list.into_iter().map(|u| (u.key, u.upload_id)).collect();
            let mut want: Vec<(String, String)> = Vec::new();
            let mut last_group: Option<String> = None;
            for (k, id) in uploads.iter().filter(|(k, id)| k.starts_with(prefix) && (k, id) > (&after.0, &after.1)) {
                let group = names::common_prefix(k, prefix, delimiter).map(str::to_string);
                if group.is_some() && group == last_group {
                    continue;
                }
                last_group = group;
                want.push((k.clone(), id.clone()));
            }
            let truncated = want.len() > limit;
            want.truncate(limit);
            prop_assert_eq!(&got, &want, "uploads {:?}, prefix {:?}, after {:?}, delimiter {:?}, limit {}", uploads, prefix, after, delimiter, limit);
            prop_assert_eq!(more, truncated);
        }
    }
}
