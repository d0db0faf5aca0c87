//! The Raft transport between OM nodes, sending side: connections from this executor to each
//! peer node (to the peer's executor that owns the same groups), carrying the messages of
//! every group of this executor, many per call.
//!
//! Batching: each [`Link`] has a queue; its pump takes everything queued (up to
//! [`BATCH_MESSAGES_MAX`] messages or [`BATCH_BYTES_MAX`] bytes) into one `send` call and keeps
//! up to [`CALLS_IN_FLIGHT_MAX`] calls in flight. With S groups on a core, their heartbeats and
//! appends to a peer travel in one round trip, not S.
//!
//! Two links per peer, one per [`Lane`]. The receiver answers a call once every message in it
//! is done, so a message that waits on the cluster (a forwarded write waits for its commit, a
//! read index for a heartbeat round) would hold back the answers of every message beside it.
//! If those were openraft's appends, a cycle could form: node A's forwarded write waits for a
//! commit that needs node B's append answer, which rides in a call beside B's forwarded write,
//! which waits for a commit that needs A's append answer (measured: `bench/forward_cross.sh`).
//! So openraft's own messages, which the receiver answers from its own state and disk, go on
//! [`Lane::Raft`]; everything that may wait on other nodes or on a large install goes on
//! [`Lane::Waits`], and never delays a heartbeat or an append.
//!
//! A connection that fails answers every message it carried with the error (openraft retries
//! with its own backoff); the next message dials again. Each caller bounds its wait by the
//! deadline openraft gives (`RPCOption`), so a peer that stops answering without closing the
//! connection (a partition, SIGSTOP) costs a timeout, not a hang; and a call that gets no
//! answer within its lane's [`Lane::call_timeout`] drops the connection, so a connection that
//! died silently cannot hold the link's call slots for ever.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use capnp_rpc::{RpcSystem, rpc_twoparty_capnp, twoparty};
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use stratos_schema::raft_capnp::raft_transport;
use tokio::sync::oneshot;

use crate::group::local_event::Event;

/// The first bytes of a Raft connection (see schema/capnp/raft.capnp): magic, the sender's
/// executor count, the executor it wants, the sender's key-shard count, its flags.
pub const HELLO_MAGIC: &[u8; 8] = b"STRRAFT3";
pub const HELLO_BYTES: usize = 24;
/// The hello's flag for a sender that goes on with a TLS handshake once the hello is accepted.
pub const HELLO_TLS: u32 = 1;
/// The longest refusal a node sends back in answer to a hello.
pub const REFUSAL_BYTES_MAX: usize = 1024;
pub const BATCH_MESSAGES_MAX: usize = 1024;
pub const BATCH_BYTES_MAX: usize = 16 << 20;
pub const CALLS_IN_FLIGHT_MAX: usize = 8;
/// A snapshot travels in chunks of this size.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 << 20;
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// A TLS handshake with a peer (a few round trips and signatures) on a loaded host.
const TLS_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a peer as Cap'n Proto runs over it: TCP, or TLS over TCP.
pub type Stream = std::pin::Pin<Box<dyn Duplex>>;

/// A byte stream in the `futures` IO traits (plain TCP or TLS).
pub trait Duplex: futures_util::io::AsyncRead + futures_util::io::AsyncWrite + 'static {}

impl<T: futures_util::io::AsyncRead + futures_util::io::AsyncWrite + 'static> Duplex for T {}

/// A node's addresses, as its Raft membership records them (`BasicNode::addr`):
/// `raft=HOST:PORT rpc=HOST:PORT`. A bare `HOST:PORT` (a single-node data directory of an
/// earlier build) is a Raft address with no known RPC address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    pub raft: String,
    pub rpc: String,
}

impl PeerAddr {
    pub fn parse(addr: &str) -> PeerAddr {
        let mut p = PeerAddr { raft: String::new(), rpc: String::new() };
        for part in addr.split_whitespace() {
            match part.split_once('=') {
                Some(("raft", v)) => p.raft = v.to_string(),
                Some(("rpc", v)) => p.rpc = v.to_string(),
                _ if p.raft.is_empty() => p.raft = part.to_string(),
                _ => {}
            }
        }
        p
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "raft={} rpc={}", self.raft, self.rpc)
    }
}

/// Which connection to a peer a message travels on (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// openraft's messages: answered by the receiver from its own state and log (a vote or an
    /// append waits for its fsync at most).
    Raft,
    /// Messages whose answer may wait on the cluster or on a long local step: forwarded writes,
    /// read indexes, snapshot chunks.
    Waits,
}

impl Lane {
    /// How long a call on this lane may go unanswered before its connection is taken for dead
    /// and dropped (every message in the call is answered with the error; the next dials
    /// again). Far above any answer the peer legitimately takes: an append waits for one fsync,
    /// a forwarded write for at most two the OM's `PEER_CALL_TIMEOUT`s (meta, then
    /// commit), a snapshot chunk for the install, which its sender allows 30 s.
    pub fn call_timeout(self) -> Duration {
        match self {
            Lane::Raft => Duration::from_secs(10),
            Lane::Waits => Duration::from_secs(60),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Lane::Raft => "Raft",
            Lane::Waits => "forwarding",
        }
    }
}

/// One message to a peer's group (sent by [`Transport::call`], parsed by the receiving side).
#[derive(Debug)]
pub enum Out {
    Vote(Vec<u8>),
    PreVote(Vec<u8>),
    Append(Vec<u8>),
    Transfer(Vec<u8>),
    ReadIndex,
    Forward { proposal: Vec<u8>, fill: bool, min_meta: u64 },
    Chunk { vote: Vec<u8>, id: String, offset: u64, data: Vec<u8>, done: bool },
}

impl Out {
    pub fn lane(&self) -> Lane {
        match self {
            Out::Vote(_) | Out::PreVote(_) | Out::Append(_) | Out::Transfer(_) => Lane::Raft,
            Out::ReadIndex | Out::Forward { .. } | Out::Chunk { .. } => Lane::Waits,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Out::Vote(b) | Out::PreVote(b) | Out::Append(b) | Out::Transfer(b) => b.len(),
            Out::ReadIndex => 0,
            Out::Forward { proposal, .. } => proposal.len(),
            Out::Chunk { data, .. } => data.len(),
        }
    }
}

/// The peer's answer: openraft's response bytes, or why there is none.
pub type Reply = Result<Vec<u8>, String>;

type Pending = (u32, Out, oneshot::Sender<Reply>);

/// The sending side of this executor: a [`Link`] per peer node and [`Lane`].
pub struct Transport {
    pub me: u64,
    /// This node's executor count, this executor's index and the key-shard count (sent in
    /// the hello, so that a node of another layout is refused at once, with the reason).
    pub cores: u32,
    pub core: u32,
    pub shards: u32,
    links: RefCell<HashMap<(u64, Lane), Rc<Link>>>,
    /// This node's OM certificate as a TLS client, when the cluster is secured: every
    /// connection to a peer is TLS once the hello is accepted, and the peer must prove an OM
    /// certificate of the cluster's CA (see [`connect`]).
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Per lane (`Lane as usize`): [`Lane::call_timeout`] (shorter in tests).
    call_timeouts: [Duration; 2],
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("me", &self.me).field("core", &self.core).finish()
    }
}

impl Transport {
    pub fn new(me: u64, cores: u32, core: u32, shards: u32, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Rc<Transport> {
        Rc::new(Transport { me, cores, core, shards, links: RefCell::default(), tls, call_timeouts: [Lane::Raft.call_timeout(), Lane::Waits.call_timeout()] })
    }

    fn hello(&self) -> Hello {
        Hello { cores: self.cores, core: self.core, shards: self.shards, flags: if self.tls.is_some() { HELLO_TLS } else { 0 } }
    }

    /// Dials node `target` at `raft_addr` once, says hello and reads the answer, then hangs
    /// up: whether that node would take this node's Raft traffic. Used before adding a node,
    /// so that a node of another layout is refused with the reason rather than by a timeout.
    pub async fn check_peer(&self, target: u64, raft_addr: &str) -> Result<(), PeerError> {
        let mut stream = connect(target, raft_addr, &self.hello(), self.tls.clone()).await?;
        let _ = stream.close().await;
        Ok(())
    }

    /// Sends `out` to group `group` on node `target` at `raft_addr`, and waits for the answer.
    pub async fn call(self: &Rc<Self>, target: u64, raft_addr: &str, group: u32, out: Out) -> Reply {
        if raft_addr.is_empty() {
            return Err(format!("node {target} has no known Raft address"));
        }
        if crate::faults::cut(self.me, target) {
            return Err(format!("node {target} is cut off from node {} ({} fault injection)", self.me, crate::faults::ENV));
        }
        let lane = out.lane();
        let link = {
            let mut links = self.links.borrow_mut();
            let l = links.entry((target, lane)).or_insert_with(|| Link::start(self, target, lane, raft_addr));
            if l.addr != raft_addr {
                // The node moved (membership changed its address): a new link.
                l.closed.set(true);
                l.wake.notify();
                *l = Link::start(self, target, lane, raft_addr);
            }
            l.clone()
        };
        let (tx, rx) = oneshot::channel();
        link.queue.borrow_mut().push_back((group, out, tx));
        link.wake.notify();
        rx.await.unwrap_or_else(|_| Err(format!("the link to node {target} closed")))
    }
}

struct Link {
    target: u64,
    lane: Lane,
    call_timeout: Duration,
    addr: String,
    me: u64,
    hello: Hello,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// The last refusal logged, so that a peer refusing every dial is logged once.
    refused: RefCell<String>,
    /// This executor, for the log lines.
    core: u32,
    /// Since when dials or calls fail (logged once when it starts and once when it ends, not
    /// per attempt: a peer that is down is dialed every 50 ms).
    failing_since: Cell<Option<std::time::Instant>>,
    failures: Cell<u64>,
    /// Whether the current run of failures was logged (after [`LINK_FAILURE_QUIET`]).
    reported: Cell<bool>,
    queue: RefCell<VecDeque<Pending>>,
    wake: Event,
    conn: RefCell<Option<Rc<Conn>>>,
    in_flight: Cell<usize>,
    closed: Cell<bool>,
}

/// How long a link may fail before it is logged (peers starting together refuse each other
/// for about a second).
pub const LINK_FAILURE_QUIET: std::time::Duration = std::time::Duration::from_secs(3);

impl Link {
    fn start(t: &Transport, target: u64, lane: Lane, addr: &str) -> Rc<Link> {
        let link = Rc::new(Link {
            target,
            lane,
            call_timeout: t.call_timeouts[lane as usize],
            addr: addr.to_string(),
            me: t.me,
            hello: t.hello(),
            tls: t.tls.clone(),
            refused: RefCell::default(),
            core: t.core,
            failing_since: Cell::new(None),
            failures: Cell::new(0),
            reported: Cell::new(false),
            queue: RefCell::default(),
            wake: Event::default(),
            conn: RefCell::new(None),
            in_flight: Cell::new(0),
            closed: Cell::new(false),
        });
        glommio::spawn_local(Link::pump(link.clone())).detach();
        link
    }

    /// "om node N core C: LANE link to node T at ADDR", for log lines.
    fn describe(&self) -> String {
        format!("om node {} core {}: {} link to node {} at {}", self.me, self.core, self.lane.name(), self.target, self.addr)
    }

    /// A link fails while its peer starts (three nodes started together refuse each other for
    /// a moment: 14 lines at every normal 3-node start before). So a run of failures is logged
    /// once, and only when it lasts [`LINK_FAILURE_QUIET`]: then it is news.
    fn note_failure(&self, why: &str) {
        let since = *self.failing_since.get().get_or_insert_with(std::time::Instant::now);
        self.failing_since.set(Some(since));
        self.failures.set(self.failures.get() + 1);
        if !self.reported.get() && since.elapsed() >= LINK_FAILURE_QUIET {
            self.reported.set(true);
            eprintln!("{} has failed for {:.1?} ({} attempts): {why}", self.describe(), since.elapsed(), self.failures.get());
        }
    }

    fn note_success(&self) {
        if let Some(since) = self.failing_since.take()
            && self.reported.replace(false)
        {
            eprintln!("{} works again after {:.1?} ({} failed attempts)", self.describe(), since.elapsed(), self.failures.get());
        }
        self.failures.set(0);
    }

    fn fail_queued(&self, why: &str) {
        for (_, _, tx) in self.queue.borrow_mut().drain(..) {
            let _ = tx.send(Err(why.to_string()));
        }
    }

    async fn dial(&self) -> Result<Rc<Conn>, PeerError> {
        let stream = connect(self.target, &self.addr, &self.hello, self.tls.clone()).await?;
        let (reader, writer) = stream.split();
        let mut options = capnp::message::ReaderOptions::new();
        options.traversal_limit_in_words(Some(stratos_common::rpc::TRAVERSAL_WORDS_MAX)).nesting_limit(stratos_common::rpc::NESTING_MAX);
        let network = twoparty::VatNetwork::new(futures_lite::io::BufReader::new(reader), stratos_common::rpc::coalesced(writer), rpc_twoparty_capnp::Side::Client, options);
        let mut rpc = RpcSystem::new(stratos_common::rpc::small_first_segments(network), None);
        let client: raft_transport::Client = rpc.bootstrap(rpc_twoparty_capnp::Side::Server);
        let disconnector = RefCell::new(Some(rpc.get_disconnector()));
        glommio::spawn_local(async move {
            let _ = rpc.await;
        })
        .detach();
        Ok(Rc::new(Conn { client, disconnector }))
    }

    /// Forgets `conn` after a call on it failed, unless the link already dialed anew (the other
    /// calls that were in flight on a broken connection fail too, later, and must not drop its
    /// successor); `hang_up` also closes it (a call went unanswered: the peer may never close it).
    fn drop_conn(&self, conn: &Rc<Conn>, hang_up: bool) {
        let mut current = self.conn.borrow_mut();
        if current.as_ref().is_some_and(|c| Rc::ptr_eq(c, conn)) {
            *current = None;
        }
        if hang_up && let Some(d) = conn.disconnector.borrow_mut().take() {
            glommio::spawn_local(async move {
                let _ = d.await;
            })
            .detach();
        }
    }

    async fn pump(self: Rc<Self>) {
        loop {
            let listener = self.wake.listen();
            if self.closed.get() {
                self.fail_queued("the link was replaced");
                return;
            }
            if self.queue.borrow().is_empty() || self.in_flight.get() >= CALLS_IN_FLIGHT_MAX {
                listener.await;
                continue;
            }
            let existing = self.conn.borrow().clone();
            let conn = match existing {
                Some(c) => c,
                None => match self.dial().await {
                    Ok(c) => {
                        self.refused.borrow_mut().clear();
                        *self.conn.borrow_mut() = Some(c.clone());
                        c
                    }
                    Err(PeerError::Unreachable(e)) => {
                        // Answer what waits now (openraft backs off), then pause before the
                        // next dial so a dead peer costs little.
                        self.note_failure(&e);
                        self.fail_queued(&e);
                        glommio::timer::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    Err(PeerError::Refused(e)) => {
                        // A refusal does not heal by itself (another layout, another build):
                        // say it once, and dial seldom.
                        if *self.refused.borrow() != e {
                            eprintln!("{}: {e}", stratos_common::process::who());
                            *self.refused.borrow_mut() = e.clone();
                        }
                        self.fail_queued(&e);
                        glommio::timer::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            let mut batch = Vec::new();
            let mut bytes = 0;
            {
                let mut q = self.queue.borrow_mut();
                while let Some(front) = q.front() {
                    let b = front.1.bytes();
                    if !batch.is_empty() && (batch.len() >= BATCH_MESSAGES_MAX || bytes + b > BATCH_BYTES_MAX) {
                        break;
                    }
                    bytes += b;
                    batch.push(q.pop_front().expect("front exists"));
                }
            }
            self.in_flight.set(self.in_flight.get() + 1);
            let link = self.clone();
            glommio::spawn_local(async move {
                let limit = link.call_timeout;
                let (result, hang_up) = match glommio::timer::timeout(limit, async { Ok(link.send(&conn.client, &mut batch).await) }).await {
                    Ok(r) => (r, false),
                    Err(_) => (Err(format!("node {} at {} left a call unanswered for {limit:?}; the connection is taken for dead and dialed anew", link.target, link.addr)), true),
                };
                match &result {
                    Ok(()) => link.note_success(),
                    Err(e) => link.note_failure(e),
                }
                if let Err(e) = &result {
                    link.drop_conn(&conn, hang_up);
                    for (_, _, tx) in batch.drain(..) {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
                link.in_flight.set(link.in_flight.get() - 1);
                link.wake.notify();
            })
            .detach();
        }
    }

    /// One `send` call; on success every message of `batch` has been answered (and drained).
    async fn send(&self, client: &raft_transport::Client, batch: &mut Vec<Pending>) -> Result<(), String> {
        let mut req = client.send_request();
        req.get().set_from_node(self.me);
        {
            let mut list = req.get().init_messages(batch.len() as u32);
            for (i, (group, out, _)) in batch.iter().enumerate() {
                let mut m = list.reborrow().get(i as u32);
                m.set_group_id(*group);
                match out {
                    Out::Vote(b) => m.set_vote(b),
                    Out::PreVote(b) => m.set_pre_vote(b),
                    Out::Append(b) => m.set_append_entries(b),
                    Out::Transfer(b) => m.set_transfer_leader(b),
                    Out::ReadIndex => m.set_read_index(()),
                    Out::Forward { proposal, fill, min_meta } => {
                        let mut f = m.init_forward();
                        f.set_proposal(proposal);
                        f.set_fill(*fill);
                        f.set_min_meta(*min_meta);
                    }
                    Out::Chunk { vote, id, offset, data, done } => {
                        let mut c = m.init_install_snapshot();
                        c.set_vote(vote);
                        c.set_snapshot_id(id);
                        c.set_offset(*offset);
                        c.set_data(data);
                        c.set_done(*done);
                    }
                }
            }
        }
        let err = |e: capnp::Error| format!("node {} at {}: {}", self.target, self.addr, e.extra);
        let reply = req.send().promise.await.map_err(err)?;
        let replies = reply.get().and_then(|r| r.get_replies()).map_err(err)?;
        if replies.len() as usize != batch.len() {
            return Err(format!("node {} answered {} of {} messages", self.target, replies.len(), batch.len()));
        }
        for (r, (_, _, tx)) in replies.iter().zip(batch.drain(..)) {
            use stratos_schema::raft_capnp::group_reply::Which;
            let answer = match r.which() {
                Ok(Which::Ok(b)) => b.map(|b| b.to_vec()).map_err(|e| e.to_string()),
                Ok(Which::Error(t)) => Err(t.ok().and_then(|t| t.to_str().ok()).unwrap_or("an unreadable error").to_string()),
                Err(e) => Err(format!("an unknown reply kind {}", e.0)),
            };
            let _ = tx.send(answer);
        }
        Ok(())
    }
}

/// A connection to a peer: the capability, and the means to close it.
struct Conn {
    client: raft_transport::Client,
    disconnector: RefCell<Option<capnp_rpc::Disconnector<rpc_twoparty_capnp::Side>>>,
}

/// Why a peer could not be reached: a transient failure (dial again soon), or the peer's
/// refusal of this node's hello (it will refuse again; its words are in the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerError {
    Unreachable(String),
    Refused(String),
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerError::Unreachable(e) | PeerError::Refused(e) => f.write_str(e),
        }
    }
}

/// Dials node `target` at `addr`, sends `hello` and reads the answer: the connection, ready
/// for Cap'n Proto, once the peer accepted it.
///
/// With `tls` (a secured cluster) the hello says so, and once the peer accepted it the
/// connection turns into TLS (this node the client, with its OM certificate): the peer must
/// present an OM certificate of the cluster's CA naming the host dialled, and requires this
/// node's. The hello is then sent again inside TLS: the plain one only picks the executor that
/// takes the connection (core 0 hands it over by its file descriptor, and TLS state cannot
/// travel with it), and the authenticated copy is what that executor checks.
async fn connect(target: u64, addr: &str, hello: &Hello, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Result<Stream, PeerError> {
    let unreachable = |what: &str, e: &dyn std::fmt::Display| PeerError::Unreachable(format!("{what} node {target} at {addr}: {e}"));
    let sock: std::net::SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(_) => {
            use std::net::ToSocketAddrs;
            let mut all = addr.to_socket_addrs().map_err(|e| unreachable("resolving", &e))?;
            all.next().ok_or_else(|| unreachable("resolving", &"no address"))?
        }
    };
    let mut stream = glommio::net::TcpStream::connect_timeout(sock, DIAL_TIMEOUT).await.map_err(|e| unreachable("dialing", &e))?;
    let _ = stream.set_nodelay(true);
    let hello_bytes = hello.encode();
    stream.write_all(&hello_bytes).await.map_err(|e| unreachable("greeting", &e))?;
    let answer = glommio::timer::timeout(DIAL_TIMEOUT, async {
        let mut len = [0u8; 4];
        if let Err(e) = stream.read_exact(&mut len).await {
            return Ok(Err(e));
        }
        let len = (u32::from_le_bytes(len) as usize).min(REFUSAL_BYTES_MAX);
        let mut why = vec![0u8; len];
        Ok(stream.read_exact(&mut why).await.map(|_| why))
    })
    .await;
    match answer {
        Ok(Ok(why)) if why.is_empty() => {}
        Ok(Ok(why)) => return Err(PeerError::Refused(format!("node {target} at {addr} refuses this node's Raft traffic: {}", String::from_utf8_lossy(&why)))),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(PeerError::Refused(format!("node {target} at {addr} closed the connection at the hello (a build with another Raft protocol?)")));
        }
        Ok(Err(e)) => return Err(unreachable("reading the hello's answer from", &e)),
        Err(_) => return Err(unreachable("waiting for the hello's answer from", &format!("no answer within {DIAL_TIMEOUT:?}"))),
    }
    let Some(config) = tls else { return Ok(Box::pin(stream)) };
    let name = stratos_common::tls::server_name(addr).map_err(|e| PeerError::Refused(format!("node {target} at {addr}: {e}")))?;
    let handshake = futures_rustls::TlsConnector::from(config).connect(name, stratos_common::rpc::under_tls(stream));
    let mut tls = match glommio::timer::timeout(TLS_DIAL_TIMEOUT, async { Ok(handshake.await) }).await {
        Ok(Ok(s)) => s,
        // A certificate refused is final until an operator fixes it; a connection lost is not.
        Ok(Err(e)) if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => return Err(PeerError::Refused(format!("node {target} at {addr}: {}", stratos_common::tls::explain(&e)))),
        Ok(Err(e)) => return Err(unreachable("the TLS handshake with", &e)),
        Err(_) => return Err(unreachable("the TLS handshake with", &format!("no handshake within {TLS_DIAL_TIMEOUT:?}"))),
    };
    match stratos_common::tls::server_identity(tls.get_ref().1) {
        Ok(id) if id.role == stratos_common::tls::Role::Om => {}
        Ok(id) => return Err(PeerError::Refused(format!("node {target} at {addr} presents the certificate of {} {}, not an OM's: no Raft traffic goes there", id.role.as_str(), id.name))),
        Err(e) => return Err(PeerError::Refused(format!("node {target} at {addr}: {e}"))),
    }
    tls.write_all(&hello_bytes).await.map_err(|e| unreachable("greeting (TLS)", &e))?;
    tls.flush().await.map_err(|e| unreachable("greeting (TLS)", &e))?;
    Ok(Box::pin(tls))
}

/// The hello of a Raft connection (see schema/capnp/raft.capnp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The sender's executor count.
    pub cores: u32,
    /// The executor the connection is for.
    pub core: u32,
    /// The sender's key-shard count.
    pub shards: u32,
    /// [`HELLO_TLS`], or 0.
    pub flags: u32,
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut b = [0u8; HELLO_BYTES];
        b[..8].copy_from_slice(HELLO_MAGIC);
        b[8..12].copy_from_slice(&self.cores.to_le_bytes());
        b[12..16].copy_from_slice(&self.core.to_le_bytes());
        b[16..20].copy_from_slice(&self.shards.to_le_bytes());
        b[20..24].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; HELLO_BYTES]) -> Result<Hello, String> {
        if &b[..8] != HELLO_MAGIC {
            return Err(if b[..7] == HELLO_MAGIC[..7] {
                format!("a Raft hello of another protocol version ({:?}, this node speaks {:?}); every OM node of a cluster must run a compatible build", String::from_utf8_lossy(&b[..8]), String::from_utf8_lossy(HELLO_MAGIC))
            } else {
                "not a Stratos Raft connection (bad hello)".into()
            });
        }
        let word = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Ok(Hello { cores: word(8), core: word(12), shards: word(16), flags: word(20) })
    }

    /// Why a node with `cores` executors and `shards` key shards, with TLS on Raft or not
    /// (`tls`), must refuse this hello, if it must.
    pub fn refusal(&self, cores: u32, shards: u32, tls: bool) -> Option<String> {
        match (self.flags & HELLO_TLS != 0, tls) {
            (false, true) => return Some("the dialed node requires TLS on Raft and the dialing node has none: give every OM node of a cluster --tls-ca, --tls-cert and --tls-key, or none".into()),
            (true, false) => return Some("the dialing node speaks TLS on Raft and the dialed node has no certificate: give every OM node of a cluster --tls-ca, --tls-cert and --tls-key, or none".into()),
            _ => {}
        }
        if self.shards != shards {
            return Some(format!("the dialing node runs {} key shards and the dialed node {shards}; every OM node of a cluster must run the same --shards", self.shards));
        }
        if self.cores != cores || self.core >= cores {
            return Some(format!(
                "the dialing node runs {} executors (and asks for executor {}) and the dialed node {cores}; every OM node of a cluster must run the same --executors",
                self.cores, self.core
            ));
        }
        None
    }
}

/// Reads a connection's hello. An old peer's shorter hello ends in a timeout or a bad magic.
pub async fn read_hello(stream: &mut (impl futures_util::io::AsyncRead + Unpin)) -> Result<Hello, String> {
    let mut hello = [0u8; HELLO_BYTES];
    stream.read_exact(&mut hello).await.map_err(|e| format!("reading the hello: {e}"))?;
    Hello::decode(&hello)
}

/// Answers a hello: accepted (an empty answer), or refused with the reason, which the
/// sender logs and returns (see `connect`).
pub async fn answer_hello(stream: &mut glommio::net::TcpStream, refusal: Option<&str>) -> std::io::Result<()> {
    let why = refusal.unwrap_or_default().as_bytes();
    let why = &why[..why.len().min(REFUSAL_BYTES_MAX)];
    let mut b = Vec::with_capacity(4 + why.len());
    b.extend_from_slice(&(why.len() as u32).to_le_bytes());
    b.extend_from_slice(why);
    stream.write_all(&b).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A peer that answers like the real receiver (a call's answer once every message in it
    /// is done) on a script: an append at once with its own bytes, a forwarded write after
    /// `hold`; the first `silent` calls never.
    struct Scripted {
        hold: Duration,
        silent: Cell<usize>,
    }

    impl raft_transport::Server for Scripted {
        async fn send(self: capnp::capability::Rc<Self>, params: raft_transport::SendParams, mut results: raft_transport::SendResults) -> Result<(), capnp::Error> {
            use stratos_schema::raft_capnp::group_message::Which;
            if self.silent.get() > 0 {
                self.silent.set(self.silent.get() - 1);
                futures_lite::future::pending::<()>().await;
            }
            let mut answers = Vec::new();
            for m in params.get()?.get_messages()?.iter() {
                answers.push(match m.which().map_err(|e| capnp::Error::failed(format!("kind {}", e.0)))? {
                    Which::AppendEntries(b) => b?.to_vec(),
                    Which::Forward(_) => {
                        glommio::timer::sleep(self.hold).await;
                        b"forwarded".to_vec()
                    }
                    _ => return Err(capnp::Error::failed("not in the script".into())),
                });
            }
            let mut replies = results.get().init_replies(answers.len() as u32);
            for (i, a) in answers.iter().enumerate() {
                replies.reborrow().get(i as u32).set_ok(a);
            }
            Ok(())
        }
    }

    /// Serves `script` on a port of its own: its address, the connections accepted and the
    /// connections that ended.
    fn scripted_peer(script: Scripted) -> (String, Rc<Cell<usize>>, Rc<Cell<usize>>) {
        let listener = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let (accepted, ended) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        let client: raft_transport::Client = capnp_rpc::new_client(script);
        let (a, e) = (accepted.clone(), ended.clone());
        glommio::spawn_local(async move {
            while let Ok(mut stream) = listener.accept().await {
                read_hello(&mut stream).await.expect("a hello");
                answer_hello(&mut stream, None).await.expect("answer");
                a.set(a.get() + 1);
                let (reader, writer) = stream.split();
                let network = twoparty::VatNetwork::new(futures_lite::io::BufReader::new(reader), stratos_common::rpc::coalesced(writer), rpc_twoparty_capnp::Side::Server, Default::default());
                let rpc = RpcSystem::new(stratos_common::rpc::small_first_segments(network), Some(client.clone().client));
                let e = e.clone();
                glommio::spawn_local(async move {
                    let _ = rpc.await;
                    e.set(e.get() + 1);
                })
                .detach();
            }
        })
        .detach();
        (addr, accepted, ended)
    }

    fn on_executor(f: impl std::future::Future<Output = ()> + 'static) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(1 << 20).make().expect("an executor").run(f);
    }

    #[test]
    fn an_append_is_not_held_back_by_a_forwarded_write_queued_with_it() {
        on_executor(async {
            let hold = Duration::from_secs(2);
            let (addr, _, _) = scripted_peer(Scripted { hold, silent: Cell::new(0) });
            let t = Transport::new(1, 1, 0, 4, None);
            let start = std::time::Instant::now();
            // Both queued in the same tick: on one link they would travel in one call, and the
            // append's answer would wait for the forwarded write's.
            let timed = |out: Out| {
                let t = t.clone();
                let addr = addr.clone();
                async move { (t.call(2, &addr, 7, out).await, start.elapsed()) }
            };
            let ((forwarded, forward_took), (appended, append_took)) =
                futures_util::future::join(timed(Out::Forward { proposal: vec![1], fill: false, min_meta: 0 }), timed(Out::Append(b"entries".to_vec()))).await;
            assert_eq!(appended.as_deref(), Ok(&b"entries"[..]));
            assert_eq!(forwarded.as_deref(), Ok(&b"forwarded"[..]));
            assert!(forward_took >= hold, "the peer held the forwarded write for {hold:?}, answered after {forward_took:?}");
            assert!(append_took < hold / 2, "the append waited {append_took:?}, behind the forwarded write");
        });
    }

    #[test]
    fn a_call_left_unanswered_drops_its_connection_and_the_link_dials_anew() {
        on_executor(async {
            let (addr, accepted, ended) = scripted_peer(Scripted { hold: Duration::ZERO, silent: Cell::new(1) });
            let limit = Duration::from_millis(300);
            let t = Rc::new(Transport { me: 1, cores: 1, core: 0, shards: 4, links: RefCell::default(), tls: None, call_timeouts: [limit; 2] });
            let start = std::time::Instant::now();
            let lost = t.call(2, &addr, 7, Out::Append(b"first".to_vec())).await.expect_err("the peer never answers the first call");
            assert!(lost.contains("unanswered") && lost.contains("dialed anew"), "{lost}");
            assert!(start.elapsed() >= limit, "gave up after {:?}", start.elapsed());
            assert_eq!(t.call(2, &addr, 7, Out::Append(b"second".to_vec())).await.as_deref(), Ok(&b"second"[..]));
            assert_eq!(accepted.get(), 2, "a second connection");
            let hung_up = std::time::Instant::now();
            while ended.get() == 0 {
                assert!(hung_up.elapsed() < Duration::from_secs(5), "the silent connection was not closed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        });
    }

    #[test]
    fn only_openraft_messages_travel_on_the_raft_lane() {
        let raft = [Out::Vote(vec![]), Out::PreVote(vec![]), Out::Append(vec![]), Out::Transfer(vec![])];
        let waits = [Out::ReadIndex, Out::Forward { proposal: vec![], fill: true, min_meta: 1 }, Out::Chunk { vote: vec![], id: String::new(), offset: 0, data: vec![], done: true }];
        assert!(raft.iter().all(|o| o.lane() == Lane::Raft));
        assert!(waits.iter().all(|o| o.lane() == Lane::Waits));
    }

    #[test]
    fn a_hello_round_trips_and_names_what_differs() {
        let h = Hello { cores: 2, core: 1, shards: 4, flags: 0 };
        assert_eq!(Hello::decode(&h.encode()), Ok(h));
        assert_eq!(h.refusal(2, 4, false), None);
        let shards = h.refusal(2, 8, false).expect("another shard count is refused");
        assert!(shards.contains("runs 4 key shards and the dialed node 8") && shards.contains("--shards"), "{shards}");
        let cores = h.refusal(4, 4, false).expect("another executor count is refused");
        assert!(cores.contains("runs 2 executors") && cores.contains("--executors"), "{cores}");
        assert!(Hello { cores: 2, core: 2, shards: 4, flags: 0 }.refusal(2, 4, false).is_some(), "an executor past the last is refused");
        let plain = h.refusal(2, 4, true).expect("a plain peer of a secured node is refused");
        assert!(plain.contains("requires TLS") && plain.contains("--tls-ca"), "{plain}");
        let secured = Hello { flags: HELLO_TLS, ..h };
        assert_eq!(secured.refusal(2, 4, true), None);
        assert!(secured.refusal(2, 4, false).expect("a TLS peer of a plain node is refused").contains("speaks TLS"));
    }

    #[test]
    fn an_old_or_foreign_hello_is_named() {
        let mut old = Hello { cores: 2, core: 0, shards: 4, flags: 0 }.encode();
        old[..8].copy_from_slice(b"STRRAFT1");
        let e = Hello::decode(&old).expect_err("the old protocol");
        assert!(e.contains("another protocol version") && e.contains("STRRAFT1"), "{e}");
        let e = Hello::decode(b"GET / HTTP/1.1\r\nHost: om").expect_err("not ours");
        assert!(e.contains("not a Stratos Raft connection"), "{e}");
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(b in proptest::array::uniform24(any::<u8>())) {
            let _ = Hello::decode(&b);
        }

        #[test]
        fn every_hello_round_trips(cores: u32, core: u32, shards: u32, flags: u32) {
            let h = Hello { cores, core, shards, flags };
            prop_assert_eq!(Hello::decode(&h.encode()), Ok(h));
        }
    }
}
