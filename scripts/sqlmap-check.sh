#!/usr/bin/env bash
# Runs sqlmap (Debian package) against FHIR search endpoints of a live `phivault serve`, with
# an integration client's token, bounded (level 1, risk 1, no time-based tests, 5 minutes at
# most): every tested parameter must come out "not injectable". Stays on 127.0.0.1.
#   scripts/sqlmap-check.sh [path/to/phivault]
set -euo pipefail
bin="${1:-$PWD/target/debug/phivault}"
command -v sqlmap >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q sqlmap; }
work=$(mktemp -d)
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$work"' EXIT
export PHIVAULT_PASSPHRASE='sqlmap check passphrase'
. "$(dirname "$0")/lib/serve.sh"
start_server "$bin" "$work"
port=$PORT token=$TOKEN
fail=0
for target in \
  "/fhir/Patient?identifier=MRN-7730152&phone=5550100" \
  "/fhir/Patient?family=Hartmann&birthdate=1961-03-14&_id=x1" \
  "/fhir/Observation?patient=73a32749-dacd-50f2-91b8-4acc18666b46&code=8867-4&date=ge2020" \
  "/fhir/Patient?name=hart&given=ann&birthdate=ge1950&address-postalcode=021&_sort=-birthdate&_count=5" \
  "/fhir/Observation?patient=73a32749-dacd-50f2-91b8-4acc18666b46&category=vital-signs&_include=Observation:patient&_elements=code&_total=accurate"; do
  out="$work/sqlmap.out"
  timeout 300 sqlmap -u "https://localhost:$port$target" \
    --headers="Authorization: Bearer $token
X-Purpose-Of-Use: TREAT" \
    --batch --level=1 --risk=1 --technique=BEUS --threads=2 --timeout=10 --retries=1 \
    --disable-coloring --output-dir="$work/sqlmap" > "$out" 2>&1 || true
  if grep -q "all tested parameters do not appear to be injectable" "$out"; then
    echo "sqlmap: $target: no injectable parameter"
  else
    echo "sqlmap: $target: NOT CLEAN"
    grep -E "CRITICAL|injectable|vulnerable|ERROR" "$out" | head -20
    fail=1
  fi
done
exit $fail
