//! Shard figures on one core: open+commit applies/s, lookups/s, resident memory per key,
//! command decode cost, snapshot write and load rates.
//!
//! Commands are built in chunks before the timed part (building Strings is the RPC layer's
//! cost, not apply's); names are 40 bytes in a scrambled order, so B-tree inserts land all
//! over the tree as real workloads do, not as sorted appends.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, ensure};
use stratos_shard::*;

use crate::report::Report;
use crate::rss_bytes;

#[derive(Debug, Clone)]
pub struct ShardBenchOptions {
    pub keys: usize,
    pub runs: usize,
    /// Where the snapshot file is written (a temp file, removed afterwards).
    pub dir: PathBuf,
}

/// Commands are built this many at a time: small, so that the garbage they leave in the
/// allocator does not inflate the resident-bytes-per-key figure.
const CHUNK: usize = 1_000;
const CLIENTS: u64 = 64;
const VOLUME: &str = "vol-bench";
const BUCKET: &str = "bucket-bench";

/// A 40-byte key name; consecutive `i` land far apart in key order.
pub fn key_name(i: u64) -> String {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    format!("{h:016x}/{i:023}")
}

fn ctx(i: u64, time_ms: u64) -> CommandContext {
    CommandContext { client_id: 1 + i % CLIENTS, request_id: i, time_ms, principal: Principal::user("bench"), bucket: None }
}

pub fn run(opts: &ShardBenchOptions, report: &mut Report, progress: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    for run in 0..opts.runs {
        one_run(opts, report, run, progress)?;
    }
    Ok(())
}

fn one_run(opts: &ShardBenchOptions, report: &mut Report, run: usize, progress: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    let n = opts.keys as u64;
    let mut state = ShardState::new();
    let mut log_index = 0u64;
    let t0 = 1_800_000_000_000u64;
    let admin = CommandContext { client_id: 0, request_id: 0, time_ms: t0, principal: Principal::admin("root"), bucket: None };
    log_index += 1;
    state
        .apply(log_index, &Command { ctx: admin.clone(), op: Op::CreateVolume { volume: VOLUME.into(), owner: "bench".into(), admin: "root".into(), quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] } })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    log_index += 1;
    state
        .apply(log_index, &Command { ctx: admin, op: Op::CreateBucket { volume: VOLUME.into(), bucket: BUCKET.into(), owner: Some("bench".into()), versioning: false, replication: Replication::RatisThree, quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] } })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rss_before = rss_bytes();

    // Open + commit, one key per pair, timed over the applies only.
    let mut apply_secs = 0.0;
    let mut i = 0u64;
    while i < n {
        let end = (i + CHUNK as u64).min(n);
        let mut pairs = Vec::with_capacity(CHUNK);
        for k in i..end {
            let block = BlockLocation { container_id: 1 + k / 1000, local_id: k, pipeline_id: 7, length: 4096 };
            // Object ids of group 0: the volume is object 1, the bucket 2, key k's open key 3 + k
            // (a commit of a new key with all its blocks frees none, so takes no id).
            let open_id = |k: u64| stratos_shard::object_id(0, 3 + k);
            let (open_index, commit_index) = (log_index + 1 + 2 * (k - i), log_index + 2 + 2 * (k - i));
            let open = Command { ctx: ctx(2 * k, t0 + k), op: Op::OpenKey { volume: VOLUME.into(), bucket: BUCKET.into(), key: key_name(k), replication: None, blocks: vec![block], expires_ms: t0 + 86_400_000, metadata: vec![] } };
            let commit = Command { ctx: ctx(2 * k + 1, t0 + k), op: Op::CommitKey { volume: VOLUME.into(), bucket: BUCKET.into(), key: key_name(k), open_id: open_id(k), data_size: 4096, blocks: vec![block] } };
            pairs.push((open_index, open, commit_index, commit));
        }
        let t = Instant::now();
        for (oi, open, ci, commit) in &pairs {
            let o = state.apply(*oi, open);
            let c = state.apply(*ci, commit);
            if o.is_err() || c.is_err() {
                anyhow::bail!("apply failed at log index {oi}: {o:?} {c:?}");
            }
        }
        apply_secs += t.elapsed().as_secs_f64();
        log_index += 2 * (end - i);
        i = end;
    }
    ensure!(state.stats().keys == opts.keys, "expected {} keys, have {:?}", opts.keys, state.stats());
    let rss_after = rss_bytes();
    let pairs_per_s = n as f64 / apply_secs;
    let bytes_per_key = (rss_after.saturating_sub(rss_before)) as f64 / n as f64;
    let entry_bytes_per_key = state.stats().key_entry_bytes as f64 / n as f64;
    report.record("shard: open+commit pairs/s (one core)", "/s", pairs_per_s);
    report.record("shard: applies/s (open or commit)", "/s", 2.0 * pairs_per_s);
    // Later runs reuse pages the allocator kept from the previous one: only the first run of a
    // process measures what a key costs.
    if run == 0 {
        report.record(&format!("shard: resident bytes per key ({} keys, first run)", opts.keys), "B", bytes_per_key);
    }
    report.record("shard: key entry bytes per key (record + name)", "B", entry_bytes_per_key);

    // Decode cost: what the Raft apply path pays per command read from the log (measured after
    // the memory figure, whose garbage it would add to).
    let encoded: Vec<_> = (0..10_000u64)
        .map(|k| {
            let block = BlockLocation { container_id: 1, local_id: k, pipeline_id: 7, length: 4096 };
            Command { ctx: ctx(k, t0), op: Op::CommitKey { volume: VOLUME.into(), bucket: BUCKET.into(), key: key_name(k), open_id: k << 8, data_size: 4096, blocks: vec![block] } }.encode()
        })
        .collect();
    let t = Instant::now();
    for e in &encoded {
        std::hint::black_box(Command::decode(e)?);
    }
    report.record("shard: command decode (rkyv, validated)", "ns", t.elapsed().as_secs_f64() * 1e9 / encoded.len() as f64);
    drop(encoded);

    // Lookups of existing keys, in scrambled order.
    let mut lookups = 0u64;
    let mut lookup_secs = 0.0;
    let mut j = 0u64;
    while j < n {
        let names: Vec<String> = (j..(j + CHUNK as u64).min(n)).map(|k| key_name((k * 7919) % n)).collect();
        let t = Instant::now();
        for name in &names {
            let r = state.lookup_key(VOLUME, BUCKET, name).map_err(|e| anyhow::anyhow!("{e}"))?;
            std::hint::black_box(r.data_size.to_native());
        }
        lookup_secs += t.elapsed().as_secs_f64();
        lookups += names.len() as u64;
        j += CHUNK as u64;
    }
    report.record("shard: lookups/s (one core)", "/s", lookups as f64 / lookup_secs);

    // Snapshot: make the image, write it durably; then read it back and load it.
    let path = opts.dir.join(format!(".shard-bench-{}.snap", std::process::id()));
    let t = Instant::now();
    let image = state.snapshot();
    let make_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    {
        let mut f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(&image)?;
        f.sync_all()?;
    }
    let write_secs = make_secs + t.elapsed().as_secs_f64();
    let image_bytes = image.len();
    drop(image);
    let t = Instant::now();
    let bytes = std::fs::read(&path)?;
    let loaded = ShardState::load_snapshot(&bytes)?;
    let load_secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    ensure!(loaded.stats().keys == opts.keys, "the loaded snapshot lost keys");
    report.record("shard: snapshot write (image + write + fsync) keys/s", "/s", n as f64 / write_secs);
    report.record("shard: snapshot load (read + validate + rebuild) keys/s", "/s", n as f64 / load_secs);
    report.record("shard: snapshot bytes per key", "B", image_bytes as f64 / n as f64);
    let memory = if run == 0 { format!(", {bytes_per_key:.0} B/key resident") } else { String::new() };
    progress(&format!(
        "run {}: {:.0} pairs/s, {:.0} lookups/s{memory}, snapshot write {:.0} keys/s, load {:.0} keys/s",
        run + 1,
        pairs_per_s,
        lookups as f64 / lookup_secs,
        n as f64 / write_secs,
        n as f64 / load_secs
    ));
    Ok(())
}
