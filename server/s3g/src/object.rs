//! Object data through the datanodes: a write streams a payload (or another object, for a
//! copy) into the blocks the OM hands out, 1 MiB per call to every replica, and commits the key
//! with the MD5 of the bytes (S3's ETag) only once every block is durable on all of its
//! datanodes; a read streams a byte range of an object's blocks. Neither holds more than one
//! call's bytes (1 MiB, or one aws-chunked chunk) per request in memory.

use std::collections::BTreeSet;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use stratos_client::data::{self, CHUNK_BYTES};
use stratos_client::{Block, Client, Done};

use crate::S3_VOLUME;
use crate::checksum::{self, Algorithm};
use crate::error::{S3Error, from_om};
use crate::gateway::Gateway;
use crate::payload::Payload;
use crate::sse::Cipher;

/// Where an object's bytes come from.
pub enum Input<'a> {
    Payload(&'a mut Payload),
    Object(Reader),
    /// The file of a browser-based upload (POST Object).
    Form(&'a mut crate::form::FileStream),
}

impl std::fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Input::Payload(_) => "Input::Payload",
            Input::Object(_) => "Input::Object",
            Input::Form(_) => "Input::Form",
        })
    }
}

impl Input<'_> {
    async fn next(&mut self) -> Result<Option<Bytes>, S3Error> {
        match self {
            Input::Payload(p) => p.next().await,
            Input::Object(r) => r.next().await.map_err(|e| S3Error::unavailable(format!("reading the copy source: {e}"))),
            Input::Form(f) => f.next().await,
        }
    }

    /// The additional checksum the client sent and the bytes matched (at the input's end).
    fn checksum(&self) -> Option<(Algorithm, Vec<u8>)> {
        match self {
            Input::Payload(p) => p.checksum().map(|(a, v)| (a, v.to_vec())),
            Input::Object(r) => r.checksum(),
            Input::Form(f) => f.checksum(),
        }
    }

    /// The MD5 the client said its bytes have (Content-MD5), if any.
    fn expected_md5(&self) -> Option<&[u8]> {
        match self {
            Input::Payload(p) => p.expected_md5(),
            Input::Object(_) | Input::Form(_) => None,
        }
    }
}

/// What must hold of the key when the write commits (S3's conditional PUT).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Condition {
    #[default]
    Any,
    /// `If-None-Match: *`.
    Absent,
    /// `If-Match: *`.
    Present,
    /// `If-Match: "etag"`.
    ETag(String),
    /// `If-None-Match: "etag"`.
    NotETag(String),
}

impl Condition {
    /// The wire's `ifAbsent`.
    pub fn if_absent(&self) -> bool {
        *self == Condition::Absent
    }
    /// The wire's `ifPresent`.
    pub fn if_present(&self) -> bool {
        *self == Condition::Present
    }
    /// The ETag the wire's `ifMatch` names, if any.
    pub fn if_match(&self) -> Option<&str> {
        match self {
            Condition::ETag(e) => Some(e),
            _ => None,
        }
    }
    /// The ETag the wire's `ifNoneMatch` names, if any.
    pub fn if_none_match(&self) -> Option<&str> {
        match self {
            Condition::NotETag(e) => Some(e),
            _ => None,
        }
    }
}

/// Sets `$condition` ([`Condition`]) on the wire group `$group` names: its `ifAbsent`,
/// `ifPresent`, `ifMatch` or `ifNoneMatch` (S3's ETag being the key's `etag` pair). A macro
/// because `commitKey` and `completeUpload` are two generated builder types with those fields.
macro_rules! set_condition {
    ($group:ident, $condition:expr) => {{
        let condition: &$crate::object::Condition = $condition;
        $group.set_if_absent(condition.if_absent());
        $group.set_if_present(condition.if_present());
        if let Some(e) = condition.if_match() {
            let mut p = $group.reborrow().init_if_match();
            p.set_key($crate::object::ETAG);
            p.set_value(e);
        }
        if let Some(e) = condition.if_none_match() {
            let mut p = $group.reborrow().init_if_none_match();
            p.set_key($crate::object::ETAG);
            p.set_value(e);
        }
    }};
}
pub(crate) use set_condition;

/// Writes (name, value) pairs into a wire metadata list made for them.
pub fn set_pairs(mut list: capnp::struct_list::Builder<'_, stratos_client::schema::om_capnp::metadata_pair::Owned>, pairs: &[(String, String)]) {
    for (i, (k, v)) in pairs.iter().enumerate() {
        let mut p = list.reborrow().get(i as u32);
        p.set_key(k);
        p.set_value(v);
    }
}

/// What a write becomes once its bytes are durable.
#[derive(Debug, Clone, Copy)]
pub enum Finish<'a> {
    /// The key, if the condition holds, with these ACL entries of its own (usually none).
    Key(&'a Condition, &'a [stratos_client::AclEntry]),
    /// Part `part` of multipart upload `upload_id` of the key.
    Part { upload_id: &'a str, part: u32 },
}

/// The metadata name of an object's ETag.
pub const ETAG: &str = "etag";

/// A written object.
#[derive(Debug)]
pub struct Written {
    pub etag: String,
    pub size: u64,
    /// The request's additional checksum (`x-amz-checksum-*`), checked; stored with a key.
    pub checksum: Option<(Algorithm, Vec<u8>)>,
}

/// A block being written: its datanodes and how much of it is written.
struct Open {
    block: Block,
    capacity: u64,
    at: u64,
    /// The pipeline's first datanode; it forwards each chunk along the rest (`writeChained`),
    /// so the gateway sends each byte once.
    first: data::Datanode,
    /// The block's datanodes in chain order ([`data::chain_order`]).
    chain: Vec<(u64, String)>,
    /// The last chunk sent also completed the block.
    finished: bool,
}

/// Writes `input` as `bucket/key` with `metadata` (the ETag is added), if `condition` holds
/// when it commits, encrypted with `cipher` if given. `size_hint` pre-allocates blocks. On any
/// failure after the key was opened, the open key is aborted (its blocks freed) and nothing
/// becomes visible.
#[allow(clippy::too_many_arguments)]
pub async fn write(
    gw: &Rc<Gateway>, c: &Client, bucket: &str, key: &str, input: &mut Input<'_>, size_hint: u64, metadata: &[(String, String)], finish: Finish<'_>,
    cipher: Option<&Cipher>,
) -> Result<Written, S3Error> {
    let opened = c
        .submit(|op| {
            let mut o = op.init_open_key();
            o.set_volume(S3_VOLUME);
            o.set_bucket(bucket);
            o.set_key(key);
            o.set_data_size(size_hint);
            set_pairs(o.init_metadata(metadata.len() as u32), metadata);
        })
        .await
        .map_err(|e| from_om(&e, bucket, Some(key)))?;
    let Done::KeyOpened { open_id, blocks } = opened else { return Err(S3Error::internal(format!("unexpected reply to openKey: {opened:?}"))) };
    match write_opened(gw, c, bucket, key, open_id, blocks, input, size_hint, finish, cipher).await {
        Ok(w) => Ok(w),
        Err(e) => {
            // Bounded, and best effort: an open key the abort misses expires on its own.
            let abort = data::abort(c, S3_VOLUME, bucket, key, open_id);
            let _ = stratos_client::runtime::or_after(&**c.runtime(), data::ABORT_TIMEOUT, async { abort.await.map_err(|_| ()) }, || Err(())).await;
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_opened(
    gw: &Rc<Gateway>, c: &Client, bucket: &str, key: &str, open_id: u64, blocks: Vec<Block>, input: &mut Input<'_>, size_hint: u64, finish: Finish<'_>,
    cipher: Option<&Cipher>,
) -> Result<Written, S3Error> {
    let mut pool = blocks;
    pool.reverse();
    let mut written: Vec<Block> = Vec::new();
    // The body's MD5, hashed two uploads at a time where this executor has another
    // (`crate::md5pairs`): each call's bytes join it as they go out, and wait there for a partner
    // while the datanodes write them. `known`: the Content-MD5, once the whole body matched it.
    let mut md5 = gw.md5_pairs.start();
    let mut known: Option<[u8; 16]> = None;
    let mut buf = BytesMut::new();
    let mut open: Option<Open> = None;
    let mut ended = false;
    let mut size = 0u64;
    loop {
        // Room for the call's bytes in one allocation, where the input's length is known: grown
        // by doubling from one piece (a TLS record, ~16 KiB) to 1 MiB, `buf` was copied over
        // about once more per call (perf of 1 MiB PUTs: `BytesMut::reserve` 3.7% of the gateway's
        // CPU). The slack holds the piece that crosses the call's end, where the input goes on.
        // Once a call's piece is sent and dropped, this takes the same allocation back (moving
        // only the bytes left over); while the piece still waits in the MD5 for a partner, it
        // takes a new one. A length that turns out short only means growing again.
        let room = CHUNK_BYTES.saturating_sub(buf.len() as u64);
        let rest = size_hint.saturating_sub(size + buf.len() as u64);
        if !ended && rest > 0 {
            let slack = if rest > room { FILL_SLACK_BYTES } else { 0 };
            buf.reserve(rest.min(room) as usize + slack);
        }
        // Up to one call's worth of bytes (fewer only at the end of the input).
        while !ended && (buf.len() as u64) < CHUNK_BYTES {
            match input.next().await? {
                Some(b) => buf.extend_from_slice(&b),
                None => {
                    ended = true;
                    // The Content-MD5, from the hash the ETag is made of: before the last
                    // bytes go out and before the commit, so a mismatch stores nothing. A match
                    // is the ETag: the bytes still to go out need no hashing.
                    if let Some(want) = input.expected_md5() {
                        let got = md5.digest_with(&buf);
                        if got.as_slice() != want {
                            return Err(S3Error::new("BadDigest", 400, "the Content-MD5 you specified did not match what we received"));
                        }
                        known = Some(got);
                    }
                }
            }
        }
        if buf.is_empty() {
            break;
        }
        // Whole calls only, but for the input's last bytes: a datanode takes every chunk of a
        // block but its last at a multiple of 64 KiB. The input's pieces need not add up to a
        // call (a client that sends the request head and the body's first bytes in one TLS
        // record gives 16,384 bytes less the head, then records of 16,384), so what is left
        // over waits for the next pieces.
        while !buf.is_empty() && (ended || buf.len() as u64 >= CHUNK_BYTES) {
            if open.is_none() {
                let block = match pool.pop() {
                    Some(b) => b,
                    None => data::allocate(c, S3_VOLUME, bucket, key, open_id, &BTreeSet::new()).await.map_err(|e| S3Error::unavailable(format!("allocating a block: {e}")))?,
                };
                if block.datanodes.is_empty() || block.token.is_empty() {
                    return Err(S3Error::unavailable("the OM handed out a block without datanodes (is it connected to an SCM?)"));
                }
                let capacity = data::token_max_length(&block.token).unwrap_or(u64::MAX);
                if capacity == 0 {
                    return Err(S3Error::internal("a block that holds 0 bytes"));
                }
                let chain = data::chain_order(&block);
                let (id, addr) = &chain[0];
                let first = gw.datanode(addr).await.map_err(|e| S3Error::unavailable(format!("datanode {id} at {addr}: {e}")))?;
                open = Some(Open { block, capacity, at: 0, first, chain, finished: false });
            }
            let o = open.as_mut().expect("opened above");
            let take = (buf.len() as u64).min(CHUNK_BYTES).min(o.capacity - o.at) as usize;
            let mut piece = buf.split_to(take);
            let piece = match cipher {
                None => {
                    let piece = piece.freeze();
                    if known.is_none() {
                        md5.update(piece.clone());
                    }
                    piece
                }
                Some(cipher) => {
                    // The ETag is the plain bytes' MD5: they are hashed from a copy.
                    if known.is_none() {
                        md5.update(Bytes::copy_from_slice(&piece));
                    }
                    // Encrypted here, before any datanode sees it.
                    cipher.apply(o.block.container_id, o.block.local_id, o.at, &mut piece).map_err(S3Error::internal)?;
                    piece.freeze()
                }
            };
            // The block's last chunk completes it in the same call (a small object: one call).
            let end = o.at + take as u64;
            let last = end == o.capacity || (ended && buf.is_empty());
            chained(gw, o, &piece, last).await?;
            o.at = end;
            o.finished = last;
            size += take as u64;
            if o.at == o.capacity {
                written.push(seal(gw, open.take().expect("open"), false).await?);
            }
        }
    }
    if let Some(o) = open.take() {
        written.push(seal(gw, o, false).await?);
    }
    let etag = hex(&known.unwrap_or_else(|| md5.digest()));
    let checksum = input.checksum();
    let stored_checksum = checksum.as_ref().map(|(a, v)| (a.metadata_key(), checksum::encode(v)));
    let set_blocks = |mut l: capnp::struct_list::Builder<'_, stratos_client::schema::om_capnp::block_location::Owned>| {
        for (i, b) in written.iter().enumerate() {
            b.set(l.reborrow().get(i as u32));
        }
    };
    let committed = match finish {
        Finish::Key(condition, acls) => c
            .submit(|op| {
                let mut k = op.init_commit_key();
                k.set_volume(S3_VOLUME);
                k.set_bucket(bucket);
                k.set_key(key);
                k.set_open_id(open_id);
                k.set_data_size(size);
                set_blocks(k.reborrow().init_blocks(written.len() as u32));
                let mut m = k.reborrow().init_metadata(1 + stored_checksum.is_some() as u32);
                m.reborrow().get(0).set_key(ETAG);
                m.reborrow().get(0).set_value(&etag);
                if let Some((name, value)) = &stored_checksum {
                    m.reborrow().get(1).set_key(name);
                    m.reborrow().get(1).set_value(value);
                }
                set_condition!(k, condition);
                if !acls.is_empty() {
                    stratos_client::AclEntry::write_all(k.init_acls(acls.len() as u32), acls);
                }
            })
            .await,
        Finish::Part { upload_id, part } => c
            .submit(|op| {
                let mut k = op.init_commit_part();
                k.set_volume(S3_VOLUME);
                k.set_bucket(bucket);
                k.set_key(key);
                k.set_upload_id(upload_id);
                k.set_part_number(part);
                k.set_open_id(open_id);
                k.set_data_size(size);
                k.set_etag(&etag);
                // Kept with the part, for the completion to combine (and ListParts to show).
                if let Some((a, v)) = &checksum {
                    k.set_checksum(checksum::part_value(*a, v));
                }
                set_blocks(k.init_blocks(written.len() as u32));
            })
            .await,
    };
    match committed.map_err(|e| from_om(&e, bucket, Some(key)))? {
        Done::KeyCommitted { .. } | Done::Done => Ok(Written { etag, size, checksum }),
        other => Err(S3Error::internal(format!("unexpected reply to a commit: {other:?}"))),
    }
}

/// Makes a block durable on every datanode of its pipeline, with its written length (unless
/// its last chunk already did).
async fn seal(gw: &Rc<Gateway>, o: Open, _last: bool) -> Result<Block, S3Error> {
    if !o.finished {
        chained(gw, &o, &[], true).await?;
    }
    let mut block = o.block;
    block.length = o.at;
    Ok(block)
}

/// Sends `piece` at the block's current end along its pipeline (`finish`: and completes the
/// block there). A datanode's failure is a retryable error: the gateway does not rewrite a
/// block elsewhere (it keeps no copy of the bytes sent); the client's retry of the request
/// does, on blocks the OM allocates anew.
async fn chained(gw: &Gateway, o: &Open, piece: &[u8], finish: bool) -> Result<(), S3Error> {
    let next: Vec<&str> = o.chain[1..].iter().map(|(_, a)| a.as_str()).collect();
    data::write_chained(&o.first, &o.block, o.at, piece, finish, o.at + piece.len() as u64, &next).await.map_err(|(at, e)| {
        let addr = at.unwrap_or_else(|| o.chain[0].1.clone());
        gw.forget_datanode(&addr);
        S3Error::unavailable(format!("datanode at {addr}: {e}; retry the request"))
    })
}

pub use crate::sigv4::hex;

/// Room kept beyond a call's bytes in a write's buffer, for the input piece that crosses them.
const FILL_SLACK_BYTES: usize = 64 << 10;

/// Reads bytes `start..end` of an object's blocks, one call (at most 1 MiB) at a time, from the
/// first datanode of each block that serves it (one that failed is asked last from then on).
pub struct Reader {
    gw: Rc<Gateway>,
    blocks: Vec<Block>,
    /// Offset of each block's first byte in the object.
    starts: Vec<u64>,
    pos: u64,
    end: u64,
    failed: BTreeSet<u64>,
    /// Decrypts what is read (an encrypted object).
    cipher: Option<Cipher>,
    /// Hashes what is read (a copy asked for a checksum: `x-amz-checksum-algorithm`); boxed,
    /// as only copies have one (a SHA-256's state would double every reader).
    hasher: Option<Box<checksum::Hasher>>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("blocks", &self.blocks.len()).field("pos", &self.pos).field("end", &self.end).finish()
    }
}

impl Reader {
    pub fn new(gw: Rc<Gateway>, blocks: Vec<Block>, start: u64, end: u64) -> Reader {
        let mut starts = Vec::with_capacity(blocks.len());
        let mut at = 0;
        for b in &blocks {
            starts.push(at);
            at += b.length;
        }
        Reader { gw, blocks, starts, pos: start, end: end.min(at), failed: BTreeSet::new(), cipher: None, hasher: None }
    }

    /// The reader of an encrypted object's plain bytes.
    pub fn decrypting(mut self, cipher: Option<Cipher>) -> Reader {
        self.cipher = cipher;
        self
    }

    /// The reader that also computes `algorithm`'s checksum of the (plain) bytes it reads.
    pub fn hashing(mut self, algorithm: Option<Algorithm>) -> Reader {
        self.hasher = algorithm.map(|a| Box::new(checksum::Hasher::new(a)));
        self
    }

    /// The checksum [`Reader::hashing`] asked for, once the whole range was read.
    fn checksum(&self) -> Option<(Algorithm, Vec<u8>)> {
        let h = self.hasher.as_ref().filter(|_| self.pos >= self.end)?;
        Some((h.algorithm(), (**h).clone().finalize()))
    }

    pub async fn next(&mut self) -> Result<Option<Bytes>, String> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let i = self.starts.partition_point(|s| *s <= self.pos) - 1;
        let block = &self.blocks[i];
        let off = self.pos - self.starts[i];
        let want = CHUNK_BYTES.min(block.length - off).min(self.end - self.pos) as u32;
        let mut d = data::read_any(&mut &*self.gw, block, off, want, &mut self.failed).await.map_err(|e| format!("block {}/{}: {e}", block.container_id, block.local_id))?;
        if let Some(c) = &self.cipher {
            c.apply(block.container_id, block.local_id, off, &mut d)?;
        }
        if let Some(h) = &mut self.hasher {
            h.update(&d);
        }
        self.pos += u64::from(want);
        Ok(Some(Bytes::from(d)))
    }

    /// The range as a response body, its first chunk read before the reply goes out. hyper
    /// then writes the head and that chunk in one write: an object of up to a chunk leaves in
    /// one TLS record and one send, and its client wakes once, where a head flushed while the
    /// datanode read was pending cost a second record, send and wake-up per GET (`strace` of the
    /// gateway at 4 KiB: a 298-byte and a 4,118-byte `sendmsg` per GET). And a range that no
    /// replica serves is an error reply, not a 200 cut off after its head.
    ///
    /// `length` is the reply's: blocks that hold less than it end the body short, an error.
    pub async fn into_body(mut self, length: u64) -> Result<crate::http::Body, String> {
        use futures_util::StreamExt;
        let first = self.next().await?.unwrap_or_default();
        if self.pos >= self.end && first.len() as u64 == length {
            return Ok(crate::http::Body::full(first));
        }
        let stream = futures_util::stream::once(std::future::ready(Ok(first))).chain(self.into_stream());
        Ok(crate::http::Body::Stream { stream: Box::pin(stream), left: length })
    }

    /// The rest of the range as a response body stream.
    pub fn into_stream(self) -> crate::http::LocalStream {
        Box::pin(futures_util::stream::unfold(self, |mut r| async move {
            match r.next().await {
                Ok(Some(b)) => Some((Ok(b), r)),
                Ok(None) => None,
                Err(e) => {
                    eprintln!("s3g: reading an object: {e}");
                    r.pos = r.end;
                    Some((Err(std::io::Error::other(e)), r))
                }
            }
        }))
    }
}
