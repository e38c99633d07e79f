#!/bin/sh
# Instruction counts (valgrind's callgrind: repeatable whatever else the machine is doing) of
# one phivault binary on a fixed workload: an import of testdata/fhir, then `serve` answering
# a fixed sequence of HTTPS requests from one keep-alive connection (N Patient creates, reads,
# Observation creates, identifier searches, N/5 histories and Observation searches).
# Run it with N=0 and N>0 and subtract to get the requests' own cost (the server's start,
# dominated by the passphrase's Argon2id, is the same in both).
#
#   bench/callgrind/run.sh BIN OUTPREFIX [N]      (prints "OUTPREFIX.import Ir", ".serve Ir")
#   bench/callgrind/compare.sh OLD_BIN NEW_BIN [N] [ROUNDS]
set -e
BIN=$1; OUT=$2; N=${3:-40}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
export PHIVAULT_PASSPHRASE="callgrind benchmark passphrase 2026" PHIVAULT_DATA_DIR=$D/data PHIVAULT_LOG=warn
"$BIN" init >/dev/null 2>&1
valgrind --tool=callgrind --callgrind-out-file="$OUT.import" "$BIN" import "$ROOT"/testdata/fhir/*.json >/dev/null 2>"$OUT.import.log"
CRED=$("$BIN" client add --name perf --role INTEGRATION_MANAGER --scopes 'system/*.crus' --purposes TREAT --json \
  | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["client_id"]+":"+v["client_secret"])')
valgrind --tool=callgrind --callgrind-out-file="$OUT.serve" "$BIN" serve --listen 127.0.0.1:0 --mllp-listen off >"$D/out.txt" 2>"$OUT.serve.log" &
VP=$!
for _ in $(seq 1 120); do grep -q listening "$D/out.txt" 2>/dev/null && break; sleep 1; done
PORT=$(head -1 "$D/out.txt" | sed 's/.*://')
python3 "$HERE/requests.py" "$PORT" "$D/data/tls/cert.pem" "$CRED" "$N" >/dev/null
kill -TERM $VP; wait $VP || true
for f in "$OUT.import" "$OUT.serve"; do echo "$f $(grep -m1 '^summary:' "$f" | awk '{print $2}')"; done
