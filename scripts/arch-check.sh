#!/usr/bin/env bash
# The one door, checked on the dependency graph (issue 23): the adapters (api, hl7) and the
# pure fhir crate never depend on store or crypto, directly or through a dev-dependency (they
# reach keys and tables only through the vault); the vault reaches stores only through
# core's ports (no store dependency outside its tests); store uses core alone.
# Exits 1 naming every arrow that should not be there.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
deps() { # crate, edge kinds → its direct phivault-* dependencies (a failing cargo fails the check)
  local tree
  tree=$(cargo tree --locked --offline -q -p "$1" -e "$2" --depth 1 --prefix none) \
    || { echo "arch-check: cargo tree failed for $1" >&2; exit 1; }
  echo "$tree" | awk '{print $1}' | grep '^phivault-' | grep -vx "$1" | sort -u || true
}
forbid() { # crate, edge kinds, forbidden crates...
  local crate=$1 kinds=$2; shift 2
  local have; have=$(deps "$crate" "$kinds") || exit 1
  for bad in "$@"; do
    if echo "$have" | grep -qx "$bad"; then
      echo "arch-check: $crate depends on $bad ($kinds)" >&2
      fail=1
    fi
  done
}
members=$(cargo metadata --locked --offline --no-deps --format-version 1 \
  | python3 -c 'import json,sys; print(" ".join(p["name"] for p in json.load(sys.stdin)["packages"]))')
for crate in phivault-api phivault-hl7 phivault-fhir; do
  [[ " $members " == *" $crate "* ]] || continue
  forbid "$crate" normal,build,dev phivault-store phivault-crypto
done
forbid phivault-vault normal,build phivault-store phivault-api phivault-hl7
forbid phivault-store normal,build phivault-crypto phivault-vault phivault-api phivault-hl7
forbid phivault-crypto normal,build phivault-store phivault-vault phivault-api phivault-hl7
[ "$fail" = 0 ] && echo "arch-check: the dependency graph keeps the one door"
exit "$fail"
