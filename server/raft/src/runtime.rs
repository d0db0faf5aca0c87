//! openraft's `AsyncRuntime` on glommio, so every Raft group lives on its shard's pinned
//! executor with no `Send` bounds (openraft's `single-threaded` feature).
//!
//! - Tasks: `glommio::spawn_local(..).detach()`. A glommio task is cancelled when its handle is
//!   dropped, but openraft drops handles of tasks it expects to keep running, so every task is
//!   detached; its `JoinHandle` still yields the result.
//! - Time: `std::time::Instant` (what glommio's timers use) and `glommio::timer::Timer`.
//!   A timer needs a running executor: create each `Raft` inside its executor.
//! - Channels and the mutex: tokio's `sync` primitives, which need no tokio runtime (only the
//!   `sync` feature is enabled). They are thread-safe, which costs an atomic per operation and
//!   buys nothing here; swapping in `Rc`-based ones is a later optimisation with this suite as
//!   its test.
//!
//! `openraft_rt::testing::Suite` (conformance tests, deterministic-RNG tests included) passes
//! against it: see the test at the bottom.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use openraft_rt::{
    AsyncRuntime, Mpsc, MpscReceiver, MpscSender, MpscWeakSender, Oneshot, OneshotSender, OptionalSend, OptionalSync,
    SendError, TryRecvError, Watch, WatchReceiver, WatchSender,
};

/// Locked memory glommio pins for this runtime's executor (3x this, per FINDINGS.md). Raft
/// groups do no DMA I/O of their own, so a small pool suffices and keeps non-root users working.
const RUNTIME_IO_MEMORY_BYTES: usize = 1 << 20;

/// openraft's runtime on glommio. `new`/`block_on` make and drive a fresh executor (used by
/// tests and tools); inside a server, Raft groups are created on the executor already running.
pub struct GlommioRuntime {
    executor: LocalExecutor,
}

impl std::fmt::Debug for GlommioRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlommioRuntime").finish_non_exhaustive()
    }
}

/// A task that ended without a result: it was cancelled (its executor stopped) or panicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinError;

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the task was cancelled or panicked before producing its result")
    }
}

impl std::error::Error for JoinError {}

/// The handle of a detached glommio task.
#[derive(Debug)]
pub struct JoinHandle<T>(glommio::task::JoinHandle<T>);

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| r.ok_or(JoinError))
    }
}

/// A sleep on glommio's timer wheel.
#[derive(Debug)]
pub struct Sleep(glommio::timer::Timer);

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// The deadline of a `timeout` passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

pin_project_lite::pin_project! {
    /// A future bounded by a deadline: the future is polled first, so a result that is ready
    /// at the deadline wins.
    #[derive(Debug)]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Sleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        Pin::new(this.sleep).poll(cx).map(|()| Err(Elapsed))
    }
}

fn sleep_for(duration: Duration) -> Sleep {
    Sleep(glommio::timer::Timer::new(duration))
}

impl AsyncRuntime for GlommioRuntime {
    type JoinError = JoinError;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = Instant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = rand::rngs::ThreadRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        JoinHandle(glommio::spawn_local(future).detach())
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        sleep_for(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        sleep_for(deadline.saturating_duration_since(Instant::now()))
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        Timeout { future, sleep: sleep_for(duration) }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        Timeout { future, sleep: Self::sleep_until(deadline) }
    }

    fn is_panic(_join_error: &Self::JoinError) -> bool {
        // glommio does not tell a panicked task from a cancelled one; a panic in a task takes
        // the executor (and so the process) down anyway, which is the fail-stop we want.
        false
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        rand::rng()
    }

    type Mpsc = TokioMpsc;
    type Watch = TokioWatch;
    type Oneshot = LocalOneshot;
    type Mutex<T: OptionalSend + 'static> = TokioMutex<T>;

    fn new(_threads: usize) -> Self {
        // One executor, unpinned: a thread-per-core runtime has exactly one thread.
        let executor = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(RUNTIME_IO_MEMORY_BYTES)
            .name("raft-rt")
            .make()
            .expect("creating a glommio executor (is io_uring allowed and memlock large enough?)");
        Self { executor }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.executor.run(future)
    }
}

/// Bounded multi-producer channels.
#[derive(Debug)]
pub struct TokioMpsc;

#[derive(Debug)]
pub struct MpscTx<T>(tokio::sync::mpsc::Sender<T>);
#[derive(Debug)]
pub struct MpscRx<T>(tokio::sync::mpsc::Receiver<T>);
#[derive(Debug)]
pub struct MpscWeakTx<T>(tokio::sync::mpsc::WeakSender<T>);

impl<T> Clone for MpscTx<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Clone for MpscWeakTx<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl Mpsc for TokioMpsc {
    type Sender<T: OptionalSend> = MpscTx<T>;
    type Receiver<T: OptionalSend> = MpscRx<T>;
    type WeakSender<T: OptionalSend> = MpscWeakTx<T>;

    fn channel<T: OptionalSend>(buffer: usize) -> (Self::Sender<T>, Self::Receiver<T>) {
        let (tx, rx) = tokio::sync::mpsc::channel(buffer);
        (MpscTx(tx), MpscRx(rx))
    }
}

impl<T: OptionalSend> MpscSender<TokioMpsc, T> for MpscTx<T> {
    async fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.0.send(msg).await.map_err(|e| SendError(e.0))
    }

    fn downgrade(&self) -> MpscWeakTx<T> {
        MpscWeakTx(self.0.downgrade())
    }
}

impl<T: OptionalSend> MpscReceiver<T> for MpscRx<T> {
    async fn recv(&mut self) -> Option<T> {
        self.0.recv().await
    }

    fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.0.try_recv().map_err(|e| match e {
            tokio::sync::mpsc::error::TryRecvError::Empty => TryRecvError::Empty,
            tokio::sync::mpsc::error::TryRecvError::Disconnected => TryRecvError::Disconnected,
        })
    }
}

impl<T: OptionalSend> MpscWeakSender<TokioMpsc, T> for MpscWeakTx<T> {
    fn upgrade(&self) -> Option<MpscTx<T>> {
        self.0.upgrade().map(MpscTx)
    }
}

/// Single-value broadcast channels.
#[derive(Debug)]
pub struct TokioWatch;

#[derive(Debug)]
pub struct WatchTx<T>(tokio::sync::watch::Sender<T>);
#[derive(Debug)]
pub struct WatchRx<T>(tokio::sync::watch::Receiver<T>);

impl<T> Clone for WatchTx<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Clone for WatchRx<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl Watch for TokioWatch {
    type Sender<T: OptionalSend + OptionalSync> = WatchTx<T>;
    type Receiver<T: OptionalSend + OptionalSync> = WatchRx<T>;
    type Ref<'a, T: OptionalSend + 'a> = tokio::sync::watch::Ref<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (Self::Sender<T>, Self::Receiver<T>) {
        let (tx, rx) = tokio::sync::watch::channel(init);
        (WatchTx(tx), WatchRx(rx))
    }
}

impl<T: OptionalSend + OptionalSync> WatchSender<TokioWatch, T> for WatchTx<T> {
    fn send(&self, value: T) -> Result<(), openraft_rt::watch::SendError<T>> {
        self.0.send(value).map_err(|e| openraft_rt::watch::SendError(e.0))
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        self.0.send_if_modified(modify)
    }

    fn borrow_watched(&self) -> tokio::sync::watch::Ref<'_, T> {
        self.0.borrow()
    }

    fn subscribe(&self) -> WatchRx<T> {
        WatchRx(self.0.subscribe())
    }
}

impl<T: OptionalSend + OptionalSync> WatchReceiver<TokioWatch, T> for WatchRx<T> {
    async fn changed(&mut self) -> Result<(), openraft_rt::watch::RecvError> {
        self.0.changed().await.map_err(|_| openraft_rt::watch::RecvError(()))
    }

    fn borrow_watched(&self) -> tokio::sync::watch::Ref<'_, T> {
        self.0.borrow()
    }

    fn borrow_and_update(&mut self) -> tokio::sync::watch::Ref<'_, T> {
        self.0.borrow_and_update()
    }
}

/// One-shot channels: [`crate::local_oneshot`] (openraft's tasks and the callers of a group
/// share its executor; tokio's pays atomics on every send, poll and drop).
#[derive(Debug)]
pub struct LocalOneshot;

impl Oneshot for LocalOneshot {
    type Sender<T: OptionalSend> = LocalSender<T>;
    type Receiver<T: OptionalSend> = crate::local_oneshot::Receiver<T>;
    type ReceiverError = crate::local_oneshot::Closed;

    fn channel<T: OptionalSend>() -> (Self::Sender<T>, Self::Receiver<T>) {
        let (tx, rx) = crate::local_oneshot::channel();
        (LocalSender(tx), rx)
    }
}

/// [`crate::local_oneshot::Sender`] as openraft's sender (the channel lives in
/// `stratos-common`, so openraft's trait is implemented on this crate's wrapper).
#[derive(Debug)]
pub struct LocalSender<T>(crate::local_oneshot::Sender<T>);

impl<T: OptionalSend> OneshotSender<T> for LocalSender<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}

/// An async mutex (openraft uses it around state shared by its tasks).
#[derive(Debug)]
pub struct TokioMutex<T>(tokio::sync::Mutex<T>);

impl<T: OptionalSend + 'static> openraft_rt::Mutex<T> for TokioMutex<T> {
    type Guard<'a> = tokio::sync::MutexGuard<'a, T>;

    fn new(value: T) -> Self {
        Self(tokio::sync::Mutex::new(value))
    }

    async fn lock(&self) -> Self::Guard<'_> {
        self.0.lock().await
    }
}

#[cfg(test)]
mod tests {
    use openraft_rt::testing::Suite;

    use super::*;

    /// openraft's conformance suite for runtimes: spawn and join, sleeps and timeouts, select,
    /// channels, mutex, deterministic RNG.
    #[test]
    fn openraft_runtime_conformance_suite_passes() {
        Suite::<GlommioRuntime>::test_all();
    }
}
