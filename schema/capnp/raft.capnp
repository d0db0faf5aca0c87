# Raft traffic between OM nodes, version 1. One connection per pair of executors carries the
# messages of many groups (the meta group and the key shards), each tagged with its group id.
# Vote, entries and snapshot metadata are openraft's types, serialized by the server; this
# schema frames them and bounds their sizes.
@0xfc9db034c15736bf;

struct GroupMessage {
  groupId @0 :UInt32;      # 0 = meta group, 1..=S = key shards
  union {
    vote @1 :Data;
    appendEntries @2 :Data;
    installSnapshot @3 :SnapshotChunk;
    transferLeader @4 :Data;
  }
}

struct SnapshotChunk {
  meta @0 :Data;           # openraft snapshot metadata
  offset @1 :UInt64;       # of this chunk in the snapshot image
  data @2 :Data;
  done @3 :Bool;
}

struct GroupReply {
  groupId @0 :UInt32;
  union {
    ok @1 :Data;           # the serialized openraft response
    error @2 :Text;
  }
}

interface RaftTransport {
  # Many groups' messages in one call: one round trip per batch, not per group.
  send @0 (messages :List(GroupMessage)) -> (replies :List(GroupReply));
}
