#!/usr/bin/env python3
"""SLO gates over package-benchmark results.

package-benchmark's own `thresholds check` exits 1 for an improvement as well as for a regression
(measured on this project's runs), and its thresholds are tolerances around a stored p90, not
ceilings. So the gate is this script: it reads the JMH export that
`swift package benchmark --format jmh --path DIR` writes (raw units: microseconds, counts, per second), prints p50/p90/p99 for
every benchmark and metric, and compares each p90 with its ceilings in Benchmarks/ceilings.json:

  "slo"    - the brief's latency ceiling for that module (microseconds), the floor we must beat;
  "budget" - a coarse guard, about 3x the committed median. It catches a gross regression only:
             the gate for a 1.5x regression is the engine gate (Benchmarks/Sources/EngineGate,
             docs/PERFORMANCE.md), a ratio to a reference measured in the same run.

A reference benchmark (REFERENCES below: a peer's code measured beside ours, such as Foundation's
JSONEncoder beside the project's JSONWriter) gets no wall-clock budget: its time is not the
project's to gate, and a malloc-heavy peer is the first to swing 3x when other tenants load the
host (a CI run breached with JSONEncoder alone at 3.3x its median, on code that had passed).
Its allocation count stays gated, since that counts the project's Codable conformances, and the
same-run ratio of ours to it is printed.

Exit 0 when every gated p90 is under its ceilings, 1 on any breach (or a gated benchmark missing),
2 on usage errors. With --expect-fail the meaning flips: the run must breach a budget.
"""
import argparse
import glob
import json
import os
import re
import sys


def norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def load_results(directory: str):
    """(target, benchmark, metric) -> (unit, {50: v, 90: v, 99: v}) from the JMH export."""
    results = {}
    for path in glob.glob(os.path.join(directory, "**", "*.jmh.json"), recursive=True):
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
        for e in entries:
            # package.benchmark.<Target>.<benchmark name>
            _, _, target, name = e["benchmark"].split(".", 3)
            metrics = {"throughput": e["primaryMetric"]}
            for label, m in e.get("secondaryMetrics", {}).items():
                key = {"Time (wall clock)": "wallClock", "Malloc (total)": "mallocCountTotal"}.get(label, norm(label))
                metrics[key] = m
            for metric, m in metrics.items():
                pct = {int(float(k)): float(v) for k, v in m["scorePercentiles"].items() if float(k) in (50.0, 90.0, 99.0)}
                results[(norm(target), norm(name), metric)] = (m["scoreUnit"], pct)
    return results


# Peers measured beside the project's code: benchmark -> the project's benchmark it is compared with.
REFERENCES = {
    "json_encode_full_response_medium_jsonencoder": "json_encode_full_response_medium_jsonwriter",
}


# The brief's per-request latency SLOs (microseconds), by benchmark name prefix.
SLO_US = {
    "emotion": 80_000, "reasoning": 150_000, "values": 100_000,
    "theory_of_mind": 120_000, "narrative": 180_000, "all_modules": 200_000,
}


def propose(results, path: str) -> int:
    """Ceilings from a run on a quiet machine: the committed budgets."""
    out = {"_comment": "p90 ceilings: wallClock in microseconds (slo = the brief, budget = ~3x the committed median), "
                       "mallocCountTotal in allocations (deterministic: budget = committed count + 10%). "
                       "Regenerate with scripts/bench-gate.py RESULTS --propose Benchmarks/ceilings.json."}
    for (target, name, metric), (unit, v) in sorted(results.items()):
        if metric == "throughput":
            continue
        entry = out.setdefault(target, {}).setdefault(name, {})
        if metric == "wallClock" and name in REFERENCES:
            continue
        if metric == "wallClock":
            # ~3x the median; sub-10 us micro-benchmarks get 5x (timer and scheduler noise dominate).
            budget = (3 if v[50] >= 10 else 5) * v[50]
            entry["wallClock"] = {"budget": float(f"{budget:.3g}")}
            for prefix, slo in SLO_US.items():
                if name.startswith(prefix):
                    entry["wallClock"]["slo"] = slo
        elif metric == "mallocCountTotal":
            entry["mallocCountTotal"] = {"budget": int(v[90] * 1.1) + 2}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"bench-gate: wrote ceilings for {sum(len(b) for k, b in out.items() if not k.startswith('_'))} benchmarks to {path}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--ceilings", default=os.path.join(os.path.dirname(__file__), "..", "Benchmarks", "ceilings.json"))
    ap.add_argument("--expect-fail", action="store_true", help="the run had SOMA_SLOWDOWN set: a breach is the expected outcome")
    ap.add_argument("--propose", metavar="FILE", help="write ceilings from these results: budget = 3 x median wall clock, malloc = 1.1 x count, plus the brief's SLOs")
    args = ap.parse_args()

    results = load_results(args.results)
    if not results:
        print(f"bench-gate: no results under {args.results}", file=sys.stderr)
        return 2
    if args.propose:
        return propose(results, args.propose)
    with open(args.ceilings, encoding="utf-8") as f:
        ceilings = json.load(f)

    print(f"{'benchmark':<64} {'metric':<22} {'p50':>12} {'p90':>12} {'p99':>12}  gate")
    breaches, checked = [], 0
    gated = {}
    for target, benches in ceilings.items():
        if target.startswith("_"):
            continue
        for name, metrics in benches.items():
            for metric, limits in metrics.items():
                gated[(norm(target), norm(name), metric)] = limits
    for key in sorted(results):
        unit, v = results[key]
        target, name, metric = key
        limits = gated.get(key)
        verdict = ""
        if limits:
            checked += 1
            p90 = v.get(90)
            verdicts = []
            for kind in ("slo", "budget"):
                if kind in limits:
                    ok = p90 <= limits[kind]
                    verdicts.append(f"{kind} {limits[kind]:g} {'ok' if ok else 'BREACH'}")
                    if not ok:
                        breaches.append(f"{target}/{name} {metric} p90 {p90:g} > {kind} {limits[kind]:g}")
            verdict = "; ".join(verdicts)
        elif metric == "wallClock" and name in REFERENCES:
            verdict = f"reference for {REFERENCES[name]}, not gated"
        print(f"{(target + '/' + name)[:64]:<64} {(metric + ' ' + unit)[:22]:<22} {v.get(50, 0):>12g} {v.get(90, 0):>12g} {v.get(99, 0):>12g}  {verdict}")
    for (target, name, metric), (unit, v) in sorted(results.items()):
        ours = REFERENCES.get(name)
        if metric == "wallClock" and ours and (target, ours, metric) in results:
            mine = results[(target, ours, metric)][1]
            if v.get(50) and mine.get(50):
                print(f"reference: {ours} takes {mine[50] / v[50]:.3f} of {name}'s median time in this run")
    # A filtered run (the slowdown check) gates only what it ran.
    missing = [] if args.expect_fail else [k for k in gated if k not in results]
    for k in missing:
        breaches.append(f"{k[0]}/{k[1]} {k[2]}: gated but missing from the results")
    print(f"bench-gate: {checked} gated metrics checked, {len(breaches)} breach(es)")
    for b in breaches:
        print(f"  BREACH {b}")
    if args.expect_fail:
        slowdown_seen = any("budget" in b or "slo" in b for b in breaches if "missing" not in b)
        if slowdown_seen:
            print("bench-gate: the slowdown run breached its budgets, as it must: the gate can fail")
            return 0
        print("bench-gate: the slowdown run passed every gate: the gate cannot fail", file=sys.stderr)
        return 1
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
