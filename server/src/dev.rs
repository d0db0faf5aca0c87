//! `stratos dev`: a whole local cluster in one command (an SCM and datanodes as child processes,
//! and one OM in this process or several as children), data in a temp or given directory.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use stratos_om::config::OmConfig;

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Data directory [default: a fresh temp dir, removed on exit].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Shift every default port by this much (OM RPC 9862 + N, HTTP 9874 + N, SCM 9863 + N and
    /// its status port 9876 + N, S3 9878 + N and the gateway's status port 9879 + N; datanodes
    /// take free ports).
    #[arg(long, default_value_t = 0)]
    base_port: i32,
    /// Key shards, fixed when the data directory is formatted [default: one per executor with
    /// one OM node; one per CPU with several, so that their leaders spread over the nodes].
    #[arg(long)]
    shards: Option<u32>,
    /// Executors (threads) per OM node, unpinned: dev's processes and its clients share this
    /// host's CPUs [default: CPUs ÷ (OM nodes + 1), at least 1].
    #[arg(long, value_parser = at_least_one)]
    executors: Option<usize>,
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
    /// No TLS: every port (OM, Raft, SCM, datanodes, HTTP) takes plain connections and the OM
    /// believes the user a request names (for measuring what TLS costs; never for anything
    /// reachable by others).
    #[arg(long)]
    insecure: bool,
    /// Do not start the S3 gateway (`stratos s3g`, on port 9878 + --base-port, its status
    /// port `/prom` on 9879 + --base-port).
    #[arg(long)]
    no_s3g: bool,
    /// The gateway's `--domain`: also serve virtual-hosted-style requests (`BUCKET.DOMAIN`);
    /// its certificate then names `DOMAIN` and `*.DOMAIN` too. Clients must resolve those
    /// names to 127.0.0.1 (an /etc/hosts line per bucket, or the client's own resolver).
    #[arg(long, value_name = "DOMAIN")]
    s3_domain: Option<String>,
    /// The datanodes' `--small-block-bytes`: blocks up to this size go to their container's
    /// group-committed log, longer ones to a file each (0: every block in a file).
    #[arg(long, default_value_t = 1 << 20)]
    small_block_bytes: u64,
    /// How long a day of S3 lifecycle rules lasts, in seconds, for the OM (which expires
    /// objects) and the gateway (which announces when): shorter only to watch expiry happen.
    #[arg(long, default_value_t = 86_400)]
    lifecycle_day_secs: u64,
}

/// Executors per OM node when `--executors` is not given. Every process of `stratos dev` (its
/// OM nodes, datanodes, SCM, gateway) and the clients it is run for share this host's CPUs, so
/// an OM with an executor per CPU oversubscribes them: each executor then does less per wake-up and
/// waits for time slices behind the others, pinned ones for one CPU while another idles. On the
/// 2-vCPU VM (2026-12-04, medians of 3 alternating runs) one unpinned executor against the two
/// pinned ones dev ran before: `ockg --size 4096 -t 64` 4,311 against 3,394 keys/s (the OM's CPU
/// per key 93-110 µs against 148-177), and three OM nodes (`omkg --batch 1 -t 256`) 9,591
/// against 7,261 keys/s (each node had two unpinned executors).
fn dev_executors(om_nodes: u64) -> usize {
    executors_for(stratos_common::process::host_cpus(), om_nodes)
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (each OM node needs an executor)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

fn executors_for(cpus: usize, om_nodes: u64) -> usize {
    (cpus / (om_nodes as usize + 1)).max(1)
}

/// The certificates of a secured `stratos dev` in `DIR/tls`: the cluster CA, one certificate
/// per OM node (`om-N`), the SCM's (`scm`), one per datanode (`dn-N`), and one for the caller
/// (`$USER`, an administrator here). Made on the first start, reused when the data directory
/// is. Returns the caller's files.
fn dev_certificates(dir: &std::path::Path, om_nodes: u64, datanodes: usize, user: &str, s3_domain: Option<&str>) -> anyhow::Result<stratos_common::tls::Files> {
    use stratos_common::tls;
    let tls_dir = dir.join("tls");
    if !tls::ca_files(&tls_dir).0.exists() {
        tls::ca_init(&tls_dir, 3650)?;
    }
    let mut wanted: Vec<(tls::Role, String)> = (1..=om_nodes).map(|i| (tls::Role::Om, format!("om-{i}"))).collect();
    if datanodes > 0 {
        wanted.push((tls::Role::Scm, "scm".into()));
    }
    wanted.extend((0..datanodes).map(|i| (tls::Role::Datanode, format!("dn-{i}"))));
    wanted.push((tls::Role::S3g, "s3g".into()));
    wanted.push((tls::Role::User, user.to_string()));
    for (role, name) in wanted {
        // The gateway's is made again for a domain (it must name `*.DOMAIN`, whatever an
        // earlier start issued it for).
        let with_domain = role == tls::Role::S3g && s3_domain.is_some();
        if tls_dir.join(format!("{name}.pem")).exists() && !with_domain {
            continue;
        }
        let mut req = tls::Request::new(role, &name, 365);
        if role != tls::Role::User {
            req.hosts = vec!["localhost".into(), "127.0.0.1".into()];
        }
        if let (true, Some(d)) = (with_domain, s3_domain) {
            let d = d.trim_matches('.');
            req.hosts.extend([d.to_string(), format!("*.{d}")]);
        }
        tls::issue(&tls_dir, &tls_dir, &req).with_context(|| format!("issuing the certificate of {name} in {}", tls_dir.display()))?;
    }
    Ok(tls::Files::in_dir(&tls_dir, user))
}

/// A node's `--tls-ca`, `--tls-cert`, `--tls-key` in a secured dev cluster (`tls`: the
/// caller's files, for the CA's path): the certificate named `name` in `DIR/tls`. None without
/// TLS.
fn tls_flags(dir: &std::path::Path, tls: Option<&stratos_common::tls::Files>, name: &str) -> Vec<String> {
    let Some(f) = tls else { return Vec::new() };
    let node = stratos_common::tls::Files::in_dir(&dir.join("tls"), name);
    vec!["--tls-ca".into(), f.ca.display().to_string(), "--tls-cert".into(), node.cert.display().to_string(), "--tls-key".into(), node.key.display().to_string()]
}

/// The line that gives a shell what a client of this cluster needs.
fn client_env(om: &str, files: Option<&stratos_common::tls::Files>) -> String {
    match files {
        Some(f) => format!("export STRATOS_OM={om} STRATOS_CA={} STRATOS_CERT={} STRATOS_KEY={}", f.ca.display(), f.cert.display(), f.key.display()),
        None => format!("export STRATOS_OM={om}"),
    }
}

/// Child processes of `stratos dev`, stopped (SIGTERM, then waited for) when dropped.
///
/// Tied to this process's life: each child asks the kernel for SIGTERM when `stratos dev`
/// dies (`PR_SET_PDEATHSIG`), so a `kill -9` of `dev` no longer leaves the SCM and datanodes
/// holding their ports. A child that exits while `dev` runs is reported on stderr at once
/// (by [`Children::watch`]), with the command that starts it again.
#[derive(Default)]
struct Children {
    list: std::sync::Arc<std::sync::Mutex<Vec<Child>>>,
    /// Set when `dev` stops its children: their exits are not news then.
    stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

struct Child {
    name: String,
    process: std::process::Child,
    args: Vec<String>,
    gone: bool,
}

impl Children {
    /// Reports every child that exits, every half second, until `dev` stops them.
    fn watch(&self) {
        let (list, stopping) = (self.list.clone(), self.stopping.clone());
        std::thread::spawn(move || {
            while !stopping.load(std::sync::atomic::Ordering::SeqCst) {
                for c in list.lock().unwrap_or_else(|p| p.into_inner()).iter_mut().filter(|c| !c.gone) {
                    // A Ctrl-C reaches the children too (one process group): their exits while
                    // `dev` stops are not news.
                    if stratos_common::process::stop_requested() {
                        break;
                    }
                    if let Ok(Some(status)) = c.process.try_wait() {
                        c.gone = true;
                        let exe = std::env::current_exe().map_or("stratos".into(), |e| e.display().to_string());
                        eprintln!(
                            "stratos dev: {} (pid {}) exited: {status}; the cluster runs without it. To start it again, in another shell: {exe} {}",
                            c.name,
                            c.process.id(),
                            c.args.join(" ")
                        );
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        });
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut children = self.list.lock().unwrap_or_else(|p| p.into_inner());
        // Not those already reaped (`gone`): their pids may belong to someone else by now.
        children.retain(|c| !c.gone);
        for c in children.iter() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.process.id() as libc::pid_t, libc::SIGTERM) };
        }
        // Each stops cleanly in a second or two; one that does not (stopped by SIGSTOP, stuck)
        // is killed rather than waited for: Ctrl-C on `dev` always ends it.
        let deadline = std::time::Instant::now() + CHILD_STOP_WITHIN;
        for c in children.iter_mut() {
            loop {
                match c.process.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(20)),
                    Ok(None) => {
                        eprintln!("stratos dev: {} (pid {}) did not stop within {CHILD_STOP_WITHIN:?} of SIGTERM; killing it", c.name, c.process.id());
                        let _ = c.process.kill();
                        let _ = c.process.wait();
                        break;
                    }
                    Err(e) => {
                        eprintln!("stratos dev: waiting for {}: {e}", c.name);
                        break;
                    }
                }
            }
        }
    }
}

/// How long `dev`'s children get to stop after SIGTERM, together, before they are killed.
const CHILD_STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(15);

/// Starts `stratos ARGS` and waits for its `ready` line; returns the line.
fn start_child(children: &mut Children, name: &str, args: &[String]) -> anyhow::Result<String> {
    let lines = spawn_child(children, name, args)?;
    await_ready(name, lines)
}

type ChildLines = std::io::Lines<std::io::BufReader<std::process::ChildStdout>>;

fn spawn_child(children: &mut Children, name: &str, args: &[String]) -> anyhow::Result<ChildLines> {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding the stratos binary")?;
    // SAFETY: getpid is async-signal-safe.
    let parent = unsafe { libc::getpid() };
    let mut command = std::process::Command::new(exe);
    command.args(args).stdout(std::process::Stdio::piped());
    // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid, _exit).
    unsafe {
        command.pre_exec(move || {
            // SIGTERM when `dev` dies, however it dies; the child stops cleanly on it. (The
            // signal follows the thread that forked: children are started from the main thread,
            // which lives as long as `dev`.)
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if libc::getppid() != parent {
                libc::_exit(1); // `dev` died before the prctl took effect
            }
            Ok(())
        });
    }
    let mut child = command.spawn().with_context(|| format!("starting {name}"))?;
    let stdout = child.stdout.take().context("child stdout")?;
    children.list.lock().unwrap_or_else(|p| p.into_inner()).push(Child { name: name.to_string(), process: child, args: args.to_vec(), gone: false });
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

/// Starts the S3 gateway for the OM nodes `om` (it connects to them on first use, so it may
/// start before they serve); returns its URL.
fn start_s3g(children: &mut Children, a: &DevArgs, dir: &std::path::Path, om: &str, tls: Option<&stratos_common::tls::Files>) -> anyhow::Result<Option<String>> {
    if a.no_s3g {
        return Ok(None);
    }
    let mut args: Vec<String> = vec!["s3g".into(), "--om".into(), om.to_string(), "--address".into(), format!("127.0.0.1:{}", shifted(9878, a.base_port)?)];
    // Its status port (`/prom`) next to the S3 port, in dev's block of ports (a gateway alone
    // takes Ozone's webadmin port, 19878).
    args.extend(["--http-address".into(), format!("127.0.0.1:{}", shifted(9879, a.base_port)?)]);
    if a.datanodes < 3 {
        // Its buckets' default is three replicas; fewer datanodes could not hold them.
        args.extend(["--replication".into(), "ONE".into()]);
    }
    args.extend(tls_flags(dir, tls, "s3g"));
    args.extend(["--sse-keyring".into(), sse_keyring(dir)?.display().to_string()]);
    args.extend(["--lifecycle-day-secs".into(), a.lifecycle_day_secs.to_string()]);
    if let Some(d) = &a.s3_domain {
        args.extend(["--domain".into(), d.clone()]);
    }
    let line = start_child(children, "s3g", &args)?;
    let domain = a.s3_domain.as_deref().map(|d| format!(" (buckets also as BUCKET.{})", d.trim_matches('.'))).unwrap_or_default();
    let status = field(&line, "status").map(|s| format!(" (status {s})")).unwrap_or_default();
    Ok(field(&line, "ready:").map(|s| format!("{s}{status}{domain}")))
}

/// The gateway's SSE keyring in the data directory: made once (key `sse-s3` at random, owner
/// only), then kept, as the CA is, so that objects encrypted by one run open in the next.
/// Add `NAME BASE64` lines to it for SSE-KMS keys.
fn sse_keyring(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("s3g-keyring");
    if !path.exists() {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(stratos_s3g::sse::Keyring::generate("sse-s3").as_bytes())?;
        f.sync_all()?;
    }
    Ok(path)
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

pub fn dev(a: DevArgs) -> anyhow::Result<()> {
    let temp;
    let dir = match a.data_dir.clone() {
        // Absolute, for the OM here and the children (glommio syncs directories by path).
        Some(d) => std::path::absolute(&d)?,
        None => {
            temp = tempfile::Builder::new().prefix("stratos-dev-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    // Every role makes its own directory under it, but files of dev's own (the S3 keyring) go
    // straight into it: make it first.
    std::fs::create_dir_all(&dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    let mut c = OmConfig { data_dir: Some(dir.join("om")), ..Default::default() };
    c.rpc_address = std::net::SocketAddr::from(([127, 0, 0, 1], shifted(9862, a.base_port)?));
    c.http_address = Some(std::net::SocketAddr::from(([127, 0, 0, 1], shifted(9874, a.base_port)?)));
    c.raft_address = format!("127.0.0.1:{}", shifted(9872, a.base_port)?);
    let user = stratos_client::env_nonempty("USER").unwrap_or_else(|| "root".into());
    c.admins = vec!["root".into(), user.clone()];
    // Secure by default: TLS on the OM's client ports, the caller known by its certificate.
    let tls = if a.insecure { None } else { Some(dev_certificates(&dir, a.om_nodes, a.datanodes, &user, a.s3_domain.as_deref())?) };
    if let Some(f) = &tls {
        let node = stratos_common::tls::Files::in_dir(&dir.join("tls"), "om-1");
        (c.tls_ca, c.tls_cert, c.tls_key) = (Some(f.ca.clone()), Some(node.cert), Some(node.key));
    }
    if let Some(s) = a.shards {
        c.shards = s;
    }
    // With its executors given, a single OM formats one shard per executor (see the OM's
    // `default_shards`); cluster nodes, one per CPU.
    c.executors = a.executors.unwrap_or_else(|| dev_executors(a.om_nodes));
    // The OM shares this host's CPUs with dev's other processes and its clients: an executor
    // pinned to a CPU waits for it while another CPU idles.
    c.pin = false;
    c.election_timeout_min_ms = 150;
    c.election_timeout_max_ms = 300;
    c.heartbeat_interval_ms = 50;
    c.lifecycle_day_secs = a.lifecycle_day_secs;
    let mut children = Children::default();
    let mut data = String::from("metadata only");
    if a.datanodes > 0 {
        let scm_addr = format!("127.0.0.1:{}", shifted(9863, a.base_port)?);
        let d = |p: &str| dir.join(p).display().to_string();
        // Its status port (`/prom`) at Ozone's SCM HTTP port, shifted as the others are.
        let scm_status = format!("127.0.0.1:{}", shifted(9876, a.base_port)?);
        let mut scm_args: Vec<String> = vec!["scm".into(), "--http-address".into(), scm_status.clone(), "--data-dir".into(), d("scm"), "--rpc-address".into(), scm_addr.clone(), "--dead-after-ms".into(), "10000".into()];
        scm_args.extend(tls_flags(&dir, tls.as_ref(), "scm"));
        start_child(&mut children, "scm", &scm_args)?;
        for i in 0..a.datanodes {
            let mut args: Vec<String> = vec!["datanode".into(), "--data-dir".into(), d(&format!("dn{i}")), "--rpc-address".into(), "127.0.0.1:0".into(), "--http-address".into(), "127.0.0.1:0".into(), "--scm".into(), scm_addr.clone(), "--heartbeat-ms".into(), "1000".into()];
            args.extend(["--small-block-bytes".into(), a.small_block_bytes.to_string()]);
            args.extend(tls_flags(&dir, tls.as_ref(), &format!("dn-{i}")));
            let line = start_child(&mut children, &format!("datanode {i}"), &args)?;
            eprintln!("stratos dev: datanode {i} at {} (status {})", field(&line, "rpc").unwrap_or("?"), field(&line, "status").unwrap_or("off"));
        }
        c.scm_address = Some(scm_addr.clone());
        c.block_bytes = a.block_bytes;
        c.scm_poll_ms = 2000;
        data = format!("scm {scm_addr} (status {scm_status}), {} datanodes", a.datanodes);
    }
    if a.om_nodes > 1 {
        return dev_cluster(&a, &dir, &c, children, &data, tls.as_ref());
    }
    let s3 = start_s3g(&mut children, &a, &dir, &c.rpc_address.to_string(), tls.as_ref())?;
    children.watch();
    let secured = if tls.is_some() { "TLS" } else { "insecure" };
    stratos_om::node::run(&c, |r| {
        println!(
            "stratos dev ready: om {} (http {}), {}, {data}, s3 {}, {secured}, data in {} — for clients: {}",
            r.rpc,
            r.http.map_or_else(|| "off".to_string(), |h| h.to_string()),
            r.layout(),
            s3.as_deref().unwrap_or("off"),
            dir.display(),
            client_env(&r.rpc.to_string(), tls.as_ref())
        );
    })?;
    drop(children);
    eprintln!("stratos dev: stopped cleanly");
    Ok(())
}

/// `stratos dev --om-nodes N`: N OM processes forming one cluster (every group on every node),
/// each with the SCM when there is one. Runs until Ctrl-C, then stops every child.
fn dev_cluster(a: &DevArgs, dir: &std::path::Path, c: &OmConfig, mut children: Children, data: &str, tls: Option<&stratos_common::tls::Files>) -> anyhow::Result<()> {
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
        args.extend(["--executors".into(), c.executors.to_string(), "--lifecycle-day-secs".into(), c.lifecycle_day_secs.to_string()]);
        if let Some(scm) = &c.scm_address {
            args.extend(["--scm-address".into(), scm.clone(), "--block-bytes".into(), c.block_bytes.to_string(), "--scm-poll-ms".into(), c.scm_poll_ms.to_string()]);
        }
        for p in &peers {
            args.extend(["--peer".into(), p.clone()]);
        }
        args.extend(tls_flags(dir, tls, &format!("om-{i}")));
        // All nodes start before any is awaited: each needs a majority to elect leaders.
        pending.push((i, spawn_child(&mut children, &format!("om {i}"), &args)?));
    }
    let mut rpcs = Vec::new();
    for (i, lines) in pending {
        let line = await_ready(&format!("om {i}"), lines)?;
        rpcs.push(field(&line, "rpc").unwrap_or("?").to_string());
    }
    let om = rpcs.join(",");
    let s3 = start_s3g(&mut children, a, dir, &om, tls)?;
    children.watch();
    let secured = if tls.is_some() { "TLS" } else { "insecure" };
    println!("stratos dev ready: {} OM nodes {om}, {data}, s3 {}, {secured}, data in {} — for clients: {}", a.om_nodes, s3.as_deref().unwrap_or("off"), dir.display(), client_env(&om, tls));
    stratos_common::process::install_signal_handlers();
    while !stratos_common::process::stop_requested() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(children);
    eprintln!("stratos dev: stopped cleanly");
    Ok(())
}

#[cfg(test)]
mod tests {
    /// One share of the CPUs per OM node and one for everything else dev runs; never none.
    #[test]
    fn om_nodes_get_a_share_of_the_cpus_and_at_least_one_executor() {
        assert_eq!(super::executors_for(2, 1), 1);
        assert_eq!(super::executors_for(16, 1), 8);
        assert_eq!(super::executors_for(16, 3), 4);
        assert_eq!(super::executors_for(2, 3), 1);
        assert_eq!(super::executors_for(1, 1), 1);
        assert_eq!(super::at_least_one("2"), Ok(2));
        assert!(super::at_least_one("0").is_err_and(|e| e.contains("at least 1")));
        assert!(super::at_least_one("-1").is_err());
    }
}
