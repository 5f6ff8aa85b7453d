#!/usr/bin/env bash
# Peer comparison: VADER (vaderSentiment, PyPI, in a venv) against `soma analyze --jsonl` (release)
# over the same real texts (Debian's fortunes), in one run. Prints texts/s for each and the ratios:
# soma's emotion module alone against VADER's sentiment, and soma's five modules against VADER.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-.build/release/soma}"
count="${2:-5000}"
venv=".venv-peers"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "vaderSentiment==3.3.2"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 scripts/fortunes-jsonl.py "$count" "$work/in.jsonl" --ids numbers

# Both sides are timed as whole processes over the same JSON Lines file: start-up, lexicon or
# model loading, JSON in and out, analysis.
cat > "$work/vader_jsonl.py" <<'PY'
import json, sys
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
analyzer = SentimentIntensityAnalyzer()
out = sys.stdout
for line in open(sys.argv[1], encoding="utf-8"):
    item = json.loads(line)
    out.write(json.dumps({"id": item["id"], "results": {"sentiment": analyzer.polarity_scores(item["text"])}}) + "\n")
PY

timed() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > /dev/null
  t1=$(date +%s.%N)
  python3 -c "print($t1 - $t0)"
}
vader_s=$(timed "$venv/bin/python" "$work/vader_jsonl.py" "$work/in.jsonl")
models=".build/models"
[[ -f "$models/emotion.somamodel" ]] || models="Fixtures/models"
emotion_s=$(timed "$bin" analyze --jsonl --model-dir "$models" --modules emotion "$work/in.jsonl")
all_s=$(timed "$bin" analyze --jsonl --model-dir "$models" "$work/in.jsonl")

python3 - "$count" "$vader_s" "$emotion_s" "$all_s" <<'PY'
import sys
n, vader, emotion, five = int(sys.argv[1]), *map(float, sys.argv[2:])
print(f"bench-peers: {n} fortunes, JSON Lines in and out, whole processes timed, same machine, one run")
print(f"  VADER 3.3.2 sentiment (CPython 3, one core)             {n / vader:8.0f} texts/s")
print(f"  soma emotion module (release, compiled models, 2 cores) {n / emotion:8.0f} texts/s  {vader / emotion:6.1f}x VADER")
print(f"  soma all five modules (release, compiled models)        {n / five:8.0f} texts/s  {vader / five:6.1f}x VADER")
PY
