//! `omkg --om etcd+grpc://HOST:PORT`: the same workload on etcd through its gRPC API (the
//! `etcd-client` crate), the way etcd's own clients and benchmarks talk to it. Built only with
//! the `etcd-grpc` feature (its build needs Debian's `protobuf-compiler`); `bench/etcd.sh`
//! builds it.
//!
//! The mapping keeps the durable replicated writes per call equal to Stratos's (see
//! [`super::etcd`]): with `--batch 1`, a key is a put of its open record (`/open/<key>`) and one
//! transaction that puts the key and deletes the open record; with `--batch B`, a call is one
//! transaction putting B open records and one transaction putting the B keys and deleting
//! their open records (etcd's default limit of 128 operations per transaction allows B ≤ 64).
//! Two etcd Raft entries per call, each fdatasync'ed on a majority before etcd answers, as
//! Stratos's open and commit are. `-t` calls in flight over `--connections` gRPC channels,
//! closed loop, on one thread (a tokio current-thread runtime, as Stratos's generator runs on
//! one glommio executor).

use super::*;
use etcd_client::{Client as Etcd, KvClient, Txn, TxnOp};

pub(super) fn omkg_etcd_grpc(addr: String, a: OmkgArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.common.rate.is_none(), "omkg on etcd+grpc:// runs closed loop only (no --rate)");
    let batch = u64::from(a.batch.max(1));
    anyhow::ensure!(batch <= 64, "--batch {batch}: etcd allows 128 operations per transaction, so at most 64 keys per call here");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let what = format!("{} (etcd gRPC)", title("omkg", &a.common));
        let mut clients = Vec::new();
        for _ in 0..a.common.connections.max(1) {
            clients.push(Etcd::connect([addr.as_str()], None).await.map_err(|e| anyhow::anyhow!("etcd at {addr}: {e}"))?);
        }
        let run = Run::new(&a.common);
        let prefix = Rc::new(format!("{}/{}/k{:08x}", a.volume, a.bucket, rand::random::<u32>()));
        let value = Rc::new(vec![b'v'; a.value_size]);
        let common = Rc::new(a.common.clone());
        let seq = Rc::new(Cell::new(0u64));
        let mut tasks = Vec::new();
        for w in 0..a.common.threads.max(1) {
            let mut kv = clients[w % clients.len()].kv_client();
            let (run, seq, prefix, value, common) = (run.clone(), seq.clone(), prefix.clone(), value.clone(), common.clone());
            tasks.push(tokio::task::spawn_local(async move {
                while run.next(batch) {
                    let n = seq.get();
                    seq.set(n + 1);
                    let keys: Vec<String> = (0..batch).map(|i| common.key(format!("{prefix}/{:012}", n * batch + i))).collect();
                    let t0 = Instant::now();
                    let r = call(&mut kv, &keys, &value).await.map(|()| (batch, 0)).map_err(|e| format!("etcd: {e}"));
                    run.finish(r, t0);
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        run.finished.set(true);
        run.report(&what, "keys", &a.common)
    })
}

/// One call: the open and the commit of `keys` (see the module docs).
async fn call(kv: &mut KvClient, keys: &[String], value: &[u8]) -> Result<(), etcd_client::Error> {
    let opens: Vec<String> = keys.iter().map(|k| format!("/open/{k}")).collect();
    if let [open] = &opens[..] {
        kv.put(open.as_str(), value, None).await?;
    } else {
        kv.txn(Txn::new().and_then(opens.iter().map(|o| TxnOp::put(o.as_str(), value, None)).collect::<Vec<_>>())).await?;
    }
    let mut commit: Vec<TxnOp> = keys.iter().map(|k| TxnOp::put(k.as_str(), value, None)).collect();
    commit.extend(opens.iter().map(|o| TxnOp::delete(o.as_str(), None)));
    kv.txn(Txn::new().and_then(commit)).await?;
    Ok(())
}
