//! The log form of commands is their rkyv image, read back by every later build: entries a
//! build wrote must decode, to the same command, in the builds after it. Snapshots too: a
//! snapshot an earlier build wrote loads into the same state. These bytes were
//! written by 470cb60 (before `Condition` gained `Present` and `NotMatches`, appended after the
//! existing variants so that the archived enum kept its size and tags); a change that moves
//! them fails here, and needs a new command or a versioned decoder instead.
use stratos_shard::*;

/// The commands whose log form is pinned: a conditional commit, a completion, a tag edit.
fn commands() -> Vec<Command> {
    let ctx = CommandContext { client_id: 7, request_id: 9, time_ms: 1_764_000_000_000, principal: Principal::user("alice"), bucket: None };
    let pair = |k: &str, v: &str| MetadataPair { key: k.into(), value: v.into() };
    let block = BlockLocation { container_id: 1, local_id: 2, pipeline_id: 3, length: 4 };
    vec![
        Command { ctx: ctx.clone(), op: Op::CommitKeyWith { volume: "s3v".into(), bucket: "b".into(), key: "k".into(), open_id: 5, data_size: 4, blocks: vec![block], metadata: vec![pair("etag", "e1")], condition: Condition::Matches(pair("etag", "e0")), allowed: true } },
        Command { ctx: ctx.clone(), op: Op::CommitKeyWith { volume: "s3v".into(), bucket: "b".into(), key: "k".into(), open_id: 6, data_size: 4, blocks: vec![block], metadata: vec![], condition: Condition::Absent, allowed: false } },
        Command { ctx: ctx.clone(), op: Op::CompleteUpload { volume: "s3v".into(), bucket: "b".into(), key: "k".into(), upload_id: "u1".into(), parts: vec![(1, "p1".into())], etag: "x-1".into(), condition: Condition::Any, allowed: false } },
        Command { ctx, op: Op::SetKeyMetadata { volume: "s3v".into(), bucket: "b".into(), key: "k".into(), set: vec![pair("tag:a", "1")], remove_prefix: "tag:".into(), condition: Condition::Matches(pair("etag", "e1")) } },
    ]
}


/// `commands()` as 470cb60 encoded them.
const WRITTEN: [&str; 4] = [
    "010000000000000002000000000000000300000000000000040000000000000065746167ffffffff6531ffffffffffff0700000000000000090000000000000000e897b69a010000616c696365ffffffb0ffffff0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001e000000733376ffffffffff62ffffffffffffff6bffffffffffffff000000000500000000000000040000000000000028ffffff0100000040ffffff010000000200000065746167ffffffff6530ffffffffffff01000000000000000000000000000000000000000000000000000000",
    "01000000000000000200000000000000030000000000000004000000000000000700000000000000090000000000000000e897b69a010000616c696365ffffffc0ffffff0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001e000000733376ffffffffff62ffffffffffffff6bffffffffffffff000000000600000000000000040000000000000038ffffff0100000050ffffff00000000010000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "010000007031ffffffffffff000000000700000000000000090000000000000000e897b69a010000616c696365ffffffd0ffffff00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000022000000733376ffffffffff62ffffffffffffff6bffffffffffffff7531ffffffffffff54ffffff01000000782d31ffffffffff000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "7461673a61ffffff31ffffffffffffff0700000000000000090000000000000000e897b69a010000616c696365ffffffd0ffffff0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001f000000733376ffffffffff62ffffffffffffff6bffffffffffffff5cffffff010000007461673affffffff0200000065746167ffffffff6531ffffffffffff000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// Each of `written` decodes to its command of `commands`, which this build encodes the same.
fn keep_their_log_form(written: &[&str], commands: Vec<Command>) {
    assert_eq!(written.len(), commands.len());
    for (written, command) in written.iter().zip(commands) {
        let bytes = unhex(written);
        assert_eq!(Command::decode(&bytes).expect("decodes"), command);
        assert_eq!(command.encode().as_slice(), &bytes[..], "encoded as before: {:?}", command.op);
    }
}

#[test]
fn commands_written_by_an_earlier_build_decode_to_the_same_commands() {
    keep_their_log_form(&WRITTEN, commands());
}

#[test]
fn the_new_conditions_round_trip() {
    let pair = MetadataPair { key: "etag".into(), value: "e1".into() };
    for condition in [Condition::Present, Condition::NotMatches(pair)] {
        let mut c = commands().remove(0);
        if let Op::CommitKeyWith { condition: slot, .. } = &mut c.op {
            *slot = condition;
        }
        assert_eq!(Command::decode(&c.encode()).expect("decodes"), c);
        assert_eq!(c.encode().len(), unhex(WRITTEN[0]).len(), "the same size as the old variants");
    }
}

/// A multipart upload in progress (two parts) in a bucket of `s3v`, as the snapshot below was made.
fn upload_in_progress() -> ShardState {
    let mut state = ShardState::new();
    let mut i = 0u64;
    let mut run = |state: &mut ShardState, who: Principal, op: Op| {
        i += 1;
        let cmd = Command { ctx: CommandContext { client_id: 1, request_id: i, time_ms: 5_000, principal: who, bucket: None }, op };
        state.apply(i, &cmd)
    };
    let alice = Principal::user("alice");
    let volume = Op::CreateVolume { volume: "s3v".into(), owner: "alice".into(), admin: "root".into(), quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] };
    run(&mut state, Principal::admin("root"), volume).expect("volume");
    let bucket = Op::CreateBucket { volume: "s3v".into(), bucket: "bkt".into(), owner: None, versioning: false, replication: Replication::RatisOne, quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, acls: vec![], metadata: vec![] };
    run(&mut state, alice.clone(), bucket).expect("bucket");
    let pairs = vec![MetadataPair { key: "content-type".into(), value: "text/plain".into() }];
    run(&mut state, alice.clone(), Op::InitiateUpload { volume: "s3v".into(), bucket: "bkt".into(), key: "big".into(), upload_id: "u1".into(), replication: None, metadata: pairs }).expect("upload");
    for (n, local) in [(1u32, 901u64), (2, 902)] {
        let block = BlockLocation { container_id: 2, local_id: local, pipeline_id: 1, length: 10 };
        let open = Op::OpenKey { volume: "s3v".into(), bucket: "bkt".into(), key: "big".into(), replication: None, blocks: vec![block], expires_ms: 60_000, metadata: vec![] };
        let Ok(Reply::KeyOpened { open_id, .. }) = run(&mut state, alice.clone(), open) else { panic!("open") };
        let part = Op::CommitPart { volume: "s3v".into(), bucket: "bkt".into(), key: "big".into(), upload_id: "u1".into(), part: n, open_id, data_size: 10, blocks: vec![block], etag: format!("e{n}") };
        run(&mut state, alice.clone(), part).expect("part");
    }
    state
}

/// `upload_in_progress()`'s snapshot as 7ac8043 wrote it (format version 10: parts without
/// checksums).
const SNAPSHOT_V10: [&str; 39] = [
    "53545241544f53530a0000000000000000000000000000000000000000000000010000001002000010020000a5d80b78",
    "616c69636500733376000000f4ffffff0900000000000000010000000000000001000000000000000000000000000000",
    "020000000000000000000000000000000000000000000000010000000000000001000000000000008813000000000000",
    "000000000000000000000000000000000100000000000000636f6e74656e742d74797065746578742f706c61696e0000",
    "8c000000e8ffffff8a000000ecffffff0200000000000000626967ffffffffff7531ffffffffffff8813000000000000",
    "01000000ccffffff01000000000000000200000000000000850300000000000001000000000000000a00000000000000",
    "0200000000000000860300000000000001000000000000000a000000000000000200000000000000626967ffffffffff",
    "7531ffffffffffff01000000000000006531ffffffffffff0a00000000000000881300000000000088ffffff01000000",
    "0200000000000000626967ffffffffff7531ffffffffffff02000000000000006532ffffffffffff0a00000000000000",
    "881300000000000068ffffff010000000000000000000000040000000000000007000000000000000000000000000000",
    "5cfeffff0100000060feffff0100000070feffff0100000088feffff01000000a8feffff00000000a0feffff00000000",
    "98feffff0000000090feffff0000000088feffff0000000080feffff00000000a0feffff0100000008ffffff02000000",
    "08000000c8030000c80300009de77e4b0200000000000000850300000000000001000000000000000a00000000000000",
    "0200000000000000860300000000000001000000000000000a0000000000000001000000000000000100000000000000",
    "010000000000000088130000000000000000000000000000010000000000000001000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000100000000000000020000000000000002000000000000008813000000000000",
    "000000000000000001000000000000000200000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "010000000000000003000000000000000300000000000000881300000000000000000000000000000d0000007531ffff",
    "ffffffff0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000000000000000000001000000000000000400000000000000",
    "0400000000000000881300000000000000000000000000000200000000000000030000000000000008feffff01000000",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000100000000000000050000000000000005000000000000008813000000000000",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "010000000000000006000000000000000600000000000000881300000000000000000000000000000200000000000000",
    "040000000000000028fdffff010000000000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000000000000000000001000000000000000700000000000000",
    "070000000000000088130000000000000000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000080fcffff070000000200000001000000600000007ccb13500300000050000000",
    "733376000000000001000000000000000100000000000000616c696365ffffff726f6f74ffffffff8813000000000000",
    "8813000000000000ffffffffffffffffffffffffffffffffc0ffffff00000000b8ffffff000000000300000001000000",
    "7000000078419ec6070000006000000073337600626b7400020000000000000002000000000000000100000000000000",
    "616c696365ffffff881300000000000088130000000000000100010000000000ffffffffffffffffffffffffffffffff",
    "b8ffffff00000000b0ffffff0000000000000000000000000700000000000000100000003378c1af0400000000000000",
    "0900000000000000",
];

#[test]
fn a_snapshot_written_by_an_earlier_build_loads_into_the_same_state() {
    let bytes = unhex(&SNAPSHOT_V10.concat());
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")), 10);
    let loaded = ShardState::load_snapshot(&bytes).expect("a version 10 snapshot loads");
    let built = upload_in_progress();
    assert_eq!(loaded.state_hash(), built.state_hash());
    let bucket = loaded.bucket_info("s3v", "bkt").expect("bucket").record.object_id.to_native();
    let (upload, parts, _) = loaded.list_parts(bucket, "big", "u1", 0, 10).expect("the upload");
    assert_eq!(upload.metadata[0].value, "text/plain");
    let parts: Vec<(u32, &str, u64, &str)> = parts.iter().map(|(n, p)| (*n, p.etag.as_str(), p.size, p.checksum.as_str())).collect();
    assert_eq!(parts, [(1, "e1", 10, ""), (2, "e2", 10, "")]);
}

/// The commands added with part checksums.
fn checksum_commands() -> Vec<Command> {
    let ctx = CommandContext { client_id: 7, request_id: 9, time_ms: 1_764_000_000_000, principal: Principal::user("alice"), bucket: None };
    let pair = |k: &str, v: &str| MetadataPair { key: k.into(), value: v.into() };
    let block = BlockLocation { container_id: 1, local_id: 2, pipeline_id: 3, length: 4 };
    vec![
        Command { ctx: ctx.clone(), op: Op::CommitPartWithChecksum { volume: "s3v".into(), bucket: "b".into(), key: "k".into(), upload_id: "u1".into(), part: 2, open_id: 5, data_size: 4, blocks: vec![block], etag: "p2".into(), checksum: "CRC32:AAAAAQ==".into() } },
        Command { ctx, op: Op::CompleteUploadWith { volume: "s3v".into(), bucket: "b".into(), key: "k".into(), upload_id: "u1".into(), parts: vec![(1, "p1".into(), "CRC32:AAAAAQ==".into()), (2, "p2".into(), String::new())], etag: "x-2".into(), set: vec![pair("checksum:crc32", "AAAAAw==-2"), pair("checksum:type", "COMPOSITE")], condition: Condition::Absent, allowed: true } },
    ]
}

/// `checksum_commands()` as the build that added them (after 7ac8043) encoded them.
const WRITTEN_WITH_CHECKSUMS: [&str; 2] = [
    "010000000000000002000000000000000300000000000000040000000000000043524333323a4141414141513d3d00000700000000000000090000000000000000e897b69a010000616c696365ffffffb0ffffff00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000026000000733376ffffffffff62ffffffffffffff6bffffffffffffff7531ffffffffffff020000000500000000000000040000000000000020ffffff010000007032ffffffffffff8e00000030ffffff0000000000000000000000000000000000000000000000000000000000000000",
    "43524333323a4141414141513d3d0000010000007031ffffffffffff8e000000e4ffffff020000007032ffffffffffffffffffffffffffff636865636b73756d3a63726333324141414141773d3d2d32636865636b73756d3a74797065434f4d504f5349544500008e000000d0ffffff8a000000d6ffffff8d000000d8ffffff89000000ddffffff0700000000000000090000000000000000e897b69a010000616c696365ffffff58ffffff00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000027000000733376ffffffffff62ffffffffffffff6bffffffffffffff7531ffffffffffffecfeffff02000000782d32ffffffffff34ffffff0200000001000000000000000000000000000000000000000100000000000000000000000000000000000000000000000000000000000000",
];

#[test]
fn the_checksum_commands_keep_their_log_form() {
    keep_their_log_form(&WRITTEN_WITH_CHECKSUMS, checksum_commands());
}


/// The commands added with S3's ACLs.
fn acl_commands() -> Vec<Command> {
    let ctx = CommandContext { client_id: 7, request_id: 9, time_ms: 1_764_000_000_000, principal: Principal::anonymous(), bucket: None };
    let block = BlockLocation { container_id: 1, local_id: 2, pipeline_id: 3, length: 4 };
    let world = Acl { kind: AclKind::World, name: String::new(), rights: rights::READ };
    let authenticated = Acl { kind: AclKind::Group, name: command::AUTHENTICATED.into(), rights: rights::READ | rights::READ_ACL };
    vec![
        Command { ctx: ctx.clone(), op: Op::SetBucketAcls { volume: "s3v".into(), bucket: "b".into(), acls: vec![world.clone(), authenticated.clone()] } },
        Command { ctx: ctx.clone(), op: Op::SetKeyAcls { volume: "s3v".into(), bucket: "b".into(), key: "k".into(), acls: vec![] } },
        Command { ctx, op: Op::CommitKeyWithAcls { volume: "s3v".into(), bucket: "b".into(), key: "k".into(), open_id: 5, data_size: 4, blocks: vec![block], metadata: vec![], condition: Condition::Absent, allowed: true, acls: vec![world] } },
    ]
}

/// `acl_commands()` as the build that added them (after ab464d0) encoded them.
const WRITTEN_WITH_ACLS: [&str; 3] = [
    "3a616e6f6e796d6f757300003a61757468656e74696361746564000003000000ffffffffffffffff01000000020000008e000000dcffffff21000000000000000700000000000000090000000000000000e897b69a0100008a000000a8ffffffacffffff00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000028000000733376ffffffffff62ffffffffffffff50ffffff02000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "3a616e6f6e796d6f75730000000000000700000000000000090000000000000000e897b69a0100008a000000d8ffffffdcffffff00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000029000000733376ffffffffff62ffffffffffffff6bffffffffffffff68ffffff0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "3a616e6f6e796d6f7573000000000000010000000000000002000000000000000300000000000000040000000000000003000000ffffffffffffffff010000000700000000000000090000000000000000e897b69a0100008a000000a8ffffffacffffff0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000002a000000733376ffffffffff62ffffffffffffff6bffffffffffffff000000000500000000000000040000000000000028ffffff0100000040ffffff0000000001000000000000000000000000000000000000000100000020ffffff0100000000000000000000000000000000000000",
];

#[test]
fn the_acl_commands_keep_their_log_form() {
    keep_their_log_form(&WRITTEN_WITH_ACLS, acl_commands());
}

/// The commands added with S3 lifecycle rules, with ACLs set by a multipart completion, and
/// with ACL edits (Ozone's addacl and removeacl).
fn later_commands() -> Vec<Command> {
    let ctx = CommandContext { client_id: 7, request_id: 9, time_ms: 1_764_000_000_000, principal: Principal::admin("om"), bucket: None };
    let world = Acl { kind: AclKind::World, name: String::new(), rights: rights::READ };
    let bob = Acl { kind: AclKind::User, name: "bob".into(), rights: rights::READ | rights::LIST };
    let alice = CommandContext { principal: Principal::user("alice"), ..ctx.clone() };
    vec![
        Command { ctx: alice.clone(), op: Op::EditBucketAcls { volume: "vol".into(), bucket: "b".into(), add: vec![bob.clone()], remove: vec![world.clone()] } },
        Command { ctx: alice.clone(), op: Op::EditKeyAcls { volume: "vol".into(), bucket: "b".into(), key: "k".into(), add: vec![], remove: vec![bob] } },
        Command { ctx: ctx.clone(), op: Op::ExpireKeys { volume: "s3v".into(), bucket: "b".into(), keys: vec![("k1".into(), 11), ("k2".into(), 12)] } },
        Command {
            ctx: CommandContext { principal: Principal::user("alice"), ..ctx },
            op: Op::CompleteUploadWithAcls { volume: "s3v".into(), bucket: "b".into(), key: "k".into(), upload_id: "u1".into(), parts: vec![(1, "p1".into(), String::new())], etag: "x-1".into(), set: vec![], condition: Condition::Any, allowed: false, acls: vec![world] },
        },
    ]
}

/// `later_commands()` as the builds that added them (this one for the edits, 6b22f85, dc7e696)
/// encoded them.
const WRITTEN_LATER: [&str; 4] = [
    "01000000626f62ffffffffff0900000003000000ffffffffffffffff010000000700000000000000090000000000000000e897b69a010000616c696365ffffffc0ffffff0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000002d000000766f6cffffffffff62ffffffffffffff54ffffff010000005cffffff0100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "01000000626f62ffffffffff090000000700000000000000090000000000000000e897b69a010000616c696365ffffffd0ffffff0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000002e000000766f6cffffffffff62ffffffffffffff6bffffffffffffff5cffffff0000000054ffffff010000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "6b31ffffffffffff0b000000000000006b32ffffffffffff0c000000000000000700000000000000090000000000000000e897b69a0100006f6dffffffffffffc0ffffff0000000001000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000002b000000733376ffffffffff62ffffffffffffff54ffffff02000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "010000007031ffffffffffffffffffffffffffff03000000ffffffffffffffff01000000000000000700000000000000090000000000000000e897b69a010000616c696365ffffffb8ffffff0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000002c000000733376ffffffffff62ffffffffffffff6bffffffffffffff7531ffffffffffff3cffffff01000000782d31ffffffffff40ffffff0000000000000000000000000000000000000000000000000000000020ffffff010000000000000000000000000000000000000000000000",
];

#[test]
fn the_later_commands_keep_their_log_form() {
    keep_their_log_form(&WRITTEN_LATER, later_commands());
}


/// The command a leader proposes for a change of a key's entries that the key's own entries,
/// not its bucket's, allow: a replacement and an edit.
fn key_grant_commands() -> Vec<Command> {
    let facts = BucketRef { bucket_id: 7, volume_id: 9, replication: Replication::RatisThree, quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, volume_quota_bytes: QUOTA_UNLIMITED, quota_epoch: 3, volume_quota_epoch: 4 };
    let ctx = CommandContext { client_id: 7, request_id: 9, time_ms: 1_764_000_000_000, principal: Principal::user("bob"), bucket: Some(facts) };
    let world = Acl { kind: AclKind::World, name: String::new(), rights: rights::READ };
    let bob = Acl { kind: AclKind::User, name: "bob".into(), rights: rights::ALL };
    vec![
        Command { ctx: ctx.clone(), op: Op::KeyAclsByKeyGrant { volume: "s3v".into(), bucket: "b".into(), key: "k".into(), set: Some(vec![bob, world.clone()]), add: vec![], remove: vec![] } },
        Command { ctx, op: Op::KeyAclsByKeyGrant { volume: "vol".into(), bucket: "b".into(), key: "k".into(), set: None, add: vec![world], remove: vec![] } },
    ]
}

/// `key_grant_commands()` as the build that added them (after 533d4f3) encoded them.
const WRITTEN_BY_KEY_GRANT: [&str; 2] = [
    "01000000626f62ffffffffff7f00000003000000ffffffffffffffff010000000700000000000000090000000000000000e897b69a010000626f62ffffffffffc0ffffff0000000000000000000000000100000000000000070000000000000009000000000000000300000000000000ffffffffffffffffffffffffffffffffffffffffffffffff030000000000000004000000000000002f000000733376ffffffffff62ffffffffffffff6bffffffffffffff0100000048ffffff0200000060ffffff0000000058ffffff000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "03000000ffffffffffffffff010000000700000000000000090000000000000000e897b69a010000626f62ffffffffffd0ffffff0000000000000000000000000100000000000000070000000000000009000000000000000300000000000000ffffffffffffffffffffffffffffffffffffffffffffffff030000000000000004000000000000002f000000766f6cffffffffff62ffffffffffffff6bffffffffffffff00000000000000000000000050ffffff0100000058ffffff000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
];

#[test]
fn the_key_grant_commands_keep_their_log_form() {
    keep_their_log_form(&WRITTEN_BY_KEY_GRANT, key_grant_commands());
}

/// PutObjectAcl's change of one version's entries (`setAcls` with `ifUpdateId`), by the
/// bucket's right and by the key's own.
fn version_condition_commands() -> Vec<Command> {
    let facts = BucketRef { bucket_id: 7, volume_id: 9, replication: Replication::RatisThree, quota_bytes: QUOTA_UNLIMITED, quota_namespace: QUOTA_UNLIMITED, volume_quota_bytes: QUOTA_UNLIMITED, quota_epoch: 3, volume_quota_epoch: 4 };
    let ctx = CommandContext { client_id: 7, request_id: 9, time_ms: 1_764_000_000_000, principal: Principal::user("bob"), bucket: Some(facts) };
    let bob = Acl { kind: AclKind::User, name: "bob".into(), rights: rights::ALL };
    vec![
        Command { ctx: ctx.clone(), op: Op::SetKeyAclsIf { volume: "s3v".into(), bucket: "b".into(), key: "k".into(), acls: vec![bob], update_id: 42, by_key: false } },
        Command { ctx, op: Op::SetKeyAclsIf { volume: "s3v".into(), bucket: "b".into(), key: "k".into(), acls: vec![], update_id: u64::MAX, by_key: true } },
    ]
}

/// `version_condition_commands()` as the build that added them (after c1504f4) encoded them.
const WRITTEN_BY_VERSION_CONDITION: [&str; 2] = [
    "01000000626f62ffffffffff7f0000000700000000000000090000000000000000e897b69a010000626f62ffffffffffd0ffffff0000000000000000000000000100000000000000070000000000000009000000000000000300000000000000ffffffffffffffffffffffffffffffffffffffffffffffff0300000000000000040000000000000030000000733376ffffffffff62ffffffffffffff6bffffffffffffff5cffffff01000000000000002a0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0700000000000000090000000000000000e897b69a010000626f62ffffffffffe0ffffff0000000000000000000000000100000000000000070000000000000009000000000000000300000000000000ffffffffffffffffffffffffffffffffffffffffffffffff0300000000000000040000000000000030000000733376ffffffffff62ffffffffffffff6bffffffffffffff6cffffff0000000000000000ffffffffffffffff01000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
];

#[test]
fn the_version_condition_commands_keep_their_log_form() {
    keep_their_log_form(&WRITTEN_BY_VERSION_CONDITION, version_condition_commands());
}
