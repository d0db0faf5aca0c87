# Stratos OM client API, version 1.
#
# Connecting: the OM's client port (9862 by default, and each core's own port: see `routes`)
# speaks Cap'n Proto RPC (two-party, over TCP); the bootstrap capability is an `OzoneManager`
# (the interface at the end of this file). Every node serves every call: a node that does not
# lead a group forwards writes to its leader.
#
# Errors: a mutation's outcome is an `Outcome` whose `error` member is set on failure. A read
# reply has an `error` field: unset (no pointer) means success and the other fields hold the
# answer; set means failure and the other fields are empty. What a status means for a retry:
# - `unavailable` on a mutation: the outcome is unknown (the command may have been applied, or
#   may still be); retry with the same clientId and requestId, which is answered with the first
#   outcome within the retry window (below). On a read: retry.
# - `notLeader`: the node could not reach the leader of the group the call needs (an election
#   is in progress, or the leader it knew is unreachable). `leaderHint` is the client address
#   (host:port) of the leader it last knew, and may be empty; retry there, or at any node after
#   a short wait. A mutation may have reached the log before its leader stepped down, so retry
#   it with the same ids, as after `unavailable`.
# - `keyBusy`: not applied; retry in a moment. `internal`: a server bug (report it); on a
#   mutation the outcome is unknown, as after `unavailable`.
# - any other status: the call was refused and not applied; retrying the same call gets the
#   same answer.
#
# Authentication: none yet. `RequestHeader.user` and `groups` are taken as given: anyone who can
# reach the port can act as any user, administrators included (until the security work lands:
# TLS and client certificates, DESIGN.md section 11).
#
# Wire rules (enforced by the server at the edge, before anything reaches a shard):
# - names follow stratos-shard's rules (volumes and buckets 3-63 chars of [a-z0-9.-], keys
#   1-1024 bytes of UTF-8); lists and blobs are bounded by stratos-shard's constants;
# - a message is read with a traversal limit and a nesting limit set per call, so a hostile
#   message costs bounded work;
# - every mutating operation carries (clientId, requestId): a retry with the same pair within
#   the retry window is answered with the first outcome, never applied twice.
#
# The retry window: each Raft group remembers the outcome of every mutation it applied for
# 10 minutes of the leader's clock, at most 131,072 outcomes per client and 262,144 in all per
# group (beyond those, the oldest are forgotten first: a client's lowest request id, the group's
# oldest). A retry of a request the window forgot (its requestId at or below the highest one
# of that client forgotten) is answered `retryTooOld`: the outcome is unknown, and the request
# is not applied again; read the state to learn what happened. A client idle for 10 minutes
# is forgotten entirely, and a retry after that would be applied as a new request: never retry
# a request more than 10 minutes after its first attempt.
@0xa2123e7576d5a845;

struct RequestHeader {
  clientId @0 :UInt64;       # random per client process; 0 = no retry protection
  requestId @1 :UInt64;      # increasing per client: each new request above all earlier ones
                             # (a `batch` of n operations uses requestId .. requestId + n - 1);
                             # a retry resends the same ids
  user @2 :Text;             # the caller: NOT authenticated yet (see the top of this file)
  groups @3 :List(Text);
  minMetaIndex @4 :UInt64;   # read-your-writes across groups: serve only after applying this index
}

enum Status {
  ok @0;
  invalidName @1;
  invalidArgument @2;
  volumeNotFound @3;
  volumeExists @4;
  volumeNotEmpty @5;
  bucketNotFound @6;
  bucketExists @7;
  bucketNotEmpty @8;
  keyNotFound @9;
  keyExists @10;
  openKeyNotFound @11;
  quotaExceeded @12;
  permissionDenied @13;
  retryTooOld @14;       # a retry of a request the retry window forgot: its outcome is unknown
  notLeader @15;          # retry at `leaderHint` (may be empty), with the same ids
  unavailable @16;        # no leader, shutting down, SCM unreachable: retry later with the
                          # same ids (on a mutation the outcome is unknown)
  malformed @17;          # the request broke a wire rule
  internal @18;
  keyBusy @19;            # the key is being renamed to another shard: retry in a moment
  s3SecretNotFound @20;   # the access key has no S3 secret (revoked, or never made)
  preconditionFailed @21; # a conditional write's condition did not hold (nothing changed)
  noSuchUpload @22;       # no multipart upload of that id for the key (completed, aborted, expired)
  invalidPart @23;        # a multipart completion's part list is wrong; the message starts with
                          # S3's code: InvalidPart, InvalidPartOrder or EntityTooSmall
}

struct Error {
  status @0 :Status;
  message @1 :Text;
  leaderHint @2 :Text;    # host:port, with notLeader
}

enum Replication {
  ratisOne @0;
  ratisThree @1;
}

struct Acl {
  kind @0 :Kind;
  name @1 :Text;          # empty for world
  rights @2 :UInt16;      # READ 1, WRITE 2, CREATE 4, LIST 8, DELETE 16, READ_ACL 32, WRITE_ACL 64
  enum Kind {
    user @0;
    group @1;
    world @2;
  }
}

struct MetadataPair {
  key @0 :Text;
  value @1 :Text;
}

struct BlockLocation {
  containerId @0 :UInt64;
  localId @1 :UInt64;
  pipelineId @2 :UInt64;
  length @3 :UInt64;
  token @4 :Data;         # the block token (signed, expiring), in replies only
  datanodes @5 :List(DatanodeRef);  # the pipeline's datanodes, in replies only
}

# A datanode as the OM knows it from the SCM: write a block to every one of its pipeline's
# datanodes; read from any.
struct DatanodeRef {
  id @0 :UInt64;
  address @1 :Text;
}

# Quotas: bytes are replicated bytes (size * replication factor, as Ozone counts); namespace is
# keys (bucket) or buckets (volume). UInt64 max (0xffffffffffffffff) means unlimited: in a reply,
# and in a request, where on an update it clears the quota (Ozone's `clrquota`). 0 in a request
# means "leave unchanged" (updates) or "unlimited" (creates). A bucket's quota holds for the
# bucket as a whole across shards, except for commits racing on different shards, which can
# overshoot together by their overlap (docs/om.md, "Quotas").
#
# Ids, in VolumeInfo, BucketInfo, KeyInfo and the outcomes:
# - objectId is unique across the cluster and never reused: the Raft group that created the
#   object in the top 12 bits (0 = the meta group, s + 1 = key shard s; see GroupStatus) and
#   that group's object sequence number (1, 2, 3 ... in log order) in the low 52 bits. Volumes
#   and buckets have ids of group 0. A key's id is the openId of the open key it was committed
#   from: each committed version of a key has its own id; a rename within a shard keeps it, a
#   rename to another shard gives the key an id of that shard.
# - updateId says where in its group's log the object last changed (log index * 256 + the
#   command's place in that log entry): it grows with every change of one object in one
#   group, and is not comparable across groups.
struct VolumeInfo {
  name @0 :Text;
  owner @1 :Text;
  admin @2 :Text;
  createdMs @3 :UInt64;
  modifiedMs @4 :UInt64;
  quotaBytes @5 :UInt64;
  quotaNamespace @6 :UInt64;
  usedBytes @7 :UInt64;
  buckets @8 :UInt64;
  objectId @9 :UInt64;
  updateId @10 :UInt64;
  acls @11 :List(Acl);
  metadata @12 :List(MetadataPair);
}

struct BucketInfo {
  volume @0 :Text;
  name @1 :Text;
  owner @2 :Text;
  createdMs @3 :UInt64;
  modifiedMs @4 :UInt64;
  versioning @5 :Bool;
  replication @6 :Replication;
  quotaBytes @7 :UInt64;
  quotaNamespace @8 :UInt64;
  usedBytes @9 :UInt64;
  keys @10 :UInt64;
  openKeys @11 :UInt64;
  objectId @12 :UInt64;
  updateId @13 :UInt64;
  acls @14 :List(Acl);
  metadata @15 :List(MetadataPair);
}

struct KeyInfo {
  volume @0 :Text;
  bucket @1 :Text;
  name @2 :Text;
  dataSize @3 :UInt64;
  replication @4 :Replication;
  createdMs @5 :UInt64;
  modifiedMs @6 :UInt64;
  objectId @7 :UInt64;
  updateId @8 :UInt64;
  blocks @9 :List(BlockLocation);
  metadata @10 :List(MetadataPair);
  acls @11 :List(Acl);          # the key's own entries (setAcls); most keys have none
}

# One mutation. The leader fills in time, pre-allocated blocks and expiry before proposing.
struct Operation {
  union {
    createVolume :group {
      volume @0 :Text;
      owner @1 :Text;
      admin @2 :Text;
      quotaBytes @3 :UInt64;
      quotaNamespace @4 :UInt64;
      acls @5 :List(Acl);
      metadata @6 :List(MetadataPair);
    }
    deleteVolume :group {
      volume @7 :Text;
    }
    setVolumeOwner :group {
      volume @8 :Text;
      owner @9 :Text;
    }
    setVolumeQuota :group {
      volume @10 :Text;
      quotaBytes @11 :UInt64;
      quotaNamespace @12 :UInt64;
    }
    createBucket :group {
      volume @13 :Text;
      bucket @14 :Text;
      owner @15 :Text;          # empty = the caller
      versioning @16 :Bool;
      replication @17 :Replication;
      quotaBytes @18 :UInt64;
      quotaNamespace @19 :UInt64;
      acls @20 :List(Acl);
      metadata @21 :List(MetadataPair);
    }
    deleteBucket :group {
      volume @22 :Text;
      bucket @23 :Text;
    }
    setBucketProperty :group {
      volume @24 :Text;
      bucket @25 :Text;
      owner @26 :Text;          # empty = unchanged
      versioning @27 :Tristate;
      replication @28 :OptionalReplication;
      quotaBytes @29 :UInt64;
      quotaNamespace @30 :UInt64;
    }
    # Starts writing a key: answers its openId and pre-allocated blocks (none without an SCM).
    # Write the data to the blocks, then commitKey. The `metadata` given here becomes the key's
    # metadata at commit (commitKey carries none; an overwrite replaces the old metadata).
    openKey :group {
      volume @31 :Text;
      bucket @32 :Text;
      key @33 :Text;
      dataSize @34 :UInt64;     # expected size, to pre-allocate enough blocks
      replication @35 :OptionalReplication;
      metadata @36 :List(MetadataPair);
    }
    allocateBlock :group {
      volume @37 :Text;
      bucket @38 :Text;
      key @39 :Text;
      openId @40 :UInt64;
      excludeDatanodes @57 :List(UInt64);  # datanodes that failed the client: the new block avoids them
    }
    # Makes the open key visible with the blocks written (a subset of those allocated, each with
    # its written length; dataSize is their sum). A key of no blocks and dataSize 0 is valid
    # (an empty object). An existing key is replaced.
    # `metadata`: pairs set over the open key's (what is known only once the data is written,
    # as S3's ETag). `ifAbsent`: only if no key of this name exists; `ifMatch` (set): only if the
    # key exists with this metadata pair (S3's `If-None-Match: *` and `If-Match`); `ifPresent`:
    # only if the key exists (`If-Match: *`); `ifNoneMatch` (set): only if no key of this name
    # has this pair (`If-None-Match` with an ETag). At most one of them. Checked when the commit
    # applies, so of two racing conditional writers exactly one wins; otherwise
    # `preconditionFailed` (`keyNotFound` for `ifMatch` or `ifPresent` and no key) and nothing
    # changes (the open key stays, for an abort).
    commitKey :group {
      volume @41 :Text;
      bucket @42 :Text;
      key @43 :Text;
      openId @44 :UInt64;
      dataSize @45 :UInt64;
      blocks @46 :List(BlockLocation);
      metadata @64 :List(MetadataPair);
      ifAbsent @65 :Bool;
      ifMatch @66 :MetadataPair;
      ifPresent @103 :Bool;
      ifNoneMatch @104 :MetadataPair;
      # The new version's own ACL entries (S3's canned ACL or grants of a PUT): the writer of a
      # version may set them, as S3 lets the writer of an object set its ACL.
      acls @113 :List(Acl);
    }
    deleteKey :group {
      volume @47 :Text;
      bucket @48 :Text;
      key @49 :Text;
    }
    deleteKeys :group {
      volume @50 :Text;
      bucket @51 :Text;
      keys @52 :List(Text);
    }
    renameKey :group {
      volume @53 :Text;
      bucket @54 :Text;
      from @55 :Text;
      to @56 :Text;
    }
    # Gives up an open key now (an interrupted upload): the open key is dropped and its blocks
    # are freed at once instead of at its expiry. Needs the right to write the key. Answered
    # with an empty reply; an open key already committed, expired or aborted is
    # `openKeyNotFound`, which a retry of an abort may safely ignore.
    abortKey :group {
      volume @58 :Text;
      bucket @59 :Text;
      key @60 :Text;
      openId @61 :UInt64;
    }
    # The S3 secret of an access key (a principal's name; Ozone's `s3 getsecret`): the one it
    # has, else a new one the OM makes. The principal itself or an administrator. Answered
    # with `s3Secret`.
    getS3Secret :group {
      accessId @62 :Text;
    }
    # Forgets an access key's S3 secret (`s3 revokesecret`); `s3SecretNotFound` if none.
    revokeS3Secret :group {
      accessId @63 :Text;
    }
    # Changes a committed key's metadata in place (S3 object tagging): every pair whose name
    # starts with `removePrefix` (if not empty) is dropped, then `set` is set over the rest. The
    # data, blocks and modification time stay. `ifMatch` as in commitKey. Needs write rights.
    setKeyMetadata :group {
      volume @67 :Text;
      bucket @68 :Text;
      key @69 :Text;
      set @70 :List(MetadataPair);
      removePrefix @71 :Text;
      ifMatch @72 :MetadataPair;
    }
    # Multipart upload (S3's), one record per part, all on the key's shard. Starts an upload of
    # `key`: answered with `uploadStarted` and its id (made by the OM). The upload holds the
    # bucket like an open key (a bucket with uploads in progress is not empty) until it is
    # completed, aborted, or expires (the OM's multipartUploadTtlMs).
    initiateUpload :group {
      volume @73 :Text;
      bucket @74 :Text;
      key @75 :Text;
      replication @76 :OptionalReplication;
      metadata @77 :List(MetadataPair);
    }
    # Makes the open key `openId` of `key` (its data written, as for commitKey) part
    # `partNumber` (1..=10000) of the upload, with its `etag`; a part of that number uploaded
    # before is replaced (its blocks freed). `checksum`: the part's additional checksum, kept
    # with it and listed by listParts (the S3 gateway's `ALGORITHM:base64`; empty for none).
    commitPart :group {
      volume @78 :Text;
      bucket @79 :Text;
      key @80 :Text;
      uploadId @81 :Text;
      partNumber @82 :UInt32;
      openId @83 :UInt64;
      dataSize @84 :UInt64;
      blocks @85 :List(BlockLocation);
      etag @86 :Text;
      checksum @107 :Text;
    }
    # Makes the key from the listed parts (ascending, each with the ETag it was uploaded with;
    # every part but the last at least 5 MiB), in that order; parts not listed are freed. The
    # key's metadata: the upload's, and `etag` (the S3 multipart ETag, which the caller
    # computes), then the pairs of `set` (not `etag`, nor `parts`, which the OM sets: the
    # parts' numbers and sizes). `ifAbsent`/`ifMatch`/`ifPresent`/`ifNoneMatch` as in
    # commitKey, and `acls`: the key's own ACL entries, set with it (as commitKey's: S3's
    # canned ACL or grants of the upload). Answered with `keyCommitted`.
    completeUpload :group {
      volume @87 :Text;
      bucket @88 :Text;
      key @89 :Text;
      uploadId @90 :Text;
      parts @91 :List(PartRef);
      etag @92 :Text;
      ifAbsent @93 :Bool;
      ifMatch @94 :MetadataPair;
      ifPresent @105 :Bool;
      ifNoneMatch @106 :MetadataPair;
      set @108 :List(MetadataPair);
      acls @114 :List(Acl);
    }
    # Drops the upload and frees its parts' blocks.
    abortUpload :group {
      volume @95 :Text;
      bucket @96 :Text;
      key @97 :Text;
      uploadId @98 :Text;
    }
    # Edits a bucket's metadata (its S3 settings, such as default encryption): drops the pairs
    # whose name starts with removePrefix (none if empty), then sets `set` over the rest. The
    # bucket's owner or an administrator only.
    setBucketMetadata :group {
      volume @99 :Text;
      bucket @100 :Text;
      set @101 :List(MetadataPair);
      removePrefix @102 :Text;
    }
    # Replaces the ACL entries of a bucket (key empty: its owner, its volume's owner or admin,
    # an administrator, or whoever an entry grants WRITE_ACL) or of one committed key (WRITE_ACL
    # on its bucket). A key's entries grant READ and READ_ACL of that key alone, to callers
    # without READ on the bucket (S3's object ACLs); an overwrite starts with none.
    # `ifUpdateId` (a key's, nonzero): only if the key's present version is the one of that
    # updateId (as a lookup returned it), else `preconditionFailed` and nothing changes; S3's
    # PutObjectAcl builds the entries from the version it read (its owner's FULL_CONTROL), and
    # must not apply them to another writer's overwrite. Not for a bucket.
    setAcls :group {
      volume @109 :Text;
      bucket @110 :Text;
      key @111 :Text;
      acls @112 :List(Acl);
      ifUpdateId @120 :UInt64;
    }
    # Edits the ACL entries of a bucket (key empty) or of one committed key in place (Ozone's
    # addAcl and removeAcl), with setAcls' rights: each entry of `add` grants its rights to its
    # grantee (merged into the grantee's entry, else a new one), then each of `remove` takes
    # its rights away (an entry left with none goes). The OM applies the edit, so two racing
    # edits both count, where a read and a setAcls by the client would lose one.
    editAcls :group {
      volume @115 :Text;
      bucket @116 :Text;
      key @117 :Text;
      add @118 :List(Acl);
      remove @119 :List(Acl);
    }
  }
}

enum Tristate {
  unchanged @0;
  no @1;
  yes @2;
}

struct OptionalReplication {
  union {
    none @0 :Void;
    some @1 :Replication;
  }
}

# The outcome of one operation.
struct Outcome {
  union {
    error @0 :Error;
    done @1 :Void;
    created :group {
      objectId @2 :UInt64;
    }
    keyOpened :group {
      openId @3 :UInt64;
      blocks @4 :List(BlockLocation);
    }
    blockAllocated @5 :BlockLocation;
    keyCommitted :group {
      objectId @6 :UInt64;
      replaced @7 :Bool;
    }
    keysDeleted :group {
      deleted @8 :UInt64;
      missing @9 :List(Text);
    }
    s3Secret :group {
      accessId @10 :Text;
      secret @11 :Text;
    }
    uploadStarted :group {
      uploadId @12 :Text;
    }
  }
}

struct PartRef {
  partNumber @0 :UInt32;
  etag @1 :Text;
  checksum @2 :Text;       # the checksum the part must have (as commitPart gave it); empty: any
}

struct PartInfo {
  partNumber @0 :UInt32;
  etag @1 :Text;
  size @2 :UInt64;
  modifiedMs @3 :UInt64;
  checksum @4 :Text;       # as commitPart gave it; empty for none
}

struct UploadInfo {
  key @0 :Text;
  uploadId @1 :Text;
  createdMs @2 :UInt64;
  metadataValue @3 :Text;  # the value of its metadata pair listUploads' `metadataKey` names; empty: none
}

struct Page {
  prefix @0 :Text;
  startAfter @1 :Text;     # the continuation token: the last name of the previous page
  limit @2 :UInt32;        # 1..=10000
  delimiter @3 :Text;      # listKeys only; empty: none. Of the keys that share a common prefix
                           # (the prefix, then the name up to and including the delimiter's
                           # first occurrence after it) only the first comes back, as S3's
                           # listings roll them up; the next page should start past the whole
                           # group (its common prefix followed by U+10FFFF characters).
}

interface OzoneManager {
  # The RPC path alone, for measuring it; `viaRaft` also proposes a no-op through a Raft group.
  echo @0 (payload :Data, viaRaft :Bool) -> (payload :Data);

  # One mutation.
  # `metaIndex`: the meta group's index after this call; send it back as `minMetaIndex` (any
  # connection) to see this call's volume and bucket changes.
  submit @1 (header :RequestHeader, operation :Operation) -> (outcome :Outcome, metaIndex :UInt64);

  # Many mutations in one message, applied in order; one outcome each. A batch is not a
  # transaction: each operation succeeds or fails on its own.
  # Operations on volumes and buckets complete, in order, before any later operation of the batch
  # starts; key operations between them run concurrently across shards (in order per shard).
  batch @2 (header :RequestHeader, operations :List(Operation)) -> (outcomes :List(Outcome), metaIndex :UInt64);

  # Reads (linearizable: served by the leader after confirming its leadership).
  volumeInfo @3 (header :RequestHeader, volume :Text) -> (error :Error, info :VolumeInfo);
  listVolumes @4 (header :RequestHeader, owner :Text, page :Page) -> (error :Error, volumes :List(VolumeInfo), truncated :Bool);
  bucketInfo @5 (header :RequestHeader, volume :Text, bucket :Text) -> (error :Error, info :BucketInfo);
  listBuckets @6 (header :RequestHeader, volume :Text, page :Page) -> (error :Error, buckets :List(BucketInfo), truncated :Bool);
  # With `forAcl`, the caller reads the key's ACL (Ozone's getAcl, S3's GetObjectAcl): the right
  # checked is READ_ACL (on the bucket, or in the key's own entries) instead of READ, and the
  # blocks come without read tokens or datanodes. An older OM ignores it and checks READ.
  lookupKey @7 (header :RequestHeader, volume :Text, bucket :Text, key :Text, forAcl :Bool) -> (error :Error, info :KeyInfo);
  listKeys @8 (header :RequestHeader, volume :Text, bucket :Text, page :Page) -> (error :Error, keys :List(KeyInfo), truncated :Bool);

  # Many keys of one bucket looked up in one message (at most 4096), one result each, in order.
  # Each is linearizable; the OM confirms leadership once per shard per call. `error` is set
  # only for a failure of the whole call (bad names, missing bucket, no rights).
  lookupKeys @9 (header :RequestHeader, volume :Text, bucket :Text, keys :List(Text)) -> (error :Error, results :List(KeyLookup));

  # Administration (administrators only). The Raft state of every group as this node sees it;
  # a group's leader also reports each replica's progress.
  # With `hashes`, each group's status carries a hash of its whole state at `applied`, to compare
  # replicas (costs a serialization of every group this node holds: not for polling).
  adminStatus @10 (header :RequestHeader, hashes :Bool) -> (error :Error, node :UInt64, groups :List(GroupStatus));
  # Moves a group's leadership to node `toNode`. Sent to the group's current leader.
  adminTransfer @11 (header :RequestHeader, group :UInt32, toNode :UInt64) -> (error :Error);

  # Where to send key operations: the shard count (a key's shard is crc32(volume \0 bucket \0
  # key) mod shards, its group shard + 1) and, per group (0 = meta), the client address of the
  # leader this node knows ("" if none). A hint only: any node serves any request.
  # `corePorts`, per group: the port of this node's core (executor) that owns the group, on the
  # host the client reached this node at (0: none; see `--core-ports`). A connection there
  # lands on that core, so a single-key call for the group never crosses cores on this node
  # (ScyllaDB's shard-aware port, by capability instead of source port).
  routes @12 (header :RequestHeader) -> (error :Error, shards :UInt32, leaders :List(Text), corePorts :List(UInt16));

  # Membership (administrators only). Adds node `node` to every group this node leads: first as
  # a learner (it receives the log or a snapshot), then, once caught up, as a voter. Removes a
  # voter from every group this node leads. `changed`: the groups changed here. Ask every node
  # (`stratos admin add|remove` does) until every group has the new membership.
  adminAddNode @13 (header :RequestHeader, node :UInt64, raftAddress :Text, rpcAddress :Text) -> (error :Error, changed :List(UInt32));
  adminRemoveNode @14 (header :RequestHeader, node :UInt64) -> (error :Error, changed :List(UInt32));

  # The S3 secret of an access key, read (never made): for the S3 gateway, which verifies a
  # request's signature with it. Only a caller with an `s3g` certificate, or an administrator;
  # on a node without TLS, anyone (nothing is authenticated there). `s3SecretNotFound` if none.
  s3Secret @15 (header :RequestHeader, accessId :Text) -> (error :Error, secret :Text);

  # A multipart upload's parts after part `partMarker`, at most `limit` (1..=1000), with the
  # upload's metadata (needs read rights on the bucket).
  listParts @16 (header :RequestHeader, volume :Text, bucket :Text, key :Text, uploadId :Text, partMarker :UInt32, limit :UInt32)
      -> (error :Error, parts :List(PartInfo), truncated :Bool, metadata :List(MetadataPair), createdMs :UInt64);
  # The multipart uploads in progress in a bucket whose keys start with `prefix`, in (key,
  # upload id) order after (`keyMarker`, `uploadIdMarker`), at most `limit` (1..=1000).
  # `metadataKey` (appended; empty: none) asks for the value of that metadata pair of each
  # upload (the S3 gateway's `s3:owner`: who began it). `delimiter` (appended; empty: none):
  # of the uploads whose keys share a common prefix (the prefix, then the key up to and
  # including the delimiter's first occurrence after it) only the first comes back, as
  # Page.delimiter does for listKeys; the next page should start past the group.
  listUploads @17 (header :RequestHeader, volume :Text, bucket :Text, prefix :Text, keyMarker :Text, uploadIdMarker :Text, limit :UInt32, metadataKey :Text, delimiter :Text)
      -> (error :Error, uploads :List(UploadInfo), truncated :Bool);
}

struct GroupStatus {
  group @0 :UInt32;        # 0 = meta, s + 1 = key shard s
  leader @1 :UInt64;       # 0 = none known
  term @2 :UInt64;
  lastLog @3 :UInt64;
  committed @4 :UInt64;
  applied @5 :UInt64;
  members @6 :List(UInt64);
  replicas @7 :List(ReplicaProgress);   # on the leader only
  stateHash @8 :UInt64;    # asked with `hashes`: the state's hash at `applied` (0 otherwise)
}

struct ReplicaProgress {
  node @0 :UInt64;
  matched @1 :UInt64;      # the last log index known to be on that replica
}

struct KeyLookup {
  union {
    info @0 :KeyInfo;
    error @1 :Error;
  }
}
