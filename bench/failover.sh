#!/usr/bin/env bash
# Failover time of a 3-node OM cluster under load: KILLS times, kill -9 the node that leads the
# most groups, and time until every group has a leader again (as that leader itself reports,
# via `stratos admin status` polled every 20 ms); then restart the node and wait until it caught
# up (its "ready": log replayed, every group's commit index applied). Prints each failover and
# restart time, the failover p50/p99/max and the restart p50/max.
#
#   bench/failover.sh [KILLS=20] [SHARDS=4]     (env: STRATOS=path/to/stratos, ELECTION="1000 2000 300")
#
# The election timeouts are the OM defaults unless ELECTION="min max heartbeat" (ms) says others.
set -euo pipefail
KILLS=${1:-20}
SHARDS=${2:-4}
BIN=${STRATOS:-target/release/stratos}
read -r EMIN EMAX HB <<<"${ELECTION:-300 600 100}"
DIR=$(mktemp -d -t stratos-failover-XXXX)
declare -a PIDS RPC
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for i in 1 2 3; do RPC[$i]=127.0.0.1:$(free_port); RAFT[$i]=127.0.0.1:$(free_port); HTTP[$i]=127.0.0.1:$(free_port); done
PEERS=()
for i in 1 2 3; do PEERS+=(--peer "$i,${RAFT[$i]},${RPC[$i]}"); done
ALL="${RPC[1]},${RPC[2]},${RPC[3]}"
start() {
  local i=$1
  "$BIN" om --data-dir "$DIR/om$i" --node-id "$i" --rpc-address "${RPC[$i]}" --http-address "${HTTP[$i]}" --raft-address "${RAFT[$i]}" \
    --shards "$SHARDS" --executors 2 --no-pin --election-timeout-min-ms "$EMIN" --election-timeout-max-ms "$EMAX" --heartbeat-interval-ms "$HB" \
    "${PEERS[@]}" >"$DIR/om$i.out" 2>"$DIR/om$i.err" &
  PIDS[$i]=$!
}
cleanup() { kill -9 "${PIDS[@]}" "${LOAD:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
for i in 1 2 3; do start "$i"; done
for i in 1 2 3; do until grep -q ready "$DIR/om$i.out" 2>/dev/null; do sleep 0.1; done; done
"$BIN" sh --om "$ALL" --user root volume create /benchvol
"$BIN" sh --om "$ALL" --user root bucket create /benchvol/benchbucket
# Background load: a steady 2,000 keys/s through all nodes.
"$BIN" bench omkg --om "$ALL" -t 8 --batch 16 --rate 2000 --duration 100000 >"$DIR/load.out" 2>&1 &
LOAD=$!
status() { "$BIN" admin --om "$1" --user root status 2>/dev/null || true; }
# The node leading the most groups, from the status table's leader column.
victim() { status "$ALL" | awk '$1 ~ /^(meta|shard-)/ && $2 != "-" {n[$2]++} END {best=0; for (k in n) if (n[k] > best) {best=n[k]; v=k}; print v}'; }
times=()
restarts=()
for k in $(seq 1 "$KILLS"); do
  sleep 3  # let leaders settle (the balancer moves groups back to their preferred nodes)
  v=$(victim)
  [ -n "$v" ] || { echo "no leader found"; exit 1; }
  # (`if`, not `[ … ] && …`: with the victim last, the loop's status would be 1, and set -e
  # ended the whole run silently right there.)
  survivors=$(for i in 1 2 3; do if [ "$i" != "$v" ]; then printf '%s,' "${RPC[$i]}"; fi; done); survivors=${survivors%,}
  t0=$(date +%s%N)
  kill -9 "${PIDS[$v]}"; wait "${PIDS[$v]}" 2>/dev/null || true
  until status "$survivors" | awk -v v="$v" '$1 ~ /^(meta|shard-)/ {g++; if ($2 != "-" && $2 != v) ok++} END {exit !(g > 0 && ok == g)}'; do sleep 0.02; done
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 ))
  times+=("$ms")
  start "$v"
  until grep -q ready "$DIR/om$v.out" 2>/dev/null; do sleep 0.1; done
  t2=$(date +%s%N)
  restarts+=("$(( (t2 - t1) / 1000000 ))")
  echo "kill $k: node $v; every group had a leader again after $ms ms; restarted, it was ready (log replayed, caught up) after $(( (t2 - t1) / 1000000 )) ms"
  : >"$DIR/om$v.out.old"; mv "$DIR/om$v.out" "$DIR/om$v.out.old"
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
n=${#times[@]}
pick() { printf '%s\n' "$sorted" | sed -n "$1p"; }
p50=$(pick $(( (n + 1) / 2 ))); p99=$(pick $(( (n * 99 + 99) / 100 ))); max=$(pick "$n")
echo "failover over $n kills (election timeout ${EMIN}-${EMAX} ms, heartbeat ${HB} ms): p50 ${p50} ms, p99 ${p99} ms, max ${max} ms"
r=$(printf '%s\n' "${restarts[@]}" | sort -n)
echo "restart to ready (log replayed, caught up): p50 $(printf '%s\n' "$r" | sed -n "$(( (n + 1) / 2 ))p") ms, max $(printf '%s\n' "$r" | sed -n "${n}p") ms"
