#!/usr/bin/env bash
# `make ci`: every phase in order, each timed; stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -a names=() times=()
phase() {
  local name="$1"; shift
  echo "::: phase $name"
  local t0=$SECONDS
  "$@"
  names+=("$name"); times+=($((SECONDS - t0)))
  echo "::: phase $name done in $((SECONDS - t0)) s"
}
summary() {
  echo "::: ci phases"
  for i in "${!names[@]}"; do printf ':::   %-16s %5d s\n' "${names[$i]}" "${times[$i]}"; done
  echo "::: total $SECONDS s"
}
trap summary EXIT

phase format make format-check
phase test make test
phase release make release
phase http-smoke scripts/http-smoke.sh .build/release/soma
# Short versions of the security runs (full: make api-fuzz, make fuzz).
phase api-fuzz scripts/api-fuzz.sh .build/release/soma 50
phase models make models
phase deploy-check scripts/deploy-check.sh --binary .build/release/soma
phase stack-check bash -c 'scripts/ensure-deps.sh stack && scripts/stack-check.py --binary .build/release/soma --model-dir .build/models'
# The compose stack under Docker (the first run on a new machine pays for debootstrap and the images).
phase compose-check bash -c 'scripts/stack-check.py --target compose --binary .build/release/soma --model-dir .build/models; rc=$?; scripts/docker-engine.sh stop; exit $rc'
# The brief's load scenario for 90 s (make load runs 5 minutes; LOAD_DURATION=30m is the brief's).
phase load bash -c 'make load-harness && scripts/ensure-deps.sh stack && scripts/load.sh 90'
# soma autoscale: scale-up, scale-down and a supervised restart under soma-load (about 3 minutes).
phase autoscale scripts/autoscale-check.py --binary .build/release/soma --model-dir .build/models
# The chaos suite's short form against the compose stack (make chaos: every scenario, full windows):
# an instance SIGKILLed and a PostgreSQL outage (stopped, then hung) under soma-load, every
# acknowledged write audited in PostgreSQL (docs/RELIABILITY.md).
phase chaos bash -c 'make chaos-short SOMA_STACK=compose; rc=$?; scripts/docker-engine.sh stop; exit $rc'
phase throughput scripts/jsonl-smoke.sh .build/release/soma 10000
phase bench make bench
phase bench-slowdown make bench-slowdown
# libFuzzer's short run on a debug build: half the build time of make fuzz's release build, the same
# sanitizers and instrumentation, a tenth of the executions (scripts/fuzz.sh, FUZZ_CONFIG).
phase fuzz env FUZZ_CONFIG=debug scripts/fuzz.sh 20
