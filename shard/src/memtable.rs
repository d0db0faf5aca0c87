//! The memtable: ordered sets of entries, each entry one allocation holding a key and an
//! rkyv-archived record.
//!
//! Entry layout, in 8-byte words: `[key_len: u32 | record_len: u32]`, the key bytes padded to
//! a multiple of 8, then the record bytes. Backing the entry with `Box<[u64]>` makes the record
//! 8-aligned, which rkyv requires, without a custom allocator. One allocation per entry (not a
//! key `Vec` plus a record `AlignedVec`) is what keeps a 40-byte-named key under 200 bytes.
//!
//! Records are written only by this crate's serializer or after validation on load
//! ([`Entry::validated`]), so reads use `access_unchecked`: ~1 ns instead of ~14 ns.

use std::borrow::Borrow;
use std::cmp::Ordering;

use rkyv::Portable;
use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;

/// One memtable entry: a key and an archived record in one 8-aligned allocation.
pub struct Entry(Box<[u64]>);

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("key", &String::from_utf8_lossy(self.key())).field("record_bytes", &self.record().len()).finish()
    }
}

impl Entry {
    /// Builds an entry. `record` must be the bytes of an archived record of this crate.
    pub fn new(key: &[u8], record: &[u8]) -> Self {
        let key_len = u32::try_from(key.len()).expect("keys are bounded far below 4 GiB");
        let record_len = u32::try_from(record.len()).expect("records are bounded far below 4 GiB");
        let key_words = key.len().div_ceil(8);
        let record_words = record.len().div_ceil(8);
        let mut words = vec![0u64; 1 + key_words + record_words].into_boxed_slice();
        words[0] = u64::from(key_len) | (u64::from(record_len) << 32);
        let bytes = bytes_of_mut(&mut words);
        bytes[8..8 + key.len()].copy_from_slice(key);
        let at = 8 + key_words * 8;
        bytes[at..at + record.len()].copy_from_slice(record);
        Self(words)
    }

    /// Builds an entry from untrusted record bytes (a snapshot from disk), validating them as a
    /// `T` first.
    pub fn validated<T>(key: &[u8], record: &[u8]) -> Result<Self, String>
    where
        T: Portable + for<'a> CheckBytes<HighValidator<'a, rancor::BoxedError>>,
    {
        let e = Self::new(key, record);
        rkyv::access::<T, rancor::BoxedError>(e.record()).map_err(|err| err.to_string())?;
        Ok(e)
    }

    fn lens(&self) -> (usize, usize) {
        let w = self.0[0];
        ((w & 0xFFFF_FFFF) as usize, (w >> 32) as usize)
    }

    pub fn key(&self) -> &[u8] {
        let (key_len, _) = self.lens();
        &bytes_of(&self.0)[8..8 + key_len]
    }

    pub fn record(&self) -> &[u8] {
        let (key_len, record_len) = self.lens();
        let at = 8 + key_len.div_ceil(8) * 8;
        &bytes_of(&self.0)[at..at + record_len]
    }

    /// The archived record, without validation (see the module docs for why that is sound).
    pub fn view<T: Portable>(&self) -> &T {
        // SAFETY: every Entry's record bytes were produced by rkyv's serializer for `T` in this
        // crate (the table an entry lives in fixes `T`), or validated as `T` by
        // `Entry::validated` when loaded from a snapshot; the bytes are 8-aligned (see `new`).
        unsafe { rkyv::access_unchecked::<T>(self.record()) }
    }

    /// Heap bytes of this entry (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.0.len() * 8
    }
}

fn bytes_of(words: &[u64]) -> &[u8] {
    // SAFETY: u64 has no padding and any byte pattern is a valid u8; the length is exact and the
    // lifetime is tied to `words`.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) }
}

fn bytes_of_mut(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: as in `bytes_of`; any byte pattern written is a valid u64.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(other.key())
    }
}
/// Lets `BTreeSet<Entry>` be searched and ranged by key bytes.
impl Borrow<[u8]> for Entry {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn key_and_record_round_trip_and_records_are_aligned() {
        for key_len in 0..20 {
            let key: Vec<u8> = (0..key_len as u8).collect();
            let record: Vec<u8> = (0..24u8).collect();
            let e = Entry::new(&key, &record);
            assert_eq!(e.key(), &key[..]);
            assert_eq!(e.record(), &record[..]);
            assert_eq!(e.record().as_ptr() as usize % 8, 0);
        }
    }

    #[test]
    fn a_set_of_entries_is_ordered_and_searchable_by_key_bytes() {
        let mut s = BTreeSet::new();
        for k in ["b", "a", "c", "ab"] {
            s.insert(Entry::new(k.as_bytes(), &[0; 8]));
        }
        let keys: Vec<_> = s.iter().map(|e| e.key().to_vec()).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"ab".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert!(s.contains(&b"ab"[..]));
        let after_a: Vec<_> = s.range::<[u8], _>((std::ops::Bound::Excluded(&b"a"[..]), std::ops::Bound::Unbounded)).count().to_string().into_bytes();
        assert_eq!(after_a, b"3");
    }
}
