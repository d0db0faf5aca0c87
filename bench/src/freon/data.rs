//! The generators with data: `ockg` writes keys through the datanodes, `ockr` reads them
//! back and verifies every byte.

use super::*;

/// (takes, waits) summed over the OM's cores, from its /prom page.
fn block_counters(http: &str) -> Option<(u64, u64)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(http).ok()?;
    write!(s, "GET /prom HTTP/1.0\r\n\r\n").ok()?;
    let mut page = String::new();
    s.read_to_string(&mut page).ok()?;
    let sum = |family: &str| -> u64 { page.lines().filter(|l| l.starts_with(family)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum() };
    Some((sum("stratos_om_block_takes_total{"), sum("stratos_om_block_waits_total{")))
}

/// The bytes ockg writes as `key` (`size` of them): the key's name, then a fixed pattern. ockr
/// checks every byte against this.
fn content(pattern: &[u8], key: &str) -> Vec<u8> {
    let mut v = pattern.to_vec();
    let n = key.len().min(v.len());
    v[..n].copy_from_slice(&key.as_bytes()[..n]);
    v
}

fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) as u8).collect()
}

/// Freon's ockg: the full write path with data. Each worker puts keys of `--size` bytes (open,
/// write to every datanode of the pipeline, putBlock durable there, commit), one at a time.
/// Reports keys/s, MB/s and the share of opens that waited for the SCM.
pub fn ockg(a: OckgArgs) -> anyhow::Result<()> {
    let before = a.http.as_deref().and_then(block_counters);
    let http = a.http.clone();
    let size = a.size;
    on_executor(a.common.cpu, move || {
        Box::pin(async move {
            let clients = Rc::new(connect(&a.common).await?);
            ensure_bucket(&clients[0], &a.volume, &a.bucket).await?;
            let pattern = Rc::new(pattern(a.size));
            let run = Run::new(&a.common);
            let name = title(&format!("ockg {size} B"), &a.common);
            run.show_progress(name.clone());
            let (tag, volume, bucket, common) = (rand::random::<u32>(), Rc::new(a.volume.clone()), Rc::new(a.bucket.clone()), Rc::new(a.common.clone()));
            // One connection per datanode, shared by every worker (as a client process shares them).
            let dns = stratos_client::data::Datanodes::default();
            drive(&a.common, &run, 1, move |seq| {
                let (c, pattern, volume, bucket, mut dns) = (pick(&clients, seq), pattern.clone(), volume.clone(), bucket.clone(), dns.clone());
                let key = common.key(format!("ockg-{tag:08x}-{seq}"));
                async move {
                    let data = content(&pattern, &key);
                    let r = stratos_client::data::put(&c, &mut dns, &volume, &bucket, &key, &data, &mut |_| {}).await;
                    r.map(|n| (1, n)).map_err(|e| e.to_string())
                }
            })
            .await;
            run.report(&name, "keys", &a.common)?;
            let s = run.stats.borrow();
            println!("{name}: {:.1} MB/s of key data (each byte written to every datanode of its pipeline)", s.bytes as f64 / run.start.elapsed().as_secs_f64() / 1e6);
            anyhow::Ok(())
        })
    })??;
    match (before, http.as_deref().and_then(block_counters)) {
        (Some((t0, w0)), Some((t1, w1))) if t1 > t0 => {
            println!("ockg: {} of {} block takes waited for the SCM ({:.3}%)", w1 - w0, t1 - t0, (w1 - w0) as f64 * 100.0 / (t1 - t0) as f64)
        }
        _ => println!("ockg: share of opens that waited for the SCM unknown (give --http with the OM's HTTP address)"),
    }
    Ok(())
}

/// Freon's ockr: reads back the keys ockg wrote (names starting with `--prefix`) and checks
/// every byte; a key whose bytes differ is an error of kind `content differs`. Keys are read in
/// list order: with neither -n nor --duration, each once; with -n or --duration, round and
/// round until the count or the time ends (as `bench s3 --op get` does, so that a run beside
/// it lasts as long).
pub fn ockr(a: OckrArgs) -> anyhow::Result<()> {
    on_executor(a.common.cpu, move || {
        Box::pin(async move {
            let clients = Rc::new(connect(&a.common).await?);
            let mut names = Vec::new();
            let mut start = String::new();
            loop {
                let page = clients[0].list_keys(&a.volume, &a.bucket, &a.prefix, &start, 1000).await?;
                for k in &page {
                    names.push((k.name.clone(), k.data_size));
                }
                match names.last() {
                    Some((last, _)) if page.truncated => start = last.clone(),
                    _ => break,
                }
            }
            anyhow::ensure!(!names.is_empty(), "no keys under /{}/{}/{}* to read (run ockg first)", a.volume, a.bucket, a.prefix);
            eprintln!("ockr: {} keys to read", names.len());
            // Calls are numbered 0, 1, 2, …: call `seq` reads key `seq` modulo the keys. Without
            // a count or a time, one pass.
            let common = match (a.common.count, a.common.duration) {
                (None, None) => Common { count: Some(names.len() as u64), ..a.common.clone() },
                _ => a.common.clone(),
            };
            let names = Rc::new(names);
            let what = title("ockr", &common);
            let run = Run::new(&common);
            run.show_progress(what.clone());
            let patterns: Rc<RefCell<BTreeMap<u64, Rc<Vec<u8>>>>> = Rc::default();
            // One connection per datanode, shared by every worker (as a client process shares them).
            let dns = stratos_client::data::Datanodes::default();
            let (volume, bucket) = (Rc::new(a.volume.clone()), Rc::new(a.bucket.clone()));
            drive(&common, &run, 1, move |seq| {
                let (c, names, patterns, mut dns, volume, bucket) = (pick(&clients, seq), names.clone(), patterns.clone(), dns.clone(), volume.clone(), bucket.clone());
                async move {
                    let (key, size) = &names[seq as usize % names.len()];
                    let mut out = Vec::with_capacity(*size as usize);
                    let r = stratos_client::data::get_key(&c, &mut dns, &volume, &bucket, key, &mut out, &mut |_| {}).await;
                    let n = r.map_err(|e| e.to_string())?;
                    let p = patterns.borrow_mut().entry(n).or_insert_with(|| Rc::new(pattern(n as usize))).clone();
                    if out == content(&p, key) { Ok((1, n)) } else { Err(format!("content differs: /{volume}/{bucket}/{key}")) }
                }
            })
            .await;
            run.report(&what, "keys", &common)?;
            let s = run.stats.borrow();
            println!("ockr: {:.1} MB/s read and verified", s.bytes as f64 / run.start.elapsed().as_secs_f64() / 1e6);
            anyhow::Ok(())
        })
    })?
}
