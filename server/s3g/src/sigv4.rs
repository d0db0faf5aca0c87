//! AWS Signature Version 4, as S3 verifies it: the `Authorization` header, presigned URLs
//! (query parameters) and `aws-chunked` streaming payloads with a signature per chunk (and one
//! for their trailers).
//!
//! A signature is HMAC-SHA256, under a key derived from the secret, the date, the region and
//! the service (`AWS4` + secret → date → region → `s3` → `aws4_request`), of a "string to sign"
//! that holds a SHA-256 of the *canonical request*: the method, the path and query re-encoded
//! by fixed rules, the signed headers lower-cased and trimmed, and the payload's hash (or
//! `UNSIGNED-PAYLOAD`, or `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`). The gateway rebuilds the
//! canonical request from what it received, so a request changed in transit, or signed with
//! another secret, does not match. Comparisons run in constant time.
//!
//! Checked against the published AWS examples and against botocore (the library boto3 and the
//! AWS CLI sign with): see the tests. No I/O here; the gateway looks up the secret of the
//! access key the request names and hands it in.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
pub const STREAMING_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// Signed chunks, then trailers signed too (`x-amz-trailer-signature`): what the AWS SDKs for
/// Java, Go and JavaScript send over plain HTTP when they add a checksum.
pub const STREAMING_PAYLOAD_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// The SHA-256 of nothing (a chunk signature's empty headers; a GET's payload).
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// How far a request's `X-Amz-Date` may be from the gateway's clock (S3's 15 minutes).
pub const CLOCK_SKEW_MAX_SECS: i64 = 15 * 60;
/// The longest a presigned URL may live (S3's 7 days).
pub const PRESIGN_EXPIRES_MAX_SECS: u64 = 7 * 24 * 3600;
/// Headers a request may sign, and their bytes: S3's request head is bounded far below.
const SIGNED_HEADERS_MAX: usize = 64;

/// Why a request's signature is refused; each maps to an S3 error code ([`SigError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("{0}")]
    Malformed(String),
    #[error("the request signature we calculated does not match the signature you provided; check your key and signing method")]
    Mismatch,
    #[error("request has expired")]
    Expired,
    #[error("the difference between the request time ({request}) and the server's time ({server}) is too large (at most 15 minutes)")]
    Skewed { request: String, server: String },
}

impl SigError {
    /// The S3 error code and HTTP status for this refusal.
    pub fn code(&self) -> (&'static str, u16) {
        match self {
            SigError::Malformed(_) => ("AuthorizationHeaderMalformed", 400),
            SigError::Mismatch => ("SignatureDoesNotMatch", 403),
            SigError::Expired => ("AccessDenied", 403),
            SigError::Skewed { .. } => ("RequestTimeTooSkewed", 403),
        }
    }
}

fn bad(what: impl Into<String>) -> SigError {
    SigError::Malformed(what.into())
}

/// `ACCESS/DATE/REGION/SERVICE/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key: String,
    /// `YYYYMMDD`.
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Credential {
    pub fn parse(s: &str) -> Result<Credential, SigError> {
        let mut parts = s.rsplitn(5, '/');
        let (term, service, region, date, access_key) = (parts.next(), parts.next(), parts.next(), parts.next(), parts.next());
        match (access_key, date, region, service, term) {
            (Some(a), Some(d), Some(r), Some(sv), Some("aws4_request")) if !a.is_empty() && d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) && !r.is_empty() && !sv.is_empty() => {
                Ok(Credential { access_key: a.to_string(), date: d.to_string(), region: r.to_string(), service: sv.to_string() })
            }
            _ => Err(bad(format!("the credential {s:?} is not ACCESS_KEY/YYYYMMDD/REGION/SERVICE/aws4_request"))),
        }
    }

    /// `DATE/REGION/SERVICE/aws4_request`.
    pub fn scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub credential: Credential,
    /// Lower-case header names, as signed (sorted, `;`-separated on the wire).
    pub signed_headers: Vec<String>,
    pub signature: [u8; 32],
}

impl Authorization {
    pub fn parse(value: &str) -> Result<Authorization, SigError> {
        let rest = value.strip_prefix(ALGORITHM).ok_or_else(|| bad(format!("the authorization header does not start with {ALGORITHM} (only Signature Version 4 is supported)")))?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let part = part.trim();
            match part.split_once('=') {
                Some(("Credential", v)) => credential = Some(Credential::parse(v)?),
                Some(("SignedHeaders", v)) => signed = Some(signed_headers(v)?),
                Some(("Signature", v)) => signature = Some(unhex(v).ok_or_else(|| bad("the signature is not 64 hexadecimal digits"))?),
                _ if part.is_empty() => {}
                _ => return Err(bad(format!("unexpected {part:?} in the authorization header"))),
            }
        }
        Ok(Authorization {
            credential: credential.ok_or_else(|| bad("the authorization header has no Credential"))?,
            signed_headers: signed.ok_or_else(|| bad("the authorization header has no SignedHeaders"))?,
            signature: signature.ok_or_else(|| bad("the authorization header has no Signature"))?,
        })
    }
}

fn signed_headers(v: &str) -> Result<Vec<String>, SigError> {
    let names: Vec<String> = v.split(';').map(str::to_string).collect();
    if names.is_empty() || names.len() > SIGNED_HEADERS_MAX || names.iter().any(|n| n.is_empty() || n.bytes().any(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'))) {
        return Err(bad(format!("SignedHeaders {v:?}: 1 to {SIGNED_HEADERS_MAX} lower-case header names separated by ';'")));
    }
    if !names.iter().any(|n| n == "host") {
        return Err(bad("SignedHeaders must include host"));
    }
    Ok(names)
}

pub fn unhex(s: &str) -> Option<[u8; 32]> {
    unhex_n(s)
}

/// `N` bytes from exactly `2 * N` hexadecimal digits (either case); nothing else, not even the
/// sign `from_str_radix` accepts (`+f`).
pub fn unhex_n<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// A hexadecimal digit's value (either case).
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lower-case hexadecimal. (A `write!` of `{:02x}` per byte was ~1k instructions per hash, and
/// a request hashes and signs several.)
pub fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[usize::from(x >> 4)] as char);
        s.push(DIGITS[usize::from(x & 15)] as char);
    }
    s
}

/// Percent-decodes `s` (`+` stays a plus: S3 paths and SigV4 queries use `%20` for spaces).
pub fn decode(s: &str) -> Result<Vec<u8>, SigError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3).and_then(|h| Some((nibble(h[0])? << 4) | nibble(h[1])?));
            out.push(h.ok_or_else(|| bad(format!("a bad percent escape in {s:?}")))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// SigV4's URI encoding: unreserved bytes (`A-Z a-z 0-9 - _ . ~`) as they are, `/` as it is
/// where `keep_slash`, every other byte as `%XX` (upper-case hex).
pub fn encode(b: &[u8], keep_slash: bool) -> String {
    let mut s = String::with_capacity(b.len());
    for &x in b {
        if x.is_ascii_alphanumeric() || b"-_.~".contains(&x) || (keep_slash && x == b'/') {
            s.push(x as char);
        } else {
            const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
            s.extend(['%', DIGITS[usize::from(x >> 4)] as char, DIGITS[usize::from(x & 15)] as char]);
        }
    }
    s
}

/// The canonical URI of a request's path as received (percent-encoded by the client): decoded
/// and encoded again by SigV4's rules, once (S3 does not encode twice, nor normalize `..`).
pub fn canonical_uri(raw_path: &str) -> Result<String, SigError> {
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    Ok(encode(&decode(path)?, true))
}

/// The canonical query string: each `name=value` decoded and encoded again, sorted by name then
/// value; a parameter without `=` has an empty value. `X-Amz-Signature` is left out where
/// `presigned` (it is what is being checked).
pub fn canonical_query(raw_query: &str, presigned: bool) -> Result<String, SigError> {
    let mut pairs = Vec::new();
    for p in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        let (n, v) = (decode(n)?, decode(v)?);
        if presigned && n == b"X-Amz-Signature" {
            continue;
        }
        pairs.push((encode(&n, false), encode(&v, false)));
    }
    pairs.sort();
    Ok(pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&"))
}

/// A header value as signed: trimmed, runs of spaces as one.
fn canonical_value(v: &str) -> String {
    // Most values are in that form already: one pass to see, no vector of words to join.
    // Plain: printable ASCII words separated by single spaces. Anything else (other
    // whitespace, control bytes, non-ASCII) takes the general path.
    let mut space = true; // (so that a leading space is not plain)
    let plain = v.bytes().all(|c| match c {
        0x21..=0x7e => {
            space = false;
            true
        }
        b' ' if !space => {
            space = true;
            true
        }
        _ => false,
    });
    if plain && (!space || v.is_empty()) {
        return v.to_string();
    }
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What of a request a signature covers, as the gateway received it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as received, percent-encoded (`/bucket/key%20name`).
    pub raw_path: &'a str,
    /// The query as received, without `?`.
    pub raw_query: &'a str,
    /// Every header, names in any case; repeated names are joined with `,` in order.
    pub headers: &'a [(String, String)],
}

impl Request<'_> {
    /// A header's value (names compared without case; repeats joined with `,`).
    pub fn header(&self, name: &str) -> Option<String> {
        let mut found = self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let first = found.next()?;
        let mut joined = canonical_value(first);
        for v in found {
            joined.push(',');
            joined.push_str(&canonical_value(v));
        }
        Some(joined)
    }

    /// The canonical request over `signed` headers and `payload` (its hash, or one of the
    /// `UNSIGNED`/`STREAMING` words), with the path in canonical form or, `verbatim`, as
    /// received (see [`Request::verify`]).
    pub fn canonical(&self, signed: &[String], payload: &str, presigned: bool, verbatim: bool) -> Result<String, SigError> {
        let path = if verbatim { self.raw_path.to_string() } else { canonical_uri(self.raw_path)? };
        // Pushed piece by piece: a `format!` per line was ~4k instructions of a GET.
        let mut s = String::with_capacity(512);
        for part in [self.method, "\n", &path, "\n", &canonical_query(self.raw_query, presigned)?, "\n"] {
            s.push_str(part);
        }
        for name in signed {
            let v = self.header(name).ok_or_else(|| bad(format!("the signed header {name:?} is not in the request")))?;
            for part in [name.as_str(), ":", &v, "\n"] {
                s.push_str(part);
            }
        }
        s.push('\n');
        s.push_str(&signed.join(";"));
        s.push('\n');
        s.push_str(payload);
        Ok(s)
    }
}

impl Request<'_> {
    /// The signature this request should carry under `key`, checked against `given`: with the
    /// path in canonical form (decoded and encoded again: what S3's rules and boto3's quoting
    /// produce), or else exactly as received. botocore signs a path verbatim, so a client
    /// that sends an unescaped `+` (legal in a path) signs `+` where the canonical form has
    /// `%2B`. Both forms are of the bytes received, so accepting either proves the same
    /// request. The signature that matched, or [`SigError::Mismatch`].
    fn verify(&self, by: &Signer<'_>, signed: &[String], payload: &str, presigned: bool, given: &[u8; 32]) -> Result<[u8; 32], SigError> {
        let (key, amz_date, scope) = (&by.key, by.amz_date, by.scope);
        let expected = sign(key, &string_to_sign(amz_date, scope, &self.canonical(signed, payload, presigned, false)?));
        if same(&expected, given) {
            return Ok(expected);
        }
        if canonical_uri(self.raw_path)? != self.raw_path {
            let verbatim = sign(key, &string_to_sign(amz_date, scope, &self.canonical(signed, payload, presigned, true)?));
            if same(&verbatim, given) {
                return Ok(verbatim);
            }
        }
        Err(SigError::Mismatch)
    }
}

/// What a signature is made with: the signing key, the request's time and the credential's scope.
struct Signer<'a> {
    key: [u8; 32],
    amz_date: &'a str,
    scope: &'a str,
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Signing keys this thread derived lately, the most recent last.
const SIGNING_KEYS_CACHED: usize = 16;

/// The signing key of `secret` for a credential's date, region and service, from a small
/// per-thread cache. A client signs a whole day's requests with one key, and deriving it is four
/// HMACs: under callgrind 58k of the gateway's 206k instructions per GET (valgrind's SHA-256
/// has no SHA-NI; natively about 1.5 µs of ~88), and the same again in the benchmark's signer.
/// Entries are found by the secret itself (compared in constant time): a new secret for an
/// access key never meets the old one's key.
pub fn signing_key(secret: &str, c: &Credential) -> [u8; 32] {
    type Entry = (String, String, String, String, [u8; 32]);
    thread_local! {
        static KEYS: std::cell::RefCell<Vec<Entry>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let same_secret = |a: &str| same(a.as_bytes(), secret.as_bytes());
    KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        if let Some((.., k)) = keys.iter().rev().find(|(s, d, r, v, _)| *d == c.date && *r == c.region && *v == c.service && same_secret(s)) {
            return *k;
        }
        let k = derive_signing_key(secret, c);
        if keys.len() >= SIGNING_KEYS_CACHED {
            keys.remove(0);
        }
        keys.push((secret.to_string(), c.date.clone(), c.region.clone(), c.service.clone(), k));
        k
    })
}

/// A browser-based upload's policy signed as Signature Version 4 signs it: the hex of
/// HMAC-SHA256 of the policy (its base64 text) with the credential's signing key.
pub fn sign_policy_v4(secret: &str, c: &Credential, policy: &str) -> String {
    hex(&hmac(&signing_key(secret, c), policy.as_bytes()))
}

/// A browser-based upload's policy signed as Signature Version 2 signs it (what most HTML
/// forms and ceph's s3-tests still send): the base64 of HMAC-SHA1 of the policy's base64 text
/// with the secret itself.
pub fn sign_policy_v2(secret: &str, policy: &str) -> String {
    use base64::Engine;
    let mut m = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    m.update(policy.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

/// AWS's derivation: `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
/// "aws4_request")`.
fn derive_signing_key(secret: &str, c: &Credential) -> [u8; 32] {
    let k = hmac(format!("AWS4{secret}").as_bytes(), c.date.as_bytes());
    let k = hmac(&k, c.region.as_bytes());
    let k = hmac(&k, c.service.as_bytes());
    hmac(&k, b"aws4_request")
}

/// `AWS4-HMAC-SHA256 \n DATE \n SCOPE \n hex(sha256(canonical request))`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let hash = hex(&Sha256::digest(canonical_request.as_bytes()));
    let mut s = String::with_capacity(ALGORITHM.len() + amz_date.len() + scope.len() + hash.len() + 3);
    for part in [ALGORITHM, "\n", amz_date, "\n", scope, "\n", &hash] {
        s.push_str(part);
    }
    s
}

pub fn sign(key: &[u8; 32], string_to_sign: &str) -> [u8; 32] {
    hmac(key, string_to_sign.as_bytes())
}

/// Equal in time that does not depend on where they differ (signatures, secrets).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// `YYYYMMDDTHHMMSSZ` as seconds since 1970.
pub fn parse_amz_date(s: &str) -> Result<i64, SigError> {
    let b = s.as_bytes();
    let ok = b.len() == 16 && b[8] == b'T' && b[15] == b'Z' && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
    if !ok {
        return Err(bad(format!("X-Amz-Date {s:?} is not YYYYMMDDTHHMMSSZ")));
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().expect("digits");
    let (y, m, d, hh, mm, ss) = (n(0..4), n(4..6), n(6..8), n(9..11), n(11..13), n(13..15));
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return Err(bad(format!("X-Amz-Date {s:?} is not a time")));
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok((era * 146_097 + doe - 719_468) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// What a verified request proved: who signed it, and for a streaming payload what its chunks
/// must be signed with.
#[derive(Debug, Clone)]
pub struct Verified {
    pub access_key: String,
    /// For `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (and `-TRAILER`): the chunk signer, seeded with
    /// this request's signature.
    pub chunks: Option<ChunkSigner>,
}

/// Verifies a request signed in its `Authorization` header. `secret_of` gives the secret of an
/// access key (None: unknown, which the caller answers with `InvalidAccessKeyId`); `now` is the
/// gateway's clock in seconds.
pub fn verify_header(req: &Request<'_>, now: i64, secret_of: impl FnOnce(&str) -> Option<String>) -> Result<Result<Verified, SigError>, String> {
    let auth = match req.header("authorization").map(|a| Authorization::parse(&a)) {
        Some(Ok(a)) => a,
        Some(Err(e)) => return Ok(Err(e)),
        None => return Ok(Err(bad("no Authorization header"))),
    };
    let amz_date = match req.header("x-amz-date") {
        Some(d) => d,
        None => return Ok(Err(bad("no X-Amz-Date header (a Date header alone is not supported)"))),
    };
    let at = match parse_amz_date(&amz_date) {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    if (now - at).abs() > CLOCK_SKEW_MAX_SECS {
        return Ok(Err(SigError::Skewed { request: amz_date, server: format_amz_date(now) }));
    }
    if !amz_date.starts_with(&auth.credential.date) {
        return Ok(Err(bad(format!("the credential's date {} is not the request's ({amz_date})", auth.credential.date))));
    }
    let payload = req.header("x-amz-content-sha256").unwrap_or_else(|| EMPTY_SHA256.to_string());
    let Some(secret) = secret_of(&auth.credential.access_key) else { return Err(auth.credential.access_key) };
    let key = signing_key(&secret, &auth.credential);
    let scope = auth.credential.scope();
    let expected = match req.verify(&Signer { key, amz_date: &amz_date, scope: &scope }, &auth.signed_headers, &payload, false, &auth.signature) {
        Ok(e) => e,
        Err(e) => return Ok(Err(e)),
    };
    let trailer = payload == STREAMING_PAYLOAD_TRAILER;
    let chunks = (payload == STREAMING_PAYLOAD || trailer).then_some(ChunkSigner { key, scope, amz_date, previous: expected, trailer });
    Ok(Ok(Verified { access_key: auth.credential.access_key, chunks }))
}

/// Verifies a presigned URL (`X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
/// `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature` in the query). The payload is
/// unsigned. The outer `Err` is an access key `secret_of` does not know.
pub fn verify_presigned(req: &Request<'_>, now: i64, secret_of: impl FnOnce(&str) -> Option<String>) -> Result<Result<Verified, SigError>, String> {
    let mut q = std::collections::HashMap::new();
    for p in req.raw_query.split('&').filter(|p| !p.is_empty()) {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        match (decode(n), decode(v)) {
            (Ok(n), Ok(v)) => {
                q.insert(String::from_utf8_lossy(&n).into_owned(), String::from_utf8_lossy(&v).into_owned());
            }
            (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
        }
    }
    let get = |n: &str| q.get(n).cloned().ok_or_else(|| bad(format!("a presigned URL needs {n}")));
    let parsed = (|| {
        if get("X-Amz-Algorithm")? != ALGORITHM {
            return Err(bad(format!("X-Amz-Algorithm must be {ALGORITHM}")));
        }
        let credential = Credential::parse(&get("X-Amz-Credential")?)?;
        let amz_date = get("X-Amz-Date")?;
        let at = parse_amz_date(&amz_date)?;
        let expires: i64 = get("X-Amz-Expires")?.parse().map_err(|_| bad("X-Amz-Expires is not a number of seconds"))?;
        if expires > PRESIGN_EXPIRES_MAX_SECS as i64 {
            return Err(bad(format!("X-Amz-Expires must be 1 to {PRESIGN_EXPIRES_MAX_SECS} seconds")));
        }
        // A URL presigned to live no time at all (botocore writes a negative ExpiresIn as is)
        // is an expired one: 403, as S3 answers it.
        if expires <= 0 {
            return Err(SigError::Expired);
        }
        let signed = signed_headers(&get("X-Amz-SignedHeaders")?)?;
        let signature = unhex(&get("X-Amz-Signature")?).ok_or_else(|| bad("X-Amz-Signature is not 64 hexadecimal digits"))?;
        if at - now > CLOCK_SKEW_MAX_SECS {
            return Err(SigError::Skewed { request: amz_date.clone(), server: format_amz_date(now) });
        }
        if now > at + expires {
            return Err(SigError::Expired);
        }
        Ok((credential, amz_date, signed, signature))
    })();
    let (credential, amz_date, signed, signature) = match parsed {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let Some(secret) = secret_of(&credential.access_key) else { return Err(credential.access_key) };
    let key = signing_key(&secret, &credential);
    if let Err(e) = req.verify(&Signer { key, amz_date: &amz_date, scope: &credential.scope() }, &signed, UNSIGNED_PAYLOAD, true, &signature) {
        return Ok(Err(e));
    }
    Ok(Ok(Verified { access_key: credential.access_key, chunks: None }))
}

/// Signs a request as an S3 client does (for the gateway's benchmark and tests): given every
/// header it will send (among them `host`, `x-amz-date` and `x-amz-content-sha256`), all of
/// which are signed, returns the `Authorization` header's value.
pub fn authorization(req: &Request<'_>, access_key: &str, secret: &str, region: &str, payload: &str) -> Result<String, SigError> {
    let amz_date = req.header("x-amz-date").ok_or_else(|| bad("no x-amz-date to sign with"))?;
    let credential = Credential { access_key: access_key.to_string(), date: amz_date.get(..8).unwrap_or("").to_string(), region: region.to_string(), service: "s3".into() };
    let mut signed: Vec<String> = req.headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    signed.sort();
    signed.dedup();
    let canonical = req.canonical(&signed, payload, false, false)?;
    let signature = sign(&signing_key(secret, &credential), &string_to_sign(&amz_date, &credential.scope(), &canonical));
    Ok(format!("{ALGORITHM} Credential={access_key}/{},SignedHeaders={},Signature={}", credential.scope(), signed.join(";"), hex(&signature)))
}

/// Seconds since 1970 as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = stratos_client::sh::civil_date(days);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// The signatures of an `aws-chunked` payload's chunks, each chained to the one before (the
/// first to the request's): `AWS4-HMAC-SHA256-PAYLOAD \n DATE \n SCOPE \n previous \n
/// sha256("") \n sha256(chunk)`. The last chunk is empty. With `-TRAILER`, the trailers that
/// follow it are signed as `AWS4-HMAC-SHA256-TRAILER \n DATE \n SCOPE \n previous \n
/// sha256(trailers)`, where `previous` is the last chunk's signature and the trailers are each
/// `name:value\n` as sent, less `x-amz-trailer-signature` itself.
#[derive(Debug, Clone)]
pub struct ChunkSigner {
    key: [u8; 32],
    scope: String,
    amz_date: String,
    previous: [u8; 32],
    trailer: bool,
}

impl ChunkSigner {
    /// Checks the signature a chunk came with and moves the chain on; a mismatch leaves it.
    pub fn check(&mut self, chunk: &[u8], signature: &str) -> Result<(), SigError> {
        let given = unhex(signature).ok_or_else(|| bad("a chunk signature is not 64 hexadecimal digits"))?;
        let expected = self.expected(chunk);
        if !same(&expected, &given) {
            return Err(SigError::Mismatch);
        }
        self.previous = expected;
        Ok(())
    }

    /// Whether the payload's trailers are signed (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`).
    pub fn signs_trailers(&self) -> bool {
        self.trailer
    }

    /// Checks the trailers' signature, after the last (empty) chunk's: `canonical` is each
    /// trailer but the signature as `name:value\n`, in the order sent.
    pub fn check_trailers(&self, canonical: &[u8], signature: &str) -> Result<(), SigError> {
        let given = unhex(signature).ok_or_else(|| bad("x-amz-trailer-signature is not 64 hexadecimal digits"))?;
        let s = format!("AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}", self.amz_date, self.scope, hex(&self.previous), hex(&Sha256::digest(canonical)));
        if !same(&sign(&self.key, &s), &given) {
            return Err(SigError::Mismatch);
        }
        Ok(())
    }

    fn expected(&self, chunk: &[u8]) -> [u8; 32] {
        let s = format!("AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{}", self.amz_date, self.scope, hex(&self.previous), hex(&Sha256::digest(chunk)));
        sign(&self.key, &s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_authorization_signs_verifies() {
        let now = 1_764_716_725;
        let headers = vec![
            ("host".to_string(), "127.0.0.1:9878".to_string()),
            ("x-amz-date".to_string(), format_amz_date(now)),
            ("x-amz-content-sha256".to_string(), UNSIGNED_PAYLOAD.to_string()),
        ];
        let mut req = Request { method: "PUT", raw_path: "/bkt/a%20b", raw_query: "", headers: &headers };
        let auth = authorization(&req, "alice", "secret", "us-east-1", UNSIGNED_PAYLOAD).expect("signs");
        let mut all = headers.clone();
        all.push(("authorization".into(), auth));
        req.headers = &all;
        assert!(matches!(verify_header(&req, now, |_| Some("secret".into())), Ok(Ok(_))));
        assert!(matches!(verify_header(&req, now, |_| Some("other".into())), Ok(Err(SigError::Mismatch))));
    }

    const ACCESS: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    /// 2013-05-24T00:00:00Z, the time of AWS's examples.
    const EXAMPLE_TIME: i64 = 1_369_353_600;

    fn headers(h: &[(&str, &str)]) -> Vec<(String, String)> {
        h.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    fn secret(a: &str) -> Option<String> {
        (a == ACCESS).then(|| SECRET.to_string())
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_amz_date("20130524T000000Z"), Ok(EXAMPLE_TIME));
        assert_eq!(format_amz_date(EXAMPLE_TIME), "20130524T000000Z");
        assert_eq!(format_amz_date(parse_amz_date("20240229T235959Z").expect("a leap day")), "20240229T235959Z");
        assert!(parse_amz_date("2013-05-24T00:00:00Z").is_err());
        assert!(parse_amz_date("20131324T000000Z").is_err());
    }

    /// AWS's published example (GET Object with a Range header, S3 API reference, "Signature
    /// Calculations for the Authorization Header"), which botocore 1.44.8 signs the same.
    #[test]
    fn the_published_get_object_example_verifies() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
        let h = headers(&[("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9"), ("x-amz-content-sha256", EMPTY_SHA256), ("x-amz-date", "20130524T000000Z"), ("Authorization", auth)]);
        let req = Request { method: "GET", raw_path: "/test.txt", raw_query: "", headers: &h };
        let v = verify_header(&req, EXAMPLE_TIME + 60, secret).expect("a known key").expect("verifies");
        assert_eq!(v.access_key, ACCESS);
        // Another secret, a changed header, a changed path: refused.
        assert_eq!(verify_header(&req, EXAMPLE_TIME, |_| Some("other".into())).expect("known").err(), Some(SigError::Mismatch));
        let mut changed = h.clone();
        changed[1].1 = "bytes=0-10".into();
        assert_eq!(verify_header(&Request { headers: &changed, ..req.clone() }, EXAMPLE_TIME, secret).expect("known").err(), Some(SigError::Mismatch));
        assert_eq!(verify_header(&Request { raw_path: "/test.txu", ..req.clone() }, EXAMPLE_TIME, secret).expect("known").err(), Some(SigError::Mismatch));
        // Too far from the server's clock; an unknown key.
        assert!(matches!(verify_header(&req, EXAMPLE_TIME + 16 * 60, secret).expect("known"), Err(SigError::Skewed { .. })));
        assert_eq!(verify_header(&req, EXAMPLE_TIME, |_| None).err(), Some(ACCESS.to_string()));
    }

    /// botocore 1.44.8 (`S3SigV4Auth`, path style): a PUT whose path has a space, `~` and
    /// escaped `+`s (as boto3 quotes a key), a query with an empty value, a signed payload hash,
    /// and a header value with runs of spaces; and the same path with a literal `+`, which
    /// botocore signs verbatim.
    #[test]
    fn botocore_signs_odd_paths_queries_and_values_as_we_check_them() {
        let signed = |sig: &str| format!("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-two, Signature={sig}");
        let auth = signed("1f7a861702c0f007decfe0efd76daae19a8f48f42acce63bdd5a60905a58d5e5");
        let h = headers(&[
            ("Host", "127.0.0.1:9878"),
            ("Content-Type", "text/plain"),
            ("X-Amz-Meta-Two", "  a   b  "),
            // sha256("hello"): botocore signs the body over plain HTTP.
            ("X-Amz-Content-SHA256", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
            ("X-Amz-Date", "20130524T000000Z"),
            ("Authorization", &auth),
        ]);
        let req = Request { method: "PUT", raw_path: "/bkt/a%20b/c~d%2Be%2Bf", raw_query: "tagging=&x-id=PutObject", headers: &h };
        assert!(verify_header(&req, EXAMPLE_TIME, secret).expect("known").is_ok());
        let verbatim = signed("a99956614a6d78e3b6e7e89321cf22bf584521e28b79207dd4b460a359599d33");
        let mut h2 = h.clone();
        h2[5].1 = verbatim;
        let plus = Request { raw_path: "/bkt/a%20b/c~d+e%2Bf", headers: &h2, ..req.clone() };
        assert!(verify_header(&plus, EXAMPLE_TIME, secret).expect("known").is_ok());
        // The literal '+' names the same key as "%2B", so the canonical signature covers it too;
        // another key is refused under either form.
        assert!(verify_header(&Request { raw_path: "/bkt/a%20b/c~d+e%2Bf", ..req.clone() }, EXAMPLE_TIME, secret).expect("known").is_ok());
        assert_eq!(verify_header(&Request { raw_path: "/bkt/a%20b/c~d+e%2Bg", ..req.clone() }, EXAMPLE_TIME, secret).expect("known").err(), Some(SigError::Mismatch));
        assert_eq!(verify_header(&Request { raw_path: "/bkt/a%20b/c~d+e%2Bg", ..plus }, EXAMPLE_TIME, secret).expect("known").err(), Some(SigError::Mismatch));
    }

    /// AWS's published presigned-URL example (and botocore's `S3SigV4QueryAuth`, 86400 s).
    #[test]
    fn the_published_presigned_url_verifies_until_it_expires() {
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        let h = headers(&[("Host", "examplebucket.s3.amazonaws.com")]);
        let req = Request { method: "GET", raw_path: "/test.txt", raw_query: q, headers: &h };
        assert!(verify_presigned(&req, EXAMPLE_TIME + 3600, secret).expect("known").is_ok());
        assert_eq!(verify_presigned(&req, EXAMPLE_TIME + 86_401, secret).expect("known").err(), Some(SigError::Expired));
        assert_eq!(verify_presigned(&Request { method: "PUT", ..req.clone() }, EXAMPLE_TIME, secret).expect("known").err(), Some(SigError::Mismatch));
        let long = q.replace("X-Amz-Expires=86400", "X-Amz-Expires=604801");
        assert!(matches!(verify_presigned(&Request { raw_query: &long, ..req.clone() }, EXAMPLE_TIME, secret).expect("known"), Err(SigError::Malformed(_))));
        for none in ["X-Amz-Expires=0", "X-Amz-Expires=-1000"] {
            let q = q.replace("X-Amz-Expires=86400", none);
            assert_eq!(verify_presigned(&Request { raw_query: &q, ..req.clone() }, EXAMPLE_TIME, secret).expect("known").err(), Some(SigError::Expired), "{none}");
        }
    }

    /// AWS's published streaming example ("Signature Calculations for the Authorization
    /// Header: Transferring Payload in Multiple Chunks"): 66,560 bytes of 'a' in chunks of
    /// 65,536 and 1,024, then the empty chunk.
    #[test]
    fn the_published_chunked_upload_example_verifies_chunk_by_chunk() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
        let h = headers(&[
            ("Host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("Authorization", auth),
            ("x-amz-content-sha256", STREAMING_PAYLOAD),
            ("Content-Encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("Content-Length", "66824"),
        ]);
        let req = Request { method: "PUT", raw_path: "/examplebucket/chunkObject.txt", raw_query: "", headers: &h };
        let mut chunks = verify_header(&req, EXAMPLE_TIME, secret).expect("known").expect("the seed verifies").chunks.expect("streaming");
        let a = vec![b'a'; 65_536];
        assert_eq!(chunks.clone().check(&a[..1024], "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"), Err(SigError::Mismatch), "another chunk's bytes");
        chunks.check(&a, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648").expect("chunk 1");
        chunks.check(&a[..1024], "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497").expect("chunk 2");
        chunks.check(b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9").expect("the final chunk");
    }

    /// AWS's published example with a trailer ("Signature Calculations for the Authorization
    /// Header: Including Trailing Headers"): the same 66,560 bytes of 'a', then a CRC32C trailer
    /// and its signature.
    #[test]
    fn the_published_trailer_example_verifies() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer,Signature=106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";
        let h = headers(&[
            ("Host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("Authorization", auth),
            ("x-amz-content-sha256", STREAMING_PAYLOAD_TRAILER),
            ("Content-Encoding", "aws-chunked"),
            ("x-amz-trailer", "x-amz-checksum-crc32c"),
            ("x-amz-decoded-content-length", "66560"),
        ]);
        let req = Request { method: "PUT", raw_path: "/examplebucket/chunkObject.txt", raw_query: "", headers: &h };
        let mut chunks = verify_header(&req, EXAMPLE_TIME, secret).expect("known").expect("the seed verifies").chunks.expect("streaming");
        assert!(chunks.signs_trailers());
        let a = vec![b'a'; 65_536];
        chunks.check(&a, "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2").expect("chunk 1");
        chunks.check(&a[..1024], "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7").expect("chunk 2");
        chunks.check(b"", "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992").expect("the final chunk");
        let signature = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435";
        chunks.check_trailers(b"x-amz-checksum-crc32c:sOO8/Q==\n", signature).expect("the trailer");
        assert_eq!(chunks.check_trailers(b"x-amz-checksum-crc32c:sOO8/Q=\n", signature), Err(SigError::Mismatch), "another value");
        assert!(chunks.check_trailers(b"x-amz-checksum-crc32c:sOO8/Q==\n", "d81f").is_err());
    }

    #[test]
    fn malformed_authorization_headers_say_what_is_wrong() {
        for (h, says) in [
            ("AWS AKIA:abc", "Signature Version 4"),
            ("AWS4-HMAC-SHA256 Credential=A/2013/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00", "YYYYMMDD"),
            ("AWS4-HMAC-SHA256 Credential=A/20130524/us-east-1/s3/aws4_request, SignedHeaders=Host, Signature=00", "lower-case"),
            ("AWS4-HMAC-SHA256 Credential=A/20130524/us-east-1/s3/aws4_request, SignedHeaders=range, Signature=00", "include host"),
            ("AWS4-HMAC-SHA256 Credential=A/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=zz", "64 hexadecimal"),
            ("AWS4-HMAC-SHA256 Credential=A/20130524/us-east-1/s3/aws4_request, SignedHeaders=host", "no Signature"),
        ] {
            let e = Authorization::parse(h).expect_err(h);
            assert!(e.to_string().contains(says), "{h}: {e}");
            assert_eq!(e.code(), ("AuthorizationHeaderMalformed", 400));
        }
    }

    proptest::proptest! {
        /// Any bytes in a path or query: an error or a canonical form, never a panic; and a
        /// canonical form is a fixed point (encoding what was decoded is stable).
        #[test]
        fn canonical_forms_never_panic_and_are_stable(path in ".{0,64}", query in ".{0,64}") {
            if let Ok(c) = canonical_uri(&path) {
                proptest::prop_assert_eq!(canonical_uri(&c).expect("a canonical path parses"), c);
            }
            let _ = canonical_query(&query, true);
            let _ = Authorization::parse(&path);
            let _ = parse_amz_date(&query);
        }

        /// A request signed here with any secret, path and header values verifies, and fails
        /// with one bit of the signature changed.
        #[test]
        fn what_is_signed_verifies_and_one_bit_off_does_not(secret in "[ -~]{1,40}", key in "[a-zA-Z0-9/ ._~-]{1,40}", value in "[ -~]{0,30}", bit in 0usize..256) {
            let raw_path = format!("/bkt/{}", encode(key.as_bytes(), true));
            let signed = vec!["host".to_string(), "x-amz-date".to_string(), "x-amz-meta-v".to_string()];
            let base = headers(&[("host", "h:1"), ("x-amz-date", "20130524T000000Z"), ("x-amz-meta-v", &value)]);
            let req = Request { method: "PUT", raw_path: &raw_path, raw_query: "", headers: &base };
            let cred = Credential { access_key: "K".into(), date: "20130524".into(), region: "us-east-1".into(), service: "s3".into() };
            let mut sig = sign(&signing_key(&secret, &cred), &string_to_sign("20130524T000000Z", &cred.scope(), &req.canonical(&signed, EMPTY_SHA256, false, false).expect("canonical")));
            let header = |sig: &[u8; 32]| format!("AWS4-HMAC-SHA256 Credential=K/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date;x-amz-meta-v, Signature={}", hex(sig));
            let mut h = base.clone();
            h.push(("authorization".into(), header(&sig)));
            let ok = verify_header(&Request { headers: &h, ..req.clone() }, EXAMPLE_TIME, |_| Some(secret.clone())).expect("known");
            proptest::prop_assert!(ok.is_ok());
            sig[bit / 8] ^= 1 << (bit % 8);
            let mut h = base.clone();
            h.push(("authorization".into(), header(&sig)));
            let bad = verify_header(&Request { headers: &h, ..req }, EXAMPLE_TIME, |_| Some(secret.clone())).expect("known");
            proptest::prop_assert_eq!(bad.err(), Some(SigError::Mismatch));
        }

        /// The fast forms agree with the plain ones: a header value's canonical form is its
        /// words joined by one space (whitespace as `split_whitespace` has it: tabs, vertical
        /// tabs, no-break spaces), repeats of a header joined by commas; hex round-trips and
        /// percent escapes decode in either case.
        #[test]
        fn fast_forms_agree_with_the_plain_ones(
            a in "[ a\t\x0b\u{a0}b,]{0,12}", b in "[ ab]{0,6}", bytes in proptest::collection::vec(proptest::num::u8::ANY, 32),
        ) {
            let words = |v: &str| v.split_whitespace().collect::<Vec<_>>().join(" ");
            proptest::prop_assert_eq!(canonical_value(&a), words(&a));
            let h = headers(&[("X-A", &a), ("host", "h"), ("x-a", &b)]);
            let req = Request { method: "GET", raw_path: "/", raw_query: "", headers: &h };
            proptest::prop_assert_eq!(req.header("x-a"), Some(format!("{},{}", words(&a), words(&b))));
            proptest::prop_assert_eq!(req.header("x-b"), None);
            let x = hex(&bytes);
            proptest::prop_assert_eq!(&x, &bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
            proptest::prop_assert_eq!(unhex(&x).map(|u| u.to_vec()), Some(bytes.clone()));
            proptest::prop_assert_eq!(unhex(&x.to_uppercase()).map(|u| u.to_vec()), Some(bytes.clone()));
            proptest::prop_assert_eq!(decode(&encode(&bytes, false)).expect("decodes"), bytes.clone());
            let upper: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            proptest::prop_assert_eq!(decode(&upper.to_lowercase()).expect("decodes"), bytes);
        }
    }

    #[test]
    fn cached_signing_keys_are_the_derived_ones() {
        let cred = |date: &str, region: &str, service: &str| Credential { access_key: "AKID".into(), date: date.into(), region: region.into(), service: service.into() };
        let creds = [cred("20130524", "us-east-1", "s3"), cred("20130525", "us-east-1", "s3"), cred("20130524", "eu-west-1", "s3"), cred("20130524", "us-east-1", "sts")];
        // More secrets than the cache holds, twice over, so that hits, misses and evictions all
        // happen; a lookup that ignored the secret or a field would return another's key.
        for round in 0..2 {
            for i in 0..SIGNING_KEYS_CACHED + 3 {
                let secret = format!("secret-{i:02}");
                for c in &creds {
                    assert_eq!(signing_key(&secret, c), derive_signing_key(&secret, c), "round {round}, {secret}, {c:?}");
                }
            }
        }
        // AWS's published example (the signing-key figure of the SigV4 documentation).
        let k = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", &cred("20120215", "us-east-1", "iam"));
        assert_eq!(hex(&k), "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    }

    #[test]
    fn bad_hex_and_escapes_are_refused() {
        assert_eq!(unhex(&"g".repeat(64)), None);
        assert_eq!(unhex(&"0".repeat(63)), None);
        assert_eq!(unhex(&format!("{}+1", "0".repeat(62))), None);
        assert_eq!(unhex_n::<16>("00112233445566778899aabbccddEEFF"), Some([0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]));
        for bad in ["+f112233445566778899aabbccddeeff", "0011223344556677889_aabbccddeeff", "0011223344556677889\u{e9}abbccddeeff"] {
            assert_eq!(unhex_n::<16>(bad), None, "{bad:?}");
        }
        assert!(decode("a%2").is_err() && decode("%zz").is_err() && decode("%+1").is_err());
        assert_eq!(decode("a%2Fb%2f").expect("decodes"), b"a/b/");
    }
}
