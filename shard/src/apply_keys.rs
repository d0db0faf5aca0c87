//! `apply` for keys: open, allocate, commit, delete, rename, expire.

use crate::apply_meta::{check_metadata, deserialize_record};
use crate::command::{BucketRef, Condition, Elsewhere, Principal};

/// How a commit checks quotas.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// Against the quota, with this shard's usage plus the other shards' as carried (zero in
    /// a one-state namespace, where this shard sees the whole bucket).
    Whole(Elsewhere),
    /// Against this shard's allowances (sharded namespace, `Op::CommitKeyAllowed`).
    Allowed,
}
use crate::constants::*;
use crate::memtable::probe;
use crate::names::check_key_name;
use crate::outcome::{OmError, Outcome, Reply};
use crate::records::*;
use crate::state::{Ids, ShardState, denied};

fn check_blocks(blocks: &[BlockLocation]) -> Result<(), OmError> {
    if blocks.len() > BLOCKS_PER_KEY_MAX {
        return Err(OmError::InvalidArgument(format!("{} blocks, at most {BLOCKS_PER_KEY_MAX} per key", blocks.len())));
    }
    Ok(())
}

impl ShardState {
    /// The bucket of a key operation, after checking `right` on it.
    ///
    /// With facts carried by the command (sharded namespace), the leader has checked the rights;
    /// the shard refuses only a fenced bucket.
    pub(crate) fn key_bucket(&mut self, p: &Principal, volume: &str, bucket: &str, right: u16, action: &str) -> Result<BucketRef, OmError> {
        if let Some(r) = self.carried {
            // One search: refuse a fenced bucket, else remember the latest facts.
            match self.bucket_refs.entry(r.bucket_id) {
                std::collections::btree_map::Entry::Occupied(e) if e.get().1 => {
                    return Err(OmError::BucketNotFound(format!("{volume}/{bucket} (it is being deleted)")));
                }
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().0 = r,
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert((r, false));
                }
            }
            return Ok(r);
        }
        let e = self.bucket_entry(volume, bucket)?;
        let b: &ArchivedBucketRecord = e.view();
        if !self.bucket_allows(p, volume, b, right) {
            return Err(denied(p, &format!("{action} {volume}/{bucket}")));
        }
        Ok(BucketRef {
            bucket_id: b.object_id.to_native(),
            volume_id: b.volume_id.to_native(),
            replication: b.replication.native(),
            quota_bytes: b.quota_bytes.to_native(),
            quota_namespace: b.quota_namespace.to_native(),
            quota_epoch: b.update_id.to_native(),
            volume_quota_bytes: {
                probe!(vk = volume);
                self.volumes.get(&*vk).map_or(QUOTA_UNLIMITED, |v| v.view::<ArchivedVolumeRecord>().quota_bytes.to_native())
            },
            volume_quota_epoch: {
                probe!(vk = volume);
                self.volumes.get(&*vk).map_or(0, |v| v.view::<ArchivedVolumeRecord>().update_id.to_native())
            },
        })
    }

    /// The open key `open_id`, if it is the open key of `key` in that bucket.
    pub(crate) fn open_key_of(&self, facts: &BucketRef, path: impl FnOnce() -> String, key: &str, open_id: u64) -> Result<&ArchivedOpenKeyRecord, OmError> {
        probe!(k = open_id.to_be_bytes());
        self.open_keys
            .get(&*k)
            .map(|e| e.view::<ArchivedOpenKeyRecord>())
            .filter(|o| o.bucket_id.to_native() == facts.bucket_id && o.key.as_str() == key)
            .ok_or_else(|| OmError::OpenKeyNotFound(path(), open_id))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open_key_op(
        &mut self, ids: &mut Ids, p: &Principal, t: u64, volume: &str, bucket: &str, key: &str,
        replication: Option<Replication>, blocks: &[BlockLocation], expires_ms: u64, metadata: &[MetadataPair],
    ) -> Outcome {
        check_key_name(key)?;
        check_blocks(blocks)?;
        check_metadata(metadata)?;
        if expires_ms <= t {
            return Err(OmError::InvalidArgument(format!("open key expiry {expires_ms} is not after the command time {t}")));
        }
        let facts = self.key_bucket(p, volume, bucket, rights::WRITE, "write keys in")?;
        let open_id = ids.next();
        let rec = OpenKeyRecord {
            object_id: open_id,
            bucket_id: facts.bucket_id,
            key: key.to_string(),
            created_ms: t,
            expires_ms,
            replication: replication.unwrap_or(facts.replication),
            blocks: blocks.to_vec(),
            metadata: metadata.to_vec(),
        };
        let e = self.entry_of(&open_id.to_be_bytes(), &rec);
        self.open_keys.insert(e);
        self.open_key_expiry.insert((expires_ms, open_id));
        self.bucket_usage.entry(facts.bucket_id).or_default().open_keys += 1;
        Ok(Reply::KeyOpened { open_id, blocks: rec.blocks })
    }

    pub(crate) fn allocate_block(&mut self, p: &Principal, volume: &str, bucket: &str, key: &str, open_id: u64, block: &BlockLocation) -> Outcome {
        check_key_name(key)?;
        let facts = self.key_bucket(p, volume, bucket, rights::WRITE, "write keys in")?;
        let open = self.open_key_of(&facts, || format!("{volume}/{bucket}/{key}"), key, open_id)?;
        if open.blocks.len() >= BLOCKS_PER_KEY_MAX {
            return Err(OmError::InvalidArgument(format!("key already has {BLOCKS_PER_KEY_MAX} blocks")));
        }
        if open.blocks.iter().any(|b| b.id() == (block.container_id, block.local_id)) {
            return Err(OmError::InvalidArgument(format!("block {}:{} is already allocated to this key", block.container_id, block.local_id)));
        }
        let mut rec: OpenKeyRecord = deserialize_record(open);
        rec.blocks.push(*block);
        let e = self.entry_of(&open_id.to_be_bytes(), &rec);
        self.open_keys.replace(e);
        Ok(Reply::BlockAllocated { block: *block })
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_key(
        &mut self, ids: &mut Ids, log_index: u64, p: &Principal, t: u64, volume: &str, bucket: &str, key: &str,
        open_id: u64, data_size: u64, blocks: &[BlockLocation], limit: Limit,
    ) -> Outcome {
        self.commit_key_with(ids, log_index, p, t, volume, bucket, key, open_id, data_size, blocks, limit, None)
    }

    /// Whether `condition` holds of `key`'s present version in bucket `bucket_id`.
    fn check_condition(&self, bucket_id: u64, path: &dyn Fn() -> String, key: &str, condition: &Condition) -> Result<(), OmError> {
        if *condition == Condition::Any {
            return Ok(());
        }
        probe!(k = key);
        let present = self.keys.get(&bucket_id).and_then(|s| s.get(&*k));
        let has = |e: &crate::memtable::Entry, m: &MetadataPair| {
            let r: &ArchivedKeyRecord = e.view();
            r.metadata.iter().any(|x| x.key.as_str() == m.key && x.value.as_str() == m.value)
        };
        match (condition, present) {
            (Condition::Any, _) | (Condition::Absent, None) | (Condition::Present, Some(_)) | (Condition::NotMatches(_), None) => Ok(()),
            (Condition::Absent, Some(_)) => Err(OmError::PreconditionFailed(format!("key {} exists", path()))),
            (Condition::Matches(_) | Condition::Present, None) => Err(OmError::KeyNotFound(path())),
            (Condition::Matches(m), Some(e)) if has(e, m) => Ok(()),
            (Condition::Matches(m), Some(_)) => Err(OmError::PreconditionFailed(format!("key {} has no {} = {:?}", path(), m.key, m.value))),
            (Condition::NotMatches(m), Some(e)) if has(e, m) => Err(OmError::PreconditionFailed(format!("key {} has {} = {:?}", path(), m.key, m.value))),
            (Condition::NotMatches(_), Some(_)) => Ok(()),
        }
    }

    /// [`Self::commit_key`] that also sets `extra`'s metadata over the open key's, if its
    /// condition holds, and gives the new version `extra`'s ACL entries (`Op::CommitKeyWith`,
    /// `Op::CommitKeyWithAcls`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_key_with(
        &mut self, ids: &mut Ids, log_index: u64, p: &Principal, t: u64, volume: &str, bucket: &str, key: &str,
        open_id: u64, data_size: u64, blocks: &[BlockLocation], limit: Limit, extra: Option<(&[MetadataPair], &Condition, &[Acl])>,
    ) -> Outcome {
        check_key_name(key)?;
        check_blocks(blocks)?;
        let facts = self.key_bucket(p, volume, bucket, rights::WRITE, "write keys in")?;
        self.check_not_moving(facts.bucket_id, volume, bucket, key)?;
        let path = || format!("{volume}/{bucket}/{key}");
        let open = self.open_key_of(&facts, path, key, open_id)?;

        let unused = check_committed_blocks(open, blocks, data_size)?;
        let replication = open.replication.native();
        let new_bytes = data_size
            .checked_mul(replication.factor())
            .ok_or_else(|| OmError::InvalidArgument(format!("data size {data_size} overflows")))?;
        let (open_created, open_expires) = (open.created_ms.to_native(), open.expires_ms.to_native());
        let mut metadata: Vec<MetadataPair> =
            open.metadata.iter().map(|m| MetadataPair { key: m.key.to_string(), value: m.value.to_string() }).collect();
        let mut acls = Vec::new();
        if let Some((set, condition, with)) = extra {
            crate::apply_meta::check_acls(with)?;
            acls = with.to_vec();
            check_metadata(set)?;
            self.check_condition(facts.bucket_id, &path, key, condition)?;
            set_over(&mut metadata, set);
            check_metadata(&metadata)?;
        }

        // One search of the (large) key set: put the new version in, look at what it replaced,
        // and put that back if a quota refuses the commit.
        let rec = KeyRecord {
            object_id: open_id,
            update_id: log_index,
            created_ms: open_created,
            modified_ms: t,
            data_size,
            replication,
            blocks: blocks.to_vec(),
            metadata,
            acls,
        };
        let entry = self.entry_of(key.as_bytes(), &rec);
        let set = self.keys.entry(facts.bucket_id).or_default();
        let replaced = set.replace(entry);
        let old_bytes = replaced.as_ref().map_or(0, |e| {
            let k: &ArchivedKeyRecord = e.view();
            k.data_size.to_native() * k.replication.native().factor()
        });
        let usage = self.bucket_usage.get(&facts.bucket_id).copied().unwrap_or_default();
        let volume_here = self.volume_usage.get(&facts.volume_id).map_or(0, |u| u.used_bytes);
        let new_key = replaced.is_none();
        let growth = new_bytes.saturating_sub(old_bytes);
        let refusal = match limit {
            // Usage is this shard's (exact at this log index) plus the other shards' as the
            // leader read it (zero where the leader did not: one-shard states, no quota).
            Limit::Whole(elsewhere) => {
                let (bucket_keys, bucket_bytes) = (usage.keys.saturating_add(elsewhere.keys), usage.used_bytes.saturating_add(elsewhere.bytes));
                let volume_used = volume_here.saturating_add(elsewhere.volume_bytes);
                let volume_quota = facts.volume_quota_bytes;
                if growth > 0 && bucket_bytes.saturating_add(growth) > facts.quota_bytes {
                    Some(OmError::QuotaExceeded { what: format!("bucket {volume}/{bucket} bytes"), used: bucket_bytes, adding: growth, quota: facts.quota_bytes })
                } else if growth > 0 && volume_used.saturating_add(growth) > volume_quota {
                    Some(OmError::QuotaExceeded { what: format!("volume {volume} bytes"), used: volume_used, adding: growth, quota: volume_quota })
                } else if new_key && bucket_keys.saturating_add(1) > facts.quota_namespace {
                    Some(OmError::QuotaExceeded { what: format!("bucket {volume}/{bucket} namespace"), used: bucket_keys, adding: 1, quota: facts.quota_namespace })
                } else {
                    None
                }
            }
            Limit::Allowed => self.short_of_allowance(&facts, usage, volume_here, growth, u64::from(new_key)),
        };
        if let Some(err) = refusal {
            let set = self.keys.get_mut(&facts.bucket_id).expect("inserted above");
            match replaced {
                Some(old) => {
                    set.replace(old);
                }
                None => {
                    probe!(k = key);
                    set.remove(&k);
                    if set.is_empty() && !self.snapshotting {
                        self.keys.remove(&facts.bucket_id);
                    }
                }
            }
            return Err(err);
        }

        // Accepted: the rest of the bookkeeping.
        probe!(ok = open_id.to_be_bytes());
        self.open_keys.remove(&ok);
        self.open_key_expiry.remove(&(open_expires, open_id));
        let u = self.bucket_usage.entry(facts.bucket_id).or_default();
        u.open_keys -= 1;
        u.used_bytes = u.used_bytes - old_bytes + new_bytes;
        u.keys += u64::from(new_key);
        let v = self.volume_usage.entry(facts.volume_id).or_default();
        v.used_bytes = v.used_bytes - old_bytes + new_bytes;
        let mut freed: Vec<BlockLocation> =
            replaced.map_or_else(Vec::new, |e| e.view::<ArchivedKeyRecord>().blocks.iter().map(ArchivedBlockLocation::native).collect());
        freed.extend(unused);
        self.queue_deleted(ids, log_index, freed);
        Ok(Reply::KeyCommitted { object_id: open_id, replaced: !new_key })
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn delete_keys(
        &mut self, ids: &mut Ids, log_index: u64, p: &Principal, volume: &str, bucket: &str, keys: &[String], single: bool,
    ) -> Outcome {
        if keys.len() > KEYS_PER_DELETE_MAX {
            return Err(OmError::InvalidArgument(format!("{} keys in one delete, at most {KEYS_PER_DELETE_MAX}", keys.len())));
        }
        for k in keys {
            check_key_name(k)?;
        }
        let facts = self.key_bucket(p, volume, bucket, rights::DELETE, "delete keys in")?;
        // All or nothing: a key pinned by a cross-shard rename fails the whole delete.
        for k in keys {
            self.check_not_moving(facts.bucket_id, volume, bucket, k)?;
        }
        let mut removed = Removed::default();
        let mut missing = Vec::new();
        let mut set = self.keys.get_mut(&facts.bucket_id);
        for k in keys {
            probe!(kp = k);
            match set.as_mut().and_then(|s| s.take(&kp)) {
                Some(e) => removed.add(e.view()),
                None => missing.push(k.clone()),
            }
        }
        if single && removed.keys == 0 {
            return Err(OmError::KeyNotFound(format!("{volume}/{bucket}/{}", keys[0])));
        }
        let deleted = removed.keys;
        self.settle_removed(ids, log_index, &facts, removed);
        if single { Ok(Reply::Done) } else { Ok(Reply::KeysDeleted { deleted, missing }) }
    }

    /// Takes what keys removed from `facts`' bucket freed off its and its volume's usage, and
    /// queues their blocks for deletion.
    fn settle_removed(&mut self, ids: &mut Ids, log_index: u64, facts: &BucketRef, removed: Removed) {
        let u = self.bucket_usage.entry(facts.bucket_id).or_default();
        u.keys -= removed.keys;
        u.used_bytes -= removed.bytes;
        self.volume_usage.entry(facts.volume_id).or_default().used_bytes -= removed.bytes;
        self.queue_deleted(ids, log_index, removed.blocks);
    }

    /// `Op::ExpireKeys`: deletes the listed keys that are still at the listed `update_id`.
    pub(crate) fn expire_keys(&mut self, ids: &mut Ids, log_index: u64, p: &Principal, volume: &str, bucket: &str, keys: &[(String, u64)]) -> Outcome {
        if keys.len() > KEYS_PER_DELETE_MAX {
            return Err(OmError::InvalidArgument(format!("{} keys in one expiry, at most {KEYS_PER_DELETE_MAX}", keys.len())));
        }
        let facts = self.key_bucket(p, volume, bucket, rights::DELETE, "expire keys in")?;
        let mut removed = Removed::default();
        for (k, update_id) in keys {
            if self.check_not_moving(facts.bucket_id, volume, bucket, k).is_err() {
                continue;
            }
            let Some(set) = self.keys.get_mut(&facts.bucket_id) else { break };
            probe!(kp = k);
            if set.get(&kp).is_none_or(|e| e.view::<ArchivedKeyRecord>().update_id.to_native() != *update_id) {
                continue;
            }
            if let Some(e) = set.take(&kp) {
                removed.add(e.view());
            }
        }
        let deleted = removed.keys;
        self.settle_removed(ids, log_index, &facts, removed);
        Ok(Reply::Expired { open_keys: deleted, sessions: 0 })
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rename_key(&mut self, log_index: u64, p: &Principal, t: u64, volume: &str, bucket: &str, from: &str, to: &str) -> Outcome {
        let facts = self.rename_source(p, volume, bucket, from, to)?;
        let not_found = || OmError::KeyNotFound(format!("{volume}/{bucket}/{from}"));
        let set = self.keys.get_mut(&facts.bucket_id).ok_or_else(not_found)?;
        probe!(to_key = to);
        probe!(from_key = from);
        if set.contains(&*to_key) {
            return Err(OmError::KeyExists(format!("{volume}/{bucket}/{to}")));
        }
        let old = set.take(&from_key).ok_or_else(not_found)?;
        let mut rec: KeyRecord = deserialize_record(old.view::<ArchivedKeyRecord>());
        rec.update_id = log_index;
        rec.modified_ms = t;
        let e = self.entry_of(to.as_bytes(), &rec);
        self.keys.entry(facts.bucket_id).or_default().insert(e);
        Ok(Reply::Done)
    }

    /// `Op::SetKeyMetadata`: the key's metadata changed in place (S3 tagging).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set_key_metadata(
        &mut self, log_index: u64, p: &Principal, volume: &str, bucket: &str, key: &str, set: &[MetadataPair], remove_prefix: &str,
        condition: &Condition,
    ) -> Outcome {
        check_key_name(key)?;
        check_metadata(set)?;
        let facts = self.key_bucket(p, volume, bucket, rights::WRITE, "write keys in")?;
        self.check_not_moving(facts.bucket_id, volume, bucket, key)?;
        let path = || format!("{volume}/{bucket}/{key}");
        self.check_condition(facts.bucket_id, &path, key, condition)?;
        probe!(k = key);
        let Some(old) = self.keys.get(&facts.bucket_id).and_then(|s| s.get(&*k)) else {
            return Err(OmError::KeyNotFound(path()));
        };
        let mut rec: KeyRecord = deserialize_record(old.view::<ArchivedKeyRecord>());
        if !remove_prefix.is_empty() {
            rec.metadata.retain(|m| !m.key.starts_with(remove_prefix));
        }
        set_over(&mut rec.metadata, set);
        check_metadata(&rec.metadata)?;
        rec.update_id = log_index;
        let e = self.entry_of(key.as_bytes(), &rec);
        self.keys.get_mut(&facts.bucket_id).expect("looked up above").replace(e);
        Ok(Reply::Done)
    }

    /// `Op::SetKeyAcls`: the key's entries replaced in place; blocks, metadata and times stay.
    pub(crate) fn set_key_acls(&mut self, log_index: u64, p: &Principal, volume: &str, bucket: &str, key: &str, acls: &[Acl]) -> Outcome {
        check_key_name(key)?;
        crate::apply_meta::check_acls(acls)?;
        self.change_key_acls(log_index, p, volume, bucket, key, false, None, |_| acls.to_vec())
    }

    /// `Op::SetKeyAclsIf`: [`Self::set_key_acls`] (by the key's own grant where `by_key`) of the
    /// version whose `update_id` is `update_id` only.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set_key_acls_if(&mut self, log_index: u64, p: &Principal, volume: &str, bucket: &str, key: &str, acls: &[Acl], update_id: u64, by_key: bool) -> Outcome {
        check_key_name(key)?;
        crate::apply_meta::check_acls(acls)?;
        self.change_key_acls(log_index, p, volume, bucket, key, by_key, Some(update_id), |_| acls.to_vec())
    }

    /// `Op::EditKeyAcls`: the key's entries edited ([`crate::apply_meta::edited_acls`]) in place.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn edit_key_acls(&mut self, log_index: u64, p: &Principal, volume: &str, bucket: &str, key: &str, add: &[Acl], remove: &[Acl]) -> Outcome {
        check_key_name(key)?;
        crate::apply_meta::check_acl_edit(add, remove)?;
        self.change_key_acls(log_index, p, volume, bucket, key, false, None, |old| crate::apply_meta::edited_acls(old, add, remove))
    }

    /// `Op::KeyAclsByKeyGrant`: a replacement (`set`) or an edit, by WRITE_ACL in the entries of
    /// the key's present version.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn key_acls_by_key_grant(&mut self, log_index: u64, p: &Principal, volume: &str, bucket: &str, key: &str, set: Option<&[Acl]>, add: &[Acl], remove: &[Acl]) -> Outcome {
        check_key_name(key)?;
        match set {
            Some(acls) => {
                crate::apply_meta::check_acls(acls)?;
                self.change_key_acls(log_index, p, volume, bucket, key, true, None, |_| acls.to_vec())
            }
            None => {
                crate::apply_meta::check_acl_edit(add, remove)?;
                self.change_key_acls(log_index, p, volume, bucket, key, true, None, |old| crate::apply_meta::edited_acls(old, add, remove))
            }
        }
    }

    /// A committed key's entries become `new(old entries)`, by a holder of WRITE_ACL on its
    /// bucket, or on the key itself: where `by_key` (the leader found the bucket's entries
    /// refuse the caller), or where this state checks the bucket itself (no facts carried) and
    /// it refuses. Then a key that is missing or whose entries do not grant it is the bucket's
    /// refusal (nothing said of its existence, as a read's). The result is checked as a
    /// replacement is. With `update_id`, a present version with another is `PreconditionFailed`
    /// (asked after the right, so a caller without it learns nothing of the key).
    #[allow(clippy::too_many_arguments)]
    fn change_key_acls(
        &mut self, log_index: u64, p: &Principal, volume: &str, bucket: &str, key: &str, by_key: bool, update_id: Option<u64>, new: impl FnOnce(&[Acl]) -> Vec<Acl>,
    ) -> Outcome {
        let action = "change key ACLs in";
        let (facts, by_key) = match self.key_bucket(p, volume, bucket, rights::WRITE_ACL, action) {
            Ok(facts) => (facts, by_key),
            Err(OmError::PermissionDenied { .. }) => (self.key_bucket(&Principal::admin(&p.user), volume, bucket, rights::WRITE_ACL, action)?, true),
            Err(e) => return Err(e),
        };
        // Before anything else is said of the key (a rename holding it, its absence).
        if by_key && !p.admin && !self.key_grants(facts.bucket_id, key, p, rights::WRITE_ACL) {
            return Err(denied(p, &format!("{action} {volume}/{bucket} (needs the WRITE_ACL right on the bucket or the key)")));
        }
        self.check_not_moving(facts.bucket_id, volume, bucket, key)?;
        probe!(k = key);
        let Some(old) = self.keys.get(&facts.bucket_id).and_then(|s| s.get(&*k)) else {
            return Err(OmError::KeyNotFound(format!("{volume}/{bucket}/{key}")));
        };
        let mut rec: KeyRecord = deserialize_record(old.view::<ArchivedKeyRecord>());
        if let Some(expected) = update_id.filter(|&u| u != rec.update_id) {
            return Err(OmError::PreconditionFailed(format!("key {volume}/{bucket}/{key} changed since it was read (update id {expected}, now {})", rec.update_id)));
        }
        rec.acls = new(&rec.acls);
        crate::apply_meta::check_acls(&rec.acls)?;
        rec.update_id = log_index;
        let e = self.entry_of(key.as_bytes(), &rec);
        self.keys.get_mut(&facts.bucket_id).expect("looked up above").replace(e);
        Ok(Reply::Done)
    }

    pub(crate) fn expire_open_keys(&mut self, ids: &mut Ids, log_index: u64, t: u64, limit: u32) -> Reply {
        let limit = limit.min(EXPIRE_BATCH_MAX);
        let mut expired = 0u64;
        let mut freed = Vec::new();
        while expired < u64::from(limit) {
            let Some(&(expires_ms, open_id)) = self.open_key_expiry.first() else { break };
            if expires_ms > t {
                break;
            }
            self.open_key_expiry.pop_first();
            probe!(k = open_id.to_be_bytes());
            let e = self.open_keys.take(&k).expect("the expiry index names only open keys");
            let o: &ArchivedOpenKeyRecord = e.view();
            freed.extend(o.blocks.iter().map(ArchivedBlockLocation::native));
            if let Some(u) = self.bucket_usage.get_mut(&o.bucket_id.to_native()) {
                u.open_keys -= 1;
            }
            expired += 1;
        }
        self.queue_deleted(ids, log_index, freed);
        Reply::Expired { open_keys: expired, sessions: 0 }
    }

    /// Drops an open key and queues its blocks for deletion now (`Op::AbortKey`). Needs the
    /// same right as writing it: whoever may write the key may give its upload up.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn abort_key(&mut self, ids: &mut Ids, log_index: u64, p: &Principal, volume: &str, bucket: &str, key: &str, open_id: u64) -> Outcome {
        check_key_name(key)?;
        let facts = self.key_bucket(p, volume, bucket, rights::WRITE, "write keys in")?;
        let open = self.open_key_of(&facts, || format!("{volume}/{bucket}/{key}"), key, open_id)?;
        let expires_ms = open.expires_ms.to_native();
        let freed: Vec<BlockLocation> = open.blocks.iter().map(ArchivedBlockLocation::native).collect();
        probe!(k = open_id.to_be_bytes());
        self.open_keys.remove(&k);
        self.open_key_expiry.remove(&(expires_ms, open_id));
        if let Some(u) = self.bucket_usage.get_mut(&facts.bucket_id) {
            u.open_keys -= 1;
        }
        self.queue_deleted(ids, log_index, freed);
        Ok(Reply::Done)
    }
}

/// Sets each of `set` over `metadata`: a pair of the same name is replaced, a new one added.
pub(crate) fn set_over(metadata: &mut Vec<MetadataPair>, set: &[MetadataPair]) {
    for m in set {
        match metadata.iter_mut().find(|x| x.key == m.key) {
            Some(x) => x.value.clone_from(&m.value),
            None => metadata.push(m.clone()),
        }
    }
}


/// Keys of at most this many blocks are checked pair by pair (no allocation: the usual key has
/// one block); larger ones through sorted ids, since pairwise a commit of 65,536 blocks made
/// billions of comparisons, seconds on the group's executor.
const PAIRWISE_BLOCKS_MAX: usize = 16;

fn sorted_ids(ids: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = ids.collect();
    v.sort_unstable();
    v
}

/// The committed blocks must be distinct blocks allocated to this open key (a client can
/// commit fewer blocks than it was given, never someone else's), their lengths summing to
/// `data_size`. Answers the blocks allocated and not committed (freed by the commit), in the
/// open key's order.
pub(crate) fn check_committed_blocks(open: &ArchivedOpenKeyRecord, blocks: &[BlockLocation], data_size: u64) -> Result<Vec<BlockLocation>, OmError> {
    check_blocks(blocks)?;
    let allocated = (open.blocks.len() > PAIRWISE_BLOCKS_MAX).then(|| sorted_ids(open.blocks.iter().map(|a| a.id())));
    let mut seen = (blocks.len() > PAIRWISE_BLOCKS_MAX).then(|| std::collections::HashSet::with_capacity(blocks.len()));
    for (i, b) in blocks.iter().enumerate() {
        let id = (b.container_id, b.local_id);
        let given = match &allocated {
            Some(a) => a.binary_search(&id).is_ok(),
            None => open.blocks.iter().any(|a| a.id() == id),
        };
        if !given {
            return Err(OmError::InvalidArgument(format!("block {}:{} was not allocated to this key", id.0, id.1)));
        }
        let twice = match &mut seen {
            Some(seen) => !seen.insert(id),
            None => blocks[..i].iter().any(|c| (c.container_id, c.local_id) == id),
        };
        if twice {
            return Err(OmError::InvalidArgument(format!("block {}:{} is listed twice", id.0, id.1)));
        }
    }
    let total = blocks.iter().try_fold(0u64, |acc, b| acc.checked_add(b.length));
    if total != Some(data_size) {
        return Err(OmError::InvalidArgument(format!("data size {data_size} is not the sum of the block lengths")));
    }
    let committed = (blocks.len() > PAIRWISE_BLOCKS_MAX).then(|| sorted_ids(blocks.iter().map(|b| (b.container_id, b.local_id))));
    let is_committed = |id: (u64, u64)| match &committed {
        Some(c) => c.binary_search(&id).is_ok(),
        None => blocks.iter().any(|b| (b.container_id, b.local_id) == id),
    };
    Ok(open.blocks.iter().filter(|a| !is_committed(a.id())).map(ArchivedBlockLocation::native).collect())
}

/// What removing keys frees: how many, their bytes (times their replication, as usage counts
/// them) and their blocks.
#[derive(Default)]
struct Removed {
    keys: u64,
    bytes: u64,
    blocks: Vec<BlockLocation>,
}

impl Removed {
    fn add(&mut self, r: &ArchivedKeyRecord) {
        self.keys += 1;
        self.bytes += r.data_size.to_native() * r.replication.native().factor();
        self.blocks.extend(r.blocks.iter().map(ArchivedBlockLocation::native));
    }
}
