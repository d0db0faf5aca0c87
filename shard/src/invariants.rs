//! `check_invariants`: recomputes every derived fact from the tables and compares. Tests and
//! the simulator call it after every apply; it is O(state), so production does not.

use std::collections::{BTreeMap, BTreeSet};

use crate::constants::{RETRY_OUTCOMES_MAX, RETRY_OUTCOMES_PER_CLIENT_MAX};
use crate::memtable::probe;
use crate::records::*;
use crate::state::{BucketUsage, ShardState, VolumeUsage, object_id_parts, seq_of, user_volume_key};

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

impl ShardState {
    /// Ok, or the first broken invariant in words.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut volume_ids = BTreeMap::new();
        let mut user_volumes = BTreeSet::new();
        for e in &self.volumes {
            let v: &ArchivedVolumeRecord = e.view();
            let name = std::str::from_utf8(e.key()).map_err(|_| "volume name is not UTF-8".to_string())?;
            self.check_own_id(v.object_id.to_native(), || format!("volume {name}"))?;
            ensure!(volume_ids.insert(v.object_id.to_native(), name).is_none(), "two volumes share object id {}", v.object_id);
            user_volumes.insert(user_volume_key(v.owner.as_str(), name));
        }
        ensure!(user_volumes == self.user_volumes, "the per-user volume list disagrees with the volume owners");

        let mut expect_volume_usage: BTreeMap<u64, VolumeUsage> = volume_ids.keys().map(|id| (*id, VolumeUsage::default())).collect();
        let mut expect_bucket_usage = BTreeMap::new();
        for e in &self.buckets {
            let b: &ArchivedBucketRecord = e.view();
            let k = e.key();
            let sep = k.iter().position(|&c| c == 0).ok_or("bucket key without separator")?;
            let volume = std::str::from_utf8(&k[..sep]).map_err(|_| "bucket's volume name is not UTF-8".to_string())?;
            let bucket_id = b.object_id.to_native();
            self.check_own_id(bucket_id, || format!("bucket {volume}/{}", String::from_utf8_lossy(&k[sep + 1..])))?;
            ensure!(volume_ids.get(&b.volume_id.to_native()) == Some(&volume), "bucket {bucket_id} of volume {volume}: that volume does not exist (or has another id)");
            let vu = expect_volume_usage.get_mut(&b.volume_id.to_native()).ok_or("bucket of a missing volume")?;
            vu.buckets += 1;
            let bu = self.count_keys(bucket_id)?;
            vu.used_bytes += bu.used_bytes;
            expect_bucket_usage.insert(bucket_id, bu);
        }
        // Buckets known from commands (a key shard of a sharded namespace): their volumes live
        // elsewhere, so only the bytes of this shard's keys are counted against them.
        for (bucket_id, (r, _fenced)) in &self.bucket_refs {
            ensure!(!expect_bucket_usage.contains_key(bucket_id), "bucket {bucket_id} is both a record and a carried reference");
            let bu = self.count_keys(*bucket_id)?;
            expect_volume_usage.entry(r.volume_id).or_default().used_bytes += bu.used_bytes;
            expect_bucket_usage.insert(*bucket_id, bu);
        }
        // An empty key table is no key (a snapshot being written keeps emptied ones a while).
        for bucket_id in self.keys.iter().filter(|(_, t)| !t.is_empty()).map(|(id, _)| id) {
            ensure!(expect_bucket_usage.contains_key(bucket_id), "keys exist in bucket {bucket_id}, which does not exist");
        }
        let mut expiry = BTreeSet::new();
        for e in &self.open_keys {
            let o: &ArchivedOpenKeyRecord = e.view();
            let open_id = o.object_id.to_native();
            ensure!(e.key() == open_id.to_be_bytes(), "open key {open_id} is filed under another id");
            self.check_own_id(open_id, || format!("open key {open_id}"))?;
            let bu = expect_bucket_usage.get_mut(&o.bucket_id.to_native()).ok_or_else(|| format!("open key {open_id} is in a bucket that does not exist"))?;
            bu.open_keys += 1;
            expiry.insert((o.expires_ms.to_native(), open_id));
        }
        ensure!(expiry == self.open_key_expiry, "the open-key expiry index disagrees with the open keys");
        // A multipart upload holds its bucket as an open key does; every part has its upload.
        for (b, k, u) in self.uploads.keys() {
            let bu = expect_bucket_usage.get_mut(b).ok_or_else(|| format!("upload {u} of {k} is in bucket {b}, which does not exist"))?;
            bu.open_keys += 1;
        }
        for (b, k, u, n) in self.parts.keys() {
            ensure!(self.uploads.contains_key(&(*b, k.clone(), u.clone())), "part {n} of upload {u} of {k} has no upload");
        }
        // Counters that are all zero carry no information (apply creates them on first touch).
        let nonzero_v = |m: &BTreeMap<u64, VolumeUsage>| m.iter().filter(|(_, u)| **u != VolumeUsage::default()).map(|(k, u)| (*k, *u)).collect::<BTreeMap<_, _>>();
        let nonzero_b = |m: &BTreeMap<u64, BucketUsage>| m.iter().filter(|(_, u)| **u != BucketUsage::default()).map(|(k, u)| (*k, *u)).collect::<BTreeMap<_, _>>();
        let (expect_volume_usage, expect_bucket_usage) = (nonzero_v(&expect_volume_usage), nonzero_b(&expect_bucket_usage));
        let (volume_usage, bucket_usage) = (nonzero_v(&self.volume_usage), nonzero_b(&self.bucket_usage));
        ensure!(expect_volume_usage == volume_usage, "volume usage counters disagree: expected {expect_volume_usage:?}, have {volume_usage:?}");
        ensure!(expect_bucket_usage == bucket_usage, "bucket usage counters disagree: expected {expect_bucket_usage:?}, have {bucket_usage:?}");
        if let Some(last) = self.deleted_blocks.last() {
            ensure!(seq_of(last.key()) < self.next_deleted_seq, "deleted-blocks sequence ran backwards");
        }
        for e in &self.deleted_blocks {
            let d: &ArchivedDeletedBlocksRecord = e.view();
            self.check_own_id(d.object_id.to_native(), || format!("deleted-blocks batch {}", seq_of(e.key())))?;
        }
        let mut moving = BTreeSet::new();
        for (txn, i) in &self.renames_out {
            self.check_own_id(*txn, || format!("rename intent {txn}"))?;
            probe!(k = i.from.as_str());
            ensure!(self.keys.get(&i.bucket_id).is_some_and(|s| s.contains(&*k)), "rename intent {txn}: key {} is not in bucket {}", i.from, i.bucket_id);
            ensure!(moving.insert((i.bucket_id, i.from.clone())), "two rename intents move key {} of bucket {}", i.from, i.bucket_id);
        }
        ensure!(moving == self.moving, "the moving-key set disagrees with the rename intents");
        let mut remembered = BTreeMap::new();
        for (client, s) in &self.sessions {
            ensure!(s.outcomes.len() <= RETRY_OUTCOMES_PER_CLIENT_MAX, "client {client} holds {} outcomes", s.outcomes.len());
            for (request, r) in &s.outcomes {
                ensure!(r.log_index <= self.applied_log_index, "client {client}'s request {request} was applied at {}, after {}", r.log_index, self.applied_log_index);
                ensure!(remembered.insert(r.log_index, (*client, *request, r.time_ms)).is_none(), "two remembered outcomes at log index {}", r.log_index);
            }
        }
        ensure!(remembered.len() <= RETRY_OUTCOMES_MAX, "{} outcomes remembered", remembered.len());
        ensure!(self.retry_order.ordered(), "the retry order is not in log order");
        ensure!(self.retry_order.compact_enough(), "the retry order holds too many forgotten outcomes");
        ensure!(self.retry_order.live() == remembered.len(), "the retry order counts {} outcomes, the sessions hold {}", self.retry_order.live(), remembered.len());
        let order = self.retry_order.live_slots(&self.sessions).map(|s| (s.log_index, (s.client, s.request, s.time_ms)));
        ensure!(order.eq(remembered), "the retry order disagrees with the sessions");
        Ok(())
    }

    /// An object this state created has an id of its group, handed out already (see
    /// [`crate::constants::GROUP_ID_BITS`]).
    fn check_own_id(&self, id: u64, what: impl Fn() -> String) -> Result<(), String> {
        let (group, seq) = object_id_parts(id);
        ensure!(group == self.group, "{} has object id {id:#x} of group {group}, this is group {}", what(), self.group);
        ensure!(seq != 0 && seq <= self.object_seq, "{} has an object id from the future: sequence {seq}, handed out up to {}", what(), self.object_seq);
        Ok(())
    }

    /// Keys and bytes of one bucket, recomputed from its key records.
    fn count_keys(&self, bucket_id: u64) -> Result<BucketUsage, String> {
        let mut bu = BucketUsage::default();
        for ke in self.keys.get(&bucket_id).into_iter().flatten() {
            let r: &ArchivedKeyRecord = ke.view();
            let name = || String::from_utf8_lossy(ke.key()).into_owned();
            let sum: u64 = r.blocks.iter().map(|b| b.length.to_native()).sum();
            ensure!(sum == r.data_size.to_native(), "key {}: size {} but blocks sum to {sum}", name(), r.data_size);
            self.check_own_id(r.object_id.to_native(), || format!("key {}", name()))?;
            bu.keys += 1;
            bu.used_bytes += r.data_size.to_native() * r.replication.native().factor();
        }
        Ok(bu)
    }
}
