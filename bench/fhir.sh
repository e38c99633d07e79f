#!/usr/bin/env bash
# FHIR API benchmark (issue 6): Patient create and read over HTTPS with keep-alive (wrk, TLS,
# HTTP/1.1), 1 and 32 concurrent connections, requests/s with p50/p99 latency — beside the
# vault's own in-process rates measured in the same run (cargo bench -p phivault-vault), as
# ratios. Everything stays on 127.0.0.1. Bounded: about 2 minutes after the build.
#
#   bench/fhir.sh            (builds release binaries; installs wrk from Debian if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
cargo build --release -q -p phivault
root="$PWD"
bin="$root/target/release/phivault"
secs="${BENCH_SECONDS:-8}"
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "== in process: the vault without HTTP (BENCH_N=${BENCH_N:-2000})"
inproc=$(BENCH_N="${BENCH_N:-2000}" cargo bench -q -p phivault-vault --features bench 2>/dev/null)
echo "$inproc"
vault_rate() { # label prefix → the audited vault rate of that line
  echo "$inproc" | awk -v k="$1" 'index($0, k) == 1 {for (i = 1; i <= NF; i++) if ($i == "vault") {sub("/s", "", $(i+1)); print $(i+1); exit}}'
}

cd "$work"
export PHIVAULT_PASSPHRASE='fhir benchmark passphrase' PHIVAULT_DATA_DIR="$work/data"
"$bin" init > /dev/null
creds=$("$bin" client add --name bench --role INTEGRATION_MANAGER --scopes 'system/Patient.cruds' --json)
id=$(echo "$creds" | sed -n 's/.*"client_id":"\([^"]*\)".*/\1/p')
secret=$(echo "$creds" | sed -n 's/.*"client_secret":"\([^"]*\)".*/\1/p')
"$bin" serve --listen 127.0.0.1:0 --mllp-listen 127.0.0.1:0 > serve.out 2> /dev/null &
server=$!
for _ in $(seq 1 100); do grep -q "listening on" serve.out 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's#.*https://127.0.0.1:\([0-9]*\).*#\1#p' serve.out | head -1)
url="https://localhost:$port"
ca="$work/data/tls/cert.pem"
token=$(curl -s --cacert "$ca" -u "$id:$secret" -d grant_type=client_credentials "$url/oauth/token" \
  | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "no token" >&2; exit 1; }
patient='{"resourceType":"Patient","identifier":[{"system":"urn:bench:mrn","value":"B-1"}],"name":[{"family":"Benchmark","given":["Pat"]}],"gender":"female","birthDate":"1970-01-01","telecom":[{"system":"phone","value":"555-0100"}],"address":[{"line":["1 Main St"],"city":"Springfield","state":"MA","postalCode":"01101"}]}'
pid=$(curl -s --cacert "$ca" -H "authorization: Bearer $token" -H 'x-purpose-of-use: TREAT' \
  -H 'content-type: application/fhir+json' -d "$patient" "$url/fhir/Patient" \
  | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
cat > post.lua <<LUA
wrk.method = "POST"
wrk.body = '$patient'
wrk.headers["content-type"] = "application/fhir+json"
LUA

run() { # connections, threads, path, label, [lua]
  local script=()
  [ -n "${5:-}" ] && script=(-s "$5")
  wrk -t"$2" -c"$1" -d"${secs}s" --latency "${script[@]}" \
    -H "authorization: Bearer $token" -H 'x-purpose-of-use: TREAT' "$url$3" 2>&1 \
    | awk -v label="$4" '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
        /Non-2xx/ {bad=$NF} END {printf "%s %s %s %s %s\n", label, rps, p50, p99, bad+0}'
}

echo
echo "== over HTTPS (wrk, keep-alive TLS, ${secs}s each; 2 cores shared by wrk and the server)"
results=$(
  run 1 1 /fhir/Patient create-1 post.lua
  run 32 2 /fhir/Patient create-32 post.lua
  run 1 1 "/fhir/Patient/$pid" read-1
  run 32 2 "/fhir/Patient/$pid" read-32
)
c1=$(vault_rate "creates, 1 per transaction"); c32=$(vault_rate "creates, 32 concurrent")
r1=$(vault_rate "reads by id, 1 caller"); r32=$(vault_rate "reads by id, 32 concurrent")
printf '%-22s %10s %10s %10s %12s %14s %8s\n' what "req/s" p50 p99 "non-2xx" "in-process/s" "HTTP/vault"
echo "$results" | while read -r label rps p50 p99 bad; do
  case "$label" in
    create-1) base=$c1 ;; create-32) base=$c32 ;; read-1) base=$r1 ;; read-32) base=$r32 ;;
  esac
  ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  printf '%-22s %10s %10s %10s %12s %14s %8s\n' "Patient $label" "$rps" "$p50" "$p99" "$bad" "${base:-n/a}" "$ratio"
done
