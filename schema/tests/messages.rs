//! Messages built with the generated code read back as built, and the reader limits that the
//! server sets per call turn oversized or deeply nested input into errors, not work.

use capnp::message::{Builder, ReaderOptions};
use capnp::serialize;
use stratos_schema::om_capnp::{Status, operation, outcome};

fn commit_key_message() -> Vec<u8> {
    let mut message = Builder::new_default();
    let op = message.init_root::<operation::Builder>();
    let mut commit = op.init_commit_key();
    commit.set_volume("vol1");
    commit.set_bucket("bucket1");
    commit.set_key("photos/2026/cat.jpg");
    commit.set_open_id(42 << 8);
    commit.set_data_size(4096);
    let mut blocks = commit.init_blocks(2);
    for i in 0..2 {
        let mut b = blocks.reborrow().get(i);
        b.set_container_id(7);
        b.set_local_id(100 + u64::from(i));
        b.set_pipeline_id(3);
        b.set_length(2048);
    }
    serialize::write_message_to_words(&message)
}

#[test]
fn an_operation_reads_back_as_built() {
    let bytes = commit_key_message();
    let reader = serialize::read_message(&mut &bytes[..], ReaderOptions::new()).expect("reads back");
    let op = reader.get_root::<operation::Reader>().expect("reads back");
    let operation::Which::CommitKey(c) = op.which().expect("reads back") else { panic!("not a commitKey") };
    assert_eq!(c.get_volume().expect("reads back").to_str().expect("reads back"), "vol1");
    assert_eq!(c.get_key().expect("reads back").to_str().expect("reads back"), "photos/2026/cat.jpg");
    assert_eq!(c.get_open_id(), 42 << 8);
    let blocks = c.get_blocks().expect("reads back");
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks.get(1).get_local_id(), 101);
    assert_eq!(blocks.iter().map(|b| b.get_length()).sum::<u64>(), c.get_data_size());
}

#[test]
fn an_error_outcome_carries_status_message_and_leader_hint() {
    let mut message = Builder::new_default();
    let mut e = message.init_root::<outcome::Builder>().init_error();
    e.set_status(Status::NotLeader);
    e.set_message("shard 3 is led by another node");
    e.set_leader_hint("127.0.0.1:9862");
    let bytes = serialize::write_message_to_words(&message);
    let reader = serialize::read_message(&mut &bytes[..], ReaderOptions::new()).expect("reads back");
    let outcome::Which::Error(e) = reader.get_root::<outcome::Reader>().expect("reads back").which().expect("reads back") else { panic!() };
    let e = e.expect("reads back");
    assert_eq!(e.get_status().expect("reads back"), Status::NotLeader);
    assert_eq!(e.get_leader_hint().expect("reads back").to_str().expect("reads back"), "127.0.0.1:9862");
}

#[test]
fn a_traversal_limit_turns_an_oversized_message_into_an_error() {
    let mut message = Builder::new_default();
    let op = message.init_root::<operation::Builder>();
    let mut del = op.init_delete_keys();
    del.set_volume("vol1");
    del.set_bucket("bucket1");
    let mut keys = del.init_keys(50_000);
    for i in 0..50_000 {
        keys.set(i, "k");
    }
    let bytes = serialize::write_message_to_words(&message);
    // The server's per-call limit: far below what this message needs.
    let mut options = ReaderOptions::new();
    options.traversal_limit_in_words(Some(8 * 1024));
    // Either the read refuses the message outright (its size exceeds the limit) or walking it
    // fails at the limit: never 50,000 keys of work.
    let walk = || -> capnp::Result<u32> {
        let reader = serialize::read_message(&mut &bytes[..], options)?;
        let op = reader.get_root::<operation::Reader>()?;
        let operation::Which::DeleteKeys(d) = op.which()? else { panic!("not a deleteKeys") };
        let keys = d.get_keys()?;
        for i in 0..keys.len() {
            keys.get(i)?;
        }
        Ok(keys.len())
    };
    assert!(walk().is_err(), "reading past the traversal limit must fail");
    // And the same message within a large enough limit reads whole.
    let mut enough = ReaderOptions::new();
    enough.traversal_limit_in_words(Some(1 << 20));
    let reader = serialize::read_message(&mut &bytes[..], enough).expect("reads back");
    let operation::Which::DeleteKeys(d) = reader.get_root::<operation::Reader>().expect("reads back").which().expect("reads back") else { panic!() };
    assert_eq!(d.get_keys().expect("reads back").len(), 50_000);
}

#[test]
fn truncated_and_garbage_input_is_an_error_not_a_panic() {
    let bytes = commit_key_message();
    for cut in 0..bytes.len() {
        let _ = serialize::read_message(&mut &bytes[..cut], ReaderOptions::new())
            .and_then(|r| r.get_root::<operation::Reader>().and_then(|op| op.which().map(|_| ()).map_err(Into::into)));
    }
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let _ = serialize::read_message(&mut &garbage[..], ReaderOptions::new());
}
