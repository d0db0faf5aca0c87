//! Any bytes as a snapshot file: loading returns an error or a state (whose invariants the
//! caller checks before use), never panics. The crc guards against accidents; this target also
//! exercises the validation behind it by fixing up the crc of mutated images.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stratos_shard::ShardState;

fuzz_target!(|data: &[u8]| {
    let _ = ShardState::load_snapshot(data);
    if data.len() >= 32 {
        let mut fixed = data.to_vec();
        fixed[..8].copy_from_slice(b"STRATOSS");
        fixed[8..12].copy_from_slice(&1u32.to_le_bytes());
        let body_len = (fixed.len() - 32) as u64;
        fixed[16..24].copy_from_slice(&body_len.to_le_bytes());
        fixed[24..32].fill(0);
        let crc = crc32(&fixed[32..]);
        fixed[12..16].copy_from_slice(&crc.to_le_bytes());
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
