//! Steps 2 and 3 of cross-shard renames, and re-driving renames whose driver went away
//! (see stratos-shard's `apply_rename`). Stateless: the intents live in the shards' state.

use std::rc::Rc;

use stratos_common::process::now_ms;
use stratos_schema::om_capnp::Status;
use stratos_shard::{Op, Reply};

use crate::convert::WireError;
use crate::core::{Core, META_GROUP, group_of_shard, om_command};

/// A cross-shard rename intent older than this (command time) is driven again by its shard's
/// leader; a live driver finishes in milliseconds.
pub const RENAME_REDRIVE_AFTER_MS: u64 = 4000;

impl Core {
    /// Steps 2 and 3 of a cross-shard rename (see stratos-shard's `apply_rename`): copy the
    /// key into `to` on shard `dest`, then finish the intent `txn` on shard `source` by the
    /// answer. Only a definite answer of step 2 (an outcome the destination applied and
    /// remembers) finishes the intent; a transient failure leaves it for the re-driver (or the
    /// client's retry), which repeats step 2 and gets the same answer.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_rename(
        self: &Rc<Self>, source: u32, dest: u32, txn: u64, volume: &str, bucket: &str, to: &str, record: stratos_shard::records::KeyRecord, min_meta: u64,
    ) -> Result<Reply, WireError> {
        let copy = Op::RenameIn { volume: volume.to_string(), bucket: bucket.to_string(), to: to.to_string(), source_shard: source, txn, record };
        let (mut outs, _) = self.write(group_of_shard(dest), vec![om_command(copy)], true, min_meta).await;
        let answer = outs.pop().expect("one outcome");
        if let Err(e) = &answer
            && matches!(e.status, Status::NotLeader | Status::Unavailable | Status::Internal)
        {
            return Err(e.clone());
        }
        let finish = Op::RenameFinish { txn, commit: answer.is_ok() };
        let (mut outs, _) = self.write(group_of_shard(source), vec![om_command(finish)], false, min_meta).await;
        outs.pop().expect("one outcome")?;
        answer.map(|_| Reply::Done)
    }

    /// Finishes cross-shard renames whose driver went away (a crash, a lost connection): every
    /// few seconds, each intent on a shard this core leads that is older than
    /// [`RENAME_REDRIVE_AFTER_MS`] is driven again. Driving one twice at once is harmless.
    pub async fn redrive_renames(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(std::time::Duration::from_millis(RENAME_REDRIVE_AFTER_MS / 2)).await;
            let now = now_ms();
            let mut stale = Vec::new();
            for (&group, g) in &self.groups {
                // Only the source shard's leader re-drives: a follower's writes would be
                // routed to that leader anyway, so every replica would drive each intent.
                if group == META_GROUP || !g.is_leader() {
                    continue;
                }
                let shard = g.state.shard.borrow();
                for (&txn, i) in shard.renames_out() {
                    if i.started_ms.saturating_add(RENAME_REDRIVE_AFTER_MS) <= now
                        && let Some(k) = shard.lookup_key_in(i.bucket_id, &i.from)
                    {
                        let record = rkyv::deserialize::<stratos_shard::records::KeyRecord, rkyv::rancor::Error>(k).expect("archived records deserialize");
                        stale.push((group - 1, txn, i.clone(), record));
                    }
                }
            }
            for (source, txn, i, record) in stale {
                let r = self.finish_rename(source, i.dest_shard, txn, &i.volume, &i.bucket, &i.to, record, self.meta_index()).await;
                if let Err(e) = r
                    && matches!(e.status, Status::Internal)
                {
                    eprintln!("{} core {}: re-driving rename {}/{}/{} -> {}: {}", stratos_common::process::who(), self.index, i.volume, i.bucket, i.from, i.to, e.message);
                }
            }
        }
    }
}
