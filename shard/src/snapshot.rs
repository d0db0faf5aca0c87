//! Snapshots: the whole shard as one rkyv image, and back.
//!
//! File format: magic `STRATOSS` (8) | format version u32 | crc32 of the image u32 | image
//! length u64 | 8 zero bytes | the rkyv image. The image starts at offset 32 so that a file read
//! into a 16-aligned buffer (what allocators return) can be validated in place, without copying. The image holds every table's entries as raw (key, record)
//! byte strings plus the counters, the retry cache and cross-shard rename intents and arrivals (format 3). Loading checks the crc, validates the
//! image with bytecheck, then validates each record as its type while rebuilding the tables
//! (entries arrive sorted, so each set is built bottom-up), and finally checks every
//! invariant of the state. This crate only makes and reads
//! bytes; the server writes them durably (temp file, fsync, rename, fsync the directory).

use std::collections::{BTreeMap, BTreeSet};

use rkyv::rancor;
use rkyv::with::InlineAsBox;
use rkyv::{Archive, Serialize};

use crate::command::BucketRef;
use crate::memtable::Entry;
use crate::records::*;
use crate::state::{BucketUsage, RenameArrival, RenameIntent, Session, ShardState, VolumeUsage};

const MAGIC: [u8; 8] = *b"STRATOSS";
const VERSION: u32 = 3;
const PREFIX_BYTES: usize = 32;

#[derive(Archive, Serialize)]
struct RawEntry<'a> {
    #[rkyv(with = InlineAsBox)]
    key: &'a [u8],
    #[rkyv(with = InlineAsBox)]
    record: &'a [u8],
}

#[derive(Archive, Serialize)]
struct BucketKeys<'a> {
    bucket_id: u64,
    entries: Vec<RawEntry<'a>>,
}

#[derive(Archive, Serialize)]
struct Image<'a> {
    applied_log_index: u64,
    next_deleted_seq: u64,
    volumes: Vec<RawEntry<'a>>,
    buckets: Vec<RawEntry<'a>>,
    keys: Vec<BucketKeys<'a>>,
    open_keys: Vec<RawEntry<'a>>,
    deleted_blocks: Vec<RawEntry<'a>>,
    user_volumes: Vec<Vec<u8>>,
    volume_usage: Vec<(u64, VolumeUsage)>,
    bucket_usage: Vec<(u64, BucketUsage)>,
    sessions: Vec<(u64, Session)>,
    bucket_refs: Vec<(u64, BucketRef, bool)>,
    renames_out: Vec<(u64, RenameIntent)>,
    renames_in: Vec<(u32, u64, RenameArrival)>,
}

/// Why snapshot bytes could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a Stratos shard snapshot (bad magic)")]
    Magic,
    #[error("snapshot format version {0}, this build reads {VERSION}")]
    Version(u32),
    #[error("snapshot is {have} bytes, its header says {want}")]
    Length { have: usize, want: u64 },
    #[error("snapshot crc32 mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("snapshot image is malformed: {0}")]
    Malformed(String),
}

fn raw(set: &BTreeSet<Entry>) -> Vec<RawEntry<'_>> {
    set.iter().map(|e| RawEntry { key: e.key(), record: e.record() }).collect()
}

impl ShardState {
    /// The whole state as snapshot bytes (see the module docs for the format).
    pub fn snapshot(&self) -> Vec<u8> {
        let image = Image {
            applied_log_index: self.applied_log_index,
            next_deleted_seq: self.next_deleted_seq,
            volumes: raw(&self.volumes),
            buckets: raw(&self.buckets),
            // Empty per-bucket sets are an artefact of how apply works, not state: leave them out.
            keys: self.keys.iter().filter(|(_, set)| !set.is_empty()).map(|(id, set)| BucketKeys { bucket_id: *id, entries: raw(set) }).collect(),
            open_keys: raw(&self.open_keys),
            deleted_blocks: raw(&self.deleted_blocks),
            user_volumes: self.user_volumes.iter().cloned().collect(),
            volume_usage: self.volume_usage.iter().map(|(k, v)| (*k, *v)).collect(),
            bucket_usage: self.bucket_usage.iter().map(|(k, v)| (*k, *v)).collect(),
            sessions: self.sessions.iter().map(|(k, v)| (*k, v.clone())).collect(),
            bucket_refs: self.bucket_refs.iter().map(|(k, (r, f))| (*k, *r, *f)).collect(),
            renames_out: self.renames_out.iter().map(|(k, i)| (*k, i.clone())).collect(),
            renames_in: self.renames_in.iter().map(|((s, t), a)| (*s, *t, a.clone())).collect(),
        };
        let bytes = rkyv::to_bytes::<rancor::Error>(&image).expect("serializing into memory cannot fail");
        let mut out = Vec::with_capacity(PREFIX_BYTES + bytes.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&bytes);
        out
    }

    /// Rebuilds a shard from snapshot bytes, validating everything (bytes from disk are
    /// untrusted: a bad snapshot is an error, never a panic or a wrong state).
    pub fn load_snapshot(bytes: &[u8]) -> Result<ShardState, SnapshotError> {
        if bytes.len() < PREFIX_BYTES || bytes[..8] != MAGIC {
            return Err(SnapshotError::Magic);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(SnapshotError::Version(version));
        }
        let stored = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
        let want = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        if bytes[24..32] != [0u8; 8] {
            return Err(SnapshotError::Malformed("reserved header bytes are not zero".into()));
        }
        let body = &bytes[PREFIX_BYTES..];
        if body.len() as u64 != want {
            return Err(SnapshotError::Length { have: body.len(), want });
        }
        let computed = crc32fast::hash(body);
        if computed != stored {
            return Err(SnapshotError::Crc { stored, computed });
        }
        // rkyv needs the image 16-aligned; copy only if the caller's buffer does not give that.
        let copy;
        let image_bytes: &[u8] = if body.as_ptr() as usize % 16 == 0 {
            body
        } else {
            let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
            aligned.extend_from_slice(body);
            copy = aligned;
            &copy
        };
        let image = rkyv::access::<ArchivedImage<'_>, rancor::BoxedError>(image_bytes).map_err(|e| SnapshotError::Malformed(e.to_string()))?;

        fn table<T>(entries: &[ArchivedRawEntry<'_>], what: &str, check_key: impl Fn(&[u8]) -> bool) -> Result<BTreeSet<Entry>, SnapshotError>
        where
            T: rkyv::Portable + for<'b> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'b, rancor::BoxedError>>,
        {
            let mut sorted = Vec::with_capacity(entries.len());
            let mut last: Option<&[u8]> = None;
            for r in entries {
                let (key, record) = (r.key.get(), r.record.get());
                if !check_key(key) || last.is_some_and(|l| l >= key) {
                    return Err(SnapshotError::Malformed(format!("{what}: bad or unsorted key")));
                }
                last = Some(key);
                sorted.push(Entry::validated::<T>(key, record).map_err(|e| SnapshotError::Malformed(format!("{what} record: {e}")))?);
            }
            // Strictly ascending, as checked: the set is built bottom-up in O(n) (std sorts
            // first, which on sorted input is one linear pass), not by n searches from the root.
            Ok(sorted.into_iter().collect())
        }
        let name_ok = |k: &[u8]| std::str::from_utf8(k).is_ok() && !k.contains(&0);
        let bucket_ok = |k: &[u8]| std::str::from_utf8(k).is_ok() && k.iter().filter(|&&b| b == 0).count() == 1;
        let id_ok = |k: &[u8]| k.len() == 8;

        let mut keys = BTreeMap::new();
        for bk in image.keys.iter() {
            keys.insert(bk.bucket_id.to_native(), table::<ArchivedKeyRecord>(&bk.entries, "key", name_ok)?);
        }
        fn de(what: &'static str) -> impl Fn(rancor::BoxedError) -> SnapshotError {
            move |e| SnapshotError::Malformed(format!("{what}: {e}"))
        }
        let open_keys = table::<ArchivedOpenKeyRecord>(&image.open_keys, "open key", id_ok)?;
        let open_key_expiry = open_keys
            .iter()
            .map(|e| {
                let o: &ArchivedOpenKeyRecord = e.view();
                (o.expires_ms.to_native(), o.object_id.to_native())
            })
            .collect();
        let renames_out: BTreeMap<u64, RenameIntent> =
            rkyv::deserialize::<Vec<(u64, RenameIntent)>, rancor::BoxedError>(&image.renames_out).map_err(de("rename intents"))?.into_iter().collect();
        let state = ShardState {
            applied_log_index: image.applied_log_index.to_native(),
            next_deleted_seq: image.next_deleted_seq.to_native(),
            volumes: table::<ArchivedVolumeRecord>(&image.volumes, "volume", name_ok)?,
            buckets: table::<ArchivedBucketRecord>(&image.buckets, "bucket", bucket_ok)?,
            keys,
            open_keys,
            open_key_expiry,
            deleted_blocks: table::<ArchivedDeletedBlocksRecord>(&image.deleted_blocks, "deleted blocks", id_ok)?,
            user_volumes: rkyv::deserialize::<Vec<Vec<u8>>, rancor::BoxedError>(&image.user_volumes).map_err(de("user volumes"))?.into_iter().collect(),
            volume_usage: rkyv::deserialize::<Vec<(u64, VolumeUsage)>, rancor::BoxedError>(&image.volume_usage).map_err(de("volume usage"))?.into_iter().collect(),
            bucket_usage: rkyv::deserialize::<Vec<(u64, BucketUsage)>, rancor::BoxedError>(&image.bucket_usage).map_err(de("bucket usage"))?.into_iter().collect(),
            sessions: rkyv::deserialize::<Vec<(u64, Session)>, rancor::BoxedError>(&image.sessions).map_err(de("sessions"))?.into_iter().collect(),
            bucket_refs: rkyv::deserialize::<Vec<(u64, BucketRef, bool)>, rancor::BoxedError>(&image.bucket_refs)
                .map_err(de("bucket references"))?
                .into_iter()
                .map(|(k, r, f)| (k, (r, f)))
                .collect(),
            moving: renames_out.values().map(|i| (i.bucket_id, i.from.clone())).collect(),
            renames_out,
            renames_in: rkyv::deserialize::<Vec<(u32, u64, RenameArrival)>, rancor::BoxedError>(&image.renames_in)
                .map_err(de("rename arrivals"))?
                .into_iter()
                .map(|(s, t, a)| ((s, t), a))
                .collect(),
            ..ShardState::default()
        };
        // Every derived fact must agree with the tables, or a later apply could act on counters
        // that lie (and underflow): a snapshot that is well-formed but inconsistent is refused.
        state.check_invariants().map_err(|e| SnapshotError::Malformed(format!("inconsistent state: {e}")))?;
        Ok(state)
    }

    /// A hash of the whole state (of its snapshot image), to compare replicas and replays.
    pub fn state_hash(&self) -> u64 {
        let s = self.snapshot();
        let mut h = crc32fast::Hasher::new_with_initial(0x5EED_0001);
        h.update(&s);
        (u64::from(crc32fast::hash(&s)) << 32) | u64::from(h.finalize())
    }
}
