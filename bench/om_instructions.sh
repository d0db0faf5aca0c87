#!/usr/bin/env bash
# The OM's user-space instructions per key at one key per call, counted by callgrind: a figure
# that, unlike keys/s or CPU time on these noisy VMs, repeats within about 1% from run to run.
#
#   bench/om_instructions.sh [KEYS] [BUILD...]
#
# For each BUILD (default: target/release/stratos), in turn and ROUNDS times (default 2): starts
# `stratos om --executors 1 --no-pin --shards 1` under `valgrind --tool=callgrind`, loads KEYS
# keys (default 2,000) and then 3 x KEYS in a second OM with `omkg --batch 1 -t 256
# --connections 16`, and prints the difference of the two runs' instruction counts per key (so
# start-up and shutdown cancel out). TOP=N also prints the N functions that spend the most
# instructions per key themselves (callees not included).
#
# SIDE=generator counts the generator's instructions instead (the OM runs natively): what the
# client library and the workload cost per key. LOAD replaces the workload, e.g. LOAD='ome -t 256
# --connections 16' for echo calls (then the figure is per call): a key's instructions less two
# echo calls' are what a key adds to the RPC path, on either side (bench/RESULTS.md).
#
# Kernel work (syscalls, TCP, page faults, the fdatasyncs) is not counted, nor are cache misses:
# a build that allocates less can gain more time than instructions. Under valgrind the OM runs
# about 30 times slower, so its batches (commands per Raft entry and per flush) are larger than
# in a real run. Compare builds with it, beside their CPU per key, not hosts.
set -euo pipefail
case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
esac
KEYS=${1:-2000}
[[ "$KEYS" =~ ^[1-9][0-9]*$ ]] || { echo "om_instructions.sh: KEYS must be a positive number, not '$KEYS' (--help)" >&2; exit 2; }
shift || true
BUILDS=("$@")
[ ${#BUILDS[@]} -gt 0 ] || BUILDS=(target/release/stratos)
ROUNDS=${ROUNDS:-2}
case "${SIDE:-om}" in
  om | generator) ;;
  *) echo "om_instructions.sh: SIDE is om or generator, not '$SIDE' (--help)" >&2; exit 2 ;;
esac
command -v valgrind > /dev/null || { echo "om_instructions.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
for b in "${BUILDS[@]}"; do
  [ -x "$b" ] || { echo "om_instructions.sh: $b is not an executable (build with cargo build --release)" >&2; exit 2; }
done
TMP=$(mktemp -d -t om-instructions-XXXX)
trap 'pkill -INT -f "$TMP" 2>/dev/null || true; sleep 1; rm -rf "$TMP"' EXIT
PORT=${PORT:-4760}

# run BUILD KEYS OUT: one OM under callgrind, KEYS keys, callgrind's output in OUT.
run() {
  local bin=$1 n=$2 out=$3 d="$TMP/om"
  rm -rf "$d"
  local om_vg=(valgrind --tool=callgrind --callgrind-out-file="$out") gen_vg=()
  if [ "${SIDE:-om}" = generator ]; then gen_vg=("${om_vg[@]}"); om_vg=(); fi
  "${om_vg[@]}" "$bin" om --data-dir "$d" --rpc-address 127.0.0.1:$PORT \
    --http-address 127.0.0.1:$((PORT + 1)) --raft-address 127.0.0.1:$((PORT + 2)) --executors 1 --no-pin --shards 1 > "$TMP/om.out" 2>&1 &
  local om=$!
  for _ in $(seq 1 600); do grep -q ready "$TMP/om.out" && break; sleep 0.2; done
  grep -q ready "$TMP/om.out" || { cat "$TMP/om.out" >&2; exit 1; }
  STRATOS_OM=127.0.0.1:$PORT STRATOS_CA= STRATOS_CERT= STRATOS_KEY= "${gen_vg[@]}" "$bin" bench ${LOAD:-omkg --batch 1 -t 256 --connections 16} -n "$n" > "$TMP/gen.out" 2>&1 \
    || { cat "$TMP/gen.out" >&2; exit 1; }
  kill -INT $om
  wait $om 2> /dev/null || true
}

# (awk reads to the end: leaving early would end callgrind_annotate with SIGPIPE.)
total() { callgrind_annotate "$1" 2> /dev/null | awk '/PROGRAM TOTALS/ && !seen { gsub(",", "", $1); print $1; seen = 1 }'; }

for r in $(seq 1 "$ROUNDS"); do
  for b in "${BUILDS[@]}"; do
    run "$b" "$KEYS" "$TMP/a.out"
    run "$b" $((3 * KEYS)) "$TMP/b.out"
    a=$(total "$TMP/a.out")
    z=$(total "$TMP/b.out")
    echo "$b: $(( (z - a) / (2 * KEYS) )) instructions per key (round $r; $a and $z in all)"
    if [ -n "${TOP:-}" ]; then
      for f in a b; do
        callgrind_annotate --auto=no --inclusive=no --threshold=100 "$TMP/$f.out" 2> /dev/null \
          | sed -nE 's/^ *([0-9,]+) \([ 0-9.]+%\) +(\* +)?[^:]*:(.*)$/\1\t\3/p' | tr -d ',' > "$TMP/$f.txt"
      done
      awk -F'\t' -v n=$((2 * KEYS)) 'NR == FNR { a[$2] += $1; next } { b[$2] += $1 }
        END { for (k in b) printf "%10d  %s\n", (b[k] - a[k]) / n, substr(k, 1, 140) }' "$TMP/a.txt" "$TMP/b.txt" \
        | sort -rn | awk -v top="$TOP" 'NR <= top'
    fi
  done
done
