//! stratos-schema: the Cap'n Proto schemas (`capnp/om.capnp`: the OM client API;
//! `capnp/raft.capnp`: Raft traffic between OM nodes;
//! `capnp/scm.capnp`: what OMs and datanodes ask the SCM; `capnp/datanode.capnp`: block data) and their generated Rust code.
//!
//! The generated code is committed (`src/generated/`), so building needs no `capnp` tool.
//! `schema/regen.sh` regenerates it after a schema change; the test `generated_is_current`
//! fails when the committed code does not match the schemas (it runs wherever `capnp` is
//! installed; CI installs it).

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
