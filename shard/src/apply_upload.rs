//! Multipart uploads (S3's), on the shard of their key: an upload record, and one record per
//! part (a part's commit writes that record alone: Ozone rewrites one record holding every
//! part at each part commit, which makes an upload of N parts cost O(N²)). Completing builds
//! the key from the listed parts' blocks through the ordinary commit (quotas, conditions and
//! all), so a completed upload is a key like any other.

use std::ops::Bound;

use crate::apply_keys::Limit;
use crate::apply_meta::check_metadata;
use crate::command::{Condition, Principal};
use crate::constants::*;
use crate::memtable::probe;
use crate::names::check_key_name;
use crate::outcome::{OmError, Outcome, Reply};
use crate::records::*;
use crate::state::{Ids, ShardState};

/// One multipart upload in a listing ([`ShardState::list_uploads_in`]), ordered by key, then
/// upload id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedUpload {
    pub key: String,
    pub upload_id: String,
    pub created_ms: u64,
    /// The value of the upload's metadata pair the listing asked for (empty: none).
    pub value: String,
}

/// The S3 code a completion's refusal starts with.
fn invalid(code: &str, why: String) -> OmError {
    OmError::InvalidPart(format!("{code}: {why}"))
}

fn check_upload_id(id: &str) -> Result<(), OmError> {
    if id.is_empty() || id.len() > UPLOAD_ID_BYTES_MAX || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(OmError::NoSuchUpload(format!("{id:?} (not an upload id)")));
    }
    Ok(())
}

type UploadKey = (u64, String, String);

/// The metadata pair in which a completed multipart key keeps its parts' numbers and sizes
/// (for S3's GET and HEAD of one part and GetObjectAttributes' part list): runs of consecutive
/// part numbers of one size, `FIRST:COUNT:SIZE`, joined by commas, in part order. An upload of
/// equal parts and a smaller last one is two runs whatever its part count. Left out when it
/// would not fit a metadata value (hundreds of runs: parts of many sizes); the gateway then
/// says that key's part boundaries are not known. The gateway reads it under the same name.
pub const PART_SIZES: &str = "parts";

/// `parts` (number, size, ascending numbers) as [`PART_SIZES`]' value.
pub fn part_sizes_value(parts: &[(u32, u64)]) -> String {
    let mut runs: Vec<(u32, u32, u64)> = Vec::new();
    for &(n, size) in parts {
        match runs.last_mut() {
            Some((first, count, s)) if *s == size && first.checked_add(*count) == Some(n) => *count += 1,
            _ => runs.push((n, 1, size)),
        }
    }
    runs.iter().map(|(first, count, size)| format!("{first}:{count}:{size}")).collect::<Vec<_>>().join(",")
}

impl ShardState {
    /// The upload's key in the table, if it exists.
    fn upload_of(&self, bucket_id: u64, volume: &str, bucket: &str, key: &str, upload_id: &str) -> Result<UploadKey, OmError> {
        check_upload_id(upload_id)?;
        let k = (bucket_id, key.to_string(), upload_id.to_string());
        if self.uploads.contains_key(&k) { Ok(k) } else { Err(OmError::NoSuchUpload(format!("{upload_id} of {volume}/{bucket}/{key}"))) }
    }

    /// The part records of an upload, in part order.
    fn parts_of<'a>(&'a self, u: &UploadKey) -> impl Iterator<Item = (u32, &'a PartRecord)> + 'a {
        let from = (u.0, u.1.clone(), u.2.clone(), 0u32);
        let to = (u.0, u.1.clone(), u.2.clone(), u32::MAX);
        self.parts.range((Bound::Included(from), Bound::Included(to))).map(|(k, p)| (k.3, p))
    }

    /// Drops an upload and its parts; returns the blocks of the parts not in `keep`.
    fn drop_upload(&mut self, u: &UploadKey, keep: &[u32]) -> Vec<BlockLocation> {
        let numbers: Vec<u32> = self.parts_of(u).map(|(n, _)| n).collect();
        let mut freed = Vec::new();
        for n in numbers {
            let p = self.parts.remove(&(u.0, u.1.clone(), u.2.clone(), n)).expect("listed above");
            if !keep.contains(&n) {
                freed.extend(p.blocks);
            }
        }
        self.uploads.remove(u);
        if let Some(usage) = self.bucket_usage.get_mut(&u.0) {
            usage.open_keys -= 1;
        }
        freed
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn initiate_upload(
        &mut self, p: &Principal, t: u64, volume: &str, bucket: &str, key: &str, upload_id: &str, replication: Option<Replication>, metadata: &[MetadataPair],
    ) -> Outcome {
        check_key_name(key)?;
        check_metadata(metadata)?;
        check_upload_id(upload_id).map_err(|_| OmError::InvalidArgument(format!("upload id {upload_id:?}: 1 to {UPLOAD_ID_BYTES_MAX} letters and digits")))?;
        let facts = self.key_bucket(p, volume, bucket, rights::WRITE, "write keys in")?;
        self.check_not_moving(facts.bucket_id, volume, bucket, key)?;
        let k = (facts.bucket_id, key.to_string(), upload_id.to_string());
        if self.uploads.contains_key(&k) {
            return Err(OmError::InvalidArgument(format!("upload {upload_id} of {volume}/{bucket}/{key} exists")));
        }
        self.uploads.insert(k, UploadRecord { created_ms: t, replication: replication.unwrap_or(facts.replication), metadata: metadata.to_vec() });
        self.bucket_usage.entry(facts.bucket_id).or_default().open_keys += 1;
        Ok(Reply::UploadStarted { upload_id: upload_id.to_string() })
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_part(
        &mut self, ids: &mut Ids, log_index: u64, p: &Principal, t: u64, volume: &str, bucket: &str, key: &str, upload_id: &str, part: u32,
        open_id: u64, data_size: u64, blocks: &[BlockLocation], etag: &str, checksum: &str,
    ) -> Outcome {
        check_key_name(key)?;
        if !(1..=PARTS_MAX).contains(&part) {
            return Err(OmError::InvalidArgument(format!("part number {part}: 1 to {PARTS_MAX}")));
        }
        if etag.len() > METADATA_VALUE_BYTES_MAX {
            return Err(OmError::InvalidArgument(format!("a part ETag of {} bytes", etag.len())));
        }
        if checksum.len() > METADATA_VALUE_BYTES_MAX {
            return Err(OmError::InvalidArgument(format!("a part checksum of {} bytes, at most {METADATA_VALUE_BYTES_MAX}", checksum.len())));
        }
        let facts = self.key_bucket(p, volume, bucket, rights::WRITE, "write keys in")?;
        let u = self.upload_of(facts.bucket_id, volume, bucket, key, upload_id)?;
        let (unused, expires) = {
            let open = self.open_key_of(&facts, || format!("{volume}/{bucket}/{key}"), key, open_id)?;
            let unused = crate::apply_keys::check_committed_blocks(open, blocks, data_size)?;
            (unused, open.expires_ms.to_native())
        };
        probe!(ok = open_id.to_be_bytes());
        self.open_keys.remove(&ok);
        self.open_key_expiry.remove(&(expires, open_id));
        self.bucket_usage.entry(facts.bucket_id).or_default().open_keys -= 1;
        let record = PartRecord { etag: etag.to_string(), size: data_size, modified_ms: t, blocks: blocks.to_vec(), checksum: checksum.to_string() };
        let mut freed = unused;
        if let Some(old) = self.parts.insert((u.0, u.1, u.2, part), record) {
            freed.extend(old.blocks);
        }
        self.queue_deleted(ids, log_index, freed);
        Ok(Reply::Done)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn complete_upload(
        &mut self, ids: &mut Ids, log_index: u64, p: &Principal, t: u64, volume: &str, bucket: &str, key: &str, upload_id: &str,
        parts: &[(u32, String, String)], etag: &str, set: &[MetadataPair], condition: &Condition, limit: Limit, acls: &[Acl],
    ) -> Outcome {
        check_key_name(key)?;
        check_metadata(set)?;
        if let Some(m) = set.iter().find(|m| m.key == "etag" || m.key == PART_SIZES) {
            return Err(OmError::InvalidArgument(format!("a completion sets {:?} itself", m.key)));
        }
        let facts = self.key_bucket(p, volume, bucket, rights::WRITE, "write keys in")?;
        self.check_not_moving(facts.bucket_id, volume, bucket, key)?;
        let u = self.upload_of(facts.bucket_id, volume, bucket, key, upload_id)?;
        if parts.is_empty() {
            return Err(invalid("InvalidPart", "a completion lists no parts".into()));
        }
        if let Some(w) = parts.windows(2).find(|w| w[1].0 <= w[0].0) {
            return Err(invalid("InvalidPartOrder", format!("part {} is listed after part {}: parts must be listed in ascending order", w[1].0, w[0].0)));
        }
        let mut blocks = Vec::new();
        let mut size = 0u64;
        let mut sizes = Vec::with_capacity(parts.len());
        for (i, (n, want, checksum)) in parts.iter().enumerate() {
            let Some(part) = self.parts.get(&(u.0, u.1.clone(), u.2.clone(), *n)) else {
                return Err(invalid("InvalidPart", format!("part {n} was not uploaded")));
            };
            if want.trim_matches('"') != part.etag {
                return Err(invalid("InvalidPart", format!("part {n} has ETag {}, not {want}", part.etag)));
            }
            if !checksum.is_empty() && *checksum != part.checksum {
                let had = if part.checksum.is_empty() { "none" } else { part.checksum.as_str() };
                return Err(invalid("InvalidPart", format!("part {n} has checksum {had}, not {checksum}")));
            }
            if i + 1 < parts.len() && part.size < PART_BYTES_MIN {
                return Err(invalid("EntityTooSmall", format!("part {n} has {} bytes; every part but the last must have at least {PART_BYTES_MIN}", part.size)));
            }
            size += part.size;
            sizes.push((*n, part.size));
            blocks.extend(part.blocks.iter().copied());
        }
        if blocks.len() > BLOCKS_PER_KEY_MAX {
            return Err(OmError::InvalidArgument(format!("the parts hold {} blocks, a key at most {BLOCKS_PER_KEY_MAX}", blocks.len())));
        }
        // An open key holding every listed part's blocks, committed as any key is: the
        // quota, the condition and the replaced key's blocks are the commit's business.
        let upload = self.uploads.get(&u).expect("found above").clone();
        let upload_pairs = upload.metadata.iter().filter(|m| m.key != "etag" && m.key != PART_SIZES).count();
        let open_id = ids.next();
        let expires = t.saturating_add(1);
        let open = OpenKeyRecord {
            object_id: open_id,
            bucket_id: facts.bucket_id,
            key: key.to_string(),
            created_ms: upload.created_ms,
            expires_ms: expires,
            replication: upload.replication,
            blocks: blocks.clone(),
            metadata: upload.metadata,
        };
        let e = self.entry_of(&open_id.to_be_bytes(), &open);
        self.open_keys.insert(e);
        self.open_key_expiry.insert((expires, open_id));
        self.bucket_usage.entry(facts.bucket_id).or_default().open_keys += 1;
        let extra = set;
        let mut set = Vec::with_capacity(extra.len() + 2);
        set.push(MetadataPair { key: "etag".into(), value: etag.to_string() });
        set.extend_from_slice(extra);
        let sizes = part_sizes_value(&sizes);
        // Kept where it fits: a value of at most 2 KiB, and a pair that does not take the key
        // past its pair limit (an upload's metadata that completed before it was kept still
        // completes).
        if sizes.len() <= METADATA_VALUE_BYTES_MAX && upload_pairs + extra.len() + 2 <= METADATA_PAIRS_MAX {
            set.push(MetadataPair { key: PART_SIZES.into(), value: sizes });
        }
        let out = self.commit_key_with(ids, log_index, p, t, volume, bucket, key, open_id, size, &blocks, limit, Some((&set, condition, acls)));
        if out.is_err() {
            // Refused (quota, condition): the upload stays as it was, for another try or an abort.
            probe!(ok = open_id.to_be_bytes());
            self.open_keys.remove(&ok);
            self.open_key_expiry.remove(&(expires, open_id));
            self.bucket_usage.entry(facts.bucket_id).or_default().open_keys -= 1;
            return out;
        }
        let keep: Vec<u32> = parts.iter().map(|(n, ..)| *n).collect();
        let freed = self.drop_upload(&u, &keep);
        self.queue_deleted(ids, log_index, freed);
        out
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn abort_upload(&mut self, ids: &mut Ids, log_index: u64, p: &Principal, volume: &str, bucket: &str, key: &str, upload_id: &str) -> Outcome {
        check_key_name(key)?;
        let facts = self.key_bucket(p, volume, bucket, rights::WRITE, "write keys in")?;
        let u = self.upload_of(facts.bucket_id, volume, bucket, key, upload_id)?;
        let freed = self.drop_upload(&u, &[]);
        self.queue_deleted(ids, log_index, freed);
        Ok(Reply::Done)
    }

    pub(crate) fn expire_uploads(&mut self, ids: &mut Ids, log_index: u64, created_before_ms: u64, limit: u32) -> Reply {
        let old: Vec<UploadKey> = self.uploads.iter().filter(|(_, u)| u.created_ms < created_before_ms).take(limit.min(EXPIRE_BATCH_MAX) as usize).map(|(k, _)| k.clone()).collect();
        let mut freed = Vec::new();
        for u in &old {
            freed.extend(self.drop_upload(u, &[]));
        }
        self.queue_deleted(ids, log_index, freed);
        Reply::Expired { open_keys: old.len() as u64, sessions: 0 }
    }

    /// Upload `upload_id` of `key` in bucket `bucket_id` (the caller checked the rights) and
    /// its parts after `marker`, at most `limit`, and whether more follow.
    #[allow(clippy::type_complexity)]
    pub fn list_parts(&self, bucket_id: u64, key: &str, upload_id: &str, marker: u32, limit: usize) -> Result<(UploadRecord, Vec<(u32, PartRecord)>, bool), OmError> {
        check_upload_id(upload_id)?;
        let u = (bucket_id, key.to_string(), upload_id.to_string());
        let Some(upload) = self.uploads.get(&u) else { return Err(OmError::NoSuchUpload(format!("{upload_id} of {key}"))) };
        let mut parts: Vec<(u32, PartRecord)> = self.parts_of(&u).filter(|(n, _)| *n > marker).take(limit + 1).map(|(n, r)| (n, r.clone())).collect();
        let truncated = parts.len() > limit;
        parts.truncate(limit);
        Ok((upload.clone(), parts, truncated))
    }

    /// Uploads in bucket `bucket_id` whose keys start with `prefix`, in (key, upload id) order
    /// after `after`, at most `limit`, each with the value of its metadata pair named `with`
    /// (empty where it has none, or `with` is empty); and whether more follow. With a
    /// `delimiter` (none when empty), of the uploads whose keys share a common prefix
    /// ([`crate::names::common_prefix`]) only the first comes back and the listing seeks past
    /// the rest, as [`Self::list_keys_rolled_up`] does for keys (S3's ListMultipartUploads).
    /// The listing starts at the prefix and ends past it: the bucket's other uploads are not
    /// walked.
    pub fn list_uploads_in(&self, bucket_id: u64, prefix: &str, after: (&str, &str), limit: usize, with: &str, delimiter: &str) -> (Vec<ListedUpload>, bool) {
        let value = |u: &UploadRecord| match with {
            "" => String::new(),
            with => u.metadata.iter().find(|m| m.key == with).map(|m| m.value.clone()).unwrap_or_default(),
        };
        // The first (key, upload id) to list: just after `after`, or the prefix's first upload
        // when `after` sorts before the prefix.
        let mut from = if after.0 >= prefix {
            Bound::Excluded((bucket_id, after.0.to_string(), after.1.to_string()))
        } else {
            Bound::Included((bucket_id, prefix.to_string(), String::new()))
        };
        let mut out: Vec<ListedUpload> = Vec::new();
        let mut truncated = false;
        // The common prefix of the upload listed last, if it has one.
        let mut group: Option<String> = None;
        'seek: loop {
            for ((b, key, id), u) in self.uploads.range((from.clone(), Bound::Unbounded)) {
                if *b != bucket_id || !key.starts_with(prefix) {
                    break 'seek;
                }
                if let Some(g) = &group
                    && key.starts_with(g.as_str())
                {
                    // A second upload of the group just listed: seek past all of them.
                    let Some(next) = past_str(g) else { break 'seek };
                    from = Bound::Included((bucket_id, next, String::new()));
                    group = None;
                    continue 'seek;
                }
                if out.len() == limit {
                    truncated = true;
                    break 'seek;
                }
                out.push(ListedUpload { key: key.clone(), upload_id: id.clone(), created_ms: u.created_ms, value: value(u) });
                group = crate::names::common_prefix(key, prefix, delimiter).map(str::to_string);
            }
            break;
        }
        (out, truncated)
    }
}

/// The least string greater than every string that starts with `group`, in byte order (which
/// for UTF-8 is code point order): `group` with its last character raised by one, after
/// dropping trailing U+10FFFF characters. None: there is none (`group` is all U+10FFFF).
fn past_str(group: &str) -> Option<String> {
    let mut s = group.trim_end_matches(char::MAX).to_string();
    let last = s.pop()?;
    let next = match last as u32 + 1 {
        0xD800 => '\u{E000}',
        n => char::from_u32(n)?,
    };
    s.push(next);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_a_group_is_the_least_string_after_every_name_it_starts() {
        assert_eq!(past_str("a/").as_deref(), Some("a0"));
        assert_eq!(past_str("a\u{10FFFF}\u{10FFFF}").as_deref(), Some("b"), "U+10FFFF cannot be raised: the character before it is");
        assert_eq!(past_str("x\u{D7FF}").as_deref(), Some("x\u{E000}"), "surrogates are not characters");
        assert_eq!(past_str("\u{10FFFF}"), None);
        assert_eq!(past_str(""), None);
        for g in ["a/", "é/", "x\u{D7FF}", "a\u{10FFFF}"] {
            let p = past_str(g).expect("past");
            assert!(p.as_str() > g && p.as_str() > format!("{g}\u{10FFFF}\u{10FFFF}").as_str(), "{g:?}: {p:?} is after the group");
            assert!(!p.starts_with(g), "{g:?}: {p:?} is outside it");
        }
    }

    #[test]
    fn part_sizes_are_runs_of_consecutive_parts() {
        assert_eq!(part_sizes_value(&[(1, 5), (2, 5), (3, 5), (4, 2)]), "1:3:5,4:1:2");
        assert_eq!(part_sizes_value(&[(1, 5), (3, 5), (4, 5)]), "1:1:5,3:2:5", "a gap starts a run");
        assert_eq!(part_sizes_value(&[(7, 0)]), "7:1:0");
        let equal: Vec<(u32, u64)> = (1..=PARTS_MAX).map(|n| (n, 5 << 20)).collect();
        assert_eq!(part_sizes_value(&equal), "1:10000:5242880");
        let varied: Vec<(u32, u64)> = (1..=PARTS_MAX).map(|n| (n, (5 << 20) + u64::from(n % 2))).collect();
        assert!(part_sizes_value(&varied).len() > METADATA_VALUE_BYTES_MAX, "left out of the key, not cut");
    }
}
