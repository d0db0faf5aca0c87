#!/usr/bin/env bash
# The cost of TLS on the OM's client ports (issue 20): the same generators against `stratos
# dev` with TLS (the default) and with --insecure, alternating, ROUNDS rounds, in one run.
# Prints each figure and the TLS/insecure ratio of the medians.
#
#   bench/tls_cost.sh [ROUNDS] [DURATION_S]
#
# Shapes: ome -t 64 (RPC path), omkg --batch 1 -t 256 --connections 16 (one key per call),
# omkg --batch 64 -t 16, and ockg --size 1MiB -t 8 with 3 datanodes (the data path: only the
# OM link is TLS; datanodes speak plain TCP until issue 20 secures them).
set -euo pipefail
ROUNDS=${1:-3}
DUR=${2:-5}
B=${STRATOS_BIN:-target/release/stratos}
TMP=$(mktemp -d)
trap 'pkill -INT -f "$TMP" 2>/dev/null || true; sleep 1; rm -rf "$TMP"' EXIT

# start MODE DATANODES: a dev cluster in $TMP/MODE; sets ENV_LINE (its client environment).
start() {
  local mode=$1 dn=$2 flags=()
  [ "$mode" = insecure ] && flags=(--insecure)
  rm -rf "$TMP/$mode"
  "$B" dev "${flags[@]}" --datanodes "$dn" --data-dir "$TMP/$mode" --base-port 4000 > "$TMP/$mode.out" 2> "$TMP/$mode.err" &
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
  done
done

echo
echo "medians over $ROUNDS rounds (ops/s); TLS/insecure"
for name in ome-t64 omkg-b1-t256-c16 omkg-b64-t16 ockg-1MiB-t8; do
  med() { grep " $name " "$TMP/res" | awk -v m="$1" '$1==m {print $3}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  t=$(med tls); i=$(med insecure)
  awk -v n="$name" -v t="$t" -v i="$i" 'BEGIN {printf "%-18s tls %10.0f  insecure %10.0f  ratio %.2f\n", n, t, i, t/i}'
done
