//! `stratos`: one binary for every role, mirroring the `ozone` command.
//!
//! Roles: `om` (an OM node), `scm`, `datanode`, `dev` (a local cluster in one command: SCM,
//! datanodes and an OM), `sh` (the client shell), `bench` and `tune`. `admin` arrives with HA.

mod om_bench;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use stratos_bench::report::Report;
use stratos_bench::{shard_bench, wal_bench};

// mimalloc: ~15–20% more pipelined RPC throughput than glibc malloc on this host class
// (../shared/FINDINGS.md), and smaller per-key overhead for the memtable's one-allocation entries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "stratos", version, about = "Stratos: a thread-per-core, Raft-replicated namespace server for an object store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an OM node (Ozone Manager): the namespace service, on one executor per core.
    Om(Box<OmArgs>),
    /// Run the SCM (Storage Container Manager): datanode registry, pipelines, containers, block
    /// allocation, block-token keys, deleted blocks.
    Scm(ScmArgs),
    /// Run a datanode: stores block data, checks block tokens, registers with the SCM.
    Datanode(DatanodeArgs),
    /// Run a local cluster (an SCM and --datanodes datanodes as child processes, and an OM) in a
    /// data directory (default: a temp dir); prints a line with `ready` and the addresses when
    /// it serves; Ctrl-C stops it cleanly.
    Dev(DevArgs),
    /// The client shell, in `ozone sh` forms: `stratos sh volume create /vol1`, …
    Sh(stratos_client::sh::ShArgs),
    /// Cluster administration: `status` (every group's leader, term, commit and applied index,
    /// replica lag) and `transfer GROUP NODE` (move a group's leadership).
    Admin(stratos_client::admin::AdminArgs),
    /// Measure Stratos; every figure is a median over --runs runs.
    #[command(subcommand)]
    Bench(Bench),
    /// Probe this host (cores, isolated CPUs, NUMA, memlock, io_uring, the data directory's file
    /// system and fdatasync latency) and print a recommended OM configuration, with the reason
    /// for each value and warnings where Stratos cannot keep its promises.
    Tune {
        /// Directory whose file system is probed (the one you would put WAL segments on).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: PathBuf,
        /// fdatasyncs to time.
        #[arg(long, default_value_t = 2000)]
        syncs: usize,
    },
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// The write-ahead log on real files: durable appends/s by batch size and concurrency.
    Wal(WalArgs),
    /// The namespace state machine on one core: applies/s, lookups/s, bytes/key, snapshots.
    Shard(ShardArgs),
    /// Freon's omkg against a running OM: open + commit keys (metadata only), pipelined.
    Omkg(om_bench::OmkgArgs),
    /// Freon's ockg against a running cluster: the full write path with data (open, write to the
    /// datanodes, commit), keys/s and MB/s.
    Ockg(om_bench::OckgArgs),
    /// Freon's ockr: read back the keys ockg wrote and verify every byte.
    Ockr(om_bench::OckrArgs),
    /// Freon's ombg: bucket creations.
    Ombg(om_bench::OmbgArgs),
    /// Freon's ommg: a metadata mix (create / lookup / list / info, weights as flags).
    Ommg(om_bench::OmmgArgs),
    /// Lookups of keys against a running OM (it writes the keys first), pipelined.
    Lookup(om_bench::LookupArgs),
    /// Freon's ome: echo calls (the RPC path alone; --raft adds a Raft read-index round).
    Ome(om_bench::OmeArgs),
    /// Draw what `bench … --json FILE` wrote: throughput over time, and latency (p50, p99)
    /// against throughput, one curve per label (runs at several --rate make the curve).
    Plot {
        /// JSON files written by the generators' --json.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The image to write: .svg or .png. Text is drawn with a TrueType font found on the
        /// system (DejaVu, Liberation, …) or named in STRATOS_FONT.
        #[arg(short = 'o', long)]
        out: PathBuf,
    },
    /// Both, at sizes that finish in about a minute: the demonstration of the foundation.
    Foundation {
        /// Directory for WAL segments and snapshot files (a temp dir is made inside it).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
struct WalArgs {
    /// Directory for WAL segments (a fresh subdirectory per measurement, removed afterwards).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// Records per durable point, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 256])]
    batch: Vec<usize>,
    /// Concurrent appenders (each appends one record and waits for it), comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize])]
    concurrency: Vec<usize>,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 200)]
    record_bytes: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Pin the WAL's executor to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
}

#[derive(Args, Debug)]
struct ShardArgs {
    /// Keys created (open + commit each).
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Directory for the snapshot file.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
}

/// Every key of the OM configuration file, as a flag (a flag wins over the file).
#[derive(Args, Debug, Default)]
struct OmArgs {
    /// TOML configuration file (every key optional; see README "Configuration").
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (WALs, snapshots, FORMAT).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Client RPC address [default: 0.0.0.0:9862].
    #[arg(long)]
    rpc_address: Option<std::net::SocketAddr>,
    /// HTTP address for /health, /metrics, /prom [default: 0.0.0.0:9874].
    #[arg(long)]
    http_address: Option<std::net::SocketAddr>,
    /// Key shards, fixed at format time [default: one per CPU].
    #[arg(long)]
    shards: Option<u32>,
    /// Executors [default: one per CPU, at most the shards].
    #[arg(long)]
    executors: Option<usize>,
    /// CPUs to pin executors to, e.g. 0,1 [default: 0, 1, …].
    #[arg(long, value_delimiter = ',')]
    cpus: Option<Vec<usize>>,
    /// Do not pin executors to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Busy-poll this many µs before sleeping (lower latency, more CPU) [default: 0].
    #[arg(long)]
    spin_us: Option<u64>,
    /// Administrators, comma-separated [default: root].
    #[arg(long, value_delimiter = ',')]
    admins: Option<Vec<String>>,
    /// Snapshot a group every this many log entries [default: 100000].
    #[arg(long)]
    snapshot_after_entries: Option<u64>,
    /// Log entries kept behind each snapshot for lagging followers [default: 1000].
    #[arg(long)]
    snapshot_logs_to_keep: Option<u64>,
    /// Raft election timeout, minimum and maximum, in ms [default: 300, 600]. A follower campaigns
    /// max + a random timeout in [min, max) after the last heartbeat (openraft's leader lease).
    #[arg(long)]
    election_timeout_min_ms: Option<u64>,
    #[arg(long)]
    election_timeout_max_ms: Option<u64>,
    /// Raft heartbeat interval in ms [default: 100].
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    /// This node's Raft address, as peers dial it [default: 127.0.0.1:9872].
    #[arg(long)]
    raft_address: Option<String>,
    /// This node's Raft id, unique in the cluster and never reused [default: 1].
    #[arg(long)]
    node_id: Option<u64>,
    /// An OM node of the cluster, `ID,RAFT_HOST:PORT,RPC_HOST:PORT`; repeat for each node,
    /// this one included (3 or 5 nodes). Absent: a single-node cluster. Every node must run the
    /// same executor count. Read when the data directory is new; later, membership lives in
    /// the Raft logs.
    #[arg(long = "peer")]
    peers: Option<Vec<String>>,
    /// Join a running cluster (instead of forming one): this node's groups start empty and wait
    /// until an administrator adds it (`stratos admin add ID,RAFT,RPC`); then it receives the
    /// log or a snapshot of every group. Give the cluster's --shards and --executors.
    #[arg(long)]
    join: bool,
    /// Spread group leaders evenly over the nodes by leadership transfer, true or false
    /// [default: true].
    #[arg(long)]
    balance_leaders: Option<bool>,
    /// io_uring registered buffer memory per executor, bytes [default: 1048576].
    #[arg(long)]
    io_memory_bytes: Option<usize>,
    /// Drop open keys not committed within this many ms [default: 604800000, 7 days].
    #[arg(long)]
    open_key_ttl_ms: Option<u64>,
    /// WAL segment size in bytes [default: 67108864].
    #[arg(long)]
    wal_segment_bytes: Option<u64>,
    /// Keep a spare WAL segment ready per group, true or false [default: true].
    #[arg(long)]
    wal_spare_segment: Option<bool>,
    /// Expire open keys and idle retry sessions every this many ms [default: 60000].
    #[arg(long)]
    housekeeping_interval_ms: Option<u64>,
    /// The SCM, host:port [default: none: keys are metadata only, without blocks].
    #[arg(long)]
    scm_address: Option<String>,
    /// Block size in bytes; larger keys span several blocks [default: 268435456].
    #[arg(long)]
    block_bytes: Option<u64>,
    /// Blocks per pool refill from the SCM [default: 256].
    #[arg(long)]
    block_pool_size: Option<u32>,
    /// Block tokens expire this many ms after issue [default: 86400000].
    #[arg(long)]
    block_token_lifetime_ms: Option<u64>,
    /// Fetch the SCM's cluster map and push deleted blocks every this many ms [default: 5000].
    #[arg(long)]
    scm_poll_ms: Option<u64>,
}

#[derive(Args, Debug)]
struct ScmArgs {
    /// Data directory (the SCM's log).
    #[arg(long)]
    data_dir: PathBuf,
    /// Address for OMs and datanodes.
    #[arg(long, default_value = "0.0.0.0:9863")]
    rpc_address: std::net::SocketAddr,
    /// A datanode silent this long is dead (no new blocks on its pipelines).
    #[arg(long, default_value_t = 30_000)]
    dead_after_ms: u64,
    /// Close a container when its blocks would exceed this many bytes.
    #[arg(long, default_value_t = 5_000_000_000)]
    container_bytes: u64,
    /// Make a new block-token secret key every this many ms.
    #[arg(long, default_value_t = 86_400_000)]
    key_rotation_ms: u64,
    /// The longest block-token lifetime OMs use; keys stay valid rotation + this.
    #[arg(long, default_value_t = 86_400_000)]
    token_lifetime_ms: u64,
    /// Write a checkpoint of the state and purge the log every this many records.
    #[arg(long, default_value_t = stratos_server::scm::CHECKPOINT_EVERY)]
    checkpoint_every: u64,
}

#[derive(Args, Debug)]
struct DatanodeArgs {
    /// Data directory (containers of block files, DATANODE_ID).
    #[arg(long)]
    data_dir: PathBuf,
    /// Address for clients (port 0: any free port).
    #[arg(long, default_value = "0.0.0.0:9859")]
    rpc_address: std::net::SocketAddr,
    /// Address registered with the SCM, as clients dial it [default: the bound one].
    #[arg(long)]
    advertise: Option<std::net::SocketAddr>,
    /// The SCM, host:port.
    #[arg(long, default_value = "127.0.0.1:9863")]
    scm: String,
    /// Heartbeat to the SCM every this many ms.
    #[arg(long, default_value_t = 2000)]
    heartbeat_ms: u64,
}

impl OmArgs {
    fn config(&self) -> anyhow::Result<stratos_server::om::config::OmConfig> {
        let mut c = stratos_server::om::config::OmConfig::load(self.config.as_deref())?;
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f.clone() { c.$f = v.into(); } )* };
        }
        set!(
            data_dir, rpc_address, shards, executors, spin_us, admins, snapshot_after_entries, snapshot_logs_to_keep, election_timeout_min_ms, election_timeout_max_ms,
            heartbeat_interval_ms, raft_address, node_id, peers, balance_leaders, io_memory_bytes, open_key_ttl_ms, wal_segment_bytes, wal_spare_segment, housekeeping_interval_ms,
            scm_address, block_bytes, block_pool_size, block_token_lifetime_ms, scm_poll_ms
        );
        if let Some(a) = self.http_address {
            c.http_address = Some(a);
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

#[derive(Args, Debug)]
struct DevArgs {
    /// Data directory [default: a fresh temp dir, removed on exit].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Shift every default port by this much (OM RPC 9862 + N, HTTP 9874 + N, SCM 9863 + N;
    /// datanodes take free ports).
    #[arg(long, default_value_t = 0)]
    base_port: i32,
    /// Key shards [default: one per CPU].
    #[arg(long)]
    shards: Option<u32>,
    /// Datanodes to start (0: an OM alone, metadata only).
    #[arg(long, default_value_t = 3)]
    datanodes: usize,
    /// Block size in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    block_bytes: u64,
    /// OM nodes: 1, or 3 or 5 for a replicated cluster (child processes; node i listens on the
    /// default ports + 100·(i−1), e.g. RPC 9862, 9962, 10062).
    #[arg(long, default_value_t = 1)]
    om_nodes: u64,
}

/// Child processes of `stratos dev`, stopped (SIGTERM, then waited for) when dropped.
struct Children(Vec<(String, std::process::Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &self.0 {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        }
        for (name, c) in &mut self.0 {
            if let Err(e) = c.wait() {
                eprintln!("stratos dev: waiting for {name}: {e}");
            }
        }
    }
}

/// Starts `stratos ARGS` and waits for its `ready` line; returns the line.
fn start_child(children: &mut Children, name: &str, args: &[String]) -> anyhow::Result<String> {
    let lines = spawn_child(children, name, args)?;
    await_ready(name, lines)
}

type ChildLines = std::io::Lines<std::io::BufReader<std::process::ChildStdout>>;

fn spawn_child(children: &mut Children, name: &str, args: &[String]) -> anyhow::Result<ChildLines> {
    use std::io::BufRead;
    let exe = std::env::current_exe().context("finding the stratos binary")?;
    let mut child = std::process::Command::new(exe).args(args).stdout(std::process::Stdio::piped()).spawn().with_context(|| format!("starting {name}"))?;
    let stdout = child.stdout.take().context("child stdout")?;
    children.0.push((name.to_string(), child));
    Ok(std::io::BufReader::new(stdout).lines())
}

fn await_ready(name: &str, mut lines: ChildLines) -> anyhow::Result<String> {
    for line in lines.by_ref() {
        let line = line?;
        if line.contains("ready") {
            // Keep draining its stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return Ok(line);
        }
    }
    anyhow::bail!("{name} exited before it was ready")
}

/// The value after `key ` in a ready line (`… rpc 127.0.0.1:9863 …`).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words.next();
        }
    }
    None
}

fn shifted(port: u16, by: i32) -> anyhow::Result<u16> {
    u16::try_from(i32::from(port) + by).map_err(|_| anyhow::anyhow!("--base-port {by} moves port {port} out of range"))
}

fn dev(a: DevArgs) -> anyhow::Result<()> {
    let temp;
    let dir = match a.data_dir.clone() {
        Some(d) => d,
        None => {
            temp = tempfile::Builder::new().prefix("stratos-dev-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let mut c = stratos_server::om::config::OmConfig { data_dir: Some(dir.join("om")), ..Default::default() };
    c.rpc_address = std::net::SocketAddr::from(([127, 0, 0, 1], shifted(9862, a.base_port)?));
    c.http_address = Some(std::net::SocketAddr::from(([127, 0, 0, 1], shifted(9874, a.base_port)?)));
    c.raft_address = format!("127.0.0.1:{}", shifted(9872, a.base_port)?);
    c.admins = vec!["root".into(), std::env::var("USER").unwrap_or_else(|_| "root".into())];
    if let Some(s) = a.shards {
        c.shards = s;
    }
    c.election_timeout_min_ms = 150;
    c.election_timeout_max_ms = 300;
    c.heartbeat_interval_ms = 50;
    let mut children = Children(Vec::new());
    let mut data = String::from("metadata only");
    if a.datanodes > 0 {
        let scm_addr = format!("127.0.0.1:{}", shifted(9863, a.base_port)?);
        let d = |p: &str| dir.join(p).display().to_string();
        start_child(&mut children, "scm", &["scm".into(), "--data-dir".into(), d("scm"), "--rpc-address".into(), scm_addr.clone(), "--dead-after-ms".into(), "10000".into()])?;
        for i in 0..a.datanodes {
            let line = start_child(
                &mut children,
                &format!("datanode {i}"),
                &["datanode".into(), "--data-dir".into(), d(&format!("dn{i}")), "--rpc-address".into(), "127.0.0.1:0".into(), "--scm".into(), scm_addr.clone(), "--heartbeat-ms".into(), "1000".into()],
            )?;
            eprintln!("stratos dev: datanode {i} at {}", field(&line, "rpc").unwrap_or("?"));
        }
        c.scm_address = Some(scm_addr.clone());
        c.block_bytes = a.block_bytes;
        c.scm_poll_ms = 2000;
        data = format!("scm {scm_addr}, {} datanodes", a.datanodes);
    }
    if a.om_nodes > 1 {
        return dev_cluster(&a, &dir, &c, children, &data);
    }
    stratos_server::om::node::run(&c, |r| {
        println!(
            "stratos dev ready: om {} (http {}), {} shards on {} cores, {data}, data in {} — try: STRATOS_OM={} stratos sh volume create /vol1",
            r.rpc,
            r.http.map_or_else(|| "off".to_string(), |h| h.to_string()),
            r.shards,
            r.cores,
            dir.display(),
            r.rpc
        );
    })?;
    drop(children);
    eprintln!("stratos dev: stopped cleanly");
    Ok(())
}

/// `stratos dev --om-nodes N`: N OM processes forming one cluster (every group on every node),
/// each with the SCM when there is one. Runs until Ctrl-C, then stops every child.
fn dev_cluster(a: &DevArgs, dir: &std::path::Path, c: &stratos_server::om::config::OmConfig, mut children: Children, data: &str) -> anyhow::Result<()> {
    if !(3..=9).contains(&a.om_nodes) {
        anyhow::bail!("--om-nodes {}: a replicated cluster has 3 to 9 nodes (odd counts tolerate the most failures)", a.om_nodes);
    }
    let port = |base: u16, i: u64| shifted(base, a.base_port + 100 * (i as i32 - 1));
    let mut peers = Vec::new();
    for i in 1..=a.om_nodes {
        peers.push(format!("{i},127.0.0.1:{},127.0.0.1:{}", port(9872, i)?, port(9862, i)?));
    }
    let mut pending = Vec::new();
    for i in 1..=a.om_nodes {
        let mut args: Vec<String> = vec!["om".into(), "--data-dir".into(), dir.join(format!("om{i}")).display().to_string(), "--node-id".into(), i.to_string()];
        args.extend(["--rpc-address".into(), format!("127.0.0.1:{}", port(9862, i)?), "--http-address".into(), format!("127.0.0.1:{}", port(9874, i)?)]);
        args.extend(["--raft-address".into(), format!("127.0.0.1:{}", port(9872, i)?), "--admins".into(), c.admins.join(",")]);
        // Several OM processes share this host's CPUs: pinning them all to CPU 0.. would stack them.
        args.push("--no-pin".into());
        if c.shards != 0 {
            args.extend(["--shards".into(), c.shards.to_string()]);
        }
        if let Some(scm) = &c.scm_address {
            args.extend(["--scm-address".into(), scm.clone(), "--block-bytes".into(), c.block_bytes.to_string(), "--scm-poll-ms".into(), c.scm_poll_ms.to_string()]);
        }
        for p in &peers {
            args.extend(["--peer".into(), p.clone()]);
        }
        // All nodes start before any is awaited: each needs a majority to elect leaders.
        pending.push((i, spawn_child(&mut children, &format!("om {i}"), &args)?));
    }
    let mut rpcs = Vec::new();
    for (i, lines) in pending {
        let line = await_ready(&format!("om {i}"), lines)?;
        rpcs.push(field(&line, "rpc").unwrap_or("?").to_string());
    }
    let om = rpcs.join(",");
    println!("stratos dev ready: {} OM nodes {om}, {data}, data in {} — try: STRATOS_OM={om} stratos sh volume create /vol1", a.om_nodes, dir.display());
    stratos_server::om::node::install_signal_handlers();
    while !stratos_server::om::node::stop_requested() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(children);
    eprintln!("stratos dev: stopped cleanly");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut progress = |line: &str| eprintln!("{line}");
    match cli.command {
        Command::Om(a) => {
            let c = a.config()?;
            stratos_server::om::node::run(&c, |r| {
                println!("stratos om ready: rpc {} http {} ({} shards on {} cores)", r.rpc, r.http.map_or_else(|| "off".to_string(), |h| h.to_string()), r.shards, r.cores);
            })?;
            eprintln!("stratos om: stopped cleanly");
        }
        Command::Dev(a) => dev(a)?,
        Command::Scm(a) => {
            let cfg = stratos_server::scm::ScmConfig {
                data_dir: a.data_dir,
                rpc_address: a.rpc_address,
                dead_after_ms: a.dead_after_ms,
                container_bytes: a.container_bytes,
                key_rotation_ms: a.key_rotation_ms,
                token_lifetime_ms: a.token_lifetime_ms,
                checkpoint_every: a.checkpoint_every,
                ..Default::default()
            };
            stratos_server::scm::run(cfg, |r| println!("stratos scm ready: rpc {}", r.rpc))?;
            eprintln!("stratos scm: stopped cleanly");
        }
        Command::Datanode(a) => {
            let cfg = stratos_server::datanode::DatanodeConfig { data_dir: a.data_dir, rpc_address: a.rpc_address, advertise: a.advertise, scm_address: a.scm, heartbeat_ms: a.heartbeat_ms };
            stratos_server::datanode::run(cfg, |r| println!("stratos datanode ready: rpc {} id {}", r.rpc, r.id))?;
            eprintln!("stratos datanode: stopped cleanly");
        }
        Command::Sh(a) => match on_client_executor(move || async move { stratos_client::sh::run(&a).await })? {
            Ok(text) => text.iter().for_each(|t| println!("{t}")),
            Err(line) => fail(&line),
        },
        Command::Admin(a) => match on_client_executor(move || async move { stratos_client::admin::run(&a).await })? {
            Ok(text) => print!("{text}"),
            Err(line) => fail(&format!("stratos admin: {line}")),
        },
        Command::Bench(Bench::Omkg(a)) => om_bench::omkg(a)?,
        Command::Bench(Bench::Ockg(a)) => om_bench::ockg(a)?,
        Command::Bench(Bench::Ockr(a)) => om_bench::ockr(a)?,
        Command::Bench(Bench::Ombg(a)) => om_bench::ombg(a)?,
        Command::Bench(Bench::Ommg(a)) => om_bench::ommg(a)?,
        Command::Bench(Bench::Lookup(a)) => om_bench::lookup(a)?,
        Command::Bench(Bench::Ome(a)) => om_bench::ome(a)?,
        Command::Bench(Bench::Plot { files, out }) => {
            stratos_bench::plot::plot(&files, &out)?;
            println!("wrote {} ({} runs)", out.display(), files.len());
        }
        Command::Bench(Bench::Wal(a)) => {
            let mut report = Report::default();
            wal_bench::run(&wal_options(a), &mut report, &mut progress)?;
            print!("{}", report.table());
        }
        Command::Bench(Bench::Shard(a)) => {
            let mut report = Report::default();
            shard_bench::run(&shard_bench::ShardBenchOptions { keys: a.keys, runs: a.runs, dir: a.dir }, &mut report, &mut progress)?;
            print!("{}", report.table());
        }
        Command::Bench(Bench::Foundation { dir }) => {
            print_host(&stratos_tuning::probe(&dir), &dir);
            let mut report = Report::default();
            let wal = WalArgs { dir: dir.clone(), batch: vec![1, 16, 256], concurrency: vec![64], record_bytes: 200, seconds: 2.0, runs: 1, cpu: None };
            wal_bench::run(&wal_options(wal), &mut report, &mut progress)?;
            shard_bench::run(&shard_bench::ShardBenchOptions { keys: 1_000_000, runs: 1, dir }, &mut report, &mut progress)?;
            print!("{}", report.table());
        }
        Command::Tune { dir, syncs } => {
            let mut probe = stratos_tuning::probe(&dir);
            print_host(&probe, &dir);
            let l = stratos_tuning::probe_fdatasync(&dir, syncs).with_context(|| format!("probing fdatasync in {}", dir.display()))?;
            println!("fdatasync of 4 KiB writes ({} samples): p50 {} µs, p90 {} µs, p99 {} µs, max {} µs", l.count, l.p50, l.p90, l.p99, l.max);
            println!("→ one WAL group commit costs about p50; that many syncs per second per shard ({:.0}) bound a shard's durable batches, so throughput comes from batching.", 1e6 / l.p50.max(1) as f64);
            probe.fdatasync = Some(l);
            let (advice, warnings) = stratos_tuning::recommend(&probe);
            for w in &warnings {
                println!("warning: {w}");
            }
            println!();
            print!("{}", stratos_tuning::render_toml(&advice));
        }
    }
    Ok(())
}

/// Runs a client command on a fresh (unpinned) glommio executor.
fn on_client_executor<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(f: impl FnOnce() -> F + Send + 'static) -> anyhow::Result<T> {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move { f().await })
        .map_err(|e| anyhow::anyhow!("starting the client executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("client executor: {e}"))
}

/// A client command's failure: one line on stderr, exit status 1.
fn fail(line: &str) -> ! {
    eprintln!("{line}");
    std::process::exit(1)
}

fn wal_options(a: WalArgs) -> wal_bench::WalBenchOptions {
    wal_bench::WalBenchOptions { dir: a.dir, batch_sizes: a.batch, concurrency: a.concurrency, record_bytes: a.record_bytes, seconds: a.seconds, runs: a.runs, cpu: a.cpu }
}

fn print_host(p: &stratos_tuning::Probe, dir: &std::path::Path) {
    let f = &p.host;
    let memlock = f.memlock_bytes.map_or("unknown".to_string(), |b| if b == u64::MAX { "unlimited".into() } else { format!("{} KiB", b / 1024) });
    let uring = match f.io_uring_disabled {
        Some(0) | None => "allowed",
        Some(1) => "restricted to a group",
        Some(_) => "disabled",
    };
    println!("host: {} cores, kernel {}, memlock {memlock}, io_uring {uring}, data dir {}", f.cores, f.kernel, dir.display());
    println!(
        "CPUs isolated: {}; NUMA nodes: {}; file system of the data dir: {}",
        if p.isolated.is_empty() { "none".to_string() } else { format!("{:?}", p.isolated) },
        p.numa_nodes.iter().map(|(n, cpus)| format!("node{n} {} CPUs", cpus.len())).collect::<Vec<_>>().join(", "),
        p.file_system
    );
    match &p.disk {
        Some(d) => println!(
            "data disk: {} ({}), {}, scheduler {}, {} hardware queue(s), write cache {}{}",
            d.name,
            d.model,
            if d.rotational { "reported rotational" } else { "flash" },
            d.scheduler.as_deref().unwrap_or("unknown"),
            d.hw_queues,
            d.write_cache.as_deref().unwrap_or("unknown"),
            d.pci.as_deref().map_or(String::new(), |pci| format!(", PCI {pci}"))
        ),
        None => println!("data disk: not a block device sysfs knows (tmpfs, overlay, network file system, …)"),
    }
    for (device, irqs) in p.irqs.chunk_by(|a, b| a.device == b.device).map(|g| (g[0].device.as_str(), g)) {
        let busy: Vec<String> = irqs.iter().filter(|i| i.count > 0).map(|i| format!("{} {} → CPUs {:?} ({} so far)", i.number, i.name, i.cpus, i.count)).collect();
        println!("interrupts of the {device}: {} vectors; in use: {}", irqs.len(), if busy.is_empty() { "none yet".to_string() } else { busy.join(", ") });
    }
    println!("irqbalance: {}", if p.irqbalance { "running" } else { "not running" });
}
