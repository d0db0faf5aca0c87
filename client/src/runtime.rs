//! The async runtime a [`Client`](crate::Client) runs on: the three things the client needs from
//! it, and two implementations.
//!
//! The client needs only to dial a TCP address, to run the Cap'n Proto connection's driver as a
//! background task on the current thread, and to sleep (retry backoff, the datanode call
//! timeout). [`Runtime`] is exactly that, as a trait object: a [`Client`](crate::Client) holds
//! an `Rc<dyn Runtime>` and the rest of the client's API stays free of type parameters. The cost
//! is one boxed future per dial, per sleep and per spawned connection driver, which is nothing
//! next to the network round trip each of them stands for.
//!
//! Everything here is single-threaded: capnp-rpc's capabilities are `!Send`, so the connection
//! driver must run on the thread that made it, and every future the client returns is `!Send`.
//!
//! - [`Glommio`] (feature `glommio`, on by default): for a glommio executor, what the `stratos`
//!   binary, its benchmarks and its tests use.
//! - [`Tokio`] (feature `tokio`): for a tokio runtime with its IO and time drivers on
//!   (`#[tokio::main]`, or a `Builder` with `enable_all()`), and only inside a
//!   [`tokio::task::LocalSet`]: the connection driver is started with
//!   [`tokio::task::spawn_local`], which panics outside one.
//!
//! Another runtime (smol, async-std, a test simulator) needs only its own implementation of the
//! trait.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use futures_util::io::{AsyncRead, AsyncWrite};

/// A boxed future that stays on the thread that polls it (no `Send` bound).
pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T> + 'static>>;

/// A byte stream (a TCP connection) in the `futures` IO traits, which capnp-rpc reads and
/// writes. Implemented for every type that has the traits.
pub trait ByteStream: AsyncRead + AsyncWrite + 'static {}

impl<T: AsyncRead + AsyncWrite + 'static> ByteStream for T {}

/// A connection as a runtime dials it.
pub type Connection = Pin<Box<dyn ByteStream>>;

/// What the client needs from an async runtime. Every method is called on the thread (and
/// inside the executor) that runs the client; the futures returned are polled there too.
pub trait Runtime: std::fmt::Debug {
    /// Dials `addr` (`host:port`; a host name is resolved) with `TCP_NODELAY` set: requests are
    /// small and latency-bound. The error's message is shown to users as the reason a node
    /// cannot be reached.
    fn connect(&self, addr: &str) -> LocalFuture<io::Result<Connection>>;

    /// Runs `task` to completion in the background on the current thread; nobody waits for it
    /// (it is a connection's driver, which ends when the connection does).
    fn spawn_local(&self, task: LocalFuture<()>);

    /// A future that completes after `duration`. It may be created before the sleep should
    /// start, so the clock starts at the first poll, not at the call.
    fn sleep(&self, duration: Duration) -> LocalFuture<()>;
}

/// `what`, or `late()` if `after` passes first by `runtime`'s clock: the one deadline every
/// client call, connect and datanode call goes through.
pub async fn or_after<T>(runtime: &dyn Runtime, after: Duration, what: impl Future<Output = T>, late: impl FnOnce() -> T) -> T {
    futures_lite::future::or(what, async {
        runtime.sleep(after).await;
        late()
    })
    .await
}

/// Runs on the glommio executor of the current thread. Every call panics outside one.
#[cfg(feature = "glommio")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Glommio;

#[cfg(feature = "glommio")]
impl Runtime for Glommio {
    fn connect(&self, addr: &str) -> LocalFuture<io::Result<Connection>> {
        let addr = addr.to_string();
        Box::pin(async move {
            // glommio's own message (which the CLI has always printed), with the kind of the
            // underlying IO error kept.
            let glommio_error = |e: glommio::GlommioError<()>| {
                let message = e.to_string();
                io::Error::new(io::Error::from(e).kind(), message)
            };
            let stream = glommio::net::TcpStream::connect(addr.as_str()).await.map_err(glommio_error)?;
            // A socket option; the connection works without it (only slower).
            let _ = stream.set_nodelay(true);
            Ok(Box::pin(stream) as Connection)
        })
    }

    fn spawn_local(&self, task: LocalFuture<()>) {
        glommio::spawn_local(task).detach();
    }

    fn sleep(&self, duration: Duration) -> LocalFuture<()> {
        Box::pin(glommio::timer::sleep(duration))
    }
}

/// Runs on the current tokio runtime, inside a [`tokio::task::LocalSet`].
///
/// The runtime must have its IO and time drivers on (`#[tokio::main]` and
/// `Builder::enable_all()` do). The client's futures are `!Send`: run them with
/// `LocalSet::run_until` or `LocalSet::block_on`, or in a task of `tokio::task::spawn_local`.
/// Connecting outside a `LocalSet` panics (in `tokio::task::spawn_local`).
///
/// ```no_run
/// # async fn example() -> Result<(), stratos_client::ClientError> {
/// use std::rc::Rc;
/// let local = tokio::task::LocalSet::new();
/// local
///     .run_until(async {
///         let client = stratos_client::Client::connect_on(Rc::new(stratos_client::runtime::Tokio), "127.0.0.1:9862", "root").await?;
///         let volume = client.volume_info("vol1").await?;
///         println!("{} is owned by {}", volume.name, volume.owner);
///         Ok(())
///     })
///     .await
/// # }
/// ```
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

#[cfg(feature = "tokio")]
impl Runtime for Tokio {
    fn connect(&self, addr: &str) -> LocalFuture<io::Result<Connection>> {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let addr = addr.to_string();
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr.as_str()).await?;
            // A socket option; the connection works without it (only slower).
            let _ = stream.set_nodelay(true);
            Ok(Box::pin(stream.compat()) as Connection)
        })
    }

    fn spawn_local(&self, task: LocalFuture<()>) {
        // Dropping the handle detaches the task.
        drop(tokio::task::spawn_local(task));
    }

    fn sleep(&self, duration: Duration) -> LocalFuture<()> {
        // `tokio::time::sleep` reads the clock when called: wrapped, it starts at the first poll.
        Box::pin(async move { tokio::time::sleep(duration).await })
    }
}

#[cfg(all(test, feature = "tokio"))]
#[path = "runtime_tokio_test.rs"]
mod tokio_tests;

#[cfg(all(test, feature = "glommio"))]
mod glommio_tests {
    use std::time::{Duration, Instant};

    use super::{Glommio, Runtime};

    fn on_glommio<T: Send + 'static, F: Future<Output = T> + 'static>(f: impl FnOnce() -> F + Send + 'static) -> T {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(1 << 20).spawn(move || async move { f().await }).expect("executor").join().expect("join")
    }

    #[test]
    fn a_closed_port_is_a_connect_error_with_glommio_s_message() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("address").to_string();
        drop(l);
        let a = addr.clone();
        let e = on_glommio(move || async move { crate::connect_rpc::<stratos_schema::om_capnp::ozone_manager::Client>(&a).await.map(|_| ()).map_err(|e| e.to_string()) }).expect_err("nothing listens there");
        // As the CLI printed it before the runtime abstraction: glommio's words, then the OS's.
        assert!(e.starts_with(&format!("cannot reach {addr}: IO error occurred: ")) && e.contains("refused"), "{e}");
    }

    #[test]
    fn sleep_and_spawn_run_on_the_executor() {
        let (slept, ran) = on_glommio(|| async {
            let flag = std::rc::Rc::new(std::cell::Cell::new(false));
            let f = flag.clone();
            Glommio.spawn_local(Box::pin(async move { f.set(true) }));
            let start = Instant::now();
            Glommio.sleep(Duration::from_millis(20)).await;
            (start.elapsed(), flag.get())
        });
        assert!(slept >= Duration::from_millis(20), "{slept:?}");
        assert!(ran, "the spawned task ran while the caller slept");
    }
}
