//! `apply` for quota allowances: exact quotas over a bucket whose keys live on many shards.
//!
//! No shard sees a bucket's whole usage, so each key shard may grow a bucket (or a volume) only
//! within an allowance the meta group granted it, and the meta group grants so that the
//! grants of all shards sum to at most the quota. The safety invariant, at every instant and
//! whatever crashes: a shard's allowance is at most its grant. It holds because an allowance
//! is raised only after the meta group raised the grant (`GrantQuota`, then `SetAllowance`
//! with the grant's version), and a grant is lowered only after the shard lowered its
//! allowance (`ReleaseAllowance`, then `LowerGrant`, taken only if no grant was made since).
//! A stale or repeated message is ignored by version. The leader's side of it (when to ask,
//! how much) is the OM's; see docs/om.md, "Quotas".

use crate::command::{Allowance, BucketRef, Grant, Principal};
use crate::memtable::probe;
use crate::outcome::{OmError, Outcome, Reply};
use crate::records::*;
use crate::state::{BucketUsage, ShardState, bucket_key, denied};

impl ShardState {
    /// Why a commit that grows this shard's part of a bucket by `growth` bytes and `new_keys`
    /// keys does not fit its allowances, if it does not. An allowance of another epoch than the
    /// command's facts name counts as none: a changed quota needs a new grant.
    pub(crate) fn short_of_allowance(&self, facts: &BucketRef, usage: BucketUsage, volume_here: u64, growth: u64, new_keys: u64) -> Option<OmError> {
        if growth == 0 && new_keys == 0 {
            return None;
        }
        let (bytes_limited, keys_limited) = (facts.quota_bytes != QUOTA_UNLIMITED, facts.quota_namespace != QUOTA_UNLIMITED);
        if (bytes_limited && growth > 0) || (keys_limited && new_keys > 0) {
            let need_bytes = usage.used_bytes.saturating_add(growth);
            let need_keys = usage.keys.saturating_add(new_keys);
            let fits = self.allowances.get(&facts.bucket_id).is_some_and(|a| {
                a.epoch == facts.quota_epoch
                    && (!bytes_limited || need_bytes <= a.bytes)
                    && (!keys_limited || need_keys <= a.keys)
            });
            if !fits {
                return Some(OmError::NeedsAllowance { scope: facts.bucket_id, bytes: need_bytes, keys: need_keys, adding_bytes: growth, adding_keys: new_keys });
            }
        }
        if facts.volume_quota_bytes != QUOTA_UNLIMITED && growth > 0 {
            let need = volume_here.saturating_add(growth);
            let fits = self
                .allowances
                .get(&facts.volume_id)
                .is_some_and(|a| a.epoch == facts.volume_quota_epoch && need <= a.bytes);
            if !fits {
                return Some(OmError::NeedsAllowance { scope: facts.volume_id, bytes: need, keys: 0, adding_bytes: growth, adding_keys: 0 });
            }
        }
        None
    }

    /// This shard's usage of a scope: a bucket's bytes and keys, or a volume's bytes.
    fn usage_of(&self, scope: u64) -> (u64, u64) {
        if let Some(u) = self.bucket_usage.get(&scope) {
            (u.used_bytes, u.keys)
        } else {
            (self.volume_usage.get(&scope).map_or(0, |u| u.used_bytes), 0)
        }
    }

    pub(crate) fn set_allowance(&mut self, p: &Principal, scope: u64, allowance: Allowance) -> Outcome {
        if !p.admin {
            return Err(denied(p, "set quota allowances"));
        }
        let a = self.allowances.entry(scope).or_default();
        if allowance.version > a.version {
            *a = allowance;
        }
        Ok(Reply::Done)
    }

    pub(crate) fn release_allowance(&mut self, p: &Principal, scope: u64) -> Outcome {
        if !p.admin {
            return Err(denied(p, "release quota allowances"));
        }
        let (bytes, keys) = self.usage_of(scope);
        // What the meta group may lower the grant to is the usage: the allowance is lowered to
        // at most that, and it may be below it already (a quota lowered below the usage).
        let version = match self.allowances.get_mut(&scope) {
            Some(a) => {
                a.bytes = a.bytes.min(bytes);
                a.keys = a.keys.min(keys);
                a.version
            }
            // Nothing granted that this shard knows of: version 0 matches no grant, so a grant
            // still on its way here is never lowered under it.
            None => 0,
        };
        Ok(Reply::Allowance { allowance: Allowance { bytes, keys, version, ..Allowance::default() } })
    }

    /// Meta group: the quota scope of a bucket (or volume), its quota (bytes, keys) and epoch.
    fn quota_scope(&self, volume: &str, bucket: Option<&str>) -> Result<(u64, u64, u64, u64), OmError> {
        match bucket {
            Some(b) => {
                probe!(k = bucket_key(volume, b));
                let e = self.buckets.get(&*k).ok_or_else(|| OmError::BucketNotFound(format!("{volume}/{b}")))?;
                let r: &ArchivedBucketRecord = e.view();
                Ok((r.object_id.to_native(), r.quota_bytes.to_native(), r.quota_namespace.to_native(), r.update_id.to_native()))
            }
            None => {
                probe!(k = volume);
                let e = self.volumes.get(&*k).ok_or_else(|| OmError::VolumeNotFound(volume.to_string()))?;
                let r: &ArchivedVolumeRecord = e.view();
                Ok((r.object_id.to_native(), r.quota_bytes.to_native(), QUOTA_UNLIMITED, r.update_id.to_native()))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn grant_quota(
        &mut self, p: &Principal, volume: &str, bucket: Option<&str>, shard: u32, want_bytes: u64, want_keys: u64, holding_bytes: u64, holding_keys: u64,
    ) -> Outcome {
        if !p.admin {
            return Err(denied(p, "grant quota allowances"));
        }
        if shard == 0 || shard >= crate::constants::GROUPS_MAX {
            return Err(OmError::InvalidArgument(format!("group {shard} is not a key shard")));
        }
        let (scope, quota_bytes, quota_keys, epoch) = self.quota_scope(volume, bucket)?;
        let (mut others_bytes, mut others_keys) = (0u64, 0u64);
        for (_, g) in self.grants.range((scope, 0)..=(scope, u32::MAX)).filter(|((_, s), _)| *s != shard) {
            others_bytes = others_bytes.saturating_add(g.allowance.bytes.max(g.held_bytes));
            others_keys = others_keys.saturating_add(g.allowance.keys.max(g.held_keys));
        }
        let current = self.grants.get(&(scope, shard)).copied().unwrap_or_default().allowance;
        let fit = |want: u64, quota: u64, others: u64| want.min(quota.saturating_sub(others));
        let (mut bytes, mut keys) = (fit(want_bytes, quota_bytes, others_bytes), fit(want_keys, quota_keys, others_keys));
        // In the same epoch a grant never shrinks here: the shard may hold it already (its
        // SetAllowance may have applied), and only its own release lowers it safely. In a new
        // epoch the old allowance allows no growth (see `short_of_allowance`).
        if current.epoch == epoch {
            bytes = bytes.max(current.bytes);
            keys = keys.max(current.keys);
        }
        let allowance = Allowance { bytes, keys, version: current.version + 1, epoch };
        self.grants.insert((scope, shard), Grant { allowance, held_bytes: holding_bytes, held_keys: holding_keys });
        Ok(Reply::Granted { scope, allowance, others_bytes, others_keys })
    }

    /// Meta group: after `shard` released its slack (its allowance is now at most its usage,
    /// `bytes` and `keys`), lower its grant likewise, if no grant was made since (`version`
    /// still the grant's). Replies the allowance granted as it stands (`Allowance`): another
    /// version means a grant the shard may not have taken yet, so nothing was lowered; the
    /// caller may hand that grant to the shard (`SetAllowance`) and release again.
    pub(crate) fn lower_grant(&mut self, p: &Principal, scope: u64, shard: u32, bytes: u64, keys: u64, version: u64) -> Outcome {
        if !p.admin {
            return Err(denied(p, "lower quota grants"));
        }
        let Some(g) = self.grants.get_mut(&(scope, shard)) else {
            return Ok(Reply::Allowance { allowance: Allowance::default() });
        };
        if g.allowance.version == version {
            g.allowance.bytes = g.allowance.bytes.min(bytes);
            g.allowance.keys = g.allowance.keys.min(keys);
            g.held_bytes = bytes;
            g.held_keys = keys;
        }
        Ok(Reply::Allowance { allowance: g.allowance })
    }

    /// Meta group: a deleted bucket's or volume's grants go with it (its id is never reused).
    pub(crate) fn drop_grants(&mut self, scope: u64) {
        let shards: Vec<u32> = self.grants.range((scope, 0)..=(scope, u32::MAX)).map(|((_, s), _)| *s).collect();
        for s in shards {
            self.grants.remove(&(scope, s));
        }
    }
}
