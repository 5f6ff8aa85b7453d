#!/usr/bin/env python3
"""Emotion valence on the blind set (Fixtures/eval-blind): soma against VADER and the majority class.

    scripts/accuracy-peers.py [--binary .build/release/soma] [--model-dir .build/models]

Items count only where the writer and the second reader agree on the valence (as in
AccuracyTests). Both systems get the same rule: compound/valence >= 0.05 positive, <= -0.05
negative, else neutral (VADER's documented thresholds; soma's task uses the same). The majority
class is taken from the old evaluation set's dev split (the blind set has no split of its own), as
the Swift report does. Aggregate figures only: a blind item's text or label is never printed.
VADER 3.3.2 (PyPI, MIT licence) runs from .venv-peers, created when missing (as bench-peers).
"""
from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv-peers"


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sign(value: float) -> str:
    return "positive" if value >= 0.05 else "negative" if value <= -0.05 else "neutral"


def vader_scores(texts: list[str]) -> list[float]:
    if not (VENV / "bin/python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin/pip"), "install", "-q", "vaderSentiment==3.3.2"], check=True)
    code = ("import json, sys\nfrom vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer\n"
            "a = SentimentIntensityAnalyzer()\n"
            "for line in sys.stdin: print(a.polarity_scores(json.loads(line))['compound'])\n")
    out = subprocess.run([str(VENV / "bin/python"), "-c", code], input="".join(json.dumps(t) + "\n" for t in texts),
                         capture_output=True, text=True, check=True).stdout
    return [float(x) for x in out.split()]


def soma_scores(binary: Path, model_dir: Path, texts: list[str]) -> list[float]:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": str(i), "text": text}) + "\n")
    out = subprocess.run([str(binary), "analyze", "--jsonl", "--modules", "emotion", "--model-dir", str(model_dir), f.name],
                         capture_output=True, text=True, check=True).stdout
    Path(f.name).unlink()
    results = {r["id"]: r["results"]["emotion"]["valence"] for r in map(json.loads, out.splitlines())}
    return [results[str(i)] for i in range(len(texts))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", type=Path, default=REPO / ".build/release/soma")
    parser.add_argument("--model-dir", type=Path, default=REPO / ".build/models")
    args = parser.parse_args()
    first = read(REPO / "Fixtures/eval-blind/emotion.jsonl")
    second = {item["id"]: item for item in read(REPO / "Fixtures/eval-blind/second-reader/emotion.jsonl")}
    items = [i for i in first if second.get(i["id"], {}).get("valence") == i["valence"]]
    texts = [i["text"] for i in items]
    gold = [i["valence"] for i in items]
    dev = [i for i in read(REPO / "Fixtures/eval/emotion.jsonl") if i.get("split") == "dev"]
    majority = collections.Counter(i["valence"] for i in dev).most_common(1)[0][0] if dev else "neutral"

    def accuracy(predicted: list[str]) -> float:
        return 100 * sum(p == g for p, g in zip(predicted, gold)) / len(gold)

    soma = accuracy([sign(v) for v in soma_scores(args.binary, args.model_dir, texts)])
    vader = accuracy([sign(v) for v in vader_scores(texts)])
    base = accuracy([majority] * len(gold))
    print(f"accuracy-peers: emotion valence sign on the blind set, {len(items)} of {len(first)} items "
          f"(both readers agree); same thresholds (±0.05) for both systems")
    print(f"  soma ({args.model_dir})  {soma:5.1f} %")
    print(f"  VADER 3.3.2 (compound)      {vader:5.1f} %")
    print(f"  majority class ({majority})  {base:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
