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
use std::sync::Arc;

use stratos_client::{Client, ClientError, KeyInfo, Runtime};
use stratos_common::local_oneshot;

use crate::S3_VOLUME;
use crate::metrics::CoreMetrics;

/// Most keys in one gathered lookup (the OM takes up to 4096).
pub const BATCH_MAX: usize = 256;

type Found = Result<KeyInfo, ClientError>;

/// One executor's waiting lookups, by (user, bucket).
#[derive(Default)]
pub struct Lookups {
    queues: RefCell<HashMap<(String, String), Rc<Queue>>>,
    /// Where the calls sent and the keys they carried are counted (the status port's
    /// `stratos_s3g_om_lookup*` series, and the tests).
    metrics: Arc<CoreMetrics>,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (calls, keys) = self.counts();
        f.debug_struct("Lookups").field("calls", &calls).field("keys", &keys).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Queue {
    /// Each waiting lookup's key and where its answer goes: a sender dropped unanswered (the
    /// draining task ended early) answers its request with an error rather than leave it
    /// waiting.
    waiting: RefCell<Vec<(String, local_oneshot::Sender<Found>)>>,
    /// A task is sending this queue's lookups.
    draining: Cell<bool>,
}

impl Lookups {
    /// Lookups counted into `metrics` (an executor's).
    pub fn new(metrics: Arc<CoreMetrics>) -> Lookups {
        Lookups { queues: RefCell::default(), metrics }
    }

    /// Calls sent so far, and the keys they looked up (keys / calls: the batching achieved).
    pub fn counts(&self) -> (u64, u64) {
        self.metrics.lookups()
    }

    /// `c.lookup_key(S3_VOLUME, bucket, key)`, sharing a call with the lookups of the same user
    /// and bucket that wait beside it on this executor.
    pub async fn lookup(self: &Rc<Self>, runtime: &Rc<dyn Runtime>, c: &Rc<Client>, bucket: &str, key: &str) -> Found {
        let id = (c.user().to_string(), bucket.to_string());
        let queue = self.queues.borrow_mut().entry(id.clone()).or_default().clone();
        let (answer, answered) = local_oneshot::channel();
        queue.waiting.borrow_mut().push((key.to_string(), answer));
        if !queue.draining.replace(true) {
            runtime.spawn_local(Box::pin(self.clone().drain(id, queue, c.clone())));
        }
        answered.await.unwrap_or_else(|_| Err(ClientError::Rpc(capnp::Error::failed("the gathered lookup ended without an answer".into()))))
    }

    /// Sends the queue's lookups, all that wait at each turn, until none is left.
    async fn drain(self: Rc<Self>, id: (String, String), queue: Rc<Queue>, c: Rc<Client>) {
        loop {
            let mut batch: Vec<(String, local_oneshot::Sender<Found>)> = {
                let mut waiting = queue.waiting.borrow_mut();
                let n = waiting.len().min(BATCH_MAX);
                waiting.drain(..n).collect()
            };
            if batch.is_empty() {
                queue.draining.set(false);
                let mut queues = self.queues.borrow_mut();
                if queues.get(&id).is_some_and(|q| Rc::ptr_eq(q, &queue)) {
                    queues.remove(&id);
                }
                return;
            }
            self.metrics.lookup_call(batch.len() as u64);
            if batch.len() == 1
                && let Some((key, answer)) = batch.pop()
            {
                // A request that went away meanwhile takes no answer (`send` gives it back).
                let _ = answer.send(c.lookup_key(S3_VOLUME, &id.1, &key).await);
                continue;
            }
            let keys: Vec<&str> = batch.iter().map(|(k, _)| k.as_str()).collect();
            let answered = c.lookup_keys(S3_VOLUME, &id.1, &keys).await.and_then(|found| {
                if found.len() == batch.len() {
                    Ok(found)
                } else {
                    Err(ClientError::Rpc(capnp::Error::failed(format!("lookupKeys answered {} results for {} keys", found.len(), batch.len()))))
                }
            });
            match answered {
                Ok(found) => {
                    for ((_, answer), f) in batch.into_iter().zip(found) {
                        let _ = answer.send(f);
                    }
                }
                Err(e) => {
                    for (_, answer) in batch {
                        let _ = answer.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}
