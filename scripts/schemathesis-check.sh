#!/usr/bin/env bash
# Runs schemathesis (PyPI, in .venv) against a live `phivault serve`, from its own
# /openapi.json, with an integration client's token and purpose of use TREAT: no 5xx, and no
# response that violates the document. Bounded: a fixed number of examples per operation.
# The authentication endpoints are left out (the fuzzer would lock itself out and log out).
#   scripts/schemathesis-check.sh [path/to/phivault] [examples per operation]
set -euo pipefail
bin="${1:-$PWD/target/debug/phivault}"
examples="${2:-${SCHEMATHESIS_EXAMPLES:-25}}"
st="${PHIVAULT_SCHEMATHESIS:-$PWD/.venv/bin/st}"
test -x "$st" || { echo "no schemathesis at $st (.ci/run installs it in .venv)" >&2; exit 1; }
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
export PHIVAULT_PASSPHRASE='schemathesis check passphrase' PHIVAULT_DATA_DIR="$work/data"
"$bin" init > /dev/null
# Some data to find: the repo's fixtures.
"$bin" import testdata/fhir/*.json > /dev/null
creds=$("$bin" client add --name fuzzer --role INTEGRATION_MANAGER --scopes 'system/*.cruds' --json)
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])' <<<"$creds")
secret=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])' <<<"$creds")
"$bin" serve --listen 127.0.0.1:0 --mllp-listen 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.log" &
server=$!
for _ in $(seq 1 50); do grep -q "listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.2; done
port=$(sed -n 's#.*https://127.0.0.1:\([0-9]*\).*#\1#p' "$work/serve.out" | head -1)
test -n "$port"
ca="$work/data/tls/cert.pem"
token=$(curl -s --cacert "$ca" -u "$id:$secret" -d grant_type=client_credentials \
  "https://localhost:$port/oauth/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
# Known ids so the instance operations reach stored resources, not only 404s.
cat > "$work/schemathesis.toml" <<TOML
[parameters]
"path.id" = "73a32749-dacd-50f2-91b8-4acc18666b46"
"path.vid" = 1
TOML
"$st" --config-file "$work/schemathesis.toml" run "https://localhost:$port/openapi.json" \
  --tls-verify "$ca" \
  -H "Authorization: Bearer $token" -H "X-Purpose-Of-Use: TREAT" \
  --exclude-path-regex '^/(auth|oauth)/' \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples "$examples" \
  --seed 1 \
  --workers 1 \
  --request-timeout 30 \
  --no-color
