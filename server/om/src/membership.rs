//! Membership changes (`stratos admin add|remove`): each group's leader adds a node as a
//! learner, waits until it caught up, then makes it a voter; or removes a voter. Stateless:
//! every call asks every core, and the admin command asks every node until all groups agree.

use std::rc::Rc;
use std::sync::atomic::Ordering;

use stratos_raft::transport::PeerAddr;
use stratos_schema::om_capnp::Status;

use crate::convert::WireError;
use crate::core::{Core, Msg, unavailable, within};

/// How long adding a node may wait for it to catch up with one group (a snapshot to send).
pub const CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A membership change, applied by each group's leader.
#[derive(Debug, Clone)]
pub enum MemberChange {
    /// Add `node` (at `addr`) as a learner, wait until it caught up, then make it a voter.
    Add { node: u64, addr: PeerAddr },
    Remove { node: u64 },
}

impl std::fmt::Display for MemberChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemberChange::Add { node, addr } => write!(f, "node {node} ({addr}) added as a voter"),
            MemberChange::Remove { node } => write!(f, "node {node} removed"),
        }
    }
}

impl Core {
    /// Applies `change` to every group this node leads, on every core; returns the groups
    /// changed. Groups led elsewhere are their leaders' to change (`stratos admin add|remove`
    /// asks every node until every group has the new membership). A change already in place
    /// is not repeated.
    pub async fn change_members(self: &Rc<Self>, change: MemberChange) -> Result<Vec<u32>, WireError> {
        if let MemberChange::Add { node, addr } = &change
            && let Some(why) = self.address_conflict(*node, addr)
        {
            return Err(WireError::new(Status::InvalidArgument, why));
        }
        if let MemberChange::Add { node, addr } = &change
            && !self.voter_everywhere_here(*node)
        {
            // A node of another layout (or build) would refuse every group's traffic, and each
            // group would wait out CATCH_UP_TIMEOUT; ask it once first and say why.
            use stratos_raft::transport::PeerError;
            self.transport.check_peer(*node, &addr.raft).await.map_err(|e| match e {
                PeerError::Refused(why) => WireError::new(Status::InvalidArgument, why),
                PeerError::Unreachable(why) => WireError::new(Status::Unavailable, format!("{why}; start node {node} with --join first")),
            })?;
        }
        let mut changed = self.change_members_here(&change).await?;
        for (_, answer) in self.ask_others(|reply| Msg::Members { change: change.clone(), reply }).await {
            changed.extend(answer.ok_or_else(|| unavailable("membership change"))??);
        }
        changed.sort();
        Ok(changed)
    }

    /// Why `node` at `addr` cannot join: another member has one of its addresses (two ids on
    /// one node would count it twice in every quorum), or `node` is a member at other
    /// addresses. As the groups of this core know the members.
    fn address_conflict(&self, node: u64, addr: &PeerAddr) -> Option<String> {
        for g in self.groups.values() {
            let m = g.metrics_now();
            for (id, n) in m.membership_config.membership().nodes() {
                let known = PeerAddr::parse(&n.addr);
                if *id != node && (known.raft == addr.raft || known.rpc == addr.rpc) {
                    return Some(format!("node {id} is a member at {known}: node {node} cannot use its addresses ({addr})"));
                }
                if *id == node && (known.raft != addr.raft || known.rpc != addr.rpc) {
                    return Some(format!("node {node} is a member already, at {known} (not {addr}); remove it first to move it"));
                }
            }
        }
        None
    }

    /// Whether `node` is a voter of every group on this core (an add that changes nothing).
    fn voter_everywhere_here(&self, node: u64) -> bool {
        self.groups.values().all(|g| g.raft.voter_ids().any(|v| v == node))
    }

    pub(crate) async fn change_members_here(&self, change: &MemberChange) -> Result<Vec<u32>, WireError> {
        use openraft::ChangeMembers;
        let failed = |group: u32, e: &dyn std::fmt::Display| WireError::new(Status::Unavailable, format!("group {group}: {e}; ask again"));
        let mut ids: Vec<u32> = self.groups.keys().copied().collect();
        ids.sort();
        let mut changed = Vec::new();
        for group in ids {
            let g = self.group(group).clone();
            if !g.is_leader() {
                continue;
            }
            let voters: Vec<u64> = g.raft.voter_ids().collect();
            // No solo meta fence from here until the change is known to be done (`SoloMeta`):
            // an early return below leaves `changing` counted on purpose.
            let meta = group == crate::core::META_GROUP;
            let note = |start: bool| {
                if meta && start {
                    self.solo.changes_started.fetch_add(1, Ordering::AcqRel);
                    self.solo.changing.fetch_add(1, Ordering::AcqRel);
                    self.solo.term.store(0, Ordering::Release);
                } else if meta {
                    self.solo.changing.fetch_sub(1, Ordering::AcqRel);
                }
            };
            match change {
                MemberChange::Add { node, addr } => {
                    if voters.contains(node) {
                        continue;
                    }
                    note(true);
                    // Blocking: returns once the learner has the leader's log (or snapshot).
                    let node_info = openraft::BasicNode { addr: addr.to_string() };
                    glommio::timer::timeout(CATCH_UP_TIMEOUT, async { Ok(g.raft.add_learner(*node, node_info, true).await) })
                        .await
                        .map_err(|_| failed(group, &format!("node {node} did not catch up within {CATCH_UP_TIMEOUT:?}")))?
                        .map_err(|e| failed(group, &e))?;
                    within(&format!("group {group}: making node {node} a voter"), g.raft.change_membership(ChangeMembers::AddVoterIds([*node].into()), false))
                        .await?
                        .map_err(|e| failed(group, &e))?;
                    note(false);
                }
                MemberChange::Remove { node } => {
                    if !voters.contains(node) {
                        continue;
                    }
                    if voters.len() == 1 {
                        return Err(WireError::new(Status::InvalidArgument, format!("group {group}: node {node} is its only voter")));
                    }
                    note(true);
                    within(&format!("group {group}: removing node {node}"), g.raft.change_membership(ChangeMembers::RemoveVoters([*node].into()), false))
                        .await?
                        .map_err(|e| failed(group, &e))?;
                    note(false);
                }
            }
            eprintln!("{} core {}: group {group}: {change}", stratos_common::process::who(), self.index);
            changed.push(group);
        }
        Ok(changed)
    }
}
