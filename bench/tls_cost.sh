#!/usr/bin/env bash
# The cost of TLS (issue 20): the same generators against `stratos dev` with TLS on every link
# (the default) and with --insecure, alternating, ROUNDS rounds, in one run.
# Prints each figure and the TLS/insecure ratio of the medians.
#
#   bench/tls_cost.sh [ROUNDS] [DURATION_S]
#
# Shapes: ome -t 64 (RPC path), omkg --batch 1 -t 256 --connections 16 (one key per call),
# omkg --batch 64 -t 16, ockg --size 1MiB -t 8 with 3 datanodes (the data path: client to
# datanodes, datanodes to the SCM, OM to the SCM), and omkg --batch 1 -t 256 against three OM
# nodes (Raft between them over TLS).
set -euo pipefail
ROUNDS=${1:-3}
DUR=${2:-5}
B=${STRATOS_BIN:-target/release/stratos}
TMP=$(mktemp -d)
trap 'pkill -INT -f "$TMP" 2>/dev/null || true; sleep 1; rm -rf "$TMP"' EXIT

# start MODE DATANODES [OM_NODES]: a dev cluster in $TMP/MODE; sets ENV_LINE (its client
# environment).
start() {
  local mode=$1 dn=$2 nodes=${3:-1} flags=()
  [ "$mode" = insecure ] && flags=(--insecure)
  rm -rf "$TMP/$mode"
  "$B" dev "${flags[@]}" --datanodes "$dn" --om-nodes "$nodes" --data-dir "$TMP/$mode" --base-port 4000 > "$TMP/$mode.out" 2> "$TMP/$mode.err" &
  for _ in $(seq 1 120); do grep -q ready "$TMP/$mode.out" 2>/dev/null && break; sleep 0.5; done
  grep -q ready "$TMP/$mode.out" || { cat "$TMP/$mode.err" >&2; exit 1; }
  ENV_LINE=$(sed -n 's/.*for clients: export //p' "$TMP/$mode.out")
}
stop() { pkill -INT -f "$TMP/$1" || true; while pgrep -f "$TMP/$1" > /dev/null; do sleep 0.2; done; }

# run MODE NAME ARGS...: one figure (ops/s) into $TMP/res.
run() {
  local mode=$1 name=$2; shift 2
  local rate
  rate=$(env $ENV_LINE "$B" bench "$@" --duration "$DUR" 2>&1 | grep -oE '[0-9.]+ (ops|calls|keys)/s' | head -1 | grep -oE '^[0-9.]+')
  echo "$mode $name $rate" | tee -a "$TMP/res"
}

for r in $(seq 1 "$ROUNDS"); do
  for mode in tls insecure; do
    start "$mode" 0
    run "$mode" "ome-t64" ome -t 64
    run "$mode" "omkg-b1-t256-c16" omkg --batch 1 -t 256 --connections 16
    run "$mode" "omkg-b64-t16" omkg --batch 64 -t 16
    stop "$mode"
    start "$mode" 3
    run "$mode" "ockg-1MiB-t8" ockg --size 1048576 -t 8
    stop "$mode"
    start "$mode" 0 3
    run "$mode" "3node-omkg-b1-t256" omkg --batch 1 -t 256
    stop "$mode"
  done
done

echo
echo "medians over $ROUNDS rounds (ops/s); TLS/insecure"
for name in ome-t64 omkg-b1-t256-c16 omkg-b64-t16 ockg-1MiB-t8 3node-omkg-b1-t256; do
  med() { grep " $name " "$TMP/res" | awk -v m="$1" '$1==m {print $3}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  t=$(med tls); i=$(med insecure)
  awk -v n="$name" -v t="$t" -v i="$i" 'BEGIN {printf "%-18s tls %10.0f  insecure %10.0f  ratio %.2f\n", n, t, i, t/i}'
done
