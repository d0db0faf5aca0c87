//! HTTP on the OM HTTP port: `/health` (200 "ok" once serving), and `/metrics` and `/prom`
//! (Prometheus text format) with, per group on this node: applied and last log index, WAL
//! appends, flushes, fdatasyncs and bytes. A tiny HTTP/1.0 responder: one request per
//! connection, GET only, request head bounded to 8 KiB.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::om::core::Core;

const REQUEST_HEAD_BYTES_MAX: usize = 8192;

pub fn serve(core: Rc<Core>, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = glommio::net::TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("binding the OM HTTP address {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| anyhow::anyhow!("{e}"))?;
    glommio::spawn_local(async move {
        loop {
            let Ok(mut stream) = listener.accept().await else { continue };
            let core = core.clone();
            glommio::spawn_local(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_BYTES_MAX {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head);
                let path = line.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = match path {
                    "/health" => ("200 OK", "ok\n".to_string()),
                    "/metrics" | "/prom" => ("200 OK", metrics(&core)),
                    _ => ("404 Not Found", "try /health, /metrics or /prom\n".to_string()),
                };
                let reply = format!("HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.close().await;
            })
            .detach();
        }
    })
    .detach();
    Ok(bound)
}

/// Metrics of the groups on this core (core 0 holds the meta group and its shards).
fn metrics(core: &Core) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP stratos_raft_applied_index Last log index applied by the group's state machine.\n# TYPE stratos_raft_applied_index gauge");
    let mut ids: Vec<_> = core.groups.keys().copied().collect();
    ids.sort();
    for id in &ids {
        let g = &core.groups[id];
        let _ = writeln!(out, "stratos_raft_applied_index{{group=\"{id}\"}} {}", g.state.applied_log_index());
    }
    let _ = writeln!(out, "# HELP stratos_raft_last_log_index Last log index in the group's WAL.\n# TYPE stratos_raft_last_log_index gauge");
    for id in &ids {
        let last = core.groups[id].log.wal().last_log_id().map_or(0, |l| l.log_index);
        let _ = writeln!(out, "stratos_raft_last_log_index{{group=\"{id}\"}} {last}");
    }
    for (name, help, f) in [
        ("stratos_wal_records_total", "Records appended to the WAL.", (|s: &stratos_wal::WalStats| s.records_appended) as fn(&stratos_wal::WalStats) -> u64),
        ("stratos_wal_flushes_total", "Group-commit flushes (one write each).", |s| s.flushes),
        ("stratos_wal_fdatasyncs_total", "fdatasync calls.", |s| s.fdatasyncs),
        ("stratos_wal_bytes_written_total", "Bytes written to WAL segments.", |s| s.bytes_written),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for id in &ids {
            let _ = writeln!(out, "{name}{{group=\"{id}\"}} {}", f(&core.groups[id].log.wal().stats()));
        }
    }
    let _ = writeln!(out, "# HELP stratos_meta_view_index Meta-group index this core's view reflects.\n# TYPE stratos_meta_view_index gauge\nstratos_meta_view_index {}", core.meta_index());
    out
}
