//! The tokio runtime: its sleep and spawn, dial failures, the client's backoff on its clock, and
//! a whole client session over tokio TCP against a stand-in OM (Cap'n Proto on both ends).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Runtime, Tokio};

fn on_tokio<F: Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

/// A port on loopback that nothing listens on (bound, its address read, then closed).
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("address").to_string();
    drop(l);
    addr
}

#[test]
fn sleep_waits_from_the_first_poll() {
    on_tokio(async {
        let sleep = Tokio.sleep(Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(40));
        let start = Instant::now();
        sleep.await;
        assert!(start.elapsed() >= Duration::from_millis(25), "the sleep started before its first poll: {:?}", start.elapsed());
    });
}

#[test]
fn a_closed_port_is_a_connect_error() {
    let addr = closed_port();
    let e = on_tokio(async { crate::connect_rpc_on::<stratos_schema::om_capnp::ozone_manager::Client>(&Tokio, &addr).await.map(|_| ()) }).expect_err("nothing listens there");
    match &e {
        crate::ClientError::Connect { addr: a, reason } => assert!(a == &addr && !reason.is_empty(), "{e}"),
        other => panic!("expected a Connect error, got {other:?}"),
    }
}

#[test]
fn a_call_on_a_lost_node_is_retried_with_the_runtime_s_backoff() {
    // The kernel completes the handshake for the listener's backlog; closing the listener
    // then resets the connection, so the call fails as a lost node and is retried after
    // 50 ms and 100 ms of backoff (each retry dials the now closed port, in vain).
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("address").to_string();
    let (e, elapsed) = on_tokio(async move {
        let c = crate::Client::connect_on(std::rc::Rc::new(Tokio), &addr, "root").await.expect("the backlog accepts");
        c.set_attempts_max(3);
        drop(l);
        let start = Instant::now();
        let e = c.volume_info("vol").await.expect_err("nobody answers");
        (e, start.elapsed())
    });
    assert!(crate::lost_node(&e), "a lost node, not {e:?}");
    assert!(elapsed >= Duration::from_millis(150), "two backoffs (50 + 100 ms) before giving up, took {elapsed:?}");
}

#[test]
fn spawned_tasks_run_in_the_local_set() {
    let ran = on_tokio(async {
        let flag = std::rc::Rc::new(std::cell::Cell::new(false));
        let f = flag.clone();
        Tokio.spawn_local(Box::pin(async move { f.set(true) }));
        Tokio.sleep(Duration::from_millis(1)).await;
        flag.get()
    });
    assert!(ran, "the spawned task ran while the caller slept");
}

/// An OM stand-in: `volumeInfo` answers `unavailable` for the first `unavailable` calls, then
/// the volume; `lookupKey` answers `KEY_NOT_FOUND`. It records the calls and their users.
struct StandIn {
    unavailable: Cell<u32>,
    calls: Rc<RefCell<Vec<(&'static str, String)>>>,
}

impl StandIn {
    fn record(&self, what: &'static str, header: capnp::Result<stratos_schema::om_capnp::request_header::Reader<'_>>) -> capnp::Result<()> {
        let user = header?.get_user()?.to_string()?;
        self.calls.borrow_mut().push((what, user));
        Ok(())
    }
}

impl stratos_schema::om_capnp::ozone_manager::Server for StandIn {
    fn volume_info(
        self: Rc<Self>, params: stratos_schema::om_capnp::ozone_manager::VolumeInfoParams, mut results: stratos_schema::om_capnp::ozone_manager::VolumeInfoResults,
    ) -> impl Future<Output = Result<(), capnp::Error>> + 'static {
        use stratos_schema::om_capnp::Status;
        let answer = (|| -> capnp::Result<()> {
            let p = params.get()?;
            self.record("volumeInfo", p.get_header())?;
            if self.unavailable.get() > 0 {
                self.unavailable.set(self.unavailable.get() - 1);
                let mut e = results.get().init_error();
                e.set_status(Status::Unavailable);
                e.set_message("no leader yet");
                return Ok(());
            }
            let mut v = results.get().init_info();
            v.set_name(p.get_volume()?.to_str()?);
            v.set_owner("alice");
            v.set_admin("root");
            v.set_quota_bytes(u64::MAX);
            v.set_quota_namespace(100);
            v.set_buckets(2);
            v.set_created_ms(1_700_000_000_000);
            let mut m = v.init_metadata(1).get(0);
            m.set_key("team");
            m.set_value("storage");
            Ok(())
        })();
        std::future::ready(answer)
    }

    fn lookup_key(
        self: Rc<Self>, params: stratos_schema::om_capnp::ozone_manager::LookupKeyParams, mut results: stratos_schema::om_capnp::ozone_manager::LookupKeyResults,
    ) -> impl Future<Output = Result<(), capnp::Error>> + 'static {
        let answer = (|| -> capnp::Result<()> {
            let p = params.get()?;
            self.record("lookupKey", p.get_header())?;
            let mut e = results.get().init_error();
            e.set_status(stratos_schema::om_capnp::Status::KeyNotFound);
            e.set_message(format!("{} not found", p.get_key()?.to_str()?).as_str());
            Ok(())
        })();
        std::future::ready(answer)
    }
}

/// Serves `om` to every connection `listener` accepts, each driven by a local task.
async fn serve(listener: tokio::net::TcpListener, om: stratos_schema::om_capnp::ozone_manager::Client) {
    use capnp_rpc::{RpcSystem, rpc_twoparty_capnp, twoparty};
    use futures_util::io::AsyncReadExt;
    use tokio_util::compat::TokioAsyncReadCompatExt;
    while let Ok((stream, _)) = listener.accept().await {
        let (reader, writer) = stream.compat().split();
        let network = twoparty::VatNetwork::new(reader, writer, rpc_twoparty_capnp::Side::Server, Default::default());
        let rpc = RpcSystem::new(Box::new(network), Some(om.clone().client));
        tokio::task::spawn_local(async move {
            let _ = rpc.await;
        });
    }
}

#[test]
fn a_client_session_over_tokio_answers_typed_values_and_retries() {
    let calls = Rc::new(RefCell::new(Vec::new()));
    let recorded = calls.clone();
    let (volume, elapsed, missing) = on_tokio(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let om: stratos_schema::om_capnp::ozone_manager::Client = capnp_rpc::new_client(StandIn { unavailable: Cell::new(2), calls: recorded });
        tokio::task::spawn_local(serve(listener, om));
        let c = crate::Client::connect_on(Rc::new(Tokio), &addr, "alice").await.expect("connect");
        let start = Instant::now();
        let volume = c.volume_info("vol1").await.expect("answered on the third attempt");
        let elapsed = start.elapsed();
        let missing = c.lookup_key("vol1", "bkt", "nope").await.expect_err("the stand-in knows no key");
        (volume, elapsed, missing)
    });
    assert_eq!(volume.name, "vol1");
    assert_eq!(volume.owner, "alice");
    assert_eq!((volume.quota_bytes, volume.quota_namespace, volume.buckets), (None, Some(100), 2));
    assert_eq!(volume.metadata, vec![("team".to_string(), "storage".to_string())]);
    assert!(elapsed >= Duration::from_millis(150), "two backoffs (50 + 100 ms) on tokio's clock, took {elapsed:?}");
    assert_eq!(missing.status(), Some(crate::Status::KeyNotFound), "{missing}");
    assert!(missing.to_string().starts_with("KEY_NOT_FOUND: nope not found"), "{missing}");
    let calls = calls.borrow();
    let alice = |what: &'static str| (what, "alice".to_string());
    assert_eq!(*calls, vec![alice("volumeInfo"), alice("volumeInfo"), alice("volumeInfo"), alice("lookupKey")], "unavailable is retried, not found is not");
}
