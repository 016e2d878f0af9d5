"""CLI: evaluate-search (retrieval quality on a BEIR-format benchmark)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from toolkit.cli import app, emit_json, handle_errors, setup_logging

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


@app.command("evaluate-search")
@handle_errors
def evaluate_search_cmd(
    folder: Path = typer.Argument(..., help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."),
    split: str = typer.Option("test", "--split", help="Judgements to score against: qrels/<split>.tsv."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, dense or lexical."),
    index: Optional[Path] = typer.Option(None, "--index", "-i", help="Index directory, built there if new "
                                         "(default: a cache folder per corpus and settings, reused by later runs)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Embedding model name or path "
                                        "(default: the bundled all-MiniLM-L6-v2)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Inference backend: torch, onnx, openvino or "
                                          "auto [default: $TOOLKIT_BACKEND, else auto]; each backend gets its own cached index."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr; no progress bar."),
) -> None:
    """Score search on a BEIR benchmark: nDCG@10, recall@10/100 and MRR@10 over the judged queries.

    The corpus is indexed once (documents score as their best passage) and the index is reused.

    Example: toolkit evaluate-search ../shared/benchmarks/scifact --mode dense --json
    """
    setup_logging(quiet)
    from toolkit.retrieval import evaluate_search

    result = evaluate_search(folder, split=split, mode=mode, index=index, model=model, backend=backend,
                             progress=not quiet and sys.stderr.isatty())
    if as_json:
        emit_json({**{name: round(result[name], 4) for name in METRICS}, "queries": result["queries"],
                   "mode": result["mode"], "backend": result.get("backend", "torch")})
        return
    typer.echo(f"{folder.name} ({split}, {result['queries']} queries), {result['mode']} search")
    for name in METRICS:
        typer.echo(f"  {name:<11} {result[name]:.4f}")
