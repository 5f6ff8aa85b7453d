#!/usr/bin/env bash
# `make fuzz`: coverage-guided fuzzing (libFuzzer + AddressSanitizer) of Soma's own parsers.
#
#   scripts/fuzz.sh [SECONDS]      each target for SECONDS (default 300), one after the other
#   FUZZ_TARGETS="text json" scripts/fuzz.sh 60     only some targets
#   FUZZ_CONFIG=debug scripts/fuzz.sh 20             an unoptimised build (CI's short run)
#
# FUZZ_CONFIG is release by default: the analysers run about ten times as many inputs a second
# optimised (the text target: 122 against 12 a second, measured). A debug build takes half the
# time to build (182 s against 339 s from scratch, measured), has the same checks (ASan, overflow
# and bounds traps) and the same coverage instrumentation, so CI's short run, which is there to
# show that every target builds, replays its seeds and survives a few hundred mutations, uses it.
#
# Targets (Fuzz/Sources/Fuzz*, per-input code in Tests/Unit/FuzzCorpusTests.swift):
#   text         bytes → String → Engine.analyze (all five modules) → the results' JSON
#   model        CompiledModel.decode on any bytes
#   json         request bodies: JSONIO.decode of each DTO, DuplicateKeys, the routes' validation
#   cursor       EntryCursor(decoding:) and its round trip
#   idempotency  Idempotency-Key header values from NIO's parser to Validation.idempotencyKey
#
# Builds Fuzz/ (a package of its own) in Fuzz/.build-fuzz, never in .build. Each target's working
# corpus is Fuzz/.build-fuzz/corpus/<target>, seeded from Fixtures/fuzz/<target> (which libFuzzer
# only reads); crashes, leaks, timeouts and OOMs land in Fuzz/.build-fuzz/artifacts/<target>/.
# Prints one line per target (executions, corpus size, result) and the time of each phase; exits
# non-zero when any target failed, naming the input that did it. To keep such an input as a
# regression test: minimise it (the command is printed), copy it to Fixtures/fuzz/<target>/crash-<name>;
# the unit tests (FuzzCorpusTests) replay every file there.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-300}"
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "fuzz: SECONDS must be a positive integer, not '$seconds'" >&2; exit 2; }
all_targets=(text model json cursor idempotency)
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"
SWIFT="${SWIFT:-swift}"

scratch=Fuzz/.build-fuzz
config="${FUZZ_CONFIG:-release}"
[[ "$config" == release || "$config" == debug ]] || { echo "fuzz: FUZZ_CONFIG must be release or debug, not '$config'" >&2; exit 2; }
bin="$scratch/$config"
declare -a phase_names=() phase_times=()
phase() {
  local name="$1"; shift
  echo "::: fuzz phase $name"
  local t0=$SECONDS
  "$@"
  phase_names+=("$name"); phase_times+=($((SECONDS - t0)))
  echo "::: fuzz phase $name done in $((SECONDS - t0)) s"
}
summary() {
  echo "::: fuzz phases"
  for i in "${!phase_names[@]}"; do printf ':::   %-18s %5d s\n' "${phase_names[$i]}" "${phase_times[$i]}"; done
  echo "::: fuzz total $SECONDS s"
}
trap summary EXIT

# Per target: the executable, -max_len, -timeout (seconds per input), extra options.
#   text: 16 KiB, the free tier's cap, not the premium tier's 64 KiB: inputs that long bring the
#         target down to ~7 executions a second (release + ASan + coverage), and what long texts
#         expose, output or time growing faster than the text, the linear bound on the results
#         (FuzzInput.maxAmplification) catches at 1-3 KB already. The unit test replays the
#         committed 30-64 KiB seeds whole. 10 s for one analysis is a hang, not a slow input.
#   json: the service's body cap (256 KiB, HTTPConfiguration.maxBodyBytes).
#   model: the real compiled models that matter as seeds are up to ~10 KB; 64 KiB leaves room. A
#          single allocation over 256 MB is a failure: a file must not make the loader reserve
#          what its size cannot back.
#   cursor: EntryCursor.maxEncodedLength is 512; idempotency: the check's cap is 255 bytes per
#          value, and an input holds several header values (one per line).
config() {
  case "$1" in
    text) echo "FuzzText 16384 10" ;;
    model) echo "FuzzModel 65536 5 -malloc_limit_mb=256" ;;
    json) echo "FuzzJSON 262144 10" ;;
    cursor) echo "FuzzCursor 1024 5" ;;
    idempotency) echo "FuzzIdempotency 1024 5" ;;
    *) echo "fuzz: unknown target $1 (known: ${all_targets[*]})" >&2; return 1 ;;
  esac
}
for t in "${targets[@]}"; do config "$t" >/dev/null; done

prerequisites() {
  scripts/ensure-deps.sh build  # Soma links SQLite, hiredis and libpq
  local swift_bin resource
  swift_bin="$(command -v "$SWIFT")"
  resource="$(dirname "$(readlink -f "$swift_bin")")/../lib/clang"
  if ! compgen -G "$resource/*/lib/linux/libclang_rt.fuzzer-*.a" >/dev/null; then
    echo "fuzz: the Swift toolchain at $(dirname "$swift_bin") has no libFuzzer runtime (libclang_rt.fuzzer); use a swift.org toolchain" >&2
    return 1
  fi
  # Symbolised stacks in reports: the toolchain's llvm-symbolizer, else one on PATH.
  if [[ -z "${ASAN_SYMBOLIZER_PATH:-}" ]]; then
    local sym
    sym="$(dirname "$(readlink -f "$swift_bin")")/llvm-symbolizer"
    [[ -x "$sym" ]] || sym="$(command -v llvm-symbolizer || true)"
    [[ -n "$sym" ]] && export ASAN_SYMBOLIZER_PATH="$sym"
  fi
  # libFuzzer's own deadly-signal handler reports a trap (fatalError, precondition, overflow): the
  # Swift runtime's backtracer would run first and trip ASan while reading memory for its report.
  export SWIFT_BACKTRACE=enable=no
  # The same dependency versions as the root package's build, when it has resolved them.
  if [[ ! -f Fuzz/Package.resolved && -f Package.resolved ]]; then cp Package.resolved Fuzz/Package.resolved; fi
}

build() {
  # Why these flags, and why on the command line rather than in Fuzz/Package.swift: see there.
  # A source saved while the build reads it ("was modified during the build") is retried twice.
  local attempt log="$scratch/build.log"
  mkdir -p "$scratch"
  for attempt in 1 2 3; do
    if env -u SOMA_SLOWDOWN "$SWIFT" build -c "$config" --package-path Fuzz --scratch-path "$scratch" \
      -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -enable-testing 2>&1 | tee "$log"; then
      return 0
    fi
    grep -q 'was modified during the build' "$log" || return 1
    echo "fuzz: a source changed during the build; building again ($attempt of 2)" >&2
  done
  return 1
}

declare -a report=()
failed=0

run_target() {
  local target="$1" exe max_len timeout extra
  read -r exe max_len timeout extra <<<"$(config "$target")"
  local corpus="$scratch/corpus/$target" artifacts="$scratch/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  rm -f "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-* "$artifacts"/slow-unit-*
  local -a options=(
    -max_total_time="$seconds" -max_len="$max_len" -timeout="$timeout" -rss_limit_mb=2048
    -print_final_stats=1 -artifact_prefix="$artifacts/"
  )
  [[ -f "Fuzz/dicts/$target.dict" ]] && options+=(-dict="Fuzz/dicts/$target.dict")
  [[ -n "$extra" ]] && options+=("$extra")
  local log="$artifacts/fuzz.log" status=0
  # The model target writes compiled models of the current format into the corpus at start-up.
  if [[ "$target" == model ]]; then export SOMA_FUZZ_MODEL_SEEDS="$corpus"; else unset SOMA_FUZZ_MODEL_SEEDS; fi
  # New inputs go to the first directory only: Fixtures/fuzz stays as committed.
  "$bin/$exe" "${options[@]}" "$corpus" "Fixtures/fuzz/$target" >"$log" 2>&1 || status=$?
  unset SOMA_FUZZ_MODEL_SEEDS
  local execs files result artifact
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  files="$(find "$corpus" -type f | wc -l)"
  artifact="$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | head -n 1)"
  if [[ "$status" -eq 0 && -z "$artifact" ]]; then
    result=ok
  else
    failed=1
    result="FAILED (exit $status)${artifact:+: $artifact}"
    echo "fuzz: $target failed; the end of $log:" >&2
    grep -v '^#[0-9]' "$log" | tail -n 60 >&2
    if [[ -n "$artifact" ]]; then
      echo "fuzz: reproduce:  $bin/$exe $artifact" >&2
      echo "fuzz: minimise:   $bin/$exe -minimize_crash=1 -max_total_time=60 -exact_artifact_path=$artifacts/minimized $artifact" >&2
      echo "fuzz: keep it:    cp $artifacts/minimized Fixtures/fuzz/$target/crash-<short-name>" >&2
    fi
  fi
  local line
  line="$(printf '%-12s executions %10s  corpus %6s files  %s' "$target" "${execs:-?}" "$files" "$result")"
  report+=("$line")
  echo "fuzz: $line"
}

phase prerequisites prerequisites
phase build build
for t in "${targets[@]}"; do phase "run $t" run_target "$t"; done

echo "::: fuzz results (${seconds} s per target, $config build)"
for line in "${report[@]}"; do echo ":::   $line"; done
exit "$failed"
