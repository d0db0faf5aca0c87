//! MD5 (RFC 1321), for S3's ETags and Content-MD5 checks: the gateway hashes every byte of every
//! PUT, and that hash was 45% of its CPU per 1 MiB PUT with the `md-5` crate (`perf`, RESULTS
//! 2026-12-06).
//!
//! MD5 is one chain of 64 dependent steps per 64-byte block, so its speed is the latency of that
//! chain, not the count of instructions. Each step is `a = b + rotl(a + K + M + f(b, c, d), s)`;
//! `b` is the previous step's result, and only the part of `f` that needs `b` is on the chain.
//! Two steps are written so that less of `f` waits for `b`:
//! - round 2's `G(b, c, d) = (b & d) | (c & !d)`: the two terms have no bit in common, so the `|`
//!   is a `+`, and `c & !d` joins `a + K + M` before `b` is known: `and, add, rotl, add` on the
//!   chain instead of `and, or, add, rotl, add`. The compiler would fold that `+` back into an
//!   `|` (it proves the bits disjoint), so [`opaque`] hides the sum's origin from it.
//! - round 1's `F` as `d ^ (b & (c ^ d))`, with `c ^ d` off the chain.
//!
//! Measured on the 2-vCPU AMD EPYC VM (1 MiB buffers, single thread): `md-5` 0.10 590 MB/s (its
//! `asm` feature the same), this 680 MB/s, OpenSSL 1.1's assembly 760 MB/s. The property tests
//! compare it with `md-5` on random inputs cut at random places.
//!
//! Since one chain leaves most of the core's ALUs idle, [`update_two`] hashes two MD5s at once,
//! their steps interleaved ([`compress2`]): the gateway pairs its uploads' bodies
//! (`crate::md5pairs`). Both functions expand the same list of steps (`rounds!`).

/// `K[i] = floor(2^32 × |sin(i + 1)|)` (RFC 1321 §3.4).
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

const INIT: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/// The value unchanged, but opaque to the optimizer (an empty `asm!` that takes and returns it
/// in a register: no instruction, no memory). `std::hint::black_box` does the same through the
/// stack, and measured 10% slower here.
#[inline(always)]
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[allow(asm_sub_register)] // the register is only named in a comment, its width does not matter
fn opaque(value: u32) -> u32 {
    let out: u32;
    // SAFETY: the template is a comment: it reads no memory, writes none and changes no flag;
    // it only names the register that carries `value` through.
    unsafe { core::arch::asm!("/* {0} */", inout(reg) value => out, options(pure, nomem, nostack, preserves_flags)) };
    out
}

#[inline(always)]
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn opaque(value: u32) -> u32 {
    value
}

macro_rules! step_f {
    ($a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
        $a = $a.wrapping_add($k).wrapping_add($m).wrapping_add($d ^ ($b & ($c ^ $d))).rotate_left($s).wrapping_add($b)
    };
}
macro_rules! step_g {
    ($a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
        $a = opaque($a.wrapping_add($k).wrapping_add($m).wrapping_add($c & !$d)).wrapping_add($b & $d).rotate_left($s).wrapping_add($b)
    };
}
macro_rules! step_h {
    ($a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
        $a = $a.wrapping_add($k).wrapping_add($m).wrapping_add($b ^ $c ^ $d).rotate_left($s).wrapping_add($b)
    };
}
macro_rules! step_i {
    ($a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
        $a = $a.wrapping_add($k).wrapping_add($m).wrapping_add($c ^ ($b | !$d)).rotate_left($s).wrapping_add($b)
    };
}

/// RFC 1321 §3.4's 64 steps, in order: `$on!(step, [a b c d] [e f g h], j, i, s)` for each, where
/// the first state's words come in the step's order (`[d a b c]` in the second step, …), `[e f g h]`
/// are a second state's in the same order ([`compress2`]'s; [`compress`] passes the first again
/// and ignores it), `j` the message word, `i` the constant and `s` the rotation.
macro_rules! rounds {
    ($on:ident; $a:ident $b:ident $c:ident $d:ident; $e:ident $f:ident $g:ident $h:ident) => {
        $on!(step_f, [$a $b $c $d] [$e $f $g $h], 0, 0, 7);
        $on!(step_f, [$d $a $b $c] [$h $e $f $g], 1, 1, 12);
        $on!(step_f, [$c $d $a $b] [$g $h $e $f], 2, 2, 17);
        $on!(step_f, [$b $c $d $a] [$f $g $h $e], 3, 3, 22);
        $on!(step_f, [$a $b $c $d] [$e $f $g $h], 4, 4, 7);
        $on!(step_f, [$d $a $b $c] [$h $e $f $g], 5, 5, 12);
        $on!(step_f, [$c $d $a $b] [$g $h $e $f], 6, 6, 17);
        $on!(step_f, [$b $c $d $a] [$f $g $h $e], 7, 7, 22);
        $on!(step_f, [$a $b $c $d] [$e $f $g $h], 8, 8, 7);
        $on!(step_f, [$d $a $b $c] [$h $e $f $g], 9, 9, 12);
        $on!(step_f, [$c $d $a $b] [$g $h $e $f], 10, 10, 17);
        $on!(step_f, [$b $c $d $a] [$f $g $h $e], 11, 11, 22);
        $on!(step_f, [$a $b $c $d] [$e $f $g $h], 12, 12, 7);
        $on!(step_f, [$d $a $b $c] [$h $e $f $g], 13, 13, 12);
        $on!(step_f, [$c $d $a $b] [$g $h $e $f], 14, 14, 17);
        $on!(step_f, [$b $c $d $a] [$f $g $h $e], 15, 15, 22);

        $on!(step_g, [$a $b $c $d] [$e $f $g $h], 1, 16, 5);
        $on!(step_g, [$d $a $b $c] [$h $e $f $g], 6, 17, 9);
        $on!(step_g, [$c $d $a $b] [$g $h $e $f], 11, 18, 14);
        $on!(step_g, [$b $c $d $a] [$f $g $h $e], 0, 19, 20);
        $on!(step_g, [$a $b $c $d] [$e $f $g $h], 5, 20, 5);
        $on!(step_g, [$d $a $b $c] [$h $e $f $g], 10, 21, 9);
        $on!(step_g, [$c $d $a $b] [$g $h $e $f], 15, 22, 14);
        $on!(step_g, [$b $c $d $a] [$f $g $h $e], 4, 23, 20);
        $on!(step_g, [$a $b $c $d] [$e $f $g $h], 9, 24, 5);
        $on!(step_g, [$d $a $b $c] [$h $e $f $g], 14, 25, 9);
        $on!(step_g, [$c $d $a $b] [$g $h $e $f], 3, 26, 14);
        $on!(step_g, [$b $c $d $a] [$f $g $h $e], 8, 27, 20);
        $on!(step_g, [$a $b $c $d] [$e $f $g $h], 13, 28, 5);
        $on!(step_g, [$d $a $b $c] [$h $e $f $g], 2, 29, 9);
        $on!(step_g, [$c $d $a $b] [$g $h $e $f], 7, 30, 14);
        $on!(step_g, [$b $c $d $a] [$f $g $h $e], 12, 31, 20);

        $on!(step_h, [$a $b $c $d] [$e $f $g $h], 5, 32, 4);
        $on!(step_h, [$d $a $b $c] [$h $e $f $g], 8, 33, 11);
        $on!(step_h, [$c $d $a $b] [$g $h $e $f], 11, 34, 16);
        $on!(step_h, [$b $c $d $a] [$f $g $h $e], 14, 35, 23);
        $on!(step_h, [$a $b $c $d] [$e $f $g $h], 1, 36, 4);
        $on!(step_h, [$d $a $b $c] [$h $e $f $g], 4, 37, 11);
        $on!(step_h, [$c $d $a $b] [$g $h $e $f], 7, 38, 16);
        $on!(step_h, [$b $c $d $a] [$f $g $h $e], 10, 39, 23);
        $on!(step_h, [$a $b $c $d] [$e $f $g $h], 13, 40, 4);
        $on!(step_h, [$d $a $b $c] [$h $e $f $g], 0, 41, 11);
        $on!(step_h, [$c $d $a $b] [$g $h $e $f], 3, 42, 16);
        $on!(step_h, [$b $c $d $a] [$f $g $h $e], 6, 43, 23);
        $on!(step_h, [$a $b $c $d] [$e $f $g $h], 9, 44, 4);
        $on!(step_h, [$d $a $b $c] [$h $e $f $g], 12, 45, 11);
        $on!(step_h, [$c $d $a $b] [$g $h $e $f], 15, 46, 16);
        $on!(step_h, [$b $c $d $a] [$f $g $h $e], 2, 47, 23);

        $on!(step_i, [$a $b $c $d] [$e $f $g $h], 0, 48, 6);
        $on!(step_i, [$d $a $b $c] [$h $e $f $g], 7, 49, 10);
        $on!(step_i, [$c $d $a $b] [$g $h $e $f], 14, 50, 15);
        $on!(step_i, [$b $c $d $a] [$f $g $h $e], 5, 51, 21);
        $on!(step_i, [$a $b $c $d] [$e $f $g $h], 12, 52, 6);
        $on!(step_i, [$d $a $b $c] [$h $e $f $g], 3, 53, 10);
        $on!(step_i, [$c $d $a $b] [$g $h $e $f], 10, 54, 15);
        $on!(step_i, [$b $c $d $a] [$f $g $h $e], 1, 55, 21);
        $on!(step_i, [$a $b $c $d] [$e $f $g $h], 8, 56, 6);
        $on!(step_i, [$d $a $b $c] [$h $e $f $g], 15, 57, 10);
        $on!(step_i, [$c $d $a $b] [$g $h $e $f], 6, 58, 15);
        $on!(step_i, [$b $c $d $a] [$f $g $h $e], 13, 59, 21);
        $on!(step_i, [$a $b $c $d] [$e $f $g $h], 4, 60, 6);
        $on!(step_i, [$d $a $b $c] [$h $e $f $g], 11, 61, 10);
        $on!(step_i, [$c $d $a $b] [$g $h $e $f], 2, 62, 15);
        $on!(step_i, [$b $c $d $a] [$f $g $h $e], 9, 63, 21);
    };
}

/// The message words of a block (little-endian).
#[inline(always)]
fn words(block: &[u8; 64]) -> [u32; 16] {
    let mut m = [0u32; 16];
    for (word, bytes) in m.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    m
}

/// One 64-byte block into the state (RFC 1321 §3.4).
fn compress(state: &mut [u32; 4], block: &[u8; 64]) {
    let m = words(block);
    let [mut a, mut b, mut c, mut d] = *state;
    macro_rules! one {
        ($step:ident, [$a:ident $b:ident $c:ident $d:ident] [$($_:ident)*], $j:literal, $i:literal, $s:literal) => {
            $step!($a, $b, $c, $d, m[$j], K[$i], $s)
        };
    }
    rounds!(one; a b c d; a b c d);
    for (word, v) in state.iter_mut().zip([a, b, c, d]) {
        *word = word.wrapping_add(v);
    }
}

/// A block of each of two MD5s, their steps interleaved. One MD5 runs at the latency of its
/// chain and leaves most of the core's ALUs idle; two independent chains fill them: on the 2-vCPU
/// AMD EPYC VM two MD5s hash at 1,540-1,565 MB/s together, one at 775-785 MB/s (1 MiB each, one
/// thread), where three spill registers (1,260) and SIMD lanes (AVX-512, four MD5s in `xmm`) reach
/// 1,670 only with four inputs at hand. [`update_two`] uses it; the gateway pairs the uploads of an
/// executor (`crate::md5pairs`).
fn compress2(x: &mut [u32; 4], xb: &[u8; 64], y: &mut [u32; 4], yb: &[u8; 64]) {
    let m = words(xb);
    let n = words(yb);
    let [mut a, mut b, mut c, mut d] = *x;
    let [mut e, mut f, mut g, mut h] = *y;
    macro_rules! two {
        ($step:ident, [$a:ident $b:ident $c:ident $d:ident] [$e:ident $f:ident $g:ident $h:ident], $j:literal, $i:literal, $s:literal) => {
            $step!($a, $b, $c, $d, m[$j], K[$i], $s);
            $step!($e, $f, $g, $h, n[$j], K[$i], $s);
        };
    }
    rounds!(two; a b c d; e f g h);
    for (word, v) in x.iter_mut().zip([a, b, c, d]) {
        *word = word.wrapping_add(v);
    }
    for (word, v) in y.iter_mut().zip([e, f, g, h]) {
        *word = word.wrapping_add(v);
    }
}

/// An MD5 being computed: feed it with [`Md5::update`] in pieces of any size, read it with
/// [`Md5::finalize`] (a clone reads it midway).
#[derive(Clone, Debug)]
pub struct Md5 {
    state: [u32; 4],
    /// The start of a block whose end has not come yet (`pending` bytes of it).
    partial: [u8; 64],
    pending: usize,
    /// Bytes fed so far (the length in the padding is this mod 2^64, in bits).
    total: u64,
}

impl Default for Md5 {
    fn default() -> Self {
        Self::new()
    }
}

impl Md5 {
    pub fn new() -> Self {
        Md5 { state: INIT, partial: [0; 64], pending: 0, total: 0 }
    }

    pub fn update(&mut self, data: &[u8]) {
        let data = self.start(data);
        let rest = self.blocks(data);
        self.keep(rest);
    }

    /// Counts `data` and completes the pending block from it if it can: what is left, a whole
    /// number of blocks and then a tail, to go on with (empty if the pending block took it all).
    fn start<'d>(&mut self, mut data: &'d [u8]) -> &'d [u8] {
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.pending > 0 {
            let take = (64 - self.pending).min(data.len());
            self.partial[self.pending..self.pending + take].copy_from_slice(&data[..take]);
            self.pending += take;
            data = &data[take..];
            if self.pending < 64 {
                return &[];
            }
            let block = self.partial;
            compress(&mut self.state, &block);
            self.pending = 0;
        }
        data
    }

    /// Hashes `data`'s whole blocks: the tail under a block is left.
    fn blocks<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        let mut blocks = data.chunks_exact(64);
        for block in &mut blocks {
            compress(&mut self.state, block.try_into().expect("chunks_exact(64) yields 64 bytes"));
        }
        blocks.remainder()
    }

    /// Keeps a tail under a block (after [`Md5::start`], which leaves nothing pending when it
    /// returns bytes).
    fn keep(&mut self, rest: &[u8]) {
        if !rest.is_empty() {
            debug_assert_eq!(self.pending, 0);
            self.partial[..rest.len()].copy_from_slice(rest);
            self.pending = rest.len();
        }
    }

    /// The digest: padding `0x80`, zeros to 56 mod 64, the length in bits (RFC 1321 §3.1-3.2).
    pub fn finalize(mut self) -> [u8; 16] {
        let bits = self.total.wrapping_mul(8);
        let mut pad = [0u8; 64];
        pad[0] = 0x80;
        let zeros = if self.pending < 56 { 56 - self.pending } else { 120 - self.pending };
        self.update(&pad[..zeros]);
        self.update(&bits.to_le_bytes());
        debug_assert_eq!(self.pending, 0);
        let mut out = [0u8; 16];
        for (bytes, word) in out.chunks_exact_mut(4).zip(self.state) {
            bytes.copy_from_slice(&word.to_le_bytes());
        }
        out
    }
}

/// The MD5 of `data`.
pub fn digest(data: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(data);
    md5.finalize()
}

/// `x.update(xs)` and `y.update(ys)`, with the blocks of both hashed two at a time
/// ([`compress2`]) for as long as each has one; inputs of equal length pair whole.
pub fn update_two(x: &mut Md5, xs: &[u8], y: &mut Md5, ys: &[u8]) {
    let xs = x.start(xs);
    let ys = y.start(ys);
    let pairs = (xs.len() / 64).min(ys.len() / 64) * 64;
    let (xp, xs) = xs.split_at(pairs);
    let (yp, ys) = ys.split_at(pairs);
    for (xb, yb) in xp.chunks_exact(64).zip(yp.chunks_exact(64)) {
        compress2(&mut x.state, xb.try_into().expect("64 bytes"), &mut y.state, yb.try_into().expect("64 bytes"));
    }
    let xs = x.blocks(xs);
    x.keep(xs);
    let ys = y.blocks(ys);
    y.keep(ys);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 1321 appendix A.5, and a length on each side of the padding's boundaries.
    #[test]
    fn rfc_1321_test_suite() {
        let suite = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
            ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"),
            ("12345678901234567890123456789012345678901234567890123456789012345678901234567890", "57edf4a22be3c955ac49da2e2107b67a"),
        ];
        for (input, want) in suite {
            assert_eq!(hex(&digest(input.as_bytes())), want, "MD5({input:?})");
        }
        assert_eq!(hex(&digest(&vec![b'a'; 1_000_000])), "7707d6ae4e027c70eea2a935c2296f21", "a million a's");
    }

    proptest! {
        /// Against the `md-5` crate, over lengths that cross the 56- and 64-byte boundaries,
        /// fed whole and in random pieces, read midway through a clone.
        #[test]
        fn equals_md5_crate_however_fed(data in proptest::collection::vec(any::<u8>(), 0..600), cuts in proptest::collection::vec(0usize..600, 0..6)) {
            use ::md5::Digest;
            let want: [u8; 16] = ::md5::Md5::digest(&data).into();
            prop_assert_eq!(digest(&data), want);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut md5 = Md5::new();
            let mut from = 0;
            for cut in cuts {
                md5.update(&data[from..cut]);
                let so_far: [u8; 16] = ::md5::Md5::digest(&data[..cut]).into();
                prop_assert_eq!(md5.clone().finalize(), so_far);
                from = cut;
            }
            md5.update(&data[from..]);
            prop_assert_eq!(md5.finalize(), want);
        }

        /// Two MD5s fed together, each with bytes of its own already pending, equal the two fed
        /// apart: paired blocks, a pending block completed on either side, tails of any length.
        #[test]
        fn two_at_a_time_equals_one_at_a_time(x0 in proptest::collection::vec(any::<u8>(), 0..140), xs in proptest::collection::vec(any::<u8>(), 0..700),
                                             y0 in proptest::collection::vec(any::<u8>(), 0..140), ys in proptest::collection::vec(any::<u8>(), 0..700)) {
            let (mut x, mut y) = (Md5::new(), Md5::new());
            x.update(&x0);
            y.update(&y0);
            update_two(&mut x, &xs, &mut y, &ys);
            prop_assert_eq!(x.finalize(), digest(&[x0, xs].concat()));
            prop_assert_eq!(y.finalize(), digest(&[y0, ys].concat()));
        }
    }
}
