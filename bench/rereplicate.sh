#!/usr/bin/env bash
# Re-replication rate (issue 22): a `stratos dev` cluster with 4 datanodes, BLOCKS keys of
# SIZE bytes written with ockg (one block each), then the datanode holding the most blocks is
# killed with -9. The SCM declares it dead after --dead-after-ms, and for each pipeline it was in,
# a healthy datanode copies the pipeline's containers from a survivor and takes its place. Prints
# the blocks copied, the time from the kill to the last copy, and blocks/s (both counting and
# excluding the wait for the death to be noticed).
#
#   bench/rereplicate.sh [BLOCKS [SIZE]]     # default 10000 blocks of 4096 bytes
#
# Needs target/release/stratos (STRATOS=path for another build); --base-port ${BASE_PORT:-6000}.
set -euo pipefail
cd "$(dirname "$0")/.."
blocks=${1:-10000}; size=${2:-4096}
bin=${STRATOS:-$PWD/target/release/stratos}
[ -x "$bin" ] || { echo "rereplicate.sh: build first: cargo build --release" >&2; exit 2; }
data=$(mktemp -d -t stratos-rerep-XXXXXX)
dev_pid=; tail_pid=
cleanup() { [ -n "$tail_pid" ] && { pkill -P "$tail_pid"; kill "$tail_pid"; } 2>/dev/null; [ -n "$dev_pid" ] && kill "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
"$bin" dev --data-dir "$data/c" --base-port "${BASE_PORT:-6000}" --shards 2 --no-s3g --datanodes 4 > "$data/dev.out" 2> "$data/dev.err" &
dev_pid=$!
for _ in $(seq 1 300); do grep -q ready "$data/dev.out" 2>/dev/null && break; sleep 0.2; done
grep -q ready "$data/dev.out" || { cat "$data/dev.err" >&2; exit 1; }
d=$data/c
export STRATOS_OM=$(sed -E 's/.* om ([^ ]+) .*/\1/' < "$data/dev.out") STRATOS_CA=$d/tls/ca.pem STRATOS_CERT=$d/tls/${USER:-root}.pem STRATOS_KEY=$d/tls/${USER:-root}.key
echo "rereplicate.sh: writing $blocks keys of $size bytes (ockg -t 64)" >&2
"$bin" bench ockg -n "$blocks" --size "$size" -t 64 > "$data/ockg.out" 2>/dev/null
head -1 "$data/ockg.out" >&2
# The victim: the datanode whose block log holds the most records.
victim=$(for i in 0 1 2 3; do echo "$(du -s "$d/dn$i/block-log" | cut -f1) $i"; done | sort -n | tail -1 | cut -d' ' -f2)
pid=$(pgrep -f "datanode --data-dir $d/dn$victim " | head -1)
# Time-stamp the cluster's log lines from now on.
(tail -n 0 -F "$data/dev.err" | while IFS= read -r line; do echo "$(date +%s.%N) $line"; done > "$data/timed.log") &
tail_pid=$!
sleep 0.5
t0=$(date +%s.%N)
kill -9 "$pid"
echo "rereplicate.sh: killed datanode $victim (pid $pid); waiting for the copies (dev's --dead-after-ms is 10 s)" >&2
# Done when copies were made and none came for 5 s.
last=0
for _ in $(seq 1 600); do
  sleep 1
  n=$(grep -c "copied container" "$data/timed.log" || true)
  if [ "$n" -gt 0 ] && [ "$n" = "$last" ]; then
    quiet=$(awk -v now="$(date +%s.%N)" '/copied container/ {t=$1} END {print now - t}' "$data/timed.log")
    awk -v q="$quiet" 'BEGIN{exit !(q >= 5)}' && break
  fi
  last=$n
done
grep -E "copied container|is dead: datanode" "$data/timed.log" | awk -v t0="$t0" '
  /is dead: datanode/ { if (!first) first = $1; next }
  { for (i = 1; i <= NF; i++) if ($i == "blocks)") n += substr($(i-1), 2); end = $1 }
  END {
    if (n == 0) { print "no blocks copied"; exit 1 }
    printf "copied %d blocks; %.1f s from the kill to the last copy (%.0f blocks/s with the wait for the death to be noticed); %.1f s from the first repair planned (%.0f blocks/s of copying)\n", n, end - t0, n / (end - t0), end - first, (end > first) ? n / (end - first) : 0
  }'
grep -E "^[0-9.]+ scm: (datanode|pipeline)" "$data/timed.log" | cut -d' ' -f2- | sed 's/^/  /' | head -20
grep -c "copying container" "$data/timed.log" | sed 's/^/copy attempts that failed and were asked again: /'
