//! The data path end to end, with real processes on loopback: `stratos scm`, `stratos
//! datanode`s and `stratos om`, driven by `stratos sh` and by the client library. Byte-for-byte
//! round trips, blocks freed on the datanodes after overwrite and delete, token attacks on a
//! live datanode, a datanode killed during a put, and an SCM killed under allocation load.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{Proc, Tls, s};

struct Cluster {
    dir: PathBuf,
    scm: Proc,
    scm_addr: String,
    datanodes: Vec<Proc>,
    om: Proc,
}

fn start_scm(dir: &Path, addr: &str) -> Proc {
    start_scm_dead_after(dir, addr, "30000")
}

fn start_scm_dead_after(dir: &Path, addr: &str, dead_after_ms: &str) -> Proc {
    // Checkpoints every 300 records, so restarts load a checkpoint and replay the log after it.
    Proc::secured(&["scm", "--http-address", "127.0.0.1:0", "--data-dir", s(&dir.join("scm")), "--rpc-address", addr, "--dead-after-ms", dead_after_ms, "--checkpoint-every", "300"])
}

impl Cluster {
    fn start(dir: &Path, datanodes: usize, om_args: &[&str]) -> Cluster {
        Self::start_with(dir, datanodes, om_args, "30000")
    }

    /// [`Cluster::start`] with the SCM's `--dead-after-ms`.
    fn start_with(dir: &Path, datanodes: usize, om_args: &[&str], dead_after_ms: &str) -> Cluster {
        let scm = start_scm_dead_after(dir, "127.0.0.1:0", dead_after_ms);
        let scm_addr = scm.word_after("rpc");
        let datanodes = (0..datanodes)
            .map(|i| Proc::secured(&["datanode", "--data-dir", s(&dir.join(format!("dn{i}"))), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--scm", &scm_addr, "--heartbeat-ms", "200"]))
            .collect();
        let om_dir = dir.join("om");
        let mut args = vec!["om", "--data-dir", s(&om_dir), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--shards", "2", "--executors", "2", "--no-pin"];
        args.extend(["--election-timeout-min-ms", "150", "--election-timeout-max-ms", "300", "--heartbeat-interval-ms", "50", "--wal-segment-bytes", "8388608"]);
        args.extend(["--scm-address", &scm_addr, "--scm-poll-ms", "300", "--block-bytes", "1048576"]);
        args.extend(om_args);
        let om = Proc::secured(&args);
        let c = Cluster { dir: dir.to_path_buf(), scm, scm_addr, datanodes, om };
        c.ok(&["volume", "create", "/vol"]);
        c.ok(&["bucket", "create", "/vol/bkt"]);
        c
    }

    fn om(&self) -> String {
        self.om.word_after("rpc")
    }

    fn sh(&self, args: &[&str]) -> (bool, String, String) {
        let out = Tls::get().stratos().arg("sh").args(["--om", &self.om()]).args(args).output().expect("run stratos sh");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.sh(args);
        assert!(ok, "stratos sh {args:?} failed: {err}");
        out
    }

    /// Which of `blocks` (container, local id) are complete on datanode `i`, as its
    /// `listBlocks` reports them (small blocks live in its block log, large ones in files). A
    /// datanode that is down holds none.
    fn holds(&self, i: usize, blocks: &[(u64, u64)]) -> BTreeSet<(u64, u64)> {
        let containers: BTreeSet<u64> = blocks.iter().map(|b| b.0).collect();
        let wanted: BTreeSet<(u64, u64)> = blocks.iter().copied().collect();
        let addr = self.datanodes[i].word_after("rpc");
        on_executor(move || async move {
            let dns = stratos_client::data::Datanodes::default();
            let Ok(dn) = dns.get(&addr).await else { return BTreeSet::new() };
            let mut out = BTreeSet::new();
            for c in containers {
                for (l, _) in stratos_client::data::list_blocks(&dn, c).await.unwrap_or_default() {
                    if wanted.contains(&(c, l)) {
                        out.insert((c, l));
                    }
                }
            }
            out
        })
    }
}

fn random_file(dir: &Path, name: &str, len: usize, seed: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, crate::support::pseudo_random_bytes(len, seed)).expect("write test file");
    p
}

fn key_blocks(info: &str) -> Vec<(u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(info).expect("key info JSON");
    v["blocks"].as_array().expect("blocks").iter().map(|b| (b["containerID"].as_u64().expect("id"), b["localID"].as_u64().expect("id"))).collect()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn on_executor<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(f: impl FnOnce() -> F + Send + 'static) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(1 << 20).spawn(move || async move { f().await }).expect("executor").join().expect("join")
}

#[test]
fn round_trips_byte_for_byte_and_old_blocks_are_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path(), 3, &[]);
    // 0 B, 1 B, 4 MiB (four 1 MiB blocks), and 2.5 MiB + 1 (three blocks, the last partial and
    // not on a frame boundary).
    let sizes = [("empty", 0usize), ("one", 1), ("four-mib", 4 << 20), ("odd", (5 << 19) + 1)];
    for (i, (name, len)) in sizes.iter().enumerate() {
        let f = random_file(dir.path(), name, *len, i as u64);
        c.ok(&["key", "put", &format!("/vol/bkt/{name}"), s(&f)]);
        let out = dir.path().join(format!("{name}.out"));
        c.ok(&["key", "get", &format!("/vol/bkt/{name}"), s(&out)]);
        assert_eq!(std::fs::read(&out).expect("read back"), std::fs::read(&f).expect("original"), "{name} differs after the round trip");
        let blocks = key_blocks(&c.ok(&["key", "info", &format!("/vol/bkt/{name}")]));
        assert_eq!(blocks.len(), len.div_ceil(1 << 20), "{name}: one block per MiB");
        for (cid, l) in &blocks {
            for d in 0..3 {
                assert!(c.holds(d, &[(*cid, *l)]).contains(&(*cid, *l)), "{name}: block {cid}/{l} missing on datanode {d}");
            }
        }
    }
    // `key cat` writes the bytes to stdout.
    let cat = Tls::get().stratos().args(["sh", "--om", &c.om(), "key", "cat", "/vol/bkt/four-mib"]).output().expect("run stratos sh");
    assert!(cat.status.success() && cat.stdout == std::fs::read(dir.path().join("four-mib")).expect("read"), "key cat differs");
    // A flipped byte in one datanode's copy: that datanode names the file and offset, and a
    // get reads the block from another datanode.
    // The block (1 MiB, so a small block) is a record of the datanode's block log: find its
    // bytes in the log's segment files and flip one.
    let original = std::fs::read(dir.path().join("odd")).expect("read");
    let log_dir = dir.path().join("dn0").join("block-log");
    let (copy, at) = std::fs::read_dir(&log_dir)
        .expect("the container's log")
        .flatten()
        .find_map(|f| {
            let bytes = std::fs::read(f.path()).ok()?;
            let at = bytes.windows(256).position(|w| w == &original[..256])?;
            Some((f.path(), at))
        })
        .expect("the block's bytes in a log segment");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&copy).expect("open the segment");
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, (at + 70_000) as u64).expect("read");
        f.write_all_at(&[b[0] ^ 0x40], (at + 70_000) as u64).expect("corrupt the copy");
    }
    let out = dir.path().join("odd.again");
    c.ok(&["key", "get", "/vol/bkt/odd", s(&out)]);
    assert!(std::fs::read(&out).expect("read") == std::fs::read(dir.path().join("odd")).expect("read"), "the get fell back to a good copy");
    let (om, copy_name) = (c.om(), copy.display().to_string());
    let e = on_executor(move || async move {
        let client = stratos_client::Client::connect(&om, "root").await.expect("connect");
        let (_, blocks) = client.lookup_blocks("vol", "bkt", "odd").await.expect("lookup");
        let dn0 = blocks[0].datanodes.iter().find(|(id, _)| *id == 1).expect("datanode 1 (dn0) holds it").1.clone();
        let dns = stratos_client::data::Datanodes::default();
        let dn = dns.get(&dn0).await.expect("connect");
        stratos_client::data::read_chunk(&dn, &blocks[0], 0, 200_000).await.expect_err("a corrupt frame is an error")
    });
    // The record's header (32 bytes) and its container id (8) precede the block's bytes.
    assert!(e.contains("Corrupt") && e.contains(&copy_name) && e.contains(&format!("offset {}", at - 40)), "{e}");
    // Overwrite one key, delete another: their old blocks leave every datanode, eventually.
    let old: Vec<(u64, u64)> = key_blocks(&c.ok(&["key", "info", "/vol/bkt/four-mib"])).into_iter().chain(key_blocks(&c.ok(&["key", "info", "/vol/bkt/odd"]))).collect();
    let small = random_file(dir.path(), "small", 100, 9);
    c.ok(&["key", "put", "/vol/bkt/four-mib", s(&small)]);
    c.ok(&["key", "delete", "/vol/bkt/odd"]);
    let kept = key_blocks(&c.ok(&["key", "info", "/vol/bkt/four-mib"]));
    wait_for("the old blocks to be deleted on the datanodes", Duration::from_secs(30), || (0..3).all(|d| c.holds(d, &old).is_empty()));
    for d in 0..3 {
        assert!(c.holds(d, &kept).len() == kept.len(), "the new version's block is still on datanode {d}");
    }
    let out = dir.path().join("small.out");
    c.ok(&["key", "get", "/vol/bkt/four-mib", s(&out)]);
    assert_eq!(std::fs::read(&out).expect("read"), std::fs::read(&small).expect("read"));
    // (A new name: an existing file is kept without --force, before the key is even looked up.)
    let gone = dir.path().join("gone.out");
    let (ok, _, err) = c.sh(&["key", "get", "/vol/bkt/odd", s(&gone)]);
    assert!(!ok && err.contains("KEY_NOT_FOUND") && !gone.exists(), "{err}");
}

/// Every block of a key has the replication the key was opened with, not its bucket's. A stream
/// (`key put ... -`) is opened with one block, the rest come from `allocateBlock`, which took the
/// bucket's replication: a key put with `-r ONE` into a THREE bucket had its first block on one
/// datanode and the others on three (and `-r THREE` into a ONE bucket, single copies).
#[test]
fn every_block_of_a_streamed_key_has_the_replication_it_was_opened_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path(), 3, &[]);
    // 2.5 MiB + 1: three blocks of 1 MiB (the cluster's block size).
    let f = random_file(dir.path(), "stream", (5 << 19) + 1, 11);
    let put = Tls::get()
        .stratos()
        .arg("sh")
        .args(["--om", &c.om(), "key", "put", "-r", "ONE", "/vol/bkt/one", "-"])
        .stdin(std::fs::File::open(&f).expect("open"))
        .output()
        .expect("run stratos sh key put");
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    let blocks = key_blocks(&c.ok(&["key", "info", "/vol/bkt/one"]));
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    let held: Vec<usize> = blocks.iter().map(|b| (0..3).filter(|i| c.holds(*i, &[*b]).contains(b)).count()).collect();
    assert_eq!(held, vec![1, 1, 1], "datanodes holding each block of a key put with -r ONE");
    let out = dir.path().join("stream.out");
    c.ok(&["key", "get", "/vol/bkt/one", s(&out)]);
    assert_eq!(std::fs::read(&out).expect("read back"), std::fs::read(&f).expect("original"));
}

/// The same for an `allocateBlock` that lands on a core without the key's group (core ports off,
/// so the one connection below serves keys of both shards, and whichever core it reached, one
/// key's calls belong to the other): its blocks still have the key's replication, asked of the
/// group's core over the mesh. Before, that core fell back to the bucket's: [1, 3, 3].
#[test]
fn a_block_allocated_on_another_core_has_the_open_key_s_replication() {
    use stratos_client::data::{self, Datanodes, PutOptions, StreamSource};
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path(), 3, &["--core-ports", "false"]);
    let names: Vec<String> = (0..2).map(|shard| (0..).map(|i| format!("k{i}")).find(|k| stratos_schema::shard_of("vol", "bkt", k, 2) == shard).expect("a name")).collect();
    // 2.5 MiB + 1: three blocks of 1 MiB.
    let bytes = std::fs::read(random_file(dir.path(), "stream", (5 << 19) + 1, 12)).expect("read");
    let (om, keys) = (c.om(), names.clone());
    on_executor(move || async move {
        let client = stratos_client::Client::connect(&om, "root").await.expect("connect");
        let mut dns = Datanodes::default();
        let opts = PutOptions { replication: Some(stratos_schema::om_capnp::Replication::RatisOne) };
        for k in &keys {
            // Of unknown size, as a pipe is: every block after the first is its own allocateBlock.
            let stream = StreamSource::new("a stream", Box::new(std::io::Cursor::new(bytes.clone()))).expect("a spool file");
            data::put_with(&client, &mut dns, "vol", "bkt", k, &stream, &opts, &mut |_| {}).await.expect("put");
        }
    });
    for k in &names {
        let blocks = key_blocks(&c.ok(&["key", "info", &format!("/vol/bkt/{k}")]));
        assert_eq!(blocks.len(), 3, "{k}: {blocks:?}");
        let held: Vec<usize> = blocks.iter().map(|b| (0..3).filter(|i| c.holds(*i, &[*b]).contains(b)).count()).collect();
        assert_eq!(held, vec![1, 1, 1], "datanodes holding each block of {k}, opened with RATIS/ONE");
    }
}

/// Concurrent puts and gets through clones of one `Datanodes` share one connection per
/// datanode (as `ockg`/`ockr` and the S3 gateway use them): small and multi-block keys
/// interleave on those connections and every key reads back byte for byte.
#[test]
fn concurrent_puts_through_clones_share_one_connection_per_datanode() {
    use stratos_client::data::{self, Datanodes};
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path(), 3, &[]);
    // 4 KiB keys and 1.5 MiB ones (two blocks), 16 of each, all in flight at once.
    let contents: Vec<Vec<u8>> = (0..32).map(|i| crate::support::pseudo_random_bytes(if i % 2 == 0 { 4096 } else { 3 << 19 }, 100 + i as u64)).collect();
    let om = c.om();
    let (connections, back) = on_executor(move || async move {
        let client = std::rc::Rc::new(stratos_client::Client::connect(&om, "root").await.expect("connect"));
        let dns = Datanodes::default();
        let puts = contents.iter().enumerate().map(|(i, bytes)| {
            let (client, mut dns) = (client.clone(), dns.clone());
            async move { data::put(&client, &mut dns, "vol", "bkt", &format!("shared-{i}"), bytes, &mut |_| {}).await.expect("put") }
        });
        futures_util::future::join_all(puts).await;
        let gets = (0..contents.len()).map(|i| {
            let (client, mut dns) = (client.clone(), dns.clone());
            async move {
                let mut out = Vec::new();
                data::get_key(&client, &mut dns, "vol", "bkt", &format!("shared-{i}"), &mut out, &mut |_| {}).await.expect("get");
                out
            }
        });
        let back = futures_util::future::join_all(gets).await;
        // The original was never used itself: what it holds, its clones dialled.
        ((dns.connections(), contents), back)
    });
    let (n, contents) = connections;
    assert!((1..=3).contains(&n), "connections held by the shared Datanodes: {n}");
    for (i, (got, want)) in back.iter().zip(&contents).enumerate() {
        assert!(got == want, "shared-{i}: {} bytes back, {} put", got.len(), want.len());
    }
}

#[test]
fn the_datanode_refuses_bad_tokens_and_keeps_the_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path(), 3, &["--block-token-lifetime-ms", "2000"]);
    let f = random_file(dir.path(), "data", 300_000, 1);
    let (om, path) = (c.om(), f.clone());
    let original = std::fs::read(&f).expect("read");
    let failures = on_executor(move || async move {
        use stratos_client::data::{self, Datanodes};
        let client = stratos_client::Client::connect(&om, "root").await.expect("connect");
        let mut dns = Datanodes::default();
        data::put_file(&client, &mut dns, "vol", "bkt", "a", &path, &mut |_| {}).await.expect("put a");
        let (_, a) = client.lookup_blocks("vol", "bkt", "a").await.expect("lookup a");
        let a = a[0].clone();
        // A second key's write token, for another block.
        let opened = client
            .submit(|op| {
                let mut o = op.init_open_key();
                o.set_volume("vol");
                o.set_bucket("bkt");
                o.set_key("b");
                o.set_data_size(10);
            })
            .await
            .expect("open b");
        let stratos_client::Done::KeyOpened { blocks, .. } = opened else { panic!("{opened:?}") };
        let b = blocks[0].clone();
        let dn = dns.get(&a.datanodes[0].1).await.expect("datanode");
        let mut refused = Vec::new();
        // A genuine read token reads.
        let (bytes, len) = data::read_chunk(&dn, &a, 0, 100).await.expect("a genuine token reads");
        assert_eq!((bytes.len(), len), (100, 300_000));
        // Tampered: one bit of the payload (the max length) and one of the signature.
        for at in [31, a.token.len() - 1] {
            let mut t = a.clone();
            t.token[at] ^= 1;
            refused.push(("tampered", data::read_chunk(&dn, &t, 0, 100).await.map(|_| ())));
        }
        // A read token used to write, over the block's first bytes.
        refused.push(("read token writing", data::write_chunk(&dn, &a, 0, &[0u8; 100]).await));
        refused.push(("read token completing", data::put_block(&dn, &a, 100).await));
        // Another block's token: b's write token against a's block, to write and to read.
        let other = stratos_client::Block { token: b.token.clone(), ..a.clone() };
        refused.push(("another block's token writing", data::write_chunk(&dn, &other, 0, &[0u8; 100]).await));
        refused.push(("another block's token reading", data::read_chunk(&dn, &other, 0, 100).await.map(|_| ())));
        // Over the length the token allows.
        refused.push(("reading past the token's length", data::read_chunk(&dn, &a, 299_000, 2_000).await.map(|_| ())));
        // Through `read_any`, a refusal is an answer: the shared connections stay; a datanode
        // that does not answer at all loses its connection (the next use dials again). The
        // third field: every datanode asked, in order.
        struct Counting<'a>(&'a mut Datanodes, Vec<String>, Vec<String>);
        impl data::DatanodeSource for Counting<'_> {
            async fn datanode(&mut self, address: &str) -> Result<data::Datanode, String> {
                self.2.push(address.to_string());
                self.0.get(address).await
            }
            fn forget_datanode(&mut self, address: &str) {
                self.1.push(address.to_string());
                self.0.forget(address);
            }
        }
        let mut t = a.clone();
        t.token[31] ^= 1;
        let mut src = Counting(&mut dns, Vec::new(), Vec::new());
        let mut failed = BTreeSet::new();
        let e = data::read_any(&mut src, &t, 0, 100, &mut failed).await.expect_err("every replica refuses the token");
        assert!(e.contains("TokenRefused") && failed.len() == 3 && src.1.is_empty(), "{e}; failed {failed:?}, forgotten {:?}", src.1);
        // A dead replica beside the live ones: reads start at a replica drawn at random, so
        // over 80 reads it is asked (and forgotten) some times (never: odds of 1e-10), and
        // every read is served.
        let mut gone = a.clone();
        gone.datanodes.insert(0, (u64::MAX, "127.0.0.1:1".to_string()));
        for _ in 0..80 {
            let read = data::read_any(&mut src, &gone, 0, 100, &mut BTreeSet::new()).await.expect("the live replicas serve it");
            assert_eq!(read.len(), 100);
        }
        assert!(!src.1.is_empty() && src.1.iter().all(|a| a == "127.0.0.1:1"), "only the dead address is forgotten: {:?}", src.1);
        // Reads spread over the replicas: each of the three live ones is asked first sometimes
        // (60 reads: a replica never drawn first has odds under 1e-10).
        let mut firsts = std::collections::BTreeMap::<String, u32>::new();
        for _ in 0..60 {
            let asked = src.2.len();
            data::read_any(&mut src, &a, 0, 100, &mut BTreeSet::new()).await.expect("read");
            *firsts.entry(src.2.get(asked).expect("a datanode asked").clone()).or_default() += 1;
        }
        assert_eq!(firsts.len(), a.datanodes.len(), "reads started at {firsts:?}");
        // Expired: the OM gives 2 s tokens here.
        glommio::timer::sleep(Duration::from_millis(2200)).await;
        refused.push(("expired", data::read_chunk(&dn, &a, 0, 100).await.map(|_| ())));
        // The data is intact: a fresh lookup reads every byte back.
        let mut out = Vec::new();
        data::get_key(&client, &mut dns, "vol", "bkt", "a", &mut out, &mut |_| {}).await.expect("get a");
        (refused, out)
    });
    let (refused, out) = failures;
    for (what, r) in &refused {
        let e = r.as_ref().expect_err(what);
        assert!(e.contains("TokenRefused"), "{what}: {e}");
    }
    let why: Vec<&str> = refused.iter().map(|(_, r)| r.as_ref().expect_err("refused").as_str()).collect();
    assert!(why[0].contains("signature") && why[1].contains("signature"), "{why:?}");
    assert!(why[2].contains("does not allow writing") && why[3].contains("does not allow writing"), "{why:?}");
    assert!(why[4].contains("is for block") && why[5].contains("is for block"), "{why:?}");
    assert!(why[6].contains("allows 300000 bytes"), "{why:?}");
    assert!(why[7].contains("expired"), "{why:?}");
    assert!(out == original, "the data changed");
}

#[test]
fn a_datanode_killed_during_a_put_does_not_fail_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::start(dir.path(), 4, &[]);
    let f = random_file(dir.path(), "big", 6 << 20, 3);
    let original = std::fs::read(&f).expect("read");
    let addrs: Vec<String> = c.datanodes.iter().map(|d| d.word_after("rpc")).collect();
    let pids: Vec<u32> = c.datanodes.iter().map(|d| d.child.id()).collect();
    let (om, path) = (c.om(), f.clone());
    let killed = on_executor(move || async move {
        use stratos_client::data::{self, Datanodes};
        let client = stratos_client::Client::connect(&om, "root").await.expect("connect");
        let mut dns = Datanodes::default();
        let mut killed = None;
        // Once the first block is written, kill -9 a datanode of the block being written.
        data::put_file(&client, &mut dns, "vol", "bkt", "big", &path, &mut |p| {
            if killed.is_none() && p.bytes_done > (1 << 20) {
                let addr = &p.block.datanodes[0].1;
                let i = addrs.iter().position(|a| a == addr).expect("a known datanode");
                // SAFETY: kill(2) on a child process of this test.
                unsafe { libc::kill(pids[i] as i32, libc::SIGKILL) };
                killed = Some(i);
            }
        })
        .await
        .expect("the put succeeds with a datanode gone");
        killed.expect("a datanode was killed")
    });
    c.datanodes[killed].kill9();
    let out = dir.path().join("big.out");
    c.ok(&["key", "get", "/vol/bkt/big", s(&out)]);
    assert!(std::fs::read(&out).expect("read") == original, "the data read back differs");
    // Every block is complete on the live datanodes of its pipeline (at least two).
    for b in key_blocks(&c.ok(&["key", "info", "/vol/bkt/big"])) {
        let holders = (0..4).filter(|d| *d != killed && c.holds(*d, &[b]).contains(&b)).count();
        assert!(holders >= 2, "block {b:?} is on {holders} live datanodes");
    }
}

#[test]
fn an_scm_killed_under_allocation_load_never_issues_a_block_id_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::start(dir.path(), 3, &[]);
    let addr = c.scm_addr.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop2, addr2) = (stop.clone(), addr.clone());
    let load = std::thread::spawn(move || {
        on_executor(move || async move {
            use stratos_schema::scm_capnp::{Replication, storage_container_manager as scm_rpc};
            // Four allocators at once; each reconnects after an error.
            let tasks = (0..4).map(|_| {
                let (stop, addr) = (stop2.clone(), addr2.clone());
                glommio::spawn_local(async move {
                    let mut ids = Vec::new();
                    let mut scm: Option<scm_rpc::Client> = None;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        if scm.is_none() {
                            // As an OM does: with an OM's certificate (a user's may not allocate).
                            let om = stratos_common::tls::client_config(&Tls::get().files(stratos_common::tls::Role::Om, "om-1")).expect("om-1's client configuration");
                            scm = stratos_client::connect_tls_on(&stratos_client::runtime::Glommio, &addr, Some(om)).await.ok();
                        }
                        let Some(s) = scm.clone() else {
                            glommio::timer::sleep(Duration::from_millis(20)).await;
                            continue;
                        };
                        let mut req = s.allocate_blocks_request();
                        req.get().set_count(50);
                        req.get().set_replication(Replication::RatisThree);
                        req.get().set_owner("test");
                        req.get().set_block_bytes(1 << 20);
                        // Bounded: a call to an SCM that neither answers nor closes would keep
                        // this task, and the test, from seeing `stop`.
                        match crate::support::answered(req.send().promise).await.and_then(|r| r.map_err(|e| e.to_string())) {
                            Ok(reply) => {
                                let r = reply.get().expect("reply");
                                if r.has_error() {
                                    // Right after a restart the datanodes have not beaten yet.
                                    glommio::timer::sleep(Duration::from_millis(20)).await;
                                    continue;
                                }
                                ids.extend(r.get_blocks().expect("blocks").iter().map(|b| (b.get_container_id(), b.get_local_id())));
                            }
                            Err(_) => {
                                scm = None;
                                glommio::timer::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                    ids
                })
            });
            let mut all = Vec::new();
            for t in tasks.collect::<Vec<_>>() {
                all.extend(t.await);
            }
            all
        })
    });
    let count_after = |secs: u64| {
        std::thread::sleep(Duration::from_millis(secs));
    };
    for _ in 0..3 {
        count_after(700);
        c.scm.kill9();
        c.scm = start_scm(&c.dir, &addr);
    }
    count_after(1500);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let ids = load.join().expect("load thread");
    assert!(dir.path().join("scm").join("checkpoint").exists(), "the SCM wrote a checkpoint");
    let locals: BTreeSet<u64> = ids.iter().map(|(_, l)| *l).collect();
    assert!(ids.len() > 1000, "only {} blocks allocated under load", ids.len());
    assert_eq!(locals.len(), ids.len(), "a block id was issued twice across {} allocations and 3 kills", ids.len());
    // Writes still work against the restarted SCM (the OM reconnects; the datanodes beat again).
    let f = random_file(dir.path(), "after", 1000, 4);
    c.ok(&["key", "put", "/vol/bkt/after", s(&f)]);
}

#[test]
fn secret_keys_rotate_and_tokens_of_the_old_key_stay_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::start(dir.path(), 3, &[]);
    // An SCM that rotates every 1.5 s (tokens live at most 20 s past a key's rotation).
    c.scm.kill9();
    c.scm = Proc::secured(&["scm", "--http-address", "127.0.0.1:0", "--data-dir", s(&dir.path().join("scm")), "--rpc-address", &c.scm_addr, "--key-rotation-ms", "1500", "--token-lifetime-ms", "20000"]);
    let f = random_file(dir.path(), "a", 70_000, 5);
    let original = std::fs::read(&f).expect("read");
    let om = c.om();
    let (first, second, a, b) = on_executor(move || async move {
        use stratos_client::data::{self, Datanodes};
        let client = stratos_client::Client::connect(&om, "root").await.expect("connect");
        let mut dns = Datanodes::default();
        // The restarted SCM may still be seen as down by the OM for a poll or two.
        let mut tries = 0;
        while let Err(e) = data::put_file(&client, &mut dns, "vol", "bkt", "a", &f, &mut |_| {}).await {
            tries += 1;
            assert!(tries < 50, "put a: {e}");
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        let (_, old) = client.lookup_blocks("vol", "bkt", "a").await.expect("lookup a");
        glommio::timer::sleep(Duration::from_millis(2500)).await;
        data::put_file(&client, &mut dns, "vol", "bkt", "b", &f, &mut |_| {}).await.expect("put b after a rotation");
        let (_, new) = client.lookup_blocks("vol", "bkt", "b").await.expect("lookup b");
        // The token from before the rotation still reads (its key is still valid).
        let dn = dns.get(&old[0].datanodes[0].1).await.expect("connect");
        let (a, _) = data::read_chunk(&dn, &old[0], 0, 70_000).await.expect("the old key's token still reads");
        let mut b = Vec::new();
        data::get_key(&client, &mut dns, "vol", "bkt", "b", &mut b, &mut |_| {}).await.expect("get b");
        let key_id = |t: &[u8]| u32::from_le_bytes(t[2..6].try_into().expect("4 bytes"));
        (key_id(&old[0].token), key_id(&new[0].token), a, b)
    });
    assert_ne!(first, second, "the OM signs with the new key after a rotation");
    assert!(a == original && b == original);
}

#[test]
fn with_the_scm_down_writes_fail_clearly_once_the_pool_drains_and_reads_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::start(dir.path(), 3, &["--block-pool-size", "4"]);
    let f = random_file(dir.path(), "f", 5000, 6);
    c.ok(&["key", "put", "/vol/bkt/before", s(&f)]);
    // Datanodes learn each other from their heartbeats (200 ms here): a chain may only go to a
    // datanode the SCM had registered when it was last heard from. Let a few beats pass.
    std::thread::sleep(Duration::from_millis(1500));
    c.scm.kill9();
    let mut failed = None;
    for i in 0..80 {
        let (ok, _, err) = c.sh(&["key", "put", &format!("/vol/bkt/k{i}"), s(&f)]);
        if !ok {
            failed = Some((i, err));
            break;
        }
    }
    let (i, err) = failed.expect("puts fail once the pools are empty");
    assert!(i > 0, "the pools served some puts without the SCM: the first failed with {err}");
    assert!(err.contains("UNAVAILABLE") && err.contains(&c.scm_addr), "{err}");
    // Reads need no SCM.
    let out = dir.path().join("before.out");
    c.ok(&["key", "get", "/vol/bkt/before", s(&out)]);
    assert_eq!(std::fs::read(&out).expect("read"), std::fs::read(&f).expect("read"));
    // Back: writes work again.
    c.scm = start_scm(dir.path(), &c.scm_addr);
    wait_for("a put after the SCM returned", Duration::from_secs(20), || c.sh(&["key", "put", "/vol/bkt/after", s(&f)]).0);
}

#[test]
fn the_freon_generators_run_against_a_cluster_and_ockr_verifies_what_ockg_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path(), 3, &[]);
    let om = c.om();
    let bench = |args: &[&str]| -> serde_json::Value {
        let json = dir.path().join("out.json");
        let out = Tls::get().stratos().args(["bench"]).args(args).args(["--om", &om, "-t", "4", "--json", s(&json)]).output().expect("run stratos bench");
        assert!(out.status.success(), "bench {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("ops/s"), "{stdout}");
        assert!(stdout.contains("generator CPU"), "{stdout}");
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("valid JSON")
    };
    for (args, ops) in [(&["ockg", "-n", "40", "--size", "70000"][..], 40), (&["ombg", "-n", "25"], 25), (&["ommg", "-n", "60", "--keys", "50"], 60), (&["omkg", "-n", "256", "--batch", "64"], 256)] {
        let v = bench(args);
        assert_eq!((v["ops"].as_u64(), v["errors"].as_u64()), (Some(ops), Some(0)), "{args:?}: {v}");
        // The generator's own CPU per op (the yardstick for comparing runs on a drifting host).
        assert!(v["generatorCpuMicrosPerOp"].as_f64().is_some_and(|c| c > 0.0), "{args:?}: {v}");
        assert_eq!(v["opsPerSecondOverTime"].as_array().expect("timeline").iter().map(|x| x.as_u64().expect("count")).sum::<u64>(), ops);
    }
    let v = bench(&["ockr"]);
    assert_eq!((v["ops"].as_u64(), v["errors"].as_u64(), v["bytes"].as_u64()), (Some(40), Some(0), Some(40 * 70_000)), "{v}");
    // With -n (or --duration) it goes round the keys again, as `bench s3 --op get` does.
    let v = bench(&["ockr", "-n", "100"]);
    assert_eq!((v["ops"].as_u64(), v["errors"].as_u64(), v["bytes"].as_u64()), (Some(100), Some(0), Some(100 * 70_000)), "{v}");
    // A key whose bytes changed on every datanode is reported, not counted as read.
    let f = random_file(dir.path(), "other", 70_000, 8);
    let (ok, _, err) = Tls::get().stratos().args(["sh", "--om", &om, "--user", "root", "key", "put", "/benchvol/ockgbucket/ockg-zzz", s(&f)]).output().map(|o| (o.status.success(), (), String::from_utf8_lossy(&o.stderr).into_owned())).expect("sh");
    assert!(ok, "{err}");
    let v = bench(&["ockr"]);
    assert_eq!((v["ops"].as_u64(), v["errors"].as_u64()), (Some(40), Some(1)), "{v}");
    assert_eq!(v["errorsByKind"]["content differs"].as_u64(), Some(1), "{v}");

    // Open loop: calls are due every 1/rate s for the duration, whether or not earlier calls
    // returned, and every one that was due is waited for: 200/s for 1.5 s is 300 calls.
    let v = bench(&["ome", "--rate", "200", "--duration", "1.5"]);
    assert_eq!((v["ops"].as_u64(), v["errors"].as_u64(), v["rate"].as_f64()), (Some(300), Some(0), Some(200.0)), "{v}");
    // omkg at 640 keys/s, 64 keys per call: 10 calls per second.
    let v = bench(&["omkg", "--rate", "640", "--duration", "1", "--batch", "64", "--label", "open"]);
    assert_eq!((v["ops"].as_u64(), v["errors"].as_u64(), v["label"].as_str()), (Some(640), Some(0), Some("open")), "{v}");
    // --key-size pads the names ockg writes; ockr reads them back and checks their bytes.
    let v = bench(&["ockg", "-n", "5", "--value-size", "1000", "--key-size", "90", "--bucket", "padded"]);
    assert_eq!((v["ops"].as_u64(), v["errors"].as_u64()), (Some(5), Some(0)), "{v}");
    let v = bench(&["ockr", "--bucket", "padded", "--rate", "50"]);
    assert_eq!((v["ops"].as_u64(), v["errors"].as_u64(), v["bytes"].as_u64()), (Some(5), Some(0), Some(5000)), "{v}");
    let out = Tls::get().stratos().args(["sh", "--om", &om, "--user", "root", "key", "list", "/benchvol/padded"]).output().expect("sh");
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON listing");
    let names: Vec<&str> = listing.as_array().expect("a list").iter().filter_map(|k| k["name"].as_str()).collect();
    assert_eq!(names.len(), 5, "{listing}");
    assert!(names.iter().all(|n| n.len() == 90 && n.starts_with("ockg-") && n.ends_with('_')), "{names:?}");
    // The runs draw: throughput over time and latency against throughput.
    for (i, args) in [&["omkg", "--rate", "2000", "--duration", "1"][..], &["omkg", "--duration", "1"]].iter().enumerate() {
        bench(args);
        std::fs::rename(dir.path().join("out.json"), dir.path().join(format!("run{i}.json"))).expect("rename");
    }
    let svg = dir.path().join("omkg.svg");
    let out = Tls::get().stratos().args(["bench", "plot", s(&dir.path().join("run0.json")), s(&dir.path().join("run1.json")), "-o", s(&svg)]).output().expect("plot");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let drawn = std::fs::read_to_string(&svg).expect("svg written");
    assert!(drawn.contains("run0 (omkg)") && drawn.contains("run1 (omkg)") && drawn.contains("<polyline"), "the plot names both runs and draws lines");
}

/// Small blocks live in each datanode's block log (group-committed). Keys written, then every
/// datanode killed with -9 while more puts run, and started again on its directory and address:
/// every committed key's every replica reads back byte for byte from its own datanode, and the
/// puts cut by the kills either committed whole or not at all.
#[test]
fn small_blocks_survive_a_kill_9_of_every_datanode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::start(dir.path(), 3, &[]);
    let sizes = [0usize, 1, 4096, 65_536, 70_000, 1 << 20];
    let mut files = Vec::new();
    for (i, len) in sizes.iter().enumerate() {
        let f = random_file(dir.path(), &format!("k{i}"), *len, 100 + i as u64);
        c.ok(&["key", "put", &format!("/vol/bkt/k{i}"), s(&f)]);
        files.push((format!("k{i}"), f));
    }
    // More puts running while the datanodes die: a worker writing small keys one by one.
    let om = c.om();
    let load_dir = dir.path().to_path_buf();
    let load = std::thread::spawn(move || {
        let mut ok = Vec::new();
        for i in 0..60 {
            let name = format!("load{i}");
            let f = random_file(&load_dir, &name, 3000 + i * 17, 500 + i as u64);
            let out = Tls::get().stratos().args(["sh", "--om", &om, "key", "put", &format!("/vol/bkt/{name}"), s(&f)]).output().expect("run stratos sh");
            if out.status.success() {
                ok.push((name, f));
            }
        }
        ok
    });
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        c.datanodes[i].kill9();
        // A new port (the old one may be held by connections in TIME_WAIT): the datanode
        // registers its new address with the SCM, and the OM learns it from there.
        c.datanodes[i] = Proc::secured(&["datanode", "--data-dir", s(&dir.path().join(format!("dn{i}"))), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--scm", &c.scm_addr, "--heartbeat-ms", "200"]);
    }
    files.extend(load.join().expect("load thread"));
    assert!(files.len() > sizes.len(), "no put succeeded while datanodes restarted");
    let now: BTreeSet<String> = c.datanodes.iter().map(|d| d.word_after("rpc")).collect();
    wait_for("the OM to know the datanodes' new addresses", Duration::from_secs(20), || {
        let om = c.om();
        let addrs: Vec<String> = on_executor(move || async move {
            let client = stratos_client::Client::connect(&om, "root").await.expect("connect");
            client.lookup_blocks("vol", "bkt", "k2").await.expect("lookup").1[0].datanodes.iter().map(|(_, a)| a.clone()).collect()
        });
        addrs.iter().all(|a| now.contains(a))
    });
    // Every replica of every committed key, read from its own datanode.
    let om = c.om();
    let expected: Vec<(String, Vec<u8>)> = files.iter().map(|(n, f)| (n.clone(), std::fs::read(f).expect("read"))).collect();
    let bad = on_executor(move || async move {
        let client = stratos_client::Client::connect(&om, "root").await.expect("connect");
        let dns = stratos_client::data::Datanodes::default();
        let mut bad = Vec::new();
        for (name, data) in &expected {
            let (size, blocks) = client.lookup_blocks("vol", "bkt", name).await.expect("lookup");
            assert_eq!(size, data.len() as u64, "{name}");
            let mut offset = 0usize;
            for b in &blocks {
                for (id, addr) in &b.datanodes {
                    let dn = dns.get(addr).await.expect("connect");
                    match stratos_client::data::read_chunk(&dn, b, 0, b.length as u32).await {
                        Ok((bytes, len)) if len == b.length && bytes == data[offset..offset + b.length as usize] => {}
                        Ok((_, len)) => bad.push(format!("{name}: block {}/{} on datanode {id}: {len} bytes, or other bytes", b.container_id, b.local_id)),
                        Err(e) => bad.push(format!("{name}: block {}/{} on datanode {id}: {e}", b.container_id, b.local_id)),
                    }
                }
                offset += b.length as usize;
            }
        }
        bad
    });
    assert!(bad.is_empty(), "{bad:#?}");
}

/// Re-replication: a datanode killed after its blocks were committed is replaced in each of its
/// pipelines by a healthy datanode, which copies the pipeline's containers from a survivor
/// first; then every key's every block is on three live datanodes (read from each, byte for
/// byte), and keys written before the kill still read.
#[test]
fn a_dead_datanode_s_blocks_are_copied_back_to_three_replicas() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Dead after 2 s without a heartbeat (200 ms here): the repair starts within seconds.
    let mut c = Cluster::start_with(dir.path(), 4, &[], "2000");
    let mut files = Vec::new();
    for (i, len) in [1usize, 4096, 70_000, 1 << 20, (2 << 20) + 5].iter().enumerate() {
        let f = random_file(dir.path(), &format!("r{i}"), *len, 900 + i as u64);
        c.ok(&["key", "put", &format!("/vol/bkt/r{i}"), s(&f)]);
        files.push((format!("r{i}"), std::fs::read(&f).expect("read")));
    }
    // The victim: the first datanode of the first key's block.
    let om = c.om();
    let victim_addr = on_executor(move || async move {
        let client = stratos_client::Client::connect(&om, "root").await.expect("connect");
        client.lookup_blocks("vol", "bkt", "r0").await.expect("lookup").1[0].datanodes[0].1.clone()
    });
    let victim = c.datanodes.iter().position(|d| d.word_after("rpc") == victim_addr).expect("a datanode of the cluster");
    c.datanodes[victim].kill9();
    let expected = files.clone();
    let (om, victim_addr2) = (c.om(), victim_addr.clone());
    let check = move || {
        let (expected, om, victim_addr) = (expected.clone(), om.clone(), victim_addr2.clone());
        on_executor(move || async move {
            let client = stratos_client::Client::connect(&om, "root").await.expect("connect");
            let dns = stratos_client::data::Datanodes::default();
            let mut bad = Vec::new();
            for (name, data) in &expected {
                let (_, blocks) = client.lookup_blocks("vol", "bkt", name).await.expect("lookup");
                let mut offset = 0usize;
                for b in &blocks {
                    if b.datanodes.len() != 3 || b.datanodes.iter().any(|(_, a)| *a == victim_addr) {
                        bad.push(format!("{name}: block {}/{} on {:?}", b.container_id, b.local_id, b.datanodes));
                    }
                    for (id, addr) in &b.datanodes {
                        let ok = match dns.get(addr).await {
                            Ok(dn) => stratos_client::data::read_chunk(&dn, b, 0, b.length as u32).await.is_ok_and(|(bytes, _)| bytes == data[offset..offset + b.length as usize]),
                            Err(_) => false,
                        };
                        if !ok {
                            dns.forget(addr);
                            bad.push(format!("{name}: block {}/{} not readable on datanode {id}", b.container_id, b.local_id));
                        }
                    }
                    offset += b.length as usize;
                }
            }
            bad
        })
    };
    let start = Instant::now();
    loop {
        let bad = check();
        if bad.is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "not back to three live replicas after 60 s: {bad:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    for (name, data) in &files {
        let out = dir.path().join(format!("{name}.out"));
        c.ok(&["key", "get", &format!("/vol/bkt/{name}"), s(&out)]);
        assert!(std::fs::read(&out).expect("read") == *data, "{name} differs");
    }
}
