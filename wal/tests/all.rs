//! The WAL's test suites, one module per file beside this one, built as one test executable
//! (one link, the shared generic instances compiled once; CI time, docs/testing.md).
//! `cargo test -p stratos-wal --test all crash::` runs one file's tests.

mod crash;
mod dma;
