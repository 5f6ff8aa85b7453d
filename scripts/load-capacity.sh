#!/usr/bin/env bash
# `make load-capacity`: soma-load's capacity mode on a stack of its own, whose gateway carries the
# documented load-test limit (stack.py up --load-test-limit: one generator is one address, and the
# production limit of 1000 r/s per address would be what stops it). Taken down on exit.
#   CAPACITY_FROM (default 200 req/s), CAPACITY_STEP_SECONDS (20), CAPACITY_P99_MS (25)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${LOAD_OUT:-.build/load/capacity-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
corpus=.build/load/corpus.jsonl
[[ -s "$corpus" ]] || python3 scripts/fortunes-jsonl.py 5000 "$corpus" --no-cycle
stack_dir="$(mktemp -d /tmp/soma-capacity-stack-XXXXXX)"
chmod 755 "$stack_dir"
trap 'SOMA_STACK_DIR="$stack_dir" scripts/stack.py down --purge >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM
SOMA_STACK_DIR="$stack_dir" scripts/stack.py up --instances 3 --binary .build/release/soma \
  --model-dir .build/models --load-test-limit 100000 2>"$out/stack-up.log" || { cat "$out/stack-up.log" >&2; exit 1; }
.build/release/soma-load --url http://127.0.0.1:8788 --corpus "$corpus" --out "$out" \
  --capacity-from "${CAPACITY_FROM:-200}" --step-seconds "${CAPACITY_STEP_SECONDS:-20}" \
  --p99-bound "${CAPACITY_P99_MS:-25}" | tee "$out/summary.txt"
