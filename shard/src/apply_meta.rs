//! `apply` for volumes and buckets.

use crate::apply_keys::set_over;
use crate::command::Principal;
use crate::constants::*;
use crate::memtable::probe;
use crate::names::{check_resource_name, check_user_name};
use crate::outcome::{OmError, Outcome, Reply};
use crate::records::*;
use crate::state::{BucketUsage, Ids, ShardState, VolumeUsage, bucket_key, denied, user_volume_key};

/// See [`ShardState::set_bucket_deleting`].
const BUCKET_ADMIN_RIGHT: u16 = rights::WRITE_ACL;

pub(crate) fn check_acls(acls: &[Acl]) -> Result<(), OmError> {
    if acls.len() > ACLS_MAX {
        return Err(OmError::InvalidArgument(format!("{} ACL entries, at most {ACLS_MAX}", acls.len())));
    }
    for a in acls {
        if a.rights & !rights::ALL != 0 {
            return Err(OmError::InvalidArgument(format!("ACL rights {:#x} has unknown bits", a.rights)));
        }
        match a.kind {
            AclKind::World if !a.name.is_empty() => {
                return Err(OmError::InvalidArgument("a WORLD ACL names nobody: leave the name empty".into()));
            }
            AclKind::World => {}
            AclKind::User => check_user_name("ACL user", &a.name)?,
            AclKind::Group => check_user_name("ACL group", &a.name)?,
        }
    }
    Ok(())
}

/// An ACL edit's entries: each checked as a replacement's, and at least one in all.
pub(crate) fn check_acl_edit(add: &[Acl], remove: &[Acl]) -> Result<(), OmError> {
    if add.is_empty() && remove.is_empty() {
        return Err(OmError::InvalidArgument("an ACL edit names no entries to add or remove".into()));
    }
    check_acls(add)?;
    check_acls(remove)
}

/// The entries `old` becomes under an edit (Ozone's addAcl, then removeAcl): each entry of
/// `add` grants its rights to its grantee (the same kind and name), merged into the grantee's
/// first entry where there is one, else appended; each of `remove` takes its rights from every
/// entry of its grantee; an entry left with no rights goes. The order of the rest is kept.
pub fn edited_acls(old: &[Acl], add: &[Acl], remove: &[Acl]) -> Vec<Acl> {
    let mut out = old.to_vec();
    for a in add {
        match out.iter_mut().find(|e| e.kind == a.kind && e.name == a.name) {
            Some(e) => e.rights |= a.rights,
            None => out.push(a.clone()),
        }
    }
    for r in remove {
        for e in out.iter_mut().filter(|e| e.kind == r.kind && e.name == r.name) {
            e.rights &= !r.rights;
        }
    }
    out.retain(|e| e.rights != 0);
    out
}

pub(crate) fn check_metadata(metadata: &[MetadataPair]) -> Result<(), OmError> {
    if metadata.len() > METADATA_PAIRS_MAX {
        return Err(OmError::InvalidArgument(format!("{} metadata pairs, at most {METADATA_PAIRS_MAX}", metadata.len())));
    }
    for m in metadata {
        if m.key.is_empty() || m.key.len() > METADATA_KEY_BYTES_MAX || m.value.len() > METADATA_VALUE_BYTES_MAX {
            return Err(OmError::InvalidArgument(format!(
                "metadata key must be 1..={METADATA_KEY_BYTES_MAX} bytes and value at most {METADATA_VALUE_BYTES_MAX}"
            )));
        }
    }
    Ok(())
}

fn check_quota(what: &str, quota: u64) -> Result<(), OmError> {
    if quota == 0 {
        return Err(OmError::InvalidArgument(format!("{what} quota must be positive (u64::MAX = unlimited)")));
    }
    Ok(())
}

/// A quota being changed: positive, and not below what is already in use.
fn check_new_quota(what: &str, quota: u64, in_use: u64, unit: &str) -> Result<u64, OmError> {
    check_quota(what, quota)?;
    if quota < in_use {
        return Err(OmError::InvalidArgument(format!("{what} quota {quota} is below the {in_use} {unit} in use")));
    }
    Ok(quota)
}

pub(crate) fn deserialize_record<T: rkyv::Archive>(archived: &T::Archived) -> T
where
    T::Archived: rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    rkyv::deserialize::<T, rkyv::rancor::Error>(archived).expect("deserializing a stored record cannot fail")
}

impl ShardState {
    fn volume_record(&self, volume: &str) -> Result<VolumeRecord, OmError> {
        probe!(k = volume);
        let e = self.volumes.get(&*k).ok_or_else(|| OmError::VolumeNotFound(volume.to_string()))?;
        Ok(deserialize_record::<VolumeRecord>(e.view()))
    }

    /// Refuses bucket space quotas that would not fit in the volume's (Ozone's rule: the
    /// buckets' quotas, summed over those that have one, at most the volume's): `bucket`'s own
    /// quota counted as `quota` (None: as stored), the volume's as `volume_quota`.
    fn check_bucket_quotas_fit(&self, volume: &str, volume_quota: u64, bucket: Option<(&str, u64)>) -> Result<(), OmError> {
        if volume_quota == QUOTA_UNLIMITED {
            return Ok(());
        }
        let base = bucket_key(volume, "");
        probe!(from = base);
        let mut total = 0u64;
        for e in self.buckets.range((std::ops::Bound::Included(&*from), std::ops::Bound::Unbounded)) {
            let Some(name) = e.key().strip_prefix(&base[..]) else { break };
            if bucket.is_some_and(|(b, _)| b.as_bytes() == name) {
                continue;
            }
            let q = e.view::<ArchivedBucketRecord>().quota_bytes.to_native();
            if q != QUOTA_UNLIMITED {
                total = total.saturating_add(q);
            }
        }
        if let Some((_, q)) = bucket.filter(|(_, q)| *q != QUOTA_UNLIMITED) {
            total = total.saturating_add(q);
        }
        if total > volume_quota {
            return Err(OmError::InvalidArgument(format!(
                "the space quotas of volume {volume}'s buckets would total {total} bytes, above the volume's space quota of {volume_quota} bytes"
            )));
        }
        Ok(())
    }

    fn put_volume(&mut self, volume: &str, rec: &VolumeRecord) {
        let e = self.entry_of(volume.as_bytes(), rec);
        self.volumes.replace(e);
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create_volume(
        &mut self, ids: &mut Ids, log_index: u64, p: &Principal, t: u64, volume: &str, owner: &str, admin: &str,
        quota_bytes: u64, quota_namespace: u64, acls: &[Acl], metadata: &[MetadataPair],
    ) -> Outcome {
        if !p.admin {
            return Err(denied(p, "create volumes"));
        }
        check_resource_name("volume", volume)?;
        check_user_name("owner", owner)?;
        check_user_name("admin", admin)?;
        check_quota("volume bytes", quota_bytes)?;
        check_quota("volume namespace", quota_namespace)?;
        check_acls(acls)?;
        check_metadata(metadata)?;
        probe!(k = volume);
        if self.volumes.contains(&*k) {
            return Err(OmError::VolumeExists(volume.to_string()));
        }
        let object_id = ids.next();
        let rec = VolumeRecord {
            object_id,
            update_id: log_index,
            owner: owner.to_string(),
            admin: admin.to_string(),
            created_ms: t,
            modified_ms: t,
            quota_bytes,
            quota_namespace,
            acls: acls.to_vec(),
            metadata: metadata.to_vec(),
        };
        self.put_volume(volume, &rec);
        self.user_volumes.insert(user_volume_key(owner, volume));
        self.volume_usage.insert(object_id, VolumeUsage::default());
        Ok(Reply::Created { object_id })
    }

    pub(crate) fn delete_volume(&mut self, p: &Principal, volume: &str) -> Outcome {
        let rec = self.volume_record(volume)?;
        if !(p.admin || rec.owner == p.user) {
            return Err(denied(p, &format!("delete volume {volume}")));
        }
        let usage = self.volume_usage.get(&rec.object_id).copied().unwrap_or_default();
        if usage.buckets > 0 {
            return Err(OmError::VolumeNotEmpty(volume.to_string(), usage.buckets));
        }
        probe!(k = volume);
        self.volumes.remove(&k);
        self.user_volumes.remove(&user_volume_key(&rec.owner, volume));
        self.volume_usage.remove(&rec.object_id);
        self.drop_grants(rec.object_id);
        Ok(Reply::Done)
    }

    pub(crate) fn set_volume_owner(&mut self, log_index: u64, p: &Principal, t: u64, volume: &str, owner: &str) -> Outcome {
        if !p.admin {
            return Err(denied(p, "change volume owners"));
        }
        check_user_name("owner", owner)?;
        let mut rec = self.volume_record(volume)?;
        self.user_volumes.remove(&user_volume_key(&rec.owner, volume));
        self.user_volumes.insert(user_volume_key(owner, volume));
        rec.owner = owner.to_string();
        rec.update_id = log_index;
        rec.modified_ms = t;
        self.put_volume(volume, &rec);
        Ok(Reply::Done)
    }

    pub(crate) fn set_volume_quota(
        &mut self, log_index: u64, p: &Principal, t: u64, volume: &str, quota_bytes: Option<u64>, quota_namespace: Option<u64>,
    ) -> Outcome {
        if !p.admin {
            return Err(denied(p, "change volume quotas"));
        }
        let mut rec = self.volume_record(volume)?;
        let usage = self.volume_usage.get(&rec.object_id).copied().unwrap_or_default();
        if let Some(q) = quota_bytes {
            rec.quota_bytes = check_new_quota("volume bytes", q, usage.used_bytes, "bytes")?;
            self.check_bucket_quotas_fit(volume, q, None)?;
        }
        if let Some(q) = quota_namespace {
            rec.quota_namespace = check_new_quota("volume namespace", q, usage.buckets, "buckets")?;
        }
        rec.update_id = log_index;
        rec.modified_ms = t;
        self.put_volume(volume, &rec);
        Ok(Reply::Done)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create_bucket(
        &mut self, ids: &mut Ids, log_index: u64, p: &Principal, t: u64, volume: &str, bucket: &str, owner: Option<&str>,
        versioning: bool, replication: Replication, quota_bytes: u64, quota_namespace: u64, acls: &[Acl],
        metadata: &[MetadataPair],
    ) -> Outcome {
        check_resource_name("bucket", bucket)?;
        if p.is_anonymous() {
            // WORLD may hold CREATE on a volume (`s3v`'s does), but a bucket needs an owner.
            return Err(denied(p, &format!("create buckets in volume {volume} (an anonymous caller owns nothing)")));
        }
        let owner = owner.unwrap_or(&p.user);
        check_user_name("owner", owner)?;
        check_quota("bucket bytes", quota_bytes)?;
        check_quota("bucket namespace", quota_namespace)?;
        check_acls(acls)?;
        check_metadata(metadata)?;
        let vol = self.volume_record(volume)?;
        let allowed = p.admin || vol.owner == p.user || vol.admin == p.user || {
            probe!(k = volume);
            let v = self.volumes.get(&*k).expect("volume read above");
            crate::state::acls_allow(p, &v.view::<ArchivedVolumeRecord>().acls, rights::CREATE)
        };
        if !allowed {
            return Err(denied(p, &format!("create buckets in volume {volume}")));
        }
        let k = bucket_key(volume, bucket);
        probe!(kp = k);
        if self.buckets.contains(&*kp) {
            return Err(OmError::BucketExists(format!("{volume}/{bucket}")));
        }
        self.check_bucket_quotas_fit(volume, vol.quota_bytes, Some((bucket, quota_bytes)))?;
        let vusage = self.volume_usage.entry(vol.object_id).or_default();
        if vusage.buckets + 1 > vol.quota_namespace {
            return Err(OmError::QuotaExceeded {
                what: format!("volume {volume} namespace"),
                used: vusage.buckets,
                adding: 1,
                quota: vol.quota_namespace,
            });
        }
        vusage.buckets += 1;
        let object_id = ids.next();
        let rec = BucketRecord {
            object_id,
            update_id: log_index,
            volume_id: vol.object_id,
            owner: owner.to_string(),
            created_ms: t,
            modified_ms: t,
            layout: BucketLayout::ObjectStore,
            versioning,
            replication,
            quota_bytes,
            quota_namespace,
            acls: acls.to_vec(),
            metadata: metadata.to_vec(),
            deleting: false,
        };
        let e = self.entry_of(&k, &rec);
        self.buckets.insert(e);
        self.bucket_usage.insert(object_id, BucketUsage::default());
        Ok(Reply::Created { object_id })
    }

    /// The right that changing or deleting a bucket itself needs, beside its owner, its
    /// volume's owner or admin and administrators: WRITE_ACL, whose holder could grant itself
    /// anything anyway. Not WRITE and DELETE, which let keys in it be written and deleted (S3's
    /// `public-read-write` grants them to everyone: everyone must not get to change the bucket's
    /// owner or quota, or delete it, as S3 lets only its owner). Before 2026-12-06 (night) they
    /// did; a log in which a holder of those alone changed or deleted a bucket applies
    /// differently now.
    pub(crate) fn set_bucket_deleting(&mut self, log_index: u64, p: &Principal, volume: &str, bucket: &str, deleting: bool) -> Outcome {
        let e = self.bucket_entry(volume, bucket)?;
        if !self.bucket_allows(p, volume, e.view(), BUCKET_ADMIN_RIGHT) {
            return Err(denied(p, &format!("delete bucket {volume}/{bucket} (needs the WRITE_ACL right)")));
        }
        let mut rec = deserialize_record::<BucketRecord>(e.view());
        rec.deleting = deleting;
        rec.update_id = log_index;
        let bucket_id = rec.object_id;
        let e = self.entry_of(&bucket_key(volume, bucket), &rec);
        self.buckets.replace(e);
        Ok(Reply::BucketMarked { bucket_id })
    }

    pub(crate) fn delete_bucket(&mut self, p: &Principal, volume: &str, bucket: &str) -> Outcome {
        let e = self.bucket_entry(volume, bucket)?;
        let b: &ArchivedBucketRecord = e.view();
        if !(self.bucket_allows(p, volume, b, BUCKET_ADMIN_RIGHT)) {
            return Err(denied(p, &format!("delete bucket {volume}/{bucket} (needs the WRITE_ACL right)")));
        }
        let (bucket_id, volume_id) = (b.object_id.to_native(), b.volume_id.to_native());
        let usage = self.bucket_usage.get(&bucket_id).copied().unwrap_or_default();
        if usage.keys > 0 || usage.open_keys > 0 {
            return Err(OmError::BucketNotEmpty(format!("{volume}/{bucket}"), usage.keys, usage.open_keys));
        }
        probe!(k = volume, [0u8], bucket);
        self.buckets.remove(&k);
        // Its key table is empty (no keys, checked above); a snapshot being read keeps it.
        if !self.snapshotting {
            self.keys.remove(&bucket_id);
        }
        self.bucket_usage.remove(&bucket_id);
        self.drop_grants(bucket_id);
        if let Some(v) = self.volume_usage.get_mut(&volume_id) {
            v.buckets -= 1;
        }
        Ok(Reply::Done)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set_bucket_property(
        &mut self, log_index: u64, p: &Principal, t: u64, volume: &str, bucket: &str, owner: Option<&str>,
        versioning: Option<bool>, replication: Option<Replication>, quota_bytes: Option<u64>, quota_namespace: Option<u64>,
    ) -> Outcome {
        let e = self.bucket_entry(volume, bucket)?;
        if !self.bucket_allows(p, volume, e.view(), BUCKET_ADMIN_RIGHT) {
            return Err(denied(p, &format!("change bucket {volume}/{bucket} (needs the WRITE_ACL right)")));
        }
        let mut rec = deserialize_record::<BucketRecord>(e.view());
        let usage = self.bucket_usage.get(&rec.object_id).copied().unwrap_or_default();
        if let Some(o) = owner {
            check_user_name("owner", o)?;
            rec.owner = o.to_string();
        }
        if let Some(v) = versioning {
            rec.versioning = v;
        }
        if let Some(r) = replication {
            rec.replication = r;
        }
        if let Some(q) = quota_bytes {
            rec.quota_bytes = check_new_quota("bucket bytes", q, usage.used_bytes, "bytes")?;
            let volume_quota = self.volume_record(volume)?.quota_bytes;
            self.check_bucket_quotas_fit(volume, volume_quota, Some((bucket, q)))?;
        }
        if let Some(q) = quota_namespace {
            rec.quota_namespace = check_new_quota("bucket namespace", q, usage.keys, "keys")?;
        }
        rec.update_id = log_index;
        rec.modified_ms = t;
        let e = self.entry_of(&bucket_key(volume, bucket), &rec);
        self.buckets.replace(e);
        Ok(Reply::Done)
    }

    /// `Op::SetBucketAcls`: the bucket's entries replaced, by a holder of WRITE_ACL on it.
    pub(crate) fn set_bucket_acls(&mut self, log_index: u64, p: &Principal, t: u64, volume: &str, bucket: &str, acls: &[Acl]) -> Outcome {
        check_acls(acls)?;
        self.change_bucket_acls(log_index, p, t, volume, bucket, |_| acls.to_vec())
    }

    /// `Op::EditBucketAcls`: the bucket's entries edited ([`edited_acls`]), by a holder of
    /// WRITE_ACL on it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn edit_bucket_acls(&mut self, log_index: u64, p: &Principal, t: u64, volume: &str, bucket: &str, add: &[Acl], remove: &[Acl]) -> Outcome {
        check_acl_edit(add, remove)?;
        self.change_bucket_acls(log_index, p, t, volume, bucket, |old| edited_acls(old, add, remove))
    }

    /// A bucket's entries become `new(old entries)`, by a holder of WRITE_ACL on it; the result
    /// is checked as a replacement is (an edit may make too many).
    fn change_bucket_acls(&mut self, log_index: u64, p: &Principal, t: u64, volume: &str, bucket: &str, new: impl FnOnce(&[Acl]) -> Vec<Acl>) -> Outcome {
        let e = self.bucket_entry(volume, bucket)?;
        if !self.bucket_allows(p, volume, e.view(), rights::WRITE_ACL) {
            return Err(denied(p, &format!("change the ACL of bucket {volume}/{bucket} (needs the WRITE_ACL right)")));
        }
        let mut rec = deserialize_record::<BucketRecord>(e.view());
        rec.acls = new(&rec.acls);
        check_acls(&rec.acls)?;
        rec.update_id = log_index;
        rec.modified_ms = t;
        let e = self.entry_of(&bucket_key(volume, bucket), &rec);
        self.buckets.replace(e);
        Ok(Reply::Done)
    }

    /// `Op::SetBucketMetadata`: the bucket's owner (WRITE on it is not enough: these are the
    /// bucket's settings, as `set_bucket_property`'s owner change) edits its metadata.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set_bucket_metadata(
        &mut self, log_index: u64, p: &Principal, t: u64, volume: &str, bucket: &str, set: &[MetadataPair], remove_prefix: &str,
    ) -> Outcome {
        check_metadata(set)?;
        let e = self.bucket_entry(volume, bucket)?;
        let mut rec = deserialize_record::<BucketRecord>(e.view());
        if !p.admin && p.user != rec.owner {
            return Err(denied(p, &format!("change the settings of bucket {volume}/{bucket} (its owner's)")));
        }
        if !remove_prefix.is_empty() {
            rec.metadata.retain(|m| !m.key.starts_with(remove_prefix));
        }
        set_over(&mut rec.metadata, set);
        check_metadata(&rec.metadata)?;
        rec.update_id = log_index;
        rec.modified_ms = t;
        let e = self.entry_of(&bucket_key(volume, bucket), &rec);
        self.buckets.replace(e);
        Ok(Reply::Done)
    }
}


/// An S3 secret as the OM makes it: 40 characters of `[A-Za-z0-9]` (AWS's secrets are 40 of
/// base64; these carry 238 bits).
pub const S3_SECRET_CHARS: usize = 40;

impl ShardState {
    pub(crate) fn get_s3_secret(&mut self, p: &Principal, access_id: &str, fresh: &str) -> Outcome {
        // No access key named: the caller's.
        let access_id = if access_id.is_empty() { p.user.as_str() } else { access_id };
        if p.user != access_id && !p.admin {
            return Err(denied(p, "get another user's S3 secret"));
        }
        check_user_name("access key id", access_id)?;
        if fresh.len() != S3_SECRET_CHARS || !fresh.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(OmError::InvalidArgument(format!("an S3 secret is {S3_SECRET_CHARS} letters and digits")));
        }
        let secret = self.s3_secrets.entry(access_id.to_string()).or_insert_with(|| fresh.to_string()).clone();
        Ok(Reply::S3Secret { access_id: access_id.to_string(), secret })
    }

    pub(crate) fn revoke_s3_secret(&mut self, p: &Principal, access_id: &str) -> Outcome {
        let access_id = if access_id.is_empty() { p.user.as_str() } else { access_id };
        if p.user != access_id && !p.admin {
            return Err(denied(p, "revoke another user's S3 secret"));
        }
        match self.s3_secrets.remove(access_id) {
            Some(_) => Ok(Reply::Done),
            None => Err(OmError::S3SecretNotFound(access_id.to_string())),
        }
    }

    /// The S3 secret of `access_id`, if it has one (the gateway's lookup).
    pub fn s3_secret(&self, access_id: &str) -> Option<&str> {
        self.s3_secrets.get(access_id).map(String::as_str)
    }
}
