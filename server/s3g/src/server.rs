//! `stratos s3g`: the gateway process. One glommio executor per core, each with its own
//! listener on the shared port (SO_REUSEPORT: the kernel spreads connections), its own OM
//! client, datanode connections and secret cache; nothing is shared between cores, so it
//! scales with cores as the OM does. HTTPS with the node's certificate when it has one.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context;
use glommio::{LocalExecutorBuilder, Placement};

use crate::gateway::{Gateway, handle};
use crate::http::Io;
use crate::metrics::CoreMetrics;

/// A client connection on which nothing moved for this long is closed, by default (S3 closes
/// idle connections after about 20 s; SDKs reconnect).
pub const IDLE_TIMEOUT_MS: u64 = 60_000;

#[derive(clap::Args, Debug, Clone)]
pub struct S3gArgs {
    /// The OM nodes (host:port, comma-separated).
    #[arg(long, env = "STRATOS_OM", default_value = "127.0.0.1:9862")]
    pub om: String,
    /// Where S3 clients connect (Ozone's s3g port is 9878).
    #[arg(long, default_value = "0.0.0.0:9878")]
    pub address: String,
    /// The status port (Ozone's s3g webadmin port is 19878): `/health`, and `/prom` (or
    /// `/metrics`) with the gateway's counters in Prometheus text: requests by method and
    /// status class and by S3 operation, their time to the answer's head, client connections,
    /// the OM lookups GETs shared. HTTPS when the gateway has TLS. `none`: no status port.
    #[arg(long, default_value = "0.0.0.0:19878")]
    pub http_address: String,
    /// Executors (one per core) [default: every CPU].
    #[arg(long)]
    pub cores: Option<usize>,
    /// The replication of the buckets S3 clients create: THREE (3 datanodes, Ozone's default)
    /// or ONE.
    #[arg(long, default_value = "THREE", value_parser = ["ONE", "THREE"])]
    pub replication: String,
    /// Close a client connection on which nothing was read or written for this long (idle
    /// keep-alive, a stalled upload or download, a slow client holding a connection).
    #[arg(long, default_value_t = IDLE_TIMEOUT_MS)]
    pub idle_timeout_ms: u64,
    /// With --tls-*: serve plain HTTP to S3 clients anyway (behind a proxy that terminates
    /// TLS); the links to the OM and the datanodes keep TLS.
    #[arg(long)]
    pub plain_http: bool,
    /// The master keys of server-side encryption with the gateway's keys (SSE-S3, SSE-KMS):
    /// a file of `NAME BASE64-OF-32-BYTES` lines, readable by its owner only; every gateway
    /// of a cluster needs the same file. Without it, SSE-S3 and SSE-KMS requests are refused
    /// (SSE-C, the client's own key, needs none). `stratos dev` makes one.
    #[arg(long, value_name = "FILE")]
    pub sse_keyring: Option<std::path::PathBuf>,
    /// The keyring's key that SSE-S3 (`x-amz-server-side-encryption: AES256`) uses; SSE-KMS
    /// uses the key its request names.
    #[arg(long, value_name = "NAME", default_value = "sse-s3")]
    pub sse_s3_key: String,
    /// Also serve virtual-hosted-style requests under these domains (comma-separated): a
    /// request to `BUCKET.DOMAIN` addresses that bucket, its path the key, as the AWS SDKs for
    /// Java and Go send by default (Ozone's `ozone.s3g.domain.name`). Path style
    /// (`DOMAIN/BUCKET/KEY`) always works. Clients must resolve `*.DOMAIN` to the gateway and,
    /// over HTTPS, its certificate must name `*.DOMAIN` (`stratos dev --s3-domain` issues one).
    #[arg(long, value_name = "DOMAIN", value_delimiter = ',')]
    pub domain: Vec<String>,
    /// How long a day of buckets' lifecycle rules lasts, in seconds, for the `x-amz-expiration`
    /// the gateway announces; the OM, which expires objects, must be given the same
    /// (`om --lifecycle-day-secs`). Shorter only to test expiry.
    #[arg(long, default_value_t = 86_400)]
    pub lifecycle_day_secs: u64,
    #[command(flatten)]
    pub tls: stratos_common::tls_args::TlsArgs,
}

/// What the gateway serves at, once it does.
#[derive(Debug, Clone)]
pub struct Ready {
    pub address: SocketAddr,
    /// The status port (`/prom`), unless `--http-address none`.
    pub status: Option<SocketAddr>,
    pub https: bool,
    pub cores: usize,
    pub tls: bool,
}

/// Runs the gateway until SIGTERM or SIGINT; `ready` is called once every core listens.
pub fn run(a: &S3gArgs, ready: impl FnOnce(&Ready)) -> anyhow::Result<()> {
    // A thin generic shell over a function that is not: a generic function is compiled in each
    // crate that calls it, with every future it spawns, so the whole gateway was compiled again in
    // the `stratos` binary (240 of CI's 1,615 s of compiling, `cargo build --timings`).
    run_gateway(a, Box::new(ready))
}

fn run_gateway(a: &S3gArgs, ready: Box<dyn FnOnce(&Ready) + '_>) -> anyhow::Result<()> {
    let tls = a.tls.load(stratos_common::tls::Role::S3g)?;
    if let Some(t) = &tls {
        // The OM and the datanodes know the gateway by this certificate (role s3g).
        stratos_common::tls::set_client(Some(t.client.clone()));
    }
    let addr: SocketAddr = a.address.parse().with_context(|| format!("--address {}: not host:port with an IP address", a.address))?;
    if let Some(t) = &tls {
        t.check_host(&addr.ip().to_string())?;
    }
    let http_tls = if a.plain_http { None } else { tls.as_ref().map(|t| t.http.clone()) };
    // Over HTTPS, clients check `BUCKET.DOMAIN` against the certificate: say so now, not at
    // each client's first request.
    if let (Some(t), Some(_)) = (&tls, &http_tls) {
        for d in a.domain.iter().map(|d| d.trim_matches('.')).filter(|d| !d.is_empty()) {
            t.check_host(&format!("*.{d}")).with_context(|| format!("--domain {d}"))?;
        }
    }
    let status_addr = stratos_common::status_http::address(&a.http_address).map_err(anyhow::Error::msg)?;
    let keyring = a.sse_keyring.as_deref().map(|p| crate::sse::Keyring::load(p, &a.sse_s3_key)).transpose()?;
    let bound = stratos_common::rpc::claim_shared_port(addr).with_context(|| format!("binding the S3 address {addr}"))?;
    let cores = a.cores.unwrap_or_else(stratos_common::process::host_cpus).max(1);
    stratos_common::process::install_signal_handlers();
    // Each executor says it listens: executor 0 with the status port it bound as well.
    let (tx, rx) = std::sync::mpsc::channel::<Result<Option<SocketAddr>, String>>();
    let mut handles = Vec::new();
    let settings_changed = std::sync::Arc::new(crate::gateway::SettingsChanged::default());
    let metrics = crate::metrics::Metrics::new(cores);
    // The status port speaks HTTPS whenever the gateway has TLS (as the OM's HTTP port does),
    // --plain-http or not: that flag is for S3 clients behind a proxy.
    let status_tls = tls.as_ref().map(|t| t.http.clone());
    for core in 0..cores {
        let (om, tx, http_tls, keyring, domains) = (a.om.clone(), tx.clone(), http_tls.clone(), keyring.clone(), a.domain.clone());
        let (metrics, status_tls) = (metrics.clone(), status_tls.clone());
        let settings_changed = settings_changed.clone();
        let lifecycle_day_ms = a.lifecycle_day_secs.max(1).saturating_mul(1000);
        let idle = Duration::from_millis(a.idle_timeout_ms.max(1));
        let replication = if a.replication == "ONE" { stratos_client::schema::om_capnp::Replication::RatisOne } else { stratos_client::schema::om_capnp::Replication::RatisThree };
        let h = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("s3g-core-{core}"))
            .spawn(move || async move {
                let listener = match stratos_common::rpc::listen_shared(bound) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Err(format!("listening on {bound}: {e}")));
                        return;
                    }
                };
                let mut status = None;
                if core == 0
                    && let Some(status_addr) = status_addr
                {
                    let all = metrics.clone();
                    let report: stratos_common::status_http::Report = Rc::new(move || {
                        let all = all.clone();
                        Box::pin(async move { all.render() })
                    });
                    match stratos_common::status_http::serve(status_addr, status_tls, "S3 gateway status", "the S3 port is another: 9878 by default", report) {
                        Ok(bound) => status = Some(bound),
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                let _ = tx.send(Ok(status));
                let https = http_tls.is_some();
                let counts = metrics.core(core);
                let gw = Rc::new(Gateway::new(&om, Rc::new(stratos_client::runtime::Glommio), replication, keyring, https).with_domains(&domains).with_settings_changed(settings_changed).with_lifecycle_day_ms(lifecycle_day_ms).with_metrics(counts.clone()));
                accept(listener, gw, http_tls, idle, counts).await;
            })
            .map_err(|e| anyhow::anyhow!("starting an executor: {e}"))?;
        handles.push(h);
    }
    drop(tx);
    let mut status = None;
    for _ in 0..cores {
        status = status.or(rx.recv().context("an executor ended before it listened")?.map_err(anyhow::Error::msg)?);
    }
    ready(&Ready { address: bound, status, https: http_tls.is_some(), cores, tls: tls.is_some() });
    while !stratos_common::process::stop_requested() {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Requests in flight end with the process: nothing is committed until a request's last
    // step, so an interrupted write leaves at most an open key, which the OM expires.
    Ok(())
}

/// Counts a connection closed when dropped, however its task ends.
struct Open(std::sync::Arc<CoreMetrics>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

async fn accept(listener: glommio::net::TcpListener, gw: Rc<Gateway>, tls: Option<std::sync::Arc<rustls::ServerConfig>>, idle: Duration, counts: std::sync::Arc<CoreMetrics>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let (gw, tls) = (gw.clone(), tls.clone());
                counts.connection_accepted();
                let open = Open(counts.clone());
                glommio::spawn_local(async move {
                    let open = open;
                    let _ = stream.set_nodelay(true);
                    let peer = stream.peer_addr().ok().map(|a| crate::gateway::Peer(a.ip()));
                    match tls {
                        None => serve(gw, Io::with_idle_timeout(stream, idle), peer).await,
                        Some(config) => {
                            let handshake = futures_rustls::TlsAcceptor::from(config).accept(stream);
                            match glommio::timer::timeout(stratos_common::rpc::TLS_HANDSHAKE_TIMEOUT, async { Ok(handshake.await) }).await {
                                Ok(Ok(s)) => serve(gw, Io::with_idle_timeout(s, idle), peer).await,
                                Ok(Err(e)) => {
                                    open.0.tls_handshake_failed();
                                    eprintln!("s3g: a TLS handshake failed: {e}");
                                }
                                Err(_) => {
                                    open.0.tls_handshake_failed();
                                    eprintln!("s3g: no TLS handshake within {:?}", stratos_common::rpc::TLS_HANDSHAKE_TIMEOUT);
                                }
                            }
                        }
                    }
                })
                .detach();
            }
            Err(e) => {
                eprintln!("s3g: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve<S: futures_util::io::AsyncRead + futures_util::io::AsyncWrite + Unpin + 'static>(gw: Rc<Gateway>, io: Io<S>, peer: Option<crate::gateway::Peer>) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        if let Some(p) = peer {
            req.extensions_mut().insert(p);
        }
        handle(gw.clone(), req)
    });
    let conn = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(io, service);
    if let Err(e) = conn.await
        && !e.is_incomplete_message()
        && std::env::var_os("STRATOS_S3G_TRACE").is_some()
    {
        eprintln!("s3g: connection ended: {e}");
    }
}
