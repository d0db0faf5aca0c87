//! `stratos bench s3`: the S3 gateway at the shape S3 clients use, one object per request,
//! SigV4-signed (`UNSIGNED-PAYLOAD`, as SDKs send over TLS), each worker on its own HTTP/1.1
//! keep-alive connection (as SDKs keep a pool). `--op put` writes `--size`-byte objects;
//! `--op get` lists the bucket (ListObjectsV2) and reads its objects round robin, checking each
//! length; `--op list` pages through the bucket with a delimiter (one page of up to 1000 per
//! op); `--op initiate` starts multipart uploads (CreateMultipartUpload, `--dirs` spreading their
//! keys over directories) and `--op list-uploads` pages through them (ListMultipartUploads with
//! the delimiter). Runs through the same [`super::drive`] as the native generators, so `ockg`/`ockr` beside
//! it in one run give the gateway's overhead as a ratio. `--checksum crc32` sends each PUT as
//! boto3 does by default since 1.36: `aws-chunked` in 1 MiB chunks with a CRC32 trailer.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use clap::Args;
use stratos_s3g::http::{Body, Io};
use stratos_s3g::sigv4;

use super::{Common, Run, drive, on_executor, title};

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Op {
    Put,
    Get,
    List,
    /// CreateMultipartUpload of PREFIX-TAG-N (`--dirs`: dNNNNNN/PREFIX-TAG-N), nothing uploaded.
    Initiate,
    /// ListMultipartUploads with `--delimiter`, 1000 a page.
    ListUploads,
}

/// How a PUT's body carries a checksum.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Checksum {
    /// None: the body as is, with Content-Length.
    None,
    /// `aws-chunked` with an `x-amz-checksum-crc32` trailer (boto3's default shape).
    Crc32,
}

#[derive(Args, Debug)]
pub struct S3Args {
    #[command(flatten)]
    pub common: Common,
    /// The gateway (http:// or https://; with https, the CA from STRATOS_CA).
    #[arg(long, env = "S3_ENDPOINT", default_value = "http://127.0.0.1:9878")]
    pub endpoint: String,
    /// The access key (`stratos s3 getsecret`).
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub access_key: String,
    /// Its secret.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_key: String,
    #[arg(long, value_enum, default_value = "put")]
    pub op: S3Op,
    /// Bytes per object (put).
    #[arg(long, default_value_t = 4096)]
    pub size: usize,
    #[arg(long, default_value = "s3bench")]
    pub bucket: String,
    /// Object names start with this (put writes PREFIX-TAG-N; get and list read under it).
    #[arg(long, default_value = "s3bench-")]
    pub prefix: String,
    /// The delimiter of `--op list` and `--op list-uploads`.
    #[arg(long, default_value = "/")]
    pub delimiter: String,
    /// `--op initiate`: spread the uploads' keys over this many directories, `d000000/` to
    /// `dNNNNNN/` in front of each name (upload i in directory i mod N), so that ListMultipartUploads
    /// with the delimiter `/` meets N common prefixes. 0: none.
    #[arg(long, default_value_t = 0)]
    pub dirs: u64,
    /// `--op get` asks for this many bytes of each object (a `Range` header, at an offset that
    /// moves from one pass over the objects to the next) instead of the whole object, as
    /// columnar readers do.
    #[arg(long)]
    pub range: Option<u64>,
    /// `--op put`: how each body carries a checksum. `crc32` sends it as boto3 does by default
    /// (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`: `aws-chunked` in chunks of 1 MiB, botocore's, the
    /// CRC32 in a trailer; computed per request, as the SDK does), here with the encoded
    /// Content-Length rather than boto3's HTTP chunked transfer.
    #[arg(long, value_enum, default_value = "none")]
    pub checksum: S3Checksum,
}

/// `data` as `aws-chunked` with a CRC32 trailer, as botocore's `AwsChunkedWrapper` makes it.
fn aws_chunked_crc32(data: &[u8]) -> Bytes {
    const CHUNK: usize = 1 << 20;
    let mut out = Vec::with_capacity(data.len() + 64 + data.len() / CHUNK * 16);
    for chunk in data.chunks(CHUNK) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    let crc = stratos_s3g::checksum::encode(&crc32fast::hash(data).to_be_bytes());
    out.extend_from_slice(format!("0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n").as_bytes());
    Bytes::from(out)
}

type Sender = hyper::client::conn::http1::SendRequest<Body>;

/// Where the gateway is, and how requests are signed.
struct Target {
    host: String,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    access: String,
    secret: String,
    /// Idle connections (each worker takes one, and puts it back).
    pool: RefCell<Vec<Sender>>,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Target {
    async fn connect(&self) -> Result<Sender, String> {
        let tcp = glommio::net::TcpStream::connect(&self.host).await.map_err(|e| format!("connecting to {}: {e}", self.host))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.handshake(tcp).await,
            Some(config) => {
                let name = stratos_client::tls::server_name(&self.host)?;
                let tcp = stratos_client::tls::under_tls(tcp);
                let s = futures_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await.map_err(|e| format!("TLS to {}: {e}", self.host))?;
                self.handshake(s).await
            }
        }
    }

    async fn handshake<S: futures_util::io::AsyncRead + futures_util::io::AsyncWrite + Unpin + 'static>(&self, s: S) -> Result<Sender, String> {
        let (sender, conn) = hyper::client::conn::http1::handshake::<_, Body>(Io::new(s)).await.map_err(|e| format!("HTTP handshake: {e}"))?;
        glommio::spawn_local(async move {
            let _ = conn.await;
        })
        .detach();
        Ok(sender)
    }

    /// One signed request; the status and the body.
    async fn call(&self, method: &str, path: &str, query: &str, body: Bytes) -> Result<(u16, Bytes), String> {
        self.call_with(method, path, query, body, None, &[]).await
    }

    /// [`Target::call`] with an unsigned `Range` header, and with `signed` headers (an
    /// `x-amz-content-sha256` among them replaces `UNSIGNED-PAYLOAD`).
    async fn call_with(&self, method: &str, path: &str, query: &str, body: Bytes, range: Option<&str>, signed: &[(&str, String)]) -> Result<(u16, Bytes), String> {
        let pooled = self.pool.borrow_mut().pop();
        let mut sender = match pooled {
            Some(s) => s,
            None => self.connect().await?,
        };
        let payload = signed.iter().find(|(n, _)| *n == "x-amz-content-sha256").map_or(sigv4::UNSIGNED_PAYLOAD, |(_, v)| v.as_str());
        let mut headers = vec![
            ("host".to_string(), self.host.clone()),
            ("x-amz-content-sha256".to_string(), payload.to_string()),
            ("x-amz-date".to_string(), sigv4::format_amz_date(now_secs())),
        ];
        headers.extend(signed.iter().filter(|(n, _)| *n != "x-amz-content-sha256").map(|(n, v)| (n.to_string(), v.clone())));
        let sreq = sigv4::Request { method, raw_path: path, raw_query: query, headers: &headers };
        let auth = sigv4::authorization(&sreq, &self.access, &self.secret, "us-east-1", payload).map_err(|e| e.to_string())?;
        let uri = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
        let mut b = hyper::Request::builder().method(method).uri(uri).header("authorization", auth).header("content-length", body.len());
        for (n, v) in &headers {
            b = b.header(n.as_str(), v.as_str());
        }
        if let Some(r) = range {
            b = b.header("range", r);
        }
        let req = b.body(Body::full(body)).map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let mut incoming = resp.into_body();
        let mut out = Vec::new();
        while let Some(d) = stratos_s3g::http::next_data(&mut incoming).await.map_err(|e| format!("reading the answer to {method} {path}: {e}"))? {
            out.extend_from_slice(&d);
        }
        self.pool.borrow_mut().push(sender);
        Ok((status, Bytes::from(out)))
    }

    async fn ok(&self, method: &str, path: &str, query: &str, body: Bytes) -> Result<Bytes, String> {
        match self.call(method, path, query, body).await? {
            (200 | 204, b) => Ok(b),
            (s, b) => Err(format!("{method} {path}: HTTP {s}: {}", error_code(&b))),
        }
    }
}

/// The `<Code>` of an S3 error document (or the status alone).
fn error_code(body: &[u8]) -> String {
    std::str::from_utf8(body).ok().and_then(|t| stratos_s3g::xml::parse(t).ok()).and_then(|d| d.child("Code").map(|c| c.text.clone())).unwrap_or_else(|| "no S3 error".into())
}

fn enc(s: &str) -> String {
    sigv4::encode(s.as_bytes(), false)
}

/// One page of ListMultipartUploads after `marker` (a key and an upload id): the entries
/// (uploads and common prefixes) and the next marker.
async fn uploads_page(t: &Target, bucket: &str, prefix: &str, delimiter: &str, marker: Option<&(String, String)>) -> Result<(usize, Option<(String, String)>), String> {
    let mut q = vec![("max-uploads", "1000".to_string()), ("prefix", prefix.to_string()), ("uploads", String::new())];
    if !delimiter.is_empty() {
        q.push(("delimiter", delimiter.to_string()));
    }
    if let Some((k, u)) = marker {
        q.push(("key-marker", k.clone()));
        q.push(("upload-id-marker", u.clone()));
    }
    q.sort();
    let query = q.iter().map(|(n, v)| format!("{n}={}", enc(v))).collect::<Vec<_>>().join("&");
    let body = t.ok("GET", &format!("/{bucket}"), &query, Bytes::new()).await?;
    let doc = stratos_s3g::xml::parse(std::str::from_utf8(&body).map_err(|_| "a listing that is not UTF-8")?)?;
    let entries = doc.children_named("Upload").count() + doc.children_named("CommonPrefixes").count();
    let text = |n: &str| doc.child(n).map(|c| c.text.clone()).unwrap_or_default();
    let next = (text("IsTruncated") == "true").then(|| (text("NextKeyMarker"), text("NextUploadIdMarker")));
    Ok((entries, next))
}

/// One page of ListObjectsV2 after `token`: the keys, the common prefixes, and the next token.
async fn list_page(t: &Target, bucket: &str, prefix: &str, delimiter: &str, token: Option<&str>) -> Result<(Vec<(String, u64)>, usize, Option<String>), String> {
    let mut q = vec![("list-type", "2".to_string()), ("max-keys", "1000".to_string()), ("prefix", prefix.to_string())];
    if !delimiter.is_empty() {
        q.push(("delimiter", delimiter.to_string()));
    }
    if let Some(t) = token {
        q.push(("continuation-token", t.to_string()));
    }
    q.sort();
    let query = q.iter().map(|(n, v)| format!("{n}={}", enc(v))).collect::<Vec<_>>().join("&");
    let body = t.ok("GET", &format!("/{bucket}"), &query, Bytes::new()).await?;
    let doc = stratos_s3g::xml::parse(std::str::from_utf8(&body).map_err(|_| "a listing that is not UTF-8")?)?;
    let keys = doc
        .children_named("Contents")
        .filter_map(|c| Some((c.child("Key")?.text.clone(), c.child("Size").and_then(|s| s.text.parse().ok()).unwrap_or(0))))
        .collect();
    let prefixes = doc.children_named("CommonPrefixes").count();
    let next = doc.child("NextContinuationToken").map(|n| n.text.clone()).filter(|_| doc.child("IsTruncated").is_some_and(|t| t.text == "true"));
    Ok((keys, prefixes, next))
}

pub fn s3(a: S3Args) -> anyhow::Result<()> {
    let (scheme, host) = a.endpoint.split_once("://").ok_or_else(|| anyhow::anyhow!("--endpoint {}: http://HOST:PORT or https://HOST:PORT", a.endpoint))?;
    let host = host.trim_end_matches('/').to_string();
    let tls = match scheme {
        "http" => None,
        "https" => {
            stratos_client::tls::use_client_env().map_err(|e| anyhow::anyhow!("{e}"))?;
            Some(stratos_client::tls::client().ok_or_else(|| anyhow::anyhow!("an https endpoint needs the cluster CA: set STRATOS_CA (and STRATOS_CERT, STRATOS_KEY)"))?)
        }
        other => anyhow::bail!("--endpoint scheme {other}: http or https"),
    };
    on_executor(a.common.cpu, move || {
        Box::pin(async move {
            let t = Rc::new(Target { host, tls, access: a.access_key.clone(), secret: a.secret_key.clone(), pool: RefCell::default() });
            let bucket = Rc::new(a.bucket.clone());
            match t.call("PUT", &format!("/{bucket}"), "", Bytes::new()).await.map_err(anyhow::Error::msg)? {
                (200, _) => {}
                (409, b) if error_code(&b) == "BucketAlreadyOwnedByYou" => {}
                (s, b) => anyhow::bail!("creating bucket {bucket}: HTTP {s}: {}", error_code(&b)),
            }
            let run = Run::new(&a.common);
            match a.op {
                S3Op::Put => {
                    let name = title(&format!("s3 put {} B", a.size), &a.common);
                    run.show_progress(name.clone());
                    let data = Bytes::from((0..a.size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
                    let tag = rand::random::<u32>();
                    let prefix = Rc::new(a.prefix.clone());
                    let checksum = a.checksum;
                    drive(&a.common, &run, 1, move |seq| {
                        let (t, bucket, data, prefix) = (t.clone(), bucket.clone(), data.clone(), prefix.clone());
                        async move {
                            let n = data.len() as u64;
                            let path = format!("/{bucket}/{}", enc(&format!("{prefix}{tag:08x}-{seq}")));
                            let (body, signed) = match checksum {
                                S3Checksum::None => (data, Vec::new()),
                                S3Checksum::Crc32 => (
                                    aws_chunked_crc32(&data),
                                    vec![
                                        ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER".to_string()),
                                        ("content-encoding", "aws-chunked".to_string()),
                                        ("x-amz-decoded-content-length", n.to_string()),
                                        ("x-amz-trailer", "x-amz-checksum-crc32".to_string()),
                                        ("x-amz-sdk-checksum-algorithm", "CRC32".to_string()),
                                    ],
                                ),
                            };
                            match t.call_with("PUT", &path, "", body, None, &signed).await? {
                                (200, _) => Ok((1, n)),
                                (s, b) => Err(format!("PUT {path}: HTTP {s}: {}", error_code(&b))),
                            }
                        }
                    })
                    .await;
                    run.report(&name, "objects", &a.common)?;
                    let s = run.stats.borrow();
                    println!("{name}: {:.1} MB/s of object data", s.bytes as f64 / run.start.elapsed().as_secs_f64() / 1e6);
                }
                S3Op::Get => {
                    let mut objects = Vec::new();
                    let mut token = None;
                    loop {
                        let (keys, _, next) = list_page(&t, &bucket, &a.prefix, "", token.as_deref()).await.map_err(anyhow::Error::msg)?;
                        objects.extend(keys);
                        match next {
                            Some(n) if objects.len() < 100_000 => token = Some(n),
                            _ => break,
                        }
                    }
                    anyhow::ensure!(!objects.is_empty(), "no objects under {:?} in {bucket} to read (run --op put first)", a.prefix);
                    let name = title(&format!("s3 get ({} objects)", objects.len()), &a.common);
                    let run = Run::new(&a.common);
                    run.show_progress(name.clone());
                    let objects = Rc::new(objects);
                    let range = a.range;
                    drive(&a.common, &run, 1, move |seq| {
                        let (t, bucket, objects) = (t.clone(), bucket.clone(), objects.clone());
                        async move {
                            let (key, size) = &objects[seq as usize % objects.len()];
                            let path = format!("/{bucket}/{}", enc(key));
                            let Some(len) = range.filter(|l| *l > 0 && *l < *size) else {
                                let body = t.ok("GET", &path, "", Bytes::new()).await?;
                                if body.len() as u64 != *size {
                                    return Err(format!("content differs: {key} has {} bytes, the listing said {size}", body.len()));
                                }
                                return Ok((1, *size));
                            };
                            // A different part of the object on each pass over the objects.
                            let at = (seq / objects.len() as u64).wrapping_mul(7919) % (size - len + 1);
                            match t.call_with("GET", &path, "", Bytes::new(), Some(&format!("bytes={at}-{}", at + len - 1)), &[]).await? {
                                (206, b) if b.len() as u64 == len => Ok((1, len)),
                                (206, b) => Err(format!("{key}: {} bytes for a range of {len}", b.len())),
                                (s, b) => Err(format!("GET {path} with a range: HTTP {s}: {}", error_code(&b))),
                            }
                        }
                    })
                    .await;
                    run.report(&name, "objects", &a.common)?;
                    let s = run.stats.borrow();
                    println!("{name}: {:.1} MB/s of object data", s.bytes as f64 / run.start.elapsed().as_secs_f64() / 1e6);
                }
                S3Op::List => {
                    let name = title(&format!("s3 list (delimiter {:?}, 1000 per page)", a.delimiter), &a.common);
                    run.show_progress(name.clone());
                    let cursor: Rc<RefCell<Option<String>>> = Rc::default();
                    let (prefix, delimiter) = (Rc::new(a.prefix.clone()), Rc::new(a.delimiter.clone()));
                    drive(&a.common, &run, 1, move |_| {
                        let (t, bucket, cursor, prefix, delimiter) = (t.clone(), bucket.clone(), cursor.clone(), prefix.clone(), delimiter.clone());
                        async move {
                            let token = cursor.borrow_mut().take();
                            let (keys, prefixes, next) = list_page(&t, &bucket, &prefix, &delimiter, token.as_deref()).await?;
                            // Workers share one cursor: the listing goes on from the last page
                            // any of them read, and starts over at its end.
                            *cursor.borrow_mut() = next;
                            Ok((1, (keys.len() + prefixes) as u64))
                        }
                    })
                    .await;
                    run.report(&name, "pages", &a.common)?;
                    let s = run.stats.borrow();
                    println!("{name}: {:.0} entries/s (keys and common prefixes; {} in all)", s.bytes as f64 / run.start.elapsed().as_secs_f64(), s.bytes);
                }
                S3Op::Initiate => {
                    let name = title("s3 initiate (CreateMultipartUpload)", &a.common);
                    run.show_progress(name.clone());
                    let (tag, dirs, prefix) = (rand::random::<u32>(), a.dirs, Rc::new(a.prefix.clone()));
                    drive(&a.common, &run, 1, move |seq| {
                        let (t, bucket, prefix) = (t.clone(), bucket.clone(), prefix.clone());
                        async move {
                            let key = match dirs {
                                0 => format!("{prefix}{tag:08x}-{seq}"),
                                d => format!("d{:06}/{prefix}{tag:08x}-{seq}", seq % d),
                            };
                            let path = format!("/{bucket}/{}", enc(&key));
                            match t.call("POST", &path, "uploads=", Bytes::new()).await? {
                                (200, _) => Ok((1, 0)),
                                (s, b) => Err(format!("POST {path}?uploads: HTTP {s}: {}", error_code(&b))),
                            }
                        }
                    })
                    .await;
                    run.report(&name, "uploads", &a.common)?;
                }
                S3Op::ListUploads => {
                    let name = title(&format!("s3 list-uploads (delimiter {:?}, 1000 per page)", a.delimiter), &a.common);
                    run.show_progress(name.clone());
                    let cursor: Rc<RefCell<Option<(String, String)>>> = Rc::default();
                    let (prefix, delimiter) = (Rc::new(a.prefix.clone()), Rc::new(a.delimiter.clone()));
                    drive(&a.common, &run, 1, move |_| {
                        let (t, bucket, cursor, prefix, delimiter) = (t.clone(), bucket.clone(), cursor.clone(), prefix.clone(), delimiter.clone());
                        async move {
                            let marker = cursor.borrow_mut().take();
                            let (entries, next) = uploads_page(&t, &bucket, &prefix, &delimiter, marker.as_ref()).await?;
                            // As `--op list`: one cursor, started over at the listing's end.
                            *cursor.borrow_mut() = next;
                            Ok((1, entries as u64))
                        }
                    })
                    .await;
                    run.report(&name, "pages", &a.common)?;
                    let s = run.stats.borrow();
                    println!("{name}: {:.0} entries/s (uploads and common prefixes; {} in all)", s.bytes as f64 / run.start.elapsed().as_secs_f64(), s.bytes);
                }
            }
            anyhow::Ok(())
        })
    })??;
    Ok(())
}
