//! A role's status port: `/health` and Prometheus text (`/metrics`, `/prom`) over a tiny
//! HTTP/1.0 responder, one request per connection, GET only, its head bounded to 8 KiB, HTTPS
//! only when the role has TLS (a client certificate of the cluster's CA is checked when given,
//! not required). The OM serves it on its HTTP port, the S3 gateway on its own (Ozone's
//! webadmin port); what each reports is the role's own ([`Report`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};

const REQUEST_HEAD_BYTES_MAX: usize = 8192;

/// What a role answers on its status port for `/metrics` and `/prom`: Prometheus text.
pub type Report = Rc<dyn Fn() -> Pin<Box<dyn Future<Output = String>>>>;

/// Starts a metric family in Prometheus text: its `# HELP` and `# TYPE` lines (its samples
/// follow, one `name{labels} value` line each).
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric family with its one sample: `name{labels} value` (`name value` without labels).
pub fn single(out: &mut String, name: &str, kind: &str, help: &str, labels: &str, value: u64) {
    use std::fmt::Write as _;
    family(out, name, kind, help);
    let _ = if labels.is_empty() { writeln!(out, "{name} {value}") } else { writeln!(out, "{name}{{{labels}}} {value}") };
}

/// A role's `--http-address`: an IP address and port, or `none` (no status port).
pub fn address(flag: &str) -> Result<Option<SocketAddr>, String> {
    match flag {
        "none" => Ok(None),
        a => a.parse().map(Some).map_err(|_| format!("--http-address {a}: not host:port with an IP address (or none)")),
    }
}

/// Whether the bytes so far cannot start an HTTP request: a request line starts with a method,
/// upper-case letters up to a space.
fn not_http(head: &[u8]) -> bool {
    let method = head.split(|b| *b == b' ').next().unwrap_or(&[]);
    method.len() > 16 || method.iter().any(|b| !b.is_ascii_uppercase())
}

/// Serves the status port on `addr` (on this executor) until the process ends; returns the
/// address bound. `not_http_hint` ends the answer to a client that speaks something else (the
/// role's other port, say), so that it fails at once and says where to go.
pub fn serve(addr: SocketAddr, tls: Option<std::sync::Arc<rustls::ServerConfig>>, what: &'static str, not_http_hint: &'static str, report: Report) -> Result<SocketAddr, String> {
    let listener = crate::rpc::listen_exclusive(addr).map_err(|e| format!("binding the {what} address {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| format!("the {what} address: {e}"))?;
    glommio::spawn_local(async move {
        loop {
            let Ok(stream) = listener.accept().await else { continue };
            let (report, tls) = (report.clone(), tls.clone());
            glommio::spawn_local(async move {
                match tls {
                    None => answer(stream, not_http_hint, report).await,
                    Some(config) => {
                        let handshake = futures_rustls::TlsAcceptor::from(config).accept(stream);
                        if let Ok(Ok(s)) = glommio::timer::timeout(crate::rpc::TLS_HANDSHAKE_TIMEOUT, async { Ok(handshake.await) }).await {
                            answer(s, not_http_hint, report).await;
                        }
                    }
                }
            })
            .detach();
        }
    })
    .detach();
    Ok(bound)
}

/// [`serve`] for a role whose status port may be off (`addr` None: nothing is served), with a
/// report made without waiting (the SCM's, a datanode's: one executor, its state at hand).
pub fn serve_if(addr: Option<SocketAddr>, tls: Option<std::sync::Arc<rustls::ServerConfig>>, what: &'static str, not_http_hint: &'static str, report: impl Fn() -> String + 'static) -> Result<Option<SocketAddr>, String> {
    let Some(addr) = addr else { return Ok(None) };
    let report = Rc::new(report);
    let report: Report = Rc::new(move || {
        let report = report.clone();
        Box::pin(async move { report() })
    });
    serve(addr, tls, what, not_http_hint, report).map(Some)
}

/// Reads one request from `stream` and answers it.
async fn answer(mut stream: impl futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin, not_http_hint: &str, report: Report) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_BYTES_MAX && !not_http(&head) {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = match path {
        // Answered at once, not after the 8 KiB a request head may take: a Cap'n Proto or S3
        // client given this port by mistake then fails at once and says so.
        _ if not_http(&head) => ("400 Bad Request", format!("not an HTTP request ({not_http_hint})\n")),
        "/health" => ("200 OK", "ok\n".to_string()),
        "/metrics" | "/prom" => ("200 OK", report().await),
        _ => ("404 Not Found", "try /health, /metrics or /prom\n".to_string()),
    };
    let reply = format!("HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.close().await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_line_starts_with_an_upper_case_method() {
        assert!(!super::not_http(b"GET /prom HTTP/1.1\r\n"));
        assert!(!super::not_http(b"GE"), "a method not yet whole");
        assert!(super::not_http(b"\x00\x00\x00\x00capnp"), "a Cap'n Proto frame");
        assert!(super::not_http(b"\x16\x03\x01"), "a TLS hello on a plain port");
        assert!(super::not_http(b"get / HTTP/1.1"));
    }

    #[test]
    fn a_single_sample_follows_its_family_with_or_without_labels() {
        let mut out = String::new();
        super::single(&mut out, "a_total", "counter", "As.", "", 3);
        super::single(&mut out, "b", "gauge", "Bs.", "node=\"7\"", 4);
        assert_eq!(out, "# HELP a_total As.\n# TYPE a_total counter\na_total 3\n# HELP b Bs.\n# TYPE b gauge\nb{node=\"7\"} 4\n");
    }

    #[test]
    fn a_status_address_is_host_port_or_none() {
        assert_eq!(super::address("none"), Ok(None));
        assert_eq!(super::address("127.0.0.1:9882"), Ok(Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9882)))));
        assert_eq!(super::address("bogus"), Err("--http-address bogus: not host:port with an IP address (or none)".to_string()));
    }
}
