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
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$work"' EXIT
export PHIVAULT_PASSPHRASE='schemathesis check passphrase'
. "$(dirname "$0")/lib/serve.sh"
start_server "$bin" "$work"
port=$PORT ca=$CA token=$TOKEN
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
