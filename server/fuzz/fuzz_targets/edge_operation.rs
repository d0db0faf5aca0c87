//! Any bytes as one Cap'n Proto `Operation` message at the OM's wire edge: reading (with the
//! server's traversal and nesting limits) and validation answer an error, never panic; an
//! operation that passes the edge, applied by a key shard (with bucket facts) or the meta
//! group, keeps the shard's invariants (`convert::fuzz_edge_operation`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| stratos_om::convert::fuzz_edge_operation(data));
