#!/usr/bin/env bash
# The data path at disk speed (issue 22's figures): `ockg` of 4 KiB and 1 MiB objects on two
# `stratos dev` clusters side by side, one storing small blocks in the datanodes' group-committed
# block log (the default) and one with a file per block (`--small-block-bytes 0`), alternating,
# ROUNDS rounds of SECS seconds each, medians and the ratio. Then the disk's own sequential
# write rate (dd, O_DIRECT, fdatasync at the end) as the limit for MB/s.
#
#   bench/datanode.sh [ROUNDS [SECS [THREADS [THREADS_1M]]]]   # default 3, 5 s, -t 64, -t 16
#
# Needs target/release/stratos (STRATOS=path for another build). Clusters on --base-port
# ${BASE_PORT:-5000} and +100, TLS and shards as `stratos dev` makes them; DEV_ARGS adds flags
# to every cluster.
# BASELINE=path/to/an/older/stratos adds a third cluster of that build (+200) to every round,
# for a before/after in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; secs=${2:-5}; threads=${3:-64}; threads_1m=${4:-16}
bin=${STRATOS:-$PWD/target/release/stratos}
[ -x "$bin" ] || { echo "datanode.sh: build first: cargo build --release" >&2; exit 2; }
data=$(mktemp -d -t stratos-dn-bench-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$data"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
base=${BASE_PORT:-5000}
declare -A om
names=(log files)
start() { # name port-shift extra-flags...
  local name=$1 shift_by=$2; shift 2
  local b=$bin; [ "$name" = baseline ] && b=$BASELINE
  "$b" dev --data-dir "$data/$name" --base-port "$((base + shift_by))" --no-s3g ${DEV_ARGS:-} "$@" > "$data/$name.out" 2> "$data/$name.err" &
  pids+=($!)
  for _ in $(seq 1 300); do grep -q ready "$data/$name.out" 2>/dev/null && break; sleep 0.2; done
  grep -q ready "$data/$name.out" || { cat "$data/$name.err" >&2; exit 1; }
  om[$name]=$(sed -E 's/.* om ([^ ]+) .*/\1/' < "$data/$name.out")
}
start log 0
start files 100 --small-block-bytes 0
if [ -n "${BASELINE:-}" ]; then start baseline 200; names+=(baseline); fi
echo "datanode.sh: $(nproc) CPUs, block log at ${om[log]}, file per block at ${om[files]}, $rounds rounds of $secs s, -t $threads" >&2
run() { # name size threads
  local d=$data/$1 b=$bin
  [ "$1" = baseline ] && b=$BASELINE
  STRATOS_OM=${om[$1]} STRATOS_CA=$d/tls/ca.pem STRATOS_CERT=$d/tls/${USER:-root}.pem STRATOS_KEY=$d/tls/${USER:-root}.key \
    "$b" bench ockg --size "$2" -t "$3" --duration "$secs" --bucket "b$2" 2>/dev/null
}
field() { sed -nE "s/.*$1.*/\\1/p" | head -1; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
declare -A r
for size in 4096 1048576; do
  t=$threads; [ "$size" -gt 65536 ] && t=$threads_1m
  for i in $(seq 1 "$rounds"); do
    for name in "${names[@]}"; do
      out=$(run "$name" "$size" "$t")
      r[$name$size]+="$(field ': ([0-9.]+) ops\/s' <<< "$out") "
      r[mb$name$size]+="$(field ': ([0-9.]+) MB\/s' <<< "$out") "
      r[p99$name$size]+="$(field ' p99 ([0-9]+) ' <<< "$out") "
    done
  done
done
m() { tr ' ' '\n' <<< "${r[$1]}" | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-" }'; }
printf '%-30s %14s %14s %7s' "ockg (median of $rounds)" "block log" "file per block" "ratio"
[ -n "${BASELINE:-}" ] && printf ' %14s %7s' "baseline" "ratio"
echo
row() { # label key
  printf '%-30s %14s %14s %7s' "$1" "$(m "$2log$3")" "$(m "$2files$3")" "$(ratio "$(m "$2log$3")" "$(m "$2files$3")")"
  [ -n "${BASELINE:-}" ] && printf ' %14s %7s' "$(m "$2baseline$3")" "$(ratio "$(m "$2log$3")" "$(m "$2baseline$3")")"
  echo
}
for size in 4096 1048576; do
  row "$size B keys/s" "" "$size"
  row "$size B MB/s of key data" mb "$size"
  row "$size B put p99 µs" p99 "$size"
done
# The disk's own limit: 512 MiB written sequentially with O_DIRECT and synced, where the
# datanodes keep their data.
dd if=/dev/zero of="$data/dd.test" bs=1M count=512 oflag=direct conv=fdatasync 2>&1 | tail -1 | sed 's/^/disk (dd, O_DIRECT, 1 MiB writes): /'
rm -f "$data/dd.test"
