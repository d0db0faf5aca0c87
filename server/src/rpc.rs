//! Cap'n Proto plumbing shared by the roles: serving a capability on accepted connections.

use std::time::Duration;

use capnp_rpc::{RpcSystem, rpc_twoparty_capnp, twoparty};
use futures_util::io::AsyncReadExt;

/// Words a peer's message may make the server traverse (Cap'n Proto's amplification guard).
pub const TRAVERSAL_WORDS_MAX: usize = 64 << 20 >> 3;
pub const NESTING_MAX: i32 = 64;

/// Serves `bootstrap` on one accepted connection, on this executor, until the peer hangs up or
/// breaks the protocol (either way only this connection is affected).
pub fn serve_connection(stream: glommio::net::TcpStream, bootstrap: capnp::capability::Client) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.split();
    let mut options = capnp::message::ReaderOptions::new();
    options.traversal_limit_in_words(Some(TRAVERSAL_WORDS_MAX)).nesting_limit(NESTING_MAX);
    let network = twoparty::VatNetwork::new(futures_lite::io::BufReader::new(reader), futures_lite::io::BufWriter::new(writer), rpc_twoparty_capnp::Side::Server, options);
    let rpc = RpcSystem::new(Box::new(network), Some(bootstrap));
    glommio::spawn_local(async move {
        let _ = rpc.await;
    })
    .detach();
}

/// Accepts connections on `listener` forever, serving each with a capability from `make`.
pub async fn accept_loop(listener: glommio::net::TcpListener, what: &'static str, make: impl Fn() -> capnp::capability::Client) {
    loop {
        match listener.accept().await {
            Ok(stream) => serve_connection(stream, make()),
            Err(e) => {
                eprintln!("{what}: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Text of a capnp text field, or a capnp error naming the field.
pub fn text(t: capnp::Result<capnp::text::Reader<'_>>, what: &str, max: usize) -> capnp::Result<String> {
    let s = t?.to_str().map_err(|_| capnp::Error::failed(format!("{what} is not UTF-8")))?;
    if s.len() > max {
        return Err(capnp::Error::failed(format!("{what} is {} bytes, at most {max}", s.len())));
    }
    Ok(s.to_string())
}
