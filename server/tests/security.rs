//! TLS and authenticated principals on the OM's client ports (issue 20), end to end: a real
//! `stratos om` with `--tls-ca/--tls-cert/--tls-key`, certificates made by the same functions as
//! `stratos admin ca init` and `stratos admin cert issue`, and `stratos sh` as users run it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use stratos_client::tls::{self, Request, Role};

mod support;
use support::{BIN, Proc, s};

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
        "--tls-ca", s(&root.ca), "--tls-cert", s(&om_pem), "--tls-key", s(&om_key),
    ]);
    let rpc = om.word_after("rpc");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").expect("empty file");

    // An administrator's certificate creates volumes for alice and bob.
    for (v, owner) in [("/vola", "alice"), ("/volb", "bob")] {
        let (ok, out, _) = sh(&rpc, Some(&root), "root", &["volume", "create", v, "--owner", owner]);
        assert!(ok, "root creates {v}: {out}");
    }
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
