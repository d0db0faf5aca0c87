# Stratos datanode API, version 1: block data, guarded by block tokens.
#
# Every call carries the block token the OM signed for this block. The datanode checks it
# (constant-time MAC compare; unknown key, expired, another block, wrong mode and over-length
# are refused) before touching data.
#
# A block is written with `writeChunk` calls in order (each at the current end of the block;
# every chunk but the last a multiple of 64 KiB), then `putBlock`, which makes it durable
# (fdatasync) and readable. Small blocks are stored as one crc32-framed record of their
# container's log (group-committed), large ones in 64 KiB pieces with a crc32 each; every read
# verifies what it touches.
@0xe64918c2ed2af834;

enum DnStatus {
  ok @0;
  tokenRefused @1;
  badRequest @2;
  notFound @3;
  corrupt @4;
  ioError @5;
}

struct DnError {
  status @0 :DnStatus;
  message @1 :Text;
}

interface Datanode {
  writeChunk @0 (token :Data, containerId :UInt64, localId :UInt64, offset :UInt64, data :Data) -> (error :DnError);
  putBlock @1 (token :Data, containerId :UInt64, localId :UInt64, length :UInt64) -> (error :DnError);
  # At most 4 MiB per call; `blockLength` is the block's whole length.
  readChunk @2 (token :Data, containerId :UInt64, localId :UInt64, offset :UInt64, length :UInt32) -> (error :DnError, data :Data, blockLength :UInt64);
  # The complete blocks of a container on this datanode, by local id, from the first after
  # `startAfter`: ids and lengths, no data (container reports, tests). At most `maxBlocks`
  # (≤ 100,000) per call; `more` says whether others follow. Any caller the port admits may ask.
  listBlocks @3 (containerId :UInt64, startAfter :UInt64, maxBlocks :UInt32) -> (error :DnError, blocks :List(StoredBlock), more :Bool);
  # A chained write, so the client sends each byte once: writes `data` at `offset` of the
  # block as writeChunk does and, with `finish`, then completes the block of `length` bytes as
  # putBlock does. The same call, with `next` less its first address, goes at once to `next[0]`
  # (a datanode of the cluster; at most 4 in `next`). Answers when this datanode and every one
  # after it did; an error names the address of the datanode that failed in `failedAt`.
  writeChained @4 (token :Data, containerId :UInt64, localId :UInt64, offset :UInt64, data :Data, finish :Bool, length :UInt64, next :List(Text)) -> (error :DnError, failedAt :Text);
}

struct StoredBlock {
  localId @0 :UInt64;
  length @1 :UInt64;
}
