//! Messages built with the generated code read back as built, and the reader limits that the
//! server sets per call (`stratos_schema::rpc_limits`) turn oversized or cut input into errors,
//! not work.

use capnp::message::{Builder, ReaderOptions};
use capnp::serialize;
use stratos_schema::om_capnp::{Status, operation, outcome, ozone_manager};
use stratos_schema::rpc_limits::{NESTING_MAX, TRAVERSAL_WORDS_MAX};

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

/// The options the server reads every message with (`stratos_common::rpc` serves connections
/// with them; the OM decodes operations with them).
fn server_options() -> ReaderOptions {
    let mut options = ReaderOptions::new();
    options.traversal_limit_in_words(Some(TRAVERSAL_WORDS_MAX)).nesting_limit(NESTING_MAX);
    options
}

/// An `echo` call's parameters of exactly `words` words (the segments' sum, which is what a
/// reader compares with its limit), serialized.
fn echo_params_of_words(words: usize) -> Vec<u8> {
    let build = |payload_words: usize| {
        let mut message = Builder::new_default();
        message.init_root::<ozone_manager::echo_params::Builder>().init_payload((payload_words * 8) as u32);
        let total: usize = message.get_segments_for_output().iter().map(|s| s.len() / 8).sum();
        (message, total)
    };
    // The pointers and struct around the payload (a payload too big for the first segment
    // goes to its own, behind a far pointer and its landing pad).
    let (_, total_4096) = build(4096);
    let (message, total) = build(words - (total_4096 - 4096));
    assert_eq!(total, words, "the message is built to the word");
    serialize::write_message_to_words(&message)
}

/// The server's own limit (the live twin, against a running OM, is server/tests/limits.rs): a
/// message one word over it is refused before its body is read, by both readers the server
/// uses, with an error that says so; one of exactly the limit reads whole.
#[test]
fn the_servers_traversal_limit_refuses_one_word_more_and_reads_a_message_at_it() {
    let over = echo_params_of_words(TRAVERSAL_WORDS_MAX + 1);
    match serialize::read_message(&mut &over[..], server_options()) {
        Err(e) => assert!(matches!(e.kind, capnp::ErrorKind::MessageTooLarge(n) if n == TRAVERSAL_WORDS_MAX + 1), "{e}"),
        Ok(_) => panic!("a message of {} words read under a limit of {TRAVERSAL_WORDS_MAX}", TRAVERSAL_WORDS_MAX + 1),
    }
    match serialize::read_message_from_flat_slice(&mut &over[..], server_options()) {
        Err(e) => assert!(matches!(e.kind, capnp::ErrorKind::MessageTooLarge(n) if n == TRAVERSAL_WORDS_MAX + 1), "{e}"),
        Ok(_) => panic!("a flat message of {} words read under a limit of {TRAVERSAL_WORDS_MAX}", TRAVERSAL_WORDS_MAX + 1),
    }
    drop(over);
    // At the limit: read, and walked to the end of its payload within the traversal budget.
    let at = echo_params_of_words(TRAVERSAL_WORDS_MAX);
    let reader = serialize::read_message(&mut &at[..], server_options()).expect("a message at the limit reads");
    let payload = reader.get_root::<ozone_manager::echo_params::Reader>().and_then(|p| p.get_payload()).expect("its payload reads within the limit");
    assert!(payload.len() > (TRAVERSAL_WORDS_MAX - 8) * 8, "{} bytes", payload.len());
}

#[test]
fn truncated_and_garbage_input_is_an_error_not_a_panic() {
    let bytes = commit_key_message();
    // Every cut of a message is refused whole (the segment table announces more than follows),
    // under the server's options, by the stream reader and the flat one alike.
    for cut in 0..bytes.len() {
        let read = serialize::read_message(&mut &bytes[..cut], server_options())
            .and_then(|r| r.get_root::<operation::Reader>().and_then(|op| op.which().map(|_| ()).map_err(Into::into)));
        assert!(read.is_err(), "{cut} of {} bytes read as an operation", bytes.len());
        assert!(serialize::read_message_from_flat_slice(&mut &bytes[..cut], server_options()).is_err(), "{cut} of {} bytes read flat", bytes.len());
    }
    // Garbage whose first word announces 863,484,673 segments: refused on the segment count.
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let e = serialize::read_message(&mut &garbage[..], server_options()).err().expect("garbage is not a message");
    assert!(matches!(e.kind, capnp::ErrorKind::InvalidNumberOfSegments(863_484_673)), "{e}");
}
