//! Any bytes as a peer's certificate (DER), as a TLS server reads the caller from it
//! (`tls::identity_of`): an identity or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = stratos_common::tls::identity_of(data);
});
