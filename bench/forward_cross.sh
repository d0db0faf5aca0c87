#!/usr/bin/env bash
# Writes forwarded both ways between the two survivors of a 3-node cluster: start 3 nodes, stop
# node 3, then run two `omkg` loads at once, one whose client knows only node 1 and one whose
# client knows only node 2. Each node then forwards the writes of the groups the other leads,
# and with one follower left every commit needs the other survivor's append answer. This is the
# traffic that showed head-of-line blocking in the Raft transport (an append answer held back
# by a forwarded write in the same call; see server/raft/src/transport.rs): a p99 near the
# election timeout, and once a 20 s write stall in the HA suite.
#
#   bench/forward_cross.sh [RUNS=3] [SECONDS=15] [THREADS=16]
#     env: STRATOS=path/to/stratos (default target/release/stratos)
#          BASELINE=path/to/another/stratos  (optional: runs alternate between the two builds,
#                                              and the medians are compared as ratios)
#
# Prints, per run and build: keys/s of both loads together, and the worse of the two loads'
# call latency p99 and max (µs); then the medians over the runs.
set -euo pipefail
RUNS=${1:-3}
SECS=${2:-15}
THREADS=${3:-16}
NEW=${STRATOS:-target/release/stratos}
BUILDS=("$NEW")
[ -n "${BASELINE:-}" ] && BUILDS+=("$BASELINE")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
DIR=
cleanup() { kill -9 "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; [ -z "$DIR" ] || rm -rf "$DIR"; }
trap cleanup EXIT

# One run of build $1: prints "keys/s p99 max".
run() {
  local bin=$1
  DIR=$(mktemp -d -t stratos-fwd-XXXX)
  local -a RPC RAFT HTTP PEERS=()
  for i in 1 2 3; do RPC[$i]=127.0.0.1:$(free_port); RAFT[$i]=127.0.0.1:$(free_port); HTTP[$i]=127.0.0.1:$(free_port); done
  for i in 1 2 3; do PEERS+=(--peer "$i,${RAFT[$i]},${RPC[$i]}"); done
  PIDS=()
  for i in 1 2 3; do
    "$bin" om --data-dir "$DIR/om$i" --node-id "$i" --rpc-address "${RPC[$i]}" --http-address "${HTTP[$i]}" --raft-address "${RAFT[$i]}" \
      --shards 4 --executors 2 --no-pin "${PEERS[@]}" >"$DIR/om$i.out" 2>"$DIR/om$i.err" &
    PIDS[$i]=$!
  done
  for i in 1 2 3; do until grep -q ready "$DIR/om$i.out" 2>/dev/null; do sleep 0.1; done; done
  local all="${RPC[1]},${RPC[2]},${RPC[3]}"
  "$bin" sh --om "$all" --user root volume create /benchvol >/dev/null
  "$bin" sh --om "$all" --user root bucket create /benchvol/benchbucket >/dev/null
  kill -TERM "${PIDS[3]}"; wait "${PIDS[3]}" 2>/dev/null || true
  # Until the survivors lead every group (the balancer may still move some between them).
  until "$bin" admin --om "${RPC[1]},${RPC[2]}" --user root status 2>/dev/null | awk '$1 ~ /^(meta|shard-)/ {g++; if ($2 == 1 || $2 == 2) ok++} END {exit !(g > 0 && ok == g)}'; do sleep 0.1; done
  sleep 3
  "$bin" bench omkg --om "${RPC[1]}" -t "$THREADS" --batch 1 --duration "$SECS" --json "$DIR/a.json" >"$DIR/a.out" 2>&1 &
  local a=$!
  "$bin" bench omkg --om "${RPC[2]}" -t "$THREADS" --batch 1 --duration "$SECS" --json "$DIR/b.json" >"$DIR/b.out" 2>&1 &
  local b=$!
  wait "$a" "$b"
  python3 - "$DIR/a.json" "$DIR/b.json" <<'PY'
import json, sys
runs = [json.load(open(f)) for f in sys.argv[1:]]
rate = sum(r["opsPerSecond"] for r in runs)
lat = [r["latencyMicros"] for r in runs]
print(f'{rate:.0f} {max(l["p99"] for l in lat)} {max(l["max"] for l in lat)} {sum(r["errors"] for r in runs)}')
PY
  kill -9 "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true
  rm -rf "$DIR"; DIR=
}

declare -A RESULTS
for r in $(seq 1 "$RUNS"); do
  for bin in "${BUILDS[@]}"; do
    out=$(run "$bin")
    read -r rate p99 max errors <<<"$out"
    echo "run $r, $bin: $rate keys/s, call latency p99 ${p99} µs, max ${max} µs, errors $errors"
    RESULTS[$bin]+="$rate $p99 $max"$'\n'
  done
done
M_LIST=()
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for bin in "${BUILDS[@]}"; do
  rows=${RESULTS[$bin]}
  rate=$(awk 'NF {print $1}' <<<"$rows" | median); p99=$(awk 'NF {print $2}' <<<"$rows" | median); max=$(awk 'NF {print $3}' <<<"$rows" | median)
  echo "median of $RUNS, $bin: $rate keys/s, p99 ${p99} µs, max ${max} µs"
  M_LIST+=("$rate $p99 $max")
done
if [ ${#BUILDS[@]} -eq 2 ]; then
  read -r r1 p1 x1 <<<"${M_LIST[0]}"; read -r r2 p2 x2 <<<"${M_LIST[1]}"
  awk -v r1="$r1" -v r2="$r2" -v p1="$p1" -v p2="$p2" -v x1="$x1" -v x2="$x2" 'BEGIN {printf "STRATOS / BASELINE: keys/s %.2fx, p99 %.2fx, max %.2fx\n", r1/r2, p1/p2, x1/x2}'
fi
