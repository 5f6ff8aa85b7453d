#!/usr/bin/env bash
# The README's promise, end to end on a release binary: `soma serve` on the embedded default
# answers /v1/analyze with all five modules and /metrics with the latency buckets; SIGTERM drains
# and exits 0. Usage: scripts/http-smoke.sh [path to soma]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-.build/release/soma}"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
SOMA_STATE_DIR="$work/state" SOMA_DRAIN_SECONDS=0 "$bin" serve --port "$port" >"$work/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "http-smoke: $*" >&2; cat "$work/log" >&2; exit 1; }
for _ in $(seq 200); do curl -sf "localhost:$port/ready" >/dev/null && break; sleep 0.05; done
curl -sf "localhost:$port/ready" >/dev/null || fail "not ready"

body=$(curl -s "localhost:$port/v1/analyze" -H 'content-type: application/json' \
  -d '{"text":"I was so happy because my sister finally came home, but I worry she will leave again."}')
python3 - "$body" <<'PY' || fail "analyze answered: $body"
import json, sys
doc = json.loads(sys.argv[1])
assert set(doc["results"]) == {"emotion", "reasoning", "values", "theory_of_mind", "narrative"}, doc["results"].keys()
assert doc["degraded"] is False and doc["cached"] is False
PY
code=$(curl -s -o /dev/null -w '%{http_code}' "localhost:$port/v1/analyze" -H 'content-type: application/json' -d '{"text":')
[[ $code == 400 ]] || fail "malformed JSON answered $code"
metrics=$(curl -s "localhost:$port/metrics")
grep -q 'soma_http_request_duration_seconds_bucket{route="/v1/analyze",method="POST",status="200",le="0.2"}' <<<"$metrics" \
  || fail "no 200 ms bucket in /metrics"
kill -TERM "$pid"
status=0; wait "$pid" || status=$?
[[ $status -eq 0 ]] || fail "exit status $status after SIGTERM"
echo "http-smoke: analyze (5 modules), errors, /metrics buckets and SIGTERM exit 0: ok"
