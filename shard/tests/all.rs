//! The state machine's test suites, one module per file beside this one, built as one test
//! executable (one link, the shared generic instances compiled once; CI time, docs/testing.md).
//! `cargo test -p stratos-shard --test all model::` runs one file's tests.

mod behaviour;
mod carried;
mod log_format;
mod model;
mod quota;
mod rename;
mod retry;
mod sharded;
