#!/usr/bin/env python3
"""Where `soma analyze --jsonl` spends its instructions, per text and per stage: a count, not a time.

    scripts/engine-profile.py [--binary .build/release/soma] [--model-dir .build/models]
                              [--count 1000] [--modules all] [--json OUT] [--keep DIR]

The machine is shared and has no hardware counters, and a sampling profile is flat and blurred
(docs/PERFORMANCE.md, "Engine speed"). Callgrind counts every instruction the process executes,
the same on every run of the same binary over the same input, so a change's effect on a stage is
read to the instruction rather than out of timing noise.

The release binary is copied with its DWARF stripped (`objcopy --strip-debug`: valgrind's
reader gives up on this toolchain's debug information; the symbol table, which is all a per-function
count needs, stays). Callgrind runs it twice, over COUNT and 2 x COUNT real short texts (Debian's
fortunes, scripts/fortunes-jsonl.py); every figure is the difference of the two runs divided by
COUNT, so start-up and model loading (the same in both) drop out exactly. A stage is the inclusive
count of the function that does it (callees included), found by its demangled name.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# (label, pattern on the demangled name of the function whose inclusive count is the stage; None
# for a heading).
STAGES: list[tuple[str, str | None]] = [
    ("whole text: read line, analyse, write line", r"JSONLinesRunner\.process\(_: FoundationEssentials\.Data, lineNumber:"),
    ("  read the line (TextLine.parse)", r"static Soma\.TextLine\.parse\("),
    ("  analyse (Engine.analyze, text to results)", r"Soma\.Engine\.analyze\(_: Swift\.String, modules:"),
    ("    normalise (TextNormalizer)", r"static Soma\.TextNormalizer\.normalize\("),
    ("    tokenise (Tokenizer.tokenize)", r"Soma\.Tokenizer\.tokenize\("),
    ("    split sentences (SentenceSplitter)", r"Soma\.SentenceSplitter\.\(split in"),
    ("    per-token facts (Document.init)", r"Soma\.Document\.init\(text:"),
    ("    emotion", r"EmotionAnalyzer\.analyze\(Soma\.Document\)"),
    ("    reasoning", r"ReasoningAnalyzer\.analyze\(Soma\.Document\)"),
    ("    values", r"ValuesAnalyzer\.analyze\(Soma\.Document\)"),
    ("    theory of mind", r"TheoryOfMindAnalyzer\.analyze\(Soma\.Document\)"),
    ("    narrative", r"NarrativeAnalyzer\.analyze\(Soma\.Document\)"),
    ("    of the modules' work, in all of them together:", None),
    ("      agent detection (theory of mind, narrative)", r"AgentDetector\.agents\(in:"),
    ("      trie scans (PatternMatcher.longestMatches)", r"PatternMatcher\.longestMatches\("),
    ("      token ids (PatternMatcher.tokenIDs)", r"PatternMatcher\.tokenIDs\("),
    ("  write the results (TextLine.output)", r"Soma\.TextLine\.output\("),
]

# Runtime work spread over every stage: exclusive counts, summed over the functions matched.
RUNTIME = [
    ("retain/release (ARC)", r"^swift_(retain|release|bridgeObjectRetain|bridgeObjectRelease|unknownObjectRetain|unknownObjectRelease)(\b|')"),
    ("malloc/free", r"^(malloc|free|cfree|_int_malloc|_int_free|malloc_consolidate|swift_slowAlloc|swift_slowDealloc|__malloc_usable_size)\b"),
    ("generic metadata look-ups", r"(getGenericMetadata|ConcurrentReadableHashMap|MetadataCacheKey|getCache|instantiateCanonicalPrespecialized|swift_getCanonicalPrespecialized)"),
    ("String hashing (Hasher)", r"Swift\.Hasher\.|Swift\.String\.hash\(into:"),
    ("Token copies and destroys", r"^(outlined init with copy of|outlined copy of|outlined destroy of|initializeWithCopy value witness for|destroy value witness for|assignWithCopy value witness for) Soma\.Token$"),
]


def callgrind(binary: Path, model_dir: Path, jsonl: Path, modules: str, out: Path) -> None:
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(binary), "analyze", "--jsonl", "--model-dir", str(model_dir)]
    if modules != "all":
        command += ["--modules", modules]
    with open(jsonl, "rb") as stdin, open(out.with_suffix(".out"), "wb") as stdout:
        subprocess.run(command, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL, check=True)


def counts(profile: Path, inclusive: bool) -> dict[str, int]:
    """Demangled function name -> instruction count (inclusive or exclusive) in PROFILE."""
    flags = ["--inclusive=yes"] if inclusive else []
    text = subprocess.run(["callgrind_annotate", *flags, "--threshold=100", str(profile)], capture_output=True, text=True, check=True).stdout
    rows: dict[str, int] = {}
    names: list[str] = []
    values: list[int] = []
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([\s\d.]+%\)\s+(?:\S*?:)?(\S.*?)\s+\[[^\]]*\]\s*$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        values.append(int(m.group(1).replace(",", "")))
        names.append(m.group(2).split(":", 1)[1] if m.group(2).startswith("???:") else m.group(2))
    demangled = subprocess.run(["swift", "demangle", "--compact"], input="\n".join(names), capture_output=True, text=True, check=True).stdout.splitlines()
    if len(demangled) != len(names):
        demangled = names
    for name, value in zip(demangled, values):
        # Recursion shows as name'2: count the outermost frame only.
        if re.search(r"'\d+$", name) and inclusive:
            continue
        rows[name] = rows.get(name, 0) + value
    return rows


def stage(rows: dict[str, int], pattern: str, largest: bool) -> int:
    """The count of the functions whose name matches PATTERN: the largest (an inclusive stage: a
    specialised copy and its thunk would count twice) or the sum (exclusive runtime work)."""
    found = [v for n, v in rows.items() if re.search(pattern, n)]
    if not found:
        return 0
    return max(found) if largest else sum(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", type=Path, default=REPO / ".build/release/soma")
    parser.add_argument("--model-dir", type=Path, default=REPO / ".build/models")
    parser.add_argument("--count", type=int, default=1000, help="texts in the smaller run (the larger has twice as many)")
    parser.add_argument("--modules", default="all", help="all, or a comma-separated list as soma analyze --modules takes")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="keep the two callgrind profiles in this directory")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_annotate", "objcopy"):
        if shutil.which(tool) is None:
            print(f"engine-profile: {tool} is missing (scripts/ensure-deps.sh profile installs it)", file=sys.stderr)
            return 1
    if not args.binary.exists():
        print(f"engine-profile: no binary at {args.binary} (make release)", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory(prefix="soma-profile-") as tmp:
        work = Path(tmp)
        binary = work / "soma"
        subprocess.run(["objcopy", "--strip-debug", str(args.binary), str(binary)], check=True)
        small, large = work / "small.jsonl", work / "large.jsonl"
        for path, count in ((small, args.count), (large, 2 * args.count)):
            subprocess.run([sys.executable, str(REPO / "scripts/fortunes-jsonl.py"), str(count), str(path), "--ids", "numbers"], check=True, stdout=subprocess.DEVNULL)
        profiles = []
        for path in (small, large):
            out = work / f"{path.stem}.callgrind"
            callgrind(binary, args.model_dir, path, args.modules, out)
            profiles.append(out)
        # Every text answered, and the larger run's output starts with the smaller run's, line for
        # line: the same texts, the same answers.
        answers = [p.with_suffix(".out").read_bytes() for p in profiles]
        if [a.count(b"\n") for a in answers] != [args.count, 2 * args.count]:
            print("engine-profile: a run did not answer every text", file=sys.stderr)
            return 1
        if not answers[1].startswith(answers[0]):
            print("engine-profile: the two runs answered the same texts differently", file=sys.stderr)
            return 1
        inclusive = [counts(p, inclusive=True) for p in profiles]
        exclusive = [counts(p, inclusive=False) for p in profiles]
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for p in profiles:
                shutil.copy(p, args.keep / p.name)

    def per_text(rows: list[dict[str, int]], pattern: str, largest: bool) -> float:
        return (stage(rows[1], pattern, largest) - stage(rows[0], pattern, largest)) / args.count

    whole = per_text(inclusive, STAGES[0][1], True)
    if whole <= 0:
        print("engine-profile: no per-text count found (were the function names renamed?)", file=sys.stderr)
        return 1
    figures = {"count": args.count, "modules": args.modules, "stages": {}, "runtime": {}}
    print(f"Instructions per text, {args.count} vs {2 * args.count} fortunes, modules: {args.modules} (callgrind, start-up excluded)")
    print(f"{'stage':<56} {'instructions':>12} {'share':>7}")
    for label, pattern in STAGES:
        if pattern is None:
            print(label)
            continue
        value = per_text(inclusive, pattern, True)
        figures["stages"][label.strip()] = round(value)
        print(f"{label:<56} {value:>12,.0f} {value / whole:>7.1%}")
    print(f"\n{'runtime work inside those stages (exclusive)':<56} {'instructions':>12} {'share':>7}")
    for label, pattern in RUNTIME:
        value = per_text(exclusive, pattern, False)
        figures["runtime"][label] = round(value)
        print(f"{label:<56} {value:>12,.0f} {value / whole:>7.1%}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
