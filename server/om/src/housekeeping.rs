//! Housekeeping: expired open keys (their blocks join the deleted-blocks queue), idle retry
//! sessions and abandoned multipart uploads, proposed by each group's leader with its clock;
//! and the S3 volume, made by the meta leader. Stateless.

use std::rc::Rc;

use stratos_shard::{Acl, AclKind, Op, QUOTA_UNLIMITED, Reply, rights};

use crate::core::{Core, META_GROUP, om_command};

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
