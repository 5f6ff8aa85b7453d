#!/usr/bin/env bash
# Property-based API fuzzing of a live `soma serve` against openapi.yaml with schemathesis.
#
# Usage: scripts/api-fuzz.sh [BINARY] [MAX_EXAMPLES]      (make api-fuzz [API_FUZZ_EXAMPLES=200])
#   BINARY        the soma binary to serve (default .build/release/soma)
#   MAX_EXAMPLES  test cases per operation and phase (default 200)
# Environment:
#   API_FUZZ_MAX_SECONDS  wall-clock bound of the schemathesis run (default 900); past it the run is
#                         stopped and fails
#   API_FUZZ_WORKERS      concurrent schemathesis workers (default 1: no faster here, and threaded
#                         generation on CPython 3.11 intermittently dies in `ast` with "AST constructor
#                         recursion depth mismatch", python/cpython#106905)
#   API_FUZZ_SEED         a seed to replay a run (schemathesis prints the seed of every run)
#   API_FUZZ_KEEP=1       keep the work directory (server log, reports) also on success
#   API_FUZZ_CHECKS       schemathesis checks instead of the default set below (e.g. all)
#
# What it does: a pinned schemathesis in .venv-apifuzz (scripts/api-fuzz-requirements.txt); one soma
# instance on a free 127.0.0.1 port with random service and admin tokens, embedded SQLite state in a
# temporary directory and tier limits raised so the run measures the API, not the rate limiter;
# every operation of openapi.yaml through the examples, coverage, fuzzing and stateful phases.
# The stateful phase follows links added in a throwaway copy of the document (the repository's
# openapi.yaml declares none): create entry -> list / delete / profile / erase user, same X-User-Id.
# Fails on any schemathesis failure or error, on a run that hit the time bound, and on any
# `status=500` line in the server log.
set -euo pipefail
# A binary given relative to the caller's directory, before moving to the repository root.
if [[ -n "${1:-}" && "$1" != /* && -e "$1" ]]; then set -- "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")" "${@:2}"; fi
cd "$(dirname "$0")/.."
root="$PWD"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

bin="${1:-.build/release/soma}"
max_examples="${2:-200}"
SCHEMATHESIS_VERSION=4.32.5
venv=.venv-apifuzz
requirements=scripts/api-fuzz-requirements.txt
max_seconds="${API_FUZZ_MAX_SECONDS:-900}"
workers="${API_FUZZ_WORKERS:-1}"
# schemathesis's names (4.x). The five conformance checks, plus the ones whose oracle is unambiguous
# for this API: a missing required header or a missing/ignored token must be refused, an entry the
# API created must be reachable through its links, and a deleted one must stay deleted.
# Left out (API_FUZZ_CHECKS=all runs them), each failing on behaviour that is deliberate:
#   negative_data_rejection  sends unknown extra headers and expects a refusal;
#                            HTTP recipients ignore unknown header fields (RFC 9110 §5.1)
#   positive_data_acceptance expects every schema-valid value to pass, but the API also refuses what
#                            JSON Schema cannot state: an unknown cursor (400), per-tier batch and
#                            text caps (422/413)
#   unsupported_method, allow_header_conformance  expect 405 + Allow; an unknown method is
#                            404 not_found by design (docs/ARCHITECTURE.md §7)
checks="${API_FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,missing_required_header,ignored_auth,use_after_free,ensure_resource_availability}"

log() { printf 'api-fuzz: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[[ "$max_examples" =~ ^[1-9][0-9]*$ ]] || die "MAX_EXAMPLES must be a positive integer (got '$max_examples')"
[[ "$max_seconds" =~ ^[1-9][0-9]*$ ]] || die "API_FUZZ_MAX_SECONDS must be a positive integer"
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "API_FUZZ_WORKERS must be a positive integer"
[[ -x "$bin" ]] || die "no soma binary at $bin (make release builds .build/release/soma)"
[[ -f openapi.yaml ]] || die "openapi.yaml is missing"

# ---- the pinned schemathesis --------------------------------------------------------------------
ensure_venv() {
  if [[ ! -x "$venv/bin/python" ]]; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      rm -rf "$venv"
      log "python3 -m venv failed: installing python3-venv"
      command -v apt-get >/dev/null || die "python3 -m venv failed and there is no apt-get to install python3-venv"
      local sudo=()
      [[ "$(id -u)" -eq 0 ]] || sudo=(sudo -n)
      "${sudo[@]}" apt-get install -y python3-venv >/dev/null \
        || { "${sudo[@]}" apt-get update >/dev/null && "${sudo[@]}" apt-get install -y python3-venv >/dev/null; } \
        || die "could not install python3-venv"
      python3 -m venv "$venv" || die "python3 -m venv $venv failed"
    fi
  fi
  # Reinstall when the pins changed since the last install (or the last install did not finish).
  local want have
  if [[ -f "$requirements" ]]; then
    grep -qx "schemathesis==$SCHEMATHESIS_VERSION" "$requirements" \
      || die "$requirements does not pin schemathesis==$SCHEMATHESIS_VERSION"
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  else
    want="schemathesis==$SCHEMATHESIS_VERSION"
  fi
  have="$(cat "$venv/.api-fuzz-installed" 2>/dev/null || true)"
  if [[ "$want" != "$have" || ! -x "$venv/bin/schemathesis" ]]; then
    log "installing schemathesis==$SCHEMATHESIS_VERSION into $venv"
    rm -f "$venv/.api-fuzz-installed"
    if [[ -f "$requirements" ]]; then
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    else
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    fi
    printf '%s\n' "$want" >"$venv/.api-fuzz-installed"
  fi
  local version
  version="$("$venv/bin/schemathesis" --version)"
  [[ "$version" == *" $SCHEMATHESIS_VERSION" ]] || die "expected schemathesis $SCHEMATHESIS_VERSION, found: $version"
}
ensure_venv

# ---- the server ---------------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/soma-api-fuzz.XXXXXX")"
server_pid=""
server_status=0
st_pid=""
keep="${API_FUZZ_KEEP:-0}"

stop_server() {
  [[ -n "$server_pid" ]] || return 0
  if process_alive "$server_pid"; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do process_alive "$server_pid" || break; sleep 0.1; done
    if process_alive "$server_pid"; then
      log "the server did not stop within 10 s of SIGTERM: SIGKILL"
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
  fi
  server_status=0
  wait "$server_pid" 2>/dev/null || server_status=$?
  server_pid=""
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$st_pid" ]] && process_alive "$st_pid"; then
    kill -INT "$st_pid" 2>/dev/null || true   # timeout(1) passes it on to schemathesis
    for _ in $(seq 100); do process_alive "$st_pid" || break; sleep 0.1; done
    kill -KILL "$st_pid" 2>/dev/null || true
  fi
  stop_server
  if [[ $status -eq 0 && "$keep" != 1 ]]; then
    rm -rf -- "$work"
  else
    log "server log, reports and schemathesis output kept in $work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

port="$(pick_port)"
base="http://127.0.0.1:$port"
token() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }
service_token="$(token)"
admin_token="$(token)"

# A clean environment for the instance: no SOMA_* setting of the caller's (a database or Redis URL,
# SOMA_SLOWDOWN, ...) leaks in; only what this run sets.
unset_soma=()
while IFS= read -r name; do unset_soma+=(-u "$name"); done < <(compgen -e | grep -E '^(SOMA_|INSTANCE_ID$)' || true)
server_env=(
  SOMA_SERVICE_TOKEN="$service_token"
  SOMA_ADMIN_TOKEN="$admin_token"
  INSTANCE_ID=api-fuzz
  SOMA_LOG_LEVEL=debug          # one line per request: the status histogram below
  SOMA_DRAIN_SECONDS=0
  # The run measures the API, not the limiter: a fuzzer sends thousands of requests as a few users.
  SOMA_TIER_PREMIUM_RPM=10000000 SOMA_TIER_STANDARD_RPM=10000000 SOMA_TIER_FREE_RPM=10000000
  SOMA_TIER_PREMIUM_CONCURRENCY=256 SOMA_TIER_STANDARD_CONCURRENCY=256 SOMA_TIER_FREE_CONCURRENCY=256
  # Most generated requests are invalid on purpose; servers that bound invalid requests per user
  # (429 after N a minute) must not turn the rest of the run into 429s. Older servers ignore it.
  SOMA_INVALID_REQUESTS_PER_MINUTE=10000000
)
log "starting $bin on $base (state in $work/state)"
# Started directly (not through a shell function), so that $! is the server itself.
env "${unset_soma[@]}" "${server_env[@]}" "$bin" serve --host 127.0.0.1 --port "$port" \
  --state-dir "$work/state" --model-dir Fixtures/models >"$work/server.log" 2>&1 &
server_pid=$!

ready=0
for _ in $(seq 600); do
  process_alive "$server_pid" || { cat "$work/server.log" >&2; die "the server exited during start-up"; }
  if curl -sf --max-time 2 "$base/ready" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
[[ $ready -eq 1 ]] || { tail -n 50 "$work/server.log" >&2; die "the server was not ready within 60 s"; }

# ---- schemathesis configuration and the document it runs on --------------------------------------
# Tokens reach schemathesis through environment placeholders, never on a command line.
cat >"$work/schemathesis.toml" <<'TOML'
[auth.openapi.serviceToken]
bearer = "${APIFUZZ_SERVICE_TOKEN}"

[auth.openapi.adminToken]
bearer = "${APIFUZZ_ADMIN_TOKEN}"

# Explicit links only: schemathesis's own inference maps POST /v1/entries' entry.id onto the
# X-User-Id header of DELETE /v1/entries/{id} and never reaches a stored entry.
[phases.stateful.inference]
algorithms = []

# 504 deadline_exceeded is the contract's answer when the deadline the fuzzer itself asks for
# (X-Request-Deadline-Ms: 1) passes before any usable answer (docs/ARCHITECTURE.md §7); its body and
# headers are still checked against the document. 500, and 503 from this idle instance, stay failures.
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "504"]
TOML
# Crash files for `st replay` stay with this run, not in the working tree.
printf '\n[cache]\ndirectory = "%s"\n' "$work/schemathesis-cache" >>"$work/schemathesis.toml"

# openapi.yaml with links for the stateful phase, everything else as it is in the repository.
"$venv/bin/python" - openapi.yaml "$work/openapi.links.json" <<'PY'
import json, sys, yaml

doc = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
user = {"header.X-User-Id": "$request.header.X-User-Id"}

def link(operation, **parameters):
    return {"operationId": operation, "parameters": {**user, **parameters}}

follow_user = {
    "ListEntries": link("listEntries"),
    "GetProfile": link("getProfile"),
    "EraseUser": link("eraseUser"),
}
links = {
    ("/v1/entries", "post", "201"): {**follow_user, "DeleteEntry": link("deleteEntry", **{"path.id": "$response.body#/entry/id"})},
    ("/v1/entries", "post", "202"): {**follow_user, "DeleteEntry": link("deleteEntry", **{"path.id": "$response.body#/entry/id"})},
    ("/v1/entries", "get", "200"): {"GetProfile": link("getProfile"), "EraseUser": link("eraseUser")},
    ("/v1/entries/{id}", "delete", "200"): {
        "DeleteAgain": link("deleteEntry", **{"path.id": "$response.body#/id"}),
        "ListEntries": link("listEntries"),
    },
    ("/v1/profile", "get", "200"): {"ListEntries": link("listEntries"), "EraseUser": link("eraseUser")},
    ("/v1/user", "delete", "200"): {"ListEntries": link("listEntries"), "GetProfile": link("getProfile")},
}
for (path, method, status), named in links.items():
    response = doc["paths"][path][method]["responses"][status]
    assert "$ref" not in response, f"{method} {path} {status}: a $ref response cannot take links here"
    response.setdefault("links", {}).update(named)
json.dump(doc, open(sys.argv[2], "w", encoding="utf-8"))
PY

mkdir -p "$work/reports"
st_args=(
  --config-file "$work/schemathesis.toml" run "$work/openapi.links.json"
  --url "$base"
  --checks "$checks"
  --max-examples "$max_examples"
  --workers "$workers"
  --request-timeout 30
  --generation-database none
  --report json,junit,ndjson --report-dir "$work/reports"
  --no-color
)
[[ -n "${API_FUZZ_SEED:-}" ]] && st_args+=(--seed "$API_FUZZ_SEED")

log "schemathesis $SCHEMATHESIS_VERSION: max $max_examples examples per operation, $workers workers, bound ${max_seconds}s"
log "command (in $work): $venv/bin/schemathesis ${st_args[*]}"
started=$SECONDS
st_status=0
# In the background and waited for, so that an interrupt reaches the trap at once.
# From the work directory, so nothing it writes lands in the working tree; Hypothesis keeps its
# caches (Unicode tables) in the venv.
(
  cd "$work"
  export APIFUZZ_SERVICE_TOKEN="$service_token" APIFUZZ_ADMIN_TOKEN="$admin_token"
  export HYPOTHESIS_STORAGE_DIRECTORY="$root/$venv/hypothesis"
  # SIGINT at the bound: schemathesis stops like on Ctrl-C and still writes its reports.
  exec timeout --signal=INT --kill-after=30 "$max_seconds" "$root/$venv/bin/schemathesis" "${st_args[@]}"
) > >(tee "$work/schemathesis.out") 2>&1 &
st_pid=$!
wait "$st_pid" || st_status=$?
st_pid=""
elapsed=$((SECONDS - started))

stop_server

# ---- verdict --------------------------------------------------------------------------------------
failed=0
if [[ $st_status -eq 124 || $st_status -eq 137 ]] || grep -q '"stop_reason": *"interrupted"' "$work"/reports/json-*.json 2>/dev/null; then
  failed=1
  log "schemathesis did not finish within ${max_seconds}s (API_FUZZ_MAX_SECONDS)"
elif [[ $st_status -ne 0 ]]; then
  failed=1
fi
errors_500="$(grep -cE 'status=500([^0-9]|$)' "$work/server.log" || true)"
if [[ "$errors_500" -ne 0 ]]; then
  failed=1
  log "the server log has $errors_500 status=500 line(s):"
  grep -E 'status=500([^0-9]|$)' "$work/server.log" | head -n 20 >&2
fi
if grep -qE '^[^ ]+ (error|critical) ' "$work/server.log"; then
  failed=1
  log "the server log has error/critical lines:"
  grep -E '^[^ ]+ (error|critical) ' "$work/server.log" | head -n 20 >&2
fi
if [[ $server_status -ne 0 ]]; then
  failed=1
  log "the server exited with status $server_status after SIGTERM (expected 0)"
fi

report="$(ls "$work"/reports/json-*.json 2>/dev/null | head -n 1 || true)"
"$venv/bin/python" - "$report" "$work/server.log" "$elapsed" "$max_examples" "$st_status" "$errors_500" <<'PY' || failed=1
import collections, json, re, sys

report, server_log, elapsed, max_examples, st_status, errors_500 = sys.argv[1:]
statuses = collections.Counter(re.findall(r"soma\.http\.status=(\d{3})", open(server_log, encoding="utf-8", errors="replace").read()))
print("\n==================== api-fuzz summary ====================")
try:
    doc = json.load(open(report, encoding="utf-8"))
except (OSError, ValueError):
    print(f"no schemathesis report (exit status {st_status}); see the output above")
    print(f"server statuses:   " + (", ".join(f"{code}×{n}" for code, n in sorted(statuses.items())) or "none logged"))
    print(f"time taken:        {elapsed} s")
    sys.exit(1)
ops, cases = doc["operations"], doc["test_cases"]
failures = sum(f["count"] for f in doc["failures"])
print(f"schemathesis:      {doc['schemathesis_version']} (seed {doc['seed']}; stop reason: {doc.get('stop_reason')})")
print(f"operations tested: {ops['tested']} of {ops['total']} (errored {ops['errored']}, skipped {ops['skipped']})")
print(f"test cases run:    {cases['generated']} (max {max_examples} per operation and phase)")
print(f"phases:            " + ", ".join(f"{name} {p['status']}" for name, p in doc["phases"].items()))
print(f"failures:          {failures} ({cases['unique_failures']} unique)" + "".join(
    f"\n  {f['code']} {f['title']}: {f['count']} in {', '.join(f['operations'])}" for f in doc["failures"]))
print(f"errors:            {len(doc['errors'])}")
warnings = {name: ops_ for name, ops_ in doc["warnings"].items() if ops_}
if warnings:
    print("warnings:          " + "; ".join(f"{name}: {', '.join(map(str, v))}" for name, v in warnings.items()))
print(f"server statuses:   " + (", ".join(f"{code}×{n}" for code, n in sorted(statuses.items())) or "none logged"))
print(f"status=500 lines:  {errors_500}")
print(f"time taken:        {elapsed} s (schemathesis {doc['running_time']:.1f} s)")
PY

if [[ $failed -ne 0 ]]; then
  log "FAILED"
  exit 1
fi
log "ok"
