//! Raft wiring: openraft on glommio.

pub mod runtime;
