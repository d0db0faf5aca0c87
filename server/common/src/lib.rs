//! stratos-common: what every Stratos server role (OM, SCM, datanode) shares, so that no role
//! crate needs another.
//!
//! - [`rpc`]: Cap'n Proto plumbing on glommio: listeners that one process holds alone (or that
//!   this process's executors share), the accept loop, a connection that redials after an
//!   error, the limits a peer's message may make a server traverse, and bounded text fields.
//! - [`token`]: block tokens (HMAC-SHA256): the OM signs them, the datanode verifies them, the
//!   SCM makes and rotates their secret keys.
//! - [`tls`]: the cluster CA, certificates, identities and rustls configurations (defined in
//!   the client crate, which the CLI shares; the roles reach them here).
//! - [`process`]: the life of a server process: SIGTERM/SIGINT become a stop request every
//!   role polls, crash points for kill -9 tests, and the wall clock in ms.
//! - [`lifecycle`]: a bucket's S3 lifecycle rules in the form the S3 gateway stores and the OM
//!   acts on (the gateway announces an object's expiry, the OM's key shards expire it).
//! - [`settings`]: how a bucket's S3 settings are cut into metadata pairs and joined again.
//! - [`status_http`]: a role's status port (`/health`, Prometheus text at `/prom`).
//! - [`local_oneshot`]: a one-shot channel for one executor (a Raft proposal's outcomes, openraft's
//!   own, the S3 gateway's gathered lookups).
//!
//! What it must never do: hold a role's state, or know a role's protocol beyond the wire types
//! of `stratos-schema`. Roles talk to each other over the wire, never through this crate.

pub mod lifecycle;
pub mod local_oneshot;
pub mod process;
pub mod rpc;
pub mod settings;
pub mod status_http;
pub mod tls_args;
pub mod token;

pub use stratos_client::tls;
pub use stratos_client::ClientError;
