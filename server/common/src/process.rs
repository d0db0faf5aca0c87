//! The life of a server process: a stop request (SIGTERM, SIGINT, or [`request_stop`] from the
//! same process) that every role polls, crash points for kill -9 tests, and the wall clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);

/// How often [`wait_stop`] looks at the stop flag: a stop is noticed within this.
pub const STOP_POLL: Duration = Duration::from_millis(50);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGTERM and SIGINT (Ctrl-C) request a stop instead of killing the process, so each role
/// syncs and closes what it holds.
pub fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
}

static WHO: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names this process in its log lines (`om node 2`), once, at start. Every OM log line starts
/// with it and the core, so that the lines of several nodes on one terminal or in one journal
/// say whose they are.
pub fn set_who(name: String) {
    let _ = WHO.set(name);
}

/// The CPUs this process may run on (1 when unknown): the default count of executors and shards.
pub fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// This process's name for log lines (`om` until [`set_who`]).
pub fn who() -> &'static str {
    WHO.get().map_or("om", String::as_str)
}

/// Asks a running role (in this process) to stop, as SIGTERM does.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Resolves once a stop was requested. Must run on a glommio executor.
pub async fn wait_stop() {
    while !stop_requested() {
        glommio::timer::sleep(STOP_POLL).await;
    }
}

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

/// Fault injection for hang tests: if the environment variable `STRATOS_HANG_POINT` names
/// `point`, the future awaiting this never completes (as a call to a peer that never answers
/// would not), so a test can check that what waits on it is bounded. Read once; unset in
/// production, where this is one load.
pub async fn hang_point(point: &str) {
    static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if POINT.get_or_init(|| std::env::var("STRATOS_HANG_POINT").ok()).as_deref() == Some(point) {
        eprintln!("stratos: hang point {point} reached (STRATOS_HANG_POINT): waiting for ever");
        std::future::pending::<()>().await;
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it). Only at the edges: what a
/// replicated state machine needs of the time comes in its commands.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
