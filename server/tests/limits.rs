//! The per-message limit a live OM reads its connections with (`stratos_schema::rpc_limits`,
//! which the server takes through `stratos_common::rpc`): a call whose message is just over the
//! limit is refused with the reason, the same call just under it is served, and the server goes
//! on serving. (schema/tests/messages.rs pins the limit to the word on the readers alone.)

use crate::support::{Proc, s};

use capnp::message::{Builder, HeapAllocator};
use stratos_schema::om_capnp::{Status, ozone_manager};
use stratos_schema::rpc_limits::TRAVERSAL_WORDS_MAX;

/// Operations in the batch, and keys in each at most (`KEYS_PER_DELETE_MAX`, the edge's bound).
const OPS: u32 = 7;
const KEYS_PER_OP_MAX: usize = 10_000;

fn on_executor<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(f: impl FnOnce() -> F + Send + 'static) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(1 << 20).spawn(move || async move { f().await }).expect("executor").join().expect("join")
}

/// The parameters of a `batch` call as `root` of `OPS` deleteKeys operations in a volume that
/// does not exist, of exactly `words` words. Built in one segment, so that its size is the sum of
/// its parts: each key of 1015 bytes costs 128 words (its text with the NUL, and its pointer);
/// one shorter key makes up the rest.
///
/// The call's message is a copy of this into the RPC layer's own segments, larger by its
/// framing (the call, its target, the payload's pointers: tens of words) and by a landing pad
/// for each pointer whose object the copy put in another segment (at most a word per key:
/// 22,000 words for 63,000 keys when measured), never smaller.
fn delete_batch_of_words(words: usize) -> Builder<HeapAllocator> {
    let build = |keys: &[Vec<String>]| {
        let mut m = Builder::new(HeapAllocator::new().first_segment_words((words + 4096) as u32));
        let mut p = m.init_root::<ozone_manager::batch_params::Builder>();
        p.reborrow().init_header().set_user("root");
        let mut ops = p.init_operations(OPS);
        for (i, names) in keys.iter().enumerate() {
            let mut d = ops.reborrow().get(i as u32).init_delete_keys();
            d.set_volume("novol");
            d.set_bucket("nobkt");
            let mut list = d.init_keys(names.len() as u32);
            for (j, k) in names.iter().enumerate() {
                list.set(j as u32, k);
            }
        }
        let used: usize = m.get_segments_for_output().iter().map(|s| s.len() / 8).sum();
        (m, used)
    };
    let (_, frame) = build(&vec![Vec::new(); OPS as usize]);
    let rest = words - frame;
    let full = (rest - 2) / 128;
    let last_text_words = rest - 128 * full - 1;
    assert!(full < OPS as usize * KEYS_PER_OP_MAX, "{words} words do not fit {OPS} deletes");
    assert!(full >= OPS as usize, "{words} words are too few for a key in each delete");
    let mut keys = vec![Vec::new(); OPS as usize];
    // Round robin: every operation has keys (an empty delete names no volume to look up).
    for n in 0..full {
        keys[n % OPS as usize].push(format!("{n:08}{}", "k".repeat(1015 - 8)));
    }
    keys[full % OPS as usize].push("k".repeat(8 * last_text_words - 1));
    let (m, used) = build(&keys);
    assert_eq!(used, words, "the batch is built to the word");
    m
}

/// Sends the batch `params` once on a fresh connection: each operation's status, or the call's
/// error in words.
fn send(om: &str, params: Builder<HeapAllocator>) -> Result<Vec<Status>, String> {
    let om = om.to_string();
    on_executor(move || async move {
        let client: ozone_manager::Client = stratos_client::connect_rpc(&om).await.map_err(|e| format!("connect: {e}"))?;
        let mut req = client.batch_request();
        let p = params.get_root_as_reader::<ozone_manager::batch_params::Reader>().map_err(|e| e.to_string())?;
        req.get().set_header(p.get_header().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        req.get().set_operations(p.get_operations().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        drop(params);
        let reply = crate::support::answered(req.send().promise).await?.map_err(|e| e.to_string())?;
        let outcomes = reply.get().and_then(|r| r.get_outcomes()).map_err(|e| e.to_string())?;
        outcomes
            .iter()
            .map(|o| match o.which() {
                Ok(stratos_schema::om_capnp::outcome::Error(e)) => e.and_then(|e| Ok(e.get_status()?)).map_err(|e| e.to_string()),
                Ok(_) => Ok(Status::Ok),
                Err(e) => Err(e.to_string()),
            })
            .collect()
    })
}

#[test]
fn a_message_over_the_limit_is_refused_with_the_reason_and_one_under_it_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let om = Proc::secured(&["om", "--data-dir", s(&dir.path().join("om")), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--shards", "1", "--executors", "1", "--no-pin"]);
    let rpc = om.word_after("rpc");
    // Over: the parameters alone are one word past the limit, and the call's message is larger.
    let refused = send(&rpc, delete_batch_of_words(TRAVERSAL_WORDS_MAX + 1)).expect_err("a message over the server's limit is refused");
    assert!(refused.contains("too large") && refused.contains("words"), "the refusal says why: {refused}");
    // Under: parameters whose message, with a landing pad for every key and the framing, still
    // fits (under by about 1%): read whole, and every operation answered on its own (the volume
    // does not exist) rather than the call refused.
    let under = TRAVERSAL_WORDS_MAX - TRAVERSAL_WORDS_MAX / 128 - 1024;
    let served = send(&rpc, delete_batch_of_words(under)).expect("a message under the limit is served");
    assert_eq!(served, vec![Status::VolumeNotFound; OPS as usize], "each delete answered on its own");
    // The refusal cost its connection only.
    assert_eq!(send(&rpc, delete_batch_of_words(4096)), Ok(vec![Status::VolumeNotFound; OPS as usize]), "the server goes on serving");
}
