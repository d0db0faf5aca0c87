//! HTTP on the OM HTTP port: `/health` (200 "ok" once serving), and `/metrics` and `/prom`
//! (Prometheus text format) with every group of this node, gathered from all cores (see
//! [`crate::metrics`]). A tiny HTTP/1.0 responder: one request per
//! connection, GET only, request head bounded to 8 KiB. HTTPS only when the node has TLS.

use std::net::SocketAddr;
use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::core::Core;

const REQUEST_HEAD_BYTES_MAX: usize = 8192;

/// Whether the bytes so far cannot start an HTTP request: a request line starts with a method,
/// upper-case letters up to a space.
fn not_http(head: &[u8]) -> bool {
    let method = head.split(|b| *b == b' ').next().unwrap_or(&[]);
    method.len() > 16 || method.iter().any(|b| !b.is_ascii_uppercase())
}

/// Serves HTTP on `addr`; with `tls`, HTTPS only (a client certificate of the cluster's CA is
/// checked when given, not required: see `NodeTls`).
pub fn serve(core: Rc<Core>, addr: SocketAddr, tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> anyhow::Result<SocketAddr> {
    let listener = stratos_common::rpc::listen_exclusive(addr).map_err(|e| anyhow::anyhow!("binding the OM HTTP address {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| anyhow::anyhow!("{e}"))?;
    glommio::spawn_local(async move {
        loop {
            let Ok(stream) = listener.accept().await else { continue };
            let (core, tls) = (core.clone(), tls.clone());
            glommio::spawn_local(async move {
                match tls {
                    None => answer(core, stream).await,
                    Some(config) => {
                        let handshake = futures_rustls::TlsAcceptor::from(config).accept(stream);
                        if let Ok(Ok(s)) = glommio::timer::timeout(stratos_common::rpc::TLS_HANDSHAKE_TIMEOUT, async { Ok(handshake.await) }).await {
                            answer(core, s).await;
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

/// Reads one request from `stream` and answers it.
async fn answer(core: Rc<Core>, mut stream: impl futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin) {
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
        // Answered at once, not after the 8 KiB a request head may take: a Cap'n
        // Proto client given this port by mistake then fails at once and says so.
        _ if not_http(&head) => ("400 Bad Request", "not an HTTP request (the OM's RPC port is another: 9862 by default)\n".to_string()),
        "/health" => ("200 OK", "ok\n".to_string()),
        "/metrics" | "/prom" => ("200 OK", core.gather_metrics().await),
        _ => ("404 Not Found", "try /health, /metrics or /prom\n".to_string()),
    };
    let reply = format!("HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.close().await;
}
