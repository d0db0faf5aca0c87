//! `apply` for a rename that moves a key to another shard (the namespace is hash-sharded by
//! key name, so most renames do). Three commands, driven by the OM that took the request:
//!
//! 1. `RenameOut` on the source shard: an intent, and `from` is pinned (writes to it are
//!    refused with `KeyBusy`; reads still see it). Replies the key's record.
//! 2. `RenameIn` on the destination: `to` is created from that record unless it exists. Its
//!    outcome is remembered by (source shard, intent id), so repeating step 2 (a client's
//!    retry, or the re-driver after a crash) gets the first answer and never creates `to`
//!    twice or after it was given up.
//! 3. `RenameFinish` on the source: on success `from` is deleted (without freeing its blocks,
//!    which `to` now owns); on failure the intent is dropped. Repeating it changes nothing.
//!
//! Between steps 2 and 3 both names exist (a copy, then a delete, as S3 clients do a rename);
//! neither is ever missing. An intent survives crashes in the source shard's log; the server
//! re-drives intents older than a few seconds (step 2 again, then step 3 by its answer).

use crate::command::Principal;
use crate::memtable::probe;
use crate::names::check_key_name;
use crate::outcome::{OmError, Outcome, Reply};
use crate::records::*;
use crate::state::{Ids, RenameArrival, RenameIntent, ShardState};
use crate::apply_meta::deserialize_record;

impl ShardState {
    /// Refuses a write to a key that a cross-shard rename has pinned.
    pub(crate) fn check_not_moving(&self, bucket_id: u64, volume: &str, bucket: &str, key: &str) -> Result<(), OmError> {
        if !self.moving.is_empty() && self.moving.contains(&(bucket_id, key.to_string())) {
            return Err(OmError::KeyBusy(format!("{volume}/{bucket}/{key}")));
        }
        Ok(())
    }

    /// The checks every rename starts with (same shard or not): both names valid and distinct,
    /// the right to write in the bucket, and `from` not pinned by another rename.
    pub(crate) fn rename_source(&mut self, p: &Principal, volume: &str, bucket: &str, from: &str, to: &str) -> Result<crate::command::BucketRef, OmError> {
        check_key_name(from)?;
        check_key_name(to)?;
        if from == to {
            return Err(OmError::InvalidArgument("rename to the same name".into()));
        }
        let facts = self.key_bucket(p, volume, bucket, rights::WRITE, "rename keys in")?;
        self.check_not_moving(facts.bucket_id, volume, bucket, from)?;
        Ok(facts)
    }

    /// Unfinished cross-shard renames started on this shard, by intent id.
    pub fn renames_out(&self) -> &std::collections::BTreeMap<u64, RenameIntent> {
        &self.renames_out
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rename_out(
        &mut self, ids: &mut Ids, p: &Principal, t: u64, volume: &str, bucket: &str, from: &str, to: &str, dest_shard: u32,
    ) -> Outcome {
        let facts = self.rename_source(p, volume, bucket, from, to)?;
        probe!(k = from);
        let record: KeyRecord = match self.keys.get(&facts.bucket_id).and_then(|s| s.get(&*k)) {
            Some(e) => deserialize_record(e.view::<ArchivedKeyRecord>()),
            None => return Err(OmError::KeyNotFound(format!("{volume}/{bucket}/{from}"))),
        };
        let txn = ids.next();
        let intent = RenameIntent {
            volume: volume.to_string(),
            bucket: bucket.to_string(),
            bucket_id: facts.bucket_id,
            volume_id: facts.volume_id,
            from: from.to_string(),
            to: to.to_string(),
            dest_shard,
            started_ms: t,
        };
        self.renames_out.insert(txn, intent);
        self.moving.insert((facts.bucket_id, from.to_string()));
        Ok(Reply::RenameStarted { txn, record })
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rename_in(
        &mut self, ids: &mut Ids, log_index: u64, p: &Principal, t: u64, volume: &str, bucket: &str, to: &str, source_shard: u32, txn: u64,
        record: &KeyRecord,
    ) -> Outcome {
        if !p.admin {
            return Err(crate::state::denied(p, "copy a renamed key in"));
        }
        if let Some(a) = self.renames_in.get(&(source_shard, txn)) {
            return a.outcome.clone();
        }
        let outcome = self.rename_in_first(ids, log_index, p, t, volume, bucket, to, record);
        self.renames_in.insert((source_shard, txn), RenameArrival { time_ms: t, outcome: outcome.clone() });
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    fn rename_in_first(&mut self, ids: &mut Ids, log_index: u64, p: &Principal, t: u64, volume: &str, bucket: &str, to: &str, record: &KeyRecord) -> Outcome {
        check_key_name(to)?;
        if record.blocks.len() > crate::constants::BLOCKS_PER_KEY_MAX {
            return Err(OmError::InvalidArgument(format!("{} blocks, at most {} per key", record.blocks.len(), crate::constants::BLOCKS_PER_KEY_MAX)));
        }
        if record.blocks.iter().try_fold(0u64, |acc, b| acc.checked_add(b.length)) != Some(record.data_size) {
            return Err(OmError::InvalidArgument(format!("renamed key's size {} is not the sum of its block lengths", record.data_size)));
        }
        let bytes = record
            .data_size
            .checked_mul(record.replication.factor())
            .ok_or_else(|| OmError::InvalidArgument(format!("data size {} overflows", record.data_size)))?;
        let facts = self.key_bucket(p, volume, bucket, rights::WRITE, "rename keys in")?;
        probe!(k = to);
        if self.keys.get(&facts.bucket_id).is_some_and(|s| s.contains(&*k)) {
            return Err(OmError::KeyExists(format!("{volume}/{bucket}/{to}")));
        }
        // Object ids derive from this shard's log (unique here); the key is a new object here.
        let rec = KeyRecord { object_id: ids.next(), update_id: log_index, modified_ms: t, ..record.clone() };
        let e = self.entry_of(to.as_bytes(), &rec);
        self.keys.entry(facts.bucket_id).or_default().insert(e);
        // No quota check: the rename moves usage between shards of the same bucket.
        let u = self.bucket_usage.entry(facts.bucket_id).or_default();
        u.keys += 1;
        u.used_bytes += bytes;
        self.volume_usage.entry(facts.volume_id).or_default().used_bytes += bytes;
        Ok(Reply::Done)
    }

    pub(crate) fn rename_finish(&mut self, p: &Principal, txn: u64, commit: bool) -> Outcome {
        if !p.admin {
            return Err(crate::state::denied(p, "finish a rename"));
        }
        let Some(intent) = self.renames_out.remove(&txn) else { return Ok(Reply::Done) };
        self.moving.remove(&(intent.bucket_id, intent.from.clone()));
        if commit {
            probe!(k = intent.from.as_str());
            // The key is there: writes to a moving key are refused, and a bucket holding it
            // cannot be deleted.
            if let Some(e) = self.keys.get_mut(&intent.bucket_id).and_then(|s| s.take(&k)) {
                let r: &ArchivedKeyRecord = e.view();
                let bytes = r.data_size.to_native() * r.replication.native().factor();
                let u = self.bucket_usage.entry(intent.bucket_id).or_default();
                u.keys -= 1;
                u.used_bytes -= bytes;
                self.volume_usage.entry(intent.volume_id).or_default().used_bytes -= bytes;
            }
        }
        Ok(Reply::Done)
    }
}
