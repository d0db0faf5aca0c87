//! The MD5s of an executor's uploads, hashed two at a time.
//!
//! Every PUT, UploadPart and form upload hashes its whole body (the ETag; Content-MD5's check):
//! 47% of the gateway's CPU during 1 MiB PUTs (`perf`, bench/RESULTS.md 2026-12-08). One MD5
//! runs at the latency of its dependency chain and leaves most of the core idle; two independent
//! ones interleaved hash nearly twice the bytes in the same time ([`md5sum::update_two`]). So an
//! upload does not hash its bytes as they come: it gives them here a call at a time, as they go
//! to the datanodes (`crate::object::write`: the very buffer sent, not a copy), and they wait,
//! while the datanodes write them, for another upload of the same executor to give some; the
//! two are hashed together. Alone, an upload hashes what waits once [`ALONE_BYTES`] do, or when
//! its digest is asked for (before its commit).
//!
//! Everything here runs on one executor's thread, inside the uploads' own calls: nothing waits
//! for a partner, an upload only finds one that is already waiting. Memory: an upload keeps at
//! most two calls' bytes (2 MiB), the one written last held until the next is ready; an object
//! of up to 1 MiB no more than before. `/prom` counts the bytes hashed in pairs and alone
//! (`stratos_s3g_md5_bytes_total`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Buf, Bytes};

use stratos_client::data::CHUNK_BYTES;

use crate::md5sum::{self, Md5};
use crate::metrics::CoreMetrics;

/// An upload offers what waits to others from this much on (a page: smaller objects gain
/// little from a partner).
pub const PAIR_BYTES: usize = 4 << 10;
/// An upload that finds no partner hashes alone what waits from this much on: two calls' worth
/// (`writeChained` sends 1 MiB at a time), so that a call's bytes wait for a partner while the
/// next call's come.
pub const ALONE_BYTES: usize = 2 * CHUNK_BYTES as usize;

#[derive(Debug, Default)]
struct Lane {
    md5: Md5,
    /// Pieces not hashed yet, in order (the first may be partly hashed: advanced past that).
    queue: VecDeque<Bytes>,
    queued: usize,
    /// In [`Md5Pairs::offered`].
    offered: bool,
}

impl Lane {
    fn hash_alone(&mut self) -> usize {
        let n = self.queued;
        for piece in self.queue.drain(..) {
            self.md5.update(&piece);
        }
        self.queued = 0;
        n
    }
}

/// Hashes the two queues together for as long as both have bytes: the bytes each hashed.
fn hash_two(x: &mut Lane, y: &mut Lane) -> usize {
    let mut n = 0;
    while let (Some(px), Some(py)) = (x.queue.front_mut(), y.queue.front_mut()) {
        let len = px.len().min(py.len());
        md5sum::update_two(&mut x.md5, &px[..len], &mut y.md5, &py[..len]);
        px.advance(len);
        py.advance(len);
        if px.is_empty() {
            x.queue.pop_front();
        }
        if py.is_empty() {
            y.queue.pop_front();
        }
        n += len;
    }
    x.queued -= n;
    y.queued -= n;
    n
}

/// One executor's uploads whose MD5s may pair (a [`crate::gateway::Gateway`] has one).
#[derive(Debug, Default)]
pub struct Md5Pairs {
    /// Uploads with at least [`PAIR_BYTES`] queued, waiting for a partner.
    offered: RefCell<Vec<Rc<RefCell<Lane>>>>,
    metrics: Arc<CoreMetrics>,
}

impl Md5Pairs {
    pub fn new(metrics: Arc<CoreMetrics>) -> Md5Pairs {
        Md5Pairs { offered: RefCell::default(), metrics }
    }

    /// The MD5 of a new upload's body.
    pub fn start(&self) -> PairedMd5<'_> {
        PairedMd5 { pairs: self, lane: Rc::default() }
    }

    /// Takes an offered lane other than `me` out of the offers.
    fn partner(&self, me: &Rc<RefCell<Lane>>) -> Option<Rc<RefCell<Lane>>> {
        let mut offered = self.offered.borrow_mut();
        let at = offered.iter().position(|l| !Rc::ptr_eq(l, me))?;
        let lane = offered.swap_remove(at);
        lane.borrow_mut().offered = false;
        Some(lane)
    }

    /// Offers `lane` to partners if it has enough queued, withdraws it if not.
    fn reoffer(&self, lane: &Rc<RefCell<Lane>>) {
        let mut l = lane.borrow_mut();
        let want = l.queued >= PAIR_BYTES;
        if want != l.offered {
            l.offered = want;
            let mut offered = self.offered.borrow_mut();
            if want {
                offered.push(lane.clone());
            } else if let Some(at) = offered.iter().position(|o| Rc::ptr_eq(o, lane)) {
                offered.swap_remove(at);
            }
        }
    }

    /// Hashes `lane`'s queue with offered partners' while it has bytes and there are partners;
    /// a partner stays offered while it has enough left.
    fn pair(&self, lane: &Rc<RefCell<Lane>>) {
        while lane.borrow().queued > 0 {
            let Some(partner) = self.partner(lane) else { break };
            let n = hash_two(&mut lane.borrow_mut(), &mut partner.borrow_mut());
            self.metrics.md5_hashed(2 * n as u64, 0);
            self.reoffer(&partner);
        }
    }
}

/// The MD5 of one upload's body, fed with [`PairedMd5::update`]; its bytes may be hashed later,
/// together with another upload's, but [`PairedMd5::digest`] hashes all it was given.
#[derive(Debug)]
pub struct PairedMd5<'p> {
    pairs: &'p Md5Pairs,
    lane: Rc<RefCell<Lane>>,
}

impl PairedMd5<'_> {
    pub fn update(&mut self, piece: Bytes) {
        if piece.is_empty() {
            return;
        }
        let queued = {
            let mut l = self.lane.borrow_mut();
            l.queued += piece.len();
            l.queue.push_back(piece);
            l.queued
        };
        if queued < PAIR_BYTES {
            return;
        }
        self.pairs.pair(&self.lane);
        let alone = {
            let mut l = self.lane.borrow_mut();
            if l.queued >= ALONE_BYTES { l.hash_alone() } else { 0 }
        };
        self.pairs.metrics.md5_hashed(0, alone as u64);
        self.pairs.reoffer(&self.lane);
    }

    /// The MD5 of every byte given so far; more may follow.
    pub fn digest(&mut self) -> [u8; 16] {
        self.digest_with(&[])
    }

    /// The MD5 of every byte given so far followed by `rest`, which is not kept: for a check
    /// before `rest` is given. What waits is hashed first, with a partner's where one is offered.
    pub fn digest_with(&mut self, rest: &[u8]) -> [u8; 16] {
        self.pairs.pair(&self.lane);
        let alone = self.lane.borrow_mut().hash_alone();
        self.pairs.metrics.md5_hashed(0, alone as u64);
        self.pairs.reoffer(&self.lane);
        let mut md5 = self.lane.borrow().md5.clone();
        md5.update(rest);
        md5.finalize()
    }
}

impl Drop for PairedMd5<'_> {
    fn drop(&mut self) {
        // An upload that fails midway leaves no offer behind.
        self.lane.borrow_mut().queued = 0;
        self.pairs.reoffer(&self.lane);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(d: [u8; 16]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Two uploads of 1 MiB fed alternately in TLS-record pieces pair nearly all their bytes,
    /// and their digests are their bodies' MD5s.
    #[test]
    fn uploads_fed_side_by_side_hash_in_pairs() {
        let metrics = Arc::new(CoreMetrics::default());
        let pairs = Md5Pairs::new(metrics.clone());
        let bodies: Vec<Vec<u8>> = (0..2u32).map(|u| (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> (8 + u)) as u8).collect()).collect();
        let (mut a, mut b) = (pairs.start(), pairs.start());
        for (pa, pb) in bodies[0].chunks(16 << 10).zip(bodies[1].chunks(16 << 10)) {
            a.update(Bytes::copy_from_slice(pa));
            b.update(Bytes::copy_from_slice(pb));
        }
        assert_eq!(hex(a.digest()), hex(md5sum::digest(&bodies[0])));
        assert_eq!(hex(b.digest()), hex(md5sum::digest(&bodies[1])));
        let (paired, alone) = metrics.md5_counts();
        assert_eq!(paired + alone, 2 << 20, "every byte hashed once");
        assert!(paired >= 2 * ((1 << 20) - (16 << 10)), "paired {paired}, alone {alone}");
        assert!(pairs.offered.borrow().is_empty(), "nothing waits once both are digested");
    }

    /// A lone upload hashes alone, at most ALONE_BYTES and a piece behind.
    #[test]
    fn a_lone_upload_holds_a_bounded_queue() {
        let metrics = Arc::new(CoreMetrics::default());
        let pairs = Md5Pairs::new(metrics.clone());
        let mut a = pairs.start();
        let piece = Bytes::from(vec![7u8; 10_000]);
        let mut most = 0;
        for _ in 0..300 {
            a.update(piece.clone());
            most = most.max(a.lane.borrow().queued);
        }
        assert!(most > ALONE_BYTES - piece.len() && most < ALONE_BYTES, "{most}");
        assert_eq!(a.digest(), md5sum::digest(&vec![7u8; 3_000_000]));
        assert_eq!(metrics.md5_counts(), (0, 3_000_000));
    }

    proptest! {
        /// Up to four uploads on one executor, fed pieces in any order and size, digested midway,
        /// one dropped before its end: each digest is the MD5 of what its upload was given, and
        /// no dropped or digested upload stays offered.
        #[test]
        fn any_interleaving_gives_each_upload_its_own_md5(steps in proptest::collection::vec((0usize..4, 0usize..40_000, any::<u8>(), 0u8..20), 1..60)) {
            let pairs = Md5Pairs::default();
            let mut uploads: Vec<Option<(PairedMd5<'_>, Vec<u8>)>> = (0..4).map(|_| Some((pairs.start(), Vec::new()))).collect();
            for (u, len, byte, action) in steps {
                let Some((md5, fed)) = uploads[u].as_mut() else { continue };
                match action {
                    0 => {
                        prop_assert_eq!(md5.digest(), md5sum::digest(fed));
                    }
                    1 if u == 3 => {
                        uploads[u] = None;
                    }
                    _ => {
                        let piece: Vec<u8> = (0..len).map(|i| byte.wrapping_add(i as u8)).collect();
                        fed.extend_from_slice(&piece);
                        md5.update(Bytes::from(piece));
                    }
                }
            }
            for (md5, fed) in uploads.iter_mut().flatten() {
                prop_assert_eq!(md5.digest(), md5sum::digest(fed));
            }
            prop_assert!(pairs.offered.borrow().is_empty());
        }
    }
}
