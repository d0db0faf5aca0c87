//! Metrics of an OM node: every core samples the groups it owns ([`sample_core`]); the HTTP
//! handler on core 0 gathers the samples over the mesh and renders one Prometheus text page
//! ([`render`]), families grouped as the format requires.
//!
//! Per group (label `group="meta"` or `group="shard-N"`, and `core`): Raft term, leadership,
//! commit, applied and last log index; WAL counters, flush latency and records per flush; Raft
//! entry sizes (commands per entry); commands and reads served, with the latency of each write
//! call (propose to outcome, i.e. including the fdatasync) and each linearizable read.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;

use stratos_wal::{Log2Histogram, WalStats};
use stratos_common::rpc::WireCounters;
use stratos_common::status_http::family;

use crate::core::{Core, META_GROUP, Msg};

/// Served operations of one group, kept by the core that owns it.
#[derive(Debug, Default, Clone)]
pub struct OpStats {
    pub commands: u64,
    pub command_errors: u64,
    pub reads: u64,
    pub read_errors: u64,
    /// One observation per write call (a batch of commands proposed together), µs.
    pub write_micros: Log2Histogram,
    pub read_micros: Log2Histogram,
}

/// The operations counters of the groups on one core, by group id.
#[derive(Debug, Default)]
pub struct CoreStats {
    pub groups: RefCell<foldhash::HashMap<u32, OpStats>>,
    /// Where this core's group calls went (see [`RoutingCounters`]).
    pub routing: std::cell::Cell<RoutingCounters>,
}

/// Where one core sent the group calls of the requests it served: `[local, cross_core,
/// fences_cross_core, fences, solo_fences]`. A call is local when the group it reads or writes lives on this core
/// (the connection landed where the shard lives: a client that uses the `corePorts` of
/// `routes`); a cross-core call costs a mesh round trip (two wake-ups of other executors,
/// ≈ 50-100 µs on a VM). Meta fences of cores other than 0 always cross (core 0 holds the meta
/// replica), but are shared by every request waiting at once. `fences` counts the fences this
/// core started (the `Coalesce`'s fetches): on core 0 each is a read index of the meta group,
/// a quorum round whenever the node has peers. `solo_fences` counts the fences answered at once
/// because this node is the meta group's only voter (`crate::core::SoloMeta`).
pub type RoutingCounters = [u64; 5];

impl CoreStats {
    /// Counts one group call: `local` if its group lives on this core.
    pub fn routed(&self, local: bool) {
        let mut r = self.routing.get();
        r[usize::from(!local)] += 1;
        self.routing.set(r);
    }

    /// Counts one meta fence answered without a round (this node alone in the meta group).
    pub fn solo_fence(&self) {
        let mut r = self.routing.get();
        r[4] += 1;
        self.routing.set(r);
    }
}

impl CoreStats {
    pub fn write_done(&self, group: u32, commands: usize, errors: usize, micros: u64) {
        let mut g = self.groups.borrow_mut();
        let s = g.entry(group).or_default();
        s.commands += commands as u64;
        s.command_errors += errors as u64;
        s.write_micros.record(micros);
    }

    pub fn read_done(&self, group: u32, ok: bool, micros: u64) {
        let mut g = self.groups.borrow_mut();
        let s = g.entry(group).or_default();
        s.reads += 1;
        s.read_errors += u64::from(!ok);
        s.read_micros.record(micros);
    }
}

/// One group's figures at one moment.
#[derive(Debug, Clone)]
pub struct GroupSample {
    pub group: u32,
    pub core: usize,
    pub term: u64,
    pub leader: bool,
    /// The leader this node knows of (0: none), the voters, and (on the leader) each
    /// replica's matched log index.
    pub leader_id: u64,
    pub members: Vec<u64>,
    pub replicas: Vec<(u64, u64)>,
    pub committed: u64,
    pub applied: u64,
    pub last_log: u64,
    pub wal: WalStats,
    pub entry_commands: Log2Histogram,
    pub ops: OpStats,
    /// With `hashes`: the hash of the group's whole state at `applied` (0: not asked).
    pub state_hash: u64,
}

/// The samples of every group this core owns; with `hashes`, each with its state's hash, read
/// in the same synchronous step as its applied index (nothing applies in between on this
/// single-threaded executor), so replicas at the same index must show the same hash.
pub fn sample_core(core: &Core, hashes: bool) -> Vec<GroupSample> {
    let mut out: Vec<GroupSample> = core
        .groups
        .iter()
        .map(|(id, g)| {
            let m = g.metrics_now();
            GroupSample {
                group: *id,
                core: core.index,
                term: m.current_term,
                leader: m.current_leader == Some(m.id),
                leader_id: m.current_leader.unwrap_or(0),
                members: m.membership_config.membership().voter_ids().collect(),
                replicas: m.replication.as_ref().map(|r| r.iter().map(|(id, l)| (*id, l.map_or(0, |l| l.index))).collect()).unwrap_or_default(),
                committed: m.local_committed.map_or(0, |l| l.index),
                applied: g.state.applied_log_index(),
                last_log: g.log.wal().last_log_id().map_or(0, |l| l.log_index),
                wal: g.log.wal().stats(),
                entry_commands: *g.entry_commands.borrow(),
                ops: core.stats.groups.borrow().get(id).cloned().unwrap_or_default(),
                state_hash: if hashes { g.state.shard.borrow().state_hash() } else { 0 },
            }
        })
        .collect();
    out.sort_by_key(|s| s.group);
    out
}

fn label(s: &GroupSample) -> String {
    let name = if s.group == META_GROUP { "meta".to_string() } else { format!("shard-{}", s.group - 1) };
    format!("group=\"{name}\",core=\"{}\"", s.core)
}

fn scalar(out: &mut String, samples: &[GroupSample], name: &str, kind: &str, help: &str, f: impl Fn(&GroupSample) -> u64) {
    family(out, name, kind, help);
    for s in samples {
        let _ = writeln!(out, "{name}{{{}}} {}", label(s), f(s));
    }
}

/// A Prometheus histogram from a log2 one; `scale` converts the recorded unit to the exported
/// one (1e-6 for µs → seconds, 1 for counts).
fn histogram(out: &mut String, samples: &[GroupSample], name: &str, help: &str, scale: f64, f: impl Fn(&GroupSample) -> &Log2Histogram) {
    family(out, name, "histogram", help);
    for s in samples {
        let h = f(s);
        let l = label(s);
        for (bound, cumulative) in h.cumulative(0) {
            let _ = writeln!(out, "{name}_bucket{{{l},le=\"{}\"}} {cumulative}", bound as f64 * scale);
        }
        let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum{{{l}}} {}", h.sum as f64 * scale);
        let _ = writeln!(out, "{name}_count{{{l}}} {}", h.count);
    }
}

/// Data-path counters of one core (see `datapath`).
pub type DataCounters = [u64; 5];

/// The page: every group's sample, each core's meta-view index and data-path counters.
pub fn render(samples: &[GroupSample], meta_views: &[(usize, u64)], data: &[(usize, DataCounters)], routing: &[(usize, RoutingCounters)], wire: &[(usize, WireCounters)]) -> String {
    let mut out = String::new();
    scalar(&mut out, samples, "stratos_raft_term", "gauge", "Current Raft term of the group.", |s| s.term);
    scalar(&mut out, samples, "stratos_raft_leader", "gauge", "1 if this node leads the group.", |s| u64::from(s.leader));
    scalar(&mut out, samples, "stratos_raft_leader_node", "gauge", "The node id of the group's leader as this node knows it (0: none).", |s| s.leader_id);
    family(&mut out, "stratos_raft_replica_matched_index", "gauge", "On the leader: the last log index known to be on each replica.");
    for s in samples {
        for (node, matched) in &s.replicas {
            let _ = writeln!(out, "stratos_raft_replica_matched_index{{{},replica=\"{node}\"}} {matched}", label(s));
        }
    }
    scalar(&mut out, samples, "stratos_raft_commit_index", "gauge", "Last log index known committed.", |s| s.committed);
    scalar(&mut out, samples, "stratos_raft_applied_index", "gauge", "Last log index applied by the state machine.", |s| s.applied);
    scalar(&mut out, samples, "stratos_raft_last_log_index", "gauge", "Last log index in the group's WAL.", |s| s.last_log);
    histogram(&mut out, samples, "stratos_raft_entry_commands", "Commands per proposed Raft entry (proposer batching).", 1.0, |s| &s.entry_commands);
    scalar(&mut out, samples, "stratos_wal_records_total", "counter", "Records appended to the WAL.", |s| s.wal.records_appended);
    scalar(&mut out, samples, "stratos_wal_flushes_total", "counter", "Group-commit flushes (one write and fdatasync each).", |s| s.wal.flushes);
    scalar(&mut out, samples, "stratos_wal_fdatasyncs_total", "counter", "fdatasync calls.", |s| s.wal.fdatasyncs);
    scalar(&mut out, samples, "stratos_wal_bytes_written_total", "counter", "Bytes written to WAL segments.", |s| s.wal.bytes_written);
    scalar(&mut out, samples, "stratos_wal_segments_created_total", "counter", "WAL segments started (created or a spare renamed into place).", |s| s.wal.segments_created);
    scalar(&mut out, samples, "stratos_wal_spares_used_total", "counter", "WAL segments that were a prepared spare (no zero-fill on the flush path).", |s| s.wal.spares_used);
    histogram(&mut out, samples, "stratos_wal_flush_seconds", "Time of one WAL flush, write to fdatasync return.", 1e-6, |s| &s.wal.flush_micros);
    histogram(&mut out, samples, "stratos_wal_flush_records", "Records made durable by one flush (group-commit batch size).", 1.0, |s| &s.wal.flush_records);
    scalar(&mut out, samples, "stratos_group_commands_total", "counter", "Commands proposed to the group by this node.", |s| s.ops.commands);
    scalar(&mut out, samples, "stratos_group_command_errors_total", "counter", "Commands answered with an error.", |s| s.ops.command_errors);
    scalar(&mut out, samples, "stratos_group_reads_total", "counter", "Linearizable reads served.", |s| s.ops.reads);
    scalar(&mut out, samples, "stratos_group_read_errors_total", "counter", "Reads answered with an error.", |s| s.ops.read_errors);
    histogram(&mut out, samples, "stratos_group_write_seconds", "Latency of one write call (commands proposed together) to its outcome, fdatasync included.", 1e-6, |s| &s.ops.write_micros);
    histogram(&mut out, samples, "stratos_group_read_seconds", "Latency of one linearizable read.", 1e-6, |s| &s.ops.read_micros);
    family(&mut out, "stratos_meta_view_index", "gauge", "Meta-group index the core's view reflects.");
    for (core, index) in meta_views {
        let _ = writeln!(out, "stratos_meta_view_index{{core=\"{core}\"}} {index}");
    }
    let routed = [
        ("stratos_om_calls_local_total", "Group calls (a key write or read) served on the core that owns the group: the connection landed where its shard lives."),
        ("stratos_om_calls_cross_core_total", "Group calls sent over the mesh to the core that owns the group (the client did not use the group's core port)."),
        ("stratos_om_meta_fences_cross_core_total", "Meta fences this core asked of core 0 over the mesh (shared by the requests waiting at once)."),
        ("stratos_om_meta_fences_total", "Meta fences this core started, each shared by the requests waiting at once (on core 0: read indexes of the meta group, paced by meta_fence_interval_us)."),
        ("stratos_om_meta_fences_solo_total", "Meta fences answered at once, without a read index or a mesh message: this node is the meta group's only voter."),
    ];
    for (i, (name, help)) in routed.iter().enumerate() {
        family(&mut out, name, "counter", help);
        for (core, c) in routing {
            let _ = writeln!(out, "{name}{{core=\"{core}\"}} {}", c[i]);
        }
    }
    // Replies that share a send: flushes over writes is the batching of the core's sends.
    type Family<'a> = (&'a str, &'a str, fn(&WireCounters) -> u64);
    let sends: [Family; 4] = [
        ("stratos_rpc_flushes_total", "Cap'n Proto messages this core's connections (clients, Raft peers) flushed.", |w| w.flushes),
        ("stratos_rpc_writes_total", "Writes handed to those connections' sockets (or TLS streams): the messages one executor turn flushed share one.", |w| w.writes),
        ("stratos_rpc_written_bytes_total", "Bytes handed to those connections' sockets (or TLS streams).", |w| w.bytes),
        ("stratos_rpc_reads_paused_total", "Times a client connection on this core stopped reading because its calls in flight reached connection_calls_max (or their parameters about 64 MiB): TCP then holds the client back.", |w| w.reads_paused),
    ];
    for (name, help, of) in sends {
        family(&mut out, name, "counter", help);
        for (core, w) in wire {
            let _ = writeln!(out, "{name}{{core=\"{core}\"}} {}", of(w));
        }
    }
    let families = [
        ("stratos_om_block_takes_total", "Block-pool takes (one per openKey or allocateBlock) on this core."),
        ("stratos_om_block_waits_total", "Takes that waited for the SCM (pool short, or datanodes excluded): the hot path's misses."),
        ("stratos_om_block_refills_total", "Background pool refills (one batched allocateBlocks call each)."),
        ("stratos_om_block_refill_errors_total", "Refills that failed (the SCM unreachable or refusing)."),
        ("stratos_om_deleted_blocks_pushed_total", "Deleted blocks handed to the SCM."),
    ];
    for (i, (name, help)) in families.iter().enumerate() {
        if data.is_empty() {
            break;
        }
        family(&mut out, name, "counter", help);
        for (core, c) in data {
            let _ = writeln!(out, "{name}{{core=\"{core}\"}} {}", c[i]);
        }
    }
    out
}

impl Core {
    /// Every group's sample, gathered from every core over the mesh (with state hashes if
    /// `hashes`).
    pub async fn gather_samples(self: &Rc<Self>, hashes: bool) -> Vec<GroupSample> {
        self.gather(hashes).await.samples
    }

    /// Every core's samples, gathered over the mesh (for the HTTP metrics page).
    pub async fn gather_metrics(self: &Rc<Self>) -> String {
        let m = self.gather(false).await;
        crate::metrics::render(&m.samples, &m.views, &m.data, &m.routing, &m.wire)
    }

    /// Every core's group samples (sorted by group), meta-view index and counters.
    async fn gather(self: &Rc<Self>, hashes: bool) -> Gathered {
        let mut g = Gathered { samples: Vec::new(), views: Vec::new(), data: Vec::new(), routing: Vec::new(), wire: Vec::new() };
        g.add(self.index, self.core_metrics(hashes));
        for (i, answer) in self.ask_others(|reply| Msg::Metrics { hashes, reply }).await {
            if let Some(m) = answer {
                g.add(i, m);
            }
        }
        g.samples.sort_by_key(|s| s.group);
        g
    }

    /// Where this core's calls went. The fence counts are the fences' own: every fence a core
    /// other than 0 starts is one ask of core 0 over the mesh.
    fn routing_counters(&self) -> RoutingCounters {
        let mut r = self.stats.routing.get();
        let fences = self.fences.fetches();
        r[2] = if self.index == 0 { 0 } else { fences };
        r[3] = fences;
        r
    }

    /// This core's part of the metrics page.
    pub(crate) fn core_metrics(&self, hashes: bool) -> CoreMetrics {
        CoreMetrics { samples: sample_core(self, hashes), meta_index: self.meta_index(), data: self.data.as_ref().map(|d| d.counters()), routing: self.routing_counters(), wire: stratos_common::rpc::wire_counters() }
    }
}

/// One core's answer to a metrics request.
#[derive(Debug)]
pub struct CoreMetrics {
    pub samples: Vec<GroupSample>,
    pub meta_index: u64,
    pub data: Option<DataCounters>,
    pub routing: RoutingCounters,
    pub wire: WireCounters,
}

/// Every core's metrics, by core.
struct Gathered {
    samples: Vec<GroupSample>,
    views: Vec<(usize, u64)>,
    data: Vec<(usize, DataCounters)>,
    routing: Vec<(usize, RoutingCounters)>,
    wire: Vec<(usize, WireCounters)>,
}

impl Gathered {
    fn add(&mut self, core: usize, m: CoreMetrics) {
        self.samples.extend(m.samples);
        self.views.push((core, m.meta_index));
        self.data.extend(m.data.map(|d| (core, d)));
        self.routing.push((core, m.routing));
        self.wire.push((core, m.wire));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(group: u32) -> GroupSample {
        let mut ops = OpStats::default();
        ops.write_micros.record(300);
        ops.write_micros.record(5000);
        GroupSample { group, core: 1, term: 2, leader: true, leader_id: 1, members: vec![1], replicas: vec![], committed: 9, applied: 9, last_log: 9, wal: WalStats::default(), entry_commands: Log2Histogram::default(), ops, state_hash: 0 }
    }

    #[test]
    fn families_are_grouped_and_histograms_cumulative() {
        let page = render(&[sample(0), sample(3)], &[(0, 7), (1, 7)], &[(0, [10, 1, 2, 0, 5])], &[(0, [4, 0, 0, 6, 0]), (1, [3, 2, 1, 1, 8])], &[(1, WireCounters { flushes: 9, writes: 4, bytes: 700, reads_paused: 2 })]);
        // Each family's samples follow its TYPE line, all groups together.
        let types: Vec<&str> = page.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut names: Vec<&str> = types.iter().map(|l| l.split_whitespace().nth(2).expect("TYPE lines name a family")).collect();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a family appears twice");
        assert!(page.contains("stratos_raft_commit_index{group=\"shard-2\",core=\"1\"} 9"));
        assert!(page.contains("stratos_group_write_seconds_bucket{group=\"meta\",core=\"1\",le=\"0.000512\"} 1"));
        assert!(page.contains("stratos_group_write_seconds_bucket{group=\"meta\",core=\"1\",le=\"0.008192\"} 2"));
        assert!(page.contains("stratos_group_write_seconds_bucket{group=\"meta\",core=\"1\",le=\"+Inf\"} 2"));
        assert!(page.contains("stratos_group_write_seconds_count{group=\"meta\",core=\"1\"} 2"));
        assert!(page.contains("stratos_meta_view_index{core=\"1\"} 7"));
        assert!(page.contains("stratos_om_block_waits_total{core=\"0\"} 1"));
        assert!(page.contains("stratos_om_calls_cross_core_total{core=\"1\"} 2"));
        assert!(page.contains("stratos_om_meta_fences_cross_core_total{core=\"1\"} 1"));
        assert!(page.contains("stratos_rpc_reads_paused_total{core=\"1\"} 2"));
        assert!(page.contains("stratos_om_meta_fences_total{core=\"0\"} 6"));
        assert!(page.contains("stratos_om_meta_fences_solo_total{core=\"1\"} 8"));
        assert!(page.contains("stratos_rpc_flushes_total{core=\"1\"} 9"));
        assert!(page.contains("stratos_rpc_writes_total{core=\"1\"} 4"));
        assert!(page.contains("stratos_rpc_written_bytes_total{core=\"1\"} 700"));
    }
}
