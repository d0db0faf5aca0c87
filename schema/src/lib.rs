//! stratos-schema: the Cap'n Proto schemas (`capnp/om.capnp`: the OM client API;
//! `capnp/raft.capnp`: Raft traffic between OM nodes;
//! `capnp/scm.capnp`: what OMs and datanodes ask the SCM; `capnp/datanode.capnp`: block data) and their generated Rust code.
//!
//! The generated code is committed (`src/generated/`), so building needs no `capnp` tool.
//! `schema/regen.sh` regenerates it after a schema change; the test `generated_is_current`
//! fails when the committed code does not match the schemas (it runs wherever `capnp` is
//! installed; CI installs it).

/// A key's shard: `crc32(volume \0 bucket \0 key) mod shards`. The OM places keys by it (so it
/// is part of the on-disk format, fixed with the shard count when a data directory is
/// formatted) and clients route by it (`routes` in om.capnp), so both take it from here.
pub fn shard_of(volume: &str, bucket: &str, key: &str, shards: u32) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(volume.as_bytes());
    h.update(&[0]);
    h.update(bucket.as_bytes());
    h.update(&[0]);
    h.update(key.as_bytes());
    h.finalize() % shards.max(1)
}

/// Limits of the SCM's API that both sides must agree on: the SCM refuses a call past them,
/// and the OM sizes its calls to fit.
pub mod scm_limits {
    /// Blocks in one `allocateBlocks` call.
    pub const ALLOCATE_MAX: u32 = 4096;
    /// Blocks in one `deleteBlocks` call (its record, as JSON, stays well below the SCM log's
    /// record limit of 16 MiB).
    pub const DELETE_BLOCKS_MAX: u32 = 100_000;
}

#[allow(clippy::all, clippy::unwrap_used, missing_debug_implementations, unused_qualifications, dead_code)]
pub mod om_capnp {
    include!("generated/om_capnp.rs");
}

#[allow(clippy::all, clippy::unwrap_used, missing_debug_implementations, unused_qualifications, dead_code)]
pub mod raft_capnp {
    include!("generated/raft_capnp.rs");
}

#[allow(clippy::all, clippy::unwrap_used, missing_debug_implementations, unused_qualifications, dead_code)]
pub mod scm_capnp {
    include!("generated/scm_capnp.rs");
}

#[allow(clippy::all, clippy::unwrap_used, missing_debug_implementations, unused_qualifications, dead_code)]
pub mod datanode_capnp {
    include!("generated/datanode_capnp.rs");
}

/// Schema files and the generated files they produce, relative to the crate root.
pub const SCHEMAS: [(&str, &str); 4] = [
    ("capnp/om.capnp", "src/generated/om_capnp.rs"),
    ("capnp/raft.capnp", "src/generated/raft_capnp.rs"),
    ("capnp/scm.capnp", "src/generated/scm_capnp.rs"),
    ("capnp/datanode.capnp", "src/generated/datanode_capnp.rs"),
];
