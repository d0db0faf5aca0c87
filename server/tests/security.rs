//! TLS and authenticated principals on the OM's client ports (issue 20), end to end: a real
//! `stratos om` with `--tls-ca/--tls-cert/--tls-key`, certificates made by the same functions as
//! `stratos admin ca init` and `stratos admin cert issue`, and `stratos sh` as users run it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use stratos_client::tls::{self, Request, Role};

use crate::support::{BIN, Proc, free_port, s};

/// A user's (or node's) files, as `stratos admin cert issue` writes them.
struct Who {
    ca: PathBuf,
    cert: Option<(PathBuf, PathBuf)>,
}

fn issue(ca_dir: &Path, role: Role, name: &str, edit: impl FnOnce(&mut Request)) -> Who {
    let mut req = Request::new(role, name, 30);
    edit(&mut req);
    let (cert, key) = tls::issue(ca_dir, ca_dir, &req).expect("issue a certificate");
    Who { ca: tls::ca_files(ca_dir).0, cert: Some((cert, key)) }
}

/// `stratos sh --om RPC --user CLAIMED ARGS` as `who`: (succeeded, stdout + stderr, time).
fn sh(rpc: &str, who: Option<&Who>, claimed: &str, args: &[&str]) -> (bool, String, Duration) {
    let mut cmd = Command::new(BIN);
    cmd.arg("sh").args(["--om", rpc, "--user", claimed, "--timeout", "10"]).args(args);
    cmd.env_remove("STRATOS_CA").env_remove("STRATOS_CERT").env_remove("STRATOS_KEY");
    if let Some(w) = who {
        cmd.env("STRATOS_CA", &w.ca);
        if let Some((c, k)) = &w.cert {
            cmd.env("STRATOS_CERT", c).env("STRATOS_KEY", k);
        }
    }
    let start = Instant::now();
    let out = cmd.output().expect("run stratos sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text, start.elapsed())
}

#[test]
fn the_caller_is_the_certificate_and_strangers_are_refused_saying_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca");
    tls::ca_init(&ca, 30).expect("ca init");
    let om_cert = issue(&ca, Role::Om, "om-1", |r| r.hosts = vec!["127.0.0.1".into(), "localhost".into()]);
    let (om_pem, om_key) = om_cert.cert.clone().expect("om cert");
    let root = issue(&ca, Role::User, "root", |_| {});
    let alice = issue(&ca, Role::User, "alice", |_| {});
    let bob = issue(&ca, Role::User, "bob", |r| r.groups = vec!["staff".into()]);
    let datanode = issue(&ca, Role::Datanode, "dn-1", |r| r.hosts = vec!["127.0.0.1".into()]);
    let expired = issue(&ca, Role::User, "carol", |r| {
        r.not_before = SystemTime::now() - Duration::from_secs(10 * 86_400);
        r.not_after = SystemTime::now() - Duration::from_secs(86_400);
    });
    let other_ca = dir.path().join("other-ca");
    tls::ca_init(&other_ca, 30).expect("another ca");
    // Alice's name, signed by another CA; the client trusts the cluster's CA.
    let impostor = Who { ca: root.ca.clone(), cert: issue(&other_ca, Role::User, "alice", |_| {}).cert };
    let no_cert = Who { ca: root.ca.clone(), cert: None };

    let data = dir.path().join("om");
    let om = Proc::start(&[
        "om", "--data-dir", s(&data), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--shards", "2", "--executors", "1", "--no-pin",
        "--tls-ca", s(&root.ca), "--tls-cert", s(&om_pem), "--tls-key", s(&om_key), "--admin-groups", "ops",
    ]);
    let rpc = om.word_after("rpc");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").expect("empty file");

    // An administrator's certificate creates volumes for alice and bob.
    for (v, owner) in [("/vola", "alice"), ("/volb", "bob")] {
        let (ok, out, _) = sh(&rpc, Some(&root), "root", &["volume", "create", v, "--owner", owner]);
        assert!(ok, "root creates {v}: {out}");
    }
    // A member of an administrators' group (--admin-groups ops) is one; bob's group is not.
    let dave = issue(&ca, Role::User, "dave", |r| r.groups = vec!["ops".into()]);
    let (ok, out, _) = sh(&rpc, Some(&dave), "dave", &["volume", "create", "/vold"]);
    assert!(ok, "dave of group ops creates a volume: {out}");
    // Alice works in hers, whatever user her client claims.
    for args in [&["bucket", "create", "/vola/bk1"][..], &["key", "put", "/vola/bk1/k", s(&empty)][..], &["key", "info", "/vola/bk1/k"][..]] {
        let (ok, out, _) = sh(&rpc, Some(&alice), "mallory", args);
        assert!(ok, "alice {args:?}: {out}");
    }

    // Bob, claiming to be alice or root in the header, cannot touch alice's things nor act as
    // an administrator: the certificate names him.
    for (claimed, args) in [
        ("alice", &["key", "info", "/vola/bk1/k"][..]),
        ("alice", &["key", "delete", "/vola/bk1/k"][..]),
        ("alice", &["bucket", "delete", "/vola/bk1"][..]),
        ("root", &["volume", "delete", "/vola"][..]),
        ("root", &["volume", "create", "/volx"][..]),
    ] {
        let (ok, out, _) = sh(&rpc, Some(&bob), claimed, args);
        assert!(!ok && out.contains("PERMISSION_DENIED") && out.contains("bob"), "bob as {claimed:?} {args:?}: {out}");
    }
    let (ok, out, _) = sh(&rpc, Some(&alice), "alice", &["key", "info", "/vola/bk1/k"]);
    assert!(ok, "alice's key is still there: {out}");

    // S3 secrets (issue 21): alice's own, the same on a second ask, made by the OM; bob cannot
    // read hers, root can; revoked, it is gone, and the next one is new.
    let secret_of = |out: &str| out.lines().find_map(|l| l.strip_prefix("awsSecret=")).map(str::to_string);
    let (ok, first, _) = sh(&rpc, Some(&alice), "root", &["s3", "getsecret"]);
    assert!(ok && first.contains("awsAccessKey=alice"), "alice's getsecret: {first}");
    let secret = secret_of(&first).expect("a secret");
    assert!(secret.len() == 40 && secret.bytes().all(|b| b.is_ascii_alphanumeric()), "{secret}");
    let again = Command::new(BIN)
        .args(["s3", "getsecret", "--om", &rpc])
        .env("STRATOS_CA", &alice.ca)
        .env("STRATOS_CERT", &alice.cert.as_ref().expect("cert").0)
        .env("STRATOS_KEY", &alice.cert.as_ref().expect("cert").1)
        .output()
        .expect("stratos s3 getsecret");
    assert_eq!(secret_of(&String::from_utf8_lossy(&again.stdout)), Some(secret.clone()), "`stratos s3 getsecret` gives the same secret again");
    let (ok, out, _) = sh(&rpc, Some(&bob), "bob", &["s3", "getsecret", "--username", "alice"]);
    assert!(!ok && out.contains("PERMISSION_DENIED"), "bob asks for alice's secret: {out}");
    let (ok, out, _) = sh(&rpc, Some(&root), "root", &["s3", "getsecret", "-u", "alice"]);
    assert!(ok && secret_of(&out) == Some(secret.clone()), "an administrator reads it: {out}");
    let (ok, out, _) = sh(&rpc, Some(&alice), "alice", &["s3", "revokesecret"]);
    assert!(ok, "{out}");
    let (ok, out, _) = sh(&rpc, Some(&alice), "alice", &["s3", "revokesecret"]);
    assert!(!ok && out.contains("S3_SECRET_NOT_FOUND"), "{out}");
    let (ok, out, _) = sh(&rpc, Some(&alice), "alice", &["s3", "getsecret"]);
    assert!(ok && secret_of(&out).is_some_and(|s| s != secret), "a new secret after the revoke: {out}");

    // A datanode's certificate is no administrator of the OM.
    let out = Command::new(BIN)
        .args(["admin", "--om", &rpc, "--user", "root", "status"])
        .env("STRATOS_CA", &datanode.ca)
        .env("STRATOS_CERT", &datanode.cert.as_ref().expect("cert").0)
        .env("STRATOS_KEY", &datanode.cert.as_ref().expect("cert").1)
        .output()
        .expect("admin status");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && text.contains("PERMISSION_DENIED") && text.contains("datanode:dn-1"), "{text}");

    // Strangers: each refused, saying which check failed, within seconds.
    for (who, name, says) in [
        (Some(&no_cert), "no certificate", "requires a client certificate"),
        (Some(&impostor), "another CA's certificate", "not signed by the cluster's CA"),
        (Some(&expired), "an expired certificate", "expired"),
    ] {
        let (ok, out, took) = sh(&rpc, who, "root", &["volume", "list"]);
        assert!(!ok && out.contains(says), "{name}: {out}");
        assert!(took < Duration::from_secs(8), "{name}: took {took:?}");
    }
    // A client without TLS at all gets an error, not a hang.
    let (ok, out, took) = sh(&rpc, None, "root", &["volume", "list"]);
    assert!(!ok && out.contains("requires TLS") && took < Duration::from_secs(12), "plain TCP to a TLS port: {out} after {took:?}");
    // And a client that trusts another CA refuses the server.
    let wrong_trust = Who { ca: tls::ca_files(&other_ca).0, cert: impostor.cert.clone() };
    let (ok, out, _) = sh(&rpc, Some(&wrong_trust), "root", &["volume", "list"]);
    assert!(!ok && out.contains("not signed by this cluster's CA"), "{out}");
}

#[test]
fn certificates_name_their_holder_and_refuse_bad_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca");
    tls::ca_init(&ca, 1).expect("ca init");
    let again = tls::ca_init(&ca, 1).expect_err("a second CA over the first");
    assert!(again.to_string().contains("exists already"), "{again}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(tls::ca_files(&ca).1).expect("key").permissions());
    assert_eq!(mode & 0o077, 0, "the CA key is readable by its owner only");

    let who = issue(&ca, Role::User, "alice", |r| r.groups = vec!["staff".into(), "ops".into()]);
    let id = tls::identity_of_file(&who.cert.as_ref().expect("cert").0).expect("identity");
    assert_eq!((id.role, id.name.as_str(), id.groups.clone()), (Role::User, "alice", vec!["staff".to_string(), "ops".to_string()]));
    for bad in ["", "a/b", "a b", "a:b"] {
        let r = tls::issue(&ca, dir.path(), &Request::new(Role::User, bad, 1));
        assert!(r.is_err(), "name {bad:?} accepted");
    }
    assert!(tls::identity_of(b"not a certificate").is_err());
}


/// Runs `stratos ARGS` that should fail at start: (succeeded, stdout + stderr), killed after
/// `limit` (a process that neither starts nor stops is a failure of the test).
fn run_to_exit(args: &[&str], limit: Duration) -> (bool, String) {
    let mut child = Command::new(BIN).args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("start stratos");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("{args:?} neither started nor stopped within {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    (status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Runs `f` on a glommio executor of its own thread (the Cap'n Proto client is glommio's).
fn on_executor<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(f: impl FnOnce() -> F + Send + 'static) -> T {
    glommio::LocalExecutorBuilder::default().spawn(move || async move { f().await }).expect("executor").join().expect("join")
}

/// `stratos sh --om OMS ARGS` as root (support's CA).
fn root_sh(oms: &str, args: &[&str]) -> (bool, String) {
    let out = crate::support::Tls::get().stratos().arg("sh").args(["--om", oms, "--timeout", "30"]).args(args).output().expect("run stratos sh");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A 24-byte Raft hello (schema/capnp/raft.capnp) for executor 0 of a 1-executor, 2-shard node.
fn raft_hello(tls: bool) -> Vec<u8> {
    let mut b = b"STRRAFT3".to_vec();
    for w in [1u32, 0, 2, u32::from(tls)] {
        b.extend_from_slice(&w.to_le_bytes());
    }
    b
}

/// Dials a Raft port as a TLS peer with `files`' certificate after a hello that announces TLS:
/// whether the node kept the connection (true) or closed it (false) within 3 s of the hello
/// inside TLS.
fn raft_peer_kept(raft: &str, files: &tls::Files) -> bool {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(raft).expect("dial the Raft port");
    tcp.write_all(&raft_hello(true)).expect("hello");
    let mut answer = [0u8; 4];
    tcp.read_exact(&mut answer).expect("the hello's answer");
    assert_eq!(answer, [0; 4], "a hello announcing TLS is accepted (the TLS handshake decides)");
    tcp.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    let config = tls::client_config(files).expect("client configuration");
    let conn = rustls::ClientConnection::new(config, tls::server_name(raft).expect("name")).expect("client");
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    if stream.write_all(&raft_hello(true)).and_then(|()| stream.flush()).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// Every link of a secured cluster (3 OM nodes, an SCM, two datanodes, all started as
/// `stratos dev` starts them: with certificates of one CA): the data path works through TLS;
/// a Raft peer must prove an OM certificate; only OMs and datanodes get the SCM's secret keys;
/// a datanode's registration is bound to its certificate (across SCM restarts); HTTP is HTTPS;
/// and a node's certificate is reissued and the node restarted while writes go on.
#[test]
fn every_link_is_secured_and_a_node_certificate_rotates_without_downtime() {
    use crate::support::Tls;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |p: &str| dir.path().join(p);
    let scm_addr = format!("127.0.0.1:{}", free_port());
    let scm_dir = d("scm");
    let scm_args = ["scm", "--http-address", "127.0.0.1:0", "--data-dir", s(&scm_dir), "--rpc-address", &scm_addr, "--dead-after-ms", "30000"];
    let mut scm = Proc::secured(&scm_args);
    let dn_args = |name: &str| -> Vec<String> {
        ["datanode", "--data-dir", s(&d(name)), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--scm", &scm_addr, "--heartbeat-ms", "200"].iter().map(|a| a.to_string()).collect()
    };
    let args_a = dn_args("dnA");
    let args_a: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let mut dn_a = Proc::secured(&args_a);
    let args_b = dn_args("dnB");
    let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let _dn_b = Proc::secured(&args_b);

    // Three OM nodes, started together (each waits for its groups' leaders).
    let ports: Vec<(String, String, String)> = (0..3).map(|_| (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()))).collect();
    let peers: Vec<String> = ports.iter().enumerate().map(|(i, (rpc, _, raft))| format!("{},{raft},{rpc}", i + 1)).collect();
    let om_args = |i: usize| -> Vec<String> {
        let (rpc, http, raft) = &ports[i];
        let mut a: Vec<String> = ["om", "--data-dir", s(&d(&format!("om{}", i + 1))), "--node-id", &(i + 1).to_string(), "--rpc-address", rpc, "--http-address", http, "--raft-address", raft]
            .iter()
            .map(|x| x.to_string())
            .collect();
        a.extend(["--shards", "2", "--executors", "1", "--no-pin", "--election-timeout-min-ms", "300", "--election-timeout-max-ms", "600", "--heartbeat-interval-ms", "100"].map(String::from));
        a.extend(["--scm-address", &scm_addr, "--scm-poll-ms", "300", "--block-bytes", "1048576"].map(String::from));
        for p in &peers {
            a.extend(["--peer".to_string(), p.clone()]);
        }
        a
    };
    let start_om = |i: usize, extra: Vec<String>| {
        let mut a = om_args(i);
        a.extend(extra);
        std::thread::spawn(move || {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            if a.contains(&"--tls-ca") { Proc::start(&a) } else { Proc::secured(&a) }
        })
    };
    let starting: Vec<_> = (0..3).map(|i| start_om(i, Vec::new())).collect();
    let mut oms: Vec<Option<Proc>> = starting.into_iter().map(|t| Some(t.join().expect("an OM node starts"))).collect();
    let all = ports.iter().map(|(rpc, _, _)| rpc.as_str()).collect::<Vec<_>>().join(",");

    // The data path through TLS: client → OM, OM → SCM, client → datanodes, datanode → SCM.
    let data = d("data");
    std::fs::write(&data, vec![7u8; 300_000]).expect("data");
    for args in [&["volume", "create", "/vol"][..], &["bucket", "create", "/vol/bkt"][..], &["key", "put", "-r", "ONE", "/vol/bkt/k", s(&data)][..]] {
        let (ok, out) = root_sh(&all, args);
        assert!(ok, "{args:?}: {out}");
    }
    let back = d("back");
    let (ok, out) = root_sh(&all, &["key", "get", "/vol/bkt/k", s(&back)]);
    assert!(ok && std::fs::read(&back).expect("read back") == vec![7u8; 300_000], "get: {out}");

    // Raft: a plain peer is told TLS is required; a TLS peer must present an OM certificate.
    {
        use std::io::{Read, Write};
        let raft1 = &ports[0].2;
        let mut tcp = std::net::TcpStream::connect(raft1).expect("dial");
        tcp.write_all(&raft_hello(false)).expect("hello");
        tcp.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(answer.get(4..).unwrap_or_default());
        assert!(text.contains("requires TLS on Raft"), "a plain Raft peer: {text:?}");
        let t = Tls::get();
        assert!(!raft_peer_kept(raft1, &t.files(Role::User, "root")), "a user certificate joins no Raft traffic");
        assert!(!raft_peer_kept(raft1, &t.files(Role::Datanode, "dn-raft")), "a datanode certificate joins no Raft traffic");
        assert!(raft_peer_kept(raft1, &t.files(Role::Om, "om-9")), "the control: an OM certificate of the cluster is kept");
    }

    // The SCM: the secret keys only for OMs and datanodes, allocation only for OMs; plain
    // TCP gets nothing.
    let scm_calls = {
        let addr = scm_addr.clone();
        let t = Tls::get();
        let cfg = |role: Role, name: &str| Some(tls::client_config(&t.files(role, name)).expect("config"));
        let (user, dn, om) = (cfg(Role::User, "root"), cfg(Role::Datanode, "dn-probe"), cfg(Role::Om, "om-1"));
        on_executor(move || async move {
            use stratos_schema::scm_capnp::storage_container_manager as scm_rpc;
            let rt = stratos_client::runtime::Glommio;
            let map = |c: Option<std::sync::Arc<rustls::ClientConfig>>| {
                let addr = addr.clone();
                async move {
                    let scm: scm_rpc::Client = stratos_client::connect_tls_on(&rt, &addr, c).await.map_err(|e| e.to_string())?;
                    let reply = crate::support::answered(scm.cluster_map_request().send().promise).await?.map_err(|e| e.to_string())?;
                    Ok::<usize, String>(reply.get().map_err(|e| e.to_string())?.get_keys().map_err(|e| e.to_string())?.len() as usize)
                }
            };
            let alloc = {
                let scm: scm_rpc::Client = stratos_client::connect_tls_on(&rt, &addr, dn.clone()).await.expect("connect");
                let mut req = scm.allocate_blocks_request();
                req.get().set_count(1);
                req.get().set_block_bytes(1 << 20);
                crate::support::answered(req.send().promise).await.and_then(|r| r.map(|_| ()).map_err(|e| e.to_string()))
            };
            (map(user).await, map(dn).await, map(om).await, map(None).await, alloc)
        })
    };
    let (user, dn, om, plain, alloc) = scm_calls;
    let user = user.expect_err("a user certificate gets no secret keys");
    assert!(user.contains("permission denied") && user.contains("user root"), "{user}");
    assert!(dn.expect("a datanode gets the map") > 0 && om.expect("an OM gets the map") > 0);
    assert!(plain.is_err(), "plain TCP to the SCM: {plain:?}");
    assert!(alloc.expect_err("a datanode allocates nothing").contains("permission denied"));

    // A datanode's id is bound to its certificate, across an SCM restart.
    scm.kill9();
    scm = Proc::secured(&scm_args);
    let flags_a = Tls::get().flags_for(&args_a);
    let c_args = dn_args("dnC");
    let mut impostor: Vec<&str> = c_args.iter().map(String::as_str).collect();
    impostor.extend(flags_a.iter().map(String::as_str));
    let (ok, out) = run_to_exit(&impostor, Duration::from_secs(30));
    assert!(!ok && out.contains("belongs to datanode"), "a new datanode with datanode A's certificate: {out}");
    dn_a.kill9();
    let other = Tls::get().flags(Role::Datanode, "dn-other");
    let mut swapped: Vec<&str> = args_a.clone();
    swapped.extend(other.iter().map(String::as_str));
    let (ok, out) = run_to_exit(&swapped, Duration::from_secs(30));
    assert!(!ok && out.contains("is registered to certificate"), "datanode A's directory with another certificate: {out}");
    dn_a = Proc::secured(&args_a);
    let _ = &dn_a;

    // HTTP is HTTPS: a TLS GET answers, plain HTTP gets no page.
    {
        use std::io::{Read, Write};
        let mut s = Tls::get().connect(&ports[0].1);
        write!(s, "GET /health HTTP/1.0\r\n\r\n").expect("send");
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        assert!(String::from_utf8_lossy(&reply).contains("200 OK"), "{}", String::from_utf8_lossy(&reply));
        let mut plain = std::net::TcpStream::connect(&ports[0].1).expect("dial");
        plain.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let _ = write!(plain, "GET /health HTTP/1.0\r\n\r\n");
        let mut reply = Vec::new();
        let _ = plain.read_to_end(&mut reply);
        assert!(!String::from_utf8_lossy(&reply).contains("200 OK"), "plain HTTP to an HTTPS port");
    }

    // Rotation: node 2's certificate is reissued (a new key) and the node restarted with it
    // while a writer goes on; then node 3 stops, and writes still commit: node 2, with its
    // new certificate, is back in the quorum.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, all) = (stop.clone(), all.clone());
        std::thread::spawn(move || {
            let (mut n, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (ok, out) = root_sh(&all, &["volume", "create", &format!("/during{n}")]);
                if !ok {
                    failed.push(out);
                }
                n += 1;
            }
            (n, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    oms[1].take().expect("node 2").kill9();
    let new = Tls::get().reissue(Role::Om, "om-2", &d("om-2-new"));
    let flags = vec!["--tls-ca".to_string(), s(&new.ca).into(), "--tls-cert".into(), s(&new.cert).into(), "--tls-key".into(), s(&new.key).into()];
    oms[1] = Some(start_om(1, flags).join().expect("node 2 restarts with its new certificate"));
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (writes, failed) = writer.join().expect("writer");
    assert!(writes > 0 && failed.is_empty(), "{} of {writes} writes failed while node 2 rotated: {failed:?}", failed.len());
    oms[2].take().expect("node 3").kill9();
    let (ok, out) = root_sh(&all, &["volume", "create", "/after-rotation"]);
    assert!(ok, "nodes 1 and 2 (its new certificate) commit without node 3: {out}");
    drop(scm);
}

/// A node whose certificate is of another role, or out of its dates, refuses to start and
/// names the file (its peers would refuse it at every handshake otherwise).
#[test]
fn a_node_refuses_to_start_with_a_certificate_of_another_role_or_out_of_date() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca");
    tls::ca_init(&ca, 30).expect("ca init");
    let dn = issue(&ca, Role::Datanode, "dn-1", |_| {});
    let expired = issue(&ca, Role::Om, "om-1", |r| {
        r.not_before = SystemTime::now() - Duration::from_secs(10 * 86_400);
        r.not_after = SystemTime::now() - Duration::from_secs(86_400);
    });
    let ca_pem = tls::ca_files(&ca).0;
    let flags = |w: &Who| {
        let (c, k) = w.cert.clone().expect("cert");
        vec!["--tls-ca".to_string(), s(&ca_pem).into(), "--tls-cert".into(), s(&c).into(), "--tls-key".into(), s(&k).into()]
    };
    let scm_dir = dir.path().join("scm");
    let mut scm: Vec<String> = ["scm", "--http-address", "127.0.0.1:0", "--data-dir", s(&scm_dir), "--rpc-address", "127.0.0.1:0"].map(String::from).to_vec();
    scm.extend(flags(&dn));
    let (ok, out) = run_to_exit(&scm.iter().map(String::as_str).collect::<Vec<_>>(), Duration::from_secs(20));
    assert!(!ok && out.contains("a certificate for datanode dn-1, and this node's role is scm") && out.contains("dn-1.pem"), "{out}");
    let om_dir = dir.path().join("om");
    let mut om: Vec<String> = ["om", "--data-dir", s(&om_dir), "--rpc-address", "127.0.0.1:0", "--executors", "1", "--no-pin"].map(String::from).to_vec();
    om.extend(flags(&expired));
    let (ok, out) = run_to_exit(&om.iter().map(String::as_str).collect::<Vec<_>>(), Duration::from_secs(20));
    assert!(!ok && out.contains("om-1.pem") && out.contains("not now"), "{out}");
    assert!(!om_dir.join("FORMAT").exists(), "a refused start leaves the data directory untouched");

    // A datanode whose certificate does not name the address it serves at.
    let elsewhere = issue(&ca, Role::Datanode, "dn-9", |r| r.hosts = vec!["dn9.example".into()]);
    let dn_dir = dir.path().join("dn");
    let mut dn_args: Vec<String> = ["datanode", "--data-dir", s(&dn_dir), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--scm", "127.0.0.1:1"].map(String::from).to_vec();
    dn_args.extend(flags(&elsewhere));
    let (ok, out) = run_to_exit(&dn_args.iter().map(String::as_str).collect::<Vec<_>>(), Duration::from_secs(20));
    assert!(!ok && out.contains("names the hosts [dn9.example], not 127.0.0.1"), "{out}");

    // A datanode without TLS against a secured SCM stops at once, saying what to give it; one
    // waiting for an SCM that is not there stops on SIGTERM.
    let scm_dir = dir.path().join("scm2");
    let scm = Proc::secured(&["scm", "--http-address", "127.0.0.1:0", "--data-dir", s(&scm_dir), "--rpc-address", "127.0.0.1:0"]);
    let plain_dir = dir.path().join("plain");
    let (ok, out) = run_to_exit(&["datanode", "--data-dir", s(&plain_dir), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--scm", &scm.word_after("rpc")], Duration::from_secs(20));
    assert!(!ok && out.contains("requires TLS") && out.contains("--tls-ca"), "{out}");
    let mut waiting = Command::new(BIN)
        .args(["datanode", "--data-dir", s(&plain_dir), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--scm", &format!("127.0.0.1:{}", free_port())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a datanode");
    std::thread::sleep(Duration::from_millis(700));
    crate::support::sigterm_and_wait(&mut waiting, "a datanode waiting for its SCM", Duration::from_secs(5));
}

/// `stratos admin ca init` and `cert issue` as an operator runs them: the holder's directory
/// gets the CA's certificate (never its key), the printed settings are absolute paths, and
/// nonsense is refused.
#[test]
fn cert_issue_gives_the_holder_what_it_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = Command::new(BIN).current_dir(dir.path()).arg("admin").args(args).output().expect("run stratos admin");
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (ok, out) = run(&["ca", "init", "--dir", "ca"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["cert", "issue", "--ca", "ca", "--role", "user", "--name", "alice", "--out", "alice"]);
    let home = dir.path().join("alice");
    assert!(ok && out.contains(&format!("STRATOS_CA={}", home.join("ca.pem").display())) && out.contains(&format!("STRATOS_KEY={}", home.join("alice.key").display())), "{out}");
    assert!(home.join("ca.pem").exists() && !home.join("ca.key").exists(), "the CA's certificate is copied, never its key");
    for (args, says) in [
        (&["cert", "issue", "--ca", "ca", "--role", "user", "--name", "bob", "--days", "0"][..], "0 is not in 1.."),
        (&["cert", "issue", "--ca", "ca", "--role", "user", "--name", "bob", "--host", "1.2.3.4"][..], "a user certificate names none"),
        (&["cert", "issue", "--ca", "ca", "--role", "om", "--name", "om-1", "--groups", "ops"][..], "a node certificate has none"),
    ] {
        let (ok, out) = run(args);
        assert!(!ok && out.contains(says), "{args:?}: {out}");
    }
}
