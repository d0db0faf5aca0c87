//! The writing half of a Cap'n Proto connection, sending what one turn of the executor wrote with
//! one `send`.
//!
//! capnp-futures' write queue writes each message and then flushes it, so behind a plain
//! `BufWriter` every message is a `send` syscall of its own: 120,337 sends for 120,000 replies
//! under `stratos bench omkg --batch 1 -t 256 --connections 16` (perf's `sys_enter_sendto`
//! count on the OM). A send on a TCP socket costs the kernel's whole transmit path and wakes
//! the peer; replies that are ready together (the commands of one Raft entry answer at once) can
//! share one.
//!
//! [`CoalescedWriter`] takes a flush as a request to send: the bytes wait in a buffer, and a
//! companion task, woken by the flush, sends all that is buffered when the executor runs it.
//! Whatever other tasks write before then (the other replies of the same entry, say) goes in the
//! same send. A message is delayed by at most the tasks already queued on the executor: no timer
//! is involved, so an idle connection's message leaves at once.
//!
//! A large write (a block's chunk: [`DIRECT_MIN`] bytes or more) finding nothing buffered and no
//! send under way goes straight to the stream instead, as a `BufWriter` would pass it through:
//! copying a megabyte to save a syscall is no saving.
//!
//! What it keeps of a writer's contract:
//! - bytes leave in the order written; what was flushed is sent without any further call (the
//!   task owns the stream), also when the writer is dropped without `close` (which is how the
//!   RPC system ends a connection);
//! - a send error is returned by the next write, flush or close;
//! - at most [`BUFFERED_MAX`] bytes wait: a write beyond that waits for the task to take the
//!   buffer (a peer that stops reading holds the writer, as a full socket would);
//! - `close` returns once everything is sent and the stream is closed.
//!
//! Each thread counts what its writers did ([`thread_counters`]): flushes asked for (one per
//! Cap'n Proto message) against writes handed to the stream, which is the batching a server's
//! `/prom` shows per core.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_util::io::{AsyncWrite, AsyncWriteExt};

/// Bytes written and not yet taken by the sending task, beyond which a write waits.
pub const BUFFERED_MAX: usize = 1 << 20;

/// A write at least this large goes straight to the stream when nothing waits before it.
pub const DIRECT_MIN: usize = 64 << 10;

/// A buffer that kept more capacity than this after a send gives it back (a 1 MiB block once
/// sent should not stay allocated for the connection's life).
const KEEP_CAPACITY_MAX: usize = 256 << 10;

/// What the coalesced writers of one thread (one executor's connections) did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Flushes that found something to send: one per message the RPC system wrote.
    pub flushes: u64,
    /// Writes handed to the streams: one per send of the buffer, one per direct write. Under
    /// TLS one may be several records, each a syscall of its own.
    pub writes: u64,
    /// Bytes handed to the streams.
    pub bytes: u64,
    /// Times a server connection stopped reading because its calls in flight reached their
    /// bound (`stratos_common::rpc::Gate`): the client sends faster than its calls complete.
    pub reads_paused: u64,
}

thread_local! {
    static COUNTERS: Cell<Counters> = const { Cell::new(Counters { flushes: 0, writes: 0, bytes: 0, reads_paused: 0 }) };
}

/// Counts one pause of a server connection's reads (see [`Counters::reads_paused`]).
pub fn count_read_paused() {
    count(|c| c.reads_paused += 1);
}

/// The counters of the writers on the current thread.
pub fn thread_counters() -> Counters {
    COUNTERS.with(Cell::get)
}

fn count(f: impl FnOnce(&mut Counters)) {
    COUNTERS.with(|c| {
        let mut v = c.get();
        f(&mut v);
        c.set(v);
    });
}

struct Shared<W> {
    buf: Vec<u8>,
    /// The stream, here while no send is under way (the task holds it during one).
    stream: Option<W>,
    /// A direct write went to the stream since its last flush.
    unflushed: bool,
    /// A flush (or a full buffer) asked for the buffer to be sent.
    wanted: bool,
    /// `close` was called, or the writer dropped: send what is left, then end.
    ending: bool,
    /// `close` (not a drop): close the stream after the last send.
    close: bool,
    /// The task has ended (everything sent and, on close, the stream closed; or an error).
    done: bool,
    error: Option<(io::ErrorKind, String)>,
    /// Sends made (each one `write_all` + `flush` of the stream).
    sends: u64,
    /// The task, waiting for work.
    sender: Option<Waker>,
    /// A write waiting for room, or a close waiting for the end.
    writer: Option<Waker>,
}

impl<W> Shared<W> {
    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    fn wake_sender(&mut self) {
        if let Some(w) = self.sender.take() {
            w.wake();
        }
    }

    fn error(&self) -> Option<io::Error> {
        self.error.as_ref().map(|(kind, msg)| io::Error::new(*kind, msg.clone()))
    }
}

/// See the [module](self) documentation.
pub struct CoalescedWriter<W> {
    shared: Rc<RefCell<Shared<W>>>,
}

impl<W> std::fmt::Debug for CoalescedWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.shared.borrow();
        f.debug_struct("CoalescedWriter").field("buffered", &s.buf.len()).field("sends", &s.sends).finish()
    }
}

/// A future the writer's task runs as (for `spawn`).
pub type SendTask = Pin<Box<dyn Future<Output = ()> + 'static>>;

impl<W: AsyncWrite + Unpin + 'static> CoalescedWriter<W> {
    /// Wraps `stream`; `spawn` starts the sending task on the current thread's executor.
    pub fn new(stream: W, spawn: impl FnOnce(SendTask)) -> Self {
        let shared = Rc::new(RefCell::new(Shared {
            buf: Vec::new(),
            stream: Some(stream),
            unflushed: false,
            wanted: false,
            ending: false,
            close: false,
            done: false,
            error: None,
            sends: 0,
            sender: None,
            writer: None,
        }));
        spawn(Box::pin(send_loop(shared.clone())));
        CoalescedWriter { shared }
    }

    /// Sends made so far (for tests and counters).
    pub fn sends(&self) -> u64 {
        self.shared.borrow().sends
    }
}

async fn send_loop<W: AsyncWrite + Unpin>(shared: Rc<RefCell<Shared<W>>>) {
    let mut out = Vec::new();
    loop {
        let (mut stream, ending, close, unflushed) = std::future::poll_fn(|cx| {
            let mut s = shared.borrow_mut();
            if !(s.wanted || s.ending) {
                s.sender = Some(cx.waker().clone());
                return Poll::Pending;
            }
            s.wanted = false;
            std::mem::swap(&mut out, &mut s.buf);
            s.wake_writer(); // room again
            let stream = s.stream.take().expect("only the sending task takes the stream");
            Poll::Ready((stream, s.ending, s.close, std::mem::take(&mut s.unflushed)))
        })
        .await;
        let sent = async {
            if !out.is_empty() {
                stream.write_all(&out).await?;
            }
            if !out.is_empty() || unflushed {
                stream.flush().await?;
            }
            if close {
                stream.close().await?;
            }
            Ok::<_, io::Error>(!out.is_empty())
        }
        .await;
        let bytes = out.len() as u64;
        out.clear();
        if out.capacity() > KEEP_CAPACITY_MAX {
            out = Vec::new();
        }
        let mut s = shared.borrow_mut();
        s.stream = Some(stream);
        s.wake_writer(); // a direct write may wait for the stream
        match sent {
            Ok(sent) => {
                s.sends += u64::from(sent);
                if sent {
                    count(|c| (c.writes, c.bytes) = (c.writes + 1, c.bytes + bytes));
                }
            }
            Err(e) => s.error = Some((e.kind(), e.to_string())),
        }
        // After `ending` was seen nothing more is written (a write after close fails), but a
        // flush may have raced with it: end only with an empty buffer.
        if s.error.is_some() || (ending && s.buf.is_empty()) {
            s.done = true;
            s.buf = Vec::new();
            s.stream = None;
            s.wake_writer();
            return;
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for CoalescedWriter<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let mut s = self.shared.borrow_mut();
        if let Some(e) = s.error() {
            return Poll::Ready(Err(e));
        }
        if s.ending {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "write after close")));
        }
        if data.len() >= DIRECT_MIN && s.buf.is_empty() {
            let s = &mut *s;
            let Some(stream) = s.stream.as_mut() else {
                // A send is under way: wait for the task to give the stream back.
                s.writer = Some(cx.waker().clone());
                return Poll::Pending;
            };
            return match Pin::new(stream).poll_write(cx, data) {
                Poll::Ready(Ok(n)) => {
                    s.unflushed = true;
                    count(|c| (c.writes, c.bytes) = (c.writes + 1, c.bytes + n as u64));
                    Poll::Ready(Ok(n))
                }
                Poll::Ready(Err(e)) => {
                    s.error = Some((e.kind(), e.to_string()));
                    Poll::Ready(Err(e))
                }
                Poll::Pending => {
                    // The stream wakes us when it can take more; so does the task if it used
                    // the stream meanwhile (a stream may keep only the last waker).
                    s.writer = Some(cx.waker().clone());
                    Poll::Pending
                }
            };
        }
        if !s.buf.is_empty() && s.buf.len() + data.len() > BUFFERED_MAX {
            // Full: have the task take it, and wait until it has.
            s.wanted = true;
            s.wake_sender();
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        s.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.shared.borrow_mut();
        if let Some(e) = s.error() {
            return Poll::Ready(Err(e));
        }
        if !s.buf.is_empty() || s.unflushed {
            s.wanted = true;
            s.wake_sender();
            count(|c| c.flushes += 1);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.shared.borrow_mut();
        if s.done {
            return Poll::Ready(s.error().map_or(Ok(()), Err));
        }
        if !s.ending {
            (s.ending, s.close) = (true, true);
            s.wake_sender();
        }
        s.writer = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<W> Drop for CoalescedWriter<W> {
    fn drop(&mut self) {
        // Send what was written (the RPC system drops its writer after its last message), then
        // let the task end and drop the stream.
        let mut s = self.shared.borrow_mut();
        s.ending = true;
        s.wake_sender();
    }
}

/// Words in the first segment of a message an RPC connection sends: capnp-rpc asks for 1,024
/// (8 KiB) for every call, which the allocator hands out zeroed. Under `stratos bench omkg
/// --batch 1` that zeroing (`memset`, mimalloc's zeroing path, fresh pages) was 8-10% of the
/// generator's samples, for requests of a few dozen words. A message that outgrows this gets a
/// second segment of the size it needs (a block's bytes go there whole, as they did).
pub const FIRST_SEGMENT_WORDS: u32 = 128;

/// `network` whose connections start the messages they send with [`FIRST_SEGMENT_WORDS`] at
/// most, for [`capnp_rpc::RpcSystem::new`].
pub fn small_first_segments<R>(network: capnp_rpc::twoparty::VatNetwork<R>) -> Box<dyn capnp_rpc::VatNetwork<capnp_rpc::rpc_twoparty_capnp::Side>>
where
    R: futures_util::io::AsyncRead + Unpin + 'static,
{
    Box::new(SmallFirstSegments(network))
}

type Side = capnp_rpc::rpc_twoparty_capnp::Side;

struct SmallFirstSegments<N>(N);

impl<N: capnp_rpc::VatNetwork<Side>> capnp_rpc::VatNetwork<Side> for SmallFirstSegments<N> {
    fn connect(&mut self, host: Side) -> Option<Box<dyn capnp_rpc::Connection<Side>>> {
        self.0.connect(host).map(|c| Box::new(SmallFirstSegment(c)) as Box<dyn capnp_rpc::Connection<Side>>)
    }

    fn accept(&mut self) -> capnp::capability::Promise<Box<dyn capnp_rpc::Connection<Side>>, capnp::Error> {
        let accepted = self.0.accept();
        capnp::capability::Promise::from_future(async move { Ok(Box::new(SmallFirstSegment(accepted.await?)) as Box<dyn capnp_rpc::Connection<Side>>) })
    }

    fn drive_until_shutdown(&mut self) -> capnp::capability::Promise<(), capnp::Error> {
        self.0.drive_until_shutdown()
    }
}

struct SmallFirstSegment(Box<dyn capnp_rpc::Connection<Side>>);

impl capnp_rpc::Connection<Side> for SmallFirstSegment {
    fn get_peer_vat_id(&self) -> Side {
        self.0.get_peer_vat_id()
    }

    fn new_outgoing_message(&mut self, first_segment_word_size: u32) -> Box<dyn capnp_rpc::OutgoingMessage> {
        // 0 means "choose": the inner connection's choice (exactly what the first object needs).
        self.0.new_outgoing_message(first_segment_word_size.min(FIRST_SEGMENT_WORDS))
    }

    fn receive_incoming_message(&mut self) -> capnp::capability::Promise<Option<Box<dyn capnp_rpc::IncomingMessage>>, capnp::Error> {
        self.0.receive_incoming_message()
    }

    fn new_stream(&mut self) -> (Box<dyn capnp_rpc::FlowController>, capnp::capability::Promise<(), capnp::Error>) {
        self.0.new_stream()
    }

    fn shutdown(&mut self, result: capnp::Result<()>) -> capnp::capability::Promise<(), capnp::Error> {
        self.0.shutdown(result)
    }
}

#[cfg(all(test, feature = "glommio"))]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A stream that records what it is sent, send by send, and can be made to fail or stall.
    #[derive(Default)]
    struct Recorder {
        sends: Vec<Vec<u8>>,
        current: Vec<u8>,
        closed: bool,
        fail: bool,
        /// Takes no bytes (a peer that stopped reading) until released.
        stalled: bool,
        waiting: Option<Waker>,
    }

    #[derive(Clone, Default)]
    struct Stream(Rc<RefCell<Recorder>>);

    impl Stream {
        fn release(&self) {
            let mut r = self.0.borrow_mut();
            r.stalled = false;
            if let Some(w) = r.waiting.take() {
                w.wake();
            }
        }
        fn received(&self) -> Vec<u8> {
            self.0.borrow().sends.concat()
        }
    }

    impl AsyncWrite for Stream {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            let mut r = self.0.borrow_mut();
            if r.fail {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer reset")));
            }
            if r.stalled {
                r.waiting = Some(cx.waker().clone());
                return Poll::Pending;
            }
            r.current.extend_from_slice(data);
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            let mut r = self.0.borrow_mut();
            let sent = std::mem::take(&mut r.current);
            if !sent.is_empty() {
                r.sends.push(sent);
            }
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.0.borrow_mut().closed = true;
            Poll::Ready(Ok(()))
        }
    }

    fn run<F: Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        glommio::LocalExecutorBuilder::default().spawn(f).expect("executor").join().expect("test body");
    }

    fn spawn(task: SendTask) {
        glommio::spawn_local(task).detach();
    }

    async fn turn() {
        for _ in 0..4 {
            glommio::executor().yield_now().await;
        }
    }

    #[test]
    fn what_one_turn_flushes_leaves_in_one_send_in_order() {
        run(|| async {
            let stream = Stream::default();
            let mut w = CoalescedWriter::new(stream.clone(), spawn);
            for m in [&b"one "[..], b"two ", b"three"] {
                w.write_all(m).await.unwrap();
                w.flush().await.unwrap();
            }
            assert!(stream.0.borrow().sends.is_empty(), "nothing is sent before the task runs");
            turn().await;
            assert_eq!(stream.0.borrow().sends, vec![b"one two three".to_vec()]);
            // A later flush is a send of its own.
            w.write_all(b" four").await.unwrap();
            w.flush().await.unwrap();
            turn().await;
            assert_eq!(stream.0.borrow().sends.len(), 2);
            assert_eq!(stream.received(), b"one two three four");
            assert_eq!(w.sends(), 2);
            // This thread's counters (a fresh executor thread): four messages, two writes.
            assert_eq!(thread_counters(), Counters { flushes: 4, writes: 2, bytes: 18, reads_paused: 0 });
        });
    }

    #[test]
    fn a_large_write_goes_straight_to_the_stream_and_order_is_kept() {
        run(|| async {
            let stream = Stream::default();
            let mut w = CoalescedWriter::new(stream.clone(), spawn);
            let big = vec![1u8; DIRECT_MIN];
            w.write_all(&big).await.unwrap();
            assert_eq!(stream.0.borrow().current.len(), DIRECT_MIN, "written through, not copied");
            w.flush().await.unwrap();
            turn().await;
            assert_eq!(stream.0.borrow().sends.len(), 1, "the task flushed the direct write");
            // Behind buffered bytes a large write is buffered too (order), and with a send
            // under way it waits for the stream.
            stream.0.borrow_mut().stalled = true;
            w.write_all(b"small").await.unwrap();
            w.flush().await.unwrap();
            turn().await; // the task is now stuck sending "small"
            let w = Rc::new(RefCell::new(w));
            let writer = {
                let w = w.clone();
                // The writer task is the writer's only user while it writes.
                #[allow(clippy::await_holding_refcell_ref)]
                glommio::spawn_local(async move {
                    let mut w = w.borrow_mut();
                    w.write_all(&vec![2u8; DIRECT_MIN]).await.unwrap();
                    w.write_all(b"end").await.unwrap();
                    w.flush().await.unwrap();
                })
            };
            turn().await;
            stream.release();
            writer.await;
            turn().await;
            let mut expected = big.clone();
            expected.extend_from_slice(b"small");
            expected.extend_from_slice(&[2u8; DIRECT_MIN]);
            expected.extend_from_slice(b"end");
            assert_eq!(stream.received(), expected);
            // Two direct writes and two sends of the buffer ("small", then "end").
            let c = thread_counters();
            assert_eq!((c.writes, c.bytes), (4, expected.len() as u64));
        });
    }

    #[test]
    fn unflushed_bytes_wait_and_close_sends_them_then_closes() {
        run(|| async {
            let stream = Stream::default();
            let mut w = CoalescedWriter::new(stream.clone(), spawn);
            w.write_all(b"tail").await.unwrap();
            turn().await;
            assert!(stream.0.borrow().sends.is_empty(), "a write without a flush is not sent");
            w.close().await.unwrap();
            assert_eq!(stream.0.borrow().sends, vec![b"tail".to_vec()]);
            assert!(stream.0.borrow().closed);
            assert_eq!(w.write(b"x").await.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        });
    }

    #[test]
    fn a_dropped_writer_still_sends_what_was_flushed_and_its_task_ends() {
        run(|| async {
            let stream = Stream::default();
            let mut w = CoalescedWriter::new(stream.clone(), spawn);
            w.write_all(b"abort message").await.unwrap();
            w.flush().await.unwrap();
            drop(w);
            turn().await;
            assert_eq!(stream.0.borrow().sends, vec![b"abort message".to_vec()]);
            assert!(!stream.0.borrow().closed, "a drop is not a close");
            assert_eq!(Rc::strong_count(&stream.0), 1, "the task ended and dropped its stream");
        });
    }

    #[test]
    fn a_send_error_is_returned_by_the_next_call() {
        run(|| async {
            let stream = Stream::default();
            stream.0.borrow_mut().fail = true;
            let mut w = CoalescedWriter::new(stream.clone(), spawn);
            w.write_all(b"lost").await.unwrap();
            w.flush().await.unwrap();
            turn().await;
            let e = w.write(b"more").await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
            assert!(e.to_string().contains("peer reset"), "{e}");
            assert_eq!(w.flush().await.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
            assert_eq!(w.close().await.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        });
    }

    #[test]
    fn a_peer_that_stops_reading_holds_the_writer_at_the_limit() {
        run(|| async {
            let stream = Stream(Rc::new(RefCell::new(Recorder { stalled: true, ..Default::default() })));
            let w = Rc::new(RefCell::new(CoalescedWriter::new(stream.clone(), spawn)));
            let chunk = BUFFERED_MAX / 4;
            let written = Rc::new(Cell::new(0usize));
            let writer = {
                let (w, written) = (w.clone(), written.clone());
                // The writer task is the writer's only user while it writes.
                #[allow(clippy::await_holding_refcell_ref)]
                glommio::spawn_local(async move {
                    for i in 0..12u8 {
                        let mut w = w.borrow_mut();
                        w.write_all(&vec![i; chunk]).await.unwrap();
                        w.flush().await.unwrap();
                        written.set(written.get() + 1);
                    }
                })
            };
            glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
            // The task holds one buffer (stuck in its send) and the writer fills the next.
            let stuck = written.get();
            assert!(stuck < 12, "the writer waits for room");
            assert!(stuck * chunk <= 2 * BUFFERED_MAX, "at most two buffers are held: {stuck} chunks");
            stream.release();
            writer.await;
            turn().await;
            let got = stream.received();
            assert_eq!(got.len(), 12 * chunk);
            assert!(got.chunks(chunk).enumerate().all(|(i, c)| c.iter().all(|&b| b == i as u8)), "in order");
        });
    }
}
