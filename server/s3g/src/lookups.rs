//! The lookups of GET and HEAD, gathered per user and bucket: server-side batching of what
//! clients send one object at a time.
//!
//! A GET or HEAD needs the object's record (its blocks and read tokens) from the OM. Sent one
//! call per request, each pays the gateway's and the OM's per-call cost (a Cap'n Proto call,
//! a TLS record each way, a leadership check at the OM), which `bench s3 --op get` at 4 KiB
//! showed to be about a third of what a GET costs every process together. Here the requests of
//! one executor for one bucket, made as one user, share calls: the first goes at once (a
//! lookup of its own, no wait added when the gateway is idle); those that arrive while it is in
//! flight wait for it and then go together in one `lookupKeys` (at most [`BATCH_MAX`]), and so
//! on while more arrive. Each request still reads the OM after it arrived, so a GET sees every
//! write acknowledged before it was received, as with a call of its own.
//!
//! The same user and bucket matter: a `lookupKeys` is checked once for the caller it names on
//! one bucket, and each key's result (its record, or its own error: no such key, permission
//! denied) comes back in its place, as `lookupKey` would have answered it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::task::{Poll, Waker};

use stratos_client::{Client, ClientError, KeyInfo, Runtime};

use crate::S3_VOLUME;

/// Most keys in one gathered lookup (the OM takes up to 4096).
pub const BATCH_MAX: usize = 256;

type Found = Result<KeyInfo, ClientError>;

/// One executor's waiting lookups, by (user, bucket).
#[derive(Default)]
pub struct Lookups {
    queues: RefCell<HashMap<(String, String), Rc<Queue>>>,
    /// Calls sent, and the keys they carried (for the tests).
    calls: Cell<u64>,
    keys: Cell<u64>,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookups").field("calls", &self.calls.get()).field("keys", &self.keys.get()).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Queue {
    waiting: RefCell<Vec<(String, Rc<Slot>)>>,
    /// A task is sending this queue's lookups.
    draining: Cell<bool>,
}

/// Where one request's answer lands.
#[derive(Default)]
struct Slot {
    found: RefCell<Option<Found>>,
    waker: RefCell<Option<Waker>>,
}

impl Slot {
    fn fill(&self, found: Found) {
        *self.found.borrow_mut() = Some(found);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

/// A request's slot as the draining task holds it: dropped unanswered (the task ended early),
/// it answers with an error rather than leave the request waiting.
struct Pending(Rc<Slot>);

impl Drop for Pending {
    fn drop(&mut self) {
        if self.0.found.borrow().is_none() {
            self.0.fill(Err(ClientError::Rpc(capnp::Error::failed("the gathered lookup ended without an answer".into()))));
        }
    }
}

impl Lookups {
    /// Calls sent so far, and the keys they looked up (keys / calls: the batching achieved).
    pub fn counts(&self) -> (u64, u64) {
        (self.calls.get(), self.keys.get())
    }

    /// `c.lookup_key(S3_VOLUME, bucket, key)`, sharing a call with the lookups of the same user
    /// and bucket that wait beside it on this executor.
    pub async fn lookup(self: &Rc<Self>, runtime: &Rc<dyn Runtime>, c: &Rc<Client>, bucket: &str, key: &str) -> Found {
        let id = (c.user().to_string(), bucket.to_string());
        let queue = self.queues.borrow_mut().entry(id.clone()).or_default().clone();
        let slot = Rc::new(Slot::default());
        queue.waiting.borrow_mut().push((key.to_string(), slot.clone()));
        if !queue.draining.replace(true) {
            runtime.spawn_local(Box::pin(self.clone().drain(id, queue, c.clone())));
        }
        futures_util::future::poll_fn(|cx| match slot.found.borrow_mut().take() {
            Some(found) => Poll::Ready(found),
            None => {
                *slot.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Sends the queue's lookups, all that wait at each turn, until none is left.
    async fn drain(self: Rc<Self>, id: (String, String), queue: Rc<Queue>, c: Rc<Client>) {
        loop {
            let batch: Vec<(String, Pending)> = {
                let mut waiting = queue.waiting.borrow_mut();
                let n = waiting.len().min(BATCH_MAX);
                waiting.drain(..n).map(|(k, s)| (k, Pending(s))).collect()
            };
            if batch.is_empty() {
                queue.draining.set(false);
                let mut queues = self.queues.borrow_mut();
                if queues.get(&id).is_some_and(|q| Rc::ptr_eq(q, &queue)) {
                    queues.remove(&id);
                }
                return;
            }
            self.calls.set(self.calls.get() + 1);
            self.keys.set(self.keys.get() + batch.len() as u64);
            if let [(key, pending)] = &batch[..] {
                pending.0.fill(c.lookup_key(S3_VOLUME, &id.1, key).await);
                continue;
            }
            let keys: Vec<&str> = batch.iter().map(|(k, _)| k.as_str()).collect();
            match c.lookup_keys(S3_VOLUME, &id.1, &keys).await {
                Ok(found) if found.len() == batch.len() => {
                    for ((_, pending), f) in batch.iter().zip(found) {
                        pending.0.fill(f);
                    }
                }
                Ok(found) => {
                    let e = ClientError::Rpc(capnp::Error::failed(format!("lookupKeys answered {} results for {} keys", found.len(), batch.len())));
                    for (_, pending) in &batch {
                        pending.0.fill(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for (_, pending) in &batch {
                        pending.0.fill(Err(e.clone()));
                    }
                }
            }
        }
    }
}
