# Raft traffic between OM nodes. One connection per pair of executors (core i of one node to
# the core of the peer that owns the same groups) carries the messages of many groups (the meta
# group and the key shards), each tagged with its group id, many per call.
#
# A connection starts with a 24-byte hello before any Cap'n Proto bytes:
#   "STRRAFT3" | sender's executor count u32 LE | the executor it wants u32 LE
#              | sender's key-shard count u32 LE | flags u32 LE (1: TLS follows)
# so that the node's one Raft port can hand the connection to that executor, and the answer
#   length u32 LE | that many bytes of UTF-8: empty = accepted, else why it is refused
# (another executor or shard count, another protocol version, TLS on one side only), after
# which it hangs up. With TLS (a secured cluster), the accepted connection then turns into
# TLS (the dialing node the client; both present OM certificates of the cluster's CA) and the
# same 24 bytes are sent again inside it, for the executor that takes it to check.
#
# Vote, entries, snapshot metadata and responses are openraft's types in the byte layouts of
# server/src/raft/codec.rs; this schema frames them and bounds their sizes.
@0xfc9db034c15736bf;

struct GroupMessage {
  groupId @0 :UInt32;      # 0 = meta group, 1..=S = key shards
  union {
    vote @1 :Data;
    appendEntries @2 :Data;
    installSnapshot @3 :SnapshotChunk;
    transferLeader @4 :Data;
    preVote @5 :Data;
    readIndex @6 :Void;    # the leader's read index (a follower serves a read once it applied it)
    forward @7 :Forward;   # a write for the group's leader, from a node that is not it
  }
}

struct SnapshotChunk {
  vote @0 :Data;           # the sending leader's vote
  snapshotId @1 :Text;     # chunks of one snapshot carry the same id
  offset @2 :UInt64;       # of this chunk in the snapshot file (meta + image, crc-checked)
  data @3 :Data;
  done @4 :Bool;           # the last chunk: install now
}

struct Forward {
  proposal @0 :Data;       # rkyv Vec<Command>, as in a log entry
  fill @1 :Bool;           # the leader checks rights and fills in the bucket's facts
  minMeta @2 :UInt64;      # the meta index the client has seen
}

struct GroupReply {
  union {
    ok @0 :Data;           # the serialized openraft response (or forward outcomes)
    error @1 :Text;
  }
}

interface RaftTransport {
  # Many groups' messages in one call: one round trip per batch, not per group. One reply per
  # message, in order.
  send @0 (fromNode :UInt64, messages :List(GroupMessage)) -> (replies :List(GroupReply));
}
