//! A key shard of a sharded namespace, as the suites drive it: every command carries bucket 7's
//! facts (in volume 9), as the leader's fill does (it has checked the bucket's rights), and is
//! applied at the next log index with the invariants checked after. Used by `rename` and
//! `behaviour`.

use stratos_shard::records::KeyRecord;
use stratos_shard::*;

/// Every command's time.
pub const T: u64 = 5_000;

pub fn facts() -> BucketRef {
    BucketRef { bucket_id: 7, volume_id: 9, replication: Replication::RatisThree, quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, volume_quota_bytes: QUOTA_UNLIMITED, quota_epoch: 0, volume_quota_epoch: 0 }
}

pub struct Shard {
    pub state: ShardState,
    pub log_index: u64,
}

impl Shard {
    pub fn new() -> Self {
        Shard { state: ShardState::new(), log_index: 0 }
    }
    /// `op` by `who`, as request `client.1` of client `client.0` (client 0: not remembered for
    /// retries).
    pub fn run_as(&mut self, client: (u64, u64), who: Principal, op: Op) -> Outcome {
        self.log_index += 1;
        let cmd = Command { ctx: CommandContext { client_id: client.0, request_id: client.1, time_ms: T, principal: who, bucket: Some(facts()) }, op };
        let out = self.state.apply(self.log_index, &cmd);
        self.state.check_invariants().expect("invariants");
        out
    }
    pub fn run(&mut self, op: Op) -> Outcome {
        self.by("u", op)
    }
    /// `op` by the user `who`.
    pub fn by(&mut self, who: &str, op: Op) -> Outcome {
        self.run_as((0, 0), Principal::user(who), op)
    }
    pub fn put(&mut self, key: &str, length: u64) -> Outcome {
        self.put_with(key, length, vec![])
    }
    pub fn put_with(&mut self, key: &str, length: u64, metadata: Vec<MetadataPair>) -> Outcome {
        let block = BlockLocation { container_id: 1, local_id: self.log_index + 1, pipeline_id: 1, length };
        let open = Op::OpenKey { volume: "vol".into(), bucket: "bkt".into(), key: key.into(), replication: None, blocks: vec![block], expires_ms: T + 1, metadata };
        let Reply::KeyOpened { open_id, .. } = self.run(open)? else { panic!("not opened") };
        self.run(Op::CommitKey { volume: "vol".into(), bucket: "bkt".into(), key: key.into(), open_id, data_size: length, blocks: vec![block] })
    }
    pub fn delete(&mut self, key: &str) -> Outcome {
        self.run(Op::DeleteKey { volume: "vol".into(), bucket: "bkt".into(), key: key.into() })
    }
    pub fn size_of(&self, key: &str) -> Option<u64> {
        self.state.lookup_key_in(7, key).map(|k| k.data_size.to_native())
    }
    /// The key's record as stored, if it exists.
    pub fn record_of(&self, key: &str) -> Option<KeyRecord> {
        self.state.lookup_key_in(7, key).map(|k| rkyv::deserialize::<KeyRecord, rkyv::rancor::Error>(k).expect("a stored record deserializes"))
    }
    /// The key's update id and own ACL entries (grantee, rights), if it exists.
    pub fn acls_of(&self, key: &str) -> Option<(u64, Vec<(String, u16)>)> {
        self.record_of(key).map(|k| (k.update_id, k.acls.into_iter().map(|a| (a.name, a.rights)).collect()))
    }
}
