#!/usr/bin/env bash
# Single-instance HTTP throughput and latency with wrk on release builds: a Hummingbird
# hello-world, then soma serve cached (one text, L1 hits), uncached (a new text per request) and
# /health, all in the same run on this machine, and soma's resident memory afterwards.
#   scripts/bench-http.sh [seconds per scenario, default 10] [connections, default 100]
#   SOMA_BIN=/path/to/soma scripts/bench-http.sh   # another build (an earlier commit's, to compare)
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"; connections="${2:-100}"
command -v wrk >/dev/null || {
  [[ $(id -u) -eq 0 ]] || { echo "bench-http: wrk is missing; run as root or install it" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}
soma_bin="${SOMA_BIN:-.build/release/soma}"
[[ -n "${SOMA_BIN:-}" ]] || env -u SOMA_SLOWDOWN swift build -c release --product soma --static-swift-stdlib >/dev/null  # as make release
(cd Benchmarks && env -u SOMA_SLOWDOWN swift build -c release --product HelloServer >/dev/null)

ulimit -n 65536 2>/dev/null || true
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { for _ in $(seq 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.05; done; echo "bench-http: $1 did not answer" >&2; exit 1; }

hello_port=$(free_port); soma_port=$(free_port)
Benchmarks/.build/release/HelloServer "$hello_port" >/dev/null 2>&1 & pids+=($!)
# Limits raised so the load generator (one machine, many synthetic users) measures the server,
# not the per-user budget; the session manager and cache stay as in production.
SOMA_STATE_DIR="$work/state" SOMA_LOG_LEVEL=warning \
SOMA_TIER_STANDARD_RPM=1000000000 SOMA_TIER_STANDARD_CONCURRENCY=64 \
  "$soma_bin" serve --port "$soma_port" >"$work/soma.log" 2>&1 & soma_pid=$!; pids+=($soma_pid)
wait_http "http://127.0.0.1:$hello_port/"; wait_http "http://127.0.0.1:$soma_port/ready"
idle_rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$soma_pid/status")

cat >"$work/cached.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"text": "I was so happy because my sister finally came home, but I worry she will leave again."}'
local n = 0
request = function()
  n = n + 1
  wrk.headers["X-User-Id"] = "user-" .. (n % 1000)
  return wrk.format()
end
LUA
cat >"$work/uncached.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
local seed = math.random(1, 1000000000)
request = function()
  n = n + 1
  wrk.headers["X-User-Id"] = "user-" .. (n % 1000)
  -- A text never seen before: every module misses the cache and runs.
  wrk.body = '{"text": "Entry ' .. seed .. '-' .. n .. ': I hoped the meeting would go well, but because the plan changed, we decided to wait and I felt anxious about what she believed."}'
  return wrk.format()
end
LUA

run() {  # name url [script] [connections]
  local name="$1" url="$2" script="${3:-}" conns="${4:-$connections}"
  local out
  out=$(wrk -t2 -c"$conns" -d"${duration}s" --latency ${script:+-s "$script"} "$url")
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
  printf '| %-28s | %10s | %8s | %8s | %7s |\n' "$name" "$rps" "$p50" "$p99" "$non2xx"
}

echo "wrk: 2 threads, $connections connections, ${duration}s per scenario, loopback, $(nproc) cores shared with the load generator"
printf '| %-28s | %10s | %8s | %8s | %7s |\n' scenario req/s p50 p99 non-2xx
printf '|%s|%s|%s|%s|%s|\n' ------------------------------ ------------ ---------- ---------- ---------
run "hummingbird hello-world" "http://127.0.0.1:$hello_port/"
run "soma GET /health" "http://127.0.0.1:$soma_port/health"
run "soma analyze, cached (L1)" "http://127.0.0.1:$soma_port/v1/analyze" "$work/cached.lua"
run "soma analyze, uncached" "http://127.0.0.1:$soma_port/v1/analyze" "$work/uncached.lua"
run "soma analyze, cached, 1000 conns" "http://127.0.0.1:$soma_port/v1/analyze" "$work/cached.lua" 1000
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$soma_pid/status")
cache_bytes=$(curl -s "http://127.0.0.1:$soma_port/metrics" | awk '/^soma_cache_bytes\{layer="l1"\}/ {printf "%d", $2}')
echo "soma resident memory: $((idle_rss_kb / 1024)) MiB after start, $((rss_kb / 1024)) MiB after the run, of which L1 cache $((cache_bytes / 1048576)) MiB (bounded at SOMA_CACHE_BYTES, 128 MiB by default)"
curl -s "http://127.0.0.1:$soma_port/metrics" | grep -E '^soma_(shed|degraded|rate_limited)_total' || true
