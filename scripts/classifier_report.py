"""Test-split figures of classifiers beside a majority-class and a TF-IDF baseline.

Trains each approach on the train+dev splits of the labelled data (same data as models/default),
evaluates on the test split, and prints a Markdown table of macro-F1 and micro-F1 per task, plus
the figures of an existing bundle if --bundle is given. Everything is measured in this run.

Usage: python scripts/classifier_report.py [--data data/labels] [--bundle models/default]
                                          [--approaches tfidf,logreg,hybrid]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from toolkit.classify.bundle import Bundle
from toolkit.classify.train import train
from toolkit.embed import Embedder
from toolkit.evaluate import evaluate_bundle, task_metrics
from toolkit.labels import load_examples


def majority(data: list[Path]) -> dict:
    """Always predict the most frequent training value (the most frequent label set, multi-label)."""
    train_rows, schema, _ = load_examples(data, splits=["train", "dev"])
    test_rows, _, _ = load_examples(data, splits=["test"])
    test_rows = [e for e in test_rows if e.split == "test"]
    out = {}
    for name, task in schema.tasks.items():
        values = [e.labels[name] for e in train_rows if name in e.labels]
        common = Counter(tuple(v) if isinstance(v, list) else v for v in values).most_common(1)[0][0]
        guess = list(common) if isinstance(common, tuple) else common
        gold = [e.labels[name] for e in test_rows if name in e.labels]
        out[name] = task_metrics(gold, [guess] * len(gold), list(task.labels), task.kind)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/labels"))
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--approaches", default="tfidf,logreg,hybrid")
    args = parser.parse_args()
    embedder = Embedder()
    rows = [("majority class", majority([args.data]), 0.0)]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.approaches.split(","):
            started = time.perf_counter()
            out = Path(tmp) / name
            train([args.data], out, classifier=name, embedder=embedder)
            seconds = time.perf_counter() - started
            rows.append((name, evaluate_bundle(Bundle.load(out), [args.data], "test", embedder)["tasks"], seconds))
    if args.bundle:
        rows.append((f"bundle {args.bundle}", evaluate_bundle(Bundle.load(args.bundle), [args.data], "test", embedder)["tasks"],
                     0.0))
    tasks = list(rows[0][1])
    header = "| classifier | " + " | ".join(f"{t} macro-F1 | {t} micro-F1" for t in tasks) + " | train s |"
    print(header)
    print("|---" * (2 * len(tasks) + 2) + "|")
    for name, results, seconds in rows:
        cells = " | ".join(f"{results[t]['macro_f1']:.3f} | {results[t]['micro_f1']:.3f}" for t in tasks)
        print(f"| {name} | {cells} | {seconds:.0f} |")
    print(f"\ncommand: python scripts/classifier_report.py {' '.join(sys.argv[1:])}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
