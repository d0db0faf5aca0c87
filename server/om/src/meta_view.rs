//! Every core's read-only copy of the meta group's volumes and buckets (DESIGN.md §4).
//!
//! The meta group lives on core 0. After each applied proposal it computes what changed and
//! sends it, in log order, to every core; each core applies the changes to its [`MetaView`] and
//! wakes requests waiting for a meta index (read-your-writes across groups). Key-shard leaders
//! use the view to check permissions and to fill the bucket's facts into key commands.

use foldhash::HashMap;

use stratos_raft::group::local_event::Event;
use stratos_shard::{Acl, BucketRef, Command, Op, Outcome, Principal, ShardState, rights};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFacts {
    pub object_id: u64,
    pub owner: String,
    pub admin: String,
    pub quota_bytes: u64,
    /// The record's `update_id`: the epoch of its quota allowances.
    pub update_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketFacts {
    pub object_id: u64,
    pub volume_id: u64,
    pub owner: String,
    pub replication: stratos_shard::Replication,
    pub quota_bytes: u64,
    pub quota_namespace: u64,
    pub acls: Vec<Acl>,
    pub deleting: bool,
    /// The record's `update_id`: the epoch of its quota allowances.
    pub update_id: u64,
    /// Its S3 lifecycle rules (from its metadata; none if they do not read: nothing is then
    /// expired, never more than they say).
    pub lifecycle: Vec<stratos_common::lifecycle::Rule>,
}

/// One change, as the state is after the proposal that made it (`None`: gone).
#[derive(Debug, Clone)]
pub enum Change {
    Volume(String, Option<VolumeFacts>),
    Bucket(String, String, Option<BucketFacts>),
    /// Forget everything first (a snapshot was installed; the changes that follow are complete).
    Reset,
}

#[derive(Debug, Default)]
pub struct MetaView {
    /// The meta group's log index this view reflects.
    pub log_index: u64,
    volumes: HashMap<String, VolumeFacts>,
    /// Volume → bucket → facts: nested, so that a lookup (every key operation makes one)
    /// borrows the names instead of building a `(String, String)` key (two allocations).
    buckets: HashMap<String, HashMap<String, BucketFacts>>,
    pub advanced: Event,
}

/// Why a key operation cannot go ahead, from the view.
pub type Refusal = stratos_shard::OmError;

impl MetaView {
    pub fn has_volume(&self, volume: &str) -> bool {
        self.volumes.contains_key(volume)
    }

    pub fn apply(&mut self, log_index: u64, changes: &[Change]) {
        for c in changes {
            match c {
                Change::Reset => {
                    self.volumes.clear();
                    self.buckets.clear();
                }
                Change::Volume(name, Some(v)) => {
                    self.volumes.insert(name.clone(), v.clone());
                }
                Change::Volume(name, None) => {
                    self.volumes.remove(name);
                }
                Change::Bucket(v, b, Some(f)) => {
                    self.buckets.entry(v.clone()).or_default().insert(b.clone(), f.clone());
                }
                Change::Bucket(v, b, None) => {
                    if let Some(in_volume) = self.buckets.get_mut(v) {
                        in_volume.remove(b);
                        if in_volume.is_empty() {
                            self.buckets.remove(v);
                        }
                    }
                }
            }
        }
        self.log_index = self.log_index.max(log_index);
        self.advanced.notify();
    }

    /// The buckets with lifecycle rules that may expire something (not those being deleted):
    /// volume, bucket, bucket id and rules.
    pub fn lifecycles(&self) -> Vec<(String, String, u64, Vec<stratos_common::lifecycle::Rule>)> {
        let mut out: Vec<_> = self
            .buckets
            .iter()
            .flat_map(|(v, in_volume)| in_volume.iter().map(move |(b, f)| (v, b, f)))
            .filter(|(_, _, f)| !f.deleting && f.lifecycle.iter().any(|r| r.enabled))
            .map(|(v, b, f)| (v.clone(), b.clone(), f.object_id, f.lifecycle.clone()))
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    /// The bucket of a key operation, if `p` holds `right` on it: its facts for the command.
    pub fn key_bucket(&self, p: &Principal, volume: &str, bucket: &str, right: u16) -> Result<BucketRef, Refusal> {
        let Some(b) = self.buckets.get(volume).and_then(|in_volume| in_volume.get(bucket)) else {
            return Err(if self.volumes.contains_key(volume) {
                Refusal::BucketNotFound(format!("{volume}/{bucket}"))
            } else {
                Refusal::VolumeNotFound(volume.to_string())
            });
        };
        if b.deleting && right != rights::READ && right != rights::LIST {
            return Err(Refusal::BucketNotFound(format!("{volume}/{bucket} (it is being deleted)")));
        }
        let vol = self.volumes.get(volume);
        let allowed = p.admin
            || b.owner == p.user
            || stratos_shard::acls_allow_native(p, &b.acls, right)
            || vol.is_some_and(|v| v.owner == p.user || v.admin == p.user);
        if !allowed {
            return Err(Refusal::PermissionDenied { user: p.user.clone(), action: format!("access {volume}/{bucket} (needs the {} right)", stratos_shard::rights::names(right)) });
        }
        Ok(BucketRef {
            bucket_id: b.object_id,
            volume_id: b.volume_id,
            replication: b.replication,
            quota_bytes: b.quota_bytes,
            quota_namespace: b.quota_namespace,
            volume_quota_bytes: vol.map_or(stratos_shard::QUOTA_UNLIMITED, |v| v.quota_bytes),
            quota_epoch: b.update_id,
            volume_quota_epoch: vol.map_or(0, |v| v.update_id),
        })
    }
}

fn volume_facts(state: &ShardState, volume: &str) -> Option<VolumeFacts> {
    state.volume_info(volume).ok().map(|v| VolumeFacts {
        object_id: v.record.object_id.to_native(),
        owner: v.record.owner.to_string(),
        admin: v.record.admin.to_string(),
        quota_bytes: v.record.quota_bytes.to_native(),
        update_id: v.record.update_id.to_native(),
    })
}

fn bucket_facts(state: &ShardState, volume: &str, bucket: &str) -> Option<BucketFacts> {
    state.bucket_info(volume, bucket).ok().map(|b| BucketFacts {
        object_id: b.record.object_id.to_native(),
        volume_id: b.record.volume_id.to_native(),
        owner: b.record.owner.to_string(),
        replication: b.record.replication.native(),
        quota_bytes: b.record.quota_bytes.to_native(),
        quota_namespace: b.record.quota_namespace.to_native(),
        acls: rkyv::deserialize::<Vec<Acl>, rkyv::rancor::Error>(&b.record.acls).expect("archived ACLs deserialize"),
        deleting: b.record.deleting,
        update_id: b.record.update_id.to_native(),
        lifecycle: lifecycle_of(volume, bucket, b.record.metadata.iter().map(|m| (m.key.as_str(), m.value.as_str()))),
    })
}

fn lifecycle_of<'a>(volume: &str, bucket: &str, metadata: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<stratos_common::lifecycle::Rule> {
    use stratos_common::lifecycle;
    let Some(stored) = stratos_common::settings::joined(metadata, lifecycle::METADATA_PREFIX) else { return Vec::new() };
    lifecycle::decode(&stored).unwrap_or_else(|e| {
        eprintln!("om: bucket {volume}/{bucket}: its lifecycle rules do not read here ({e}); nothing in it expires");
        Vec::new()
    })
}

/// What the meta commands of one proposal changed, read from the state after it.
pub fn changes_of(state: &ShardState, commands: &[Command], outcomes: &[Outcome]) -> Vec<Change> {
    let mut out = Vec::new();
    for (c, o) in commands.iter().zip(outcomes) {
        if o.is_err() {
            continue;
        }
        match &c.op {
            Op::CreateVolume { volume, .. } | Op::DeleteVolume { volume } | Op::SetVolumeOwner { volume, .. } | Op::SetVolumeQuota { volume, .. } => {
                out.push(Change::Volume(volume.clone(), volume_facts(state, volume)));
            }
            Op::CreateBucket { volume, bucket, .. }
            | Op::DeleteBucket { volume, bucket }
            | Op::SetBucketProperty { volume, bucket, .. }
            | Op::SetBucketMetadata { volume, bucket, .. }
            | Op::SetBucketAcls { volume, bucket, .. }
            | Op::EditBucketAcls { volume, bucket, .. }
            | Op::SetBucketDeleting { volume, bucket, .. } => {
                out.push(Change::Bucket(volume.clone(), bucket.clone(), bucket_facts(state, volume, bucket)));
            }
            _ => {}
        }
    }
    out
}

/// The whole meta state as changes (at start, and after a snapshot install).
pub fn full_view(state: &ShardState) -> Vec<Change> {
    let mut out = vec![Change::Reset];
    let mut start = String::new();
    loop {
        let page = state.list_volumes(None, "", &start, stratos_shard::constants::LIST_LIMIT_MAX).expect("a valid listing");
        for v in &page.items {
            out.push(Change::Volume(v.name.to_string(), volume_facts(state, v.name)));
            let mut bstart = String::new();
            loop {
                let bp = state.list_buckets(v.name, "", &bstart, stratos_shard::constants::LIST_LIMIT_MAX).expect("the volume exists");
                for b in &bp.items {
                    out.push(Change::Bucket(v.name.to_string(), b.name.to_string(), bucket_facts(state, v.name, b.name)));
                }
                match (bp.truncated, bp.items.last()) {
                    (true, Some(last)) => bstart = last.name.to_string(),
                    _ => break,
                }
            }
        }
        match (page.truncated, page.items.last()) {
            (true, Some(last)) => start = last.name.to_string(),
            _ => break,
        }
    }
    out
}
