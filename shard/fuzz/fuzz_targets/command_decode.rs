//! Any bytes as a Raft log payload: decoding validates fully and returns an error, never
//! panics; a command that decodes can be applied to a state without breaking its invariants.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stratos_shard::{Command, ShardState};

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = Command::decode(data) {
        let mut s = ShardState::new();
        let _ = s.apply(1, &cmd);
        s.check_invariants().expect("apply of any decodable command keeps the invariants");
    }
});
