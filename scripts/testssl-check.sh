#!/usr/bin/env bash
# Runs testssl.sh (Debian package `testssl.sh`) against a live `phivault serve` with a
# certificate from a throw-away local CA (90 days, with a CRL distribution point), and fails
# on any HIGH or CRITICAL finding. Everything stays on 127.0.0.1. About a minute.
#   scripts/testssl-check.sh [path/to/phivault]
set -euo pipefail
bin="${1:-$PWD/target/debug/phivault}"
command -v testssl >/dev/null || { apt-get update -q && apt-get install -y -q testssl.sh; }
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 \
  -subj "/CN=phivault test CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout site.key -out site.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost\ncrlDistributionPoints=URI:http://crl.invalid/ca.crl\nextendedKeyUsage=serverAuth\n' > ext
openssl x509 -req -in site.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 90 \
  -extfile ext -out site.pem 2>/dev/null
chmod 600 site.key
export PHIVAULT_PASSPHRASE='testssl check passphrase' PHIVAULT_DATA_DIR="$work/data"
export PHIVAULT_TLS_CERT="$work/site.pem" PHIVAULT_TLS_KEY="$work/site.key"
"$bin" init > /dev/null
"$bin" serve --listen 127.0.0.1:0 --mllp-listen 127.0.0.1:0 > serve.out 2> serve.log &
server=$!
for _ in $(seq 1 50); do grep -q "listening on" serve.out 2>/dev/null && break; sleep 0.2; done
port=$(sed -n 's#.*https://127.0.0.1:\([0-9]*\).*#\1#p' serve.out | head -1)
test -n "$port"
timeout 300 testssl --quiet --color 0 --warnings off --ip one --add-ca ca.pem \
  --jsonfile testssl.json "localhost:$port" > testssl.txt 2>&1 || true
test -s testssl.json
python3 - testssl.json <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
bad = [f for f in findings if f.get("severity") in ("HIGH", "CRITICAL")]
counts = {}
for f in findings:
    counts[f.get("severity")] = counts.get(f.get("severity"), 0) + 1
print("testssl findings by severity:", dict(sorted(counts.items())))
for f in bad:
    print(f"{f['severity']}: {f['id']}: {f['finding']}")
sys.exit(1 if bad else 0)
PY
