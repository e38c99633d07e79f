# Shared by the live-server checks: `start_server BIN WORKDIR [serve args...]` initializes a
# vault in WORKDIR/data (passphrase from PHIVAULT_PASSPHRASE), imports the repo's FHIR
# fixtures, adds an integration client, starts `serve` on free ports and sets PORT, CA and
# TOKEN (the client's bearer token). The caller's EXIT trap should kill $SERVER_PID.
start_server() {
  local bin="$1" work="$2"
  shift 2
  export PHIVAULT_DATA_DIR="$work/data"
  "$bin" init > /dev/null
  "$bin" import testdata/fhir/*.json > /dev/null
  local creds id secret
  creds=$("$bin" client add --name checker --role INTEGRATION_MANAGER --scopes 'system/*.cruds' --json)
  id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])' <<<"$creds")
  secret=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])' <<<"$creds")
  "$bin" serve --listen 127.0.0.1:0 --mllp-listen off "$@" > "$work/serve.out" 2> "$work/serve.log" &
  SERVER_PID=$!
  for _ in $(seq 1 50); do grep -q "listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.2; done
  PORT=$(sed -n 's#.*https://127.0.0.1:\([0-9]*\).*#\1#p' "$work/serve.out" | head -1)
  test -n "$PORT"
  CA="$work/data/tls/cert.pem"
  TOKEN=$(curl -s --cacert "$CA" -u "$id:$secret" -d grant_type=client_credentials \
    "https://localhost:$PORT/oauth/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  test -n "$TOKEN"
}
