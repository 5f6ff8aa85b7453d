# Soma — build, test and CI entry points. See README.md.
SHELL := /bin/bash
SWIFT ?= swift
# One environment for every SwiftPM call, so nothing rebuilds between build and test.
SWIFT_ENV := env -u SOMA_SLOWDOWN -u SOMA_SLOWDOWN_HOLD_MS
RELEASE_BIN := .build/release/soma
TEXT ?=
DURATION ?= 10
INSTANCES ?= 3

.PHONY: accuracy-peers load-harness all deps build release test unit smoke run analyze http-smoke bench-http models bench bench-slowdown engine-gate-build bench-peers engine-profile api-fuzz fuzz ci format format-check clean help \
	stack-up stack-down stack-status stack-restart stack-check deploy-check \
	compose-up compose-status compose-down compose-check compose-images load load-capacity \
	autoscale-check autoscale-demo chaos chaos-short chaos-deps
MODELS_DIR ?= .build/models

all: build

help:
	@echo "make run     build (release) and serve the HTTP API on 127.0.0.1:8788 (embedded SQLite + in-process cache)"
	@echo "make analyze build (release) and analyse TEXT='...' or standard input"
	@echo "make test    build, unit and HTTP tests (accuracy table included), integration tests against a real"
	@echo "             redis-server and PostgreSQL started on free loopback ports, JSON Lines smoke over 10,000 texts"
	@echo "make models  compile the served models (FP16 + pruning) into $(MODELS_DIR) and print the trade-off report"
	@echo "make bench   the engine gate (CPU per run over a same-run reference, +20 %), then the package-benchmark"
	@echo "             suites (Benchmarks/), p50/p90/p99 against the brief's SLOs and coarse budgets; fails on a breach"
	@echo "make bench-slowdown   the engine gate with every module 1.5x slower (SOMA_SLOWDOWN=1.5x): must go red"
	@echo "make bench-peers      VADER (PyPI) against soma analyze --jsonl over the same 100,000 texts: CPU per text, median of 3"
	@echo "make engine-profile   instructions per text and per stage of soma analyze --jsonl (callgrind; exact, not timed)"
	@echo "make accuracy-peers   emotion valence on the blind set: soma, VADER and the majority class"
	@echo "make http-smoke      start the release server, call the README's curl commands, SIGTERM, expect exit 0"
	@echo "make bench-http      wrk: hello-world vs soma cached/uncached, single instance (DURATION=10)"
	@echo "make stack-up [INSTANCES=3] [AFFINITY=1]  nginx on 127.0.0.1:8788 over N instances + Redis, PostgreSQL,"
	@echo "             Prometheus, Alertmanager on free loopback ports (no Docker); state in .stack/stack.json"
	@echo "make stack-status / stack-restart (rolling) / stack-down [PURGE=1]"
	@echo "make stack-check   live checks on a fresh stack of its own; make deploy-check  static checks of deploy/"
	@echo "make compose-up [INSTANCES=3]  the compose stack under a local Docker engine (images from Debian's packages,"
	@echo "             nothing pulled); nginx on 127.0.0.1:8788; make compose-status / compose-down [PURGE=1]"
	@echo "make compose-check the live checks against a fresh compose stack + restart policy, pauses, rolling update"
	@echo "make load [LOAD_DURATION=300|30m]  soma-load: the brief's scenario (1000 users, 10 req/min each) on a stack of"
	@echo "             its own; SLO verdict = exit code; report.json, series.csv, latency.png in .build/load/<time>/"
	@echo "make load-capacity  the highest rate per route class (cached, uncached, writes) with p99 <= 25 ms"
	@echo "make autoscale-demo  soma autoscale on a stack of its own: scale-up under load, scale-down, a SIGKILLed"
	@echo "             instance replaced; prints the timeline (short windows; make autoscale-check is the same, in CI)"
	@echo "make chaos [SOMA_STACK=compose|local]  fault injection under load (instance kill, PostgreSQL and Redis"
	@echo "             outages, rolling restart, partitions, overload at 10x) on a stack of its own; make chaos-short: CI's form (1, 3)"
	@echo "make format  apply .swift-format to the tree; make format-check  fail on any difference (CI)"
	@echo "make api-fuzz [API_FUZZ_EXAMPLES=200]  schemathesis (pinned, .venv-apifuzz) against a live release server, driven by openapi.yaml"
	@echo "make fuzz [FUZZ_SECONDS=300] [FUZZ_CONFIG=release]  libFuzzer + ASan on the parsers (text, model, json, cursor, idempotency), each for FUZZ_SECONDS"
	@echo "make ci      what .ci/run calls: test, release build, models, throughput; prints the time of each phase"

deps:
	@scripts/ensure-deps.sh build

build: deps
	$(SWIFT_ENV) $(SWIFT) build

# The Swift runtime is linked statically, as in deploy/Dockerfile: the binary CI tests is the one
# the image ships, and its shared libraries are only Debian's (checked by scripts/deploy-check.sh).
# Every release product is built with the same flags: SwiftPM keeps one set of objects in
# .build/release, and a build with other flags recompiles all of it (in CI, building soma-load
# without --static-swift-stdlib cost 321 s and the next make release 244 s more).
RELEASE_COMMON := -c release --static-swift-stdlib
RELEASE_FLAGS := $(RELEASE_COMMON) --product soma

release: deps
	$(SWIFT_ENV) $(SWIFT) build $(RELEASE_FLAGS)

unit: deps
	@scripts/ensure-deps.sh corpus
	@scripts/ensure-deps.sh redis
	@scripts/ensure-deps.sh postgres
	$(SWIFT_ENV) $(SWIFT) build --build-tests
	$(SWIFT_ENV) $(SWIFT) test --skip-build --filter UnitTests
	@# Integration suites start real servers and several soma processes: one suite at a time.
	$(SWIFT_ENV) $(SWIFT) test --skip-build --filter IntegrationTests --no-parallel

smoke: deps
	@scripts/ensure-deps.sh corpus
	$(SWIFT_ENV) $(SWIFT) build --product soma
	scripts/jsonl-smoke.sh .build/debug/soma

test: unit smoke

run: release
	$(RELEASE_BIN) serve

analyze: release
	@if [ -n "$(TEXT)" ]; then printf '%s\n' "$(TEXT)" | $(RELEASE_BIN) analyze --pretty; \
	else echo "soma: reading text from standard input (Ctrl-D to end)" >&2; $(RELEASE_BIN) analyze --pretty; fi

http-smoke: release
	scripts/http-smoke.sh $(RELEASE_BIN)

bench-http:
	@scripts/ensure-deps.sh build
	scripts/bench-http.sh $(DURATION)

models: release
	@scripts/ensure-deps.sh corpus
	$(RELEASE_BIN) optimize --in Fixtures/models --out $(MODELS_DIR) --report

BENCH := cd Benchmarks && env -u SOMA_SLOWDOWN -u SOMA_SLOWDOWN_HOLD_MS $(SWIFT) package --allow-writing-to-package-directory benchmark --format jmh --no-progress

# The engine gate (Benchmarks/Sources/EngineGate): each workload's CPU per run as a ratio to a
# reference measured in the same process, against Benchmarks/engine-gate.json (+20 %).
ENGINE_GATE := Benchmarks/.build/release/EngineGate

engine-gate-build: models
	cd Benchmarks && env -u SOMA_SLOWDOWN -u SOMA_SLOWDOWN_HOLD_MS $(SWIFT) build -c release --product EngineGate

bench: models engine-gate-build
	@# Red only when red three times running: a regression is red every time, a burst of load from
	@# other tenants of the host is not (docs/PERFORMANCE.md, "The engine gate").
	env -u SOMA_SLOWDOWN scripts/engine-gate.py check --attempts 3 --out .build/engine-gate.json
	env -u SOMA_SLOWDOWN scripts/engine-gate.py e2e --attempts 3
	rm -rf Benchmarks/.build/bench-results
	$(BENCH) --path .build/bench-results
	python3 scripts/bench-gate.py Benchmarks/.build/bench-results

# The engine gate must go red when every module analysis takes 1.5 times its own time.
bench-slowdown: engine-gate-build
	SOMA_SLOWDOWN=1.5x $(ENGINE_GATE) --check Benchmarks/engine-gate.json --expect-fail --out .build/engine-gate-slowdown.json
	SOMA_SLOWDOWN=1.5x scripts/engine-gate.py e2e --expect-fail

# Emotion valence on the blind set: soma against VADER (PyPI, .venv-peers) and the majority class.
accuracy-peers: models
	scripts/accuracy-peers.py --binary $(RELEASE_BIN) --model-dir $(MODELS_DIR)

bench-peers: models
	@scripts/ensure-deps.sh corpus
	scripts/bench-peers.py --binary $(RELEASE_BIN) --json .build/bench-peers.json

# Instructions per text and per stage (callgrind: a count, the same on every run), start-up excluded.
engine-profile: models
	@scripts/ensure-deps.sh corpus
	@scripts/ensure-deps.sh profile
	scripts/engine-profile.py --binary $(RELEASE_BIN) --model-dir $(MODELS_DIR) --json .build/engine-profile.json

# ---- the deployment topology on this machine (no Docker): see docs/OPERATIONS.md ----
# State, data and logs in .stack/ (SOMA_STACK_DIR overrides); the state file is .stack/stack.json.
stack-up: models
	@scripts/ensure-deps.sh stack
	scripts/stack.py up --instances $(INSTANCES) --binary $(RELEASE_BIN) --model-dir $(MODELS_DIR) $(if $(AFFINITY),--affinity)

stack-status:
	@scripts/stack.py status

stack-restart: models
	scripts/stack.py restart --binary $(RELEASE_BIN)

stack-down:
	scripts/stack.py down $(if $(PURGE),--purge)

# Live checks on a fresh stack of its own (nginx -t, HTTP and HTTPS through nginx, Prometheus
# targets, every PromQL expression of the rules and the dashboard, no process left after down).
stack-check: models
	@scripts/ensure-deps.sh stack
	scripts/stack-check.py --binary $(RELEASE_BIN) --model-dir $(MODELS_DIR)

# ---- the compose stack under a real Docker engine (Debian's docker.io; no registry needed) ----
# deploy/docker-compose-ml.yml with images built here from Debian's packages (scripts/compose.py);
# state in .compose/ (SOMA_COMPOSE_DIR overrides). docs/OPERATIONS.md, "Compose".
compose-images: models
	scripts/compose.py images --binary $(RELEASE_BIN) --model-dir $(MODELS_DIR)

compose-up: models
	scripts/compose.py up --instances $(INSTANCES) --binary $(RELEASE_BIN) --model-dir $(MODELS_DIR)

compose-status:
	@scripts/compose.py status

compose-down:
	scripts/compose.py down $(if $(PURGE),--purge)

# The live checks of stack-check against a fresh compose stack of its own (project soma-check),
# plus what only Docker shows: restart policy, paused Redis/PostgreSQL, a rolling image update,
# nothing left after down --purge.
compose-check: models
	scripts/stack-check.py --target compose --binary $(RELEASE_BIN) --model-dir $(MODELS_DIR)

# ---- load (soma-load, Tests/Load; docs/PERFORMANCE.md "Load") ----
# The brief's scenario (1000 users, 10 requests/user/min) on a stack of its own; the SLO verdict is
# the exit code. LOAD_DURATION=30m is the brief's full run; LOAD_URL/LOAD_STATE target a running stack.
LOAD_DURATION ?= 300

load-harness: deps
	@scripts/ensure-deps.sh load
	$(SWIFT_ENV) $(SWIFT) build $(RELEASE_COMMON) --product soma-load

load: models load-harness
	@scripts/ensure-deps.sh stack
	scripts/load.sh $(LOAD_DURATION)

# Capacity per route class (cached, uncached, writes): the rate steps up until p99 passes 25 ms
# or a request fails, on a stack with the documented load-test limit at the gateway.
load-capacity: models load-harness
	@scripts/ensure-deps.sh stack
	scripts/load-capacity.sh

# ---- autoscaling (soma autoscale; docs/OPERATIONS.md "Autoscaling") ----
# The policy with short windows on a local stack of its own, under soma-load: scale-up, trigger to
# ready, the new instance's share, scale-down, a SIGKILLed instance replaced. Report and timeline
# in .build/autoscale/.
autoscale-check: models load-harness
	@scripts/ensure-deps.sh stack
	@test -s .build/load/corpus.jsonl || python3 scripts/fortunes-jsonl.py 5000 .build/load/corpus.jsonl --no-cycle
	scripts/autoscale-check.py --binary $(RELEASE_BIN) --model-dir $(MODELS_DIR)

autoscale-demo: autoscale-check

# ---- chaos (Tests/Chaos/chaos.py; docs/RELIABILITY.md) ----
# Fault injection under soma-load on a fresh stack of its own (SOMA_STACK=compose (default) or
# local; SOMA_BIN / SOMA_LOAD_BIN override the release binaries). chaos: every scenario, full
# windows; chaos-short (CI): scenarios 1 and 3 with short windows, under 5 minutes. Report in
# .build/chaos/<time>/chaos-report.json; the exit code is the verdict.
SOMA_STACK ?= compose
SOMA_BIN ?= $(RELEASE_BIN)
SOMA_LOAD_BIN ?= .build/release/soma-load
CHAOS_ARGS ?=

chaos-deps:
	@scripts/ensure-deps.sh stack
	@scripts/ensure-deps.sh chaos
	@scripts/ensure-deps.sh postgres
	@test -s .build/load/corpus.jsonl || python3 scripts/fortunes-jsonl.py 5000 .build/load/corpus.jsonl --no-cycle
	@if [ "$(SOMA_STACK)" = compose ]; then scripts/docker-engine.sh ensure; fi

chaos: chaos-deps
	SOMA_BIN=$(SOMA_BIN) SOMA_LOAD_BIN=$(SOMA_LOAD_BIN) Tests/Chaos/chaos.py --stack $(SOMA_STACK) $(CHAOS_ARGS)

chaos-short: chaos-deps
	SOMA_BIN=$(SOMA_BIN) SOMA_LOAD_BIN=$(SOMA_LOAD_BIN) Tests/Chaos/chaos.py --stack $(SOMA_STACK) --short $(CHAOS_ARGS)

# Static checks of deploy/: promtool, amtool, compose schema, Kubernetes schemas + HPA policy,
# the Dockerfile's runtime libraries against the release binary (built as the Dockerfile does).
deploy-check: release
	scripts/deploy-check.sh --binary $(RELEASE_BIN)

# The whole tree in the toolchain's formatter (.swift-format); format-check fails on any difference.
FORMAT_PATHS := Package.swift Sources Tests Benchmarks/Package.swift Benchmarks/Benchmarks Benchmarks/Sources Fuzz/Package.swift Fuzz/Sources

format:
	$(SWIFT) format format --in-place --recursive --parallel $(FORMAT_PATHS)

format-check:
	$(SWIFT) format lint --strict --recursive --parallel $(FORMAT_PATHS)

# Property-based API fuzzing against openapi.yaml (scripts/api-fuzz.sh; loopback only, bounded in time).
API_FUZZ_EXAMPLES ?= 200

api-fuzz: release
	scripts/api-fuzz.sh $(RELEASE_BIN) $(API_FUZZ_EXAMPLES)

# libFuzzer + ASan over Soma's own parsers (Fuzz/, built in Fuzz/.build-fuzz; seeds in Fixtures/fuzz).
FUZZ_SECONDS ?= 300

FUZZ_CONFIG ?= release

fuzz:
	FUZZ_CONFIG=$(FUZZ_CONFIG) scripts/fuzz.sh $(FUZZ_SECONDS)

ci:
	@scripts/ci.sh

clean:
	rm -rf .build
