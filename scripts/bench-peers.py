#!/usr/bin/env python3
"""Peer comparison: VADER against `soma analyze --jsonl`, in CPU per text.

    scripts/bench-peers.py [--binary .build/release/soma] [--count 100000] [--runs 3] [--json OUT]

VADER 3.3.2 (vaderSentiment, PyPI, MIT, in .venv-peers, created when missing) and soma (release,
compiled models from .build/models, else the source models) read the same JSON Lines file of
real short texts (Debian's fortunes, repeated to --count) and write JSON Lines, as whole processes:
start-up, lexicon or model loading, JSON in and out, analysis. Each is measured by the CPU its
process spent (user + system, from the kernel's accounting of the finished child), which does not
depend on how many cores it used or on what else runs on the machine, and by wall time.

Three commands: VADER's sentiment score; soma's emotion module alone; soma's five modules. Each
runs --runs times, interleaved (VADER, emotion, five, VADER, ...), and the median is reported. The
fixed cost (the same command over one text) is measured too and must be under 5 % of a run, so
the figures are per-text costs, not start-up.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv-peers"

VADER_JSONL = """
import json, sys
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
analyzer = SentimentIntensityAnalyzer()
out = sys.stdout
for line in open(sys.argv[1], encoding="utf-8"):
    item = json.loads(line)
    out.write(json.dumps({"id": item["id"], "results": {"sentiment": analyzer.polarity_scores(item["text"])}}) + "\\n")
"""


def measure(command: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of COMMAND, its output discarded."""
    start = os.times()
    with open(os.devnull, "wb") as devnull:
        subprocess.run(command, stdout=devnull, check=True)
    end = os.times()
    cpu = (end.children_user - start.children_user) + (end.children_system - start.children_system)
    return cpu, end.elapsed - start.elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", type=Path, default=REPO / ".build/release/soma")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    if not (VENV / "bin/python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin/pip"), "install", "-q", "vaderSentiment==3.3.2"], check=True)
    models = REPO / ".build/models"
    if not (models / "emotion.somamodel").exists():
        models = REPO / "Fixtures/models"

    with tempfile.TemporaryDirectory() as work:
        corpus, one = Path(work) / "in.jsonl", Path(work) / "one.jsonl"
        subprocess.run([sys.executable, str(REPO / "scripts/fortunes-jsonl.py"), str(args.count), str(corpus), "--ids", "numbers"], check=True)
        one.write_text(corpus.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
        script = Path(work) / "vader_jsonl.py"
        script.write_text(VADER_JSONL, encoding="utf-8")
        texts = sum(1 for _ in corpus.open(encoding="utf-8"))
        mean_bytes = corpus.stat().st_size / texts

        commands = {
            "VADER 3.3.2 sentiment (CPython)": lambda f: [str(VENV / "bin/python"), str(script), str(f)],
            "soma emotion module": lambda f: [str(args.binary), "analyze", "--jsonl", "--model-dir", str(models), "--modules", "emotion", str(f)],
            "soma five modules": lambda f: [str(args.binary), "analyze", "--jsonl", "--model-dir", str(models), str(f)],
        }
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        fixed: dict[str, float] = {}
        for name, command in commands.items():
            fixed[name] = statistics.median(measure(command(one))[0] for _ in range(3))
        for _ in range(args.runs):
            for name, command in commands.items():
                runs[name].append(measure(command(corpus)))

    results = {}
    for name in commands:
        cpu = statistics.median(c for c, _ in runs[name])
        wall = statistics.median(w for _, w in runs[name])
        results[name] = {
            "cpu_us_per_text": cpu / texts * 1e6,
            "cpu_us_per_text_runs": [round(c / texts * 1e6, 2) for c, _ in runs[name]],
            "texts_per_cpu_second": texts / cpu,
            "texts_per_second_wall": texts / wall,
            "fixed_cpu_seconds": fixed[name],
            "fixed_share": fixed[name] / cpu,
        }
    vader = results["VADER 3.3.2 sentiment (CPython)"]["cpu_us_per_text"]
    print(f"bench-peers: {texts:,} fortunes ({mean_bytes:.0f} bytes of JSON Lines each), JSON Lines in and out, whole processes;")
    print(f"  CPU = user + system of the process, median of {args.runs} interleaved runs; the fixed cost is one text's run")
    print(f"  {'':34} {'CPU µs/text':>11}  {'runs':>22}  {'per CPU s vs VADER':>18}  {'texts/s (wall)':>14}  {'fixed':>6}")
    for name, r in results.items():
        runs_text = " / ".join(f"{x:.1f}" for x in r["cpu_us_per_text_runs"])
        print(f"  {name:34} {r['cpu_us_per_text']:11.1f}  {runs_text:>22}  {vader / r['cpu_us_per_text']:17.2f}x"
              f"  {r['texts_per_second_wall']:14,.0f}  {100 * r['fixed_share']:5.1f}%")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"texts": texts, "mean_bytes": mean_bytes, "runs": args.runs, "results": results}, indent=2) + "\n")
    over = [name for name, r in results.items() if r["fixed_share"] >= 0.05]
    if over:
        print(f"bench-peers: the fixed cost is 5 % or more of a run for {', '.join(over)}: raise --count", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
