"""Print the figures of the labelled-data card: counts per label and split, co-occurrence, sources.

Usage: python scripts/data_card.py [PATH ...]   (default: data/labels)

Output is Markdown, pasted into data/labels/README.md between the FIGURES markers;
`python scripts/data_card.py --check` exits 1 if the card's figures differ from the data.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path

from toolkit.labels import check_stories, load_examples

CARD = Path("data/labels/README.md")
BEGIN, END = "<!-- FIGURES:BEGIN -->", "<!-- FIGURES:END -->"


def figures(paths: list[Path]) -> str:
    examples, schema, problems = load_examples(paths)
    problems += check_stories(examples)
    splits = ["train", "dev", "test"]
    lines = [f"Passages: **{len(examples)}** in {len({e.story for e in examples})} stories "
             f"({len(problems)} validation problems).", ""]
    by_file = Counter(Path(e.where.rsplit(":", 1)[0]).name for e in examples)
    lines += ["| file | passages |", "|---|---|"] + [f"| {f} | {n} |" for f, n in sorted(by_file.items())] + [""]
    for name, task in schema.tasks.items():
        lines += [f"**{name}** ({task.kind}-label)", "", "| label | " + " | ".join(splits) + " | all | share |",
                  "|---" * (len(splits) + 3) + "|"]
        for label in task.labels:
            counts = [sum(1 for e in examples if e.split == s and label in _values(e.labels.get(name)))
                      for s in splits]
            total = sum(1 for e in examples if label in _values(e.labels.get(name)))
            lines.append(f"| {label} | " + " | ".join(map(str, counts)) + f" | {total} | {total / len(examples):.1%} |")
        lines.append("")
    contact = [set(_values(e.labels.get("contact_type"))) for e in examples if "contact_type" in e.labels]
    if contact:
        pairs = Counter(p for labels in contact for p in combinations(sorted(labels), 2))
        multi = sum(1 for labels in contact if len(labels) > 1)
        lines += [f"Co-occurring contact labels ({multi} passages carry more than one):", "",
                  "| pair | passages |", "|---|---|"]
        lines += [f"| {a} + {b} | {n} |" for (a, b), n in pairs.most_common()] + [""]
    split_counts = Counter(e.split or "(none)" for e in examples)
    lines.append("Passages per split: " + ", ".join(f"{s} {split_counts.get(s, 0)}" for s in splits) + ".")
    sources = Counter("seed article" if e.source.startswith("seed article") else e.source.split(" (")[0]
                      for e in examples)
    lines += ["", "Registers (`source` field, top 12): " + ", ".join(f"{s} {n}" for s, n in sources.most_common(12)) + "."]
    return "\n".join(lines)


def _values(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[Path("data/labels")])
    parser.add_argument("--check", action="store_true", help="compare with data/labels/README.md")
    args = parser.parse_args()
    text = figures(args.paths)
    if args.check:
        card = CARD.read_text()
        current = card.split(BEGIN, 1)[1].split(END, 1)[0].strip()
        if current != text.strip():
            print(f"{CARD}: figures differ from the data; rerun scripts/data_card.py and paste", file=sys.stderr)
            return 1
        print(f"{CARD}: figures match the data")
        return 0
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
