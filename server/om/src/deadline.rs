//! Coarse deadlines for waits that nearly always end long before them.
//!
//! Every write a call makes waits for its Raft commit under [`crate::core::PEER_CALL_TIMEOUT`]
//! (5 s), and nearly every one is done within milliseconds. glommio's `timeout` registers a
//! timer with the reactor for each (a `BTreeMap` insert and a `HashMap` insert, both removed
//! again on drop, and a clock read): under `omkg --batch 1` that was about 2% of the OM's CPU,
//! per call, for a timer that never fires. Here a wait takes a slot in a per-thread table (a
//! push onto a free list, and back on drop), and one task per thread looks at the table every
//! [`TICK`] while any slot is taken, waking the waits whose deadline has passed. A deadline
//! therefore fires up to one tick late; for seconds-long deadlines of calls that are answered
//! "unknown outcome, retry" when they fire, that is what the precision is worth.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the table is looked at while any wait is in it (the lateness bound).
pub const TICK: Duration = Duration::from_millis(100);

/// A wait whose deadline passed (its future was dropped unfinished).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

struct Slot {
    deadline: Instant,
    waker: Option<Waker>,
    expired: bool,
}

#[derive(Default)]
struct Table {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    taken: usize,
    /// The executor whose ticking task serves this table, while one runs (it ends when the
    /// table is empty). An executor is told apart by id: one that ended with waits pending (its
    /// task gone) must not keep a later executor on the same thread from starting its own.
    ticking: Option<usize>,
}

impl Table {
    fn insert(&mut self, slot: Slot) -> usize {
        self.taken += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        }
    }

    /// The slot taken out, for the caller to drop after its borrow of the table ends: dropping
    /// a waker may drop a task, and with it another wait that would borrow the table again.
    #[must_use = "drop the slot outside the table's borrow"]
    fn remove(&mut self, i: usize) -> Option<Slot> {
        let slot = self.slots[i].take();
        if slot.is_some() {
            self.taken -= 1;
            self.free.push(i);
        }
        slot
    }
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

/// Waits taken in this thread's table now (for tests and counters).
pub fn waiting() -> usize {
    TABLE.with(|t| t.borrow().taken)
}

/// `fut`, or [`Elapsed`] once `after` has passed (up to [`TICK`] later). Must run on a glommio
/// executor (the ticking task is spawned there).
pub fn timeout<F: Future>(after: Duration, fut: F) -> Timeout<F> {
    Timeout { fut, after, slot: None, _here: std::marker::PhantomData }
}

pin_project_lite::pin_project! {
    pub struct Timeout<F> {
        #[pin]
        fut: F,
        after: Duration,
        // Its index in this thread's table, once it waits.
        slot: Option<usize>,
        // Not `Send`: the slot is in the table of the thread that polled it first.
        _here: std::marker::PhantomData<*const ()>,
    }

    impl<F> PinnedDrop for Timeout<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(i) = this.project().slot.take() {
                // A thread's table outlives its executor's tasks; `try_with` for the thread's end.
                let slot = TABLE.try_with(|t| t.borrow_mut().remove(i));
                drop(slot);
            }
        }
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(i) = *this.slot {
            let expired = TABLE.with(|t| t.borrow().slots[i].as_ref().is_some_and(|s| s.expired));
            if expired {
                drop(TABLE.with(|t| t.borrow_mut().remove(i)));
                *this.slot = None;
                return Poll::Ready(Err(Elapsed));
            }
        }
        if let Poll::Ready(out) = this.fut.poll(cx) {
            if let Some(i) = this.slot.take() {
                drop(TABLE.with(|t| t.borrow_mut().remove(i)));
            }
            return Poll::Ready(Ok(out));
        }
        match *this.slot {
            Some(i) => {
                // The waker replaced is dropped after the borrow (see `Table::remove`).
                let old = TABLE.with(|t| {
                    let mut t = t.borrow_mut();
                    match t.slots[i].as_mut() {
                        Some(s) if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) => s.waker.replace(cx.waker().clone()),
                        _ => None,
                    }
                });
                drop(old);
            }
            None => {
                // Only a wait that did not finish at once takes a slot (and reads the clock).
                let slot = Slot { deadline: Instant::now() + *this.after, waker: Some(cx.waker().clone()), expired: false };
                let here = glommio::executor().id();
                let start = TABLE.with(|t| {
                    let mut t = t.borrow_mut();
                    *this.slot = Some(t.insert(slot));
                    t.ticking.replace(here) != Some(here)
                });
                if start {
                    glommio::spawn_local(tick(here)).detach();
                }
            }
        }
        Poll::Pending
    }
}

impl<F> std::fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeout").field("after", &self.after).field("slot", &self.slot).finish_non_exhaustive()
    }
}

/// Wakes the waits past their deadline every [`TICK`]; ends when no wait is left. `here`: the
/// executor it runs on.
async fn tick(here: usize) {
    loop {
        glommio::timer::sleep(TICK).await;
        let now = Instant::now();
        let (wake, done) = TABLE.with(|t| {
            let mut t = t.borrow_mut();
            let mut wake = Vec::new();
            for s in t.slots.iter_mut().flatten() {
                if !s.expired && s.deadline <= now {
                    s.expired = true;
                    wake.extend(s.waker.take());
                }
            }
            // Another executor's task serves the table now, or nothing is left to serve.
            let done = t.ticking != Some(here) || t.taken == 0;
            if done && t.ticking == Some(here) {
                t.ticking = None;
                // The table keeps no memory from a burst of waits once it is empty.
                t.slots = Vec::new();
                t.free = Vec::new();
            }
            (wake, done)
        });
        // Woken outside the borrow: a woken task may poll (and touch the table) at once.
        wake.into_iter().for_each(Waker::wake);
        if done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_executor(f: impl FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send + 'static) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).spawn(f).expect("an executor").join().expect("the test ran");
    }

    #[test]
    fn a_wait_that_finishes_gets_its_output_and_frees_its_slot() {
        on_executor(|| {
            Box::pin(async {
                assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Ok(7));
                assert_eq!(waiting(), 0, "a ready future takes no slot");
                let slept = timeout(Duration::from_secs(5), glommio::timer::sleep(Duration::from_millis(20))).await;
                assert_eq!(slept, Ok(()));
                assert_eq!(waiting(), 0);
            })
        });
    }

    #[test]
    fn a_wait_past_its_deadline_ends_within_a_tick() {
        on_executor(|| {
            Box::pin(async {
                let started = Instant::now();
                let never = timeout(Duration::from_millis(150), std::future::pending::<()>()).await;
                let took = started.elapsed();
                assert_eq!(never, Err(Elapsed));
                assert!(took >= Duration::from_millis(150), "fired early: {took:?}");
                assert!(took < Duration::from_millis(150) + 3 * TICK, "fired late: {took:?}");
                assert_eq!(waiting(), 0);
                // The ticking task ends with the table empty, and starts again for a new wait.
                glommio::timer::sleep(2 * TICK).await;
                assert_eq!(TABLE.with(|t| t.borrow().ticking), None);
                assert_eq!(timeout(Duration::from_millis(50), std::future::pending::<()>()).await, Err(Elapsed));
            })
        });
    }

    #[test]
    fn an_executor_that_ended_with_a_wait_does_not_stall_the_next_on_its_thread() {
        std::thread::spawn(|| {
            let first = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).make().expect("an executor");
            first.run(async {
                glommio::spawn_local(timeout(Duration::from_secs(60), std::future::pending::<()>())).detach();
                glommio::timer::sleep(Duration::from_millis(5)).await;
                assert_eq!(waiting(), 1);
            });
            drop(first);
            let second = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).make().expect("an executor");
            second.run(async {
                // Bounded by a reactor timer: without a ticking task of its own this never ends.
                let fired = glommio::timer::timeout(Duration::from_secs(2), async { Ok(timeout(Duration::from_millis(50), std::future::pending::<()>()).await) }).await;
                assert_eq!(fired.expect("the deadline fired within 2 s"), Err(Elapsed));
            });
        })
        .join()
        .expect("the test ran");
    }

    #[test]
    fn dropped_waits_free_their_slots_and_others_still_fire() {
        on_executor(|| {
            Box::pin(async {
                let mut short = Vec::new();
                for _ in 0..100 {
                    let mut w = Box::pin(timeout(Duration::from_secs(60), std::future::pending::<()>()));
                    assert!(futures_lite::future::poll_once(&mut w).await.is_none());
                    short.push(w);
                }
                assert_eq!(waiting(), 100);
                short.truncate(10);
                assert_eq!(waiting(), 10);
                // A wait among long ones fires on time, and the long ones stay.
                assert_eq!(timeout(Duration::from_millis(10), std::future::pending::<()>()).await, Err(Elapsed));
                assert_eq!(waiting(), 10);
                drop(short);
                assert_eq!(waiting(), 0);
            })
        });
    }
}
