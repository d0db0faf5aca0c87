#!/usr/bin/env bash
# vendor/glommio is glommio 0.9.0 exactly as crates.io publishes it, plus vendor/glommio.patch
# (see vendor/README.md for why). This script makes it again, or checks that it is that.
#
#   vendor/glommio.sh           # rebuild vendor/glommio from the published crate and the patch
#   vendor/glommio.sh --check   # exit 1 if vendor/glommio is anything else
#
# The crate comes from cargo's download cache, or cargo fetches it into that cache; its SHA-256
# must be the one crates.io's index gives for glommio 0.9.0 (below). Exit 3: the crate could
# not be had (no cache, no registry).
set -euo pipefail
cd "$(dirname "$0")"
version=0.9.0
sha256=e1f8bc1fce949d18098dc0a4e861314e40351a0144ebf61e59bdb5254a2273b2
cargo_home=${CARGO_HOME:-$HOME/.cargo}
find_crate() { find "$cargo_home/registry/cache" -name "glommio-$version.crate" 2>/dev/null | head -1; }
crate=$(find_crate)
if [ -z "$crate" ]; then
  # The workspace patches glommio, so its builds never download the crate: ask cargo for it
  # from a throwaway package that depends on it.
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  mkdir "$tmp/src" && : > "$tmp/src/lib.rs"
  printf '[package]\nname = "fetch-glommio"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nglommio = "=%s"\n' "$version" > "$tmp/Cargo.toml"
  (cd "$tmp" && cargo fetch -q) >&2 || { echo "glommio.sh: cannot fetch glommio $version" >&2; exit 3; }
  crate=$(find_crate)
  [ -n "$crate" ] || { echo "glommio.sh: cargo fetched, but no glommio-$version.crate under $cargo_home/registry/cache" >&2; exit 3; }
fi
echo "$sha256  $crate" | sha256sum -c --quiet - || { echo "glommio.sh: $crate is not the published glommio $version" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work" ${tmp:-}' EXIT
tar xzf "$crate" -C "$work"
(cd "$work/glommio-$version" && patch -s -p1 < "$OLDPWD/glommio.patch")
if [ "${1:-}" = --check ]; then
  if diff -r "$work/glommio-$version" glommio > "$work/diff"; then
    echo "vendor/glommio is glommio $version + glommio.patch"
  else
    echo "vendor/glommio differs from glommio $version + glommio.patch (run vendor/glommio.sh):" >&2
    head -40 "$work/diff" >&2
    exit 1
  fi
else
  rm -rf glommio && mv "$work/glommio-$version" glommio
  echo "vendor/glommio: glommio $version + glommio.patch"
fi
