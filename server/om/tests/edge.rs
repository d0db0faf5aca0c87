//! The wire edge under hostile bytes (the property-test twin of `server/fuzz`'s
//! `edge_operation`, small enough for CI): valid `Operation` messages of every shape pass; the
//! same messages with bytes flipped, truncated or extended, and plain random bytes, get an
//! error or a validated operation, never a panic; and whatever passes the edge keeps a shard's
//! invariants when applied.

use capnp::message::Builder;
use proptest::prelude::*;
use stratos_om::convert::{Target, operation_from_bytes};
use stratos_schema::om_capnp::{Replication, Status, Tristate, acl, operation};
use stratos_shard::Op;

fn message(build: impl Fn(operation::Builder<'_>)) -> Vec<u8> {
    let mut m = Builder::new_default();
    build(m.init_root::<operation::Builder<'_>>());
    capnp::serialize::write_message_to_words(&m)
}

/// One valid message of every operation kind of the wire (`Operation` in om.capnp), with the
/// optional parts (ACLs, metadata, blocks, lists) filled in where the kind has them.
fn samples() -> Vec<Vec<u8>> {
    vec![
        message(|op| {
            let mut g = op.init_create_volume();
            g.set_volume("vol1");
            g.set_owner("alice");
            g.set_admin("root");
            g.set_quota_bytes(1 << 30);
            g.set_quota_namespace(100);
            let mut acls = g.reborrow().init_acls(2);
            acls.reborrow().get(0).set_kind(acl::Kind::User);
            acls.reborrow().get(0).set_name("bob");
            acls.reborrow().get(0).set_rights(3);
            acls.reborrow().get(1).set_kind(acl::Kind::World);
            let mut md = g.init_metadata(1);
            md.reborrow().get(0).set_key("team");
            md.reborrow().get(0).set_value("storage");
        }),
        message(|op| op.init_delete_volume().set_volume("vol1")),
        message(|op| {
            let mut g = op.init_set_volume_owner();
            g.set_volume("vol1");
            g.set_owner("carol");
        }),
        message(|op| {
            let mut g = op.init_set_volume_quota();
            g.set_volume("vol1");
            g.set_quota_bytes(1 << 40);
            g.set_quota_namespace(10);
        }),
        message(|op| {
            let mut g = op.init_create_bucket();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_owner("alice");
            g.set_versioning(true);
            g.set_replication(Replication::RatisOne);
            g.set_quota_bytes(1 << 20);
            let mut acls = g.reborrow().init_acls(1);
            acls.reborrow().get(0).set_kind(acl::Kind::Group);
            acls.reborrow().get(0).set_name("staff");
            acls.reborrow().get(0).set_rights(1);
            let mut md = g.init_metadata(1);
            md.reborrow().get(0).set_key("tier");
            md.reborrow().get(0).set_value("hot");
        }),
        message(|op| {
            let mut g = op.init_delete_bucket();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
        }),
        message(|op| {
            let mut g = op.init_set_bucket_property();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_owner("bob");
            g.set_versioning(Tristate::No);
            g.reborrow().init_replication().set_some(Replication::RatisThree);
            g.set_quota_namespace(1000);
        }),
        message(|op| {
            let mut g = op.init_open_key();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_key("photos/2026/cat.jpg");
            g.set_data_size(300);
            g.reborrow().init_replication().set_none(());
            let mut md = g.init_metadata(1);
            md.reborrow().get(0).set_key("content-type");
            md.reborrow().get(0).set_value("image/jpeg");
        }),
        message(|op| {
            let mut g = op.init_allocate_block();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_key("photos/2026/cat.jpg");
            g.set_open_id(42 << 8);
            let mut exclude = g.init_exclude_datanodes(2);
            exclude.set(0, 3);
            exclude.set(1, 5);
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
            let mut g = op.init_delete_key();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_key("photos/2026/cat.jpg");
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
        message(|op| {
            let mut g = op.init_abort_key();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_key("photos/2026/cat.jpg");
            g.set_open_id(42 << 8);
        }),
        message(|op| op.init_get_s3_secret().set_access_id("alice")),
        message(|op| op.init_revoke_s3_secret().set_access_id("")),
        message(|op| {
            let mut g = op.init_set_bucket_metadata();
            g.set_volume("s3v");
            g.set_bucket("bkt1");
            g.set_remove_prefix("s3:encryption");
            let mut set = g.init_set(1);
            set.reborrow().get(0).set_key("s3:encryption");
            set.reborrow().get(0).set_value("AES256");
        }),
        message(|op| {
            let mut g = op.init_set_acls();
            g.set_volume("s3v");
            g.set_bucket("bkt1");
            let mut acls = g.init_acls(1);
            acls.reborrow().get(0).set_kind(acl::Kind::World);
            acls.reborrow().get(0).set_rights(8);
        }),
        message(|op| {
            let mut g = op.init_set_acls();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_key("photos/2026/cat.jpg");
            let mut acls = g.init_acls(1);
            acls.reborrow().get(0).set_kind(acl::Kind::World);
            acls.reborrow().get(0).set_rights(1);
        }),
        // PutObjectAcl's form: only of the version it read.
        message(|op| {
            let mut g = op.init_set_acls();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_key("a");
            g.set_if_update_id(42);
            let mut acls = g.init_acls(1);
            acls.reborrow().get(0).set_kind(acl::Kind::User);
            acls.reborrow().get(0).set_name("bob");
            acls.reborrow().get(0).set_rights(255);
        }),
        message(|op| {
            let mut g = op.init_edit_acls();
            g.set_volume("s3v");
            g.set_bucket("bkt1");
            let mut add = g.reborrow().init_add(1);
            add.reborrow().get(0).set_kind(acl::Kind::User);
            add.reborrow().get(0).set_name("bob");
            add.reborrow().get(0).set_rights(8);
        }),
        message(|op| {
            let mut g = op.init_edit_acls();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_key("photos/2026/cat.jpg");
            let mut remove = g.init_remove(1);
            remove.reborrow().get(0).set_kind(acl::Kind::World);
            remove.reborrow().get(0).set_rights(1);
        }),
        message(|op| {
            let mut g = op.init_set_key_metadata();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_key("photos/2026/cat.jpg");
            g.set_remove_prefix("tag:");
            let mut set = g.reborrow().init_set(1);
            set.reborrow().get(0).set_key("tag:color");
            set.reborrow().get(0).set_value("red");
            let mut m = g.init_if_match();
            m.set_key("ETag");
            m.set_value("0123");
        }),
        message(|op| {
            let mut g = op.init_initiate_upload();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_key("photos/2026/cat.jpg");
        }),
        message(|op| {
            let mut g = op.init_commit_part();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_key("photos/2026/cat.jpg");
            g.set_upload_id("0123abc");
            g.set_part_number(3);
            g.set_open_id(42 << 8);
            g.set_data_size(0);
            g.set_etag("d41d8cd98f00b204e9800998ecf8427e");
        }),
        message(|op| {
            let mut g = op.init_complete_upload();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_key("photos/2026/cat.jpg");
            g.set_upload_id("0123abc");
            g.set_etag("abc-2");
            let mut parts = g.init_parts(2);
            for i in 0..2u32 {
                parts.reborrow().get(i).set_part_number(i + 1);
                parts.reborrow().get(i).set_etag("e");
            }
        }),
        message(|op| {
            let mut g = op.init_abort_upload();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_key("photos/2026/cat.jpg");
            g.set_upload_id("0123abc");
        }),
    ]
}

/// The wire's operation kinds. `wire_kind`'s match is exhaustive: a kind added to om.capnp
/// does not compile there until it is named, and once it is named here
/// `valid_messages_of_every_shape_pass_the_edge` wants a sample of it.
const WIRE_KINDS: [&str; 27] = [
    "createVolume", "deleteVolume", "setVolumeOwner", "setVolumeQuota", "createBucket", "deleteBucket", "setBucketProperty",
    "openKey", "allocateBlock", "commitKey", "deleteKey", "deleteKeys", "renameKey", "abortKey", "getS3Secret", "revokeS3Secret",
    "setKeyMetadata", "initiateUpload", "commitPart", "completeUpload", "abortUpload", "setBucketMetadata",
    // A bucket's entries (meta group) and a key's (its shard), and a key's of one version.
    "setAcls", "setAcls", "setAcls", "editAcls", "editAcls",
];

fn wire_kind(bytes: &[u8]) -> &'static str {
    use operation::Which as W;
    let message = capnp::serialize::read_message(&mut &bytes[..], capnp::message::ReaderOptions::new()).expect("a sample reads");
    match message.get_root::<operation::Reader<'_>>().expect("a sample reads").which().expect("a known kind") {
        W::CreateVolume(_) => "createVolume",
        W::DeleteVolume(_) => "deleteVolume",
        W::SetVolumeOwner(_) => "setVolumeOwner",
        W::SetVolumeQuota(_) => "setVolumeQuota",
        W::CreateBucket(_) => "createBucket",
        W::DeleteBucket(_) => "deleteBucket",
        W::SetBucketProperty(_) => "setBucketProperty",
        W::OpenKey(_) => "openKey",
        W::AllocateBlock(_) => "allocateBlock",
        W::CommitKey(_) => "commitKey",
        W::DeleteKey(_) => "deleteKey",
        W::DeleteKeys(_) => "deleteKeys",
        W::RenameKey(_) => "renameKey",
        W::AbortKey(_) => "abortKey",
        W::GetS3Secret(_) => "getS3Secret",
        W::RevokeS3Secret(_) => "revokeS3Secret",
        W::SetKeyMetadata(_) => "setKeyMetadata",
        W::InitiateUpload(_) => "initiateUpload",
        W::CommitPart(_) => "commitPart",
        W::CompleteUpload(_) => "completeUpload",
        W::AbortUpload(_) => "abortUpload",
        W::SetBucketMetadata(_) => "setBucketMetadata",
        W::SetAcls(_) => "setAcls",
        W::EditAcls(_) => "editAcls",
    }
}

/// The shard operation a wire kind must become, and whether it goes to the meta group.
fn op_kind(op: &Op) -> (&'static str, bool) {
    match op {
        Op::CreateVolume { .. } => ("createVolume", true),
        Op::DeleteVolume { .. } => ("deleteVolume", true),
        Op::SetVolumeOwner { .. } => ("setVolumeOwner", true),
        Op::SetVolumeQuota { .. } => ("setVolumeQuota", true),
        Op::CreateBucket { .. } => ("createBucket", true),
        Op::DeleteBucket { .. } => ("deleteBucket", true),
        Op::SetBucketProperty { .. } => ("setBucketProperty", true),
        Op::SetBucketMetadata { .. } => ("setBucketMetadata", true),
        Op::OpenKey { .. } => ("openKey", false),
        Op::AllocateBlock { .. } => ("allocateBlock", false),
        Op::CommitKey { .. } => ("commitKey", false),
        Op::DeleteKey { .. } => ("deleteKey", false),
        Op::DeleteKeys { .. } => ("deleteKeys", false),
        Op::RenameKey { .. } => ("renameKey", false),
        Op::AbortKey { .. } => ("abortKey", false),
        Op::CommitKeyWith { .. } | Op::CommitKeyWithAcls { .. } => ("commitKey", false),
        Op::SetKeyMetadata { .. } => ("setKeyMetadata", false),
        Op::InitiateUpload { .. } => ("initiateUpload", false),
        Op::CommitPart { .. } | Op::CommitPartWithChecksum { .. } => ("commitPart", false),
        Op::CompleteUpload { .. } | Op::CompleteUploadWith { .. } | Op::CompleteUploadWithAcls { .. } => ("completeUpload", false),
        Op::AbortUpload { .. } => ("abortUpload", false),
        Op::GetS3Secret { .. } => ("getS3Secret", true),
        Op::RevokeS3Secret { .. } => ("revokeS3Secret", true),
        Op::SetBucketAcls { .. } => ("setAcls", true),
        Op::SetKeyAcls { .. } | Op::SetKeyAclsIf { .. } => ("setAcls", false),
        Op::EditBucketAcls { .. } => ("editAcls", true),
        Op::EditKeyAcls { .. } => ("editAcls", false),
        other => panic!("the wire edge made an internal command: {other:?}"),
    }
}

/// What the server would do next with an operation that passed the edge: apply it.
fn apply_keeps_invariants(bytes: &[u8]) {
    stratos_om::convert::fuzz_edge_operation(bytes);
}

#[test]
fn valid_messages_of_every_shape_pass_the_edge() {
    let samples = samples();
    let mut kinds: Vec<&str> = samples.iter().map(|m| wire_kind(m)).collect();
    kinds.sort_unstable();
    let mut all = WIRE_KINDS.to_vec();
    all.sort_unstable();
    assert_eq!(kinds, all, "one sample of each operation kind of the wire");
    for m in &samples {
        let kind = wire_kind(m);
        let (op, target) = operation_from_bytes(m, 1_000, 60_000).unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let (made, meta) = op_kind(&op);
        assert_eq!(made, kind, "{kind} became {op:?}");
        match target {
            Target::Meta => assert!(meta, "{kind} went to the meta group"),
            Target::Key { hash } => {
                assert!(!meta, "{kind} went to a key shard");
                let by = ["photos/2026/cat.jpg", "a"].into_iter().find(|k| stratos_schema::key_hash("vol1", "bkt1", k) == hash);
                assert!(by.is_some(), "{kind} routed by a hash ({hash:#x}) of none of the sample's keys in vol1/bkt1");
            }
        }
        apply_keeps_invariants(m);
    }
}

#[test]
fn a_condition_on_a_version_is_a_keys_alone() {
    let of = |key: &str| {
        message(|op| {
            let mut g = op.init_set_acls();
            g.set_volume("vol1");
            g.set_bucket("bkt1");
            g.set_key(key);
            g.set_if_update_id(7);
            g.init_acls(0);
        })
    };
    match operation_from_bytes(&of("a"), 1_000, 60_000) {
        Ok((Op::SetKeyAclsIf { update_id: 7, by_key: false, .. }, Target::Key { .. })) => {}
        other => panic!("a key's setAcls with ifUpdateId became {other:?}"),
    }
    let e = operation_from_bytes(&of(""), 1_000, 60_000).expect_err("a bucket's entries have no version to match");
    assert_eq!(e.status, Status::InvalidArgument, "{e:?}");
    assert!(e.message.contains("ifUpdateId"), "{e:?}");
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
    fn mutated_messages_get_errors_not_panics(sample in 0..WIRE_KINDS.len(), mutations in proptest::collection::vec(mutation(), 1..6)) {
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
