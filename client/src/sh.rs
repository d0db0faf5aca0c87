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
    /// The OM to talk to (host:port); overrides STRATOS_OM.
    #[arg(long, global = true)]
    pub om: Option<String>,
    /// Act as this user (default: $USER, else root).
    #[arg(long, global = true)]
    pub user: Option<String>,
    #[command(subcommand)]
    pub command: ShCommand,
}

#[derive(Debug, Subcommand)]
pub enum ShCommand {
    /// Volumes: create, info, list, update, delete.
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Buckets: create, info, list, update, delete.
    #[command(subcommand)]
    Bucket(BucketCmd),
    /// Keys: put, info, list, rename, delete.
    #[command(subcommand)]
    Key(KeyCmd),
}

#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume: /vol (administrators only).
    Create {
        path: String,
        /// Owner (default: the caller).
        #[arg(long = "owner", short = 'u')]
        owner: Option<String>,
        /// Byte quota, e.g. 10GB (default unlimited).
        #[arg(long)]
        quota: Option<String>,
        /// Bucket count quota (default unlimited).
        #[arg(long = "namespace-quota")]
        namespace_quota: Option<u64>,
    },
    Info { path: String },
    /// List volumes (all, or the user's with --owner).
    List {
        path: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long, default_value = "")]
        start: String,
        #[arg(long, short = 'l', default_value_t = 100)]
        limit: u32,
    },
    /// Change the owner or quotas.
    Update {
        path: String,
        #[arg(long = "owner", short = 'u')]
        owner: Option<String>,
        #[arg(long)]
        quota: Option<String>,
        #[arg(long = "namespace-quota")]
        namespace_quota: Option<u64>,
    },
    Delete { path: String },
}

#[derive(Debug, Subcommand)]
pub enum BucketCmd {
    /// Create a bucket: /vol/bucket.
    Create {
        path: String,
        /// RATIS/ONE or RATIS/THREE (default RATIS/THREE); `ONE`/`THREE` also work.
        #[arg(long, short = 't', default_value = "RATIS/THREE")]
        replication: String,
        #[arg(long)]
        quota: Option<String>,
        #[arg(long = "namespace-quota")]
        namespace_quota: Option<u64>,
        #[arg(long)]
        versioning: bool,
    },
    Info { path: String },
    /// List the buckets of /vol.
    List {
        path: String,
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long, default_value = "")]
        start: String,
        #[arg(long, short = 'l', default_value_t = 100)]
        limit: u32,
    },
    Update {
        path: String,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        quota: Option<String>,
        #[arg(long = "namespace-quota")]
        namespace_quota: Option<u64>,
        /// true or false.
        #[arg(long)]
        versioning: Option<bool>,
        #[arg(long)]
        replication: Option<String>,
    },
    Delete { path: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Write FILE as /vol/bucket/key: its bytes go to the datanodes, then the key is committed.
    Put { path: String, file: std::path::PathBuf },
    /// Read /vol/bucket/key into OUT (written to a temporary name, renamed when complete).
    Get { path: String, out: std::path::PathBuf },
    /// Write the bytes of /vol/bucket/key to standard output.
    Cat { path: String },
    Info { path: String },
    /// List the keys of /vol/bucket.
    List {
        path: String,
        #[arg(long, default_value = "")]
        prefix: String,
        /// List keys after this name (the continuation token).
        #[arg(long, default_value = "")]
        start: String,
        #[arg(long, short = 'l', default_value_t = 100)]
        limit: u32,
    },
    /// Rename /vol/bucket/from to TO (a key name in the same bucket).
    Rename { path: String, to: String },
    Delete { path: String },
}

/// A parsed `[o3://host:port]/vol[/bucket[/key]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub om: Option<String>,
    pub parts: Vec<String>,
}

pub fn parse_address(s: &str) -> Result<Address, String> {
    let (om, path) = match s.strip_prefix("o3://") {
        Some(rest) => {
            let slash = rest.find('/').unwrap_or(rest.len());
            let host = &rest[..slash];
            ((!host.is_empty()).then(|| host.to_string()), &rest[slash..])
        }
        None => (None, s),
    };
    let path = path.strip_prefix('/').unwrap_or(path);
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

/// Parses sizes like 1024, 10KB, 5MB, 2GB, 1TB (powers of 1024, as Ozone).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_uppercase();
    let (num, mult) = [("TB", 1u64 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)]
        .iter()
        .find_map(|(suf, m)| t.strip_suffix(suf).map(|n| (n.to_string(), *m)))
        .unwrap_or((t.clone(), 1));
    let n: u64 = num.trim().parse().map_err(|_| format!("invalid size {s:?} (e.g. 1024, 10MB, 2GB)"))?;
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(|| format!("size {s:?} is zero or too large"))
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
    path.and_then(|p| parse_address(p).ok()).and_then(|a| a.om).or_else(|| args.om.clone()).or_else(|| std::env::var("STRATOS_OM").ok()).unwrap_or_else(|| DEFAULT_OM.to_string())
}

fn first_path(c: &ShCommand) -> Option<&str> {
    match c {
        ShCommand::Volume(v) => match v {
            VolumeCmd::Create { path, .. } | VolumeCmd::Info { path } | VolumeCmd::Update { path, .. } | VolumeCmd::Delete { path } => Some(path),
            VolumeCmd::List { path, .. } => path.as_deref(),
        },
        ShCommand::Bucket(b) => match b {
            BucketCmd::Create { path, .. } | BucketCmd::Info { path } | BucketCmd::List { path, .. } | BucketCmd::Update { path, .. } | BucketCmd::Delete { path } => Some(path),
        },
        ShCommand::Key(k) => match k {
            KeyCmd::Put { path, .. }
            | KeyCmd::Get { path, .. }
            | KeyCmd::Cat { path }
            | KeyCmd::Info { path }
            | KeyCmd::List { path, .. }
            | KeyCmd::Rename { path, .. }
            | KeyCmd::Delete { path } => Some(path),
        },
    }
}

/// Runs one `stratos sh` command on a glommio executor; returns what to print.
#[cfg(feature = "glommio")]
pub async fn run(args: &ShArgs) -> Outcome {
    run_on(Rc::new(crate::runtime::Glommio), args).await
}

/// Runs one `stratos sh` command on `runtime`; returns what to print.
pub async fn run_on(runtime: Rc<dyn Runtime>, args: &ShArgs) -> Outcome {
    let user = args.user.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "root".into());
    let addr = om_address(args, first_path(&args.command));
    let c = Client::connect_on(runtime, &addr, &user).await.map_err(err)?;
    match &args.command {
        ShCommand::Volume(v) => volume(&c, &user, v).await,
        ShCommand::Bucket(b) => bucket(&c, b).await,
        ShCommand::Key(k) => key(&c, k).await,
    }
}

fn list_json<T>(items: &[T], json: impl Fn(&T) -> Value) -> Option<String> {
    Some(pretty(&Value::Array(items.iter().map(json).collect())))
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

/// A volume as `volume info` and `volume list` print it.
pub fn volume_json(v: &VolumeInfo) -> Value {
    json!({
        "name": v.name, "owner": v.owner, "admin": v.admin,
        "creationTime": v.created_ms, "modificationTime": v.modified_ms,
        "quotaInBytes": quota_json(v.quota_bytes), "quotaInNamespace": quota_json(v.quota_namespace),
        "usedBytes": v.used_bytes, "usedNamespace": v.buckets, "objectID": v.object_id,
        "updateID": v.update_id, "metadata": metadata_json(&v.metadata),
    })
}

/// A bucket as `bucket info` and `bucket list` print it.
pub fn bucket_json(b: &BucketInfo) -> Value {
    json!({
        "volumeName": b.volume, "name": b.name, "owner": b.owner,
        "creationTime": b.created_ms, "modificationTime": b.modified_ms,
        "versioning": b.versioning, "replication": b.replication.name(),
        "quotaInBytes": quota_json(b.quota_bytes), "quotaInNamespace": quota_json(b.quota_namespace),
        "usedBytes": b.used_bytes, "usedNamespace": b.keys, "openKeys": b.open_keys,
        "bucketLayout": b.layout(), "objectID": b.object_id, "updateID": b.update_id,
        "metadata": metadata_json(&b.metadata),
    })
}

/// A key as `key info` and `key list` print it: its blocks' places and lengths, without their
/// tokens and datanodes.
pub fn key_json(k: &KeyInfo) -> Value {
    let blocks: Vec<Value> = k.blocks.iter().map(|b| json!({"containerID": b.container_id, "localID": b.local_id, "pipelineID": b.pipeline_id, "length": b.length})).collect();
    json!({
        "volumeName": k.volume, "bucketName": k.bucket, "name": k.name,
        "dataSize": k.data_size, "replication": k.replication.name(),
        "creationTime": k.created_ms, "modificationTime": k.modified_ms,
        "objectID": k.object_id, "updateID": k.update_id, "blocks": blocks,
        "metadata": metadata_json(&k.metadata),
    })
}

async fn volume(c: &Client, user: &str, cmd: &VolumeCmd) -> Outcome {
    match cmd {
        VolumeCmd::Create { path, owner, quota, namespace_quota } => {
            let (_, p) = parts(path, 1, "/volume")?;
            let quota = quota.as_deref().map(parse_size).transpose()?;
            let owner = owner.clone().unwrap_or_else(|| user.to_string());
            c.submit(|op| {
                let mut g = op.init_create_volume();
                g.set_volume(p[0].as_str());
                g.set_owner(owner.as_str());
                g.set_quota_bytes(quota.unwrap_or(0));
                g.set_quota_namespace(namespace_quota.unwrap_or(0));
            })
            .await
            .map_err(err)?;
            Ok(None)
        }
        VolumeCmd::Info { path } => {
            let (_, p) = parts(path, 1, "/volume")?;
            Ok(Some(pretty(&volume_json(&c.volume_info(&p[0]).await.map_err(err)?))))
        }
        VolumeCmd::List { path: _, owner, prefix, start, limit } => {
            let page = c.list_volumes(owner.as_deref().unwrap_or(""), prefix, start, *limit).await.map_err(err)?;
            Ok(list_json(&page.items, volume_json))
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
                let q = quota.as_deref().map(parse_size).transpose()?;
                c.submit(|op| {
                    let mut g = op.init_set_volume_quota();
                    g.set_volume(p[0].as_str());
                    g.set_quota_bytes(q.unwrap_or(0));
                    g.set_quota_namespace(namespace_quota.unwrap_or(0));
                })
                .await
                .map_err(err)?;
            }
            Ok(None)
        }
        VolumeCmd::Delete { path } => {
            let (_, p) = parts(path, 1, "/volume")?;
            c.submit(|op| op.init_delete_volume().set_volume(p[0].as_str())).await.map_err(err)?;
            Ok(None)
        }
    }
}

async fn bucket(c: &Client, cmd: &BucketCmd) -> Outcome {
    match cmd {
        BucketCmd::Create { path, replication, quota, namespace_quota, versioning } => {
            let (_, p) = parts(path, 2, "/volume/bucket")?;
            let r = parse_replication(replication)?;
            let q = quota.as_deref().map(parse_size).transpose()?;
            c.submit(|op| {
                let mut g = op.init_create_bucket();
                g.set_volume(p[0].as_str());
                g.set_bucket(p[1].as_str());
                g.set_replication(r);
                g.set_versioning(*versioning);
                g.set_quota_bytes(q.unwrap_or(0));
                g.set_quota_namespace(namespace_quota.unwrap_or(0));
            })
            .await
            .map_err(err)?;
            Ok(None)
        }
        BucketCmd::Info { path } => {
            let (_, p) = parts(path, 2, "/volume/bucket")?;
            Ok(Some(pretty(&bucket_json(&c.bucket_info(&p[0], &p[1]).await.map_err(err)?))))
        }
        BucketCmd::List { path, prefix, start, limit } => {
            let (_, p) = parts(path, 1, "/volume")?;
            let page = c.list_buckets(&p[0], prefix, start, *limit).await.map_err(err)?;
            Ok(list_json(&page.items, bucket_json))
        }
        BucketCmd::Update { path, owner, quota, namespace_quota, versioning, replication } => {
            let (_, p) = parts(path, 2, "/volume/bucket")?;
            let q = quota.as_deref().map(parse_size).transpose()?;
            let r = replication.as_deref().map(parse_replication).transpose()?;
            if owner.is_none() && q.is_none() && namespace_quota.is_none() && versioning.is_none() && r.is_none() {
                return Err("bucket update: give --owner, --quota, --namespace-quota, --versioning or --replication".into());
            }
            c.submit(|op| {
                let mut g = op.init_set_bucket_property();
                g.set_volume(p[0].as_str());
                g.set_bucket(p[1].as_str());
                g.set_owner(owner.as_deref().unwrap_or(""));
                g.set_versioning(match versioning {
                    None => om_capnp::Tristate::Unchanged,
                    Some(false) => om_capnp::Tristate::No,
                    Some(true) => om_capnp::Tristate::Yes,
                });
                match r {
                    Some(r) => g.reborrow().init_replication().set_some(r),
                    None => g.reborrow().init_replication().set_none(()),
                }
                g.set_quota_bytes(q.unwrap_or(0));
                g.set_quota_namespace(namespace_quota.unwrap_or(0));
            })
            .await
            .map_err(err)?;
            Ok(None)
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
    }
}

async fn key(c: &Client, cmd: &KeyCmd) -> Outcome {
    match cmd {
        KeyCmd::Put { path, file } => {
            let (_, p) = parts(path, 3, "/volume/bucket/key")?;
            let mut dns = crate::data::Datanodes::new(c.runtime().clone());
            let mut progress = crate::data::terminal_progress("put");
            crate::data::put_file(c, &mut dns, &p[0], &p[1], &p[2], file, &mut progress).await.map_err(|e| e.to_string())?;
            Ok(None)
        }
        KeyCmd::Get { path, out } => {
            let (_, p) = parts(path, 3, "/volume/bucket/key")?;
            // Into a temporary file next to OUT, renamed over it when complete: a failed get
            // never leaves a partial file under the name.
            let tmp = out.with_file_name(format!(".{}.stratos-part", out.file_name().map_or("out".into(), |n| n.to_string_lossy())));
            let f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let mut dns = crate::data::Datanodes::new(c.runtime().clone());
            let mut progress = crate::data::terminal_progress("get");
            let r = crate::data::get_key(c, &mut dns, &p[0], &p[1], &p[2], &mut w, &mut progress).await.map_err(|e| e.to_string());
            let r = r.and_then(|_| {
                use std::io::Write;
                w.flush().map_err(|e| format!("{}: {e}", tmp.display()))?;
                w.get_ref().sync_all().map_err(|e| format!("{}: {e}", tmp.display()))?;
                std::fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))
            });
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r.map(|_| None)
        }
        KeyCmd::Cat { path } => {
            let (_, p) = parts(path, 3, "/volume/bucket/key")?;
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            let mut dns = crate::data::Datanodes::new(c.runtime().clone());
            crate::data::get_key(c, &mut dns, &p[0], &p[1], &p[2], &mut w, &mut |_| {}).await.map_err(|e| e.to_string())?;
            use std::io::Write;
            w.flush().map_err(|e| format!("stdout: {e}"))?;
            Ok(None)
        }
        KeyCmd::Info { path } => {
            let (_, p) = parts(path, 3, "/volume/bucket/key")?;
            Ok(Some(pretty(&key_json(&c.lookup_key(&p[0], &p[1], &p[2]).await.map_err(err)?))))
        }
        KeyCmd::List { path, prefix, start, limit } => {
            let (_, p) = parts(path, 2, "/volume/bucket")?;
            let page = c.list_keys(&p[0], &p[1], prefix, start, *limit).await.map_err(err)?;
            Ok(list_json(&page.items, key_json))
        }
        KeyCmd::Rename { path, to } => {
            let (_, p) = parts(path, 3, "/volume/bucket/key")?;
            c.submit(|op| {
                let mut g = op.init_rename_key();
                g.set_volume(p[0].as_str());
                g.set_bucket(p[1].as_str());
                g.set_from(p[2].as_str());
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
    }
}

#[cfg(test)]
#[path = "sh_test.rs"]
mod tests;
