#!/usr/bin/env bash
# Drops the schemas the end-to-end tests made on the PostgreSQL test database
# (PHIVAULT_TEST_BACKEND=postgres names them t<16 hex digits>_<store>; tests/postgres.rs
# t<pid><tag>_<store>; the benchmark bench<pid>_<store>). Safe to run any time no test runs.
set -euo pipefail
url="${PHIVAULT_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
schemas=$(psql "$url" -Atc "SELECT nspname FROM pg_namespace
  WHERE nspname ~ '^(t[0-9a-f]{16}|t[0-9]+[a-z]*|bench[0-9]+)_(identity|clinical|control|audit)$'")
export PGOPTIONS="-c client_min_messages=warning"
n=0
for s in $schemas; do
  psql "$url" -q -c "DROP SCHEMA IF EXISTS \"$s\" CASCADE" >/dev/null
  n=$((n + 1))
done
echo "dropped $n test schemas"
