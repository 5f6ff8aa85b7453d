#!/usr/bin/env python3
"""Writes COUNT lines of {"id", "text"} JSON from Debian's fortunes package (real text by others;
installed by scripts/ensure-deps.sh, never committed), cycling when COUNT exceeds the corpus.
The same collections and splitting as Sources/Soma/Evaluation/ReferenceCorpus.swift.

Usage: fortunes-jsonl.py COUNT OUT [--ids names|numbers] [--no-cycle]
  --no-cycle: fail when the corpus has fewer than COUNT texts (every line distinct)
"""
import json
import os
import sys

ROOT = "/usr/share/games/fortunes"
SKIP = {"art", "ascii-art"}


def fortunes():
    texts = []
    for name in sorted(os.listdir(ROOT)):
        path = os.path.join(ROOT, name)
        if "." in name or name in SKIP or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, block in enumerate(f.read().split("\n%\n")):
                if block.strip():
                    texts.append((f"{name}:{n}", block.strip()))
    return texts


def main() -> int:
    count, out = int(sys.argv[1]), sys.argv[2]
    numbers = "--ids" in sys.argv and sys.argv[sys.argv.index("--ids") + 1] == "numbers"
    texts = fortunes()
    if not texts:
        sys.exit(f"no fortunes under {ROOT}: run scripts/ensure-deps.sh corpus")
    if "--no-cycle" in sys.argv and len(texts) < count:
        sys.exit(f"only {len(texts)} fortunes found, need {count}")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for i in range(count):
            name, text = texts[i % len(texts)]
            f.write(json.dumps({"id": i if numbers else name, "text": text}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
