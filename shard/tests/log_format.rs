//! The log form of commands is their rkyv image, read back by every later build: entries a
//! build wrote must decode, to the same command, in the builds after it. These bytes were
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

#[test]
fn commands_written_by_an_earlier_build_decode_to_the_same_commands() {
    for (written, command) in WRITTEN.iter().zip(commands()) {
        let bytes = unhex(written);
        assert_eq!(Command::decode(&bytes).expect("decodes"), command);
        assert_eq!(command.encode().as_slice(), &bytes[..], "encoded as before: {:?}", command.op);
    }
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
