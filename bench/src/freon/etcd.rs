//! `omkg --om etcd://HOST:PORT`: the same workload on etcd, through its v3 JSON gateway.

use super::*;

/// `omkg --om etcd://HOST:PORT`: the same workload against etcd, for a side-by-side ratio
/// (bench/etcd.sh). The mapping keeps the durable replicated writes per key equal: Stratos
/// writes a key as an open (one Raft entry on the key's shard) and a commit (another), so on
/// etcd one key is a put of the open record (`/open/<key>`) and then one transaction that puts
/// the key and deletes its open record: two etcd Raft entries, each fdatasync'ed on a majority
/// before etcd answers, as Stratos's are. Values are `--value-size` bytes (128 by default:
/// about a Stratos key record). etcd has no multi-key batch in this mapping, so each call in
/// flight (`-t`) is one key;
/// compare at equal `-t` (in-flight requests), Stratos's batching being part of what is
/// compared. The client speaks etcd's v3 JSON gateway (HTTP/1.1 keep-alive, one connection
/// per call in flight), which costs etcd some CPU that its gRPC API would not. `--rate` runs it
/// open loop like the Stratos generators.
pub(super) fn omkg_etcd(addr: String, a: OmkgArgs) -> anyhow::Result<()> {
    on_executor(a.common.cpu, move || {
        Box::pin(async move {
            let what = title("omkg (etcd)", &a.common);
            let run = Run::new(&a.common);
            run.show_progress(what.clone());
            let prefix = Rc::new(format!("{}/{}/k{:08x}", a.volume, a.bucket, rand::random::<u32>()));
            let value = Rc::new(b64(&vec![b'v'; a.value_size]));
            let common = Rc::new(a.common.clone());
            // Keep-alive connections, one per call in flight (at most -t), kept between calls; a
            // connection that failed is dropped and the next call opens a new one.
            let pool: Rc<RefCell<Vec<Http>>> = Rc::default();
            drive(&a.common, &run, 1, move |seq| {
                let (prefix, value, addr, pool) = (prefix.clone(), value.clone(), addr.clone(), pool.clone());
                let key = common.key(format!("{prefix}/{seq:012}"));
                async move {
                    let popped = pool.borrow_mut().pop();
                    let mut conn = match popped {
                        Some(c) => c,
                        None => Http::connect(&addr).await?,
                    };
                    let (k, open) = (b64(key.as_bytes()), b64(format!("/open/{key}").as_bytes()));
                    let put = format!(r#"{{"key":"{open}","value":"{value}"}}"#);
                    let txn = format!(r#"{{"success":[{{"requestPut":{{"key":"{k}","value":"{value}"}}}},{{"requestDeleteRange":{{"key":"{open}"}}}}]}}"#);
                    conn.post("/v3/kv/put", &put).await?;
                    conn.post("/v3/kv/txn", &txn).await?;
                    pool.borrow_mut().push(conn);
                    Ok((1, 0))
                }
            })
            .await;
            run.report(&what, "keys", &a.common)
        })
    })?
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if k <= c.len() { A[(n >> shift) as usize & 63] as char } else { '=' });
        }
    }
    out
}

/// A minimal HTTP/1.1 keep-alive client for etcd's JSON gateway (answers carry Content-Length).
struct Http {
    stream: futures_lite::io::BufReader<glommio::net::TcpStream>,
    host: String,
}

impl Http {
    async fn connect(addr: &str) -> Result<Http, String> {
        let s = glommio::net::TcpStream::connect(addr).await.map_err(|e| format!("etcd at {addr}: {e}"))?;
        let _ = s.set_nodelay(true);
        Ok(Http { stream: futures_lite::io::BufReader::new(s), host: addr.to_string() })
    }

    /// POSTs `body`; the answer's body if the status is 200.
    async fn post(&mut self, path: &str, body: &str) -> Result<Vec<u8>, String> {
        use futures_lite::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let req = format!("POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", self.host, body.len());
        let io = |e: std::io::Error| format!("etcd: {e}");
        self.stream.get_mut().write_all(req.as_bytes()).await.map_err(io)?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await.map_err(io)?;
        let status = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut length = None;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await.map_err(io)? == 0 {
                return Err("etcd closed the connection".into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let Some(length) = length.filter(|n| *n <= 1 << 20) else { return Err("etcd: an answer without a usable Content-Length".into()) };
        let mut out = vec![0; length];
        self.stream.read_exact(&mut out).await.map_err(io)?;
        if status != "200" {
            return Err(format!("etcd: HTTP {status}: {}", String::from_utf8_lossy(&out[..out.len().min(200)])));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod etcd_tests {
    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(super::b64(b""), "");
        assert_eq!(super::b64(b"f"), "Zg==");
        assert_eq!(super::b64(b"fo"), "Zm8=");
        assert_eq!(super::b64(b"foo"), "Zm9v");
        assert_eq!(super::b64(b"foobar"), "Zm9vYmFy");
    }
}
