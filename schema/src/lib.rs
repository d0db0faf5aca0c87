//! stratos-schema: the Cap'n Proto schemas (`capnp/om.capnp`: the OM client API;
//! `capnp/raft.capnp`: Raft traffic between OM nodes;
//! `capnp/scm.capnp`: what OMs and datanodes ask the SCM; `capnp/datanode.capnp`: block data) and their generated Rust code.
//!
//! The generated code is committed (`src/generated/`), so building needs no `capnp` tool.
//! `schema/regen.sh` regenerates it after a schema change; the test `generated_is_current`
//! fails when the committed code does not match the schemas (it runs wherever `capnp` is
//! installed and says so on stderr where it is not; in CI, which installs it, its absence fails).

/// A key's shard: `crc32(volume \0 bucket \0 key) mod shards`. The OM places keys by it (so it
/// is part of the on-disk format, fixed with the shard count when a data directory is
/// formatted) and clients route by it (`routes` in om.capnp), so both take it from here.
pub fn shard_of(volume: &str, bucket: &str, key: &str, shards: u32) -> u32 {
    shard_of_hash(key_hash(volume, bucket, key), shards)
}

/// The hash [`shard_of`] places a key by, before the shard count: what the OM keeps of a
/// parsed key operation's names to route it (instead of copies of the names).
pub fn key_hash(volume: &str, bucket: &str, key: &str) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(volume.as_bytes());
    h.update(&[0]);
    h.update(bucket.as_bytes());
    h.update(&[0]);
    h.update(key.as_bytes());
    h.finalize()
}

/// The shard of a key whose [`key_hash`] is `hash`.
pub fn shard_of_hash(hash: u32, shards: u32) -> u32 {
    hash % shards.max(1)
}

/// How much work one Cap'n Proto message may make its reader do: the server reads every
/// message of every connection (client calls, Raft traffic between OMs) and every operation it
/// decodes with these limits (`stratos_common::rpc` re-exports them), so a hostile message costs
/// bounded work. Part of the protocol, so a sender sizes its messages by them and the tests take
/// them from here.
pub mod rpc_limits {
    /// Words (8 bytes) one message may make its reader traverse (Cap'n Proto's amplification
    /// guard): 64 MiB. A message larger than this is refused before its body is read; the
    /// connection it came on is aborted with the reason ("Message has N words, which is too
    /// large").
    pub const TRAVERSAL_WORDS_MAX: usize = 64 << 20 >> 3;
    /// How deeply structs and lists may nest in one message.
    pub const NESTING_MAX: i32 = 64;
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
