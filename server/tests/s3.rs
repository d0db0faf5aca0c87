//! The S3 gateway end to end, with real processes on loopback (an SCM, three datanodes, an OM
//! and `stratos s3g`, all over TLS) and real S3 clients: boto3, the AWS CLI and curl
//! (`server/tests/s3/clients.py`, from the Python environment `.ci/s3-venv` makes), and raw
//! HTTPS requests for what no SDK would send.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{BIN, Proc, S3_DOMAIN, Tls, s};

struct Cluster {
    dir: tempfile::TempDir,
    scm: Proc,
    datanodes: Vec<Proc>,
    om: Proc,
    s3g: Proc,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = |p: &str| dir.path().join(p);
        let scm = Proc::secured(&["scm", "--http-address", "127.0.0.1:0", "--data-dir", s(&d("scm")), "--rpc-address", "127.0.0.1:0", "--dead-after-ms", "30000"]);
        let scm_addr = scm.word_after("rpc");
        let datanodes = (0..3)
            .map(|i| Proc::secured(&["datanode", "--data-dir", s(&d(&format!("dn{i}"))), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--scm", &scm_addr, "--heartbeat-ms", "200"]))
            .collect();
        // 4 MiB blocks: a 10 MB object spans three.
        let om = Proc::secured(&[
            "om", "--data-dir", s(&d("om")), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--shards", "2", "--executors", "2", "--no-pin",
            "--election-timeout-min-ms", "150", "--election-timeout-max-ms", "300", "--heartbeat-interval-ms", "50", "--scm-address", &scm_addr, "--scm-poll-ms", "300",
            "--block-bytes", "4194304", "--admins", "root", "--lifecycle-day-secs", "2",
        ]);
        let rpc = om.word_after("rpc");
        // The SSE keyring: the SSE-S3 key and one KMS key, readable by the owner only.
        let keyring = d("s3g-keyring");
        let line = |name: &str| format!("{name} {}\n", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, rand::random::<[u8; 32]>()));
        std::fs::write(&keyring, line("sse-s3") + &line("kms-1")).expect("write the keyring");
        std::fs::set_permissions(&keyring, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod the keyring");
        let s3g = Proc::secured(&["s3g", "--om", &rpc, "--address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--cores", "2", "--idle-timeout-ms", "3000", "--sse-keyring", s(&keyring), "--domain", S3_DOMAIN, "--lifecycle-day-secs", "2"]);
        Cluster { dir, scm, datanodes, om, s3g }
    }

    fn endpoint(&self) -> String {
        self.s3g.word_after("ready:")
    }

    fn addr(&self) -> String {
        self.endpoint().trim_start_matches("https://").to_string()
    }

    /// `user`'s access key and secret, by `stratos s3 getsecret` with `user`'s certificate.
    fn secret(&self, user: &str) -> (String, String) {
        let f = Tls::get().files(stratos_common::tls::Role::User, user);
        let out = Command::new(BIN)
            .args(["s3", "getsecret", "--om", &self.om.word_after("rpc")])
            .env("STRATOS_CA", &f.ca)
            .env("STRATOS_CERT", &f.cert)
            .env("STRATOS_KEY", &f.key)
            .output()
            .expect("run stratos s3 getsecret");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "getsecret for {user}: {}", String::from_utf8_lossy(&out.stderr));
        let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_else(|| panic!("no {k} in {text:?}")).to_string();
        (get("awsAccessKey="), get("awsSecret="))
    }

    /// One raw HTTPS request (`Connection: close`); the status line and the body.
    fn raw(&self, request: &str) -> (String, String) {
        let mut tls = Tls::get().connect(&self.addr());
        tls.write_all(request.as_bytes()).expect("send");
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.lines().next().unwrap_or("").to_string();
        let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
        (status, body)
    }
}

/// The Python environment with boto3 and the AWS CLI (`.ci/s3-venv`; `STRATOS_S3_VENV`
/// elsewhere). Required where `CI` is set; elsewhere a missing one skips, saying how to make it.
fn venv() -> Option<PathBuf> {
    let dir = std::env::var_os("STRATOS_S3_VENV").map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/s3-venv"), PathBuf::from);
    if dir.join("bin/python").exists() && dir.join("bin/aws").exists() {
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "no Python environment with boto3 and the AWS CLI at {} (CI runs .ci/s3-venv first)", dir.display());
    eprintln!("SKIPPED: no boto3/AWS CLI environment at {}: run .ci/s3-venv to make it", dir.display());
    None
}

#[test]
fn boto3_the_aws_cli_and_curl_work_against_the_gateway() {
    let Some(venv) = venv() else { return };
    let mut c = Cluster::start();
    let (alice_key, alice_secret) = c.secret("alice");
    let (bob_key, bob_secret) = c.secret("bob");
    assert_eq!(alice_key, "alice", "the access key is the principal's name");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/clients.py");
    let (plain, secret) = (format!("STRATOS-PLAIN-{:016x}", rand::random::<u64>()), format!("STRATOS-SECRET-{:016x}", rand::random::<u64>()));
    let (endpoint, dn_dirs) = (c.endpoint(), std::env::join_paths((0..3).map(|i| c.dir.path().join(format!("dn{i}")))).expect("paths"));
    let run = |args: &[&str]| {
        let out = Command::new(venv.join("bin/python"))
            .arg(&script)
            .args(args)
            .env("MARKER_PLAIN", &plain)
            .env("MARKER_SECRET", &secret)
            // The script searches the datanodes' disks for them, before it deletes anything.
            .env("DATANODE_DIRS", &dn_dirs)
            .env("S3_ENDPOINT", &endpoint)
            .env("S3_DOMAIN", S3_DOMAIN)
            .env("S3_CA", &Tls::get().files(stratos_common::tls::Role::User, "alice").ca)
            .env("ALICE_KEY", &alice_key)
            .env("ALICE_SECRET", &alice_secret)
            .env("BOB_KEY", &bob_key)
            .env("BOB_SECRET", &bob_secret)
            .env("AWS", venv.join("bin/aws"))
            .output()
            .expect("run the S3 client checks");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("{stdout}");
        assert!(out.status.success(), "S3 client checks {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    assert!(run(&[]).contains("all S3 client checks passed"), "the S3 client checks stopped early");
    // A read with every datanode stopped (the last checks: nothing after them needs data).
    run(&["outage", "put"]);
    c.datanodes.clear();
    run(&["outage", "get"]);
}

/// CI's sample of ceph's s3-tests (`bench/s3-tests-ci.txt`: 92 tests that pass) through
/// `bench/s3-tests.sh` against a fresh `stratos dev`: every one must pass. The whole suite runs
/// on demand (docs/s3.md).
#[test]
fn a_sample_of_ceph_s3_tests_passes() {
    let Some(venv) = venv() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let suite = std::env::var_os("S3_TESTS").map_or_else(|| root.join("../shared/s3-tests"), PathBuf::from);
    if !suite.join("s3tests/functional/test_s3.py").exists() {
        assert!(std::env::var_os("CI").is_none(), "no s3-tests suite at {} (set S3_TESTS)", suite.display());
        eprintln!("SKIPPED: no s3-tests suite at {}", suite.display());
        return;
    }
    assert!(venv.join("bin/pytest").exists(), "no pytest in {} (run .ci/s3-venv)", venv.display());
    let out_dir = tempfile::tempdir().expect("tempdir");
    // A base port of its own (dev's ports are fixed offsets from it), away from the OS's
    // ephemeral range (32768 and up) where the other tests' ports come from.
    let base = 10_000 + (std::process::id() % 1200) * 10;
    let out = Command::new("bash")
        .arg(root.join("bench/s3-tests.sh"))
        .env("SELECT", root.join("bench/s3-tests-ci.txt"))
        .env("STRATOS_BIN", BIN)
        .env("S3_TESTS", &suite)
        .env("OUT", out_dir.path())
        .env("BASE_PORT", base.to_string())
        .output()
        .expect("run bench/s3-tests.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failures = std::fs::read_to_string(out_dir.path().join("failures.txt")).unwrap_or_default();
    println!("{stdout}");
    assert!(stdout.contains("test_s3.py: 121 passed, 0 failed"), "{stdout}\n{}\nfailures:\n{failures}", String::from_utf8_lossy(&out.stderr));
}

/// `stratos bench s3`, the generator of issue 21's figures, against the gateway: each operation
/// gets its answers and counts what they held. PUTs are read back by GETs (which check each
/// length); uploads started in four directories list as four common prefixes with the
/// delimiter and twelve uploads without; the keys as one common prefix and as six keys. Then
/// the gateway's status port (`/prom`) has counted those requests, their lookups and
/// connections, each datanode's its blocks, and the SCM's the datanodes and blocks allocated.
#[test]
fn the_s3_generator_drives_each_operation_through_the_gateway_and_prom_counts_them() {
    let c = Cluster::start();
    let (key, secret) = c.secret("alice");
    let f = Tls::get().files(stratos_common::tls::Role::User, "alice");
    let bench = |args: &[&str]| -> String {
        let out = Command::new(BIN)
            .args(["bench", "s3", "-t", "1"])
            .args(args)
            .env("S3_ENDPOINT", c.endpoint())
            .env("AWS_ACCESS_KEY_ID", &key)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env("STRATOS_CA", &f.ca)
            .env("STRATOS_CERT", &f.cert)
            .env("STRATOS_KEY", &f.key)
            .output()
            .expect("run stratos bench s3");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success() && text.contains("errors 0"), "bench s3 {args:?}:\n{text}{}", String::from_utf8_lossy(&out.stderr));
        text
    };
    let put = bench(&["--op", "put", "--bucket", "genbkt", "--size", "1000", "-n", "6"]);
    assert!(put.contains("(6 objects in"), "{put}");
    let get = bench(&["--op", "get", "--bucket", "genbkt", "-n", "12"]);
    assert!(get.contains("s3 get (6 objects)") && get.contains("(12 objects in"), "{get}");
    // Names are s3bench-TAG-N: with the delimiter `-` all six roll up into one common prefix.
    let rolled = bench(&["--op", "list", "--bucket", "genbkt", "--delimiter", "-", "-n", "1"]);
    assert!(rolled.contains("; 1 in all)"), "{rolled}");
    let flat = bench(&["--op", "list", "--bucket", "genbkt", "--delimiter", "", "-n", "1"]);
    assert!(flat.contains("; 6 in all)"), "{flat}");
    let started = bench(&["--op", "initiate", "--bucket", "genup", "--prefix", "", "--dirs", "4", "-n", "12"]);
    assert!(started.contains("(12 uploads in"), "{started}");
    let rolled = bench(&["--op", "list-uploads", "--bucket", "genup", "--prefix", "", "-n", "1"]);
    assert!(rolled.contains("; 4 in all)"), "{rolled}");
    let flat = bench(&["--op", "list-uploads", "--bucket", "genup", "--prefix", "", "--delimiter", "", "-n", "1"]);
    assert!(flat.contains("; 12 in all)"), "{flat}");
    // The gateway's status port counted all of that: the 12 GETs' lookups (each GET one; the
    // listing `--op get` starts with is a GET of the bucket), the PUTs, the 403s of anonymous
    // requests, and the histogram holds every request once.
    for _ in 0..3 {
        assert!(c.raw(&format!("GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", c.addr())).0.contains("403"));
    }
    let fetch = |addr: &str, path: &str| -> String {
        let mut tls = Tls::get().connect(addr);
        tls.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).expect("send");
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let status = c.s3g.word_after("status");
    let get = |path: &str| fetch(&status, path);
    let prom = get("/prom");
    assert!(prom.starts_with("HTTP/1.0 200"), "{prom}");
    let value = |series: &str| -> u64 { prom.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or_else(|| panic!("no {series} in {prom}")) };
    let requests = |method: &str, code: &str| value(&format!("stratos_s3g_requests_total{{method=\"{method}\",code=\"{code}\"}}"));
    assert!(requests("GET", "2xx") >= 12 + 4, "12 object GETs and 4 listings at least: {prom}");
    assert!(requests("PUT", "2xx") >= 6 + 2, "6 objects and 2 buckets at least: {prom}");
    assert!(requests("POST", "2xx") >= 12, "12 uploads started: {prom}");
    assert!(requests("GET", "4xx") >= 3, "the anonymous GETs: {prom}");
    let all: u64 = ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "other"].iter().flat_map(|m| ["2xx", "3xx", "4xx", "5xx"].map(|k| requests(m, k))).sum();
    assert_eq!(value("stratos_s3g_request_seconds_count"), all, "the histogram holds every request once");
    assert!(value("stratos_s3g_request_seconds_bucket{le=\"0.0005\"}") <= value("stratos_s3g_request_seconds_bucket{le=\"2.5\"}"));
    // By S3 operation, as the generator sent them: the same requests, each counted once.
    let op = |name: &str, code: &str| value(&format!("stratos_s3g_operations_total{{operation=\"{name}\",code=\"{code}\"}}"));
    assert_eq!(op("GetObject", "2xx"), 12, "{prom}");
    assert_eq!(op("PutObject", "2xx"), 6, "{prom}");
    assert_eq!(op("CreateMultipartUpload", "2xx"), 12, "{prom}");
    assert!(op("ListObjectsV2", "2xx") >= 3 && op("ListMultipartUploads", "2xx") >= 2, "{prom}");
    assert_eq!(op("ListBuckets", "4xx"), 3, "the anonymous GETs of the service: {prom}");
    assert_eq!(value("stratos_s3g_operation_seconds_count{operation=\"GetObject\"}"), 12, "{prom}");
    let ops: u64 = prom.lines().filter(|l| l.starts_with("stratos_s3g_operations_total{")).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum();
    assert_eq!(ops, all, "every request counts as one operation: {prom}");
    let (calls, lookups) = (value("stratos_s3g_om_lookup_calls_total"), value("stratos_s3g_om_lookups_total"));
    assert!(lookups >= 12 && (1..=lookups).contains(&calls), "{calls} lookup calls for {lookups} lookups: {prom}");
    assert!(value("stratos_s3g_connections_accepted_total") >= 4, "the 3 anonymous requests and a bench s3 connection at least: {prom}");
    assert!(value("stratos_s3g_connections_open") < value("stratos_s3g_connections_accepted_total"), "closed connections leave the gauge: {prom}");
    assert_eq!(value("stratos_s3g_executors"), 2);
    assert!(get("/health").ends_with("ok\n"), "/health");
    assert!(get("/nothing").starts_with("HTTP/1.0 404"), "an unknown path");
    // And each datanode's: the six 1,000-byte objects went to the block log of each of the
    // three (replication three), a record each, made durable by group commits and fdatasyncs.
    let mut blocks = 0;
    for dn in &c.datanodes {
        let prom = fetch(&dn.word_after("status"), "/prom");
        let id = dn.word_after("id");
        let value = |name: &str| -> u64 {
            let series = format!("stratos_datanode_{name}{{datanode=\"{id}\"}}");
            prom.lines().find_map(|l| l.strip_prefix(series.as_str())?.strip_prefix(' ')?.parse().ok()).unwrap_or_else(|| panic!("no {series} in {prom}"))
        };
        let put = value("small_blocks_put_total");
        blocks += put;
        let (records, flushes, syncs) = (value("block_log_records_total"), value("block_log_flushes_total"), value("block_log_fdatasyncs_total"));
        assert!(records >= put && flushes >= 1 && syncs >= 1, "records {records} for {put} blocks, flushes {flushes}, fdatasyncs {syncs}: {prom}");
        assert_eq!(value("file_blocks_put_total"), 0, "1,000-byte blocks are small: {prom}");
    }
    assert_eq!(blocks, 6 * 3, "each object's block on each of three datanodes");
    // And the SCM's: the three datanodes, alive, and blocks allocated for the six objects.
    let prom = fetch(&c.scm.word_after("status"), "/prom");
    let value = |name: &str| -> u64 { prom.lines().find_map(|l| l.strip_prefix(&format!("stratos_scm_{name} "))?.parse().ok()).unwrap_or_else(|| panic!("no {name} in {prom}")) };
    assert_eq!((value("datanodes"), value("healthy_datanodes")), (3, 3), "{prom}");
    assert!(value("blocks_allocated_total") >= 6 && value("pipelines") >= 1, "{prom}");
}

#[test]
fn requests_no_sdk_would_send_get_s3_errors() {
    let c = Cluster::start();
    let host = c.addr();
    let req = |head: &str| c.raw(&format!("{head}\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
    let (status, body) = req("GET / HTTP/1.1");
    assert!(status.contains("403") && body.contains("<Code>AccessDenied</Code>") && body.contains("anonymous"), "{status} {body}");
    let (status, body) = req("GET /bkt/key HTTP/1.1\r\nAuthorization: AWS alice:c2lnbmF0dXJl");
    assert!(status.contains("400") && body.contains("Signature Version 2"), "{status} {body}");
    let (status, body) = req("GET /bkt/key HTTP/1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=alice/20261202/us-east-1/s3/aws4_request");
    assert!(status.contains("400") && body.contains("<Code>AuthorizationHeaderMalformed</Code>"), "{status} {body}");
    let (status, body) = req("GET /bkt/key?X-Amz-Signature=00&X-Amz-Credential=nobody%2F20261202%2Fus-east-1%2Fs3%2Faws4_request HTTP/1.1");
    assert!(status.contains("400") || status.contains("403"), "{status} {body}");
    assert!(body.contains("<Error>") && body.contains("<RequestId>"), "{body}");
    // Not HTTP at all: the connection is closed with a 400, the gateway keeps serving.
    let (status, _) = c.raw("\x16\x03garbage\r\n\r\n");
    assert!(status.is_empty() || status.contains("400"), "{status}");
    let (status, _) = req("GET / HTTP/1.1");
    assert!(status.contains("403"), "still serving: {status}");
    // A client that connects and sends half a request head, then nothing: closed after the
    // idle timeout (3 s here), not held forever.
    let mut idle = Tls::get().connect(&c.addr());
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").expect("send");
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(20), "closed after {took:?}");
}
