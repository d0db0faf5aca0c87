//! The StorageContainerManager Cap'n Proto service. Every method validates its arguments and
//! answers a bad request with an error text, never a panic; a change is answered only after
//! [`Scm::commit`] made it durable.
//!
//! **Who may call what** (a secured cluster, issue 20): the caller is the certificate its TLS
//! connection presented. Block allocation and deletion are the OMs'; registration and
//! heartbeats are the datanodes', each bound to its certificate's name; the cluster map (it
//! carries the block-token secret keys) is for OMs and datanodes only; status for any
//! certificate of the cluster. Without TLS (`--insecure` clusters) nobody is proven and every
//! call is taken.

use std::collections::BTreeSet;
use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use stratos_schema::scm_capnp::{self, storage_container_manager as scm_rpc};
use stratos_schema::scm_limits::{ALLOCATE_MAX, DELETE_BLOCKS_MAX};

use stratos_common::tls::Role;

use crate::Scm;
use crate::state::{DeleteTx, Key, Rec, Repl, plan_allocation};
/// Delete transactions sent to a datanode per heartbeat.
pub const DELETES_PER_BEAT: usize = 64;
/// Most container copies one heartbeat hands a datanode (it reports each when done).
pub const REPLICATES_PER_BEAT: usize = 1024;
/// Datanodes named in one exclude list.
pub const EXCLUDE_MAX: u32 = 1024;
pub const ADDRESS_BYTES_MAX: usize = 256;

#[derive(Debug)]
pub struct ScmService {
    pub scm: Rc<Scm>,
    /// Who the connection's certificate names; None on a plain connection (no TLS configured).
    pub caller: Option<stratos_common::tls::Identity>,
}

impl ScmService {
    /// Refuses the call unless the caller's certificate has one of `roles` (any caller when the
    /// SCM runs without TLS).
    fn allow(&self, method: &str, roles: &[Role]) -> Result<(), capnp::Error> {
        match &self.caller {
            Some(id) if !roles.contains(&id.role) => {
                let may: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                Err(capnp::Error::failed(format!("permission denied: {method} is for {} certificates, and the caller's is {} {}", may.join(" and "), id.role.as_str(), id.name)))
            }
            _ => Ok(()),
        }
    }

    /// Why the caller may not register or beat as datanode `id` (0: a new one), if it may not:
    /// a datanode's id is bound to the certificate it first registered with, and a certificate
    /// to one id.
    fn binding_refusal(&self, id: u64) -> Option<String> {
        let name = &self.caller.as_ref()?.name;
        let state = self.scm.state.borrow();
        if let Some(bound) = state.certificates.get(&id).filter(|b| *b != name) {
            return Some(format!("datanode {id} is registered to certificate {bound}, and this one is {name}: each datanode has a certificate of its own"));
        }
        match state.certificates.iter().find(|(_, n)| *n == name) {
            Some((held, _)) if *held != id => Some(format!(
                "certificate {name} belongs to datanode {held} (at {}); a datanode keeps its id in its data directory: restart it with that directory, or issue a new certificate for a new datanode",
                state.datanodes.get(held).map_or("?", String::as_str)
            )),
            _ => None,
        }
    }
}

fn set_keys(mut list: capnp::struct_list::Builder<'_, scm_capnp::secret_key::Owned>, keys: &[Key]) {
    for (i, k) in keys.iter().enumerate() {
        let mut b = list.reborrow().get(i as u32);
        b.set_id(k.id);
        b.set_secret(&k.secret);
        b.set_created_ms(k.created_ms);
        b.set_expires_ms(k.expires_ms);
    }
}


pub fn repl_of(r: scm_capnp::Replication) -> Repl {
    match r {
        scm_capnp::Replication::RatisOne => Repl::One,
        scm_capnp::Replication::RatisThree => Repl::Three,
    }
}

pub fn wire_repl(r: Repl) -> scm_capnp::Replication {
    match r {
        Repl::One => scm_capnp::Replication::RatisOne,
        Repl::Three => scm_capnp::Replication::RatisThree,
    }
}

fn failed(e: anyhow::Error) -> capnp::Error {
    capnp::Error::failed(format!("{e:#}"))
}

impl scm_rpc::Server for ScmService {
    async fn register_datanode(self: CapRc<Self>, params: scm_rpc::RegisterDatanodeParams, mut results: scm_rpc::RegisterDatanodeResults) -> Result<(), capnp::Error> {
        self.allow("registering a datanode", &[Role::Datanode])?;
        let p = params.get()?;
        let address = stratos_common::rpc::text(p.get_address(), "address", ADDRESS_BYTES_MAX).map_err(|e| capnp::Error::failed(e.to_string()))?;
        if address.parse::<std::net::SocketAddr>().is_err() {
            results.get().set_error(format!("datanode address {address:?} is not host:port"));
            return Ok(());
        }
        let scm = &self.scm;
        if let Some(why) = self.binding_refusal(p.get_id()) {
            eprintln!("scm: a datanode's registration refused: {why}");
            results.get().set_error(why);
            return Ok(());
        }
        let id = match p.get_id() {
            0 => scm.state.borrow().next_datanode_id,
            id => id,
        };
        let certificate = self.caller.as_ref().map(|c| c.name.clone());
        let known = {
            let state = scm.state.borrow();
            state.datanodes.get(&id) == Some(&address) && (certificate.is_none() || state.certificates.get(&id) == certificate.as_ref())
        };
        if !known {
            scm.commit(vec![Rec::Datanode { id, address, certificate }]).await.map_err(failed)?;
        }
        scm.saw(id);
        results.get().set_id(id);
        Ok(())
    }

    async fn heartbeat(self: CapRc<Self>, params: scm_rpc::HeartbeatParams, mut results: scm_rpc::HeartbeatResults) -> Result<(), capnp::Error> {
        self.allow("a datanode's heartbeat", &[Role::Datanode])?;
        let p = params.get()?;
        let id = p.get_id();
        let scm = &self.scm;
        if !scm.state.borrow().datanodes.contains_key(&id) {
            results.get().set_error(format!("unknown datanode {id}: register first"));
            return Ok(());
        }
        if let Some(name) = self.caller.as_ref().map(|c| &c.name)
            && scm.state.borrow().certificates.get(&id) != Some(name)
        {
            results.get().set_error(format!("datanode {id} is not registered to certificate {name}: register first"));
            return Ok(());
        }
        scm.saw(id);
        let done: Vec<Rec> = p
            .get_deletes_done()?
            .iter()
            .filter(|txn| scm.state.borrow().deletes.get(txn).is_some_and(|t| t.pending.contains(&id)))
            .map(|txn| Rec::DeleteDone { txn, datanode: id })
            .collect();
        let mut done = done;
        for c in p.get_replicated()?.iter() {
            let (pipeline, container) = (c.get_pipeline_id(), c.get_container_id());
            if scm.state.borrow().repairs.get(&pipeline).is_some_and(|r| r.target == id && r.pending.contains(&container)) {
                done.push(Rec::RepairCopied { pipeline, container });
            }
        }
        let repairing: BTreeSet<u64> = done.iter().filter_map(|r| if let Rec::RepairCopied { pipeline, .. } = r { Some(*pipeline) } else { None }).collect();
        scm.commit(done).await.map_err(failed)?;
        for p in repairing {
            if !scm.state.borrow().repairs.contains_key(&p) {
                eprintln!("scm: pipeline {p} repaired: every container copied, its members now {:?}", scm.state.borrow().pipelines.get(&p).map(|x| x.members.clone()).unwrap_or_default());
            }
        }
        let state = scm.state.borrow();
        let copy: Vec<(u64, u64, String)> = state
            .repairs
            .iter()
            .filter(|(_, r)| r.target == id)
            .flat_map(|(pipeline, r)| {
                let source = state.datanodes.get(&r.source).cloned().unwrap_or_default();
                r.pending.iter().map(move |c| (*pipeline, *c, source.clone()))
            })
            .take(REPLICATES_PER_BEAT)
            .collect();
        let todo: Vec<(u64, Vec<(u64, u64)>)> = state
            .deletes
            .iter()
            .filter(|(_, t)| t.pending.contains(&id))
            .take(DELETES_PER_BEAT)
            .map(|(txn, t)| (*txn, t.blocks.iter().copied().filter(|(c, _)| state.holders(*c).contains(&id)).collect()))
            .collect();
        drop(state);
        let mut r = results.get();
        let mut list = r.reborrow().init_deletes(todo.len() as u32);
        for (i, (txn, blocks)) in todo.iter().enumerate() {
            let mut d = list.reborrow().get(i as u32);
            d.set_txn(*txn);
            let mut bl = d.init_blocks(blocks.len() as u32);
            for (j, (c, l)) in blocks.iter().enumerate() {
                let mut b = bl.reborrow().get(j as u32);
                b.set_container_id(*c);
                b.set_local_id(*l);
            }
        }
        let keys = scm.live_keys();
        set_keys(r.reborrow().init_keys(keys.len() as u32), &keys);
        let mut list = r.reborrow().init_replicate(copy.len() as u32);
        for (i, (pipeline, container, source)) in copy.iter().enumerate() {
            let mut c = list.reborrow().get(i as u32);
            c.set_pipeline_id(*pipeline);
            c.set_container_id(*container);
            c.set_source(source);
        }
        let state = scm.state.borrow();
        if p.get_datanodes_version() != state.datanodes_version {
            r.set_datanodes_version(state.datanodes_version);
            let mut l = r.init_datanodes(state.datanodes.len() as u32);
            for (i, a) in state.datanodes.values().enumerate() {
                l.set(i as u32, a.as_str());
            }
        }
        Ok(())
    }

    async fn allocate_blocks(self: CapRc<Self>, params: scm_rpc::AllocateBlocksParams, mut results: scm_rpc::AllocateBlocksResults) -> Result<(), capnp::Error> {
        self.allow("allocating blocks", &[Role::Om])?;
        let p = params.get()?;
        let scm = &self.scm;
        let count = p.get_count();
        let block_bytes = p.get_block_bytes();
        let exclude_list = p.get_exclude()?;
        let bad = if count == 0 || count > ALLOCATE_MAX {
            Some(format!("asked for {count} blocks, 1..={ALLOCATE_MAX} per call"))
        } else if block_bytes == 0 || block_bytes > scm.cfg.container_bytes {
            Some(format!("block size {block_bytes} bytes; it must be 1..={} (the container size)", scm.cfg.container_bytes))
        } else if exclude_list.len() > EXCLUDE_MAX {
            Some(format!("{} datanodes excluded, at most {EXCLUDE_MAX}", exclude_list.len()))
        } else {
            None
        };
        if let Some(e) = bad {
            results.get().set_error(e);
            return Ok(());
        }
        let replication = repl_of(p.get_replication().map_err(|e| capnp::Error::failed(format!("unknown replication {}", e.0)))?);
        let exclude: BTreeSet<u64> = exclude_list.iter().collect();
        let healthy = scm.healthy();
        let cursor = scm.next_cursor(count as usize);
        let planned = plan_allocation(&scm.state.borrow(), count, replication, block_bytes, scm.cfg.container_bytes, &healthy, &exclude, cursor);
        let (recs, blocks) = match planned {
            Ok(v) => v,
            Err(e) => {
                results.get().set_error(e.0);
                return Ok(());
            }
        };
        // Durable before the ids leave: a crash after this answer cannot issue them again.
        scm.commit(recs).await.map_err(failed)?;
        let mut list = results.get().init_blocks(blocks.len() as u32);
        for (i, (c, l, pipeline)) in blocks.iter().enumerate() {
            let mut b = list.reborrow().get(i as u32);
            b.set_container_id(*c);
            b.set_local_id(*l);
            b.set_pipeline_id(*pipeline);
        }
        Ok(())
    }

    async fn cluster_map(self: CapRc<Self>, _: scm_rpc::ClusterMapParams, mut results: scm_rpc::ClusterMapResults) -> Result<(), capnp::Error> {
        // The map carries the block-token secret keys.
        self.allow("the cluster map", &[Role::Om, Role::Datanode])?;
        let scm = &self.scm;
        let healthy = scm.healthy();
        let keys = scm.live_keys();
        let state = scm.state.borrow();
        let mut r = results.get();
        let mut dl = r.reborrow().init_datanodes(state.datanodes.len() as u32);
        for (i, (id, addr)) in state.datanodes.iter().enumerate() {
            let mut d = dl.reborrow().get(i as u32);
            d.set_id(*id);
            d.set_address(addr);
            d.set_healthy(healthy.contains(id));
        }
        let mut pl = r.reborrow().init_pipelines(state.pipelines.len() as u32);
        for (i, (id, p)) in state.pipelines.iter().enumerate() {
            let mut b = pl.reborrow().get(i as u32);
            b.set_id(*id);
            b.set_replication(wire_repl(p.replication));
            let mut m = b.init_members(p.members.len() as u32);
            for (j, d) in p.members.iter().enumerate() {
                m.set(j as u32, *d);
            }
        }
        set_keys(r.init_keys(keys.len() as u32), &keys);
        Ok(())
    }

    async fn delete_blocks(self: CapRc<Self>, params: scm_rpc::DeleteBlocksParams, mut results: scm_rpc::DeleteBlocksResults) -> Result<(), capnp::Error> {
        self.allow("deleting blocks", &[Role::Om])?;
        let p = params.get()?;
        let scm = &self.scm;
        let (shard, up_to_seq) = (p.get_shard(), p.get_up_to_seq());
        let list = p.get_blocks()?;
        if list.len() > DELETE_BLOCKS_MAX {
            results.get().set_error(format!("{} blocks in one call, at most {DELETE_BLOCKS_MAX}", list.len()));
            return Ok(());
        }
        if scm.state.borrow().shard_seq.get(&shard).is_some_and(|s| *s >= up_to_seq) {
            return Ok(()); // a repeat: already durable
        }
        let blocks: Vec<(u64, u64)> = list.iter().map(|b| (b.get_container_id(), b.get_local_id())).collect();
        let pending = {
            let state = scm.state.borrow();
            blocks.iter().flat_map(|(c, _)| state.holders(*c).iter().copied()).collect()
        };
        let txn = scm.state.borrow().next_txn;
        scm.commit(vec![Rec::DeleteTx { txn, shard, up_to_seq, tx: DeleteTx { blocks, pending } }]).await.map_err(failed)?;
        Ok(())
    }

    async fn status(self: CapRc<Self>, _: scm_rpc::StatusParams, mut results: scm_rpc::StatusResults) -> Result<(), capnp::Error> {
        let json: serde_json::Map<String, serde_json::Value> = self.scm.status_numbers().into_iter().map(|(name, _, _, _, value)| (name.to_string(), value.into())).collect();
        results.get().set_json(serde_json::Value::Object(json).to_string());
        Ok(())
    }
}
