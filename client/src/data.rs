//! Key data: writing a file as a key through the datanodes, and reading a key back.
//!
//! **Put.** Open the key (the OM answers with pre-allocated blocks, write tokens and each block's
//! datanodes), then for each block: read the file's range chunk by chunk (`CHUNK_BYTES`; never
//! the whole file in memory), send every chunk to all of the block's datanodes at once, and
//! `putBlock` on each (durable there). If a datanode fails, the block is given up and the client
//! asks the OM for a new block that excludes that datanode (`allocateBlock`) and writes the
//! range again. Only when every block is on all of its datanodes is the key committed, with the
//! blocks' lengths; a failed put leaves an open key that the OM expires.
//!
//! **Get.** Look the key up (read tokens), then read each block's range in chunks from one of
//! its datanodes, moving to the next on an error. Every byte is checked by the datanode's frame
//! crc; the total length is checked against the key's.
//!
//! **Runtime.** Datanode connections are dialed, and every datanode call is timed out
//! ([`DATANODE_CALL_TIMEOUT`]), on the runtime of the [`Datanodes`] they come from: give it the
//! runtime of the [`Client`] it is used with (`Datanodes::new(client.runtime().clone())`).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use stratos_schema::datanode_capnp::datanode as dn_rpc;

use crate::{Block, Client, ClientError, Done, Runtime};

/// Bytes per writeChunk/readChunk call (a multiple of the datanode's 64 KiB frame).
pub const CHUNK_BYTES: u64 = 1 << 20;
/// Attempts at one block range (each on a new block excluding the datanodes that failed).
pub const BLOCK_ATTEMPTS_MAX: usize = 4;
/// How long a failed put waits for its open key's abort (the key expires on its own anyway).
pub const ABORT_TIMEOUT: Duration = Duration::from_secs(5);
/// A datanode call that takes longer than this fails (a hung datanode must not hang a put).
pub const DATANODE_CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Om(#[from] ClientError),
    #[error("datanode {id} at {address}: {message}")]
    Datanode { id: u64, address: String, message: String },
    #[error("{0}")]
    Other(String),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: String, source: std::io::Error },
    #[error("interrupted")]
    Interrupted,
    /// A put that failed after its key was opened, and what became of the open key.
    #[error("{cause}; {cleanup}")]
    Failed { cause: Box<DataError>, cleanup: String },
}

/// What a put or get has done so far (for progress bars and tests).
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// The block being written or read.
    pub block: &'a Block,
}

/// Connections to datanodes, by address, made on one runtime: the runtime of the [`Client`]
/// they are used with (`Datanodes::new(client.runtime().clone())`; `Datanodes::default()` is
/// glommio's).
///
/// A clone shares the connections: concurrent puts and gets on one runtime should use clones of
/// one `Datanodes`, so that each datanode gets one connection that their calls share (Cap'n
/// Proto multiplexes them), as Ozone's clients share one per pipeline. Calls queued together then
/// leave in one send and arrive in one receive, where a connection per caller costs every call
/// a send here and a receive and a send on the datanode.
#[derive(Clone)]
pub struct Datanodes {
    runtime: Rc<dyn Runtime>,
    conns: Rc<RefCell<HashMap<String, dn_rpc::Client>>>,
}

impl std::fmt::Debug for Datanodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datanodes").field("runtime", &self.runtime).field("connections", &self.conns.borrow().len()).finish()
    }
}

/// No connections yet, on glommio.
#[cfg(feature = "glommio")]
impl Default for Datanodes {
    fn default() -> Self {
        Datanodes::new(Rc::new(crate::runtime::Glommio))
    }
}

/// One datanode's connection, with the runtime that times its calls out.
#[derive(Clone)]
pub struct Datanode {
    rpc: dn_rpc::Client,
    runtime: Rc<dyn Runtime>,
}

impl std::fmt::Debug for Datanode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datanode").field("runtime", &self.runtime).finish_non_exhaustive()
    }
}

impl Datanode {
    pub fn new(rpc: dn_rpc::Client, runtime: Rc<dyn Runtime>) -> Datanode {
        Datanode { rpc, runtime }
    }

    /// The datanode's Cap'n Proto capability, for calls this module does not wrap.
    pub fn rpc(&self) -> &dn_rpc::Client {
        &self.rpc
    }
}

/// `what`, or an error if it takes longer than [`DATANODE_CALL_TIMEOUT`] by `runtime`'s clock.
async fn timed<T>(runtime: &dyn Runtime, what: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    crate::runtime::or_after(runtime, DATANODE_CALL_TIMEOUT, what, || Err(format!("no answer within {DATANODE_CALL_TIMEOUT:?}"))).await
}

fn dn_error(e: stratos_schema::datanode_capnp::dn_error::Reader<'_>) -> String {
    let status = match e.get_status() {
        Ok(s) => format!("{s:?}"),
        Err(_) => "unknown".into(),
    };
    format!("{status}: {}", e.get_message().ok().and_then(|m| m.to_str().ok()).unwrap_or(""))
}

impl Datanodes {
    /// No connections yet; they will be made on `runtime`.
    pub fn new(runtime: Rc<dyn Runtime>) -> Datanodes {
        Datanodes { runtime, conns: Rc::default() }
    }

    /// The connection to `address` (made on first use).
    pub async fn get(&self, address: &str) -> Result<Datanode, String> {
        let known = self.conns.borrow().get(address).cloned();
        let rpc = match known {
            Some(c) => c,
            None => {
                let c: dn_rpc::Client = crate::connect_rpc_on(&*self.runtime, address).await.map_err(|e| e.to_string())?;
                // A clone may have dialled the same datanode meanwhile: keep the first
                // connection, so that calls keep sharing one (this one closes when dropped).
                self.conns.borrow_mut().entry(address.to_string()).or_insert(c).clone()
            }
        };
        Ok(Datanode::new(rpc, self.runtime.clone()))
    }

    /// Datanodes connected to (one connection each, shared by the clones).
    pub fn connections(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Drops a connection after an error (the next call dials again). Clones that hold calls on
    /// it see their own errors.
    pub fn forget(&self, address: &str) {
        self.conns.borrow_mut().remove(address);
    }
}

/// Where a read finds its datanodes' connections: [`Datanodes`], or a server's own pool.
pub trait DatanodeSource {
    /// The connection to `address` (made on first use).
    fn datanode(&mut self, address: &str) -> impl std::future::Future<Output = Result<Datanode, String>>;
    /// Drops the connection to `address` after an error (the next use dials again).
    fn forget_datanode(&mut self, address: &str);
}

impl DatanodeSource for Datanodes {
    async fn datanode(&mut self, address: &str) -> Result<Datanode, String> {
        self.get(address).await
    }

    fn forget_datanode(&mut self, address: &str) {
        self.forget(address);
    }
}

/// `want` bytes at `offset` of `block`, from the first of its datanodes that serves them all,
/// starting at a replica drawn at random (as Ozone shuffles replicas at equal distance: reads of
/// a hot object spread over its datanodes instead of all landing on the pipeline's first); those
/// in `failed` are asked last. A datanode that errs joins `failed` (so a frozen one costs one
/// timeout per read, not one per chunk) and its connection is dropped. `Err` says what each
/// datanode answered.
pub async fn read_any(src: &mut impl DatanodeSource, block: &Block, offset: u64, want: u32, failed: &mut BTreeSet<u64>) -> Result<Vec<u8>, String> {
    let mut order: Vec<&(u64, String)> = block.datanodes.iter().collect();
    let n = order.len();
    if n > 1 {
        order.rotate_left(rand::random::<u32>() as usize % n);
    }
    order.sort_by_key(|(id, _)| failed.contains(id));
    let mut errors = Vec::new();
    for (id, addr) in order {
        let r = match src.datanode(addr).await {
            Ok(dn) => read_chunk_answered(&dn, block, offset, want).await,
            Err(e) => Err(e),
        };
        // An answered error (a missing block, a refused token) leaves the connection, which
        // is sound and shared; a failed call drops it. Either way this replica goes last.
        let answered = r.is_ok();
        match r {
            Ok(Ok((data, _))) if data.len() == want as usize => return Ok(data),
            Ok(Ok((data, len))) => errors.push(format!("datanode {id} at {addr}: {} bytes at {offset}, block holds {len}", data.len())),
            Ok(Err(e)) | Err(e) => {
                if !answered {
                    src.forget_datanode(addr);
                }
                failed.insert(*id);
                errors.push(format!("datanode {id} at {addr}: {e}"));
            }
        }
    }
    Err(format!("no datanode served it: {}", errors.join("; ")))
}

/// Sets the token and block id every datanode call carries.
macro_rules! addressed {
    ($p:expr, $block:expr) => {{
        $p.set_token(&$block.token);
        $p.set_container_id($block.container_id);
        $p.set_local_id($block.local_id);
    }};
}

/// Sends a datanode request within [`DATANODE_CALL_TIMEOUT`] (by `$dn`'s runtime). The outer
/// `Err` is a failed call (no answer in time, a broken connection, a reply that does not
/// decode); the inner one is the datanode's own `DnError`, with its status and message (it
/// answered: the connection is sound). Otherwise `read` takes what it needs from the reply.
macro_rules! dn_answer {
    ($dn:expr, $req:expr, |$r:ident| $read:expr) => {
        timed(&*$dn.runtime, async {
            let reply = $req.send().promise.await.map_err(|e| e.to_string())?;
            let $r = reply.get().map_err(|e| e.to_string())?;
            if $r.has_error() {
                return Ok(Err(dn_error($r.get_error().map_err(|e| e.to_string())?)));
            }
            let read: Result<_, String> = $read;
            Ok(Ok(read?))
        })
        .await
    };
}

/// [`dn_answer!`] for callers that treat both kinds of error alike.
macro_rules! dn_call {
    ($dn:expr, $req:expr, |$r:ident| $read:expr) => {
        dn_answer!($dn, $req, |$r| $read).and_then(|answered| answered)
    };
}

pub async fn write_chunk(dn: &Datanode, block: &Block, offset: u64, data: &[u8]) -> Result<(), String> {
    let mut req = dn.rpc.write_chunk_request();
    let mut p = req.get();
    addressed!(p, block);
    p.set_offset(offset);
    p.set_data(data);
    dn_call!(dn, req, |r| Ok(()))
}

pub async fn put_block(dn: &Datanode, block: &Block, length: u64) -> Result<(), String> {
    let mut req = dn.rpc.put_block_request();
    let mut p = req.get();
    addressed!(p, block);
    p.set_length(length);
    dn_call!(dn, req, |r| Ok(()))
}

/// A chained write ([the datanode API](stratos_schema::datanode_capnp)'s `writeChained`):
/// `data` at `offset` of `block` (and, with `finish`, the block completed at `length` bytes) on
/// `dn` and on every datanode in `next`, each forwarding to the one after it. On failure returns
/// the address of the datanode that failed, when the chain named one.
#[allow(clippy::too_many_arguments)]
pub async fn write_chained(dn: &Datanode, block: &Block, offset: u64, data: &[u8], finish: bool, length: u64, next: &[&str]) -> Result<(), (Option<String>, String)> {
    let piece = Piece { token: &block.token, container_id: block.container_id, local_id: block.local_id, offset, data, finish, length };
    let late = || Err(ChainFailure { at: None, status: None, message: format!("no answer within {DATANODE_CALL_TIMEOUT:?}") });
    crate::runtime::or_after(&*dn.runtime, DATANODE_CALL_TIMEOUT, send_chained(&dn.rpc, &piece, next), late).await.map_err(|f| (f.at.clone(), f.to_string()))
}

/// One `writeChained` request's content, as a client or a forwarding datanode sends it.
#[derive(Debug, Clone, Copy)]
pub struct Piece<'a> {
    pub token: &'a [u8],
    pub container_id: u64,
    pub local_id: u64,
    pub offset: u64,
    pub data: &'a [u8],
    pub finish: bool,
    pub length: u64,
}

/// Why a `writeChained` call failed.
#[derive(Debug, Clone)]
pub struct ChainFailure {
    /// The datanode that failed, when the chain named one (`failedAt`).
    pub at: Option<String>,
    /// The datanode's status; `None` when the call itself failed (connection, timeout).
    pub status: Option<stratos_schema::datanode_capnp::DnStatus>,
    pub message: String,
}

impl std::fmt::Display for ChainFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "{s:?}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Sends `piece` to `rpc` for it and the datanodes in `next` (no timeout: the caller's). The
/// one encoding of `writeChained` and of its answer, for the client's puts, the gateway and a
/// datanode forwarding down its chain.
pub async fn send_chained(rpc: &dn_rpc::Client, piece: &Piece<'_>, next: &[&str]) -> Result<(), ChainFailure> {
    let failed = |e: capnp::Error| ChainFailure { at: None, status: None, message: e.to_string() };
    let mut req = rpc.write_chained_request();
    let mut p = req.get();
    p.set_token(piece.token);
    p.set_container_id(piece.container_id);
    p.set_local_id(piece.local_id);
    p.set_offset(piece.offset);
    p.set_data(piece.data);
    p.set_finish(piece.finish);
    p.set_length(piece.length);
    let mut l = p.init_next(next.len() as u32);
    for (i, a) in next.iter().enumerate() {
        l.set(i as u32, *a);
    }
    let reply = req.send().promise.await.map_err(failed)?;
    let r = reply.get().map_err(failed)?;
    if !r.has_error() {
        return Ok(());
    }
    let e = r.get_error().map_err(failed)?;
    Err(ChainFailure {
        at: r.get_failed_at().ok().and_then(|t| t.to_str().ok()).filter(|t| !t.is_empty()).map(str::to_string),
        status: Some(e.get_status().unwrap_or(stratos_schema::datanode_capnp::DnStatus::IoError)),
        message: e.get_message().ok().and_then(|m| m.to_str().ok()).unwrap_or("").to_string(),
    })
}

/// Every complete block of a container on a datanode, (local id, length) by local id, in pages
/// of up to 100,000.
pub async fn list_blocks(dn: &Datanode, container_id: u64) -> Result<Vec<(u64, u64)>, String> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let mut req = dn.rpc.list_blocks_request();
        let mut p = req.get();
        p.set_container_id(container_id);
        p.set_start_after(after);
        p.set_max_blocks(100_000);
        let more = dn_call!(dn, req, |r| {
            for b in r.get_blocks().map_err(|e| e.to_string())?.iter() {
                out.push((b.get_local_id(), b.get_length()));
            }
            Ok(r.get_more())
        })?;
        match out.last() {
            Some((l, _)) if more => after = *l,
            _ => return Ok(out),
        }
    }
}

/// Up to `length` bytes at `offset` of a block; returns them and the block's length.
pub async fn read_chunk(dn: &Datanode, block: &Block, offset: u64, length: u32) -> Result<(Vec<u8>, u64), String> {
    read_chunk_answered(dn, block, offset, length).await?
}

/// [`read_chunk`], telling the datanode's own error (inner `Err`: it answered, the connection
/// is fine) from a failed call (outer `Err`: no answer, a broken connection, a bad reply).
async fn read_chunk_answered(dn: &Datanode, block: &Block, offset: u64, length: u32) -> Result<Result<(Vec<u8>, u64), String>, String> {
    let mut req = dn.rpc.read_chunk_request();
    let mut p = req.get();
    addressed!(p, block);
    p.set_offset(offset);
    p.set_length(length);
    dn_answer!(dn, req, |r| Ok((r.get_data().map_err(|e| e.to_string())?.to_vec(), r.get_block_length())))
}

/// Where a put's bytes come from. A put reads to the end of the data: a stream has no size in
/// advance; a regular file ends, for the put, at the size it had when the put began.
pub trait Source {
    /// The size, if it is known before reading (a regular file); `None` for a stream (a pipe,
    /// standard input, a FIFO, a device).
    fn size_hint(&self) -> Option<u64>;
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the data. A block
    /// written again after a datanode failure reads its range again, so offsets at or after the
    /// last [`Source::release`] may be read more than once.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;
    /// The bytes before `offset` are durable on their datanodes and will not be read again.
    fn release(&self, _before: u64) {}
    fn describe(&self) -> String;
}

/// Fills `buf` by calls of `read(rest, filled)`, stopping early only at the end of the data. A
/// read interrupted by a signal is tried again unless the user asked to stop.
fn read_full(buf: &mut [u8], mut read: impl FnMut(&mut [u8], u64) -> std::io::Result<usize>) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted && !crate::interrupt::requested() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A regular file as a source: read at any offset, nothing kept aside.
#[derive(Debug)]
pub struct FileSource {
    file: std::fs::File,
    path: std::path::PathBuf,
    len: u64,
}

impl FileSource {
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let io = |what, source| DataError::Io { what, path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(|e| io("opening", e))?;
        let len = file.metadata().map_err(|e| io("reading the size of", e))?.len();
        Ok(Self { file, path: path.to_path_buf(), len })
    }
}

impl Source for FileSource {
    fn size_hint(&self) -> Option<u64> {
        Some(self.len)
    }
    /// A file is put at the size it had when the put began: bytes appended meanwhile are not
    /// read, and a file that shrank meanwhile is an error (it was committed cut short, exit 0).
    /// A file that says it is empty (`/proc` and `/sys` files do) is read to its end instead.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if self.len == 0 {
            return read_full(buf, |rest, filled| self.file.read_at(rest, offset + filled));
        }
        let want = buf.len().min(self.len.saturating_sub(offset) as usize);
        let n = read_full(&mut buf[..want], |rest, filled| self.file.read_at(rest, offset + filled))?;
        if n < want {
            return Err(std::io::Error::other(format!("the file shrank while being read: {} bytes when the put began, its data now ends at byte {}", self.len, offset + n as u64)));
        }
        Ok(n)
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A stream (standard input, a pipe, a FIFO, a device) as a source. Its bytes can be read once
/// only, so the part not yet durable on datanodes (at most one block) is kept in an unlinked
/// temporary file (in `$TMPDIR`), from which a block written again after a datanode failure is
/// re-read. Never more than one block in memory or on the spool.
pub struct StreamSource {
    name: String,
    state: std::cell::RefCell<Spool>,
}

struct Spool {
    reader: Box<dyn std::io::Read>,
    file: std::fs::File,
    /// Stream offset of the spool file's first byte.
    start: u64,
    /// Stream offset just past the last byte read from the stream.
    end: u64,
    eof: bool,
}

impl std::fmt::Debug for StreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.borrow();
        f.debug_struct("StreamSource").field("name", &self.name).field("spooled", &(s.start..s.end)).field("eof", &s.eof).finish()
    }
}

impl StreamSource {
    pub fn new(name: impl Into<String>, reader: Box<dyn std::io::Read>) -> Result<Self, DataError> {
        let name = name.into();
        let file = tempfile::tempfile().map_err(|source| DataError::Io { what: "creating a spool file (in $TMPDIR) for", path: name.clone(), source })?;
        Ok(StreamSource { name, state: std::cell::RefCell::new(Spool { reader, file, start: 0, end: 0, eof: false }) })
    }
}

impl Source for StreamSource {
    fn size_hint(&self) -> Option<u64> {
        None
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let s = &mut *self.state.borrow_mut();
        if offset < s.start {
            return Err(std::io::Error::other(format!("offset {offset} of {} was released (spool starts at {})", self.name, s.start)));
        }
        // Bring the stream up to the end of the wanted range (or its end), through the spool.
        let want_end = offset + buf.len() as u64;
        let mut chunk = vec![0u8; (want_end.saturating_sub(s.end)).min(CHUNK_BYTES) as usize];
        while s.end < want_end && !s.eof {
            let n = (want_end - s.end).min(CHUNK_BYTES) as usize;
            let got = read_full(&mut chunk[..n], |rest, _| s.reader.read(rest))?;
            s.file.write_all_at(&chunk[..got], s.end - s.start)?;
            s.end += got as u64;
            s.eof = got < n;
        }
        let avail = s.end.saturating_sub(offset).min(buf.len() as u64) as usize;
        s.file.read_exact_at(&mut buf[..avail], offset - s.start)?;
        Ok(avail)
    }
    fn release(&self, before: u64) {
        let s = &mut *self.state.borrow_mut();
        // Only when everything read is released (the put reads in order, so this is the case
        // after each durable block); the spool then starts empty again.
        if before == s.end && s.file.set_len(0).is_ok() {
            s.start = s.end;
        }
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// Whether fd 0 is /dev/null: what the Rust runtime opens there when the process started with
/// standard input closed (`<&-`), which would otherwise store an empty key with exit 0.
fn stdin_is_dev_null() -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(fd0), Ok(null)) = (std::fs::metadata("/proc/self/fd/0"), std::fs::metadata("/dev/null")) else { return false };
    fd0.dev() == null.dev() && fd0.ino() == null.ino()
}

/// The source for `path`: `-` is standard input; a regular file is read in place; anything
/// else (a FIFO, `/dev/stdin` on a pipe, `<(…)`, a device) is a stream.
pub fn open_source(path: &Path) -> Result<Box<dyn Source>, DataError> {
    if path.as_os_str() == "-" {
        if stdin_is_dev_null() {
            return Err(DataError::Other(
                "standard input is /dev/null (closed?): nothing to put; to store an empty key on purpose, give /dev/null as the file".into(),
            ));
        }
        return Ok(Box::new(StreamSource::new("standard input", Box::new(std::io::stdin()))?));
    }
    let io = |what, source| DataError::Io { what, path: path.display().to_string(), source };
    let meta = std::fs::metadata(path).map_err(|e| io("opening", e))?;
    if meta.is_dir() {
        return Err(DataError::Other(format!("{} is a directory", path.display())));
    }
    if meta.is_file() {
        return Ok(Box::new(FileSource::open(path)?));
    }
    let file = std::fs::File::open(path).map_err(|e| io("opening", e))?;
    Ok(Box::new(StreamSource::new(path.display().to_string(), Box::new(file))?))
}

impl Source for Vec<u8> {
    fn size_hint(&self) -> Option<u64> {
        Some(self.len() as u64)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let from = (offset as usize).min(self.len());
        let n = buf.len().min(self.len() - from);
        buf[..n].copy_from_slice(&self[from..from + n]);
        Ok(n)
    }
    fn describe(&self) -> String {
        format!("{} bytes in memory", self.len())
    }
}

/// How a key is written beyond its bytes.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// The key's replication; `None`: the bucket's.
    pub replication: Option<stratos_schema::om_capnp::Replication>,
}

fn open_op(mut op: stratos_schema::om_capnp::operation::Builder<'_>, volume: &str, bucket: &str, key: &str, size: u64, opts: &PutOptions) {
    let mut o = op.reborrow().init_open_key();
    o.set_volume(volume);
    o.set_bucket(bucket);
    o.set_key(key);
    o.set_data_size(size);
    if let Some(r) = opts.replication {
        o.init_replication().set_some(r);
    }
}

/// The order in which a block's chained write visits its datanodes: the pipeline's members
/// rotated by the block's local id, so that successive blocks of one pipeline start their chains
/// on different datanodes. The head of a chain receives from the client and forwards, the most
/// work of the three; measured: with one pipeline and every chain starting at the same
/// datanode, that one was the busiest process.
pub fn chain_order(block: &Block) -> Vec<(u64, String)> {
    let mut v = block.datanodes.clone();
    if !v.is_empty() {
        let n = v.len();
        v.rotate_left((block.local_id % n as u64) as usize);
    }
    v
}

/// Writes the next part of the data (up to `capacity` bytes from `offset`, fewer at its end) to
/// all of `block`'s datanodes; returns how many bytes it holds. On failure returns the datanode
/// that failed, if one did.
///
/// The data travels once: each chunk goes to the pipeline's first datanode, which forwards it to
/// the next, and so on (`writeChained`); the last chunk also completes the block, so a block of
/// one chunk (a small object) is one call. Every datanode of the pipeline has it durable when
/// the call returns.
async fn write_block(
    dns: &mut Datanodes, src: &dyn Source, offset: u64, capacity: u64, block: &Block, total: Option<u64>, progress: &mut dyn FnMut(Progress<'_>),
) -> Result<u64, (Option<u64>, String)> {
    let chain = chain_order(block);
    let Some(((first_id, first_addr), rest)) = chain.split_first().filter(|_| !block.token.is_empty()) else {
        return Err((None, format!("block {}/{} came without datanodes or a token (is the OM connected to an SCM?)", block.container_id, block.local_id)));
    };
    let first = dns.get(first_addr).await.map_err(|e| (Some(*first_id), format!("datanode {first_id} at {first_addr}: {e}")))?;
    let next: Vec<&str> = rest.iter().map(|(_, a)| a.as_str()).collect();
    // The datanode a failure names (by address; none named: the first), for the caller to
    // exclude. Its connection is dropped so the next call dials again.
    let fail = |dns: &mut Datanodes, at: Option<String>, e: String| {
        let (id, addr) = at.and_then(|a| block.datanodes.iter().find(|(_, d)| *d == a).cloned()).unwrap_or_else(|| (*first_id, first_addr.clone()));
        dns.forget(&addr);
        (Some(id), format!("datanode {id} at {addr}: {e}"))
    };
    // No bigger than the data can be: a 4 KiB object must not zero a 1 MiB buffer (measured:
    // 6% of all CPU in an ockg run of 4 KiB keys went to that memset and its page faults).
    let left = total.map_or(u64::MAX, |t| t.saturating_sub(offset).max(1));
    let mut buf = vec![0u8; CHUNK_BYTES.min(capacity.max(1)).min(left) as usize];
    let mut at = 0;
    let mut finished = false;
    while at < capacity {
        if crate::interrupt::requested() {
            return Err((None, "interrupted".into()));
        }
        let want = (CHUNK_BYTES.min(capacity - at) as usize).min(buf.len());
        let n = src.read_at(&mut buf[..want], offset + at).map_err(|e| (None, format!("reading {}: {e}", src.describe())))?;
        if n == 0 {
            break;
        }
        // The last chunk of the block: the source ran short, the block is full, or the data
        // ends here by its known size.
        let end = at + n as u64;
        let last = n < want || end == capacity || total.is_some_and(|t| offset + end >= t);
        write_chained(&first, block, at, &buf[..n], last, end, &next).await.map_err(|(a, e)| fail(dns, a, e))?;
        at = end;
        progress(Progress { bytes_done: offset + at, bytes_total: total.unwrap_or(0).max(offset + at), block });
        if last {
            finished = true;
            break;
        }
    }
    // Durable on every datanode of the pipeline before the key may be committed.
    if !finished {
        write_chained(&first, block, at, &[], true, at, &next).await.map_err(|(a, e)| fail(dns, a, e))?;
    }
    Ok(at)
}

/// Writes the file at `path` as `/volume/bucket/key` (`-`: standard input; a pipe, FIFO or
/// device is streamed); returns its size. See the module docs.
pub async fn put_file(c: &Client, dns: &mut Datanodes, volume: &str, bucket: &str, key: &str, path: &Path, progress: &mut dyn FnMut(Progress<'_>)) -> Result<u64, DataError> {
    put(c, dns, volume, bucket, key, &*open_source(path)?, progress).await
}

/// Writes `src` as `/volume/bucket/key`; returns its size. See the module docs. A put that fails
/// after the key was opened, or is interrupted ([`crate::interrupt`]), aborts the open key, so
/// its blocks are freed at once; the error says whether that worked.
pub async fn put(c: &Client, dns: &mut Datanodes, volume: &str, bucket: &str, key: &str, src: &dyn Source, progress: &mut dyn FnMut(Progress<'_>)) -> Result<u64, DataError> {
    put_with(c, dns, volume, bucket, key, src, &PutOptions::default(), progress).await
}

/// [`put`] with options (the key's replication).
#[allow(clippy::too_many_arguments)]
pub async fn put_with(
    c: &Client, dns: &mut Datanodes, volume: &str, bucket: &str, key: &str, src: &dyn Source, opts: &PutOptions, progress: &mut dyn FnMut(Progress<'_>),
) -> Result<u64, DataError> {
    let opened = std::cell::Cell::new(None);
    let body = put_opened(c, dns, volume, bucket, key, src, opts, progress, &opened);
    // A Ctrl-C is noticed within a poll even while a datanode call hangs (where a command
    // installed the handler; a library user's puts pay no poll).
    let r = if crate::interrupt::installed() { crate::interrupt::unless(&**c.runtime(), body, || Err(DataError::Interrupted)).await } else { body.await };
    // A read that the Ctrl-C cut (EINTR) is the interrupt, not an I/O failure of the source.
    let r = r.map_err(|e| match e {
        DataError::Io { source, .. } if source.kind() == std::io::ErrorKind::Interrupted && crate::interrupt::requested() => DataError::Interrupted,
        e => e,
    });
    match (r, opened.get()) {
        (Err(e), Some(open_id)) => {
            // Bounded: after an OM that stopped answering, the abort would wait for it as long.
            let aborted = match crate::within(&**c.runtime(), c.address(), ABORT_TIMEOUT, abort(c, volume, bucket, key, open_id)).await {
                Ok(()) => "the open key was aborted and its blocks freed".to_string(),
                Err(a) => format!("aborting the open key {open_id} failed ({a}); it expires on its own"),
            };
            Err(DataError::Failed { cause: Box::new(e), cleanup: aborted })
        }
        (r, _) => r,
    }
}

/// Gives up the open key `open_id` of `/volume/bucket/key` (its blocks are freed now). An open
/// key that is already gone (committed, expired, aborted) counts as done.
pub async fn abort(c: &Client, volume: &str, bucket: &str, key: &str, open_id: u64) -> Result<(), ClientError> {
    let r = c
        .submit(|op| {
            let mut a = op.init_abort_key();
            a.set_volume(volume);
            a.set_bucket(bucket);
            a.set_key(key);
            a.set_open_id(open_id);
        })
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(ClientError::Om { status: crate::Status::OpenKeyNotFound, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn put_opened(
    c: &Client, dns: &mut Datanodes, volume: &str, bucket: &str, key: &str, src: &dyn Source, opts: &PutOptions, progress: &mut dyn FnMut(Progress<'_>),
    opened_id: &std::cell::Cell<Option<u64>>,
) -> Result<u64, DataError> {
    let hint = src.size_hint();
    // The expected size pre-allocates blocks; a stream's blocks are allocated as data comes.
    let opened = c.submit(|op| open_op(op, volume, bucket, key, hint.unwrap_or(0), opts)).await?;
    let Done::KeyOpened { open_id, blocks: mut pool } = opened else { return Err(DataError::Other(format!("unexpected reply to openKey: {opened:?}"))) };
    opened_id.set(Some(open_id));
    pool.reverse();
    let mut written: Vec<Block> = Vec::new();
    let mut offset = 0;
    let mut exclude: BTreeSet<u64> = BTreeSet::new();
    // An empty key has no blocks (the pre-allocated ones go back with the commit). The write
    // token's max length is the block size: it tells how much of the data one block takes.
    // The loop runs to the end of the data (one byte is looked at before a block is taken, so
    // data of exactly N blocks takes N).
    while src.read_at(&mut [0u8], offset).map_err(|e| DataError::Other(format!("reading {}: {e}", src.describe())))? == 1 {
        let mut attempt = 0;
        let mut block = match pool.pop() {
            Some(b) => b,
            None => allocate(c, volume, bucket, key, open_id, &exclude).await?,
        };
        loop {
            attempt += 1;
            let capacity = token_max_length(&block.token).unwrap_or(u64::MAX);
            if capacity == 0 {
                return Err(DataError::Other(format!("block {}/{} of /{volume}/{bucket}/{key} allows 0 bytes", block.container_id, block.local_id)));
            }
            if exclude.iter().any(|d| block.datanodes.iter().any(|(id, _)| id == d)) {
                // A pre-allocated block on a datanode that already failed: take a fresh one.
                block = allocate(c, volume, bucket, key, open_id, &exclude).await?;
                continue;
            }
            match write_block(dns, src, offset, capacity, &block, hint, progress).await {
                Ok(len) => {
                    block.length = len;
                    offset += len;
                    src.release(offset);
                    written.push(block);
                    break;
                }
                Err((_, why)) if crate::interrupt::requested() => return Err(DataError::Other(why)),
                Err((Some(bad), why)) if attempt < BLOCK_ATTEMPTS_MAX => {
                    eprintln!("stratos: {why}; writing this part again on a new block without datanode {bad}");
                    exclude.insert(bad);
                    block = allocate(c, volume, bucket, key, open_id, &exclude).await?;
                }
                Err((_, why)) => return Err(DataError::Other(format!("writing /{volume}/{bucket}/{key}: {why}"))),
            }
        }
    }
    // The last look before the key becomes visible: an interrupt that also ended the input (a
    // Ctrl-C reaches the whole pipeline, so the writer's end closes) must not commit a cut key.
    if crate::interrupt::requested() {
        return Err(DataError::Interrupted);
    }
    let size = offset;
    let committed = c
        .submit(|op| {
            let mut k = op.init_commit_key();
            k.set_volume(volume);
            k.set_bucket(bucket);
            k.set_key(key);
            k.set_open_id(open_id);
            k.set_data_size(size);
            let mut l = k.init_blocks(written.len() as u32);
            for (i, b) in written.iter().enumerate() {
                b.set(l.reborrow().get(i as u32));
            }
        })
        .await?;
    match committed {
        Done::KeyCommitted { .. } => Ok(size),
        other => Err(DataError::Other(format!("unexpected reply to commitKey: {other:?}"))),
    }
}

/// A write token's max length (the block size), read from its clear-text payload.
pub fn token_max_length(token: &[u8]) -> Option<u64> {
    token.get(30..38).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
}

/// A new block for open key `open_id` of `/volume/bucket/key`, on datanodes not in `exclude`.
pub async fn allocate(c: &Client, volume: &str, bucket: &str, key: &str, open_id: u64, exclude: &BTreeSet<u64>) -> Result<Block, DataError> {
    let done = c
        .submit(|op| {
            let mut a = op.init_allocate_block();
            a.set_volume(volume);
            a.set_bucket(bucket);
            a.set_key(key);
            a.set_open_id(open_id);
            let mut l = a.init_exclude_datanodes(exclude.len() as u32);
            for (i, d) in exclude.iter().enumerate() {
                l.set(i as u32, *d);
            }
        })
        .await?;
    match done {
        Done::BlockAllocated(b) => Ok(b),
        other => Err(DataError::Other(format!("unexpected reply to allocateBlock: {other:?}"))),
    }
}

/// Reads `/volume/bucket/key` into `out`; returns its size.
pub async fn get_key(c: &Client, dns: &mut Datanodes, volume: &str, bucket: &str, key: &str, out: &mut dyn Write, progress: &mut dyn FnMut(Progress<'_>)) -> Result<u64, DataError> {
    let (size, blocks) = c.lookup_blocks(volume, bucket, key).await?;
    let mut done = 0;
    // Datanodes that failed this get (a frozen one costs DATANODE_CALL_TIMEOUT): asked last
    // from then on, so a frozen datanode costs one timeout per get, not one per block.
    let mut failed: BTreeSet<u64> = BTreeSet::new();
    for block in &blocks {
        let mut at = 0;
        while at < block.length {
            let want = CHUNK_BYTES.min(block.length - at) as u32;
            let data = read_any(dns, block, at, want, &mut failed)
                .await
                .map_err(|e| DataError::Other(format!("reading block {}/{} of /{volume}/{bucket}/{key}: {e}", block.container_id, block.local_id)))?;
            out.write_all(&data).map_err(|source| DataError::Io { what: "writing", path: "the output".into(), source })?;
            at += data.len() as u64;
            done += data.len() as u64;
            progress(Progress { bytes_done: done, bytes_total: size, block });
        }
    }
    if done != size {
        return Err(DataError::Other(format!("/{volume}/{bucket}/{key} has {size} bytes; its blocks hold {done}")));
    }
    Ok(size)
}

/// A progress line on stderr for transfers of more than 8 MiB when stderr is a terminal: bytes
/// done, total and rate, at most 5 times a second.
pub fn terminal_progress(what: &'static str) -> impl FnMut(Progress<'_>) {
    use std::io::IsTerminal;
    let on = std::io::stderr().is_terminal();
    let start = std::time::Instant::now();
    let mut last = start;
    move |p: Progress<'_>| {
        if !on || p.bytes_total <= 8 << 20 {
            return;
        }
        let now = std::time::Instant::now();
        if now.duration_since(last) < Duration::from_millis(200) && p.bytes_done < p.bytes_total {
            return;
        }
        last = now;
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let rate = mib(p.bytes_done) / start.elapsed().as_secs_f64().max(1e-3);
        let pct = p.bytes_done as f64 * 100.0 / p.bytes_total as f64;
        eprint!("\r{what} {:.1}/{:.1} MiB ({pct:.0}%), {rate:.1} MiB/s   ", mib(p.bytes_done), mib(p.bytes_total));
        if p.bytes_done >= p.bytes_total {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::{DATANODE_CALL_TIMEOUT, Datanodes, timed};
    use crate::runtime::{Connection, LocalFuture, Runtime};

    /// A runtime without a network whose every sleep is already over.
    #[derive(Debug)]
    struct Instant;

    impl Runtime for Instant {
        fn connect(&self, addr: &str) -> LocalFuture<std::io::Result<Connection>> {
            let addr = addr.to_string();
            Box::pin(async move { Err(std::io::Error::other(format!("no network here to reach {addr}"))) })
        }
        fn spawn_local(&self, task: LocalFuture<()>) {
            drop(task);
        }
        fn sleep(&self, _: std::time::Duration) -> LocalFuture<()> {
            Box::pin(async {})
        }
    }

    #[test]
    fn a_datanode_call_times_out_by_its_runtime_s_clock() {
        let r = futures_lite::future::block_on(timed(&Instant, futures_lite::future::pending::<Result<(), String>>()));
        assert_eq!(r, Err(format!("no answer within {DATANODE_CALL_TIMEOUT:?}")));
        let r = futures_lite::future::block_on(timed(&Instant, async { Ok::<_, String>(7) }));
        assert_eq!(r, Ok(7), "an answer already there wins over the timeout");
    }

    #[test]
    fn a_file_that_shrinks_during_a_put_is_an_error_and_one_that_grows_is_read_at_its_first_size() {
        use super::{FileSource, Source};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 3 << 20]).expect("write");
        let src = FileSource::open(&path).expect("open");
        let mut buf = vec![0u8; 1 << 20];
        assert_eq!(src.read_at(&mut buf, 0).expect("read"), 1 << 20);
        std::fs::OpenOptions::new().append(true).open(&path).and_then(|mut f| std::io::Write::write_all(&mut f, &[1u8; 100])).expect("grow");
        assert_eq!(src.read_at(&mut buf, 2 << 20).expect("read"), 1 << 20);
        assert_eq!(src.read_at(&mut buf, 3 << 20).expect("the end"), 0, "bytes appended after the put began are not read");
        std::fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(1 << 20)).expect("shrink");
        let e = src.read_at(&mut buf, 1 << 20).expect_err("a shrunk file is an error");
        assert!(e.to_string().contains("shrank"), "{e}");
    }

    #[test]
    fn datanodes_are_dialed_on_their_runtime() {
        let dns = Datanodes::new(Rc::new(Instant));
        let e = futures_lite::future::block_on(dns.get("127.0.0.1:9")).expect_err("no network");
        assert!(e.contains("cannot reach 127.0.0.1:9: no network here"), "{e}");
    }
}
