//! The datanode store's test suites, one module per file beside this one, built as one test
//! executable (one link, the shared generic instances compiled once; CI time, docs/testing.md).
//! `cargo test -p stratos-datanode --test all store::` runs one file's tests.

mod blocklog_crash;
mod store;
