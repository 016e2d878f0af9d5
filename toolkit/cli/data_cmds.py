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


@data_app.command("passages")
@handle_errors
def passages_cmd(
    paths: List[Path] = typer.Argument(..., help="Article files or folders (txt, md, html, jsonl, csv)."),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL file to write, one passage per line."),
    model: str = typer.Option(None, "--model", help="Embedding model whose tokenizer bounds the passages "
                              "(default: the bundled all-MiniLM-L6-v2)."),
    split: str = typer.Option(None, "--split", help="Put this split (train/dev/test) on every row."),
) -> None:
    """Write the passages `toolkit index` would make from articles, ready to label.

    Each article is cleaned and split exactly as indexing does; each row carries `id`, `text`,
    `story` (the article, so one article never straddles splits), `title`, `source` and `path`.
    Add `contact_type` and `tone` (or your own tasks) to each row, then `toolkit data check` and
    `toolkit train` read the file.

    Example: toolkit data passages my_articles/ --out data/labels/new.jsonl --split train
    """
    import json

    from toolkit.corpus.read import ReadReport, read_documents
    from toolkit.corpus.split import split_passages
    from toolkit.embed import Embedder
    from toolkit.errors import UsageError
    from toolkit.fsutil import write_atomic
    from toolkit.indexing import passage_token_budget

    if split is not None and split not in ("train", "dev", "test"):
        raise UsageError(f"unknown split {split!r}", hint="use train, dev or test")
    embedder = Embedder(model)
    count, budget = embedder.token_counter(), passage_token_budget(embedder)
    report = ReadReport()
    rows = []
    for document in read_documents(paths, report):
        story = document.doc_id
        for passage in split_passages(document.text, max_tokens=budget, count_tokens=count):
            row = {"id": f"{story}-{passage.ordinal:02d}", "text": passage.text, "story": story,
                   "title": document.title, "source": document.source, "path": document.path}
            if split:
                row["split"] = split
            rows.append(row)
    for message in report.warnings + report.skipped:  # what indexing would report for the same files
        err(f"warning: {message}")
    if not rows:
        raise UsageError(f"no article text found in {', '.join(map(str, paths))}",
                         hint="give txt, md, html, jsonl or csv articles")
    write_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    err(f"wrote {len(rows)} passages from {len({r['story'] for r in rows})} articles to {out}")
