"""CLI: index, query, evaluate-search, info."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import List, Optional

import typer

from toolkit.cli import app, emit_json, err, handle_errors, setup_logging

DEFAULT_INDEX = Path("data/index")
IndexOpt = typer.Option(DEFAULT_INDEX, "--index", "-i", help="Index directory.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object (JSON Lines with --batch) on stdout.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Only errors on stderr; no progress bar.")


@app.command("index")
@handle_errors
def index_cmd(
    paths: List[Path] = typer.Argument(..., help="Article files or folders (.txt .md .html .jsonl .csv)."),
    index: Path = IndexOpt,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Embedding model name or path "
                                        "[default: the index's model, or bundled all-MiniLM-L6-v2]."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Inference backend: torch, onnx, openvino or "
                                          "auto (fastest that matches torch) [default: the index's; for a new index $TOOLKIT_BACKEND, else auto]."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Start the index over instead of updating it."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip broken JSONL/CSV rows instead of stopping."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="Classifier bundle that labels passages "
                                          "[default: models/default]."),
    no_labels: bool = typer.Option(False, "--no-labels", help="Do not label passages."),
    index_type: str = typer.Option("auto", "--index-type", help="Vector index: auto (exact up to 50,000 "
                                   "passages, IVF above), flat, hnsw or ivf."),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Index articles: clean, split into passages, embed, label, and store them.

    Re-running on unchanged files embeds nothing; changed files replace their passages.

    Example: toolkit index data/articles --index data/index
    """
    setup_logging(quiet)
    from toolkit.indexing import build_index

    report = build_index(paths, index, model=model, backend=backend, rebuild=rebuild, skip_bad=skip_bad,
                         progress=not quiet and sys.stderr.isatty(),
                         bundle=None if no_labels else (bundle or "default"), index_type=index_type)
    for message in report.warnings + report.skipped:
        err(f"warning: {message}")
    if as_json:
        emit_json({**report.__dict__, "seconds": round(report.seconds, 3)})
        return
    rate = report.passages_embedded / report.embed_seconds if report.embed_seconds else 0.0
    typer.echo(
        f"{report.documents_seen} documents read: {report.documents_added} new, {report.documents_updated} changed, "
        f"{report.documents_unchanged} unchanged, {len(report.skipped)} skipped\n"
        f"{report.passages_added} passages added, {report.passages_removed} removed, {report.passages_embedded} "
        f"embedded, {report.labelled} labelled in {report.seconds:.1f} s"
        + (f" (embedding {rate:.0f} passages/s)" if report.passages_embedded else "") + "\n"
        f"index {index}: {report.documents_total} documents, {report.passages_total} passages"
    )


def _parse_labels(values: List[str]) -> tuple:
    from toolkit.errors import UsageError

    pairs = []
    for value in values:
        task, sep, label = value.partition("=")
        if not sep or not task.strip() or not label.strip():
            raise UsageError(f"--label {value!r} is not TASK=VALUE", hint="e.g. --label contact_type=call")
        pairs.append((task.strip(), label.strip()))
    return tuple(pairs)


def _parse_date(value: Optional[str], flag: str) -> str:
    from toolkit.corpus.read import normalise_date
    from toolkit.errors import UsageError

    if not value:
        return ""
    parsed = normalise_date(value)
    if not parsed:
        raise UsageError(f"{flag} {value!r} is not a date", hint="use YYYY-MM-DD")
    return parsed


def render_hits(query: str, hits: list) -> str:
    if not hits:
        return f"no passages match {query!r}"
    lines = []
    for hit in hits:
        where = hit.source or Path(hit.path).name
        lines.append(f"{hit.rank:>3}  {hit.score:.4f}  {hit.title[:90]}  [{where}]")
        lines.extend(textwrap.wrap(" ".join(hit.text.split()), width=100, initial_indent=" " * 5,
                                   subsequent_indent=" " * 5))
        extra = []
        if hit.labels:
            extra.append(" · ".join(f"{t}={','.join(v) if isinstance(v, list) else v}" for t, v in hit.labels.items()))
        if hit.also_in:
            extra.append("also in: " + ", ".join(a["source"] or a["title"][:40] or a["doc_id"] for a in hit.also_in))
        if extra:
            lines.append("     " + "   ".join(extra))
    return "\n".join(lines)


@app.command("query")
@handle_errors
def query_cmd(
    text: Optional[str] = typer.Argument(None, help="What to search for (omit with --batch)."),
    index: Path = IndexOpt,
    k: int = typer.Option(10, "-k", "--k", help="Number of hits."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, dense or lexical."),
    label: List[str] = typer.Option([], "--label", "-l", help="Only passages with TASK=VALUE (repeatable)."),
    source: List[str] = typer.Option([], "--source", help="Only articles from this source (repeatable)."),
    after: Optional[str] = typer.Option(None, "--after", help="Only articles published on/after YYYY-MM-DD."),
    before: Optional[str] = typer.Option(None, "--before", help="Only articles published on/before YYYY-MM-DD."),
    no_dedupe: bool = typer.Option(False, "--no-dedupe", help="Show every copy of a story reposted by several sites."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Must be the index's model if given."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Inference backend for the query: torch, onnx, "
                                          "openvino or auto [default: the one the index was built with]."),
    batch: bool = typer.Option(False, "--batch", help="Read queries from stdin, one per line."),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Search an index for passages answering a question.

    Example: toolkit query "when did the defence ministers last speak by phone?" -k 5
    """
    setup_logging(quiet)
    from toolkit.errors import UsageError
    from toolkit.index import Index, check_k, check_query
    from toolkit.store import Filters

    check_k(k)
    if not batch:
        check_query(text or "")
    elif text:
        raise UsageError("give either a query or --batch, not both")
    filters = Filters(labels=_parse_labels(label), sources=tuple(source), after=_parse_date(after, "--after"),
                      before=_parse_date(before, "--before"))
    opened = Index.open(index, model=model, backend=backend)
    queries = (line.strip() for line in sys.stdin) if batch else iter([text])
    for query in queries:
        if not query:
            continue
        hits = opened.search(query, k, mode=mode, filters=filters, dedupe=not no_dedupe)
        if as_json:
            emit_json({"query": query, "hits": [h.to_dict() for h in hits]})
        else:
            typer.echo(render_hits(query, hits) + ("\n" if batch else ""))


@app.command("info")
@handle_errors
def info_cmd(index: Path = IndexOpt, as_json: bool = JsonOpt) -> None:
    """Show an index's manifest: model, counts, labels, files.

    Example: toolkit info --index data/index
    """
    from toolkit.index import read_manifest

    manifest = read_manifest(index)
    if as_json:
        emit_json(manifest)
        return
    labels = manifest.get("labels") or {}
    typer.echo(
        f"index {index} (format {manifest['format']}, generation {manifest['generation']}, toolkit "
        f"{manifest['toolkit_version']})\n"
        f"model {manifest['model']['id']} (dim {manifest['model']['dim']}, {manifest['model']['backend']})\n"
        f"{manifest['counts']['documents']} documents, {manifest['counts']['passages']} passages, "
        f"FAISS {manifest['faiss']['factory']} ({manifest.get('vector_index', {}).get('type', 'flat')})\n"
        f"labels: {', '.join(labels.get('tasks', {})) or 'none'}{' from ' + labels['bundle'] if labels else ''}\n"
        f"updated {manifest['updated']}"
    )
