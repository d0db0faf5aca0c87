//! Any bytes as a snapshot file: loading returns an error or a state (whose invariants the
//! caller checks before use), never panics. The crc guards against accidents; this target also
//! exercises the validation behind it by fixing up the crc of mutated images.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stratos_shard::ShardState;

fuzz_target!(|data: &[u8]| {
    let _ = ShardState::load_snapshot(data);
    if data.len() >= 32 {
        // The header made valid, and each whole frame's crc fixed up, so that mutations reach
        // the frame parsing and record validation behind the crcs.
        let mut fixed = data.to_vec();
        fixed[..8].copy_from_slice(b"STRATOSS");
        fixed[8..12].copy_from_slice(&4u32.to_le_bytes());
        fixed[12..32].fill(0);
        let mut at = 32;
        while at + 16 <= fixed.len() {
            let len = u32::from_le_bytes(fixed[at + 8..at + 12].try_into().unwrap()) as usize;
            let Some(end) = (at + 16).checked_add(len).filter(|e| *e <= fixed.len()) else { break };
            let mut covered = fixed[at..at + 12].to_vec();
            covered.extend_from_slice(&fixed[at + 16..end]);
            let crc = crc32(&covered);
            fixed[at + 12..at + 16].copy_from_slice(&crc.to_le_bytes());
            at = end;
        }
        if let Ok(s) = ShardState::load_snapshot(&fixed) {
            let _ = s.check_invariants();
        }
    }
});

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
