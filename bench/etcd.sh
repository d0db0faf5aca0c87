#!/usr/bin/env bash
# Stratos against etcd, side by side on this host, with the same replication and durability:
# MEMBERS OM nodes against MEMBERS etcd members (1 or 3), both acknowledging a write only once
# it is fdatasync'ed on a majority. The workload is omkg (a key = an open and a commit: two
# durable replicated writes on either side; see `omkg_etcd` in bench/src/freon/etcd.rs for the
# mapping). For each concurrency (-t, requests in flight) the two are run alternately RUNS
# times; the medians and the ratio Stratos/etcd are printed (keys/s; durable writes/s are twice
# that on both sides, so the ratio is the same).
#
# Equal shape: etcd is driven through its gRPC API (`etcd+grpc://`, the etcd-client crate) with
# the same keys per call as Stratos: BATCH=1 is one key per call on both sides (a put and a
# transaction on etcd), BATCH=64 is 64 keys per call (two transactions of 64 keys on etcd).
# ETCD_API=json drives etcd's JSON gateway instead (one key per call whatever BATCH; it costs
# etcd 2.5-3x, FINDINGS.md).
#
# usage: bench/etcd.sh [MEMBERS] [RUNS] [CLIENTS...]     defaults: 1 3 64
#   env: DURATION (s per run, default 4), BATCH (keys per call, default 64), ETCD_API (grpc or
#        json, default grpc), CONNECTIONS (per side, default 16), SHARDS (Stratos key shards,
#        default `stratos dev`'s: one per executor for one member, one per CPU for more), STRATOS (the binary, default target/release/stratos, built with
#        --features etcd-grpc if it lacks the gRPC client), JSON_DIR (also keep each run's --json
#        there, labelled for `stratos bench plot`)
# Installs Debian's etcd-server if etcd is missing, and protobuf-compiler to build the gRPC
# client. Uses ports 9862.. (Stratos) and 23790.. (etcd) on 127.0.0.1; everything runs on this
# host and is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
MEMBERS=${1:-1}
RUNS=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
CLIENTS=("${@:-64}")
[ ${#CLIENTS[@]} -gt 0 ] || CLIENTS=(64)
DURATION=${DURATION:-4}
BATCH=${BATCH:-64}
SHARDS=${SHARDS:-}
B=${STRATOS:-target/release/stratos}
case "$MEMBERS" in 1|3) ;; *) echo "etcd.sh: MEMBERS must be 1 or 3" >&2; exit 2 ;; esac
ETCD_API=${ETCD_API:-grpc}
CONNECTIONS=${CONNECTIONS:-16}
command -v etcd >/dev/null || { echo "etcd.sh: installing etcd-server" >&2; apt-get install -y etcd-server >/dev/null; }
if [ "$ETCD_API" = grpc ]; then
    if [ ! -x "$B" ] || "$B" bench omkg --om etcd+grpc://127.0.0.1:1 -n 1 2>&1 | grep -q "no etcd gRPC client"; then
        command -v protoc >/dev/null || { echo "etcd.sh: installing protobuf-compiler (etcd-client's build runs protoc)" >&2; apt-get install -y protobuf-compiler >/dev/null; }
        echo "etcd.sh: building $B with the etcd gRPC client" >&2
        cargo build --release --bin stratos --features etcd-grpc
    fi
    ETCD_SCHEME=etcd+grpc; ETCD_ARGS=(--batch "$BATCH" --connections "$CONNECTIONS")
else
    [ -x "$B" ] || cargo build --release
    ETCD_SCHEME=etcd; ETCD_ARGS=()
fi
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# etcd: MEMBERS members, client port 23790+10i, peer port 23791+10i.
cluster=""
for i in $(seq 1 "$MEMBERS"); do cluster+="${cluster:+,}e$i=http://127.0.0.1:$((23791 + 10 * i))"; done
ETCD=""
for i in $(seq 1 "$MEMBERS"); do
    c=$((23790 + 10 * i)); p=$((23791 + 10 * i))
    etcd --name "e$i" --data-dir "$TMP/etcd$i" --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
        --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" --initial-cluster "$cluster" \
        --initial-cluster-state new --log-level error > "$TMP/etcd$i.log" 2>&1 &
    PIDS+=($!)
    ETCD=${ETCD:-127.0.0.1:$c}
done
# Stratos: MEMBERS OM nodes, metadata only.
"$B" dev --insecure --om-nodes "$MEMBERS" --datanodes 0 ${SHARDS:+--shards "$SHARDS"} --data-dir "$TMP/stratos" > "$TMP/stratos.log" 2>&1 &
PIDS+=($!)
OM=127.0.0.1:9862
[ "$MEMBERS" = 3 ] && OM=127.0.0.1:9862,127.0.0.1:9962,127.0.0.1:10062
for _ in $(seq 1 200); do grep -q ready "$TMP/stratos.log" && break; sleep 0.2; done
grep -q ready "$TMP/stratos.log" || { echo "etcd.sh: Stratos did not start:" >&2; cat "$TMP/stratos.log" >&2; exit 1; }
for _ in $(seq 1 100); do "$B" bench omkg --om "$ETCD_SCHEME://$ETCD" -t 1 -n 1 2>&1 | grep -q "errors 0" && break; sleep 0.2; done
sleep 2

rate() { sed -n 's/.*: \([0-9.]*\) ops\/s.*/\1/p' | tail -1; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
echo "host: $(nproc) CPUs; $MEMBERS member(s) each; omkg, $BATCH key(s) per call (etcd through $ETCD_API), $CONNECTIONS connections, ${DURATION} s per run, $RUNS runs each, alternating"
printf '%8s %14s %14s %8s\n' clients "stratos keys/s" "etcd keys/s" ratio
for t in "${CLIENTS[@]}"; do
    s=(); e=()
    for r in $(seq 1 "$RUNS"); do
        js=(); je=()
        if [ -n "${JSON_DIR:-}" ]; then
            mkdir -p "$JSON_DIR"
            js=(--json "$JSON_DIR/stratos-m$MEMBERS-t$t-r$r.json" --label "stratos, $MEMBERS member(s)")
            je=(--json "$JSON_DIR/etcd-m$MEMBERS-t$t-r$r.json" --label "etcd, $MEMBERS member(s)")
        fi
        s+=("$("$B" bench omkg --om "$OM" -t "$t" --batch "$BATCH" --connections "$CONNECTIONS" --duration "$DURATION" "${js[@]}" 2>&1 | rate)")
        e+=("$("$B" bench omkg --om "$ETCD_SCHEME://$ETCD" -t "$t" "${ETCD_ARGS[@]}" --duration "$DURATION" "${je[@]}" 2>&1 | rate)")
        echo "  -t $t run $r: stratos ${s[-1]} keys/s, etcd ${e[-1]} keys/s" >&2
    done
    sm=$(printf '%s\n' "${s[@]}" | median); em=$(printf '%s\n' "${e[@]}" | median)
    printf '%8s %14.0f %14.0f %7.1fx\n' "$t" "$sm" "$em" "$(awk -v a="$sm" -v b="$em" 'BEGIN {print (b > 0 ? a / b : 0)}')"
done
