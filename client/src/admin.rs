//! `stratos admin`: the cluster's Raft state per group, and leadership transfer.

use clap::{Args, Subcommand};

use crate::{Client, GroupStatus};

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The OM nodes, host:port, comma-separated [env: STRATOS_OM; default 127.0.0.1:9862].
    #[arg(long)]
    pub om: Option<String>,
    /// Act as this user (an OM administrator) [default: $USER, else root].
    #[arg(long)]
    pub user: Option<String>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// For each group (meta, shard-0, …): its leader, term, commit index, each node's applied
    /// index, and how far each replica is behind the leader's log (from the leader's view).
    /// Asks every node given with --om; a node that does not answer is shown as down.
    Status,
    /// Moves a group's leadership to another node: `stratos admin transfer shard-3 2`.
    Transfer {
        /// `meta` or `shard-N`.
        group: String,
        /// The node id that should lead it.
        to: u64,
    },
}

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

async fn gather(addrs: &[String], user: &str) -> Views {
    let mut out = Vec::new();
    for a in addrs {
        let r = match Client::connect(a, user).await {
            Ok(c) => c.admin_status().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        out.push((a.clone(), r));
    }
    out
}

/// The status table (one line per group).
pub fn render(views: &Views) -> String {
    use std::fmt::Write;
    let nodes: Vec<u64> = views.iter().filter_map(|(_, r)| r.as_ref().ok().map(|(n, _)| *n)).collect();
    let mut out = String::new();
    for (a, r) in views {
        match r {
            Ok((n, _)) => writeln!(out, "node {n}: {a}"),
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
        let lag = match lead {
            Some(l) => l.replicas.iter().filter(|(n, _)| Some(*n) != leader).map(|(n, m)| format!("n{n} {}", l.last_log.saturating_sub(*m))).collect::<Vec<_>>().join(", "),
            None => "no leader".into(),
        };
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

/// Runs one `stratos admin` command on a glommio executor; returns what to print.
pub async fn run(args: &AdminArgs) -> Result<String, String> {
    let user = args.user.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "root".into());
    let om = args.om.clone().or_else(|| std::env::var("STRATOS_OM").ok()).unwrap_or_else(|| "127.0.0.1:9862".into());
    let addrs: Vec<String> = om.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
    let views = gather(&addrs, &user).await;
    if let Some((a, Err(e))) = views.iter().find(|(_, r)| r.as_ref().is_err_and(|e| e.starts_with("PERMISSION_DENIED"))) {
        return Err(format!("{a}: {e}"));
    }
    match &args.command {
        AdminCommand::Status => {
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
            let Some((addr, from)) = leader else { return Err(format!("no node given with --om leads {group} now; see `stratos admin status`")) };
            let c = Client::connect(&addr, &user).await.map_err(|e| e.to_string())?;
            c.admin_transfer(g, *to).await.map_err(|e| e.to_string())?;
            Ok(format!("{group}: leadership moved from node {from} to node {to}\n"))
        }
    }
}
