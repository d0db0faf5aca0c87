//! Exact quotas over a bucket whose keys live on several key shards (issue 19, item 5): each
//! shard grows the bucket only within an allowance the meta group granted it (see
//! stratos-shard's `apply_quota`). A model checks that no interleaving of the protocol's
//! messages (delivered late, twice, or never: a leader crash) lets the shards together hold
//! more than the quota; a driver written as the OM leader's loop shows that the quota is
//! reached exactly, from every shard.

use proptest::prelude::*;
use stratos_shard::*;

const T: u64 = 5_000;
const SHARDS: u32 = 3;

struct Node {
    state: ShardState,
    log_index: u64,
}

impl Node {
    fn run(&mut self, bucket: Option<BucketRef>, who: Principal, op: Op) -> Outcome {
        self.log_index += 1;
        let cmd = Command { ctx: CommandContext { client_id: 0, request_id: 0, time_ms: T, principal: who, bucket }, op };
        let out = self.state.apply(self.log_index, &cmd);
        self.state.check_invariants().expect("invariants");
        out
    }
}

fn om() -> Principal {
    Principal::admin("om")
}

/// The meta group (group 0) and the key shards (groups 1..=SHARDS), with one bucket.
struct Cluster {
    meta: Node,
    shards: Vec<Node>,
    bucket_id: u64,
    volume_id: u64,
    next_key: u64,
}

impl Cluster {
    fn new(quota_bytes: u64, quota_keys: u64, volume_quota: u64) -> Self {
        let mut meta = Node { state: ShardState::new(), log_index: 0 };
        let Ok(Reply::Created { object_id: volume_id }) = meta.run(None, om(), Op::CreateVolume { volume: "vol".into(), owner: "u".into(), admin: "root".into(), quota_bytes: volume_quota, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] }) else { panic!("volume") };
        let Ok(Reply::Created { object_id: bucket_id }) = meta.run(None, om(), Op::CreateBucket { volume: "vol".into(), bucket: "bkt".into(), owner: None, versioning: false, replication: Replication::RatisOne, quota_bytes, quota_namespace: quota_keys, acls: vec![], metadata: vec![] }) else { panic!("bucket") };
        let shards = (1..=SHARDS).map(|g| Node { state: ShardState::for_group(g), log_index: 0 }).collect();
        Cluster { meta, shards, bucket_id, volume_id, next_key: 0 }
    }

    /// The bucket's facts as the meta group states them now.
    fn facts(&self) -> BucketRef {
        let b = self.meta.state.bucket_info("vol", "bkt").expect("bucket");
        let v = self.meta.state.volume_info("vol").expect("volume");
        BucketRef {
            bucket_id: self.bucket_id,
            volume_id: self.volume_id,
            replication: Replication::RatisOne,
            quota_bytes: b.record.quota_bytes.to_native(),
            quota_namespace: b.record.quota_namespace.to_native(),
            volume_quota_bytes: v.record.quota_bytes.to_native(),
            quota_epoch: b.record.update_id.to_native(),
            volume_quota_epoch: v.record.update_id.to_native(),
        }
    }

    fn totals(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(b, k), s| {
            let u = s.state.bucket_usage_of(self.bucket_id);
            (b + u.used_bytes, k + u.keys)
        })
    }

    /// Opens and commits a new key of `size` bytes on shard `s` (index into `shards`).
    fn commit(&mut self, s: usize, size: u64) -> Outcome {
        self.next_key += 1;
        let key = format!("k{}", self.next_key);
        let facts = self.facts();
        let node = &mut self.shards[s];
        let block = BlockLocation { container_id: 1, local_id: self.next_key, pipeline_id: 1, length: size };
        let open = Op::OpenKey { volume: "vol".into(), bucket: "bkt".into(), key: key.clone(), replication: None, blocks: vec![block], expires_ms: T + 1_000_000, metadata: vec![] };
        let Reply::KeyOpened { open_id, .. } = node.run(Some(facts), Principal::user("u"), open).expect("open") else { panic!("not opened") };
        let (before_bytes, before_keys) = self.totals();
        let out = self.shards[s].run(Some(facts), Principal::user("u"), Op::CommitKeyAllowed { volume: "vol".into(), bucket: "bkt".into(), key, open_id, data_size: size, blocks: vec![block] });
        let (bytes, keys) = self.totals();
        if out.is_ok() {
            assert!(bytes <= facts.quota_bytes && bytes <= facts.volume_quota_bytes, "{bytes} bytes admitted under quotas {} / {}", facts.quota_bytes, facts.volume_quota_bytes);
            assert!(keys <= facts.quota_namespace, "{keys} keys admitted under a namespace quota of {}", facts.quota_namespace);
        } else {
            assert_eq!((bytes, keys), (before_bytes, before_keys), "a refused commit changed usage: {out:?}");
        }
        out
    }

    fn delete_one(&mut self, s: usize) {
        let id = self.bucket_id;
        let facts = self.facts();
        let node = &mut self.shards[s];
        let first = node.state.list_keys_in(id, "", "", 1).expect("list").items.first().map(|k| k.name.to_string());
        if let Some(key) = first {
            node.run(Some(facts), Principal::user("u"), Op::DeleteKey { volume: "vol".into(), bucket: "bkt".into(), key }).expect("delete");
        }
    }

    /// Asks the meta group for an allowance, telling it what shard `s` holds now.
    fn grant(&mut self, s: usize, scope_is_bucket: bool, want_bytes: u64, want_keys: u64) -> (u64, Allowance, u64, u64) {
        let bucket = scope_is_bucket.then(|| "bkt".to_string());
        let (holding_bytes, holding_keys) = if scope_is_bucket {
            let u = self.shards[s].state.bucket_usage_of(self.bucket_id);
            (u.used_bytes, u.keys)
        } else {
            (self.shards[s].state.volume_used_bytes_of(self.volume_id), 0)
        };
        let op = Op::GrantQuota { volume: "vol".into(), bucket, shard: s as u32 + 1, want_bytes, want_keys, holding_bytes, holding_keys };
        match self.meta.run(None, om(), op) {
            Ok(Reply::Granted { scope, allowance, others_bytes, others_keys }) => (scope, allowance, others_bytes, others_keys),
            other => panic!("grant: {other:?}"),
        }
    }

    fn set(&mut self, s: usize, scope: u64, allowance: Allowance) {
        assert_eq!(self.shards[s].run(None, om(), Op::SetAllowance { scope, allowance }), Ok(Reply::Done));
    }

    fn release(&mut self, s: usize, scope: u64) -> Allowance {
        match self.shards[s].run(None, om(), Op::ReleaseAllowance { scope }) {
            Ok(Reply::Allowance { allowance }) => allowance,
            other => panic!("release: {other:?}"),
        }
    }

    fn lower(&mut self, s: usize, scope: u64, a: Allowance) -> Allowance {
        let op = Op::LowerGrant { scope, shard: s as u32 + 1, bytes: a.bytes, keys: a.keys, version: a.version };
        match self.meta.run(None, om(), op) {
            Ok(Reply::Allowance { allowance }) => allowance,
            other => panic!("lower: {other:?}"),
        }
    }

    /// The OM leader's release of another shard's slack (`release_slack`): release, lower the
    /// grant; if a grant was made since that the shard never took (its leader crashed between
    /// the two steps, or the grant fell short), hand it over and do it once more.
    fn release_slack(&mut self, other: usize, scope: u64) {
        for _ in 0..2 {
            let released = self.release(other, scope);
            let grant = self.lower(other, scope, released);
            if grant.version == released.version {
                return;
            }
            self.set(other, scope, grant);
        }
    }

    /// The OM leader's loop for one commit (server/om/src/core.rs, `commit_with_allowance`):
    /// on NeedsAllowance ask the meta group for the need plus a chunk; short, release the
    /// other shards' slack and ask once more; still short, the quota is full.
    fn put(&mut self, s: usize, size: u64) -> Outcome {
        for _ in 0..8 {
            let (scope, bytes, keys) = match self.commit(s, size) {
                Err(OmError::NeedsAllowance { scope, bytes, keys, .. }) => (scope, bytes, keys),
                other => return other,
            };
            let is_bucket = scope == self.bucket_id;
            let mut granted = false;
            for round in 0..2 {
                let (scope_back, a, _, _) = self.grant(s, is_bucket, bytes + 7, keys + 1);
                assert_eq!(scope_back, scope);
                // Taken even when short, so the shard's version keeps up with its grant.
                self.set(s, scope, a);
                let f = self.facts();
                let (qb, qk) = if is_bucket { (f.quota_bytes, f.quota_namespace) } else { (f.volume_quota_bytes, QUOTA_UNLIMITED) };
                if (qb == QUOTA_UNLIMITED || bytes <= a.bytes) && (qk == QUOTA_UNLIMITED || keys <= a.keys) {
                    granted = true;
                    break;
                }
                if round == 0 {
                    for other in (0..SHARDS as usize).filter(|o| *o != s) {
                        self.release_slack(other, scope);
                    }
                }
            }
            if !granted {
                return Err(OmError::QuotaExceeded { what: "model".into(), used: 0, adding: 0, quota: 0 });
            }
        }
        panic!("allowances kept moving");
    }
}

#[test]
fn the_namespace_quota_is_reached_exactly_from_every_shard() {
    let mut c = Cluster::new(QUOTA_UNLIMITED, 7, QUOTA_UNLIMITED);
    let mut landed = 0;
    for i in 0..30 {
        if c.put(i % SHARDS as usize, 10).is_ok() {
            landed += 1;
        }
    }
    assert_eq!(landed, 7, "exactly the quota's keys land");
    assert_eq!(c.totals().1, 7);
    // Every shard holds some: slack was released to whoever needed it.
    for s in &c.shards {
        assert!(s.state.bucket_usage_of(c.bucket_id).keys >= 2, "a shard was starved");
    }
    // Deleting frees room on any shard, even one that holds nothing of the freed keys.
    c.delete_one(0);
    c.delete_one(0);
    assert!(c.put(1, 10).is_ok() && c.put(2, 10).is_ok());
    assert!(c.put(1, 10).is_err());
    assert_eq!(c.totals().1, 7);
}

#[test]
fn byte_and_volume_quotas_are_reached_exactly() {
    let mut c = Cluster::new(95, QUOTA_UNLIMITED, 1_000);
    let landed = (0..40).filter(|i| c.put(i % SHARDS as usize, 10).is_ok()).count();
    assert_eq!(landed, 9);
    assert!(c.put(2, 5).is_ok(), "the last 5 bytes fit");
    assert_eq!(c.totals().0, 95);

    let mut v = Cluster::new(QUOTA_UNLIMITED, QUOTA_UNLIMITED, 64);
    let landed = (0..40).filter(|i| v.put(i % SHARDS as usize, 8).is_ok()).count();
    assert_eq!(landed, 8);
    assert_eq!(v.totals().0, 64);
}

#[test]
fn a_changed_quota_needs_a_new_grant() {
    let mut c = Cluster::new(QUOTA_UNLIMITED, 30, QUOTA_UNLIMITED);
    for i in 0..6 {
        c.put(i % SHARDS as usize, 1).expect("under the quota");
    }
    // Lowered to 8: the shards' allowances, granted under 30, allow no growth now.
    let set = Op::SetBucketProperty { volume: "vol".into(), bucket: "bkt".into(), owner: None, versioning: None, replication: None, quota_bytes: None, quota_namespace: Some(8) };
    c.meta.run(None, om(), set).expect("lower the quota");
    let landed = (0..20).filter(|i| c.put(i % SHARDS as usize, 1).is_ok()).count();
    assert_eq!(landed, 2);
    assert_eq!(c.totals().1, 8);
    // Cleared: no allowance needed at all.
    let clear = Op::SetBucketProperty { volume: "vol".into(), bucket: "bkt".into(), owner: None, versioning: None, replication: None, quota_bytes: None, quota_namespace: Some(QUOTA_UNLIMITED) };
    c.meta.run(None, om(), clear).expect("clear the quota");
    assert!(matches!(c.commit(0, 1), Ok(Reply::KeyCommitted { .. })));
}

#[test]
fn grants_survive_snapshots_and_go_with_their_bucket() {
    let mut c = Cluster::new(QUOTA_UNLIMITED, 4, QUOTA_UNLIMITED);
    c.put(0, 1).expect("put");
    for n in std::iter::once(&mut c.meta).chain(c.shards.iter_mut()) {
        let back = ShardState::load_snapshot(&n.state.snapshot()).expect("load");
        assert_eq!(back.state_hash(), n.state.state_hash(), "allowances and grants are in the snapshot");
        n.state = back;
    }
    // The grant came back: the other shards still cannot take the whole quota.
    let landed = (0..10).filter(|i| c.put(1 + i % 2, 1).is_ok()).count();
    assert_eq!(landed, 3);
    // Only the OM itself may move allowances.
    let forged = c.shards[0].run(None, Principal::user("u"), Op::SetAllowance { scope: c.bucket_id, allowance: Allowance { bytes: 9, keys: 9, version: 99, epoch: 2 } });
    assert!(matches!(forged, Err(OmError::PermissionDenied { .. })), "{forged:?}");
    let forged = c.meta.run(None, Principal::user("u"), Op::GrantQuota { volume: "vol".into(), bucket: Some("bkt".into()), shard: 1, want_bytes: 1, want_keys: 1, holding_bytes: 0, holding_keys: 0 });
    assert!(matches!(forged, Err(OmError::PermissionDenied { .. })), "{forged:?}");
}

/// One step of the protocol, in any order a network and crashing leaders can produce.
#[derive(Debug, Clone)]
enum Step {
    /// A commit as the OM leader drives it (asks for allowances until it fits or the quota
    /// is full).
    Put { shard: usize, size: u64 },
    /// A bare commit: whatever the shard's allowance is now.
    Commit { shard: usize, size: u64 },
    Delete { shard: usize },
    /// The meta group grants; the SetAllowance goes into the air.
    Grant { shard: usize, bucket: bool, want_bytes: u64, want_keys: u64 },
    /// A shard releases; the LowerGrant goes into the air.
    Release { shard: usize, bucket: bool },
    /// A message in the air arrives (index modulo their number); `again`: it stays in the air,
    /// to arrive a second time later.
    Deliver { which: usize, again: bool },
    /// A message is lost (its sender crashed).
    Lose { which: usize },
    /// The bucket's namespace quota changes.
    Quota { keys: u64 },
}

#[derive(Debug, Clone)]
enum Message {
    Set { shard: usize, scope: u64, allowance: Allowance },
    Lower { shard: usize, scope: u64, allowance: Allowance },
}

fn step() -> impl Strategy<Value = Step> {
    let shard = 0..SHARDS as usize;
    prop_oneof![
        4 => (shard.clone(), 1..30u64).prop_map(|(shard, size)| Step::Put { shard, size }),
        2 => (shard.clone(), 1..30u64).prop_map(|(shard, size)| Step::Commit { shard, size }),
        1 => shard.clone().prop_map(|shard| Step::Delete { shard }),
        3 => (shard.clone(), any::<bool>(), 0..150u64, 0..12u64).prop_map(|(shard, bucket, want_bytes, want_keys)| Step::Grant { shard, bucket, want_bytes, want_keys }),
        2 => (shard, any::<bool>()).prop_map(|(shard, bucket)| Step::Release { shard, bucket }),
        4 => (any::<usize>(), prop::bool::weighted(0.2)).prop_map(|(which, again)| Step::Deliver { which, again }),
        1 => any::<usize>().prop_map(|which| Step::Lose { which }),
        1 => (3..12u64).prop_map(|keys| Step::Quota { keys }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever order grants, releases and their messages take, and whichever are lost or
    /// repeated, no commit is admitted beyond the bucket's byte, namespace or volume quota
    /// (`Cluster::commit` asserts it after every commit).
    #[test]
    fn no_interleaving_admits_more_than_the_quota(steps in prop::collection::vec(step(), 1..120)) {
        let mut c = Cluster::new(120, 8, 200);
        let mut air: Vec<Message> = Vec::new();
        for s in steps {
            match s {
                Step::Commit { shard, size } => {
                    let _ = c.commit(shard, size);
                }
                Step::Put { shard, size } => {
                    let _ = c.put(shard, size);
                }
                Step::Delete { shard } => c.delete_one(shard),
                Step::Grant { shard, bucket, want_bytes, want_keys } => {
                    let (scope, allowance, _, _) = c.grant(shard, bucket, want_bytes, want_keys);
                    air.push(Message::Set { shard, scope, allowance });
                }
                Step::Release { shard, bucket } => {
                    let scope = if bucket { c.bucket_id } else { c.volume_id };
                    let allowance = c.release(shard, scope);
                    air.push(Message::Lower { shard, scope, allowance });
                }
                Step::Deliver { which, again } if !air.is_empty() => {
                    let i = which % air.len();
                    let m = if again { air[i].clone() } else { air.remove(i) };
                    match m {
                        Message::Set { shard, scope, allowance } => c.set(shard, scope, allowance),
                        Message::Lower { shard, scope, allowance } => {
                            c.lower(shard, scope, allowance);
                        }
                    }
                }
                Step::Lose { which } if !air.is_empty() => {
                    air.remove(which % air.len());
                }
                Step::Quota { keys } => {
                    // Below the keys in use too: the meta group does not see them.
                    let set = Op::SetBucketProperty { volume: "vol".into(), bucket: "bkt".into(), owner: None, versioning: None, replication: None, quota_bytes: None, quota_namespace: Some(keys) };
                    c.meta.run(None, om(), set).expect("set the quota");
                }
                _ => {}
            }
        }
    }
}

/// A bucket's space quota above its volume's was accepted (issue 19, newcomer pass). As in
/// Ozone, the buckets' space quotas must fit in the volume's, on create, on update, and when
/// the volume's quota is lowered.
#[test]
fn bucket_space_quotas_fit_in_the_volume_quota() {
    let mut c = Cluster::new(40, QUOTA_UNLIMITED, 100);
    let create = |bucket: &str, quota_bytes: u64| Op::CreateBucket { volume: "vol".into(), bucket: bucket.into(), owner: None, versioning: false, replication: Replication::RatisOne, quota_bytes, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] };
    c.meta.run(None, om(), create("bkt2", 60)).expect("40 + 60 fit in 100");
    let over = c.meta.run(None, om(), create("bkt3", 1)).expect_err("101 > 100");
    assert_eq!(over.to_string(), "invalid argument: the space quotas of volume vol's buckets would total 101 bytes, above the volume's space quota of 100 bytes");
    c.meta.run(None, om(), create("bkt3", QUOTA_UNLIMITED)).expect("a bucket without a quota");
    let set = |bucket: &str, q: u64| Op::SetBucketProperty { volume: "vol".into(), bucket: bucket.into(), owner: None, versioning: None, replication: None, quota_bytes: Some(q), quota_namespace: None };
    assert!(c.meta.run(None, om(), set("bkt", 41)).is_err(), "41 + 60 > 100");
    c.meta.run(None, om(), set("bkt", 30)).expect("30 + 60 fit");
    let lower = |q: u64| Op::SetVolumeQuota { volume: "vol".into(), quota_bytes: Some(q), quota_namespace: None };
    assert!(c.meta.run(None, om(), lower(89)).is_err(), "the buckets' 90 bytes no longer fit");
    c.meta.run(None, om(), lower(90)).expect("exactly the buckets' quotas");
}
