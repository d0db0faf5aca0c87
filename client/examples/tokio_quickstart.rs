//! Quickstart: the Stratos client on tokio. Creates a volume, a bucket and a key, then reads them
//! back as typed values and prints them.
//!
//! ```text
//! stratos om --data-dir /tmp/om      # an OM alone (metadata only), or `stratos dev`
//! cargo run -p stratos-client --features tokio --example tokio_quickstart -- [OM_ADDRESS] [TEXT]
//! ```
//!
//! OM_ADDRESS defaults to `$STRATOS_OM`, else 127.0.0.1:9862. Without TEXT the key is empty: an
//! open and a commit with no blocks, which every OM takes (one without an SCM keeps metadata
//! only). With TEXT its bytes are written through the datanodes the OM hands out (an OM with an
//! SCM and datanodes, such as `stratos dev`), then read back from them.
//!
//! The client is `!Send` (Cap'n Proto capabilities are), and its connections are driven by
//! `tokio::task::spawn_local` tasks: its calls run inside a `LocalSet`, here on the
//! current-thread runtime of `#[tokio::main]`. Running it again is fine: a volume or bucket
//! that exists is used as it is, and the key is overwritten.
//!
//! `server/tests/client_tokio.rs` runs [`quickstart`] against real OM processes.

use std::rc::Rc;

use stratos_client::data::{self, Datanodes};
use stratos_client::runtime::Tokio;
use stratos_client::schema::om_capnp;
use stratos_client::{BucketInfo, Client, ClientError, Done, KeyInfo, Page, Status, VolumeInfo};

pub const DEFAULT_OM: &str = "127.0.0.1:9862";

/// Where the quickstart writes.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub volume: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
}

/// What the quickstart wrote, as the OM answers it afterwards.
#[derive(Debug)]
pub struct Summary {
    pub volume: VolumeInfo,
    pub bucket: BucketInfo,
    pub key: KeyInfo,
    /// The key's bytes, read back from the datanodes.
    pub data: Vec<u8>,
    /// The first page of the bucket's keys.
    pub keys: Page<KeyInfo>,
    /// What the lookup of a key that was never written answered (status `KEY_NOT_FOUND`).
    pub missing: ClientError,
}

pub type Error = Box<dyn std::error::Error>;

/// A create's outcome, where "it exists already" is as good as created.
fn created(r: Result<Done, ClientError>, exists: Status) -> Result<(), ClientError> {
    match r {
        Err(e) if e.status() == Some(exists) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Connects to the OM at `om_address` as `user` (an OM administrator: only they create
/// volumes), writes `data` as `names.key`, and reads everything back. Must run inside a tokio
/// `LocalSet`.
pub async fn quickstart(om_address: &str, user: &str, names: Names<'_>, data: &[u8]) -> Result<Summary, Error> {
    let client = Client::connect_on(Rc::new(Tokio), om_address, user).await?;
    let Names { volume, bucket, key } = names;

    // Mutations are built in place (Cap'n Proto builders) and retried with the same request id
    // while the OM elects a leader, so a retry is never applied twice.
    let r = client
        .submit(|op| {
            let mut v = op.init_create_volume();
            v.set_volume(volume);
            v.set_owner(user);
        })
        .await;
    created(r, Status::VolumeExists)?;
    let r = client
        .submit(|op| {
            let mut b = op.init_create_bucket();
            b.set_volume(volume);
            b.set_bucket(bucket);
            // One copy: a cluster with a single datanode can hold it.
            b.set_replication(om_capnp::Replication::RatisOne);
        })
        .await;
    created(r, Status::BucketExists)?;

    // Open the key, write its bytes to the blocks the OM hands out (none for an empty key),
    // then commit it: `data::put` does all three, its datanode calls on this client's runtime.
    let mut datanodes = Datanodes::new(client.runtime().clone());
    data::put(&client, &mut datanodes, volume, bucket, key, &data.to_vec(), &mut |_| {}).await?;

    // Reads answer typed values.
    let volume_info = client.volume_info(volume).await?;
    let bucket_info = client.bucket_info(volume, bucket).await?;
    let key_info = client.lookup_key(volume, bucket, key).await?;
    let keys = client.list_keys(volume, bucket, "", "", 10).await?;
    let mut read_back = Vec::new();
    data::get_key(&client, &mut datanodes, volume, bucket, key, &mut read_back, &mut |_| {}).await?;

    // A failure carries the OM's status.
    let never_written = format!("{key}.never-written");
    let missing = match client.lookup_key(volume, bucket, &never_written).await {
        Err(e) if e.status() == Some(Status::KeyNotFound) => e,
        Err(e) => return Err(e.into()),
        Ok(k) => return Err(format!("/{volume}/{bucket}/{never_written} was never written, yet found: {k:?}").into()),
    };
    Ok(Summary { volume: volume_info, bucket: bucket_info, key: key_info, data: read_back, keys, missing })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let om = args.next().or_else(|| std::env::var("STRATOS_OM").ok()).unwrap_or_else(|| DEFAULT_OM.to_string());
    let text = args.next().unwrap_or_default();
    // TLS as `stratos dev` prints it (STRATOS_CA, STRATOS_CERT, STRATOS_KEY), or plain TCP.
    stratos_client::tls::use_client_env()?;
    let names = Names { volume: "quickstart", bucket: "tokio", key: "hello.txt" };
    let local = tokio::task::LocalSet::new();
    let s = local.run_until(quickstart(&om, "root", names, text.as_bytes())).await?;

    let quota = |q: Option<u64>| q.map_or("unlimited".to_string(), |q| format!("{q} bytes"));
    println!("volume {}: owner {}, {} bucket(s), quota {}, created at {} ms", s.volume.name, s.volume.owner, s.volume.buckets, quota(s.volume.quota_bytes), s.volume.created_ms);
    println!("bucket {}/{}: {}, {} key(s), {} bytes used", s.bucket.volume, s.bucket.name, s.bucket.replication, s.bucket.keys, s.bucket.used_bytes);
    println!("key /{}/{}/{}: {} bytes in {} block(s), modified at {} ms", s.key.volume, s.key.bucket, s.key.name, s.key.data_size, s.key.blocks.len(), s.key.modified_ms);
    for b in &s.key.blocks {
        println!("  block {}/{}: {} bytes on datanodes {:?}", b.container_id, b.local_id, b.length, b.datanodes);
    }
    println!("read back: {:?}", String::from_utf8_lossy(&s.data));
    let names: Vec<&str> = s.keys.items.iter().map(|k| k.name.as_str()).collect();
    println!("keys: {names:?}{}", if s.keys.truncated { " and more" } else { "" });
    println!("a key never written: {} (status {:?})", s.missing, s.missing.status());
    Ok(())
}
