//! `stratos datanode`: stores block data ([`store`]) and serves it over Cap'n Proto, checking a
//! block token on every call ([`stratos_common::token`]). It registers with the SCM (its id is kept in
//! `DATANODE_ID` in its directory), then heartbeats: each beat reports the delete transactions
//! it carried out and brings back new ones and the current secret keys.

pub mod args;

pub mod store;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context;
use capnp::capability::Rc as CapRc;
use glommio::{LocalExecutorBuilder, Placement};
use stratos_common::process::now_ms;
use stratos_common::token::{self, MODE_READ, MODE_WRITE, SecretKey, TokenError};
use stratos_schema::datanode_capnp::{self, DnStatus, datanode as dn_rpc};
use stratos_schema::scm_capnp::storage_container_manager as scm_rpc;

use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct DatanodeConfig {
    pub data_dir: PathBuf,
    /// Where clients reach this datanode [default 0.0.0.0:9859].
    pub rpc_address: SocketAddr,
    /// The address registered with the SCM, as clients dial it [default: the bound address,
    /// with 127.0.0.1 for an unspecified IP].
    pub advertise: Option<SocketAddr>,
    pub scm_address: String,
    pub heartbeat_ms: u64,
    /// The datanode's certificate, when the cluster is secured (issue 20): TLS on its port
    /// (any certificate of the cluster's CA; block tokens authorize), and as the SCM's client
    /// (its registration is bound to this certificate's name).
    pub tls: Option<stratos_common::tls::NodeTls>,
}

impl Default for DatanodeConfig {
    fn default() -> Self {
        Self { data_dir: PathBuf::from("datanode-data"), rpc_address: SocketAddr::from(([0, 0, 0, 0], 9859)), advertise: None, scm_address: "127.0.0.1:9863".into(), heartbeat_ms: 2000, tls: None }
    }
}

pub struct Datanode {
    pub cfg: DatanodeConfig,
    pub store: Store,
    keys: RefCell<HashMap<u32, SecretKey>>,
    scm: stratos_common::rpc::Redial<scm_rpc::Client>,
    id: Cell<u64>,
    address: RefCell<String>,
    /// Delete transactions carried out, to report on the next beat.
    done: RefCell<Vec<u64>>,
    last_key_fetch: Cell<Option<std::time::Instant>>,
}

impl std::fmt::Debug for Datanode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datanode").field("id", &self.id.get()).field("dir", &self.cfg.data_dir).finish()
    }
}

fn read_id(dir: &Path) -> anyhow::Result<u64> {
    match std::fs::read_to_string(dir.join("DATANODE_ID")) {
        Ok(s) => s.trim().parse().with_context(|| format!("{} holds no datanode id", dir.join("DATANODE_ID").display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).context("reading DATANODE_ID"),
    }
}

fn write_id(dir: &Path, id: u64) -> anyhow::Result<()> {
    let tmp = dir.join("DATANODE_ID.tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("DATANODE_ID"))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

impl Datanode {
    fn learn_keys(&self, keys: Vec<SecretKey>) {
        let now = now_ms();
        let mut k = self.keys.borrow_mut();
        k.retain(|_, v| v.expires_ms > now);
        for key in keys {
            k.insert(key.id, key);
        }
    }

    /// Registers with the SCM (retrying until it answers) and keeps the id it gives. A
    /// refusal (another datanode's certificate, a certificate of the wrong role or CA) is
    /// final: the start fails with the SCM's reason rather than retrying for ever.
    async fn register(&self) -> anyhow::Result<()> {
        let mut delay = Duration::from_millis(100);
        // Plain connections the SCM ended at once, in a row (see below).
        let mut cut_at_once = 0;
        loop {
            let r = async {
                let scm = self.scm.get().await.map_err(|e| match e {
                    stratos_common::ClientError::Tls { .. } => Err(anyhow::anyhow!("{e}")),
                    e => Ok(anyhow::anyhow!("{e}")),
                })?;
                let mut req = scm.register_datanode_request();
                req.get().set_id(self.id.get());
                req.get().set_address(self.address.borrow().as_str());
                let plain = self.cfg.tls.is_none();
                let reply = req.send().promise.await.map_err(|e| {
                    let text = e.to_string();
                    match stratos_common::tls::explain_call_error(&text) {
                        Some(why) => Err(anyhow::anyhow!("{why}")),
                        None if text.contains("permission denied") => Err(anyhow::anyhow!("{text}")),
                        // A TLS server closes a plain connection at its first bytes: every try
                        // would end the same way. Three in a row, not one: an SCM killed
                        // mid-answer ends a connection so once.
                        None if plain && e.kind == capnp::ErrorKind::PrematureEndOfFile && cut_at_once >= 2 => {
                            Err(anyhow::anyhow!("{text}: the SCM closed the connection at once; it requires TLS, so give this datanode --tls-ca, --tls-cert and --tls-key"))
                        }
                        None => Ok(anyhow::anyhow!("{text}")),
                    }
                })?;
                let r = reply.get().map_err(|e| Ok(e.into()))?;
                if r.has_error() {
                    let why = r.get_error().ok().and_then(|t| t.to_str().ok()).unwrap_or("?").to_string();
                    return Err(Err(anyhow::anyhow!("the SCM refused the registration: {why}")));
                }
                Ok(r.get_id())
            }
            .await;
            let r = match r {
                Err(Err(fatal)) => return Err(fatal.context(format!("registering with the SCM at {}", self.cfg.scm_address))),
                Err(Ok(e)) => {
                    cut_at_once = if e.to_string().contains("Premature end of file") { cut_at_once + 1 } else { 0 };
                    Err(e)
                }
                Ok(id) => Ok(id),
            };
            match r {
                Ok(id) => {
                    if id != self.id.get() {
                        write_id(&self.cfg.data_dir, id)?;
                        self.id.set(id);
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.scm.forget();
                    eprintln!("datanode: registering with the SCM at {}: {e:#}; retrying in {delay:?}", self.cfg.scm_address);
                    // SIGINT or SIGTERM while waiting for the SCM: stop, not retry for ever.
                    let stop = std::pin::pin!(stratos_common::process::wait_stop());
                    if let futures_util::future::Either::Left(_) = futures_util::future::select(stop, std::pin::pin!(glommio::timer::sleep(delay))).await {
                        anyhow::bail!("stopped before the SCM at {} took the registration", self.cfg.scm_address);
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// One heartbeat: report deletes done, carry out the SCM's delete commands, learn keys.
    async fn beat(&self) -> anyhow::Result<()> {
        let scm = self.scm.get().await?;
        let done = self.done.borrow().clone();
        let mut req = scm.heartbeat_request();
        req.get().set_id(self.id.get());
        let mut l = req.get().init_deletes_done(done.len() as u32);
        for (i, t) in done.iter().enumerate() {
            l.set(i as u32, *t);
        }
        let reply = req.send().promise.await?;
        let r = reply.get()?;
        if r.has_error() {
            let e = r.get_error()?.to_str()?.to_string();
            if e.contains("register first") {
                self.register().await?;
            }
            anyhow::bail!("{e}");
        }
        self.done.borrow_mut().retain(|t| !done.contains(t));
        self.learn_keys(stratos_common::token::secret_keys(r.get_keys()?)?);
        for d in r.get_deletes()?.iter() {
            let blocks: Vec<(u64, u64)> = d.get_blocks()?.iter().map(|b| (b.get_container_id(), b.get_local_id())).collect();
            self.store.delete(&blocks).await?;
            self.done.borrow_mut().push(d.get_txn());
        }
        Ok(())
    }

    async fn heartbeats(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(Duration::from_millis(self.cfg.heartbeat_ms)).await;
            if let Err(e) = self.beat().await {
                self.scm.forget();
                eprintln!("datanode {}: heartbeat to the SCM at {}: {e:#}", self.id.get(), self.cfg.scm_address);
            }
        }
    }

    /// Checks a token, fetching the SCM's keys once (at most every second) if it names a key
    /// this datanode has not seen yet (a rotation it has not heard of).
    async fn check(&self, token_bytes: &[u8], block: (u64, u64), mode: u8, end: u64) -> Result<(), TokenError> {
        let id = token::key_id_of(token_bytes)?;
        if !self.keys.borrow().contains_key(&id) && self.last_key_fetch.get().is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
            self.last_key_fetch.set(Some(std::time::Instant::now()));
            if let Ok(scm) = self.scm.get().await
                && let Ok(reply) = scm.cluster_map_request().send().promise.await
                && let Ok(keys) = reply.get().and_then(|r| stratos_common::token::secret_keys(r.get_keys()?))
            {
                self.learn_keys(keys);
            }
        }
        let key = self.keys.borrow().get(&id).cloned().ok_or(TokenError::UnknownKey(id))?;
        token::verify(token_bytes, &key, block, mode, end, now_ms()).map(|_| ())
    }
}

#[derive(Debug)]
struct DnService {
    dn: Rc<Datanode>,
}

fn set_err(mut e: datanode_capnp::dn_error::Builder<'_>, status: DnStatus, message: String) {
    e.set_status(status);
    e.set_message(message);
}

fn store_status(e: &StoreError) -> DnStatus {
    match e {
        StoreError::BadRequest(_) => DnStatus::BadRequest,
        StoreError::NotFound(..) => DnStatus::NotFound,
        StoreError::Corrupt { .. } => DnStatus::Corrupt,
        StoreError::Io { .. } => DnStatus::IoError,
    }
}

impl dn_rpc::Server for DnService {
    async fn write_chunk(self: CapRc<Self>, params: dn_rpc::WriteChunkParams, mut results: dn_rpc::WriteChunkResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (c, l, offset) = (p.get_container_id(), p.get_local_id(), p.get_offset());
        let data = p.get_data()?;
        let end = offset.saturating_add(data.len() as u64);
        if let Err(e) = self.dn.check(p.get_token()?, (c, l), MODE_WRITE, end).await {
            set_err(results.get().init_error(), DnStatus::TokenRefused, e.to_string());
            return Ok(());
        }
        if let Err(e) = self.dn.store.write(c, l, offset, data).await {
            set_err(results.get().init_error(), store_status(&e), e.to_string());
        }
        Ok(())
    }

    async fn put_block(self: CapRc<Self>, params: dn_rpc::PutBlockParams, mut results: dn_rpc::PutBlockResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (c, l, length) = (p.get_container_id(), p.get_local_id(), p.get_length());
        if let Err(e) = self.dn.check(p.get_token()?, (c, l), MODE_WRITE, length).await {
            set_err(results.get().init_error(), DnStatus::TokenRefused, e.to_string());
            return Ok(());
        }
        if let Err(e) = self.dn.store.finish(c, l, length).await {
            set_err(results.get().init_error(), store_status(&e), e.to_string());
        }
        Ok(())
    }

    async fn read_chunk(self: CapRc<Self>, params: dn_rpc::ReadChunkParams, mut results: dn_rpc::ReadChunkResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (c, l, offset, length) = (p.get_container_id(), p.get_local_id(), p.get_offset(), u64::from(p.get_length()));
        if let Err(e) = self.dn.check(p.get_token()?, (c, l), MODE_READ, offset.saturating_add(length)).await {
            set_err(results.get().init_error(), DnStatus::TokenRefused, e.to_string());
            return Ok(());
        }
        match self.dn.store.read(c, l, offset, length).await {
            Ok((data, block_len)) => {
                let mut r = results.get();
                r.set_data(&data);
                r.set_block_length(block_len);
            }
            Err(e) => set_err(results.get().init_error(), store_status(&e), e.to_string()),
        }
        Ok(())
    }
}

/// What a started datanode tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    pub rpc: SocketAddr,
    pub id: u64,
}

/// Runs a datanode until SIGTERM/SIGINT.
pub fn run(cfg: DatanodeConfig, on_ready: impl FnOnce(&Ready) + Send + 'static) -> anyhow::Result<()> {
    stratos_common::process::install_signal_handlers();
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let id = read_id(&cfg.data_dir)?;
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("datanode")
        .io_memory(1 << 20)
        .spawn(move || async move {
            let listener = stratos_common::rpc::listen_exclusive(cfg.rpc_address).map_err(|e| anyhow::anyhow!("binding the datanode address {}: {e}", cfg.rpc_address))?;
            let bound = listener.local_addr().map_err(|e| anyhow::anyhow!("{e}"))?;
            let advertise = cfg.advertise.unwrap_or_else(|| if bound.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], bound.port())) } else { bound });
            if let Some(t) = &cfg.tls {
                t.check_host(&advertise.ip().to_string())?;
            }
            let dn = Rc::new(Datanode {
                store: Store::new(cfg.data_dir.clone()),
                scm: stratos_common::rpc::Redial::new(&cfg.scm_address, cfg.tls.as_ref().map(|t| t.client.clone())),
                cfg,
                keys: RefCell::default(),
                id: Cell::new(id),
                address: RefCell::new(advertise.to_string()),
                done: RefCell::default(),
                last_key_fetch: Cell::new(None),
            });
            let d = dn.clone();
            // Any certificate of the cluster's CA may connect (a user's client, an OM); what it
            // may read or write, its block tokens say.
            let tls = dn.cfg.tls.as_ref().map(|t| t.server.clone());
            glommio::spawn_local(stratos_common::rpc::accept_loop(listener, "datanode", tls, move |_| {
                let c: dn_rpc::Client = capnp_rpc::new_client(DnService { dn: d.clone() });
                c.client
            }))
            .detach();
            dn.register().await?;
            // The first beat brings the secret keys; until then every token is refused.
            if let Err(e) = dn.beat().await {
                eprintln!("datanode {}: first heartbeat: {e:#}", dn.id.get());
            }
            glommio::spawn_local(dn.clone().heartbeats()).detach();
            on_ready(&Ready { rpc: advertise, id: dn.id.get() });
            stratos_common::process::wait_stop().await;
            anyhow::Ok(())
        })
        .map_err(|e| anyhow::anyhow!("starting the datanode executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("datanode executor: {e:?}"))?
}
