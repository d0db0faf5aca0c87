# Stratos SCM (Storage Container Manager) API, version 1: what OMs and datanodes call.
#
# - OMs: `allocateBlocks` (many blocks in one call, from pipelines of healthy datanodes),
#   `clusterMap` (datanodes, pipelines and block-token secret keys), `deleteBlocks` (blocks of
#   deleted and overwritten keys; answered once the SCM made them durable).
# - Datanodes: `registerDatanode` once per start, then `heartbeat` (which carries the SCM's
#   delete commands and the current secret keys back).
# Every answer that changes SCM state is given only after the change is durable (fdatasync).
@0xb1ceb97e3939eeb1;

enum Replication {
  ratisOne @0;
  ratisThree @1;
}

struct BlockId {
  containerId @0 :UInt64;
  localId @1 :UInt64;
}

struct AllocatedBlock {
  containerId @0 :UInt64;
  localId @1 :UInt64;
  pipelineId @2 :UInt64;
}

struct DatanodeInfo {
  id @0 :UInt64;
  address @1 :Text;
  healthy @2 :Bool;
}

struct PipelineInfo {
  id @0 :UInt64;
  replication @1 :Replication;
  members @2 :List(UInt64);   # datanode ids
}

# A block-token secret: tokens signed with it are valid until `expiresMs` at the latest.
struct SecretKey {
  id @0 :UInt32;
  secret @1 :Data;            # 32 bytes
  createdMs @2 :UInt64;
  expiresMs @3 :UInt64;
}

struct ContainerRef {
  pipelineId @0 :UInt64;
  containerId @1 :UInt64;
}

# Copy every block of container `containerId` from the datanode at `source` (a surviving member
# of pipeline `pipelineId`, whose dead member this datanode replaces once all are copied).
struct ReplicateCommand {
  pipelineId @0 :UInt64;
  containerId @1 :UInt64;
  source @2 :Text;
}

struct DeleteCommand {
  txn @0 :UInt64;
  blocks @1 :List(BlockId);
}

interface StorageContainerManager {
  # `id` 0 registers a new datanode; a known id updates its address. Returns the id to keep.
  registerDatanode @0 (id :UInt64, address :Text) -> (error :Text, id :UInt64);
  # Liveness, plus the delete transactions this datanode has carried out since the last beat.
  # `replicated`: containers this datanode finished copying for a pipeline repair; `replicate`:
  # containers it is to copy from a surviving member (`source`), for pipelines whose member died.
  # `datanodesVersion`: the version of the datanode list this datanode holds; when the SCM's is
  # newer, the reply carries the list (`datanodes`, every registered datanode's address) and
  # its version, so chained writes reach registered datanodes even while the SCM is down.
  heartbeat @1 (id :UInt64, deletesDone :List(UInt64), replicated :List(ContainerRef), datanodesVersion :UInt64) -> (error :Text, deletes :List(DeleteCommand), keys :List(SecretKey), replicate :List(ReplicateCommand), datanodes :List(Text), datanodesVersion :UInt64);
  # `count` blocks (at most 4096) of `blockBytes` each, none on a datanode in `exclude`.
  allocateBlocks @2 (count :UInt32, replication :Replication, owner :Text, exclude :List(UInt64), blockBytes :UInt64) -> (error :Text, blocks :List(AllocatedBlock));
  clusterMap @3 () -> (datanodes :List(DatanodeInfo), pipelines :List(PipelineInfo), keys :List(SecretKey));
  # The deleted-blocks queue of OM shard `shard` up to and including its batch `upToSeq`. A
  # repeat (same shard, seq not beyond the last taken) is answered without effect.
  deleteBlocks @4 (shard :UInt32, upToSeq :UInt64, blocks :List(BlockId)) -> (error :Text);
  # Counters for operators and tests, as JSON.
  status @5 () -> (json :Text);
}
