//! `stratos scm`'s flags.

use std::path::PathBuf;

use clap::Args;

use crate::ScmConfig;

#[derive(Args, Debug)]
pub struct ScmArgs {
    /// Data directory (the SCM's log).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address for OMs and datanodes.
    #[arg(long, default_value = "0.0.0.0:9863")]
    pub rpc_address: std::net::SocketAddr,
    /// A datanode silent this long is dead (no new blocks on its pipelines).
    #[arg(long, default_value_t = 30_000)]
    pub dead_after_ms: u64,
    /// Close a container when its blocks would exceed this many bytes.
    #[arg(long, default_value_t = 5_000_000_000)]
    pub container_bytes: u64,
    /// Make a new block-token secret key every this many ms.
    #[arg(long, default_value_t = 86_400_000)]
    pub key_rotation_ms: u64,
    /// The longest block-token lifetime OMs use; keys stay valid rotation + this.
    #[arg(long, default_value_t = 86_400_000)]
    pub token_lifetime_ms: u64,
    /// Write a checkpoint of the state and purge the log every this many records.
    #[arg(long, default_value_t = crate::CHECKPOINT_EVERY)]
    pub checkpoint_every: u64,
    /// Calls one connection (an OM's, a datanode's) may have in flight before the SCM stops
    /// reading it until one answers: TCP then holds the sender back.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub connection_calls_max: u64,
    /// The status port (Ozone's SCM HTTP port is 9876): `/health`, and `/prom` (or `/metrics`)
    /// in Prometheus text: datanodes registered and healthy, pipelines, containers, blocks
    /// allocated, pending deletions, pipeline repairs, secret keys (the numbers its `status`
    /// call answers in JSON). HTTPS when the SCM has TLS. `none`: not served.
    #[arg(long, default_value = "0.0.0.0:9876")]
    pub http_address: String,
    #[command(flatten)]
    pub tls: stratos_common::tls_args::TlsArgs,
}

impl ScmArgs {
    pub fn config(self) -> anyhow::Result<ScmConfig> {
        let http_address = stratos_common::status_http::address(&self.http_address).map_err(anyhow::Error::msg)?;
        Ok(ScmConfig {
            // Absolute: glommio syncs directories by path, and a relative one failed with EBADF.
            data_dir: std::path::absolute(&self.data_dir).unwrap_or(self.data_dir),
            rpc_address: self.rpc_address,
            dead_after_ms: self.dead_after_ms,
            container_bytes: self.container_bytes,
            key_rotation_ms: self.key_rotation_ms,
            token_lifetime_ms: self.token_lifetime_ms,
            checkpoint_every: self.checkpoint_every,
            tls: self.tls.load(stratos_common::tls::Role::Scm)?,
            connection_calls_max: usize::try_from(self.connection_calls_max).unwrap_or(usize::MAX),
            http_address,
            ..Default::default()
        })
    }
}
