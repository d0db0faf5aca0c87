//! The OM role: executors, groups, the client API and its HTTP port.

pub mod config;
pub mod convert;
pub mod core;
pub mod http;
pub mod meta_view;
pub mod metrics;
pub mod node;
pub mod service;
