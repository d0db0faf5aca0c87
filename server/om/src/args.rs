//! `stratos om`'s flags: every key of the configuration file (see [`crate::config`]), a flag
//! winning over the file.

use std::path::PathBuf;

use clap::Args;

use crate::config::OmConfig;

/// Every key of the OM configuration file, as a flag (a flag wins over the file).
#[derive(Args, Debug, Default)]
pub struct OmArgs {
    /// TOML configuration file (every key optional; see README "Configuration").
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory (WALs, snapshots, FORMAT).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Client RPC address [default: 0.0.0.0:9862].
    #[arg(long)]
    pub rpc_address: Option<std::net::SocketAddr>,
    /// HTTP address for /health, /metrics, /prom [default: 0.0.0.0:9874].
    #[arg(long)]
    pub http_address: Option<std::net::SocketAddr>,
    /// Give each core its own client port too, advertised to clients by `routes`, so that a
    /// key's calls land on its shard's core instead of crossing cores [default: true].
    #[arg(long)]
    pub core_ports: Option<bool>,
    /// Core i's port is this + i [default: 0 = ports the OS picks].
    #[arg(long)]
    pub core_port_base: Option<u16>,
    /// Key shards, fixed at format time [default: one per executor on a single node given
    /// --executors (at most one per CPU); else one per CPU].
    #[arg(long)]
    pub shards: Option<u32>,
    /// Executors [default: one per CPU, at most the shards].
    #[arg(long)]
    pub executors: Option<usize>,
    /// CPUs to pin executors to, e.g. 0,1 [default: 0, 1, …].
    #[arg(long, value_delimiter = ',')]
    pub cpus: Option<Vec<usize>>,
    /// Do not pin executors to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Busy-poll this many µs before sleeping (lower latency, more CPU) [default: 0].
    #[arg(long)]
    pub spin_us: Option<u64>,
    /// Administrators, comma-separated [default: root].
    #[arg(long, value_delimiter = ',')]
    pub admins: Option<Vec<String>>,
    /// Groups whose members are administrators, comma-separated (Ozone's
    /// ozone.administrators.groups); with TLS the groups a user certificate names [default: none].
    #[arg(long, value_delimiter = ',')]
    pub admin_groups: Option<Vec<String>>,
    #[command(flatten)]
    pub tls: stratos_common::tls_args::TlsArgs,
    /// Snapshot a group every this many log entries [default: 100000].
    #[arg(long)]
    pub snapshot_after_entries: Option<u64>,
    /// Log entries kept behind each snapshot for lagging followers [default: 1000].
    #[arg(long)]
    pub snapshot_logs_to_keep: Option<u64>,
    /// Snapshot a group after this many bytes of log too (0: entries only) [default: 268435456].
    #[arg(long)]
    pub snapshot_after_bytes: Option<u64>,
    /// ... but not before the log holds this fraction of the last snapshot's size, so a large
    /// namespace is not snapshotted back to back (0: no such floor) [default: 0.25].
    #[arg(long)]
    pub snapshot_log_ratio: Option<f64>,
    /// The least time between two meta fences a node starts, in µs: key requests that arrive
    /// meanwhile share the next one (0: back to back; a node alone never waits) [default: 5000].
    #[arg(long)]
    pub meta_fence_interval_us: Option<u64>,
    /// Raft election timeout, minimum and maximum, in ms [default: 300, 600]. A follower campaigns
    /// max + a random timeout in [min, max) after the last heartbeat (openraft's leader lease).
    #[arg(long)]
    pub election_timeout_min_ms: Option<u64>,
    #[arg(long)]
    pub election_timeout_max_ms: Option<u64>,
    /// Raft heartbeat interval in ms [default: 100].
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,
    /// This node's Raft address, as peers dial it [default: 127.0.0.1:9872].
    #[arg(long)]
    pub raft_address: Option<String>,
    /// This node's Raft id, unique in the cluster and never reused [default: 1].
    #[arg(long)]
    pub node_id: Option<u64>,
    /// An OM node of the cluster, `ID,RAFT_HOST:PORT,RPC_HOST:PORT`; repeat for each node,
    /// this one included (3 or 5 nodes). Absent: a single-node cluster. Every node must run the
    /// same executor count. Read when the data directory is new; later, membership lives in
    /// the Raft logs.
    #[arg(long = "peer")]
    pub peers: Option<Vec<String>>,
    /// Join a running cluster (instead of forming one): this node's groups start empty and wait
    /// until an administrator adds it (`stratos admin add ID,RAFT,RPC`); then it receives the
    /// log or a snapshot of every group. Give the cluster's --shards and --executors.
    #[arg(long)]
    pub join: bool,
    /// Spread group leaders evenly over the nodes by leadership transfer, true or false
    /// [default: true].
    #[arg(long)]
    pub balance_leaders: Option<bool>,
    /// io_uring registered buffer memory per executor, bytes [default: 1048576].
    #[arg(long)]
    pub io_memory_bytes: Option<usize>,
    /// Drop open keys not committed within this many ms [default: 604800000, 7 days].
    #[arg(long)]
    pub open_key_ttl_ms: Option<u64>,
    /// Abort S3 multipart uploads begun more than this many ms ago [default: 2592000000, 30
    /// days, Ozone's ozone.om.open.mpu.expire.threshold].
    #[arg(long)]
    pub multipart_upload_ttl_ms: Option<u64>,
    /// How long a day of S3 lifecycle rules lasts, in seconds [default: 86400]. Shorter only to
    /// test expiry (as RGW's rgw_lc_debug_interval); the S3 gateway must be given the same.
    #[arg(long)]
    pub lifecycle_day_secs: Option<u64>,
    /// WAL segment size in bytes [default: 67108864].
    #[arg(long)]
    pub wal_segment_bytes: Option<u64>,
    /// Keep a spare WAL segment ready per group, true or false [default: true].
    #[arg(long)]
    pub wal_spare_segment: Option<bool>,
    /// Expire open keys and idle retry sessions every this many ms [default: 60000].
    #[arg(long)]
    pub housekeeping_interval_ms: Option<u64>,
    /// Calls one client connection may have in flight before the OM stops reading it until one
    /// answers (TCP then holds the client back) [default: 1024].
    #[arg(long)]
    pub connection_calls_max: Option<usize>,
    /// The SCM, host:port [default: none: keys are metadata only, without blocks].
    #[arg(long)]
    pub scm_address: Option<String>,
    /// Block size in bytes; larger keys span several blocks [default: 268435456].
    #[arg(long)]
    pub block_bytes: Option<u64>,
    /// Blocks per pool refill from the SCM [default: 256].
    #[arg(long)]
    pub block_pool_size: Option<u32>,
    /// Block tokens expire this many ms after issue [default: 86400000].
    #[arg(long)]
    pub block_token_lifetime_ms: Option<u64>,
    /// Fetch the SCM's cluster map and push deleted blocks every this many ms [default: 5000].
    #[arg(long)]
    pub scm_poll_ms: Option<u64>,
}

impl OmArgs {
    /// The configuration file (if any) with every given flag applied over it.
    pub fn config(&self) -> anyhow::Result<OmConfig> {
        let mut c = OmConfig::load(self.config.as_deref())?;
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f.clone() { c.$f = v.into(); } )* };
        }
        set!(
            data_dir, rpc_address, shards, executors, spin_us, admins, admin_groups, snapshot_after_entries, snapshot_logs_to_keep, election_timeout_min_ms, election_timeout_max_ms,
            heartbeat_interval_ms, raft_address, node_id, peers, balance_leaders, io_memory_bytes, open_key_ttl_ms, multipart_upload_ttl_ms, lifecycle_day_secs, wal_segment_bytes, wal_spare_segment, housekeeping_interval_ms,
            scm_address, block_bytes, block_pool_size, block_token_lifetime_ms, scm_poll_ms, core_ports, core_port_base, snapshot_after_bytes, snapshot_log_ratio,
            meta_fence_interval_us, connection_calls_max
        );
        for (flag, slot) in [(&self.tls.tls_ca, &mut c.tls_ca), (&self.tls.tls_cert, &mut c.tls_cert), (&self.tls.tls_key, &mut c.tls_key)] {
            if flag.is_some() {
                slot.clone_from(flag);
            }
        }
        if let Some(a) = self.http_address {
            c.http_address = Some(a);
        }
        // Absolute: glommio opens directories to sync them, and a relative data directory
        // failed at the first start with "Bad file descriptor".
        if let Some(d) = c.data_dir.take() {
            c.data_dir = Some(std::path::absolute(&d).map_err(|e| anyhow::anyhow!("data directory {}: {e}", d.display()))?);
        }
        if self.cpus.is_some() {
            c.cpus = self.cpus.clone();
        }
        if self.no_pin {
            c.pin = false;
        }
        if self.join {
            c.join = true;
        }
        Ok(c)
    }
}
