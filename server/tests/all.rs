//! The end-to-end suites of the `stratos` binary, one module per file beside this one, built as
//! one test executable. Each file used to be its own: every one compiled its own copy of the
//! client's generic futures (the glommio and tokio runtimes' instances) and linked on its own,
//! ~226 s of compiling over the ten; as one crate they share those instances. Tests still run two
//! at a time on a 2-vCPU host (libtest's default is the CPU count), now from any two files.
//! `cargo test -p stratos-server --test all ha::` runs one file's tests.
//!
//! One process means one client TLS configuration (`tls::set_client`, set by `support::Tls`):
//! every suite whose in-process clients call a node starts that node secured (`Proc::secured`).

mod support;

mod cli;
mod client_tokio;
mod data_path;
mod ha;
mod ids_quotas;
mod layout;
mod limits;
mod om_e2e;
mod s3;
mod security;
