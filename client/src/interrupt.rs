//! Ctrl-C and SIGTERM during a transfer: noticed, so that a get removes its partial file and a
//! put aborts its open key, instead of the process dying with debris left behind.
//!
//! [`install`] replaces the default action of SIGINT and SIGTERM with a handler that records the
//! signal (an atomic store) and passes a signal that landed on another thread on to the
//! transfer's (`pthread_kill`); both are async-signal-safe. It is installed without
//! `SA_RESTART`, so a read blocked on a silent pipe (or an open of a FIFO without a peer) returns
//! `EINTR` and the command sees the request at once. Transfers poll [`requested`] between chunks
//! and race [`wait`] against their calls; the command then cleans up and the process exits with
//! 128 + the signal's number, as a shell expects of a job stopped by a signal.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use crate::Runtime;

static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The thread that installed the handler (the one doing the transfer), as a `pthread_t`.
static TARGET: AtomicU64 = AtomicU64::new(0);

/// How often [`wait`] looks at the flag.
pub const POLL: Duration = Duration::from_millis(50);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
    // The kernel hands a process-directed signal to any thread that does not block it, often
    // the main thread (waiting for the executor). Passed on to the transfer's thread, it
    // interrupts a read blocked on a silent pipe or an open() of a FIFO without a peer there,
    // which would otherwise wait for the other side (an interactive ^C did nothing).
    // SAFETY: pthread_self and pthread_kill are async-signal-safe.
    let target = TARGET.load(Ordering::SeqCst);
    unsafe {
        if target != 0 && libc::pthread_self() as u64 != target {
            libc::pthread_kill(target as libc::pthread_t, sig);
        }
    }
}

/// From now on SIGINT and SIGTERM are recorded instead of ending the process. For commands that
/// clean up after themselves (`key put`, `key get`); the others keep the default action.
pub fn install() {
    // SAFETY: pthread_self has no preconditions.
    TARGET.store(unsafe { libc::pthread_self() } as u64, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to atomics and calls pthread_self/pthread_kill (all
        // async-signal-safe); the struct is fully initialised.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether [`install`] ran in this process.
pub fn installed() -> bool {
    TARGET.load(Ordering::SeqCst) != 0
}

/// Whether SIGINT or SIGTERM arrived since [`install`].
pub fn requested() -> bool {
    SIGNAL.load(Ordering::SeqCst) != 0
}

/// The signal that arrived (SIGINT = 2, SIGTERM = 15), if any.
pub fn signal() -> Option<i32> {
    Some(SIGNAL.load(Ordering::SeqCst)).filter(|s| *s != 0)
}

/// `what`, or `stopped()` once a signal arrived (whichever comes first).
pub async fn unless<T>(runtime: &dyn Runtime, what: impl std::future::Future<Output = T>, stopped: impl FnOnce() -> T) -> T {
    futures_lite::future::or(what, async {
        wait(runtime).await;
        stopped()
    })
    .await
}

/// Resolves once a signal arrived (polled every [`POLL`] on `runtime`'s clock).
pub async fn wait(runtime: &dyn Runtime) {
    while !requested() {
        runtime.sleep(POLL).await;
    }
}
