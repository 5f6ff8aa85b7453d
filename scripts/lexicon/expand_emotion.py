#!/usr/bin/env python3
"""Expand the hand-written emotion seed into the Soma emotion model file.

Input : scripts/lexicon/emotion_seed.tsv       (hand-written, 4 TSV columns, class `lex`;
                                               the flags column holds part-of-speech hints:
                                               adj / verb / noun, comma-separated, or "-")
        /usr/share/dict/words                  (Debian package `wamerican`: the real-word filter)
        Fixtures/models/emotion/10_vader.tsv   (VADER valences: never overridden by derived forms)
        Fixtures/models/emotion/20_rules.tsv   (degree/negator/contrast words: never made `lex`)
Output: Fixtures/models/emotion/30_plutchik.tsv

What it does
- Every seed line is written as is (weights unchanged) and flagged `protected`: the hand-curated
  core is never pruned by `soma optimize`; derived forms are prunable (the POS hints are seed-only).
- For single-word seeds it generates inflected / derived forms from the POS hints:
    verb -> -s/-es, -ed, -ing      noun -> plural -s/-es     adj -> -ly, -ness, -er, -est
  with the usual spelling rules (final-e dropping, consonant doubling, y -> i, -ic -> -icked,
  -ie -> -ying, -le -> -ly, -ic -> -ically). Several candidate spellings may be produced; a
  derived form is kept only if it is a word of /usr/share/dict/words (lower-case entries), is not
  itself a seed pattern, is not a degree/negator/contrast pattern of 20_rules.tsv and is not in
  BLOCK (forms whose meaning drifts away from the base word, e.g. numb -> "number").
- Derived forms carry the seed's weights; valence is scaled by 0.9, and only when the seed line had
  a valence AND VADER has no entry for the derived form (VADER's own valence is never overridden).
- Hand-gesture emoji seeds also get the five Fitzpatrick skin-tone variants (same weights).
- De-duplicated: a seed line wins over a derived form; among derived forms the first one wins.

Usage: python3 scripts/lexicon/expand_emotion.py   (stdlib only; needs `apt-get install wamerican`)
"""
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SEED = os.path.join(ROOT, "scripts", "lexicon", "emotion_seed.tsv")
VADER = os.path.join(ROOT, "Fixtures", "models", "emotion", "10_vader.tsv")
RULES = os.path.join(ROOT, "Fixtures", "models", "emotion", "20_rules.tsv")
OUT = os.path.join(ROOT, "Fixtures", "models", "emotion", "30_plutchik.tsv")
WORDS = "/usr/share/dict/words"

EMOTIONS = ["joy", "trust", "fear", "surprise", "sadness", "disgust", "anger", "anticipation"]
ORDER = ["valence", "arousal"] + EMOTIONS
KNOWN_FLAGS = {"adj", "verb", "noun"}

# Derived forms that are real words but do not carry the base word's emotion
# (other meaning, or mostly used as a plain intensifier).
BLOCK = {
    # other word / other meaning
    "number",                          # numb + er
    "stranger",                        # mostly the noun "a stranger"
    "wined", "wining",                 # win -> wine
    "planed", "planing",               # plan -> plane
    "robed", "robing",                 # rob -> robe
    "moped",                           # mope -> moped (vehicle)
    "belongings",                      # possessions
    "justices",                        # judges
    "craps",                           # dice game
    "ruins",                           # "the ruins"
    "pains",                           # "takes pains"
    "respects",                        # "in many respects"
    "bursted", "bursting",
    "discriminating",                  # "discriminating taste"
    # mostly neutral in use
    "missing",                         # "missing data"
    "expecting", "intended",
    "plans", "planned", "planning",
    "agreed", "agrees", "agreeing",
    "accepted", "accepting", "accepts",
    "supports", "supported", "supporting",
    "stresses", "stressing",           # "stresses the importance"
    "steadily", "consistently", "accurately",
    "accidentally", "curiously", "oddly", "honestly", "readily",
    # used mainly as plain intensifiers ("terribly sorry", "perfectly fine")
    "madly", "grossly", "terribly", "horribly", "dreadfully", "frightfully", "ridiculously",
    "perfectly", "legitimately", "overwhelmingly", "absurdly", "stupidly",
    # slang / odd
    "sickest", "fairer", "fairest", "deadness",
}

# Emoji that take Fitzpatrick skin-tone modifiers.
SKIN_TONE_BASES = {"👍", "👎", "👌", "👏", "🙌", "🙏", "💪", "🤞", "🫶", "🤦"}
SKIN_TONES = ["\U0001F3FB", "\U0001F3FC", "\U0001F3FD", "\U0001F3FE", "\U0001F3FF"]

VOWELS = set("aeiou")


def fmt(v: float) -> str:
    s = ("%.2f" % v).rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def parse_weights(text):
    w = {}
    if text == "-":
        return w
    for item in text.split():
        k, v = item.split("=")
        w[k] = float(v)
    return w


def weights_text(w):
    parts = [k + "=" + fmt(w[k]) for k in ORDER if k in w]
    parts += [k + "=" + fmt(w[k]) for k in sorted(w) if k not in ORDER]
    return " ".join(parts) if parts else "-"


def is_cvc(w):
    """Ends consonant-vowel-consonant (candidate for final-consonant doubling)."""
    return (len(w) >= 3 and w[-1] not in VOWELS and w[-1] not in "wxy"
            and w[-2] in VOWELS and w[-3] not in VOWELS)


def cons_y(w):
    return len(w) >= 2 and w[-1] == "y" and w[-2] not in VOWELS


def plural_s(w):
    if re.search(r"(s|x|z|ch|sh)$", w):
        return [w + "es"]
    if cons_y(w):
        return [w[:-1] + "ies"]
    c = [w + "s"]
    if w.endswith("o"):
        c.append(w + "es")
    if w.endswith("f"):
        c.append(w[:-1] + "ves")
    if w.endswith("fe"):
        c.append(w[:-2] + "ves")
    return c


def past_ed(w):
    if w.endswith("e"):
        return [w + "d"]
    if cons_y(w):
        return [w[:-1] + "ied"]
    if w.endswith("ic"):
        return [w + "ked", w + "ed"]
    c = [w + "ed"]
    if is_cvc(w):
        c.append(w + w[-1] + "ed")
    return c


def pres_ing(w):
    if w.endswith("ie"):
        return [w[:-2] + "ying"]
    if re.search(r"(ee|ye|oe)$", w):
        return [w + "ing"]
    if w.endswith("e") and len(w) > 2:
        return [w[:-1] + "ing"]
    if w.endswith("ic"):
        return [w + "king", w + "ing"]
    c = [w + "ing"]
    if is_cvc(w):
        c.append(w + w[-1] + "ing")
    return c


def adverb_ly(w):
    if cons_y(w):
        return [w[:-1] + "ily"]
    if re.search(r"[^aeiou]le$", w):
        return [w[:-1] + "y"]
    if w.endswith("ic"):
        return [w + "ally", w + "ly"]
    if w.endswith("ll"):
        return [w + "y"]
    if w.endswith("ue"):
        return [w[:-1] + "ly"]
    return [w + "ly"]


def noun_ness(w):
    if cons_y(w):
        return [w[:-1] + "iness"]
    return [w + "ness"]


def comparative(w):
    if w.endswith("e"):
        return [w + "r", w + "st"]
    if cons_y(w):
        return [w[:-1] + "ier", w[:-1] + "iest"]
    c = [w + "er", w + "est"]
    if is_cvc(w):
        c += [w + w[-1] + "er", w + w[-1] + "est"]
    return c


def candidates(word, flags):
    out = []
    if "verb" in flags:
        out += plural_s(word) + past_ed(word) + pres_ing(word)
    if "noun" in flags:
        out += plural_s(word)
    if "adj" in flags:
        out += adverb_ly(word) + noun_ness(word) + comparative(word)
    seen, uniq = set(), []
    for c in out:
        if c != word and c not in seen:
            seen.add(c)
            uniq.append(c)
    return uniq


def load_patterns(path, want_class=None, exclude_class=None):
    pats = set()
    if not os.path.exists(path):
        return pats
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 4:
                continue
            if want_class and cols[1] != want_class:
                continue
            if exclude_class and cols[1] == exclude_class:
                continue
            pats.add(cols[0])
    return pats


def main() -> int:
    if not os.path.exists(WORDS):
        sys.exit("missing %s - run: apt-get install -y wamerican" % WORDS)
    with open(WORDS, encoding="utf-8", errors="replace") as fh:
        dictionary = {w.strip() for w in fh if re.fullmatch(r"[a-z]+", w.strip())}
    vader = load_patterns(VADER, want_class="lex")
    rule_words = load_patterns(RULES, exclude_class="lex")

    seeds = []  # (pattern, weights, flags, comment_before)
    errors = 0
    with open(SEED, encoding="utf-8") as fh:
        for n, raw in enumerate(fh, 1):
            line = raw.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith("#"):
                seeds.append((None, None, None, line))
                continue
            cols = line.split("\t")
            if len(cols) != 4 or cols[1] != "lex":
                print("seed line %d: bad line: %r" % (n, line), file=sys.stderr)
                errors += 1
                continue
            flags = set() if cols[3] == "-" else set(cols[3].split(","))
            if flags - KNOWN_FLAGS:
                print("seed line %d: unknown flag(s) %s" % (n, flags - KNOWN_FLAGS), file=sys.stderr)
                errors += 1
            seeds.append((cols[0], parse_weights(cols[2]), flags, None))
    if errors:
        return 1

    seed_patterns = {s[0] for s in seeds if s[0]}
    emitted = set()
    lines = []
    n_seed = n_derived = n_tones = 0
    for pattern, w, flags, comment in seeds:
        if comment is not None:
            lines.append(comment)
            continue
        if pattern in emitted:
            print("duplicate seed pattern skipped: %s" % pattern, file=sys.stderr)
            continue
        emitted.add(pattern)
        # Seed lines are the hand-curated core: protected from frequency pruning.
        lines.append("%s\tlex\t%s\tprotected" % (pattern, weights_text(w)))
        n_seed += 1
        if pattern in SKIN_TONE_BASES:
            for tone in SKIN_TONES:
                v = pattern + tone
                if v not in emitted and v not in seed_patterns:
                    emitted.add(v)
                    lines.append("%s\tlex\t%s\t-" % (v, weights_text(w)))
                    n_tones += 1
        if not flags or not re.fullmatch(r"[a-z]+", pattern):
            continue
        for form in candidates(pattern, flags):
            if (form not in dictionary or form in seed_patterns or form in emitted
                    or form in rule_words or form in BLOCK):
                continue
            dw = dict(w)
            if "valence" in dw:
                if form in vader:
                    del dw["valence"]
                else:
                    dw["valence"] = round(dw["valence"] * 0.9, 2)
            emitted.add(form)
            lines.append("%s\tlex\t%s\t-" % (form, weights_text(dw)))
            n_derived += 1

    header = [
        "# Plutchik emotion lexicon for Soma - GENERATED by scripts/lexicon/expand_emotion.py from",
        "# scripts/lexicon/emotion_seed.tsv (hand-written). Edit the seed, not this file.",
        "# weights: valence (VADER scale; only where VADER lacks the word), arousal [0,1],",
        "# joy trust fear surprise sadness disgust anger anticipation in [0,1].",
    ]
    with open(OUT, "w", encoding="utf-8", newline="\n") as out:
        out.write("\n".join(header + lines) + "\n")

    with_emotion = 0
    bad = 0
    for line in lines:
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 4:
            bad += 1
        if any(k in EMOTIONS for k in parse_weights(cols[2])):
            with_emotion += 1
    print("seed lines: %d, derived forms: %d, skin-tone variants: %d, total entries: %d"
          % (n_seed, n_derived, n_tones, n_seed + n_derived + n_tones))
    if bad:
        print("ERROR: %d lines without 4 columns" % bad)
        return 1
    print("entries with at least one Plutchik emotion weight: %d" % with_emotion)
    return 0


if __name__ == "__main__":
    sys.exit(main())
