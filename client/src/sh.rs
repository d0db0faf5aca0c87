//! `stratos sh`: the `ozone sh` forms. Info and list print JSON; a failure prints one line on
//! stderr and exits non-zero. The OM's address comes from an `o3://host:port/…` path, else
//! `--om host:port`, else `STRATOS_OM`, else 127.0.0.1:9862.
//!
//! The JSON is made here, from the client's typed values ([`volume_json`], [`bucket_json`],
//! [`key_json`]), with Ozone's field names where they exist. Scripts and the end-to-end tests
//! parse it: a field's name, type (number or string) and place stay as they are.

use std::rc::Rc;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use stratos_schema::om_capnp;

use crate::{BucketInfo, Client, ClientError, KeyInfo, Runtime, VolumeInfo};

pub const DEFAULT_OM: &str = "127.0.0.1:9862";

#[derive(Debug, Args)]
pub struct ShArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: ShCommand,
}

/// How `sh` and `s3` reach the cluster.
#[derive(Debug, Args, Clone)]
pub struct ConnArgs {
    /// The OM to talk to: host[:port] (port 9862 by default), or several, comma-separated, for a
    /// cluster. Overrides STRATOS_OM; an o3://host[:port]/… path overrides it.
    #[arg(long, global = true)]
    pub om: Option<String>,
    /// Act as this user (default: $USER, else root).
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Give a call up after this many seconds, retries and failover included. One attempt
    /// waits at most 10 s for an answer; a node that does not answer is failed over like a
    /// dead one.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum ShCommand {
    /// Volumes: create, info, list (ls), update, setquota, clrquota, delete. Paths: /volume or
    /// o3://host[:port]/volume.
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Buckets: create, info, list (ls), update, setquota, clrquota, delete, getacl, setacl,
    /// addacl, removeacl. Paths:
    /// /volume/bucket or o3://host[:port]/volume/bucket.
    #[command(subcommand)]
    Bucket(BucketCmd),
    /// Keys: put, get, cat, info, list (ls), rename, delete, getacl, setacl, addacl, removeacl.
    /// Paths: /volume/bucket/key or
    /// o3://host[:port]/volume/bucket/key.
    #[command(subcommand)]
    Key(KeyCmd),
    /// S3 credentials for the S3 gateway (Ozone's `ozone s3`): getsecret, revokesecret. Also
    /// `stratos s3 getsecret`.
    #[command(subcommand)]
    S3(S3Cmd),
}

/// `stratos s3 …` (Ozone's `ozone s3`): the `sh s3` commands with the same connection flags.
#[derive(Debug, Args)]
pub struct S3Args {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: S3Cmd,
}

impl S3Args {
    pub fn into_sh(self) -> ShArgs {
        ShArgs { conn: self.conn, command: ShCommand::S3(self.command) }
    }
}

#[derive(Debug, Subcommand)]
pub enum S3Cmd {
    /// Prints the caller's S3 access key and secret (awsAccessKey=…, awsSecret=…), made on
    /// first use and the same after, until revoked. An administrator may name another user.
    Getsecret {
        /// Another user's (administrators only) [default: the caller].
        #[arg(long, short = 'u')]
        username: Option<String>,
    },
    /// Forgets the caller's S3 secret: requests signed with it are refused from now on; the
    /// next getsecret makes a new one.
    Revokesecret {
        /// Another user's (administrators only) [default: the caller].
        #[arg(long, short = 'u')]
        username: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume: /vol (administrators only).
    Create {
        path: String,
        /// Owner (default: the caller). Ozone's `volume create --user U` is `--owner U` (or
        /// `-u U`) here: `--user` names who runs the command.
        #[arg(long = "owner", short = 'u')]
        owner: Option<String>,
        /// Byte quota (replicated bytes, as Ozone counts), e.g. 10GB [default: none].
        #[arg(long, visible_alias = "space-quota", allow_hyphen_values = true)]
        quota: Option<String>,
        /// Bucket count quota [default: none].
        #[arg(long = "namespace-quota", allow_hyphen_values = true)]
        namespace_quota: Option<String>,
    },
    /// Show /volume as JSON (owner, quotas, usage, ACLs).
    Info { path: String },
    /// List volumes (all, or the user's with --owner). PATH is only read for its o3://host:port.
    #[command(visible_alias = "ls")]
    List {
        path: Option<String>,
        /// Only this user's volumes.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        page: ListArgs,
    },
    /// Change the owner or quotas.
    Update {
        path: String,
        /// The new owner.
        #[arg(long = "owner", short = 'u')]
        owner: Option<String>,
        /// Byte quota, e.g. 10GB; -1 removes it (as `clrquota`).
        #[arg(long, visible_alias = "space-quota", allow_hyphen_values = true)]
        quota: Option<String>,
        /// Bucket count quota; -1 removes it.
        #[arg(long = "namespace-quota", allow_hyphen_values = true)]
        namespace_quota: Option<String>,
    },
    /// Set quotas (Ozone's `volume setquota`): --space-quota, --namespace-quota.
    Setquota {
        path: String,
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// Remove quotas (Ozone's `volume clrquota`): --space-quota, --namespace-quota.
    Clrquota {
        path: String,
        #[command(flatten)]
        which: ClearQuota,
    },
    /// Delete /volume (it must hold no buckets).
    Delete { path: String },
}

/// New quotas (setquota).
#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// Byte quota, e.g. 10GB (replicated bytes, as Ozone counts); -1 removes it.
    #[arg(long = "space-quota", visible_alias = "quota", allow_hyphen_values = true)]
    pub space: Option<String>,
    /// Key (bucket) or bucket (volume) count quota; -1 removes it.
    #[arg(long = "namespace-quota", allow_hyphen_values = true)]
    pub namespace: Option<String>,
}

/// Which quotas to remove (clrquota).
#[derive(Debug, Args)]
pub struct ClearQuota {
    #[arg(long = "space-quota")]
    pub space: bool,
    #[arg(long = "namespace-quota")]
    pub namespace: bool,
}

impl ClearQuota {
    /// The wire values: unlimited (`u64::MAX`) for each quota named, 0 (unchanged) for the other.
    fn wire(&self, what: &str) -> Result<(u64, u64), String> {
        if !self.space && !self.namespace {
            return Err(format!("{what} clrquota: give --space-quota, --namespace-quota or both"));
        }
        let w = |on: bool| if on { u64::MAX } else { 0 };
        Ok((w(self.space), w(self.namespace)))
    }
}

impl QuotaArgs {
    /// The wire values of a setquota (see [`wire_quotas`]); one of the two must be given.
    fn wire(&self, what: &str) -> Result<(u64, u64), String> {
        if self.space.is_none() && self.namespace.is_none() {
            return Err(format!("{what} setquota: give --space-quota, --namespace-quota or both"));
        }
        wire_quotas(self.space.as_deref(), self.namespace.as_deref(), false)
    }
}

/// The byte and namespace quota flags on the wire (see [`wire_quota`]).
fn wire_quotas(space: Option<&str>, namespace: Option<&str>, create: bool) -> Result<(u64, u64), String> {
    Ok((wire_quota(space, true, create)?, wire_quota(namespace, false, create)?))
}

/// A quota flag on the wire. `create`: 0 is unlimited; on an update 0 is unchanged and
/// `u64::MAX` removes the quota (om.capnp). `-1` (Ozone's "unlimited") removes it.
fn wire_quota(v: Option<&str>, bytes: bool, create: bool) -> Result<u64, String> {
    let Some(v) = v.map(str::trim) else { return Ok(0) };
    if v == "-1" {
        return Ok(if create { 0 } else { u64::MAX });
    }
    if bytes {
        return parse_size(v);
    }
    match v.parse::<u64>() {
        Ok(0) => Err("a namespace quota of 0 would refuse everything; -1 or `clrquota --namespace-quota` removes a quota".into()),
        Ok(n) if n < u64::MAX => Ok(n),
        _ => Err(format!("invalid namespace quota {v:?}: a count of at least 1, or -1 for none")),
    }
}

#[derive(Debug, Subcommand)]
pub enum BucketCmd {
    /// Create a bucket: /vol/bucket.
    Create {
        path: String,
        /// ONE or THREE [default: THREE] (Ozone's -r); RATIS/ONE and RATIS/THREE also work.
        #[arg(long, short = 'r')]
        replication: Option<String>,
        /// Replication type: RATIS, the only one (Ozone's EC is not supported). RATIS/ONE and
        /// RATIS/THREE are taken here too, as before.
        #[arg(long = "type", short = 't')]
        replication_type: Option<String>,
        /// Bucket layout: OBJECT_STORE, the only one (flat key names; `/` is an ordinary
        /// character). Ozone's FILE_SYSTEM_OPTIMIZED and LEGACY are not supported.
        #[arg(long)]
        layout: Option<String>,
        /// Byte quota (replicated bytes, as Ozone counts), e.g. 10GB [default: none].
        #[arg(long, visible_alias = "space-quota", allow_hyphen_values = true)]
        quota: Option<String>,
        /// Key count quota [default: none].
        #[arg(long = "namespace-quota", allow_hyphen_values = true)]
        namespace_quota: Option<String>,
        /// Record that the bucket is versioned (stored; an overwrite still replaces).
        #[arg(long)]
        versioning: bool,
    },
    /// Show /volume/bucket as JSON (owner, replication, quotas, usage, ACLs).
    Info { path: String },
    /// List the buckets of /vol.
    #[command(visible_alias = "ls")]
    List {
        path: String,
        #[command(flatten)]
        page: ListArgs,
    },
    /// Change a bucket's owner, quotas, versioning or replication.
    Update {
        path: String,
        /// The new owner.
        #[arg(long)]
        owner: Option<String>,
        /// Byte quota, e.g. 10GB; -1 removes it (as `clrquota`).
        #[arg(long, visible_alias = "space-quota", allow_hyphen_values = true)]
        quota: Option<String>,
        /// Key count quota; -1 removes it.
        #[arg(long = "namespace-quota", allow_hyphen_values = true)]
        namespace_quota: Option<String>,
        /// true or false.
        #[arg(long)]
        versioning: Option<bool>,
        /// For keys written from now on: ONE or THREE (RATIS/ONE, RATIS/THREE).
        #[arg(long)]
        replication: Option<String>,
    },
    /// Set quotas (Ozone's `bucket setquota`): --space-quota, --namespace-quota.
    Setquota {
        path: String,
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// Remove quotas (Ozone's `bucket clrquota`): --space-quota, --namespace-quota.
    Clrquota {
        path: String,
        #[command(flatten)]
        which: ClearQuota,
    },
    /// Delete /volume/bucket (it must hold no keys).
    Delete { path: String },
    /// Show /volume/bucket's ACL entries as JSON (Ozone's `bucket getacl`).
    Getacl { path: String },
    /// Replace /volume/bucket's ACL entries (Ozone's `bucket setacl`): the bucket's owner, its
    /// volume's owner or admin, an administrator, or a holder of WRITE_ACL on it.
    Setacl {
        path: String,
        #[command(flatten)]
        acls: AclArgs,
    },
    /// Grant rights on /volume/bucket (Ozone's `bucket addacl`): each entry's rights are added
    /// to its grantee's entry (or a new one); other entries stay. Applied by the OM, so racing
    /// edits both count. Needs what setacl needs.
    Addacl(AclChange),
    /// Take rights on /volume/bucket away (Ozone's `bucket removeacl`): each entry's rights are
    /// removed from its grantee's entry, which goes when it has none left.
    Removeacl(AclChange),
}

/// A path and the ACL entries to add there or remove (addacl, removeacl).
#[derive(Debug, Args)]
pub struct AclChange {
    pub path: String,
    #[command(flatten)]
    pub acls: AclArgs,
}

/// ACL entries as Ozone's shell writes them.
#[derive(Debug, Args)]
pub struct AclArgs {
    /// Comma-separated `TYPE:NAME:RIGHTS` (Ozone's form): TYPE user, group or world (whose NAME
    /// is empty: `world::r`); RIGHTS letters r READ, w WRITE, c CREATE, l LIST, d DELETE,
    /// x READ_ACL, y WRITE_ACL, a ALL, n NONE. Example: `user:bob:rl,world::l`. For setacl an
    /// empty list removes every entry; addacl and removeacl need at least one.
    #[arg(long = "acls", visible_alias = "acl", short = 'a', allow_hyphen_values = true)]
    pub acls: String,
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Write FILE as /vol/bucket/key: its bytes go to the datanodes, then the key is committed.
    /// FILE `-` is standard input; pipes, FIFOs and devices are streamed to their end. Ctrl-C
    /// or a failure aborts the open key (its blocks are freed at once).
    Put {
        path: String,
        file: std::path::PathBuf,
        /// ONE or THREE [default: the bucket's] (Ozone's -r); RATIS/ONE, RATIS/THREE also work.
        #[arg(long, short = 'r')]
        replication: Option<String>,
        /// Replication type: RATIS, the only one (Ozone's EC is not supported).
        #[arg(long = "type", short = 't')]
        replication_type: Option<String>,
    },
    /// Read /vol/bucket/key into OUT. A regular file is written under a temporary name and
    /// renamed when complete; an existing one is kept unless --force. OUT `-` is standard
    /// output; a device or FIFO is written into; a directory gets the key's last name in it.
    Get {
        path: String,
        out: std::path::PathBuf,
        /// Replace OUT if it exists (Ozone's `key get --force`).
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Write the bytes of /vol/bucket/key to standard output.
    Cat { path: String },
    /// Show /volume/bucket/key as JSON (size, replication, blocks, metadata).
    Info { path: String },
    /// List the keys of /vol/bucket.
    #[command(visible_alias = "ls")]
    List {
        path: String,
        #[command(flatten)]
        page: ListArgs,
    },
    /// Rename a key within its bucket: `rename /vol/bucket/FROM TO`, or Ozone's
    /// `rename /vol/bucket FROM TO`.
    Rename {
        path: String,
        #[arg(num_args = 1..=2, required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Delete /volume/bucket/key (its blocks are freed on the datanodes).
    Delete { path: String },
    /// Show /volume/bucket/key's own ACL entries as JSON (Ozone's `key getacl`; its bucket's
    /// apply too: `bucket getacl`). Needs READ_ACL on the key or its bucket, as Ozone's.
    Getacl { path: String },
    /// Replace /volume/bucket/key's own ACL entries (Ozone's `key setacl`). They may grant READ,
    /// READ_ACL and WRITE_ACL of this key to callers without them on its bucket; setting them
    /// needs WRITE_ACL on the bucket or in the key's own entries. An overwrite of the key
    /// starts with none.
    Setacl {
        path: String,
        #[command(flatten)]
        acls: AclArgs,
    },
    /// Grant rights on /volume/bucket/key (Ozone's `key addacl`): each entry's rights are added
    /// to its grantee's entry of the key's own (or a new one). Needs what setacl needs.
    Addacl(AclChange),
    /// Take rights on /volume/bucket/key away (Ozone's `key removeacl`) from the key's own
    /// entries; its bucket's entries are not touched.
    Removeacl(AclChange),
}

/// The paging flags of every `list` (Ozone's names and short forms).
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only names starting with this.
    #[arg(long, short = 'p', default_value = "")]
    pub prefix: String,
    /// List after this name (the continuation token a truncated listing prints).
    #[arg(long, short = 's', default_value = "")]
    pub start: String,
    /// At most this many entries (a listing that stops here says so on stderr).
    #[arg(long, short = 'l', visible_alias = "length", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Every entry, page by page (overrides --limit).
    #[arg(long, short = 'a')]
    pub all: bool,
}

/// Entries per call of a `list --all` (the OM's per-call maximum is 10,000).
const LIST_ALL_PAGE: u32 = 1000;

/// A parsed `[o3://host:port]/vol[/bucket[/key]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub om: Option<String>,
    pub parts: Vec<String>,
}

pub fn parse_address(s: &str) -> Result<Address, String> {
    let scheme_end = s.find("://").filter(|i| !s[..*i].contains('/'));
    let (om, path) = match scheme_end {
        Some(i) if s[..i].eq_ignore_ascii_case("o3") => {
            let rest = &s[i + 3..];
            let slash = rest.find('/').unwrap_or(rest.len());
            let host = &rest[..slash];
            // Without a port (Ozone's `o3://host/vol`): the OM's default one.
            ((!host.is_empty()).then(|| host.split(',').map(with_default_port).collect::<Vec<_>>().join(",")), &rest[slash..])
        }
        Some(i) => return Err(format!("{s}: unknown scheme {}:// (stratos sh takes o3://host[:port]/volume/bucket/key or /volume/bucket/key)", &s[..i])),
        None => (None, s),
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    // `/vol/` and `/vol/bucket/` as Ozone users type them; in `/vol/bucket/key/` the slash is
    // the key's.
    let path = match path.strip_suffix('/') {
        Some(p) if p.matches('/').count() <= 1 => p,
        _ => path,
    };
    // A key may contain '/', so split into at most three parts.
    let parts: Vec<String> = if path.is_empty() { vec![] } else { path.splitn(3, '/').map(str::to_string).collect() };
    if parts.iter().any(String::is_empty) {
        return Err(format!("{s}: empty path component"));
    }
    Ok(Address { om, parts })
}

fn parts(s: &str, n: usize, form: &str) -> Result<(Address, Vec<String>), String> {
    let a = parse_address(s)?;
    if a.parts.len() != n {
        return Err(format!("{s}: expected {form}"));
    }
    let p = a.parts.clone();
    Ok((a, p))
}

/// Parses sizes like 1024, 10KB, 5MB, 2GB, 1TB, 1PB, 7EB (powers of 1024, as Ozone).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_uppercase();
    let (num, mult) = [("EB", 1u64 << 60), ("PB", 1 << 50), ("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)]
        .iter()
        .find_map(|(suf, m)| t.strip_suffix(suf).map(|n| (n.to_string(), *m)))
        .unwrap_or((t.clone(), 1));
    let n: u64 = num.trim().parse().map_err(|_| format!("invalid size {s:?}: a whole number of B, KB, MB, GB, TB, PB or EB (powers of 1024), e.g. 1024, 10MB, 2GB"))?;
    // At most 2^63 - 1, Ozone's `long`: u64::MAX is "no quota" on the wire and must not be
    // reachable by a size (it silently cleared the quota).
    match n.checked_mul(mult) {
        Some(0) => Err(format!("size {s:?} is zero; a quota must be at least 1 byte (-1 or clrquota removes one)")),
        Some(v) if v <= i64::MAX as u64 => Ok(v),
        _ => Err(format!("size {s:?} is too large (at most {} bytes, 8 EiB)", i64::MAX)),
    }
}

/// A replication from Ozone's two flags: `-r` (ONE, THREE, or RATIS/…) and `-t` (RATIS, or
/// RATIS/… as this CLI took before).
fn replication_of(replication: Option<&str>, kind: Option<&str>) -> Result<Option<om_capnp::Replication>, String> {
    if let Some(k) = kind {
        let upper = k.to_ascii_uppercase();
        if upper.contains('/') {
            if replication.is_some() {
                return Err(format!("--type {k} names the replication already; drop --replication"));
            }
            return parse_replication(k).map(Some);
        }
        if upper != "RATIS" {
            return Err(format!("replication type {k:?} is not supported: RATIS is the only one (no EC)"));
        }
    }
    replication.map(parse_replication).transpose()
}

fn parse_replication(s: &str) -> Result<om_capnp::Replication, String> {
    match s.to_ascii_uppercase().as_str() {
        "RATIS/ONE" | "ONE" | "1" => Ok(om_capnp::Replication::RatisOne),
        "RATIS/THREE" | "THREE" | "3" => Ok(om_capnp::Replication::RatisThree),
        _ => Err(format!("unknown replication {s:?}: RATIS/ONE or RATIS/THREE")),
    }
}

/// What a command printed, or why it failed (one line).
pub type Outcome = Result<Option<String>, String>;

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn err(e: ClientError) -> String {
    e.to_string()
}

/// The OM address a command uses.
pub fn om_address(args: &ShArgs, path: Option<&str>) -> String {
    let given = path.and_then(|p| parse_address(p).ok()).and_then(|a| a.om).or_else(|| args.conn.om.clone()).or_else(|| crate::env_nonempty("STRATOS_OM"));
    given.map_or_else(|| DEFAULT_OM.to_string(), |list| list.split(',').map(|a| with_default_port(a.trim())).collect::<Vec<_>>().join(","))
}

/// `host` or `host:port` (IPv6 in brackets), with the OM's default port when none is given.
fn with_default_port(host: &str) -> String {
    let has_port = match host.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => host.contains(':'),
    };
    if has_port || host.is_empty() { host.to_string() } else { format!("{host}:{}", DEFAULT_OM.rsplit(':').next().unwrap_or("9862")) }
}

fn first_path(c: &ShCommand) -> Option<&str> {
    match c {
        ShCommand::Volume(v) => match v {
            VolumeCmd::Create { path, .. }
            | VolumeCmd::Info { path }
            | VolumeCmd::Update { path, .. }
            | VolumeCmd::Setquota { path, .. }
            | VolumeCmd::Clrquota { path, .. }
            | VolumeCmd::Delete { path } => Some(path),
            VolumeCmd::List { path, .. } => path.as_deref(),
        },
        ShCommand::Bucket(b) => match b {
            BucketCmd::Create { path, .. }
            | BucketCmd::Info { path }
            | BucketCmd::List { path, .. }
            | BucketCmd::Update { path, .. }
            | BucketCmd::Setquota { path, .. }
            | BucketCmd::Clrquota { path, .. }
            | BucketCmd::Delete { path }
            | BucketCmd::Getacl { path }
            | BucketCmd::Setacl { path, .. }
            | BucketCmd::Addacl(AclChange { path, .. })
            | BucketCmd::Removeacl(AclChange { path, .. }) => Some(path),
        },
        ShCommand::Key(k) => match k {
            KeyCmd::Put { path, .. }
            | KeyCmd::Get { path, .. }
            | KeyCmd::Cat { path }
            | KeyCmd::Info { path }
            | KeyCmd::List { path, .. }
            | KeyCmd::Rename { path, .. }
            | KeyCmd::Delete { path }
            | KeyCmd::Getacl { path }
            | KeyCmd::Setacl { path, .. }
            | KeyCmd::Addacl(AclChange { path, .. })
            | KeyCmd::Removeacl(AclChange { path, .. }) => Some(path),
        },
        ShCommand::S3(_) => None,
    }
}

/// The path form a command takes (parts, and how to say it), where it has one fixed form.
fn path_form(c: &ShCommand) -> Option<(usize, &'static str)> {
    match c {
        ShCommand::Volume(VolumeCmd::List { .. }) => None,
        ShCommand::Volume(_) | ShCommand::Bucket(BucketCmd::List { .. }) => Some((1, "/volume")),
        ShCommand::Bucket(_) | ShCommand::Key(KeyCmd::List { .. }) => Some((2, "/volume/bucket")),
        // `key rename` takes /volume/bucket/from or Ozone's /volume/bucket FROM TO.
        ShCommand::Key(KeyCmd::Rename { .. }) => None,
        ShCommand::Key(_) => Some((3, "/volume/bucket/key")),
        ShCommand::S3(_) => None,
    }
}

/// Runs one `stratos sh` command on a glommio executor; returns what to print. Boxed, so that
/// the command's future is compiled here, once, and not again in each crate that polls it.
#[cfg(feature = "glommio")]
pub fn run(args: &ShArgs) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + '_>> {
    Box::pin(run_on(Rc::new(crate::runtime::Glommio), args))
}

/// Runs one `stratos sh` command on `runtime`; returns what to print.
pub async fn run_on(runtime: Rc<dyn Runtime>, args: &ShArgs) -> Outcome {
    let user = args.conn.user.clone().or_else(|| crate::env_nonempty("USER")).unwrap_or_else(|| "root".into());
    // A mistyped path is told at once, not after connecting (or failing to).
    if let Some(path) = first_path(&args.command) {
        match path_form(&args.command) {
            Some((n, form)) => {
                parts(path, n, form)?;
            }
            None => {
                parse_address(path)?;
            }
        }
    }
    // So is a mistyped ACL.
    match &args.command {
        ShCommand::Bucket(BucketCmd::Setacl { acls, .. }) | ShCommand::Key(KeyCmd::Setacl { acls, .. }) => {
            parse_acls(&acls.acls)?;
        }
        ShCommand::Bucket(BucketCmd::Addacl(AclChange { acls, .. }) | BucketCmd::Removeacl(AclChange { acls, .. }))
        | ShCommand::Key(KeyCmd::Addacl(AclChange { acls, .. }) | KeyCmd::Removeacl(AclChange { acls, .. })) => {
            edit_entries(&acls.acls)?;
        }
        _ => {}
    }
    crate::tls::use_client_env().map_err(|e| e.to_string())?;
    let addr = om_address(args, first_path(&args.command));
    let c = Client::connect_on(runtime, &addr, &user).await.map_err(err)?;
    c.set_call_deadline(std::time::Duration::from_secs(args.conn.timeout));
    match &args.command {
        ShCommand::Volume(v) => volume(&c, &user, v).await,
        ShCommand::Bucket(b) => bucket(&c, b).await,
        ShCommand::Key(k) => key(&c, k).await,
        ShCommand::S3(s) => s3(&c, s).await,
    }
}

/// `s3 getsecret` and `s3 revokesecret`. No user named: the caller (the server resolves it: with
/// TLS, the certificate's user, whatever `--user` says).
async fn s3(c: &Client, cmd: &S3Cmd) -> Outcome {
    match cmd {
        S3Cmd::Getsecret { username } => {
            let done = c.submit(|op| op.init_get_s3_secret().set_access_id(username.as_deref().unwrap_or(""))).await.map_err(err)?;
            match done {
                crate::Done::S3Secret { access_id, secret } => Ok(Some(format!("awsAccessKey={access_id}\nawsSecret={secret}"))),
                other => Err(format!("the OM answered {other:?}, not a secret")),
            }
        }
        S3Cmd::Revokesecret { username } => {
            c.submit(|op| op.init_revoke_s3_secret().set_access_id(username.as_deref().unwrap_or(""))).await.map_err(err)?;
            Ok(Some("S3 secret revoked".into()))
        }
    }
}

fn list_json<T>(items: &[T], json: impl Fn(&T) -> Value) -> Option<String> {
    Some(pretty(&Value::Array(items.iter().map(json).collect())))
}

/// One page (with a note on stderr when more follow), or with --all every page, printed as one
/// JSON array as the pages come (a listing of millions is never held whole).
async fn listing<T: crate::Named>(
    args: &ListArgs, what: &str, json: impl Fn(&T) -> Value, mut fetch: impl AsyncFnMut(&str, u32) -> Result<crate::Page<T>, ClientError>,
) -> Outcome {
    if !args.all {
        let page = fetch(&args.start, args.limit).await.map_err(err)?;
        if let Some(next) = page.next_start() {
            let prefix = if args.prefix.is_empty() { String::new() } else { format!(" (with --prefix {:?})", args.prefix) };
            eprintln!("stratos: listed {} {what}; more follow: add --start {next:?}{prefix} for the next page, or --all", page.items.len());
        }
        return Ok(list_json(&page.items, json));
    }
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut start = args.start.clone();
    let mut first = true;
    let r: std::io::Result<()> = async {
        w.write_all(b"[")?;
        loop {
            let page = fetch(&start, LIST_ALL_PAGE).await.map_err(|e| std::io::Error::other(err(e)))?;
            for item in &page.items {
                let text = pretty(&json(item)).replace('\n', "\n  ");
                write!(w, "{}\n  {text}", if first { "" } else { "," })?;
                first = false;
            }
            match page.next_start() {
                Some(next) => start = next.to_string(),
                None => break,
            }
        }
        w.write_all(if first { b"]\n" } else { b"\n]\n" })?;
        w.flush()
    }
    .await;
    match r {
        Ok(()) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// A quota as Ozone prints it: -1 for unlimited.
fn quota_json(q: Option<u64>) -> Value {
    match q {
        None => json!(-1),
        Some(q) => json!(q),
    }
}

fn metadata_json(pairs: &[(String, String)]) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in pairs {
        m.insert(k.clone(), Value::String(v.clone()));
    }
    Value::Object(m)
}

/// The (year, month, day) of a day number (days since 1970-01-01), by Howard Hinnant's
/// algorithm: exact for every day an i64 of seconds can name.
pub fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Milliseconds since the epoch as ISO-8601 in UTC (`2026-12-02T12:00:00.000Z`), as Ozone
/// prints times.
pub fn iso_time(ms: u64) -> String {
    let (days, rest) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    let (year, month, day) = civil_date(days);
    let (h, m, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// ACLs as Ozone prints them.
fn acls_json(acls: &[crate::AclEntry]) -> Value {
    Value::Array(
        acls.iter()
            .map(|a| {
                let kind = match a.kind {
                    crate::AclKind::User => "USER",
                    crate::AclKind::Group => "GROUP",
                    crate::AclKind::World => "WORLD",
                };
                json!({"type": kind, "name": a.name, "aclScope": "ACCESS", "aclList": a.right_names()})
            })
            .collect(),
    )
}

/// Adds `…Iso` beside each epoch-milliseconds time field of `v`.
fn with_iso_times(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        for f in ["creationTime", "modificationTime"] {
            if let Some(ms) = m.get(f).and_then(Value::as_u64) {
                m.insert(format!("{f}Iso"), Value::String(iso_time(ms)));
            }
        }
    }
    v
}

/// A volume as `volume info` and `volume list` print it.
pub fn volume_json(v: &VolumeInfo) -> Value {
    with_iso_times(json!({
        "name": v.name, "owner": v.owner, "admin": v.admin,
        "creationTime": v.created_ms, "modificationTime": v.modified_ms,
        "quotaInBytes": quota_json(v.quota_bytes), "quotaInNamespace": quota_json(v.quota_namespace),
        "usedBytes": v.used_bytes, "usedNamespace": v.buckets, "objectID": v.object_id,
        "updateID": v.update_id, "acls": acls_json(&v.acls), "metadata": metadata_json(&v.metadata),
    }))
}

/// A bucket as `bucket info` and `bucket list` print it.
pub fn bucket_json(b: &BucketInfo) -> Value {
    with_iso_times(json!({
        "volumeName": b.volume, "name": b.name, "owner": b.owner,
        "creationTime": b.created_ms, "modificationTime": b.modified_ms,
        "versioning": b.versioning, "replication": b.replication.name(),
        "quotaInBytes": quota_json(b.quota_bytes), "quotaInNamespace": quota_json(b.quota_namespace),
        "usedBytes": b.used_bytes, "usedNamespace": b.keys, "openKeys": b.open_keys,
        "bucketLayout": b.layout(), "objectID": b.object_id, "updateID": b.update_id,
        "acls": acls_json(&b.acls), "metadata": metadata_json(&b.metadata),
    }))
}

/// A key as `key info` and `key list` print it: its blocks' places and lengths, without their
/// tokens and datanodes.
pub fn key_json(k: &KeyInfo) -> Value {
    let blocks: Vec<Value> = k.blocks.iter().map(|b| json!({"containerID": b.container_id, "localID": b.local_id, "pipelineID": b.pipeline_id, "length": b.length})).collect();
    with_iso_times(json!({
        "volumeName": k.volume, "bucketName": k.bucket, "name": k.name,
        "dataSize": k.data_size, "replication": k.replication.name(),
        "creationTime": k.created_ms, "modificationTime": k.modified_ms,
        "objectID": k.object_id, "updateID": k.update_id, "blocks": blocks,
        "metadata": metadata_json(&k.metadata),
    }))
}

async fn volume(c: &Client, user: &str, cmd: &VolumeCmd) -> Outcome {
    match cmd {
        VolumeCmd::Create { path, owner, quota, namespace_quota } => {
            let (_, p) = parts(path, 1, "/volume")?;
            let (quota, namespace_quota) = wire_quotas(quota.as_deref(), namespace_quota.as_deref(), true)?;
            let owner = owner.clone().unwrap_or_else(|| user.to_string());
            c.submit(|op| {
                let mut g = op.init_create_volume();
                g.set_volume(p[0].as_str());
                g.set_owner(owner.as_str());
                g.set_quota_bytes(quota);
                g.set_quota_namespace(namespace_quota);
            })
            .await
            .map_err(err)?;
            Ok(None)
        }
        VolumeCmd::Info { path } => {
            let (_, p) = parts(path, 1, "/volume")?;
            Ok(Some(pretty(&volume_json(&c.volume_info(&p[0]).await.map_err(err)?))))
        }
        VolumeCmd::List { path: _, owner, page } => {
            let owner = owner.as_deref().unwrap_or("");
            listing(page, "volumes", volume_json, async |start, limit| c.list_volumes(owner, &page.prefix, start, limit).await).await
        }
        VolumeCmd::Update { path, owner, quota, namespace_quota } => {
            let (_, p) = parts(path, 1, "/volume")?;
            if owner.is_none() && quota.is_none() && namespace_quota.is_none() {
                return Err("volume update: give --owner, --quota or --namespace-quota".into());
            }
            if let Some(o) = owner {
                c.submit(|op| {
                    let mut g = op.init_set_volume_owner();
                    g.set_volume(p[0].as_str());
                    g.set_owner(o.as_str());
                })
                .await
                .map_err(err)?;
            }
            if quota.is_some() || namespace_quota.is_some() {
                set_volume_quota(c, &p[0], wire_quotas(quota.as_deref(), namespace_quota.as_deref(), false)?).await?;
            }
            Ok(None)
        }
        VolumeCmd::Setquota { path, quota } => {
            let (_, p) = parts(path, 1, "/volume")?;
            set_volume_quota(c, &p[0], quota.wire("volume")?).await
        }
        VolumeCmd::Clrquota { path, which } => {
            let (_, p) = parts(path, 1, "/volume")?;
            set_volume_quota(c, &p[0], which.wire("volume")?).await
        }
        VolumeCmd::Delete { path } => {
            let (_, p) = parts(path, 1, "/volume")?;
            c.submit(|op| op.init_delete_volume().set_volume(p[0].as_str())).await.map_err(err)?;
            Ok(None)
        }
    }
}

/// `setVolumeQuota` with wire values (0 unchanged, `u64::MAX` none).
async fn set_volume_quota(c: &Client, volume: &str, (bytes, namespace): (u64, u64)) -> Outcome {
    c.submit(|op| {
        let mut g = op.init_set_volume_quota();
        g.set_volume(volume);
        g.set_quota_bytes(bytes);
        g.set_quota_namespace(namespace);
    })
    .await
    .map_err(err)?;
    Ok(None)
}

/// `setBucketProperty`: what is `None` (and a 0 quota) stays as it is.
async fn set_bucket_property(
    c: &Client, p: &[String], owner: Option<&str>, versioning: Option<bool>, replication: Option<om_capnp::Replication>, (bytes, namespace): (u64, u64),
) -> Outcome {
    c.submit(|op| {
        let mut g = op.init_set_bucket_property();
        g.set_volume(p[0].as_str());
        g.set_bucket(p[1].as_str());
        g.set_owner(owner.unwrap_or(""));
        g.set_versioning(match versioning {
            None => om_capnp::Tristate::Unchanged,
            Some(false) => om_capnp::Tristate::No,
            Some(true) => om_capnp::Tristate::Yes,
        });
        match replication {
            Some(r) => g.reborrow().init_replication().set_some(r),
            None => g.reborrow().init_replication().set_none(()),
        }
        g.set_quota_bytes(bytes);
        g.set_quota_namespace(namespace);
    })
    .await
    .map_err(err)?;
    Ok(None)
}

async fn bucket(c: &Client, cmd: &BucketCmd) -> Outcome {
    match cmd {
        BucketCmd::Create { path, replication, replication_type, layout, quota, namespace_quota, versioning } => {
            let (_, p) = parts(path, 2, "/volume/bucket")?;
            let r = replication_of(replication.as_deref(), replication_type.as_deref())?.unwrap_or(om_capnp::Replication::RatisThree);
            if let Some(l) = layout
                && !l.eq_ignore_ascii_case(crate::BucketInfo::LAYOUT)
            {
                return Err(format!("bucket layout {l}: not supported; Stratos buckets are OBJECT_STORE (flat key names)"));
            }
            let (q, nq) = wire_quotas(quota.as_deref(), namespace_quota.as_deref(), true)?;
            c.submit(|op| {
                let mut g = op.init_create_bucket();
                g.set_volume(p[0].as_str());
                g.set_bucket(p[1].as_str());
                g.set_replication(r);
                g.set_versioning(*versioning);
                g.set_quota_bytes(q);
                g.set_quota_namespace(nq);
            })
            .await
            .map_err(err)?;
            Ok(None)
        }
        BucketCmd::Info { path } => {
            let (_, p) = parts(path, 2, "/volume/bucket")?;
            Ok(Some(pretty(&bucket_json(&c.bucket_info(&p[0], &p[1]).await.map_err(err)?))))
        }
        BucketCmd::List { path, page } => {
            let (_, p) = parts(path, 1, "/volume")?;
            listing(page, "buckets", bucket_json, async |start, limit| c.list_buckets(&p[0], &page.prefix, start, limit).await).await
        }
        BucketCmd::Update { path, owner, quota, namespace_quota, versioning, replication } => {
            let (_, p) = parts(path, 2, "/volume/bucket")?;
            let quotas = wire_quotas(quota.as_deref(), namespace_quota.as_deref(), false)?;
            let r = replication.as_deref().map(parse_replication).transpose()?;
            if owner.is_none() && quota.is_none() && namespace_quota.is_none() && versioning.is_none() && r.is_none() {
                return Err("bucket update: give --owner, --quota, --namespace-quota, --versioning or --replication".into());
            }
            set_bucket_property(c, &p, owner.as_deref(), *versioning, r, quotas).await
        }
        BucketCmd::Setquota { path, quota } => {
            let (_, p) = parts(path, 2, "/volume/bucket")?;
            set_bucket_property(c, &p, None, None, None, quota.wire("bucket")?).await
        }
        BucketCmd::Clrquota { path, which } => {
            let (_, p) = parts(path, 2, "/volume/bucket")?;
            set_bucket_property(c, &p, None, None, None, which.wire("bucket")?).await
        }
        BucketCmd::Delete { path } => {
            let (_, p) = parts(path, 2, "/volume/bucket")?;
            c.submit(|op| {
                let mut g = op.init_delete_bucket();
                g.set_volume(p[0].as_str());
                g.set_bucket(p[1].as_str());
            })
            .await
            .map_err(err)?;
            Ok(None)
        }
        BucketCmd::Getacl { path } => {
            let (_, p) = parts(path, 2, "/volume/bucket")?;
            Ok(Some(pretty(&acls_json(&c.bucket_info(&p[0], &p[1]).await.map_err(err)?.acls))))
        }
        BucketCmd::Setacl { path, acls } => {
            let (_, p) = parts(path, 2, "/volume/bucket")?;
            set_acls(c, &p[0], &p[1], "", &parse_acls(&acls.acls)?).await
        }
        BucketCmd::Addacl(change) => edit_acls(c, change, 2, "/volume/bucket", true).await,
        BucketCmd::Removeacl(change) => edit_acls(c, change, 2, "/volume/bucket", false).await,
    }
}

/// Replaces the ACL entries of a bucket (`key` empty) or of a key.
async fn set_acls(c: &Client, volume: &str, bucket: &str, key: &str, acls: &[crate::AclEntry]) -> Outcome {
    c.submit(|op| {
        let mut g = op.init_set_acls();
        g.set_volume(volume);
        g.set_bucket(bucket);
        g.set_key(key);
        crate::AclEntry::write_all(g.init_acls(acls.len() as u32), acls);
    })
    .await
    .map_err(err)?;
    Ok(None)
}

/// addacl (`adding`) or removeacl of a bucket or a key (a path of `n` parts, as `form`): the OM
/// applies the edit.
async fn edit_acls(c: &Client, change: &AclChange, n: usize, form: &str, adding: bool) -> Outcome {
    let (_, p) = parts(&change.path, n, form)?;
    let entries = edit_entries(&change.acls.acls)?;
    let (add, remove): (&[crate::AclEntry], &[crate::AclEntry]) = if adding { (&entries, &[]) } else { (&[], &entries) };
    c.submit(|op| {
        let mut g = op.init_edit_acls();
        g.set_volume(p[0].as_str());
        g.set_bucket(p[1].as_str());
        g.set_key(p.get(2).map_or("", String::as_str));
        crate::AclEntry::write_all(g.reborrow().init_add(add.len() as u32), add);
        crate::AclEntry::write_all(g.init_remove(remove.len() as u32), remove);
    })
    .await
    .map_err(err)?;
    Ok(None)
}

/// The entries of an addacl or removeacl: as setacl's, but at least one (an empty list there
/// would change nothing, where setacl's removes every entry).
fn edit_entries(s: &str) -> Result<Vec<crate::AclEntry>, String> {
    let e = parse_acls(s)?;
    if e.is_empty() {
        return Err("no ACL entry given (-a TYPE:NAME:RIGHTS, e.g. -a user:bob:r)".into());
    }
    Ok(e)
}

/// ACL entries in Ozone's shell form: `user:bob:rw,group:ops:r,world::l` (an `[ACCESS]` scope
/// after the rights is taken; `[DEFAULT]`, inherited ACLs, is not supported).
pub fn parse_acls(s: &str) -> Result<Vec<crate::AclEntry>, String> {
    const LETTERS: [(char, u16); 9] = [('r', 1), ('w', 2), ('c', 4), ('l', 8), ('d', 16), ('x', 32), ('y', 64), ('a', 127), ('n', 0)];
    let mut out: Vec<crate::AclEntry> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let bad = |why: &str| format!("ACL entry {item:?}: {why} (TYPE:NAME:RIGHTS, e.g. user:bob:rw or world::r)");
        let mut f = item.splitn(3, ':');
        let (Some(kind), Some(name), Some(rights)) = (f.next(), f.next(), f.next()) else { return Err(bad("three fields")) };
        let rights = rights.strip_suffix("[ACCESS]").unwrap_or(rights);
        if rights.ends_with(']') {
            return Err(bad("only ACCESS ACLs (DEFAULT ones, inherited by new keys, are not supported)"));
        }
        let kind = match kind.to_ascii_lowercase().as_str() {
            "user" => crate::AclKind::User,
            "group" => crate::AclKind::Group,
            "world" => crate::AclKind::World,
            other => return Err(bad(&format!("type {other:?} is not user, group or world"))),
        };
        match (kind, name.is_empty()) {
            (crate::AclKind::World, false) => return Err(bad("a world entry names nobody: world::RIGHTS")),
            (crate::AclKind::User | crate::AclKind::Group, true) => return Err(bad("a user or group entry needs a name")),
            _ => {}
        }
        let mut bits = 0u16;
        for ch in rights.chars() {
            bits |= LETTERS.iter().find(|(l, _)| *l == ch.to_ascii_lowercase()).map(|(_, b)| *b).ok_or_else(|| bad(&format!("right {ch:?} is none of r w c l d x y a n")))?;
        }
        match out.iter_mut().find(|e| e.kind == kind && e.name == name) {
            Some(e) => e.rights |= bits,
            None => out.push(crate::AclEntry { kind, name: name.to_string(), rights: bits }),
        }
    }
    Ok(out)
}

async fn key(c: &Client, cmd: &KeyCmd) -> Outcome {
    match cmd {
        KeyCmd::Put { path, file, replication, replication_type } => {
            let (_, p) = parts(path, 3, "/volume/bucket/key")?;
            let replication = replication_of(replication.as_deref(), replication_type.as_deref())?;
            let mut dns = crate::data::Datanodes::new(c.runtime().clone());
            let mut progress = crate::data::terminal_progress("put");
            crate::interrupt::install();
            let src = crate::data::open_source(file).map_err(|e| e.to_string())?;
            let opts = crate::data::PutOptions { replication };
            crate::data::put_with(c, &mut dns, &p[0], &p[1], &p[2], &*src, &opts, &mut progress).await.map_err(|e| e.to_string())?;
            Ok(None)
        }
        KeyCmd::Get { path, out, force } => {
            let (_, p) = parts(path, 3, "/volume/bucket/key")?;
            crate::interrupt::install();
            get_into(c, &p, out, *force).await
        }
        KeyCmd::Cat { path } => {
            let (_, p) = parts(path, 3, "/volume/bucket/key")?;
            to_stdout(c, &p).await
        }
        KeyCmd::Info { path } => {
            let (_, p) = parts(path, 3, "/volume/bucket/key")?;
            Ok(Some(pretty(&key_json(&c.lookup_key(&p[0], &p[1], &p[2]).await.map_err(err)?))))
        }
        KeyCmd::List { path, page } => {
            let (_, p) = parts(path, 2, "/volume/bucket")?;
            listing(page, "keys", key_json, async |start, limit| c.list_keys(&p[0], &p[1], &page.prefix, start, limit).await).await
        }
        KeyCmd::Rename { path, names } => {
            let a = parse_address(path)?;
            let (p, from, to) = match (a.parts.len(), names.as_slice()) {
                (3, [to]) => (&a.parts[..2], a.parts[2].as_str(), to),
                (2, [from, to]) => (&a.parts[..], from.as_str(), to),
                _ => return Err(format!("key rename {path} {}: give /volume/bucket/FROM TO, or /volume/bucket FROM TO", names.join(" "))),
            };
            c.submit(|op| {
                let mut g = op.init_rename_key();
                g.set_volume(p[0].as_str());
                g.set_bucket(p[1].as_str());
                g.set_from(from);
                g.set_to(to.as_str());
            })
            .await
            .map_err(err)?;
            Ok(None)
        }
        KeyCmd::Delete { path } => {
            let (_, p) = parts(path, 3, "/volume/bucket/key")?;
            c.submit(|op| {
                let mut g = op.init_delete_key();
                g.set_volume(p[0].as_str());
                g.set_bucket(p[1].as_str());
                g.set_key(p[2].as_str());
            })
            .await
            .map_err(err)?;
            Ok(None)
        }
        KeyCmd::Getacl { path } => {
            let (_, p) = parts(path, 3, "/volume/bucket/key")?;
            Ok(Some(pretty(&acls_json(&c.lookup_key_acl(&p[0], &p[1], &p[2]).await.map_err(err)?.acls))))
        }
        KeyCmd::Setacl { path, acls } => {
            let (_, p) = parts(path, 3, "/volume/bucket/key")?;
            set_acls(c, &p[0], &p[1], &p[2], &parse_acls(&acls.acls)?).await
        }
        KeyCmd::Addacl(change) => edit_acls(c, change, 3, "/volume/bucket/key", true).await,
        KeyCmd::Removeacl(change) => edit_acls(c, change, 3, "/volume/bucket/key", false).await,
    }
}

/// Whether an error is a closed standard output (`| head`): a normal end, not a failure.
fn closed_pipe(e: &crate::data::DataError) -> bool {
    matches!(e, crate::data::DataError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// `key cat`, and `key get … -`.
async fn to_stdout(c: &Client, p: &[String]) -> Outcome {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut dns = crate::data::Datanodes::new(c.runtime().clone());
    match crate::data::get_key(c, &mut dns, &p[0], &p[1], &p[2], &mut w, &mut |_| {}).await {
        Err(e) if closed_pipe(&e) => return Ok(None),
        r => r.map_err(|e| e.to_string())?,
    };
    match w.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(None),
        r => r.map(|_| None).map_err(|e| format!("standard output: {e}")),
    }
}

/// Where `key get` writes.
enum Destination {
    /// A regular file: written to `tmp` in its directory, then renamed to `path` (over an
    /// existing file only with --force).
    File { path: std::path::PathBuf, tmp: std::path::PathBuf, replace: bool },
    /// A device or FIFO, opened for writing as it is (never replaced by a file).
    Special { path: std::path::PathBuf, file: std::fs::File },
}

fn destination(out: &std::path::Path, key: &str, force: bool) -> Result<Destination, String> {
    let mut out = out.to_path_buf();
    let mut meta = std::fs::metadata(&out);
    if meta.as_ref().is_ok_and(|m| m.is_dir()) {
        // As `cp`: into the directory, under the key's last name.
        let name = key.rsplit('/').find(|n| !n.is_empty()).unwrap_or(key);
        out.push(name);
        meta = std::fs::metadata(&out);
    }
    let shown = out.display().to_string();
    let (path, replace) = match meta {
        Ok(m) if m.is_dir() => return Err(format!("{shown} is a directory")),
        Ok(m) if m.is_file() => {
            if !force {
                return Err(format!("{shown} exists; use --force to replace it"));
            }
            // Through a symbolic link: the file it names is replaced; the link stays.
            (std::fs::canonicalize(&out).map_err(|e| format!("{shown}: {e}"))?, true)
        }
        Ok(_) => {
            let file = std::fs::OpenOptions::new().write(true).open(&out).map_err(|e| format!("{shown}: {e}"))?;
            return Ok(Destination::Special { path: out, file });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(dir) = parent.filter(|d| !d.is_dir()) {
                return Err(format!("{shown}: directory {} does not exist", dir.display()));
            }
            if std::fs::symlink_metadata(&out).is_ok() {
                return Err(format!("{shown} is a symbolic link to nothing; remove it or name its target"));
            }
            (out, false)
        }
        Err(e) => return Err(format!("{shown}: {e}")),
    };
    let name = path.file_name().map_or("out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.stratos-part"));
    Ok(Destination::File { path, tmp, replace })
}

/// Renames `from` to `to` unless `to` exists (then `AlreadyExists`), atomically where the file
/// system supports `RENAME_NOREPLACE`: a file that appeared since the check is never replaced.
fn rename_noreplace(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &std::path::Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths, relative to the working directory.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::RENAME_NOREPLACE) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        return Err(e);
    }
    // A file system without RENAME_NOREPLACE: check, then rename (a small window remains).
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(std::io::ErrorKind::AlreadyExists.into());
    }
    std::fs::rename(from, to)
}

/// `key get`: see [`KeyCmd::Get`]. Ctrl-C or a failure removes the partial file.
async fn get_into(c: &Client, p: &[String], out: &std::path::Path, force: bool) -> Outcome {
    use std::io::Write;
    // `/dev/stdout` is standard output too: through its link it would otherwise be a regular
    // file to replace (`get -f K /dev/stdout >> log` replaced the log instead of appending).
    if ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"].iter().any(|s| out.as_os_str() == *s) {
        return to_stdout(c, p).await;
    }
    let mut dns = crate::data::Datanodes::new(c.runtime().clone());
    let mut progress = crate::data::terminal_progress("get");
    let runtime = &**c.runtime();
    let interrupted = || Err("interrupted".to_string());
    match destination(out, &p[2], force)? {
        Destination::Special { path, file } => {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let get = async {
                crate::data::get_key(c, &mut dns, &p[0], &p[1], &p[2], &mut w, &mut progress).await.map_err(|e| e.to_string())?;
                w.flush().map_err(|e| format!("{}: {e}", path.display()))
            };
            crate::interrupt::unless(runtime, get, interrupted).await.map(|_| None)
        }
        Destination::File { path, tmp, replace } => {
            // create_new: a leftover of a killed get (kill -9 cannot be cleaned up) is replaced
            // knowingly, never written through a link someone put there.
            let _ = std::fs::remove_file(&tmp);
            let f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let get = async {
                crate::data::get_key(c, &mut dns, &p[0], &p[1], &p[2], &mut w, &mut progress).await.map_err(|e| e.to_string())?;
                w.flush().map_err(|e| format!("{}: {e}", tmp.display()))?;
                w.get_ref().sync_all().map_err(|e| format!("{}: {e}", tmp.display()))
            };
            let r = crate::interrupt::unless(runtime, get, interrupted).await.and_then(|_| {
                if replace {
                    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
                } else {
                    rename_noreplace(&tmp, &path).map_err(|e| match e.kind() {
                        std::io::ErrorKind::AlreadyExists => format!("{} exists; use --force to replace it", path.display()),
                        _ => format!("{}: {e}", path.display()),
                    })
                }
            });
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r.map(|_| None)
        }
    }
}

#[cfg(test)]
#[path = "sh_test.rs"]
mod tests;
