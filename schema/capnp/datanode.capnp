# Stratos datanode API, version 1: block data, guarded by block tokens.
#
# Every call carries the block token the OM signed for this block. The datanode checks it
# (constant-time MAC compare; unknown key, expired, another block, wrong mode and over-length
# are refused) before touching data.
#
# A block is written with `writeChunk` calls in order (each at the current end of the block;
# every chunk but the last a multiple of 64 KiB), then `putBlock`, which makes it durable
# (fdatasync) and readable. Stored data is framed in 64 KiB pieces, each with a crc32 that every
# read verifies.
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
}
