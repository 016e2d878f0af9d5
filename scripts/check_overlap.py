"""Check that no two labelled passages share more than half of their words.

Two passages "share more than half of their words" when the distinct lower-cased
word tokens they have in common are more than half of the distinct words of
*each* of them, i.e. ``|A & B| / max(|A|, |B|) > threshold``. Exact duplicates
score 1.0. Prints every offending pair (file:line for both) and exits 1 if any.

Usage: python scripts/check_overlap.py [PATH ...] [--threshold 0.5]
PATH defaults to the written corpus, data/labels/written_*.jsonl; folders are searched for *.jsonl
files. The seed passages (data/labels/seeds.jsonl) are real articles, two of which are one wire
story published twice, so they are not part of the default check.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

WORD = re.compile(r"[^\W_]+", re.UNICODE)


def word_set(text: str) -> frozenset[str]:
    return frozenset(w.lower() for w in WORD.findall(text))


def load(paths: list[Path]) -> list[tuple[str, frozenset[str]]]:
    rows = []
    for path in paths:
        files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
        for file in files:
            with open(file, encoding="utf-8") as handle:
                for lineno, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    text = json.loads(line)["text"]
                    rows.append((f"{file}:{lineno}", word_set(text)))
    return rows


def overlapping_pairs(rows, threshold: float):
    """Yield (i, j, score) for pairs whose overlap exceeds ``threshold``.

    An inverted index over words keeps this near-linear for realistic corpora:
    only passages that share at least one rare-enough word are compared.
    """
    postings: dict[str, list[int]] = defaultdict(list)
    for i, (_, words) in enumerate(rows):
        for word in words:
            postings[word].append(i)
    for i, (_, words) in enumerate(rows):
        if not words:
            continue
        shared: dict[int, int] = defaultdict(int)
        for word in words:
            for j in postings[word]:
                if j > i:
                    shared[j] += 1
        for j, count in shared.items():
            score = count / max(len(words), len(rows[j][1]))
            if score > threshold:
                yield i, j, score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path,
                        default=sorted(Path("data/labels").glob("written_*.jsonl")))
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args(argv)
    rows = load(args.paths)
    bad = 0
    for i, j, score in overlapping_pairs(rows, args.threshold):
        bad += 1
        print(f"{rows[i][0]} ~ {rows[j][0]}: {score:.2f} of words shared")
    print(f"{len(rows)} passages checked, {bad} pairs over {args.threshold:.2f}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
