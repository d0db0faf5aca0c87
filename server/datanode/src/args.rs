//! `stratos datanode`'s flags.

use std::path::PathBuf;

use clap::Args;

use crate::DatanodeConfig;

#[derive(Args, Debug)]
pub struct DatanodeArgs {
    /// Data directory (block-log/ of small blocks, containers/ of large block files,
    /// DATANODE_ID).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address for clients (port 0: any free port).
    #[arg(long, default_value = "0.0.0.0:9859")]
    pub rpc_address: std::net::SocketAddr,
    /// Address registered with the SCM, as clients dial it [default: the bound one].
    #[arg(long)]
    pub advertise: Option<std::net::SocketAddr>,
    /// The SCM, host:port.
    #[arg(long, default_value = "127.0.0.1:9863")]
    pub scm: String,
    /// Heartbeat to the SCM every this many ms.
    #[arg(long, default_value_t = 2000)]
    pub heartbeat_ms: u64,
    /// Blocks of up to this many bytes are stored in the datanode's block log (DATA/block-log:
    /// one record each, group-committed, so many blocks share one fdatasync); longer ones get a
    /// file each. 0: every new block in a file. At most 4 MiB.
    #[arg(long, default_value_t = 1 << 20)]
    pub small_block_bytes: u64,
    /// Memory for small blocks between their first write and their putBlock; a block that
    /// finds none goes to a file.
    #[arg(long, default_value_t = 256 << 20)]
    pub small_block_memory: u64,
    /// Segment size of the block log of small blocks (each preallocated and zero-filled; one
    /// spare is kept ready while it is written).
    #[arg(long, default_value_t = 64 << 20)]
    pub log_segment_bytes: u64,
    /// Memory for blocks read recently from the block log (those of up to 128 KiB, and any read
    /// in ranges), the least recently read dropped first. The log is read with O_DIRECT (no page
    /// cache), so without it every read of a hot small object is a disk read. 0: none.
    #[arg(long, default_value_t = 256 << 20)]
    pub read_cache_bytes: u64,
    /// Calls one client connection may have in flight before the datanode stops reading it
    /// until one answers (TCP then holds the client back). With TLS only: connections from
    /// other datanodes (chained writes) are not bounded, nor any without TLS.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub connection_calls_max: u64,
    /// The status port (Ozone's datanode HTTP port is 9882): `/health`, and `/prom` (or
    /// `/metrics`) with the block store's counters in Prometheus text (blocks put, the block
    /// log's group commits and fdatasyncs, compactions, the read cache, blocks re-replicated).
    /// HTTPS when the datanode has TLS. `none`: not served.
    #[arg(long, default_value = "0.0.0.0:9882")]
    pub http_address: String,
    #[command(flatten)]
    pub tls: stratos_common::tls_args::TlsArgs,
}

impl DatanodeArgs {
    pub fn config(self) -> anyhow::Result<DatanodeConfig> {
        // Absolute: glommio syncs directories by path, and a relative one failed with EBADF.
        let data_dir = std::path::absolute(&self.data_dir).unwrap_or(self.data_dir);
        let tls = self.tls.load(stratos_common::tls::Role::Datanode)?;
        let store = crate::store::StoreConfig { small_block_bytes: self.small_block_bytes, buffer_bytes: self.small_block_memory, log_segment_bytes: self.log_segment_bytes, read_cache_bytes: self.read_cache_bytes };
        store.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        let http_address = stratos_common::status_http::address(&self.http_address).map_err(anyhow::Error::msg)?;
        Ok(DatanodeConfig { data_dir, rpc_address: self.rpc_address, advertise: self.advertise, scm_address: self.scm, heartbeat_ms: self.heartbeat_ms, tls, store, connection_calls_max: usize::try_from(self.connection_calls_max).unwrap_or(usize::MAX), http_address })
    }
}
