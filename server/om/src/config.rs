//! The OM's configuration: a TOML file whose every key has a default (below), each overridable
//! by a flag of `stratos om`. Unknown keys are an error (a typo must not silently fall back to a
//! default). Ports follow Apache Ozone's: OM RPC 9862, OM HTTP 9874, OM Raft 9872.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OmConfig {
    /// Where groups keep their WALs and snapshots. Required (`stratos dev` makes a temp dir).
    pub data_dir: Option<PathBuf>,
    /// Client RPC (Cap'n Proto). Default 0.0.0.0:9862.
    pub rpc_address: SocketAddr,
    /// Each core (executor) also listens on a port of its own, on the RPC address's host, and
    /// `routes` tells clients which core owns which group: a client connected there sends a
    /// key's calls to its shard's own core, and the call never crosses cores (the shared RPC
    /// port spreads connections over the cores at random, so about (cores - 1) / cores of the
    /// calls cross). Default true.
    pub core_ports: bool,
    /// With `core_ports`: core i listens on this port + i; 0 (the default) = ports the OS picks
    /// (a firewall in front of the node then needs the ephemeral range open; set a base to
    /// know them).
    pub core_port_base: u16,
    /// Metrics and health (HTTP). Default 0.0.0.0:9874; absent in the file = default.
    pub http_address: Option<SocketAddr>,
    /// This node's Raft address, as peers will dial it (the 3-node cluster). Default 127.0.0.1:9872.
    pub raft_address: String,
    /// This node's Raft id (unique in the cluster, never reused). Default 1.
    pub node_id: u64,
    /// The OM nodes of the cluster, this one included, each `ID,RAFT_HOST:PORT,RPC_HOST:PORT`.
    /// Empty (the default) = a single-node cluster of this node. Used when a group is created
    /// (the first start); afterwards membership lives in the groups' Raft logs.
    pub peers: Vec<String>,
    /// Join a running cluster instead of forming one: this node's new groups start empty and
    /// wait until the cluster adds it (`stratos admin add ID,RAFT,RPC`). Its `shards` and
    /// `executors` must equal the cluster's. Default false.
    pub join: bool,
    /// Spread group leadership evenly over the nodes (at start and when a node returns), by
    /// leadership transfer. Default true; false leaves leaders where elections put them.
    pub balance_leaders: bool,
    /// Key shards, fixed when the data directory is formatted. 0 = one per executor on a single
    /// node given `executors` (at most one per CPU), else one per CPU.
    pub shards: u32,
    /// Executors (one per core). 0 = one per CPU; never more than the shards.
    pub executors: usize,
    /// Pin executor i to CPU i (or to `cpus[i]`). Default true.
    pub pin: bool,
    /// The CPUs to pin executors to, in order; empty = 0, 1, 2, …
    pub cpus: Option<Vec<usize>>,
    /// Busy-poll this long before sleeping when idle: lower latency, burns CPU. Default 0.
    pub spin_us: u64,
    /// io_uring registered buffer memory per executor. Default 1 MiB (see FINDINGS: memlock).
    pub io_memory_bytes: usize,
    /// Users with administrator rights (create volumes, everything). Default ["root"].
    pub admins: Vec<String>,
    /// Groups whose members have administrator rights (with TLS: the groups a user certificate
    /// names). Default none.
    pub admin_groups: Vec<String>,
    /// TLS on the client RPC ports (issue 20): the cluster CA, this node's certificate and its
    /// key, PEM files (`stratos admin ca init`, `stratos admin cert issue --role om`). All three
    /// or none; with them every client must present a certificate of the cluster CA, and the
    /// caller is the user it names (the request header's user is ignored). Default: none.
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// An open key not committed within this time is dropped. Default 7 days (Ozone's).
    pub open_key_ttl_ms: u64,
    /// An S3 multipart upload not completed within this time is aborted (its parts freed).
    /// Default 30 days (Ozone's).
    pub multipart_upload_ttl_ms: u64,
    /// The length of a day in S3 lifecycle rules ("expire 30 days after"), in seconds. Default
    /// 86400; shorter only to watch expiry happen in tests (RGW's `rgw_lc_debug_interval`).
    /// Each key shard's leader looks for expired objects every 1/24 of it (hourly by default,
    /// at least every second).
    pub lifecycle_day_secs: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// Snapshot a group (and purge its log before that) every this many entries. Default 100k.
    pub snapshot_after_entries: u64,
    /// ... or every this many bytes of its log, whichever comes first (an entry holds 1 to 256
    /// commands, so entries alone say little about how long a restart replays). 0 = entries
    /// only. Default 256 MiB.
    pub snapshot_after_bytes: u64,
    /// ... but not before the group's log holds this fraction of its last snapshot's size, so
    /// that snapshot work per byte of log stays bounded as the namespace grows (a snapshot costs
    /// time proportional to the state) and a restart replays at most about this fraction of the
    /// snapshot it loads. 0 = no floor. Default 0.25.
    pub snapshot_log_ratio: f64,
    /// The least time between two meta fences core 0 starts, in µs (see `Core::meta_fence`):
    /// a key request waits for a read index of the meta group taken after it arrived, which on
    /// a node with peers is a quorum round (and, off the meta leader, a call to it first).
    /// Requests that arrive meanwhile share the next fence, so under load this caps those
    /// rounds at one per interval per node, and adds at most the interval to a request. 0:
    /// back to back, one per round trip. Default 5000 (bench/RESULTS.md, "Meta fences paced").
    pub meta_fence_interval_us: u64,
    /// Log entries kept behind each snapshot, so a follower a little behind catches up from the
    /// log; one further behind installs the snapshot. Default 1000.
    pub snapshot_logs_to_keep: u64,
    /// WAL segment size. Default 64 MiB.
    pub wal_segment_bytes: u64,
    /// Keep a spare WAL segment ready per group (one more segment of disk each), so a rollover
    /// renames it instead of zero-filling a new one on the flush path. Default true.
    pub wal_spare_segment: bool,
    /// Every this often, each group's leader drops expired open keys (freeing their blocks) and
    /// idle retry sessions. Default 60 s.
    pub housekeeping_interval_ms: u64,
    /// Calls one client connection may have in flight; at this many (or when their parameters
    /// reach 64 MiB) the OM stops reading the connection until one answers, and TCP holds the
    /// client back (`stratos_common::rpc::Gate`). Default 1024: far above what a client's
    /// pipelining needs (the S3 gateway and the generators keep at most a few hundred per
    /// connection), and it bounds what one connection can make the OM hold.
    pub connection_calls_max: usize,
    /// The SCM (`host:port`) that gives blocks and block-token keys. Absent = metadata only:
    /// keys are opened without blocks and `allocateBlock` is refused.
    pub scm_address: Option<String>,
    /// Block size: a key of more bytes spans several blocks. Default 256 MiB (Ozone's).
    pub block_bytes: u64,
    /// Blocks one refill of a pool asks the SCM for; a pool is refilled below a quarter of
    /// this. Default 256.
    pub block_pool_size: u32,
    /// A block token expires this long after it is issued. Default 1 day (Ozone's); it never
    /// outlives the secret key that signed it.
    pub block_token_lifetime_ms: u64,
    /// Fetch the SCM's cluster map (datanodes, pipelines, keys) and push deleted blocks every
    /// this often. Default 5 s.
    pub scm_poll_ms: u64,
}

impl Default for OmConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            rpc_address: "0.0.0.0:9862".parse().expect("a literal address"),
            http_address: Some("0.0.0.0:9874".parse().expect("a literal address")),
            core_ports: true,
            core_port_base: 0,
            raft_address: "127.0.0.1:9872".into(),
            node_id: 1,
            peers: Vec::new(),
            join: false,
            balance_leaders: true,
            shards: 0,
            executors: 0,
            pin: true,
            cpus: None,
            spin_us: 0,
            io_memory_bytes: 1 << 20,
            admins: vec!["root".into()],
            admin_groups: Vec::new(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            open_key_ttl_ms: 7 * 24 * 3600 * 1000,
            multipart_upload_ttl_ms: 30 * 24 * 3600 * 1000,
            lifecycle_day_secs: 86_400,
            // openraft 0.10 lets a follower campaign only after its leader lease
            // (election_timeout_max) *plus* a random election timeout from [min, max) have
            // passed since the last heartbeat, so a leader's loss is noticed after 0.9-1.2 s
            // with these (etcd's default election timeout is 1 s). bench/failover.sh, 20 kills:
            // p50 1.1 s, p99 1.7 s; with 500-1000/150, p50 1.8 s, p99 2.9 s (README "High
            // availability"). Lower risks needless elections when a host stalls.
            election_timeout_min_ms: stratos_tuning::ELECTION_TIMEOUT_MIN_MS_DEFAULT,
            election_timeout_max_ms: stratos_tuning::ELECTION_TIMEOUT_MAX_MS_DEFAULT,
            heartbeat_interval_ms: 100,
            snapshot_after_entries: 100_000,
            snapshot_after_bytes: 256 << 20,
            snapshot_log_ratio: 0.25,
            meta_fence_interval_us: 5000,
            snapshot_logs_to_keep: 1000,
            wal_segment_bytes: stratos_wal::constants::SEGMENT_BYTES_DEFAULT,
            wal_spare_segment: true,
            housekeeping_interval_ms: 60_000,
            connection_calls_max: 1024,
            scm_address: None,
            block_bytes: 256 << 20,
            block_pool_size: 256,
            block_token_lifetime_ms: 24 * 3600 * 1000,
            scm_poll_ms: 5000,
        }
    }
}

impl OmConfig {
    /// The TLS files of the client RPC ports, if TLS is configured; all three or an error.
    pub fn tls_files(&self) -> anyhow::Result<Option<stratos_common::tls::Files>> {
        Ok(stratos_common::tls::files_of(self.tls_ca.as_deref(), self.tls_cert.as_deref(), self.tls_key.as_deref())?)
    }

    /// The members new groups start with: every peer (`peers`), or this node alone.
    pub fn members(&self, rpc: std::net::SocketAddr) -> anyhow::Result<std::collections::BTreeMap<u64, stratos_raft::transport::PeerAddr>> {
        use stratos_raft::transport::PeerAddr;
        let mut members = std::collections::BTreeMap::new();
        if self.peers.is_empty() {
            members.insert(self.node_id, PeerAddr { raft: self.raft_address.clone(), rpc: rpc.to_string() });
            return Ok(members);
        }
        for p in &self.peers {
            let parts: Vec<&str> = p.split(',').map(str::trim).collect();
            let [id, raft, rpc] = parts[..] else { anyhow::bail!("peer {p:?}: expected ID,RAFT_HOST:PORT,RPC_HOST:PORT") };
            let id: u64 = id.parse().map_err(|_| anyhow::anyhow!("peer {p:?}: the id {id:?} is not a number"))?;
            if id == 0 {
                anyhow::bail!("peer {p:?}: node ids start at 1");
            }
            if members.insert(id, PeerAddr { raft: raft.to_string(), rpc: rpc.to_string() }).is_some() {
                anyhow::bail!("peer id {id} is listed twice");
            }
        }
        let Some(me) = members.get(&self.node_id) else { anyhow::bail!("this node's id {} is not among the peers {:?}", self.node_id, self.peers) };
        if me.raft != self.raft_address {
            anyhow::bail!("this node's Raft address is {} but its peer entry says {}", self.raft_address, me.raft);
        }
        Ok(members)
    }

    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            None => Ok(Self::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("{}: invalid configuration", p.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `stratos tune` prints is a valid configuration: every key it recommends exists (the
    /// file denies unknown keys) and has the right type.
    #[test]
    fn the_tune_recommendation_is_a_valid_configuration() {
        let probe = stratos_tuning::Probe {
            host: stratos_tuning::HostFacts { cores: 16, memlock_bytes: Some(u64::MAX), io_uring_disabled: Some(0), kernel: "6.1".into() },
            isolated: (2..16).collect(),
            numa_nodes: vec![(0, (0..16).collect())],
            file_system: "xfs".into(),
            disk: None,
            irqs: Vec::new(),
            irqbalance: false,
            fdatasync: Some(stratos_tuning::LatencyUs { count: 1, p50: 50, p90: 60, p99: 80, p999: 90, max: 100 }),
        };
        let (advice, _) = stratos_tuning::recommend(&probe);
        let text = format!("data_dir = \"/data/om\"\n{}", stratos_tuning::render_toml(&advice));
        let c: OmConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!((c.executors, c.shards, c.spin_us), (14, 14, 50));
        assert_eq!(c.cpus, Some((2..16).collect()));
        assert_eq!(c.io_memory_bytes, 4 << 20);
    }
}
