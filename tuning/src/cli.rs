//! `stratos tune`: the probe's findings, the fdatasync latency of the data directory's disk, and
//! the recommended OM configuration with a reason per key and warnings.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::{Probe, probe, probe_fdatasync, recommend, render_toml};

/// Appends one line to a String (writing to a String cannot fail).
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

#[derive(Args, Debug)]
pub struct TuneArgs {
    /// Directory whose file system is probed (the one you would put WAL segments on).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub dir: PathBuf,
    /// fdatasyncs to time.
    #[arg(long, default_value_t = 2000)]
    pub syncs: usize,
}

/// Runs `stratos tune`; returns what to print.
pub fn tune(a: &TuneArgs) -> std::io::Result<String> {
    let mut probe = probe(&a.dir);
    let mut out = describe_host(&probe, &a.dir);
    let l = probe_fdatasync(&a.dir, a.syncs).map_err(|e| std::io::Error::new(e.kind(), format!("probing fdatasync in {}: {e}", a.dir.display())))?;
    say!(out, "fdatasync of 4 KiB writes ({} samples): p50 {} µs, p90 {} µs, p99 {} µs, max {} µs", l.count, l.p50, l.p90, l.p99, l.max);
    say!(out, "→ one WAL group commit costs about p50; that many syncs per second per shard ({:.0}) bound a shard's durable batches, so throughput comes from batching.", 1e6 / l.p50.max(1) as f64);
    probe.fdatasync = Some(l);
    let (advice, warnings) = recommend(&probe);
    for w in &warnings {
        say!(out, "warning: {w}");
    }
    say!(out, "");
    out.push_str(&render_toml(&advice));
    Ok(out)
}

/// What the probe found about this host, a line per fact, as `stratos tune` and `stratos bench
/// foundation` print it.
pub fn describe_host(p: &Probe, dir: &Path) -> String {
    let mut out = String::new();
    let f = &p.host;
    let memlock = f.memlock_bytes.map_or("unknown".to_string(), |b| if b == u64::MAX { "unlimited".into() } else { format!("{} KiB", b / 1024) });
    let uring = match f.io_uring_disabled {
        Some(0) | None => "allowed",
        Some(1) => "restricted to a group",
        Some(_) => "disabled",
    };
    say!(out, "host: {} cores, kernel {}, memlock {memlock}, io_uring {uring}, data dir {}", f.cores, f.kernel, dir.display());
    say!(
        out,
        "CPUs isolated: {}; NUMA nodes: {}; file system of the data dir: {}",
        if p.isolated.is_empty() { "none".to_string() } else { format!("{:?}", p.isolated) },
        p.numa_nodes.iter().map(|(n, cpus)| format!("node{n} {} CPUs", cpus.len())).collect::<Vec<_>>().join(", "),
        p.file_system
    );
    match &p.disk {
        Some(d) => say!(
            out,
            "data disk: {} ({}), {}, scheduler {}, {} hardware queue(s), write cache {}{}",
            d.name,
            d.model,
            if d.rotational { "reported rotational" } else { "flash" },
            d.scheduler.as_deref().unwrap_or("unknown"),
            d.hw_queues,
            d.write_cache.as_deref().unwrap_or("unknown"),
            d.pci.as_deref().map_or(String::new(), |pci| format!(", PCI {pci}"))
        ),
        None => say!(out, "data disk: not a block device sysfs knows (tmpfs, overlay, network file system, …)"),
    }
    for (device, irqs) in p.irqs.chunk_by(|a, b| a.device == b.device).map(|g| (g[0].device.as_str(), g)) {
        let busy: Vec<String> = irqs.iter().filter(|i| i.count > 0).map(|i| format!("{} {} → CPUs {:?} ({} so far)", i.number, i.name, i.cpus, i.count)).collect();
        say!(out, "interrupts of the {device}: {} vectors; in use: {}", irqs.len(), if busy.is_empty() { "none yet".to_string() } else { busy.join(", ") });
    }
    say!(out, "irqbalance: {}", if p.irqbalance { "running" } else { "not running" });
    out
}
