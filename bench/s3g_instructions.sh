#!/usr/bin/env bash
# The S3 gateway's user-space instructions per GET, counted by callgrind: a figure that, unlike
# GETs/s or CPU time on these noisy VMs, repeats from run to run, to compare builds of the
# gateway with (bench/RESULTS.md, "where the gateway's instructions go").
#
#   bench/s3g_instructions.sh [GETS] [BUILD...]
#
# For each BUILD (default: target/release/stratos): starts `stratos dev --no-s3g` (TLS, three
# datanodes) natively and `stratos s3g --cores 1` under `valgrind --tool=callgrind`, puts 2,000
# objects of SIZE bytes (default 4096) through it, makes 300 GETs to warm it up, zeroes the
# counters (`callgrind_control -z`), makes GETS GETs (default 3,000) with T workers (default
# 16), dumps the counters (`callgrind_control -d`) and prints the instructions per GET. TOP=N
# also prints the N functions that spend the most instructions per GET themselves. OP=put
# counts PUTs instead: 300 to warm up, then GETS PUTs of SIZE bytes (T at once: an upload's
# MD5 pairs with another's, server/s3g/src/md5pairs.rs).
#
# What it counts: the gateway's own instructions only (HTTP, SigV4, TLS, its OM and datanode
# calls); the kernel's work, cache misses and the other processes are not in it. valgrind's CPU
# has no SHA-NI, so SHA-256 runs in software there (~31k instructions per GET that are ~2k
# natively). The GETs' run also lists the bucket once (the generator finds its keys so), ~5k per
# GET at 3,000 GETs. Compare builds with it, not hosts.
set -euo pipefail
case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
esac
gets=${1:-3000}
[[ "$gets" =~ ^[1-9][0-9]*$ ]] || { echo "s3g_instructions.sh: GETS must be a positive number, not '$gets' (--help)" >&2; exit 2; }
shift || true
builds=("$@")
[ ${#builds[@]} -gt 0 ] || builds=(target/release/stratos)
size=${SIZE:-4096}; t=${T:-16}; op=${OP:-get}
[[ "$op" == get || "$op" == put ]] || { echo "s3g_instructions.sh: OP is get or put, not '$op' (--help)" >&2; exit 2; }
for v in "$size" "$t"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "s3g_instructions.sh: SIZE and T are positive numbers, not '$v' (--help)" >&2; exit 2; }
done
for tool in valgrind callgrind_control callgrind_annotate; do
  command -v "$tool" > /dev/null || { echo "s3g_instructions.sh: $tool is not installed (apt-get install valgrind)" >&2; exit 2; }
done
for b in "${builds[@]}"; do
  [ -x "$b" ] || { echo "s3g_instructions.sh: $b is not an executable (build with cargo build --release)" >&2; exit 2; }
done
tmp=$(mktemp -d -t s3g-instructions-XXXX)
dev= gw=
cleanup() {
  # The gateway under valgrind does not always see SIGINT (valgrind delivers it only between
  # the blocking calls it knows); its counters are dumped already, so it is killed.
  [ -n "$gw" ] && kill -9 "$gw" 2> /dev/null
  [ -n "$dev" ] && kill -INT "$dev" 2> /dev/null && wait "$dev" 2> /dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
base=${BASE_PORT:-4700}
gw_port=$((base + 9890))

for b in "${builds[@]}"; do
  bin=$(realpath "$b")
  rm -rf "$tmp/dev"
  "$bin" dev --data-dir "$tmp/dev" --base-port "$base" --no-s3g > "$tmp/dev.out" 2> "$tmp/dev.err" &
  dev=$!
  for _ in $(seq 1 300); do grep -q ready "$tmp/dev.out" 2> /dev/null && break; sleep 0.2; done
  ready=$(grep ready "$tmp/dev.out") || { cat "$tmp/dev.err" >&2; exit 1; }
  tls=$tmp/dev/tls
  export STRATOS_OM=$(sed -E 's/.* om ([^ ]+) .*/\1/' <<< "$ready")
  export STRATOS_CA=$tls/ca.pem STRATOS_CERT=$tls/${USER:-root}.pem STRATOS_KEY=$tls/${USER:-root}.key
  export AWS_ACCESS_KEY_ID=${USER:-root}
  export AWS_SECRET_ACCESS_KEY=$("$bin" s3 getsecret | sed -n 's/^awsSecret=//p')
  out=$tmp/callgrind.out
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" s3g --om "$STRATOS_OM" --address "127.0.0.1:$gw_port" --http-address 127.0.0.1:0 --cores 1 \
    --tls-ca "$tls/ca.pem" --tls-cert "$tls/s3g.pem" --tls-key "$tls/s3g.key" > "$tmp/gw.out" 2>&1 &
  gw=$!
  # Under valgrind (which runs one thread at a time) the main thread did not get to print the
  # ready line while the idle executor waited in io_uring_enter (2026-12-08, valgrind 3.19,
  # Linux 6.18): a connection wakes the executor, and the line follows.
  for _ in $(seq 1 600); do
    grep -q ready "$tmp/gw.out" && break
    sleep 0.3
    (exec 3<> "/dev/tcp/127.0.0.1/$gw_port") 2> /dev/null || true
  done
  grep -q ready "$tmp/gw.out" || { cat "$tmp/gw.out" >&2; exit 1; }
  endpoint=https://127.0.0.1:$gw_port
  if [ "$op" = get ]; then
    "$bin" bench s3 --op put --size "$size" -t "$t" -n 2000 --bucket instructions --endpoint "$endpoint" > "$tmp/put.out" 2>&1 || { cat "$tmp/put.out" >&2; exit 1; }
    "$bin" bench s3 --op get -t "$t" -n 300 --bucket instructions --endpoint "$endpoint" > "$tmp/warm.out" 2>&1 || { cat "$tmp/warm.out" >&2; exit 1; }
  else
    "$bin" bench s3 --op put --size "$size" -t "$t" -n 300 --bucket instructions --endpoint "$endpoint" > "$tmp/warm.out" 2>&1 || { cat "$tmp/warm.out" >&2; exit 1; }
  fi
  callgrind_control -z "$gw" > /dev/null 2>&1
  measure=(--op get)
  [ "$op" = put ] && measure=(--op put --size "$size")
  "$bin" bench s3 "${measure[@]}" -t "$t" -n "$gets" --bucket instructions --endpoint "$endpoint" > "$tmp/run.out" 2>&1 || { cat "$tmp/run.out" >&2; exit 1; }
  callgrind_control -d "$gw" > /dev/null 2>&1
  kill -9 "$gw" 2> /dev/null; wait "$gw" 2> /dev/null || true; gw=
  kill -INT "$dev"; wait "$dev" 2> /dev/null || true; dev=
  dump=$(ls "$out".* 2> /dev/null | tail -1)
  [ -n "$dump" ] || { echo "s3g_instructions.sh: callgrind wrote no dump for $b" >&2; exit 1; }
  total=$(callgrind_annotate "$dump" 2> /dev/null | awk '/PROGRAM TOTALS/ && !seen { gsub(",", "", $1); print $1; seen = 1 }')
  OP_=${op^^}
  echo "$b: $((total / gets)) instructions per $OP_ of $size B ($gets ${OP_}s, $t workers; $total in all)"
  if [ -n "${TOP:-}" ]; then
    callgrind_annotate --auto=no --inclusive=no --threshold=100 "$dump" 2> /dev/null \
      | sed -nE 's/^ *([0-9,]+) \([ 0-9.]+%\) +(\* +)?[^:]*:(.*)$/\1\t\3/p' | tr -d ',' \
      | awk -F'\t' -v n="$gets" '$2 !~ /^(clone|start_thread|std::sys::backtrace|core::ops::function::FnOnce|<std::sys::thread)/ { a[$2] += $1 }
          END { for (k in a) printf "%10d  %s\n", a[k] / n, substr(k, 1, 140) }' \
      | sort -rn | awk -v top="$TOP" 'NR <= top'
  fi
  rm -f "$out" "$out".*
done
