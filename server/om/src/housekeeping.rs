//! Housekeeping: expired open keys (their blocks join the deleted-blocks queue) and idle retry
//! sessions, proposed by each group's leader with its clock. Stateless.

use std::rc::Rc;

use stratos_shard::{Op, Reply};

use crate::core::{Core, om_command};

impl Core {
    /// Every `housekeeping_interval_ms`, in each group this core owns: drop expired open keys
    /// (in rounds of at most `EXPIRE_BATCH_MAX`, until none is left; their blocks join the
    /// deleted-blocks queue) and retry sessions idle past `SESSION_IDLE_MS_MAX`. The leader
    /// proposes these with its clock, like every command; a follower's proposal is refused.
    pub async fn housekeeping(self: Rc<Self>) {
        let interval = std::time::Duration::from_millis(self.housekeeping_interval_ms.max(10));
        loop {
            glommio::timer::sleep(interval).await;
            let mut ids: Vec<u32> = self.groups.keys().copied().collect();
            ids.sort();
            for group in ids {
                if !self.group(group).is_leader() {
                    continue;
                }
                let limit = stratos_shard::constants::EXPIRE_BATCH_MAX;
                loop {
                    let (mut outs, _) = self.local_write(group, vec![om_command(Op::ExpireOpenKeys { limit })], false, 0).await;
                    match outs.pop() {
                        Some(Ok(Reply::Expired { open_keys, .. })) if open_keys == u64::from(limit) => continue,
                        _ => break,
                    }
                }
                let _ = self.local_write(group, vec![om_command(Op::ExpireSessions)], false, 0).await;
            }
        }
    }
}
