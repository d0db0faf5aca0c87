//! The OM role: executors, groups, the client API and its HTTP port.

pub mod config;
pub mod convert;
pub mod datapath;
pub mod core;
pub mod http;
pub mod meta_view;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod service;

/// Fault injection for crash tests: if the environment variable `STRATOS_CRASH_POINT` names
/// `point`, the process aborts here (as kill -9 would: no cleanup, nothing flushed beyond
/// what is already durable). Read once; unset in production, where this is one load.
pub fn crash_point(point: &str) {
    static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if POINT.get_or_init(|| std::env::var("STRATOS_CRASH_POINT").ok()).as_deref() == Some(point) {
        eprintln!("stratos: crash point {point} reached (STRATOS_CRASH_POINT): aborting");
        std::process::abort();
    }
}
