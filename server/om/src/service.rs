//! The OzoneManager Cap'n Proto service of one connection, on the core that accepted it.

use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use stratos_common::process::now_ms;
use stratos_raft::transport::PeerAddr;
use stratos_raft::types::COMMANDS_PER_ENTRY_MAX;
use stratos_schema::om_capnp::{self, Status, ozone_manager};
use stratos_schema::shard_of_hash;
use stratos_shard::constants::LIST_LIMIT_MAX;
use stratos_shard::{Command, CommandContext, Op, OmError, Principal, Reply};

use crate::convert::{self, Target, WireError};
use crate::datapath::Decor;
use crate::core::{Core, META_GROUP, Query, ReadResult, group_of_shard, om_command, shard_of};
use crate::membership::MemberChange;

/// Operations in one `batch` call.
pub const BATCH_OPERATIONS_MAX: u32 = 4096;
/// Keys in one `lookupKeys` call.
pub const LOOKUP_KEYS_MAX: u32 = 4096;
/// Payload of one echo.
pub const ECHO_BYTES_MAX: usize = 1 << 20;

#[derive(Debug)]
pub struct OmService {
    pub core: Rc<Core>,
    /// Who the connection's client certificate names (TLS); None on a plain connection, where
    /// the request header's user is taken as sent.
    pub caller: Option<Rc<stratos_common::tls::Identity>>,
}

struct Header {
    client_id: u64,
    request_id: u64,
    principal: Principal,
    min_meta: u64,
}

fn header(core: &Core, caller: Option<&stratos_common::tls::Identity>, h: capnp::Result<om_capnp::request_header::Reader<'_>>) -> Result<Header, WireError> {
    let h = h?;
    if let Some(id) = caller.filter(|id| id.role != stratos_common::tls::Role::S3g) {
        // The certificate names the caller; the header's user and groups are not looked at.
        // Only user certificates are principals of the namespace: a node's certificate (a
        // datanode's, say) calls as `role:name`, which no ACL or admin list names.
        use stratos_common::tls::Role;
        let user = if id.role == Role::User { id.name.clone() } else { format!("{}:{}", id.role.as_str(), id.name) };
        let admin = id.role == Role::User && (core.admins.contains(&user) || id.groups.iter().any(|g| core.admin_groups.contains(g)));
        // Retry sessions are the caller's own: another user naming this client's id gets a
        // session of their own, never this one's remembered outcomes.
        let client_id = stratos_common::token::principal_client_id(&user, h.get_client_id());
        return Ok(Header { client_id, request_id: h.get_request_id(), principal: Principal { user, groups: id.groups.clone(), admin }, min_meta: h.get_min_meta_index() });
    }
    // No certificate: the header's user as sent (a node without TLS believes it). The S3
    // gateway's certificate: the header's user is the principal whose S3 signature the gateway
    // verified (with that principal's secret, which only the gateway may read), as a Hadoop
    // proxy user; retry sessions are kept per principal as for certificates.
    let mut user = convert::text(h.get_user(), "user", stratos_shard::constants::USER_NAME_BYTES_MAX)?;
    if let Some(gateway) = caller {
        if user.is_empty() {
            // An S3 request without a signature: nobody, whom only WORLD entries let in.
            let client_id = stratos_common::token::principal_client_id(stratos_shard::command::ANONYMOUS, h.get_client_id());
            return Ok(Header { client_id, request_id: h.get_request_id(), principal: Principal::anonymous(), min_meta: h.get_min_meta_index() });
        }
        if user.contains(':') {
            return Err(WireError::new(Status::PermissionDenied, format!("the S3 gateway {} may act for users, not for {user}", gateway.name)));
        }
        let admin = core.admins.contains(&user);
        let client_id = stratos_common::token::principal_client_id(&user, h.get_client_id());
        return Ok(Header { client_id, request_id: h.get_request_id(), principal: Principal { user, groups: Vec::new(), admin }, min_meta: h.get_min_meta_index() });
    }
    if user.is_empty() {
        user = "anonymous".into();
    }
    let groups_list = h.get_groups()?;
    if groups_list.len() > 64 {
        return Err(WireError::new(Status::InvalidArgument, format!("{} groups, at most 64", groups_list.len())));
    }
    let mut groups = Vec::new();
    for g in groups_list.iter() {
        groups.push(convert::text(g, "group", stratos_shard::constants::USER_NAME_BYTES_MAX)?);
    }
    let admin = core.admins.contains(&user) || groups.iter().any(|g| core.admin_groups.contains(g));
    Ok(Header { client_id: h.get_client_id(), request_id: h.get_request_id(), principal: Principal { user, groups, admin }, min_meta: h.get_min_meta_index() })
}

/// A multipart listing's page size: 0 is 1000, S3's most.
fn upload_list_limit(limit: u32) -> Result<usize, WireError> {
    match limit {
        0 => Ok(1000),
        l if l > 1000 => Err(WireError::new(Status::InvalidArgument, format!("list limit {l}, at most 1000"))),
        l => Ok(l as usize),
    }
}

/// A listing's page: prefix, start (exclusive), limit, and the delimiter (keys only).
struct PageAsked {
    prefix: String,
    start_after: String,
    limit: usize,
    delimiter: String,
}

fn page(p: capnp::Result<om_capnp::page::Reader<'_>>) -> Result<PageAsked, WireError> {
    let p = p?;
    let prefix = convert::text(p.get_prefix(), "prefix", stratos_shard::constants::KEY_NAME_BYTES_MAX)?;
    let start_after = convert::text(p.get_start_after(), "start", stratos_shard::constants::KEY_NAME_BYTES_MAX)?;
    let delimiter = if p.has_delimiter() { convert::text(p.get_delimiter(), "delimiter", stratos_shard::constants::KEY_NAME_BYTES_MAX)? } else { String::new() };
    let limit = match p.get_limit() {
        0 => 1000,
        l if l as usize > LIST_LIMIT_MAX => return Err(WireError::new(Status::InvalidArgument, format!("list limit {l}, at most {LIST_LIMIT_MAX}"))),
        l => l as usize,
    };
    Ok(PageAsked { prefix, start_after, limit, delimiter })
}

/// A page of volumes or buckets: a delimiter rolls up key names only.
fn page_without_delimiter(p: capnp::Result<om_capnp::page::Reader<'_>>) -> Result<(String, String, usize), WireError> {
    let PageAsked { prefix, start_after, limit, delimiter } = page(p)?;
    if !delimiter.is_empty() {
        return Err(WireError::new(Status::InvalidArgument, "a delimiter applies to listKeys only".to_string()));
    }
    Ok((prefix, start_after, limit))
}

/// One parsed operation of a call, with its place in the reply.
struct Parsed {
    position: usize,
    op: Op,
    target: Target,
    alloc: Option<convert::AllocRequest>,
}

impl OmService {
    /// How this call's replies show blocks: tokens for the caller, the pipelines' datanodes.
    fn decor<'a>(&'a self, h: &'a Header) -> Decor<'a> {
        Decor { dp: self.core.data.as_deref(), owner: &h.principal.user }
    }

    /// Makes sure the cluster map knows the pipelines of `keys`' blocks, for their replies.
    async fn know_pipelines<'a>(&self, keys: impl Iterator<Item = &'a convert::KeyView>) {
        if let Some(dp) = &self.core.data {
            let ids: Vec<u64> = keys.flat_map(|k| k.record.blocks.iter().map(|b| b.pipeline_id)).collect();
            dp.ensure_pipelines(ids.into_iter()).await;
        }
    }

    fn command(&self, h: &Header, request_id: u64, op: Op) -> Command {
        Command { ctx: CommandContext { client_id: h.client_id, request_id, time_ms: now_ms(), principal: h.principal.clone(), bucket: None }, op }
    }

    /// Gives `openKey` and `allocateBlock` operations their blocks, from this core's pools
    /// (see `datapath`), before anything is proposed. An operation that gets none fails here.
    async fn fill_blocks(&self, h: &Header, ops: &mut Vec<Parsed>, outcomes: &mut [Option<Result<Reply, WireError>>]) {
        let core = &self.core;
        let mut failed = Vec::new();
        for (i, p) in ops.iter_mut().enumerate() {
            let Some(req) = p.alloc.take() else { continue };
            let Target::Key { hash } = p.target else { continue };
            let (Op::OpenKey { volume, bucket, .. } | Op::AllocateBlock { volume, bucket, .. }) = &p.op else { continue };
            let Some(dp) = core.data.as_deref() else {
                if matches!(p.op, Op::AllocateBlock { .. }) {
                    failed.push((i, WireError::new(Status::Unavailable, "this OM runs without an SCM (no --scm-address): keys are metadata only and blocks cannot be allocated")));
                }
                continue;
            };
            // The bucket's facts as this core's view has them; without rights or a bucket no
            // block is handed out (the shard gives the precise error).
            let facts = core.view.borrow().key_bucket(&h.principal, volume, bucket, stratos_shard::rights::WRITE);
            let facts = match facts {
                Ok(f) => f,
                // A block is never proposed unfilled: allocateBlock fails here.
                Err(e) if matches!(p.op, Op::AllocateBlock { .. }) => {
                    failed.push((i, e.into()));
                    continue;
                }
                Err(_) => continue,
            };
            let shard = shard_of_hash(hash, core.shards);
            let owner = &h.principal.user;
            match (&mut p.op, req) {
                (Op::OpenKey { replication, blocks, .. }, convert::AllocRequest::Open { bytes }) => {
                    match dp.for_open(shard, replication.unwrap_or(facts.replication), bytes, owner).await {
                        Ok(b) => *blocks = b,
                        Err(e) => failed.push((i, e)),
                    }
                }
                (Op::AllocateBlock { open_id, block, .. }, convert::AllocRequest::One { exclude }) => {
                    let replication = core.open_replication(group_of_shard(shard), *open_id).await.unwrap_or(facts.replication);
                    match dp.for_allocate(shard, replication, &exclude, owner).await {
                        Ok(b) => *block = b,
                        Err(e) => failed.push((i, e)),
                    }
                }
                _ => {}
            }
        }
        for (i, e) in failed.into_iter().rev() {
            let p = ops.remove(i);
            outcomes[p.position] = Some(Err(e));
        }
    }

    /// Runs parsed operations with the batch ordering rule; fills `outcomes` by position.
    async fn run_ops(&self, h: &Header, mut ops: Vec<Parsed>, outcomes: &mut [Option<Result<Reply, WireError>>]) -> u64 {
        let core = &self.core;
        let mut min_meta = h.min_meta.max(core.meta_index());
        // Key operations are checked against the meta view: bring it up to a fence first (see
        // `Core::meta_fence`), and hand the fence on, so that the core and the node that own
        // each key's group check against a view at least as new.
        if ops.iter().any(|p| p.target != Target::Meta) {
            match core.fresh_meta(min_meta).await {
                Ok(m) => min_meta = m,
                Err(e) => {
                    ops.iter().for_each(|p| outcomes[p.position] = Some(Err(e.clone())));
                    return min_meta;
                }
            }
            if let Err(e) = core.wait_meta_within(min_meta).await {
                ops.iter().for_each(|p| outcomes[p.position] = Some(Err(e.clone())));
                return min_meta;
            }
        }
        // Only opens and block allocations may take blocks from the SCM; boxed, as the cold
        // paths below, so that the future of any other call stays small (see `run_key_ops`).
        if ops.iter().any(|p| p.alloc.is_some()) {
            Box::pin(self.fill_blocks(h, &mut ops, outcomes)).await;
        }
        let mut pending: Vec<Parsed> = Vec::new();
        for p in ops {
            if p.target == Target::Meta {
                min_meta = min_meta.max(self.run_key_ops(h, std::mem::take(&mut pending), min_meta, outcomes).await);
                let (o, index) = Box::pin(self.run_meta_op(h, p.position, p.op, min_meta)).await;
                min_meta = min_meta.max(index);
                outcomes[p.position] = Some(o);
            } else {
                pending.push(p);
            }
        }
        min_meta = min_meta.max(self.run_key_ops(h, pending, min_meta, outcomes).await);
        // Read-your-writes on this connection: this core's view has what we answer with (the
        // client's next request carries `min_meta` anyway, so a view slower than the timeout
        // only makes that request wait).
        let _ = core.wait_meta_within(min_meta).await;
        min_meta
    }

    async fn run_meta_op(&self, h: &Header, position: usize, op: Op, min_meta: u64) -> (Result<Reply, WireError>, u64) {
        let core = &self.core;
        let request_id = h.request_id.wrapping_add(position as u64);
        if let Op::DeleteBucket { volume, bucket } = &op {
            return self.delete_bucket(h, request_id, volume, bucket, min_meta).await;
        }
        let (mut outs, index) = core.write(META_GROUP, vec![self.command(h, request_id, op)], false, min_meta).await;
        (outs.pop().expect("one outcome"), index)
    }

    /// Bucket delete across groups (DESIGN.md §4, invariant 2): mark the bucket deleting in the
    /// meta group (leaders stop taking key writes for it), fence it on every shard (each answers
    /// what it holds at that point of its log; later key writes there are refused), and delete
    /// it if none holds a key. Otherwise unfence and clear the mark. If the OM dies midway the
    /// bucket stays marked; deleting it again finishes or undoes the job.
    async fn delete_bucket(&self, h: &Header, request_id: u64, volume: &str, bucket: &str, min_meta: u64) -> (Result<Reply, WireError>, u64) {
        let core = &self.core;
        let mark = |deleting| Op::SetBucketDeleting { volume: volume.to_string(), bucket: bucket.to_string(), deleting };
        let (mut outs, mut index) = core.write(META_GROUP, vec![self.command(h, 0, mark(true))], false, min_meta).await;
        match outs.pop().expect("one outcome") {
            Ok(Reply::BucketMarked { .. }) => {}
            Ok(other) => return (Err(WireError::new(Status::Internal, format!("unexpected reply {other:?}"))), index),
            Err(e) => return (Err(e), index),
        }
        if let Err(e) = core.wait_meta_within(index).await {
            return (Err(e), index);
        }
        let facts = match core.view.borrow().key_bucket(&Principal::admin("om"), volume, bucket, stratos_shard::rights::LIST) {
            Ok(f) => f,
            Err(e) => return (Err(e.into()), index),
        };
        let fence = |fenced| {
            let mut c = om_command(Op::FenceBucket { fenced });
            c.ctx.bucket = Some(facts);
            c
        };
        let fence_all = |fenced: bool| {
            let futures: Vec<_> = (0..core.shards).map(|s| core.write(group_of_shard(s), vec![fence(fenced)], false, index)).collect();
            futures_util::future::join_all(futures)
        };
        let (mut keys, mut open_keys, mut failure) = (0u64, 0u64, None);
        for (mut outs, _) in fence_all(true).await {
            match outs.pop().expect("one outcome") {
                Ok(Reply::BucketUsage { keys: k, open_keys: o }) => {
                    keys += k;
                    open_keys += o;
                }
                Ok(other) => failure = Some(WireError::new(Status::Internal, format!("unexpected reply {other:?}"))),
                Err(e) => failure = Some(e),
            }
        }
        // Open keys do not hold the delete back (an abandoned upload would block it for the open
        // key's whole time to live): a fenced shard refuses their commits forever (a bucket made
        // again under the name has a new id), and housekeeping drops them at expiry, freeing
        // their blocks.
        if failure.is_none() && keys == 0 {
            let (mut outs, i) = core.write(META_GROUP, vec![self.command(h, request_id, Op::DeleteBucket { volume: volume.into(), bucket: bucket.into() })], false, index).await;
            return (outs.pop().expect("one outcome"), i);
        }
        fence_all(false).await;
        let (_, i) = core.write(META_GROUP, vec![self.command(h, 0, mark(false))], false, index).await;
        index = index.max(i);
        let err = failure.unwrap_or_else(|| OmError::BucketNotEmpty(format!("{volume}/{bucket}"), keys, open_keys).into());
        (Err(err), index)
    }

    /// Key operations: grouped by shard, in order per shard, shards concurrently.
    async fn run_key_ops(&self, h: &Header, ops: Vec<Parsed>, min_meta: u64, outcomes: &mut [Option<Result<Reply, WireError>>]) -> u64 {
        if ops.is_empty() {
            return min_meta;
        }
        let core = &self.core;
        let shards = core.shards;
        // One key operation, the shape real clients send: straight to its shard's group,
        // without the sorting by shard below (which allocates per shard). DeleteKeys (split
        // per shard) and renames (maybe across shards) take the general path.
        if ops.len() == 1 && !matches!(ops[0].op, Op::DeleteKeys { .. } | Op::RenameKey { .. }) {
            let p = ops.into_iter().next().expect("one operation");
            let Target::Key { hash } = p.target else { unreachable!("key ops have key targets") };
            let group = group_of_shard(shard_of_hash(hash, shards));
            let command = self.command(h, h.request_id.wrapping_add(p.position as u64), p.op);
            let (mut outs, _) = core.write(group, vec![command], true, min_meta).await;
            // A write answers one outcome per command; should one ever be missing (a peer of
            // another version), the caller gets an error, not a dropped connection.
            outcomes[p.position] = Some(outs.pop().unwrap_or_else(|| Err(WireError::new(Status::Internal, "no outcome"))));
            return min_meta;
        }
        // Boxed: its joins of writes would otherwise make every call's future (moved whole into
        // capnp-rpc's box at dispatch) as large as the largest path.
        Box::pin(self.run_key_ops_many(h, ops, min_meta, outcomes)).await
    }

    /// [`Self::run_key_ops`] for several operations, or one that may span shards.
    async fn run_key_ops_many(&self, h: &Header, ops: Vec<Parsed>, min_meta: u64, outcomes: &mut [Option<Result<Reply, WireError>>]) -> u64 {
        let core = &self.core;
        let shards = core.shards;
        // (shard → commands with their positions); DeleteKeys is split per shard and merged.
        let mut per_shard: Vec<Vec<(usize, Command)>> = vec![Vec::new(); shards as usize];
        let mut split_deletes = std::collections::HashSet::new(); // positions whose outcome merges parts
        let mut cross_renames = Vec::new();
        for p in ops {
            let request_id = h.request_id.wrapping_add(p.position as u64);
            match p.op {
                Op::DeleteKeys { volume, bucket, keys } => {
                    let mut parts: Vec<Vec<String>> = vec![Vec::new(); shards as usize];
                    for k in keys {
                        parts[shard_of(&volume, &bucket, &k, shards) as usize].push(k);
                    }
                    for (s, keys) in parts.into_iter().enumerate() {
                        if !keys.is_empty() {
                            split_deletes.insert(p.position);
                            // Each part goes to its own group, under the request's own id: a
                            // group's retry window knows the request ids of its own commands only.
                            // (An id with high bits set, once forgotten, would make the window
                            // take every later id of the client for a forgotten one.)
                            per_shard[s].push((p.position, self.command(h, request_id, Op::DeleteKeys { volume: volume.clone(), bucket: bucket.clone(), keys })));
                        }
                    }
                    if !split_deletes.contains(&p.position) {
                        outcomes[p.position] = Some(Ok(Reply::KeysDeleted { deleted: 0, missing: vec![] }));
                    }
                }
                Op::RenameKey { volume, bucket, from, to } => {
                    let (a, b) = (shard_of(&volume, &bucket, &from, shards), shard_of(&volume, &bucket, &to, shards));
                    if a != b {
                        cross_renames.push((p.position, request_id, volume, bucket, from, to, a, b));
                        continue;
                    }
                    per_shard[a as usize].push((p.position, self.command(h, request_id, Op::RenameKey { volume, bucket, from, to })));
                }
                op => {
                    let Target::Key { hash } = p.target else { unreachable!("key ops have key targets") };
                    let s = shard_of_hash(hash, shards);
                    per_shard[s as usize].push((p.position, self.command(h, request_id, op)));
                }
            }
        }
        let futures: Vec<_> = per_shard
            .into_iter()
            .enumerate()
            .filter(|(_, cmds)| !cmds.is_empty())
            .map(|(s, cmds)| async move {
                let mut results = Vec::with_capacity(cmds.len());
                // Moved, never cloned: a command carries its names and principal.
                let mut cmds = cmds.into_iter().peekable();
                while cmds.peek().is_some() {
                    let (positions, commands): (Vec<usize>, Vec<Command>) = cmds.by_ref().take(COMMANDS_PER_ENTRY_MAX).unzip();
                    let (outs, _) = core.write(group_of_shard(s as u32), commands, true, min_meta).await;
                    results.extend(positions.into_iter().zip(outs));
                }
                results
            })
            .collect();
        let renames = cross_renames.into_iter().map(|(pos, rid, volume, bucket, from, to, a, b)| async move {
            (pos, self.rename_across(h, rid, volume, bucket, from, to, a, b, min_meta).await)
        });
        let (per_shard_results, rename_results) = futures_util::future::join(futures_util::future::join_all(futures), futures_util::future::join_all(renames)).await;
        for (pos, o) in rename_results {
            outcomes[pos] = Some(o);
        }
        let mut partial: std::collections::HashMap<usize, Result<Reply, WireError>> = Default::default();
        for results in per_shard_results {
            for (pos, o) in results {
                if split_deletes.contains(&pos) {
                    let merged = match (partial.remove(&pos), o) {
                        (None, o) => o,
                        (Some(Err(e)), _) | (Some(Ok(_)), Err(e)) => Err(e),
                        (Some(Ok(Reply::KeysDeleted { deleted: d1, missing: mut m1 })), Ok(Reply::KeysDeleted { deleted: d2, missing: m2 })) => {
                            m1.extend(m2);
                            Ok(Reply::KeysDeleted { deleted: d1 + d2, missing: m1 })
                        }
                        (Some(a), _) => a,
                    };
                    partial.insert(pos, merged);
                } else {
                    outcomes[pos] = Some(o);
                }
            }
        }
        for (pos, o) in partial {
            let o = o.map(|r| match r {
                Reply::KeysDeleted { deleted, mut missing } => {
                    missing.sort();
                    Reply::KeysDeleted { deleted, missing }
                }
                r => r,
            });
            outcomes[pos] = Some(o);
        }
        min_meta
    }

    /// A rename whose new name lives on another shard: step 1 here (retry-protected by the
    /// caller's request id, so a retry finds the same intent), then [`Core::finish_rename`].
    #[allow(clippy::too_many_arguments)]
    async fn rename_across(&self, h: &Header, request_id: u64, volume: String, bucket: String, from: String, to: String, a: u32, b: u32, min_meta: u64) -> Result<Reply, WireError> {
        let core = &self.core;
        let start = Op::RenameOut { volume: volume.clone(), bucket: bucket.clone(), from, to: to.clone(), dest_shard: b };
        let (mut outs, source_meta) = core.write(group_of_shard(a), vec![self.command(h, request_id, start)], true, min_meta).await;
        match outs.pop().expect("one outcome")? {
            // The destination waits for the meta index the source's leader checked against.
            Reply::RenameStarted { txn, record } => {
                stratos_common::process::crash_point("rename-started");
                core.finish_rename(a, b, txn, &volume, &bucket, &to, record, min_meta.max(source_meta)).await
            }
            other => Err(WireError::new(Status::Internal, format!("unexpected reply {other:?}"))),
        }
    }

    async fn bucket_usages(&self, ids: Vec<u64>, min_meta: u64) -> Result<Vec<stratos_shard::BucketUsage>, WireError> {
        let core = &self.core;
        let mut total = vec![stratos_shard::BucketUsage::default(); ids.len()];
        let futures: Vec<_> = (0..core.shards).map(|s| core.read(group_of_shard(s), Query::BucketUsages(ids.clone()), min_meta)).collect();
        for r in futures_util::future::join_all(futures).await {
            let ReadResult::Usages(us) = r? else { return Err(WireError::new(Status::Internal, "unexpected read result")) };
            for (t, u) in total.iter_mut().zip(us) {
                t.keys += u.keys;
                t.used_bytes += u.used_bytes;
                t.open_keys += u.open_keys;
            }
        }
        Ok(total)
    }

    async fn volume_used(&self, ids: Vec<u64>, min_meta: u64) -> Result<Vec<u64>, WireError> {
        let core = &self.core;
        let mut total = vec![0u64; ids.len()];
        let futures: Vec<_> = (0..core.shards).map(|s| core.read(group_of_shard(s), Query::VolumeUsed(ids.clone()), min_meta)).collect();
        for r in futures_util::future::join_all(futures).await {
            let ReadResult::Used(us) = r? else { return Err(WireError::new(Status::Internal, "unexpected read result")) };
            for (t, u) in total.iter_mut().zip(us) {
                *t += u;
            }
        }
        Ok(total)
    }

    async fn volumes(&self, q: Query, min_meta: u64) -> Result<(Vec<convert::VolumeView>, bool), WireError> {
        let ReadResult::Volumes(mut vs, truncated) = self.core.read(META_GROUP, q, min_meta).await? else {
            return Err(WireError::new(Status::Internal, "unexpected read result"));
        };
        let used = self.volume_used(vs.iter().map(|v| v.record.object_id).collect(), min_meta).await?;
        for (v, u) in vs.iter_mut().zip(used) {
            v.usage.used_bytes = u;
        }
        Ok((vs, truncated))
    }

    async fn buckets(&self, q: Query, min_meta: u64) -> Result<(Vec<convert::BucketView>, bool), WireError> {
        let ReadResult::Buckets(mut bs, truncated) = self.core.read(META_GROUP, q, min_meta).await? else {
            return Err(WireError::new(Status::Internal, "unexpected read result"));
        };
        let usages = self.bucket_usages(bs.iter().map(|b| b.record.object_id).collect(), min_meta).await?;
        for (b, u) in bs.iter_mut().zip(usages) {
            b.usage = u;
        }
        Ok((bs, truncated))
    }
}

macro_rules! try_or_reply {
    ($results:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                convert::set_error($results.get().init_error(), &e);
                return Ok(());
            }
        }
    };
}

/// Administration needs an administrator.
fn set_u32s(mut list: capnp::primitive_list::Builder<'_, u32>, values: &[u32]) {
    for (i, v) in values.iter().enumerate() {
        list.set(i as u32, *v);
    }
}

fn admin_header(core: &Core, caller: Option<&stratos_common::tls::Identity>, h: capnp::Result<om_capnp::request_header::Reader<'_>>) -> Result<Header, WireError> {
    let h = header(core, caller, h)?;
    if !h.principal.admin {
        return Err(WireError::new(Status::PermissionDenied, format!("permission denied: {} is not an OM administrator", h.principal.user)));
    }
    Ok(h)
}

impl ozone_manager::Server for OmService {
    async fn admin_status(self: CapRc<Self>, params: ozone_manager::AdminStatusParams, mut results: ozone_manager::AdminStatusResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        if let Err(e) = admin_header(&self.core, self.caller.as_deref(), p.get_header()) {
            convert::set_error(results.get().init_error(), &e);
            return Ok(());
        }
        let samples = self.core.gather_samples(p.get_hashes()).await;
        let mut r = results.get();
        r.set_node(self.core.transport.me);
        let mut list = r.init_groups(samples.len() as u32);
        for (i, s) in samples.iter().enumerate() {
            let mut g = list.reborrow().get(i as u32);
            g.set_group(s.group);
            g.set_leader(s.leader_id);
            g.set_term(s.term);
            g.set_last_log(s.last_log);
            g.set_committed(s.committed);
            g.set_applied(s.applied);
            g.set_state_hash(s.state_hash);
            let mut m = g.reborrow().init_members(s.members.len() as u32);
            for (j, id) in s.members.iter().enumerate() {
                m.set(j as u32, *id);
            }
            let mut reps = g.init_replicas(s.replicas.len() as u32);
            for (j, (node, matched)) in s.replicas.iter().enumerate() {
                let mut p = reps.reborrow().get(j as u32);
                p.set_node(*node);
                p.set_matched(*matched);
            }
        }
        Ok(())
    }

    async fn admin_transfer(self: CapRc<Self>, params: ozone_manager::AdminTransferParams, mut results: ozone_manager::AdminTransferResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let r = match admin_header(&self.core, self.caller.as_deref(), p.get_header()) {
            Ok(_) => self.core.transfer(p.get_group(), p.get_to_node()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            convert::set_error(results.get().init_error(), &e);
        }
        Ok(())
    }

    async fn routes(self: CapRc<Self>, params: ozone_manager::RoutesParams, mut results: ozone_manager::RoutesResults) -> Result<(), capnp::Error> {
        try_or_reply!(results, header(&self.core, self.caller.as_deref(), params.get()?.get_header()));
        let leaders = self.core.leaders().await;
        let mut r = results.get();
        r.set_shards(self.core.shards);
        let mut list = r.reborrow().init_leaders(leaders.len() as u32);
        for (i, a) in leaders.iter().enumerate() {
            list.set(i as u32, a);
        }
        let ports = self.core.group_ports();
        let mut list = r.init_core_ports(ports.len() as u32);
        for (i, p) in ports.into_iter().enumerate() {
            list.set(i as u32, p);
        }
        Ok(())
    }

    async fn admin_add_node(self: CapRc<Self>, params: ozone_manager::AdminAddNodeParams, mut results: ozone_manager::AdminAddNodeResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        try_or_reply!(results, admin_header(&self.core, self.caller.as_deref(), p.get_header()));
        let node = p.get_node();
        let text = |t: capnp::Result<capnp::text::Reader<'_>>, what: &str| -> Result<String, WireError> {
            let t = t.ok().and_then(|t| t.to_str().ok()).unwrap_or_default();
            let host_port = t.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && !h.contains(char::is_whitespace) && p.parse::<u16>().is_ok());
            if t.len() > 255 || !host_port {
                return Err(WireError::new(Status::InvalidArgument, format!("node {node}: {what} {t:?} is not HOST:PORT")));
            }
            Ok(t.to_string())
        };
        let raft = try_or_reply!(results, text(p.get_raft_address(), "the Raft address"));
        let rpc = try_or_reply!(results, text(p.get_rpc_address(), "the client address"));
        if node == 0 {
            try_or_reply!(results, Err(WireError::new(Status::InvalidArgument, "node ids start at 1")));
        }
        let changed = try_or_reply!(results, self.core.change_members(MemberChange::Add { node, addr: PeerAddr { raft, rpc } }).await);
        set_u32s(results.get().init_changed(changed.len() as u32), &changed);
        Ok(())
    }

    async fn admin_remove_node(self: CapRc<Self>, params: ozone_manager::AdminRemoveNodeParams, mut results: ozone_manager::AdminRemoveNodeResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        try_or_reply!(results, admin_header(&self.core, self.caller.as_deref(), p.get_header()));
        let changed = try_or_reply!(results, self.core.change_members(MemberChange::Remove { node: p.get_node() }).await);
        set_u32s(results.get().init_changed(changed.len() as u32), &changed);
        Ok(())
    }

    async fn s3_secret(self: CapRc<Self>, params: ozone_manager::S3SecretParams, mut results: ozone_manager::S3SecretResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let h = try_or_reply!(results, header(&self.core, self.caller.as_deref(), p.get_header()));
        let gateway = self.caller.as_ref().is_some_and(|id| id.role == stratos_common::tls::Role::S3g);
        if self.caller.is_some() && !gateway && !h.principal.admin {
            let e = WireError::new(Status::PermissionDenied, format!("permission denied: {} may not read S3 secrets (the S3 gateway's certificate or an administrator may)", h.principal.user));
            convert::set_error(results.get().init_error(), &e);
            return Ok(());
        }
        let id = try_or_reply!(results, convert::text(p.get_access_id(), "access key id", stratos_shard::constants::USER_NAME_BYTES_MAX));
        match try_or_reply!(results, self.core.read(META_GROUP, Query::S3Secret(id), h.min_meta).await) {
            ReadResult::Secret(s) => results.get().set_secret(&s),
            _ => convert::set_error(results.get().init_error(), &WireError::new(Status::Internal, "unexpected read result")),
        }
        Ok(())
    }

    async fn list_parts(self: CapRc<Self>, params: ozone_manager::ListPartsParams, mut results: ozone_manager::ListPartsResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let h = try_or_reply!(results, header(&self.core, self.caller.as_deref(), p.get_header()));
        let volume = try_or_reply!(results, convert::volume_name(p.get_volume()));
        let bucket = try_or_reply!(results, convert::bucket_name(p.get_bucket()));
        let key = try_or_reply!(results, convert::key_name(p.get_key()));
        let upload_id = try_or_reply!(results, convert::text(p.get_upload_id(), "upload id", stratos_shard::constants::UPLOAD_ID_BYTES_MAX));
        let limit = try_or_reply!(results, upload_list_limit(p.get_limit()));
        let core = &self.core;
        let min_meta = try_or_reply!(results, core.fresh_meta(h.min_meta).await);
        try_or_reply!(results, core.wait_meta_within(min_meta).await);
        // An upload's parts are shown to whoever may read or list the bucket, and to its
        // writers: they take part in uploads (S3's UploadPart and CompleteMultipartUpload need
        // only the right to write, and the S3 gateway reads the upload for both).
        let facts = {
            let view = core.view.borrow();
            let of = |right| view.key_bucket(&h.principal, &volume, &bucket, right);
            try_or_reply!(results, of(stratos_shard::rights::READ).or_else(|_| of(stratos_shard::rights::LIST)).or_else(|_| of(stratos_shard::rights::WRITE)).map_err(WireError::from))
        };
        let group = group_of_shard(shard_of(&volume, &bucket, &key, core.shards));
        let q = Query::ListParts { bucket_id: facts.bucket_id, key, upload_id, marker: p.get_part_marker(), limit };
        let ReadResult::Parts(upload, parts, truncated) = try_or_reply!(results, core.read(group, q, min_meta).await) else {
            return Err(capnp::Error::failed("unexpected read result".into()));
        };
        let mut r = results.get();
        r.set_truncated(truncated);
        r.set_created_ms(upload.created_ms);
        let mut list = r.reborrow().init_parts(parts.len() as u32);
        for (i, (n, part)) in parts.iter().enumerate() {
            let mut e = list.reborrow().get(i as u32);
            e.set_part_number(*n);
            e.set_etag(part.etag.as_str());
            e.set_size(part.size);
            e.set_modified_ms(part.modified_ms);
            e.set_checksum(part.checksum.as_str());
        }
        let mut m = r.init_metadata(upload.metadata.len() as u32);
        for (i, pair) in upload.metadata.iter().enumerate() {
            m.reborrow().get(i as u32).set_key(pair.key.as_str());
            m.reborrow().get(i as u32).set_value(pair.value.as_str());
        }
        Ok(())
    }

    /// Lists a bucket's multipart uploads: each shard's sorted run (with a delimiter, rolled up),
    /// merged as `list_keys` does.
    async fn list_uploads(self: CapRc<Self>, params: ozone_manager::ListUploadsParams, mut results: ozone_manager::ListUploadsResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let h = try_or_reply!(results, header(&self.core, self.caller.as_deref(), p.get_header()));
        let volume = try_or_reply!(results, convert::volume_name(p.get_volume()));
        let bucket = try_or_reply!(results, convert::bucket_name(p.get_bucket()));
        let max = stratos_shard::constants::KEY_NAME_BYTES_MAX;
        let prefix = try_or_reply!(results, convert::text(p.get_prefix(), "prefix", max));
        let key_marker = try_or_reply!(results, convert::text(p.get_key_marker(), "key marker", max));
        let upload_marker = try_or_reply!(results, convert::text(p.get_upload_id_marker(), "upload id marker", stratos_shard::constants::UPLOAD_ID_BYTES_MAX));
        let limit = try_or_reply!(results, upload_list_limit(p.get_limit()));
        // Appended: an older client sends none (an empty text).
        let with = try_or_reply!(results, convert::text(p.get_metadata_key(), "metadata key", stratos_shard::constants::METADATA_KEY_BYTES_MAX));
        // Appended as well: an older client sends none, and gets every upload.
        let delimiter = try_or_reply!(results, convert::text(p.get_delimiter(), "delimiter", max));
        let core = &self.core;
        let min_meta = try_or_reply!(results, core.fresh_meta(h.min_meta).await);
        try_or_reply!(results, core.wait_meta_within(min_meta).await);
        let facts = try_or_reply!(results, core.view.borrow().key_bucket(&h.principal, &volume, &bucket, stratos_shard::rights::LIST).map_err(WireError::from));
        let futures: Vec<_> = (0..core.shards)
            .map(|s| {
                let after = (key_marker.clone(), upload_marker.clone());
                let q = Query::ListUploadsIn { bucket_id: facts.bucket_id, prefix: prefix.clone(), after, limit, with: with.clone(), delimiter: delimiter.clone() };
                core.read(group_of_shard(s), q, min_meta)
            })
            .collect();
        let mut all = Vec::new();
        let mut more = false;
        for r in futures_util::future::join_all(futures).await {
            let ReadResult::Uploads(list, truncated) = try_or_reply!(results, r) else { return Err(capnp::Error::failed("unexpected read result".into())) };
            more |= truncated;
            all.extend(list);
        }
        all.sort();
        // Each shard rolled up its own uploads under a common prefix; the shards' first uploads
        // of one common prefix now sit side by side: the first stands for all.
        let group = |key: &str| stratos_shard::names::common_prefix(key, &prefix, &delimiter).map(str::len);
        all.dedup_by(|u, kept| matches!((group(&kept.key), group(&u.key)), (Some(a), Some(b)) if a == b && kept.key.as_bytes()[..a] == u.key.as_bytes()[..b]));
        if all.len() > limit {
            all.truncate(limit);
            more = true;
        }
        let mut r = results.get();
        r.set_truncated(more);
        let mut list = r.init_uploads(all.len() as u32);
        for (i, u) in all.iter().enumerate() {
            let mut e = list.reborrow().get(i as u32);
            e.set_key(u.key.as_str());
            e.set_upload_id(u.upload_id.as_str());
            e.set_created_ms(u.created_ms);
            if !u.value.is_empty() {
                e.set_metadata_value(u.value.as_str());
            }
        }
        Ok(())
    }

    async fn echo(self: CapRc<Self>, params: ozone_manager::EchoParams, mut results: ozone_manager::EchoResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let payload = p.get_payload()?;
        if payload.len() > ECHO_BYTES_MAX {
            return Err(capnp::Error::failed(format!("echo payload of {} bytes, at most {ECHO_BYTES_MAX}", payload.len())));
        }
        if p.get_via_raft() {
            let g = self.core.groups.get(&META_GROUP).or_else(|| self.core.groups.values().next()).expect("every core owns a group").clone();
            self.core.linearize(&g).await.map_err(|e| capnp::Error::failed(e.message))?;
        }
        results.get().set_payload(payload);
        Ok(())
    }

    async fn submit(self: CapRc<Self>, params: ozone_manager::SubmitParams, mut results: ozone_manager::SubmitResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let parsed = header(&self.core, self.caller.as_deref(), p.get_header()).and_then(|h| {
            let r = p.get_operation()?;
            Ok((h, convert::operation(r, now_ms(), self.core.open_key_ttl_ms)?, convert::alloc_request(r)?))
        });
        let (h, (op, target), alloc) = match parsed {
            Ok(v) => v,
            Err(e) => {
                convert::set_outcome(results.get().init_outcome(), &Err(e), &Decor { dp: None, owner: "" });
                return Ok(());
            }
        };
        let mut outcomes = vec![None];
        let index = self.run_ops(&h, vec![Parsed { position: 0, op, target, alloc }], &mut outcomes).await;
        let o = outcomes.pop().flatten().unwrap_or_else(|| Err(WireError::new(Status::Internal, "no outcome")));
        let mut r = results.get();
        r.set_meta_index(index);
        convert::set_outcome(r.init_outcome(), &o, &self.decor(&h));
        Ok(())
    }

    async fn batch(self: CapRc<Self>, params: ozone_manager::BatchParams, mut results: ozone_manager::BatchResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let list = p.get_operations()?;
        if list.len() > BATCH_OPERATIONS_MAX {
            return Err(capnp::Error::failed(format!("a batch of {} operations, at most {BATCH_OPERATIONS_MAX}", list.len())));
        }
        let n = list.len() as usize;
        let mut outcomes: Vec<Option<Result<Reply, WireError>>> = vec![None; n];
        let h = header(&self.core, self.caller.as_deref(), p.get_header());
        let index = match &h {
            Err(e) => {
                outcomes.iter_mut().for_each(|o| *o = Some(Err(e.clone())));
                0
            }
            Ok(h) => {
                let now = now_ms();
                let mut ops = Vec::with_capacity(n);
                for (i, r) in list.iter().enumerate() {
                    match convert::operation(r, now, self.core.open_key_ttl_ms).and_then(|(op, target)| Ok((op, target, convert::alloc_request(r)?))) {
                        Ok((op, target, alloc)) => ops.push(Parsed { position: i, op, target, alloc }),
                        Err(e) => outcomes[i] = Some(Err(e)),
                    }
                }
                self.run_ops(h, ops, &mut outcomes).await
            }
        };
        let decor = match &h {
            Ok(h) => self.decor(h),
            Err(_) => Decor { dp: None, owner: "" },
        };
        let mut r = results.get();
        r.set_meta_index(index);
        let mut list = r.init_outcomes(n as u32);
        for (i, o) in outcomes.into_iter().enumerate() {
            let o = o.unwrap_or_else(|| Err(WireError::new(Status::Internal, "no outcome")));
            convert::set_outcome(list.reborrow().get(i as u32), &o, &decor);
        }
        Ok(())
    }

    async fn volume_info(self: CapRc<Self>, params: ozone_manager::VolumeInfoParams, mut results: ozone_manager::VolumeInfoResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let h = try_or_reply!(results, header(&self.core, self.caller.as_deref(), p.get_header()));
        let volume = try_or_reply!(results, convert::volume_name(p.get_volume()));
        let (vs, _) = try_or_reply!(results, self.volumes(Query::VolumeInfo(volume), h.min_meta).await);
        convert::set_volume(results.get().init_info(), &vs[0]);
        Ok(())
    }

    async fn list_volumes(self: CapRc<Self>, params: ozone_manager::ListVolumesParams, mut results: ozone_manager::ListVolumesResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let h = try_or_reply!(results, header(&self.core, self.caller.as_deref(), p.get_header()));
        let owner = try_or_reply!(results, convert::text(p.get_owner(), "owner", stratos_shard::constants::USER_NAME_BYTES_MAX));
        let (prefix, start_after, limit) = try_or_reply!(results, page_without_delimiter(p.get_page()));
        let owner = (!owner.is_empty()).then_some(owner);
        let (vs, truncated) = try_or_reply!(results, self.volumes(Query::ListVolumes { owner, prefix, start_after, limit }, h.min_meta).await);
        let mut r = results.get();
        r.set_truncated(truncated);
        let mut list = r.init_volumes(vs.len() as u32);
        for (i, v) in vs.iter().enumerate() {
            convert::set_volume(list.reborrow().get(i as u32), v);
        }
        Ok(())
    }

    async fn bucket_info(self: CapRc<Self>, params: ozone_manager::BucketInfoParams, mut results: ozone_manager::BucketInfoResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let h = try_or_reply!(results, header(&self.core, self.caller.as_deref(), p.get_header()));
        let volume = try_or_reply!(results, convert::volume_name(p.get_volume()));
        let bucket = try_or_reply!(results, convert::bucket_name(p.get_bucket()));
        let (bs, _) = try_or_reply!(results, self.buckets(Query::BucketInfo(volume, bucket), h.min_meta).await);
        convert::set_bucket(results.get().init_info(), &bs[0]);
        Ok(())
    }

    async fn list_buckets(self: CapRc<Self>, params: ozone_manager::ListBucketsParams, mut results: ozone_manager::ListBucketsResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let h = try_or_reply!(results, header(&self.core, self.caller.as_deref(), p.get_header()));
        let volume = try_or_reply!(results, convert::volume_name(p.get_volume()));
        let (prefix, start_after, limit) = try_or_reply!(results, page_without_delimiter(p.get_page()));
        let (bs, truncated) = try_or_reply!(results, self.buckets(Query::ListBuckets { volume, prefix, start_after, limit }, h.min_meta).await);
        let mut r = results.get();
        r.set_truncated(truncated);
        let mut list = r.init_buckets(bs.len() as u32);
        for (i, b) in bs.iter().enumerate() {
            convert::set_bucket(list.reborrow().get(i as u32), b);
        }
        Ok(())
    }

    async fn lookup_key(self: CapRc<Self>, params: ozone_manager::LookupKeyParams, mut results: ozone_manager::LookupKeyResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let h = try_or_reply!(results, header(&self.core, self.caller.as_deref(), p.get_header()));
        let volume = try_or_reply!(results, convert::volume_name(p.get_volume()));
        let bucket = try_or_reply!(results, convert::bucket_name(p.get_bucket()));
        let key = try_or_reply!(results, convert::key_name(p.get_key()));
        let for_acl = p.get_for_acl();
        let group = group_of_shard(shard_of(&volume, &bucket, &key, self.core.shards));
        let min_meta = try_or_reply!(results, self.core.fresh_meta(h.min_meta).await);
        let right = if for_acl { stratos_shard::rights::READ_ACL } else { stratos_shard::rights::READ };
        let q = Query::LookupKeys { principal: h.principal.clone(), volume: volume.clone(), bucket: bucket.clone(), keys: vec![(0, key)], right };
        let ReadResult::KeyLookups(mut found) = try_or_reply!(results, self.core.read(group, q, min_meta).await) else {
            return Err(capnp::Error::failed("unexpected read result".into()));
        };
        let k = try_or_reply!(results, found.pop().map_or_else(|| Err(WireError::new(Status::Internal, "no result")), |(_, k)| k));
        if for_acl {
            // The right to read an ACL is not the right to read the data: no read tokens.
            convert::set_key(results.get().init_info(), &volume, &bucket, &k, &crate::datapath::Decor { dp: None, owner: &h.principal.user });
            return Ok(());
        }
        self.know_pipelines(std::iter::once(&k)).await;
        convert::set_key(results.get().init_info(), &volume, &bucket, &k, &self.decor(&h));
        Ok(())
    }

    /// Looks many keys of one bucket up: one read (one leadership confirmation) per shard.
    async fn lookup_keys(self: CapRc<Self>, params: ozone_manager::LookupKeysParams, mut results: ozone_manager::LookupKeysResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let h = try_or_reply!(results, header(&self.core, self.caller.as_deref(), p.get_header()));
        let volume = try_or_reply!(results, convert::volume_name(p.get_volume()));
        let bucket = try_or_reply!(results, convert::bucket_name(p.get_bucket()));
        let list = p.get_keys()?;
        if list.len() > LOOKUP_KEYS_MAX {
            try_or_reply!(results, Err(WireError::new(Status::InvalidArgument, format!("{} keys in one lookup, at most {LOOKUP_KEYS_MAX}", list.len()))));
        }
        let core = &self.core;
        let mut per_shard: Vec<Vec<(usize, String)>> = vec![Vec::new(); core.shards as usize];
        let mut found: Vec<Option<Result<convert::KeyView, WireError>>> = vec![None; list.len() as usize];
        for (i, k) in list.iter().enumerate() {
            match convert::key_name(k) {
                Ok(key) => per_shard[shard_of(&volume, &bucket, &key, core.shards) as usize].push((i, key)),
                Err(e) => found[i] = Some(Err(e)),
            }
        }
        let min_meta = try_or_reply!(results, core.fresh_meta(h.min_meta).await);
        let futures: Vec<_> = per_shard
            .into_iter()
            .enumerate()
            .filter(|(_, keys)| !keys.is_empty())
            .map(|(s, keys)| {
                let q = Query::LookupKeys { principal: h.principal.clone(), volume: volume.clone(), bucket: bucket.clone(), keys, right: stratos_shard::rights::READ };
                core.read(group_of_shard(s as u32), q, min_meta)
            })
            .collect();
        for r in futures_util::future::join_all(futures).await {
            let ReadResult::KeyLookups(items) = try_or_reply!(results, r) else { return Err(capnp::Error::failed("unexpected read result".into())) };
            for (pos, k) in items {
                found[pos] = Some(k);
            }
        }
        self.know_pipelines(found.iter().filter_map(|k| k.as_ref().and_then(|k| k.as_ref().ok()))).await;
        let decor = self.decor(&h);
        let mut list = results.get().init_results(found.len() as u32);
        for (i, k) in found.into_iter().enumerate() {
            let b = list.reborrow().get(i as u32);
            match k.unwrap_or_else(|| Err(WireError::new(Status::Internal, "no result"))) {
                Ok(k) => convert::set_key(b.init_info(), &volume, &bucket, &k, &decor),
                Err(e) => convert::set_error(b.init_error(), &e),
            }
        }
        Ok(())
    }

    /// Lists keys: each shard returns its sorted run of up to `limit` keys after the start; the
    /// runs are merged (k-way, by name) and cut at `limit`. The page is truncated if more keys
    /// remain on any shard; the last name is the continuation token (`startAfter`).
    async fn list_keys(self: CapRc<Self>, params: ozone_manager::ListKeysParams, mut results: ozone_manager::ListKeysResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let h = try_or_reply!(results, header(&self.core, self.caller.as_deref(), p.get_header()));
        let volume = try_or_reply!(results, convert::volume_name(p.get_volume()));
        let bucket = try_or_reply!(results, convert::bucket_name(p.get_bucket()));
        let PageAsked { prefix, start_after, limit, delimiter } = try_or_reply!(results, page(p.get_page()));
        let core = &self.core;
        let min_meta = try_or_reply!(results, core.fresh_meta(h.min_meta).await);
        try_or_reply!(results, core.wait_meta_within(min_meta).await);
        let facts = try_or_reply!(results, core.view.borrow().key_bucket(&h.principal, &volume, &bucket, stratos_shard::rights::LIST).map_err(WireError::from));
        let futures: Vec<_> = (0..core.shards)
            .map(|s| {
                let query = Query::ListKeysIn { bucket_id: facts.bucket_id, prefix: prefix.clone(), start_after: start_after.clone(), limit, delimiter: delimiter.clone() };
                core.read(group_of_shard(s), query, min_meta)
            })
            .collect();
        let mut runs = Vec::new();
        let mut more = false;
        for r in futures_util::future::join_all(futures).await {
            let ReadResult::Keys(keys, truncated) = try_or_reply!(results, r) else { return Err(capnp::Error::failed("unexpected read result".into())) };
            more |= truncated;
            runs.push(keys.into_iter().peekable());
        }
        let mut merged: Vec<convert::KeyView> = Vec::with_capacity(limit);
        // Each shard rolled up its own keys under a common prefix; the shards' first keys of
        // one common prefix meet here, side by side in name order: the first stands for all.
        let group = |name: &str| stratos_shard::names::common_prefix(name, &prefix, &delimiter).map(str::len);
        loop {
            let next = runs.iter_mut().enumerate().filter_map(|(i, r)| r.peek().map(|k| (i, k.name.clone()))).min_by(|a, b| a.1.cmp(&b.1));
            let Some((i, name)) = next else { break };
            if let (Some(last), Some(n)) = (merged.last(), group(&name))
                && group(&last.name) == Some(n)
                && last.name.as_bytes()[..n] == name.as_bytes()[..n]
            {
                runs[i].next();
                continue;
            }
            if merged.len() == limit {
                more = true;
                break;
            }
            merged.push(runs[i].next().expect("peeked"));
        }
        let mut r = results.get();
        r.set_truncated(more);
        let mut list = r.init_keys(merged.len() as u32);
        for (i, k) in merged.iter().enumerate() {
            // Listings show where blocks are, without tokens: reading takes a lookup.
            convert::set_key(list.reborrow().get(i as u32), &volume, &bucket, k, &Decor { dp: None, owner: "" });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(delimiter: Option<&str>) -> capnp::message::Builder<capnp::message::HeapAllocator> {
        let mut m = capnp::message::Builder::new_default();
        let mut p = m.init_root::<om_capnp::page::Builder<'_>>();
        p.set_prefix("a");
        p.set_start_after("");
        p.set_limit(10);
        if let Some(d) = delimiter {
            p.set_delimiter(d);
        }
        m
    }

    /// A delimiter rolls up key names: a volume or bucket listing that names one is refused,
    /// saying so, rather than answered as if it had none; an empty one is none.
    #[test]
    fn only_key_listings_take_a_delimiter() {
        let with = asked(Some("/"));
        let e = page_without_delimiter(Ok(with.get_root_as_reader().expect("page"))).expect_err("a volume or bucket listing with a delimiter");
        assert_eq!((e.status, e.message.as_str()), (Status::InvalidArgument, "a delimiter applies to listKeys only"));
        let keys = page(Ok(with.get_root_as_reader().expect("page"))).expect("a key listing takes one");
        assert_eq!((keys.prefix.as_str(), keys.limit, keys.delimiter.as_str()), ("a", 10, "/"));
        for none in [None, Some("")] {
            let m = asked(none);
            assert_eq!(page_without_delimiter(Ok(m.get_root_as_reader().expect("page"))).map_err(|e| e.message), Ok(("a".to_string(), String::new(), 10)));
        }
    }
}
