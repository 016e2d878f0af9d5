"""Retrieval evaluation on BEIR-format folders: load, index, rank documents, score.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels/<split>.tsv`` (``query-id<TAB>corpus-id<TAB>score`` after a header line).
Benchmark rows become :class:`~toolkit.corpus.read.Document` objects as they are (no web-page
cleaning) and go through the normal indexing pipeline, so long documents are split into passages. A
document scores as its best passage: passages are searched deep (:data:`PASSAGE_DEPTH`) and each
document keeps the rank of its first hit.

Metrics follow trec_eval / BEIR: nDCG@k with linear gain (the qrels score) and a log2 discount,
the ideal DCG taken from the query's judgements; recall@k over the documents judged relevant
(score > 0); MRR@k, the reciprocal rank of the first relevant document. Means are over the queries
that have judgements in the split; a query whose search returns nothing scores 0.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from toolkit.corpus.read import Document
from toolkit.errors import InputError, UsageError, located
from toolkit.fsutil import write_json_atomic

log = logging.getLogger(__name__)

PASSAGE_DEPTH = 1000  # passages searched per query; deepened if they hold fewer than DOC_DEPTH documents
DOC_DEPTH = 100  # documents ranked per query (recall@100 needs 100)
FINGERPRINT = "beir.json"  # written beside an index built from a benchmark corpus
_HEADER = ["query-id", "corpus-id", "score"]
# What an interrupted first build may leave in a new index folder (build_index cleans it up).
_LEFTOVER = re.compile(r"^(\.lock|\..*\.tmp|(store|vectors|lexical)\.\d+(\.sqlite.*|\.faiss)?)$")

Qrels = dict[str, dict[str, int]]  # query id -> {corpus id: graded relevance}


# -- metrics (pure) ------------------------------------------------------------------------------
def _unique(ranked: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    return [d for d in ranked if not (d in seen or seen.add(d))]


def ndcg_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """nDCG@k: ``sum(rel_i / log2(i + 1))`` over the top ``k``, divided by the ideal DCG.

    Parameters
    ----------
    ranked : sequence of str
        Document ids, best first (repeats after the first are ignored).
    relevance : mapping of str to int
        Graded relevance of the judged documents; scores <= 0 add no gain.
    k : int
        Cut-off.
    """
    gains = [relevance.get(doc, 0) for doc in _unique(ranked)[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g > 0)
    ideal = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents (score > 0) found in the top ``k``."""
    relevant = {doc for doc, g in relevance.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(_unique(ranked)[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document (score > 0) in the top ``k``, else 0."""
    for rank, doc in enumerate(_unique(ranked)[:k], 1):
        if relevance.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def score_run(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, recall@10, recall@100 and MRR@10 over the queries of ``qrels``.

    ``run`` maps query id to ranked document ids; a query of ``qrels`` missing from ``run`` scores 0.
    """
    metrics = {"ndcg@10": (ndcg_at_k, 10), "recall@10": (recall_at_k, 10), "recall@100": (recall_at_k, 100),
               "mrr@10": (mrr_at_k, 10)}
    totals = dict.fromkeys(metrics, 0.0)
    for query_id, relevance in qrels.items():
        ranked = run.get(query_id, [])
        for name, (metric, k) in metrics.items():
            totals[name] += metric(ranked, relevance, k)
    n = len(qrels)
    return {name: (total / n if n else 0.0) for name, total in totals.items()}


# -- reading a BEIR folder -----------------------------------------------------------------------
def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{path}: no such file ({what})",
                         hint="a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    return path


def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-empty line; a broken line is an InputError naming it."""
    try:
        handle = open(path, encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    with handle:
        try:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{located(path, line_no)}: invalid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise InputError(f"{located(path, line_no)}: expected a JSON object, got {type(row).__name__}")
                if not isinstance(row.get("_id"), (str, int)) or str(row["_id"]).strip() == "":
                    raise InputError(f"{located(path, line_no)}: missing '_id'", hint="every BEIR row has an _id")
                yield line_no, row
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _field(row: dict, name: str, path: Path, line: int) -> str:
    value = row.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{located(path, line)}: '{name}' must be a string, got {type(value).__name__}")
    return value


def read_corpus(folder: str | Path) -> Iterator[Document]:
    """Documents of ``folder/corpus.jsonl``: text = title + blank line + text, doc_id = ``_id``.

    Rows with neither title nor text are skipped with a warning; a repeated ``_id`` is an error.
    """
    path = _require(Path(folder) / "corpus.jsonl", "the documents")
    seen: set[str] = set()
    empty = 0
    for line, row in _json_lines(path):
        doc_id = str(row["_id"]).strip()
        if doc_id in seen:
            raise InputError(f"{located(path, line)}: _id {doc_id!r} appears twice", hint="ids must be unique")
        seen.add(doc_id)
        title = _field(row, "title", path, line).strip()
        body = _field(row, "text", path, line).strip()
        text = f"{title}\n\n{body}" if title and body else (title or body)
        if not text:
            empty += 1
            continue
        yield Document(doc_id=doc_id, text=text, title=title[:300], source=Path(folder).name,
                       path=f"{path}:{line}", content_hash=hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest())
    if empty:
        log.warning("%s: %d documents with neither title nor text skipped", path, empty)


def read_queries(folder: str | Path) -> dict[str, str]:
    """Query id -> text from ``folder/queries.jsonl``."""
    path = _require(Path(folder) / "queries.jsonl", "the queries")
    queries: dict[str, str] = {}
    for line, row in _json_lines(path):
        queries[str(row["_id"]).strip()] = _field(row, "text", path, line)
    return queries


def read_qrels(folder: str | Path, split: str = "test") -> Qrels:
    """Judgements of ``folder/qrels/<split>.tsv``: query id -> {corpus id: score}.

    The header line ``query-id corpus-id score`` is optional; every other non-empty line needs three
    tab- or space-separated fields with an integer score.
    """
    if not split or Path(split).name != split or split.startswith("."):
        raise UsageError(f"The 'split' parameter must be a file name under qrels/. Got {split!r} instead.",
                         hint="e.g. --split test")
    qrels_dir = Path(folder) / "qrels"
    path = qrels_dir / f"{split}.tsv"
    if not path.is_file():
        splits = sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
        raise InputError(f"{path}: no such file (judgements of split {split!r})",
                         hint=f"splits here: {', '.join(splits)}" if splits else "a BEIR folder has qrels/<split>.tsv")
    qrels: Qrels = {}
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    for line_no, line in enumerate(lines, 1):
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields]
        if not line.strip() or (line_no == 1 and [f.lower() for f in fields] == _HEADER):
            continue
        if len(fields) != 3 or not fields[0] or not fields[1]:
            raise InputError(f"{located(path, line_no)}: expected 'query-id<TAB>corpus-id<TAB>score', "
                             f"got {line.strip()[:80]!r}")
        try:
            score = int(fields[2])
        except ValueError:
            raise InputError(f"{located(path, line_no)}: score must be an integer, got {fields[2][:20]!r}") from None
        qrels.setdefault(fields[0], {})[fields[1]] = score
    if not qrels:
        raise InputError(f"{path}: no judgements", hint="one 'query-id<TAB>corpus-id<TAB>score' line per judgement")
    return qrels


# -- indexing ------------------------------------------------------------------------------------
def corpus_fingerprint(folder: str | Path, model: str | None = None, backend: str | None = None) -> dict:
    """What identifies an index of this corpus: the corpus file, its size and mtime, and the model.

    Also recorded: settings baked into an index when it is built (passage size, BM25 parameters,
    fusion defaults), so changing a default gives a fresh index instead of a stale one.
    """
    from toolkit.embed import resolve_model
    from toolkit.index import DEFAULT_FUSION, FORMAT_VERSION
    from toolkit.indexing import PASSAGE_TOKENS
    from toolkit.lexical import LexicalIndex

    path = _require(Path(folder) / "corpus.jsonl", "the documents")
    stat = path.stat()
    bm25 = {name: p.default for name, p in inspect.signature(LexicalIndex.build).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return {"corpus": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "model": resolve_model(model)[0], "format": FORMAT_VERSION, "passage_tokens": PASSAGE_TOKENS,
            "bm25": bm25, "fusion": dict(DEFAULT_FUSION),
            # Each backend gets its own index (torch's key is unchanged, so existing caches stay valid).
            **({"backend": backend} if backend not in (None, "torch") else {})}


def default_index_dir(folder: str | Path, model: str | None = None, backend: str | None = None) -> Path:
    """Cache folder for the index of a benchmark: ``<cache>/beir/<name>-<fingerprint hash>``."""
    from toolkit.embed import cache_dir

    fingerprint = corpus_fingerprint(folder, model, backend)
    digest = hashlib.sha1(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
    name = Path(folder).resolve().name or "beir"
    return cache_dir() / "beir" / f"{name}-{digest}"


def prepare_index(folder: str | Path, index_dir: str | Path, *, model: str | None = None, embedder=None,
                  progress: bool = False, backend: str | None = None) -> Path:
    """Index ``folder/corpus.jsonl`` into ``index_dir`` unless an index of the same corpus is there.

    ``index_dir`` must be new, empty, or an index this function built (it leaves a ``beir.json``
    fingerprint beside the manifest); a different index is refused rather than filled with benchmark
    documents. A fingerprint that no longer matches (corpus edited) rebuilds the index.
    """
    from toolkit.indexing import build_index

    index_dir = Path(index_dir)
    fingerprint = corpus_fingerprint(folder, model, backend)
    marker = index_dir / FINGERPRINT
    has_index = (index_dir / "manifest.json").exists()
    if has_index:
        if not marker.exists():
            raise UsageError(f"{index_dir}: holds an index that was not built from a benchmark corpus",
                             hint="pass a new or empty folder to --index")
        try:
            recorded = json.loads(marker.read_text())
        except (OSError, ValueError):
            recorded = {}
        if recorded == fingerprint:
            log.info("reusing the index of %s in %s", fingerprint["corpus"], index_dir)
            return index_dir
        log.info("%s or the index settings changed since %s was built: re-indexing", fingerprint["corpus"],
                 index_dir)
    elif index_dir.exists() and any(not _LEFTOVER.match(p.name) for p in index_dir.iterdir()):
        raise UsageError(f"{index_dir}: not empty and not an index", hint="pass a new or empty folder to --index")
    started = time.perf_counter()
    log.info("indexing %s into %s (once; later runs reuse it)", fingerprint["corpus"], index_dir)
    report = build_index([], index_dir, model=model, backend=backend, rebuild=has_index, documents=read_corpus(folder),
                         bundle=None, embedder=embedder, progress=progress)
    write_json_atomic(marker, fingerprint)
    log.info("indexed %d documents, %d passages in %.1f s", report.documents_total, report.passages_total,
             time.perf_counter() - started)
    return index_dir


# -- searching -----------------------------------------------------------------------------------
@contextmanager
def single_query_threads() -> Iterator[None]:
    """Run torch and FAISS on one thread inside the block, restoring their thread counts after.

    One query at a time is too little work to split: on a 2-core machine shared with other jobs,
    torch's default 2 intra-op threads spin at each barrier and a query took 0.5-0.7 s instead of
    ~0.04 s on one thread (measured on SciFact, see docs/benchmarks.md).
    """
    # Only libraries already loaded: importing torch just to set its threads would cost a query
    # on the onnx/openvino backends about a second.
    modules = [sys.modules[name] for name in ("torch", "faiss") if name in sys.modules]
    # Read every count before setting any: both may share one OpenMP runtime.
    restore = [(m.set_num_threads, m.get_num_threads()) if m.__name__ == "torch"
               else (m.omp_set_num_threads, m.omp_get_max_threads()) for m in modules]
    for setter, _ in restore:
        setter(1)
    try:
        yield
    finally:
        for setter, value in reversed(restore):
            setter(value)


def rank_documents(index, query: str, *, mode: str = "hybrid", depth: int = DOC_DEPTH,
                   passages: int = PASSAGE_DEPTH) -> list[str]:
    """Document ids best first, each at the rank of its best passage; at least ``depth`` if there are.

    ``index`` is an open :class:`~toolkit.index.Index`. ``passages`` hits are searched first and the
    search is deepened while they hold fewer than ``depth`` documents and more passages exist.
    """
    from toolkit.index import MAX_K

    k = min(passages, MAX_K)
    while True:
        hits = index.search(query, k, mode=mode, dedupe=False)
        ranked = _unique([hit.doc_id for hit in hits])
        if len(ranked) >= depth or len(hits) < k or k >= min(MAX_K, len(index)):
            return ranked
        k = min(4 * k, MAX_K)


def evaluate_search(folder: str | Path, split: str = "test", mode: str = "hybrid", index: str | Path | None = None,
                    model: str | None = None, *, embedder=None, progress: bool = False,
                    backend: str | None = None) -> dict:
    """Search quality of ``mode`` on the BEIR benchmark in ``folder``, over the queries of ``split``.

    Parameters
    ----------
    folder : path-like
        BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).
    split : str
        Judgements to use, ``qrels/<split>.tsv``.
    mode : {"hybrid", "dense", "lexical"}
    index : path-like or None
        Index directory; built there if new. ``None`` uses a cache folder (:func:`default_index_dir`).
    model : str or None
        Embedding model; ``None`` is the bundled all-MiniLM-L6-v2.
    backend : {"torch", "onnx", "openvino", "auto"} or None
        Inference backend for the corpus and the queries (``None``: ``$TOOLKIT_BACKEND`` or auto, see
        :func:`toolkit.embed.default_backend`); each backend is indexed
        into its own cache folder, so scores of two backends compare their embeddings.

    Returns
    -------
    dict with ``ndcg@10``, ``recall@10``, ``recall@100``, ``mrr@10`` (means over the queries judged in
    ``split``), ``queries`` (their number) and ``mode``.
    """
    from toolkit.index import MODES, Index

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder", hint="give a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    if mode not in MODES:
        raise UsageError(f"The 'mode' parameter must be one of {', '.join(MODES)}. Got {mode!r} instead.")
    # Read and check everything small before the (slow) indexing.
    qrels = read_qrels(folder, split)
    queries = read_queries(folder)
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise InputError(f"{folder / 'qrels' / f'{split}.tsv'}: {len(missing)} judged queries are not in "
                         f"queries.jsonl (first: {missing[0]!r})", hint="the qrels and queries files do not match")
    if backend is None and embedder is None:
        from toolkit.embed import default_backend

        backend = default_backend()
    if backend == "auto" and embedder is None:
        from toolkit.embed import Embedder

        embedder = Embedder(model, backend="auto")
        backend = embedder.backend  # the probe's choice names the cache folder
    index_dir = Path(index) if index is not None else default_index_dir(folder, model, backend)
    prepare_index(folder, index_dir, model=model, embedder=embedder, progress=progress, backend=backend)
    opened = Index.open(index_dir, model=model, embedder=embedder, backend=backend)
    started = time.perf_counter()
    run: dict[str, list[str]] = {}
    try:
        with single_query_threads():
            for query_id in qrels:
                try:
                    run[query_id] = rank_documents(opened, queries[query_id], mode=mode)
                except UsageError as exc:
                    raise InputError(f"{folder / 'queries.jsonl'}: query {query_id!r}: {exc.message}") from None
    finally:
        opened.close()
    log.info("searched %d queries (%s) in %.1f s", len(run), mode, time.perf_counter() - started)
    used = backend or opened.manifest["model"].get("backend", "torch")
    return {**score_run(run, qrels), "queries": len(qrels), "mode": mode, "backend": used}
