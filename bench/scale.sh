#!/usr/bin/env bash
# Loads KEYS keys with 40-byte names into one OM node, then restarts it, and prints the four
# figures of "tens of millions of keys, no stalls" (issue 18):
#   1. the slowest one-second window of the load against the run's median window (goal ≥ 50%),
#   2. the longest call (goal ≤ 200 ms),
#   3. the server's RSS per key at the end of the load (goal ≤ 250 B/key),
#   4. restart to `ready` in keys per second (goal ≥ 2M keys/s).
# Snapshots happen during the load (every SNAPSHOT_AFTER entries per group); their stalls are
# what figure 1 and 2 catch.
#
# usage: bench/scale.sh [KEYS] [SHARDS]   (defaults 20000000, 2)
# env:   BIN (default target/release/stratos), DIR (data directory, default a temp dir, removed),
#        THREADS (16), BATCH (64 keys per call), SNAPSHOT_AFTER (the OM's default, 100000)
#        OM_ARGS (more flags for `stratos om`, e.g. "--snapshot-after-bytes 67108864"),
#        PORT_RPC, PORT_HTTP, PORT_RAFT (19962, 19974, 19972; a taken one is refused)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-20000000}
SHARDS=${2:-2}
BIN=${BIN:-target/release/stratos}
THREADS=${THREADS:-16}
BATCH=${BATCH:-64}
[ -x "$BIN" ] || { echo "scale.sh: $BIN not built (cargo build --release)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "scale.sh: needs python3 (to read the run's JSON)" >&2; exit 1; }
PORT_RPC=${PORT_RPC:-19962}
PORT_HTTP=${PORT_HTTP:-19974}
PORT_RAFT=${PORT_RAFT:-19972}
# The OM's RPC port is bound with SO_REUSEPORT (one listener per core), so a second run on the
# same ports would share the first run's OM without an error: refuse a port that is taken.
# SO_REUSEADDR, as the OM binds: the last run's connections in TIME-WAIT do not take a port
# (they refused a run started within a minute of the last), a listener does.
for port in "$PORT_RPC" "$PORT_HTTP" "$PORT_RAFT"; do
  python3 -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1])))" "$port" 2>/dev/null ||
    { echo "scale.sh: port $port on 127.0.0.1 is taken (another run?); set PORT_RPC, PORT_HTTP, PORT_RAFT" >&2; exit 1; }
done
OWN_DIR=
if [ -z "${DIR:-}" ]; then DIR=$(mktemp -d /tmp/stratos-scale.XXXXXX); OWN_DIR=1; fi
if [ -e "$DIR/om" ]; then echo "scale.sh: $DIR/om exists; give an empty DIR (the figures are per key loaded by this run)" >&2; exit 1; fi
mkdir -p "$DIR"
OM_PID=
cleanup() {
  [ -n "$OM_PID" ] && kill "$OM_PID" 2>/dev/null && wait "$OM_PID" 2>/dev/null || true
  [ -n "$OWN_DIR" ] && rm -rf "$DIR"
  return 0
}
trap cleanup EXIT INT TERM

start_om() {
  local log=$1
  local extra=()
  [ -n "${SNAPSHOT_AFTER:-}" ] && extra=(--snapshot-after-entries "$SNAPSHOT_AFTER")
  "$BIN" om --data-dir "$DIR/om" --shards "$SHARDS" --rpc-address "127.0.0.1:$PORT_RPC" \
    --http-address "127.0.0.1:$PORT_HTTP" --raft-address "127.0.0.1:$PORT_RAFT" "${extra[@]}" ${OM_ARGS:-} >"$log" 2>&1 &
  OM_PID=$!
  for _ in $(seq 1 6000); do
    grep -q ready "$log" && return 0
    kill -0 "$OM_PID" 2>/dev/null || { echo "scale.sh: the OM stopped:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  echo "scale.sh: the OM was not ready after 300 s" >&2; exit 1
}

echo "loading $KEYS keys (40-byte names, $BATCH per call, $THREADS calls in flight) into one node, $SHARDS shards; data in $DIR"
start_om "$DIR/om-1.log"
"$BIN" bench omkg --om "127.0.0.1:$PORT_RPC" -t "$THREADS" --batch "$BATCH" --key-size 40 -n "$KEYS" --json "$DIR/load.json" | grep -v '^$'
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$OM_PID/status")
python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$PORT_HTTP/prom').read().decode())" >"$DIR/prom.txt" || true
snapshots=$(grep -c "snapshot up to" "$DIR/om-1.log" || true)
kill -TERM "$OM_PID"; wait "$OM_PID" 2>/dev/null || true
OM_PID=
du_bytes=$(du -sb "$DIR/om" | cut -f1)
t0=$(date +%s.%N)
start_om "$DIR/om-2.log"
t1=$(date +%s.%N)
rss2_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$OM_PID/status")

python3 - "$DIR/load.json" "$KEYS" "$rss_kb" "$rss2_kb" "$t0" "$t1" "$du_bytes" "$snapshots" <<'EOF'
import json, statistics, sys
path, keys, rss_kb, rss2_kb, t0, t1, du, snaps = sys.argv[1:]
keys, rss, rss2, du = int(keys), int(rss_kb) * 1024, int(rss2_kb) * 1024, int(du)
r = json.load(open(path))
# Keys per whole second of the run; the last second is partial.
rates = r["opsPerSecondOverTime"][:-1] or r["opsPerSecondOverTime"]
med, low = statistics.median(rates), min(rates)
restart = float(t1) - float(t0)
ok = lambda b: "ok" if b else "MISSED"
print(f"load: {r['opsPerSecond']:.0f} keys/s over {r['seconds']:.1f} s, errors {r['errors']}, snapshots written during it: {snaps}")
print(f"1. slowest 1-s window {low:.0f} keys/s = {100*low/med:.0f}% of the median window {med:.0f} (goal >= 50%): {ok(low >= med/2)}")
print(f"2. longest call {r['latencyMicros']['max']/1000:.1f} ms, p99 {r['latencyMicros']['p99']/1000:.1f} ms (goal max <= 200 ms): {ok(r['latencyMicros']['max'] <= 200_000)}")
print(f"3. RSS at the end of the load {rss/2**20:.0f} MiB = {rss/keys:.0f} B/key (goal <= 250): {ok(rss/keys <= 250)}; after the restart {rss2/2**20:.0f} MiB = {rss2/keys:.0f} B/key; on disk {du/keys:.0f} B/key")
# Where a long call may come from: slow WAL flushes (write + fdatasync), by histogram bucket.
slow = {}
for line in open(path.rsplit('/', 1)[0] + "/prom.txt", errors="replace"):
    if line.startswith("stratos_wal_flush_seconds_bucket"):
        labels, v = line.rsplit(" ", 1)
        group, le = labels.split('group="')[1].split('"')[0], labels.split('le="')[1].split('"')[0]
        slow.setdefault(group, {})[le] = float(v)
for group, b in sorted(slow.items()):
    bound = max((float(le) for le in b if le != "+Inf" and float(le) <= 0.1), default=0.0)
    over = b.get("+Inf", 0) - b.get(next((le for le in b if le != "+Inf" and float(le) == bound), "+Inf"), 0)
    print(f"   {group}: {int(b.get('+Inf', 0))} WAL flushes, {int(over)} slower than {bound*1000:.0f} ms")
print(f"4. restart to ready {restart:.2f} s = {keys/restart/1e6:.2f}M keys/s (goal >= 2M): {ok(keys/restart >= 2e6)}")
EOF
