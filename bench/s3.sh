#!/usr/bin/env bash
# The S3 gateway beside the native client in one run (issue 21's figures): PUT and GET of 4 KiB
# and 1 MiB objects through `stratos s3g` (bench s3) against ockg / ockr on the same cluster,
# alternating, ROUNDS rounds of SECS seconds each, medians and the ratio; then LIST pages/s of
# a bucket of KEYS objects (made by omkg straight into the S3 volume: metadata only) with a
# delimiter and without, and of a bucket of KEYS objects in KEYS / 10 directories with the
# delimiter (pages of 1000 common prefixes); then ListMultipartUploads pages/s of UPLOADS
# (default 10,000) multipart uploads in progress, with the delimiter and without.
#
#   bench/s3.sh [ROUNDS [SECS [KEYS]]]     # default 3 rounds, 5 s, 1000000 keys
#
# Needs target/release/stratos. One `stratos dev` (TLS) on --base-port ${BASE_PORT:-4000}; DEV_ARGS adds
# flags to it (DEV_ARGS=--insecure: no TLS anywhere, to see what TLS costs each path).
# CHECKSUM=crc32 sends the gateway's PUTs as boto3 does by default (aws-chunked, CRC32 trailer).
# THREADS_SMALL (default 16) and THREADS_LARGE (default 8) are the workers of each side for the
# 4 KiB and the 1 MiB shapes: the gateway gathers the OM lookups of the GETs it has in flight,
# so its ratio depends on them (bench/RESULTS.md, "GET 4 KiB at 64 workers").
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; secs=${2:-5}; keys=${3:-1000000}
small=${THREADS_SMALL:-16}; large=${THREADS_LARGE:-8}
for v in "$small" "$large"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "s3.sh: THREADS_SMALL and THREADS_LARGE are positive numbers, not '$v'" >&2; exit 2; }
done
bin=$PWD/target/release/stratos
[ -x "$bin" ] || { echo "s3.sh: build first: cargo build --release" >&2; exit 2; }
data=$(mktemp -d -t stratos-s3-bench-XXXXXX)
dev_pid=
cleanup() { [ -n "$dev_pid" ] && kill "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
"$bin" dev --data-dir "$data" --base-port "${BASE_PORT:-4000}" ${DEV_ARGS:-} > "$data/dev.out" 2> "$data/dev.err" &
dev_pid=$!
for _ in $(seq 1 300); do grep -q ready "$data/dev.out" 2>/dev/null && break; sleep 0.2; done
ready=$(grep ready "$data/dev.out") || { cat "$data/dev.err" >&2; exit 1; }
export S3_ENDPOINT=$(sed -E 's/.* s3 (https?:\/\/[^ ,]+).*/\1/' <<< "$ready")
export STRATOS_OM=$(sed -E 's/.* om ([^ ]+) .*/\1/' <<< "$ready")
[ -f "$data/tls/ca.pem" ] && export STRATOS_CA=$data/tls/ca.pem STRATOS_CERT=$data/tls/${USER:-root}.pem STRATOS_KEY=$data/tls/${USER:-root}.key
export AWS_ACCESS_KEY_ID=${USER:-root}
export AWS_SECRET_ACCESS_KEY=$("$bin" s3 getsecret | sed -n 's/^awsSecret=//p')
echo "s3.sh: $(nproc) CPUs, gateway $S3_ENDPOINT, OM $STRATOS_OM, $rounds rounds of $secs s, $small workers at 4 KiB and $large at 1 MiB, PUT checksum ${CHECKSUM:-none}" >&2

rate() { sed -nE 's/.*: ([0-9.]+) ops\/s.*/\1/p' | head -1; }
mbs() { sed -nE 's/.*: ([0-9.]+) MB\/s.*/\1/p' | head -1; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
declare -A r
for size in 4096 1048576; do
  t=$small; [ "$size" -gt 65536 ] && t=$large
  for i in $(seq 1 "$rounds"); do
    out=$("$bin" bench ockg --size "$size" -t "$t" --duration "$secs" --bucket "ockg$size" 2>/dev/null); r[ockg$size]+="$(rate <<< "$out") "; r[ockgmb$size]+="$(mbs <<< "$out") "
    out=$("$bin" bench s3 --op put --checksum "${CHECKSUM:-none}" --size "$size" -t "$t" --duration "$secs" --bucket "s3put$size" 2>/dev/null); r[put$size]+="$(rate <<< "$out") "; r[putmb$size]+="$(mbs <<< "$out") "
    out=$("$bin" bench ockr -t "$t" --duration "$secs" --bucket "ockg$size" 2>/dev/null); r[ockr$size]+="$(rate <<< "$out") "
    out=$("$bin" bench s3 --op get -t "$t" --duration "$secs" --bucket "s3put$size" 2>/dev/null); r[get$size]+="$(rate <<< "$out") "; r[getmb$size]+="$(mbs <<< "$out") "
  done
done
m() { tr ' ' '\n' <<< "${r[$1]}" | grep . | median; }
printf '%-34s %12s %12s %7s\n' "shape (median of $rounds)" "S3 gateway" "native" "ratio"
for size in 4096 1048576; do
  for pair in "put:ockg:PUT" "get:ockr:GET"; do
    IFS=: read -r s n label <<< "$pair"
    a=$(m "$s$size"); b=$(m "$n$size")
    printf '%-34s %12s %12s %7s\n' "$label $size B objects/s" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-" }')"
  done
  printf '%-34s %12s %12s\n' "PUT $size B MB/s" "$(m putmb$size)" "$(m ockgmb$size)"
done
echo "s3.sh: writing $keys objects (omkg, metadata only) into s3v/s3list for LIST" >&2
"$bin" bench omkg --volume s3v --bucket s3list -n "$keys" -t 16 --batch 64 --key-size 40 > /dev/null 2>&1
# omkg names its keys PREFIX/N: with the delimiter the whole bucket is one common prefix (a page
# is one OM call that skips the million keys); without it, pages of 1000 keys.
"$bin" bench s3 --op list --bucket s3list --prefix "" -t 4 --duration "$secs" 2>/dev/null | grep -E "ops/s|entries/s"
"$bin" bench s3 --op list --bucket s3list --prefix "" --delimiter "" -t 4 --duration "$secs" 2>/dev/null | grep -E "ops/s|entries/s"
# A bucket of directories: KEYS / 10 common prefixes of 10 keys each (omkg --dirs, names
# dNNNNNN/PREFIX/N), so that each page with the delimiter is 1000 common prefixes: what the OM's
# roll-up serves in one call per page (before it, one call per common prefix).
dirs=$((keys / 10)); [ "$dirs" -ge 1 ] || dirs=1
echo "s3.sh: writing $keys objects in $dirs directories (omkg --dirs) into s3v/s3dirs for LIST" >&2
"$bin" bench omkg --volume s3v --bucket s3dirs -n "$keys" -t 16 --batch 64 --key-size 40 --dirs "$dirs" > /dev/null 2>&1
"$bin" bench s3 --op list --bucket s3dirs --prefix "" -t 4 --duration "$secs" 2>/dev/null | grep -E "ops/s|entries/s"
# Multipart uploads in progress: UPLOADS (default 10,000; uploads live in the shards' small
# state, docs/s3.md) started in UPLOADS / 5 directories, then ListMultipartUploads with the
# delimiter (pages of 1000 common prefixes, one OM call each) and without (1000 uploads a page).
uploads=${UPLOADS:-10000}
[[ "$uploads" =~ ^[1-9][0-9]*$ ]] || { echo "s3.sh: UPLOADS must be a positive number, not '$uploads'" >&2; exit 2; }
echo "s3.sh: starting $uploads multipart uploads in $(( (uploads + 4) / 5 )) directories in s3v/s3uploads for ListMultipartUploads" >&2
"$bin" bench s3 --op initiate --bucket s3uploads --prefix "" --dirs $(( (uploads + 4) / 5 )) -n "$uploads" -t 16 > /dev/null 2>&1
"$bin" bench s3 --op list-uploads --bucket s3uploads --prefix "" -t 4 --duration "$secs" 2>/dev/null | grep -E "ops/s|entries/s"
"$bin" bench s3 --op list-uploads --bucket s3uploads --prefix "" --delimiter "" -t 4 --duration "$secs" 2>/dev/null | grep -E "ops/s|entries/s"
