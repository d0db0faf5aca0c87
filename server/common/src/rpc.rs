//! Cap'n Proto plumbing shared by the roles: listeners, serving a capability on accepted
//! connections, a connection that redials, and the limits on what a peer may send.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use capnp_rpc::{RpcSystem, rpc_twoparty_capnp, twoparty};
use futures_util::io::AsyncReadExt;
use stratos_schema::om_capnp;

/// Words a peer's message may make the server traverse (Cap'n Proto's amplification guard), and
/// how deeply it may nest: the protocol's limits, defined with the schemas.
pub use stratos_schema::rpc_limits::{NESTING_MAX, TRAVERSAL_WORDS_MAX};

/// Serves `bootstrap` on one accepted connection, on this executor, until the peer hangs up or
/// breaks the protocol (either way only this connection is affected).
pub fn serve_connection(stream: glommio::net::TcpStream, bootstrap: capnp::capability::Client) {
    let _ = stream.set_nodelay(true);
    serve_stream(stream, bootstrap);
}

/// [`serve_connection`] on any byte stream: a TLS stream, say.
pub fn serve_stream(stream: impl futures_util::io::AsyncRead + futures_util::io::AsyncWrite + 'static, bootstrap: capnp::capability::Client) {
    let (reader, writer) = stream.split();
    serve_halves(futures_lite::io::BufReader::new(reader), writer, bootstrap);
}

/// [`serve_stream`] whose calls pass through `gate` (see [`Gate`]): `bootstrap` must be a
/// [`Gated`] server on the same gate, or nothing is counted and the gate never closes.
pub fn serve_stream_gated(stream: impl futures_util::io::AsyncRead + futures_util::io::AsyncWrite + 'static, bootstrap: capnp::capability::Client, gate: Rc<Gate>) {
    let (reader, writer) = stream.split();
    serve_halves(GatedReader { inner: futures_lite::io::BufReader::new(reader), gate }, writer, bootstrap);
}

fn serve_halves(
    reader: impl futures_util::io::AsyncRead + Unpin + 'static, writer: impl futures_util::io::AsyncWrite + Unpin + 'static, bootstrap: capnp::capability::Client,
) {
    let mut options = capnp::message::ReaderOptions::new();
    options.traversal_limit_in_words(Some(TRAVERSAL_WORDS_MAX)).nesting_limit(NESTING_MAX);
    let network = twoparty::VatNetwork::new(reader, coalesced(writer), rpc_twoparty_capnp::Side::Server, options);
    let rpc = RpcSystem::new(small_first_segments(network), Some(bootstrap));
    glommio::spawn_local(async move {
        let _ = rpc.await;
    })
    .detach();
}

/// The calls one client connection has in flight, and the words of their parameters: where
/// either reaches its bound, the connection's next message is not read until a call finishes.
/// Without it a client (authenticated, but perhaps buggy or hostile) that sends calls faster
/// than they complete has each one parsed and held (its parameters stay in memory until it
/// answers: up to 64 MiB a message), so one connection could grow the server without end; with
/// it, the kernel's socket buffers fill and TCP holds the sender back, and the server holds at
/// most `calls_max` calls and about `words_max` words (plus one message) per connection. A
/// call's words are those read since the call before it was let in: its own message's, and
/// any that were not calls.
///
/// The gate sits above the connection's read buffer, and Cap'n Proto's reader asks for exactly
/// one message's bytes at a time, so no message is read past a closed gate. A connection is
/// gated only where nothing its calls wait for arrives on it or on another gated connection
/// that could wait in turn: the OM's and the SCM's callers make no calls back, and a datanode
/// gates its clients' connections but not other datanodes' (chained writes), so a paused read
/// cannot hold up the calls that would open it again.
#[derive(Debug)]
pub struct Gate {
    calls: Cell<usize>,
    words: Cell<usize>,
    calls_max: usize,
    words_max: usize,
    /// Words read since the last call was let in: its message's (and any messages between
    /// that are not calls, such as a `Finish`), counted by the reader rather than by walking
    /// the parameters (which cost ~500 instructions a call under callgrind).
    unclaimed: Cell<usize>,
    reader: RefCell<Option<Waker>>,
}

impl Gate {
    pub fn new(calls_max: usize, words_max: usize) -> Rc<Gate> {
        Rc::new(Gate { calls: Cell::new(0), words: Cell::new(0), calls_max: calls_max.max(1), words_max: words_max.max(1), unclaimed: Cell::new(0), reader: RefCell::new(None) })
    }

    fn closed(&self) -> bool {
        self.calls.get() >= self.calls_max || self.words.get() >= self.words_max
    }

    /// Calls in flight now.
    pub fn calls(&self) -> usize {
        self.calls.get()
    }

    fn enter(self: &Rc<Self>) -> Permit {
        let words = self.unclaimed.replace(0);
        self.calls.set(self.calls.get() + 1);
        self.words.set(self.words.get() + words);
        Permit { gate: self.clone(), words }
    }
}

/// One call in flight; its drop (the call answered, or dropped) may open the gate.
struct Permit {
    gate: Rc<Gate>,
    words: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let g = &self.gate;
        g.calls.set(g.calls.get() - 1);
        g.words.set(g.words.get() - self.words);
        if !g.closed()
            && let Some(w) = g.reader.borrow_mut().take()
        {
            w.wake();
        }
    }
}

struct GatedReader<R> {
    inner: R,
    gate: Rc<Gate>,
}

impl<R: futures_util::io::AsyncRead + Unpin> futures_util::io::AsyncRead for GatedReader<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        if self.gate.closed() {
            let mut waiting = self.gate.reader.borrow_mut();
            if waiting.is_none() {
                stratos_client::wire::count_read_paused();
            }
            *waiting = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = read {
            self.gate.unclaimed.set(self.gate.unclaimed.get() + n.div_ceil(8));
        }
        read
    }
}

/// A capability server `S` whose every call holds a [`Gate`]'s permit until it answers.
pub struct Gated<S> {
    pub server: Rc<S>,
    pub gate: Rc<Gate>,
}

impl<S> std::fmt::Debug for Gated<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gated").field("gate", &self.gate).finish_non_exhaustive()
    }
}

impl<S, C> std::fmt::Debug for GatedDispatch<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<S> Gated<S> {
    pub fn new(server: S, gate: Rc<Gate>) -> Gated<S> {
        Gated { server: Rc::new(server), gate }
    }
}

/// One connection's capability: `server` behind a new [`Gate`] of `calls_max` calls in flight
/// and one largest message's words ([`TRAVERSAL_WORDS_MAX`]). The gate goes to the connection's
/// reader ([`serve_stream_gated`], or [`accept_loop`]'s maker), so that the bound is the reads'.
pub fn gated_client<S, C>(server: S, calls_max: usize) -> (C, Rc<Gate>)
where
    C: capnp::capability::FromServer<Gated<S>>,
{
    let gate = Gate::new(calls_max, TRAVERSAL_WORDS_MAX);
    (capnp_rpc::new_client(Gated::new(server, gate.clone())), gate)
}

/// What serves a [`Gated`] service of interface `C` (its client type): the generated dispatch,
/// inside a permit.
pub struct GatedDispatch<S, C>(Rc<Gated<S>>, std::marker::PhantomData<C>);

impl<S, C> Clone for GatedDispatch<S, C> {
    fn clone(&self) -> Self {
        GatedDispatch(self.0.clone(), std::marker::PhantomData)
    }
}

impl<S, C> std::ops::Deref for GatedDispatch<S, C> {
    type Target = Gated<S>;
    fn deref(&self) -> &Gated<S> {
        &self.0
    }
}

impl<S: 'static, C: capnp::capability::FromServer<S> + 'static> capnp::capability::Server for GatedDispatch<S, C> {
    fn dispatch_call(
        self, interface_id: u64, method_id: u16, params: capnp::capability::Params<capnp::any_pointer::Owned>, results: capnp::capability::Results<capnp::any_pointer::Owned>,
    ) -> capnp::capability::DispatchCallResult {
        let permit = self.0.gate.enter();
        let inner = C::from_server(self.0.server.clone());
        let call = capnp::capability::Server::dispatch_call(inner, interface_id, method_id, params, results);
        let promise = call.promise;
        capnp::capability::DispatchCallResult::new(
            capnp::capability::Promise::from_future(async move {
                let answered = promise.await;
                drop(permit);
                answered
            }),
            call.is_streaming,
        )
    }

    fn as_ptr(&self) -> usize {
        Rc::as_ptr(&self.0.server) as usize
    }
}

/// `capnp_rpc::new_client(Gated::new(server, gate))` ([`gated_client`]) for each interface whose servers are
/// gated: the OM's for clients, the datanode's and the SCM's.
macro_rules! gated_interface {
    ($($($interface:ident)::+);*) => {$(
        impl<S: $($interface)::+::Server + 'static> capnp::capability::FromServer<Gated<S>> for $($interface)::+::Client {
            type Dispatch = GatedDispatch<S, $($interface)::+::Client>;
            fn from_server(s: Rc<Gated<S>>) -> GatedDispatch<S, $($interface)::+::Client> {
                GatedDispatch(s, std::marker::PhantomData)
            }
        }
    )*};
}
gated_interface!(om_capnp::ozone_manager; stratos_schema::datanode_capnp::datanode; stratos_schema::scm_capnp::storage_container_manager);

/// What this executor's Cap'n Proto connections flushed and sent (for `/prom`).
pub use stratos_client::wire::{Counters as WireCounters, thread_counters as wire_counters};

/// Every RPC connection's messages start small (see [`stratos_client::wire::FIRST_SEGMENT_WORDS`]).
pub use stratos_client::wire::small_first_segments;

/// The writing half of a Cap'n Proto connection on this executor: what one turn of the
/// executor writes leaves in one send (see [`stratos_client::wire`]).
pub fn coalesced<W: futures_util::io::AsyncWrite + Unpin + 'static>(writer: W) -> stratos_client::wire::CoalescedWriter<W> {
    stratos_client::wire::CoalescedWriter::new(writer, |task| {
        glommio::spawn_local(task).detach();
    })
}

/// Binds a TCP listener that this process alone holds, for a glommio executor.
///
/// glommio's own `TcpListener::bind` sets SO_REUSEPORT, under which a second process of the
/// same user (a node still running, a port given twice) binds the same address without an
/// error and the kernel splits new connections between the two processes. std's bind sets
/// SO_REUSEADDR only (a restart is not held up by connections in TIME_WAIT), so a port that
/// anyone else listens on fails here, with a message that says so.
pub fn listen_exclusive(addr: impl std::net::ToSocketAddrs) -> std::io::Result<glommio::net::TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let addrs: Vec<std::net::SocketAddr> = addr.to_socket_addrs()?.collect();
    let std = std::net::TcpListener::bind(&addrs[..]).map_err(|e| in_use(e, addrs.first().map_or(0, |a| a.port())))?;
    // std listens with a short backlog; a burst of client connections wants a longer one
    // (the kernel caps it at net.core.somaxconn). Calling listen again only changes it.
    // SAFETY: listen on a socket we own.
    unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&std), 1024) };
    // SAFETY: the fd is a bound, listening TCP socket that `std` owned alone.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(std.into_raw_fd()) })
}

/// Listens on an address that several executors of this process share (the OM's client
/// port, claimed first with [`claim_shared_port`]): SO_REUSEPORT, so the kernel spreads new
/// connections over the executors, and SO_REUSEADDR as well. glommio's own bind sets only the
/// first; the connections it accepts then left TIME_WAIT entries without SO_REUSEADDR, and
/// for about 60 s after a kill the next start's claim failed with "address in use" although
/// nothing listened (issue 19). A listener of another process is still refused: SO_REUSEADDR
/// never lets two sockets listen on one port, and the claim has no SO_REUSEPORT.
pub fn listen_shared(addr: std::net::SocketAddr) -> std::io::Result<glommio::net::TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM.cloexec(), None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into()).map_err(|e| in_use(e, addr.port()))?;
    s.listen(1024)?;
    // SAFETY: the fd is a bound, listening TCP socket that `s` owned alone.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(s.into_raw_fd()) })
}

/// For an address that several executors of this process share with SO_REUSEPORT (the OM's
/// client port, so that the kernel spreads connections over them): fails as
/// [`listen_exclusive`] would if another process listens there, and otherwise gives the
/// address with its port (port 0 resolved to a free one) for the executors to bind.
pub fn claim_shared_port(addr: std::net::SocketAddr) -> std::io::Result<std::net::SocketAddr> {
    let probe = std::net::TcpListener::bind(addr).map_err(|e| in_use(e, addr.port()))?;
    probe.local_addr()
}

/// "Address in use", with what holds the port: a listener (another process), or only
/// connections of an earlier process in TIME_WAIT (from the kernel's socket table).
fn in_use(e: std::io::Error, port: u16) -> std::io::Error {
    if e.kind() != std::io::ErrorKind::AddrInUse {
        return e;
    }
    let why = match port_state(port) {
        Some(true) => "another process listens there (a node still running?)",
        Some(false) => "no process listens there, but connections of an earlier process hold the port (TIME_WAIT); it frees within a minute",
        None => "another process holds it",
    };
    std::io::Error::new(e.kind(), format!("{e}: {why}"))
}

/// Whether a socket listens on `port` (true), or the port is held otherwise (false), by
/// /proc/net/tcp and tcp6; `None` where they cannot be read.
fn port_state(port: u16) -> Option<bool> {
    let mut seen = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        seen = true;
        // Lines: "sl local_address rem_address st …"; addresses are HEX_IP:HEX_PORT, st 0A = LISTEN.
        let listening = text.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port) && f[3] == "0A"
        });
        if listening {
            return Some(true);
        }
    }
    seen.then_some(false)
}

/// For the servers' crates, which reach the client library through this one.
pub use stratos_client::tls::under_tls;

/// A TLS handshake that takes longer than this is dropped (a peer that connects and says
/// nothing holds no task for long).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS handshake of an accepted connection, as a server that requires a client certificate
/// of the cluster CA (rustls checks the chain and the dates), and the identity the certificate
/// names. `None` when refused; the log says why, naming `what` (the listener) and the peer, and
/// rustls has told the peer with an alert.
pub async fn accept_tls<S>(stream: S, config: std::sync::Arc<rustls::ServerConfig>, what: &str, peer: &str) -> Option<(futures_rustls::server::TlsStream<S>, crate::tls::Identity)>
where
    S: futures_util::io::AsyncRead + futures_util::io::AsyncWrite + Unpin,
{
    let acceptor = futures_rustls::TlsAcceptor::from(config);
    let tls = match glommio::timer::timeout(TLS_HANDSHAKE_TIMEOUT, async { Ok(acceptor.accept(stream).await) }).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let why = if e.to_string().contains("InvalidContentType") { "it does not speak TLS (a peer without the cluster's CA and certificate?)".to_string() } else { e.to_string() };
            eprintln!("{what}: TLS peer {peer} refused: {why}");
            return None;
        }
        Err(_) => {
            eprintln!("{what}: TLS peer {peer}: no handshake within {TLS_HANDSHAKE_TIMEOUT:?}");
            return None;
        }
    };
    let der = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec());
    match der.map(|d| crate::tls::identity_of(&d)) {
        Some(Ok(id)) => Some((tls, id)),
        Some(Err(why)) => {
            eprintln!("{what}: TLS peer {peer} refused: {why}");
            None
        }
        None => {
            eprintln!("{what}: TLS peer {peer} refused: no certificate");
            None
        }
    }
}

/// Accepts connections on `listener` forever, serving each with a capability from `make`,
/// which is told who the peer is: with `tls`, each connection after its handshake, with the
/// identity its certificate names; without, `None` (plain TCP, nobody proven). Where `make`
/// gives a [`Gate`] too (its capability a [`Gated`] server on it), the connection is read only
/// while the gate is open.
pub async fn accept_loop(
    listener: glommio::net::TcpListener,
    what: &'static str,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    make: impl Fn(Option<crate::tls::Identity>) -> (capnp::capability::Client, Option<Rc<Gate>>) + 'static,
) {
    let make = std::rc::Rc::new(make);
    loop {
        match listener.accept().await {
            Ok(stream) => match &tls {
                None => {
                    let _ = stream.set_nodelay(true);
                    serve_made(stream, make(None));
                }
                Some(config) => {
                    let (config, make) = (config.clone(), make.clone());
                    glommio::spawn_local(async move {
                        let _ = stream.set_nodelay(true);
                        let peer = stream.peer_addr().map_or_else(|_| "?".into(), |a| a.to_string());
                        // The SCM's and datanodes' peers are few and send large messages.
                        if let Some((tls, id)) = accept_tls(under_tls(stream), config, what, &peer).await {
                            serve_made(tls, make(Some(id)));
                        }
                    })
                    .detach();
                }
            },
            Err(e) => {
                eprintln!("{what}: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn serve_made(stream: impl futures_util::io::AsyncRead + futures_util::io::AsyncWrite + 'static, (client, gate): (capnp::capability::Client, Option<Rc<Gate>>)) {
    match gate {
        Some(gate) => serve_stream_gated(stream, client, gate),
        None => serve_stream(stream, client),
    }
}

/// A connection to one service address, made on first use and dropped after an error (the next
/// `get` dials again). The SCM client of the OM's cores and of the datanode.
pub struct Redial<C> {
    address: String,
    /// This process's node certificate, when the cluster is secured.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    conn: std::cell::RefCell<Option<C>>,
}

impl<C> std::fmt::Debug for Redial<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redial").field("address", &self.address).finish()
    }
}

impl<C: capnp::capability::FromClientHook + Clone> Redial<C> {
    pub fn new(address: &str, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Self {
        Self { address: address.to_string(), tls, conn: std::cell::RefCell::new(None) }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub async fn get(&self) -> Result<C, stratos_client::ClientError> {
        if let Some(c) = self.conn.borrow().clone() {
            return Ok(c);
        }
        let c: C = stratos_client::connect_tls_on(&stratos_client::runtime::Glommio, &self.address, self.tls.clone()).await?;
        *self.conn.borrow_mut() = Some(c.clone());
        Ok(c)
    }

    /// After an error: the next `get` makes a new connection.
    pub fn forget(&self) {
        *self.conn.borrow_mut() = None;
    }
}

/// Why a text field of a request was refused (see [`text`]).
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error(transparent)]
    Capnp(#[from] capnp::Error),
    #[error("{what} is {len} bytes, at most {max_bytes}")]
    TooLong { what: String, len: usize, max_bytes: usize },
    #[error("{what} is not UTF-8")]
    NotUtf8 { what: String },
}

/// A text field of a request, refused if longer than `max_bytes` or not UTF-8 (`what` names
/// it in the error).
pub fn text(t: capnp::Result<capnp::text::Reader<'_>>, what: &str, max_bytes: usize) -> Result<String, TextError> {
    let t = t?;
    if t.len() > max_bytes {
        return Err(TextError::TooLong { what: what.to_string(), len: t.len(), max_bytes });
    }
    t.to_str().map(str::to_string).map_err(|_| TextError::NotUtf8 { what: what.to_string() })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use futures_util::io::AsyncRead;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    static BYTES: [u8; 256] = [7; 256];

    /// A gate of these bounds, a reader of 256 bytes through it, and a waker that counts.
    fn gated(calls_max: usize, words_max: usize) -> (Rc<Gate>, GatedReader<&'static [u8]>, Arc<Count>) {
        let gate = Gate::new(calls_max, words_max);
        (gate.clone(), GatedReader { inner: &BYTES[..], gate }, Arc::new(Count(AtomicUsize::new(0))))
    }

    fn read(r: &mut GatedReader<&[u8]>, cx: &mut Context<'_>, n: usize) -> Poll<usize> {
        let mut buf = vec![0u8; n];
        Pin::new(r).poll_read(cx, &mut buf).map(|r| r.expect("a slice reads"))
    }

    /// The gate closes at its bound on calls, stops the reader there, and the answer that takes
    /// the calls under the bound again wakes it (once), and no sooner.
    #[test]
    fn a_gate_full_of_calls_pauses_the_reader_until_one_answers() {
        let (gate, mut r, woken) = gated(2, 1 << 20);
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert_eq!(read(&mut r, &mut cx, 16), Poll::Ready(16));
        let first = gate.enter();
        assert_eq!(read(&mut r, &mut cx, 16), Poll::Ready(16));
        let second = gate.enter();
        assert_eq!(gate.calls(), 2);
        let paused = stratos_client::wire::thread_counters().reads_paused;
        assert_eq!(read(&mut r, &mut cx, 16), Poll::Pending, "two calls in flight: the bound");
        assert_eq!(read(&mut r, &mut cx, 16), Poll::Pending);
        assert_eq!(stratos_client::wire::thread_counters().reads_paused, paused + 1, "one pause, counted once");
        drop(first);
        assert_eq!(woken.0.load(Ordering::Relaxed), 1, "an answer under the bound wakes the reader");
        assert_eq!(read(&mut r, &mut cx, 16), Poll::Ready(16));
        drop(second);
        assert_eq!(woken.0.load(Ordering::Relaxed), 1, "nobody was waiting");
        assert_eq!(gate.calls(), 0);
    }

    /// An SCM whose `status` answers once `open` is set.
    struct Held {
        open: Rc<Cell<bool>>,
        waiting: Rc<RefCell<Vec<Waker>>>,
    }

    impl stratos_schema::scm_capnp::storage_container_manager::Server for Held {
        async fn status(
            self: capnp::capability::Rc<Self>, _: stratos_schema::scm_capnp::storage_container_manager::StatusParams,
            mut results: stratos_schema::scm_capnp::storage_container_manager::StatusResults,
        ) -> Result<(), capnp::Error> {
            futures_util::future::poll_fn(|cx| {
                if self.open.get() {
                    return Poll::Ready(());
                }
                self.waiting.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            })
            .await;
            results.get().set_json("{}");
            Ok(())
        }
    }

    /// A gated connection of another interface than the OM's (the SCM's, as `accept_loop`
    /// serves it) over a real socket: of 8 calls pipelined at once, 2 (the bound) are read and
    /// dispatched while they wait, the reader pauses, and all 8 answer once the first do.
    #[test]
    fn a_gated_connection_reads_no_call_past_its_bound() {
        use stratos_schema::scm_capnp::storage_container_manager as scm;
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(|| async move {
                let (server_end, client_end) = glommio::net::UnixStream::pair().expect("socket pair");
                let (open, waiting) = (Rc::new(Cell::new(false)), Rc::new(RefCell::new(Vec::new())));
                let gate = Gate::new(2, 1 << 20);
                let served: scm::Client = capnp_rpc::new_client(Gated::new(Held { open: open.clone(), waiting: waiting.clone() }, gate.clone()));
                serve_made(server_end, (served.client, Some(gate.clone())));
                let (reader, writer) = client_end.split();
                let network = twoparty::VatNetwork::new(futures_lite::io::BufReader::new(reader), writer, rpc_twoparty_capnp::Side::Client, capnp::message::ReaderOptions::new());
                let mut rpc = RpcSystem::new(Box::new(network), None);
                let scm: scm::Client = rpc.bootstrap(rpc_twoparty_capnp::Side::Server);
                glommio::spawn_local(rpc).detach();
                let paused = stratos_client::wire::thread_counters().reads_paused;
                let calls: Vec<_> = (0..8).map(|_| scm.status_request().send().promise).collect();
                glommio::timer::sleep(Duration::from_millis(200)).await;
                assert_eq!(gate.calls(), 2, "two calls read and waiting, the rest unread");
                assert_eq!(waiting.borrow().len(), 2, "only the calls let in were dispatched");
                assert!(stratos_client::wire::thread_counters().reads_paused > paused, "the pause is counted");
                open.set(true);
                waiting.borrow_mut().drain(..).for_each(Waker::wake);
                for answer in futures_util::future::join_all(calls).await {
                    assert_eq!(answer.expect("answered").get().expect("results").get_json().expect("json").to_str().expect("utf-8"), "{}");
                }
                assert_eq!(gate.calls(), 0);
            })
            .expect("executor")
            .join()
            .expect("join");
    }

    /// A call weighs the words read since the call before it; the gate closes on words too, and
    /// opens when the heavy call answers.
    #[test]
    fn a_gate_full_of_words_pauses_the_reader_until_they_are_answered() {
        let (gate, mut r, woken) = gated(100, 10);
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert_eq!(read(&mut r, &mut cx, 8), Poll::Ready(8));
        let light = gate.enter();
        assert_eq!(read(&mut r, &mut cx, 40), Poll::Ready(40));
        assert_eq!(read(&mut r, &mut cx, 41), Poll::Ready(41));
        let heavy = gate.enter();
        assert_eq!((light.words, heavy.words), (1, 11), "41 bytes are 6 words, and 5 before them");
        assert_eq!(read(&mut r, &mut cx, 8), Poll::Pending, "12 words in flight, at most 10");
        drop(light);
        assert_eq!(read(&mut r, &mut cx, 8), Poll::Pending, "11 words still");
        assert_eq!(woken.0.load(Ordering::Relaxed), 0);
        drop(heavy);
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
        assert_eq!(read(&mut r, &mut cx, 8), Poll::Ready(8));
    }
}
