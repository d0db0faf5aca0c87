//! HTTP on the OM HTTP port: `/health` (200 "ok" once serving), and `/metrics` and `/prom`
//! (Prometheus text format) with every group of this node, gathered from all cores (see
//! [`crate::metrics`]), through the responder every role's status port shares
//! ([`stratos_common::status_http`]). HTTPS only when the node has TLS.

use std::net::SocketAddr;
use std::rc::Rc;

use crate::core::Core;

/// Serves HTTP on `addr`; with `tls`, HTTPS only (a client certificate of the cluster's CA is
/// checked when given, not required: see `NodeTls`).
pub fn serve(core: Rc<Core>, addr: SocketAddr, tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> anyhow::Result<SocketAddr> {
    let report: stratos_common::status_http::Report = Rc::new(move || {
        let core = core.clone();
        Box::pin(async move { core.gather_metrics().await })
    });
    stratos_common::status_http::serve(addr, tls, "OM HTTP", "the OM's RPC port is another: 9862 by default", report).map_err(anyhow::Error::msg)
}
