"""Open an index directory and search it: dense, lexical or hybrid, with filters and story dedupe.

An index directory holds ``manifest.json`` and the files of its current *generation*
(``store.<g>.sqlite``, ``vectors.<g>.faiss``, ``lexical.<g>/``). Writers build a new generation beside
the old one and switch ``manifest.json`` atomically, so a reader that opened generation ``g`` keeps a
consistent view and a crash never leaves a mix (see :mod:`toolkit.indexing`).
"""
from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from toolkit.errors import IndexError_, ModelError, UsageError
from toolkit.store import Filters, Store

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODES = ("hybrid", "dense", "lexical")
MAX_K = 10_000
MAX_QUERY_CHARS = 4_000
DEFAULT_FUSION = {"method": "convex", "k": 60, "dense_weight": 0.65, "lexical_weight": 0.35, "depth": 100}


@dataclass
class Hit:
    """One search result, traceable to its article by ``doc_id`` and character offsets."""

    rank: int
    score: float
    passage_id: str
    doc_id: str
    title: str
    source: str
    text: str
    start: int
    end: int
    url: str = ""
    published: str = ""
    path: str = ""
    labels: dict = field(default_factory=dict)
    probabilities: dict = field(default_factory=dict)
    also_in: list = field(default_factory=list)

    def to_dict(self, *, probabilities: bool = False) -> dict:
        out = asdict(self)
        if not probabilities:
            out.pop("probabilities")
        return out


def read_manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not folder.exists() or not path.exists():
        raise IndexError_(f"{folder}: no index here", hint="run `toolkit index PATH --index DIR` first")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IndexError_(f"{path}: unreadable manifest ({exc})", hint="rebuild with `toolkit index --rebuild`") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise IndexError_(f"{path}: index format {manifest.get('format')} is not {FORMAT_VERSION}",
                          hint="rebuild with `toolkit index --rebuild`")
    return manifest


def check_k(k: int) -> int:
    if not isinstance(k, int) or k < 1 or k > MAX_K:
        raise UsageError(f"The 'k' parameter of query must be an int in [1, {MAX_K}]. Got {k!r} instead.")
    return k


def check_query(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise UsageError("the query is empty", hint="pass the text to search for")
    if len(text) > MAX_QUERY_CHARS:
        raise UsageError(f"the query has {len(text)} characters; at most {MAX_QUERY_CHARS} are allowed",
                         hint="shorten it to the question you are asking")
    return text


class Index:
    """A read-only view of one generation of an index directory.

    Use :meth:`open`; build or update with :func:`toolkit.indexing.build_index`.
    """

    def __init__(self, folder: Path, manifest: dict, embedder=None) -> None:
        self.folder = folder
        self.manifest = manifest
        files = manifest["files"]
        store_path = folder / files["store"]
        if not store_path.exists():
            raise IndexError_(f"{store_path}: metadata store missing", hint="rebuild with `toolkit index --rebuild`")
        try:
            self.store = Store(store_path, readonly=True)
            self.store.conn.execute("SELECT 1 FROM passages LIMIT 1").fetchall()  # SQLite reads lazily
        except sqlite3.Error as exc:
            raise IndexError_(f"{store_path}: damaged metadata store ({exc})",
                              hint="rebuild with `toolkit index --rebuild`") from exc
        self._embedder = embedder
        self._vectors = None
        self._lexical = None

    @classmethod
    def open(cls, folder: str | Path, *, model: str | None = None, backend: str | None = None,
             embedder=None) -> "Index":
        """Open ``folder``; refuse a ``model`` other than the one the index was built with."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        if model is not None:
            from toolkit.embed import resolve_model

            wanted, _ = resolve_model(model)
            if wanted != manifest["model"]["id"]:
                raise ModelError(
                    f"{folder} was built with embedding model {manifest['model']['id']!r}, not {wanted!r}",
                    hint="query without --model, or re-index with `toolkit index --rebuild --model ...`",
                )
        index = cls(folder, manifest, embedder)
        index._backend = backend or manifest["model"].get("backend", "torch")
        return index

    # -- lazy parts ------------------------------------------------------------------------------
    @property
    def embedder(self):
        if self._embedder is None:
            from toolkit.embed import Embedder

            self._embedder = Embedder(self.manifest["model"]["id"], backend=getattr(self, "_backend", "torch"))
        return self._embedder

    @property
    def vectors(self):
        if self._vectors is None:
            from toolkit.vectors import VectorIndex

            model = self.manifest["model"]
            # Indexes written before "vector_index" existed are flat; their factory says so.
            self._vectors = VectorIndex.load(self.folder / self.manifest["files"]["vectors"], model["dim"],
                                             self.manifest["faiss"]["factory"],
                                             self.manifest.get("vector_index", {}).get("params"))
            if len(self._vectors) != self.manifest["counts"]["passages"]:
                raise IndexError_(f"{self.folder}: vector count {len(self._vectors)} does not match "
                                  f"{self.manifest['counts']['passages']} passages",
                                  hint="rebuild with `toolkit index --rebuild`")
        return self._vectors

    @property
    def lexical(self):
        if self._lexical is None:
            from toolkit.lexical import LexicalIndex

            self._lexical = LexicalIndex.load(self.folder / self.manifest["files"]["lexical"])
        return self._lexical

    def __len__(self) -> int:
        return int(self.manifest["counts"]["passages"])

    def close(self) -> None:
        self.store.close()

    # -- search ----------------------------------------------------------------------------------
    def search(self, query: str, k: int = 10, *, mode: str = "hybrid", filters: Filters | None = None,
               dedupe: bool = True, query_vector: np.ndarray | None = None) -> list[Hit]:
        """Top ``k`` passages for ``query``.

        Filters restrict the candidate set before ranking, so ``k`` hits come back whenever ``k``
        passages match. With ``dedupe``, passages of one story reposted by several articles collapse
        into one hit whose ``also_in`` lists the other articles.
        """
        query = check_query(query)
        k = check_k(k)
        if mode not in MODES:
            raise UsageError(f"The 'mode' parameter must be one of {', '.join(MODES)}. Got {mode!r} instead.")
        allowed = self.store.filter_rows(filters) if filters else None
        if allowed is not None and not allowed:
            return []
        if mode == "lexical":
            ranked = self._rank(query, k, mode, allowed, query_vector)
        else:
            from toolkit.retrieval import single_query_threads

            if len(self):  # load FAISS and the model first: the thread settings cover loaded libraries
                self.vectors
                if query_vector is None:
                    self.embedder.model
            # One query is too little work to split: on 2 cores, 2 threads made encoding 16x and flat
            # search 50x slower than 1 thread (docs/performance.md); switching costs microseconds.
            with single_query_threads():
                ranked = self._rank(query, k, mode, allowed, query_vector)
        return self._hits(ranked, k, dedupe)

    def _rank(self, query: str, k: int, mode: str, allowed, query_vector) -> list[tuple[int, float]]:
        from toolkit.fusion import fuse

        fusion = {**DEFAULT_FUSION, **self.manifest.get("search", {})}
        depth = max(int(fusion["depth"]), 3 * k + 10)
        lists = []
        if mode in ("dense", "hybrid") and len(self):
            vector = query_vector if query_vector is not None else self.embedder.encode_query(query)
            scores, rows = self.vectors.search(vector, depth, allowed)
            lists.append([(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0])
        if mode in ("lexical", "hybrid") and len(self):
            scores, rows = self.lexical.search(query, depth, allowed)
            lists.append([(int(r), float(s)) for r, s in zip(rows, scores)])
        if mode != "hybrid":
            return lists[0] if lists else []
        return fuse(lists, fusion["method"], fusion)

    def _hits(self, ranked: list[tuple[int, float]], k: int, dedupe: bool) -> list[Hit]:
        hits: list[Hit] = []
        seen_story: dict[str, Hit] = {}
        step = 2 * k + 10  # rows read per SQLite round: enough for k hits unless dedupe drops many
        for start in range(0, len(ranked), step):
            if self._add_hits(ranked[start : start + step], k, dedupe, hits, seen_story):
                break
        return hits

    def _add_hits(self, ranked: list[tuple[int, float]], k: int, dedupe: bool, hits: list[Hit],
                  seen_story: dict[str, Hit]) -> bool:
        """Append hits for ``ranked`` (one slice of the ranking); True once there are ``k``."""
        rows = [row for row, _ in ranked]
        meta = self.store.passages(rows)
        labels = self.store.labels_for(rows)
        probabilities = self.store.probabilities_for(rows)
        stories = self._stories([meta[r].doc_id for r in rows if r in meta]) if dedupe else {}
        for row, score in ranked:
            passage = meta.get(row)
            if passage is None:
                continue
            story = stories.get(passage.doc_id)
            if dedupe and story is not None and story in seen_story:
                continue
            hit = Hit(
                rank=len(hits) + 1, score=round(float(score), 6), passage_id=passage.passage_id,
                doc_id=passage.doc_id, title=passage.title, source=passage.source, text=passage.text,
                start=passage.start, end=passage.end, url=passage.url, published=passage.published,
                path=passage.path, labels=_single(labels.get(row, {}), self.task_kinds()),
                probabilities=probabilities.get(row, {}),
            )
            if dedupe and story is not None:
                seen_story[story] = hit
                hit.also_in = self._story_members(story, passage.doc_id)
            hits.append(hit)
            if len(hits) == k:
                return True
        return False

    # -- stories ---------------------------------------------------------------------------------
    def _stories(self, doc_ids: Sequence[str]) -> dict[str, str]:
        query = "SELECT doc_id, story FROM stories WHERE doc_id IN ({})"
        return dict(self.store._select(query, list(set(doc_ids))))

    def _story_members(self, story: str, exclude: str) -> list[dict]:
        rows = self.store.conn.execute(
            "SELECT d.doc_id, d.title, d.source, d.url FROM stories s JOIN documents d ON d.doc_id = s.doc_id"
            " WHERE s.story = ? AND s.doc_id != ? ORDER BY d.source, d.doc_id", (story, exclude))
        return [{"doc_id": d, "title": t, "source": s, "url": u} for d, t, s, u in rows]

    def task_kinds(self) -> dict[str, str]:
        labels = self.manifest.get("labels") or {}
        return {task: spec.get("kind", "multi") for task, spec in (labels.get("tasks") or {}).items()}


def _single(labels: dict[str, list[str]], kinds: dict[str, str]) -> dict:
    """Single-label tasks render as a string, multi-label ones as a sorted list."""
    return {task: (values[0] if kinds.get(task) == "single" and len(values) == 1 else sorted(values))
            for task, values in labels.items()}
