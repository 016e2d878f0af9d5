"""CLI: data check."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from toolkit.cli import data_app, emit_json, err, handle_errors


@data_app.command("check")
@handle_errors
def check_cmd(
    paths: List[Path] = typer.Argument(..., help="Labelled JSONL/CSV files or folders."),
    as_json: bool = typer.Option(False, "--json", help="Print counts and problems as one JSON object."),
) -> None:
    """Validate labelled data against its schema and print counts per task, label and split.

    Reports unknown tasks or labels, `none` mixed with other labels, empty or duplicate texts,
    missing fields and stories split across splits, each with file and line; exits 1 on any.

    Example: toolkit data check data/labels
    """
    from collections import Counter

    from toolkit.labels import check_stories, label_counts, load_examples

    examples, schema, problems = load_examples(paths)
    problems += check_stories(examples)
    counts = label_counts(examples, schema)
    splits = Counter(e.split or "(none)" for e in examples)
    if as_json:
        emit_json({"passages": len(examples), "splits": dict(splits),
                   "labels": {t: dict(c) for t, c in counts.items()}, "problems": [str(p) for p in problems]})
    else:
        typer.echo(f"{len(examples)} passages; splits: " + ", ".join(f"{k} {v}" for k, v in sorted(splits.items())))
        for name, task in schema.tasks.items():
            typer.echo(f"{name} ({task.kind}{'' if task.declared else ', inferred from data'}): "
                       + ", ".join(f"{label} {counts[name].get(label, 0)}" for label in task.labels))
    for problem in problems:
        err(f"error: {problem}")
    if problems:
        err(f"{len(problems)} problem(s) found")
        raise typer.Exit(1)
