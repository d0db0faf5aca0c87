//! One fetch of a fresh value shared by every caller waiting for one (meta fences).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::convert::WireError;

/// One fetch of a fresh value shared by every caller waiting for one: a caller needs a fetch
/// that *started after it asked* (a read index taken earlier may miss a write acknowledged
/// just before the caller arrived), so it joins the next fetch when one is in flight. Under
/// load this makes one fetch per round trip per core, however many requests wait.
///
/// With an `interval`, a fetch its caller asks to pace does not start sooner than that after the previous one
/// started: it is due at once, but waits out the rest of the interval before its work begins,
/// and every caller that arrives meanwhile shares it (its work still starts after each of
/// them asked). Under load that caps fetches at one per interval, and each caller waits at
/// most one interval more; when fetches are further apart than that, nobody waits.
#[derive(Debug, Default)]
pub struct Coalesce {
    state: RefCell<CoalesceState>,
    done: stratos_raft::group::local_event::Event,
    interval: Duration,
}

#[derive(Debug)]
struct CoalesceState {
    /// Fetches whose work has begun (a fetch waiting out the interval has not).
    started: u64,
    finished: u64,
    /// A fetch is due or running: a caller that finds one waits for it or for the next.
    in_flight: bool,
    last: Result<u64, WireError>,
    last_start: Option<Instant>,
}

impl Default for CoalesceState {
    fn default() -> Self {
        CoalesceState { started: 0, finished: 0, in_flight: false, last: Ok(0), last_start: None }
    }
}

impl Coalesce {
    /// Fetches at least `interval` apart (see the type's documentation); zero: back to back.
    pub fn paced(interval: Duration) -> Self {
        Coalesce { interval, ..Default::default() }
    }

    /// Fetches started so far (the work begun, not only due).
    pub fn fetches(&self) -> u64 {
        self.state.borrow().started
    }

    /// The outcome of a `fetch` that started after this call. The fetch runs as its own task,
    /// so a caller that goes away (a dropped request) never strands the ones waiting with it.
    /// With `pace`, a fetch this caller starts first waits out the interval (see the type).
    pub async fn get<F>(self: &Rc<Self>, pace: bool, fetch: impl FnOnce() -> F) -> Result<u64, WireError>
    where
        F: std::future::Future<Output = Result<u64, WireError>> + 'static,
    {
        let need = self.state.borrow().started + 1;
        let mut fetch = Some(fetch);
        loop {
            let listener = self.done.listen();
            let start = {
                let mut s = self.state.borrow_mut();
                if s.finished >= need {
                    return s.last.clone();
                }
                if s.in_flight {
                    false
                } else {
                    s.in_flight = true;
                    true
                }
            };
            // (No borrow of the state is held past this point: the fetch task takes its own.)
            if start {
                // A future does nothing until polled: the work begins after the wait below.
                let work = fetch.take().expect("a caller starts at most one fetch")();
                let me = self.clone();
                glommio::spawn_local(async move {
                    let due = me.state.borrow().last_start.filter(|_| pace).map(|t| t + me.interval);
                    if let Some(wait) = due.map(|d| d.saturating_duration_since(Instant::now())).filter(|w| !w.is_zero()) {
                        glommio::timer::sleep(wait).await;
                    }
                    // Callers that came before this point computed `need` as this generation;
                    // later ones need the next: the work below starts after all of the former.
                    let generation = {
                        let mut s = me.state.borrow_mut();
                        s.started += 1;
                        s.last_start = Some(Instant::now());
                        s.started
                    };
                    let r = work.await;
                    let mut s = me.state.borrow_mut();
                    (s.finished, s.last, s.in_flight) = (generation, r, false);
                    drop(s);
                    me.done.notify();
                })
                .detach();
            }
            listener.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn on_executor(f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + 'static) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).spawn(f).expect("an executor").join().expect("the test ran");
    }

    /// A fetch that counts itself and returns its own number after `takes`.
    fn counting(n: &Rc<Cell<u64>>, takes: Duration) -> impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, WireError>>>> {
        let n = n.clone();
        move || {
            Box::pin(async move {
                n.set(n.get() + 1);
                let mine = n.get();
                glommio::timer::sleep(takes).await;
                Ok(mine)
            })
        }
    }

    #[test]
    fn paced_fetches_are_an_interval_apart_and_shared() {
        on_executor(|| {
            Box::pin(async {
                let c = Rc::new(Coalesce::paced(Duration::from_millis(500)));
                let n = Rc::new(Cell::new(0));
                let t0 = Instant::now();
                // Nothing before: the first fetch starts at once.
                assert_eq!(c.get(true, counting(&n, Duration::ZERO)).await, Ok(1));
                assert!(t0.elapsed() < Duration::from_millis(250), "the first fetch waited {:?}", t0.elapsed());
                // Ten callers at once, 5 ms after: one fetch, due 500 ms after the first began.
                glommio::timer::sleep(Duration::from_millis(5)).await;
                let callers: Vec<_> = (0..10).map(|_| c.get(true, counting(&n, Duration::ZERO))).collect();
                let got = futures_util::future::join_all(callers).await;
                assert!(got.iter().all(|r| *r == Ok(2)), "{got:?}");
                assert!(t0.elapsed() >= Duration::from_millis(500), "the second fetch began {:?} after the first", t0.elapsed());
                assert_eq!(c.fetches(), 2);
            })
        });
    }

    #[test]
    fn a_caller_during_a_fetch_gets_the_next_one() {
        on_executor(|| {
            Box::pin(async {
                for interval in [Duration::ZERO, Duration::from_millis(20)] {
                    let c = Rc::new(Coalesce::paced(interval));
                    let n = Rc::new(Cell::new(0));
                    let first = c.get(true, counting(&n, Duration::from_millis(30)));
                    let late = async {
                        // Arrives while the first fetch runs (its work has begun).
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                        c.get(true, counting(&n, Duration::from_millis(30))).await
                    };
                    let (a, b) = futures_util::future::join(first, late).await;
                    assert_eq!((a, b), (Ok(1), Ok(2)), "interval {interval:?}");
                    assert_eq!(c.fetches(), 2);
                }
            })
        });
    }
}
