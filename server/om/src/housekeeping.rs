//! Housekeeping: expired open keys (their blocks join the deleted-blocks queue), idle retry
//! sessions and abandoned multipart uploads, proposed by each group's leader with its clock;
//! objects and uploads that their bucket's S3 lifecycle rules expire; and the S3 volume, made
//! by the meta leader. Stateless.

use std::rc::Rc;

use stratos_shard::{Acl, AclKind, Op, QUOTA_UNLIMITED, Reply, rights};

use crate::core::{Core, META_GROUP, Query, ReadResult, om_command};

/// The volume whose buckets are the S3 buckets (Ozone's `s3v`).
pub const S3_VOLUME: &str = "s3v";

impl Core {
    /// While this core leads the meta group and the S3 volume does not exist, creates it (as
    /// Ozone's OM does at start): checked every 200 ms until it exists, then every 10 s (an
    /// administrator who deletes it sees it come back). A node that leads the meta group when
    /// it starts has already made it (`create_s3_volume` before `ready`).
    pub async fn ensure_s3_volume(self: Rc<Self>) {
        if !self.groups.contains_key(&META_GROUP) {
            return;
        }
        loop {
            let exists = self.view.borrow().has_volume(S3_VOLUME);
            glommio::timer::sleep(std::time::Duration::from_millis(if exists { 10_000 } else { 200 })).await;
            if !exists {
                self.create_s3_volume().await;
            }
        }
    }

    /// Creates the S3 volume if it does not exist and this core leads the meta group: owned by
    /// `om`, and every user may create buckets in it and list it (an S3 bucket's own ACLs and
    /// owner then decide). Whether it exists afterwards (on this core's view).
    pub async fn create_s3_volume(&self) -> bool {
        if self.view.borrow().has_volume(S3_VOLUME) {
            return true;
        }
        if !self.groups.contains_key(&META_GROUP) || !self.group(META_GROUP).is_leader() {
            return false;
        }
        let op = Op::CreateVolume {
            volume: S3_VOLUME.into(),
            owner: "om".into(),
            admin: "om".into(),
            quota_bytes: QUOTA_UNLIMITED,
            quota_namespace: QUOTA_UNLIMITED,
            acls: vec![Acl { kind: AclKind::World, name: String::new(), rights: rights::CREATE | rights::READ | rights::LIST }],
            metadata: Vec::new(),
        };
        let _ = self.local_write(META_GROUP, vec![om_command(op)], false, 0).await;
        self.view.borrow().has_volume(S3_VOLUME)
    }

    /// Every `housekeeping_interval_ms`, in each group this core owns: drop expired open keys
    /// (in rounds of at most `EXPIRE_BATCH_MAX`, until none is left; their blocks join the
    /// deleted-blocks queue), retry sessions idle past `SESSION_IDLE_MS_MAX`, and (key shards)
    /// multipart uploads begun more than `multipart_upload_ttl_ms` ago. The leader proposes
    /// these with its clock, like every command; a follower's proposal is refused.
    pub async fn housekeeping(self: Rc<Self>) {
        let interval = std::time::Duration::from_millis(self.housekeeping_interval_ms.max(10));
        loop {
            glommio::timer::sleep(interval).await;
            let mut ids: Vec<u32> = self.groups.keys().copied().collect();
            ids.sort();
            for group in ids {
                if !self.group(group).is_leader() {
                    continue;
                }
                let limit = stratos_shard::constants::EXPIRE_BATCH_MAX;
                loop {
                    let (mut outs, _) = self.local_write(group, vec![om_command(Op::ExpireOpenKeys { limit })], false, 0).await;
                    match outs.pop() {
                        Some(Ok(Reply::Expired { open_keys, .. })) if open_keys == u64::from(limit) => continue,
                        _ => break,
                    }
                }
                let _ = self.local_write(group, vec![om_command(Op::ExpireSessions)], false, 0).await;
                if group != META_GROUP {
                    let before = stratos_common::process::now_ms().saturating_sub(self.multipart_upload_ttl_ms);
                    let _ = self.local_write(group, vec![om_command(Op::ExpireUploads { created_before_ms: before, limit })], false, 0).await;
                }
            }
        }
    }
}

/// Keys (or uploads) a lifecycle scan reads per page, and proposes to expire per command.
const LIFECYCLE_PAGE: usize = 1000;

impl Core {
    /// Every 1/24 of a lifecycle day (hourly; at least every second), in each key shard this
    /// core leads: for each bucket with lifecycle rules, reads its keys under the rules'
    /// prefixes and proposes `ExpireKeys` for those whose expiry ([`stratos_common::lifecycle::expiry_of`],
    /// the same the S3 gateway announces in `x-amz-expiration`) has passed, naming the version
    /// it read, so that a key written again meanwhile stays; then aborts the multipart uploads
    /// that `AbortIncompleteMultipartUpload` rules end. Each shard expires its own keys; a page
    /// at a time, so requests run between pages.
    pub async fn lifecycle(self: Rc<Self>) {
        let day = self.lifecycle_day_ms.max(1000);
        let interval = std::time::Duration::from_millis((day / 24).max(1000));
        loop {
            glommio::timer::sleep(interval).await;
            let mut ids: Vec<u32> = self.groups.keys().copied().filter(|g| *g != META_GROUP).collect();
            ids.sort();
            for group in ids {
                if !self.group(group).is_leader() {
                    continue;
                }
                let buckets = self.view.borrow().lifecycles();
                for (volume, bucket, bucket_id, rules) in buckets {
                    let started = std::time::Instant::now();
                    let (read, objects, uploads) = self.expire_by_rules(group, &volume, &bucket, bucket_id, &rules, day).await;
                    let took = started.elapsed();
                    if objects + uploads > 0 || read >= 100_000 || took >= std::time::Duration::from_secs(1) {
                        eprintln!(
                            "om: lifecycle: {volume}/{bucket}: {objects} objects expired, {uploads} multipart uploads aborted; {read} keys read in {} ms (shard group {group})",
                            took.as_millis()
                        );
                    }
                }
            }
        }
    }

    /// One lifecycle pass over one bucket's keys and uploads on one shard: how many keys were
    /// read, and how many expired and uploads aborted.
    async fn expire_by_rules(&self, group: u32, volume: &str, bucket: &str, bucket_id: u64, rules: &[stratos_common::lifecycle::Rule], day: u64) -> (u64, u64, u64) {
        use stratos_common::lifecycle;
        let now = stratos_common::process::now_ms();
        let (mut read, mut objects, mut uploads) = (0, 0, 0);
        for prefix in lifecycle::scan_prefixes(rules, false) {
            let mut start_after = String::new();
            loop {
                let query = Query::ListKeysIn { bucket_id, prefix: prefix.clone(), start_after: start_after.clone(), limit: LIFECYCLE_PAGE, delimiter: String::new() };
                let Ok(ReadResult::Keys(keys, more)) = self.read(group, query, 0).await else { break };
                read += keys.len() as u64;
                let expired: Vec<(String, u64)> = keys
                    .iter()
                    .filter(|k| {
                        let tag = |t: &str| k.record.metadata.iter().find(|m| m.key.strip_prefix(lifecycle::TAG_PREFIX) == Some(t)).map(|m| m.value.as_str());
                        lifecycle::expiry_of(rules, &k.name, k.record.data_size, k.record.modified_ms, tag, day).is_some_and(|(at, _)| at <= now)
                    })
                    .map(|k| (k.name.clone(), k.record.update_id))
                    .collect();
                if !expired.is_empty() {
                    let op = Op::ExpireKeys { volume: volume.to_string(), bucket: bucket.to_string(), keys: expired };
                    let (mut outs, _) = self.local_write(group, vec![om_command(op)], true, 0).await;
                    match outs.pop() {
                        Some(Ok(Reply::Expired { open_keys, .. })) => objects += open_keys,
                        // Not the leader any more, the bucket gone: the next pass (or leader) goes on.
                        _ => return (read, objects, uploads),
                    }
                }
                match (more, keys.last()) {
                    (true, Some(last)) => start_after = last.name.clone(),
                    _ => break,
                }
            }
        }
        for prefix in lifecycle::scan_prefixes(rules, true) {
            let mut after = (String::new(), String::new());
            loop {
                let query = Query::ListUploadsIn { bucket_id, prefix: prefix.clone(), after: after.clone(), limit: LIFECYCLE_PAGE, with: String::new(), delimiter: String::new() };
                let Ok(ReadResult::Uploads(list, more)) = self.read(group, query, 0).await else { break };
                let ended: Vec<_> = list
                    .iter()
                    .filter(|u| rules.iter().filter_map(|r| r.aborts_at(&u.key, u.created_ms, day)).min().is_some_and(|at| at <= now))
                    .map(|u| om_command(Op::AbortUpload { volume: volume.to_string(), bucket: bucket.to_string(), key: u.key.clone(), upload_id: u.upload_id.clone() }))
                    .collect();
                if !ended.is_empty() {
                    let (outs, _) = self.local_write(group, ended, true, 0).await;
                    uploads += outs.iter().filter(|o| o.is_ok()).count() as u64;
                }
                match (more, list.last()) {
                    (true, Some(u)) => after = (u.key.clone(), u.upload_id.clone()),
                    _ => break,
                }
            }
        }
        (read, objects, uploads)
    }
}
