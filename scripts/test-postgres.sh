#!/usr/bin/env bash
# The vault and audit behaviour suites again, on PostgreSQL: the same test binaries as
# `cargo test` runs on SQLite, with PHIVAULT_TEST_BACKEND=postgres (each test vault gets its own
# schemas on PHIVAULT_TEST_POSTGRES_URL, default the local server's `test` database).
# cli.rs and server.rs stay SQLite-only: they test the data dir's files, modes and `--dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PHIVAULT_TEST_POSTGRES_URL="${PHIVAULT_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
pg_isready -q -d "$PHIVAULT_TEST_POSTGRES_URL" || {
  echo "no PostgreSQL at $PHIVAULT_TEST_POSTGRES_URL" >&2
  exit 1
}
trap 'bash scripts/pg-test-cleanup.sh' EXIT
PHIVAULT_TEST_BACKEND=postgres cargo test --locked -p phivault \
  --test vault_core --test audit --test auth --test authz --test oauth \
  --test fhir_api --test hl7 --test hl7_feeds --test hl7_interfaces --test hl7_concurrency --test hl7_crash --test hl7_errors --test hl7_receipts --test security --test security_records --test security_auth --test security_authfix --test security_admin --test security_edge --test security_aad --test keys --test retention \
  --test backup --test compliance --test deid --test hsm --test purpose --test search --test search_reindex "$@"
