//! One fetch of a fresh value shared by every caller waiting for one (meta fences).

use std::cell::RefCell;
use std::rc::Rc;

use crate::convert::WireError;

/// One fetch of a fresh value shared by every caller waiting for one: a caller needs a fetch
/// that *started after it asked* (a read index taken earlier may miss a write acknowledged
/// just before the caller arrived), so it joins the next fetch when one is in flight. Under
/// load this makes one fetch per round trip per core, however many requests wait.
#[derive(Debug, Default)]
pub struct Coalesce {
    state: RefCell<CoalesceState>,
    done: stratos_raft::group::local_event::Event,
}

#[derive(Debug)]
struct CoalesceState {
    started: u64,
    finished: u64,
    in_flight: bool,
    last: Result<u64, WireError>,
}

impl Default for CoalesceState {
    fn default() -> Self {
        CoalesceState { started: 0, finished: 0, in_flight: false, last: Ok(0) }
    }
}

impl Coalesce {
    /// The outcome of a `fetch` that started after this call. The fetch runs as its own task,
    /// so a caller that goes away (a dropped request) never strands the ones waiting with it.
    pub async fn get<F>(self: &Rc<Self>, fetch: impl FnOnce() -> F) -> Result<u64, WireError>
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
                    None
                } else {
                    s.in_flight = true;
                    s.started += 1;
                    Some(s.started)
                }
            };
            // (No borrow of the state is held past this point: the fetch task takes its own.)
            if let Some(generation) = start {
                let work = fetch.take().expect("a caller starts at most one fetch")();
                let me = self.clone();
                glommio::spawn_local(async move {
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
