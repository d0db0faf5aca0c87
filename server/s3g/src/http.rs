//! HTTP/1.1 for the gateway: hyper's connection state machine (request parsing, keep-alive,
//! pipelining, `Expect: 100-continue`, chunked transfer coding) on glommio's sockets, through
//! an adapter from the `futures` IO traits to hyper's, and a response body that may stay on
//! its executor (`!Send`: object data streams from datanode connections of this core).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::io::{AsyncRead, AsyncWrite};
use hyper::body::{Frame, SizeHint};

/// A `futures` byte stream (a glommio TCP stream, a TLS stream over one) as hyper's IO, with an
/// optional idle timeout: a connection on which nothing was read or written for that long is
/// closed (an idle keep-alive connection, a client that stopped sending a body or reading an
/// answer, a slowloris). Any progress either way restarts the clock, so a long transfer that
/// moves is never cut. (hyper's own header timeout needs a `Send` timer; glommio's is not.)
pub struct Io<S> {
    inner: S,
    idle: Option<std::time::Duration>,
    timer: Option<glommio::timer::Timer>,
}

impl<S> std::fmt::Debug for Io<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").field("idle", &self.idle).finish_non_exhaustive()
    }
}

impl<S> Io<S> {
    /// No idle timeout (a client's connection: its calls have their own).
    pub fn new(inner: S) -> Io<S> {
        Io { inner, idle: None, timer: None }
    }

    /// Closed after `idle` without progress (a server's connection). Must be made on a glommio
    /// executor.
    pub fn with_idle_timeout(inner: S, idle: std::time::Duration) -> Io<S> {
        Io { inner, idle: Some(idle), timer: None }
    }

    /// Progress: the clock starts again at the next wait.
    fn progressed(&mut self) {
        self.timer = None;
    }

    /// Nothing can move now: has the connection been idle for too long?
    fn idle_for_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(idle) = self.idle else { return false };
        let timer = self.timer.get_or_insert_with(|| glommio::timer::Timer::new(idle));
        std::future::Future::poll(Pin::new(timer), cx).is_ready()
    }
}

impl<S> Io<S> {
    /// A write's result: progress restarts the idle clock; waiting too long is an error.
    fn wrote(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(n)) => {
                self.progressed();
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.idle_for_too_long(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }
}

fn idle_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the connection was idle for too long")
}

/// The most one read asks for. Through TLS a read brings at most one record's plaintext (16 KiB);
/// on a plain socket a larger body takes a read per 64 KiB (a copy of what was read, where the
/// zeroing it replaces cleared all of hyper's unfilled buffer, up to hundreds of KiB, per read).
const READ_SCRATCH_BYTES: usize = 64 * 1024;

thread_local! {
    /// Where reads land before hyper's buffer (see `poll_read`): zeroed once per thread.
    static READ_SCRATCH: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; READ_SCRATCH_BYTES].into_boxed_slice());
}

impl<S: AsyncRead + Unpin> hyper::rt::Read for Io<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: hyper::rt::ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        // hyper's buffer is uninitialized and a `futures` reader takes `&mut [u8]`. Zeroing its
        // unfilled part (8 KiB and more) at every poll, the Pending ones too, was 33k of the
        // gateway's instructions per 4 KiB GET (callgrind); a read lands instead in this
        // thread's scratch buffer, initialized once, and only the bytes read are copied over.
        let want = buf.remaining().min(READ_SCRATCH_BYTES);
        let polled = READ_SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => match Pin::new(&mut self.inner).poll_read(cx, &mut scratch[..want]) {
                Poll::Ready(Ok(n)) => {
                    buf.put_slice(&scratch[..n]);
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            // (A reader that reads another `Io` of this thread while it reads: none does.)
            Err(_) => read_zeroed(&mut self.inner, cx, buf),
        });
        match polled {
            Poll::Ready(Ok(())) => {
                self.progressed();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.idle_for_too_long(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A read straight into hyper's buffer, its unfilled part zeroed first.
fn read_zeroed<S: AsyncRead + Unpin>(inner: &mut S, cx: &mut Context<'_>, mut buf: hyper::rt::ReadBufCursor<'_>) -> Poll<io::Result<()>> {
    // SAFETY: the unfilled part is zeroed before it is handed out as `&mut [u8]` (so no
    // uninitialized byte is ever read), and `advance` counts only bytes the read wrote.
    unsafe {
        let dst = buf.as_mut();
        std::ptr::write_bytes(dst.as_mut_ptr(), 0, dst.len());
        let slice = std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<u8>(), dst.len());
        match Pin::new(inner).poll_read(cx, slice) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for Io<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(cx, polled)
    }
    /// Every stream here takes all slices of a vectored write at once: a TLS stream (rustls
    /// encrypts them all into its records) and a glommio socket (the vendored patch sends them
    /// with one `sendmsg`; glommio 0.9.0 wrote only the first slice per call, so a TLS stream
    /// sent one record per system call). hyper then hands a response's head and body over as
    /// they are instead of first copying the body into its own buffer (1 MiB per call of a large
    /// GET).
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, polled)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending if self.idle_for_too_long(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// A stream of body bytes made on this executor.
pub type LocalStream = Pin<Box<dyn futures_util::Stream<Item = io::Result<Bytes>>>>;

/// A response body: bytes in memory, or a stream of a known length (object data).
pub enum Body {
    Full(Option<Bytes>),
    Stream { stream: LocalStream, left: u64 },
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Full(b) => write!(f, "Body::Full({} bytes)", b.as_ref().map_or(0, Bytes::len)),
            Body::Stream { left, .. } => write!(f, "Body::Stream({left} bytes left)"),
        }
    }
}

impl Body {
    pub fn empty() -> Body {
        Body::Full(None)
    }
    pub fn full(b: impl Into<Bytes>) -> Body {
        let b = b.into();
        Body::Full((!b.is_empty()).then_some(b))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream { stream, left } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                match stream.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(b))) => {
                        if b.len() as u64 > *left {
                            return Poll::Ready(Some(Err(io::Error::other("an object stream gave more bytes than its length"))));
                        }
                        *left -= b.len() as u64;
                        Poll::Ready(Some(Ok(Frame::data(b))))
                    }
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                    // Ended short: an error, so hyper closes the connection rather than let
                    // the client take a cut object for a whole one.
                    Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::other(format!("an object stream ended {left} bytes short"))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_none(),
            Body::Stream { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream { left, .. } => SizeHint::with_exact(*left),
        }
    }
}

/// The next data of a request body (trailers skipped); None at its end.
pub async fn next_data(body: &mut hyper::body::Incoming) -> Result<Option<Bytes>, hyper::Error> {
    loop {
        let frame = std::future::poll_fn(|cx| hyper::body::Body::poll_frame(Pin::new(&mut *body), cx)).await;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(e),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    if !d.is_empty() {
                        return Ok(Some(d));
                    }
                }
            }
        }
    }
}
