//! The client library on tokio, against real processes on loopback: the tokio quickstart
//! (`client/examples/tokio_quickstart.rs`, compiled here as a module) creates a volume, a bucket
//! and a key through `stratos_client::runtime::Tokio` and reads them back as typed values. Once
//! with an OM alone (an empty key: open and commit, metadata only), once with an SCM and a
//! datanode (the key's bytes written to the datanode and read back, on tokio).

use std::path::Path;
use std::rc::Rc;

use stratos_client::runtime::Tokio;
use stratos_client::{Client, Replication, Status};

// Its `main` (with `DEFAULT_OM`) serves the example binary only.
#[allow(dead_code)]
#[path = "../../client/examples/tokio_quickstart.rs"]
mod quickstart;

use crate::support::{Proc, s};

/// An OM as `om_e2e.rs` starts one, with `extra` arguments.
fn start_om(dir: &Path, extra: &[&str]) -> Proc {
    let om_dir = dir.join("om");
    let mut args = vec!["om", "--data-dir", s(&om_dir), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--shards", "4", "--executors", "2", "--no-pin"];
    args.extend(["--election-timeout-min-ms", "150", "--election-timeout-max-ms", "300", "--heartbeat-interval-ms", "50"]);
    args.extend(extra);
    Proc::secured(&args)
}

/// Runs `f` as a tokio user of the client does: on a current-thread runtime with IO and time
/// on, inside a `LocalSet` (the client is `!Send`; its connections are `spawn_local` tasks).
fn on_tokio<F: Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

#[test]
fn the_tokio_quickstart_answers_typed_values_from_an_om() {
    let dir = tempfile::tempdir().expect("tempdir");
    let om = start_om(dir.path(), &[]);
    let rpc = om.word_after("rpc");
    let names = quickstart::Names { volume: "tokiovol", bucket: "tokiobkt", key: "dir/hello" };
    let s = on_tokio(quickstart::quickstart(&rpc, "root", names, b"")).expect("the quickstart runs on tokio");

    assert_eq!(s.volume.name, "tokiovol");
    assert_eq!(s.volume.owner, "root");
    assert_eq!(s.volume.buckets, 1);
    assert_eq!(s.volume.quota_bytes, None, "created without a quota: unlimited");
    assert_eq!((s.bucket.volume.as_str(), s.bucket.name.as_str()), ("tokiovol", "tokiobkt"));
    assert_eq!(s.bucket.replication, Replication::RatisOne);
    assert_eq!(s.bucket.keys, 1);
    assert_eq!((s.key.volume.as_str(), s.key.bucket.as_str(), s.key.name.as_str()), ("tokiovol", "tokiobkt", "dir/hello"));
    assert_eq!(s.key.data_size, 0);
    assert!(s.key.blocks.is_empty(), "an empty key has no blocks: {:?}", s.key.blocks);
    assert!(s.data.is_empty(), "{:?}", s.data);
    assert_eq!(s.keys.items.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["dir/hello"]);
    assert!(!s.keys.truncated);
    assert_eq!(s.missing.status(), Some(Status::KeyNotFound), "{}", s.missing);

    // Again on the same OM: the volume and bucket are used as they are, the key overwritten.
    let again = on_tokio(quickstart::quickstart(&rpc, "root", names, b"")).expect("the quickstart runs again");
    assert_eq!(again.volume.object_id, s.volume.object_id);
    assert_eq!(again.bucket.keys, 1, "the key was replaced, not added");

    // The client used directly: a multi-key lookup answers each key in its place, and a
    // listing is a typed page.
    let (found, volumes) = on_tokio(async {
        let c = Client::connect_on(Rc::new(Tokio), &rpc, "root").await.expect("connect on tokio");
        let found = c.lookup_keys("tokiovol", "tokiobkt", &["dir/hello", "dir/nope"]).await.expect("lookup keys");
        let volumes = c.list_volumes("", "tokio", "", 10).await.expect("list volumes");
        (found, volumes)
    });
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].as_ref().expect("dir/hello exists").name, "dir/hello");
    assert_eq!(found[1].as_ref().expect_err("dir/nope does not").status(), Some(Status::KeyNotFound));
    assert_eq!(volumes.items.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["tokiovol"]);
    assert_eq!(volumes.next_start(), None, "one page holds them all");
}

#[test]
fn the_tokio_quickstart_writes_and_reads_data_through_a_datanode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scm = Proc::secured(&["scm", "--http-address", "127.0.0.1:0", "--data-dir", s(&dir.path().join("scm")), "--rpc-address", "127.0.0.1:0"]);
    let scm_addr = scm.word_after("rpc");
    let _datanode = Proc::secured(&["datanode", "--data-dir", s(&dir.path().join("dn0")), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--scm", &scm_addr, "--heartbeat-ms", "200"]);
    let om = start_om(dir.path(), &["--scm-address", &scm_addr, "--scm-poll-ms", "300", "--block-bytes", "1048576"]);
    let rpc = om.word_after("rpc");
    // 1.5 MiB + 1: two 1 MiB blocks, the second partial.
    let data: Vec<u8> = (0..(3u32 << 19) + 1).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let names = quickstart::Names { volume: "tokiovol", bucket: "tokiobkt", key: "data" };
    let s = on_tokio(quickstart::quickstart(&rpc, "root", names, &data)).expect("the quickstart writes through the datanode on tokio");

    assert_eq!(s.key.name, "data");
    assert_eq!(s.key.data_size, data.len() as u64);
    assert_eq!(s.key.blocks.len(), 2, "{:?}", s.key.blocks);
    assert_eq!(s.key.blocks.iter().map(|b| b.length).sum::<u64>(), data.len() as u64);
    assert!(s.key.blocks.iter().all(|b| b.datanodes.len() == 1 && !b.token.is_empty()), "a lookup carries each block's read token and datanode: {:?}", s.key.blocks);
    assert!(s.data == data, "the bytes read back on tokio differ from those written");
    assert_eq!(s.keys.items.len(), 1);
    assert_eq!(s.missing.status(), Some(Status::KeyNotFound), "{}", s.missing);
}
