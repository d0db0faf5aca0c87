//! Any bytes as a snapshot file: loading returns an error or a state, never panics. The loader
//! checks every invariant before it hands a state out and refuses a snapshot that breaks one, so
//! a state that loads must satisfy `check_invariants()` (a panic here is the finding), and must
//! write out and load back as itself.
//!
//! The crc guards against accidents; to reach the validation behind it, this target also loads
//! each input with the current format's header (taken from the crate's own writer, so it
//! follows the format version) and every whole frame's crc fixed up.
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use stratos_shard::ShardState;

/// Bytes before the first frame, and of each frame's header (`kind | count | len | crc32`), as
/// the format in stratos-shard's `snapshot` module lays them out. [`HEADER`] checks that this
/// target's idea of the format still matches what the crate writes.
const HEADER_BYTES: usize = 32;
const FRAME_HEADER_BYTES: usize = 16;

/// The file header the crate writes today (magic and format version).
static HEADER: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let written = ShardState::new().snapshot();
    // Fixing up the crcs of a snapshot the crate wrote must change nothing: otherwise the frame
    // layout assumed here is out of date, and the mutated images would stop at the first frame.
    assert_eq!(fix_up(&written, &written[..HEADER_BYTES]), written, "this fuzz target's idea of the snapshot format is out of date");
    ShardState::load_snapshot(&written).expect("an empty state's snapshot loads");
    written[..HEADER_BYTES].to_vec()
});

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= HEADER_BYTES {
        check(&fix_up(data, &HEADER));
    }
});

/// Loads `bytes`; a state that loads is consistent and survives a snapshot round trip.
fn check(bytes: &[u8]) {
    let Ok(state) = ShardState::load_snapshot(bytes) else { return };
    if let Err(e) = state.check_invariants() {
        panic!("a snapshot that breaks an invariant loaded: {e}");
    }
    let again = ShardState::load_snapshot(&state.snapshot()).unwrap_or_else(|e| panic!("a loaded state's own snapshot does not load: {e}"));
    assert_eq!(again.state_hash(), state.state_hash(), "a loaded state's snapshot loads as another state");
}

/// `data` with `header` in place of its first bytes and each whole frame's crc recomputed, so
/// that mutations reach the frame parsing and record validation behind the crcs.
fn fix_up(data: &[u8], header: &[u8]) -> Vec<u8> {
    let mut fixed = data.to_vec();
    fixed[..HEADER_BYTES].copy_from_slice(header);
    let mut at = HEADER_BYTES;
    while at + FRAME_HEADER_BYTES <= fixed.len() {
        let len = u32::from_le_bytes(fixed[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        let Some(end) = (at + FRAME_HEADER_BYTES).checked_add(len).filter(|e| *e <= fixed.len()) else { break };
        let mut covered = fixed[at..at + 12].to_vec();
        covered.extend_from_slice(&fixed[at + FRAME_HEADER_BYTES..end]);
        let crc = crc32(&covered);
        fixed[at + 12..at + FRAME_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
    fixed
}

fn crc32(b: &[u8]) -> u32 {
    // Bitwise IEEE crc32, to avoid a dependency in the fuzz crate.
    let mut crc = !0u32;
    for &x in b {
        crc ^= u32::from(x);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
