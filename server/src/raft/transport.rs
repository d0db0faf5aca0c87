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

/// The first bytes of a Raft connection (see schema/capnp/raft.capnp).
pub const HELLO_MAGIC: &[u8; 8] = b"STRRAFT1";
pub const HELLO_BYTES: usize = 16;
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
    /// This node's executor count and this executor's index (sent in the hello).
    pub cores: u32,
    pub core: u32,
    links: RefCell<HashMap<u64, Rc<Link>>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("me", &self.me).field("core", &self.core).finish()
    }
}

impl Transport {
    pub fn new(me: u64, cores: u32, core: u32) -> Rc<Transport> {
        Rc::new(Transport { me, cores, core, links: RefCell::default() })
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
    queue: RefCell<VecDeque<Pending>>,
    wake: Event,
    conn: RefCell<Option<raft_transport::Client>>,
    in_flight: Cell<usize>,
    closed: Cell<bool>,
}

impl Link {
    fn start(t: &Transport, target: u64, addr: &str) -> Rc<Link> {
        let mut hello = [0u8; HELLO_BYTES];
        hello[..8].copy_from_slice(HELLO_MAGIC);
        hello[8..12].copy_from_slice(&t.cores.to_le_bytes());
        hello[12..16].copy_from_slice(&t.core.to_le_bytes());
        let link = Rc::new(Link {
            target,
            addr: addr.to_string(),
            me: t.me,
            hello,
            queue: RefCell::default(),
            wake: Event::default(),
            conn: RefCell::new(None),
            in_flight: Cell::new(0),
            closed: Cell::new(false),
        });
        glommio::spawn_local(Link::pump(link.clone())).detach();
        link
    }

    fn fail_queued(&self, why: &str) {
        for (_, _, tx) in self.queue.borrow_mut().drain(..) {
            let _ = tx.send(Err(why.to_string()));
        }
    }

    async fn dial(&self) -> Result<raft_transport::Client, String> {
        let addr: std::net::SocketAddr = match self.addr.parse() {
            Ok(a) => a,
            Err(_) => {
                use std::net::ToSocketAddrs;
                self.addr.to_socket_addrs().map_err(|e| format!("resolving {}: {e}", self.addr))?.next().ok_or_else(|| format!("{} resolves to nothing", self.addr))?
            }
        };
        let mut stream = glommio::net::TcpStream::connect_timeout(addr, DIAL_TIMEOUT).await.map_err(|e| format!("dialing node {} at {}: {e}", self.target, self.addr))?;
        let _ = stream.set_nodelay(true);
        stream.write_all(&self.hello).await.map_err(|e| format!("greeting node {} at {}: {e}", self.target, self.addr))?;
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
                        *self.conn.borrow_mut() = Some(c.clone());
                        c
                    }
                    Err(e) => {
                        // Answer what waits now (openraft backs off), then pause before the
                        // next dial so a dead peer costs little.
                        self.fail_queued(&e);
                        glommio::timer::sleep(Duration::from_millis(50)).await;
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

/// Reads a connection's hello: the sender's executor count and the executor it wants.
pub async fn read_hello(stream: &mut glommio::net::TcpStream) -> Result<(u32, u32), String> {
    let mut hello = [0u8; HELLO_BYTES];
    stream.read_exact(&mut hello).await.map_err(|e| format!("reading the hello: {e}"))?;
    if &hello[..8] != HELLO_MAGIC {
        return Err("not a Stratos Raft connection (bad hello)".into());
    }
    let cores = u32::from_le_bytes(hello[8..12].try_into().expect("4 bytes"));
    let core = u32::from_le_bytes(hello[12..16].try_into().expect("4 bytes"));
    Ok((cores, core))
}
