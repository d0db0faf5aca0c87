//! A one-shot channel for one thread: the sender and the receiver live on the same executor.
//!
//! Why not tokio's: every write waits on one (its proposal's outcomes, and inside openraft each
//! entry's several), and tokio's is built for threads: an `Arc` and atomic state transitions
//! on each send, poll and drop. A group, its Raft and every caller that proposes to it share
//! one glommio executor, so an `Rc` with plain cells does the same job. `!Send`, so the
//! compiler refuses any use across threads.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct Shared<T> {
    value: Cell<Option<T>>,
    waker: RefCell<Option<Waker>>,
    sent: Cell<bool>,
    /// The sender was dropped without sending, or the receiver was dropped.
    closed: Cell<bool>,
}

/// Sends one value ([`Sender::send`]); dropped unsent, the receiver gets [`Closed`].
pub struct Sender<T>(Rc<Shared<T>>);

/// The value sent, or [`Closed`] if the sender went without sending.
pub struct Receiver<T>(Rc<Shared<T>>);

/// The sender was dropped without sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the sender was dropped without sending")
    }
}

impl std::error::Error for Closed {}

pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Rc::new(Shared { value: Cell::new(None), waker: RefCell::new(None), sent: Cell::new(false), closed: Cell::new(false) });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Hands `value` to the receiver; gives it back if the receiver is gone.
    pub fn send(self, value: T) -> Result<(), T> {
        if self.0.closed.get() {
            return Err(value);
        }
        self.0.value.set(Some(value));
        self.0.sent.set(true);
        // `self` drops here: `Drop` wakes the receiver, and sees the value, so does not close.
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // Unsent, the channel closes; sent or not, the receiver has news.
        if !self.0.sent.get() {
            self.0.closed.set(true);
        }
        // Taken out before waking: a waker may drop the last handle of a task whose future
        // holds this channel's receiver.
        let waker = self.0.waker.borrow_mut().take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, Closed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(v) = self.0.value.take() {
            return Poll::Ready(Ok(v));
        }
        if self.0.closed.get() {
            return Poll::Ready(Err(Closed));
        }
        // A replaced waker is dropped after the borrow: dropping a task's last waker may drop
        // its future, which may hold a handle of this channel.
        let replaced = {
            let mut slot = self.0.waker.borrow_mut();
            match slot.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => None,
                _ => slot.replace(cx.waker().clone()),
            }
        };
        drop(replaced);
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // A later send gives its value back; one already sent is dropped with the channel. The
        // waker is let go now (not when the sender goes), so that it keeps no task alive.
        self.0.closed.set(true);
        let waker = self.0.waker.borrow_mut().take();
        drop(waker);
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("local_oneshot::Sender")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("local_oneshot::Receiver")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll<T>(rx: &mut Receiver<T>, wakes: &Arc<Count>) -> Poll<Result<T, Closed>> {
        let waker = Waker::from(wakes.clone());
        Pin::new(rx).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_value_sent_after_the_receiver_waits_wakes_it_and_arrives() {
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let (tx, mut rx) = channel();
        assert!(poll(&mut rx, &wakes).is_pending());
        assert!(poll(&mut rx, &wakes).is_pending(), "a second poll with the same waker");
        assert_eq!(tx.send(7), Ok(()));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "woken once");
        assert_eq!(poll(&mut rx, &wakes), Poll::Ready(Ok(7)));
    }

    #[test]
    fn a_value_sent_before_the_first_poll_is_ready_at_once() {
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let (tx, mut rx) = channel();
        tx.send("x").unwrap();
        assert_eq!(poll(&mut rx, &wakes), Poll::Ready(Ok("x")));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_sender_dropped_unsent_closes_the_channel_and_wakes_the_receiver() {
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let (tx, mut rx) = channel::<u8>();
        assert!(poll(&mut rx, &wakes).is_pending());
        drop(tx);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll(&mut rx, &wakes), Poll::Ready(Err(Closed)));
    }

    #[test]
    fn a_send_to_a_dropped_receiver_gives_the_value_back() {
        let (tx, rx) = channel();
        drop(rx);
        assert_eq!(tx.send(String::from("back")), Err(String::from("back")));
    }

    #[test]
    fn a_dropped_receiver_lets_its_waker_go_while_the_sender_lives() {
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let (tx, mut rx) = channel::<u8>();
        assert!(poll(&mut rx, &wakes).is_pending());
        assert_eq!(Arc::strong_count(&wakes), 2, "the channel holds the waker");
        drop(rx);
        assert_eq!(Arc::strong_count(&wakes), 1, "and lets it go with the receiver");
        assert_eq!(tx.send(1), Err(1));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "nobody to wake");
    }

    #[test]
    fn a_value_sent_and_never_received_is_dropped_with_the_channel() {
        let value = Rc::new(());
        let (tx, rx) = channel();
        tx.send(value.clone()).unwrap();
        assert_eq!(Rc::strong_count(&value), 2);
        drop(rx);
        assert_eq!(Rc::strong_count(&value), 1, "nothing leaks");
    }
}
