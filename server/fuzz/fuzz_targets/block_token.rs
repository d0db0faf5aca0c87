//! Any bytes as a block token, as a datanode checks it: refused, or exactly the token that
//! signing its own fields gives (`token::fuzz_token`). Never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stratos_common::token::fuzz_token(data));
