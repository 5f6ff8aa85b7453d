#!/usr/bin/env bash
# JSON Lines smoke run: 10,000 quotations written by others (Debian's fortunes package, installed
# by scripts/ensure-deps.sh, not committed) through `soma analyze --jsonl`, then a file of broken
# lines. Passes when every input line yields exactly one output line with the right id, valid
# inputs yield results and broken ones yield errors, and the process exits 0.
set -euo pipefail
bin="${1:?usage: jsonl-smoke.sh path/to/soma [count]}"
count="${2:-10000}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 "$(dirname "$0")/fortunes-jsonl.py" "$count" "$work/in.jsonl" --no-cycle

start=$(date +%s.%N)
"$bin" analyze --jsonl "$work/in.jsonl" > "$work/out.jsonl"
end=$(date +%s.%N)

# Broken lines: invalid JSON, invalid UTF-8, missing text, wrong type, not an object, empty line.
{
  printf '%s\n' '{"id": 1, "text": "fine and happy"}'
  printf '%s\n' '{"id": 2, "text": '
  printf '{"id": 3, "text": "bad \xff\xfe bytes"}\n'
  printf '%s\n' '{"id": 4}'
  printf '%s\n' '{"id": 5, "text": 42}'
  printf '%s\n' '[1, 2, 3]'
  printf '\n'
  printf '%s\n' '{"id": 8, "text": "", "source": "empty"}'
  printf '%s' '{"id": 9, "text": "no final newline"}'
} > "$work/bad.jsonl"
"$bin" analyze --jsonl "$work/bad.jsonl" > "$work/bad.out"

python3 - "$work" "$count" "$start" "$end" <<'PY'
import json, sys
work, count, start, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
ins = [json.loads(l) for l in open(f"{work}/in.jsonl", encoding="utf-8")]
outs = [json.loads(l) for l in open(f"{work}/out.jsonl", encoding="utf-8")]
assert len(outs) == len(ins) == count, f"{len(outs)} output lines for {len(ins)} inputs"
for a, b in zip(ins, outs):
    assert b.get("id") == a["id"], f"id mismatch {a['id']} -> {b.get('id')}"
    r = b.get("results")
    assert r is not None, f"{a['id']}: {b.get('error')}"
    assert set(r) == {"emotion", "reasoning", "values", "theory_of_mind", "narrative"}, f"{a['id']}: modules {sorted(r)}"
bad = [json.loads(l) for l in open(f"{work}/bad.out", encoding="utf-8")]
expect = ["results", "invalid_json", "invalid_utf8", "validation_failed", "validation_failed", "validation_failed", "invalid_json", "results", "results"]
assert len(bad) == len(expect), f"{len(bad)} lines for {len(expect)} broken inputs"
for i, (line, e) in enumerate(zip(bad, expect)):
    got = "results" if "results" in line else line["error"]["code"]
    assert got == e, f"broken line {i + 1}: expected {e}, got {got}: {line}"
assert bad[7].get("source") == "empty", "extra fields are echoed"
secs = end - start
print(f"jsonl smoke: {count} fortunes -> {len(outs)} result lines, 0 errors; {len(bad)} broken lines -> {len(bad)} answers")
print(f"jsonl smoke: {secs:.2f} s, {count / secs:.0f} texts/s")
print("smoke: 2 passed, 0 failed")
PY
