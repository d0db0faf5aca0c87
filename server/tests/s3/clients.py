"""The S3 gateway through real S3 clients: boto3, the AWS CLI and curl (server/tests/s3.rs).

Environment: S3_ENDPOINT (https://host:port), S3_CA (the cluster CA), ALICE_KEY/ALICE_SECRET,
BOB_KEY/BOB_SECRET (from `stratos s3 getsecret`), AWS (the aws command). Prints one line per
check; exits non-zero at the first failure with what differed.
"""
import base64, concurrent.futures, hashlib, io, os, subprocess, sys, tempfile, threading, time, zlib

import boto3, botocore
from botocore.config import Config

ENDPOINT, CA = os.environ["S3_ENDPOINT"], os.environ["S3_CA"]


def client(who, **cfg):
    key, secret = os.environ[f"{who}_KEY"], os.environ[f"{who}_SECRET"]
    return boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1",
                        verify=CA, config=Config(s3={"addressing_style": "path"}, signature_version="s3v4", retries={"max_attempts": 2}, **cfg))


def code(fn):
    """The S3 error code fn fails with (None if it succeeds)."""
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return None


def check(what, cond, detail=""):
    if not cond:
        print(f"FAIL {what} {detail}", flush=True)
        sys.exit(1)
    print(f"ok   {what}", flush=True)


alice, bob = client("ALICE"), client("BOB")

# `clients.py outage put`, then, with every datanode stopped, `clients.py outage get`: the GET
# of an object fails with S3's InternalError before any of its reply is sent (not a 200 cut
# off after its head, which boto3 would hand back as a success), and HEAD still answers.
if sys.argv[1:2] == ["outage"]:
    OUT = "outage-" + hashlib.md5(ENDPOINT.encode()).hexdigest()[:8]
    if sys.argv[2] == "put":
        alice.create_bucket(Bucket=OUT)
        for k, n in (("small", 4096), ("large", 3 << 20)):
            alice.put_object(Bucket=OUT, Key=k, Body=os.urandom(n))
        check("outage: objects written", alice.head_object(Bucket=OUT, Key="large")["ContentLength"] == 3 << 20)
    else:
        for k in ("small", "large"):
            check(f"outage: a GET of the {k} object with no datanode is InternalError", code(lambda: alice.get_object(Bucket=OUT, Key=k)) == "InternalError")
        check("outage: HEAD still answers", alice.head_object(Bucket=OUT, Key="small")["ContentLength"] == 4096)
    sys.exit(0)
bucket = "clients-" + os.urandom(4).hex()
alice.create_bucket(Bucket=bucket)
check("create bucket, listed as the owner's", bucket in [b["Name"] for b in alice.list_buckets()["Buckets"]])
check("another user does not list it", bucket not in [b["Name"] for b in bob.list_buckets()["Buckets"]])
check("the owner creating it again succeeds (S3's us-east-1)", code(lambda: alice.create_bucket(Bucket=bucket)) is None)
check("... unless it would change its ACL", code(lambda: alice.create_bucket(Bucket=bucket, ACL="public-read")) == "BucketAlreadyExists")
check("a canned ACL the gateway cannot honour is refused, not dropped", code(lambda: alice.put_object(Bucket=bucket, Key="pub", Body=b"x", ACL="log-delivery-write")) == "NotImplemented")
check("... and the object is not written", code(lambda: alice.head_object(Bucket=bucket, Key="pub")) == "404")
check("another user's create of the name is BucketAlreadyExists", code(lambda: bob.create_bucket(Bucket=bucket)) == "BucketAlreadyExists")

# Byte for byte: 0 B, 1 B, 10 MB (several datanode calls), with metadata and Content-Type.
for size in (0, 1, 10 * 1000 * 1000):
    data = os.urandom(size)
    put = alice.put_object(Bucket=bucket, Key=f"obj/{size}", Body=data, Metadata={"color": "blue"}, ContentType="application/x-test")
    got = alice.get_object(Bucket=bucket, Key=f"obj/{size}")
    body = got["Body"].read()
    md5 = hashlib.md5(data).hexdigest()
    check(f"put/get {size} B byte for byte", body == data, f"{len(body)} bytes back")
    check(f"ETag of {size} B is its MD5", put["ETag"] == f'"{md5}"' and got["ETag"] == f'"{md5}"', put["ETag"])
    check(f"metadata of {size} B", got["Metadata"] == {"color": "blue"} and got["ContentType"] == "application/x-test", str(got["Metadata"]))
big = alice.get_object(Bucket=bucket, Key="obj/10000000", Range="bytes=999990-1000009")
check("a range spanning a 1 MiB call boundary", big["ContentRange"] == "bytes 999990-1000009/10000000" and len(big["Body"].read()) == 20)
check("an unsatisfiable range is InvalidRange", code(lambda: alice.get_object(Bucket=bucket, Key="obj/1", Range="bytes=5-9")) == "InvalidRange")
check("a missing key is NoSuchKey", code(lambda: alice.get_object(Bucket=bucket, Key="nope")) == "NoSuchKey")
check("a missing bucket is NoSuchBucket", code(lambda: alice.list_objects_v2(Bucket="no-such-" + bucket)) == "NoSuchBucket")
etag = alice.head_object(Bucket=bucket, Key="obj/1")["ETag"]
check("If-None-Match on GET: 304", code(lambda: alice.get_object(Bucket=bucket, Key="obj/1", IfNoneMatch=etag)) == "304")
check("If-Match on GET that differs: 412", code(lambda: alice.get_object(Bucket=bucket, Key="obj/1", IfMatch='"00"')) == "PreconditionFailed")
check("Content-MD5 that differs: BadDigest", code(lambda: alice.put_object(Bucket=bucket, Key="bad", Body=b"abc", ContentMD5="AAAAAAAAAAAAAAAAAAAAAA==")) == "BadDigest")
check("... and nothing was stored", code(lambda: alice.head_object(Bucket=bucket, Key="bad")) == "404")
# Over several datanode calls: the check is made from the hash the ETag comes from.
three = os.urandom(3 * 1000 * 1000)
three_md5 = base64.b64encode(hashlib.md5(three).digest()).decode()
put = alice.put_object(Bucket=bucket, Key="md5/right", Body=three, ContentMD5=three_md5)
check("a 3 MB PUT with its Content-MD5 is stored, ETag its MD5", put["ETag"] == f'"{hashlib.md5(three).hexdigest()}"' and alice.get_object(Bucket=bucket, Key="md5/right")["Body"].read() == three, put["ETag"])
wrong_md5 = base64.b64encode(hashlib.md5(three[:-1] + bytes([three[-1] ^ 1])).digest()).decode()  # (an "x" was the last byte once in 256 runs)
check("a 3 MB PUT whose last byte differs from its Content-MD5: BadDigest", code(lambda: alice.put_object(Bucket=bucket, Key="md5/wrong", Body=three, ContentMD5=wrong_md5)) == "BadDigest")
check("... and nothing was stored", code(lambda: alice.head_object(Bucket=bucket, Key="md5/wrong")) == "404")

# Uploads at once: the gateway hashes the MD5s of an executor's uploads two at a time, each
# body waiting for another's (server/s3g/src/md5pairs.rs); every ETag is still its own body's.
bodies = [os.urandom(1_100_000 + i * 70_001) for i in range(8)]
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    etags = list(pool.map(lambda ib: alice.put_object(Bucket=bucket, Key=f"together/{ib[0]}", Body=ib[1])["ETag"], enumerate(bodies)))
check("8 PUTs at once: each ETag is the MD5 of its own body", etags == [f'"{hashlib.md5(b).hexdigest()}"' for b in bodies], str(etags))
check("... and each reads back", all(alice.get_object(Bucket=bucket, Key=f"together/{i}")["Body"].read() == b for i, b in enumerate(bodies)))

# Listing: delimiters, common prefixes, paging (v1 markers, v2 tokens), url encoding.
names = ["a/1", "a/2", "a/b/3", "b/1", "c", "d e+f", "z/9"]
for n in names:
    alice.put_object(Bucket=bucket + "", Key="list/" + n, Body=b"x")
r = alice.list_objects_v2(Bucket=bucket, Prefix="list/", Delimiter="/")
check("v2 with a delimiter", [c["Key"] for c in r.get("Contents", [])] == ["list/c", "list/d e+f"] and [p["Prefix"] for p in r["CommonPrefixes"]] == ["list/a/", "list/b/", "list/z/"], str(r))
seen, token, pages = [], None, 0
while True:
    kw = {"ContinuationToken": token} if token else {}
    r = alice.list_objects_v2(Bucket=bucket, Prefix="list/", Delimiter="/", MaxKeys=2, **kw)
    pages += 1
    seen += [c["Key"] for c in r.get("Contents", [])] + [p["Prefix"] for p in r.get("CommonPrefixes", [])]
    if not r["IsTruncated"]:
        break
    token = r["NextContinuationToken"]
check("v2 paging by 2 with a delimiter", sorted(seen) == ["list/a/", "list/b/", "list/c", "list/d e+f", "list/z/"] and pages == 3, f"{seen} in {pages} pages")
seen, marker = [], ""
while True:
    r = alice.list_objects(Bucket=bucket, Prefix="list/", MaxKeys=3, Marker=marker)
    seen += [c["Key"] for c in r.get("Contents", [])]
    if not r["IsTruncated"]:
        break
    marker = seen[-1]
check("v1 paging by 3", seen == ["list/" + n for n in sorted(names)], str(seen))
paginated = [k["Key"] for page in alice.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="list/a/", PaginationConfig={"PageSize": 1}) for k in page.get("Contents", [])]
check("boto3's paginator", paginated == ["list/a/1", "list/a/2", "list/a/b/3"], str(paginated))
r = alice.list_objects_v2(Bucket=bucket, Prefix="list/d", EncodingType="url")
check("encoding-type=url (asked for, so boto3 leaves it encoded)", [c["Key"] for c in r["Contents"]] == ["list/d%20e%2Bf"], str(r.get("Contents")))

# S3's additional checksums (boto3 sends a CRC32 with every PUT by default): checked over the
# bytes, stored, echoed, and returned for the SDK to check a GET (x-amz-checksum-mode).
sent = {}
def remember_headers(request, **_):
    sent.update({k.lower(): v for k, v in request.headers.items() if k.lower().startswith(("x-amz-checksum-", "x-amz-trailer", "content-encoding"))})
alice.meta.events.register("before-send.s3.PutObject", remember_headers)
def b64(d):
    return base64.b64encode(d).decode()
crc32 = b64(zlib.crc32(three).to_bytes(4, "big"))
for how, body in (("bytes", three), ("a file object", io.BytesIO(three))):
    sent.clear()
    r = alice.put_object(Bucket=bucket, Key="sum/crc32", Body=body)
    via = "trailer" if "x-amz-trailer" in sent else "header" if "x-amz-checksum-crc32" in sent else "nothing"
    check(f"PUT of {how} with boto3's default CRC32 (sent in a {via}): echoed", via != "nothing" and r.get("ChecksumCRC32") == crc32, f"{r.get('ChecksumCRC32')} against {crc32}; sent {sent}")
sent.clear()
r = alice.put_object(Bucket=bucket, Key="sum/crc32", Body=three, ChecksumCRC32=crc32)
check("PUT with its CRC32 given (sent in a header): echoed", "x-amz-checksum-crc32" in sent and "x-amz-trailer" not in sent and r.get("ChecksumCRC32") == crc32, f"sent {sent}")
check("HEAD without x-amz-checksum-mode: no checksum", "ChecksumCRC32" not in alice.head_object(Bucket=bucket, Key="sum/crc32"))
h = alice.head_object(Bucket=bucket, Key="sum/crc32", ChecksumMode="ENABLED")
check("HEAD with x-amz-checksum-mode: the stored CRC32, FULL_OBJECT", h.get("ChecksumCRC32") == crc32 and h.get("ChecksumType") == "FULL_OBJECT", str(h))
g = alice.get_object(Bucket=bucket, Key="sum/crc32", ChecksumMode="ENABLED")
check("GET with x-amz-checksum-mode: boto3 checks the bytes against it", g.get("ChecksumCRC32") == crc32 and g["Body"].read() == three)
check("a range GET carries no checksum of the whole", "ChecksumCRC32" not in alice.get_object(Bucket=bucket, Key="sum/crc32", ChecksumMode="ENABLED", Range="bytes=0-9"))
from awscrt import checksums as crt
for alg, want in (("SHA256", b64(hashlib.sha256(three).digest())), ("SHA1", b64(hashlib.sha1(three).digest())), ("CRC32C", b64(crt.crc32c(three).to_bytes(4, "big"))), ("CRC64NVME", b64(crt.crc64nvme(three).to_bytes(8, "big")))):
    r = alice.put_object(Bucket=bucket, Key="sum/" + alg, Body=three, ChecksumAlgorithm=alg)
    h = alice.head_object(Bucket=bucket, Key="sum/" + alg, ChecksumMode="ENABLED")
    check(f"PUT with {alg}: echoed and stored", r.get("Checksum" + alg) == want and h.get("Checksum" + alg) == want, f"{r.get('Checksum' + alg)} / {h.get('Checksum' + alg)} against {want}")
a = alice.get_object_attributes(Bucket=bucket, Key="sum/crc32", ObjectAttributes=["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"])
check("GetObjectAttributes: ETag, checksum, size, no parts", a["ETag"] == hashlib.md5(three).hexdigest() and a["Checksum"]["ChecksumCRC32"] == crc32 and a["ObjectSize"] == len(three)
      and a["StorageClass"] == "STANDARD" and "ObjectParts" not in a, str(a))
check("GetObjectAttributes of an attribute S3 does not have: InvalidArgument", code(lambda: alice.get_object_attributes(Bucket=bucket, Key="sum/crc32", ObjectAttributes=["Size"])) == "InvalidArgument")
check("GetObjectAttributes names only what it was asked", set(alice.get_object_attributes(Bucket=bucket, Key="sum/crc32", ObjectAttributes=["ObjectSize"])) - {"ResponseMetadata", "LastModified"} == {"ObjectSize"})
for directive in ("COPY", "REPLACE"):
    alice.copy_object(Bucket=bucket, Key="sum/copy", CopySource={"Bucket": bucket, "Key": "sum/SHA256"}, MetadataDirective=directive)
    h = alice.head_object(Bucket=bucket, Key="sum/copy", ChecksumMode="ENABLED")
    check(f"a copy ({directive}) keeps the source's checksum", h.get("ChecksumSHA256") == b64(hashlib.sha256(three).digest()), str(h))
r = alice.copy_object(Bucket=bucket, Key="sum/copy", CopySource={"Bucket": bucket, "Key": "sum/crc32"}, ChecksumAlgorithm="SHA256")
h = alice.head_object(Bucket=bucket, Key="sum/copy", ChecksumMode="ENABLED")
check("a copy asked for SHA256 computes it, in place of the source's CRC32", r["CopyObjectResult"].get("ChecksumSHA256") == b64(hashlib.sha256(three).digest()) == h.get("ChecksumSHA256")
      and "ChecksumCRC32" not in h, f"{r['CopyObjectResult']} / {h}")
wrong = b64(zlib.crc32(three[:-1] + b"x").to_bytes(4, "big"))
check("a 3 MB PUT whose CRC32 differs: BadDigest", code(lambda: alice.put_object(Bucket=bucket, Key="sum/wrong", Body=three, ChecksumCRC32=wrong)) == "BadDigest")
check("... and nothing stored", code(lambda: alice.head_object(Bucket=bucket, Key="sum/wrong")) == "404")
check("a checksum that is not one: BadDigest", code(lambda: alice.put_object(Bucket=bucket, Key="sum/wrong", Body=b"abc", ChecksumSHA256="bad")) == "BadDigest")
alice.meta.events.unregister("before-send.s3.PutObject", remember_headers)

# Signed chunks with a signed trailer (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER: the AWS SDKs
# for Java, Go and JavaScript over plain HTTP with a checksum). botocore signs the head (the
# seed); the chunks and the trailer are signed here, by AWS's published rules, and sent over TLS.
import hmac, http.client, ssl, urllib.parse
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
def hm(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()
def signed_trailer_put(key, data, chunk=65536, trailer_value=None, tamper=None):
    """PUTs data signed chunk by chunk with a CRC32C trailer; tamper names what to spoil."""
    url = f"{ENDPOINT}/{bucket}/{key}"
    crc = b64(crt.crc32c(data).to_bytes(4, "big")) if trailer_value is None else trailer_value
    req = AWSRequest("PUT", url, headers={"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "content-encoding": "aws-chunked",
                                          "x-amz-decoded-content-length": str(len(data)), "x-amz-trailer": "x-amz-checksum-crc32c"})
    creds = Credentials(os.environ["ALICE_KEY"], os.environ["ALICE_SECRET"])
    SigV4Auth(creds, "s3", "us-east-1").add_auth(req)  # S3SigV4Auth would set its own x-amz-content-sha256
    stamp = req.headers["X-Amz-Date"]
    scope = f"{stamp[:8]}/us-east-1/s3/aws4_request"
    signing = hm(hm(hm(hm(("AWS4" + os.environ["ALICE_SECRET"]).encode(), stamp[:8]), "us-east-1"), "s3"), "aws4_request")
    previous = req.headers["Authorization"].rsplit("Signature=", 1)[1]
    wire = bytearray()
    for i in list(range(0, len(data), chunk)) + [len(data)]:
        piece = data[i:i + chunk]
        previous = hmac.new(signing, "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", stamp, scope, previous, hashlib.sha256(b"").hexdigest(), hashlib.sha256(piece).hexdigest()]).encode(), hashlib.sha256).hexdigest()
        sig = "0" * 64 if tamper == "chunk" and i == 0 else previous
        wire += f"{len(piece):x};chunk-signature={sig}\r\n".encode() + piece + (b"\r\n" if piece else b"")
    trailer = f"x-amz-checksum-crc32c:{crc}\n"
    tsig = hmac.new(signing, "\n".join(["AWS4-HMAC-SHA256-TRAILER", stamp, scope, previous, hashlib.sha256(trailer.encode()).hexdigest()]).encode(), hashlib.sha256).hexdigest()
    if tamper == "trailer":
        trailer = f"x-amz-checksum-crc32c:{b64(b'abcd')}\n"
    wire += trailer.replace("\n", "\r\n").encode()
    if tamper != "no trailer signature":
        wire += f"x-amz-trailer-signature:{tsig}\r\n".encode()
    wire += b"\r\n"
    return send_whole("PUT", urllib.parse.urlsplit(url).path, bytes(wire), dict(req.headers.items()))
def send_whole(method, path, body, headers):
    """(status, text) of a request whose whole body is sent before its answer is read, or
    ("reset", why) where the connection was reset first."""
    u = urllib.parse.urlsplit(ENDPOINT)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=ssl.create_default_context(cafile=CA), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return (r.status, r.read().decode(errors="replace"))
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError) as e:
        # A body refused midway is answered at once and the connection closed, as S3 does:
        # the rest of the body may meet a reset before the answer is read.
        return ("reset", str(e))
    finally:
        conn.close()
data = os.urandom(200_000)
status, text = signed_trailer_put("sum/signed-trailer", data)
h = alice.head_object(Bucket=bucket, Key="sum/signed-trailer", ChecksumMode="ENABLED")
check("signed chunks with a signed CRC32C trailer: stored byte for byte, the checksum kept", status == 200 and h.get("ChecksumCRC32C") == b64(crt.crc32c(data).to_bytes(4, "big"))
      and alice.get_object(Bucket=bucket, Key="sum/signed-trailer")["Body"].read() == data, f"{status} {text[:300]} {h}")
for spoil in ("trailer", "no trailer signature", "chunk"):
    status, text = signed_trailer_put("sum/signed-spoiled", data, tamper=spoil)
    # The first chunk's signature fails with most of the body still on its way (see above).
    answered = (status == 403 and "SignatureDoesNotMatch" in text) or (spoil == "chunk" and status == "reset")
    check(f"signed trailer, {spoil} spoiled: SignatureDoesNotMatch, nothing stored", answered and code(lambda: alice.head_object(Bucket=bucket, Key="sum/signed-spoiled")) == "404", f"{status} {text[:300]}")
status, text = signed_trailer_put("sum/signed-spoiled", data, trailer_value=b64(b"abcd"))
check("a signed trailer whose CRC32C differs from the bytes': BadDigest", status == 400 and "BadDigest" in text, f"{status} {text[:300]}")

# A request refused before its body is read (a wrong signature, a bucket that does not exist):
# the body is read and dropped before the answer, so a client that sends all of it first (as
# http.client does) reads the answer rather than a reset.
def raw_put(path, body, spoil=False):
    req = AWSRequest(method="PUT", url=f"{ENDPOINT}{path}", data=body, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    SigV4Auth(Credentials(os.environ["ALICE_KEY"], os.environ["ALICE_SECRET"]), "s3", "us-east-1").add_auth(req)
    headers = dict(req.headers.items())
    if spoil:
        headers["Authorization"] = headers["Authorization"][:-8] + "00000000"
    return send_whole("PUT", path, body, headers)
refused_body = os.urandom(3 << 20)
status, text = raw_put(f"/{bucket}/refused/badsig", refused_body, spoil=True)
check("a 3 MB PUT with a wrong signature: answered SignatureDoesNotMatch, not reset", status == 403 and "SignatureDoesNotMatch" in text, f"{status} {text[:300]}")
status, text = raw_put(f"/nosuch-{os.urandom(4).hex()}/k", refused_body)
check("a 3 MB PUT into a bucket that does not exist: answered NoSuchBucket, not reset", status == 404 and "NoSuchBucket" in text, f"{status} {text[:300]}")

# Copy (COPY and REPLACE metadata), tagging, DeleteObjects.
alice.copy_object(Bucket=bucket, Key="copy1", CopySource={"Bucket": bucket, "Key": "obj/10000000"})
h = alice.head_object(Bucket=bucket, Key="copy1")
check("copy keeps data, ETag and metadata", h["ContentLength"] == 10 * 1000 * 1000 and h["Metadata"] == {"color": "blue"} and h["ETag"] == big["ETag"])
alice.copy_object(Bucket=bucket, Key="copy2", CopySource={"Bucket": bucket, "Key": "obj/1"}, MetadataDirective="REPLACE", Metadata={"k": "v"}, ContentType="text/plain")
h = alice.head_object(Bucket=bucket, Key="copy2")
check("copy with REPLACE", h["Metadata"] == {"k": "v"} and h["ContentType"] == "text/plain", str(h["Metadata"]))
check("copy onto itself without REPLACE is refused", code(lambda: alice.copy_object(Bucket=bucket, Key="copy2", CopySource={"Bucket": bucket, "Key": "copy2"})) == "InvalidRequest")
alice.put_object_tagging(Bucket=bucket, Key="copy2", Tagging={"TagSet": [{"Key": "team", "Value": "a b"}, {"Key": "x", "Value": ""}]})
tags = alice.get_object_tagging(Bucket=bucket, Key="copy2")["TagSet"]
check("tagging round trip", sorted((t["Key"], t["Value"]) for t in tags) == [("team", "a b"), ("x", "")], str(tags))
alice.put_object(Bucket=bucket, Key="tagged", Body=b"t", Tagging="k1=v1&k2=v%202")
check("tags given at PUT", sorted((t["Key"], t["Value"]) for t in alice.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"]) == [("k1", "v1"), ("k2", "v 2")])
alice.delete_object_tagging(Bucket=bucket, Key="copy2")
check("tags deleted", alice.get_object_tagging(Bucket=bucket, Key="copy2")["TagSet"] == [])
r = alice.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "list/c"}, {"Key": "never-was"}]})
check("DeleteObjects (a missing key counts as deleted)", sorted(d["Key"] for d in r["Deleted"]) == ["list/c", "never-was"] and code(lambda: alice.head_object(Bucket=bucket, Key="list/c")) == "404")

# A conditional PUT race: two writers with If-None-Match: *, exactly one wins.
results = []
def racer(i):
    results.append(code(lambda: client("ALICE").put_object(Bucket=bucket, Key="race", Body=os.urandom(100000), IfNoneMatch="*")))
threads = [threading.Thread(target=racer, args=(i,)) for i in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
check("conditional PUT race: exactly one wins", sorted(results, key=str) == [None, "PreconditionFailed"], str(results))
etag = alice.head_object(Bucket=bucket, Key="race")["ETag"]
check("If-Match with another ETag is refused", code(lambda: alice.put_object(Bucket=bucket, Key="race", Body=b"1", IfMatch='"0000"')) == "PreconditionFailed")
check("If-Match with its ETag replaces it", code(lambda: alice.put_object(Bucket=bucket, Key="race", Body=b"1", IfMatch=etag)) is None)
etag = alice.head_object(Bucket=bucket, Key="race")["ETag"]
check("If-None-Match with its ETag is refused", code(lambda: alice.put_object(Bucket=bucket, Key="race", Body=b"2", IfNoneMatch=etag)) == "PreconditionFailed")
check("If-None-Match with another ETag replaces it", code(lambda: alice.put_object(Bucket=bucket, Key="race", Body=b"2", IfNoneMatch='"0000"')) is None)
check("If-Match: * replaces a key that exists", code(lambda: alice.put_object(Bucket=bucket, Key="race", Body=b"3", IfMatch="*")) is None
      and alice.get_object(Bucket=bucket, Key="race")["Body"].read() == b"3")
for how in ("*", '"0000"'):
    check(f"If-Match: {how} of a missing key: NoSuchKey, nothing written", code(lambda: alice.put_object(Bucket=bucket, Key="race-none", Body=b"x", IfMatch=how)) == "NoSuchKey"
          and code(lambda: alice.head_object(Bucket=bucket, Key="race-none")) == "404")
check("a list of ETags on a write is refused, not taken as one", code(lambda: alice.put_object(Bucket=bucket, Key="race", Body=b"4", IfNoneMatch=f'"0000", {etag}')) == "NotImplemented"
      and alice.get_object(Bucket=bucket, Key="race")["Body"].read() == b"3")
check("If-None-Match with an ETag writes a missing key", code(lambda: alice.put_object(Bucket=bucket, Key="race-none", Body=b"x", IfNoneMatch='"0000"')) is None)
alice.delete_object(Bucket=bucket, Key="race-none")

# Server-side encryption: SSE-C, SSE-S3, SSE-KMS (the gateway's keyring holds sse-s3 and
# kms-1). MARKER_PLAIN goes into a plain object, MARKER_SECRET only into encrypted ones.
plain_marker, secret_marker = os.environ["MARKER_PLAIN"].encode(), os.environ["MARKER_SECRET"].encode()
alice.put_object(Bucket=bucket, Key="sse/plain", Body=plain_marker * 1000)
ckey, other_key = os.urandom(32), os.urandom(32)
sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": ckey}
src_c = {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": ckey}
secret = secret_marker * (1300 * 1024 // len(secret_marker))  # past a 1 MiB datanode call; 4 of them make a 5 MiB part
modes = [("sse-c", sse_c, sse_c), ("sse-s3", {"ServerSideEncryption": "AES256"}, {}), ("sse-kms", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "kms-1"}, {})]
for name, put_args, get_args in modes:
    put = alice.put_object(Bucket=bucket, Key=f"sse/{name}", Body=secret, **put_args)
    got = alice.get_object(Bucket=bucket, Key=f"sse/{name}", **get_args)
    check(f"{name}: put/get byte for byte", got["Body"].read() == secret)
    check(f"{name}: the ETag is the MD5 of the plain bytes", put["ETag"] == f'"{hashlib.md5(secret).hexdigest()}"', put["ETag"])
    said = got["ResponseMetadata"]["HTTPHeaders"]
    told = said.get("x-amz-server-side-encryption-customer-algorithm") if name == "sse-c" else said.get("x-amz-server-side-encryption")
    check(f"{name}: GET tells the encryption", told == {"sse-c": "AES256", "sse-s3": "AES256", "sse-kms": "aws:kms"}[name], str(said))
    r = alice.get_object(Bucket=bucket, Key=f"sse/{name}", Range="bytes=1048570-1048600", **get_args)["Body"].read()
    check(f"{name}: a range across a 1 MiB call decrypts", r == secret[1048570:1048601])
check("SSE-C: a GET without the key is refused", code(lambda: alice.get_object(Bucket=bucket, Key="sse/sse-c")) == "InvalidRequest")
check("SSE-C: ... and so is a HEAD", code(lambda: alice.head_object(Bucket=bucket, Key="sse/sse-c")) == "400")
check("SSE-C: another key is refused", code(lambda: alice.get_object(Bucket=bucket, Key="sse/sse-c", SSECustomerAlgorithm="AES256", SSECustomerKey=other_key)) == "InvalidRequest")
check("SSE-C: a key for a plain object is refused", code(lambda: alice.get_object(Bucket=bucket, Key="sse/plain", **sse_c)) == "InvalidRequest")
check("SSE-KMS: an unknown key is refused", code(lambda: alice.put_object(Bucket=bucket, Key="sse/x", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId="nope")) == "KMS.NotFoundException")
check("SSE-S3 with a customer key is refused", code(lambda: alice.put_object(Bucket=bucket, Key="sse/x", Body=b"x", ServerSideEncryption="AES256", **sse_c)) == "InvalidArgument")
alice.copy_object(Bucket=bucket, Key="sse/copied", CopySource={"Bucket": bucket, "Key": "sse/sse-c"}, ServerSideEncryption="aws:kms", SSEKMSKeyId="kms-1", **src_c)
h = alice.head_object(Bucket=bucket, Key="sse/copied")
check("copy from SSE-C to SSE-KMS re-encrypts", h.get("ServerSideEncryption") == "aws:kms" and alice.get_object(Bucket=bucket, Key="sse/copied")["Body"].read() == secret, str(h))
check("a copy of an SSE-C object needs its key", code(lambda: alice.copy_object(Bucket=bucket, Key="sse/copied", CopySource={"Bucket": bucket, "Key": "sse/sse-c"})) == "InvalidRequest")
up = alice.create_multipart_upload(Bucket=bucket, Key="sse/multi", **sse_c)["UploadId"]
check("SSE-C multipart: a part without the key is refused", code(lambda: alice.upload_part(Bucket=bucket, Key="sse/multi", UploadId=up, PartNumber=1, Body=b"x")) == "InvalidRequest")
p1 = alice.upload_part(Bucket=bucket, Key="sse/multi", UploadId=up, PartNumber=1, Body=secret * 4, **sse_c)
p2 = alice.upload_part_copy(Bucket=bucket, Key="sse/multi", UploadId=up, PartNumber=2, CopySource={"Bucket": bucket, "Key": "sse/sse-s3"}, **sse_c)
parts = [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]
check("SSE-C multipart: completing needs the key", code(lambda: alice.complete_multipart_upload(Bucket=bucket, Key="sse/multi", UploadId=up, MultipartUpload={"Parts": parts})) == "InvalidRequest")
alice.complete_multipart_upload(Bucket=bucket, Key="sse/multi", UploadId=up, MultipartUpload={"Parts": parts}, **sse_c)
check("SSE-C multipart (a part copied from SSE-S3): byte for byte", alice.get_object(Bucket=bucket, Key="sse/multi", **sse_c)["Body"].read() == secret * 4 + secret)

# A bucket's default encryption applies to writes that ask for none.
enc_bucket = bucket + "-enc"
alice.create_bucket(Bucket=enc_bucket)
alice.put_bucket_encryption(Bucket=enc_bucket, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "kms-1"}}]})
rule = alice.get_bucket_encryption(Bucket=enc_bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
check("bucket default encryption is kept", rule == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "kms-1"}, str(rule))
alice.put_object(Bucket=enc_bucket, Key="by-default", Body=secret)
h = alice.head_object(Bucket=enc_bucket, Key="by-default")
check("a write asking for nothing gets the bucket's default", h.get("ServerSideEncryption") == "aws:kms" and h.get("SSEKMSKeyId") == "kms-1", str(h))
check("another user cannot change it", code(lambda: bob.delete_bucket_encryption(Bucket=enc_bucket)) == "AccessDenied")
check("a default with an unknown KMS key is refused", code(lambda: alice.put_bucket_encryption(Bucket=enc_bucket, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "nope"}}]})) == "KMS.NotFoundException")
alice.delete_bucket_encryption(Bucket=enc_bucket)
check("deleted, there is none", code(lambda: alice.get_bucket_encryption(Bucket=enc_bucket)) == "ServerSideEncryptionConfigurationNotFoundError")
alice.put_object(Bucket=enc_bucket, Key="after", Body=b"x")
check("... and writes are plain again", "ServerSideEncryption" not in alice.head_object(Bucket=enc_bucket, Key="after"))


def on_disk(needle):
    """Whether a file on a datanode's disk (DATANODE_DIRS) holds needle."""
    for top in os.environ["DATANODE_DIRS"].split(os.pathsep):
        for d, _, files in os.walk(top):
            for f in files:
                try:
                    with open(os.path.join(d, f), "rb") as fh:
                        if needle in fh.read():
                            return True
                except OSError:
                    pass
    return False


# Now, before anything is deleted: the plain object's bytes are on the disks (so the search can
# find what is stored), the encrypted objects' are not.
check("a plain object's bytes are on the datanodes' disks", on_disk(plain_marker))
check("no encrypted object's bytes are on any datanode disk in clear", not on_disk(secret_marker))
alice.delete_objects(Bucket=enc_bucket, Delete={"Objects": [{"Key": "by-default"}, {"Key": "after"}]})
alice.delete_bucket(Bucket=enc_bucket)

# Presigned URLs through curl: GET, PUT; an expired one is refused.
def curl(*args):
    return subprocess.run(["curl", "-sS", "--cacert", CA, "-o", "-", "-w", "\n%{http_code}", *args], capture_output=True, check=True).stdout
url = alice.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "obj/1"}, ExpiresIn=60)
out = curl(url)
check("presigned GET through curl", out.rsplit(b"\n", 1)[1] == b"200" and out.rsplit(b"\n", 1)[0] == alice.get_object(Bucket=bucket, Key="obj/1")["Body"].read())
url = alice.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "by-curl"}, ExpiresIn=60)
with tempfile.NamedTemporaryFile() as f:
    f.write(b"put by curl")
    f.flush()
    out = curl("-T", f.name, url)
check("presigned PUT through curl", out.endswith(b"200") and alice.get_object(Bucket=bucket, Key="by-curl")["Body"].read() == b"put by curl", out.decode(errors="replace"))
url = alice.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "obj/1"}, ExpiresIn=1)
time.sleep(2.1)
out = curl(url)
check("an expired presigned URL is refused", out.endswith(b"403") and b"expired" in out, out.decode(errors="replace"))
check("a tampered presigned URL is refused", curl(url.replace("obj/1", "obj/0")).endswith(b"403"))
# botocore writes a negative ExpiresIn as is (its CRT signer, with awscrt, refuses to): expired.
url = alice.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "by-curl"}, ExpiresIn=60, HttpMethod="PUT").replace("X-Amz-Expires=60", "X-Amz-Expires=-1000")
out = curl("-X", "PUT", "--data-binary", "x", url)
check("a URL presigned with a negative lifetime is expired", out.endswith(b"403") and b"expired" in out, out.decode(errors="replace"))

# A presigned PUT whose request head and first body bytes leave in one write, as a client
# that coalesces them (hyper with rustls does) sends them: the gateway then sees the body in
# pieces that do not add up to its 1 MiB datanode calls (16,384 bytes less the head, then
# 16,384 each). 3 MB and a bit, byte for byte.
import socket, ssl, urllib.parse
body = os.urandom(3 * 1024 * 1024 + 12345)
url = urllib.parse.urlsplit(alice.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "one-write"}, ExpiresIn=60))
head = f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
with ssl.create_default_context(cafile=CA).wrap_socket(socket.create_connection((url.hostname, url.port)), server_hostname=url.hostname) as tls:
    tls.sendall(head + body)
    reply = b""
    while chunk := tls.recv(65536):
        reply += chunk
check("a PUT whose head and body start share a TLS record", reply.startswith(b"HTTP/1.1 200") and alice.get_object(Bucket=bucket, Key="one-write")["Body"].read() == body, reply[:300].decode(errors="replace"))

# Virtual-hosted style (`BUCKET.DOMAIN/KEY`, the gateway's --domain), as the AWS SDKs for Java
# and Go address buckets by default: names under the domain resolve to the gateway here, whose
# certificate names *.DOMAIN.
import socket
DOMAIN, real_getaddrinfo = os.environ["S3_DOMAIN"], socket.getaddrinfo
def resolve(host, *args, **kwargs):
    if isinstance(host, str) and (host == DOMAIN or host.endswith("." + DOMAIN)):
        host = "127.0.0.1"
    return real_getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = resolve
port = urllib.parse.urlsplit(ENDPOINT).port
vh = boto3.client("s3", endpoint_url=f"https://{DOMAIN}:{port}", aws_access_key_id=os.environ["ALICE_KEY"], aws_secret_access_key=os.environ["ALICE_SECRET"],
                  region_name="us-east-1", verify=CA, config=Config(s3={"addressing_style": "virtual"}, signature_version="s3v4", retries={"max_attempts": 2}))
sent_hosts = []
vh.meta.events.register("before-send.s3.*", lambda request, **_: sent_hosts.append(urllib.parse.urlsplit(request.url).hostname))
vh.put_object(Bucket=bucket, Key="vh/a b+c", Body=b"virtually hosted")
check("virtual-hosted PUT, read back path style", alice.get_object(Bucket=bucket, Key="vh/a b+c")["Body"].read() == b"virtually hosted" and sent_hosts == [f"{bucket}.{DOMAIN}"], str(sent_hosts))
check("virtual-hosted GET and LIST", vh.get_object(Bucket=bucket, Key="vh/a b+c")["Body"].read() == b"virtually hosted"
      and [o["Key"] for o in vh.list_objects_v2(Bucket=bucket, Prefix="vh/")["Contents"]] == ["vh/a b+c"])
check("virtual-hosted: another user's bucket is refused", code(lambda: boto3.client("s3", endpoint_url=f"https://{DOMAIN}:{port}", aws_access_key_id=os.environ["BOB_KEY"],
      aws_secret_access_key=os.environ["BOB_SECRET"], region_name="us-east-1", verify=CA, config=Config(s3={"addressing_style": "virtual"})).get_object(Bucket=bucket, Key="vh/a b+c")) == "AccessDenied")
url = vh.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "vh/a b+c"}, ExpiresIn=60)
out = curl("--resolve", f"{bucket}.{DOMAIN}:{port}:127.0.0.1", url)
check("a virtual-hosted presigned GET through curl", out.rsplit(b"\n", 1) == [b"virtually hosted", b"200"], f"{url}: {out[:400]}")
socket.getaddrinfo = real_getaddrinfo

# Wrong signatures and other users.
wrong = boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id=os.environ["ALICE_KEY"], aws_secret_access_key="x" * 40, region_name="us-east-1", verify=CA,
                     config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
check("a wrong secret is SignatureDoesNotMatch", code(lambda: wrong.list_buckets()) == "SignatureDoesNotMatch")
unknown = boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id="nobody-" + os.urandom(3).hex(), aws_secret_access_key="x" * 40, region_name="us-east-1", verify=CA,
                       config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
check("an unknown access key is InvalidAccessKeyId", code(lambda: unknown.list_buckets()) == "InvalidAccessKeyId")
check("another user's bucket: GET refused", code(lambda: bob.get_object(Bucket=bucket, Key="obj/1")) == "AccessDenied")
check("another user's bucket: PUT refused", code(lambda: bob.put_object(Bucket=bucket, Key="bob", Body=b"b")) == "AccessDenied")
check("another user's bucket: listing refused", code(lambda: bob.list_objects_v2(Bucket=bucket)) == "AccessDenied")
check("another user's bucket: delete refused", code(lambda: bob.delete_bucket(Bucket=bucket)) == "AccessDenied")

# The AWS CLI: cp both ways, ls, rm (single PUTs below its multipart threshold).
aws_env = dict(os.environ, AWS_ACCESS_KEY_ID=os.environ["ALICE_KEY"], AWS_SECRET_ACCESS_KEY=os.environ["ALICE_SECRET"], AWS_DEFAULT_REGION="us-east-1", AWS_CA_BUNDLE=CA)
cfg = tempfile.NamedTemporaryFile("w", delete=False)
cfg.write("[default]\ns3 =\n  addressing_style = path\n")
cfg.close()
aws_env["AWS_CONFIG_FILE"] = cfg.name
def aws(*args):
    return subprocess.run([os.environ["AWS"], "--endpoint-url", ENDPOINT, *args], env=aws_env, capture_output=True, text=True)
with tempfile.TemporaryDirectory() as d:
    src, back = os.path.join(d, "src"), os.path.join(d, "back")
    data = os.urandom(3 * 1000 * 1000)
    open(src, "wb").write(data)
    r = aws("s3", "cp", src, f"s3://{bucket}/cli/file")
    check("aws s3 cp up", r.returncode == 0, r.stderr)
    r = aws("s3", "cp", f"s3://{bucket}/cli/file", back)
    check("aws s3 cp down, byte for byte", r.returncode == 0 and open(back, "rb").read() == data, r.stderr)
    r = aws("s3", "ls", f"s3://{bucket}/cli/")
    check("aws s3 ls", r.returncode == 0 and "3000000 file" in r.stdout, r.stdout + r.stderr)
    r = aws("s3api", "head-object", "--bucket", bucket, "--key", "cli/file")
    check("aws s3api head-object", r.returncode == 0 and hashlib.md5(data).hexdigest() in r.stdout, r.stdout + r.stderr)
    r = aws("s3", "rm", f"s3://{bucket}/cli/file")
    check("aws s3 rm", r.returncode == 0 and code(lambda: alice.head_object(Bucket=bucket, Key="cli/file")) == "404", r.stderr)

# Multipart: a 100 MB object through boto3's transfer manager (8 MiB parts, 4 at a time), the
# AWS CLI's multipart cp, parts listed, UploadPartCopy with a range, a wrong part refused, abort.
from boto3.s3.transfer import TransferConfig
with tempfile.TemporaryDirectory() as d:
    src, back = os.path.join(d, "src"), os.path.join(d, "back")
    data = os.urandom(100 * 1000 * 1000)
    open(src, "wb").write(data)
    alice.upload_file(src, bucket, "mp/big", Config=TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=4))
    h = alice.head_object(Bucket=bucket, Key="mp/big")
    md5s = b"".join(hashlib.md5(data[i:i + (8 << 20)]).digest() for i in range(0, len(data), 8 << 20))
    check("a 100 MB multipart upload, its ETag S3's", h["ContentLength"] == len(data) and h["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-12"', h["ETag"])
    parts = alice.get_object_attributes(Bucket=bucket, Key="mp/big", ObjectAttributes=["ObjectParts", "ObjectSize"])
    mib8, last = 8 << 20, len(data) - 11 * (8 << 20)
    check("GetObjectAttributes of it: 12 parts, each its size", parts["ObjectParts"]["TotalPartsCount"] == 12 and parts["ObjectSize"] == len(data)
          and [(p["PartNumber"], p["Size"]) for p in parts["ObjectParts"]["Parts"]] == [(n, mib8) for n in range(1, 12)] + [(12, last)], str(parts)[:600])
    page = alice.get_object_attributes(Bucket=bucket, Key="mp/big", ObjectAttributes=["ObjectParts"], MaxParts=2, PartNumberMarker=9)["ObjectParts"]
    check("... a page of them", [p["PartNumber"] for p in page["Parts"]] == [10, 11] and page["IsTruncated"] and page["NextPartNumberMarker"] == 11 and page["MaxParts"] == 2, str(page))
    g = alice.get_object(Bucket=bucket, Key="mp/big", PartNumber=12)
    check("GET of its last part: that part's bytes, the part count", g["ContentLength"] == last and g["PartsCount"] == 12 and g["Body"].read() == data[11 * mib8:], str({k: g[k] for k in ("ContentLength", "ContentRange")}))
    g = alice.get_object(Bucket=bucket, Key="mp/big", PartNumber=3)
    check("GET of part 3", g["ContentRange"] == f"bytes {2 * mib8}-{3 * mib8 - 1}/{len(data)}" and g["Body"].read() == data[2 * mib8:3 * mib8])
    h = alice.head_object(Bucket=bucket, Key="mp/big", PartNumber=5)
    check("HEAD of part 5: its size, the part count, the object's ETag", h["ContentLength"] == mib8 and h["PartsCount"] == 12 and h["ETag"].endswith('-12"'))
    check("a part the object does not have: InvalidPart", code(lambda: alice.get_object(Bucket=bucket, Key="mp/big", PartNumber=13)) == "InvalidPart")
    check("a part and a range: InvalidRequest", code(lambda: alice.get_object(Bucket=bucket, Key="mp/big", PartNumber=1, Range="bytes=0-9")) == "InvalidRequest")
    # boto3's transfer asks for CRC32 (COMPOSITE) by default: the object's checksum is the
    # CRC32 of its parts' CRC32s, shown with -12; a GET of one part gets that part's.
    part_crcs = [zlib.crc32(data[i:i + mib8]).to_bytes(4, "big") for i in range(0, len(data), mib8)]
    h = alice.head_object(Bucket=bucket, Key="mp/big", ChecksumMode="ENABLED")
    check("its checksum: boto3's CRC32, COMPOSITE, of the parts' CRC32s", h.get("ChecksumCRC32") == b64(zlib.crc32(b"".join(part_crcs)).to_bytes(4, "big")) + "-12"
          and h.get("ChecksumType") == "COMPOSITE", str({k: h.get(k) for k in ("ChecksumCRC32", "ChecksumType")}))
    g = alice.get_object(Bucket=bucket, Key="mp/big", PartNumber=3, ChecksumMode="ENABLED")
    check("... and part 3's own CRC32 with a GET of it (boto3 checks it)", g.get("ChecksumCRC32") == b64(part_crcs[2]) and g["Body"].read() == data[2 * mib8:3 * mib8], str(g.get("ChecksumCRC32")))
    alice.download_file(bucket, "mp/big", back)
    check("... downloaded byte for byte", open(back, "rb").read() == data)
    r = aws("s3", "cp", src, f"s3://{bucket}/mp/cli")
    check("aws s3 cp of 100 MB (multipart)", r.returncode == 0 and alice.head_object(Bucket=bucket, Key="mp/cli")["ContentLength"] == len(data), r.stderr)
    r = aws("s3", "cp", f"s3://{bucket}/mp/cli", back)
    check("... and back, byte for byte", r.returncode == 0 and open(back, "rb").read() == data, r.stderr)
u = alice.create_multipart_upload(Bucket=bucket, Key="mp/parts", ContentType="text/x", Metadata={"m": "1"})["UploadId"]
p1 = alice.upload_part(Bucket=bucket, Key="mp/parts", UploadId=u, PartNumber=1, Body=b"a" * (5 << 20))["ETag"]
p2 = alice.upload_part_copy(Bucket=bucket, Key="mp/parts", UploadId=u, PartNumber=2, CopySource={"Bucket": bucket, "Key": "mp/big"}, CopySourceRange="bytes=10-19")["CopyPartResult"]["ETag"]
check("the upload is listed", [x["UploadId"] for x in alice.list_multipart_uploads(Bucket=bucket, Prefix="mp/")["Uploads"]] == [u])
rolled = {k: alice.create_multipart_upload(Bucket=bucket, Key=k)["UploadId"] for k in ("mpd/a/1", "mpd/a/2", "mpd/b", "mpd/c/x", "mpd/c/y")}
l = alice.list_multipart_uploads(Bucket=bucket, Prefix="mpd/", Delimiter="/")
check("uploads listed with a delimiter: common prefixes rolled up", [x["Key"] for x in l.get("Uploads", [])] == ["mpd/b"]
      and [p["Prefix"] for p in l.get("CommonPrefixes", [])] == ["mpd/a/", "mpd/c/"] and not l["IsTruncated"], str(l)[:500])
seen, marker = [], ""
while True:
    l = alice.list_multipart_uploads(Bucket=bucket, Prefix="mpd/", Delimiter="/", MaxUploads=1, KeyMarker=marker)
    seen += [x["Key"] for x in l.get("Uploads", [])] + [p["Prefix"] for p in l.get("CommonPrefixes", [])]
    if not l["IsTruncated"]:
        break
    marker = l["NextKeyMarker"]
check("... and paged one at a time", seen == ["mpd/a/", "mpd/b", "mpd/c/"], str(seen))
for k, up in rolled.items():
    alice.abort_multipart_upload(Bucket=bucket, Key=k, UploadId=up)
parts = alice.list_parts(Bucket=bucket, Key="mp/parts", UploadId=u)["Parts"]
check("its parts are listed", [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [(1, 5 << 20, p1), (2, 10, p2)], str(parts))
check("a part listed with another ETag is InvalidPart", code(lambda: alice.complete_multipart_upload(Bucket=bucket, Key="mp/parts", UploadId=u, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p2}]})) == "InvalidPart")
check("parts out of order are InvalidPartOrder", code(lambda: alice.complete_multipart_upload(Bucket=bucket, Key="mp/parts", UploadId=u, MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": p2}, {"PartNumber": 1, "ETag": p1}]})) == "InvalidPartOrder")
check("a small part before the last is EntityTooSmall", code(lambda: alice.complete_multipart_upload(Bucket=bucket, Key="mp/parts", UploadId=u, MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": p2}, {"PartNumber": 3, "ETag": p2}]})) in ("EntityTooSmall", "InvalidPart"))
both = {"Parts": [{"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}]}
check("a completion expecting another size (x-amz-mp-object-size) is InvalidRequest",
      code(lambda: alice.complete_multipart_upload(Bucket=bucket, Key="mp/parts", UploadId=u, MultipartUpload=both, MpuObjectSize=(5 << 20) + 11)) == "InvalidRequest")
check("... and the upload is still there", [p["PartNumber"] for p in alice.list_parts(Bucket=bucket, Key="mp/parts", UploadId=u)["Parts"]] == [1, 2])
check("a part listed twice in a row counts as listed last: a wrong last ETag is InvalidPart",
      code(lambda: alice.complete_multipart_upload(Bucket=bucket, Key="mp/parts", UploadId=u, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1}, {"PartNumber": 1, "ETag": p2}]})) == "InvalidPart")
# Part 1 listed first with another upload's answer, then with its own (a resent part whose
# first upload finished last): it counts once, so the ETag below ends in -2.
resent = {"Parts": [{"PartNumber": 1, "ETag": p2}, {"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}]}
alice.complete_multipart_upload(Bucket=bucket, Key="mp/parts", UploadId=u, MultipartUpload=resent, MpuObjectSize=(5 << 20) + 10)
check("a repeated completion expecting another size is InvalidRequest too",
      code(lambda: alice.complete_multipart_upload(Bucket=bucket, Key="mp/parts", UploadId=u, MultipartUpload=both, MpuObjectSize=1)) == "InvalidRequest")
g = alice.get_object(Bucket=bucket, Key="mp/parts")
body = g["Body"].read()
check("the completed object: parts in order, the upload's metadata", body == b"a" * (5 << 20) + data[10:20] and g["Metadata"] == {"m": "1"} and g["ContentType"] == "text/x" and g["ETag"].endswith('-2"'))
check("a completed upload is gone", code(lambda: alice.list_parts(Bucket=bucket, Key="mp/parts", UploadId=u)) == "NoSuchUpload")
check("its part 2 (a copied range) by number", alice.get_object(Bucket=bucket, Key="mp/parts", PartNumber=2)["Body"].read() == data[10:20])
alice.copy_object(Bucket=bucket, Key="mp/copied", CopySource={"Bucket": bucket, "Key": "mp/parts"})
check("a copy of it is one part", code(lambda: alice.get_object(Bucket=bucket, Key="mp/copied", PartNumber=2)) == "InvalidPart"
      and "ObjectParts" not in alice.get_object_attributes(Bucket=bucket, Key="mp/copied", ObjectAttributes=["ObjectParts"]))
g = alice.get_object(Bucket=bucket, Key="obj/1", PartNumber=1)
check("part 1 of a single-part object is the whole", g["Body"].read() == alice.get_object(Bucket=bucket, Key="obj/1")["Body"].read() and "PartsCount" not in g)
check("... and it has no part 2", code(lambda: alice.get_object(Bucket=bucket, Key="obj/1", PartNumber=2)) == "InvalidPart")
try:
    alice.head_object(Bucket=bucket, Key="never-was")
    check("HEAD of a missing key fails", False)
except botocore.exceptions.ClientError as e:
    check("HEAD of a missing key: 404, not a delete marker", e.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-delete-marker") == "false", str(e.response["ResponseMetadata"]["HTTPHeaders"]))
# Uploads that ask for a checksum: each part keeps its own (sent, or computed by the gateway
# when the client sends none), a completion checks the parts it lists and combines theirs into
# the object's: FULL_OBJECT, the CRC of the whole bytes; COMPOSITE, the digest of the parts'
# digests with -N.
pa, pb = os.urandom(5 << 20), os.urandom(1000)
shas = hashlib.sha256(pa).digest() + hashlib.sha256(pb).digest()
quiet = client("ALICE", request_checksum_calculation="when_required")
for alg, kind, whole, width in (("CRC32C", "FULL_OBJECT", b64(crt.crc32c(pa + pb).to_bytes(4, "big")), 4),
                                ("CRC64NVME", "FULL_OBJECT", b64(crt.crc64nvme(pa + pb).to_bytes(8, "big")), 8),
                                ("SHA256", "COMPOSITE", b64(hashlib.sha256(shas).digest()) + "-2", 32)):
    key, field = "mpsum/" + alg, "Checksum" + alg
    c = alice.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm=alg, ChecksumType=kind)
    check(f"an upload asking for {alg} {kind}: answered so", c.get("ChecksumAlgorithm") == alg and c.get("ChecksumType") == kind, str(c))
    u = c["UploadId"]
    r1 = alice.upload_part(Bucket=bucket, Key=key, UploadId=u, PartNumber=1, Body=pa, ChecksumAlgorithm=alg)
    r2 = quiet.upload_part(Bucket=bucket, Key=key, UploadId=u, PartNumber=2, Body=pb)
    own = {"SHA256": lambda d: hashlib.sha256(d).digest(), "CRC32C": lambda d: crt.crc32c(d).to_bytes(4, "big"), "CRC64NVME": lambda d: crt.crc64nvme(d).to_bytes(8, "big")}[alg]
    check(f"... a part sent with its {alg}, and one sent with none, each get theirs", r1.get(field) == b64(own(pa)) and r2.get(field) == b64(own(pb)), f"{r1.get(field)} {r2.get(field)}")
    other = {"SHA256": "CRC32", "CRC32C": "SHA1", "CRC64NVME": "CRC32"}[alg]
    check(f"... a part with a {other} checksum: InvalidRequest", code(lambda: alice.upload_part(Bucket=bucket, Key=key, UploadId=u, PartNumber=3, Body=pb, ChecksumAlgorithm=other)) == "InvalidRequest")
    listed = alice.list_parts(Bucket=bucket, Key=key, UploadId=u)
    check("... ListParts shows them and the upload's algorithm", [p.get(field) for p in listed["Parts"]] == [r1[field], r2[field]] and listed.get("ChecksumAlgorithm") == alg, str(listed)[:400])
    parts = [{"PartNumber": 1, "ETag": r1["ETag"], field: r1[field]}, {"PartNumber": 2, "ETag": r2["ETag"], field: r2[field]}]
    complete = lambda ps, **kw: alice.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=u, MultipartUpload={"Parts": ps}, **kw)
    check("... a part listed with another part's checksum: InvalidPart", code(lambda: complete([dict(parts[0], **{field: r2[field]}), parts[1]])) == "InvalidPart")
    wrong = b64(bytes(width)) + ("-2" if kind == "COMPOSITE" else "")
    check("... the object's checksum given wrong: BadDigest", code(lambda: complete(parts, **{field: wrong})) == "BadDigest")
    done = complete(parts, **{field: whole})
    check(f"... completed with the object's {alg}, {kind}", done.get(field) == whole and done.get("ChecksumType") == kind, f"{done.get(field)} against {whole}")
    again = complete(parts)
    check("... a completion repeated answers the same", again["ETag"] == done["ETag"] and again.get(field) == whole)
    h = alice.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    g = alice.get_object(Bucket=bucket, Key=key, PartNumber=2, ChecksumMode="ENABLED")
    check("... HEAD shows it; a GET of part 2 that part's", h.get(field) == whole and h.get("ChecksumType") == kind and g.get(field) == r2[field] and g["Body"].read() == pb)
    if kind == "FULL_OBJECT":
        check("... boto3 checks a GET of the whole against it", alice.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")["Body"].read() == pa + pb)
        alice.copy_object(Bucket=bucket, Key=key + "-copy", CopySource={"Bucket": bucket, "Key": key})
        check("... a copy keeps a FULL_OBJECT checksum", alice.head_object(Bucket=bucket, Key=key + "-copy", ChecksumMode="ENABLED").get(field) == whole)
    else:
        alice.copy_object(Bucket=bucket, Key=key + "-copy", CopySource={"Bucket": bucket, "Key": key})
        check("... a copy does not keep a COMPOSITE one (of parts it does not have)", field not in alice.head_object(Bucket=bucket, Key=key + "-copy", ChecksumMode="ENABLED"))
# 60 pairs of user metadata (with the 4 headers boto3 signs besides, the gateway's most signed
# headers) and the upload's algorithm and type: 62 pairs, one short of the key's 64 with the
# ETag, so the object gets its checksum but not its parts' (which would have failed it).
many = {f"m{i}": "v" for i in range(60)}
c = alice.create_multipart_upload(Bucket=bucket, Key="mpsum/many", ChecksumAlgorithm="CRC32", Metadata=many)
r1 = alice.upload_part(Bucket=bucket, Key="mpsum/many", UploadId=c["UploadId"], PartNumber=1, Body=pb, ChecksumAlgorithm="CRC32")
done = alice.complete_multipart_upload(Bucket=bucket, Key="mpsum/many", UploadId=c["UploadId"], MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r1["ETag"], "ChecksumCRC32": r1["ChecksumCRC32"]}]})
h = alice.head_object(Bucket=bucket, Key="mpsum/many", ChecksumMode="ENABLED")
check("an upload whose metadata leaves room for its checksum alone completes with it", h["Metadata"] == many and h.get("ChecksumCRC32") == b64(zlib.crc32(zlib.crc32(pb).to_bytes(4, "big")).to_bytes(4, "big")) + "-1", str(done)[:300])
c = alice.create_multipart_upload(Bucket=bucket, Key="mpsum/none")
u = c["UploadId"]
r1 = quiet.upload_part(Bucket=bucket, Key="mpsum/none", UploadId=u, PartNumber=1, Body=pb)
check("an upload that asked for no checksum: an object checksum on completion is InvalidRequest", code(lambda: alice.complete_multipart_upload(Bucket=bucket, Key="mpsum/none", UploadId=u,
      MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r1["ETag"]}]}, ChecksumCRC32="AAAAAA==")) == "InvalidRequest")
alice.abort_multipart_upload(Bucket=bucket, Key="mpsum/none", UploadId=u)
check("an upload asking for SHA256 FULL_OBJECT: InvalidRequest", code(lambda: alice.create_multipart_upload(Bucket=bucket, Key="mpsum/x", ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT")) == "InvalidRequest")

u = alice.create_multipart_upload(Bucket=bucket, Key="mp/aborted")["UploadId"]
alice.upload_part(Bucket=bucket, Key="mp/aborted", UploadId=u, PartNumber=1, Body=b"x")
check("a bucket with an upload in progress is not empty", code(lambda: alice.delete_bucket(Bucket=bucket)) == "BucketNotEmpty")
alice.abort_multipart_upload(Bucket=bucket, Key="mp/aborted", UploadId=u)
check("an aborted upload is gone", code(lambda: alice.list_parts(Bucket=bucket, Key="mp/aborted", UploadId=u)) == "NoSuchUpload" and code(lambda: alice.head_object(Bucket=bucket, Key="mp/aborted")) == "404")
check("another user cannot start an upload in the bucket", code(lambda: bob.create_multipart_upload(Bucket=bucket, Key="bob")) == "AccessDenied")

# Browser-based uploads (POST Object): a form whose policy boto3 signed (Signature Version 4),
# and one signed as HTML forms long did (Version 2, HMAC-SHA1); the policy's conditions and
# expiry hold, a form they do not allow stores nothing.
import json, requests
posted = os.urandom(3 << 20)
post = alice.generate_presigned_post(bucket, "post/${filename}", Fields={"Content-Type": "text/plain", "x-amz-meta-by": "form"},
                                     Conditions=[{"Content-Type": "text/plain"}, {"x-amz-meta-by": "form"}, ["starts-with", "$key", "post/"], ["content-length-range", 1, 4 << 20]], ExpiresIn=600)
r = requests.post(post["url"], data=post["fields"], files={"file": ("up.bin", posted)}, verify=CA)
check("a form upload (boto3's presigned POST, 3 MB, ${filename}): 204", r.status_code == 204 and r.headers.get("ETag") == f'"{hashlib.md5(posted).hexdigest()}"', f"{r.status_code} {r.text[:300]}")
g = alice.get_object(Bucket=bucket, Key="post/up.bin")
check("... stored byte for byte with the form's type and metadata", g["Body"].read() == posted and g["ContentType"] == "text/plain" and g["Metadata"] == {"by": "form"})
r = requests.post(post["url"], data=dict(post["fields"], success_action_status="201"), files={"file": ("s.bin", b"x")}, verify=CA)
check("... a field the policy does not name: 403", r.status_code == 403 and "Extra input fields" in r.text, r.text[:300])
r = requests.post(post["url"], data=post["fields"], files={"file": ("big.bin", os.urandom((4 << 20) + 1))}, verify=CA)
check("... a file over its content-length-range: EntityTooLarge, nothing stored", r.status_code == 400 and "EntityTooLarge" in r.text and code(lambda: alice.head_object(Bucket=bucket, Key="post/big.bin")) == "404", r.text[:300])
forged = dict(post["fields"], **{"x-amz-signature": "0" * 64})
r = requests.post(post["url"], data=forged, files={"file": ("forged.bin", b"x")}, verify=CA)
check("... a signature not the policy's: 403 SignatureDoesNotMatch, nothing stored", r.status_code == 403 and "SignatureDoesNotMatch" in r.text and code(lambda: alice.head_object(Bucket=bucket, Key="post/forged.bin")) == "404", r.text[:300])
def v2_form(expires_in, conditions, **fields):
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + expires_in))
    policy = base64.b64encode(json.dumps({"expiration": when, "conditions": conditions}).encode())
    signature = base64.b64encode(hmac.new(os.environ["ALICE_SECRET"].encode(), policy, hashlib.sha1).digest())
    return dict(fields, AWSAccessKeyId=os.environ["ALICE_KEY"], policy=policy, signature=signature)
conditions = [{"bucket": bucket}, ["starts-with", "$key", "v2/"], {"success_action_status": "201"}]
r = requests.post(f"{ENDPOINT}/{bucket}", data=v2_form(600, conditions, key="v2/a", success_action_status="201"), files={"file": ("a", b"hello")}, verify=CA)
import xml.etree.ElementTree as ET
check("a form signed with Signature Version 2: 201 and its PostResponse (no namespace, as S3's)", r.status_code == 201 and ET.fromstring(r.content).find("Key").text == "v2/a" and hashlib.md5(b"hello").hexdigest() in r.text, r.text[:300])
tagging = "<Tagging><TagSet><Tag><Key>from</Key><Value>form</Value></Tag></TagSet></Tagging>"
r = requests.post(f"{ENDPOINT}/{bucket}", data=v2_form(600, conditions + [{"tagging": tagging}], key="v2/tagged", success_action_status="201", tagging=tagging), files={"file": ("t", b"t")}, verify=CA)
check("... with a tagging document: the object's tags", r.status_code == 201 and alice.get_object_tagging(Bucket=bucket, Key="v2/tagged")["TagSet"] == [{"Key": "from", "Value": "form"}], r.text[:300])
sha = b64(hashlib.sha256(b"summed").digest())
r = requests.post(f"{ENDPOINT}/{bucket}", data=v2_form(600, conditions, key="v2/sum", success_action_status="201", **{"x-amz-checksum-sha256": sha}), files={"file": ("s", b"summed")}, verify=CA)
check("... with the file's SHA-256 in a field: kept with the object", r.status_code == 201 and alice.head_object(Bucket=bucket, Key="v2/sum", ChecksumMode="ENABLED").get("ChecksumSHA256") == sha, r.text[:300])
r = requests.post(f"{ENDPOINT}/{bucket}", data=v2_form(600, conditions, key="v2/badsum", success_action_status="201", **{"x-amz-checksum-sha256": sha}), files={"file": ("s", b"other")}, verify=CA)
check("... one that differs from the file's: BadDigest, nothing stored", r.status_code == 400 and "BadDigest" in r.text and code(lambda: alice.head_object(Bucket=bucket, Key="v2/badsum")) == "404", r.text[:300])
r = requests.post(f"{ENDPOINT}/{bucket}", data=v2_form(-60, conditions, key="v2/b", success_action_status="201"), files={"file": ("b", b"x")}, verify=CA)
check("... an expired policy: 403, nothing stored", r.status_code == 403 and "expired" in r.text and code(lambda: alice.head_object(Bucket=bucket, Key="v2/b")) == "404", r.text[:300])
r = requests.post(f"{ENDPOINT}/{bucket}", data=v2_form(600, conditions, key="elsewhere/c", success_action_status="201"), files={"file": ("c", b"x")}, verify=CA)
check("... a key its policy does not allow: 403", r.status_code == 403 and code(lambda: alice.head_object(Bucket=bucket, Key="elsewhere/c")) == "404", r.text[:300])
r = requests.post(f"{ENDPOINT}/{bucket}", data={"key": "anon"}, files={"file": ("d", b"x")}, verify=CA)
check("... a form without a policy (anonymous) into a private bucket: 403", r.status_code == 403 and code(lambda: alice.head_object(Bucket=bucket, Key="anon")) == "404", r.text[:300])
bob_form = dict(v2_form(600, [{"bucket": bucket}, ["starts-with", "$key", ""]], key="bob"), AWSAccessKeyId=os.environ["BOB_KEY"])
bob_form["signature"] = base64.b64encode(hmac.new(os.environ["BOB_SECRET"].encode(), bob_form["policy"], hashlib.sha1).digest())
r = requests.post(f"{ENDPOINT}/{bucket}", data=bob_form, files={"file": ("e", b"x")}, verify=CA)
check("... another user's form into alice's bucket: 403 AccessDenied", r.status_code == 403 and "AccessDenied" in r.text, r.text[:300])

# ACLs, and anonymous callers (unsigned requests), who get what AllUsers grants and no more.
from botocore import UNSIGNED
anon = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1", verify=CA, config=Config(s3={"addressing_style": "path"}, signature_version=UNSIGNED, retries={"max_attempts": 1}))
pub = "acl-" + os.urandom(4).hex()
alice.create_bucket(Bucket=pub, ACL="public-read")
check("creating it again without its ACL would change it: BucketAlreadyExists", code(lambda: alice.create_bucket(Bucket=pub)) == "BucketAlreadyExists")
grants = alice.get_bucket_acl(Bucket=pub)["Grants"]
check("a bucket made public-read shows AllUsers READ and its owner's FULL_CONTROL",
      sorted((g["Grantee"].get("URI") or g["Grantee"]["ID"], g["Permission"]) for g in grants) == sorted([("http://acs.amazonaws.com/groups/global/AllUsers", "READ"), (os.environ["ALICE_KEY"], "FULL_CONTROL")]), grants)
alice.put_object(Bucket=pub, Key="open", Body=b"for everyone", ACL="public-read")
alice.put_object(Bucket=pub, Key="closed", Body=b"for alice")
check("anonymous: lists a public-read bucket", [o["Key"] for o in anon.list_objects_v2(Bucket=pub)["Contents"]] == ["closed", "open"])
check("anonymous: reads a public-read object", anon.get_object(Bucket=pub, Key="open")["Body"].read() == b"for everyone")
check("anonymous: not a private object in it", code(lambda: anon.get_object(Bucket=pub, Key="closed")) == "AccessDenied")
check("anonymous: a missing key is NoSuchKey to a caller that may list the bucket", code(lambda: anon.get_object(Bucket=pub, Key="nothing")) == "NoSuchKey")
check("anonymous: no writes to a public-read bucket", code(lambda: anon.put_object(Bucket=pub, Key="w", Body=b"x")) == "AccessDenied")
check("anonymous: no bucket ACL read", code(lambda: anon.get_bucket_acl(Bucket=pub)) == "AccessDenied")
check("anonymous: no bucket listing nor creation", code(lambda: anon.list_buckets()) == "AccessDenied" and code(lambda: anon.create_bucket(Bucket=pub + "-anon")) == "AccessDenied")
check("another user reads the public-read object, not the private one", bob.get_object(Bucket=pub, Key="open")["Body"].read() == b"for everyone" and code(lambda: bob.get_object(Bucket=pub, Key="closed")) == "AccessDenied")
check("... and may not change ACLs", code(lambda: bob.put_object_acl(Bucket=pub, Key="closed", ACL="public-read")) == "AccessDenied" and code(lambda: bob.put_bucket_acl(Bucket=pub, ACL="public-read-write")) == "AccessDenied")
r = subprocess.run(["curl", "-sS", "--cacert", CA, "-o", "-", "-w", " %{http_code}", f"{ENDPOINT}/{pub}/open"], capture_output=True, text=True)
check("curl, unsigned, reads the public-read object", r.stdout == "for everyone 200", r.stdout + r.stderr)
alice.put_object_acl(Bucket=pub, Key="closed", AccessControlPolicy={"Owner": {"ID": os.environ["ALICE_KEY"]}, "Grants": [
    {"Grantee": {"Type": "CanonicalUser", "ID": os.environ["ALICE_KEY"]}, "Permission": "FULL_CONTROL"},
    {"Grantee": {"Type": "CanonicalUser", "ID": os.environ["BOB_KEY"]}, "Permission": "READ"}]})
check("a grant to bob by document: bob reads the object, anonymous still does not", bob.get_object(Bucket=pub, Key="closed")["Body"].read() == b"for alice" and code(lambda: anon.get_object(Bucket=pub, Key="closed")) == "AccessDenied")
check("... GetObjectAcl shows it", sorted((g["Grantee"]["ID"], g["Permission"]) for g in alice.get_object_acl(Bucket=pub, Key="closed")["Grants"]) == sorted([(os.environ["ALICE_KEY"], "FULL_CONTROL"), (os.environ["BOB_KEY"], "READ")]))
check("... READ is not READ_ACP: bob may not read the object's ACL", code(lambda: bob.get_object_acl(Bucket=pub, Key="closed")) == "AccessDenied")
alice.put_object_acl(Bucket=pub, Key="closed", GrantReadACP=f'id="{os.environ["BOB_KEY"]}"')
check("a READ_ACP grant: bob reads the object's ACL, not the object",
      [(g["Grantee"].get("ID"), g["Permission"]) for g in bob.get_object_acl(Bucket=pub, Key="closed")["Grants"]] == [(os.environ["BOB_KEY"], "READ_ACP")]
      and code(lambda: bob.get_object(Bucket=pub, Key="closed")) == "AccessDenied")
alice.put_object_acl(Bucket=pub, Key="closed", ACL="authenticated-read")
check("authenticated-read: every signed caller reads, anonymous does not", bob.get_object(Bucket=pub, Key="closed")["Body"].read() == b"for alice" and code(lambda: anon.get_object(Bucket=pub, Key="closed")) == "AccessDenied")
check("a grant to a user that does not exist is InvalidArgument", code(lambda: alice.put_object_acl(Bucket=pub, Key="closed", GrantRead='id="nobody-' + os.urandom(3).hex() + '"')) == "InvalidArgument")
alice.put_object(Bucket=pub, Key="closed", Body=b"again")
check("an overwrite starts private: the old grants went with the old version", code(lambda: bob.get_object(Bucket=pub, Key="closed")) == "AccessDenied")
alice.put_bucket_acl(Bucket=pub, ACL="public-read-write")
check("public-read-write lets others write keys, not delete the bucket", code(lambda: bob.delete_bucket(Bucket=pub)) == "AccessDenied" and code(lambda: anon.delete_bucket(Bucket=pub)) == "AccessDenied")
anon.put_object(Bucket=pub, Key="by-anon", Body=b"dropped off", ACL="public-read")
check("anonymous writes to a public-read-write bucket, with the object's ACL", alice.get_object(Bucket=pub, Key="by-anon")["Body"].read() == b"dropped off" and bob.get_object(Bucket=pub, Key="by-anon")["Body"].read() == b"dropped off")
r = requests.post(f"{ENDPOINT}/{pub}", data={"key": "posted", "acl": "public-read"}, files={"file": ("p", b"posted anonymously")}, verify=CA)
check("... and posts a form without a policy", r.status_code == 204 and anon.get_object(Bucket=pub, Key="posted")["Body"].read() == b"posted anonymously", r.text[:300])
check("... but may not read the ACL of what it wrote (READ_ACP on the bucket is alice's)", code(lambda: anon.get_bucket_acl(Bucket=pub)) == "AccessDenied")
mp = alice.create_multipart_upload(Bucket=pub, Key="multi", ACL="public-read")
part = alice.upload_part(Bucket=pub, Key="multi", UploadId=mp["UploadId"], PartNumber=1, Body=b"in parts")
alice.complete_multipart_upload(Bucket=pub, Key="multi", UploadId=mp["UploadId"], MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
check("a multipart upload's ACL is its object's once it completes", anon.get_object(Bucket=pub, Key="multi")["Body"].read() == b"in parts"
      and alice.head_object(Bucket=pub, Key="multi")["Metadata"] == {})
# bob may write in the public-read-write bucket: as his PUT's ACL, his upload's is set with
# the object its completion makes (one OM command: never visible without it).
mp = bob.create_multipart_upload(Bucket=pub, Key="bobs", ACL="public-read")
part = bob.upload_part(Bucket=pub, Key="bobs", UploadId=mp["UploadId"], PartNumber=1, Body=b"bob's parts")
bob.complete_multipart_upload(Bucket=pub, Key="bobs", UploadId=mp["UploadId"], MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
check("... asked by a writer without WRITE_ACP on the bucket: set with the completion", anon.get_object(Bucket=pub, Key="bobs")["Body"].read() == b"bob's parts"
      and [g["Permission"] for g in alice.get_object_acl(Bucket=pub, Key="bobs")["Grants"] if g["Grantee"].get("URI", "").endswith("AllUsers")] == ["READ"])
alice.put_bucket_acl(Bucket=pub, AccessControlPolicy={"Owner": {"ID": os.environ["ALICE_KEY"]}, "Grants": []})
check("an ACL with no grants reads back empty, and the owner keeps every right", alice.get_bucket_acl(Bucket=pub)["Grants"] == [] and code(lambda: anon.list_objects_v2(Bucket=pub)) == "AccessDenied"
      and len(alice.list_objects_v2(Bucket=pub)["Contents"]) == 6)
alice.put_bucket_acl(Bucket=pub, ACL="private")
check("a private bucket: anonymous lists nothing, yet reads the object whose own ACL is public-read",
      code(lambda: anon.list_objects_v2(Bucket=pub)) == "AccessDenied" and anon.get_object(Bucket=pub, Key="open")["Body"].read() == b"for everyone")
check("... and a missing key is AccessDenied to it (nothing said of what exists)", code(lambda: anon.get_object(Bucket=pub, Key="nothing")) == "AccessDenied")
# CORS: a browser page at another origin, its preflights and its requests.
def preflight(origin, method, headers=None):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return requests.options(f"{ENDPOINT}/{pub}/open", headers=h, verify=CA)
check("a CORS preflight: 400 without an Origin, 403 with one while the bucket has no CORS rules",
      requests.options(f"{ENDPOINT}/{pub}/open", verify=CA).status_code == 400 and preflight("https://app.example", "GET").status_code == 403)
check("GetBucketCors of a bucket without rules: NoSuchCORSConfiguration", code(lambda: alice.get_bucket_cors(Bucket=pub)) == "NoSuchCORSConfiguration")
rules = [{"ID": "app", "AllowedOrigins": ["https://*.app.example"], "AllowedMethods": ["GET", "PUT"], "AllowedHeaders": ["x-amz-*", "content-type"],
          "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600},
         {"AllowedOrigins": ["*"], "AllowedMethods": ["HEAD"]}]
check("another user may not set a bucket's CORS rules", code(lambda: bob.put_bucket_cors(Bucket=pub, CORSConfiguration={"CORSRules": rules})) == "AccessDenied")
check("a rule with a method S3 does not allow is InvalidRequest", code(lambda: alice.put_bucket_cors(Bucket=pub, CORSConfiguration={"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]})) == "InvalidRequest")
alice.put_bucket_cors(Bucket=pub, CORSConfiguration={"CORSRules": rules})
check("GetBucketCors gives the rules back as set", alice.get_bucket_cors(Bucket=pub)["CORSRules"] == rules, alice.get_bucket_cors(Bucket=pub)["CORSRules"])
check("... to the owner only", code(lambda: bob.get_bucket_cors(Bucket=pub)) == "AccessDenied")
r = preflight("https://www.app.example", "PUT", "X-Amz-Date,Content-Type")
check("a preflight the first rule allows: 200 with its origin, methods, headers and max age, at once (no cache to wait for)",
      r.status_code == 200 and r.headers.get("access-control-allow-origin") == "https://www.app.example" and r.headers.get("access-control-allow-methods") == "GET, PUT"
      and r.headers.get("access-control-allow-headers") == "x-amz-date, content-type" and r.headers.get("access-control-max-age") == "600", (r.status_code, dict(r.headers)))
check("a preflight for another origin, method or header: 403",
      preflight("https://app.example.org", "GET").status_code == 403 and preflight("https://www.app.example", "DELETE").status_code == 403
      and preflight("https://www.app.example", "GET", "authorization").status_code == 403)
r = preflight("https://anywhere.example", "HEAD")
check("a rule for any origin answers *", r.status_code == 200 and r.headers.get("access-control-allow-origin") == "*")
r = requests.get(f"{ENDPOINT}/{pub}/open", headers={"Origin": "https://www.app.example"}, verify=CA)
check("a cross-origin GET carries the rule's headers, ETag exposed to the page",
      r.status_code == 200 and r.headers.get("access-control-allow-origin") == "https://www.app.example" and r.headers.get("access-control-expose-headers") == "ETag", dict(r.headers))
r = requests.get(f"{ENDPOINT}/{pub}/closed", headers={"Origin": "https://www.app.example"}, verify=CA)
check("... and so does its refusal (the page can read why)", r.status_code == 403 and r.headers.get("access-control-allow-origin") == "https://www.app.example")
r = requests.get(f"{ENDPOINT}/{pub}/open", headers={"Origin": "https://evil.example"}, verify=CA)
check("an origin no rule allows gets the object (CORS is the browser's to enforce) without CORS headers", r.status_code == 200 and "access-control-allow-origin" not in r.headers)
alice.delete_bucket_cors(Bucket=pub)
check("DeleteBucketCors: the rules are gone, and preflights are refused again at once",
      code(lambda: alice.get_bucket_cors(Bucket=pub)) == "NoSuchCORSConfiguration" and preflight("https://www.app.example", "GET").status_code == 403)
# Bucket policies, evaluated by the gateway for every request to the bucket.
check("a bucket without a policy: NoSuchBucketPolicy", code(lambda: alice.get_bucket_policy(Bucket=pub)) == "NoSuchBucketPolicy")
def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
arn = f"arn:aws:s3:::{pub}"
check("a policy that is not JSON, or names an operator the gateway does not know, is MalformedPolicy (never a Deny dropped)",
      code(lambda: alice.put_bucket_policy(Bucket=pub, Policy="{")) == "MalformedPolicy"
      and code(lambda: alice.put_bucket_policy(Bucket=pub, Policy=policy({"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": arn + "/*",
                                                                            "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}}))) == "MalformedPolicy")
public_shared = {"Sid": "shared", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": arn + "/shared/*"}
no_bob = {"Sid": "nobob", "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{os.environ['BOB_KEY']}:root"}, "Action": "s3:GetObject", "Resource": arn + "/open"}
check("another user may not set the policy", code(lambda: bob.put_bucket_policy(Bucket=pub, Policy=policy(public_shared))) == "AccessDenied")
alice.put_object(Bucket=pub, Key="shared/notes", Body=b"shared by policy")
alice.put_bucket_policy(Bucket=pub, Policy=policy(public_shared, no_bob))
check("GetBucketPolicy gives the document back", json.loads(alice.get_bucket_policy(Bucket=pub)["Policy"])["Statement"] == [public_shared, no_bob])
check("... and the bucket is public by it (GetBucketPolicyStatus)", alice.get_bucket_policy_status(Bucket=pub)["PolicyStatus"]["IsPublic"] is True)
check("a policy's Allow: anonymous reads a private object under shared/, at once", anon.get_object(Bucket=pub, Key="shared/notes")["Body"].read() == b"shared by policy")
check("... nothing the policy does not name (a private object elsewhere, a write under shared/)",
      code(lambda: anon.get_object(Bucket=pub, Key="closed")) == "AccessDenied" and code(lambda: anon.put_object(Bucket=pub, Key="shared/x", Body=b"x")) == "AccessDenied")
check("a policy's Deny wins over a public-read ACL: bob may not read 'open', anonymous may",
      code(lambda: bob.get_object(Bucket=pub, Key="open")) == "AccessDenied" and anon.get_object(Bucket=pub, Key="open")["Body"].read() == b"for everyone")
alice.put_bucket_policy(Bucket=pub, Policy=policy({"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": arn + "/*",
                                                   "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}}))
check("a Deny of unencrypted uploads binds the owner too; an encrypted one goes through",
      code(lambda: alice.put_object(Bucket=pub, Key="plain", Body=b"x")) == "AccessDenied"
      and alice.put_object(Bucket=pub, Key="sealed", Body=b"x", ServerSideEncryption="AES256")["ServerSideEncryption"] == "AES256")
check("... and the owner may still read and replace the policy", "Null" in alice.get_bucket_policy(Bucket=pub)["Policy"])
alice.delete_bucket_policy(Bucket=pub)
check("DeleteBucketPolicy: the policy's grants are gone at once", code(lambda: anon.get_object(Bucket=pub, Key="shared/notes")) == "AccessDenied"
      and code(lambda: alice.get_bucket_policy(Bucket=pub)) == "NoSuchBucketPolicy")
# A policy changed through one of the gateway's executors applies at once on the others: fresh
# clients (new connections, spread over the executors by SO_REUSEPORT), each having read the
# bucket's settings before the change, see it on their next request.
fresh = [client("ALICE") for _ in range(8)]
for f in fresh:
    f.head_bucket(Bucket=pub)
alice.put_bucket_policy(Bucket=pub, Policy=policy({"Effect": "Deny", "Principal": "*", "Action": "s3:ListBucket", "Resource": arn}))
check("a policy put through one connection binds every connection at once", all(code(lambda: f.list_objects_v2(Bucket=pub)) == "AccessDenied" for f in fresh))
alice.delete_bucket_policy(Bucket=pub)
check("... and its deletion frees them at once", all(f.list_objects_v2(Bucket=pub)["KeyCount"] >= 0 for f in fresh))
alice.put_object(Bucket=pub, Key="public/x", Body=b"listable, not readable")
alice.put_bucket_policy(Bucket=pub, Policy=policy({"Effect": "Allow", "Principal": {"AWS": os.environ["BOB_KEY"]}, "Action": "s3:ListBucket", "Resource": arn,
                                                   "Condition": {"StringLike": {"s3:prefix": "public/*"}}}))
check("a policy that lets bob list public/: a key missing there is 404 to him, elsewhere 403; one that exists stays 403",
      code(lambda: bob.head_object(Bucket=pub, Key="public/none")) == "404" and code(lambda: bob.get_object(Bucket=pub, Key="public/none")) == "NoSuchKey"
      and code(lambda: bob.head_object(Bucket=pub, Key="private/none")) == "403" and code(lambda: bob.head_object(Bucket=pub, Key="public/x")) == "403")
alice.delete_bucket_policy(Bucket=pub)
alice.delete_object(Bucket=pub, Key="public/x")
# Public access blocks.
check("a bucket without a public access block: NoSuchPublicAccessBlockConfiguration", code(lambda: alice.get_public_access_block(Bucket=pub)) == "NoSuchPublicAccessBlockConfiguration")
block = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": False}
alice.put_public_access_block(Bucket=pub, PublicAccessBlockConfiguration=block)
check("PutPublicAccessBlock reads back as set", alice.get_public_access_block(Bucket=pub)["PublicAccessBlockConfiguration"] == block)
check("BlockPublicAcls: a public ACL is refused on the bucket, an object, a PUT; a private one is not",
      code(lambda: alice.put_bucket_acl(Bucket=pub, ACL="public-read")) == "AccessDenied" and code(lambda: alice.put_object_acl(Bucket=pub, Key="closed", ACL="authenticated-read")) == "AccessDenied"
      and code(lambda: alice.put_object(Bucket=pub, Key="pubw", Body=b"x", ACL="public-read")) == "AccessDenied" and alice.put_object(Bucket=pub, Key="privw", Body=b"x", ACL="private")["ETag"])
alice.put_object_acl(Bucket=pub, Key="closed", GrantRead='id="' + os.environ["BOB_KEY"] + '"')
check("IgnorePublicAcls: the public-read object is private to others; a grant by name still counts",
      code(lambda: anon.get_object(Bucket=pub, Key="open")) == "AccessDenied" and code(lambda: bob.get_object(Bucket=pub, Key="open")) == "AccessDenied"
      and bob.get_object(Bucket=pub, Key="closed")["Body"].read() == b"again")
check("BlockPublicPolicy: a policy that makes the bucket public is refused", code(lambda: alice.put_bucket_policy(Bucket=pub, Policy=policy(public_shared))) == "AccessDenied")
alice.delete_public_access_block(Bucket=pub)
check("DeletePublicAccessBlock: the public-read object is public again", anon.get_object(Bucket=pub, Key="open")["Body"].read() == b"for everyone")
for k in ("shared/notes", "sealed", "privw"):
    alice.delete_object(Bucket=pub, Key=k)
check("ExpectedBucketOwner: a request meant for another owner's bucket is refused, the right owner passes",
      code(lambda: alice.list_objects_v2(Bucket=pub, ExpectedBucketOwner=os.environ["BOB_KEY"])) == "AccessDenied"
      and alice.list_objects_v2(Bucket=pub, ExpectedBucketOwner=os.environ["ALICE_KEY"])["KeyCount"] >= 1)
# Object ownership: BucketOwnerEnforced disables ACLs; only the owner and the policy grant.
owned = bucket + "-enforced"
alice.create_bucket(Bucket=owned, ObjectOwnership="BucketOwnerEnforced")
check("CreateBucket with BucketOwnerEnforced: GetBucketOwnershipControls says so",
      alice.get_bucket_ownership_controls(Bucket=owned)["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}])
check("... a PUT with an ACL but bucket-owner-full-control, and any Put*Acl, are AccessControlListNotSupported",
      code(lambda: alice.put_object(Bucket=owned, Key="k", Body=b"x", ACL="public-read")) == "AccessControlListNotSupported"
      and alice.put_object(Bucket=owned, Key="k", Body=b"x", ACL="bucket-owner-full-control")["ETag"]
      and code(lambda: alice.put_bucket_acl(Bucket=owned, ACL="private")) == "AccessControlListNotSupported")
alice.put_bucket_policy(Bucket=owned, Policy=policy({"Effect": "Allow", "Principal": {"AWS": os.environ["BOB_KEY"]}, "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{owned}/*"}))
check("... the policy grants bob a read", bob.get_object(Bucket=owned, Key="k")["Body"].read() == b"x" and code(lambda: bob.put_object(Bucket=owned, Key="b", Body=b"y")) == "AccessDenied")
alice.put_bucket_acl(Bucket=pub, ACL="public-read")
check("Enforced is refused on a bucket whose ACL grants others",
      code(lambda: alice.put_bucket_ownership_controls(Bucket=pub, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})) == "InvalidBucketAclWithObjectOwnership")
alice.put_bucket_acl(Bucket=pub, ACL="private")
alice.delete_bucket_ownership_controls(Bucket=owned)
check("DeleteBucketOwnershipControls: ACLs apply again", code(lambda: alice.get_bucket_ownership_controls(Bucket=owned)) == "OwnershipControlsNotFoundError"
      and alice.put_object_acl(Bucket=owned, Key="k", ACL="private") is not None)
alice.delete_object(Bucket=owned, Key="k")
alice.delete_bucket(Bucket=owned)
# Object ownership by writer: bob, granted WRITE on alice's bucket, owns what he writes (no
# setting, or ObjectWriter); BucketOwnerPreferred gives alice what he writes with
# bucket-owner-full-control.
ALICE, BOB = os.environ["ALICE_KEY"], os.environ["BOB_KEY"]
ow = bucket + "-writers"
alice.create_bucket(Bucket=ow, GrantWrite=f'id="{BOB}"')
owner_of = lambda who, k: who.get_object_acl(Bucket=ow, Key=k)["Owner"]["ID"]
grants_of = lambda who, k: sorted((g["Grantee"].get("ID") or g["Grantee"]["URI"], g["Permission"]) for g in who.get_object_acl(Bucket=ow, Key=k)["Grants"])
bob.put_object(Bucket=ow, Key="b", Body=b"bob's")
check("a PUT by another user than the bucket's owner is the writer's: his ACL, and he reads it without READ on the bucket",
      owner_of(bob, "b") == BOB and grants_of(bob, "b") == [(BOB, "FULL_CONTROL")] and bob.get_object(Bucket=ow, Key="b")["Body"].read() == b"bob's"
      and code(lambda: bob.list_objects_v2(Bucket=ow)) == "AccessDenied")
bob.put_object(Bucket=ow, Key="br", Body=b"x", ACL="bucket-owner-read")
bob.put_object(Bucket=ow, Key="bf", Body=b"x", ACL="bucket-owner-full-control")
check("... bucket-owner-read and bucket-owner-full-control grant the bucket's owner beside him",
      owner_of(alice, "br") == BOB and grants_of(alice, "br") == sorted([(BOB, "FULL_CONTROL"), (ALICE, "READ")])
      and owner_of(alice, "bf") == BOB and grants_of(alice, "bf") == sorted([(BOB, "FULL_CONTROL"), (ALICE, "FULL_CONTROL")]))
bob.copy_object(Bucket=ow, Key="bc", CopySource={"Bucket": ow, "Key": "b"})
up = bob.create_multipart_upload(Bucket=ow, Key="bm")["UploadId"]
check("... so are his copies and his multipart uploads (ListParts names him)",
      owner_of(bob, "bc") == BOB and bob.list_parts(Bucket=ow, Key="bm", UploadId=up)["Owner"]["ID"] == BOB)
mine = alice.create_multipart_upload(Bucket=ow, Key="am")["UploadId"]
check("ListMultipartUploads names who began each upload as its initiator and owner",
      [(u["Key"], u["Initiator"]["ID"], u["Owner"]["ID"]) for u in alice.list_multipart_uploads(Bucket=ow)["Uploads"]] == [("am", ALICE, ALICE), ("bm", BOB, BOB)])
alice.abort_multipart_upload(Bucket=ow, Key="am", UploadId=mine)
etag = bob.upload_part(Bucket=ow, Key="bm", UploadId=up, PartNumber=1, Body=b"part")["ETag"]
bob.complete_multipart_upload(Bucket=ow, Key="bm", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
check("... and the object his upload completes", owner_of(bob, "bm") == BOB and bob.get_object(Bucket=ow, Key="bm")["Body"].read() == b"part")
alice.put_object(Bucket=ow, Key="b", Body=b"alice's")
check("the bucket's owner overwriting it makes it hers again: bob may no longer read it",
      owner_of(alice, "b") == ALICE and code(lambda: bob.get_object(Bucket=ow, Key="b")) == "AccessDenied")
alice.put_bucket_ownership_controls(Bucket=ow, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
bob.put_object(Bucket=ow, Key="pf", Body=b"x", ACL="bucket-owner-full-control")
bob.put_object(Bucket=ow, Key="pp", Body=b"x")
check("BucketOwnerPreferred: bucket-owner-full-control makes his object the bucket owner's, no ACL leaves it his",
      owner_of(alice, "pf") == ALICE and owner_of(bob, "pp") == BOB)
alice.put_bucket_ownership_controls(Bucket=ow, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
bob.put_object(Bucket=ow, Key="wf", Body=b"x", ACL="bucket-owner-full-control")
check("ObjectWriter: GetBucketOwnershipControls says so, and even bucket-owner-full-control leaves it his",
      alice.get_bucket_ownership_controls(Bucket=ow)["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "ObjectWriter"}] and owner_of(alice, "wf") == BOB)
listed = lambda owners: {o["Key"]: o["Owner"]["ID"] for o in owners}
mixed = {"b": ALICE, "br": BOB, "bf": BOB, "bc": BOB, "bm": BOB, "pf": ALICE, "pp": BOB, "wf": BOB}
check("ListObjects and ListObjectsV2 with FetchOwner name each object's owner",
      listed(alice.list_objects(Bucket=ow)["Contents"]) == mixed and listed(alice.list_objects_v2(Bucket=ow, FetchOwner=True)["Contents"]) == mixed)
# An object's own WRITE_ACP: its owner (a writer without WRITE_ACP on the bucket) changes its
# ACL, as does a grantee of it; the bucket owner's overwrite takes both away.
bob.put_object_acl(Bucket=ow, Key="pp", ACL="public-read")
check("the owner of an object changes its ACL without WRITE_ACP on the bucket",
      grants_of(bob, "pp") == sorted([(BOB, "FULL_CONTROL"), ("http://acs.amazonaws.com/groups/global/AllUsers", "READ")]) and anon.get_object(Bucket=ow, Key="pp")["Body"].read() == b"x")
bob.put_object_acl(Bucket=ow, Key="pp", AccessControlPolicy={"Owner": {"ID": BOB}, "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": ALICE}, "Permission": "READ"}]})
check("... and keeps READ_ACP and WRITE_ACP of it when its ACL grants him nothing (S3's owner is never locked out)",
      grants_of(bob, "pp") == [(ALICE, "READ")] and code(lambda: bob.put_object_acl(Bucket=ow, Key="pp", ACL="public-read")) is None
      and grants_of(bob, "pp") == sorted([(BOB, "FULL_CONTROL"), ("http://acs.amazonaws.com/groups/global/AllUsers", "READ")]))
alice.put_object(Bucket=ow, Key="ag", Body=b"x", GrantFullControl=f'id="{ALICE}"', GrantWriteACP=f'id="{BOB}"')
bob.put_object_acl(Bucket=ow, Key="ag", ACL="private")
check("a grantee of WRITE_ACP on an object changes its ACL (here: to its owner's alone), and then may not again",
      grants_of(alice, "ag") == [(ALICE, "FULL_CONTROL")] and code(lambda: bob.put_object_acl(Bucket=ow, Key="ag", ACL="private")) == "AccessDenied")
bob.put_object_acl(Bucket=ow, Key="wf", GrantFullControl=f'id="{BOB}"', GrantWriteACP='uri="http://acs.amazonaws.com/groups/global/AllUsers"')
anon.put_object_acl(Bucket=ow, Key="wf", ACL="private")
check("a canned ACL set by a holder of WRITE_ACP alone (here anyone) is the object's owner's, not the bucket's",
      grants_of(bob, "wf") == [(BOB, "FULL_CONTROL")] and code(lambda: anon.put_object_acl(Bucket=ow, Key="wf", ACL="private")) == "AccessDenied")
alice.put_object(Bucket=ow, Key="pp", Body=b"alice's")
check("... and an object the bucket's owner wrote over is no longer its former owner's to change",
      code(lambda: bob.put_object_acl(Bucket=ow, Key="pp", ACL="public-read")) == "AccessDenied" and code(lambda: anon.get_object(Bucket=ow, Key="pp")) == "AccessDenied")
# PutObjectAcl builds its entries from the version it reads (a canned ACL's FULL_CONTROL goes
# to that version's owner) and sets them on that version alone: with bob and alice writing the
# object by turns while alice sets `private` on it, no ACL read back grants FULL_CONTROL to
# another than the owner it names (before, an overwrite between the read and the change handed
# the new writer's object to the old one's owner).
stop, seen, answers = threading.Event(), [], []
def overwrite():
    while not stop.is_set():
        for who in (bob, alice):
            who.put_object(Bucket=ow, Key="race", Body=b"x")
bob.put_object(Bucket=ow, Key="race", Body=b"x")
writer = threading.Thread(target=overwrite)
writer.start()
try:
    t_end = time.time() + 4
    while time.time() < t_end:
        answers.append(code(lambda: alice.put_object_acl(Bucket=ow, Key="race", ACL="private")))
        a = alice.get_object_acl(Bucket=ow, Key="race")
        seen.append((a["Owner"]["ID"], sorted(g["Grantee"].get("ID", "") for g in a["Grants"] if g["Permission"] == "FULL_CONTROL")))
finally:
    stop.set()
    writer.join()
check(f"PutObjectAcl racing overwrites by another writer never grants one owner's object to the other ({len(answers)} changes, {answers.count(None)} applied)",
      all(full == [owner] for owner, full in seen) and set(answers) <= {None, "OperationAborted"} and answers.count(None) > 0, f"{seen} {answers}")
for k in ("b", "br", "bf", "bc", "bm", "pf", "pp", "wf", "ag", "race"):
    alice.delete_object(Bucket=ow, Key=k)
alice.delete_bucket(Bucket=ow)
check("a bucket without tags: NoSuchTagSet", code(lambda: alice.get_bucket_tagging(Bucket=pub)) == "NoSuchTagSet")
tagset = [{"Key": "team", "Value": "données <&> \u00e9t\u00e9"}] + [{"Key": f"k{i}", "Value": "v" * 256} for i in range(49)]
alice.put_bucket_tagging(Bucket=pub, Tagging={"TagSet": tagset})
check("PutBucketTagging keeps 50 tags of any characters, read back as set", alice.get_bucket_tagging(Bucket=pub)["TagSet"] == tagset)
check("... not 51, and not another user's", code(lambda: alice.put_bucket_tagging(Bucket=pub, Tagging={"TagSet": tagset + [{"Key": "one", "Value": "more"}]})) == "InvalidTag"
      and code(lambda: bob.put_bucket_tagging(Bucket=pub, Tagging={"TagSet": tagset[:1]})) == "AccessDenied" and code(lambda: bob.get_bucket_tagging(Bucket=pub)) == "AccessDenied")
alice.delete_bucket_tagging(Bucket=pub)
check("DeleteBucketTagging removes them", code(lambda: alice.get_bucket_tagging(Bucket=pub)) == "NoSuchTagSet")
for k in ("open", "closed", "by-anon", "posted", "multi", "bobs"):
    alice.delete_object(Bucket=pub, Key=k)
alice.delete_bucket(Bucket=pub)

# Lifecycle rules: kept as given, announced in x-amz-expiration, and acted on by the OM (this
# cluster counts a lifecycle day as 2 s: --lifecycle-day-secs on the OM and the gateway).
life = bucket + "-life"
alice.create_bucket(Bucket=life)
check("a bucket without lifecycle rules: NoSuchLifecycleConfiguration", code(lambda: alice.get_bucket_lifecycle_configuration(Bucket=life)) == "NoSuchLifecycleConfiguration")
legacy = [{"ID": "tmp", "Expiration": {"Days": 1}, "Prefix": "tmp/", "Status": "Enabled"},
          {"ID": "off", "Expiration": {"Days": 1}, "Prefix": "keep/", "Status": "Disabled"}]
filtered = [{"ID": "tagged-logs", "Filter": {"And": {"Prefix": "logs/", "Tags": [{"Key": "expire", "Value": "yes"}], "ObjectSizeGreaterThan": 1}},
             "Status": "Enabled", "Expiration": {"Days": 1}},
            {"ID": "uploads", "Filter": {"Prefix": "mpu/"}, "Status": "Enabled", "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]
alice.put_bucket_lifecycle_configuration(Bucket=life, LifecycleConfiguration={"Rules": legacy + filtered})
got = alice.get_bucket_lifecycle_configuration(Bucket=life)["Rules"]
check("PutBucketLifecycleConfiguration reads back as given", got[:2] == legacy and got[2]["Filter"] == filtered[0]["Filter"] and got[3]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}, str(got))
check("... the owner's alone; a transition, a day count of 0 and a filter of two conditions without And are refused",
      code(lambda: bob.put_bucket_lifecycle_configuration(Bucket=life, LifecycleConfiguration={"Rules": legacy})) == "AccessDenied"
      and code(lambda: bob.get_bucket_lifecycle_configuration(Bucket=life)) == "AccessDenied"
      and code(lambda: alice.put_bucket_lifecycle_configuration(Bucket=life, LifecycleConfiguration={"Rules": [{"ID": "t", "Prefix": "", "Status": "Enabled", "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}]})) == "NotImplemented"
      and code(lambda: alice.put_bucket_lifecycle_configuration(Bucket=life, LifecycleConfiguration={"Rules": [{"ID": "z", "Prefix": "", "Status": "Enabled", "Expiration": {"Days": 0}}]})) == "InvalidArgument"
      and code(lambda: alice.put_bucket_lifecycle_configuration(Bucket=life, LifecycleConfiguration={"Rules": [{"ID": "two", "Filter": {"Prefix": "a", "Tag": {"Key": "k", "Value": "v"}}, "Status": "Enabled", "Expiration": {"Days": 1}}]})) == "MalformedXML")
check("... and the rules are unchanged by the refusals", alice.get_bucket_lifecycle_configuration(Bucket=life)["Rules"] == got)
put = alice.put_object(Bucket=life, Key="tmp/a", Body=b"short-lived")
expiry = put["ResponseMetadata"]["HTTPHeaders"].get("x-amz-expiration", "")
check("a PUT that a rule expires says when and by which rule (x-amz-expiration)", expiry.startswith('expiry-date="') and expiry.endswith('rule-id="tmp"'), expiry)
check("... HEAD says the same", alice.head_object(Bucket=life, Key="tmp/a")["ResponseMetadata"]["HTTPHeaders"].get("x-amz-expiration") == expiry)
copied = alice.copy_object(Bucket=life, Key="tmp/copy", CopySource={"Bucket": life, "Key": "tmp/a"})
mp = alice.create_multipart_upload(Bucket=life, Key="tmp/mp")["UploadId"]
part = alice.upload_part(Bucket=life, Key="tmp/mp", UploadId=mp, PartNumber=1, Body=b"one part")
done = alice.complete_multipart_upload(Bucket=life, Key="tmp/mp", UploadId=mp, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
check("... as do a copy and a completed multipart upload",
      all(x["ResponseMetadata"]["HTTPHeaders"].get("x-amz-expiration", "").endswith('rule-id="tmp"') for x in (copied, done)))
alice.put_object(Bucket=life, Key="keep/a", Body=b"kept: its rule is disabled")
alice.put_object(Bucket=life, Key="logs/big", Body=b"tagged and large", Tagging="expire=yes")
alice.put_object(Bucket=life, Key="logs/s", Body=b"1", Tagging="expire=yes")
alice.put_object(Bucket=life, Key="logs/untagged", Body=b"kept: no tag")
check("... an object no enabled rule matches has no x-amz-expiration", "x-amz-expiration" not in alice.head_object(Bucket=life, Key="keep/a")["ResponseMetadata"]["HTTPHeaders"]
      and "x-amz-expiration" not in alice.head_object(Bucket=life, Key="logs/s")["ResponseMetadata"]["HTTPHeaders"])
old_upload = alice.create_multipart_upload(Bucket=life, Key="mpu/abandoned")["UploadId"]
kept_upload = alice.create_multipart_upload(Bucket=life, Key="other/upload")["UploadId"]
deadline = time.time() + 30
while time.time() < deadline:
    left = sorted(o["Key"] for o in alice.list_objects_v2(Bucket=life).get("Contents", []))
    uploads = [u["UploadId"] for u in alice.list_multipart_uploads(Bucket=life).get("Uploads", [])]
    if not any(k in left for k in ("tmp/a", "tmp/copy", "tmp/mp", "logs/big")) and old_upload not in uploads:
        break
    time.sleep(0.5)
check("the OM expires what the rules say, and nothing else", left == ["keep/a", "logs/s", "logs/untagged"], str(left))
check("... and aborts the uploads their rule ends", uploads == [kept_upload], str(uploads))
alice.delete_bucket_lifecycle(Bucket=life)
check("DeleteBucketLifecycle: none left, and a delete of none is 204", code(lambda: alice.get_bucket_lifecycle_configuration(Bucket=life)) == "NoSuchLifecycleConfiguration"
      and alice.delete_bucket_lifecycle(Bucket=life)["ResponseMetadata"]["HTTPStatusCode"] == 204)
alice.put_object(Bucket=life, Key="tmp/b", Body=b"no rule now")
check("... an object written then is not announced", "x-amz-expiration" not in alice.head_object(Bucket=life, Key="tmp/b")["ResponseMetadata"]["HTTPHeaders"])
time.sleep(5)
check("... nor expired, two lifecycle days later", alice.head_object(Bucket=life, Key="tmp/b")["ContentLength"] == 11)
alice.abort_multipart_upload(Bucket=life, Key="other/upload", UploadId=kept_upload)
for k in ("keep/a", "logs/s", "logs/untagged", "tmp/b"):
    alice.delete_object(Bucket=life, Key=k)
alice.delete_bucket(Bucket=life)

# GETs and HEADs of one bucket at once share the gateway's OM lookups (docs/s3.md): each
# request still gets its own object, and a missing one its own 404, whatever shares its call.
for i in range(24):
    alice.put_object(Bucket=bucket, Key=f"many/{i:02}", Body=f"object {i:02} ".encode() * (i + 1))
wrong = []
def reader(t):
    c = client("ALICE")
    for rnd in range(6):
        for i in range(t, t + 30, 4):
            k = f"many/{i % 30:02}"
            if i % 30 >= 24:
                got = code(lambda: c.get_object(Bucket=bucket, Key=k))
                ok = got == "NoSuchKey"
            elif rnd % 2:
                got = c.head_object(Bucket=bucket, Key=k)["ContentLength"]
                ok = got == len(f"object {i % 30:02} ") * (i % 30 + 1)
            else:
                got = c.get_object(Bucket=bucket, Key=k)["Body"].read()
                ok = got == f"object {i % 30:02} ".encode() * (i % 30 + 1)
            if not ok:
                wrong.append((k, str(got)[:40]))
readers = [threading.Thread(target=reader, args=(t,)) for t in range(12)]
[t.start() for t in readers]
[t.join() for t in readers]
check("concurrent GETs and HEADs of one bucket each get their own object or 404", not wrong, str(wrong[:5]))

# Empty the bucket and delete it.
check("a bucket with keys is BucketNotEmpty", code(lambda: alice.delete_bucket(Bucket=bucket)) == "BucketNotEmpty")
for page in alice.get_paginator("list_objects_v2").paginate(Bucket=bucket):
    keys = [{"Key": c["Key"]} for c in page.get("Contents", [])]
    if keys:
        alice.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
alice.delete_bucket(Bucket=bucket)
check("the emptied bucket is deleted", bucket not in [b["Name"] for b in alice.list_buckets()["Buckets"]])
print("all S3 client checks passed")
