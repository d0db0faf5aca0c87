//! `stratos`: one binary for every role, mirroring the `ozone` command.
//!
//! Roles: `om` (an OM node), `scm`, `datanode`, `dev` (a local cluster in one command: SCM,
//! datanodes and an OM), `sh` (the client shell), `admin`, `bench` and `tune`.
//!
//! This crate only parses commands and starts roles: each role's flags live in its own crate
//! beside the code they drive (`stratos_om::args`, `stratos_scm::args`,
//! `stratos_datanode::args`, `stratos_bench::cli`, `stratos_tuning::cli`, `stratos_client::sh`).

mod alloc;
mod dev;

use clap::{Parser, Subcommand};

// mimalloc: ~15–20% more pipelined RPC throughput than glibc malloc on this host class
// (../shared/FINDINGS.md), and smaller per-key overhead for the memtable's one-allocation entries.
// Called through `alloc::MiMalloc`, which keeps word-aligned layouts off mimalloc's aligned path.
#[global_allocator]
static GLOBAL: alloc::MiMalloc = alloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "stratos", version, about = "Stratos: a thread-per-core, Raft-replicated namespace server for an object store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an OM node (Ozone Manager): the namespace service, on one executor per core.
    Om(Box<stratos_om::args::OmArgs>),
    /// Run the SCM (Storage Container Manager): datanode registry, pipelines, containers, block
    /// allocation, block-token keys, deleted blocks.
    Scm(stratos_scm::args::ScmArgs),
    /// Run a datanode: stores block data, checks block tokens, registers with the SCM.
    Datanode(stratos_datanode::args::DatanodeArgs),
    /// Run a local cluster (an SCM and --datanodes datanodes as child processes, and an OM) in a
    /// data directory (default: a temp dir); prints a line with `ready` and the addresses when
    /// it serves; Ctrl-C stops it cleanly.
    Dev(dev::DevArgs),
    /// The client shell, in `ozone sh` forms: `stratos sh volume create /vol1`, …
    Sh(stratos_client::sh::ShArgs),
    /// Run the S3 gateway (Ozone's s3g, port 9878): the S3 REST API over the OM and the
    /// datanodes, for boto3, the AWS CLI and other S3 tools. Keys come from `stratos s3 getsecret`.
    S3g(stratos_s3g::server::S3gArgs),
    /// S3 credentials, in `ozone s3` forms: `stratos s3 getsecret`, `stratos s3 revokesecret`.
    S3(stratos_client::sh::S3Args),
    /// Cluster administration: `status` (every group's leader, term, commit and applied index,
    /// replica lag), `transfer GROUP NODE` (move a group's leadership), `add` and `remove`
    /// (membership changes).
    Admin(stratos_client::admin::AdminArgs),
    /// Measure Stratos; every figure is a median over --runs runs.
    #[command(subcommand)]
    Bench(stratos_bench::cli::Bench),
    /// Probe this host (cores, isolated CPUs, NUMA, memlock, io_uring, the data directory's file
    /// system and fdatasync latency) and print a recommended OM configuration, with the reason
    /// for each value and warnings where Stratos cannot keep its promises.
    Tune(stratos_tuning::cli::TuneArgs),
}

/// A ready line's last word, ` status ADDR`, where the role serves a status port (`stratos
/// dev` and the tests read it by that word).
fn status_word(status: Option<std::net::SocketAddr>) -> String {
    status.map(|s| format!(" status {s}")).unwrap_or_default()
}

/// The end of a node's ready line: whether its links are secured. A node without TLS says so
/// on stderr too: it believes whoever reaches its ports.
fn security(tls: bool) -> &'static str {
    if tls {
        "TLS"
    } else {
        eprintln!("warning: no TLS (--tls-ca, --tls-cert, --tls-key): this node believes the user a request names and speaks in clear; for measurement or a closed test network only");
        "insecure"
    }
}

/// Runs one `stratos sh` (or `stratos s3`) command and prints what it says.
fn sh(a: stratos_client::sh::ShArgs) -> anyhow::Result<()> {
    match on_client_executor(move || async move { stratos_client::sh::run(&a).await })? {
        Ok(text) => text.iter().for_each(|t| print_out(&format!("{t}\n"))),
        Err(line) => fail(&line),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Om(a) => {
            let c = a.config()?;
            let tls = security(c.tls_ca.is_some());
            stratos_om::node::run(&c, |r| {
                println!("stratos om ready: rpc {} http {} ({}) {tls}", r.rpc, r.http.map_or_else(|| "off".to_string(), |h| h.to_string()), r.layout());
            })?;
            eprintln!("stratos om: stopped cleanly");
        }
        Command::Dev(a) => dev::dev(a)?,
        Command::Scm(a) => {
            let c = a.config()?;
            let tls = security(c.tls.is_some());
            stratos_scm::run(c, move |r| {
                println!("stratos scm ready: rpc {} {tls}{}", r.rpc, status_word(r.status));
            })?;
            eprintln!("stratos scm: stopped cleanly");
        }
        Command::Datanode(a) => {
            let c = a.config()?;
            let tls = security(c.tls.is_some());
            stratos_datanode::run(c, move |r| {
                println!("stratos datanode ready: rpc {} id {} {tls}{}", r.rpc, r.id, status_word(r.status));
            })?;
            eprintln!("stratos datanode: stopped cleanly");
        }
        Command::S3g(a) => {
            stratos_s3g::server::run(&a, |r| {
                let tls = security(r.tls);
                let scheme = if r.https { "https" } else { "http" };
                println!("stratos s3g ready: {scheme}://{} om {} cores {} {tls}{}", r.address, a.om, r.cores, status_word(r.status));
            })?;
            eprintln!("stratos s3g: stopped cleanly");
        }
        Command::S3(a) => sh(a.into_sh())?,
        Command::Sh(a) => sh(a)?,
        Command::Admin(a) => match on_client_executor(move || async move { stratos_client::admin::run(&a).await })? {
            Ok(text) => print_out(&text),
            Err(line) => fail(&format!("stratos admin: {line}")),
        },
        Command::Bench(b) => stratos_bench::cli::run(b)?,
        Command::Tune(a) => print_out(&stratos_tuning::cli::tune(&a)?),
    }
    Ok(())
}

/// Runs a client command on a fresh (unpinned) glommio executor.
fn on_client_executor<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(f: impl FnOnce() -> F + Send + 'static) -> anyhow::Result<T> {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move { f().await })
        .map_err(|e| anyhow::anyhow!("starting the client executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("client executor: {e}"))
}

/// A client command's output. A closed standard output (`| head`) is a normal end of the
/// command, not a panic ("failed printing to stdout").
fn print_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => fail(&format!("stratos: writing to standard output: {e}")),
    }
}

/// A client command's failure: one line on stderr, exit status 1, or 128 + the signal's number
/// when Ctrl-C or SIGTERM stopped it (what a shell expects of a job stopped by a signal).
fn fail(line: &str) -> ! {
    use std::io::Write;
    // Not eprintln!: a full or closed stderr (2>/dev/full) must not turn a failure into a panic.
    let _ = writeln!(std::io::stderr(), "{line}");
    std::process::exit(stratos_client::interrupt::signal().map_or(1, |s| 128 + s))
}
