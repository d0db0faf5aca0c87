#!/usr/bin/env bash
# Regenerates schema/src/generated/*.rs from schema/capnp/*.capnp. Needs the `capnp` tool
# (Debian: apt-get install capnproto). Commit the result with the schema change.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v capnp >/dev/null || { echo "regen.sh: the capnp tool is not installed (apt-get install capnproto)" >&2; exit 1; }
# The generated files must exist for the crate to build; start from empty ones if missing.
for f in schema/src/generated/{om,raft,scm,datanode}_capnp.rs; do [ -f "$f" ] || : > "$f"; done
STRATOS_REGEN=1 cargo test -q -p stratos-schema --test generated_is_current -- --nocapture
