//! `stratos admin`: the cluster's Raft state per group, and leadership transfer.

use std::rc::Rc;

use clap::{Args, Subcommand};

use crate::{Client, GroupStatus, Runtime};

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The OM nodes, host:port, comma-separated [env: STRATOS_OM; default 127.0.0.1:9862].
    #[arg(long, global = true)]
    pub om: Option<String>,
    /// Act as this user (an OM administrator) [default: $USER, else root].
    #[arg(long, global = true)]
    pub user: Option<String>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// For each group (meta, shard-0, …): its leader, term, commit index, each node's applied
    /// index, and how far each replica is behind the leader's log (from the leader's view).
    /// Asks every node given with --om; a node that does not answer is shown as down.
    Status {
        /// Also compare the replicas' states: each node hashes every group's whole state at its
        /// applied index; a group whose nodes applied the same index shows `same` and the hash,
        /// or `DIFFERS` and each node's hash. Serializes every group on every node: for checks,
        /// not for polling.
        #[arg(long)]
        hashes: bool,
    },
    /// Moves a group's leadership to another node: `stratos admin transfer shard-3 2`.
    Transfer {
        /// `meta` or `shard-N`.
        group: String,
        /// The node id that should lead it.
        to: u64,
    },
    /// Adds an OM node to every group: `stratos admin add 4,HOST:RAFT_PORT,HOST:RPC_PORT`. Start
    /// it first with `stratos om --join` (same --shards and --executors as the cluster). Each
    /// group's leader adds it as a learner, waits until it has the log (or a snapshot), then
    /// makes it a voter; this asks every node given with --om until every group has it.
    Add {
        /// `ID,RAFT_HOST:PORT,RPC_HOST:PORT`, as in `--peer`.
        peer: String,
    },
    /// Removes an OM node from every group (it may be down): `stratos admin remove 3`. Stop it
    /// afterwards; never reuse its id.
    Remove {
        /// The node id.
        node: u64,
    },
    /// The cluster's certificate authority (works offline): `stratos admin ca init --dir DIR`.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Certificates signed by the cluster CA (works offline): `stratos admin cert issue --ca DIR
    /// --role user --name alice --out DIR`.
    #[command(subcommand)]
    Cert(CertCommand),
}

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Creates the CA: DIR/ca.pem (give it to every node and client) and DIR/ca.key (keep it
    /// secret: it signs certificates; written readable by its owner only). Never overwrites.
    Init {
        /// The directory to create the CA in (made if missing; an existing CA is never
        /// overwritten).
        #[arg(long)]
        dir: std::path::PathBuf,
        /// Days the CA is valid.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Signs a certificate: OUT/NAME.pem and OUT/NAME.key. A user certificate makes its holder
    /// that user (and its groups) on every server of the cluster; a node certificate (om, scm,
    /// datanode) names the hosts it serves on.
    Issue {
        /// The CA's directory (`ca init --dir`).
        #[arg(long)]
        ca: std::path::PathBuf,
        /// om, scm, datanode, s3g (the S3 gateway) or user.
        #[arg(long)]
        role: String,
        /// The user's name, or the node's (om-1, scm, dn-2).
        #[arg(long)]
        name: String,
        /// A user's groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// The host names and IP addresses a node serves on, comma-separated [default for
        /// nodes: localhost,127.0.0.1].
        #[arg(long = "host", value_delimiter = ',')]
        hosts: Vec<String>,
        /// Days the certificate is valid (at least 1).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..))]
        days: u32,
        /// Where to write NAME.pem and NAME.key, and a copy of ca.pem (never ca.key) [default:
        /// the CA's directory].
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

/// `admin ca` and `admin cert`: files only, no OM.
fn certificates(command: &AdminCommand) -> Option<Result<String, String>> {
    use crate::tls;
    match command {
        AdminCommand::Ca(CaCommand::Init { dir, days }) => Some(
            tls::ca_init(dir, *days)
                .map(|cert| format!("CA created: {} (share it), {} (keep it secret)\n", cert.display(), tls::ca_files(dir).1.display()))
                .map_err(|e| e.to_string()),
        ),
        AdminCommand::Cert(CertCommand::Issue { ca, role, name, groups, hosts, days, out }) => Some((|| {
            let role = tls::Role::parse(role).map_err(|e| e.to_string())?;
            if role == tls::Role::User && !hosts.is_empty() {
                return Err("--host names the hosts a node serves on; a user certificate names none".into());
            }
            if role != tls::Role::User && !groups.is_empty() {
                return Err("--groups are a user's; a node certificate has none".into());
            }
            let mut req = tls::Request::new(role, name, *days);
            req.groups.clone_from(groups);
            req.hosts = if hosts.is_empty() && role != tls::Role::User { vec!["localhost".into(), "127.0.0.1".into()] } else { hosts.clone() };
            let out_dir = out.as_deref().unwrap_or(ca);
            let (cert, key) = tls::issue(ca, out_dir, &req).map_err(|e| e.to_string())?;
            // The holder needs the CA's certificate beside its own (not the CA's key, which
            // stays in the CA's directory): a copy in OUT, unless one is there.
            let mut ca_pem = tls::ca_files(ca).0;
            let copy = out_dir.join("ca.pem");
            if out.is_some() && !copy.exists() {
                std::fs::copy(&ca_pem, &copy).map_err(|e| format!("copying {} to {}: {e}", ca_pem.display(), copy.display()))?;
            }
            if out.is_some() {
                ca_pem = copy;
            }
            let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
            let (ca_pem, cert, key) = (abs(&ca_pem), abs(&cert), abs(&key));
            Ok(if role == tls::Role::User {
                format!("export STRATOS_CA={ca_pem} STRATOS_CERT={cert} STRATOS_KEY={key}   # and STRATOS_OM=HOST:PORT of the cluster\n")
            } else {
                format!("--tls-ca {ca_pem} --tls-cert {cert} --tls-key {key}\n")
            })
        })()),
        _ => None,
    }
}

/// How long `admin add|remove` keeps asking before it gives up (the change goes on where it
/// started; running the command again finishes it).
pub const MEMBERSHIP_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// How long `admin add` keeps asking while every node answers that the new node cannot be
/// reached (not started, or a wrong address).
pub const UNREACHABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

pub fn group_name(g: u32) -> String {
    if g == 0 { "meta".into() } else { format!("shard-{}", g - 1) }
}

fn parse_group(s: &str) -> Result<u32, String> {
    if s == "meta" {
        return Ok(0);
    }
    s.strip_prefix("shard-").and_then(|n| n.parse::<u32>().ok()).and_then(|n| n.checked_add(1)).ok_or_else(|| format!("group {s:?}: expected meta or shard-N"))
}

/// Each node's answer: (address, Ok((node id, groups)) or the error).
type Views = Vec<(String, Result<(u64, Vec<GroupStatus>), String>)>;

/// How long `status` waits for one node: a node that does not answer in time is shown as
/// down (a frozen node must not hang the table of the healthy ones).
pub const STATUS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

/// Every node's view, asked of all at once (each within [`STATUS_DEADLINE`], no retries).
async fn gather(runtime: &Rc<dyn Runtime>, addrs: &[String], user: &str, hashes: bool) -> Views {
    let ask = addrs.iter().map(|a| async move {
        let r = match Client::connect_on(runtime.clone(), a, user).await {
            Ok(c) => {
                c.set_attempts_max(1);
                c.set_call_deadline(STATUS_DEADLINE);
                c.admin_status(hashes).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        (a.clone(), r)
    });
    futures_util::future::join_all(ask).await
}

/// The status table (one line per group).
pub fn render(views: &Views) -> String {
    use std::fmt::Write;
    let nodes: Vec<u64> = views.iter().filter_map(|(_, r)| r.as_ref().ok().map(|(n, _)| *n)).collect();
    let mut out = String::new();
    for (a, r) in views {
        match r {
            Ok((n, _)) => writeln!(out, "node {n}: {a}"),
            // A node that answered with a TLS refusal is up: it refused this client.
            Err(e) if e.contains("TLS handshake failed") || e.contains("requires TLS") => writeln!(out, "node at {a}: REFUSED ({e})"),
            Err(e) => writeln!(out, "node at {a}: DOWN ({e})"),
        }
        .expect("writing to a string");
    }
    let groups: std::collections::BTreeSet<u32> = views.iter().filter_map(|(_, r)| r.as_ref().ok()).flat_map(|(_, gs)| gs.iter().map(|g| g.group)).collect();
    let applied_head = nodes.iter().map(|n| format!("n{n}")).collect::<Vec<_>>().join("/");
    writeln!(out, "{:<10} {:>6} {:>6} {:>10}  {:<24} lag behind the leader's log", "group", "leader", "term", "commit", format!("applied {applied_head}")).expect("write");
    for g in groups {
        let of = |node: u64| views.iter().filter_map(|(_, r)| r.as_ref().ok()).find(|(n, _)| *n == node).and_then(|(_, gs)| gs.iter().find(|s| s.group == g));
        let leader = nodes.iter().filter_map(|n| of(*n)).find(|s| s.leader != 0 && of(s.leader).is_some_and(|l| l.leader == s.leader)).map(|s| s.leader);
        let lead = leader.and_then(of);
        let applied = nodes.iter().map(|n| of(*n).map_or("-".to_string(), |s| s.applied.to_string())).collect::<Vec<_>>().join("/");
        let mut lag = match lead {
            Some(l) => l.replicas.iter().filter(|(n, _)| Some(*n) != leader).map(|(n, m)| format!("n{n} {}", l.last_log.saturating_sub(*m))).collect::<Vec<_>>().join(", "),
            None => "no leader".into(),
        };
        let hashed: Vec<(u64, u64, u64)> = nodes.iter().filter_map(|n| of(*n).and_then(|s| Some((*n, s.applied, s.state_hash?)))).collect();
        if !hashed.is_empty() {
            lag.push_str(&format!("; state {}", compare_states(&hashed)));
        }
        writeln!(
            out,
            "{:<10} {:>6} {:>6} {:>10}  {:<24} {lag}",
            group_name(g),
            leader.map_or("-".to_string(), |l| l.to_string()),
            lead.map_or("-".to_string(), |l| l.term.to_string()),
            lead.map_or("-".to_string(), |l| l.committed.to_string()),
            applied
        )
        .expect("write");
    }
    out
}

/// The replicas' state hashes of one group, as (node, applied index, hash): `same HASH` when
/// every node applied the same index and has the same hash, `DIFFERS …` when they applied the
/// same index but hashes differ (a replica diverged), else why they cannot be compared yet.
pub fn compare_states(hashed: &[(u64, u64, u64)]) -> String {
    let Some(&(_, applied, hash)) = hashed.first() else { return "not asked".into() };
    if hashed.iter().any(|(_, a, _)| *a != applied) {
        let at = hashed.iter().map(|(n, a, _)| format!("n{n} {a}")).collect::<Vec<_>>().join(", ");
        return format!("not comparable yet: applied indexes differ ({at}); ask again when writes stop");
    }
    if hashed.iter().all(|(_, _, h)| *h == hash) {
        return format!("same {hash:016x} at {applied}");
    }
    let each = hashed.iter().map(|(n, _, h)| format!("n{n} {h:016x}")).collect::<Vec<_>>().join(", ");
    format!("DIFFERS at {applied}: {each}")
}

/// Runs one `stratos admin` command on a glommio executor; returns what to print. Boxed, as
/// [`crate::sh::run`].
#[cfg(feature = "glommio")]
pub fn run(args: &AdminArgs) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + '_>> {
    Box::pin(run_on(Rc::new(crate::runtime::Glommio), args))
}

/// Runs one `stratos admin` command on `runtime`; returns what to print.
pub async fn run_on(runtime: Rc<dyn Runtime>, args: &AdminArgs) -> Result<String, String> {
    if let Some(done) = certificates(&args.command) {
        return done;
    }
    crate::tls::use_client_env().map_err(|e| e.to_string())?;
    let user = args.user.clone().or_else(|| crate::env_nonempty("USER")).unwrap_or_else(|| "root".into());
    let om = args.om.clone().or_else(|| crate::env_nonempty("STRATOS_OM")).unwrap_or_else(|| "127.0.0.1:9862".into());
    let addrs: Vec<String> = om.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
    let hashes = matches!(args.command, AdminCommand::Status { hashes: true });
    let views = gather(&runtime, &addrs, &user, hashes).await;
    if let Some((a, Err(e))) = views.iter().find(|(_, r)| r.as_ref().is_err_and(|e| e.starts_with("PERMISSION_DENIED"))) {
        return Err(format!("{a}: {e}"));
    }
    match &args.command {
        AdminCommand::Status { .. } => {
            if views.iter().all(|(_, r)| r.is_err()) {
                return Err(format!("no OM node answered: {}", render(&views).trim_end()));
            }
            Ok(render(&views))
        }
        AdminCommand::Transfer { group, to } => {
            let g = parse_group(group)?;
            // Send it to the node that leads the group (as that node itself says).
            let leader = views.iter().find_map(|(a, r)| {
                let (node, gs) = r.as_ref().ok()?;
                gs.iter().find(|s| s.group == g && s.leader == *node).map(|_| (a.clone(), *node))
            });
            let Some((addr, from)) = leader else {
                let silent = views.iter().filter(|(_, r)| r.is_err()).count();
                let why = if silent > 0 { format!(" ({silent} of {} did not answer)", views.len()) } else { String::new() };
                return Err(format!("no node given with --om leads {group} now{why}; see `stratos admin status`"));
            };
            if from == *to {
                return Ok(format!("{group}: node {to} leads it already: nothing changed\n"));
            }
            let c = Client::connect_on(runtime.clone(), &addr, &user).await.map_err(|e| e.to_string())?;
            c.admin_transfer(g, *to).await.map_err(|e| e.to_string())?;
            Ok(format!("{group}: leadership moved from node {from} to node {to}\n"))
        }
        AdminCommand::Add { peer } => {
            let parts: Vec<&str> = peer.split(',').map(str::trim).collect();
            let [id, raft, rpc] = parts[..] else { return Err(format!("{peer:?}: expected ID,RAFT_HOST:PORT,RPC_HOST:PORT")) };
            let node: u64 = id.parse().ok().filter(|n| *n > 0).ok_or_else(|| format!("{peer:?}: the node id must be a number from 1"))?;
            change_members(&runtime, &addrs, &user, node, true, async |c: &Client| c.admin_add_node(node, raft, rpc).await).await
        }
        AdminCommand::Remove { node } => change_members(&runtime, &addrs, &user, *node, false, async |c: &Client| c.admin_remove_node(*node).await).await,
        AdminCommand::Ca(_) | AdminCommand::Cert(_) => unreachable!("answered by certificates() above"),
    }
}

/// Asks every node to apply a membership change to the groups it leads, until every group
/// (as its leader reports it) has `node` as a voter (`add`) or not (`remove`); prints progress.
async fn change_members(runtime: &Rc<dyn Runtime>, addrs: &[String], user: &str, node: u64, add: bool, ask: impl AsyncFn(&Client) -> Result<Vec<u32>, crate::ClientError>) -> Result<String, String> {
    let started = std::time::Instant::now();
    let verb = if add { "added to" } else { "removed from" };
    // Whether any node changed a group; the last line printed per node (a wait of minutes
    // repeats the same answer every round: printed once).
    let mut any_changed = false;
    let mut said: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut waiting: Option<String> = None;
    loop {
        // The nodes given, and every group's leader as they know it (a node left off the list
        // may lead some groups: only a leader changes its group).
        let mut ask_at: Vec<String> = addrs.to_vec();
        for a in addrs {
            if let Ok(c) = Client::connect_on(runtime.clone(), a, user).await
                && let Ok((_, leaders)) = c.routes().await
            {
                ask_at.extend(leaders.into_iter().filter(|l| !l.is_empty()));
                break;
            }
        }
        ask_at.sort();
        ask_at.dedup();
        for a in &ask_at {
            let Ok(c) = Client::connect_on(runtime.clone(), a, user).await else { continue };
            match ask(&c).await {
                Ok(changed) if !changed.is_empty() => {
                    any_changed = true;
                    let names: Vec<String> = changed.iter().map(|g| group_name(*g)).collect();
                    eprintln!("{a}: node {node} {verb} {}", names.join(", "));
                }
                Ok(_) => {}
                // Asking again cannot change these answers (no right; a bad address, or a node
                // of another --shards or --executors).
                Err(e) if matches!(e.status(), Some(stratos_schema::om_capnp::Status::PermissionDenied | stratos_schema::om_capnp::Status::InvalidArgument)) => {
                    return Err(format!("{a}: {e}"));
                }
                Err(e) => {
                    let line = format!("{a}: {e} (asking again)");
                    if said.insert(a.clone(), line.clone()).as_deref() != Some(line.as_str()) {
                        eprintln!("{line}");
                    }
                }
            }
        }
        // Done when, for every group, the node that leads it has the new voters.
        let views = gather(runtime, &ask_at, user, false).await;
        let mut groups: std::collections::BTreeMap<u32, bool> = std::collections::BTreeMap::new();
        for (_, r) in &views {
            let Ok((me, gs)) = r else { continue };
            for g in gs {
                let entry = groups.entry(g.group).or_insert(false);
                if g.leader == *me {
                    *entry = g.members.contains(&node) == add;
                }
            }
        }
        let left: Vec<String> = groups.iter().filter(|(_, done)| !**done).map(|(g, _)| group_name(*g)).collect();
        if !groups.is_empty() && left.is_empty() {
            if !any_changed {
                let was = if add { "a voter of" } else { "in none of" };
                return Ok(format!("node {node} was already {was} all {} groups: nothing changed\n", groups.len()));
            }
            return Ok(format!("node {node} {verb} all {} groups\n", groups.len()));
        }
        if started.elapsed() > MEMBERSHIP_WAIT {
            return Err(format!("after {MEMBERSHIP_WAIT:?}, node {node} is not yet {verb} {}; run the command again to finish", left.join(", ")));
        }
        // A new node nobody can reach: not worth minutes of asking.
        if add && !any_changed && started.elapsed() > UNREACHABLE_WAIT && said.values().all(|l| l.contains("--join first")) && !said.is_empty() {
            return Err(format!("node {node} could not be reached for {UNREACHABLE_WAIT:?}: {}", said.values().next().map_or("", String::as_str)));
        }
        let line = format!("waiting for {} (their leaders are changing them, or none is known)", left.join(", "));
        if waiting.replace(line.clone()).as_deref() != Some(line.as_str()) {
            eprintln!("{line}");
        }
        runtime.sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::compare_states;

    #[test]
    fn replica_states_are_compared_only_at_one_applied_index() {
        assert_eq!(compare_states(&[(1, 40, 0xab), (2, 40, 0xab), (3, 40, 0xab)]), "same 00000000000000ab at 40");
        let d = compare_states(&[(1, 40, 0xab), (2, 40, 0xac)]);
        assert!(d.starts_with("DIFFERS at 40: n1 00000000000000ab, n2 00000000000000ac"), "{d}");
        let n = compare_states(&[(1, 40, 0xab), (2, 39, 0xac)]);
        assert!(n.starts_with("not comparable yet") && n.contains("n2 39"), "{n}");
        assert_eq!(compare_states(&[]), "not asked");
    }
}
