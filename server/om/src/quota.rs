//! Exact quotas in a sharded namespace: the key shard leader's side of quota allowances (the
//! state machine's side, and why it is safe, is stratos-shard's `apply_quota`).
//!
//! A commit into a bucket (or volume) with a quota is proposed as `CommitKeyAllowed`: the key
//! shard admits growth only within the allowance the meta group granted it. Short of it, the
//! shard answers `NeedsAllowance` (nothing applied), and the leader here:
//! 1. asks the meta group for the need plus a chunk (a quarter of the quota's per-shard share,
//!    so the next commits find room without asking): `GrantQuota`;
//! 2. hands the grant to its shard (`SetAllowance`), even when it falls short, so the shard's
//!    version keeps up with the meta group's record;
//! 3. if it fell short, takes back the other shards' slack (`ReleaseAllowance` on each, then
//!    `LowerGrant`) and asks once more;
//! 4. proposes the commit again; still short after that, the quota is full: QUOTA_EXCEEDED,
//!    naming the whole bucket's usage as the meta group counts it.
//!
//! One meta write per chunk of commits, not per commit; a bucket without a quota costs nothing.
//! In a one-shard namespace the shard sees the whole bucket and checks the quota itself.

use stratos_schema::om_capnp::Status;
use stratos_shard::{Allowance, BucketRef, Command, OmError, Op, QUOTA_UNLIMITED, Reply, rights};

use crate::convert::WireError;
use crate::core::{Core, META_GROUP, group_of_shard, om_command};

/// How many times a commit goes around (ask, hand over, propose) before giving up with
/// UNAVAILABLE: each round either admits it, finds the quota full, or lost a race with another
/// shard's grant or a quota change.
const ROUNDS_MAX: usize = 6;

/// What a commit short of its allowance needs (`OmError::NeedsAllowance`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Need {
    pub scope: u64,
    pub bytes: u64,
    pub keys: u64,
    pub adding_bytes: u64,
    pub adding_keys: u64,
}

fn limited(r: &BucketRef) -> bool {
    r.quota_bytes != QUOTA_UNLIMITED || r.quota_namespace != QUOTA_UNLIMITED || r.volume_quota_bytes != QUOTA_UNLIMITED
}

/// Turns each commit into a bucket or volume with a quota into `CommitKeyAllowed`.
pub(crate) fn allowed_commits(commands: &mut [Command], early: &[Option<Result<Reply, WireError>>]) {
    // `early` is empty when no command has an outcome yet.
    for (i, c) in commands.iter_mut().enumerate() {
        if early.get(i).is_none_or(Option::is_none) && c.ctx.bucket.as_ref().is_some_and(limited) {
            match &mut c.op {
                Op::CommitKey { .. } => {
                    let placeholder = Op::ExpireSessions;
                    let Op::CommitKey { volume, bucket, key, open_id, data_size, blocks } = std::mem::replace(&mut c.op, placeholder) else {
                        unreachable!("matched above")
                    };
                    c.op = Op::CommitKeyAllowed { volume, bucket, key, open_id, data_size, blocks };
                }
                Op::CommitKeyWith { allowed, .. } | Op::CommitKeyWithAcls { allowed, .. } | Op::CompleteUpload { allowed, .. } | Op::CompleteUploadWith { allowed, .. } | Op::CompleteUploadWithAcls { allowed, .. } => *allowed = true,
                _ => {}
            }
        }
    }
}

fn names(c: &Command) -> (String, String) {
    match &c.op {
        Op::CommitKeyAllowed { volume, bucket, .. }
        | Op::CommitKey { volume, bucket, .. }
        | Op::CommitKeyWith { volume, bucket, .. }
        | Op::CommitKeyWithAcls { volume, bucket, .. }
        | Op::CompleteUpload { volume, bucket, .. }
        | Op::CompleteUploadWith { volume, bucket, .. }
        | Op::CompleteUploadWithAcls { volume, bucket, .. } => {
            (volume.clone(), bucket.clone())
        }
        other => unreachable!("only commits ask for allowances, not {other:?}"),
    }
}

fn reply_of(mut outs: Vec<Result<Reply, WireError>>) -> Result<Reply, WireError> {
    outs.pop().unwrap_or_else(|| Err(WireError::new(Status::Internal, "a write of one command had no outcome")))
}

impl Core {
    /// Proposes `cmd` (a `CommitKeyAllowed` the shard found short by `need`) again after
    /// raising this shard's allowance, until it applies or the quota is full.
    pub(crate) async fn commit_with_allowance(&self, group: u32, mut cmd: Command, mut need: Need, mut min_meta: u64) -> Result<Reply, WireError> {
        for _ in 0..ROUNDS_MAX {
            min_meta = self.obtain_allowance(group, &cmd, need, min_meta).await?;
            // The grant came with the meta group's current record: propose with facts at
            // least that fresh (a changed quota changes the epoch the allowance is good in).
            self.wait_meta_within(min_meta).await?;
            let (volume, bucket) = names(&cmd);
            let facts = self.view.borrow().key_bucket(&cmd.ctx.principal, &volume, &bucket, rights::WRITE).map_err(WireError::from)?;
            cmd.ctx.bucket = Some(facts);
            if !limited(&facts) {
                match cmd.op {
                    Op::CommitKeyWith { ref mut allowed, .. } | Op::CommitKeyWithAcls { ref mut allowed, .. } | Op::CompleteUpload { ref mut allowed, .. } | Op::CompleteUploadWith { ref mut allowed, .. } | Op::CompleteUploadWithAcls { ref mut allowed, .. } => *allowed = false,
                    Op::CommitKeyAllowed { volume, bucket, key, open_id, data_size, blocks } => {
                        cmd.op = Op::CommitKey { volume, bucket, key, open_id, data_size, blocks };
                    }
                    _ => unreachable!("names() checked"),
                }
            }
            let outcome = crate::core::within("committing a write", self.group(group).propose(vec![cmd.clone()]))
                .await
                .and_then(|r| r.map_err(WireError::from))?
                .pop()
                .unwrap_or_else(|| Err(OmError::InvalidArgument("a proposal of one command had no outcome".into())));
            match outcome {
                Err(OmError::NeedsAllowance { scope, bytes, keys, adding_bytes, adding_keys }) => {
                    need = Need { scope, bytes, keys, adding_bytes, adding_keys };
                }
                other => return other.map_err(WireError::from),
            }
        }
        Err(WireError::new(Status::Unavailable, "the bucket's quota allowances kept moving under concurrent commits; retry"))
    }

    /// Raises shard `group`'s allowance for `need.scope` to cover `need` (steps 1-3 of the
    /// module's list). Returns the meta index of the grant; QUOTA_EXCEEDED if the quota is full.
    async fn obtain_allowance(&self, group: u32, cmd: &Command, need: Need, min_meta: u64) -> Result<u64, WireError> {
        let facts = cmd.ctx.bucket.ok_or_else(|| WireError::new(Status::Internal, "a counted commit without bucket facts"))?;
        let (volume, bucket) = names(cmd);
        let is_bucket = need.scope == facts.bucket_id;
        let (quota_bytes, quota_keys) = if is_bucket { (facts.quota_bytes, facts.quota_namespace) } else { (facts.volume_quota_bytes, QUOTA_UNLIMITED) };
        let share = 4 * u64::from(self.shards);
        let chunk = |quota: u64| if quota == QUOTA_UNLIMITED { 0 } else { (quota / share).max(1) };
        let grant = Op::GrantQuota {
            volume: volume.clone(),
            bucket: is_bucket.then(|| bucket.clone()),
            shard: group,
            want_bytes: need.bytes.saturating_add(chunk(quota_bytes)),
            want_keys: need.keys.saturating_add(chunk(quota_keys)),
            holding_bytes: need.bytes - need.adding_bytes,
            holding_keys: need.keys - need.adding_keys,
        };
        let mut min_meta = min_meta;
        for round in 0..2 {
            let (outs, meta_index) = self.write(META_GROUP, vec![om_command(grant.clone())], false, min_meta).await;
            min_meta = min_meta.max(meta_index);
            let Reply::Granted { scope, allowance, others_bytes, others_keys } = reply_of(outs)? else {
                return Err(WireError::new(Status::Internal, "the meta group answered a quota grant with something else"));
            };
            if scope != need.scope {
                return Err(WireError::new(Status::Unavailable, format!("{volume}/{bucket} was replaced while committing into it; retry")));
            }
            reply_of(self.write(group, vec![om_command(Op::SetAllowance { scope, allowance })], false, min_meta).await.0)?;
            let fits = (quota_bytes == QUOTA_UNLIMITED || need.bytes <= allowance.bytes) && (quota_keys == QUOTA_UNLIMITED || need.keys <= allowance.keys);
            if fits {
                return Ok(min_meta);
            }
            if round == 0 {
                let others: Vec<u32> = (0..self.shards).map(group_of_shard).filter(|g| *g != group).collect();
                futures_util::future::join_all(others.iter().map(|g| self.release_slack(*g, scope, min_meta))).await;
                continue;
            }
            // Full: name the whole bucket's usage as the meta group counts it (the other
            // shards' grants, just brought down to their usage, and this shard's own).
            let e = if quota_bytes != QUOTA_UNLIMITED && need.bytes > allowance.bytes {
                let what = if is_bucket { format!("bucket {volume}/{bucket} bytes") } else { format!("volume {volume} bytes") };
                OmError::QuotaExceeded { what, used: others_bytes.saturating_add(need.bytes - need.adding_bytes), adding: need.adding_bytes, quota: quota_bytes }
            } else {
                let what = format!("bucket {volume}/{bucket} namespace");
                OmError::QuotaExceeded { what, used: others_keys.saturating_add(need.keys - need.adding_keys), adding: need.adding_keys, quota: quota_keys }
            };
            return Err(e.into());
        }
        unreachable!("the second round returns")
    }

    /// Brings shard `group`'s grant for `scope` down to its usage: release on the shard, then
    /// lower the grant. A grant made since that the shard never took (its leader failed
    /// between the steps, or it fell short) is handed over first, and the release repeated.
    /// Best effort: a shard that cannot be reached keeps its grant, which only leaves less room.
    async fn release_slack(&self, group: u32, scope: u64, min_meta: u64) {
        for _ in 0..2 {
            let Ok(Reply::Allowance { allowance: released }) = reply_of(self.write(group, vec![om_command(Op::ReleaseAllowance { scope })], false, min_meta).await.0) else {
                return;
            };
            let lower = Op::LowerGrant { scope, shard: group, bytes: released.bytes, keys: released.keys, version: released.version };
            let Ok(Reply::Allowance { allowance: grant }) = reply_of(self.write(META_GROUP, vec![om_command(lower)], false, min_meta).await.0) else {
                return;
            };
            if grant.version == released.version || grant == Allowance::default() {
                return;
            }
            if reply_of(self.write(group, vec![om_command(Op::SetAllowance { scope, allowance: grant })], false, min_meta).await.0).is_err() {
                return;
            }
        }
    }
}
