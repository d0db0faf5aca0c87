//! stratos-schema: the Cap'n Proto schemas (`om`, `scm`, `datanode`, `raft`) and their committed
//! generated Rust code.
//!
//! Empty on purpose until the OM server issue (#3) lands the schemas: the workspace layout of the
//! design card exists from the start so that dependencies point one way from day one
//! (`client` knows only `schema`; `shard` and `wal` know neither).
