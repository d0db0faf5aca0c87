//! What an OM core owes the SCM: a fresh cluster map, and each led shard's deleted-blocks
//! queue, purged only once the SCM made the blocks durable. Stateless: the queue lives in the
//! shards' state, the SCM connection in the data path.

use std::rc::Rc;

use stratos_shard::Op;

use crate::core::{Core, META_GROUP, om_command};

/// Deleted blocks handed to the SCM in one call, about (whole batches; below the SCM's limit).
pub const DELETE_PUSH_BLOCKS: usize = 50_000;

// A call holds whole batches: at most this many blocks, or one batch alone when that is larger.
// Either way it must fit the SCM's limit, or the shard's queue would stop at that batch.
const _: () = assert!(DELETE_PUSH_BLOCKS <= stratos_schema::scm_limits::DELETE_BLOCKS_MAX as usize);
const _: () = assert!(stratos_shard::constants::DELETED_BATCH_BLOCKS_MAX <= stratos_schema::scm_limits::DELETE_BLOCKS_MAX as usize);

impl Core {
    /// Every `scm_poll_ms`: fetch the cluster map again, and hand each led shard's
    /// deleted-blocks queue to the SCM. The queue is purged (`PurgeDeletedBlocks`) only after
    /// the SCM answered, which it does once it made the blocks durable; a crash in between
    /// sends them again, and the SCM ignores a batch it already took (per shard, by sequence).
    pub async fn scm_duties(self: Rc<Self>) {
        let Some(dp) = self.data.clone() else { return };
        let every = std::time::Duration::from_millis(dp.cfg.scm_poll_ms.max(10));
        loop {
            // The node fetched the map once before serving; this refreshes it.
            glommio::timer::sleep(every).await;
            if let Err(e) = dp.refresh_map().await {
                eprintln!("{} core {}: fetching the cluster map from the SCM at {}: {e}", stratos_common::process::who(), self.index, dp.cfg.scm_address);
            }
            let mut ids: Vec<u32> = self.groups.keys().copied().filter(|g| *g != META_GROUP).collect();
            ids.sort();
            for group in ids {
                let g = self.group(group).clone();
                if g.read_barrier().await.is_err() {
                    continue; // not the leader
                }
                let (up_to, blocks) = {
                    // Whole batches, oldest first, up to about DELETE_PUSH_BLOCKS blocks per call.
                    let shard = g.state.shard.borrow();
                    let mut blocks = Vec::new();
                    let mut up_to = None;
                    for (seq, r) in shard.list_deleted_blocks(None, 1024) {
                        if up_to.is_some() && blocks.len() + r.blocks.len() > DELETE_PUSH_BLOCKS {
                            break;
                        }
                        blocks.extend(r.blocks.iter().map(|b| (b.container_id.to_native(), b.local_id.to_native())));
                        up_to = Some(seq);
                    }
                    let Some(up_to) = up_to else { continue };
                    (up_to, blocks)
                };
                match dp.push_deleted(group - 1, up_to, &blocks).await {
                    Ok(()) => {
                        let _ = self.local_write(group, vec![om_command(Op::PurgeDeletedBlocks { up_to_seq: up_to })], false, 0).await;
                    }
                    Err(e) => eprintln!("{} core {}: handing deleted blocks of shard {} to the SCM: {e}", stratos_common::process::who(), self.index, group - 1),
                }
            }
        }
    }
}
