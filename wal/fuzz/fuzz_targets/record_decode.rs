//! Any bytes into the record decoder: it returns a record or an error, never panics, and a
//! record it returns re-encodes to exactly the bytes it came from.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stratos_wal::record::{decode, encode_into};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = decode(data, 1 << 16) {
        let mut again = Vec::new();
        encode_into(&mut again, r.kind, r.log_index, r.term, r.batch_offset, r.payload);
        assert_eq!(&data[..again.len()], &again[..]);
    }
});
