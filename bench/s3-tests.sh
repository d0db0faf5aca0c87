#!/usr/bin/env bash
# Runs ceph's s3-tests (../shared/s3-tests, test_s3.py) against a fresh `stratos dev` (TLS, its
# S3 gateway) and prints passed / failed / skipped, in all and per pytest marker, with the
# failing tests' S3 errors in $OUT/failures.txt.
#
#   bench/s3-tests.sh                  # the whole file (about 750 tests, minutes)
#   bench/s3-tests.sh -k multipart     # extra pytest arguments select a subset
#   SELECT=bench/s3-tests-ci.txt bench/s3-tests.sh   # only the tests named in a file (CI's sample)
#
# Needs target/release/stratos (cargo build --release; or STRATOS_BIN) and target/s3-venv
# (.ci/s3-venv).
# Environment: BASE_PORT (dev's --base-port, default 3000), OUT (where the config, junit XML
# and summaries go; default a temp dir), S3_TESTS (the suite; default ../shared/s3-tests).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${STRATOS_BIN:-$root/target/release/stratos}
venv=$root/target/s3-venv
suite=${S3_TESTS:-$root/../shared/s3-tests}
[ -x "$bin" ] || { echo "s3-tests: build first: cargo build --release" >&2; exit 2; }
[ -x "$venv/bin/pytest" ] || { echo "s3-tests: make the Python environment first: .ci/s3-venv" >&2; exit 2; }
[ -f "$suite/s3tests/functional/test_s3.py" ] || { echo "s3-tests: no suite at $suite (set S3_TESTS)" >&2; exit 2; }
out=${OUT:-$(mktemp -d -t stratos-s3-tests-XXXXXX)}
mkdir -p "$out"
data=$(mktemp -d -t stratos-s3-tests-dev-XXXXXX)
work=$(mktemp -d -t stratos-s3-tests-suite-XXXXXX)
dev_pid=
cleanup() {
  [ -n "$dev_pid" ] && kill "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null
  rm -rf "$data" "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The gateway's keyring, made before dev makes its own: the SSE-S3 key and the two SSE-KMS
# keys the suite names by default (testkey-1, testkey-2).
( umask 077; for k in sse-s3 testkey-1 testkey-2; do echo "$k $(head -c 32 /dev/urandom | base64)"; done > "$data/s3g-keyring" )
echo "s3-tests: starting stratos dev in $data" >&2
"$bin" dev --data-dir "$data" --base-port "${BASE_PORT:-3000}" > "$out/dev.out" 2> "$out/dev.err" &
dev_pid=$!
for _ in $(seq 1 300); do
  grep -q "ready" "$out/dev.out" 2>/dev/null && break
  kill -0 "$dev_pid" 2>/dev/null || { echo "s3-tests: stratos dev exited:" >&2; cat "$out/dev.err" >&2; exit 1; }
  sleep 0.2
done
ready=$(grep ready "$out/dev.out") || { echo "s3-tests: stratos dev never said ready" >&2; exit 1; }
endpoint=$(sed -E 's/.* s3 (https?:\/\/[^ ,]+).*/\1/' <<< "$ready")
om=$(sed -E 's/.* om ([^ ]+) .*/\1/' <<< "$ready")
hostport=${endpoint#*://}
secure=False; [[ $endpoint == https* ]] && secure=True
export STRATOS_OM=$om STRATOS_CA=$data/tls/ca.pem STRATOS_CERT=$data/tls/${USER:-root}.pem STRATOS_KEY=$data/tls/${USER:-root}.key
secret() { "$bin" s3 getsecret -u "$1" | sed -n 's/^awsSecret=//p'; }
main_secret=$(secret s3main)
alt_secret=$(secret s3alt)
tenant_secret=$(secret s3tenant)
cat > "$out/s3tests.conf" <<CONF
[DEFAULT]
host = ${hostport%:*}
port = ${hostport##*:}
is_secure = $secure
ssl_verify = False

[fixtures]
bucket prefix = s3t-{random}-

[s3 main]
display_name = s3main
user_id = s3main
email = s3main@example.com
api_name =
access_key = s3main
secret_key = $main_secret

[s3 alt]
display_name = s3alt
user_id = s3alt
email = s3alt@example.com
access_key = s3alt
secret_key = $alt_secret

[s3 tenant]
display_name = s3tenant
user_id = s3tenant
email = s3tenant@example.com
access_key = s3tenant
secret_key = $tenant_secret
tenant = none

[iam]
email = s3main@example.com
user_id = s3main
access_key = s3main
secret_key = $main_secret
display_name = s3main

[iam root]
access_key = s3main
secret_key = $main_secret
user_id = s3main
email = s3main@example.com

[iam alt root]
access_key = s3alt
secret_key = $alt_secret
user_id = s3alt
email = s3alt@example.com
CONF
cp -r "$suite/." "$work/"
echo "s3-tests: running against $endpoint; results in $out" >&2
start=$(date +%s)
tests=(s3tests/functional/test_s3.py)
if [ -n "${SELECT:-}" ]; then
  mapfile -t tests < <(grep -v '^#' "$SELECT" | grep . | sed 's|^|s3tests/functional/test_s3.py::|')
fi
# The suite's config says not to check certificates (ssl_verify = False), but a few tests make
# their own connections (requests with its default CA bundle, Python's ssl): they trust dev's CA
# through the variables those libraries read, as a client of a real cluster would be set up.
if [ -f "$data/tls/ca.pem" ]; then export REQUESTS_CA_BUNDLE="$data/tls/ca.pem" SSL_CERT_FILE="$data/tls/ca.pem"; fi
( cd "$work" && S3TEST_CONF="$out/s3tests.conf" "$venv/bin/pytest" "${tests[@]}" -m 'not fails_on_aws' -q -p no:cacheprovider \
    --junitxml="$out/junit.xml" -o junit_family=xunit1 "$@" > "$out/pytest.log" 2>&1 ) || true
echo "s3-tests: pytest took $(( $(date +%s) - start )) s" >&2
"$venv/bin/python" "$root/bench/s3_tests_summary.py" "$out/junit.xml" "$work/s3tests/functional/test_s3.py" "$out/failures.txt"
