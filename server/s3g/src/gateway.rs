//! One executor's gateway: authenticates each request (Signature V4 with the principal's
//! secret, read from the OM and cached briefly), routes it by method, path and query, and
//! serves it through the OM (acting for the principal the signature proves) and the datanodes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response};
use stratos_client::data::{Datanode, Datanodes};
use stratos_client::{AclEntry, Client, PartInfo, Runtime};

use crate::S3_VOLUME;
use crate::acl::{self, On};
use crate::checksum;
use crate::cors;
use crate::error::{S3Error, from_om};
use crate::form;
use crate::lifecycle;
use crate::lookups::Lookups;
use crate::md5pairs::Md5Pairs;
use crate::metrics::CoreMetrics;
use crate::http::Body;
use crate::object::{self, Condition, ETAG, Finish, Input, Reader};
use crate::payload::{self, Payload, Source};
use crate::policy::{self, Decision, Policy};
use crate::sigv4::{self, ChunkSigner};
use crate::sse::{self, Cipher, Keyring};
use crate::xml::{self, Writer};

/// How long a secret read from the OM is used before it is read again: a revoked secret stops
/// verifying within this long.
pub const SECRET_CACHE_TTL: Duration = Duration::from_secs(5);
/// Largest request body that is a document (DeleteObjects of 1000 keys, tagging).
const DOCUMENT_BYTES_MAX: usize = 2 << 20;
/// Largest object of one PUT (S3's 5 GiB).
pub const PUT_BYTES_MAX: u64 = 5 << 30;
/// Keys of one DeleteObjects (S3's limit).
const DELETE_KEYS_MAX: usize = 1000;
/// User metadata (`x-amz-meta-*` names and values) per object (S3's 2 KB).
const USER_METADATA_BYTES_MAX: usize = 2048;
/// The OM's bounds on one metadata value and on a key's pairs (`METADATA_VALUE_BYTES_MAX`,
/// `METADATA_PAIRS_MAX` of the shard).
const METADATA_VALUE_BYTES_MAX: usize = 2048;
const METADATA_PAIRS_MAX: usize = 64;
/// What is read and dropped of a body refused midway before its answer is sent
/// ([`payload::Source::drain`]).
const DRAIN_BYTES_MAX: u64 = 8 << 20;
/// Tags per object and per bucket, and their sizes (S3's).
const TAGS_MAX: usize = 10;
const BUCKET_TAGS_MAX: usize = 50;
const TAG_KEY_MAX: usize = 128;
const TAG_VALUE_MAX: usize = 256;
/// Metadata name prefix of an object's tags.
pub(crate) const TAG: &str = stratos_common::lifecycle::TAG_PREFIX;
/// The stored headers of an object: kept as given at PUT, answered at GET and HEAD.
const STORED_HEADERS: [&str; 6] = ["content-type", "content-encoding", "content-disposition", "content-language", "cache-control", "expires"];
/// Principals kept with a client of their own per executor.
const USERS_MAX: usize = 4096;

/// One executor's gateway state.
pub struct Gateway {
    om: String,
    runtime: Rc<dyn Runtime>,
    base: RefCell<Option<Rc<Client>>>,
    users: RefCell<HashMap<String, Rc<Client>>>,
    secrets: RefCell<HashMap<String, (String, Instant)>>,
    /// One connection per datanode, shared by every request on this executor.
    datanodes: Datanodes,
    /// Of the buckets S3 clients create.
    replication: stratos_client::schema::om_capnp::Replication,
    /// The master keys of SSE-S3 and SSE-KMS (None: those are refused).
    keyring: Option<Keyring>,
    /// Whether clients reach this gateway over HTTPS (SSE-C needs it).
    https: bool,
    /// Buckets' settings as last read, when, and at which [`Gateway::settings_changed`] count.
    settings: RefCell<HashMap<String, CachedSettings>>,
    /// Shared by the executors: the changes of buckets' settings through any of them.
    settings_changed: Arc<SettingsChanged>,
    /// The domains under which a request's host names its bucket (`BUCKET.DOMAIN`, lower case).
    domains: Vec<String>,
    /// A day of lifecycle rules, in ms (`--lifecycle-day-secs`).
    lifecycle_day_ms: u64,
    /// GETs' and HEADs' lookups waiting to share a call (see [`crate::lookups`]).
    lookups: Rc<Lookups>,
    /// Uploads' MD5s hashed two at a time (see [`crate::md5pairs`]).
    pub(crate) md5_pairs: Md5Pairs,
    /// This executor's counters (the status port's `/prom`).
    metrics: Arc<CoreMetrics>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("om", &self.om).finish_non_exhaustive()
    }
}

/// A request as the handlers see it.
struct Req {
    method: hyper::Method,
    bucket: String,
    key: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    /// Whom the OM is told makes the request: the caller, or the bucket's owner where the
    /// bucket's policy allows the caller what it asks (`authorize`).
    user: String,
    /// Who signed the request (empty: anonymous), whatever `user` becomes: the writer of an
    /// object ([`object_owner`]).
    caller: String,
    signer: Option<ChunkSigner>,
    body: Option<Incoming>,
    /// The client's address (a bucket policy's `aws:SourceIp`).
    peer: Option<std::net::IpAddr>,
    /// Who reads a copy's source, where the bucket policies made it another than the request's
    /// client: the source bucket's owner where its policy allows the caller the read, the
    /// caller where the destination's policy made the write its owner's.
    source_as: Option<Rc<Client>>,
}

/// The changes of buckets' settings made through a gateway's executors: an entry of an
/// executor's settings cache read before the last change is read again, from the OM's meta
/// state at that change's index or later (each executor has its own OM connection, which may
/// reach another OM core; only changes made elsewhere wait for [`BUCKET_SETTINGS_TTL`]).
#[derive(Debug, Default)]
pub struct SettingsChanged {
    count: AtomicU64,
    meta_index: AtomicU64,
}

impl SettingsChanged {
    /// A change of buckets' settings made (or tried) with `c`: every executor reads them again,
    /// from the OM's state at what `c` has seen, or later. The index goes first, so that an
    /// executor that sees the new count also sees it.
    fn made_by(&self, c: &Client) {
        self.meta_index.fetch_max(c.meta_index(), Ordering::AcqRel);
        self.count.fetch_add(1, Ordering::AcqRel);
    }
}

/// The address a connection came from, put in each of its requests' extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::IpAddr);

impl Req {
    fn q(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    fn has(&self, name: &str) -> bool {
        self.q(name).is_some()
    }
    fn header(&self, name: &str) -> Option<String> {
        header_of(&self.headers, name)
    }
    fn payload(&mut self) -> Result<Payload, S3Error> {
        let headers = self.headers.clone();
        let mode = payload::mode_of(&|n| header_of(&headers, n), self.signer.take())?;
        self.payload_of(mode)
    }
    /// The payload of a request whose `x-amz-checksum-*` headers are not its body's
    /// (CompleteMultipartUpload's are the object's checksum).
    fn payload_not_checksummed(&mut self) -> Result<Payload, S3Error> {
        let headers: Vec<(String, String)> = self.headers.iter().filter(|(n, _)| !n.to_ascii_lowercase().starts_with("x-amz-checksum-")).cloned().collect();
        let mode = payload::mode_of(&|n| header_of(&headers, n), self.signer.take())?;
        self.payload_of(mode)
    }
    fn payload_of(&mut self, mode: payload::PayloadMode) -> Result<Payload, S3Error> {
        let source = match self.body.take() {
            Some(b) => Source::Http(b),
            None => Source::Memory(Default::default()),
        };
        Ok(Payload::new(source, mode))
    }
}

fn header_of(headers: &[(String, String)], name: &str) -> Option<String> {
    let vals: Vec<&str> = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
    (!vals.is_empty()).then(|| vals.join(","))
}

/// A response being built.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

impl Reply {
    fn ok() -> Reply {
        Reply { status: 200, headers: Vec::new(), body: Body::empty() }
    }
    fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: Body::empty() }
    }
    fn xml(doc: String) -> Reply {
        Reply { status: 200, headers: vec![("content-type".into(), "application/xml".into())], body: Body::full(doc) }
    }
    fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    /// With the headers that say how an object (or upload) with `metadata` is encrypted.
    fn sse(mut self, metadata: &[(String, String)]) -> Reply {
        self.headers.extend(sse::headers(metadata));
        self
    }
    /// With the request's additional checksum, as S3 echoes it for a write.
    fn checksum(mut self, written: &object::Written) -> Reply {
        if let Some((a, v)) = &written.checksum {
            self.headers.push((a.header().into(), checksum::encode(v)));
        }
        self
    }
}

type R = Result<Reply, S3Error>;

/// The gateway's datanode connections serve object reads ([`stratos_client::data::read_any`]).
impl stratos_client::data::DatanodeSource for &Gateway {
    async fn datanode(&mut self, address: &str) -> Result<Datanode, String> {
        Gateway::datanode(self, address).await
    }

    fn forget_datanode(&mut self, address: &str) {
        Gateway::forget_datanode(self, address);
    }
}

impl Gateway {
    pub fn new(om: &str, runtime: Rc<dyn Runtime>, replication: stratos_client::schema::om_capnp::Replication, keyring: Option<Keyring>, https: bool) -> Gateway {
        Gateway {
            om: om.to_string(),
            datanodes: Datanodes::new(runtime.clone()),
            runtime,
            base: RefCell::new(None),
            users: RefCell::default(),
            secrets: RefCell::default(),
            replication,
            keyring,
            https,
            settings: RefCell::default(),
            settings_changed: Arc::default(),
            domains: Vec::new(),
            lifecycle_day_ms: stratos_common::lifecycle::DAY_MS,
            lookups: Rc::default(),
            md5_pairs: Md5Pairs::default(),
            metrics: Arc::default(),
        }
    }

    /// Counts this executor's requests, OM lookups and MD5 pairing into `metrics` (see [`crate::metrics`]).
    pub fn with_metrics(mut self, metrics: Arc<CoreMetrics>) -> Gateway {
        self.lookups = Rc::new(Lookups::new(metrics.clone()));
        self.md5_pairs = Md5Pairs::new(metrics.clone());
        self.metrics = metrics;
        self
    }

    /// Shares with the other executors of the process the changes of buckets' settings (each
    /// executor then reads a setting afresh, and new enough, after any of them changed one).
    pub fn with_settings_changed(mut self, changed: Arc<SettingsChanged>) -> Gateway {
        self.settings_changed = changed;
        self
    }

    /// The length of a day in buckets' lifecycle rules (shorter only in tests; the OM's must
    /// be the same).
    pub fn with_lifecycle_day_ms(mut self, ms: u64) -> Gateway {
        self.lifecycle_day_ms = ms.max(1);
        self
    }

    /// Serves virtual-hosted-style requests too: a request to `BUCKET.DOMAIN` for one of
    /// `domains` addresses that bucket, its path the key (`--domain`).
    pub fn with_domains(mut self, domains: &[String]) -> Gateway {
        self.domains = domains.iter().map(|d| d.trim_matches('.').to_ascii_lowercase()).filter(|d| !d.is_empty()).collect();
        // The longest first: of `s3.test` and `x.s3.test`, `a.x.s3.test` is bucket `a`.
        self.domains.sort_by_key(|d| std::cmp::Reverse(d.len()));
        self
    }

    /// The bucket a virtual-hosted-style request's `Host` names, if it is `BUCKET.DOMAIN` for
    /// one of the gateway's domains (a port, and any case, aside).
    fn bucket_of_host(&self, host: &str) -> Option<String> {
        if self.domains.is_empty() || host.starts_with('[') {
            return None;
        }
        let name = host.rsplit_once(':').map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host });
        // A fully qualified name's final dot names the same host.
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        self.domains.iter().find_map(|d| name.strip_suffix(d.as_str())?.strip_suffix('.').filter(|b| !b.is_empty()).map(str::to_string))
    }

    /// The bucket and key a request names: virtual-hosted style (`BUCKET.DOMAIN/KEY`) where
    /// its host says so, else path style (`/BUCKET/KEY`); `path` percent-decoded, without its
    /// first `/`.
    fn resource<'p>(&self, host: Option<&str>, path: &'p str) -> (std::borrow::Cow<'p, str>, &'p str) {
        match host.and_then(|h| self.bucket_of_host(h)) {
            Some(b) => (b.into(), path),
            None => {
                let (b, k) = path.split_once('/').unwrap_or((path, ""));
                (b.into(), k)
            }
        }
    }

    /// The gateway's own connection to the OM (made on first use, and again after it failed).
    async fn base(&self) -> Result<Rc<Client>, S3Error> {
        if let Some(c) = self.base.borrow().as_ref() {
            return Ok(c.clone());
        }
        let c = Client::connect_on(self.runtime.clone(), &self.om, "s3g").await.map_err(|e| S3Error::unavailable(format!("connecting to the OM at {}: {e}", self.om)))?;
        let c = Rc::new(c);
        *self.base.borrow_mut() = Some(c.clone());
        Ok(c)
    }

    /// The client that acts for `user` (on the gateway's connections).
    async fn client_for(&self, user: &str) -> Result<Rc<Client>, S3Error> {
        if let Some(c) = self.users.borrow().get(user) {
            return Ok(c.clone());
        }
        let c = Rc::new(self.base().await?.as_user(user));
        let mut users = self.users.borrow_mut();
        if users.len() >= USERS_MAX {
            users.clear();
        }
        users.insert(user.to_string(), c.clone());
        Ok(c)
    }

    /// The secret of `access_key` (None: it has none), from the cache unless `fresh`.
    async fn secret(&self, access_key: &str, fresh: bool) -> Result<Option<String>, S3Error> {
        if !fresh && let Some((s, at)) = self.secrets.borrow().get(access_key) && at.elapsed() < SECRET_CACHE_TTL {
            return Ok(Some(s.clone()));
        }
        let r = self.base().await?.s3_secret(access_key).await;
        match r {
            Ok(s) => {
                let mut secrets = self.secrets.borrow_mut();
                if secrets.len() >= USERS_MAX {
                    secrets.clear();
                }
                secrets.insert(access_key.to_string(), (s.clone(), Instant::now()));
                Ok(Some(s))
            }
            Err(e) if e.status() == Some(stratos_client::Status::S3SecretNotFound) => {
                self.secrets.borrow_mut().remove(access_key);
                Ok(None)
            }
            Err(e) if e.status() == Some(stratos_client::Status::PermissionDenied) => {
                Err(S3Error::internal(format!("the OM does not let this gateway read S3 secrets (it needs a certificate of role s3g): {e}")))
            }
            Err(e) => Err(S3Error::unavailable(format!("reading the S3 secret of {access_key}: {e}"))),
        }
    }

    /// A connection to the datanode at `addr` (made on first use).
    pub async fn datanode(&self, addr: &str) -> Result<Datanode, String> {
        self.datanodes.get(addr).await
    }

    pub fn forget_datanode(&self, addr: &str) {
        self.datanodes.forget(addr);
    }

    /// Who signed the request (empty: nobody, an anonymous request, which the OM lets do
    /// only what the AllUsers grants of buckets and objects allow), and the chunk signer of a
    /// streaming payload.
    async fn authenticate(&self, sreq: &sigv4::Request<'_>, query: &[(String, String)]) -> Result<(String, Option<ChunkSigner>), S3Error> {
        let presigned = query.iter().any(|(n, _)| n == "X-Amz-Signature");
        if query.iter().any(|(n, _)| n == "AWSAccessKeyId") {
            return Err(S3Error::new("InvalidRequest", 400, "Signature Version 2 presigned URLs are not supported: presign with Signature Version 4 (boto3: Config(signature_version='s3v4'))"));
        }
        let access = if presigned {
            let cred = query.iter().find(|(n, _)| n == "X-Amz-Credential").map(|(_, v)| v.as_str()).ok_or_else(|| S3Error::from(sigv4::SigError::Malformed("a presigned URL needs X-Amz-Credential".into())))?;
            sigv4::Credential::parse(cred)?.access_key
        } else {
            match sreq.header("authorization") {
                None => return Ok((String::new(), None)),
                Some(a) if a.starts_with("AWS ") => {
                    return Err(S3Error::new("InvalidRequest", 400, "Signature Version 2 is not supported: sign with AWS4-HMAC-SHA256 (Signature Version 4)"));
                }
                Some(a) => sigv4::Authorization::parse(&a)?.credential.access_key,
            }
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let v = self
            .with_secret(&access, |secret| {
                let verified = if presigned { sigv4::verify_presigned(sreq, now, |_| Some(secret)) } else { sigv4::verify_header(sreq, now, |_| Some(secret)) };
                match verified {
                    Ok(v) => v.map_err(S3Error::from),
                    Err(key) => Err(S3Error::new("InvalidAccessKeyId", 403, format!("the access key {key} does not exist"))),
                }
            })
            .await?;
        Ok((v.access_key, v.chunks))
    }

    /// `check` with `access`'s secret (an unknown key is `InvalidAccessKeyId`). A signature
    /// that does not match is checked once more against the secret read afresh, before it is
    /// refused: a secret made again since it was cached.
    async fn with_secret<T>(&self, access: &str, mut check: impl FnMut(String) -> Result<T, S3Error>) -> Result<T, S3Error> {
        let mut fresh = false;
        loop {
            let Some(secret) = self.secret(access, fresh).await? else {
                return Err(S3Error::new("InvalidAccessKeyId", 403, format!("the access key {access} does not exist (see `stratos s3 getsecret`)")));
            };
            match check(secret) {
                Err(e) if e.code == "SignatureDoesNotMatch" && !fresh => fresh = true,
                other => return other,
            }
        }
    }
}

/// Serves one request (every failure is an S3 error document, never a dropped connection).
pub async fn handle(gw: Rc<Gateway>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let request_id = format!("{:016X}", rand::random::<u64>());
    let method = req.method().clone();
    let raw_path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let resource = percent_decode(&raw_path).unwrap_or_else(|| raw_path.clone());
    let is_head = method == hyper::Method::HEAD;
    // A browser's cross-origin request (not its preflight): its answer, whatever it is, carries
    // what the bucket's CORS rules allow the origin. The method matched is the one an
    // `Access-Control-Request-Method` names, where one is sent (as Ceph's gateway reads it).
    let text = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let operation = operation_of(&gw, &req, &resource, &raw_query);
    let cross_origin = match text("origin") {
        Some(origin) if method != hyper::Method::OPTIONS => {
            let (bucket, _) = gw.resource(text("host").as_deref(), resource.strip_prefix('/').unwrap_or(&resource));
            (!bucket.is_empty()).then(|| (bucket.into_owned(), origin, text("access-control-request-method").unwrap_or_else(|| method.to_string())))
        }
        _ => None,
    };
    let reply = serve(&gw, req, &raw_path, &raw_query).await;
    let mut reply = match reply {
        Ok(r) => r,
        Err(e) => {
            // Faults are logged; a feature not built (501) is the client's news, not the log's.
            if e.status >= 500 && e.status != 501 {
                eprintln!("s3g: {method} {resource}: {} {}: {}", e.status, e.code, e.message);
            }
            let mut r = Reply { status: e.status, headers: vec![("content-type".into(), "application/xml".into())], body: Body::full(e.document(&resource, &request_id)) };
            if e.status == 503 {
                r.headers.push(("retry-after".into(), "1".into()));
            }
            if e.code == "NoSuchKey" && (is_head || method == hyper::Method::GET) {
                // Keys have one version and no delete markers: a missing key is not one (SDKs
                // and ceph's s3-tests read this header of a 404).
                r.headers.push(("x-amz-delete-marker".into(), "false".into()));
            }
            if is_head {
                // HEAD answers carry no body; the status (and this header) say what happened.
                r.body = Body::empty();
                r.headers.retain(|(n, _)| n != "content-type");
                r.headers.push(("x-amz-error-code".into(), e.code.into()));
            }
            r
        }
    };
    if let Some((bucket, origin, method)) = cross_origin {
        reply.headers.extend(cors_headers(&gw, &bucket, &origin, &method).await);
    }
    gw.metrics.request(method.as_str(), operation, reply.status, started.elapsed());
    let mut b = Response::builder().status(reply.status).header("x-amz-request-id", &request_id).header("server", "Stratos");
    for (n, v) in &reply.headers {
        // Bytes, not only visible ASCII: user metadata may be UTF-8.
        match hyper::header::HeaderValue::from_bytes(v.as_bytes()) {
            Ok(v) => b = b.header(n.as_str(), v),
            Err(_) => eprintln!("s3g: a response header {n} could not be encoded; left out"),
        }
    }
    Ok(b.body(reply.body).unwrap_or_else(|e| {
        eprintln!("s3g: building a response: {e}");
        let mut r = Response::new(Body::full(S3Error::internal("a response header could not be encoded").document(&resource, &request_id)));
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    }))
}

/// The S3 operation a request is ([`crate::metrics::operation`]), counted by its shape so that
/// one refused before it is routed counts as what it asked for. Only what can tell operations
/// apart is read: the Host only where buckets may be named by it (`--domain`), the copy source
/// of a PUT, the content type of a POST.
fn operation_of(gw: &Gateway, req: &Request<Incoming>, resource: &str, raw_query: &str) -> usize {
    let method = req.method();
    let host = if gw.domains.is_empty() { None } else { req.headers().get(hyper::header::HOST).and_then(|v| v.to_str().ok()) };
    let (bucket, key) = gw.resource(host, resource.strip_prefix('/').unwrap_or(resource));
    let copy = method == hyper::Method::PUT && req.headers().contains_key("x-amz-copy-source");
    let form = method == hyper::Method::POST && req.headers().get(hyper::header::CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"multipart/form-data"));
    crate::metrics::operation(method.as_str(), !bucket.is_empty(), !key.is_empty(), raw_query, copy, form)
}

async fn serve(gw: &Rc<Gateway>, req: Request<Incoming>, raw_path: &str, raw_query: &str) -> R {
    let (parts, body) = req.into_parts();
    // A client that waits for `100 Continue` sends no body unless it is read: it is never invited.
    let waits = parts.headers.get(hyper::header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut body = Some(body);
    let out = serve_parts(gw, parts, &mut body, raw_path, raw_query).await;
    // A request refused before its body was read (a bad signature, a refused ACL, a missing
    // bucket) from a client that sends its body without waiting: what is left of the body is
    // read and dropped, within the bound a write refused midway has
    // ([`payload::Source::drain`]), so that the client reads the answer instead of a reset.
    if out.is_err()
        && !waits
        && let Some(b) = body.take()
    {
        Source::Http(b).drain(DRAIN_BYTES_MAX).await;
    }
    out
}

/// [`serve`]'s request: its body is left in `body` where the request did not take it.
async fn serve_parts(gw: &Rc<Gateway>, parts: hyper::http::request::Parts, body: &mut Option<Incoming>, raw_path: &str, raw_query: &str) -> R {
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (n, v) in &parts.headers {
        // Values are ASCII by HTTP's rules; clients send user metadata in UTF-8 too (botocore
        // does), which is taken as such.
        let v = std::str::from_utf8(v.as_bytes()).map_err(|_| S3Error::invalid_argument(format!("the header {n} is not UTF-8 text")))?;
        headers.push((n.as_str().to_string(), v.to_string()));
    }
    let query = parse_query(raw_query)?;
    let path = percent_decode(raw_path).ok_or_else(|| S3Error::invalid_argument("the path is not percent-encoded UTF-8"))?;
    let path = path.strip_prefix('/').unwrap_or(&path);
    // Virtual-hosted style (`BUCKET.DOMAIN/KEY`) where the host says so, else path style. One
    // Host only: the signature covers them joined, the bucket would be the first's.
    let mut hosts = headers.iter().filter(|(n, _)| n == "host");
    let host = hosts.next().map(|(_, h)| h.as_str());
    if hosts.next().is_some() {
        return Err(S3Error::invalid_argument("more than one Host header"));
    }
    let (bucket, key) = gw.resource(host, path);
    // A browser's form upload to the bucket: authorised by the policy the form carries, signed
    // with the uploader's secret, not by a signed request.
    if parts.method == hyper::Method::POST && !bucket.is_empty() && key.is_empty() && query.is_empty()
        && let Some(boundary) = header_of(&headers, "content-type").as_deref().and_then(form::boundary)
    {
        let peer = parts.extensions.get::<Peer>().map(|p| p.0);
        let Some(body) = body.take() else { return Err(S3Error::internal("a form's body was taken before it was read")) };
        return Box::pin(post_object(gw, &headers, body, &bucket, &boundary, peer)).await;
    }
    if parts.method == hyper::Method::OPTIONS {
        return preflight(gw, &headers, &bucket).await;
    }
    let sreq = sigv4::Request { method: parts.method.as_str(), raw_path, raw_query, headers: &headers };
    let (user, signer) = gw.authenticate(&sreq, &query).await?;
    let peer = parts.extensions.get::<Peer>().map(|p| p.0);
    let mut r = Req { method: parts.method, bucket: bucket.to_string(), key: key.to_string(), query, headers, caller: user.clone(), user, signer, body: body.take(), peer, source_as: None };
    let out = route(gw, &mut r).await;
    *body = r.body.take();
    out
}

async fn route(gw: &Rc<Gateway>, r: &mut Req) -> R {
    use hyper::Method as M;
    let c = gw.client_for(&r.user).await?;
    // The bucket's policy, where it has one (CreateBucket names a bucket that has none yet).
    let creating = r.key.is_empty() && r.method == M::PUT && r.query.is_empty();
    let c = if r.bucket.is_empty() || creating { c } else { authorize(gw, r, c).await? };
    if r.bucket.is_empty() {
        return match r.method {
            M::GET => list_buckets(&c, r).await,
            _ => Err(S3Error::new("MethodNotAllowed", 405, "only GET is allowed on the service")),
        };
    }
    if r.key.is_empty() {
        return match r.method {
            M::PUT if r.query.is_empty() => {
                // A bucket of that name deleted and made again: no settings of the old one stay.
                let done = create_bucket(gw, &c, r).await;
                gw.settings_changed.made_by(&c);
                done
            }
            M::PUT if r.has("acl") => put_acl(gw, &c, r).await,
            M::PUT if r.has("versioning") => Err(S3Error::not_implemented("bucket versioning")),
            M::HEAD => head_bucket(&c, r).await,
            M::DELETE if r.query.is_empty() => {
                let done = delete_bucket(&c, r).await;
                gw.settings_changed.made_by(&c);
                done
            }
            M::GET if r.has("location") => {
                bucket_info(&c, &r.bucket).await?;
                Ok(Reply::xml(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"{}\"></LocationConstraint>", xml::NS)))
            }
            M::GET if r.has("versioning") => {
                bucket_info(&c, &r.bucket).await?;
                Ok(Reply::xml(Writer::new("VersioningConfiguration").finish("VersioningConfiguration")))
            }
            M::GET if r.has("uploads") => list_uploads(&c, r).await,
            M::GET if r.has("acl") => acl(gw, &c, r).await,
            M::GET if r.has("versions") => list_objects(&c, r, Listing::Versions).await,
            M::GET if r.q("list-type") == Some("2") => list_objects(&c, r, Listing::V2).await,
            M::GET if r.query.iter().all(|(n, _)| LIST_PARAMS.contains(&n.as_str()) || !is_bucket_subresource(n)) => list_objects(&c, r, Listing::V1).await,
            M::POST if r.has("delete") => delete_objects(gw, &c, r).await,
            M::PUT if r.has("encryption") => put_bucket_encryption(gw, &c, r).await,
            M::GET if r.has("encryption") => get_bucket_encryption(&c, r).await,
            M::PUT if r.has("tagging") => put_bucket_tagging(gw, &c, r).await,
            M::GET if r.has("tagging") => get_bucket_tagging(&c, r).await,
            M::DELETE if r.has("tagging") => {
                set_bucket_settings(gw, &c, &r.bucket, BUCKET_TAGGING, &[]).await?;
                Ok(Reply::status(204))
            }
            M::PUT if r.has("policy") => put_bucket_policy(gw, &c, r).await,
            M::GET if r.has("policy") => get_bucket_policy(&c, r).await,
            M::DELETE if r.has("policy") => {
                set_bucket_settings(gw, &c, &r.bucket, BUCKET_POLICY, &[]).await?;
                Ok(Reply::status(204))
            }
            M::GET if r.has("policyStatus") => get_bucket_policy_status(&c, r).await,
            M::PUT if r.has("ownershipControls") => put_ownership(gw, &c, r).await,
            M::GET if r.has("ownershipControls") => get_ownership(&c, r).await,
            M::DELETE if r.has("ownershipControls") => {
                set_bucket_settings(gw, &c, &r.bucket, BUCKET_OWNERSHIP, &[]).await?;
                Ok(Reply::status(204))
            }
            M::PUT if r.has("publicAccessBlock") => put_public_block(gw, &c, r).await,
            M::GET if r.has("publicAccessBlock") => get_public_block(&c, r).await,
            M::DELETE if r.has("publicAccessBlock") => {
                set_bucket_settings(gw, &c, &r.bucket, BUCKET_PUBLIC_BLOCK, &[]).await?;
                Ok(Reply::status(204))
            }
            M::PUT if r.has("lifecycle") => {
                let body = r.payload()?.read_all(DOCUMENT_BYTES_MAX).await?;
                let rules = lifecycle::parse(&body)?;
                let set = settings_pieces(BUCKET_LIFECYCLE, &stratos_common::lifecycle::encode(&rules), LIFECYCLE_PIECES_MAX, "the lifecycle configuration")?;
                set_bucket_settings(gw, &c, &r.bucket, BUCKET_LIFECYCLE, &set).await?;
                Ok(Reply::ok())
            }
            M::GET if r.has("lifecycle") => {
                let info = own_bucket_settings(&c, r, "lifecycle configuration").await?;
                match Settings::of(&r.bucket, &info.metadata).lifecycle {
                    rules if !rules.is_empty() => Ok(Reply::xml(lifecycle::render(&rules))),
                    _ => Err(S3Error::new("NoSuchLifecycleConfiguration", 404, "The lifecycle configuration does not exist")),
                }
            }
            M::DELETE if r.has("lifecycle") => {
                set_bucket_settings(gw, &c, &r.bucket, BUCKET_LIFECYCLE, &[]).await?;
                Ok(Reply::status(204))
            }
            M::PUT if r.has("cors") => put_bucket_cors(gw, &c, r).await,
            M::GET if r.has("cors") => get_bucket_cors(&c, r).await,
            M::DELETE if r.has("cors") => {
                set_bucket_settings(gw, &c, &r.bucket, BUCKET_CORS, &[]).await?;
                Ok(Reply::status(204))
            }
            M::DELETE if r.has("encryption") => {
                owned_bucket(&c, r).await?;
                set_bucket_sse(gw, &c, &r.bucket, None).await?;
                Ok(Reply::status(204))
            }
            _ => unsupported_bucket_resource(&c, r).await,
        };
    }
    // Object lock is not supported, so no bucket has it: what S3 answers for such a bucket.
    if r.has("retention") || r.has("legal-hold") {
        owned_bucket(&c, r).await?;
        return Err(S3Error::invalid_request("the bucket has no object lock configuration (object lock is not supported by this gateway)"));
    }
    if let Some((n, _)) = r.query.iter().find(|(n, _)| !OBJECT_PARAMS.contains(&n.as_str()) && !n.starts_with("response-") && !n.starts_with("X-Amz-")) {
        // A sub-resource this gateway does not serve is refused, never taken for the object.
        return Err(S3Error::not_implemented(&format!("{} on an object with ?{n}", r.method)));
    }
    match r.method {
        M::PUT if r.has("tagging") => put_tagging(&c, r).await,
        M::PUT if r.has("uploadId") && r.has("partNumber") => Box::pin(upload_part(gw, &c, r)).await,
        M::PUT if r.has("acl") => put_acl(gw, &c, r).await,
        M::PUT if r.header("x-amz-copy-source").is_some() => Box::pin(copy_object(gw, &c, r)).await,
        M::PUT => Box::pin(put_object(gw, &c, r)).await,
        M::GET if r.has("tagging") => get_tagging(&c, r).await,
        M::GET if r.has("attributes") => get_object_attributes(gw, &c, r).await,
        M::GET if r.has("uploadId") => list_parts(&c, r).await,
        M::GET if r.has("acl") => acl(gw, &c, r).await,
        M::GET => get_object(gw, &c, r, false).await,
        M::HEAD => get_object(gw, &c, r, true).await,
        M::DELETE if r.has("tagging") => delete_tagging(&c, r).await,
        M::DELETE if r.has("uploadId") => abort_upload(&c, r).await,
        M::DELETE => delete_object(&c, r).await,
        M::POST if r.has("uploads") => initiate_upload(gw, &c, r).await,
        M::POST if r.has("uploadId") => Box::pin(complete_upload(gw, &c, r)).await,
        _ => Err(S3Error::new("MethodNotAllowed", 405, format!("{} is not allowed on an object", r.method))),
    }
}

/// The query parameters an object request may carry (bar `response-*` and a presigned URL's
/// `X-Amz-*`); any other names a sub-resource.
const OBJECT_PARAMS: [&str; 8] = ["tagging", "uploadId", "partNumber", "acl", "uploads", "versionId", "x-id", "attributes"];

/// The metadata pair in which the shard keeps a completed multipart object's parts, numbers
/// and sizes, as runs `FIRST:COUNT:SIZE` joined by commas (the shard's `PART_SIZES`).
const PARTS: &str = "parts";

/// A multipart object's part count, from its ETag (`MD5-N`); None for a single-part object.
fn multipart_count(etag: &str) -> Option<u32> {
    etag.rsplit_once('-').and_then(|(_, n)| n.parse::<u32>().ok())
}

/// A multipart object's parts as (number, offset, size), ascending, from its metadata: None
/// where they were not kept (completed before they were, or too varied to keep) or do not add
/// up to the object (`count` parts of `size` bytes in all), so that nothing else is served as
/// a part.
fn parts_of(metadata: &[(String, String)], count: u32, size: u64) -> Option<Vec<(u32, u64, u64)>> {
    let mut parts = Vec::with_capacity(count.min(10_000) as usize);
    let mut offset = 0u64;
    for run in meta(metadata, PARTS)?.split(',') {
        let mut f = run.split(':').map(|v| v.parse::<u64>().ok());
        let (Some(Some(first)), Some(Some(n)), Some(Some(part_size)), None) = (f.next(), f.next(), f.next(), f.next()) else { return None };
        if n == 0 || first == 0 || n > 10_000 || first > 10_001 - n || parts.len() as u64 + n > u64::from(count) {
            return None;
        }
        for number in first..first + n {
            if parts.last().is_some_and(|&(last, _, _)| u64::from(last) >= number) {
                return None;
            }
            parts.push((number as u32, offset, part_size));
            offset = offset.checked_add(part_size)?;
        }
    }
    (parts.len() as u64 == u64::from(count) && offset == size).then_some(parts)
}

/// What GetObjectAttributes may be asked for (`x-amz-object-attributes`).
const OBJECT_ATTRIBUTES: [&str; 5] = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"];

/// A bucket sub-resource this gateway does not serve: the owner is told what S3 tells of a
/// bucket without that configuration where that is the truth (nothing to get or delete), and
/// a setting is refused (never dropped), a malformed one as S3 would.
async fn unsupported_bucket_resource(c: &Client, r: &mut Req) -> R {
    use hyper::Method as M;
    owned_bucket(c, r).await?;
    let none = |code: &'static str, what: &str| Err(S3Error::new(code, 404, format!("the bucket has no {what}")));
    match r.method {
        M::GET if r.has("object-lock") => none("ObjectLockConfigurationNotFoundError", "object lock configuration"),
        M::GET if r.has("website") => none("NoSuchWebsiteConfiguration", "website configuration"),
        M::DELETE if r.has("website") => Ok(Reply::status(204)),
        M::PUT if r.has("object-lock") => {
            Err(S3Error::new("InvalidBucketState", 409, "object lock can be configured only on a bucket created with it (object lock is not supported by this gateway)"))
        }
        _ => Err(S3Error::not_implemented(&format!("{} on a bucket with ?{}", r.method, r.query.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join("&")))),
    }
}

/// Query parameters of a listing.
const LIST_PARAMS: [&str; 9] = ["prefix", "delimiter", "marker", "max-keys", "encoding-type", "list-type", "continuation-token", "start-after", "fetch-owner"];

/// S3's bucket sub-resources besides those of [`BUCKET_SUBRESOURCE_ACTIONS`] (this gateway
/// refuses them). A bucket GET with any other parameter is a listing that ignores it, as S3
/// ignores parameters it does not know: a POST form's `success_action_redirect` to the
/// bucket's URL comes back with `?bucket=…&key=…&etag=…`.
const OTHER_BUCKET_SUBRESOURCES: [&str; 14] =
    ["accelerate", "analytics", "delete", "intelligent-tiering", "inventory", "metadataConfiguration", "metadataTable", "metrics", "notification", "replication", "requestPayment", "session", "torrent", "restore"];

fn is_bucket_subresource(name: &str) -> bool {
    BUCKET_SUBRESOURCE_ACTIONS.iter().any(|a| a.0 == name) || OTHER_BUCKET_SUBRESOURCES.contains(&name)
}

// ---------------------------------------------------------------------------------------------
// Buckets

async fn bucket_info(c: &Client, bucket: &str) -> Result<stratos_client::BucketInfo, S3Error> {
    c.bucket_info(S3_VOLUME, bucket).await.map_err(|e| from_om(&e, bucket, None))
}

/// The request's bucket (its rights are the OM's to check, on each operation).
async fn owned_bucket(c: &Client, r: &Req) -> Result<stratos_client::BucketInfo, S3Error> {
    bucket_info(c, &r.bucket).await
}

async fn list_buckets(c: &Client, r: &Req) -> R {
    if r.user.is_empty() {
        return Err(S3Error::access_denied("listing buckets needs a signed request (an anonymous caller owns no bucket)"));
    }
    // `max-buckets` and `continuation-token` (the last name of the page before), as S3's
    // paginated ListBuckets; without them, every bucket of the caller.
    let max: usize = match r.q("max-buckets") {
        None => usize::MAX,
        Some(v) => v.parse::<usize>().ok().filter(|m| (1..=10_000).contains(m)).ok_or_else(|| S3Error::invalid_argument("max-buckets must be 1 to 10000"))?,
    };
    let mut start = r.q("continuation-token").unwrap_or("").to_string();
    let prefix = r.q("prefix").unwrap_or("").to_string();
    let mut mine: Vec<stratos_client::BucketInfo> = Vec::new();
    let mut more = false;
    'pages: loop {
        let page = c.list_buckets(S3_VOLUME, &prefix, &start, 1000).await.map_err(|e| match e.status() {
            Some(stratos_client::Status::VolumeNotFound) => S3Error::unavailable("the OM has not created the S3 volume yet; retry in a moment"),
            _ => from_om(&e, "", None),
        })?;
        for b in page.items.iter().filter(|b| b.owner == r.user) {
            if mine.len() == max {
                more = true;
                break 'pages;
            }
            mine.push(b.clone());
        }
        match page.items.last() {
            Some(last) if page.truncated => start = last.name.clone(),
            _ => break,
        }
    }
    let mut w = Writer::new("ListAllMyBucketsResult");
    w.user("Owner", &r.user).open("Buckets");
    for b in &mine {
        w.open("Bucket").elem("Name", &b.name).elem("CreationDate", iso8601(b.created_ms)).close("Bucket");
    }
    w.close("Buckets");
    if more && let Some(last) = mine.last() {
        w.elem("ContinuationToken", &last.name);
    }
    if !prefix.is_empty() {
        w.elem("Prefix", &prefix);
    }
    Ok(Reply::xml(w.finish("ListAllMyBucketsResult")))
}

async fn create_bucket(gw: &Gateway, c: &Client, r: &mut Req) -> R {
    if r.user.is_empty() {
        return Err(S3Error::access_denied("creating a bucket needs a signed request (a bucket needs an owner)"));
    }
    // Its ACL, made with it (the body, CreateBucketConfiguration, is no ACL document).
    let acls = match acl::requested(&|n| r.header(n), None, &r.user, &r.user)? {
        Some(g) => {
            let e = acl::entries(&g, &r.user, On::Bucket)?;
            check_grantees(gw, &e, &r.user, &r.user).await?;
            e
        }
        None => Vec::new(),
    };
    if r.header("x-amz-bucket-object-lock-enabled").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Err(S3Error::not_implemented("object lock (x-amz-bucket-object-lock-enabled)"));
    }
    let ownership = r.header("x-amz-object-ownership").map(|v| object_ownership(v.trim())).transpose()?;
    if ownership == Some(Ownership::Enforced) && !acls.is_empty() {
        return Err(acls_disabled(&r.bucket));
    }
    // The body (CreateBucketConfiguration) names a region: there is one.
    r.payload()?.read_all(DOCUMENT_BYTES_MAX).await?;
    let bucket = r.bucket.clone();
    let created = c
        .submit(|op| {
            let mut b = op.init_create_bucket();
            b.set_volume(S3_VOLUME);
            b.set_bucket(&bucket);
            b.set_replication(gw.replication);
            if !acls.is_empty() {
                AclEntry::write_all(b.reborrow().init_acls(acls.len() as u32), &acls);
            }
            if let Some(o) = ownership {
                let mut m = b.init_metadata(1);
                m.reborrow().get(0).set_key(BUCKET_OWNERSHIP);
                m.reborrow().get(0).set_value(o.name());
            }
        })
        .await;
    match created {
        Ok(_) => Ok(Reply::ok().header("location", format!("/{bucket}"))),
        Err(e) if e.status() == Some(stratos_client::Status::BucketExists) => {
            // Your own bucket again: us-east-1's answer (S3's default region) is success,
            // unless the request would change it (its ACL, `private` when it names none),
            // which S3 refuses.
            let private = acl::private(&r.user, On::Bucket);
            let asked = if acls.is_empty() { &private } else { &acls };
            let existing = bucket_info(c, &bucket).await.ok();
            if existing.is_some_and(|b| b.owner == r.user && (if b.acls.is_empty() { &private } else { &b.acls }) == asked) {
                Ok(Reply::ok().header("location", format!("/{bucket}")))
            } else {
                Err(from_om(&e, &bucket, None))
            }
        }
        Err(e) => Err(from_om(&e, &bucket, None)),
    }
}

async fn head_bucket(c: &Client, r: &Req) -> R {
    let b = owned_bucket(c, r).await?;
    // Whether the caller may list it: a listing of one key says (the OM checks the rights).
    c.list_keys(S3_VOLUME, &b.name, "", "", 1).await.map_err(|e| from_om(&e, &r.bucket, None))?;
    Ok(Reply::ok().header("x-amz-bucket-region", "us-east-1"))
}

async fn delete_bucket(c: &Client, r: &Req) -> R {
    let bucket = r.bucket.clone();
    c.submit(|op| {
        let mut b = op.init_delete_bucket();
        b.set_volume(S3_VOLUME);
        b.set_bucket(&bucket);
    })
    .await
    .map_err(|e| from_om(&e, &bucket, None))?;
    Ok(Reply::status(204))
}

/// GetBucketAcl / GetObjectAcl. A bucket's ACL is shown to whoever holds READ_ACP on it (the
/// gateway checks: the OM's bucket information is anyone's); an object's to whoever holds
/// READ_ACP on the object or its bucket (the OM checks READ_ACL, with the key's own entries;
/// READ of the object is not enough, as in S3), and to its owner whatever its entries say. An
/// object's owner is its writer where its bucket's ownership made it so ([`OBJECT_OWNER`]), else
/// the bucket's.
async fn acl(gw: &Gateway, c: &Client, r: &Req) -> R {
    let b = owned_bucket(c, r).await?;
    if r.key.is_empty() {
        if !acl::allows(&b.acls, &b.owner, &r.user, acl::READ_ACP) {
            return Err(S3Error::access_denied(format!("reading the ACL of bucket {} needs READ_ACP on it", r.bucket)));
        }
        return Ok(Reply::xml(acl::document(&b.owner, &b.acls, On::Bucket)));
    }
    let k = match c.lookup_key_acl(S3_VOLUME, &r.bucket, &r.key).await {
        Ok(k) => k,
        // Its owner reads it as the bucket's owner would, if the version read is his.
        Err(e) if e.status() == Some(stratos_client::Status::PermissionDenied) => match gw.client_for(&b.owner).await?.lookup_key_acl(S3_VOLUME, &r.bucket, &r.key).await {
            Ok(k) if owner_in(&k.metadata, &b.owner) == r.user => k,
            _ => return Err(from_om(&e, &r.bucket, Some(&r.key))),
        },
        Err(e) => return Err(from_om(&e, &r.bucket, Some(&r.key))),
    };
    Ok(Reply::xml(acl::document(owner_in(&k.metadata, &b.owner), &k.acls, On::Object)))
}

/// Every user an ACL names beside the owner and the bucket's owner must exist: hold an S3
/// access key here (S3 answers an unknown canonical ID with InvalidArgument).
async fn check_grantees(gw: &Gateway, entries: &[AclEntry], owner: &str, bucket_owner: &str) -> Result<(), S3Error> {
    for user in acl::users_named(entries, owner).filter(|u| *u != bucket_owner) {
        if gw.secret(user, false).await?.is_none() {
            return Err(S3Error::invalid_argument(format!("Invalid id: no user {user} (an ACL's users are those with an S3 access key)")));
        }
    }
    Ok(())
}

/// What a write gives its new object beside its bytes: the ACL entries of its commit, and the
/// metadata pair naming its owner where that is not the bucket's owner.
#[derive(Debug, Default)]
struct WriteAcl {
    /// None for the plain commit: the bucket's owner's object with no ACL asked, or the
    /// default one (the owner's grant alone).
    entries: Option<Vec<AclEntry>>,
    /// `(OBJECT_OWNER, writer)` where the writer owns the object and is not the bucket's owner.
    owner: Option<(String, String)>,
}

/// The metadata pair that names an object's owner where that is not its bucket's owner: its
/// writer, as the bucket's object ownership says ([`object_owner`]). Kept by the gateway,
/// never shown as user metadata; a copy is its copier's.
const OBJECT_OWNER: &str = "s3:owner";

/// The owner of an object (or upload) with `metadata` in a bucket owned by `bucket_owner`.
fn owner_in<'a>(metadata: &'a [(String, String)], bucket_owner: &'a str) -> &'a str {
    meta(metadata, OBJECT_OWNER).unwrap_or(bucket_owner)
}

/// Who owns an object a request writes: its writer (who signed the request, also where the
/// bucket's policy had the write made as the bucket's owner), or the bucket's owner where the
/// bucket's object ownership says so: BucketOwnerEnforced always, BucketOwnerPreferred where
/// the writer gives the object `bucket-owner-full-control`. ObjectWriter, and a bucket without
/// the setting (as RGW's; Ozone's keys are their writer's too), leave it the writer's. An
/// anonymous write is the bucket owner's.
fn object_owner(s: &Settings, r: &Req) -> String {
    let bucket_owners = match s.ownership {
        Some(Ownership::Enforced) => true,
        Some(Ownership::Preferred) => r.header("x-amz-acl").is_some_and(|v| v.trim() == "bucket-owner-full-control"),
        Some(Ownership::Writer) | None => false,
    };
    if bucket_owners || r.caller.is_empty() { s.owner.clone() } else { r.caller.clone() }
}

/// The ACL a write gives its new object (`x-amz-acl`, `x-amz-grant-*`, or the owner's grant
/// alone) and its owner ([`object_owner`]). An object another user than the bucket's owner
/// writes gets entries of its own, its writer's grant at least, so that its owner may read it
/// and its ACL (the OM checks a key's entries beside its bucket's). Checked before the write,
/// so that a bad ACL costs no bytes.
async fn write_acl(gw: &Gateway, c: &Client, r: &Req) -> Result<WriteAcl, S3Error> {
    let asked = r.headers.iter().any(|(n, _)| n == "x-amz-acl" || n.starts_with("x-amz-grant-"));
    let s = bucket_settings(gw, c, &r.bucket).await?;
    if s.ownership == Some(Ownership::Enforced) {
        // ACLs disabled: the one canned ACL S3 accepts is the one that changes nothing.
        let owner_full = r.header("x-amz-acl").is_some_and(|v| v.trim() == "bucket-owner-full-control") && !r.headers.iter().any(|(n, _)| n.starts_with("x-amz-grant-"));
        return if !asked || owner_full { Ok(WriteAcl::default()) } else { Err(acls_disabled(&r.bucket)) };
    }
    let owner = object_owner(&s, r);
    let writers = owner != s.owner;
    let entries = match acl::requested(&|n| r.header(n), None, &owner, &s.owner)? {
        Some(g) => acl::entries(&g, &owner, On::Object)?,
        None => acl::private(&owner, On::Object),
    };
    if !writers && entries == acl::private(&owner, On::Object) {
        return Ok(WriteAcl::default());
    }
    check_public_acl(gw, c, &r.bucket, &entries).await?;
    check_grantees(gw, &entries, &owner, &s.owner).await?;
    Ok(WriteAcl { entries: Some(entries), owner: writers.then(|| (OBJECT_OWNER.to_string(), owner)) })
}

/// The metadata pair in which a multipart upload keeps the ACL its object is to get
/// ([`acl::encode`]): the completion gives the object these entries as it makes it (one OM
/// command), so the object is never visible with others. It stays with the object (never
/// shown; a copy drops it).
const UPLOAD_ACL: &str = "acl:upload";

/// The ACL a multipart upload asks its object to get, and its owner ([`write_acl`]), as
/// metadata pairs of the upload (ListParts names the owner from them). As a PUT's canned ACL or
/// grants, the writer's right to write is enough: the completion sets them with the object it
/// makes, as a PUT's commit does, and the object keeps the owner's pair.
async fn upload_acl(gw: &Gateway, c: &Client, r: &Req) -> Result<Vec<(String, String)>, S3Error> {
    let w = write_acl(gw, c, r).await?;
    let mut pairs = Vec::new();
    if let Some(entries) = w.entries {
        let value = acl::encode(&entries);
        if value.len() > METADATA_VALUE_BYTES_MAX {
            return Err(S3Error::invalid_argument(format!("the ACL of a multipart upload takes {} bytes, at most {METADATA_VALUE_BYTES_MAX}", value.len())));
        }
        pairs.push((UPLOAD_ACL.to_string(), value));
    }
    pairs.extend(w.owner);
    Ok(pairs)
}

/// The encryption a write asks for (or else its bucket's default), sealed: the metadata to add
/// and the cipher of its bytes.
async fn seal(gw: &Gateway, c: &Client, r: &Req) -> Result<(Vec<(String, String)>, Option<Cipher>), S3Error> {
    let mut ask = sse::asked(&|n| r.header(n), gw.https)?;
    if matches!(ask, sse::Ask::None) {
        ask = bucket_default_encryption(gw, c, &r.bucket).await?;
    }
    Ok(match sse::seal(&ask, gw.keyring.as_ref())? {
        Some((m, c)) => (m, Some(c)),
        None => (Vec::new(), None),
    })
}

/// The bucket metadata that holds a bucket's default encryption: `AES256` or `aws:kms:KEY`.
const BUCKET_SSE: &str = "s3:encryption";
/// The prefix of the bucket metadata that holds its CORS configuration, in pieces
/// `s3:cors:00`, `s3:cors:01`, ... of [`cors::encode`]'s form.
const BUCKET_CORS: &str = "s3:cors:";
/// The prefix of the bucket metadata that holds its tags: their `<Tagging>` document as
/// GetBucketTagging answers it, in pieces `s3:tagging:00`, ... (tags may hold any character).
const BUCKET_TAGGING: &str = "s3:tagging:";
/// The prefix of the bucket metadata that holds its policy, as it was put (JSON), in pieces
/// `s3:policy:00`, ...
const BUCKET_POLICY: &str = "s3:policy:";
/// The bucket metadata that holds its object ownership ([`Ownership::name`]).
const BUCKET_OWNERSHIP: &str = "s3:ownership";
/// The bucket metadata that holds its public access block ([`PublicBlock::encode`]).
const BUCKET_PUBLIC_BLOCK: &str = "s3:publicAccessBlock";
/// Pieces of a policy: its 20 KB, cut at characters.
const POLICY_PIECES_MAX: usize = 12;
/// Pieces of a bucket's tags: 32 KiB, fifty tags of fair size.
const TAGGING_PIECES_MAX: usize = 16;
/// The prefix of the bucket metadata that holds its lifecycle rules, in pieces of
/// [`stratos_common::lifecycle::encode`]'s form (which the OM reads to expire objects).
const BUCKET_LIFECYCLE: &str = stratos_common::lifecycle::METADATA_PREFIX;
/// Pieces of lifecycle rules: 20 KiB of their stored form, shorter than the XML that S3 bounds
/// at 20 KB.
const LIFECYCLE_PIECES_MAX: usize = 10;
// Every piece the bucket's settings may take fits the OM's pairs, beside the default
// encryption, the public access block and the object ownership.
const _: () = assert!(CORS_PIECES_MAX + TAGGING_PIECES_MAX + POLICY_PIECES_MAX + LIFECYCLE_PIECES_MAX + 3 <= METADATA_PAIRS_MAX);
/// Pieces of a CORS configuration: 40 KiB of its stored form, which is shorter than the XML
/// (S3 bounds the document at 64 KB; the bucket's other metadata keeps the rest of the OM's
/// pairs).
const CORS_PIECES_MAX: usize = 20;

/// How long an executor keeps a bucket's settings before reading them again where nothing in
/// this process changed one. S3's bucket configurations are eventually consistent (AWS
/// documents the delay); a change made through this gateway applies here at once
/// ([`Gateway::settings_changed`]), one made through another gateway or the native API within
/// this long.
const BUCKET_SETTINGS_TTL: Duration = Duration::from_secs(5);

/// A bucket's settings as an executor read them: when, and at which change count.
type CachedSettings = (Rc<Settings>, Instant, u64);

/// A bucket's S3 settings, from its metadata.
#[derive(Debug, Default)]
struct Settings {
    /// Its owner (a request its policy allows is made as the owner's).
    owner: String,
    /// Its default encryption ([`BUCKET_SSE`]).
    sse: Option<String>,
    /// Its CORS rules.
    cors: Option<cors::Config>,
    /// Its policy.
    policy: Option<Policy>,
    /// Its ACL entries.
    acls: Vec<AclEntry>,
    /// Its public access block.
    public_block: PublicBlock,
    /// Why its policy or public access block could not be read, if so.
    unreadable: Option<String>,
    /// Its object ownership setting (none: as ObjectWriter, [`object_owner`]).
    ownership: Option<Ownership>,
    /// Its lifecycle rules (none where they do not read: the OM then expires nothing either).
    lifecycle: Vec<stratos_common::lifecycle::Rule>,
}

/// A bucket's object ownership (S3's ownership controls): who owns an object another user
/// writes ([`object_owner`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    /// ACLs apply; an object is its writer's.
    Writer,
    /// ACLs apply; an object is the bucket owner's where its writer gives it
    /// `bucket-owner-full-control`, else its writer's.
    Preferred,
    /// ACLs are disabled: only the owner and the bucket policy grant access, and no ACL but
    /// `bucket-owner-full-control` may be set.
    Enforced,
}

impl Ownership {
    fn name(self) -> &'static str {
        match self {
            Ownership::Writer => "ObjectWriter",
            Ownership::Preferred => "BucketOwnerPreferred",
            Ownership::Enforced => "BucketOwnerEnforced",
        }
    }

    /// The setting [`Ownership::name`] names.
    fn named(name: &str) -> Option<Ownership> {
        [Ownership::Writer, Ownership::Preferred, Ownership::Enforced].into_iter().find(|o| o.name() == name)
    }
}

/// The object ownership a request names.
fn object_ownership(v: &str) -> Result<Ownership, S3Error> {
    Ownership::named(v).ok_or_else(|| S3Error::invalid_argument(format!("object ownership {v:?}: BucketOwnerPreferred, BucketOwnerEnforced or ObjectWriter")))
}

fn acls_disabled(bucket: &str) -> S3Error {
    S3Error::new("AccessControlListNotSupported", 400, format!("The bucket does not allow ACLs: bucket {bucket} is BucketOwnerEnforced"))
}

/// A bucket's public access block (S3's four settings; all off where it has none).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct PublicBlock {
    /// ACLs that grant AllUsers or AuthenticatedUsers anything are refused.
    block_public_acls: bool,
    /// Such grants are ignored: the bucket and its objects are as private to others.
    ignore_public_acls: bool,
    /// A policy that makes the bucket public is refused.
    block_public_policy: bool,
    /// Where its policy is public, only its owner reaches the bucket.
    restrict_public_buckets: bool,
}

impl PublicBlock {
    const FIELDS: [&'static str; 4] = ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"];

    fn flags(&self) -> [bool; 4] {
        [self.block_public_acls, self.ignore_public_acls, self.block_public_policy, self.restrict_public_buckets]
    }

    fn of_flags(f: [bool; 4]) -> PublicBlock {
        PublicBlock { block_public_acls: f[0], ignore_public_acls: f[1], block_public_policy: f[2], restrict_public_buckets: f[3] }
    }

    /// The stored form: four `0`/`1`, in [`PublicBlock::FIELDS`]' order.
    fn encode(&self) -> String {
        self.flags().iter().map(|b| if *b { '1' } else { '0' }).collect()
    }

    fn decode(s: &str) -> Option<PublicBlock> {
        let b = s.as_bytes();
        (b.len() == 4 && b.iter().all(|c| matches!(c, b'0' | b'1'))).then(|| PublicBlock::of_flags([b[0] == b'1', b[1] == b'1', b[2] == b'1', b[3] == b'1']))
    }
}

impl Settings {
    fn of_bucket(bucket: &str, info: &stratos_client::BucketInfo) -> Settings {
        let mut s = Settings::of(bucket, &info.metadata);
        s.owner = info.owner.clone();
        s.acls = info.acls.clone();
        s
    }

    /// A stored setting that does not read (kept by a gateway that reads more than this one):
    /// CORS rules are then none (they only ever add headers); a policy or a public access
    /// block is [`Settings::unreadable`], which refuses the bucket's requests (a Deny is
    /// never dropped) but its owner's to replace or delete them.
    fn of(bucket: &str, metadata: &[(String, String)]) -> Settings {
        let mut unreadable = None;
        let cors = settings_joined(metadata, BUCKET_CORS).and_then(|stored| match cors::decode(&stored) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("s3g: bucket {bucket}: {e}; its CORS rules are taken as none");
                None
            }
        });
        let policy = settings_joined(metadata, BUCKET_POLICY).and_then(|text| match policy::parse(text.as_bytes(), bucket) {
            Ok(p) => Some(p),
            Err(e) => {
                unreadable = Some(format!("bucket {bucket}: its stored policy does not read here ({}): its owner may replace or delete it", e.message));
                None
            }
        });
        let public_block = match meta(metadata, BUCKET_PUBLIC_BLOCK).map(|v| (v, PublicBlock::decode(v))) {
            None => PublicBlock::default(),
            Some((_, Some(b))) => b,
            Some((v, None)) => {
                unreadable = Some(format!("bucket {bucket}: its stored public access block {v:?} does not read here: its owner may replace or delete it"));
                PublicBlock::default()
            }
        };
        let ownership = meta(metadata, BUCKET_OWNERSHIP).and_then(|v| {
            let o = Ownership::named(v);
            if o.is_none() {
                unreadable = Some(format!("bucket {bucket}: its stored object ownership {v:?} does not read here: its owner may replace or delete it"));
            }
            o
        });
        let lifecycle = settings_joined(metadata, BUCKET_LIFECYCLE).map_or_else(Vec::new, |stored| {
            stratos_common::lifecycle::decode(&stored).unwrap_or_else(|e| {
                eprintln!("s3g: bucket {bucket}: its lifecycle rules do not read here ({e}); taken as none");
                Vec::new()
            })
        });
        Settings { owner: String::new(), sse: meta(metadata, BUCKET_SSE).map(str::to_string), cors, policy, acls: Vec::new(), public_block, unreadable, ownership, lifecycle }
    }
}

/// The settings of `bucket` (read with `c`'s rights: any caller may read a bucket's).
async fn bucket_settings(gw: &Gateway, c: &Client, bucket: &str) -> Result<Rc<Settings>, S3Error> {
    let count = gw.settings_changed.count.load(Ordering::Acquire);
    if let Some((s, at, n)) = gw.settings.borrow().get(bucket)
        && *n == count
        && at.elapsed() < BUCKET_SETTINGS_TTL
    {
        return Ok(s.clone());
    }
    c.read_after(gw.settings_changed.meta_index.load(Ordering::Acquire));
    let s = Rc::new(Settings::of_bucket(bucket, &bucket_info(c, bucket).await?));
    let mut cache = gw.settings.borrow_mut();
    if cache.len() >= USERS_MAX {
        cache.clear();
    }
    // Marked with the count read before the OM answered: a change since makes it stale.
    cache.insert(bucket.to_string(), (s.clone(), Instant::now(), count));
    Ok(s)
}

/// Edits a bucket's settings: removes the metadata under `remove_prefix`, then sets `set`, in
/// one command (the bucket's owner's), and has every executor read them afresh.
async fn set_bucket_settings(gw: &Gateway, c: &Client, bucket: &str, remove_prefix: &str, set: &[(String, String)]) -> Result<(), S3Error> {
    let r = c
        .submit(|op| {
            let mut m = op.init_set_bucket_metadata();
            m.set_volume(S3_VOLUME);
            m.set_bucket(bucket);
            m.set_remove_prefix(remove_prefix);
            let mut l = m.init_set(set.len() as u32);
            for (i, (k, v)) in set.iter().enumerate() {
                l.reborrow().get(i as u32).set_key(k);
                l.reborrow().get(i as u32).set_value(v);
            }
        })
        .await;
    // Whatever the outcome (a timeout may still have applied), nothing cached is trusted.
    gw.settings_changed.made_by(c);
    r.map_err(|e| from_om(&e, bucket, None))?;
    Ok(())
}

/// What a write that asks for no encryption gets: its bucket's default.
async fn bucket_default_encryption(gw: &Gateway, c: &Client, bucket: &str) -> Result<sse::Ask, S3Error> {
    let settings = bucket_settings(gw, c, bucket).await?;
    Ok(match settings.sse.as_deref() {
        None => sse::Ask::None,
        Some("AES256") => sse::Ask::S3,
        Some(other) => match other.strip_prefix("aws:kms:") {
            Some(id) => sse::Ask::Kms(id.to_string()),
            None => return Err(S3Error::internal(format!("bucket {bucket}: an unknown default encryption {other:?}"))),
        },
    })
}

/// Sets (`Some`) or removes a bucket's default encryption.
async fn set_bucket_sse(gw: &Gateway, c: &Client, bucket: &str, value: Option<&str>) -> Result<(), S3Error> {
    let set: Vec<(String, String)> = value.map(|v| (BUCKET_SSE.to_string(), v.to_string())).into_iter().collect();
    set_bucket_settings(gw, c, bucket, BUCKET_SSE, &set).await
}

/// PutBucketEncryption: one rule, SSE-S3 (AES256) or SSE-KMS with a key the keyring holds.
async fn put_bucket_encryption(gw: &Gateway, c: &Client, r: &mut Req) -> R {
    let body = r.payload()?.read_all(DOCUMENT_BYTES_MAX).await?;
    let doc = xml::document(&body, "ServerSideEncryptionConfiguration")?;
    let rules: Vec<_> = doc.children_named("Rule").collect();
    let [rule] = rules.as_slice() else { return Err(S3Error::malformed_xml(format!("{} rules: exactly one", rules.len()))) };
    let by_default = rule.child("ApplyServerSideEncryptionByDefault").ok_or_else(|| S3Error::malformed_xml("no <ApplyServerSideEncryptionByDefault>"))?;
    let algorithm = by_default.child("SSEAlgorithm").map(|a| a.text.trim()).unwrap_or("");
    let key = by_default.child("KMSMasterKeyID").map(|k| k.text.trim().to_string()).filter(|k| !k.is_empty());
    let (ask, value) = match (algorithm, key) {
        ("AES256", None) => (sse::Ask::S3, "AES256".to_string()),
        ("aws:kms", Some(k)) => (sse::Ask::Kms(k.clone()), format!("aws:kms:{k}")),
        ("aws:kms", None) => return Err(S3Error::invalid_argument("aws:kms needs a KMSMasterKeyID (this gateway has no default KMS key)")),
        ("AES256", Some(_)) => return Err(S3Error::invalid_argument("a KMSMasterKeyID with AES256 (SSE-S3 uses the gateway's key)")),
        (other, _) => return Err(S3Error::malformed_xml(format!("SSEAlgorithm {other:?}: AES256 or aws:kms"))),
    };
    // The key must exist now, so that every later write can use it.
    sse::seal(&ask, gw.keyring.as_ref())?;
    owned_bucket(c, r).await?;
    set_bucket_sse(gw, c, &r.bucket, Some(&value)).await?;
    Ok(Reply::ok())
}

async fn get_bucket_encryption(c: &Client, r: &Req) -> R {
    let info = owned_bucket(c, r).await?;
    let Some(setting) = meta(&info.metadata, BUCKET_SSE).map(str::to_string) else {
        return Err(S3Error::new("ServerSideEncryptionConfigurationNotFoundError", 404, "the bucket has no default encryption configuration"));
    };
    let root = "ServerSideEncryptionConfiguration";
    let mut w = Writer::new(root);
    w.open("Rule").open("ApplyServerSideEncryptionByDefault");
    match setting.strip_prefix("aws:kms:") {
        Some(k) => w.elem("SSEAlgorithm", "aws:kms").elem("KMSMasterKeyID", k),
        None => w.elem("SSEAlgorithm", &setting),
    };
    w.close("ApplyServerSideEncryptionByDefault").elem("BucketKeyEnabled", false).close("Rule");
    Ok(Reply::xml(w.finish(root)))
}

/// `value` cut into bucket metadata pairs `PREFIX00`, `PREFIX01`, ... (at most `max` of them).
fn settings_pieces(prefix: &str, value: &str, max: usize, what: &str) -> Result<Vec<(String, String)>, S3Error> {
    let pieces = stratos_common::settings::pieces(value, METADATA_VALUE_BYTES_MAX);
    if pieces.len() > max {
        return Err(S3Error::invalid_request(format!("{what} takes {} bytes stored, at most {}", value.len(), max * METADATA_VALUE_BYTES_MAX)));
    }
    Ok(pieces.iter().enumerate().map(|(i, p)| (format!("{prefix}{i:02}"), p.to_string())).collect())
}

/// What [`settings_pieces`] cut, joined again (None: nothing stored).
fn settings_joined(metadata: &[(String, String)], prefix: &str) -> Option<String> {
    stratos_common::settings::joined(metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())), prefix)
}

/// The owner's bucket, for reading one of its settings (S3's default: they are the owner's).
async fn own_bucket_settings(c: &Client, r: &Req, what: &str) -> Result<stratos_client::BucketInfo, S3Error> {
    let info = owned_bucket(c, r).await?;
    if info.owner != r.user {
        return Err(S3Error::access_denied(format!("the {what} of bucket {} is its owner's to read", r.bucket)));
    }
    Ok(info)
}

/// PutBucketTagging: the bucket's tags, replaced whole.
async fn put_bucket_tagging(gw: &Gateway, c: &Client, r: &mut Req) -> R {
    let body = r.payload()?.read_all(DOCUMENT_BYTES_MAX).await?;
    let tags = tagging_document(&body, BUCKET_TAGS_MAX)?;
    let mut w = Writer::new("Tagging");
    w.open("TagSet");
    for (k, v) in &tags {
        w.open("Tag").elem("Key", k).elem("Value", v).close("Tag");
    }
    w.close("TagSet");
    let set = settings_pieces(BUCKET_TAGGING, &w.finish("Tagging"), TAGGING_PIECES_MAX, "the tag set")?;
    set_bucket_settings(gw, c, &r.bucket, BUCKET_TAGGING, &set).await?;
    Ok(Reply::status(204))
}

/// GetBucketTagging: the document kept as it was put.
async fn get_bucket_tagging(c: &Client, r: &Req) -> R {
    let info = own_bucket_settings(c, r, "tag set").await?;
    match settings_joined(&info.metadata, BUCKET_TAGGING) {
        Some(doc) => Ok(Reply::xml(doc)),
        None => Err(S3Error::new("NoSuchTagSet", 404, "The TagSet does not exist")),
    }
}

// ---------------------------------------------------------------------------------------------
// Bucket policies

/// PutBucketPolicy: the bucket's policy, replaced whole (kept as put; checked first).
async fn put_bucket_policy(gw: &Gateway, c: &Client, r: &mut Req) -> R {
    let body = r.payload()?.read_all(policy::POLICY_BYTES_MAX + 1).await?;
    let p = policy::parse(&body, &r.bucket)?;
    if p.is_public() && bucket_settings(gw, c, &r.bucket).await?.public_block.block_public_policy {
        return Err(S3Error::access_denied(format!("the policy would make bucket {} public, which its public access block refuses (BlockPublicPolicy)", r.bucket)));
    }
    let text = std::str::from_utf8(&body).map_err(|_| S3Error::new("MalformedPolicy", 400, "a policy is UTF-8 JSON"))?;
    let set = settings_pieces(BUCKET_POLICY, text, POLICY_PIECES_MAX, "the policy")?;
    set_bucket_settings(gw, c, &r.bucket, BUCKET_POLICY, &set).await?;
    Ok(Reply::status(204))
}

/// GetBucketPolicy: the document as it was put.
async fn get_bucket_policy(c: &Client, r: &Req) -> R {
    let info = own_bucket_settings(c, r, "policy").await?;
    match settings_joined(&info.metadata, BUCKET_POLICY) {
        Some(doc) => Ok(Reply { status: 200, headers: vec![("content-type".into(), "application/json".into())], body: Body::full(doc) }),
        None => Err(S3Error::new("NoSuchBucketPolicy", 404, "The bucket policy does not exist")),
    }
}

/// GetBucketPolicyStatus: public where its policy allows anyone something unconditionally, or
/// its ACL grants AllUsers or AuthenticatedUsers anything.
async fn get_bucket_policy_status(c: &Client, r: &Req) -> R {
    let info = own_bucket_settings(c, r, "policy status").await?;
    let by_policy = Settings::of(&r.bucket, &info.metadata).policy.is_some_and(|p| p.is_public());
    let by_acl = info.acls.iter().any(|a| a.rights != 0 && (a.kind == stratos_client::AclKind::World || a.name == AclEntry::AUTHENTICATED));
    let mut w = Writer::new("PolicyStatus");
    w.elem("IsPublic", by_policy || by_acl);
    Ok(Reply::xml(w.finish("PolicyStatus")))
}

/// PutBucketOwnershipControls: one rule, ObjectWriter, BucketOwnerPreferred or
/// BucketOwnerEnforced.
async fn put_ownership(gw: &Gateway, c: &Client, r: &mut Req) -> R {
    let body = r.payload()?.read_all(DOCUMENT_BYTES_MAX).await?;
    let doc = xml::document(&body, "OwnershipControls")?;
    let rules: Vec<_> = doc.children_named("Rule").collect();
    let [rule] = rules.as_slice() else { return Err(S3Error::malformed_xml(format!("{} rules: exactly one", rules.len()))) };
    let o = object_ownership(rule.child("ObjectOwnership").map(|e| e.text.trim()).unwrap_or(""))?;
    if o == Ownership::Enforced {
        // S3 disables ACLs only where the bucket's grants nobody but its owner.
        let b = bucket_info(c, &r.bucket).await?;
        if b.acls.iter().any(|e| e.rights != 0 && !(e.kind == stratos_client::AclKind::User && e.name == b.owner)) {
            return Err(S3Error::new("InvalidBucketAclWithObjectOwnership", 400, format!("bucket {}'s ACL grants others: make it private before BucketOwnerEnforced", r.bucket)));
        }
    }
    set_bucket_settings(gw, c, &r.bucket, BUCKET_OWNERSHIP, &[(BUCKET_OWNERSHIP.to_string(), o.name().to_string())]).await?;
    Ok(Reply::ok())
}

async fn get_ownership(c: &Client, r: &Req) -> R {
    let info = own_bucket_settings(c, r, "ownership controls").await?;
    let Some(o) = meta(&info.metadata, BUCKET_OWNERSHIP) else {
        return Err(S3Error::new("OwnershipControlsNotFoundError", 404, "The bucket ownership controls were not found"));
    };
    let mut w = Writer::new("OwnershipControls");
    w.open("Rule").elem("ObjectOwnership", o).close("Rule");
    Ok(Reply::xml(w.finish("OwnershipControls")))
}

/// PutPublicAccessBlock: the bucket's four settings, replaced whole (a missing one is off).
async fn put_public_block(gw: &Gateway, c: &Client, r: &mut Req) -> R {
    let body = r.payload()?.read_all(DOCUMENT_BYTES_MAX).await?;
    let doc = xml::document(&body, "PublicAccessBlockConfiguration")?;
    let mut flags = [false; 4];
    for (flag, name) in flags.iter_mut().zip(PublicBlock::FIELDS) {
        *flag = match doc.child(name).map(|e| e.text.trim()) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => return Err(S3Error::malformed_xml(format!("{name} is true or false, not {v:?}"))),
        };
    }
    let value = PublicBlock::of_flags(flags).encode();
    set_bucket_settings(gw, c, &r.bucket, BUCKET_PUBLIC_BLOCK, &[(BUCKET_PUBLIC_BLOCK.to_string(), value)]).await?;
    Ok(Reply::ok())
}

async fn get_public_block(c: &Client, r: &Req) -> R {
    let info = own_bucket_settings(c, r, "public access block").await?;
    if meta(&info.metadata, BUCKET_PUBLIC_BLOCK).is_none() {
        return Err(S3Error::new("NoSuchPublicAccessBlockConfiguration", 404, "The public access block configuration was not found"));
    }
    let block = Settings::of(&r.bucket, &info.metadata).public_block;
    let root = "PublicAccessBlockConfiguration";
    let mut w = Writer::new(root);
    for (name, on) in PublicBlock::FIELDS.iter().zip(block.flags()) {
        w.elem(name, on);
    }
    Ok(Reply::xml(w.finish(root)))
}

/// The OM rights a request needs of ACL entries (IgnorePublicAcls checks them of the
/// non-public entries before the OM checks them of all).
fn needed_rights(action: &str) -> u16 {
    match action {
        "s3:ListBucket" | "s3:ListBucketVersions" | "s3:ListBucketMultipartUploads" | "s3:ListMultipartUploadParts" => acl::LIST,
        "s3:GetObject" | "s3:GetObjectTagging" | "s3:GetObjectAttributes" => acl::READ,
        "s3:PutObject" | "s3:PutObjectTagging" | "s3:DeleteObjectTagging" => acl::WRITE,
        "s3:DeleteObject" | "s3:AbortMultipartUpload" => acl::DELETE,
        "s3:GetBucketAcl" | "s3:GetObjectAcl" => acl::READ_ACP,
        _ => acl::WRITE_ACP,
    }
}

/// IgnorePublicAcls: whether the caller holds what `action` needs by the bucket's (or the
/// object's) ACL entries other than public ones.
async fn allowed_without_public_acls(gw: &Gateway, r: &Req, settings: &Settings, action: &str, key: &str) -> Result<bool, S3Error> {
    let private = |entries: &[AclEntry]| entries.iter().filter(|e| !acl::is_public(e)).cloned().collect::<Vec<_>>();
    let rights = needed_rights(action);
    if acl::allows(&private(&settings.acls), &settings.owner, &r.user, rights) {
        return Ok(true);
    }
    // An object read granted by the object's own entries.
    if rights == acl::READ && !key.is_empty() {
        let owner = gw.client_for(&settings.owner).await?;
        if let Ok(k) = owner.lookup_key(S3_VOLUME, &r.bucket, key).await {
            return Ok(acl::allows(&private(&k.acls), &settings.owner, &r.user, rights));
        }
    }
    Ok(false)
}

/// A bucket sub-resource and S3's action for a GET (or HEAD), a PUT and a DELETE of it (None:
/// the method's plain bucket action). S3 checks a configuration's DELETE as its PUT, but for
/// the policy's and the website's. The first row the request names decides.
type SubresourceActions = (&'static str, &'static str, Option<&'static str>, Option<&'static str>);
const BUCKET_SUBRESOURCE_ACTIONS: [SubresourceActions; 16] = [
    ("acl", "s3:GetBucketAcl", Some("s3:PutBucketAcl"), None),
    ("cors", "s3:GetBucketCORS", Some("s3:PutBucketCORS"), Some("s3:PutBucketCORS")),
    ("tagging", "s3:GetBucketTagging", Some("s3:PutBucketTagging"), Some("s3:PutBucketTagging")),
    ("encryption", "s3:GetEncryptionConfiguration", Some("s3:PutEncryptionConfiguration"), Some("s3:PutEncryptionConfiguration")),
    ("policyStatus", "s3:GetBucketPolicyStatus", None, None),
    ("policy", "s3:GetBucketPolicy", Some("s3:PutBucketPolicy"), Some("s3:DeleteBucketPolicy")),
    ("location", "s3:GetBucketLocation", None, None),
    ("versioning", "s3:GetBucketVersioning", Some("s3:PutBucketVersioning"), None),
    ("uploads", "s3:ListBucketMultipartUploads", None, None),
    ("versions", "s3:ListBucketVersions", None, None),
    ("lifecycle", "s3:GetLifecycleConfiguration", Some("s3:PutLifecycleConfiguration"), Some("s3:PutLifecycleConfiguration")),
    ("website", "s3:GetBucketWebsite", Some("s3:PutBucketWebsite"), Some("s3:DeleteBucketWebsite")),
    ("object-lock", "s3:GetBucketObjectLockConfiguration", Some("s3:PutBucketObjectLockConfiguration"), None),
    ("publicAccessBlock", "s3:GetBucketPublicAccessBlock", Some("s3:PutBucketPublicAccessBlock"), Some("s3:PutBucketPublicAccessBlock")),
    ("ownershipControls", "s3:GetBucketOwnershipControls", Some("s3:PutBucketOwnershipControls"), Some("s3:PutBucketOwnershipControls")),
    ("logging", "s3:GetBucketLogging", Some("s3:PutBucketLogging"), None),
];

/// The S3 action a request is to a bucket's policy, and whether it names an object.
fn request_action(r: &Req) -> (&'static str, bool) {
    use hyper::Method as M;
    let h = |q: &str| r.has(q);
    if r.key.is_empty() {
        let (default, column): (&str, fn(&SubresourceActions) -> Option<&'static str>) = match r.method {
            M::GET | M::HEAD => ("s3:ListBucket", |a| Some(a.1)),
            M::PUT => ("s3:CreateBucket", |a| a.2),
            M::DELETE => ("s3:DeleteBucket", |a| a.3),
            // DeleteObjects (POST): each key is an s3:DeleteObject ([`delete_objects`]).
            _ => ("s3:DeleteObject", |_| None),
        };
        let action = BUCKET_SUBRESOURCE_ACTIONS.iter().filter(|a| h(a.0)).find_map(column).unwrap_or(default);
        return (action, false);
    }
    let action = match r.method {
        M::PUT if h("tagging") => "s3:PutObjectTagging",
        M::PUT if h("acl") => "s3:PutObjectAcl",
        M::GET | M::HEAD if h("tagging") => "s3:GetObjectTagging",
        M::GET | M::HEAD if h("attributes") => "s3:GetObjectAttributes",
        M::GET | M::HEAD if h("uploadId") => "s3:ListMultipartUploadParts",
        M::GET | M::HEAD if h("acl") => "s3:GetObjectAcl",
        M::GET | M::HEAD => "s3:GetObject",
        M::DELETE if h("tagging") => "s3:DeleteObjectTagging",
        M::DELETE if h("uploadId") => "s3:AbortMultipartUpload",
        M::DELETE => "s3:DeleteObject",
        // PutObject, CopyObject, UploadPart(Copy), the multipart upload's creation and
        // completion, a form upload.
        _ => "s3:PutObject",
    };
    (action, true)
}

/// The value of a bucket policy's condition key (lower case) for a request.
fn policy_key(r: &Req, https: bool, existing_tags: Option<&[(String, String)]>, key: &str) -> Option<Vec<String>> {
    let one = |v: String| Some(vec![v]);
    let signed = !r.user.is_empty();
    let request_tags = || r.header("x-amz-tagging").and_then(|t| parse_query(&t).ok());
    match key {
        "aws:securetransport" => one(https.to_string()),
        "aws:sourceip" => r.peer.map(|ip| vec![ip.to_string()]),
        "aws:username" | "aws:userid" if signed => one(r.user.clone()),
        "aws:principaltype" => one(if signed { "User" } else { "Anonymous" }.to_string()),
        "aws:referer" => r.header("referer").map(|v| vec![v]),
        "aws:useragent" => r.header("user-agent").map(|v| vec![v]),
        "aws:epochtime" => one(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()).to_string()),
        "s3:prefix" | "s3:delimiter" | "s3:max-keys" => r.q(&key[3..]).map(|v| vec![v.to_string()]),
        "s3:versionid" => r.q("versionId").map(|v| vec![v.to_string()]),
        "s3:signatureversion" if signed => one("AWS4-HMAC-SHA256".to_string()),
        "s3:authtype" if signed => one(if r.has("X-Amz-Signature") { "REST-QUERY-STRING" } else { "REST-HEADER" }.to_string()),
        "s3:requestobjecttagkeys" => request_tags().map(|t| t.into_iter().map(|(k, _)| k).collect()),
        k => {
            if let Some(header) = k.strip_prefix("s3:x-amz-") {
                r.header(&format!("x-amz-{header}")).map(|v| vec![v])
            } else if let Some(tag) = k.strip_prefix("s3:requestobjecttag/") {
                request_tags()?.into_iter().find(|(n, _)| n.eq_ignore_ascii_case(tag)).map(|(_, v)| vec![v])
            } else if let Some(tag) = k.strip_prefix("s3:existingobjecttag/") {
                existing_tags?.iter().find(|(n, _)| n.strip_prefix(TAG).is_some_and(|n| n.eq_ignore_ascii_case(tag))).map(|(_, v)| vec![v.clone()])
            } else {
                None
            }
        }
    }
}

/// What the bucket's policy says of `action` on `key` (empty: the bucket) for the request.
async fn decide(gw: &Gateway, r: &Req, settings: &Settings, policy: &Policy, action: &str, key: &str) -> Result<Decision, S3Error> {
    // An object's tags are read (as its owner) only for a policy that asks for them.
    let mut existing: Option<Vec<(String, String)>> = None;
    if !key.is_empty() && policy.reads_key("s3:existingobjecttag/") {
        let owner = gw.client_for(&settings.owner).await?;
        existing = owner.lookup_key(S3_VOLUME, &r.bucket, key).await.ok().map(|k| k.metadata);
    }
    let resource = if key.is_empty() { format!("arn:aws:s3:::{}", r.bucket) } else { format!("arn:aws:s3:::{}/{key}", r.bucket) };
    let keys = |k: &str| policy_key(r, gw.https, existing.as_deref(), k);
    Ok(policy.decide(&r.user, action, &resource, &keys))
}

fn denied_by_policy(bucket: &str, sid: Option<String>) -> S3Error {
    S3Error::access_denied(format!("denied by the policy of bucket {bucket}{}", sid.map(|s| format!(" (statement {s})")).unwrap_or_default()))
}

/// A request to a bucket with a policy: refused where a statement denies it; made as the
/// bucket's owner where one allows it (the OM then permits what the owner may), else as the
/// caller, whose ACL rights the OM checks. The owner may always read, set and delete the
/// policy (no policy locks its owner out). An ACL a write sets must be allowed too
/// (`s3:PutObjectAcl`) for the write to be made as the owner. A copy's source is read as its
/// bucket's owner where that bucket's policy allows the caller `s3:GetObject` on it, refused
/// where it denies it, and else read by the caller, never as the destination's owner.
async fn authorize(gw: &Gateway, r: &mut Req, c: Rc<Client>) -> Result<Rc<Client>, S3Error> {
    let settings = bucket_settings(gw, &c, &r.bucket).await?;
    // SDKs' ExpectedBucketOwner: a request meant for a bucket of another owner goes nowhere.
    if let Some(expected) = r.header("x-amz-expected-bucket-owner")
        && expected != settings.owner
    {
        return Err(S3Error::access_denied(format!("bucket {} is not owned by {expected} (x-amz-expected-bucket-owner)", r.bucket)));
    }
    if let Some(why) = &settings.unreadable {
        let repair = matches!(request_action(r).0, "s3:GetBucketPolicy" | "s3:PutBucketPolicy" | "s3:DeleteBucketPolicy" | "s3:PutBucketPublicAccessBlock" | "s3:PutBucketOwnershipControls");
        if !(repair && r.user == settings.owner) {
            return Err(S3Error::internal(why.clone()));
        }
        return Ok(c);
    }
    let restricted = settings.public_block.restrict_public_buckets && r.user != settings.owner && settings.policy.as_ref().is_some_and(Policy::is_public);
    if restricted {
        return Err(S3Error::access_denied(format!("bucket {} has a public policy and its public access block restricts it to its owner (RestrictPublicBuckets)", r.bucket)));
    }
    if r.key.is_empty() && r.method == hyper::Method::POST {
        // DeleteObjects decides key by key.
        return Ok(c);
    }
    if r.header("x-amz-copy-source").is_some() {
        r.source_as = Some(copy_source_access(gw, r, c.clone()).await?);
    }
    let block = settings.public_block;
    // The common case, a bucket with neither policy nor public access block, costs the cached
    // settings' lookup alone.
    let enforced = settings.ownership == Some(Ownership::Enforced);
    if settings.policy.is_none() && block == PublicBlock::default() && !enforced {
        return Ok(c);
    }
    let (action, on_object) = request_action(r);
    let key = if on_object { r.key.clone() } else { String::new() };
    let others = r.user != settings.owner;
    let Some(policy) = &settings.policy else {
        if enforced && others {
            return Err(acls_ignored(&r.bucket));
        }
        if block.ignore_public_acls && others && !allowed_without_public_acls(gw, r, &settings, action, &key).await? {
            return Err(ignored_public_acls(&r.bucket));
        }
        return Ok(c);
    };
    if matches!(action, "s3:GetBucketPolicy" | "s3:PutBucketPolicy" | "s3:DeleteBucketPolicy") && !others {
        return Ok(c);
    }
    let mut decision = decide(gw, r, &settings, policy, action, &key).await?;
    let sets_acl = action != "s3:PutObjectAcl" && on_object && acl::requested(&|n| r.header(n), None, &settings.owner, &settings.owner).ok().flatten().is_some();
    if sets_acl {
        match decide(gw, r, &settings, policy, "s3:PutObjectAcl", &key).await? {
            Decision::Deny(sid) => decision = Decision::Deny(sid),
            Decision::Neither if decision == Decision::Allow => decision = Decision::Neither,
            _ => {}
        }
    }
    match decision {
        Decision::Deny(sid) => Err(denied_by_policy(&r.bucket, sid)),
        Decision::Allow if others => {
            let owner = gw.client_for(&settings.owner).await?;
            r.user = settings.owner.clone();
            Ok(owner)
        }
        _ if enforced && others => Err(acls_ignored(&r.bucket)),
        _ if block.ignore_public_acls && others && !allowed_without_public_acls(gw, r, &settings, action, &key).await? => Err(ignored_public_acls(&r.bucket)),
        _ => Ok(c),
    }
}

fn acls_ignored(bucket: &str) -> S3Error {
    S3Error::access_denied(format!("bucket {bucket} is BucketOwnerEnforced: its ACLs grant nothing, and its policy does not allow this"))
}

fn ignored_public_acls(bucket: &str) -> S3Error {
    S3Error::access_denied(format!("bucket {bucket}'s public access block ignores its public ACL grants (IgnorePublicAcls), and no other grant allows this"))
}

/// BlockPublicAcls: an ACL that grants AllUsers or AuthenticatedUsers anything is refused.
async fn check_public_acl(gw: &Gateway, c: &Client, bucket: &str, entries: &[AclEntry]) -> Result<(), S3Error> {
    if entries.iter().any(|e| acl::is_public(e) && e.rights != 0) && bucket_settings(gw, c, bucket).await?.public_block.block_public_acls {
        return Err(S3Error::access_denied(format!("bucket {bucket}'s public access block refuses public ACLs (BlockPublicAcls)")));
    }
    Ok(())
}

/// Who reads a copy's source ([`Req::source_as`]): refused where the source bucket's policy
/// denies the caller `s3:GetObject` on it.
async fn copy_source_access(gw: &Gateway, r: &Req, caller: Rc<Client>) -> Result<Rc<Client>, S3Error> {
    let Some(source) = r.header("x-amz-copy-source") else { return Ok(caller) };
    // A source that does not parse, or a bucket that does not exist, is the copy's to refuse.
    let Ok((bucket, key)) = copy_source(&source) else { return Ok(caller) };
    let Ok(settings) = bucket_settings(gw, &caller, &bucket).await else { return Ok(caller) };
    if let Some(expected) = r.header("x-amz-source-expected-bucket-owner")
        && expected != settings.owner
    {
        return Err(S3Error::access_denied(format!("the copy's source bucket {bucket} is not owned by {expected} (x-amz-source-expected-bucket-owner)")));
    }
    let Some(policy) = &settings.policy else { return Ok(caller) };
    let source_req = Req {
        method: hyper::Method::GET,
        bucket: bucket.clone(),
        key: key.clone(),
        query: Vec::new(),
        headers: r.headers.clone(),
        user: r.user.clone(),
        caller: r.caller.clone(),
        signer: None,
        body: None,
        peer: r.peer,
        source_as: None,
    };
    match decide(gw, &source_req, &settings, policy, "s3:GetObject", &key).await? {
        Decision::Deny(sid) => Err(denied_by_policy(&bucket, sid)),
        Decision::Allow if settings.owner != r.user => gw.client_for(&settings.owner).await,
        _ => Ok(caller),
    }
}

/// PutBucketCors: the bucket's CORS rules, replaced whole (the owner's, as its other settings).
async fn put_bucket_cors(gw: &Gateway, c: &Client, r: &mut Req) -> R {
    let body = r.payload()?.read_all(DOCUMENT_BYTES_MAX).await?;
    let config = cors::parse(&body)?;
    let set = settings_pieces(BUCKET_CORS, &cors::encode(&config), CORS_PIECES_MAX, "the CORS configuration")?;
    set_bucket_settings(gw, c, &r.bucket, BUCKET_CORS, &set).await?;
    Ok(Reply::ok())
}

/// GetBucketCors: the owner's (S3's default), read afresh.
async fn get_bucket_cors(c: &Client, r: &Req) -> R {
    let info = own_bucket_settings(c, r, "CORS configuration").await?;
    match Settings::of(&r.bucket, &info.metadata).cors {
        Some(config) => Ok(Reply::xml(cors::render(&config))),
        None => Err(S3Error::new("NoSuchCORSConfiguration", 404, "The CORS configuration does not exist")),
    }
}

/// A CORS preflight (`OPTIONS`, never signed): the answer of the bucket's first rule that allows
/// the origin, the method and the headers asked for; 400 where the request is not a preflight,
/// 403 where nothing allows it.
async fn preflight(gw: &Gateway, headers: &[(String, String)], bucket: &str) -> R {
    let forbidden = |why: &str| S3Error::new("AccessForbidden", 403, format!("CORSResponse: {why}"));
    let Some(origin) = header_of(headers, "origin") else {
        return Err(S3Error::new("BadRequest", 400, "Insufficient information. Origin request header needed."));
    };
    let Some(method) = header_of(headers, "access-control-request-method") else {
        return Err(S3Error::new("BadRequest", 400, "Insufficient information. Access-Control-Request-Method header needed."));
    };
    if bucket.is_empty() {
        return Err(forbidden("a preflight is answered for a bucket or its objects, not the service"));
    }
    // The gateway's own client: any caller may read a bucket's settings.
    let c = gw.base().await?;
    let settings = match bucket_settings(gw, &c, bucket).await {
        Err(e) if e.code == "NoSuchBucket" => return Err(forbidden("Bucket not found")),
        other => other?,
    };
    let Some(config) = &settings.cors else { return Err(forbidden("CORS is not enabled for this bucket.")) };
    match cors::preflight(config, &origin, &method, header_of(headers, "access-control-request-headers").as_deref()) {
        Some(h) => Ok(Reply { status: 200, headers: h, body: Body::empty() }),
        None => Err(forbidden(
            "This CORS request is not allowed. This is usually because the evaluation of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not allowed by the resource's CORS spec.",
        )),
    }
}

/// The CORS headers of the answer to a request from `origin` to `bucket` (none where the bucket
/// has no rule for it, or its settings cannot be read now: the answer stands without them).
async fn cors_headers(gw: &Gateway, bucket: &str, origin: &str, method: &str) -> Vec<(String, String)> {
    let Ok(c) = gw.base().await else { return Vec::new() };
    match bucket_settings(gw, &c, bucket).await {
        Ok(s) => s.cors.as_ref().map(|config| cors::actual(config, origin, method)).unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// The cipher that reads an object (or an upload's parts) with `metadata`, with the customer
/// key the request gives.
fn unseal(gw: &Gateway, r: &Req, metadata: &[(String, String)], using: sse::Use) -> Result<Option<Cipher>, S3Error> {
    let key = sse::read_key(&|n| r.header(n), using)?;
    sse::open(metadata, key.as_ref(), gw.keyring.as_ref())
}

/// PutBucketAcl / PutObjectAcl: the grants of a canned ACL, grant headers or a document
/// replace the bucket's or object's. The OM decides who may (WRITE_ACL on the bucket, or for
/// an object in its own entries: its owner's FULL_CONTROL, a WRITE_ACP grant). A canned ACL
/// is the object's owner's ([`OBJECT_OWNER`]), read as the bucket's owner where the caller
/// may not read the object's ACL (a holder of WRITE_ACP alone): the gateway acts for her as
/// for a policy's Allow, and the owner is not shown to the caller.
async fn put_acl(gw: &Gateway, c: &Client, r: &mut Req) -> R {
    let body = r.payload()?.read_all(DOCUMENT_BYTES_MAX).await?;
    let bucket_owner = bucket_info(c, &r.bucket).await?.owner;
    // An object's entries name its owner (a canned ACL's FULL_CONTROL, an owner left out of a
    // document) as the version read here has it, so they are set on that version alone: one
    // written meanwhile by another writer is read again, never handed to the first one's owner.
    // Its owner may change them whatever they say (S3's owner holds WRITE_ACP of what it owns,
    // so an ACL without his own grant does not lock him out): where the OM refuses him, the
    // change is made as the bucket's owner, of his version alone.
    for _ in 0..PUT_ACL_READS {
        let (owner, update_id) = match r.key.is_empty() {
            true => (bucket_owner.clone(), 0),
            false => {
                let k = match c.lookup_key_acl(S3_VOLUME, &r.bucket, &r.key).await {
                    Ok(k) => Ok(k),
                    Err(_) => gw.client_for(&bucket_owner).await?.lookup_key_acl(S3_VOLUME, &r.bucket, &r.key).await,
                };
                // No key: the change below answers NoSuchKey (or the caller's refusal).
                k.map_or_else(|_| (bucket_owner.clone(), 0), |k| (owner_in(&k.metadata, &bucket_owner).to_string(), k.update_id))
            }
        };
        let grants = acl::requested(&|n| r.header(n), Some(&body), &owner, &bucket_owner)?
            .ok_or_else(|| S3Error::new("MissingSecurityHeader", 400, "an ACL needs x-amz-acl, x-amz-grant-* headers or an AccessControlPolicy document"))?;
        let on = if r.key.is_empty() { On::Bucket } else { On::Object };
        let entries = acl::entries(&grants, &owner, on)?;
        if bucket_settings(gw, c, &r.bucket).await?.ownership == Some(Ownership::Enforced) {
            return Err(acls_disabled(&r.bucket));
        }
        check_public_acl(gw, c, &r.bucket, &entries).await?;
        check_grantees(gw, &entries, &owner, &bucket_owner).await?;
        let mut done = set_acls(c, &r.bucket, &r.key, &entries, update_id).await;
        if update_id != 0 && owner == r.user && matches!(&done, Err(e) if e.status() == Some(stratos_client::Status::PermissionDenied)) {
            done = set_acls(&*gw.client_for(&bucket_owner).await?, &r.bucket, &r.key, &entries, update_id).await;
        }
        match done {
            Err(e) if update_id != 0 && e.status() == Some(stratos_client::Status::PreconditionFailed) => continue,
            Err(e) => return Err(from_om(&e, &r.bucket, (!r.key.is_empty()).then_some(r.key.as_str()))),
            Ok(()) => return Ok(Reply::ok()),
        }
    }
    Err(S3Error::new("OperationAborted", 409, "the object was overwritten while its ACL was being set; try again"))
}

/// How many times PutObjectAcl reads an object that keeps being overwritten under it before it
/// answers OperationAborted (S3's 409 for a conflicting operation).
const PUT_ACL_READS: usize = 4;

/// Replaces the ACL entries of a bucket (`key` empty) or of an object; of an object's version
/// whose update id is `update_id` only, where it is not 0 (`PreconditionFailed` otherwise).
async fn set_acls(c: &Client, bucket: &str, key: &str, entries: &[AclEntry], update_id: u64) -> Result<(), stratos_client::ClientError> {
    c.submit(|op| {
        let mut s = op.init_set_acls();
        s.set_volume(S3_VOLUME);
        s.set_bucket(bucket);
        s.set_key(key);
        s.set_if_update_id(update_id);
        AclEntry::write_all(s.init_acls(entries.len() as u32), entries);
    })
    .await?;
    Ok(())
}

/// ListMultipartUploads: the bucket's uploads in progress by key and upload id, after
/// `key-marker` / `upload-id-marker`, at most `max-uploads` (1000) uploads and common prefixes
/// together. With a `delimiter`, the uploads of keys that hold it after the prefix are rolled
/// up into their common prefix: the OM returns each group's first upload and seeks past the
/// rest, so a page is one OM call however many prefixes it holds. An upload's initiator and
/// owner is who began it (its [`OBJECT_OWNER`] pair, which the OM lists with it), else the
/// bucket's owner.
async fn list_uploads(c: &Client, r: &Req) -> R {
    let prefix = r.q("prefix").unwrap_or("");
    let delimiter = r.q("delimiter").unwrap_or("");
    let key_marker = r.q("key-marker").unwrap_or("");
    let upload_marker = if key_marker.is_empty() { "" } else { r.q("upload-id-marker").unwrap_or("") };
    let max: usize = match r.q("max-uploads") {
        None => 1000,
        Some(v) => v.parse::<i64>().map_err(|_| S3Error::invalid_argument("max-uploads is not a number"))?.clamp(0, 1000) as usize,
    };
    let owner = bucket_info(c, &r.bucket).await?.owner;
    // Where the OM's listing resumes (exclusive): a key marker alone starts after every upload
    // of that key ("~" sorts after every upload id), a common prefix given as the marker after
    // every key under it.
    let (mut key_at, mut upload_at) = if marker_is_common_prefix(key_marker, prefix, delimiter) {
        (after_prefix(key_marker), "~".to_string())
    } else if upload_marker.is_empty() && !key_marker.is_empty() {
        (key_marker.to_string(), "~".to_string())
    } else {
        (key_marker.to_string(), upload_marker.to_string())
    };
    let mut uploads: Vec<stratos_client::UploadListed> = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut next: Option<(String, String)> = None;
    let mut truncated = false;
    if max > 0 {
        'pages: loop {
            let want = (max - uploads.len() - prefixes.len() + 1).min(1000) as u32;
            // The OM rolls each common prefix's uploads up into the first and seeks past the
            // rest, so a page of common prefixes is one call, not one per prefix.
            let page = c.list_uploads(S3_VOLUME, &r.bucket, prefix, (&key_at, &upload_at), want, OBJECT_OWNER, delimiter).await.map_err(|e| from_om(&e, &r.bucket, None))?;
            for upload in page.items {
                // An OM of a build before the roll-up answers every upload: those inside a
                // common prefix already listed are skipped here instead.
                if (upload.key.as_str(), upload.upload_id.as_str()) <= (key_at.as_str(), upload_at.as_str()) {
                    continue;
                }
                if uploads.len() + prefixes.len() == max {
                    truncated = true;
                    break 'pages;
                }
                match common_prefix(&upload.key, prefix, delimiter) {
                    Some(cp) => {
                        // Resume past the whole group (or at this upload, for a key of the group
                        // that sorts after that point: the listing only moves forward).
                        let past = after_prefix(&cp);
                        (key_at, upload_at) = if past > upload.key { (past, "~".to_string()) } else { (upload.key.clone(), upload.upload_id.clone()) };
                        if prefixes.last() != Some(&cp) && cp != key_marker {
                            next = Some((cp.clone(), String::new()));
                            prefixes.push(cp);
                        }
                    }
                    None => {
                        next = Some((upload.key.clone(), upload.upload_id.clone()));
                        (key_at, upload_at) = (upload.key.clone(), upload.upload_id.clone());
                        uploads.push(upload);
                    }
                }
            }
            if !page.truncated {
                break;
            }
        }
    }
    let mut w = Writer::new("ListMultipartUploadsResult");
    w.elem("Bucket", &r.bucket).elem("KeyMarker", key_marker).elem("UploadIdMarker", upload_marker);
    if let Some((k, u)) = &next {
        w.elem("NextKeyMarker", k).elem("NextUploadIdMarker", u);
    }
    if !prefix.is_empty() {
        w.elem("Prefix", prefix);
    }
    if !delimiter.is_empty() {
        w.elem("Delimiter", delimiter);
    }
    w.elem("MaxUploads", max).elem("IsTruncated", truncated);
    for u in &uploads {
        let by = if u.value.is_empty() { &owner } else { &u.value };
        w.open("Upload").elem("Key", &u.key).elem("UploadId", &u.upload_id);
        w.user("Initiator", by).user("Owner", by);
        w.elem("StorageClass", "STANDARD").elem("Initiated", iso8601(u.created_ms)).close("Upload");
    }
    for p in &prefixes {
        w.open("CommonPrefixes").elem("Prefix", p).close("CommonPrefixes");
    }
    Ok(Reply::xml(w.finish("ListMultipartUploadsResult")))
}

// ---------------------------------------------------------------------------------------------
// Multipart upload

fn upload_id(r: &Req) -> Result<String, S3Error> {
    let id = r.q("uploadId").unwrap_or("");
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(S3Error::new("NoSuchUpload", 404, format!("{id:?} is not an upload id")));
    }
    Ok(id.to_string())
}

async fn initiate_upload(gw: &Gateway, c: &Client, r: &mut Req) -> R {
    let acl = upload_acl(gw, c, r).await?;
    let mut metadata = metadata_of(r)?;
    metadata.extend(acl);
    // The upload's parts are encrypted as the completed object will be: the sealing is the
    // upload's (every part reads it back, see `upload_part`).
    metadata.extend(seal(gw, c, r).await?.0);
    // The checksum its object is to get: every part keeps one of that algorithm, and the
    // completion combines them.
    let asked = checksum::for_upload(&|n| r.header(n))?;
    if let Some((a, kind)) = asked {
        metadata.push((checksum::UPLOAD_ALGORITHM.into(), a.name().into()));
        metadata.push((checksum::TYPE.into(), kind.name().into()));
    }
    r.payload()?.read_all(DOCUMENT_BYTES_MAX).await?;
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    let done = c
        .submit(|op| {
            let mut u = op.init_initiate_upload();
            u.set_volume(S3_VOLUME);
            u.set_bucket(&bucket);
            u.set_key(&key);
            object::set_pairs(u.init_metadata(metadata.len() as u32), &metadata);
        })
        .await
        .map_err(|e| from_om(&e, &bucket, Some(&key)))?;
    let stratos_client::Done::UploadStarted { upload_id } = done else { return Err(S3Error::internal(format!("unexpected reply to initiateUpload: {done:?}"))) };
    let mut w = Writer::new("InitiateMultipartUploadResult");
    w.elem("Bucket", &bucket).elem("Key", &key).elem("UploadId", &upload_id);
    let mut reply = Reply::xml(w.finish("InitiateMultipartUploadResult")).sse(&metadata);
    if let Some((a, kind)) = asked {
        reply = reply.header("x-amz-checksum-algorithm", a.name()).header("x-amz-checksum-type", kind.name());
    }
    Ok(reply)
}

async fn upload_part(gw: &Rc<Gateway>, c: &Client, r: &mut Req) -> R {
    let id = upload_id(r)?;
    let part: u32 = r.q("partNumber").and_then(|p| p.parse().ok()).filter(|p| (1..=10_000).contains(p)).ok_or_else(|| S3Error::invalid_argument("partNumber must be 1 to 10000"))?;
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    let finish = Finish::Part { upload_id: &id, part };
    // The upload's sealing (one OM read; it also refuses a part of an unknown upload before
    // its bytes are read): a part is encrypted with the upload's key, and an SSE-C part
    // must come with the upload's customer key.
    let upload = c.list_parts(S3_VOLUME, &bucket, &key, &id, 10_000, 1).await.map_err(|e| from_om(&e, &bucket, Some(&key)))?;
    let cipher = unseal(gw, r, &upload.metadata, sse::Use::Upload)?;
    // An upload that asked for a checksum keeps one of its algorithm with every part: the one
    // the request sent, checked, or else one the gateway computes.
    let wanted = checksum::of_upload(&upload.metadata).map(|(a, _)| a);
    if let Some(source) = r.header("x-amz-copy-source") {
        // UploadPartCopy: the part is a byte range of another object.
        let (sb, sk) = copy_source(&source)?;
        let src = r.source_as.as_deref().unwrap_or(c).lookup_key(S3_VOLUME, &sb, &sk).await.map_err(|e| from_om(&e, &sb, Some(&sk)))?;
        check_copy_conditions(r, meta(&src.metadata, ETAG).unwrap_or_default(), src.modified_ms)?;
        let (start, end) = match r.header("x-amz-copy-source-range") {
            None => (0, src.data_size),
            Some(range) => {
                // `bytes=FIRST-LAST`, both given, within the source.
                let bounds = range.trim().strip_prefix("bytes=").and_then(|x| x.split_once('-')).and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)));
                match bounds {
                    Some((s, e)) if s <= e && e < src.data_size => (s, e + 1),
                    Some(_) => return Err(S3Error::new("InvalidRange", 416, format!("x-amz-copy-source-range {range} is not within the source's {} bytes", src.data_size))),
                    None => return Err(S3Error::invalid_argument(format!("x-amz-copy-source-range {range:?}: bytes=FIRST-LAST"))),
                }
            }
        };
        let src_cipher = unseal(gw, r, &src.metadata, sse::Use::CopySource)?;
        r.payload()?.read_all(0).await?;
        let reader = Reader::new(gw.clone(), src.blocks.clone(), start, end).decrypting(src_cipher).hashing(wanted);
        let w = object::write(gw, c, &bucket, &key, &mut Input::Object(reader), end - start, &[], finish, cipher.as_ref()).await?;
        let mut x = Writer::new("CopyPartResult");
        x.elem("LastModified", iso8601(now_ms())).elem("ETag", format!("\"{}\"", w.etag));
        if let Some((a, v)) = &w.checksum {
            x.elem(&format!("Checksum{}", a.name()), checksum::encode(v));
        }
        return Ok(Reply::xml(x.finish("CopyPartResult")).sse(&upload.metadata));
    }
    let md5 = content_md5(r)?;
    let mut payload = r.payload()?;
    let length = payload_length(r, &payload)?.ok_or_else(|| S3Error::new("MissingContentLength", 411, "a part needs Content-Length"))?;
    if length > PUT_BYTES_MAX {
        return Err(S3Error::new("EntityTooLarge", 400, format!("a part of {length} bytes, at most {PUT_BYTES_MAX}")));
    }
    payload.expect_md5(md5);
    if let Some(a) = wanted {
        match payload.announced() {
            Some(sent) if sent != a => {
                let (want, sent) = (a.name().to_ascii_lowercase(), sent.name().to_ascii_lowercase());
                return Err(S3Error::invalid_request(format!("Checksum Type mismatch occurred, expected checksum Type: {want}, actual checksum Type: {sent}")));
            }
            _ => payload.compute(a),
        }
    }
    let result = object::write(gw, c, &bucket, &key, &mut Input::Payload(&mut payload), length, &[], finish, cipher.as_ref()).await;
    let w = drained(result, &mut payload).await?;
    Ok(Reply::ok().header("etag", format!("\"{}\"", w.etag)).sse(&upload.metadata).checksum(&w))
}

async fn complete_upload(gw: &Gateway, c: &Client, r: &mut Req) -> R {
    let id = upload_id(r)?;
    // An SSE-C upload completes only with its customer key (S3's rule); the answer tells the
    // encryption. One OM read, as a part upload's.
    let upload = match c.list_parts(S3_VOLUME, &r.bucket, &r.key, &id, 10_000, 1).await {
        Ok(u) => Some(u.metadata),
        // A completion repeated after the upload ended: answered below.
        Err(e) if e.status() == Some(stratos_client::Status::NoSuchUpload) => None,
        Err(e) => return Err(from_om(&e, &r.bucket, Some(&r.key))),
    };
    if let Some(m) = &upload {
        unseal(gw, r, m, sse::Use::Upload)?;
    }
    let condition = write_condition(r)?;
    let body = r.payload_not_checksummed()?.read_all(DOCUMENT_BYTES_MAX).await?;
    let doc = xml::document(&body, "CompleteMultipartUpload")?;
    let mut parts: Vec<ListedPart> = Vec::new();
    for p in doc.children_named("Part") {
        let n = p.child("PartNumber").and_then(|n| n.text.trim().parse::<u32>().ok()).ok_or_else(|| S3Error::malformed_xml("a <Part> without a valid <PartNumber>"))?;
        let etag = p.child("ETag").map(|e| e.text.trim().trim_matches('"').to_string()).ok_or_else(|| S3Error::malformed_xml("a <Part> without <ETag>"))?;
        let checksum = checksum::Algorithm::ALL.into_iter().find_map(|a| p.child(&format!("Checksum{}", a.name())).map(|c| (a, c.text.trim().to_string())));
        // A part listed again right after itself (a client that uploaded it twice, the two
        // racing, and listed both answers) stands once, as its last listing says: the part
        // stored is the upload that finished last, and the list is in the order the answers
        // came (ceph's test_multipart_resend_first_finishes_last; RGW and MinIO accept it).
        // Any other order is the OM's InvalidPartOrder.
        match parts.last_mut() {
            Some(last) if last.0 == n => *last = (n, etag, checksum),
            _ => parts.push((n, etag, checksum)),
        }
    }
    if parts.len() > 10_000 {
        return Err(S3Error::malformed_xml(format!("{} parts, at most 10000", parts.len())));
    }
    // S3's multipart ETag: the MD5 of the parts' MD5s, then "-" and the part count.
    let mut all = Vec::with_capacity(parts.len() * 16);
    for (n, e, _) in &parts {
        // 32 hex digits (any other text, multibyte characters and signs included, is not a
        // part's ETag).
        let d = crate::sigv4::unhex_n::<16>(e);
        let Some(d) = d else {
            // No such upload (and so no such part): the upload's error is the one that tells.
            return Err(match upload {
                None => S3Error::no_such_upload(),
                Some(_) => S3Error::new("InvalidPart", 400, format!("part {n}: {e:?} is not the ETag of a part")),
            });
        };
        all.extend(d);
    }
    let etag = format!("{}-{}", object::hex(&crate::md5sum::digest(&all)), parts.len());
    let object_size = mp_object_size(r)?;
    let (set, pinned) = match &upload {
        Some(m) => {
            // The parts as stored, read only where a checksum or the size is to be checked.
            let stored = match object_size.is_some() || checksum::of_upload(m).is_some() {
                true => stored_parts(c, r, &id).await?,
                false => HashMap::new(),
            };
            check_object_size(object_size, &parts, &stored)?;
            completion_checksum(r, m, &parts, &stored)?
        }
        None => (Vec::new(), Vec::new()),
    };
    // The ACL the upload asked for (upload_acl), given to the object as the OM makes it.
    let acl_asked = match upload.as_deref().and_then(|m| meta(m, UPLOAD_ACL)) {
        Some(asked) => acl::decode(asked).map_err(|e| S3Error::internal(format!("the upload's ACL {asked:?}: {e}")))?,
        None => Vec::new(),
    };
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    let done = c.submit(|op| {
        let mut u = op.init_complete_upload();
        u.set_volume(S3_VOLUME);
        u.set_bucket(&bucket);
        u.set_key(&key);
        u.set_upload_id(&id);
        u.set_etag(&etag);
        let mut l = u.reborrow().init_parts(parts.len() as u32);
        for (i, (n, e, _)) in parts.iter().enumerate() {
            l.reborrow().get(i as u32).set_part_number(*n);
            l.reborrow().get(i as u32).set_etag(e);
            if let Some(c) = pinned.get(i) {
                l.reborrow().get(i as u32).set_checksum(c);
            }
        }
        object::set_pairs(u.reborrow().init_set(set.len() as u32), &set);
        if !acl_asked.is_empty() {
            AclEntry::write_all(u.reborrow().init_acls(acl_asked.len() as u32), &acl_asked);
        }
        object::set_condition!(u, &condition);
    })
    .await;
    let mut checksums = set;
    if let Err(e) = done {
        // A completion repeated (its answer lost): S3 answers it again while the key is the
        // one it made, with the checksum it got.
        let made = match e.status() {
            Some(stratos_client::Status::NoSuchUpload) => c.lookup_key(S3_VOLUME, &bucket, &key).await.ok().filter(|k| meta(&k.metadata, ETAG) == Some(etag.as_str())),
            _ => None,
        };
        let Some(k) = made else { return Err(from_om(&e, &bucket, Some(&key))) };
        if let Some(want) = object_size
            && want != k.data_size
        {
            return Err(object_size_mismatch(want, k.data_size));
        }
        checksums = k.metadata.iter().filter(|(n, _)| n.starts_with(checksum::METADATA_PREFIX)).cloned().collect();
    }
    let mut w = Writer::new("CompleteMultipartUploadResult");
    w.elem("Location", format!("/{bucket}/{key}")).elem("Bucket", &bucket).elem("Key", &key).elem("ETag", format!("\"{etag}\""));
    for (a, v) in checksum::stored(&checksums) {
        w.elem(&format!("Checksum{}", a.name()), v).elem("ChecksumType", checksum::object_type(&checksums));
    }
    let mut reply = Reply::xml(w.finish("CompleteMultipartUploadResult")).sse(&upload.unwrap_or_default());
    // Its size and tags decide which rules expire it: read back only where the bucket has rules.
    if bucket_settings(gw, c, &bucket).await.is_ok_and(|s| !s.lifecycle.is_empty())
        && let Ok(k) = c.lookup_key(S3_VOLUME, &bucket, &key).await
    {
        reply.headers.extend(expiration(gw, c, &bucket, &key, k.data_size, k.modified_ms, &k.metadata).await);
    }
    Ok(reply)
}

/// A part as a completion lists it: number, ETag, and the checksum it names, if any.
type ListedPart = (u32, String, Option<(checksum::Algorithm, String)>);

/// What [`completion_checksum`] gives a completion: the pairs the key gets, and the checksum
/// each listed part must still have.
type CompletionChecksum = (Vec<(String, String)>, Vec<String>);

/// The object size a completion expects (`x-amz-mp-object-size`, S3's `MpuObjectSize`), if it
/// names one.
fn mp_object_size(r: &Req) -> Result<Option<u64>, S3Error> {
    let Some(v) = r.header("x-amz-mp-object-size") else { return Ok(None) };
    match v.trim().parse::<u64>() {
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(S3Error::invalid_argument(format!("x-amz-mp-object-size {v:?}: a size in bytes"))),
    }
}

fn object_size_mismatch(want: u64, got: u64) -> S3Error {
    S3Error::invalid_request(format!("x-amz-mp-object-size is {want}, the parts listed make an object of {got} bytes"))
}

/// Refuses a completion whose expected size (`x-amz-mp-object-size`) is not the sum of its
/// listed parts' sizes as stored. A part that is missing or stored with another ETag is left to
/// the completion, whose `InvalidPart` tells; a part re-uploaded after this read has another
/// ETag, so the completion refuses it too: the size checked is the size the object gets.
fn check_object_size(want: Option<u64>, parts: &[ListedPart], stored: &HashMap<u32, PartInfo>) -> Result<(), S3Error> {
    let Some(want) = want else { return Ok(()) };
    let got: Option<u64> = parts.iter().map(|(n, e, _)| stored.get(n).filter(|p| p.etag.trim_matches('"').eq_ignore_ascii_case(e)).map(|p| p.size)).sum();
    match got {
        Some(got) if got != want => Err(object_size_mismatch(want, got)),
        _ => Ok(()),
    }
}

/// Every part of an upload as the OM keeps it, by number, a page of the OM's at a time.
async fn stored_parts(c: &Client, r: &Req, upload_id: &str) -> Result<HashMap<u32, PartInfo>, S3Error> {
    let mut stored = HashMap::new();
    let mut marker = 0;
    loop {
        let page = c.list_parts(S3_VOLUME, &r.bucket, &r.key, upload_id, marker, 1000).await.map_err(|e| from_om(&e, &r.bucket, Some(&r.key)))?;
        let next = page.parts.last().map(|p| p.part_number).filter(|_| page.truncated);
        stored.extend(page.parts.into_iter().map(|p| (p.part_number, p)));
        match next {
            Some(n) => marker = n,
            None => return Ok(stored),
        }
    }
}

/// What a completion of an upload that asked for a checksum (its `metadata`) adds: the pairs
/// that give the object its checksum, made from the parts' (read from the OM, which keeps one
/// with each part), and for each listed part the checksum it must still have when the OM
/// completes the upload (so the object's checksum is of the parts it gets, even if a part is
/// uploaded again meanwhile). As S3 answers: a part listed with a checksum other than its own
/// is `InvalidPart`; the object's checksum sent in a header (`x-amz-checksum-*`, composite with
/// or without its `-N`) that differs is `BadDigest`, one of another algorithm, or with an upload
/// that asked for none, `InvalidRequest`. An upload whose parts were stored without checksums
/// (before this gateway kept them) completes without one, unless the header asks.
fn completion_checksum(r: &Req, metadata: &[(String, String)], parts: &[ListedPart], stored: &HashMap<u32, PartInfo>) -> Result<CompletionChecksum, S3Error> {
    // The object's checksum as its `x-amz-checksum-*` header gives it (one at most, read as a
    // body's would be but for a composite one's `-N`, after the digest).
    let object_checksum = |n: &str| {
        let v = r.header(n).filter(|_| n.starts_with("x-amz-checksum-"))?;
        let v = v.trim();
        Some(v.rsplit_once('-').filter(|(_, n)| n.bytes().all(|b| b.is_ascii_digit())).map_or(v, |(d, _)| d).to_string())
    };
    let claimed = checksum::requested(&object_checksum, false)?.and_then(|w| Some((w.algorithm, w.value?)));
    let Some((algorithm, kind)) = checksum::of_upload(metadata) else {
        return match claimed {
            Some((a, _)) => Err(S3Error::invalid_request(format!("{}: the upload was created without a checksum algorithm", a.header()))),
            None => Ok((Vec::new(), Vec::new())),
        };
    };
    if let Some((a, _)) = &claimed
        && *a != algorithm
    {
        return Err(S3Error::invalid_request(format!("{}: the upload was created with {}", a.header(), algorithm.name())));
    }
    if let Some(t) = r.header("x-amz-checksum-type")
        && !t.trim().eq_ignore_ascii_case(kind.name())
    {
        return Err(S3Error::invalid_request(format!("x-amz-checksum-type {}: the upload was created with {}", t.trim(), kind.name())));
    }
    let mut digests = Vec::with_capacity(parts.len());
    let mut pinned = Vec::with_capacity(parts.len());
    for (n, _, listed) in parts {
        if let Some((a, _)) = listed
            && *a != algorithm
        {
            return Err(S3Error::new("InvalidPart", 400, format!("part {n} is listed with a {} checksum; the upload's are {}", a.name(), algorithm.name())));
        }
        // A part not uploaded: the OM's answer (InvalidPart) tells.
        let Some(PartInfo { size, checksum: value, .. }) = stored.get(n) else { return Ok((Vec::new(), Vec::new())) };
        let Some(digest) = checksum::parse_part_value(value).filter(|(a, _)| *a == algorithm).and_then(|(_, v)| algorithm.decode(v).ok()) else {
            if claimed.is_some() {
                return Err(S3Error::invalid_request(format!("part {n} was stored without a {} checksum, so the object's cannot be checked", algorithm.name())));
            }
            return Ok((Vec::new(), Vec::new()));
        };
        if let Some((_, l)) = listed
            && algorithm.decode(l).ok().as_ref() != Some(&digest)
        {
            return Err(S3Error::new("InvalidPart", 400, format!("part {n}: its {} is {}, the completion lists {l}", algorithm.name(), checksum::encode(&digest))));
        }
        digests.push((digest, *size));
        pinned.push(value.clone());
    }
    let value = checksum::of_object(algorithm, kind, &digests).ok_or_else(|| S3Error::internal(format!("{} {} cannot be combined", algorithm.name(), kind.name())))?;
    if let Some((_, want)) = &claimed {
        let got = value.split('-').next().map(|d| algorithm.decode(d)).transpose()?;
        if got.as_ref() != Some(want) {
            return Err(S3Error::new("BadDigest", 400, format!("The {} you specified did not match the calculated checksum.", algorithm.name())));
        }
    }
    // Where they fit the key's pairs (the upload's, which hold its algorithm and type, then the
    // ETag): an upload whose metadata leaves no room completes without them rather than not at
    // all. The parts' checksums, for a GET of one part, also only where they fit a value.
    let mut room = METADATA_PAIRS_MAX.saturating_sub(metadata.len() + 1);
    let mut set = Vec::new();
    let needed = 1 + usize::from(!metadata.iter().any(|(n, _)| n == checksum::TYPE));
    if room >= needed {
        set.push((algorithm.metadata_key(), value));
        set.push((checksum::TYPE.to_string(), kind.name().to_string()));
        room -= needed;
    }
    let each = digests.iter().map(|(d, _)| checksum::encode(d)).collect::<Vec<_>>().join(",");
    if room > 0 && !set.is_empty() && each.len() <= METADATA_VALUE_BYTES_MAX {
        set.push((checksum::PARTS.to_string(), each));
    }
    Ok((set, pinned))
}

async fn abort_upload(c: &Client, r: &Req) -> R {
    let id = upload_id(r)?;
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    c.submit(|op| {
        let mut u = op.init_abort_upload();
        u.set_volume(S3_VOLUME);
        u.set_bucket(&bucket);
        u.set_key(&key);
        u.set_upload_id(&id);
    })
    .await
    .map_err(|e| from_om(&e, &bucket, Some(&key)))?;
    Ok(Reply::status(204))
}

async fn list_parts(c: &Client, r: &Req) -> R {
    let id = upload_id(r)?;
    let marker: u32 = match r.q("part-number-marker") {
        None | Some("") => 0,
        Some(v) => v.parse().map_err(|_| S3Error::invalid_argument("part-number-marker is not a number"))?,
    };
    let max: u32 = match r.q("max-parts") {
        None => 1000,
        Some(v) => v.parse::<i64>().map_err(|_| S3Error::invalid_argument("max-parts is not a number"))?.clamp(1, 1000) as u32,
    };
    let bucket_owner = bucket_info(c, &r.bucket).await?.owner;
    let page = c.list_parts(S3_VOLUME, &r.bucket, &r.key, &id, marker, max).await.map_err(|e| from_om(&e, &r.bucket, Some(&r.key)))?;
    // Who began the upload owns its object-to-be (upload_acl).
    let owner = owner_in(&page.metadata, &bucket_owner).to_string();
    let mut w = Writer::new("ListPartsResult");
    w.elem("Bucket", &r.bucket).elem("Key", &r.key).elem("UploadId", &id);
    w.user("Initiator", &owner).user("Owner", &owner);
    w.elem("StorageClass", "STANDARD").elem("PartNumberMarker", marker);
    w.elem("NextPartNumberMarker", page.parts.last().map_or(marker, |p| p.part_number));
    w.elem("MaxParts", max).elem("IsTruncated", page.truncated);
    if let Some((a, kind)) = checksum::of_upload(&page.metadata) {
        w.elem("ChecksumAlgorithm", a.name()).elem("ChecksumType", kind.name());
    }
    for p in &page.parts {
        w.open("Part").elem("PartNumber", p.part_number).elem("LastModified", iso8601(p.modified_ms)).elem("ETag", format!("\"{}\"", p.etag)).elem("Size", p.size);
        if let Some((a, v)) = checksum::parse_part_value(&p.checksum) {
            w.elem(&format!("Checksum{}", a.name()), v);
        }
        w.close("Part");
    }
    Ok(Reply::xml(w.finish("ListPartsResult")))
}

// ---------------------------------------------------------------------------------------------
// Listing

/// A name after every name a key can have that starts with `prefix` (bar keys of `prefix`
/// and U+10FFFF repeated, which [`list_objects`] steps over one by one): a listing that
/// starts there has skipped them all. Keys and listing starts are at most 1024 bytes and
/// compare as bytes; U+10FFFF is the greatest character in UTF-8.
fn after_prefix(prefix: &str) -> String {
    let mut s = prefix.to_string();
    s.extend(std::iter::repeat_n('\u{10FFFF}', 1024usize.saturating_sub(prefix.len()) / 4));
    s
}

/// The common prefix `name` rolls up into under a listing's `prefix` and `delimiter`: up to and
/// including the first delimiter after the prefix (None without a delimiter, or without one
/// in the name).
fn common_prefix(name: &str, prefix: &str, delimiter: &str) -> Option<String> {
    if delimiter.is_empty() {
        return None;
    }
    let rest = &name[prefix.len().min(name.len())..];
    rest.find(delimiter).map(|at| name[..prefix.len() + at + delimiter.len()].to_string())
}

/// Whether a listing's marker is a common prefix (as a page that ended on one gives it), which
/// the next page starts after whole.
fn marker_is_common_prefix(marker: &str, prefix: &str, delimiter: &str) -> bool {
    !delimiter.is_empty() && marker.ends_with(delimiter) && marker.starts_with(prefix)
}

/// The three listings of a bucket's keys: ListObjects, ListObjectsV2, ListObjectVersions
/// (without versioning, each key is its one version, `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    V1,
    V2,
    Versions,
}

async fn list_objects(c: &Client, r: &Req, kind: Listing) -> R {
    let v2 = kind == Listing::V2;
    let bucket = r.bucket.clone();
    let prefix = r.q("prefix").unwrap_or("").to_string();
    let delimiter = r.q("delimiter").unwrap_or("").to_string();
    let max_keys: usize = match r.q("max-keys") {
        None => 1000,
        Some(v) => v.parse::<i64>().map_err(|_| S3Error::invalid_argument("max-keys is not a number"))?.clamp(0, 1000) as usize,
    };
    let url = match r.q("encoding-type") {
        None => false,
        Some("url") => true,
        Some(other) => return Err(S3Error::invalid_argument(format!("invalid encoding-type {other:?}: only url"))),
    };
    let token = if v2 { r.q("continuation-token").map(str::to_string) } else { None };
    let marker = match kind {
        Listing::V2 => token.clone().or_else(|| r.q("start-after").map(str::to_string)).unwrap_or_default(),
        Listing::V1 => r.q("marker").unwrap_or("").to_string(),
        Listing::Versions => r.q("key-marker").unwrap_or("").to_string(),
    };
    let info = bucket_info(c, &bucket).await?;

    let mut contents: Vec<stratos_client::KeyInfo> = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut last = String::new();
    // Where the next page of the OM's listing starts (exclusive), and whether a common prefix
    // given as the marker is to be skipped whole.
    let mut start = if marker_is_common_prefix(&marker, &prefix, &delimiter) { after_prefix(&marker) } else { marker.clone() };
    if max_keys > 0 {
        'pages: loop {
            let want = (max_keys - contents.len() - prefixes.len() + 1).min(1000) as u32;
            // The OM rolls each common prefix's keys up into the first and seeks past the rest,
            // so a page of common prefixes is one call, not one per prefix.
            let page = c.list_keys_rolled_up(S3_VOLUME, &bucket, &prefix, &start, want, &delimiter).await.map_err(|e| from_om(&e, &bucket, None))?;
            for k in page.items {
                // An OM of a build before the roll-up answers every key: those inside a
                // common prefix already listed are skipped here instead.
                if k.name <= start {
                    continue;
                }
                let cp = common_prefix(&k.name, &prefix, &delimiter);
                if contents.len() + prefixes.len() == max_keys {
                    truncated = true;
                    break 'pages;
                }
                match cp {
                    Some(cp) => {
                        start = after_prefix(&cp);
                        if prefixes.last() != Some(&cp) && cp != marker {
                            last = cp.clone();
                            prefixes.push(cp);
                        }
                    }
                    None => {
                        last = k.name.clone();
                        start = k.name.clone();
                        contents.push(k);
                    }
                }
            }
            if !page.truncated {
                break;
            }
        }
    }

    let enc = |s: &str| if url { url_encode(s) } else { s.to_string() };
    let root = if kind == Listing::Versions { "ListVersionsResult" } else { "ListBucketResult" };
    let mut w = Writer::new(root);
    // ListObjects (v1) answers the prefix as given (botocore decodes it only in v2).
    w.elem("Name", &bucket).elem("Prefix", if kind == Listing::V1 { prefix.clone() } else { enc(&prefix) });
    match kind {
        Listing::V2 => {
            if let Some(t) = &token {
                w.elem("ContinuationToken", t);
            }
            if let Some(s) = r.q("start-after") {
                w.elem("StartAfter", enc(s));
            }
            w.elem("KeyCount", contents.len() + prefixes.len());
        }
        Listing::V1 => {
            w.elem("Marker", enc(&marker));
        }
        Listing::Versions => {
            w.elem("KeyMarker", enc(&marker)).elem("VersionIdMarker", r.q("version-id-marker").unwrap_or(""));
        }
    }
    w.elem("MaxKeys", max_keys);
    if !delimiter.is_empty() {
        w.elem("Delimiter", enc(&delimiter));
    }
    if url {
        w.elem("EncodingType", "url");
    }
    w.elem("IsTruncated", truncated);
    if truncated {
        match kind {
            Listing::V2 => {
                w.elem("NextContinuationToken", &last);
            }
            Listing::V1 if !delimiter.is_empty() => {
                w.elem("NextMarker", enc(&last));
            }
            Listing::V1 => {}
            Listing::Versions => {
                w.elem("NextKeyMarker", enc(&last)).elem("NextVersionIdMarker", "null");
            }
        }
    }
    let owner = !v2 || r.q("fetch-owner") == Some("true");
    let entry = if kind == Listing::Versions { "Version" } else { "Contents" };
    for k in &contents {
        w.open(entry).elem("Key", enc(&k.name));
        if kind == Listing::Versions {
            w.elem("VersionId", "null").elem("IsLatest", true);
        }
        w.elem("LastModified", iso8601(k.modified_ms));
        w.elem("ETag", format!("\"{}\"", meta(&k.metadata, ETAG).unwrap_or_default()));
        w.elem("Size", k.data_size).elem("StorageClass", "STANDARD");
        if owner {
            w.user("Owner", owner_in(&k.metadata, &info.owner));
        }
        w.close(entry);
    }
    for p in &prefixes {
        w.open("CommonPrefixes").elem("Prefix", enc(p)).close("CommonPrefixes");
    }
    Ok(Reply::xml(w.finish(root)))
}

// ---------------------------------------------------------------------------------------------
// Objects

fn meta<'a>(m: &'a [(String, String)], name: &str) -> Option<&'a str> {
    m.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The metadata a PUT stores from its headers: the stored headers, `x-amz-meta-*` and the tags
/// of `x-amz-tagging`.
fn metadata_of(r: &Req) -> Result<Vec<(String, String)>, S3Error> {
    let mut m = Vec::new();
    for h in STORED_HEADERS {
        if let Some(v) = r.header(h) {
            // `aws-chunked` is how this request's body came, not how the object is encoded.
            let v = if h == "content-encoding" { v.split(',').map(str::trim).filter(|p| *p != "aws-chunked").collect::<Vec<_>>().join(", ") } else { v };
            if !v.is_empty() {
                m.push((h.to_string(), v));
            }
        }
    }
    let mut user_bytes = 0;
    for (n, v) in &r.headers {
        let n = n.to_ascii_lowercase();
        if n.starts_with("x-amz-meta-") {
            user_bytes += n.len() - "x-amz-meta-".len() + v.len();
            match m.iter_mut().find(|(k, _)| *k == n) {
                Some((_, old)) => *old = format!("{old},{v}"),
                None => m.push((n, v.clone())),
            }
        }
    }
    if user_bytes > USER_METADATA_BYTES_MAX {
        return Err(S3Error::new("MetadataTooLarge", 400, format!("{user_bytes} bytes of x-amz-meta- headers, at most {USER_METADATA_BYTES_MAX}")));
    }
    if let Some(t) = r.header("x-amz-tagging") {
        let tags = parse_query(&t).map_err(|_| S3Error::new("InvalidTag", 400, "x-amz-tagging is not a URL-encoded query"))?;
        m.extend(check_tags(tags, TAGS_MAX)?.into_iter().map(|(k, v)| (format!("{TAG}{k}"), v)));
    }
    Ok(m)
}

fn check_tags(tags: Vec<(String, String)>, max: usize) -> Result<Vec<(String, String)>, S3Error> {
    if tags.len() > max {
        return Err(S3Error::new("InvalidTag", 400, format!("{} tags, at most {max}", tags.len())));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        if k.is_empty() || k.chars().count() > TAG_KEY_MAX || v.chars().count() > TAG_VALUE_MAX {
            return Err(S3Error::new("InvalidTag", 400, format!("a tag key is 1 to {TAG_KEY_MAX} characters and its value at most {TAG_VALUE_MAX}")));
        }
        if tags[..i].iter().any(|(o, _)| o == k) {
            return Err(S3Error::new("InvalidTag", 400, format!("the tag {k} is given twice")));
        }
    }
    Ok(tags)
}

/// The write condition of a PUT's (or a completion's) `If-None-Match` / `If-Match`: `*` or
/// one ETag each, decided by the shard when the commit applies.
fn write_condition(r: &Req) -> Result<Condition, S3Error> {
    // One `*` or one ETag: the shard checks one pair (a list's every member would need
    // checking, and a list taken as one ETag would never match: an If-None-Match that lets
    // everything through).
    let one = |h: &str, v: &str| -> Result<String, S3Error> {
        let mut tags = etags(v);
        match (tags.next(), tags.next()) {
            (Some(t), None) if !t.is_empty() => Ok(t.to_string()),
            _ => Err(S3Error::not_implemented(&format!("{h} with a list of ETags on a write (one ETag or *)"))),
        }
    };
    match (r.header("if-none-match"), r.header("if-match")) {
        (Some(_), Some(_)) => Err(S3Error::not_implemented("If-None-Match together with If-Match on a write")),
        (Some(v), None) => Ok(match one("If-None-Match", &v)?.as_str() {
            "*" => Condition::Absent,
            t => Condition::NotETag(t.to_string()),
        }),
        (None, Some(v)) => Ok(match one("If-Match", &v)?.as_str() {
            "*" => Condition::Present,
            t => Condition::ETag(t.to_string()),
        }),
        (None, None) => Ok(Condition::Any),
    }
}

/// The ETags an `If-Match`-style header lists (`*`, or `"a", W/"b"`), unquoted.
fn etags(header: &str) -> impl Iterator<Item = &str> {
    header.split(',').map(|e| e.trim().trim_start_matches("W/").trim_matches('"'))
}

fn content_length(r: &Req) -> Result<Option<u64>, S3Error> {
    r.header("content-length").map(|v| v.parse::<u64>().map_err(|_| S3Error::invalid_argument("Content-Length is not a number"))).transpose()
}

async fn put_object(gw: &Rc<Gateway>, c: &Client, r: &mut Req) -> R {
    let WriteAcl { entries: acls, owner } = write_acl(gw, c, r).await?;
    let mut metadata = metadata_of(r)?;
    metadata.extend(owner);
    let (sealing, cipher) = seal(gw, c, r).await?;
    metadata.extend(sealing);
    let condition = write_condition(r)?;
    let md5 = content_md5(r)?;
    let mut payload = r.payload()?;
    let length = match payload_length(r, &payload)? {
        Some(l) => l,
        None => return Err(S3Error::new("MissingContentLength", 411, "a PUT needs Content-Length (or x-amz-decoded-content-length)")),
    };
    if length > PUT_BYTES_MAX {
        return Err(S3Error::new("EntityTooLarge", 400, format!("{length} bytes in one PUT, at most {PUT_BYTES_MAX}: use a multipart upload")));
    }
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    // A Content-MD5 is checked when the payload ends, before the commit.
    payload.expect_md5(md5);
    let result = object::write(gw, c, &bucket, &key, &mut Input::Payload(&mut payload), length, &metadata, Finish::Key(&condition, acls.as_deref().unwrap_or_default()), cipher.as_ref()).await;
    let written = drained(result, &mut payload).await?;
    let mut reply = Reply::ok().header("etag", format!("\"{}\"", written.etag)).sse(&metadata).checksum(&written);
    reply.headers.extend(expiration(gw, c, &bucket, &key, length, now_ms(), &metadata).await);
    Ok(reply)
}

/// `x-amz-expiration` for an object of `r`'s bucket, if its lifecycle rules expire it (the
/// settings are those the request was authorized with, cached).
async fn expiration(gw: &Gateway, c: &Client, bucket: &str, key: &str, size: u64, modified_ms: u64, metadata: &[(String, String)]) -> Option<(String, String)> {
    let settings = bucket_settings(gw, c, bucket).await.ok()?;
    if settings.lifecycle.is_empty() {
        return None;
    }
    lifecycle::expiration_header(&settings.lifecycle, key, size, modified_ms, metadata, gw.lifecycle_day_ms).map(|h| ("x-amz-expiration".to_string(), h))
}

/// A write of `payload`'s bytes, as it ended: refused, with what is left of the payload read
/// first ([`Payload::drain`]), so that the client reads the answer.
async fn drained(written: Result<object::Written, S3Error>, payload: &mut Payload) -> Result<object::Written, S3Error> {
    if written.is_err() {
        payload.drain(DRAIN_BYTES_MAX).await;
    }
    written
}

/// The request's Content-MD5, decoded: the 16 bytes its body must hash to, if given (the
/// writer checks them: [`crate::payload::Payload::expect_md5`]).
fn content_md5(r: &Req) -> Result<Option<Vec<u8>>, S3Error> {
    r.header("content-md5").map(|v| base64_decode(&v).filter(|d| d.len() == 16).ok_or_else(|| S3Error::new("InvalidDigest", 400, "Content-MD5 is not the base64 of 16 bytes"))).transpose()
}

/// The decoded length of a PUT's payload.
fn payload_length(r: &Req, _p: &Payload) -> Result<Option<u64>, S3Error> {
    if let Some(v) = r.header("x-amz-decoded-content-length") {
        return v.parse::<u64>().map(Some).map_err(|_| S3Error::invalid_argument("x-amz-decoded-content-length is not a number"));
    }
    content_length(r)
}

async fn copy_object(gw: &Rc<Gateway>, c: &Client, r: &mut Req) -> R {
    let WriteAcl { entries: acls, owner } = write_acl(gw, c, r).await?;
    let (sealing, cipher) = seal(gw, c, r).await?;
    let (sb, sk) = copy_source(&r.header("x-amz-copy-source").unwrap_or_default())?;
    let replace = match r.header("x-amz-metadata-directive").as_deref() {
        None | Some("COPY") => false,
        Some("REPLACE") => true,
        Some(other) => return Err(S3Error::invalid_argument(format!("x-amz-metadata-directive {other:?}: COPY or REPLACE"))),
    };
    let tags_replace = match r.header("x-amz-tagging-directive").as_deref() {
        None | Some("COPY") => false,
        Some("REPLACE") => true,
        Some(other) => return Err(S3Error::invalid_argument(format!("x-amz-tagging-directive {other:?}: COPY or REPLACE"))),
    };
    if sb == r.bucket && sk == r.key && !replace && cipher.is_none() {
        return Err(S3Error::invalid_request(
            "this copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes",
        ));
    }
    let src = r.source_as.as_deref().unwrap_or(c).lookup_key(S3_VOLUME, &sb, &sk).await.map_err(|e| from_om(&e, &sb, Some(&sk)))?;
    let src_etag = meta(&src.metadata, ETAG).unwrap_or_default().to_string();
    check_copy_conditions(r, &src_etag, src.modified_ms)?;
    let src_cipher = unseal(gw, r, &src.metadata, sse::Use::CopySource)?;
    // A checksum asked for the copy is computed as its bytes are read, and replaces the
    // source's; otherwise the source's stay whatever the directive (they are of the same bytes).
    let new_checksum = match r.header("x-amz-checksum-algorithm") {
        None => None,
        Some(a) => Some(checksum::Algorithm::by_name(&a).ok_or_else(|| S3Error::invalid_request(format!("Checksum algorithm provided is unsupported: {a:?}")))?),
    };
    let checksums = if new_checksum.is_none() { checksum::kept_by_copy(&src.metadata) } else { Vec::new() };
    let mut metadata: Vec<(String, String)> = if replace {
        metadata_of(r)?.into_iter().filter(|(k, _)| !k.starts_with(TAG)).chain(checksums).collect()
    } else {
        // Not the parts of a multipart source: the copy is written as one part.
        let rest = src.metadata.iter().filter(|(k, _)| k != ETAG && k != PARTS && k != UPLOAD_ACL && k != OBJECT_OWNER && !k.starts_with(TAG) && !k.starts_with(sse::PREFIX) && !k.starts_with(checksum::METADATA_PREFIX));
        rest.cloned().chain(checksums).collect()
    };
    // A copy is its copier's (or its bucket owner's), not its source's owner's.
    metadata.extend(owner);
    if tags_replace {
        metadata.extend(metadata_of(r)?.into_iter().filter(|(k, _)| k.starts_with(TAG)));
    } else {
        metadata.extend(src.metadata.iter().filter(|(k, _)| k.starts_with(TAG)).cloned());
    }
    // The copy is encrypted as its request says, not as its source was (S3's rule).
    metadata.extend(sealing);
    let condition = write_condition(r)?;
    let mut payload = r.payload()?;
    payload.read_all(0).await?;
    let reader = Reader::new(gw.clone(), src.blocks.clone(), 0, src.data_size).decrypting(src_cipher).hashing(new_checksum);
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    let w = object::write(gw, c, &bucket, &key, &mut Input::Object(reader), src.data_size, &metadata, Finish::Key(&condition, acls.as_deref().unwrap_or_default()), cipher.as_ref()).await?;
    let mut x = Writer::new("CopyObjectResult");
    x.elem("LastModified", iso8601(now_ms())).elem("ETag", format!("\"{}\"", w.etag));
    if let Some((a, v)) = &w.checksum {
        x.elem(&format!("Checksum{}", a.name()), checksum::encode(v));
    }
    let mut reply = Reply::xml(x.finish("CopyObjectResult")).sse(&metadata);
    reply.headers.extend(expiration(gw, c, &bucket, &key, src.data_size, now_ms(), &metadata).await);
    Ok(reply)
}

/// The bucket and key an `x-amz-copy-source` names (`[/]BUCKET/KEY[?versionId=…]`, encoded).
fn copy_source(header: &str) -> Result<(String, String), S3Error> {
    let source = percent_decode(header).ok_or_else(|| S3Error::invalid_argument("x-amz-copy-source is not percent-encoded UTF-8"))?;
    let source = source.split_once("?versionId=").map_or(source.as_str(), |(s, _)| s);
    let (b, k) = source.trim_start_matches('/').split_once('/').ok_or_else(|| S3Error::invalid_argument("x-amz-copy-source must be BUCKET/KEY"))?;
    if k.is_empty() {
        return Err(S3Error::invalid_argument("x-amz-copy-source must be BUCKET/KEY"));
    }
    Ok((b.to_string(), k.to_string()))
}

fn check_copy_conditions(r: &Req, etag: &str, modified_ms: u64) -> Result<(), S3Error> {
    let failed = || S3Error::new("PreconditionFailed", 412, "at least one of the preconditions you specified did not hold");
    if let Some(m) = r.header("x-amz-copy-source-if-match")
        && !etag_matches(&m, etag)
    {
        return Err(failed());
    }
    if let Some(m) = r.header("x-amz-copy-source-if-none-match")
        && etag_matches(&m, etag)
    {
        return Err(failed());
    }
    if let Some(t) = r.header("x-amz-copy-source-if-unmodified-since").and_then(|v| http_date(&v))
        && modified_ms / 1000 > t
    {
        return Err(failed());
    }
    if let Some(t) = r.header("x-amz-copy-source-if-modified-since").and_then(|v| http_date(&v))
        && modified_ms / 1000 <= t
    {
        return Err(failed());
    }
    Ok(())
}

fn etag_matches(header: &str, etag: &str) -> bool {
    etags(header).any(|e| e == "*" || e == etag)
}

async fn get_object(gw: &Rc<Gateway>, c: &Rc<Client>, r: &Req, head: bool) -> R {
    let k = match gw.lookups.lookup(&gw.runtime, c, &r.bucket, &r.key).await {
        Ok(k) => k,
        Err(e) => return Err(missing_to_lister(gw, c, r, from_om(&e, &r.bucket, Some(&r.key))).await),
    };
    let etag = meta(&k.metadata, ETAG).unwrap_or_default().to_string();
    let size = k.data_size;
    // One part of the object: a multipart object's as its upload made it (206, with the part
    // count), a single-part object's part 1 (the whole). A part it does not have is refused
    // before its SSE-C key is asked for, as S3 does.
    let mut part = None;
    if let Some(n) = r.q("partNumber") {
        let n: u32 = n.parse().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| S3Error::invalid_argument("partNumber must be 1 to 10000"))?;
        if r.header("range").is_some() {
            return Err(S3Error::invalid_request("Cannot specify both Range header and partNumber query parameter"));
        }
        let multipart = multipart_count(&etag);
        let parts = match multipart {
            Some(c) => parts_of(&k.metadata, c, size)
                .ok_or_else(|| S3Error::not_implemented("GET of one part of this multipart object: its part sizes were not kept (completed before they were, or too many sizes)"))?,
            None => vec![(1, 0, size)],
        };
        let index =
            parts.iter().position(|p| p.0 == n).ok_or_else(|| S3Error::new("InvalidPart", 400, format!("the object has no part {n} ({} in all)", multipart.unwrap_or(1))))?;
        let (_, offset, length) = parts[index];
        part = multipart.map(|count| (offset, offset + length, count, index));
    }
    // An SSE-C object answers nothing, its headers included, without its key.
    let cipher = unseal(gw, r, &k.metadata, sse::Use::Read)?;
    let modified = k.modified_ms / 1000;
    // RFC 9110's order: If-Match, else If-Unmodified-Since; then If-None-Match, else
    // If-Modified-Since.
    if let Some(m) = r.header("if-match") {
        if !etag_matches(&m, &etag) {
            return Err(S3Error::new("PreconditionFailed", 412, "If-Match: the object's ETag differs"));
        }
    } else if let Some(t) = r.header("if-unmodified-since").and_then(|v| http_date(&v))
        && modified > t
    {
        return Err(S3Error::new("PreconditionFailed", 412, "If-Unmodified-Since: the object was modified since"));
    }
    let not_modified = if let Some(m) = r.header("if-none-match") {
        etag_matches(&m, &etag)
    } else {
        r.header("if-modified-since").and_then(|v| http_date(&v)).is_some_and(|t| modified <= t)
    };
    let mut reply = Reply::ok().sse(&k.metadata);
    reply = reply.header("etag", format!("\"{etag}\"")).header("last-modified", http_date_of(k.modified_ms)).header("accept-ranges", "bytes");
    if not_modified {
        reply.status = 304;
        return Ok(reply);
    }
    for (n, v) in &k.metadata {
        if n.starts_with("x-amz-meta-") || STORED_HEADERS.contains(&n.as_str()) {
            reply.headers.push((n.clone(), v.clone()));
        }
    }
    if meta(&k.metadata, "content-type").is_none() {
        reply.headers.push(("content-type".into(), "binary/octet-stream".into()));
    }
    let tags = k.metadata.iter().filter(|(n, _)| n.starts_with(TAG)).count();
    if tags > 0 {
        reply.headers.push(("x-amz-tagging-count".into(), tags.to_string()));
    }
    reply.headers.extend(expiration(gw, c, &r.bucket, &r.key, size, k.modified_ms, &k.metadata).await);
    // response-* overrides (signed requests only, as S3).
    for (q, h) in [
        ("response-content-type", "content-type"),
        ("response-content-language", "content-language"),
        ("response-expires", "expires"),
        ("response-cache-control", "cache-control"),
        ("response-content-disposition", "content-disposition"),
        ("response-content-encoding", "content-encoding"),
    ] {
        if let Some(v) = r.q(q) {
            reply.headers.retain(|(n, _)| n != h);
            reply.headers.push((h.to_string(), v.to_string()));
        }
    }
    let (start, end) = match (part, r.header("range")) {
        (Some((s, e, count, _)), _) => {
            reply.headers.push(("x-amz-mp-parts-count".into(), count.to_string()));
            if e > s {
                reply.status = 206;
                reply.headers.push(("content-range".into(), format!("bytes {s}-{}/{size}", e - 1)));
            }
            (s, e)
        }
        (None, Some(range)) => match parse_range(&range, size) {
            RangeOf::Whole => (0, size),
            RangeOf::Part(s, e) => {
                reply.status = 206;
                reply.headers.push(("content-range".into(), format!("bytes {s}-{}/{size}", e - 1)));
                (s, e)
            }
            RangeOf::Unsatisfiable => {
                return Err(S3Error::new("InvalidRange", 416, format!("the range {range} is not satisfiable: the object has {size} bytes")));
            }
        },
        (None, None) => (0, size),
    };
    // The checksum the object was written with, for the SDK to check what it reads (asked
    // with x-amz-checksum-mode; a range's bytes are not what it covers, so not with a range):
    // the whole object's, or one part's where the object kept its parts' (the type stays the
    // object's, as S3 answers). A composite one (`-N`) SDKs do not check against the bytes.
    if r.header("x-amz-checksum-mode").is_some_and(|m| m.trim().eq_ignore_ascii_case("ENABLED")) {
        let kind = checksum::object_type(&k.metadata);
        for (a, v) in checksum::stored(&k.metadata) {
            let value = match part {
                Some((.., index)) => checksum::of_part(&k.metadata, index),
                None if reply.status == 200 => Some(v),
                None => None,
            };
            if let Some(value) = value {
                reply.headers.push((a.header().into(), value.into()));
                reply.headers.push(("x-amz-checksum-type".into(), kind.into()));
            }
        }
    }
    reply.headers.push(("content-length".into(), (end - start).to_string()));
    if head || end == start {
        return Ok(reply);
    }
    let reader = Reader::new(gw.clone(), k.blocks, start, end).decrypting(cipher);
    reply.body = reader.into_body(end - start).await.map_err(|e| S3Error::internal(format!("the object's data could not be read: {e}")))?;
    Ok(reply)
}

/// A GET or HEAD refused (403) by a key that does not exist, answered as S3 answers it to a
/// caller whom the bucket's policy allows `s3:ListBucket` of that name (`s3:prefix` = the key):
/// `NoSuchKey`, since a listing would tell them anyway. (ACL holders of LIST get the same from
/// the OM.) Any other refusal stays as it is.
async fn missing_to_lister(gw: &Gateway, c: &Client, r: &Req, refused: S3Error) -> S3Error {
    if refused.code != "AccessDenied" {
        return refused;
    }
    let Ok(settings) = bucket_settings(gw, c, &r.bucket).await else { return refused };
    let Some(policy) = &settings.policy else { return refused };
    let resource = format!("arn:aws:s3:::{}", r.bucket);
    let keys = |k: &str| if k == "s3:prefix" { Some(vec![r.key.clone()]) } else { policy_key(r, gw.https, None, k) };
    if policy.decide(&r.user, "s3:ListBucket", &resource, &keys) != Decision::Allow {
        return refused;
    }
    let Ok(owner) = gw.client_for(&settings.owner).await else { return refused };
    match owner.lookup_key(S3_VOLUME, &r.bucket, &r.key).await {
        Err(e) if e.status() == Some(stratos_client::Status::KeyNotFound) => from_om(&e, &r.bucket, Some(&r.key)),
        _ => refused,
    }
}

/// GetObjectAttributes (`GET ?attributes`): the attributes `x-amz-object-attributes` names, of
/// the key's metadata. An SSE-C object needs its key, as for HEAD. `ObjectParts` of a multipart
/// object is its part count (from the ETag's `-N`) and a page of its parts' numbers and sizes
/// (`x-amz-max-parts`, at most and by default 1000, after `x-amz-part-number-marker`) where
/// they were kept; a single-part object has none, as S3.
async fn get_object_attributes(gw: &Gateway, c: &Client, r: &Req) -> R {
    let asked = r.header("x-amz-object-attributes").unwrap_or_default();
    let mut want = Vec::new();
    for a in asked.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let a = OBJECT_ATTRIBUTES
            .into_iter()
            .find(|o| o.eq_ignore_ascii_case(a))
            .ok_or_else(|| S3Error::invalid_argument(format!("x-amz-object-attributes: {a:?} is not one of {}", OBJECT_ATTRIBUTES.join(", "))))?;
        want.push(a);
    }
    if want.is_empty() {
        return Err(S3Error::invalid_argument(format!("x-amz-object-attributes is required: one or more of {}", OBJECT_ATTRIBUTES.join(", "))));
    }
    let k = c.lookup_key(S3_VOLUME, &r.bucket, &r.key).await.map_err(|e| from_om(&e, &r.bucket, Some(&r.key)))?;
    unseal(gw, r, &k.metadata, sse::Use::Read)?;
    let etag = meta(&k.metadata, ETAG).unwrap_or_default();
    let mut w = Writer::new("GetObjectAttributesResponse");
    if want.contains(&"ETag") {
        w.elem("ETag", etag);
    }
    let checksums: Vec<(checksum::Algorithm, &str)> = checksum::stored(&k.metadata).collect();
    if want.contains(&"Checksum") && !checksums.is_empty() {
        w.open("Checksum");
        for (a, v) in &checksums {
            w.elem(&format!("Checksum{}", a.name()), v);
        }
        w.elem("ChecksumType", checksum::object_type(&k.metadata)).close("Checksum");
    }
    if want.contains(&"ObjectParts")
        && let Some(count) = multipart_count(etag)
    {
        w.open("ObjectParts").elem("PartsCount", count);
        if let Some(parts) = parts_of(&k.metadata, count, k.data_size) {
            let number = |h: &str, default: u32| -> Result<u32, S3Error> {
                r.header(h).map_or(Ok(default), |v| v.trim().parse().map_err(|_| S3Error::invalid_argument(format!("{h} {v:?} is not a number"))))
            };
            let max = number("x-amz-max-parts", 1000)?.min(1000);
            let marker = number("x-amz-part-number-marker", 0)?;
            // Parts ascend by number: the page is a slice after the marker.
            let after = &parts[parts.partition_point(|p| p.0 <= marker)..];
            let page = &after[..after.len().min(max as usize)];
            w.elem("PartNumberMarker", marker).elem("NextPartNumberMarker", page.last().map_or(marker, |p| p.0)).elem("MaxParts", max).elem("IsTruncated", after.len() > page.len());
            let first = parts.len() - after.len();
            for (i, (n, _, part_size)) in page.iter().enumerate() {
                w.open("Part").elem("PartNumber", n).elem("Size", part_size);
                if let (Some((a, _)), Some(v)) = (checksums.first(), checksum::of_part(&k.metadata, first + i)) {
                    w.elem(&format!("Checksum{}", a.name()), v);
                }
                w.close("Part");
            }
        }
        w.close("ObjectParts");
    }
    if want.contains(&"StorageClass") {
        w.elem("StorageClass", "STANDARD");
    }
    if want.contains(&"ObjectSize") {
        w.elem("ObjectSize", k.data_size);
    }
    Ok(Reply::xml(w.finish("GetObjectAttributesResponse")).header("last-modified", http_date_of(k.modified_ms)))
}

enum RangeOf {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// A `Range: bytes=…` header against an object of `size` bytes: one range (S3 serves one);
/// one that cannot be parsed is ignored (the whole object), as HTTP says.
fn parse_range(h: &str, size: u64) -> RangeOf {
    let Some(spec) = h.trim().strip_prefix("bytes=") else { return RangeOf::Whole };
    if spec.contains(',') {
        return RangeOf::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else { return RangeOf::Whole };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(s), Ok(e)) if s <= e => {
            if s >= size {
                RangeOf::Unsatisfiable
            } else {
                RangeOf::Part(s, e.saturating_add(1).min(size))
            }
        }
        (Ok(s), Err(_)) if b.is_empty() => {
            if s >= size {
                RangeOf::Unsatisfiable
            } else {
                RangeOf::Part(s, size)
            }
        }
        (Err(_), Ok(n)) if a.is_empty() => {
            if n == 0 || size == 0 {
                RangeOf::Unsatisfiable
            } else {
                RangeOf::Part(size.saturating_sub(n), size)
            }
        }
        _ => RangeOf::Whole,
    }
}

async fn delete_object(c: &Client, r: &Req) -> R {
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    let done = c
        .submit(|op| {
            let mut d = op.init_delete_key();
            d.set_volume(S3_VOLUME);
            d.set_bucket(&bucket);
            d.set_key(&key);
        })
        .await;
    match done {
        // Deleting what is not there succeeds (S3).
        Ok(_) => Ok(Reply::status(204)),
        Err(e) if e.status() == Some(stratos_client::Status::KeyNotFound) => Ok(Reply::status(204)),
        Err(e) => Err(from_om(&e, &bucket, Some(&key))),
    }
}

async fn delete_objects(gw: &Gateway, c: &Rc<Client>, r: &mut Req) -> R {
    let body = r.payload()?.read_all(DOCUMENT_BYTES_MAX).await?;
    let doc = xml::document(&body, "Delete")?;
    let quiet = doc.child("Quiet").is_some_and(|q| q.text.trim() == "true");
    let mut keys: Vec<String> = doc.children_named("Object").map(|o| o.child("Key").map(|k| k.text.clone()).ok_or_else(|| S3Error::malformed_xml("an <Object> without <Key>"))).collect::<Result<_, _>>()?;
    if keys.is_empty() || keys.len() > DELETE_KEYS_MAX {
        return Err(S3Error::malformed_xml(format!("{} keys: 1 to {DELETE_KEYS_MAX}", keys.len())));
    }
    let bucket = r.bucket.clone();
    let mut w = Writer::new("DeleteResult");
    // The bucket's policy decides each key (s3:DeleteObject): a denied key is refused alone; the
    // others are deleted as the owner where the policy allows every one of them, else as the
    // caller (whose rights the OM checks).
    let mut client = c.clone();
    let settings = bucket_settings(gw, c, &bucket).await?;
    let others = r.user != settings.owner;
    let mut all_allowed = false;
    if let Some(policy) = &settings.policy {
        all_allowed = others;
        let mut kept = Vec::with_capacity(keys.len());
        for k in keys {
            match decide(gw, r, &settings, policy, "s3:DeleteObject", &k).await? {
                Decision::Deny(sid) => {
                    let e = denied_by_policy(&bucket, sid);
                    w.open("Error").elem("Key", &k).elem("Code", e.code).elem("Message", &e.message).close("Error");
                }
                Decision::Allow => kept.push(k),
                Decision::Neither => {
                    all_allowed = false;
                    kept.push(k);
                }
            }
        }
        keys = kept;
        if keys.is_empty() {
            return Ok(Reply::xml(w.finish("DeleteResult")));
        }
        if all_allowed {
            client = gw.client_for(&settings.owner).await?;
        }
    }
    if !all_allowed && others && settings.public_block.ignore_public_acls && !allowed_without_public_acls(gw, r, &settings, "s3:DeleteObject", "").await? {
        let e = ignored_public_acls(&bucket);
        for k in &keys {
            w.open("Error").elem("Key", k).elem("Code", e.code).elem("Message", &e.message).close("Error");
        }
        return Ok(Reply::xml(w.finish("DeleteResult")));
    }
    let done = client
        .submit(|op| {
            let mut d = op.init_delete_keys();
            d.set_volume(S3_VOLUME);
            d.set_bucket(&bucket);
            let mut l = d.init_keys(keys.len() as u32);
            for (i, k) in keys.iter().enumerate() {
                l.set(i as u32, k);
            }
        })
        .await;
    match done {
        // Missing keys count as deleted (S3: a delete of nothing succeeds).
        Ok(_) => {
            if !quiet {
                for k in &keys {
                    w.open("Deleted").elem("Key", k).close("Deleted");
                }
            }
        }
        Err(e) => {
            let s = from_om(&e, &bucket, None);
            if s.code == "NoSuchBucket" {
                return Err(s);
            }
            for k in &keys {
                w.open("Error").elem("Key", k).elem("Code", s.code).elem("Message", &s.message).close("Error");
            }
        }
    }
    Ok(Reply::xml(w.finish("DeleteResult")))
}

// ---------------------------------------------------------------------------------------------
// Tagging

async fn get_tagging(c: &Client, r: &Req) -> R {
    let k = c.lookup_key(S3_VOLUME, &r.bucket, &r.key).await.map_err(|e| from_om(&e, &r.bucket, Some(&r.key)))?;
    let mut w = Writer::new("Tagging");
    w.open("TagSet");
    let mut tags: Vec<(&str, &str)> = k.metadata.iter().filter_map(|(n, v)| n.strip_prefix(TAG).map(|t| (t, v.as_str()))).collect();
    tags.sort();
    for (t, v) in tags {
        w.open("Tag").elem("Key", t).elem("Value", v).close("Tag");
    }
    w.close("TagSet");
    Ok(Reply::xml(w.finish("Tagging")))
}

async fn put_tagging(c: &Client, r: &mut Req) -> R {
    let body = r.payload()?.read_all(DOCUMENT_BYTES_MAX).await?;
    let tags = tagging_document(&body, TAGS_MAX)?;
    set_tags(c, r, &tags).await?;
    Ok(Reply::ok())
}

/// The tags of a `<Tagging><TagSet><Tag>…` document, checked (at most `max`).
fn tagging_document(body: &[u8], max: usize) -> Result<Vec<(String, String)>, S3Error> {
    let text = std::str::from_utf8(body).map_err(|_| S3Error::malformed_xml("the tagging document is not UTF-8"))?;
    let doc = xml::parse(text).map_err(S3Error::malformed_xml)?;
    let set = doc.child("TagSet").ok_or_else(|| S3Error::malformed_xml("no <TagSet>"))?;
    let tags: Vec<(String, String)> = set
        .children_named("Tag")
        .map(|t| Ok((t.child("Key").ok_or_else(|| S3Error::malformed_xml("a <Tag> without <Key>"))?.text.clone(), t.child("Value").map(|v| v.text.clone()).unwrap_or_default())))
        .collect::<Result<_, S3Error>>()?;
    check_tags(tags, max)
}

/// What is read of a form after its file (its closing boundary, fields S3 ignores there).
const FIELDS_AFTER_FILE_BYTES_MAX: u64 = 64 << 10;

/// Form fields a policy need not name: the signature's own, the policy and the file.
const POST_UNNAMED_FIELDS: [&str; 5] = ["policy", "signature", "awsaccesskeyid", "x-amz-signature", "file"];

/// POST Object: a browser-based upload ([`crate::form`]). The form's policy must be signed
/// with its uploader's secret (Signature Version 4: `x-amz-credential`, `x-amz-date`,
/// `x-amz-algorithm`, `x-amz-signature`; or Version 2: `AWSAccessKeyId`, `signature`), unexpired,
/// and hold of every field (a form with neither policy nor signature is an anonymous upload);
/// the object is written as a PUT of the uploader would write it,
/// from the form's fields (`key`, where `${filename}` stands for the file's name, `acl`,
/// `Content-Type` and the other stored headers, `x-amz-meta-*`, `tagging`, the encryption
/// fields). Answers `success_action_redirect` (303 to it, with the bucket, key and ETag), or
/// `success_action_status` 200, 201 (with a `PostResponse` document) or else 204.
async fn post_object(gw: &Rc<Gateway>, headers: &[(String, String)], body: Incoming, bucket: &str, boundary: &str, peer: Option<std::net::IpAddr>) -> R {
    let mut form = form::read(Source::Http(body), boundary).await?;
    let reply = post_form(gw, headers, &mut form, bucket, peer).await;
    if reply.is_err() {
        // Refused (the policy, its signature, the write): the answer is read once the form is.
        form.file.drain(DRAIN_BYTES_MAX).await;
    }
    reply
}

/// Who signed a form's policy (the principal it uploads as), once the signature and the policy
/// hold of the fields: with the size range the policy allows the file.
async fn signed_form(gw: &Gateway, form: &form::Form, policy_text: &str, key: &str, bucket: &str) -> Result<(String, u64, u64), S3Error> {
    // Who signed the policy, and how.
    enum Signed {
        V4(sigv4::Credential, String),
        V2(String),
    }
    let (access, signed) = if let Some(sig) = form.field("x-amz-signature") {
        if form.field("x-amz-algorithm").is_none_or(|a| a != "AWS4-HMAC-SHA256") {
            return Err(S3Error::invalid_argument("x-amz-algorithm must be AWS4-HMAC-SHA256"));
        }
        let cred = sigv4::Credential::parse(form.field("x-amz-credential").ok_or_else(|| S3Error::invalid_argument("a form with x-amz-signature needs x-amz-credential"))?)?;
        (cred.access_key.clone(), Signed::V4(cred, sig.trim().to_string()))
    } else if let Some(sig) = form.field("signature") {
        let access = form.field("AWSAccessKeyId").ok_or_else(|| S3Error::invalid_argument("Bucket POST must contain a field named 'AWSAccessKeyId' beside its signature"))?;
        (access.trim().to_string(), Signed::V2(sig.trim().to_string()))
    } else {
        return Err(S3Error::invalid_argument("Bucket POST must contain a field named 'Signature' (or x-amz-signature): the policy's signature"));
    };
    gw.with_secret(&access, |secret| {
        let ok = match &signed {
            Signed::V4(cred, sig) => sigv4::same(sigv4::sign_policy_v4(&secret, cred, policy_text).as_bytes(), sig.to_ascii_lowercase().as_bytes()),
            Signed::V2(sig) => sigv4::same(sigv4::sign_policy_v2(&secret, policy_text).as_bytes(), sig.as_bytes()),
        };
        match ok {
            true => Ok(()),
            false => Err(S3Error::new("SignatureDoesNotMatch", 403, "The request signature we calculated does not match the signature you provided: the form's policy was signed with another secret")),
        }
    })
    .await?;
    // The policy holds of the fields as posted, the key with its file name in place.
    let mut fields = form.fields.clone();
    for (n, v) in fields.iter_mut() {
        if n.eq_ignore_ascii_case("key") {
            *v = key.to_string();
        }
    }
    // The bucket is the one posted to, whatever a field of that name says.
    fields.retain(|(n, _)| !n.eq_ignore_ascii_case("bucket"));
    fields.push(("bucket".into(), bucket.to_string()));
    let (min, max) = form::Policy::parse(policy_text)?.check(&fields, now_ms(), &POST_UNNAMED_FIELDS)?;
    // A policy without a content-length-range still allows no more than a PUT does.
    Ok((access, min, max.min(PUT_BYTES_MAX)))
}

async fn post_form(gw: &Rc<Gateway>, headers: &[(String, String)], form: &mut form::Form, bucket: &str, peer: Option<std::net::IpAddr>) -> R {
    let key = form
        .field("key")
        .ok_or_else(|| S3Error::invalid_argument("Bucket POST must contain a field named 'key'.  If it is specified, please check the order of the fields."))?
        .replace("${filename}", &form.filename);
    if key.is_empty() {
        return Err(S3Error::invalid_argument("the form's key is empty"));
    }
    // A form without a policy is an anonymous upload: the OM lets it into a bucket whose
    // AllUsers grant says so (public-read-write), and into no other.
    let (access, min, max) = if let Some(policy_text) = form.field("policy").map(str::to_string) {
        signed_form(gw, form, &policy_text, &key, bucket).await?
    } else {
        if form.fields.iter().any(|(n, _)| ["x-amz-signature", "signature", "x-amz-credential", "awsaccesskeyid"].contains(&n.to_ascii_lowercase().as_str())) {
            return Err(S3Error::invalid_argument("the form is signed but has no policy: a signature signs a policy"));
        }
        (String::new(), 0, PUT_BYTES_MAX)
    };
    form.file.limit(min, max);
    // The write reads the fields as a PUT's headers.
    let mut as_headers: Vec<(String, String)> = form.fields.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("key")).map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect();
    for (n, _) in as_headers.iter_mut() {
        if n == "acl" {
            *n = "x-amz-acl".into();
        }
    }
    // Tags as S3's forms give them (a `<Tagging>` document), or as a PUT's header does; not both.
    let tags = as_headers.iter().find(|(n, _)| n == "tagging").map(|(_, v)| tagging_document(v.as_bytes(), TAGS_MAX)).transpose()?;
    as_headers.retain(|(n, _)| n != "tagging");
    if tags.is_some() && as_headers.iter().any(|(n, _)| n == "x-amz-tagging") {
        return Err(S3Error::invalid_argument("the form gives its tags twice: tagging and x-amz-tagging"));
    }
    let mut r = Req { method: hyper::Method::POST, bucket: bucket.to_string(), key: key.clone(), query: Vec::new(), headers: as_headers, user: access.clone(), caller: access.clone(), signer: None, body: None, peer, source_as: None };
    // The file's checksum, if a field gives one: checked as it streams, kept with the object.
    if let Some(w) = checksum::requested(&|n| r.header(n), false)? {
        let value = w.value.ok_or_else(|| S3Error::invalid_request("a form's checksum is a field, not a trailer"))?;
        form.file.expect_checksum(w.algorithm, value);
    }
    let c = gw.client_for(&access).await?;
    // A form upload is a PutObject of its key to the bucket's policy.
    let c = authorize(gw, &mut r, c).await?;
    let WriteAcl { entries: acls, owner } = write_acl(gw, &c, &r).await?;
    let mut metadata = metadata_of(&r)?;
    metadata.extend(owner);
    metadata.extend(tags.unwrap_or_default().into_iter().map(|(k, v)| (format!("{TAG}{k}"), v)));
    let (sealing, cipher) = seal(gw, &c, &r).await?;
    metadata.extend(sealing);
    let hint = header_of(headers, "content-length").and_then(|l| l.trim().parse::<u64>().ok()).unwrap_or(0).min(max);
    let written = object::write(gw, &c, bucket, &key, &mut Input::Form(&mut form.file), hint, &metadata, Finish::Key(&Condition::Any, acls.as_deref().unwrap_or_default()), cipher.as_ref()).await?;
    // The closing boundary and any fields after the file, so the connection can be reused.
    form.file.drain(FIELDS_AFTER_FILE_BYTES_MAX).await;
    let etag = format!("\"{}\"", written.etag);
    let host = header_of(headers, "host").unwrap_or_else(|| "localhost".into());
    let location = format!("{}://{host}/{}/{}", if gw.https { "https" } else { "http" }, url_encode(bucket), url_encode(&key));
    let reply = match r.header("success_action_redirect").or_else(|| r.header("redirect")).filter(|u| u.starts_with("http://") || u.starts_with("https://")) {
        Some(to) => {
            let sep = if to.contains('?') { '&' } else { '?' };
            let to = format!("{to}{sep}bucket={}&key={}&etag={}", url_encode(bucket), url_encode(&key), url_encode(&etag));
            Reply::status(303).header("location", to)
        }
        None => match r.header("success_action_status").as_deref().map(str::trim) {
            Some("200") => Reply::ok(),
            Some("201") => {
                // Without S3's namespace, as S3 sends it (clients look `Key` up unqualified).
                let mut w = Writer::plain("PostResponse");
                w.elem("Location", &location).elem("Bucket", bucket).elem("Key", &key).elem("ETag", &etag);
                let mut reply = Reply::xml(w.finish("PostResponse"));
                reply.status = 201;
                reply
            }
            _ => Reply::status(204).header("location", location),
        },
    };
    Ok(reply.header("etag", etag).sse(&metadata))
}

async fn delete_tagging(c: &Client, r: &Req) -> R {
    set_tags(c, r, &[]).await?;
    Ok(Reply::status(204))
}

async fn set_tags(c: &Client, r: &Req, tags: &[(String, String)]) -> Result<(), S3Error> {
    let (bucket, key) = (r.bucket.clone(), r.key.clone());
    c.submit(|op| {
        let mut s = op.init_set_key_metadata();
        s.set_volume(S3_VOLUME);
        s.set_bucket(&bucket);
        s.set_key(&key);
        s.set_remove_prefix(TAG);
        let mut l = s.init_set(tags.len() as u32);
        for (i, (k, v)) in tags.iter().enumerate() {
            let mut p = l.reborrow().get(i as u32);
            p.set_key(format!("{TAG}{k}"));
            p.set_value(v);
        }
    })
    .await
    .map_err(|e| from_om(&e, &bucket, Some(&key)))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Encodings

/// `%XX` decoded (a `+` stays a `+`); None if not UTF-8 or a bad escape.
pub fn percent_decode(s: &str) -> Option<String> {
    sigv4::decode(s).ok().and_then(|b| String::from_utf8(b).ok())
}

/// S3's URL encoding of names in listings (`encoding-type=url`).
fn url_encode(s: &str) -> String {
    sigv4::encode(s.as_bytes(), true)
}

/// A query string as (name, value) pairs, decoded.
fn parse_query(raw: &str) -> Result<Vec<(String, String)>, S3Error> {
    let mut out = Vec::new();
    for p in raw.split('&').filter(|p| !p.is_empty()) {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        let (Some(n), Some(v)) = (percent_decode(n), percent_decode(v)) else {
            return Err(S3Error::invalid_argument(format!("the query parameter {p:?} is not percent-encoded UTF-8")));
        };
        out.push((n, v));
    }
    Ok(out)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `2026-12-02T23:05:25.000Z`.
pub(crate) fn iso8601(ms: u64) -> String {
    let t = (ms / 1000) as i64;
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = stratos_client::sh::civil_date(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", secs / 3600, secs % 3600 / 60, secs % 60, ms % 1000)
}

pub(crate) fn http_date_of(ms: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_millis(ms))
}

/// An HTTP date as seconds since 1970 (None if it is not one).
fn http_date(s: &str) -> Option<u64> {
    httpdate::parse_http_date(s.trim()).ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, F: std::future::Future>(_: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// hyper keeps one request future per connection, in a box allocated with the connection
    /// and sized for the future's type: every arm of `route` used to be inline, so a GET's
    /// future was as large as a PUT's (28 KiB, most of it the upload paths): 63 KiB of memory
    /// per open connection. The large, rare arms are boxed (41 KiB per connection). Optimised
    /// builds only (the test command's profile): unoptimised ones keep more locals alive.
    #[test]
    fn a_request_future_is_not_as_large_as_the_upload_paths() {
        if cfg!(debug_assertions) {
            return;
        }
        let size = future_size(handle);
        assert!(size <= 8 << 10, "a request's future is {size} bytes");
    }

    #[test]
    fn hosts_name_buckets_under_the_domains_only() {
        let gw = Gateway::new("127.0.0.1:1", Rc::new(stratos_client::runtime::Glommio), stratos_client::schema::om_capnp::Replication::RatisThree, None, false)
            .with_domains(&["S3.Example.com".to_string(), ".s3.test.".to_string()]);
        for (host, bucket) in [
            ("photos.s3.example.com", Some("photos")),
            ("Photos.S3.example.com:9878", Some("photos")),
            ("my.dotted.bucket.s3.test:443", Some("my.dotted.bucket")),
            ("s3.example.com", None),
            ("s3.example.com:9878", None),
            (".s3.example.com", None),
            ("photos.xs3.example.com", None),
            ("photoss3.example.com", None),
            ("127.0.0.1:9878", None),
            ("[::1]:9878", None),
            ("photos.s3.example.com:http", None),
            ("photos.s3.test.:9878", Some("photos")),
        ] {
            assert_eq!(gw.bucket_of_host(host).as_deref(), bucket, "{host}");
        }
        let nested = Gateway::new("127.0.0.1:1", Rc::new(stratos_client::runtime::Glommio), stratos_client::schema::om_capnp::Replication::RatisThree, None, false)
            .with_domains(&["s3.test".to_string(), "x.s3.test".to_string()]);
        assert_eq!(nested.bucket_of_host("a.x.s3.test").as_deref(), Some("a"), "the longest domain");
        assert_eq!(nested.bucket_of_host("a.y.s3.test").as_deref(), Some("a.y"));
        let plain = Gateway::new("127.0.0.1:1", Rc::new(stratos_client::runtime::Glommio), stratos_client::schema::om_capnp::Replication::RatisThree, None, false);
        assert_eq!(plain.bucket_of_host("photos.s3.example.com"), None, "no domain, no virtual hosts");
    }

    #[test]
    fn parts_are_served_only_when_they_add_up() {
        let m = |v: &str| vec![(PARTS.to_string(), v.to_string())];
        assert_eq!(parts_of(&m("1:2:5,3:1:2"), 3, 12), Some(vec![(1, 0, 5), (2, 5, 5), (3, 10, 2)]));
        assert_eq!(parts_of(&m("1:1:5,4:2:3"), 3, 11), Some(vec![(1, 0, 5), (4, 5, 3), (5, 8, 3)]), "numbers as uploaded");
        for (value, count, size) in [
            ("1:2:5,3:1:2", 3, 13),
            ("1:2:5,3:1:2", 4, 12),
            ("1:2:5,2:1:2", 3, 12),
            ("1:2:5;3:1:2", 3, 12),
            ("1:2:5,3:1", 3, 10),
            ("0:1:5", 1, 5),
            ("1:0:5,1:1:5", 1, 5),
            ("9999:5:1", 5, 5),
            ("1:18446744073709551615:1", 1, 1),
            ("1:2:18446744073709551615", 2, 0),
        ] {
            assert_eq!(parts_of(&m(value), count, size), None, "{value} ({count} parts, {size} bytes)");
        }
        assert_eq!(parts_of(&[], 1, 5), None, "not kept");
        assert_eq!(multipart_count("0123-3"), Some(3));
        assert_eq!(multipart_count("0123"), None);
    }

    #[test]
    fn ranges_follow_http() {
        let part = |h: &str, size| match parse_range(h, size) {
            RangeOf::Part(s, e) => Some((s, e)),
            RangeOf::Whole => None,
            RangeOf::Unsatisfiable => Some((u64::MAX, u64::MAX)),
        };
        assert_eq!(part("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(part("bytes=90-200", 100), Some((90, 100)));
        assert_eq!(part("bytes=50-", 100), Some((50, 100)));
        assert_eq!(part("bytes=-10", 100), Some((90, 100)));
        assert_eq!(part("bytes=-200", 100), Some((0, 100)));
        assert_eq!(part("bytes=100-", 100), Some((u64::MAX, u64::MAX)));
        assert_eq!(part("bytes=5-2", 100), None);
        assert_eq!(part("bytes=0-1,5-6", 100), None);
        assert_eq!(part("items=0-1", 100), None);
        assert_eq!(part("bytes=-0", 100), Some((u64::MAX, u64::MAX)));
    }

    #[test]
    fn dates_are_s3_s() {
        assert_eq!(iso8601(1_764_716_725_123), "2025-12-02T23:05:25.123Z");
        assert_eq!(http_date(&http_date_of(1_764_716_725_000)), Some(1_764_716_725));
    }

    #[test]
    fn a_common_prefix_is_skipped_whole() {
        let next = after_prefix("photos/");
        assert!(next.len() <= 1024);
        for k in ["photos/", "photos/a", "photos/\u{10FFFF}", "photos/zzzz/yyy"] {
            assert!(k < next.as_str(), "{k:?} sorts after the skip point");
        }
        assert!("photos0" > next.as_str());
    }

    #[test]
    fn a_bucket_get_ignores_what_is_not_a_sub_resource() {
        for name in ["bucket", "key", "etag", "x-id", "foo"] {
            assert!(!is_bucket_subresource(name), "{name}");
        }
        for name in ["cors", "lifecycle", "policyStatus", "torrent", "replication", "notification"] {
            assert!(is_bucket_subresource(name), "{name}");
        }
    }

    #[test]
    fn etags_match_as_http_lists() {
        assert!(etag_matches("\"abc\"", "abc"));
        assert!(etag_matches("\"x\", \"abc\"", "abc"));
        assert!(etag_matches("*", "abc"));
        assert!(etag_matches("W/\"abc\"", "abc"));
        assert!(!etag_matches("\"abd\"", "abc"));
    }

    #[test]
    fn a_bucket_request_is_the_action_s3_names_it() {
        use hyper::Method as M;
        let action = |method: M, query: &str| {
            let query = query.split('&').filter(|q| !q.is_empty()).map(|q| (q.to_string(), String::new())).collect();
            let r = Req { method, bucket: "b".into(), key: String::new(), query, headers: Vec::new(), user: String::new(), caller: String::new(), signer: None, body: None, peer: None, source_as: None };
            request_action(&r)
        };
        assert_eq!(action(M::GET, ""), ("s3:ListBucket", false));
        assert_eq!(action(M::HEAD, ""), ("s3:ListBucket", false));
        assert_eq!(action(M::GET, "policyStatus"), ("s3:GetBucketPolicyStatus", false));
        assert_eq!(action(M::GET, "policy"), ("s3:GetBucketPolicy", false));
        assert_eq!(action(M::PUT, "cors"), ("s3:PutBucketCORS", false));
        assert_eq!(action(M::DELETE, "cors"), ("s3:PutBucketCORS", false), "a configuration's DELETE is its PUT");
        assert_eq!(action(M::DELETE, "policy"), ("s3:DeleteBucketPolicy", false));
        assert_eq!(action(M::DELETE, "website"), ("s3:DeleteBucketWebsite", false));
        assert_eq!(action(M::PUT, "location"), ("s3:CreateBucket", false), "a sub-resource without a PUT action");
        assert_eq!(action(M::PUT, "location&policy"), ("s3:PutBucketPolicy", false), "the first that has one");
        assert_eq!(action(M::DELETE, "acl"), ("s3:DeleteBucket", false));
        assert_eq!(action(M::DELETE, ""), ("s3:DeleteBucket", false));
        assert_eq!(action(M::POST, "delete"), ("s3:DeleteObject", false));
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn settings_come_back_from_their_pieces_and_a_setting_that_does_not_read_fails_closed() {
        let doc = r#"{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"}}"#;
        let mut stored = settings_pieces(BUCKET_POLICY, doc, POLICY_PIECES_MAX, "the policy").unwrap();
        assert!(settings_pieces(BUCKET_POLICY, doc, 1, "the policy").is_ok() == (doc.len() <= METADATA_VALUE_BYTES_MAX));
        // Pieces may come in any order: the OM keeps pairs as they were set.
        stored.reverse();
        stored.push((BUCKET_PUBLIC_BLOCK.into(), PublicBlock { ignore_public_acls: true, ..Default::default() }.encode()));
        let s = Settings::of("b", &stored);
        assert!(s.unreadable.is_none());
        assert_eq!(s.policy.unwrap().statements.len(), 1);
        assert!(s.public_block.ignore_public_acls && !s.public_block.block_public_acls);
        let s = Settings::of("b", &pairs(&[("s3:policy:00", "{\"Statement\": [{\"Effect\": \"Perhaps\"}]}")]));
        assert!(s.policy.is_none() && s.unreadable.as_deref().is_some_and(|w| w.contains("policy")));
        let s = Settings::of("b", &pairs(&[(BUCKET_PUBLIC_BLOCK, "10x1")]));
        assert!(s.unreadable.is_some());
        let s = Settings::of("b", &pairs(&[("s3:cors:00", "no such line")]));
        assert!(s.cors.is_none() && s.unreadable.is_none(), "CORS rules that do not read are none: they only add headers");
    }
}
