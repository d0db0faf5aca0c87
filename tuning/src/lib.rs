//! stratos-tuning: what the host offers, measured rather than assumed.
//!
//! The facts the WAL's performance depends on (cores, NUMA nodes, isolated CPUs, memlock limit,
//! io_uring being allowed), the data directory's file system, its block device (scheduler, write
//! cache, hardware queues) and where that device's and the NICs' interrupts land, and the
//! directory's fdatasync latency, measured the way the WAL syncs (4 KiB written into a
//! pre-zeroed file, then fdatasync). [`recommend`] turns them into an OM configuration with a
//! reason per value, plus warnings; tuning/GUIDE.md is what an operator changes by hand.

pub mod cli;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use hdrhistogram::Histogram;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyUs {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl LatencyUs {
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// A histogram for microsecond latencies from 1 µs to 100 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("static histogram bounds are valid")
}

/// Measures `count` fdatasyncs of 4 KiB writes at increasing offsets of a pre-zeroed file in
/// `dir` (the WAL's pattern). The file is removed afterwards.
pub fn probe_fdatasync(dir: &Path, count: usize) -> io::Result<LatencyUs> {
    const WRITE_BYTES: usize = 4096;
    let path = dir.join(".stratos-fsync-probe");
    let result = (|| {
        let file: File = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        let size = (count * WRITE_BYTES) as u64;
        let zeros = vec![0u8; 1 << 20];
        let mut pos = 0;
        while pos < size {
            let n = (size - pos).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], pos)?;
            pos += n as u64;
        }
        file.sync_all()?;
        let block = vec![0x5Au8; WRITE_BYTES];
        let mut h = latency_histogram();
        for i in 0..count {
            file.write_all_at(&block, (i * WRITE_BYTES) as u64)?;
            let t = Instant::now();
            file.sync_data()?;
            h.record((t.elapsed().as_micros() as u64).max(1)).expect("within bounds");
        }
        Ok(LatencyUs::of(&h))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// Facts about this host that decide how Stratos should run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub cores: usize,
    pub memlock_bytes: Option<u64>,
    pub io_uring_disabled: Option<u32>,
    pub kernel: String,
}

pub fn host_facts() -> HostFacts {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let memlock_bytes = {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we pass and has no other effect.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } == 0;
        ok.then_some(r.rlim_cur)
    };
    let io_uring_disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok().and_then(|s| s.trim().parse().ok());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    HostFacts { cores, memlock_bytes, io_uring_disabled, kernel }
}

/// Whether a kernel release ("6.1.0-18-amd64") is older than `(major, minor)`; one that does
/// not parse is not called old.
pub fn kernel_before(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    match (parts.next().and_then(|p| p.parse::<u32>().ok()), parts.next().and_then(|p| p.parse::<u32>().ok())) {
        (Some(a), Some(b)) => (a, b) < (major, minor),
        _ => false,
    }
}

/// CPUs the kernel keeps the scheduler off (`isolcpus=`), from sysfs; empty if none.
pub fn isolated_cpus() -> Vec<usize> {
    std::fs::read_to_string("/sys/devices/system/cpu/isolated").map(|s| parse_cpu_list(s.trim())).unwrap_or_default()
}

/// NUMA nodes with their CPUs, from sysfs; empty where the kernel shows none.
pub fn numa_nodes() -> Vec<(usize, Vec<usize>)> {
    let mut nodes = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/node") else { return nodes };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix("node").and_then(|n| n.parse::<usize>().ok()) {
            let cpus = std::fs::read_to_string(e.path().join("cpulist")).map(|s| parse_cpu_list(s.trim())).unwrap_or_default();
            nodes.push((n, cpus));
        }
    }
    nodes.sort();
    nodes
}

/// A kernel CPU list ("0-3,8,10-11") as numbers; malformed parts are skipped.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b.min(a + 4096));
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

/// The file system type of `dir` (statfs magic), by name where known.
pub fn file_system(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return "unknown".into() };
    // SAFETY: statfs writes into the zeroed struct we pass; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown".into();
    }
    match st.f_type as u64 {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x794C_7630 => "overlayfs".into(),
        other => format!("unknown (magic {other:#x})"),
    }
}

/// The block device a directory lives on, from sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// The whole disk's name (`nvme0n1`, `vda`, `sda`), also for a directory on a partition.
    pub name: String,
    /// The model (NVMe, SCSI) or else the driver (`virtio_blk`).
    pub model: String,
    /// What the kernel reports; virtual disks often report rotational whatever backs them.
    pub rotational: bool,
    /// The I/O scheduler in use (`none`, `mq-deadline`, …).
    pub scheduler: Option<String>,
    /// Hardware submission queues (blk-mq): NVMe has one per CPU up to the device's limit.
    pub hw_queues: usize,
    /// `write back` (a volatile cache: fdatasync sends a flush) or `write through`.
    pub write_cache: Option<String>,
    /// The PCI function serving the disk, whose MSI interrupts complete its I/O.
    pub pci: Option<String>,
}

/// One interrupt of a device the OM depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Irq {
    pub number: u32,
    /// What the device is to Stratos: `disk vda`, `nic eth0`.
    pub device: String,
    /// The action name in /proc/interrupts (`nvme0q3`, `virtio1-req.0`).
    pub name: String,
    /// CPUs the kernel delivers it to (effective affinity).
    pub cpus: Vec<usize>,
    /// Deliveries so far, summed over CPUs.
    pub count: u64,
}

/// The block device holding `dir`, if it is one sysfs knows (not tmpfs, overlay, NFS, …).
pub fn block_device(dir: &Path) -> Option<BlockDevice> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let mut path = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    if path.join("partition").exists() {
        path = path.parent()?.to_path_buf();
    }
    let name = path.file_name()?.to_string_lossy().into_owned();
    let read = |rel: &str| std::fs::read_to_string(path.join(rel)).ok().map(|s| s.trim().to_string());
    let model = read("device/model").filter(|m| !m.is_empty()).or_else(|| {
        let driver = std::fs::read_link(path.join("device/driver")).ok()?;
        Some(driver.file_name()?.to_string_lossy().into_owned())
    });
    let hw_queues = std::fs::read_dir(path.join("mq")).map(|d| d.flatten().count()).unwrap_or(0);
    let pci = pci_function(&path);
    Some(BlockDevice {
        name,
        model: model.unwrap_or_else(|| "unknown".into()),
        rotational: read("queue/rotational").as_deref() == Some("1"),
        scheduler: read("queue/scheduler").as_deref().and_then(active_choice),
        hw_queues,
        write_cache: read("queue/write_cache"),
        pci,
    })
}

/// The PCI function (`0000:3d:00.0`) a sysfs device path sits under: its nearest ancestor that
/// has MSI interrupts.
fn pci_function(sysfs_path: &Path) -> Option<String> {
    let f = sysfs_path.ancestors().find(|a| a.join("msi_irqs").is_dir())?;
    Some(f.file_name()?.to_string_lossy().into_owned())
}

/// The bracketed entry of a sysfs choice list: "none [mq-deadline] kyber" → "mq-deadline".
pub fn active_choice(s: &str) -> Option<String> {
    let start = s.find('[')?;
    let end = s[start..].find(']')? + start;
    Some(s[start + 1..end].to_string())
}

/// Per IRQ number, its action name and deliveries summed over CPUs, from /proc/interrupts.
pub fn parse_interrupts(text: &str) -> std::collections::BTreeMap<u32, (String, u64)> {
    let mut lines = text.lines();
    let cpus = lines.next().map_or(0, |h| h.split_whitespace().count());
    let mut out = std::collections::BTreeMap::new();
    for line in lines {
        let Some((num, rest)) = line.split_once(':') else { continue };
        let Ok(num) = num.trim().parse::<u32>() else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let count = fields.iter().take(cpus).filter_map(|f| f.parse::<u64>().ok()).sum();
        // After the per-CPU counts: the chip, the hardware IRQ and trigger, then the action.
        let name = fields.last().map_or(String::new(), |n| n.to_string());
        out.insert(num, (name, count));
    }
    out
}

/// The interrupts of the data directory's disk and of the physical NICs (by their PCI MSI
/// vectors), with where the kernel delivers each.
pub fn device_irqs(disk: Option<&BlockDevice>) -> Vec<Irq> {
    let table = parse_interrupts(&std::fs::read_to_string("/proc/interrupts").unwrap_or_default());
    let mut devices: Vec<(String, String)> = Vec::new();
    if let Some(pci) = disk.and_then(|d| d.pci.clone().map(|p| (d, p))) {
        devices.push((format!("disk {}", pci.0.name), pci.1));
    }
    for e in std::fs::read_dir("/sys/class/net").into_iter().flatten().flatten() {
        let Ok(dev) = std::fs::canonicalize(e.path().join("device")) else { continue };
        if let Some(pci) = pci_function(&dev) {
            devices.push((format!("nic {}", e.file_name().to_string_lossy()), pci));
        }
    }
    let mut out = Vec::new();
    for (device, pci) in devices {
        let mut numbers: Vec<u32> = std::fs::read_dir(format!("/sys/bus/pci/devices/{pci}/msi_irqs")).into_iter().flatten().flatten().filter_map(|e| e.file_name().to_string_lossy().parse().ok()).collect();
        numbers.sort_unstable();
        for number in numbers {
            let cpus = std::fs::read_to_string(format!("/proc/irq/{number}/effective_affinity_list")).map(|s| parse_cpu_list(s.trim())).unwrap_or_default();
            let (name, count) = table.get(&number).cloned().unwrap_or_default();
            out.push(Irq { number, device: device.clone(), name, cpus, count });
        }
    }
    out
}

/// Whether an irqbalance daemon runs (it moves IRQs unless told which CPUs to avoid).
pub fn irqbalance_running() -> bool {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "irqbalance"))
}

/// What `stratos tune` knows about the host when it recommends settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub host: HostFacts,
    pub isolated: Vec<usize>,
    /// NUMA nodes with their CPUs.
    pub numa_nodes: Vec<(usize, Vec<usize>)>,
    pub file_system: String,
    pub disk: Option<BlockDevice>,
    pub irqs: Vec<Irq>,
    pub irqbalance: bool,
    pub fdatasync: Option<LatencyUs>,
}

/// Everything but the (slow) fdatasync probe, for the data directory `dir`.
pub fn probe(dir: &Path) -> Probe {
    let disk = block_device(dir);
    let irqs = device_irqs(disk.as_ref());
    Probe { host: host_facts(), isolated: isolated_cpus(), numa_nodes: numa_nodes(), file_system: file_system(dir), disk, irqs, irqbalance: irqbalance_running(), fdatasync: None }
}

/// One recommended OM configuration key: its TOML value and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    pub key: &'static str,
    pub value: String,
    pub why: String,
}

/// glommio locks this many times an executor's `io_memory` (see FINDINGS: memlock).
const IO_MEMORY_LOCK_FACTOR: u64 = 3;

/// The OM's default election timeouts (`stratos_om::config` takes them from here, so that
/// advice and defaults cannot drift apart; they did: advice said 1000/2000 while the OM ran
/// 300/600). Why these values: see the OM's config.
pub const ELECTION_TIMEOUT_MIN_MS_DEFAULT: u64 = 300;
pub const ELECTION_TIMEOUT_MAX_MS_DEFAULT: u64 = 600;
/// An election timeout should outlast the slowest durable write by this factor: a leader
/// stalled in one fdatasync must not look dead to its followers.
const ELECTION_OVER_FDATASYNC_P99: u64 = 10;

/// Recommended `stratos om` settings for the probed host, each with its reason, plus warnings
/// (conditions under which Stratos cannot keep its promises, or will run badly).
pub fn recommend(p: &Probe) -> (Vec<Advice>, Vec<String>) {
    let mut advice = Vec::new();
    let mut warnings = Vec::new();
    let cores = p.host.cores.max(1);
    // Executors: one per isolated CPU if the operator isolated some (the scheduler leaves them
    // to us); otherwise one per core, leaving one for the kernel and interrupts on larger hosts.
    let (executors, cpus, why) = if !p.isolated.is_empty() {
        (p.isolated.len(), Some(p.isolated.clone()), format!("{} isolated CPUs (isolcpus): one pinned executor on each", p.isolated.len()))
    } else if cores >= 8 {
        (cores - 1, None, format!("{cores} CPUs, none isolated: one executor per CPU but one, left to the kernel and interrupts"))
    } else {
        (cores, None, format!("{cores} CPUs, none isolated: one executor per CPU"))
    };
    advice.push(Advice { key: "executors", value: executors.to_string(), why });
    if let Some(cpus) = cpus {
        let list = cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
        advice.push(Advice { key: "cpus", value: format!("[{list}]"), why: "pin executors to the isolated CPUs, in order".into() });
    }
    advice.push(Advice { key: "pin", value: "true".into(), why: "a pinned executor keeps its caches and its io_uring rings on one CPU".into() });
    advice.push(Advice {
        key: "shards",
        value: executors.to_string(),
        why: "one per executor (fixed when the data directory is formatted): each shard's WAL batches that core's writes into one fdatasync; more shards per core would split the batches".into(),
    });
    let (spin, why) = if p.isolated.is_empty() {
        ("0", "CPUs are shared with other processes: busy-polling would take their time")
    } else {
        ("50", "dedicated CPUs: busy-poll 50 µs before sleeping to cut wake-up latency")
    };
    advice.push(Advice { key: "spin_us", value: spin.into(), why: why.into() });
    // io_uring buffer memory: as much as the memlock limit allows, up to 4 MiB per executor.
    match p.host.memlock_bytes {
        Some(limit) => {
            let per = (limit / (IO_MEMORY_LOCK_FACTOR * executors as u64)).min(4 << 20) & !((1 << 20) - 1);
            if per == 0 {
                warnings.push(format!(
                    "memlock limit {} KiB is below the {} MiB that {executors} executors lock at minimum: raise it (ulimit -l, LimitMEMLOCK= in the unit file)",
                    limit / 1024,
                    IO_MEMORY_LOCK_FACTOR * executors as u64
                ));
                advice.push(Advice { key: "io_memory_bytes", value: (1u64 << 20).to_string(), why: "the minimum; the memlock limit must be raised first".into() });
            } else {
                let limit_text = if limit == u64::MAX { "unlimited".to_string() } else { format!("{} KiB", limit / 1024) };
                let why = format!("memlock {limit_text} shared by {executors} executors, each locking {IO_MEMORY_LOCK_FACTOR}× its io_memory (at most 4 MiB each)");
                advice.push(Advice { key: "io_memory_bytes", value: per.to_string(), why });
            }
        }
        None => advice.push(Advice { key: "io_memory_bytes", value: (1u64 << 20).to_string(), why: "memlock limit unknown: the safe minimum".into() }),
    }
    advice.push(Advice { key: "wal_spare_segment", value: "true".into(), why: "segment rollover renames a ready spare instead of zero-filling 64 MiB on the flush path".into() });
    if let Some(l) = &p.fdatasync {
        // The defaults while fdatasync p99 is a tenth of the minimum or less; above, the minimum
        // grows with the disk (rounded up to 100 ms), the maximum stays twice it.
        let need_ms = (l.p99 * ELECTION_OVER_FDATASYNC_P99).div_ceil(1000).div_ceil(100) * 100;
        let min = need_ms.max(ELECTION_TIMEOUT_MIN_MS_DEFAULT);
        let max = if min == ELECTION_TIMEOUT_MIN_MS_DEFAULT { ELECTION_TIMEOUT_MAX_MS_DEFAULT } else { 2 * min };
        let why = if min == ELECTION_TIMEOUT_MIN_MS_DEFAULT {
            format!("the default: fdatasync p99 {} µs is far below it ({ELECTION_OVER_FDATASYNC_P99}× is {} ms)", l.p99, l.p99 * ELECTION_OVER_FDATASYNC_P99 / 1000)
        } else {
            format!(
                "fdatasync p99 {} µs: an election must outlast the slowest durable write {ELECTION_OVER_FDATASYNC_P99}× over (the default {ELECTION_TIMEOUT_MIN_MS_DEFAULT} ms does not)",
                l.p99
            )
        };
        advice.push(Advice { key: "election_timeout_min_ms", value: min.to_string(), why });
        advice.push(Advice { key: "election_timeout_max_ms", value: max.to_string(), why: "twice the minimum: randomized elections rarely collide".into() });
        if l.p50 < 20 {
            warnings.push(format!("fdatasync p50 is {} µs: too fast for a real disk; this file system may not make writes durable (tmpfs, a cache that ignores flushes)", l.p50));
        }
    }
    if matches!(p.host.io_uring_disabled, Some(v) if v >= 2) {
        warnings.push("io_uring is disabled (kernel.io_uring_disabled = 2): Stratos cannot run; set it to 0".into());
    } else if p.host.io_uring_disabled == Some(1) {
        warnings.push("io_uring is restricted to a group (kernel.io_uring_disabled = 1): run Stratos as a member of kernel.io_uring_group".into());
    }
    if kernel_before(&p.host.kernel, (5, 19)) {
        warnings.push(format!(
            "kernel {} is older than 5.19: io_uring refuses IORING_SETUP_COOP_TASKRUN, so every socket completion interrupts a running executor with an IPI (over 256 connections the echo rate was a quarter lower for it on the project's VM); use 5.19 or later",
            p.host.kernel
        ));
    }
    if p.file_system == "tmpfs" {
        warnings.push("the data directory is on tmpfs: nothing survives a reboot; use it for tests only".into());
    }
    if let Some(d) = &p.disk {
        let nvme = d.name.starts_with("nvme");
        if let Some(sched) = d.scheduler.as_deref().filter(|s| *s != "none" && (nvme || !d.rotational)) {
            warnings.push(format!("{} uses the {sched} I/O scheduler: on flash it only adds CPU per I/O; set none (echo none > /sys/block/{}/queue/scheduler, or a udev rule)", d.name, d.name));
        }
        let slow = p.fdatasync.as_ref().is_some_and(|l| l.p50 > 2_000);
        if d.rotational && slow {
            warnings.push(format!("{} is a rotational disk (fdatasync p50 over 2 ms): every WAL group commit waits for the platter; put the data directory on flash", d.name));
        }
    }
    let busy: Vec<&Irq> = p.irqs.iter().filter(|i| i.cpus.iter().any(|c| p.isolated.contains(c))).collect();
    if !busy.is_empty() {
        let list = busy.iter().map(|i| format!("{} ({} {})", i.number, i.device, i.name)).collect::<Vec<_>>().join(", ");
        warnings.push(format!("IRQs delivered to isolated CPUs, where executors run: {list}; move them (echo <housekeeping CPUs> > /proc/irq/N/smp_affinity_list; boot with isolcpus=managed_irq,… for NVMe queues)"));
    }
    if p.irqbalance && !p.isolated.is_empty() {
        warnings.push("irqbalance is running: unless IRQBALANCE_BANNED_CPULIST names the isolated CPUs, it will move interrupts onto them".into());
    }
    if p.numa_nodes.len() > 1 && p.isolated.is_empty() {
        warnings.push(format!("{} NUMA nodes: list `cpus` from one node per OM (or one OM per node) so executors stay near their memory", p.numa_nodes.len()));
    }
    (advice, warnings)
}

/// The advice as a TOML fragment for `stratos om --config`, each key under its reason.
pub fn render_toml(advice: &[Advice]) -> String {
    let mut out = String::from("# Recommended by `stratos tune` for this host; merge into the OM configuration file.\n");
    for a in advice {
        out.push_str(&format!("# {}\n{} = {}\n", a.why, a.key, a.value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fdatasync_probe_measures_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let l = probe_fdatasync(dir.path(), 20).unwrap();
        assert_eq!(l.count, 20);
        assert!(l.p50 >= 1 && l.p50 <= l.p99 && l.p99 <= l.max);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    fn probe(cores: usize, isolated: Vec<usize>, memlock: Option<u64>) -> Probe {
        Probe {
            host: HostFacts { cores, memlock_bytes: memlock, io_uring_disabled: Some(0), kernel: "6.1".into() },
            isolated,
            numa_nodes: vec![(0, (0..cores).collect())],
            file_system: "ext4".into(),
            disk: None,
            irqs: Vec::new(),
            irqbalance: false,
            fdatasync: Some(LatencyUs { count: 10, p50: 90, p90: 100, p99: 150, p999: 200, max: 300 }),
        }
    }

    fn value(a: &[Advice], key: &str) -> String {
        a.iter().find(|a| a.key == key).map(|a| a.value.clone()).unwrap_or_else(|| panic!("no {key}"))
    }

    #[test]
    fn election_advice_is_the_default_unless_the_disk_is_slow() {
        let (a, _) = recommend(&probe(2, vec![], None));
        assert_eq!(value(&a, "election_timeout_min_ms"), ELECTION_TIMEOUT_MIN_MS_DEFAULT.to_string(), "p99 150 µs");
        assert_eq!(value(&a, "election_timeout_max_ms"), ELECTION_TIMEOUT_MAX_MS_DEFAULT.to_string());
        let mut slow = probe(2, vec![], None);
        slow.fdatasync = Some(LatencyUs { count: 10, p50: 20_000, p90: 40_000, p99: 75_000, p999: 90_000, max: 99_000 });
        let (a, _) = recommend(&slow);
        assert_eq!(value(&a, "election_timeout_min_ms"), "800", "10 × 75 ms, rounded up to 100 ms");
        assert_eq!(value(&a, "election_timeout_max_ms"), "1600");
    }

    #[test]
    fn recommendations_follow_the_host() {
        // This VM: 2 shared cores, 8 MiB memlock.
        let (a, w) = recommend(&probe(2, vec![], Some(8 << 20)));
        assert_eq!(value(&a, "executors"), "2");
        assert_eq!(value(&a, "shards"), "2");
        assert_eq!(value(&a, "spin_us"), "0");
        assert_eq!(value(&a, "io_memory_bytes"), (1u64 << 20).to_string(), "8 MiB / (3 × 2) rounded down to whole MiB");
        assert!(w.is_empty(), "{w:?}");
        // A 16-core host with CPUs 2-15 isolated and unlimited memlock.
        let (a, _) = recommend(&probe(16, (2..16).collect(), Some(u64::MAX)));
        assert_eq!(value(&a, "executors"), "14");
        assert!(value(&a, "cpus").starts_with("[2, 3,"));
        assert_eq!(value(&a, "spin_us"), "50");
        assert_eq!(value(&a, "io_memory_bytes"), (4u64 << 20).to_string());
        // A large host without isolation leaves one CPU to the kernel.
        assert_eq!(value(&recommend(&probe(32, vec![], Some(u64::MAX))).0, "executors"), "31");
        // Too little memlock, and a disk that cannot be real, are warned about.
        let mut p = probe(4, vec![], Some(1 << 20));
        p.fdatasync = Some(LatencyUs { count: 10, p50: 3, p90: 4, p99: 5, p999: 6, max: 9 });
        p.file_system = "tmpfs".into();
        let (_, w) = recommend(&p);
        assert_eq!(w.len(), 3, "{w:?}");
        // A kernel without COOP_TASKRUN is warned about; one that does not parse is not.
        p.host.kernel = "5.15.0-91-generic".into();
        let (_, w) = recommend(&p);
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w.iter().any(|w| w.contains("5.19")), "{w:?}");
        assert!(!kernel_before("6.18.44-fc-v1252", (5, 19)) && !kernel_before("5.19", (5, 19)) && kernel_before("4.19.0", (5, 19)));
        assert!(!kernel_before("", (5, 19)) && !kernel_before("linux", (5, 19)));
        // One line per key under its reason.
        let toml_text = render_toml(&a);
        assert_eq!(toml_text.lines().filter(|l| !l.starts_with('#')).count(), a.len());
    }

    #[test]
    fn disks_and_interrupts_are_warned_about() {
        let disk = BlockDevice { name: "nvme0n1".into(), model: "X".into(), rotational: false, scheduler: Some("mq-deadline".into()), hw_queues: 16, write_cache: Some("write back".into()), pci: Some("0000:3d:00.0".into()) };
        let irq = |n: u32, cpus: Vec<usize>| Irq { number: n, device: "disk nvme0n1".into(), name: format!("nvme0q{n}"), cpus, count: 5 };
        let mut p = probe(16, (2..16).collect(), Some(u64::MAX));
        p.disk = Some(disk.clone());
        p.irqs = vec![irq(40, vec![0]), irq(41, vec![5])];
        p.irqbalance = true;
        let (_, w) = recommend(&p);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("mq-deadline") && w[0].contains("/sys/block/nvme0n1/queue/scheduler"), "{w:?}");
        assert!(w[1].contains("41 (disk nvme0n1 nvme0q41)") && !w[1].contains("40 ("), "only the IRQ on an isolated CPU: {w:?}");
        assert!(w[2].contains("irqbalance"), "{w:?}");
        // Without isolated CPUs there is nowhere IRQs must not go; a spinning disk is named.
        let mut p = probe(2, vec![], Some(8 << 20));
        p.disk = Some(BlockDevice { name: "sda".into(), rotational: true, scheduler: Some("mq-deadline".into()), ..disk });
        p.irqs = vec![irq(40, vec![0, 1])];
        p.irqbalance = true;
        p.fdatasync = Some(LatencyUs { count: 10, p50: 8_000, p90: 9_000, p99: 12_000, p999: 15_000, max: 20_000 });
        let (_, w) = recommend(&p);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("sda is a rotational disk"), "{w:?}");
    }

    #[test]
    fn interrupts_and_sysfs_choices_parse() {
        let text = "           CPU0       CPU1       \n 36:          0   17466176 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0\n 40:  3  4  PCI-MSIX-0000:3d:00.0 2-edge nvme0q1\nNMI:          0          0   Non-maskable interrupts\nERR:          0\n";
        let t = parse_interrupts(text);
        assert_eq!(t.get(&36), Some(&("virtio1-req.0".to_string(), 17_466_176)));
        assert_eq!(t.get(&40), Some(&("nvme0q1".to_string(), 7)));
        assert_eq!(t.len(), 2);
        assert_eq!(active_choice("none [mq-deadline] kyber bfq").as_deref(), Some("mq-deadline"));
        assert_eq!(active_choice("[none] mq-deadline").as_deref(), Some("none"));
        assert_eq!(active_choice("none"), None);
    }

    #[test]
    fn the_data_directory_disk_is_found_where_sysfs_has_it() {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(dir.path()).unwrap().dev();
        let known = Path::new(&format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev))).exists();
        let d = block_device(dir.path());
        assert_eq!(d.is_some(), known, "{d:?}");
        if let Some(d) = d {
            assert!(Path::new("/sys/block").join(&d.name).exists(), "{d:?} is a whole disk");
            assert!(d.scheduler.is_some(), "{d:?}");
            // Its interrupts, where it has a PCI function, are found and have a delivery CPU.
            if d.pci.is_some() {
                let irqs = device_irqs(Some(&d));
                assert!(irqs.iter().any(|i| i.device == format!("disk {}", d.name)), "{irqs:?}");
            }
        }
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-3,8,10-11"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("x,2,3-y"), vec![2]);
    }

    #[test]
    fn host_facts_are_read() {
        let f = host_facts();
        assert!(f.cores >= 1);
        assert!(!f.kernel.is_empty());
    }
}
