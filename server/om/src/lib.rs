//! stratos-om: the OM role. One pinned glommio executor ("core") per CPU owns some of the
//! node's Raft groups (the meta group and the key shards); cores talk over a channel mesh.
//!
//! - [`node`]: formats or opens the data directory, starts the cores, listeners and mesh, and
//!   stops cleanly.
//! - [`core`]: a core's groups, its mesh and the request path (writes, reads, forwarding,
//!   linearizable reads, meta fences, shared through [`coalesce`]); the duties each core runs beside it live in their own
//!   modules: [`balance`] (leader balancing and transfer), [`membership`] (adding and removing
//!   nodes), [`rename`] (finishing cross-shard renames), [`housekeeping`] (expiring open keys
//!   and retry sessions), [`scm_duties`] (the cluster map, deleted blocks) and [`metrics`].
//! - [`service`]: the OzoneManager Cap'n Proto service; [`convert`]: the wire edge (every field
//!   validated, outcomes mapped to status codes in one place).
//! - [`meta_view`]: each core's read-only copy of the meta group's state.
//! - [`peer`]: what another OM node asks of this one (forwarded writes, read indexes).
//! - [`datapath`]: block pools refilled from the SCM, block tokens in replies.
//! - [`http`]: /health, /metrics, /prom. [`config`]: the configuration file; [`args`]: its flags.

pub mod args;
pub mod balance;
pub mod coalesce;
pub mod config;
pub mod convert;
pub mod core;
pub mod datapath;
pub mod deadline;
pub mod housekeeping;
pub mod http;
pub mod membership;
pub mod meta_view;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod quota;
pub mod rename;
pub mod scm_duties;
pub mod service;
