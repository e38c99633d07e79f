#!/usr/bin/env bash
# HTTPS benchmark of phivault serve (issue 4): authenticated requests/s over keep-alive TLS,
# token issue latency, and whether Argon2 logins slow other requests (p99 with and without a
# stream of logins, in the same run). Traffic stays on 127.0.0.0/8. Bounded: ~40 s.
#
#   bench/http.sh            (builds the release binary; installs wrk from Debian if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
cargo build --release -q -p phivault
bin="$PWD/target/release/phivault"
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
"$bin" serve --dev --listen 127.0.0.1:0 --mllp-listen 127.0.0.1:0 > serve.out 2> /dev/null &
server=$!
for _ in $(seq 1 100); do grep -q "listening on" serve.out 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's#.*https://127.0.0.1:\([0-9]*\).*#\1#p' serve.out | head -1)
url="https://localhost:$port"
ca=phivault-data/tls/cert.pem
export PHIVAULT_PASSPHRASE_FILE=phivault-data.passphrase
creds=$("$bin" client add --name bench --role AUDITOR --scopes 'system/AuditEvent.rs' --json)
id=$(echo "$creds" | sed -n 's/.*"client_id":"\([^"]*\)".*/\1/p')
secret=$(echo "$creds" | sed -n 's/.*"client_secret":"\([^"]*\)".*/\1/p')

# Token issue latency: 9 grants (within the per-address burst of 10, with the one below).
times=()
for _ in $(seq 1 9); do
  times+=("$(curl -s -o /dev/null -w '%{time_total}' --cacert "$ca" -u "$id:$secret" \
    -d grant_type=client_credentials "$url/oauth/token")")
done
token=$(curl -s --cacert "$ca" -u "$id:$secret" -d grant_type=client_credentials "$url/oauth/token" \
  | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n '5p')
[ -n "$token" ] || { echo "no token" >&2; exit 1; }

run_wrk() { # path, label
  wrk -t2 -c32 -d8s --latency -H "authorization: Bearer $token" "$url$1" 2>&1 \
    | awk -v label="$2" '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
        END {printf "%-44s %9s req/s  p50 %8s  p99 %8s\n", label, rps, p50, p99}' || true
}

echo "phivault HTTPS benchmark (2 cores; wrk -t2 -c32, keep-alive TLS 1.3)"
printf '%-44s %s s (median of 9)\n' "token issue (POST /oauth/token)" "$median"
run_wrk /healthz "GET /healthz (no auth)"
run_wrk /auth/whoami "GET /auth/whoami (bearer, authenticated)"

# Logins from 8 loopback addresses (so the per-address limit does not stop them), each a real
# Argon2id verification, while wrk measures whoami again.
(
  end=$((SECONDS + 9))
  while [ $SECONDS -lt $end ]; do
    for a in 2 3 4 5 6 7 8 9; do
      curl -s -o /dev/null --interface "127.0.0.$a" --cacert "$ca" -H 'content-type: application/json' \
        -d '{"username":"admin","password":"not the password at all"}' "$url/auth/login" &
    done
    wait
  done
) &
logins=$!
sleep 0.5
run_wrk /auth/whoami "GET /auth/whoami while logins run"
wait "$logins" 2>/dev/null || true
echo "(compare the two whoami lines: Argon2 runs on the blocking pool with a concurrency cap)"

# Does timing tell whether a username exists? Median of 8 failed logins each, from fresh
# addresses (127.0.1.x and 127.0.2.x) so the rate limit and the lockout play no part.
login_time() { # address, username
  curl -s -o /dev/null -w '%{time_total}' --interface "$1" --cacert "$ca" \
    -H 'content-type: application/json' -d "{\"username\":\"$2\",\"password\":\"wrong password here\"}" \
    "$url/auth/login"
}
"$bin" user add --username timing.probe --role VIEWER > /dev/null
known=(); unknown=()
for i in $(seq 1 8); do
  unknown+=("$(login_time "127.0.1.$i" "nobody.$i")")
  [ "$i" -le 4 ] && known+=("$(login_time "127.0.2.$i" timing.probe)")
done
printf '%-44s unknown user %s s, wrong password %s s (medians, whole request)\n' "failed login timing" \
  "$(printf '%s\n' "${unknown[@]}" | sort -n | sed -n '4p')" "$(printf '%s\n' "${known[@]}" | sort -n | sed -n '2p')"
