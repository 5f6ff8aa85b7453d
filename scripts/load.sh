#!/usr/bin/env bash
# `make load` (and its short version in `make ci`): the brief's scenario against a local stack.
#
#   scripts/load.sh [DURATION]            DURATION: seconds, or 5m / 30m (default 300 s)
#
# A stack of its own (3 instances, a temporary SOMA_STACK_DIR, nginx on 127.0.0.1:8788), taken down
# on exit whatever happens; the release soma-load; a corpus of 5,000 distinct texts from Debian's
# fortunes (written by others); then 1000 users at 10 requests a minute each (166.7 req/s), the
# brief's mix (docs/PERFORMANCE.md, "Load"), ramp 30 s and warm-up 30 s (15 s each for runs under
# 5 minutes), the verdict as the exit code. LOAD_URL=<base URL> LOAD_STATE=<state file> targets a
# stack that runs already (the compose stack: .compose/compose.json) instead.
# Reports in LOAD_OUT (default .build/load/<UTC time>/): report.json, series.csv, latency.png.
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${1:-${LOAD_DURATION:-300}}"
case "$duration" in
  *m) seconds=$(( ${duration%m} * 60 )) ;;
  *s) seconds=${duration%s} ;;
  *) seconds=$duration ;;
esac
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "load: duration '$duration' is not N, Ns or Nm" >&2; exit 2; }
ramp=30
(( seconds < 300 )) && ramp=15
out="${LOAD_OUT:-.build/load/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"

corpus=.build/load/corpus.jsonl
if [[ ! -s "$corpus" ]]; then
  mkdir -p .build/load
  python3 scripts/fortunes-jsonl.py 5000 "$corpus" --no-cycle
fi

url="${LOAD_URL:-}"
state="${LOAD_STATE:-}"
stack_dir=""
cleanup() {
  if [[ -n "$stack_dir" ]]; then
    SOMA_STACK_DIR="$stack_dir" scripts/stack.py down --purge >/dev/null 2>&1 || \
      echo "load: WARNING: stack down failed; SOMA_STACK_DIR=$stack_dir scripts/stack.py down --purge" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z "$url" ]]; then
  stack_dir="$(mktemp -d /tmp/soma-load-stack-XXXXXX)"
  chmod 755 "$stack_dir"   # PostgreSQL runs as its own user
  t0=$SECONDS
  SOMA_STACK_DIR="$stack_dir" scripts/stack.py up --instances 3 --binary .build/release/soma \
    --model-dir .build/models 2>"$out/stack-up.log" || { cat "$out/stack-up.log" >&2; exit 1; }
  echo "load: stack up in $((SECONDS - t0)) s ($stack_dir)"
  url=http://127.0.0.1:8788
  state="$stack_dir/stack.json"
fi

args=(--url "$url" --corpus "$corpus" --users "${LOAD_USERS:-1000}" --per-user-per-minute 10
      --ramp-up "$ramp" --warm-up "$ramp" --duration "$seconds" --out "$out")
[[ -n "$state" ]] && args+=(--stack-state "$state")
set +e
.build/release/soma-load "${args[@]}" | tee "$out/summary.txt" | grep -v '^t='
rc=${PIPESTATUS[0]}
set -e
echo "load: per-second progress in $out/summary.txt; reports in $out"
exit "$rc"
