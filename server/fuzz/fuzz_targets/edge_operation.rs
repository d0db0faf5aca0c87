//! Any bytes as one Cap'n Proto `Operation` message at the OM's wire edge: reading (with the
//! server's traversal and nesting limits) and validation answer an error, never panic; an
//! operation that passes the edge, applied by a key shard (with bucket facts) or the meta
//! group, keeps the shard's invariants.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stratos_server::om::convert::{Target, operation_from_bytes};
use stratos_shard::{BucketRef, Command, CommandContext, Principal, QUOTA_UNLIMITED, Replication, ShardState};

fuzz_target!(|data: &[u8]| {
    if let Ok((op, target)) = operation_from_bytes(data, 1_000, 60_000) {
        let bucket = matches!(target, Target::Key { .. }).then_some(BucketRef {
            bucket_id: 1,
            volume_id: 2,
            replication: Replication::RatisThree,
            quota_bytes: QUOTA_UNLIMITED,
            quota_namespace: QUOTA_UNLIMITED,
            volume_quota_bytes: QUOTA_UNLIMITED,
        });
        let cmd = Command { ctx: CommandContext { client_id: 1, request_id: 1, time_ms: 1_000, principal: Principal::admin("root"), bucket }, op };
        let mut s = ShardState::new();
        let _ = s.apply(1, &cmd);
        s.check_invariants().expect("an operation that passed the edge keeps the invariants");
    }
});
