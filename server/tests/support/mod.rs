//! What the end-to-end tests that start `stratos` processes share: a process on OS-chosen
//! ports, known by its `ready` line and killed when dropped; the cluster CA of secured suites.
#![allow(dead_code)] // not every suite uses all of it

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_stratos");
/// The domain under which test gateways take virtual-hosted-style requests (`--domain`;
/// reserved by RFC 2606, so no real host answers it: clients resolve it to 127.0.0.1).
#[allow(dead_code)]
pub const S3_DOMAIN: &str = "s3.stratos.test";

pub struct Proc {
    pub child: Child,
    pub line: String,
}

impl Proc {
    pub fn start(args: &[&str]) -> Proc {
        let mut child = Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start stratos");
        let line = first_line(&mut child, &format!("{args:?}"));
        assert!(line.contains("ready"), "{args:?}: no ready line: {line:?}");
        Proc { child, line }
    }

    pub fn word_after(&self, w: &str) -> String {
        self.line.split_whitespace().skip_while(|x| *x != w).nth(1).unwrap_or_else(|| panic!("no {w} in {:?}", self.line)).to_string()
    }

    /// Kills the process as kill -9 does (no clean stop) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// How long a process may take to print its first line (its `ready` line) before the test
/// gives up on it. A node starts in a second or two; minutes mean it is stuck, and a read
/// without a bound would hang the whole suite (CI then stops at its limit without saying which
/// test held it).
pub const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(120);

/// The first line `child` prints on its piped stdout ("" when it closed stdout without one),
/// read within [`READY_WITHIN`]; past that the child is killed and the test fails naming
/// `what`. The rest of its stdout is drained, so it never blocks on a full pipe.
pub fn first_line(child: &mut Child, what: &str) -> String {
    let stdout = child.stdout.take().expect("a piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let read = reader.read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    match rx.recv_timeout(READY_WITHIN) {
        Ok(read) => read.expect("reading its stdout"),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: printed no line within {READY_WITHIN:?}; killed it");
        }
    }
}

/// `child`'s exit status, within `within`: past that it is killed and the test fails naming
/// `what` (a wait without a bound would hang the whole suite).
pub fn exit_within(child: &mut Child, what: &str, within: std::time::Duration) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not stop within {within:?}; killed it");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// SIGTERM to `child`, then [`exit_within`].
pub fn sigterm_and_wait(child: &mut Child, what: &str, within: std::time::Duration) -> std::process::ExitStatus {
    // SAFETY: a signal to our own child, not yet reaped (its pid is still its own).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    exit_within(child, &format!("{what}, sent SIGTERM,"), within)
}

/// How long a Cap'n Proto call awaited by a test may go unanswered ([`answered`]).
pub const CALL_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// `call`'s output, or an error if it has none within [`CALL_WITHIN`]: a call a test awaits, to a
/// node that neither answers nor closes, must not hold the suite for ever. On a glommio
/// executor.
pub async fn answered<T>(call: impl std::future::Future<Output = T>) -> Result<T, String> {
    glommio::timer::timeout(CALL_WITHIN, async { Ok(call.await) }).await.map_err(|_| format!("no answer within {CALL_WITHIN:?}"))
}

/// What `r` yields until its end or for `within`, whichever comes first: for the stderr of a
/// process whose children may hold it open after it is gone.
pub fn text_within(mut r: impl std::io::Read + Send + 'static, within: std::time::Duration) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = r.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + within;
    let mut text = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(chunk) => text.extend(chunk),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// `stratos sh --om OM --user root ARGS`: whether it succeeded, its stdout and its stderr.
#[allow(dead_code)] // not every test binary drives the CLI
pub fn sh(om: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).arg("sh").args(["--om", om, "--user", "root"]).args(args).output().expect("run stratos sh");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// [`sh`] as root with root's certificate, against a secured node ([`Proc::secured`]).
#[allow(dead_code)]
pub fn sh_secured(om: &str, args: &[&str]) -> (bool, String, String) {
    let out = Tls::get().stratos().arg("sh").args(["--om", om]).args(args).output().expect("run stratos sh");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `n` bytes that look random and are the same for the same `seed` (xorshift64), for files
/// whose every byte must come back.
pub fn pseudo_random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The test process's cluster CA and certificates (issue 20: the suites run secured, as
/// `stratos dev` does by default). One CA per test process, in `CARGO_TARGET_TMPDIR`, so that
/// the in-process clients (one TLS configuration per process: `tls::set_client`) trust every
/// node of every test; certificates are issued on first use by name and reused.
#[allow(dead_code)] // not every test binary runs secured
pub struct Tls {
    dir: std::path::PathBuf,
    issuing: std::sync::Mutex<()>,
}

#[allow(dead_code)]
impl Tls {
    /// The process's CA (made on first use); the directories of test processes that ended are
    /// removed then, so that runs leave nothing behind but the last.
    pub fn get() -> &'static Tls {
        static TLS: std::sync::OnceLock<Tls> = std::sync::OnceLock::new();
        TLS.get_or_init(|| {
            let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
            for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("tls-").and_then(|p| p.parse::<u32>().ok())
                    && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
            let dir = base.join(format!("tls-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            stratos_common::tls::ca_init(&dir, 30).expect("a test CA");
            let tls = Tls { dir, issuing: std::sync::Mutex::new(()) };
            // In-process clients call as root.
            let root = tls.files(stratos_common::tls::Role::User, "root");
            stratos_common::tls::set_client(Some(stratos_common::tls::client_config(&root).expect("root's client configuration")));
            tls
        })
    }

    /// The files of `name`'s certificate (role `role`, hosts 127.0.0.1 and localhost, and a
    /// gateway's [`S3_DOMAIN`] and its subdomains), issued if need be.
    pub fn files(&self, role: stratos_common::tls::Role, name: &str) -> stratos_common::tls::Files {
        let _one_at_a_time = self.issuing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let files = stratos_common::tls::Files::in_dir(&self.dir, name);
        if !files.cert.exists() {
            let mut req = stratos_common::tls::Request::new(role, name, 30);
            if role != stratos_common::tls::Role::User {
                req.hosts = vec!["127.0.0.1".into(), "localhost".into()];
            }
            if role == stratos_common::tls::Role::S3g {
                req.hosts.extend([S3_DOMAIN.to_string(), format!("*.{S3_DOMAIN}")]);
            }
            stratos_common::tls::issue(&self.dir, &self.dir, &req).expect("issue a test certificate");
        }
        files
    }

    /// A blocking TLS connection to `addr` with root's certificate (raw bytes, HTTPS).
    pub fn connect(&self, addr: &str) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
        self.try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    /// [`Tls::connect`], or why not (nothing listens there).
    pub fn try_connect(&self, addr: &str) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
        let config = stratos_common::tls::client_config(&self.files(stratos_common::tls::Role::User, "root")).expect("root's client configuration");
        let name = stratos_common::tls::server_name(addr).expect("a server name");
        let conn = rustls::ClientConnection::new(config, name).expect("a TLS client");
        let tcp = std::net::TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        Ok(rustls::StreamOwned::new(conn, tcp))
    }

    /// A new certificate for `name` in `out` (a reissue: a new key, the same identity), as
    /// `stratos admin cert issue --out OUT` makes it; its files.
    pub fn reissue(&self, role: stratos_common::tls::Role, name: &str, out: &Path) -> stratos_common::tls::Files {
        let mut req = stratos_common::tls::Request::new(role, name, 30);
        req.hosts = vec!["127.0.0.1".into(), "localhost".into()];
        let (cert, key) = stratos_common::tls::issue(&self.dir, out, &req).expect("reissue a certificate");
        stratos_common::tls::Files { ca: self.dir.join("ca.pem"), cert, key }
    }

    /// A node's `--tls-ca`, `--tls-cert`, `--tls-key`.
    pub fn flags(&self, role: stratos_common::tls::Role, name: &str) -> Vec<String> {
        let f = self.files(role, name);
        vec!["--tls-ca".into(), s(&f.ca).into(), "--tls-cert".into(), s(&f.cert).into(), "--tls-key".into(), s(&f.key).into()]
    }

    /// `stratos` with the environment of root's certificate (`sh`, `admin`, `bench`).
    pub fn stratos(&self) -> Command {
        let f = self.files(stratos_common::tls::Role::User, "root");
        let mut c = Command::new(BIN);
        c.env("STRATOS_CA", &f.ca).env("STRATOS_CERT", &f.cert).env("STRATOS_KEY", &f.key);
        c
    }

    /// The TLS flags for a server process started with `args` (`om`, `scm`, `datanode`): its
    /// certificate named after its node id or data directory (each datanode needs its own).
    pub fn flags_for(&self, args: &[&str]) -> Vec<String> {
        use stratos_common::tls::Role;
        let after = |flag: &str| args.iter().position(|a| *a == flag).and_then(|i| args.get(i + 1)).copied();
        match args.first().copied() {
            Some("om") => self.flags(Role::Om, &format!("om-{}", after("--node-id").unwrap_or("1"))),
            Some("scm") => self.flags(Role::Scm, "scm"),
            Some("s3g") => self.flags(Role::S3g, "s3g"),
            Some("datanode") => {
                // The data directory's path names the datanode: a restart keeps its certificate.
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                after("--data-dir").unwrap_or("").hash(&mut h);
                self.flags(Role::Datanode, &format!("dn-{:016x}", h.finish()))
            }
            _ => Vec::new(),
        }
    }
}

#[allow(dead_code)]
impl Proc {
    /// [`Proc::start`] of a server process with its TLS flags ([`Tls::flags_for`]).
    pub fn secured(args: &[&str]) -> Proc {
        let flags = Tls::get().flags_for(args);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(flags.iter().map(String::as_str));
        Proc::start(&all)
    }
}

/// A port free now, never handed out before in this process, and outside the kernel's
/// ephemeral range, for a node that must come back on the same address after a restart (its
/// peers and clients know it by that address).
///
/// A port the kernel handed to a bind to port 0 lies in `ip_local_port_range`, the range every
/// outgoing connection also takes its local port from: while a node was down, a client's
/// connection once took its RPC port, and the restarted node failed with "Address already in
/// use" (a rolling restart in CI). Below that range only explicit binds take ports. The tests
/// of one binary run in parallel threads (hence the set of ports given), and other test
/// binaries may run beside this one (hence a start drawn from the process id and the clock,
/// and a bind to check the port is free now).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok().and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u16>().ok())).unwrap_or(32768);
    // Ports from 10000 up to the ephemeral range; with an unusual range (below 12000) the
    // kernel's own choice, as before.
    if low < 12000 {
        loop {
            let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
            let mut given = GIVEN.lock().expect("lock");
            if !given.contains(&port) {
                given.push(port);
                return port;
            }
        }
    }
    let span = u32::from(low - 10000);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos()) ^ std::process::id().wrapping_mul(2_654_435_761);
    let mut given = GIVEN.lock().expect("lock");
    for step in 0..span {
        // A stride coprime with most spans walks the range from the seed.
        let port = 10000 + ((seed.wrapping_add(step.wrapping_mul(7919))) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port between 10000 and {low}");
}
