//! The wire edge under hostile bytes (the property-test twin of `server/fuzz`'s
//! `edge_operation`, small enough for CI): valid `Operation` messages of every shape pass; the
//! same messages with bytes flipped, truncated or extended, and plain random bytes, get an
//! error or a validated operation, never a panic; and whatever passes the edge keeps a shard's
//! invariants when applied.

use capnp::message::Builder;
use proptest::prelude::*;
use stratos_schema::om_capnp::{acl, operation};
use stratos_om::convert::operation_from_bytes;

fn message(build: impl Fn(operation::Builder<'_>)) -> Vec<u8> {
    let mut m = Builder::new_default();
    build(m.init_root::<operation::Builder<'_>>());
    capnp::serialize::write_message_to_words(&m)
}

fn samples() -> Vec<Vec<u8>> {
    vec![
        message(|op| {
            let mut g = op.init_create_volume();
            g.set_volume("vol1");
            g.set_owner("alice");
            g.set_quota_bytes(1 << 30);
            let mut acls = g.reborrow().init_acls(2);
            acls.reborrow().get(0).set_kind(acl::Kind::User);
            acls.reborrow().get(0).set_name("bob");
            acls.reborrow().get(0).set_rights(3);
            acls.reborrow().get(1).set_kind(acl::Kind::World);
            let mut md = g.init_metadata(1);
            md.reborrow().get(0).set_key("team");
            md.reborrow().get(0).set_value("storage");
        }),
        message(|op| {
            let mut g = op.init_create_bucket();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_versioning(true);
        }),
        message(|op| {
            let mut g = op.init_commit_key();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_key("photos/2026/cat.jpg");
            g.set_open_id(42 << 8);
            g.set_data_size(300);
            let mut blocks = g.init_blocks(2);
            for i in 0..2u32 {
                let mut b = blocks.reborrow().get(i);
                b.set_container_id(7);
                b.set_local_id(100 + u64::from(i));
                b.set_length(150);
            }
        }),
        message(|op| {
            let mut g = op.init_delete_keys();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            let mut keys = g.init_keys(3);
            keys.set(0, "a");
            keys.set(1, "b/c");
            keys.set(2, "d");
        }),
        message(|op| {
            let mut g = op.init_rename_key();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_from("a");
            g.set_to("z");
        }),
    ]
}

/// What the server would do next with an operation that passed the edge: apply it.
fn apply_keeps_invariants(bytes: &[u8]) {
    stratos_om::convert::fuzz_edge_operation(bytes);
}

#[test]
fn valid_messages_of_every_shape_pass_the_edge() {
    for (i, m) in samples().iter().enumerate() {
        let r = operation_from_bytes(m, 1_000, 60_000);
        assert!(r.is_ok(), "sample {i}: {r:?}");
        apply_keeps_invariants(m);
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Truncate { keep: usize },
    Extend { bytes: Vec<u8> },
    /// A word that claims a huge segment or list: the reader must refuse, not allocate.
    Word { at: usize, value: u64 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        1 => any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        1 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(|bytes| Mutation::Extend { bytes }),
        2 => (any::<usize>(), prop_oneof![Just(u64::MAX), Just(0xFFFF_FFFF_0000_0001), any::<u64>()]).prop_map(|(at, value)| Mutation::Word { at, value }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_messages_get_errors_not_panics(sample in 0usize..5, mutations in proptest::collection::vec(mutation(), 1..6)) {
        let mut bytes = samples().swap_remove(sample);
        for m in mutations {
            match m {
                Mutation::Flip { at, xor } => {
                    let n = bytes.len();
                    if n > 0 { bytes[at % n] ^= xor; }
                }
                Mutation::Truncate { keep } => {
                    let n = bytes.len();
                    bytes.truncate(keep % (n + 1));
                }
                Mutation::Extend { bytes: more } => bytes.extend(more),
                Mutation::Word { at, value } => {
                    let words = bytes.len() / 8;
                    if words > 0 {
                        let i = (at % words) * 8;
                        bytes[i..i + 8].copy_from_slice(&value.to_le_bytes());
                    }
                }
            }
        }
        apply_keeps_invariants(&bytes);
    }

    #[test]
    fn random_bytes_get_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        apply_keeps_invariants(&bytes);
    }
}
