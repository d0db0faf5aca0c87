//! stratos-client: the async client of the OM's Cap'n Proto API, and the `stratos sh` and
//! `stratos admin` commands.
//!
//! A [`Client`] holds one connection, to one of the OM nodes it was given (`host:port,…`; any
//! node serves any request: a follower forwards writes to the group's leader and serves reads
//! after the leader's read index). Every mutating call carries `(client id, request id)`: the
//! client id is random per [`Client`], request ids increase, and a retry reuses the same pair,
//! so the OM answers it from its retry cache instead of applying it twice.
//!
//! Failover: a call that finds the node gone (connection refused or broken), or answered
//! `unavailable` or `notLeader`, is retried with doubling backoff (50 ms up to 1 s, about 9 s in
//! all): after a connection failure on the next node of the list, after `notLeader` on the
//! node its leader hint names. The client remembers the highest meta index it was
//! told and sends it with every call (read-your-writes for volumes and buckets across shards).
//! Calls pipeline: many may be in flight on one connection.
//!
//! **Typed answers.** Reads answer plain values: [`VolumeInfo`], [`BucketInfo`], [`KeyInfo`]
//! (with its [`Block`]s), a [`Page`] of them from a listing, [`GroupStatus`]; mutations a
//! [`Done`]; a failure a [`ClientError`] whose [`ClientError::status`] is the OM's [`Status`].
//! JSON is only what `stratos sh` prints, made in [`sh`] from these values.
//!
//! **Runtimes.** Cap'n Proto RPC runs over any `futures` `AsyncRead + AsyncWrite`, so the
//! client is not tied to one executor: it dials, sleeps and runs each connection's driver
//! through a [`Runtime`] (see [`runtime`]), held as `Rc<dyn Runtime>`. A trait object rather
//! than a type parameter keeps `Client`, [`data`] and the commands free of generics for every
//! user, at the cost of a boxed future per dial and per backoff sleep. Two runtimes come with
//! the crate:
//!
//! - glommio ([`runtime::Glommio`], feature `glommio`, on by default): what the `stratos`
//!   binary, its benchmarks and its tests use; [`Client::connect`], [`connect_rpc`],
//!   `data::Datanodes::default()`, [`sh::run`] and [`admin::run`] use it.
//! - tokio ([`runtime::Tokio`], feature `tokio`): connect with [`Client::connect_on`] and make
//!   every call inside a `tokio::task::LocalSet` (the client is `!Send`, and connections are
//!   driven by `tokio::task::spawn_local` tasks), on a runtime with IO and time enabled. See
//!   `examples/tokio_quickstart.rs`.
//!
//! With `default-features = false, features = ["tokio"]` the crate builds without glommio:
//! everything is there except the glommio entry points named above; [`sh::run_on`],
//! [`admin::run_on`], [`connect_rpc_on`] and `data::Datanodes::new` take the runtime instead.

pub mod admin;
pub mod data;
mod info;
pub mod interrupt;
pub mod runtime;
pub mod sh;
pub mod tls;
pub mod wire;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use capnp_rpc::{RpcSystem, rpc_twoparty_capnp, twoparty};
use futures_util::io::AsyncReadExt;
use stratos_schema::om_capnp::{self, ozone_manager};

pub use info::{AclEntry, AclKind, BucketInfo, KeyInfo, Named, Page, Replication, VolumeInfo};
pub use runtime::Runtime;
/// The OM's answer codes, as [`ClientError::status`] gives them.
pub use stratos_schema::om_capnp::Status;
/// The Cap'n Proto types the client's API speaks (the operation builders of [`Client::submit`]
/// and [`Client::batch`], `om_capnp::Replication`), at the version this client was built with.
pub use stratos_schema as schema;

/// Attempts of a call that got `unavailable` or `notLeader` or lost its node, with doubling
/// backoff from 50 ms up to [`BACKOFF_MAX`]: long enough to outlast a leader election.
pub const ATTEMPTS_MAX: u32 = 14;
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A TCP connect that takes longer fails (a host that drops SYNs would otherwise take the
/// kernel's two minutes).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes a TLS connection of few peers and large messages (a client's, a datanode's) reads from
/// its socket at once, under rustls: rustls asks for one record (16 KiB) at most, often 4 KiB
/// (its buffer shrinks whenever it empties), so a 1 MiB reply cost ~60 `recv` calls; with this
/// buffer ~10 ([`tls::under_tls`]). Not for a listener of thousands of connections (the OM,
/// the S3 gateway): the buffer lives as long as its connection.
pub const TLS_READ_BUFFER_BYTES: usize = 128 << 10;
/// One attempt of a call that gets no answer within this fails like a lost node: the call goes
/// again (same request id) to the next node. A frozen node (SIGSTOP, a hung disk) keeps its
/// connections open and never answers; it is failed over like a dead one.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// A call, with all its attempts, gives up after this (default; `Client::set_call_deadline`).
/// Long enough for several elections (about 1 s each, README "High availability").
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);
/// How long `admin_add_node` waits: the node answers once the new member has caught up as a
/// learner, which it allows 120 s.
pub const ADD_NODE_TIMEOUT: Duration = Duration::from_secs(150);

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The OM answered with an error status.
    #[error("{message}")]
    Om { status: Status, message: String, leader_hint: String },
    #[error("cannot reach {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// An attempt got no answer within its time ([`ATTEMPT_TIMEOUT`]).
    #[error("{addr} did not answer within {after:?}")]
    Timeout { addr: String, after: Duration },
    /// A call ran out of its deadline ([`CALL_DEADLINE`]); `last` is what its last attempt got.
    #[error("gave up after {after:.1?}: {last}")]
    Deadline { after: Duration, last: Box<ClientError> },
    /// The address answers, but not as a Stratos OM (an HTTP port, another service's port).
    #[error("{addr} does not speak the Stratos OM protocol (is it the OM's RPC port, 9862 by default?): {detail}")]
    Protocol { addr: String, detail: String },
    /// The TLS handshake was refused (a certificate problem): asking again, or another node of
    /// the same cluster, gets the same answer.
    #[error("{addr}: {reason}")]
    Tls { addr: String, reason: String },
    #[error("RPC failed: {0}")]
    Rpc(#[from] capnp::Error),
}

impl ClientError {
    pub fn status(&self) -> Option<Status> {
        match self {
            ClientError::Om { status, .. } => Some(*status),
            ClientError::Deadline { last, .. } => last.status(),
            _ => None,
        }
    }
}

pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Ok => "OK",
        Status::InvalidName => "INVALID_NAME",
        Status::InvalidArgument => "INVALID_ARGUMENT",
        Status::VolumeNotFound => "VOLUME_NOT_FOUND",
        Status::VolumeExists => "VOLUME_ALREADY_EXISTS",
        Status::VolumeNotEmpty => "VOLUME_NOT_EMPTY",
        Status::BucketNotFound => "BUCKET_NOT_FOUND",
        Status::BucketExists => "BUCKET_ALREADY_EXISTS",
        Status::BucketNotEmpty => "BUCKET_NOT_EMPTY",
        Status::KeyNotFound => "KEY_NOT_FOUND",
        Status::KeyExists => "KEY_ALREADY_EXISTS",
        Status::OpenKeyNotFound => "OPEN_KEY_NOT_FOUND",
        Status::QuotaExceeded => "QUOTA_EXCEEDED",
        Status::PermissionDenied => "PERMISSION_DENIED",
        Status::RetryTooOld => "RETRY_TOO_OLD",
        Status::KeyBusy => "KEY_BUSY",
        Status::S3SecretNotFound => "S3_SECRET_NOT_FOUND",
        Status::PreconditionFailed => "PRECONDITION_FAILED",
        Status::NoSuchUpload => "NO_SUCH_UPLOAD",
        Status::InvalidPart => "INVALID_PART",
        Status::NotLeader => "NOT_LEADER",
        Status::Unavailable => "UNAVAILABLE",
        Status::Malformed => "MALFORMED",
        Status::Internal => "INTERNAL",
    }
}

fn om_error(e: om_capnp::error::Reader<'_>) -> ClientError {
    let status = e.get_status().unwrap_or(Status::Internal);
    let message = e.get_message().ok().and_then(|m| m.to_str().ok()).unwrap_or("").to_string();
    let leader_hint = e.get_leader_hint().ok().and_then(|m| m.to_str().ok()).unwrap_or("").to_string();
    ClientError::Om { status, message: format!("{}: {message}", status_name(status)), leader_hint }
}

/// The node is gone (or never answered): another node may serve the call.
fn lost_node(e: &ClientError) -> bool {
    match e {
        ClientError::Connect { .. } | ClientError::Timeout { .. } => true,
        ClientError::Protocol { .. } | ClientError::Deadline { .. } | ClientError::Tls { .. } => false,
        // Over TLS a node that died mid-call ends the stream without TLS's close_notify, which
        // capnp-rpc reports as a premature end of file rather than a disconnection: the same
        // loss (a call in flight is retried in its session, as after any disconnection).
        // (Without TLS the same error is a TLS server closing a plain connection at once,
        // which every node would do: see `classify`.)
        ClientError::Rpc(e) => {
            matches!(e.kind, capnp::ErrorKind::Disconnected | capnp::ErrorKind::Overloaded) || (e.kind == capnp::ErrorKind::PrematureEndOfFile && tls::client().is_some())
        }
        ClientError::Om { .. } => false,
    }
}

/// `STRATOS_CLIENT_TRACE` set (to anything): every retried failure is printed to stderr, with
/// the node, the attempt and the backoff (for diagnosing failover).
fn trace_retries() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("STRATOS_CLIENT_TRACE").is_some())
}

fn retryable(e: &ClientError) -> bool {
    matches!(e.status(), Some(Status::Unavailable | Status::NotLeader)) || lost_node(e)
}

/// A successful outcome of a mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Done,
    Created { object_id: u64 },
    /// The open session and its pre-allocated blocks (with write tokens and datanodes).
    KeyOpened { open_id: u64, blocks: Vec<Block> },
    KeyCommitted { object_id: u64, replaced: bool },
    KeysDeleted { deleted: u64, missing: Vec<String> },
    BlockAllocated(Block),
    /// An S3 access key and its secret.
    S3Secret { access_id: String, secret: String },
    /// A multipart upload began.
    UploadStarted { upload_id: String },
}

/// One part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
    pub modified_ms: u64,
    /// The part's additional checksum as its writer gave it; empty for none.
    pub checksum: String,
}

/// A multipart upload in progress ([`Client::list_uploads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadListed {
    pub key: String,
    pub upload_id: String,
    /// When it began (ms since the epoch).
    pub created_ms: u64,
    /// The value of its metadata pair the listing asked for (empty: none, or an older OM).
    pub value: String,
}

/// A page of a multipart upload's parts ([`Client::list_parts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadParts {
    pub parts: Vec<PartInfo>,
    pub truncated: bool,
    pub metadata: Vec<(String, String)>,
    pub created_ms: u64,
}

/// A block as the OM gives it: where it is, its token, and its pipeline's datanodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub container_id: u64,
    pub local_id: u64,
    pub pipeline_id: u64,
    pub length: u64,
    pub token: Vec<u8>,
    /// (datanode id, address)
    pub datanodes: Vec<(u64, String)>,
}

impl Block {
    pub fn of(b: om_capnp::block_location::Reader<'_>) -> capnp::Result<Block> {
        let mut datanodes = Vec::new();
        for d in b.get_datanodes()?.iter() {
            datanodes.push((d.get_id(), d.get_address()?.to_string()?));
        }
        Ok(Block { container_id: b.get_container_id(), local_id: b.get_local_id(), pipeline_id: b.get_pipeline_id(), length: b.get_length(), token: b.get_token()?.to_vec(), datanodes })
    }

    /// Fills a commit's block entry (the token and datanodes are not sent back).
    pub fn set(&self, mut b: om_capnp::block_location::Builder<'_>) {
        b.set_container_id(self.container_id);
        b.set_local_id(self.local_id);
        b.set_pipeline_id(self.pipeline_id);
        b.set_length(self.length);
    }
}

/// A text field of a reply; not UTF-8 is a failed call.
fn text(t: capnp::Result<capnp::text::Reader<'_>>) -> Result<String, ClientError> {
    Ok(t?.to_string().map_err(|e| capnp::Error::failed(e.to_string()))?)
}

pub fn outcome(o: om_capnp::outcome::Reader<'_>) -> Result<Done, ClientError> {
    use om_capnp::outcome::Which;
    match o.which().map_err(|e| capnp::Error::failed(format!("unknown outcome {}", e.0)))? {
        Which::Error(e) => Err(om_error(e?)),
        Which::Done(()) => Ok(Done::Done),
        Which::Created(c) => Ok(Done::Created { object_id: c.get_object_id() }),
        Which::KeyOpened(k) => Ok(Done::KeyOpened { open_id: k.get_open_id(), blocks: k.get_blocks()?.iter().map(Block::of).collect::<Result<_, _>>()? }),
        Which::BlockAllocated(b) => Ok(Done::BlockAllocated(Block::of(b?)?)),
        Which::KeyCommitted(k) => Ok(Done::KeyCommitted { object_id: k.get_object_id(), replaced: k.get_replaced() }),
        Which::UploadStarted(u) => Ok(Done::UploadStarted { upload_id: text(u.get_upload_id())? }),
        Which::S3Secret(s) => {
            Ok(Done::S3Secret { access_id: text(s.get_access_id())?, secret: text(s.get_secret())? })
        }
        Which::KeysDeleted(k) => {
            let mut missing = Vec::new();
            for m in k.get_missing()?.iter() {
                missing.push(m?.to_string().map_err(|e| capnp::Error::failed(e.to_string()))?);
            }
            Ok(Done::KeysDeleted { deleted: k.get_deleted(), missing })
        }
    }
}

/// Connects to a Cap'n Proto service at `addr` (`host:port`) on a glommio executor and returns
/// its bootstrap capability; the connection lives as long as some capability of it does. Must
/// run on a glommio executor. See [`connect_rpc_on`] for other runtimes.
#[cfg(feature = "glommio")]
pub async fn connect_rpc<C: capnp::capability::FromClientHook>(addr: &str) -> Result<C, ClientError> {
    connect_rpc_on(&runtime::Glommio, addr).await
}

/// Connects to a Cap'n Proto service at `addr` (`host:port`) through `runtime` and returns its
/// bootstrap capability; the connection (its driver is a task of `runtime`) lives as long as
/// some capability of it does. Over TLS when this process has a client TLS configuration
/// ([`tls::set_client`]): OMs, datanodes and the SCM all speak it when the cluster is secured.
pub async fn connect_rpc_on<C: capnp::capability::FromClientHook>(runtime: &dyn Runtime, addr: &str) -> Result<C, ClientError> {
    connect_with(runtime, addr, tls::client()).await
}

/// [`connect_rpc_on`] with a TLS configuration of the caller's (None: plain TCP): a server
/// process dialling another with its own node certificate.
pub async fn connect_tls_on<C: capnp::capability::FromClientHook>(runtime: &dyn Runtime, addr: &str, tls_config: Option<std::sync::Arc<rustls::ClientConfig>>) -> Result<C, ClientError> {
    connect_with(runtime, addr, tls_config).await
}

async fn connect_with<C: capnp::capability::FromClientHook>(runtime: &dyn Runtime, addr: &str, tls_config: Option<std::sync::Arc<rustls::ClientConfig>>) -> Result<C, ClientError> {
    let connecting = async { runtime.connect(addr).await.map_err(|e| ClientError::Connect { addr: addr.to_string(), reason: e.to_string() }) };
    let stream = runtime::or_after(runtime, CONNECT_TIMEOUT, connecting, || {
        Err(ClientError::Connect { addr: addr.to_string(), reason: format!("no answer within {CONNECT_TIMEOUT:?}") })
    })
    .await?;
    let stream: runtime::Connection = match tls_config {
        None => stream,
        Some(config) => {
            let name = tls::server_name(addr).map_err(|reason| ClientError::Connect { addr: addr.to_string(), reason })?;
            // A buffer under rustls lets one `recv` take what the socket holds. Plain
            // connections need none (capnp reads a large segment whole).
            let stream = Box::pin(tls::under_tls(stream));
            let handshake = futures_rustls::TlsConnector::from(config).connect(name, stream);
            let late = || Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no TLS handshake within {CONNECT_TIMEOUT:?}")));
            let s = runtime::or_after(runtime, CONNECT_TIMEOUT, handshake, late).await.map_err(|e| {
                // A certificate refused is final; a connection lost mid-handshake is not.
                let refused = e.get_ref().is_some_and(|i| i.is::<rustls::Error>());
                let reason = tls::explain(&e);
                if refused { ClientError::Tls { addr: addr.to_string(), reason } } else { ClientError::Connect { addr: addr.to_string(), reason } }
            })?;
            Box::pin(s)
        }
    };
    let (reader, writer) = stream.split();
    let mut options = capnp::message::ReaderOptions::new();
    // Replies may carry up to a few MiB of block data.
    options.traversal_limit_in_words(Some(256 << 20 >> 3));
    let network = twoparty::VatNetwork::new(futures_lite::io::BufReader::new(reader), wire::CoalescedWriter::new(writer, |task| runtime.spawn_local(task)), rpc_twoparty_capnp::Side::Client, options);
    let mut rpc = RpcSystem::new(wire::small_first_segments(network), None);
    let service: C = rpc.bootstrap(rpc_twoparty_capnp::Side::Server);
    runtime.spawn_local(Box::pin(async move {
        let _ = rpc.await;
    }));
    Ok(service)
}

/// What a failed call says about `addr`: errors that only a peer speaking something other than
/// the OM's Cap'n Proto interface produces become [`ClientError::Protocol`]. An HTTP server's
/// answer read as a Cap'n Proto frame is "Too many segments"; another Cap'n Proto service
/// answers "Method not implemented" (kind `Unimplemented`).
fn classify(addr: &str, e: ClientError) -> ClientError {
    let ClientError::Rpc(r) = &e else { return e };
    if let Some(reason) = tls::explain_call_error(&r.extra) {
        return ClientError::Tls { addr: addr.to_string(), reason };
    }
    // A server with TLS on closes a plain connection at once (at its first bytes, or resets it
    // when the client's bytes were still unread): say so.
    if tls::client().is_none() && (r.kind == capnp::ErrorKind::PrematureEndOfFile || r.extra.contains("Connection reset by peer")) {
        let hint = format!("{} (if this OM requires TLS, set STRATOS_CA, STRATOS_CERT and STRATOS_KEY)", r.extra);
        return ClientError::Rpc(capnp::Error { kind: r.kind, extra: hint });
    }
    let text = r.extra.to_ascii_lowercase();
    let foreign = r.kind == capnp::ErrorKind::Unimplemented || text.contains("too many segments");
    if foreign { ClientError::Protocol { addr: addr.to_string(), detail: r.to_string() } } else { e }
}

/// An environment variable, if set and not empty (an empty `STRATOS_OM=` or `USER=` means
/// unset, as shells users type it).
pub fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `what` on `runtime`, or [`ClientError::Timeout`] after `after`; errors classified for `addr`.
pub(crate) async fn within<T>(
    runtime: &dyn Runtime, addr: &str, after: Duration, what: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    runtime::or_after(runtime, after, what, || Err(ClientError::Timeout { addr: addr.to_string(), after })).await.map_err(|e| classify(addr, e))
}

/// Connects to the first node of `addrs` that accepts, trying them in order from `start`.
async fn connect_any(runtime: &dyn Runtime, addrs: &[String], start: usize) -> Result<(usize, ozone_manager::Client), ClientError> {
    let mut last = None;
    for k in 0..addrs.len() {
        let i = (start + k) % addrs.len();
        match connect_rpc_on(runtime, &addrs[i]).await {
            Ok(om) => return Ok((i, om)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one address"))
}

/// A connection to the OM (see the crate docs): typed reads, mutations with retries and
/// failover, and the administrators' calls.
pub struct Client {
    /// What it dials, sleeps and runs its connections' drivers with.
    runtime: Rc<dyn Runtime>,
    /// The OM nodes given, and which one `om` is connected to.
    addrs: Vec<String>,
    current: Cell<usize>,
    om: std::cell::RefCell<ozone_manager::Client>,
    client_id: u64,
    next_request: Cell<u64>,
    meta_index: Cell<u64>,
    user: String,
    attempts_max: Cell<u32>,
    /// Per call (see [`CALL_DEADLINE`]); an attempt gets at most [`ATTEMPT_TIMEOUT`] of it.
    call_deadline: Cell<Duration>,
    /// Where each group's leader is (see [`Routes`]), and connections to the nodes besides the
    /// current one, by address.
    routes: std::cell::RefCell<Routes>,
    conns: std::cell::RefCell<foldhash::HashMap<String, ozone_manager::Client>>,
}

/// The client's cache of the OM's `routes`: the shard count, each group's leader, and each
/// node's core ports. A key operation is sent straight to its group's leader's node (at an
/// address this client was given), saving the forward hop a non-leader would add, and there
/// to the port of the core that owns the group (when the node gives core ports), saving the
/// hop between cores. Refreshed every [`ROUTES_MAX_AGE`] and after any failure of a routed
/// call; a stale entry costs only a hop (any node and any core serves any request).
#[derive(Debug, Default)]
struct Routes {
    fetched: Option<std::time::Instant>,
    shards: u32,
    leaders: Vec<String>,
    /// By node address (as given): per group, the port of the node's core that owns it.
    ports: std::collections::HashMap<String, Vec<u16>>,
    refreshing: bool,
    /// Per group, where [`Routes::target`] sends its calls, worked out once per refresh for
    /// `resolved_here` (formatting an address per call cost ~700 instructions of a single-key
    /// call).
    resolved: Vec<String>,
    resolved_here: String,
}

impl Routes {
    /// Where to send a call for key `v/b/k`: its group's leader's node if it is one of
    /// `addrs` (else `here`), at the port of the core that owns the group if that node gave
    /// one. None: nothing better known than the current connection.
    fn target(&self, addrs: &[String], here: &str, v: &str, b: &str, k: &str) -> Option<String> {
        if self.shards == 0 {
            return None;
        }
        let group = shard_of(v, b, k, self.shards) as usize + 1;
        if here == self.resolved_here {
            return self.resolved.get(group).cloned();
        }
        Some(self.target_of(addrs, here, group))
    }

    /// [`Self::target`] of `group`, worked out.
    fn target_of(&self, addrs: &[String], here: &str, group: usize) -> String {
        let node = self.leaders.get(group).filter(|a| addrs.iter().any(|x| x == *a)).map_or(here, String::as_str);
        match self.ports.get(node).and_then(|p| p.get(group)).copied().filter(|p| *p != 0) {
            Some(port) => with_port(node, port),
            None => node.to_string(),
        }
    }

    /// Works out every group's target for calls made through `here` (after a refresh).
    fn resolve(&mut self, addrs: &[String], here: &str) {
        let groups = if self.shards == 0 { 0 } else { self.shards as usize + 1 };
        self.resolved = (0..groups).map(|g| self.target_of(addrs, here, g)).collect();
        self.resolved_here = here.to_string();
    }
}

/// `host:port` with the port replaced (IPv6 hosts keep their brackets).
fn with_port(addr: &str, port: u16) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    format!("{host}:{port}")
}

/// One node's answer to `routes`.
#[derive(Debug, Default)]
struct RoutesReply {
    shards: u32,
    leaders: Vec<String>,
    core_ports: Vec<u16>,
}

pub const ROUTES_MAX_AGE: Duration = Duration::from_secs(2);
/// A `routes` call (tiny, answered by any core) that takes longer is skipped: the call goes the
/// usual way, unrouted, and its own deadline decides.
pub const ROUTES_TIMEOUT: Duration = Duration::from_secs(2);

pub use stratos_schema::shard_of;

/// The key an operation addresses alone (it goes to that key's group), if it does.
fn single_key(op: om_capnp::operation::Reader<'_>) -> Option<(&str, &str, &str)> {
    use om_capnp::operation::Which;
    fn t(r: capnp::Result<capnp::text::Reader<'_>>) -> Option<&str> {
        r.ok()?.to_str().ok()
    }
    match op.which().ok()? {
        Which::OpenKey(k) => Some((t(k.get_volume())?, t(k.get_bucket())?, t(k.get_key())?)),
        Which::CommitKey(k) => Some((t(k.get_volume())?, t(k.get_bucket())?, t(k.get_key())?)),
        Which::AllocateBlock(k) => Some((t(k.get_volume())?, t(k.get_bucket())?, t(k.get_key())?)),
        Which::DeleteKey(k) => Some((t(k.get_volume())?, t(k.get_bucket())?, t(k.get_key())?)),
        Which::AbortKey(k) => Some((t(k.get_volume())?, t(k.get_bucket())?, t(k.get_key())?)),
        Which::SetKeyMetadata(k) => Some((t(k.get_volume())?, t(k.get_bucket())?, t(k.get_key())?)),
        Which::InitiateUpload(k) => Some((t(k.get_volume())?, t(k.get_bucket())?, t(k.get_key())?)),
        Which::CommitPart(k) => Some((t(k.get_volume())?, t(k.get_bucket())?, t(k.get_key())?)),
        Which::CompleteUpload(k) => Some((t(k.get_volume())?, t(k.get_bucket())?, t(k.get_key())?)),
        Which::AbortUpload(k) => Some((t(k.get_volume())?, t(k.get_bucket())?, t(k.get_key())?)),
        Which::SetAcls(k) if k.has_key() && !t(k.get_key())?.is_empty() => Some((t(k.get_volume())?, t(k.get_bucket())?, t(k.get_key())?)),
        _ => None,
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("client_id", &self.client_id).field("user", &self.user).field("runtime", &self.runtime).finish()
    }
}

impl Client {
    /// Connects as `user` to one of the OM nodes in `addrs` (`host:port`, comma-separated),
    /// starting at a random one so that many clients spread over the nodes. Must run on a
    /// glommio executor; [`Client::connect_on`] takes another runtime.
    #[cfg(feature = "glommio")]
    pub async fn connect(addrs: &str, user: &str) -> Result<Client, ClientError> {
        Client::connect_on(Rc::new(runtime::Glommio), addrs, user).await
    }

    /// Connects as `user` to one of the OM nodes in `addrs` (`host:port`, comma-separated),
    /// starting at a random one, on `runtime`: every connection, retry backoff and (through
    /// [`data::Datanodes::new`]) datanode call of this client goes through it, and every call
    /// must be made where `runtime` works (for [`runtime::Tokio`]: inside a tokio `LocalSet`).
    pub async fn connect_on(runtime: Rc<dyn Runtime>, addrs: &str, user: &str) -> Result<Client, ClientError> {
        let addrs: Vec<String> = addrs.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
        if addrs.is_empty() {
            return Err(ClientError::Connect { addr: String::new(), reason: "no OM address given".into() });
        }
        let start = rand::random::<u32>() as usize % addrs.len();
        let (index, om) = connect_any(&*runtime, &addrs, start).await?;
        // Non-zero and random per client: together with request ids it names a request forever.
        let client_id = rand::random::<u64>() | 1;
        Ok(Client { runtime, addrs, current: Cell::new(index), om: std::cell::RefCell::new(om), client_id, next_request: Cell::new(1), meta_index: Cell::new(0), user: user.to_string(), attempts_max: Cell::new(ATTEMPTS_MAX), call_deadline: Cell::new(CALL_DEADLINE), routes: Default::default(), conns: Default::default() })
    }

    /// A client for `user` on this client's connections (a gateway acting for the principals
    /// it authenticated: the OM takes the header's user only from a caller it trusts to name
    /// one, an S3 gateway's certificate, or from anyone on a node without TLS). Its own client
    /// id, so its own retry sessions; keep one per user rather than one per request.
    pub fn as_user(&self, user: &str) -> Client {
        Client {
            runtime: self.runtime.clone(),
            addrs: self.addrs.clone(),
            current: Cell::new(self.current.get()),
            om: std::cell::RefCell::new(self.om()),
            client_id: rand::random::<u64>() | 1,
            next_request: Cell::new(1),
            meta_index: Cell::new(self.meta_index.get()),
            user: user.to_string(),
            attempts_max: Cell::new(self.attempts_max.get()),
            call_deadline: Cell::new(self.call_deadline.get()),
            routes: Default::default(),
            conns: std::cell::RefCell::new(self.conns.borrow().clone()),
        }
    }

    /// The user this client calls as (the header's; a TLS node takes its certificate's).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The S3 secret of access key `access_id`, read (never made): for the S3 gateway's
    /// certificate or an administrator. `S3_SECRET_NOT_FOUND` if there is none.
    pub async fn s3_secret(&self, access_id: &str) -> Result<String, ClientError> {
        self.call(async |om| {
            let mut req = om.s3_secret_request();
            self.set_header(req.get().init_header(), 0);
            req.get().set_access_id(access_id);
            let reply = req.send().promise.await?;
            let r = reply.get()?;
            if r.has_error() {
                return Err(om_error(r.get_error()?));
            }
            text(r.get_secret())
        })
        .await
    }

    /// A multipart upload's parts after part `marker` (at most `limit`, 1..=1000), whether
    /// more follow, its metadata and when it began.
    #[allow(clippy::too_many_arguments)]
    pub async fn list_parts(&self, volume: &str, bucket: &str, key: &str, upload_id: &str, marker: u32, limit: u32) -> Result<UploadParts, ClientError> {
        self.call(async |om| {
            let mut req = om.list_parts_request();
            self.set_header(req.get().init_header(), 0);
            let mut q = req.get();
            q.set_volume(volume);
            q.set_bucket(bucket);
            q.set_key(key);
            q.set_upload_id(upload_id);
            q.set_part_marker(marker);
            q.set_limit(limit);
            let reply = req.send().promise.await?;
            let r = reply.get()?;
            if r.has_error() {
                return Err(om_error(r.get_error()?));
            }
            let mut parts = Vec::new();
            for p in r.get_parts()?.iter() {
                parts.push(PartInfo { part_number: p.get_part_number(), etag: text(p.get_etag())?, size: p.get_size(), modified_ms: p.get_modified_ms(), checksum: text(p.get_checksum())? });
            }
            let mut metadata = Vec::new();
            for m in r.get_metadata()?.iter() {
                metadata.push((text(m.get_key())?, text(m.get_value())?));
            }
            Ok(UploadParts { parts, truncated: r.get_truncated(), metadata, created_ms: r.get_created_ms() })
        })
        .await
    }

    /// The multipart uploads in progress in a bucket (keys starting with `prefix`), after
    /// `after` (a key and an upload id), at most `limit` (1..=1000), each with the value of its
    /// metadata pair named `with` (empty: none asked). With a `delimiter` (none when empty), of
    /// the uploads whose keys share a common prefix the OM returns the first only, as
    /// [`Self::list_keys_rolled_up`] does; the next page should start past the whole group. An
    /// OM of an earlier build (before `listUploads` took a delimiter) ignores it and returns
    /// every upload.
    #[allow(clippy::too_many_arguments)]
    pub async fn list_uploads(&self, volume: &str, bucket: &str, prefix: &str, after: (&str, &str), limit: u32, with: &str, delimiter: &str) -> Result<Page<UploadListed>, ClientError> {
        self.call(async |om| {
            let mut req = om.list_uploads_request();
            self.set_header(req.get().init_header(), 0);
            let mut q = req.get();
            q.set_volume(volume);
            q.set_bucket(bucket);
            q.set_prefix(prefix);
            q.set_key_marker(after.0);
            q.set_upload_id_marker(after.1);
            q.set_limit(limit);
            if !with.is_empty() {
                q.set_metadata_key(with);
            }
            if !delimiter.is_empty() {
                q.set_delimiter(delimiter);
            }
            let reply = req.send().promise.await?;
            let r = reply.get()?;
            if r.has_error() {
                return Err(om_error(r.get_error()?));
            }
            let mut items = Vec::new();
            for u in r.get_uploads()?.iter() {
                let value = if u.has_metadata_value() { text(u.get_metadata_value())? } else { String::new() };
                items.push(UploadListed { key: text(u.get_key())?, upload_id: text(u.get_upload_id())?, created_ms: u.get_created_ms(), value });
            }
            Ok(Page { items, truncated: r.get_truncated() })
        })
        .await
    }

    /// How many times a call is tried at most (default [`ATTEMPTS_MAX`]; 1: never retried,
    /// every failure is returned as it came).
    pub fn set_attempts_max(&self, attempts: u32) {
        self.attempts_max.set(attempts.max(1));
    }

    /// How long a call may take with all its attempts (default [`CALL_DEADLINE`]); one attempt
    /// gets at most [`ATTEMPT_TIMEOUT`] of it.
    pub fn set_call_deadline(&self, deadline: Duration) {
        self.call_deadline.set(deadline);
        // A longer deadline is worth as many more attempts (about one a second once backed
        // off), or the attempts would run out long before it (at about 150 s).
        let secs = u32::try_from(deadline.as_secs()).unwrap_or(u32::MAX);
        self.attempts_max.set(ATTEMPTS_MAX.max(secs));
    }

    /// One attempt against `addr` of a call that started at `started`: bounded by the attempt
    /// timeout and by what is left of the call's deadline.
    async fn attempt<T>(&self, addr: &str, started: std::time::Instant, what: impl std::future::Future<Output = Result<T, ClientError>>) -> Result<T, ClientError> {
        let left = self.call_deadline.get().saturating_sub(started.elapsed()).max(Duration::from_millis(1));
        within(&*self.runtime, addr, ATTEMPT_TIMEOUT.min(left), what).await
    }

    /// `e`, the failure a call stops at: a retryable one stopped by the deadline says so.
    fn gave_up(&self, e: ClientError, started: std::time::Instant) -> ClientError {
        if retryable(&e) && started.elapsed() + BACKOFF_MAX >= self.call_deadline.get() {
            ClientError::Deadline { after: started.elapsed(), last: Box::new(e) }
        } else {
            e
        }
    }

    /// The runtime this client was connected on.
    pub fn runtime(&self) -> &Rc<dyn Runtime> {
        &self.runtime
    }

    /// The node this client talks to now.
    pub fn address(&self) -> &str {
        &self.addrs[self.current.get()]
    }

    fn om(&self) -> ozone_manager::Client {
        self.om.borrow().clone()
    }

    /// After a retryable failure: waits (backoff), then moves to another node if the failure
    /// calls for it. False when the attempts are spent or the failure is not retryable.
    ///
    /// Callers box it: its connect (TLS included) makes a ~5.3 KiB future, and a future is
    /// as large as the largest it awaits, so every call (the S3 gateway's too) carried those
    /// bytes and moved them at each level, though this runs only after a failure.
    async fn recover(&self, e: &ClientError, attempt: &mut u32, delay: &mut Duration, started: std::time::Instant) -> bool {
        if !retryable(e) || *attempt >= self.attempts_max.get() || started.elapsed() + *delay >= self.call_deadline.get() {
            return false;
        }
        if trace_retries() {
            eprintln!("stratos client {:x}: attempt {} at {} failed: {e}; retrying in {:?}", self.client_id, *attempt, self.address(), *delay);
        }
        self.runtime.sleep(*delay).await;
        *delay = (*delay * 2).min(BACKOFF_MAX);
        *attempt += 1;
        let hinted = match e {
            ClientError::Om { status: Status::NotLeader, leader_hint, .. } => self.addrs.iter().position(|a| a == leader_hint),
            _ => None,
        };
        let next = match hinted {
            Some(i) => Some(i),
            None if lost_node(e) => Some((self.current.get() + 1) % self.addrs.len()),
            None => None,
        };
        // Connecting to the next node counts against the call's deadline too (5 s per node
        // that does not accept made `--timeout 12` take 15 s).
        let left = self.call_deadline.get().saturating_sub(started.elapsed());
        let late = || Err(ClientError::Timeout { addr: self.address().to_string(), after: left });
        if let Some(start) = next
            && let Ok((i, om)) = runtime::or_after(&*self.runtime, left, connect_any(&*self.runtime, &self.addrs, start), late).await
        {
            self.current.set(i);
            *self.om.borrow_mut() = om;
        }
        true
    }

    /// Runs `f` against the current node, retrying as [`Self::recover`] says.
    async fn call<T>(&self, f: impl AsyncFn(&ozone_manager::Client) -> Result<T, ClientError>) -> Result<T, ClientError> {
        self.call_since(std::time::Instant::now(), f).await
    }

    /// [`Self::call`] for a call that started at `started` (its deadline counts from there).
    async fn call_since<T>(&self, started: std::time::Instant, f: impl AsyncFn(&ozone_manager::Client) -> Result<T, ClientError>) -> Result<T, ClientError> {
        let mut attempt = 1;
        let mut delay = Duration::from_millis(50);
        loop {
            let om = self.om();
            let addr = self.address().to_string();
            match self.attempt(&addr, started, f(&om)).await {
                Err(e) if Box::pin(self.recover(&e, &mut attempt, &mut delay, started)).await => {}
                Err(e) => return Err(self.gave_up(e, started)),
                other => return other,
            }
        }
    }

    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    fn set_header(&self, mut h: om_capnp::request_header::Builder<'_>, request_id: u64) {
        h.set_client_id(self.client_id);
        h.set_request_id(request_id);
        h.set_user(&self.user);
        h.set_min_meta_index(self.meta_index.get());
    }

    fn seen_meta(&self, index: u64) {
        self.meta_index.set(self.meta_index.get().max(index));
    }

    /// The newest meta-group index this client has seen (its reads wait for at least it).
    pub fn meta_index(&self) -> u64 {
        self.meta_index.get()
    }

    /// Has this client's reads wait for the meta group's state at `index` or later: what
    /// another client (another executor's) wrote is then read back.
    pub fn read_after(&self, index: u64) {
        self.seen_meta(index);
    }

    /// One mutation; `build` fills in the operation. Retried (same request id) while the OM is
    /// unavailable or not the leader.
    pub async fn submit(&self, build: impl Fn(om_capnp::operation::Builder<'_>)) -> Result<Done, ClientError> {
        let started = std::time::Instant::now();
        let request_id = self.next_request.get();
        self.next_request.set(request_id + 1);
        let send = async |om: &ozone_manager::Client| {
            let mut req = om.submit_request();
            self.set_header(req.get().init_header(), request_id);
            build(req.get().init_operation());
            let reply = req.send().promise.await?;
            let r = reply.get()?;
            self.seen_meta(r.get_meta_index());
            outcome(r.get_outcome()?)
        };
        // A single-key operation goes to its group's leader and core first (see `Routes`);
        // whatever goes wrong there, it goes again, same request id, the usual way.
        if let Some(addr) = self.route_one(&build).await
            && let Some(om) = self.conn(&addr).await
        {
            match self.attempt(&addr, started, send(&om)).await {
                Err(e) if lost_node(&e) => self.forget(&addr),
                Err(e) if retryable(&e) => self.routes.borrow_mut().fetched = None,
                done => return done,
            }
        }
        self.call_since(started, send).await
    }

    /// The routed address for the single-key operation `build` makes, if it is one and the
    /// address differs from the current connection's.
    async fn route_one(&self, build: &impl Fn(om_capnp::operation::Builder<'_>)) -> Option<String> {
        let mut message = capnp::message::Builder::new(capnp::message::HeapAllocator::new().first_segment_words(64));
        build(message.init_root::<om_capnp::operation::Builder<'_>>());
        let op = message.get_root_as_reader::<om_capnp::operation::Reader<'_>>().ok()?;
        let (v, b, k) = single_key(op)?;
        self.refresh_routes().await;
        let here = self.address();
        self.routes.borrow().target(&self.addrs, here, v, b, k).filter(|a| a != here)
    }

    /// Drops a routed connection that failed (the next call dials again) and the routes.
    fn forget(&self, addr: &str) {
        self.conns.borrow_mut().remove(addr);
        self.routes.borrow_mut().fetched = None;
    }

    /// Many mutations in one message: one outcome each, in order. The request ids of a batch
    /// are `first .. first + n` (the server derives them from the header's by position).
    ///
    /// Connected to a cluster (several addresses), a batch of key operations only (no volume
    /// or bucket operation, whose order matters) is split by the leader of each key's group and
    /// the parts go to their leaders' nodes at once; each part has its own request ids, kept
    /// when it is retried (through the current node, with the usual failover), so nothing is
    /// applied twice. Key operations of a batch run concurrently on the server anyway, and a
    /// key's operations stay in one part, in order.
    ///
    /// `build(i, op)` makes operation `i`; it is called more than once for each (to route the
    /// batch, then for each attempt), and must make the same operation every time.
    pub async fn batch(&self, n: u32, build: impl Fn(u32, om_capnp::operation::Builder<'_>)) -> Result<Vec<Result<Done, ClientError>>, ClientError> {
        let started = std::time::Instant::now();
        if n == 0 {
            return self.batch_as(n, self.take_ids(n), builder(n, build), started).await;
        }
        // Sized for the batch (an operation is a few dozen words): the default first segment is
        // 8 KiB, zeroed for every call, however small the batch.
        let mut message = capnp::message::Builder::new(capnp::message::HeapAllocator::new().first_segment_words(n.saturating_mul(48).saturating_add(16).min(capnp::message::SUGGESTED_FIRST_SEGMENT_WORDS)));
        {
            let mut list = message.init_root::<ozone_manager::batch_params::Builder<'_>>().init_operations(n);
            for i in 0..n {
                build(i, list.reborrow().get(i));
            }
        }
        let ops = message.get_root_as_reader::<ozone_manager::batch_params::Reader<'_>>()?.get_operations()?;
        // A part's request is built again by `build` rather than copied from `ops` (which only
        // routing reads): capnp's deep copy zeroed and copied every pointer, ~3.7k instructions
        // per single-key call against ~1k to build it (callgrind of `omkg --batch 1`).
        let copy = |positions: &[u32]| picker(&build, positions.to_vec());
        let Some(parts) = self.split(&ops).await else {
            let all: Vec<u32> = (0..n).collect();
            return self.batch_as(n, self.take_ids(n), copy(&all), started).await;
        };
        let send = async |(addr, positions): &(String, Vec<u32>)| {
            let k = positions.len() as u32;
            let request_id = self.take_ids(k);
            if let Some(om) = self.conn(addr).await {
                match self.attempt(addr, started, self.send_batch(&om, k, request_id, copy(positions))).await {
                    Ok(outs) if !outs.iter().any(|o| o.as_ref().is_err_and(retryable)) => return Ok(outs),
                    Err(e) if lost_node(&e) => self.forget(addr),
                    _ => {}
                }
            }
            // Whatever went wrong (no connection, a lost node, a retryable answer), the routes
            // may be stale; the part goes again, same ids, through the current node.
            self.routes.borrow_mut().fetched = None;
            self.batch_as(k, request_id, copy(positions), started).await
        };
        // One part (one group's leader, or one node): awaited as it is, without `join_all`'s
        // vector of futures.
        let answers = match &parts[..] {
            [one] => vec![send(one).await],
            _ => futures_util::future::join_all(parts.iter().map(|p| send(p))).await,
        };
        let mut out: Vec<Option<Result<Done, ClientError>>> = (0..n).map(|_| None).collect();
        for ((_, positions), answer) in parts.iter().zip(answers) {
            match answer {
                Ok(outs) => positions.iter().zip(outs).for_each(|(&p, o)| out[p as usize] = Some(o)),
                Err(e) => return Err(e),
            }
        }
        Ok(out.into_iter().map(|o| o.unwrap_or_else(|| Err(ClientError::Om { status: Status::Internal, message: "no outcome".into(), leader_hint: String::new() }))).collect())
    }

    /// The batch's operations by the address to send them to: each single-key operation to
    /// its group's leader and core (see [`Routes::target`]), the rest to the current node.
    /// None: not to be split (a volume or bucket operation; no routes).
    async fn split(&self, ops: &capnp::struct_list::Reader<'_, om_capnp::operation::Owned>) -> Option<Vec<(String, Vec<u32>)>> {
        use om_capnp::operation::Which;
        if ops.iter().any(|op| !matches!(op.which(), Ok(Which::OpenKey(_) | Which::CommitKey(_) | Which::AllocateBlock(_) | Which::DeleteKey(_) | Which::DeleteKeys(_) | Which::RenameKey(_)))) {
            return None;
        }
        self.refresh_routes().await;
        let routes = self.routes.borrow();
        if routes.shards == 0 {
            return None;
        }
        let here = self.address().to_string();
        let mut parts: Vec<(String, Vec<u32>)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let to = single_key(op).and_then(|(v, b, k)| routes.target(&self.addrs, &here, v, b, k)).unwrap_or_else(|| here.clone());
            match parts.iter_mut().find(|(a, _)| *a == to) {
                Some((_, p)) => p.push(i as u32),
                None => parts.push((to, vec![i as u32])),
            }
        }
        Some(parts)
    }

    /// Fetches the routes if they are older than [`ROUTES_MAX_AGE`] (one fetch at a time; the
    /// others go on with what is cached). A node that cannot answer leaves routing off until
    /// the next try.
    async fn refresh_routes(&self) {
        {
            let mut r = self.routes.borrow_mut();
            if r.refreshing || r.fetched.is_some_and(|t| t.elapsed() < ROUTES_MAX_AGE) {
                return;
            }
            r.refreshing = true;
        }
        let here = self.address().to_string();
        let fetched = within(&*self.runtime, &here, ROUTES_TIMEOUT, self.routes_of(&self.om())).await;
        // The core ports of the other nodes that lead a group (each node knows only its own).
        let mut ports = std::collections::HashMap::new();
        if let Ok(r) = &fetched {
            ports.insert(here.clone(), r.core_ports.clone());
            let mut others: Vec<&String> = r.leaders.iter().filter(|a| **a != here && self.addrs.contains(a)).collect();
            others.sort();
            others.dedup();
            for a in others {
                if let Some(om) = self.conn(a).await
                    && let Ok(theirs) = within(&*self.runtime, a, ROUTES_TIMEOUT, self.routes_of(&om)).await
                {
                    ports.insert(a.clone(), theirs.core_ports);
                }
            }
        }
        let mut r = self.routes.borrow_mut();
        r.refreshing = false;
        r.fetched = Some(std::time::Instant::now());
        let fetched = fetched.unwrap_or_default();
        (r.shards, r.leaders, r.ports) = (fetched.shards, fetched.leaders, ports);
        r.resolve(&self.addrs, &here);
    }

    /// The shard count and each group's leader (client address, "" if none known), as the
    /// current node knows them; group 0 is the meta group, group s + 1 key shard s.
    pub async fn routes(&self) -> Result<(u32, Vec<String>), ClientError> {
        // One attempt, bounded: a frozen node held `admin add|remove` forever here.
        let addr = self.address().to_string();
        self.attempt(&addr, std::time::Instant::now(), self.routes_of(&self.om())).await.map(|r| (r.shards, r.leaders))
    }

    /// `routes` of the node behind `om`.
    async fn routes_of(&self, om: &ozone_manager::Client) -> Result<RoutesReply, ClientError> {
        let mut req = om.routes_request();
        self.set_header(req.get().init_header(), 0);
        let reply = req.send().promise.await?;
        let r = reply.get()?;
        if r.has_error() {
            return Err(om_error(r.get_error()?));
        }
        let leaders = r.get_leaders()?.iter().map(|a| Ok(a?.to_string()?)).collect::<Result<Vec<String>, capnp::Error>>()?;
        // An older node has no core ports (an empty list): calls then go to its shared port.
        let core_ports = r.get_core_ports()?.iter().collect();
        Ok(RoutesReply { shards: r.get_shards(), leaders, core_ports })
    }

    /// A connection to `addr` (the current node's, or a cached or new one); None if it cannot
    /// be had now.
    async fn conn(&self, addr: &str) -> Option<ozone_manager::Client> {
        if addr == self.address() {
            return Some(self.om());
        }
        if let Some(c) = self.conns.borrow().get(addr) {
            return Some(c.clone());
        }
        let c: ozone_manager::Client = connect_rpc_on(&*self.runtime, addr).await.ok()?;
        self.conns.borrow_mut().insert(addr.to_string(), c.clone());
        Some(c)
    }

    fn take_ids(&self, n: u32) -> u64 {
        let first = self.next_request.get();
        self.next_request.set(first + u64::from(n));
        first
    }

    /// One batch call to `om`, no retry.
    async fn send_batch(&self, om: &ozone_manager::Client, n: u32, request_id: u64, fill: impl Fn(OpList<'_>)) -> Result<Vec<Result<Done, ClientError>>, ClientError> {
        let mut req = om.batch_request();
        self.set_header(req.get().init_header(), request_id);
        fill(req.get().init_operations(n));
        let reply = req.send().promise.await?;
        let r = reply.get()?;
        self.seen_meta(r.get_meta_index());
        Ok(r.get_outcomes()?.iter().map(outcome).collect::<Vec<_>>())
    }

    /// A batch with request ids `request_id ..`, to the current node, retried whole (same
    /// ids) with failover while it fails or any outcome is retryable.
    async fn batch_as(&self, n: u32, request_id: u64, fill: impl Fn(OpList<'_>), started: std::time::Instant) -> Result<Vec<Result<Done, ClientError>>, ClientError> {
        let mut attempt = 1;
        let mut delay = Duration::from_millis(50);
        loop {
            let addr = self.address().to_string();
            let sent = self.attempt(&addr, started, self.send_batch(&self.om(), n, request_id, &fill)).await;
            // A retryable outcome (a group without a leader, say) sends the whole batch again
            // with the same request ids: what was applied is answered from the retry cache.
            let again = match &sent {
                Err(e) => Box::pin(self.recover(e, &mut attempt, &mut delay, started)).await,
                Ok(outs) => match outs.iter().find_map(|o| o.as_ref().err().filter(|e| retryable(e))) {
                    Some(e) => Box::pin(self.recover(e, &mut attempt, &mut delay, started)).await,
                    None => false,
                },
            };
            if !again {
                return sent.map_err(|e| self.gave_up(e, started));
            }
        }
    }

    pub async fn echo(&self, payload: &[u8], via_raft: bool) -> Result<usize, ClientError> {
        self.call(async |om| {
            let mut req = om.echo_request();
            req.get().set_payload(payload);
            req.get().set_via_raft(via_raft);
            let reply = req.send().promise.await?;
            Ok(reply.get()?.get_payload()?.len())
        })
        .await
    }

    pub async fn volume_info(&self, volume: &str) -> Result<VolumeInfo, ClientError> {
        self.call(async |om| {
            let mut req = om.volume_info_request();
            self.set_header(req.get().init_header(), 0);
            req.get().set_volume(volume);
            let reply = req.send().promise.await?;
            let r = reply.get()?;
            if r.has_error() {
                return Err(om_error(r.get_error()?));
            }
            Ok(VolumeInfo::of(r.get_info()?)?)
        })
        .await
    }

    /// The volumes (all, or `owner`'s if not empty) whose names start with `prefix`, after
    /// `start`, at most `limit` (1..=10000).
    pub async fn list_volumes(&self, owner: &str, prefix: &str, start: &str, limit: u32) -> Result<Page<VolumeInfo>, ClientError> {
        self.call(async |om| {
            let mut req = om.list_volumes_request();
            self.set_header(req.get().init_header(), 0);
            req.get().set_owner(owner);
            set_page(req.get().init_page(), prefix, start, limit);
            let reply = req.send().promise.await?;
            let r = reply.get()?;
            if r.has_error() {
                return Err(om_error(r.get_error()?));
            }
            let items = r.get_volumes()?.iter().map(VolumeInfo::of).collect::<Result<_, _>>()?;
            Ok(Page { items, truncated: r.get_truncated() })
        })
        .await
    }

    pub async fn bucket_info(&self, volume: &str, bucket: &str) -> Result<BucketInfo, ClientError> {
        self.call(async |om| {
            let mut req = om.bucket_info_request();
            self.set_header(req.get().init_header(), 0);
            req.get().set_volume(volume);
            req.get().set_bucket(bucket);
            let reply = req.send().promise.await?;
            let r = reply.get()?;
            if r.has_error() {
                return Err(om_error(r.get_error()?));
            }
            Ok(BucketInfo::of(r.get_info()?)?)
        })
        .await
    }

    /// The buckets of `volume` whose names start with `prefix`, after `start`, at most `limit`.
    pub async fn list_buckets(&self, volume: &str, prefix: &str, start: &str, limit: u32) -> Result<Page<BucketInfo>, ClientError> {
        self.call(async |om| {
            let mut req = om.list_buckets_request();
            self.set_header(req.get().init_header(), 0);
            req.get().set_volume(volume);
            set_page(req.get().init_page(), prefix, start, limit);
            let reply = req.send().promise.await?;
            let r = reply.get()?;
            if r.has_error() {
                return Err(om_error(r.get_error()?));
            }
            let items = r.get_buckets()?.iter().map(BucketInfo::of).collect::<Result<_, _>>()?;
            Ok(Page { items, truncated: r.get_truncated() })
        })
        .await
    }

    /// The reply to one `lookupKey`, its error (if any) turned into `Err`.
    async fn lookup(&self, volume: &str, bucket: &str, key: &str, for_acl: bool) -> Result<capnp::capability::Response<ozone_manager::lookup_key_results::Owned>, ClientError> {
        self.call(async |om| {
            let mut req = om.lookup_key_request();
            self.set_header(req.get().init_header(), 0);
            req.get().set_volume(volume);
            req.get().set_bucket(bucket);
            req.get().set_key(key);
            req.get().set_for_acl(for_acl);
            let reply = req.send().promise.await?;
            let r = reply.get()?;
            if r.has_error() {
                return Err(om_error(r.get_error()?));
            }
            Ok(reply)
        })
        .await
    }

    /// A committed key, with its blocks (read tokens and datanodes where the OM has a data
    /// path). A missing key is `Err` with status [`Status::KeyNotFound`].
    pub async fn lookup_key(&self, volume: &str, bucket: &str, key: &str) -> Result<KeyInfo, ClientError> {
        let reply = self.lookup(volume, bucket, key, false).await?;
        Ok(KeyInfo::of(reply.get()?.get_info()?)?)
    }

    /// A committed key read for its ACL (Ozone's `getAcl`, S3's GetObjectAcl): the caller needs
    /// READ_ACL (on the bucket, or from the key's own entries) rather than READ, and the blocks
    /// come without read tokens. Its `acls` are the key's own entries.
    pub async fn lookup_key_acl(&self, volume: &str, bucket: &str, key: &str) -> Result<KeyInfo, ClientError> {
        let reply = self.lookup(volume, bucket, key, true).await?;
        Ok(KeyInfo::of(reply.get()?.get_info()?)?)
    }

    /// A key's size and blocks (with read tokens and datanodes), for reading its data.
    pub async fn lookup_blocks(&self, volume: &str, bucket: &str, key: &str) -> Result<(u64, Vec<Block>), ClientError> {
        let reply = self.lookup(volume, bucket, key, false).await?;
        let info = reply.get()?.get_info()?;
        Ok((info.get_data_size(), info.get_blocks()?.iter().map(Block::of).collect::<Result<_, _>>()?))
    }

    /// Many keys of one bucket in one call: one result each, in order (a missing key is a
    /// `KEY_NOT_FOUND` error in its place). At most 4096 keys.
    pub async fn lookup_keys(&self, volume: &str, bucket: &str, keys: &[&str]) -> Result<Vec<Result<KeyInfo, ClientError>>, ClientError> {
        self.call(async |om| {
            let mut req = om.lookup_keys_request();
            self.set_header(req.get().init_header(), 0);
            req.get().set_volume(volume);
            req.get().set_bucket(bucket);
            let mut list = req.get().init_keys(keys.len() as u32);
            for (i, k) in keys.iter().enumerate() {
                list.set(i as u32, *k);
            }
            let reply = req.send().promise.await?;
            let r = reply.get()?;
            if r.has_error() {
                return Err(om_error(r.get_error()?));
            }
            let mut out = Vec::new();
            for item in r.get_results()?.iter() {
                out.push(match item.which().map_err(|e| capnp::Error::failed(format!("unknown lookup result {}", e.0)))? {
                    om_capnp::key_lookup::Which::Info(k) => Ok(KeyInfo::of(k?)?),
                    om_capnp::key_lookup::Which::Error(e) => Err(om_error(e?)),
                });
            }
            Ok(out)
        })
        .await
    }

    /// The committed keys of a bucket whose names start with `prefix`, after `start`, at most
    /// `limit` (without read tokens).
    pub async fn list_keys(&self, volume: &str, bucket: &str, prefix: &str, start: &str, limit: u32) -> Result<Page<KeyInfo>, ClientError> {
        self.list_keys_rolled_up(volume, bucket, prefix, start, limit, "").await
    }

    /// [`Self::list_keys`] with a `delimiter` (none when empty): of the keys under one common
    /// prefix (the prefix, then the name up to and including the delimiter's first occurrence
    /// after it) the OM returns the first only, and skips the rest. The next page should start
    /// past the whole group (the common prefix followed by `char::MAX`), as S3's listings do.
    pub async fn list_keys_rolled_up(&self, volume: &str, bucket: &str, prefix: &str, start: &str, limit: u32, delimiter: &str) -> Result<Page<KeyInfo>, ClientError> {
        self.call(async |om| {
            let mut req = om.list_keys_request();
            self.set_header(req.get().init_header(), 0);
            req.get().set_volume(volume);
            req.get().set_bucket(bucket);
            set_page(req.get().init_page(), prefix, start, limit);
            if !delimiter.is_empty() {
                req.get().get_page()?.set_delimiter(delimiter);
            }
            let reply = req.send().promise.await?;
            let r = reply.get()?;
            if r.has_error() {
                return Err(om_error(r.get_error()?));
            }
            let items = r.get_keys()?.iter().map(KeyInfo::of).collect::<Result<_, _>>()?;
            Ok(Page { items, truncated: r.get_truncated() })
        })
        .await
    }
}

/// One group's Raft state as one node sees it (`adminStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    pub group: u32,
    pub leader: u64,
    pub term: u64,
    pub last_log: u64,
    pub committed: u64,
    pub applied: u64,
    pub members: Vec<u64>,
    /// On the leader: (node, matched log index) per replica.
    pub replicas: Vec<(u64, u64)>,
    /// Asked for (`admin_status(true)`): a hash of the group's whole state at `applied`.
    pub state_hash: Option<u64>,
}

impl Client {
    /// The node's id and its view of every group (administrators only). No retries: the
    /// caller asks each node it cares about.
    pub async fn admin_status(&self, hashes: bool) -> Result<(u64, Vec<GroupStatus>), ClientError> {
        // One attempt within the call's deadline: a node that does not answer is shown as down.
        let addr = self.address().to_string();
        self.attempt(&addr, std::time::Instant::now(), self.admin_status_once(hashes)).await
    }

    async fn admin_status_once(&self, hashes: bool) -> Result<(u64, Vec<GroupStatus>), ClientError> {
        let mut req = self.om().admin_status_request();
        self.set_header(req.get().init_header(), 0);
        req.get().set_hashes(hashes);
        let reply = req.send().promise.await?;
        let r = reply.get()?;
        if r.has_error() {
            return Err(om_error(r.get_error()?));
        }
        let mut out = Vec::new();
        for g in r.get_groups()?.iter() {
            out.push(GroupStatus {
                group: g.get_group(),
                leader: g.get_leader(),
                term: g.get_term(),
                last_log: g.get_last_log(),
                committed: g.get_committed(),
                applied: g.get_applied(),
                members: g.get_members()?.iter().collect(),
                replicas: g.get_replicas()?.iter().map(|p| (p.get_node(), p.get_matched())).collect(),
                state_hash: hashes.then(|| g.get_state_hash()),
            });
        }
        Ok((r.get_node(), out))
    }

    /// Adds node `node` to every group the connected node leads (learner, then voter once
    /// caught up); returns the groups changed. No retries (see `stratos admin add`).
    pub async fn admin_add_node(&self, node: u64, raft: &str, rpc: &str) -> Result<Vec<u32>, ClientError> {
        // The node answers once the new member caught up as a learner (up to 120 s there).
        let addr = self.address().to_string();
        within(&*self.runtime, &addr, ADD_NODE_TIMEOUT, self.admin_add_node_once(node, raft, rpc)).await
    }

    async fn admin_add_node_once(&self, node: u64, raft: &str, rpc: &str) -> Result<Vec<u32>, ClientError> {
        let mut req = self.om().admin_add_node_request();
        self.set_header(req.get().init_header(), 0);
        req.get().set_node(node);
        req.get().set_raft_address(raft);
        req.get().set_rpc_address(rpc);
        let reply = req.send().promise.await?;
        let r = reply.get()?;
        if r.has_error() {
            return Err(om_error(r.get_error()?));
        }
        Ok(r.get_changed()?.iter().collect())
    }

    /// Removes voter `node` from every group the connected node leads; returns the groups
    /// changed. No retries.
    pub async fn admin_remove_node(&self, node: u64) -> Result<Vec<u32>, ClientError> {
        let addr = self.address().to_string();
        self.attempt(&addr, std::time::Instant::now(), self.admin_remove_node_once(node)).await
    }

    async fn admin_remove_node_once(&self, node: u64) -> Result<Vec<u32>, ClientError> {
        let mut req = self.om().admin_remove_node_request();
        self.set_header(req.get().init_header(), 0);
        req.get().set_node(node);
        let reply = req.send().promise.await?;
        let r = reply.get()?;
        if r.has_error() {
            return Err(om_error(r.get_error()?));
        }
        Ok(r.get_changed()?.iter().collect())
    }

    /// Moves `group`'s leadership to node `to`; send it to the group's leader.
    pub async fn admin_transfer(&self, group: u32, to: u64) -> Result<(), ClientError> {
        let addr = self.address().to_string();
        self.attempt(&addr, std::time::Instant::now(), self.admin_transfer_once(group, to)).await
    }

    async fn admin_transfer_once(&self, group: u32, to: u64) -> Result<(), ClientError> {
        let mut req = self.om().admin_transfer_request();
        self.set_header(req.get().init_header(), 0);
        req.get().set_group(group);
        req.get().set_to_node(to);
        let reply = req.send().promise.await?;
        let r = reply.get()?;
        if r.has_error() {
            return Err(om_error(r.get_error()?));
        }
        Ok(())
    }
}

type OpList<'a> = capnp::struct_list::Builder<'a, om_capnp::operation::Owned>;

/// Fills a request's operation list with operations `positions` of a batch, built by `build`.
fn picker<'a>(build: &'a impl Fn(u32, om_capnp::operation::Builder<'_>), positions: Vec<u32>) -> impl Fn(OpList<'_>) + 'a {
    move |mut list| {
        for (j, &p) in positions.iter().enumerate() {
            build(p, list.reborrow().get(j as u32));
        }
    }
}

/// Fills a request's operation list by calling `build` for each position.
fn builder(n: u32, build: impl Fn(u32, om_capnp::operation::Builder<'_>)) -> impl Fn(OpList<'_>) {
    move |mut list| {
        for i in 0..n {
            build(i, list.reborrow().get(i));
        }
    }
}

fn set_page(mut p: om_capnp::page::Builder<'_>, prefix: &str, start: &str, limit: u32) {
    p.set_prefix(prefix);
    p.set_start_after(start);
    p.set_limit(limit);
}

#[cfg(test)]
mod routes_tests {
    use super::*;

    /// Two nodes, four shards: groups led by either node, or by one this client was not given.
    fn routes(here: &str) -> Routes {
        let addrs = ["10.0.0.1:9862".to_string(), "10.0.0.2:9862".to_string()];
        let mut r = Routes {
            shards: 4,
            leaders: vec![addrs[0].clone(), addrs[1].clone(), String::new(), "10.9.9.9:9862".into(), addrs[0].clone()],
            ..Default::default()
        };
        r.ports.insert(addrs[0].clone(), vec![0, 9870, 9871, 9872, 0]);
        r.ports.insert(addrs[1].clone(), vec![0, 9980, 9981, 0, 9983]);
        r.resolve(&addrs, here);
        r
    }

    /// The targets worked out at a refresh are those worked out per call, for the address the
    /// refresh was made through and (worked out then) for another.
    #[test]
    fn resolved_targets_are_the_per_call_ones() {
        let addrs = ["10.0.0.1:9862".to_string(), "10.0.0.2:9862".to_string()];
        let r = routes(&addrs[0]);
        let mut seen = std::collections::HashSet::new();
        for i in 0..64 {
            let k = format!("key-{i}");
            for here in [&addrs[0], &addrs[1]] {
                let group = shard_of("vol", "bkt", &k, r.shards) as usize + 1;
                let t = r.target(&addrs, here, "vol", "bkt", &k).expect("routed");
                assert_eq!(t, r.target_of(&addrs, here, group), "{k} through {here}");
                seen.insert(t);
            }
        }
        // Leaders' core ports, the node's shared port where it gave none, and `here` for a
        // group led by a node this client does not know.
        assert!(seen.contains("10.0.0.2:9980") && seen.contains("10.0.0.1:9871"), "{seen:?}");
        assert_eq!(r.resolved[3], "10.0.0.1:9872", "an unknown leader's group goes through here, at here's core port for it");
        assert_eq!(r.resolved[4], "10.0.0.1:9862", "a leader that gave no core port is called at its shared port");
    }
}
