#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each; FUZZ_SECONDS to change),
# starting from the seed corpus kept in fuzz/corpus/ (copied to fuzz/work/, which is not
# committed), with libFuzzer via cargo-fuzz on the nightly toolchain.
# Exits non-zero on any crash. Installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")"
secs="${FUZZ_SECONDS:-60}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
for target in $(cargo +nightly fuzz list); do
  echo "==> fuzzing $target for ${secs}s"
  mkdir -p "corpus/$target" "work/$target"
  cp -n corpus/"$target"/* "work/$target/" 2>/dev/null || true
  log=$(mktemp)
  status=0
  cargo +nightly fuzz run "$target" "work/$target" -- \
    -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    > "$log" 2>&1 || status=$?
  grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|thread .* panicked)" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$log"
    echo "fuzz target $target FAILED (artifacts in fuzz/artifacts/$target)"
    exit 1
  fi
  rm -f "$log"
done
echo "fuzzing: every target ran ${secs}s without a crash"
