#!/usr/bin/env bash
# Search benchmark (issue 22): on BENCH_PATIENTS synthetic patients (default 100000, ~20
# Observations each), over HTTPS with keep-alive TLS (wrk):
#  - name prefix, family + birthdate range, and patient + category + date range Observation
#    searches: p50/p95/p99 at 1 connection, req/s at 32 connections;
#  - beside the same searches as SQL on plaintext tables in SQLite (same data, same values,
#    same run): latency and the ratio phivault/SQLite;
#  - the mixed workload bench/search/mixed.lua (70% reads incl. these searches and reads by
#    id, 30% Patient/Observation creates) at 32 connections against phivault and against
#    Medplum's FHIR router over its in-memory repository (bench/medplum/fhir-server.js,
#    Node HTTPS, same certificate). Medplum's MemoryRepository scans every resource of a
#    type on each search, so it is loaded with the first BENCH_MEDPLUM_PATIENTS (default
#    2000) patients only, and phivault is run on a vault of that size too (same data).
#    Also a reads-by-id + creates mix (the earlier comparison) on both.
# Not part of cargo test / CI. Generated data, the SQLite database and loaded vaults are
# cached in BENCH_CACHE (default /var/tmp/phivault-bench-search; a vault is reloaded when
# crates/ changes, or with BENCH_RELOAD=1); each run works on a copy of the cached vault.
# Bounded: BENCH_SECONDS (default 8) per wrk run, ~4 minutes of runs plus, the first time,
# generating and loading (the load rate is reported; BENCH_LOAD_TIMEOUT, default 5400 s).
#
#   bench/search.sh                      (BENCH_PATIENTS=2000 for a quick run)
# Writes the table to BENCH_OUT (default $BENCH_CACHE/search-<N>-<time>.txt) too.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
for var in BENCH_PATIENTS BENCH_MEDPLUM_PATIENTS BENCH_SECONDS BENCH_LOAD_TIMEOUT; do
  [[ -z "${!var:-}" || "${!var}" =~ ^[1-9][0-9]*$ ]] || { echo "$var: not a positive whole number" >&2; exit 2; }
done
n="${BENCH_PATIENTS:-100000}"
m="${BENCH_MEDPLUM_PATIENTS:-2000}"
[ "$m" -gt "$n" ] && m="$n"
secs="${BENCH_SECONDS:-8}"
cache="${BENCH_CACHE:-/var/tmp/phivault-bench-search}"
out="${BENCH_OUT:-$cache/search-$n-$(date +%Y%m%d-%H%M%S).txt}"
export PHIVAULT_PASSPHRASE='search benchmark passphrase'
command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
cargo build --release -q -p phivault
bin="${CARGO_TARGET_DIR:-$root/target}/release/phivault"
[ -d bench/medplum/node_modules/@medplum/fhir-router ] || (cd bench/medplum && npm ci -s)
py="python3 $root/bench/search"
stamp=$(git rev-parse --short HEAD:crates 2>/dev/null || echo unknown)
work=$(mktemp -d)
servers=()
cleanup() { for s in "${servers[@]}"; do kill "$s" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$cache"
report=()
say() { echo "$*" >&2; }

data_for() { # N → generated data dir (the first M patients of N are the data of M)
  local d="$cache/data-$1"
  if [ ! -s "$d/observations.ndjson" ]; then
    say "== generating $1 patients"
    $py/gen.py "$1" "$d"
  fi
  echo "$d"
}

serve() { # data dir → starts phivault on it; sets url, ca
  local log="$work/serve-$RANDOM.out"
  PHIVAULT_DATA_DIR="$1" "$bin" serve --listen 127.0.0.1:0 --mllp-listen 127.0.0.1:0 \
    > "$log" 2> /dev/null &
  servers+=($!)
  for _ in $(seq 1 300); do grep -q "listening on" "$log" 2>/dev/null && break; sleep 0.1; done
  url="https://localhost:$(sed -n 's#.*https://127.0.0.1:\([0-9]*\).*#\1#p' "$log" | head -1)"
  ca="$1/tls/cert.pem"
}

stop_servers() { for s in "${servers[@]}"; do kill "$s" 2>/dev/null; wait "$s" 2>/dev/null || true; done; servers=(); }

token() { # vault dir → a fresh bearer token for its bench client
  local creds; creds=$(cat "$1/client.json")
  local id secret
  id=$(echo "$creds" | sed -n 's/.*"client_id":"\([^"]*\)".*/\1/p')
  secret=$(echo "$creds" | sed -n 's/.*"client_secret":"\([^"]*\)".*/\1/p')
  curl -s --cacert "$ca" -u "$id:$secret" -d grant_type=client_credentials "$url/oauth/token" \
    | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p'
}

vault_for() { # N → a cached vault loaded with the data of N (init, client, load over HTTPS)
  local v="$cache/vault-$1-$stamp" d; d=$(data_for "$1")
  if [ -s "$v/ids.tsv" ] && [ -z "${BENCH_RELOAD:-}" ]; then echo "$v"; return; fi
  rm -rf "$v" "$v.tmp"; mkdir -p "$v.tmp"
  PHIVAULT_DATA_DIR="$v.tmp/data" "$bin" init > /dev/null
  PHIVAULT_DATA_DIR="$v.tmp/data" "$bin" client add --name search-bench \
    --role INTEGRATION_MANAGER --scopes 'system/*.cruds' --purposes TREAT --json \
    > "$v.tmp/client.json"
  serve "$v.tmp/data"
  say "== loading $1 patients into phivault over HTTPS (transaction Bundles)"
  if ! timeout "${BENCH_LOAD_TIMEOUT:-5400}" $py/load.py "$url" "$ca" "$v.tmp/client.json" "$d" \
    "$v.tmp/ids.tsv" > "$v.tmp/load.txt"; then
    stop_servers; say "loading $1 patients failed"; exit 1
  fi
  stop_servers
  du -sh "$v.tmp/data" | awk '{print "vault size on disk: " $1}' >> "$v.tmp/load.txt"
  mv "$v.tmp" "$v"
  echo "$v"
}

wrk_run() { # connections, label, requests dir, mix, [header args...] → one RESULT line
  local c=$1 label=$2 dir=$3 mix=$4; shift 4
  local t=2; [ "$c" -eq 1 ] && t=1
  BENCH_REQUESTS="$dir" BENCH_MIX="$mix" wrk -t"$t" -c"$c" -d"${secs}s" --timeout 30s \
    -s "$root/bench/search/mixed.lua" "$@" "$url" 2>&1 | grep '^RESULT' \
    | sed "s/^RESULT/$label/" || echo "$label failed"
}

val() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

requests_for() { # data dir, ids, out dir, [obs param] → request files for mixed.lua
  mkdir -p "$3"
  BENCH_OBS_PARAM="${4:-patient}" $py/queries.py "$1" "$2" "$3" 300
}

start_vault_copy() { # cached vault → serves a copy of it; sets url, ca, vdir, auth
  vdir="$work/$(basename "$1")"
  cp -a "$1" "$vdir"
  restart_vault
}

# A fresh server before each timed run: requests wrk gave up on (a slow search at 32
# connections) may still be running in the server and would slow the next run.
restart_vault() { # (re)starts phivault on $vdir; sets url, ca, auth
  stop_servers
  serve "$vdir/data"
  local tok; tok=$(token "$vdir")
  [ -n "$tok" ] || { say "no token from $url"; exit 1; }
  auth=(-H "authorization: Bearer $tok" -H 'x-purpose-of-use: TREAT')
}

mixes() { # label, requests dir, restart command → the two mixes at 32 connections
  local label=$1 dir=$2 restart=$3
  $restart
  wrk_run 32 "$label-rc" "$dir" "read-patient=35,read-obs=35,create-patient=12,create-obs=18" \
    "${auth[@]}"
  $restart
  wrk_run 32 "$label-mixed" "$dir" \
    "read-patient=20,read-obs=10,name=13,family=13,obs=14,create-patient=12,create-obs=18" \
    "${auth[@]}"
}

run_searches() { # the three searches on phivault with N patients, and SQLite on the same data
  dn=$(data_for "$n")
  vn=$(vault_for "$n")
  start_vault_copy "$vn"
  requests_for "$dn" "$vdir/ids.tsv" "$work/req-n"
  say "== SQLite baseline"
  sqlite=$($py/sqlite_baseline.py "$dn" "$dn/sqlite.db" 300)
  say "$sqlite"
  say "== correctness: phivault against SQLite (each search once; refused ones left out after)"
  checks=$($py/check.py "$url" "$ca" "$(echo "${auth[1]}" | sed 's/^authorization: Bearer //')" \
    "$dn" "$vdir/ids.tsv" "$dn/sqlite.db" "$work/req-n" 2>&1 || true)
  say "$checks"
  searches=()
  for kind in name family obs; do
    say "== $kind: 1 and 32 connections"
    restart_vault
    secs=2 wrk_run 1 warm "$work/req-n" "$kind=1" "${auth[@]}" > /dev/null
    searches+=("$(wrk_run 1 "$kind-1" "$work/req-n" "$kind=1" "${auth[@]}")")
    searches+=("$(wrk_run 32 "$kind-32" "$work/req-n" "$kind=1" "${auth[@]}")")
  done
  say "== mixed workload on phivault, $n patients"
  mixes "phivault-$n" "$work/req-n" restart_vault > "$work/mixed-n"  # not in a subshell:
  mixed_n=$(cat "$work/mixed-n")  # restart_vault must keep the server list of this shell
  stop_servers
}

run_mixes() { # the mixes on a vault of M patients, and on Medplum with the same M patients
  dm=$(data_for "$m")
  if [ "$m" -lt "$n" ]; then
    vm=$(vault_for "$m")
    start_vault_copy "$vm"
    requests_for "$dm" "$vdir/ids.tsv" "$work/req-m"
    say "== mixed workload on phivault, $m patients"
    mixes "phivault-$m" "$work/req-m" restart_vault > "$work/mixed-m"
    mixed_m=$(cat "$work/mixed-m")
    stop_servers
  else
    mixed_m=$(echo "$mixed_n" | sed "s/^phivault-$n/phivault-$m/")
  fi
  say "== Medplum FhirRouter + MemoryRepository, $m patients"
  node --experimental-websocket --max-old-space-size=8192 bench/medplum/fhir-server.js 0 \
    "$vn/data/tls/cert.pem" "$vn/data/tls/key.pem" "$dm" "$m" > "$work/medplum.out" 2>&1 &
  servers+=($!)
  for _ in $(seq 1 1200); do grep -q "^listening" "$work/medplum.out" 2>/dev/null && break; sleep 0.5; done
  url="https://localhost:$(sed -n 's/^listening //p' "$work/medplum.out")"
  requests_for "$dm" generator "$work/req-medplum" subject
  auth=()  # Medplum's router has no authentication; its mixed run comes last, as phivault's
  mixes "medplum-$m" "$work/req-medplum" : > "$work/mixed-medplum"
  mixed_medplum=$(cat "$work/mixed-medplum")
  medplum_load=$(grep '^loaded' "$work/medplum.out" || true)
  stop_servers
}

table() {
  {
    obs=$(wc -l < "$dn/observations.ndjson")
    echo "phivault search benchmark (issue 22), $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD)"
    echo "$n patients, $obs Observations; $(nproc) cores shared by wrk, the server and the client"
    echo "phivault load (transaction Bundles over HTTPS): $(head -1 "$vn/load.txt"); $(tail -1 "$vn/load.txt")"
    echo
    printf '%-34s %5s %8s %8s %8s %8s %8s %6s | %7s %7s %7s | %8s\n' "search (HTTPS, keep-alive TLS)" \
      "n@1" p50 p95 p99 "req/s@1" "req/s@32" non2xx "SQL p50" "SQL p95" "SQL p99" "p95 x"
    for kind in name family obs; do
      one=$(printf '%s\n' "${searches[@]}" | grep "^$kind-1 ")
      many=$(printf '%s\n' "${searches[@]}" | grep "^$kind-32 ")
      sql=$(echo "$sqlite" | grep "kind=$kind ")
      case $kind in
        name) what="Patient?name=<3-5 letters>" ;;
        family) what="Patient?family=&birthdate=ge&lt (5y)" ;;
        obs) what="Observation?patient&category&date" ;;
      esac
      [ "$(val "$one" requests)" = 0 ] && one="$kind-1 requests=0 p50=n/a p95=n/a p99=n/a rps=0"
      printf '%-34s %5s %8s %8s %8s %8s %8s %6s | %7s %7s %7s | %8s\n' "$what" \
        "$(val "$one" requests)" "$(val "$one" p50)" "$(val "$one" p95)" "$(val "$one" p99)" "$(val "$one" rps)" \
        "$(val "$many" rps)" "$(( $(val "$one" non2xx || echo 0) + $(val "$many" non2xx || echo 0) ))" \
        "$(val "$sql" p50)" "$(val "$sql" p95)" "$(val "$sql" p99)" \
        "$(ratio "$(val "$one" p95)" "$(val "$sql" p95)")"
    done
    echo "(latency in ms over the searches phivault answers (CHECK below: http=400 are refused, left"
    echo " out of every timed run); n@1: searches completed in the ${secs}s run at 1 connection (n/a:"
    echo " none completed; see CHECK's first asks); 50 ms p95 is the target; SQL = the same 300"
    echo " searches on plaintext SQLite tables with indexes for them, Python sqlite3, one"
    echo " connection; p95 x = phivault p95 / SQL p95)"
    echo "$checks" | sed 's/^/  /'
    echo
    echo "mixed workload at 32 connections (bench/search/mixed.lua, wrk -t2 -c32 ${secs}s)"
    printf '%-26s %10s %10s %10s %8s %8s\n' "server" "mixed req/s" "p99 ms" "rc req/s" "p99 ms" non2xx
    for label in "phivault-$n" "phivault-$m" "medplum-$m"; do
      all="$mixed_n"$'\n'"$mixed_m"$'\n'"$mixed_medplum"
      a=$(echo "$all" | grep "^$label-mixed " | head -1); b=$(echo "$all" | grep "^$label-rc " | head -1)
      printf '%-26s %10s %10s %10s %8s %8s\n' "$label patients" "$(val "$a" rps)" \
        "$(val "$a" p99)" "$(val "$b" rps)" "$(val "$b" p99)" \
        "$(val "$a" non2xx)+$(val "$b" non2xx)"
    done
    pm=$(echo "$mixed_m" | grep mixed | head -1); mm=$(echo "$mixed_medplum" | grep mixed)
    pr=$(echo "$mixed_m" | grep -- -rc | head -1); mr=$(echo "$mixed_medplum" | grep -- -rc)
    echo "phivault/Medplum at $m patients: mixed $(ratio "$(val "$pm" rps)" "$(val "$mm" rps)")x," \
      "reads+creates $(ratio "$(val "$pr" rps)" "$(val "$mr" rps)")x (aim: 0.5x or more)"
    echo "(mixed: 70% reads = Patient/Observation by id 30%, the three searches 40%; 30% creates."
    echo " rc: reads by id 70%, creates 30%. Medplum: Node $(node --version) HTTPS, no auth, no audit,"
    echo " no encryption, in memory, $medplum_load; its Observation search is subject=Patient/<id>)"
  } | tee "$out"
  echo "written to $out" >&2
}

# The whole run is one function, read in full before it starts, so editing this file
# during a run does not change the run.
main() {
  run_searches
  run_mixes
  table
}
main "$@"
exit
