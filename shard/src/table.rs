//! A memtable table: an ordered set of [`Entry`]s that a snapshot can read a piece at a time
//! while applies go on changing it.
//!
//! Why: a snapshot written in one go held the executor for ≈ 1.3 s per million keys per shard
//! (every request of the core waited), and held a second full copy of the state in memory. A
//! table is instead *frozen* when a snapshot begins ([`Table::freeze`]): from then on, the first
//! change to a key the snapshot has not read yet keeps the key's value as it was at the freeze
//! (or "absent") on the side, and the snapshot reads the frozen image in key order in bounded
//! steps ([`Table::read_frozen`]), merging the live set with those kept values. A kept value is
//! dropped as soon as the snapshot has read past its key, and the whole side table when the
//! snapshot has read the table: the extra memory is one entry per key changed during the
//! snapshot, not a copy of the state.
//!
//! Reads go through `Deref` to the set. Changes go through the methods below only (there is no
//! `DerefMut`), so no change can bypass the freeze.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::memtable::{Entry, Probe, probe_buffer};

#[derive(Debug, Default)]
pub struct Table {
    set: BTreeSet<Entry>,
    frozen: Option<Box<Frozen>>,
}

/// What a snapshot in progress needs of a table beyond the live set.
#[derive(Debug, Default)]
struct Frozen {
    /// The last key the snapshot has read (None: none yet). Keys up to it are done with.
    read_up_to: Option<Vec<u8>>,
    /// Keys changed since the freeze and not read yet: their value at the freeze (None: absent).
    kept: BTreeMap<Vec<u8>, Option<Entry>>,
}

impl std::ops::Deref for Table {
    type Target = BTreeSet<Entry>;
    fn deref(&self) -> &BTreeSet<Entry> {
        &self.set
    }
}

impl FromIterator<Entry> for Table {
    fn from_iter<I: IntoIterator<Item = Entry>>(iter: I) -> Self {
        Table { set: iter.into_iter().collect(), frozen: None }
    }
}

impl<'a> IntoIterator for &'a Table {
    type Item = &'a Entry;
    type IntoIter = std::collections::btree_set::Iter<'a, Entry>;
    fn into_iter(self) -> Self::IntoIter {
        self.set.iter()
    }
}

impl Table {
    /// Adds `e` if its key is not there (as `BTreeSet::insert`).
    pub fn insert(&mut self, e: Entry) -> bool {
        self.keep(e.key());
        self.set.insert(e)
    }

    /// Adds or replaces the entry of `e`'s key, returning the old one.
    pub fn replace(&mut self, e: Entry) -> Option<Entry> {
        self.keep(e.key());
        self.set.replace(e)
    }

    pub fn remove(&mut self, key: &Entry) -> bool {
        self.keep(key.key());
        self.set.remove(key)
    }

    pub fn take(&mut self, key: &Entry) -> Option<Entry> {
        self.keep(key.key());
        self.set.take(key)
    }

    /// Removes the first entry (as `BTreeSet::pop_first`).
    pub fn pop_first(&mut self) -> Option<Entry> {
        let key = self.set.first()?.key().to_vec();
        self.keep(&key);
        self.set.pop_first()
    }

    /// Before a change of `key`: if a snapshot has frozen this table and not read `key` yet,
    /// and `key` keeps no value yet, keep its present one.
    fn keep(&mut self, key: &[u8]) {
        let Some(f) = self.frozen.as_mut() else { return };
        if f.read_up_to.as_deref().is_some_and(|r| key <= r) || f.kept.contains_key(key) {
            return;
        }
        let mut buffer = probe_buffer();
        let k = Probe::new(&mut buffer, &[key]);
        f.kept.insert(key.to_vec(), self.set.get(&*k).cloned());
    }

    /// A snapshot begins: [`Table::read_frozen`] will read the table as it is now.
    pub(crate) fn freeze(&mut self) {
        self.frozen = Some(Box::default());
    }

    /// The snapshot is over (read or given up): changes stop keeping values.
    pub(crate) fn thaw(&mut self) {
        self.frozen = None;
    }

    #[cfg(test)]
    pub(crate) fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }

    /// Entries of the table as it was when frozen, in key order, after those read before: up to
    /// `max` are given to `read`. True when the table has been read to its end (it is then
    /// thawed). A table that is not frozen reads as done.
    pub(crate) fn read_frozen(&mut self, max: usize, mut read: impl FnMut(&Entry)) -> bool {
        let Some(f) = self.frozen.as_mut() else { return true };
        let mut buffer = probe_buffer();
        let after = f.read_up_to.as_deref().unwrap_or(&[]);
        let probe = Probe::new(&mut buffer, &[after]);
        let (live_from, kept_from) = match f.read_up_to.as_deref() {
            Some(r) => (Bound::Excluded(&*probe), Bound::Excluded(r)),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        let mut live = self.set.range((live_from, Bound::Unbounded)).peekable();
        let mut kept = f.kept.range::<[u8], _>((kept_from, Bound::Unbounded)).peekable();
        let mut last: Option<&[u8]> = None;
        let mut done = false;
        for _ in 0..max {
            // Which comes next in key order; on equal keys the kept value is the frozen one and
            // the live one is skipped.
            let next = match (live.peek(), kept.peek()) {
                (None, None) => {
                    done = true;
                    break;
                }
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(l), Some((k, _))) => l.key().cmp(k.as_slice()),
            };
            if next == std::cmp::Ordering::Less {
                let e = live.next().expect("peeked");
                read(e);
                last = Some(e.key());
                continue;
            }
            if next == std::cmp::Ordering::Equal {
                live.next();
            }
            let (k, v) = kept.next().expect("peeked");
            if let Some(e) = v {
                read(e);
            }
            last = Some(k);
        }
        if !done && live.peek().is_none() && kept.peek().is_none() {
            done = true;
        }
        let last = last.map(<[u8]>::to_vec);
        drop((live, kept, probe));
        if done {
            self.frozen = None;
            return true;
        }
        if let Some(last) = last {
            // Kept values up to `last` are read: drop them.
            let f = self.frozen.as_mut().expect("frozen above");
            let mut rest = f.kept.split_off(last.as_slice());
            rest.remove(last.as_slice());
            f.kept = rest;
            f.read_up_to = Some(last);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(k: u8, v: u8) -> Entry {
        Entry::new(&[b'k', k], &[v; 8])
    }

    fn image(t: &Table) -> Vec<(Vec<u8>, Vec<u8>)> {
        t.iter().map(|e| (e.key().to_vec(), e.record().to_vec())).collect()
    }

    #[derive(Debug, Clone)]
    enum Change {
        Insert(u8, u8),
        Replace(u8, u8),
        Remove(u8),
        Take(u8),
        /// Read this many entries of the frozen image.
        Read(usize),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            (0u8..40, any::<u8>()).prop_map(|(k, v)| Change::Insert(k, v)),
            (0u8..40, any::<u8>()).prop_map(|(k, v)| Change::Replace(k, v)),
            (0u8..40).prop_map(Change::Remove),
            (0u8..40).prop_map(Change::Take),
            (0usize..6).prop_map(Change::Read),
        ]
    }

    proptest! {
        /// Whatever changes interleave with the reads, a frozen table reads as it was at the
        /// freeze, in order, each entry once; the live table has every change; and nothing is
        /// kept once the read is over.
        #[test]
        fn a_frozen_table_reads_as_it_was_at_the_freeze(start in proptest::collection::btree_map(0u8..40, any::<u8>(), 0..30), changes in proptest::collection::vec(change(), 0..80)) {
            let mut t: Table = start.iter().map(|(k, v)| entry(*k, *v)).collect();
            let mut model: BTreeMap<u8, u8> = start.clone();
            let at_freeze = image(&t);
            t.freeze();
            let mut read = Vec::new();
            let mut done = false;
            for c in changes {
                match c {
                    Change::Insert(k, v) => {
                        let added = t.insert(entry(k, v));
                        prop_assert_eq!(added, !model.contains_key(&k));
                        model.entry(k).or_insert(v);
                    }
                    Change::Replace(k, v) => {
                        t.replace(entry(k, v));
                        model.insert(k, v);
                    }
                    Change::Remove(k) => {
                        prop_assert_eq!(t.remove(&entry(k, 0)), model.remove(&k).is_some());
                    }
                    Change::Take(k) => {
                        prop_assert_eq!(t.take(&entry(k, 0)).map(|e| e.record()[0]), model.remove(&k));
                    }
                    Change::Read(n) if !done => done = t.read_frozen(n, |e| read.push((e.key().to_vec(), e.record().to_vec()))),
                    Change::Read(_) => {}
                }
            }
            while !done {
                done = t.read_frozen(3, |e| read.push((e.key().to_vec(), e.record().to_vec())));
            }
            prop_assert_eq!(read, at_freeze);
            prop_assert!(!t.is_frozen());
            let live: Vec<(Vec<u8>, Vec<u8>)> = model.iter().map(|(k, v)| (vec![b'k', *k], vec![*v; 8])).collect();
            prop_assert_eq!(image(&t), live);
        }
    }

    #[test]
    fn reading_a_table_that_is_not_frozen_is_done_at_once() {
        let mut t: Table = [entry(1, 1)].into_iter().collect();
        let mut n = 0;
        assert!(t.read_frozen(10, |_| n += 1));
        assert_eq!(n, 0);
    }
}
