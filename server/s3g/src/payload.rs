//! A request's payload as the object's bytes, in each encoding S3 clients send, checked as it
//! streams: a plain body (its SHA-256 when the signature covers it, Content-Length by HTTP), or
//! `aws-chunked` (chunks with signatures chained to the request's, or unsigned with checksum
//! trailers, as newer SDKs send), whose decoded length must be `x-amz-decoded-content-length`.
//! Any `x-amz-checksum-*` the request sends, in a header or a trailer, is computed over the
//! decoded bytes and compared when they end ([`crate::checksum`]). A check that fails fails the
//! request before anything is committed.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::checksum::{self, Algorithm, Hasher, Wanted};
use crate::error::S3Error;
use crate::sigv4::ChunkSigner;

/// Longest chunk-header line (`SIZE;chunk-signature=SIG` or a trailer line).
const LINE_BYTES_MAX: usize = 4096;
/// Most trailer lines after the last chunk (SDKs send a checksum and, signed, its signature).
const TRAILERS_MAX: usize = 16;
/// Largest chunk of an `aws-chunked` payload (held whole while its signature is checked; SDKs
/// send 64 KiB to 8 MiB).
pub const CHUNK_BYTES_MAX: usize = 16 << 20;

#[derive(Debug)]
enum Mode {
    /// The bytes as sent; with the SHA-256 the signature covers, compared at the end.
    Plain { sha256: Option<(Sha256, [u8; 32])> },
    /// `aws-chunked`: each chunk signed (chained), or unsigned (with trailers).
    Chunked { signer: Option<ChunkSigner>, state: ChunkState, decoded_length: Option<u64> },
}

#[derive(Debug, PartialEq, Eq)]
enum ChunkState {
    Header,
    Data { size: usize, signature: Option<String> },
    Trailers,
    Done,
}

/// Where a payload's bytes come from: a request body, or bytes in memory, in the pieces given
/// (no body; tests and fuzzing, which cut a body anywhere).
pub enum Source {
    Http(hyper::body::Incoming),
    Memory(VecDeque<Bytes>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Http(_) => "Source::Http",
            Source::Memory(_) => "Source::Memory",
        })
    }
}

impl Source {
    /// `body` in memory, cut at `cuts` (each taken modulo the body's length + 1, in any order):
    /// a body as it may arrive in pieces (tests and fuzzing).
    pub fn cut(body: &[u8], cuts: impl IntoIterator<Item = usize>) -> Source {
        let mut at: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
        at.sort_unstable();
        let mut pieces = VecDeque::with_capacity(at.len() + 1);
        let mut from = 0;
        for c in at.into_iter().chain([body.len()]) {
            pieces.push_back(Bytes::copy_from_slice(&body[from..c]));
            from = c;
        }
        Source::Memory(pieces)
    }

    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, S3Error> {
        match self {
            Source::Http(b) => crate::http::next_data(b).await.map_err(|e| S3Error::new("IncompleteBody", 400, format!("reading the request body: {e}"))),
            Source::Memory(pieces) => Ok(pieces.pop_front()),
        }
    }
}

impl Source {
    /// Reads and drops what is left of the body, at most `max` bytes. A request refused midway
    /// (a digest that differs, a size over a limit, a datanode outage) is answered once its
    /// body is read: a server that closes a connection with unread bytes resets it, and a
    /// client that sends its whole body before reading (most do) may then see the reset instead
    /// of the answer. A body with more than `max` bytes left is not read: its connection closes.
    pub async fn drain(&mut self, max: u64) {
        let mut read = 0u64;
        while read < max {
            match self.next().await {
                Ok(Some(b)) => read += b.len() as u64,
                _ => break,
            }
        }
    }
}

/// The decoded payload of one request.
#[derive(Debug)]
pub struct Payload {
    source: Source,
    mode: Mode,
    buf: BytesMut,
    ended: bool,
    decoded: u64,
    /// The MD5 the payload must have (Content-MD5); [`crate::object::write`] checks it.
    content_md5: Option<Vec<u8>>,
    /// The additional checksum the request announced: computed over the decoded bytes, its
    /// value from the header or else the trailer; once checked, the value ([`Payload::checksum`]).
    checksum: Option<(Hasher, Option<Vec<u8>>)>,
    /// The checksum is computed for the gateway's own use ([`Payload::compute`]), with no
    /// value to check it against.
    compute_only: bool,
    checked: Option<(Algorithm, Vec<u8>)>,
    /// The trailer's value of the announced checksum (an `aws-chunked` body's).
    trailer_value: Option<String>,
}

/// How a request's payload is encoded, from its headers (`header` looks one up, any case).
pub fn mode_of(header: &dyn Fn(&str) -> Option<String>, signer: Option<ChunkSigner>) -> Result<PayloadMode, S3Error> {
    let sha = header("x-amz-content-sha256");
    let chunked = header("content-encoding").is_some_and(|e| e.split(',').any(|p| p.trim() == "aws-chunked"));
    let decoded = header("x-amz-decoded-content-length").map(|v| v.parse::<u64>().map_err(|_| S3Error::invalid_argument("x-amz-decoded-content-length is not a number"))).transpose()?;
    let streaming = sha.as_deref().is_some_and(|s| s.starts_with("STREAMING-"));
    let wanted = checksum::requested(header, chunked || streaming)?;
    let mode = match sha.as_deref() {
        Some(crate::sigv4::STREAMING_PAYLOAD | crate::sigv4::STREAMING_PAYLOAD_TRAILER) => match signer {
            Some(s) => Ok(Mode::Chunked { signer: Some(s), state: ChunkState::Header, decoded_length: decoded }),
            None => Err(S3Error::invalid_request("a streaming signed payload needs a signed request")),
        },
        Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER") => Ok(Mode::Chunked { signer: None, state: ChunkState::Header, decoded_length: decoded }),
        Some(s) if s.starts_with("STREAMING-") => Err(S3Error::not_implemented(&format!("the payload encoding {s}"))),
        Some(crate::sigv4::UNSIGNED_PAYLOAD) | None if chunked => Ok(Mode::Chunked { signer: None, state: ChunkState::Header, decoded_length: decoded }),
        Some(crate::sigv4::UNSIGNED_PAYLOAD) | None => Ok(Mode::Plain { sha256: None }),
        Some(hex) => {
            let want = crate::sigv4::unhex(hex).ok_or_else(|| S3Error::invalid_argument("x-amz-content-sha256 is not a SHA-256 in hex, UNSIGNED-PAYLOAD or a STREAMING- encoding"))?;
            Ok(Mode::Plain { sha256: Some((Sha256::new(), want)) })
        }
    }?;
    Ok(PayloadMode(mode, wanted))
}

/// A payload's encoding and the checksum it announces, decided from the request's headers
/// ([`mode_of`]).
#[derive(Debug)]
pub struct PayloadMode(Mode, Option<Wanted>);

impl PayloadMode {
    /// The payload's decoded length if the headers say it (aws-chunked).
    pub fn decoded_length(&self) -> Option<u64> {
        match &self.0 {
            Mode::Chunked { decoded_length, .. } => *decoded_length,
            Mode::Plain { .. } => None,
        }
    }
}

impl Payload {
    pub fn new(source: Source, mode: PayloadMode) -> Payload {
        let checksum = mode.1.map(|w| (Hasher::new(w.algorithm), w.value));
        Payload { source, mode: mode.0, buf: BytesMut::new(), ended: false, decoded: 0, content_md5: None, checksum, compute_only: false, checked: None, trailer_value: None }
    }

    /// The algorithm of the additional checksum the request announced, if any.
    pub fn announced(&self) -> Option<Algorithm> {
        self.checksum.as_ref().map(|(h, _)| h.algorithm())
    }

    /// Computes `algorithm`'s checksum of the bytes, for [`Payload::checksum`], where the
    /// request announced none (a part of an upload that asked for a checksum). Before the
    /// first byte is read; with an announced checksum, that one stands.
    pub fn compute(&mut self, algorithm: Algorithm) {
        if self.checksum.is_none() && self.decoded == 0 {
            self.checksum = Some((Hasher::new(algorithm), None));
            self.compute_only = true;
        }
    }

    /// The payload must have this MD5 (a Content-MD5 header). [`crate::object::write`], which
    /// computes the bytes' MD5 for the ETag anyway, checks it when the payload ends, so a
    /// mismatch fails the request before anything is committed (`BadDigest`). The payload once
    /// hashed its bytes for this itself: two MD5s of every byte, at ~590 MB/s the largest
    /// part of what a PUT costs the gateway.
    pub fn expect_md5(&mut self, md5: Option<Vec<u8>>) {
        self.content_md5 = md5;
    }

    /// The MD5 set by [`Payload::expect_md5`].
    pub fn expected_md5(&self) -> Option<&[u8]> {
        self.content_md5.as_deref()
    }

    /// The additional checksum the request sent (`x-amz-checksum-*`), once the payload ended
    /// and it matched (or the one [`Payload::compute`] asked for): to store with the object or
    /// part and echo in the reply.
    pub fn checksum(&self) -> Option<(Algorithm, &[u8])> {
        self.checked.as_ref().map(|(a, v)| (*a, v.as_slice()))
    }

    /// Reads and drops what is left of the body's bytes, at most `max` ([`Source::drain`]),
    /// if its reading began: a body not asked for yet is never sent by a client that waits for
    /// `100 Continue` (boto3 does, for PUTs), which asking would invite.
    pub async fn drain(&mut self, max: u64) {
        if self.decoded > 0 || !self.buf.is_empty() {
            self.source.drain(max).await
        }
    }

    /// Bytes decoded so far.
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    async fn fill(&mut self) -> Result<bool, S3Error> {
        if self.ended {
            return Ok(false);
        }
        match self.source.next().await? {
            Some(b) => {
                self.buf.extend_from_slice(&b);
                Ok(true)
            }
            None => {
                self.ended = true;
                Ok(false)
            }
        }
    }

    /// The next bytes of the object; None at its end, once every check of the encoding passed
    /// (the Content-MD5 is the writer's: [`Payload::expect_md5`]).
    pub async fn next(&mut self) -> Result<Option<Bytes>, S3Error> {
        let out = match &mut self.mode {
            Mode::Plain { .. } => self.next_plain().await?,
            Mode::Chunked { .. } => self.next_chunked().await?,
        };
        match &out {
            Some(b) => {
                self.decoded += b.len() as u64;
                if let Some((h, _)) = &mut self.checksum {
                    h.update(b);
                }
            }
            None => self.check_checksum()?,
        }
        Ok(out)
    }

    /// At the payload's end: the announced checksum against the bytes' (`BadDigest`, as S3).
    fn check_checksum(&mut self) -> Result<(), S3Error> {
        let Some((hasher, header_value)) = self.checksum.take() else { return Ok(()) };
        let algorithm = hasher.algorithm();
        if self.compute_only {
            self.checked = Some((algorithm, hasher.finalize()));
            return Ok(());
        }
        let want = match header_value {
            Some(v) => v,
            None => match self.trailer_value.take() {
                Some(t) => algorithm.decode(&t)?,
                None => return Err(S3Error::invalid_request(format!("x-amz-trailer announced {}, and the body's trailer did not send it", algorithm.header()))),
            },
        };
        let got = hasher.finalize();
        if got != want {
            return Err(S3Error::new("BadDigest", 400, format!("The {} you specified did not match the calculated checksum.", algorithm.name())));
        }
        self.checked = Some((algorithm, got));
        Ok(())
    }

    async fn next_plain(&mut self) -> Result<Option<Bytes>, S3Error> {
        let data = if self.buf.is_empty() { self.source.next().await? } else { Some(self.buf.split().freeze()) };
        let Mode::Plain { sha256 } = &mut self.mode else { unreachable!("plain") };
        match data {
            Some(b) => {
                if let Some((h, _)) = sha256 {
                    h.update(&b);
                }
                Ok(Some(b))
            }
            None => {
                if let Some((h, want)) = sha256.take() {
                    let got: [u8; 32] = h.finalize().into();
                    if got != want {
                        return Err(S3Error::new("XAmzContentSHA256Mismatch", 400, "the SHA-256 of the body is not the x-amz-content-sha256 the request was signed with"));
                    }
                }
                Ok(None)
            }
        }
    }

    /// A line ending in CRLF from the buffer (without it), reading more as needed.
    async fn line(&mut self) -> Result<String, S3Error> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.split_to(at);
                self.buf.advance(2);
                return String::from_utf8(line.to_vec()).map_err(|_| bad_chunk("a chunk header is not text"));
            }
            if self.buf.len() > LINE_BYTES_MAX {
                return Err(bad_chunk("a chunk header longer than 4 KiB"));
            }
            if !self.fill().await? {
                return Err(S3Error::new("IncompleteBody", 400, "the aws-chunked body ended inside a chunk header"));
            }
        }
    }

    async fn next_chunked(&mut self) -> Result<Option<Bytes>, S3Error> {
        loop {
            let Mode::Chunked { state, .. } = &mut self.mode else { unreachable!("chunked") };
            match state {
                ChunkState::Done => return Ok(None),
                ChunkState::Header => {
                    let line = self.line().await?;
                    let (size, ext) = line.split_once(';').unwrap_or((line.as_str(), ""));
                    // Digits only: `from_str_radix` alone also takes a sign (`+5`).
                    let digits = size.trim();
                    let size = (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit()))
                        .then(|| usize::from_str_radix(digits, 16).ok())
                        .flatten()
                        .ok_or_else(|| bad_chunk(&format!("a chunk size {size:?} is not hexadecimal")))?;
                    if size > CHUNK_BYTES_MAX {
                        return Err(bad_chunk(&format!("a chunk of {size} bytes (at most {CHUNK_BYTES_MAX})")));
                    }
                    let signature = ext.split(';').find_map(|p| p.trim().strip_prefix("chunk-signature=")).map(str::to_string);
                    let Mode::Chunked { state, signer, .. } = &mut self.mode else { unreachable!("chunked") };
                    if signer.is_some() && signature.is_none() {
                        return Err(S3Error::new("SignatureDoesNotMatch", 403, "a chunk of a signed streaming payload has no chunk-signature"));
                    }
                    *state = ChunkState::Data { size, signature };
                }
                ChunkState::Data { size, signature } => {
                    let (size, signature) = (*size, signature.take());
                    // The chunk and its CRLF (the last, empty, chunk is followed by the
                    // trailers, if any, and an empty line: see Trailers).
                    let crlf = if size == 0 { 0 } else { 2 };
                    while self.buf.len() < size + crlf {
                        if !self.fill().await? {
                            return Err(S3Error::new("IncompleteBody", 400, "the aws-chunked body ended inside a chunk"));
                        }
                    }
                    let chunk = self.buf.split_to(size).freeze();
                    if crlf == 2 {
                        if &self.buf[..2] != b"\r\n" {
                            return Err(bad_chunk("a chunk is not followed by CRLF"));
                        }
                        self.buf.advance(2);
                    }
                    let Mode::Chunked { state, signer, decoded_length } = &mut self.mode else { unreachable!("chunked") };
                    if let (Some(s), Some(sig)) = (signer.as_mut(), signature.as_deref()) {
                        s.check(&chunk, sig).map_err(|_| S3Error::new("SignatureDoesNotMatch", 403, "a chunk's signature does not match"))?;
                    }
                    if size == 0 {
                        if let Some(want) = *decoded_length
                            && want != self.decoded
                        {
                            return Err(S3Error::new("IncompleteBody", 400, format!("the chunks hold {} bytes, x-amz-decoded-content-length says {want}", self.decoded)));
                        }
                        *state = ChunkState::Trailers;
                        continue;
                    }
                    *state = ChunkState::Header;
                    return Ok(Some(chunk));
                }
                ChunkState::Trailers => {
                    // The trailers of a streaming payload, up to the empty line (or the body's
                    // end): the announced checksum's value is kept for the check at the end
                    // (`check_checksum`); others are read and ignored. Signed trailers
                    // (`-PAYLOAD-TRAILER`) must come with their signature, checked here, so a
                    // checksum changed on the way is refused before the value is used.
                    let name = self.checksum.as_ref().map(|(h, _)| h.algorithm().header());
                    let signed = matches!(&self.mode, Mode::Chunked { signer: Some(s), .. } if s.signs_trailers());
                    let (mut canonical, mut signature, mut lines) = (Vec::new(), None, 0);
                    loop {
                        if self.buf.is_empty() && !self.fill().await? {
                            break;
                        }
                        let line = self.line().await?;
                        if line.is_empty() {
                            break;
                        }
                        lines += 1;
                        if lines > TRAILERS_MAX {
                            return Err(bad_chunk(&format!("more than {TRAILERS_MAX} trailers")));
                        }
                        let Some((n, v)) = line.split_once(':') else { return Err(bad_chunk("a trailer is not `name:value`")) };
                        let (n, v) = (n.trim(), v.trim());
                        if n.eq_ignore_ascii_case("x-amz-trailer-signature") {
                            signature = Some(v.to_string());
                            continue;
                        }
                        if signed {
                            canonical.extend_from_slice(n.to_ascii_lowercase().as_bytes());
                            canonical.push(b':');
                            canonical.extend_from_slice(v.as_bytes());
                            canonical.push(b'\n');
                        }
                        if name.is_some_and(|name| n.eq_ignore_ascii_case(name)) {
                            self.trailer_value = Some(v.to_string());
                        }
                    }
                    let Mode::Chunked { state, signer, .. } = &mut self.mode else { unreachable!("chunked") };
                    if let Some(s) = signer.as_ref().filter(|s| s.signs_trailers() && lines > 0) {
                        let Some(sig) = signature else {
                            return Err(S3Error::new("SignatureDoesNotMatch", 403, "the trailers of a signed streaming payload have no x-amz-trailer-signature"));
                        };
                        s.check_trailers(&canonical, &sig).map_err(|_| S3Error::new("SignatureDoesNotMatch", 403, "the trailers' signature does not match"))?;
                    }
                    *state = ChunkState::Done;
                    return Ok(None);
                }
            }
        }
    }

    /// The whole payload, at most `max` bytes (request bodies that are documents).
    pub async fn read_all(&mut self, max: usize) -> Result<Vec<u8>, S3Error> {
        let mut out = Vec::new();
        while let Some(b) = self.next().await? {
            if out.len() + b.len() > max {
                return Err(S3Error::new("MaxMessageLengthExceeded", 400, format!("the request body is larger than {max} bytes")));
            }
            out.extend_from_slice(&b);
        }
        Ok(out)
    }
}

fn bad_chunk(what: &str) -> S3Error {
    S3Error::new("InvalidRequest", 400, format!("malformed aws-chunked body: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &[u8], headers: &[(&str, &str)]) -> Result<Vec<u8>, S3Error> {
        let h = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.to_string());
        let mode = mode_of(&h, None)?;
        let mut p = Payload::new(Source::Memory(VecDeque::from([Bytes::copy_from_slice(body)])), mode);
        futures_lite::future::block_on(p.read_all(1 << 20))
    }

    #[test]
    fn unsigned_chunks_with_trailers_decode() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n";
        let h = [("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"), ("content-encoding", "aws-chunked"), ("x-amz-decoded-content-length", "11")];
        assert_eq!(decode(body, &h).expect("decodes"), b"hello world");
        let wrong = [("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"), ("x-amz-decoded-content-length", "12")];
        assert_eq!(decode(body, &wrong).expect_err("length checked").code, "IncompleteBody");
    }

    /// A checksum announced in a header or a trailer is the decoded bytes' (CRC32 of "hello
    /// world": DUoRhQ==), or the payload fails at its end: `BadDigest`, or `InvalidRequest` when
    /// the announced trailer never comes.
    #[test]
    fn announced_checksums_are_checked() {
        let trailer = |value: &str| format!("5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:{value}\r\n\r\n");
        let chunked = [("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"), ("content-encoding", "aws-chunked"), ("x-amz-trailer", "x-amz-checksum-crc32"), ("x-amz-sdk-checksum-algorithm", "CRC32")];
        assert_eq!(decode(trailer("DUoRhQ==").as_bytes(), &chunked).expect("matches"), b"hello world");
        assert_eq!(decode(trailer("DUoRhg==").as_bytes(), &chunked).expect_err("mismatch").code, "BadDigest");
        assert_eq!(decode(trailer("DUoR").as_bytes(), &chunked).expect_err("not a CRC32").code, "BadDigest");
        let no_trailer = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(decode(no_trailer, &chunked).expect_err("announced, not sent").code, "InvalidRequest");
        // Another trailer than the one announced is not taken for it.
        let other = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-sha1:DUoRhQ==\r\n\r\n";
        assert_eq!(decode(other, &chunked).expect_err("not the announced").code, "InvalidRequest");
        let header = |value| [("x-amz-content-sha256", "UNSIGNED-PAYLOAD"), ("x-amz-checksum-crc32", value)];
        assert_eq!(decode(b"hello world", &header("DUoRhQ==")).expect("matches"), b"hello world");
        assert_eq!(decode(b"hello worle", &header("DUoRhQ==")).expect_err("mismatch").code, "BadDigest");
        let sha256 = [("x-amz-checksum-sha256", "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=")];
        assert_eq!(decode(b"hello world", &sha256).expect("matches"), b"hello world");
        // What was checked, for the writer to store.
        let mode = mode_of(&|n: &str| header("DUoRhQ==").iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.to_string()), None).expect("mode");
        let mut p = Payload::new(Source::Memory(VecDeque::from([Bytes::from_static(b"hello world")])), mode);
        assert_eq!(p.checksum(), None);
        futures_lite::future::block_on(p.read_all(64)).expect("reads");
        assert_eq!(p.checksum(), Some((Algorithm::Crc32, &[0x0d, 0x4a, 0x11, 0x85][..])));
    }

    /// `data` as an SDK streams it: `aws-chunked`, chunks of `sizes` (cycled), a CRC32 trailer.
    fn chunked(data: &[u8], sizes: &[usize], crc: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].clamp(1, rest.len());
            out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
            i += 1;
        }
        out.extend_from_slice(format!("0\r\nx-amz-checksum-crc32:{}\r\n\r\n", checksum::encode(&crc.to_be_bytes())).as_bytes());
        out
    }

    /// Decodes `body` cut at `cuts`, as a body arrives in pieces.
    fn decode_in_pieces(body: &[u8], cuts: &[usize], headers: &[(&str, &str)]) -> Result<Vec<u8>, S3Error> {
        let h = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.to_string());
        let mut p = Payload::new(Source::cut(body, cuts.iter().copied()), mode_of(&h, None)?);
        futures_lite::future::block_on(p.read_all(1 << 20))
    }

    proptest::proptest! {
        /// Any data, in any chunk sizes, cut into pieces anywhere, decodes to itself with its
        /// right CRC32 trailer; with one byte of the body changed it is an error, or (a letter's
        /// case changed: a hex digit of a size, the trailer's name) the same data: never other
        /// bytes.
        #[test]
        fn chunked_bodies_decode_however_cut(
            data in proptest::collection::vec(proptest::num::u8::ANY, 1..3000),
            sizes in proptest::collection::vec(1usize..700, 1..4),
            cuts in proptest::collection::vec(proptest::num::usize::ANY, 0..8),
            flip in proptest::num::usize::ANY,
        ) {
            let headers = [("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"), ("content-encoding", "aws-chunked"), ("x-amz-trailer", "x-amz-checksum-crc32")];
            let body = chunked(&data, &sizes, crc32fast::hash(&data));
            proptest::prop_assert_eq!(decode_in_pieces(&body, &cuts, &headers).expect("decodes"), data.clone());
            let mut changed = body.clone();
            let at = flip % changed.len();
            changed[at] ^= 0x20;
            match decode_in_pieces(&changed, &cuts, &headers) {
                Err(_) => {}
                Ok(d) => proptest::prop_assert!(d == data && body[at].is_ascii_alphabetic(), "byte {} ({:?}) changed, decoded anyway", at, body[at] as char),
            }
        }

        /// Arbitrary bytes under each encoding, cut anywhere: a result or an error, never a
        /// panic or a hang.
        #[test]
        fn arbitrary_bodies_are_results_or_errors(
            body in proptest::collection::vec(proptest::sample::select(b"0123456789abcdefxz;=:-\r\n ".to_vec()), 0..400),
            cuts in proptest::collection::vec(proptest::num::usize::ANY, 0..6),
            encoding in 0usize..4,
        ) {
            let headers: &[(&str, &str)] = match encoding {
                0 => &[("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"), ("x-amz-trailer", "x-amz-checksum-crc32")],
                1 => &[("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")],
                2 => &[("content-encoding", "aws-chunked"), ("x-amz-decoded-content-length", "5")],
                _ => &[("x-amz-checksum-sha1", "DUoRhQ==")],
            };
            let _ = decode_in_pieces(&body, &cuts, headers);
        }
    }

    #[test]
    fn plain_bodies_are_checked_against_the_signed_hash() {
        let good = [("x-amz-content-sha256", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")];
        assert_eq!(decode(b"hello", &good).expect("matches"), b"hello");
        assert_eq!(decode(b"hellO", &good).expect_err("mismatch").code, "XAmzContentSHA256Mismatch");
        assert_eq!(decode(b"anything", &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]).expect("unsigned"), b"anything");
    }

    /// AWS's published example of signed chunks with a signed trailer, through the decoder:
    /// whole and cut anywhere it decodes, with its CRC32C checked and kept; the trailer changed,
    /// its signature missing or another chunk signature: `SignatureDoesNotMatch`.
    #[test]
    fn signed_trailers_are_checked() {
        let sig = |s: &str| format!(";chunk-signature={s}\r\n");
        let a = vec![b'a'; 65_536];
        let mut body = Vec::new();
        body.extend_from_slice(format!("10000{}", sig("b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2")).as_bytes());
        body.extend_from_slice(&a);
        body.extend_from_slice(format!("\r\n400{}", sig("1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7")).as_bytes());
        body.extend_from_slice(&a[..1024]);
        body.extend_from_slice(format!("\r\n0{}", sig("2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992")).as_bytes());
        let trailer = "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n\r\n";
        let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer,Signature=106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";
        let headers: Vec<(String, String)> = [
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("authorization", auth),
            ("x-amz-content-sha256", crate::sigv4::STREAMING_PAYLOAD_TRAILER),
            ("content-encoding", "aws-chunked"),
            ("x-amz-trailer", "x-amz-checksum-crc32c"),
            ("x-amz-decoded-content-length", "66560"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let req = crate::sigv4::Request { method: "PUT", raw_path: "/examplebucket/chunkObject.txt", raw_query: "", headers: &headers };
        let signer = crate::sigv4::verify_header(&req, 1_369_353_600, |_| Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into())).expect("known").expect("the seed verifies").chunks;
        let header = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
        let run = |wire: &[u8], cuts: &[usize]| {
            let mut p = Payload::new(Source::cut(wire, cuts.iter().copied()), mode_of(&header, signer.clone()).expect("mode"));
            let out = futures_lite::future::block_on(p.read_all(1 << 20));
            out.map(|d| (d, p.checksum().map(|(alg, v)| (alg, v.to_vec()))))
        };
        let whole = [&body[..], trailer.as_bytes()].concat();
        for cuts in [&[][..], &[1, 90, 65_600, 66_700, 66_800, 66_900][..]] {
            let (data, sum) = run(&whole, cuts).expect("the example decodes");
            assert_eq!(data, vec![b'a'; 66_560]);
            assert_eq!(sum, Some((Algorithm::Crc32c, checksum::Algorithm::Crc32c.decode("sOO8/Q==").expect("base64"))));
        }
        let changed = [&body[..], trailer.replace("sOO8/Q==", "sOO8/Q=A").as_bytes()].concat();
        assert_eq!(run(&changed, &[]).expect_err("changed trailer").code, "SignatureDoesNotMatch");
        let unsigned = [&body[..], b"x-amz-checksum-crc32c:sOO8/Q==\r\n\r\n"].concat();
        assert_eq!(run(&unsigned, &[]).expect_err("no trailer signature").code, "SignatureDoesNotMatch");
        let extra = [&body[..], b"x-amz-meta-extra:1\r\n", trailer.as_bytes()].concat();
        assert_eq!(run(&extra, &[]).expect_err("a trailer the signature does not cover").code, "SignatureDoesNotMatch");
        let mut chunk = whole.clone();
        chunk[30] = b'0';
        assert_eq!(run(&chunk, &[]).expect_err("a chunk signature changed").code, "SignatureDoesNotMatch");
        let many = [&body[..], "x-a:1\r\n".repeat(20).as_bytes(), trailer.as_bytes()].concat();
        assert_eq!(run(&many, &[]).expect_err("too many trailers").code, "InvalidRequest");
    }

    #[test]
    fn malformed_chunks_are_errors() {
        let h = [("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")];
        for body in [&b"zz\r\nhello\r\n0\r\n\r\n"[..], b"5\r\nhel", b"5\r\nhelloXX0\r\n\r\n", b"FFFFFFFF\r\n", b"+5\r\nhello\r\n0\r\n\r\n", b"\r\nhello\r\n0\r\n\r\n"] {
            assert!(decode(body, &h).is_err(), "{:?} decoded", String::from_utf8_lossy(body));
        }
        let signed = [("x-amz-content-sha256", crate::sigv4::STREAMING_PAYLOAD)];
        assert_eq!(decode(b"0\r\n\r\n", &signed).expect_err("needs a signed request").code, "InvalidRequest");
    }
}
