//! Leader balancing and leadership transfer: group `g`'s preferred leader is voter `g mod n`,
//! so every OM node leads about (S + 1) / n groups and all of them serve writes. Its only state
//! is when each transfer was last tried, local to the balancing task.

use std::collections::HashMap;
use std::rc::Rc;

use stratos_schema::om_capnp::Status;
use tokio::sync::oneshot;

use crate::convert::WireError;
use crate::core::{Core, Msg, PEER_CALL_TIMEOUT, core_of_group, unavailable};

/// How often a node looks for groups it leads that another node should (see `balance_leaders`).
pub const BALANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
pub const BALANCE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

impl Core {
    /// Spreads leadership evenly: group `g`'s preferred leader is voter `g mod n` (voters in id
    /// order), so with S shards each of n nodes leads about (S + 1) / n groups and all serve
    /// writes. Every [`BALANCE_EVERY`], a node leading a group whose preferred node is a voter
    /// and has the whole log hands the leadership over; this also gives a returning node its
    /// groups back once it caught up. A transfer that did not happen is tried again after
    /// [`BALANCE_RETRY_AFTER`].
    pub async fn balance_leaders(self: Rc<Self>) {
        let mut tried: HashMap<u32, std::time::Instant> = HashMap::new();
        loop {
            glommio::timer::sleep(BALANCE_EVERY).await;
            let mut ids: Vec<u32> = self.groups.keys().copied().collect();
            ids.sort();
            for group in ids {
                let g = self.group(group).clone();
                if !g.is_leader() {
                    continue;
                }
                let (preferred, caught_up) = {
                    let m = g.metrics_now();
                    let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
                    if voters.len() < 2 {
                        continue;
                    }
                    let preferred = voters[group as usize % voters.len()];
                    let last = m.last_log_index.unwrap_or(0);
                    let matched = m.replication.as_ref().and_then(|r| r.get(&preferred).cloned().flatten()).map_or(0, |l| l.index);
                    (preferred, matched >= last)
                };
                if preferred == self.transport.me || !caught_up || tried.get(&group).is_some_and(|t| t.elapsed() < BALANCE_RETRY_AFTER) {
                    continue;
                }
                tried.insert(group, std::time::Instant::now());
                if let Err(e) = g.raft.trigger().transfer_leader(preferred).await {
                    eprintln!("{} core {}: moving group {group}'s leadership to node {preferred}: {e}", stratos_common::process::who(), self.index);
                }
            }
        }
    }

    /// Moves the leadership of `group` to node `to` (on the core that owns the group; this
    /// node must lead it) and waits until `to` leads.
    pub async fn transfer(self: &Rc<Self>, group: u32, to: u64) -> Result<(), WireError> {
        if group > self.shards {
            return Err(WireError::new(Status::InvalidArgument, format!("no group {group}: groups are 0 (meta) to {}", self.shards)));
        }
        let core = core_of_group(group, self.cores);
        if core != self.index {
            let (reply, rx) = oneshot::channel();
            self.mesh[core].send(Msg::Transfer { group, to, reply }).await.map_err(|_| unavailable("transfer"))?;
            return rx.await.map_err(|_| unavailable("transfer"))?;
        }
        let g = self.group(group);
        // Named as `stratos admin` names groups (meta, shard-N), not by Raft group id.
        let name = if group == 0 { "meta".to_string() } else { format!("shard-{}", group - 1) };
        if !g.is_leader() {
            let hint = g.leader().map(|(_, a)| a.rpc).unwrap_or_default();
            return Err(WireError { status: Status::NotLeader, message: format!("node {} does not lead {name}; ask its leader", self.transport.me), leader_hint: hint });
        }
        let voters: Vec<u64> = g.raft.voter_ids().collect();
        if !voters.contains(&to) {
            return Err(WireError::new(Status::InvalidArgument, format!("node {to} is not a member of {name} (members {voters:?})")));
        }
        if to == self.transport.me {
            return Ok(());
        }
        g.raft.trigger().transfer_leader(to).await.map_err(|e| WireError::new(Status::Internal, e.to_string()))?;
        g.raft
            .wait(Some(PEER_CALL_TIMEOUT))
            .current_leader(to, "leadership transferred")
            .await
            .map(|_| ())
            // openraft's wait error carries its whole metrics dump: not for an operator.
            .map_err(|_| WireError::new(Status::Unavailable, format!("{name}: node {to} did not take the leadership within {PEER_CALL_TIMEOUT:?} (is it up and caught up? see `stratos admin status`)")))
    }
}
