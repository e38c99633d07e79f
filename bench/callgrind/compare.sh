#!/bin/sh
# Instructions per request of two binaries on bench/callgrind/run.sh's workload, ROUNDS times
# each (alternating): (serve Ir with N requests - serve Ir with none) / requests, and the
# import's Ir; then the new/old ratios of the medians.
#   bench/callgrind/compare.sh OLD_BIN NEW_BIN [N=200] [ROUNDS=2]
set -e
OLD=$1; NEW=$2; N=${3:-200}; ROUNDS=${4:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  for who in old new; do
    BIN=$OLD; [ $who = new ] && BIN=$NEW
    a=$("$HERE/run.sh" "$BIN" "$W/$who-$r-0" 0 | awk '/serve/ {print $2}')
    out=$("$HERE/run.sh" "$BIN" "$W/$who-$r-n" "$N")
    b=$(echo "$out" | awk '/serve/ {print $2}'); i=$(echo "$out" | awk '/import/ {print $2}')
    echo "$who $r $(( (b - a) )) $i" >> "$W/all"
  done
done
python3 - "$W/all" "$N" <<'PY'
import sys, statistics as st
rows=[l.split() for l in open(sys.argv[1])]; n=int(sys.argv[2]); reqs=4*n+2*(n//5)
for who in ("old","new"):
    d=[int(r[2]) for r in rows if r[0]==who]; i=[int(r[3]) for r in rows if r[0]==who]
    print(f"{who}: requests {[x//reqs for x in d]} instructions/request, import {i}")
m=lambda who,k: st.median(int(r[k]) for r in rows if r[0]==who)
print(f"new/old per request {m('new',2)/m('old',2):.4f}  import {m('new',3)/m('old',3):.4f}")
PY
