//! The memtable: ordered sets of entries, each entry one allocation holding a key and an
//! rkyv-archived record.
//!
//! Entry layout, in 8-byte words: `[key_len: u32 | record_len: u32]`, the key bytes padded to
//! a multiple of 8, then the record bytes. Entries are 8-byte words from the
//! exact-size slab ([`crate::slab`]), which makes the record 8-aligned, as rkyv requires. One allocation per entry (not a
//! key `Vec` plus a record `AlignedVec`) is what keeps a 40-byte-named key under 200 bytes.
//!
//! Records are written only by this crate's serializer or after validation on load
//! ([`Entry::validated`]), so reads use `access_unchecked`: ~1 ns instead of ~14 ns.

use std::cmp::Ordering;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ptr::NonNull;

use rkyv::Portable;
use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;

/// One memtable entry: a key and an archived record in one 8-aligned allocation, plus the first
/// 8 key bytes inline.
///
/// The inline prefix is what makes B-tree searches fast: a node's linear scan compares the
/// prefixes stored in the node itself and only follows an entry's pointer when two prefixes
/// tie, instead of touching one heap allocation (one cache miss) per comparison. At 16 bytes,
/// `Entry` is the size a `Box<[u64]>` fat pointer would be.
pub struct Entry {
    /// The first 8 key bytes, big-endian, zero-padded: comparing prefixes as integers orders
    /// entries as comparing the keys would, except for ties, which compare the full keys.
    prefix: u64,
    /// `1 + key_words + record_words` words from `slab::alloc` (freed in `Drop`).
    words: NonNull<u64>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("key", &String::from_utf8_lossy(self.key())).field("record_bytes", &self.record().len()).finish()
    }
}

fn prefix_of(key: &[u8]) -> u64 {
    let mut p = [0u8; 8];
    let n = key.len().min(8);
    p[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(p)
}

fn words_for(key_len: usize, record_len: usize) -> usize {
    1 + key_len.div_ceil(8) + record_len.div_ceil(8)
}

fn fill(words: &mut [u64], key: &[u8], record: &[u8]) {
    let key_len = u32::try_from(key.len()).expect("keys are bounded far below 4 GiB");
    let record_len = u32::try_from(record.len()).expect("records are bounded far below 4 GiB");
    words[0] = u64::from(key_len) | (u64::from(record_len) << 32);
    let bytes = bytes_of_mut(words);
    bytes[8..8 + key.len()].copy_from_slice(key);
    let at = 8 + key.len().div_ceil(8) * 8;
    bytes[at..at + record.len()].copy_from_slice(record);
}

impl Entry {
    /// Builds an entry. `record` must be the bytes of an archived record of this crate.
    pub fn new(key: &[u8], record: &[u8]) -> Self {
        let n = words_for(key.len(), record.len());
        let words = crate::slab::alloc(n);
        // SAFETY: `alloc` returned `n` zeroed words that this entry now owns.
        fill(unsafe { std::slice::from_raw_parts_mut(words.as_ptr(), n) }, key, record);
        Self { prefix: prefix_of(key), words }
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
        // SAFETY: `words` points to at least one initialised word for as long as `self` lives.
        let w = unsafe { *self.words.as_ptr() };
        ((w & 0xFFFF_FFFF) as usize, (w >> 32) as usize)
    }

    fn all_words(&self) -> &[u64] {
        let (key_len, record_len) = self.lens();
        // SAFETY: the allocation holds exactly this many initialised words (see `new` and
        // `Probe::new`) and outlives the borrow of `self`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr(), words_for(key_len, record_len)) }
    }

    pub fn key(&self) -> &[u8] {
        let (key_len, _) = self.lens();
        &bytes_of(self.all_words())[8..8 + key_len]
    }

    pub fn record(&self) -> &[u8] {
        let (key_len, record_len) = self.lens();
        let at = 8 + key_len.div_ceil(8) * 8;
        &bytes_of(self.all_words())[at..at + record_len]
    }

    /// The archived record, without validation (see the module docs for why that is sound).
    pub fn view<T: Portable>(&self) -> &T {
        // SAFETY: every Entry's record bytes were produced by rkyv's serializer for `T` in this
        // crate (the table an entry lives in fixes `T`), or validated as `T` by
        // `Entry::validated` when loaded from a snapshot; the bytes are 8-aligned (see `new`).
        unsafe { rkyv::access_unchecked::<T>(self.record()) }
    }

    /// The entry's words as bytes, as they lie in memory (the snapshot format; little-endian
    /// on the hosts we build for, as rkyv's archives are).
    pub(crate) fn raw_bytes(&self) -> &[u8] {
        bytes_of(self.all_words())
    }

    /// Heap bytes of this entry (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.all_words().len() * 8
    }
}

impl Clone for Entry {
    fn clone(&self) -> Self {
        Entry::new(self.key(), self.record())
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let len = self.all_words().len();
        // SAFETY: `words` came from `slab::alloc(len)` in `new` (probes never drop their Entry:
        // it is ManuallyDrop), and is freed once, here.
        unsafe { crate::slab::free(self.words, len) };
    }
}

// SAFETY: an Entry owns its words exclusively; slab memory is never unmapped, so freeing it
// from another thread is sound (see crate::slab).
unsafe impl Send for Entry {}
// SAFETY: shared access only reads.
unsafe impl Sync for Entry {}

/// A key to search a memtable set with, built in a stack buffer: no allocation per lookup.
pub struct Probe<'a> {
    entry: ManuallyDrop<Entry>,
    _buffer: PhantomData<&'a mut [u64]>,
}

/// Stack space for a probe: keys up to this many bytes (the longest key name plus separators).
pub const PROBE_KEY_BYTES_MAX: usize = 1096;
/// Left uninitialised: a probe initialises only the words its key needs, so a lookup does not
/// pay for zeroing a kilobyte.
pub type ProbeBuffer = [MaybeUninit<u64>; 1 + PROBE_KEY_BYTES_MAX / 8];

pub const fn probe_buffer() -> ProbeBuffer {
    [const { MaybeUninit::uninit() }; 1 + PROBE_KEY_BYTES_MAX / 8]
}

impl<'a> Probe<'a> {
    /// A probe for the key made of `parts` concatenated, built in `buffer`.
    pub fn new(buffer: &'a mut ProbeBuffer, parts: &[&[u8]]) -> Self {
        let key_len: usize = parts.iter().map(|p| p.len()).sum();
        assert!(key_len <= PROBE_KEY_BYTES_MAX, "probe key of {key_len} bytes; names are validated before lookups");
        let used = words_for(key_len, 0);
        for w in &mut buffer[..used] {
            w.write(0);
        }
        // SAFETY: the first `used` words were initialised just above.
        let words: &mut [u64] = unsafe { std::slice::from_raw_parts_mut(buffer.as_mut_ptr().cast::<u64>(), used) };
        words[0] = key_len as u64;
        let bytes = bytes_of_mut(words);
        let mut at = 8;
        for p in parts {
            bytes[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        let prefix = prefix_of(&bytes[8..8 + key_len]);
        let words = NonNull::from(&mut words[0]);
        Self { entry: ManuallyDrop::new(Entry { prefix, words }), _buffer: PhantomData }
    }
}

impl std::fmt::Debug for Probe<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Probe").field(&String::from_utf8_lossy(self.entry.key())).finish()
    }
}

impl std::ops::Deref for Probe<'_> {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        &self.entry
    }
}

/// `probe!(k = part, part, …);` declares `k`, a [`Probe`] for the parts concatenated, in a
/// stack buffer of the caller's frame.
macro_rules! probe {
    ($name:ident = $($part:expr),+ $(,)?) => {
        let mut buffer = $crate::memtable::probe_buffer();
        let $name = $crate::memtable::Probe::new(&mut buffer, &[$(AsRef::<[u8]>::as_ref(&$part)),+]);
    };
}
pub(crate) use probe;

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
        self.prefix == other.prefix && self.key() == other.key()
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        match self.prefix.cmp(&other.prefix) {
            // Equal prefixes say nothing about the rest (or, for short keys, the length).
            Ordering::Equal => self.cmp_after_prefix(other),
            unequal => unequal,
        }
    }
}

impl Entry {
    /// The order of two entries whose prefixes tie, from their keys' later words.
    ///
    /// Why not `self.key().cmp(other.key())`: names in one bucket usually share far more than 8
    /// bytes (`omkg`'s `k1a2b3c4d/000000012345`, dated log paths), so in a B-tree search of a
    /// large bucket nearly every comparison gets here; a slice comparison (lengths, a `memcmp`
    /// call) cost about 100 instructions each, 2.4k of a commit's single search (callgrind).
    /// Keys lie zero-padded to whole words (`slab::alloc` and `Probe::new` zero them), and
    /// zero-padded keys compared a big-endian word at a time, then by length, order as the keys
    /// do: up to the shorter key's end the words hold the same bytes; past it the shorter
    /// holds zeros, which are never greater than the longer's bytes there, and equal words
    /// leave the length (shorter first) to decide, as a slice comparison would.
    fn cmp_after_prefix(&self, other: &Self) -> Ordering {
        let (a_len, b_len) = (self.lens().0, other.lens().0);
        let words = a_len.div_ceil(8).min(b_len.div_ceil(8));
        // Word 0 of a key is its prefix (equal here): start at word 1. (Read through the
        // pointer: slices of `all_words()` measured ~1k instructions more per key, callgrind.)
        for i in 1..words {
            // SAFETY: each allocation holds the header word and then `len.div_ceil(8)` key
            // words, initialised, for as long as `self` and `other` live; `i` is below both counts.
            let (a, b) = unsafe { (*self.words.as_ptr().add(1 + i), *other.words.as_ptr().add(1 + i)) };
            if a != b {
                return u64::from_be(a).cmp(&u64::from_be(b));
            }
        }
        a_len.cmp(&b_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        /// Comparing entries (prefix first, full key on ties) orders exactly as the keys do.
        #[test]
        fn entry_order_is_key_order(a in proptest::collection::vec(0u8..4, 0..12), b in proptest::collection::vec(0u8..4, 0..12)) {
            let (ea, eb) = (Entry::new(&a, &[]), Entry::new(&b, &[]));
            prop_assert_eq!(ea.cmp(&eb), a.cmp(&b));
            prop_assert_eq!(ea == eb, a == b);
            let mut buf = probe_buffer();
            let pa = Probe::new(&mut buf, &[&a]);
            prop_assert_eq!((*pa).cmp(&eb), a.cmp(&b));
        }

        /// The same for keys that share a long start (so prefixes tie and later words decide),
        /// with zero bytes where padding lies.
        #[test]
        fn entry_order_is_key_order_past_a_shared_start(
            start in proptest::collection::vec(0u8..3, 0..30),
            a in proptest::collection::vec(0u8..3, 0..20),
            b in proptest::collection::vec(0u8..3, 0..20),
        ) {
            let (a, b) = ([start.clone(), a].concat(), [start, b].concat());
            let (ea, eb) = (Entry::new(&a, &[1, 2, 3]), Entry::new(&b, &[]));
            prop_assert_eq!(ea.cmp(&eb), a.cmp(&b));
            prop_assert_eq!(eb.cmp(&ea), b.cmp(&a));
            let mut buf = probe_buffer();
            let pb = Probe::new(&mut buf, &[&b[..b.len() / 2], &b[b.len() / 2..]]);
            prop_assert_eq!(ea.cmp(&pb), a.cmp(&b));
        }
    }

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
        let mut buf = probe_buffer();
        assert!(s.contains(&*Probe::new(&mut buf, &[b"a", b"b"])));
        let mut buf = probe_buffer();
        let a = Probe::new(&mut buf, &[b"a"]);
        assert_eq!(s.range((std::ops::Bound::Excluded(&*a), std::ops::Bound::Unbounded)).count(), 3);
    }
}
