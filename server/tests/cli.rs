//! `stratos sh` as a user drives it (issue 19): pipes, destinations that are not plain new files,
//! Ctrl-C in the middle of a transfer, addresses that are wrong or never answer, a closed
//! standard output, long listings, and an OM restarted on its port at once after a kill.
//! Real processes on loopback: an SCM, one datanode (RATIS/ONE buckets), an OM with 1 MiB
//! blocks, so that a few MiB span several blocks.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{BIN, Proc, pseudo_random_bytes as bytes, s};

struct Cluster {
    dir: PathBuf,
    _scm: Proc,
    scm_addr: String,
    datanode: Proc,
    om: Proc,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let scm = Proc::start(&["scm", "--http-address", "127.0.0.1:0", "--data-dir", s(&dir.join("scm")), "--rpc-address", "127.0.0.1:0", "--dead-after-ms", "30000"]);
        let scm_addr = scm.word_after("rpc");
        let datanode = Proc::start(&["datanode", "--data-dir", s(&dir.join("dn0")), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--scm", &scm_addr, "--heartbeat-ms", "200"]);
        let om_dir = dir.join("om");
        let mut args = vec!["om", "--data-dir", s(&om_dir), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--shards", "2", "--no-pin"];
        args.extend(["--election-timeout-min-ms", "150", "--election-timeout-max-ms", "300", "--heartbeat-interval-ms", "50"]);
        args.extend(["--scm-address", &scm_addr, "--scm-poll-ms", "300", "--block-bytes", "1048576"]);
        let om = Proc::start(&args);
        let c = Cluster { dir: dir.to_path_buf(), _scm: scm, scm_addr, datanode, om };
        c.ok(&["volume", "create", "/vol"]);
        c.ok(&["bucket", "create", "/vol/bkt", "-r", "ONE"]);
        c
    }

    fn om(&self) -> String {
        self.om.word_after("rpc")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("sh").args(["--om", &self.om(), "--user", "root"]).args(args);
        c
    }

    fn sh(&self, args: &[&str]) -> (bool, String, String) {
        crate::support::sh(&self.om(), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.sh(args);
        assert!(ok, "stratos sh {args:?} failed: {err}");
        out
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).expect("JSON")
    }

    /// `key put` with `input` on its standard input.
    fn put_stdin(&self, key: &str, file_arg: &str, input: &[u8]) -> (bool, String) {
        let mut child = self.cmd(&["key", "put", key, file_arg]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        let data = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&data));
        let out = child.wait_with_output().expect("wait");
        writer.join().expect("writer").expect("write to the put's stdin");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn cat(&self, key: &str) -> Vec<u8> {
        let out = self.cmd(&["key", "cat", key]).output().expect("cat");
        assert!(out.status.success(), "cat {key}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// Waits until a put has opened its key.
    fn wait_open_key(&self) {
        let start = Instant::now();
        while self.open_keys() == 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "the put never opened its key");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn open_keys(&self) -> u64 {
        self.json(&["bucket", "info", "/vol/bkt"])["openKeys"].as_u64().expect("openKeys")
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Waits for `child` at most `limit`; its exit code (128 + signal for a signal's death).
fn wait_within(child: &mut std::process::Child, limit: Duration) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let status = crate::support::exit_within(child, "the process", limit);
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

#[test]
fn a_pipe_uploads_every_byte_and_dash_means_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path());
    // 2.5 blocks from a pipe, as `-` and as /dev/stdin: every byte arrives, in three blocks.
    let data = bytes(5 << 19, 7);
    for (key, arg) in [("/vol/bkt/dash", "-"), ("/vol/bkt/devstdin", "/dev/stdin")] {
        let (ok, err) = c.put_stdin(key, arg, &data);
        assert!(ok, "put {key} from a pipe: {err}");
        let info = c.json(&["key", "info", key]);
        assert_eq!(info["dataSize"].as_u64(), Some(data.len() as u64), "{key}: {info}");
        assert_eq!(info["blocks"].as_array().expect("blocks").len(), 3, "{key}: 1 MiB blocks");
        assert!(c.cat(key) == data, "{key}: the bytes read back differ");
    }
    // An empty pipe is an empty key, and a small one is not (the defect stored 0 bytes).
    let (ok, err) = c.put_stdin("/vol/bkt/empty", "-", b"");
    assert!(ok, "{err}");
    assert_eq!(c.json(&["key", "info", "/vol/bkt/empty"])["dataSize"], 0);
    let (ok, err) = c.put_stdin("/vol/bkt/hello", "-", b"hello\n");
    assert!(ok, "{err}");
    assert_eq!(c.cat("/vol/bkt/hello"), b"hello\n");
    // A closed standard input (the runtime puts /dev/null there) is refused, not an empty key.
    let out = c.cmd(&["key", "put", "/vol/bkt/closed", "-"]).stdin(Stdio::null()).output().expect("put");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("/dev/null"), "{out:?}");
    // A FIFO (what `<(…)` gives) is a stream too.
    let fifo = c.dir.join("fifo");
    let path = std::ffi::CString::new(s(&fifo)).expect("path");
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let feeder = {
        let (fifo, data) = (fifo.clone(), data.clone());
        std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(fifo).and_then(|mut f| f.write_all(&data)))
    };
    c.ok(&["key", "put", "/vol/bkt/fifo", s(&fifo)]);
    feeder.join().expect("feeder").expect("write the FIFO");
    assert!(c.cat("/vol/bkt/fifo") == data);
    assert_eq!(c.open_keys(), 0, "every put committed its open key");
}

#[test]
fn key_get_keeps_what_is_at_the_destination() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path());
    let data = bytes(300_000, 3);
    let src = c.dir.join("src");
    std::fs::write(&src, &data).expect("write");
    c.ok(&["key", "put", "/vol/bkt/k", s(&src)]);

    // An existing file is kept unless --force.
    let out = c.dir.join("out");
    std::fs::write(&out, b"mine").expect("write");
    let (ok, _, err) = c.sh(&["key", "get", "/vol/bkt/k", s(&out)]);
    assert!(!ok && err.contains("exists; use --force"), "{err}");
    assert_eq!(std::fs::read(&out).expect("read"), b"mine");
    c.ok(&["key", "get", "/vol/bkt/k", s(&out), "--force"]);
    assert!(std::fs::read(&out).expect("read") == data);

    // Through a symbolic link with --force: the file it names gets the bytes; the link stays.
    let target = c.dir.join("target");
    std::fs::write(&target, b"old").expect("write");
    let link = c.dir.join("link");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    c.ok(&["key", "get", "/vol/bkt/k", s(&link), "--force"]);
    assert!(std::fs::symlink_metadata(&link).expect("lstat").file_type().is_symlink(), "the link is still a link");
    assert!(std::fs::read(&target).expect("read") == data);

    // A device is written into, never replaced by a file (the defect turned /dev/null-like
    // nodes into regular files).
    c.ok(&["key", "get", "/vol/bkt/k", "/dev/null"]);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null").expect("stat").file_type().is_char_device());

    // A FIFO is written into; its reader gets the bytes.
    let fifo = c.dir.join("fifo");
    let path = std::ffi::CString::new(s(&fifo)).expect("path");
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut v = Vec::new();
            std::fs::File::open(fifo).and_then(|mut f| f.read_to_end(&mut v)).map(|_| v)
        })
    };
    c.ok(&["key", "get", "/vol/bkt/k", s(&fifo)]);
    assert!(reader.join().expect("reader").expect("read the FIFO") == data);
    assert!(std::fs::metadata(&fifo).expect("stat").file_type().is_fifo());

    // `-` is standard output; a directory gets the key's name in it.
    let (ok, _, err) = c.sh(&["key", "get", "/vol/bkt/k", "-"]);
    assert!(ok, "{err}");
    let out = c.cmd(&["key", "get", "/vol/bkt/k", "-"]).output().expect("get -");
    assert!(out.stdout == data);
    // /dev/stdout is standard output as well, never a file to replace (`>> log` appends).
    let log = c.dir.join("log");
    std::fs::write(&log, b"before\n").expect("write");
    let appended = c.cmd(&["key", "get", "/vol/bkt/k", "/dev/stdout", "--force"]).stdout(std::fs::OpenOptions::new().append(true).open(&log).expect("open")).status().expect("get");
    assert!(appended.success());
    assert!(std::fs::read(&log).expect("read") == [&b"before\n"[..], &data].concat());
    // A destination in a missing directory says so.
    let (ok, _, err) = c.sh(&["key", "get", "/vol/bkt/k", s(&c.dir.join("nodir/x"))]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    let sub = c.dir.join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    c.ok(&["key", "get", "/vol/bkt/k", s(&sub)]);
    assert!(std::fs::read(sub.join("k")).expect("read") == data);
    // Nothing half-written is left behind.
    let debris: Vec<_> = std::fs::read_dir(&c.dir).expect("ls").flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".stratos-part")).collect();
    assert!(debris.is_empty(), "{debris:?}");
}

#[test]
fn ctrl_c_removes_a_partial_get_and_aborts_an_open_put() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path());
    let src = c.dir.join("src");
    std::fs::write(&src, bytes(3 << 20, 5)).expect("write");
    c.ok(&["key", "put", "/vol/bkt/k", s(&src)]);

    // A frozen datanode holds the transfer in the middle; then Ctrl-C.
    let dn = c.datanode.child.id();
    signal(dn, libc::SIGSTOP);
    let out = c.dir.join("got");
    let part = c.dir.join(".got.stratos-part");
    let mut get = c.cmd(&["key", "get", "/vol/bkt/k", s(&out)]).stderr(Stdio::piped()).spawn().expect("get");
    let start = Instant::now();
    while !part.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "the get never started writing");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    signal(get.id(), libc::SIGINT);
    assert_eq!(wait_within(&mut get, Duration::from_secs(5)), 130, "128 + SIGINT");
    assert!(!part.exists() && !out.exists(), "an interrupted get leaves nothing behind");

    // A put stuck on the frozen datanode: Ctrl-C aborts its open key at once.
    let mut put = c.cmd(&["key", "put", "/vol/bkt/new", s(&src)]).stderr(Stdio::piped()).spawn().expect("put");
    c.wait_open_key();
    signal(put.id(), libc::SIGINT);
    assert_eq!(wait_within(&mut put, Duration::from_secs(5)), 130);
    let mut err = String::new();
    put.stderr.take().expect("stderr").read_to_string(&mut err).expect("stderr");
    assert!(err.contains("aborted"), "{err}");
    assert_eq!(c.open_keys(), 0, "the open key was aborted, not left to expire");
    assert!(!c.sh(&["key", "info", "/vol/bkt/new"]).0, "nothing was committed");

    // Ctrl-C while the put waits on an idle pipe (an interactive `key put K -`): the blocked read
    // is interrupted at once, whichever thread the kernel gave the signal to.
    let mut put = c.cmd(&["key", "put", "/vol/bkt/idle", "-"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("put");
    let mut idle = put.stdin.take().expect("stdin");
    idle.write_all(b"some bytes, then nothing").expect("write");
    c.wait_open_key();
    std::thread::sleep(Duration::from_millis(200));
    signal(put.id(), libc::SIGINT);
    assert_eq!(wait_within(&mut put, Duration::from_secs(3)), 130, "a put blocked on its input stops at Ctrl-C");
    drop(idle);
    assert_eq!(c.open_keys(), 0);

    // A put from a pipe whose writer stops with it (Ctrl-C reaches the whole pipeline, so the
    // input ends) must not commit the cut data.
    signal(dn, libc::SIGCONT);
    let mut put = c.cmd(&["key", "put", "/vol/bkt/piped", "-"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("put");
    let mut stdin = put.stdin.take().expect("stdin");
    stdin.write_all(&bytes(100_000, 9)).expect("write");
    c.wait_open_key();
    signal(put.id(), libc::SIGINT);
    drop(stdin);
    assert_eq!(wait_within(&mut put, Duration::from_secs(5)), 130);
    assert!(!c.sh(&["key", "info", "/vol/bkt/piped"]).0, "an interrupted pipe commits nothing");
    assert_eq!(c.open_keys(), 0);
}

#[test]
fn wrong_and_silent_addresses_fail_with_a_deadline_and_say_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path());
    let run = |om: &str, extra: &[&str]| {
        let start = Instant::now();
        let out = Command::new(BIN).args(["sh", "--om", om]).args(extra).args(["volume", "list"]).output().expect("run");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned(), start.elapsed())
    };
    // A mistyped path is told before connecting: no "cannot reach" for a path that is wrong.
    for (args, says) in [(&["bucket", "info", "/onlyvolume"][..], "expected /volume/bucket"), (&["key", "cat", "/v/b"][..], "expected /volume/bucket/key"), (&["key", "info", "s3://v/b/k"][..], "unknown scheme s3://")] {
        let out = Command::new(BIN).args(["sh", "--om", "127.0.0.1:1"]).args(args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says) && !err.contains("cannot reach"), "{args:?}: {err}");
    }
    // The OM's HTTP port, and the SCM's Cap'n Proto port.
    let http = c.om.word_after("http");
    for wrong in [http.as_str(), c.scm_addr.as_str()] {
        let (ok, err, took) = run(wrong, &[]);
        assert!(!ok && err.contains("does not speak the Stratos OM protocol"), "{wrong}: {err}");
        assert!(took < Duration::from_secs(10), "{wrong}: a wrong port fails at once, took {took:?}");
    }
    // A listener that accepts and never answers: the call gives up at its deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    let held = std::thread::spawn(move || silent.incoming().take(8).flatten().collect::<Vec<_>>());
    let (ok, err, took) = run(&silent_addr, &["--timeout", "3"]);
    assert!(!ok && err.contains("did not answer"), "{err}");
    assert!(took < Duration::from_secs(8), "--timeout 3 took {took:?}");
    // `admin status` shows a node that does not answer as down, within its 3 s, and the others.
    let start = Instant::now();
    let out = Command::new(BIN).args(["admin", "--om", &format!("{silent_addr},{}", c.om()), "--user", "root", "status"]).output().expect("admin status");
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains(&format!("node at {silent_addr}: DOWN")) && text.contains("meta"), "{text}{err}");
    assert!(start.elapsed() < Duration::from_secs(8), "admin status took {:?}", start.elapsed());
    // With a healthy node beside it, the silent one is failed over like a dead one.
    let both = format!("{silent_addr},{}", c.om());
    for _ in 0..2 {
        let (ok, err, took) = run(&both, &[]);
        assert!(ok, "{err}");
        assert!(took < Duration::from_secs(25), "failover took {took:?}");
    }
    drop(held);

    // A frozen OM (SIGSTOP) is held to the deadline too, on the routed path of a write as well.
    let om_pid = c.om.child.id();
    signal(om_pid, libc::SIGSTOP);
    for args in [&["key", "info", "/vol/bkt/x"][..], &["key", "delete", "/vol/bkt/x"][..]] {
        let start = Instant::now();
        let out = c.cmd(&[&["--timeout", "3"][..], args].concat()).output().expect("run");
        let took = start.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("gave up after"), "{args:?}: {err}");
        assert!(took < Duration::from_secs(6), "{args:?} against a frozen OM took {took:?} with --timeout 3");
    }
    signal(om_pid, libc::SIGCONT);
}

#[test]
fn a_closed_stdout_is_a_normal_end_and_long_listings_say_they_are_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path());
    let src = c.dir.join("src");
    std::fs::write(&src, bytes(3 << 20, 1)).expect("write");
    for k in ["a", "b", "c"] {
        c.ok(&["key", "put", &format!("/vol/bkt/{k}"), s(&src)]);
    }
    // `| head -c 1`: the reader goes away; the command ends quietly, status 0.
    for args in [&["key", "list", "/vol/bkt"][..], &["key", "cat", "/vol/bkt/a"][..], &["key", "list", "/vol/bkt", "--all"][..]] {
        let mut child = c.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let mut first = [0u8; 1];
        child.stdout.as_mut().expect("stdout").read_exact(&mut first).expect("a first byte");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !err.contains("panicked"), "{args:?}: {:?} {err}", out.status);
    }
    // A listing cut at --limit says so, and --all pages through everything.
    let (ok, out, err) = c.sh(&["key", "ls", "/vol/bkt", "--limit", "2"]);
    assert!(ok && err.contains("more follow") && err.contains("--start \"b\""), "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).expect("JSON").as_array().expect("array").len(), 2);
    let (ok, out, err) = c.sh(&["key", "list", "/vol/bkt", "--limit", "3"]);
    assert!(ok && !err.contains("more follow"), "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).expect("JSON").as_array().expect("array").len(), 3);
    let all: serde_json::Value = serde_json::from_str(&c.ok(&["key", "list", "/vol/bkt", "--all"])).expect("--all prints one JSON array");
    let names: Vec<&str> = all.as_array().expect("array").iter().map(|k| k["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["a", "b", "c"]);
    // --limit 0 is refused (it listed everything with no note).
    let (ok, _, err) = c.sh(&["key", "list", "/vol/bkt", "--limit", "0"]);
    assert!(!ok && err.contains("--limit"), "{err}");
    // A full stderr: the failure is exit 1, not a panic (101).
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let st = c.cmd(&["key", "info", "/vol/bkt/missing"]).stderr(full).status().expect("run");
    assert_eq!(st.code(), Some(1), "a failure with stderr on /dev/full");
    // An empty STRATOS_OM is no address: the default is used (nothing listens there).
    let out = Command::new(BIN).args(["sh", "volume", "list"]).env("STRATOS_OM", "").env("USER", "").output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("127.0.0.1:9862"), "{err}");
    // `admin` takes --om after the subcommand too, and a transfer to the leader changes nothing.
    let out = Command::new(BIN).args(["admin", "status", "--om", &c.om(), "--user", "root"]).output().expect("admin status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("meta"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN).args(["admin", "transfer", "meta", "1", "--om", &c.om(), "--user", "root"]).output().expect("admin transfer");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("leads it already: nothing changed"), "{text}{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn ozone_s_forms_are_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path());
    let src = c.dir.join("src");
    std::fs::write(&src, b"x").expect("write");
    let host = c.om();
    let port = host.rsplit(':').next().expect("port");
    // o3:// with a port, trailing slashes, `ls`, -r/-t, --layout, --space-quota.
    c.ok(&["bucket", "create", &format!("o3://127.0.0.1:{port}/vol/bk2/"), "-t", "RATIS", "-r", "ONE", "--layout", "OBJECT_STORE", "--space-quota", "1GB"]);
    let b = c.json(&["bucket", "info", "/vol/bk2/"]);
    assert_eq!((b["replication"].as_str(), b["quotaInBytes"].as_u64()), (Some("RATIS/ONE"), Some(1 << 30)), "{b}");
    assert!(b["creationTimeIso"].as_str().is_some_and(|t| t.ends_with('Z')), "{b}");
    let (ok, _, err) = c.sh(&["bucket", "create", "/vol/bk3", "--layout", "FILE_SYSTEM_OPTIMIZED"]);
    assert!(!ok && err.contains("OBJECT_STORE"), "{err}");
    let (ok, _, err) = c.sh(&["bucket", "create", "/vol/bk3", "-t", "EC"]);
    assert!(!ok && err.contains("RATIS is the only one"), "{err}");
    c.ok(&["key", "put", "/vol/bk2/from", s(&src), "-r", "ONE", "-t", "RATIS"]);
    // Ozone's `key rename /vol/bucket FROM TO`, and ours.
    c.ok(&["key", "rename", "/vol/bk2", "from", "mid"]);
    c.ok(&["key", "rename", "/vol/bk2/mid", "to"]);
    let keys = c.json(&["key", "ls", "/vol/bk2"]);
    assert_eq!(keys.as_array().expect("array").iter().map(|k| k["name"].as_str().expect("name")).collect::<Vec<_>>(), ["to"]);
    // Besides the OM's own S3 volume (`s3v`, made by its meta leader at start).
    assert_eq!(c.json(&["volume", "ls"]).as_array().expect("array").iter().filter(|v| v["name"] != "s3v").count(), 1);

    // setquota / clrquota, and -1 on update, as Ozone users clear quotas; 0 is refused.
    let quotas = |path: &str, what: &str| {
        let v = c.json(&[what, "info", path]);
        (v["quotaInBytes"].as_i64().expect("bytes"), v["quotaInNamespace"].as_i64().expect("namespace"))
    };
    c.ok(&["bucket", "setquota", "/vol/bk2", "--namespace-quota", "5"]);
    assert_eq!(quotas("/vol/bk2", "bucket"), (1 << 30, 5));
    c.ok(&["bucket", "clrquota", "/vol/bk2", "--space-quota"]);
    assert_eq!(quotas("/vol/bk2", "bucket"), (-1, 5));
    c.ok(&["bucket", "update", "/vol/bk2", "--namespace-quota", "-1"]);
    assert_eq!(quotas("/vol/bk2", "bucket"), (-1, -1));
    let (ok, _, err) = c.sh(&["bucket", "setquota", "/vol/bk2", "--namespace-quota", "0"]);
    assert!(!ok && err.contains("would refuse everything"), "{err}");
    c.ok(&["volume", "setquota", "/vol", "--space-quota", "2GB", "--namespace-quota", "10"]);
    assert_eq!(quotas("/vol", "volume"), (2 << 30, 10));
    c.ok(&["volume", "clrquota", "/vol", "--space-quota", "--namespace-quota"]);
    assert_eq!(quotas("/vol", "volume"), (-1, -1));
}

#[test]
fn acls_set_from_the_shell_grant_what_they_name_and_no_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path());
    let src = c.dir.join("src");
    std::fs::write(&src, b"shared").expect("write");
    c.ok(&["key", "put", "/vol/bkt/k", s(&src)]);
    c.ok(&["key", "put", "/vol/bkt/open", s(&src)]);
    let as_user = |who: &str, args: &[&str]| {
        let out = Command::new(BIN).arg("sh").args(["--om", &c.om(), "--user", who]).args(args).output().expect("run stratos sh");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, _, err) = as_user("bob", &["key", "cat", "/vol/bkt/k"]);
    assert!(!ok && err.contains("bob"), "{err}");
    c.ok(&["bucket", "setacl", "/vol/bkt", "--acls", "user:bob:rl"]);
    assert_eq!(c.json(&["bucket", "getacl", "/vol/bkt"]), serde_json::json!([{"type": "USER", "name": "bob", "aclScope": "ACCESS", "aclList": ["READ", "LIST"]}]));
    let (ok, out, err) = as_user("bob", &["key", "cat", "/vol/bkt/k"]);
    assert!(ok && out == "shared", "{err}");
    let (ok, _, err) = as_user("bob", &["bucket", "setacl", "/vol/bkt", "-a", "user:bob:a"]);
    assert!(!ok && err.contains("WRITE_ACL"), "READ and LIST are not WRITE_ACL: {err}");
    // A key's own entry: carol reads that key, not its neighbour, nor lists the bucket.
    let (ok, _, _) = as_user("carol", &["key", "cat", "/vol/bkt/open"]);
    assert!(!ok);
    c.ok(&["key", "setacl", "/vol/bkt/open", "-a", "user:carol:r"]);
    assert_eq!(c.json(&["key", "getacl", "/vol/bkt/open"]), serde_json::json!([{"type": "USER", "name": "carol", "aclScope": "ACCESS", "aclList": ["READ"]}]));
    let (ok, out, err) = as_user("carol", &["key", "cat", "/vol/bkt/open"]);
    assert!(ok && out == "shared", "{err}");
    assert!(!as_user("carol", &["key", "cat", "/vol/bkt/k"]).0 && !as_user("carol", &["key", "ls", "/vol/bkt"]).0);
    // Reading a key is not reading its ACL (Ozone's getAcl needs READ_ACL), and the reverse.
    let (ok, _, err) = as_user("carol", &["key", "getacl", "/vol/bkt/open"]);
    assert!(!ok && err.contains("READ_ACL"), "READ alone does not show the ACL: {err}");
    c.ok(&["key", "setacl", "/vol/bkt/open", "-a", "user:carol:r,user:dave:x"]);
    let (ok, out, err) = as_user("dave", &["key", "getacl", "/vol/bkt/open"]);
    assert!(ok && out.contains("\"dave\"") && out.contains("READ_ACL"), "READ_ACL shows the ACL: {err}");
    let (ok, _, err) = as_user("dave", &["key", "cat", "/vol/bkt/open"]);
    assert!(!ok && err.contains("READ"), "READ_ACL alone does not read the data: {err}");
    assert!(!as_user("dave", &["key", "getacl", "/vol/bkt/k"]).0, "a key's entry is for that key alone");
    // addacl and removeacl edit the entries in place (the OM applies the edit); the others stay.
    let entry = |name: &str, rights: &[&str]| serde_json::json!({"type": "USER", "name": name, "aclScope": "ACCESS", "aclList": rights});
    c.ok(&["bucket", "addacl", "/vol/bkt", "-a", "user:bob:w,user:erin:r"]);
    assert_eq!(c.json(&["bucket", "getacl", "/vol/bkt"]), serde_json::json!([entry("bob", &["READ", "WRITE", "LIST"]), entry("erin", &["READ"])]));
    c.ok(&["bucket", "removeacl", "/vol/bkt", "-a", "user:bob:rw,user:erin:r"]);
    assert_eq!(c.json(&["bucket", "getacl", "/vol/bkt"]), serde_json::json!([entry("bob", &["LIST"])]));
    let (ok, _, err) = as_user("bob", &["bucket", "addacl", "/vol/bkt", "-a", "user:bob:r"]);
    assert!(!ok && err.contains("WRITE_ACL"), "LIST is not WRITE_ACL: {err}");
    let (ok, _, err) = c.sh(&["bucket", "addacl", "/vol/bkt", "-a", ""]);
    assert!(!ok && err.contains("no ACL entry"), "{err}");
    c.ok(&["key", "addacl", "/vol/bkt/open", "-a", "user:dave:r"]);
    c.ok(&["key", "removeacl", "/vol/bkt/open", "-a", "user:carol:r"]);
    assert_eq!(c.json(&["key", "getacl", "/vol/bkt/open"]), serde_json::json!([entry("dave", &["READ", "READ_ACL"])]));
    let (ok, out, err) = as_user("dave", &["key", "cat", "/vol/bkt/open"]);
    assert!(ok && out == "shared", "dave reads it now: {err}");
    assert!(!as_user("carol", &["key", "cat", "/vol/bkt/open"]).0, "carol no longer does");
    let (ok, _, err) = as_user("bob", &["key", "setacl", "/vol/bkt/k", "-a", "world::r"]);
    assert!(!ok && err.contains("WRITE_ACL"), "{err}");
    // WRITE_ACL in a key's own entries lets its holder change that key's entries (not its
    // neighbour's), until the key is written over.
    c.ok(&["key", "addacl", "/vol/bkt/open", "-a", "user:dave:y"]);
    let (ok, _, err) = as_user("dave", &["key", "addacl", "/vol/bkt/open", "-a", "user:erin:r"]);
    assert!(ok, "dave's own WRITE_ACL on the key: {err}");
    assert!(as_user("erin", &["key", "cat", "/vol/bkt/open"]).0, "erin reads it now");
    let (ok, _, err) = as_user("dave", &["key", "setacl", "/vol/bkt/k", "-a", "user:dave:r"]);
    assert!(!ok && err.contains("WRITE_ACL"), "not on its neighbour: {err}");
    let (ok, _, err) = as_user("erin", &["key", "setacl", "/vol/bkt/open", "-a", "user:erin:y"]);
    assert!(!ok && err.contains("WRITE_ACL"), "READ on the key is not WRITE_ACL: {err}");
    c.ok(&["key", "removeacl", "/vol/bkt/open", "-a", "user:dave:y,user:erin:r"]);
    let (ok, _, err) = c.sh(&["bucket", "setacl", "/vol/bkt", "-a", "user:bob:q"]);
    assert!(!ok && err.contains("none of"), "{err}");
    // An empty list removes every entry; an overwrite of a key starts with none of its own.
    c.ok(&["bucket", "setacl", "/vol/bkt", "-a", ""]);
    assert!(!as_user("bob", &["key", "cat", "/vol/bkt/k"]).0);
    c.ok(&["key", "addacl", "/vol/bkt/open", "-a", "user:dave:y"]);
    c.ok(&["key", "put", "/vol/bkt/open", s(&src)]);
    assert_eq!(c.json(&["key", "getacl", "/vol/bkt/open"]), serde_json::json!([]));
    assert!(!as_user("dave", &["key", "addacl", "/vol/bkt/open", "-a", "user:dave:r"]).0, "his grant went with the version it was on");
}

#[test]
fn a_killed_om_restarts_on_its_port_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let rpc = format!("127.0.0.1:{port}");
    let om_dir = dir.path().join("om");
    let args = ["om", "--data-dir", s(&om_dir), "--rpc-address", &rpc, "--http-address", "127.0.0.1:0", "--shards", "2", "--no-pin", "--election-timeout-min-ms", "150", "--election-timeout-max-ms", "300", "--heartbeat-interval-ms", "50"];
    let mut om = Proc::start(&args);
    // Connections to the shared client port that the OM's kill closes first: its side of each
    // then sits in TIME_WAIT, which held the port for about 60 s before.
    let mut held: Vec<std::net::TcpStream> = (0..8).map(|_| std::net::TcpStream::connect(&rpc).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(200));
    om.kill9();
    for c in &mut held {
        let _ = c.read(&mut [0u8; 16]);
    }
    drop(held);
    let start = Instant::now();
    let again = Proc::start(&args);
    assert!(start.elapsed() < Duration::from_secs(20), "restart took {:?}", start.elapsed());
    let out = Command::new(BIN).args(["sh", "--om", &again.word_after("rpc"), "--user", "root", "volume", "create", "/back"]).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A setting out of range is refused once, before the data directory is touched or a core
/// starts.
#[test]
fn a_setting_out_of_range_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let om_dir = dir.path().join("om");
    let cases = [
        ("--snapshot-log-ratio=-1", "snapshot_log_ratio -1 must be a number, 0 or more"),
        ("--snapshot-log-ratio=inf", "snapshot_log_ratio inf must be a number, 0 or more"),
        ("--snapshot-log-ratio=NaN", "snapshot_log_ratio NaN must be a number, 0 or more"),
        ("--meta-fence-interval-us=1000001", "meta_fence_interval_us 1000001 is more than 1000000"),
        ("--connection-calls-max=0", "connection_calls_max must be at least 1"),
    ];
    for (bad, says) in cases {
        let args = ["om", "--data-dir", s(&om_dir), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--raft-address", "127.0.0.1:0", bad];
        let out = Command::new(BIN).args(args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(err.contains(says), "{bad}: {err}");
        assert!(!err.contains("core 0"), "{bad}: reported by a core, not at start: {err}");
        assert!(!om_dir.join("FORMAT").exists(), "{bad}: the data directory was formatted");
    }
    // The SCM's and the datanode's bound on a connection's calls in flight, the same way.
    for role in [&["scm", "--rpc-address", "127.0.0.1:0"][..], &["datanode", "--rpc-address", "127.0.0.1:0", "--scm", "127.0.0.1:1"]] {
        let data = dir.path().join(role[0]);
        let out = Command::new(BIN).args(role).args(["--data-dir", s(&data), "--connection-calls-max", "0"]).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("--connection-calls-max") && err.contains("0 is not in 1.."), "{}: {err}", role[0]);
        assert!(!data.exists(), "{}: its data directory was made", role[0]);
    }
    // A generator flag its target cannot honour is refused, not ignored: omkg's directories
    // against etcd (which gets flat names).
    for target in ["etcd://127.0.0.1:1", "etcd+grpc://127.0.0.1:1"] {
        let out = Command::new(BIN).args(["bench", "omkg", "--om", target, "--dirs", "10", "-n", "1"]).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("omkg --dirs 10: the etcd targets write flat names"), "{target}: {err}");
    }
}

/// The pids of `pid`'s children.
fn children_of(pid: u32) -> Vec<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

fn alive(pid: u32) -> bool {
    // A zombie (dead, not yet reaped by its new parent) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

/// A `dev --base-port` whose shifted ports (OM RPC, SCM, Raft, HTTP, S3 and the gateway's
/// status port: 9862..9879 + N) are free now.
fn free_base_port() -> i32 {
    loop {
        let p = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let n = i32::from(p) - 9862;
        if p < 60_000 && (0..=17).all(|k| std::net::TcpListener::bind(("127.0.0.1", p + k)).is_ok()) {
            break n;
        }
    }
}

/// A `stratos dev` that is stopped (Ctrl-C, then -9 after 10 s) however the test ends.
struct Dev(std::process::Child);

impl Dev {
    /// `stratos dev` with `args` and a free `--base-port`, and the first line it printed (its
    /// `ready` line when it started). The ports are free when chosen, but another test's
    /// process may take one before dev binds it (the OS hands out ephemeral ports from the
    /// same range): a start that failed saying an address is in use is tried again on other
    /// ports, up to three times.
    fn start(args: &[&str]) -> (Dev, String) {
        for attempt in 1.. {
            let base = free_base_port().to_string();
            let mut dev = Dev(Command::new(BIN).arg("dev").args(args).args(["--base-port", &base]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start dev"));
            let line = crate::support::first_line(&mut dev.0, "stratos dev");
            if line.is_empty() && attempt < 3 {
                let err = crate::support::text_within(dev.0.stderr.take().expect("stderr"), Duration::from_secs(30));
                if err.contains("in use") {
                    eprintln!("dev on base port {base} found a port taken, trying others: {err}");
                    continue;
                }
                panic!("dev did not start: {err}");
            }
            return (dev, line);
        }
        unreachable!("the loop returns or panics")
    }

    /// Dev's stderr, a line at a time, as it comes.
    fn stderr_lines(&mut self) -> std::sync::mpsc::Receiver<String> {
        let stderr = self.0.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        rx
    }
}

/// A process's role: the `stratos` subcommand it runs (its second argument).
fn role(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| c.split(|b| *b == 0).nth(1).map(|r| String::from_utf8_lossy(r).into_owned()).unwrap_or_default()).unwrap_or_default()
}

impl Drop for Dev {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_some() {
            return; // waited for already: its pid may be another process's now
        }
        signal(self.0.id(), libc::SIGINT);
        let start = Instant::now();
        while self.0.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `dev --insecure` into a data directory that does not exist yet: it failed making the S3
/// gateway's keyring there (only the TLS files had made the directory), which stopped
/// bench/etcd.sh from starting.
#[test]
fn dev_insecure_makes_its_data_directory() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("not").join("yet");
    let (mut dev, line) = Dev::start(&["--insecure", "--datanodes", "0", "--data-dir", s(&dir)]);
    if !line.contains("ready") {
        let err = crate::support::text_within(dev.0.stderr.take().expect("stderr"), Duration::from_secs(30));
        panic!("dev did not start: {line}{err}");
    }
    assert!(line.contains(" s3 http://"), "the gateway serves plain HTTP: {line}");
    assert!(dir.join("s3g-keyring").is_file());
}

#[test]
fn dev_reports_a_dead_child_and_takes_its_children_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Stopped by the guard if an assertion fails before the kill below.
    let (mut dev, line) = Dev::start(&["--datanodes", "1", "--data-dir", s(dir.path())]);
    assert!(line.contains("ready"), "{line}");
    // Secure by default: the line gives the client's environment; with it a client works, as
    // its certificate's user; without it the OM refuses, saying TLS is needed.
    assert!(line.contains(", TLS,"), "{line}");
    let env: Vec<(String, String)> = line
        .split("export ")
        .nth(1)
        .expect("an export line")
        .split_whitespace()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    assert_eq!(env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["STRATOS_OM", "STRATOS_CA", "STRATOS_CERT", "STRATOS_KEY"], "{line}");
    // TLS to the OM, plain TCP to the datanode (a TLS client to it failed every put).
    let file = dir.path().join("devfile");
    std::fs::write(&file, b"through the datanode").expect("write");
    let got = dir.path().join("devfile.back");
    for args in [
        &["volume", "create", "/devvol"][..],
        &["bucket", "create", "/devvol/devbkt"][..],
        &["key", "put", "/devvol/devbkt/k", s(&file), "-r", "ONE"][..],
        &["key", "get", "/devvol/devbkt/k", s(&got)][..],
    ] {
        let out = Command::new(BIN).arg("sh").args(args).envs(env.iter().cloned()).output().expect("sh with the env");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(std::fs::read(&got).expect("read back"), b"through the datanode");
    let om = &env[0].1;
    let out = Command::new(BIN).args(["sh", "--om", om, "volume", "list"]).env_remove("STRATOS_CA").output().expect("sh without TLS");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("requires TLS"), "{}", String::from_utf8_lossy(&out.stderr));
    let rx = dev.stderr_lines();
    let kids = children_of(dev.0.id());
    let mut roles: Vec<String> = kids.iter().map(|k| role(*k)).collect();
    roles.sort();
    assert_eq!(roles, ["datanode", "s3g", "scm"], "an SCM, a datanode and the S3 gateway: {kids:?}");
    // A child that dies is reported, with how to start it again.
    let datanode = *kids.iter().find(|k| role(**k) == "datanode").expect("the datanode");
    signal(datanode, libc::SIGKILL);
    let start = Instant::now();
    let report = loop {
        let l = rx.recv_timeout(Duration::from_secs(5)).expect("a line about the dead datanode within 5 s");
        if l.contains("exited") {
            break l;
        }
        assert!(start.elapsed() < Duration::from_secs(5));
    };
    assert!(report.contains("datanode 0") && report.contains("datanode --data-dir"), "{report}");
    // `dev` killed with -9: its other children stop too, freeing their ports.
    signal(dev.0.id(), libc::SIGKILL);
    let _ = dev.0.wait();
    let start = Instant::now();
    while kids.iter().any(|k| alive(*k)) {
        assert!(start.elapsed() < Duration::from_secs(10), "children outlived dev: {kids:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ctrl-C on `dev` ends it even when a child cannot stop: a datanode frozen by SIGSTOP (its
/// SIGTERM stays pending) is killed after dev's wait, saying so, where dev used to wait for it
/// for ever.
#[test]
fn ctrl_c_ends_dev_even_with_a_frozen_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut dev, line) = Dev::start(&["--insecure", "--no-s3g", "--datanodes", "1", "--data-dir", s(dir.path())]);
    assert!(line.contains("ready"), "{line}");
    let rx = dev.stderr_lines();
    let kids = children_of(dev.0.id());
    let datanode = *kids.iter().find(|k| role(**k) == "datanode").expect("the datanode");
    signal(datanode, libc::SIGSTOP);
    let start = Instant::now();
    signal(dev.0.id(), libc::SIGINT);
    wait_within(&mut dev.0, Duration::from_secs(40));
    let took = start.elapsed();
    let mut said = Vec::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
        said.push(l);
    }
    assert!(said.iter().any(|l| l.contains("datanode 0") && l.contains("did not stop within 15s of SIGTERM; killing it")), "{said:?}");
    assert!(took >= Duration::from_secs(14), "dev killed its frozen child {took:?} after Ctrl-C, before the child's 15 s");
    assert!(!alive(datanode), "the frozen datanode outlived dev");
}

/// `admin add` of a node nobody can reach asked for 5 minutes, printing the same two lines
/// twice a second (newcomer pass): now it gives up after 15 s, having said it once.
#[test]
fn admin_add_of_a_node_nobody_can_reach_gives_up_saying_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path());
    let start = Instant::now();
    let out = Command::new(BIN).args(["admin", "--om", &c.om(), "--user", "root", "add", "2,127.0.0.1:1,127.0.0.1:2"]).output().expect("admin add");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("could not be reached"), "{err}");
    assert!(err.matches("--join first").count() <= 2, "the same answer printed over and over: {err}");
    assert!(start.elapsed() < Duration::from_secs(40), "gave up after {:?}", start.elapsed());
}
