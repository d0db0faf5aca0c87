//! Any bytes as a segment image into recovery's scan: it must stop (end or bad spot) and
//! classify what follows without panicking or reading out of bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = stratos_wal::fuzz_scan_segment(data, 1 << 16);
});
