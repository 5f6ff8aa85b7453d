#!/usr/bin/env python3
"""The engine gate's baseline and its noise (the gate itself is Benchmarks' EngineGate).

    scripts/engine-gate.py record [--runs 5] [--tolerance 0.2]   # Benchmarks/engine-gate.json
    scripts/engine-gate.py noise  [--runs 5]                      # unchanged runs against it

`record` runs EngineGate --runs times (separate processes: what one process's rounds cannot
average out, such as its memory layout, differs between runs) and commits each workload's median
ratio. `noise` runs the unchanged gate --runs times against the committed file and prints each
workload's ratio per run and its largest deviation from the committed ratio: the figure the
tolerance must stay well above (docs/PERFORMANCE.md, "The engine gate").
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
GATE = REPO / "Benchmarks/.build/release/EngineGate"
BASELINE = REPO / "Benchmarks/engine-gate.json"


def run(extra: list[str], out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "SOMA_SLOWDOWN"}
    subprocess.run([str(GATE), "--out", str(out)] + extra, check=False, env=env, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("record", "noise"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tolerance", type=float, default=0.2)
    args = parser.parse_args()
    if not GATE.exists():
        print(f"{GATE} is missing: cd Benchmarks && swift build -c release --product EngineGate")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        if args.command == "record":
            runs = [run([], Path(tmp) / f"{i}.json")["workloads"] for i in range(args.runs)]
            ratios = {name: round(statistics.median(r[name]["ratio_p50"] for r in runs), 4)
                      for name in runs[0] if name != "reference"}
            BASELINE.write_text(json.dumps({
                "_comment": "The engine gate's committed ratios: each workload's median CPU per run over the same-run "
                            "reference's, the median of " + str(args.runs) + " runs (scripts/engine-gate.py record). "
                            "A workload fails above ratio x (1 + tolerance); the noise that chose the tolerance is in "
                            "docs/PERFORMANCE.md.",
                "tolerance": args.tolerance, "ratios": ratios}, indent=2, sort_keys=True) + "\n")
            print(f"engine gate: recorded {len(ratios)} ratios (median of {args.runs} runs) in {BASELINE}")
            return 0
        committed = json.loads(BASELINE.read_text())
        runs = [run(["--check", str(BASELINE)], Path(tmp) / f"{i}.json") for i in range(args.runs)]
    red = sum(any(not c["passed"] for c in r["checks"]) for r in runs)
    print(f"{'workload':<26} {'committed':>9}  " + "  ".join(f"run {i + 1:<4}" for i in range(args.runs)) + "  max dev")
    worst = 0.0
    for name, ratio in sorted(committed["ratios"].items()):
        values = [r["workloads"][name]["ratio_p50"] for r in runs]
        dev = max(abs(v / ratio - 1) for v in values)
        worst = max(worst, dev)
        print(f"{name:<26} {ratio:>9.4f}  " + "  ".join(f"{v:8.4f}" for v in values) + f"  {100 * dev:5.1f} %")
    print(f"engine gate noise: {args.runs} unchanged runs, {red} red; largest deviation {100 * worst:.1f} % "
          f"(tolerance {100 * committed['tolerance']:.0f} %)")
    return 1 if red else 0


if __name__ == "__main__":
    sys.exit(main())
