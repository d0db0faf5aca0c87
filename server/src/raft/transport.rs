//! The Raft transport between OM nodes, sending side: one connection from this executor to
//! each peer node (to the peer's executor that owns the same groups), carrying the messages of
//! every group of this executor, many per call.
//!
//! Batching: each [`Link`] has a queue; its pump takes everything queued (up to
//! [`BATCH_MESSAGES_MAX`] messages or [`BATCH_BYTES_MAX`] bytes) into one `send` call and keeps
//! up to [`CALLS_IN_FLIGHT_MAX`] calls in flight. With S groups on a core, their heartbeats and
//! appends to a peer travel in one round trip, not S.
//!
//! A connection that fails answers every message it carried with the error (openraft retries
//! with its own backoff); the next message dials again. Each caller bounds its wait by the
//! deadline openraft gives (`RPCOption`), so a peer that stops answering without closing the
//! connection (a partition, SIGSTOP) costs a timeout, not a hang.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use capnp_rpc::{RpcSystem, rpc_twoparty_capnp, twoparty};
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use stratos_schema::raft_capnp::raft_transport;
use tokio::sync::oneshot;

use crate::raft::group::local_event::Event;

/// The first bytes of a Raft connection (see schema/capnp/raft.capnp): magic, the sender's
/// executor count, the executor it wants, the sender's key-shard count.
pub const HELLO_MAGIC: &[u8; 8] = b"STRRAFT2";
pub const HELLO_BYTES: usize = 20;
/// The longest refusal a node sends back in answer to a hello.
pub const REFUSAL_BYTES_MAX: usize = 1024;
pub const BATCH_MESSAGES_MAX: usize = 1024;
pub const BATCH_BYTES_MAX: usize = 16 << 20;
pub const CALLS_IN_FLIGHT_MAX: usize = 8;
/// A snapshot travels in chunks of this size.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 << 20;
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);

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

/// The sending side of this executor: a [`Link`] per peer node.
pub struct Transport {
    pub me: u64,
    /// This node's executor count, this executor's index and the key-shard count (sent in
    /// the hello, so that a node of another layout is refused at once, with the reason).
    pub cores: u32,
    pub core: u32,
    pub shards: u32,
    links: RefCell<HashMap<u64, Rc<Link>>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("me", &self.me).field("core", &self.core).finish()
    }
}

impl Transport {
    pub fn new(me: u64, cores: u32, core: u32, shards: u32) -> Rc<Transport> {
        Rc::new(Transport { me, cores, core, shards, links: RefCell::default() })
    }

    fn hello(&self) -> [u8; HELLO_BYTES] {
        Hello { cores: self.cores, core: self.core, shards: self.shards }.encode()
    }

    /// Dials node `target` at `raft_addr` once, says hello and reads the answer, then hangs
    /// up: whether that node would take this node's Raft traffic. Used before adding a node,
    /// so that a node of another layout is refused with the reason rather than by a timeout.
    pub async fn check_peer(&self, target: u64, raft_addr: &str) -> Result<(), PeerError> {
        let mut stream = connect(target, raft_addr, &self.hello()).await?;
        let _ = stream.close().await;
        Ok(())
    }

    /// Sends `out` to group `group` on node `target` at `raft_addr`, and waits for the answer.
    pub async fn call(self: &Rc<Self>, target: u64, raft_addr: &str, group: u32, out: Out) -> Reply {
        if raft_addr.is_empty() {
            return Err(format!("node {target} has no known Raft address"));
        }
        if crate::raft::faults::cut(self.me, target) {
            return Err(format!("node {target} is cut off from node {} ({} fault injection)", self.me, crate::raft::faults::ENV));
        }
        let link = {
            let mut links = self.links.borrow_mut();
            let l = links.entry(target).or_insert_with(|| Link::start(self, target, raft_addr));
            if l.addr != raft_addr {
                // The node moved (membership changed its address): a new link.
                l.closed.set(true);
                l.wake.notify();
                *l = Link::start(self, target, raft_addr);
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
    addr: String,
    me: u64,
    hello: [u8; HELLO_BYTES],
    /// The last refusal logged, so that a peer refusing every dial is logged once.
    refused: RefCell<String>,
    /// This executor, for the log lines.
    core: u32,
    /// Since when dials or calls fail (logged once when it starts and once when it ends, not
    /// per attempt: a peer that is down is dialed every 50 ms).
    failing_since: Cell<Option<std::time::Instant>>,
    failures: Cell<u64>,
    queue: RefCell<VecDeque<Pending>>,
    wake: Event,
    conn: RefCell<Option<raft_transport::Client>>,
    in_flight: Cell<usize>,
    closed: Cell<bool>,
}

impl Link {
    fn start(t: &Transport, target: u64, addr: &str) -> Rc<Link> {
        let link = Rc::new(Link {
            target,
            addr: addr.to_string(),
            me: t.me,
            hello: t.hello(),
            refused: RefCell::default(),
            core: t.core,
            failing_since: Cell::new(None),
            failures: Cell::new(0),
            queue: RefCell::default(),
            wake: Event::default(),
            conn: RefCell::new(None),
            in_flight: Cell::new(0),
            closed: Cell::new(false),
        });
        glommio::spawn_local(Link::pump(link.clone())).detach();
        link
    }

    fn note_failure(&self, why: &str) {
        if self.failing_since.get().is_none() {
            self.failing_since.set(Some(std::time::Instant::now()));
            eprintln!("om core {}: Raft link to node {} at {} fails: {why}", self.core, self.target, self.addr);
        }
        self.failures.set(self.failures.get() + 1);
    }

    fn note_success(&self) {
        if let Some(since) = self.failing_since.take() {
            eprintln!("om core {}: Raft link to node {} at {} works again after {:.1?} ({} failed attempts)", self.core, self.target, self.addr, since.elapsed(), self.failures.get());
            self.failures.set(0);
        }
    }

    fn fail_queued(&self, why: &str) {
        for (_, _, tx) in self.queue.borrow_mut().drain(..) {
            let _ = tx.send(Err(why.to_string()));
        }
    }

    async fn dial(&self) -> Result<raft_transport::Client, PeerError> {
        let stream = connect(self.target, &self.addr, &self.hello).await?;
        let (reader, writer) = stream.split();
        let mut options = capnp::message::ReaderOptions::new();
        options.traversal_limit_in_words(Some(crate::rpc::TRAVERSAL_WORDS_MAX)).nesting_limit(crate::rpc::NESTING_MAX);
        let network = twoparty::VatNetwork::new(futures_lite::io::BufReader::new(reader), futures_lite::io::BufWriter::new(writer), rpc_twoparty_capnp::Side::Client, options);
        let mut rpc = RpcSystem::new(Box::new(network), None);
        let client: raft_transport::Client = rpc.bootstrap(rpc_twoparty_capnp::Side::Server);
        glommio::spawn_local(async move {
            let _ = rpc.await;
        })
        .detach();
        Ok(client)
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
            let client = match existing {
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
                            eprintln!("om: {e}");
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
                let result = link.send(&client, &mut batch).await;
                match &result {
                    Ok(()) => link.note_success(),
                    Err(e) => link.note_failure(e),
                }
                if let Err(e) = &result {
                    *link.conn.borrow_mut() = None;
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
async fn connect(target: u64, addr: &str, hello: &[u8; HELLO_BYTES]) -> Result<glommio::net::TcpStream, PeerError> {
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
    stream.write_all(hello).await.map_err(|e| unreachable("greeting", &e))?;
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
        Ok(Ok(why)) if why.is_empty() => Ok(stream),
        Ok(Ok(why)) => Err(PeerError::Refused(format!("node {target} at {addr} refuses this node's Raft traffic: {}", String::from_utf8_lossy(&why)))),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(PeerError::Refused(format!("node {target} at {addr} closed the connection at the hello (a build with another Raft protocol?)")))
        }
        Ok(Err(e)) => Err(unreachable("reading the hello's answer from", &e)),
        Err(_) => Err(unreachable("waiting for the hello's answer from", &format!("no answer within {DIAL_TIMEOUT:?}"))),
    }
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
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut b = [0u8; HELLO_BYTES];
        b[..8].copy_from_slice(HELLO_MAGIC);
        b[8..12].copy_from_slice(&self.cores.to_le_bytes());
        b[12..16].copy_from_slice(&self.core.to_le_bytes());
        b[16..20].copy_from_slice(&self.shards.to_le_bytes());
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
        Ok(Hello { cores: word(8), core: word(12), shards: word(16) })
    }

    /// Why a node with `cores` executors and `shards` key shards must refuse this hello, if it must.
    pub fn refusal(&self, cores: u32, shards: u32) -> Option<String> {
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
pub async fn read_hello(stream: &mut glommio::net::TcpStream) -> Result<Hello, String> {
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

    #[test]
    fn a_hello_round_trips_and_names_what_differs() {
        let h = Hello { cores: 2, core: 1, shards: 4 };
        assert_eq!(Hello::decode(&h.encode()), Ok(h));
        assert_eq!(h.refusal(2, 4), None);
        let shards = h.refusal(2, 8).expect("another shard count is refused");
        assert!(shards.contains("runs 4 key shards and the dialed node 8") && shards.contains("--shards"), "{shards}");
        let cores = h.refusal(4, 4).expect("another executor count is refused");
        assert!(cores.contains("runs 2 executors") && cores.contains("--executors"), "{cores}");
        assert!(Hello { cores: 2, core: 2, shards: 4 }.refusal(2, 4).is_some(), "an executor past the last is refused");
    }

    #[test]
    fn an_old_or_foreign_hello_is_named() {
        let mut old = Hello { cores: 2, core: 0, shards: 4 }.encode();
        old[..8].copy_from_slice(b"STRRAFT1");
        let e = Hello::decode(&old).expect_err("the old protocol");
        assert!(e.contains("another protocol version") && e.contains("STRRAFT1"), "{e}");
        let e = Hello::decode(b"GET / HTTP/1.1\r\nHost").expect_err("not ours");
        assert!(e.contains("not a Stratos Raft connection"), "{e}");
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(b in proptest::array::uniform20(any::<u8>())) {
            let _ = Hello::decode(&b);
        }

        #[test]
        fn every_hello_round_trips(cores: u32, core: u32, shards: u32) {
            let h = Hello { cores, core, shards };
            prop_assert_eq!(Hello::decode(&h.encode()), Ok(h));
        }
    }
}
