"""Build or update an index directory from article files.

The job runs as a pipeline: a reader thread reads, cleans and splits articles into a bounded queue,
the calling thread embeds passages in length-sorted chunks, and a writer thread adds each embedded
chunk to the new generation (SQLite, FAISS, labels, stories) while the next one is embedded. Unchanged documents (same content hash) are skipped without embedding; a changed
document's old passages are replaced. The new generation becomes visible only when
``manifest.json`` is atomically replaced, after every file of it has been written and synced, so a
crash at any point leaves the previous generation loadable; re-running reuses the embedding cache.
"""
from __future__ import annotations

import itertools
import logging
import queue
import re
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from toolkit import __version__
from toolkit.corpus.read import ReadReport, read_documents
from toolkit.corpus.split import split_passages
from toolkit.errors import IndexError_, ModelError, UsageError
from toolkit.fsutil import fsync_dir, write_json_atomic, write_lock
from toolkit.index import DEFAULT_FUSION, FORMAT_VERSION, read_manifest
from toolkit.store import Store

log = logging.getLogger(__name__)

CHUNK_PASSAGES = 2048  # passages embedded, then written, together
QUEUE_DOCUMENTS = 256  # documents the reader may run ahead of embedding
QUEUE_CHUNKS = 2  # embedded chunks the writer may lag behind
PASSAGE_TOKENS = 128
STORY_THRESHOLD = 0.65  # each article's passages' best-match cosine in the other, averaged; the lower direction
STORY_NEIGHBOURS = 16
_GENERATION_FILE = re.compile(r"^(store|vectors|lexical)\.(\d+)(\.sqlite|\.faiss)?$")


def passage_token_budget(embedder) -> int:
    """Longest passage, in the model's tokens: PASSAGE_TOKENS, or the model's own limit if smaller."""
    return min(PASSAGE_TOKENS, embedder.max_tokens)


@dataclass
class BuildReport:
    """What an ``index`` run did."""

    folder: str
    documents_seen: int = 0
    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    passages_added: int = 0
    passages_removed: int = 0
    passages_embedded: int = 0
    embed_seconds: float = 0.0
    passages_total: int = 0
    documents_total: int = 0
    labelled: int = 0
    seconds: float = 0.0
    generation: int = 0
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.documents_added or self.documents_updated)


def _generation_files(generation: int) -> dict[str, str]:
    return {"store": f"store.{generation}.sqlite", "vectors": f"vectors.{generation}.faiss",
            "lexical": f"lexical.{generation}"}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _cleanup(folder: Path, keep: set[int]) -> None:
    """Delete generation files not in ``keep`` (old ones, and leftovers of crashed runs)."""
    for child in folder.iterdir():
        match = _GENERATION_FILE.match(child.name)
        if match and int(match.group(2)) not in keep:
            _remove(child)


def _current_manifest(folder: Path, *, rebuild: bool) -> dict | None:
    """The index's manifest, or None for a new index (or a damaged one that is being rebuilt)."""
    if not (folder / "manifest.json").exists():
        return None
    if not rebuild:
        return read_manifest(folder)
    try:
        return read_manifest(folder)
    except IndexError_:
        return None  # --rebuild is how a damaged index is repaired


def _next_generation(folder: Path, current: dict | None) -> int:
    """One above the current generation and any generation files still on disk."""
    on_disk = [int(m.group(2)) for child in folder.iterdir() if (m := _GENERATION_FILE.match(child.name))]
    return max([current["generation"] if current else 0, *on_disk]) + 1


def build_index(
    paths: Iterable[str | Path],
    folder: str | Path,
    *,
    model: str | None = None,
    backend: str | None = None,
    rebuild: bool = False,
    skip_bad: bool = False,
    progress: bool = False,
    bundle: str | Path | None = "default",
    embedder=None,
    documents: Iterable | None = None,
    index_type: str = "auto",
) -> BuildReport:
    """Index the articles under ``paths`` into ``folder`` (created if missing).

    Parameters
    ----------
    paths : iterable of path-like
        Files and folders of articles (see :mod:`toolkit.corpus.read`).
    folder : path-like
        Index directory.
    model : str or None
        Embedding model; ``None`` keeps the index's model, or the bundled default for a new index.
    backend : {"torch", "onnx", "openvino", "auto"} or None
        Inference backend; ``None`` keeps the backend the index records, or torch for a new index.
        The backend used is recorded in the manifest (``auto`` as the backend it chose).
    rebuild : bool
        Start from an empty index instead of updating the current one.
    documents : iterable of Document, optional
        Already-read documents (e.g. a benchmark corpus) indexed in addition to ``paths``.
    index_type : {"auto", "flat", "hnsw", "ivf"}
        Vector index structure; ``auto`` chooses by size (:func:`toolkit.vectors.choose_index_type`).
    bundle : path-like, "default" or None
        Classifier bundle that labels new passages; ``"default"`` uses ``models/default`` when it
        exists and fits the embedding model, ``None`` skips labelling.
    """
    from toolkit.embed import Embedder, default_backend, resolve_model
    from toolkit.vectors import index_spec

    index_spec(index_type, 0)  # refuse an unknown type before any work
    started = time.perf_counter()
    folder = Path(folder)
    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder", hint="check the path")
    report = BuildReport(folder=str(folder))
    with write_lock(folder, "index"):
        current = _current_manifest(folder, rebuild=rebuild)
        old = None if rebuild else current
        if old is not None and model is not None and resolve_model(model)[0] != old["model"]["id"]:
            raise ModelError(f"{folder} was built with {old['model']['id']!r}, not {resolve_model(model)[0]!r}",
                             hint="pass --rebuild to re-index everything with the new model")
        if embedder is None:
            recorded = old["model"].get("backend", "torch") if old else default_backend()
            embedder = Embedder(old["model"]["id"] if old and model is None else model,
                                backend=backend or recorded)
        # A rebuild too writes a new generation beside the current one: until the manifest switches,
        # readers (and a crash) still have the complete current index.
        keep = {current["generation"]} if current else set()
        _cleanup(folder, keep | {g - 1 for g in keep})  # the previous one may still have readers
        generation = _next_generation(folder, current)
        files = _generation_files(generation)
        writer = _GenerationWriter(folder, files, old, embedder, index_type=index_type)
        try:
            labeller = _labeller(bundle, embedder)
            writer.ingest(paths, report, skip_bad=skip_bad, progress=progress, labeller=labeller,
                          documents=documents)
            if not report.documents_seen and not report.documents_unchanged:
                why = ""
                if report.skipped:  # say why, naming the file: the warnings are not printed after an error
                    more = len(report.skipped) - 1
                    why = f"; {report.skipped[0]}" + (f" (and {more} more skipped)" if more else "")
                raise UsageError(f"no articles found in {', '.join(map(str, paths))}{why}",
                                 hint="give .txt, .md, .html, .jsonl or .csv files")
            if old is not None and not report.changed:
                writer.abandon()
                report.generation = old["generation"]
                report.passages_total = old["counts"]["passages"]
                report.documents_total = old["counts"]["documents"]
                report.seconds = time.perf_counter() - started
                return report
            manifest = writer.finish(report, labeller)
        except BaseException:
            writer.abandon()
            raise
        write_json_atomic(folder / "manifest.json", manifest)
        _cleanup(folder, {generation, *keep})
        report.generation = generation
    report.seconds = time.perf_counter() - started
    return report


def relabel_index(folder: str | Path, bundle) -> int:
    """Replace the labels of every passage of the index at ``folder`` with ``bundle``'s predictions.

    Vectors come from the index itself, so nothing is embedded. Written as a new generation.
    """
    from toolkit.embed import Embedder

    folder = Path(folder)
    with write_lock(folder, "index"):
        old = read_manifest(folder)
        embedder = Embedder(old["model"]["id"], backend=old["model"].get("backend", "torch"))
        bundle.check_embedder(embedder)
        generation = old["generation"] + 1
        files = _generation_files(generation)
        # Relabelling changes no vector: keep the structure (indexes without the field are flat).
        writer = _GenerationWriter(folder, files, old, embedder,
                                   index_type=old.get("vector_index", {}).get("type", "flat"))
        try:
            writer.store.delete_labels()
            rows_texts = writer.store.texts()
            for start in range(0, len(rows_texts), CHUNK_PASSAGES):
                chunk = rows_texts[start : start + CHUNK_PASSAGES]
                rows = [r for r, _ in chunk]
                labels, probabilities = bundle.predict([t for _, t in chunk], writer.vectors.reconstruct(rows))
                writer.store.set_predictions(rows, labels, probabilities, bundle.bundle_id)
            manifest = writer.finish(BuildReport(folder=str(folder)), bundle)
        except BaseException:
            writer.abandon()
            raise
        write_json_atomic(folder / "manifest.json", manifest)
        _cleanup(folder, {generation, old["generation"]})
    return len(rows_texts)


def _labeller(bundle, embedder):
    """The classifier bundle for new passages, or None (no bundle, or another embedding model)."""
    if bundle is None:
        return None
    from toolkit.classify.bundle import Bundle, default_bundle_path

    path = default_bundle_path() if bundle == "default" else Path(bundle)
    if path is None or not (Path(path) / "manifest.json").exists():
        if bundle != "default":
            raise UsageError(f"{path}: no classifier bundle here", hint="train one with `toolkit train`")
        return None
    loaded = Bundle.load(path)
    if loaded.model_id != embedder.model_id:
        if bundle == "default":
            log.warning("default classifier was trained with %s, index uses %s: passages left unlabelled",
                        loaded.model_id, embedder.model_id)
            return None
        loaded.check_embedder(embedder)
    return loaded


def _copy_store(source_path: Path, target_path: Path) -> None:
    """Copy the current generation's SQLite store (backup API), or say clearly why it cannot be."""
    if not source_path.exists():
        raise IndexError_(f"{source_path}: metadata store missing", hint="rebuild with `toolkit index --rebuild`")
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(target_path)
        try:
            source.backup(target)
        finally:
            target.close()
    except sqlite3.Error as exc:
        raise IndexError_(f"{source_path}: damaged metadata store ({exc})",
                          hint="rebuild with `toolkit index --rebuild`") from exc
    finally:
        source.close()


class _GenerationWriter:
    """Copies the current generation, applies changes, and writes the new generation's files."""

    def __init__(self, folder: Path, files: dict[str, str], old: dict | None, embedder, *,
                 index_type: str = "auto") -> None:
        from toolkit.vectors import VectorIndex, choose_factory

        self.folder, self.files, self.old, self.embedder = folder, files, old, embedder
        self.index_type = index_type
        store_path = folder / files["store"]
        _remove(store_path)
        try:
            if old is not None:
                _copy_store(folder / old["files"]["store"], store_path)
                self.vectors = VectorIndex.load(folder / old["files"]["vectors"], old["model"]["dim"],
                                                old["faiss"]["factory"], old.get("vector_index", {}).get("params"))
            else:
                self.vectors = VectorIndex(embedder.dim, choose_factory(0, embedder.dim))
        except BaseException:
            _remove(store_path)  # a damaged current generation leaves no half-made next one behind
            raise
        self.store = Store(store_path)
        self.next_row = self.store.next_row()
        self.max_tokens = passage_token_budget(embedder)

    # -- reading ---------------------------------------------------------------------------------
    def _produce(self, paths, out: queue.Queue, read_report: ReadReport, skip_bad: bool, known: dict[str, str],
                 documents: Iterable | None = None):
        count = self.embedder.token_counter()
        try:
            source = read_documents(paths, read_report, skip_bad=skip_bad) if paths else iter(())
            if documents is not None:
                source = itertools.chain(source, documents)
            for document in source:
                if known.get(document.doc_id) == document.content_hash:
                    out.put(("unchanged", document, None))
                    continue
                passages = split_passages(document.text, max_tokens=self.max_tokens, count_tokens=count)
                out.put(("changed", document, passages))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            out.put(("error", exc, None))
        out.put(("done", None, None))

    def ingest(self, paths, report: BuildReport, *, skip_bad: bool, progress: bool, labeller,
               documents: Iterable | None = None) -> None:
        """Read → embed → write as three overlapping stages, CHUNK_PASSAGES passages at a time.

        The reader thread runs ahead by at most QUEUE_DOCUMENTS documents, the writer thread behind
        by at most QUEUE_CHUNKS embedded chunks, so memory does not grow with the corpus (beyond
        the FAISS vectors themselves) and the calling thread only embeds.
        """
        read_report = ReadReport()
        known = self.store.document_hashes()
        items: queue.Queue = queue.Queue(maxsize=QUEUE_DOCUMENTS)
        producer = threading.Thread(target=self._produce, args=(paths, items, read_report, skip_bad, known, documents),
                                    daemon=True, name="toolkit-reader")
        producer.start()
        writer = _ChunkWriter(self, report, labeller, _progress(progress))
        pending: list[tuple[object, list, bool]] = []
        size = 0
        try:
            while True:
                kind, document, passages = items.get()
                if kind == "error":
                    raise document
                if kind == "done":
                    break
                report.documents_seen += 1
                if kind == "unchanged":
                    report.documents_unchanged += 1
                    continue
                replaces = document.doc_id in known
                if replaces:
                    report.documents_updated += 1
                else:
                    report.documents_added += 1
                known[document.doc_id] = document.content_hash
                pending.append((document, passages, replaces))
                size += len(passages)
                if size >= CHUNK_PASSAGES:
                    writer.put(pending, self._embed(pending, report))
                    pending, size = [], 0
            if pending:
                writer.put(pending, self._embed(pending, report))
            writer.close()
        finally:
            writer.stop()  # after an error: let the writer finish its chunk, so the store can be closed
            producer.join(timeout=1)
        report.skipped.extend(read_report.skipped)
        report.warnings.extend(read_report.warnings)

    def _embed(self, pending, report: BuildReport) -> np.ndarray:
        texts = [p.text for _, passages, _ in pending for p in passages]
        before, seconds = self.embedder.embedded, self.embedder.encode_seconds
        vectors = self.embedder.encode(texts) if texts else np.zeros((0, self.embedder.dim), np.float32)
        report.passages_embedded += self.embedder.embedded - before
        report.embed_seconds += self.embedder.encode_seconds - seconds
        return vectors

    def _write(self, pending, vectors: np.ndarray, report: BuildReport, labeller, bar) -> None:
        """Replace/add the chunk's documents in the store and FAISS, label them, group stories, commit."""
        offset = 0
        added, texts, new_rows = [], [], []
        for document, passages, replaces in pending:
            if replaces:
                removed = self.store.delete_document(document.doc_id)
                self.vectors.remove(removed)
                report.passages_removed += len(removed)
            rows = self.store.add_document(document, passages, self.next_row)
            self.next_row += len(rows)
            block = vectors[offset : offset + len(rows)]
            offset += len(rows)
            self.vectors.add(rows, block)
            added.append((document.doc_id, rows, block))
            texts += [p.text for p in passages]
            new_rows += rows
            report.passages_added += len(rows)
        if labeller is not None and texts:
            # One call for the whole chunk: the classifier's per-call overhead (pipelines, one
            # head per label) otherwise costs more than the arithmetic, document by document.
            labels, probabilities = labeller.predict(texts, vectors[:offset])
            self.store.set_predictions(new_rows, labels, probabilities, labeller.bundle_id)
            report.labelled += len(new_rows)
        self._assign_stories(added)
        self.store.commit()
        if bar is not None:
            bar.update(offset)

    def _assign_stories(self, added: list[tuple[str, list[int], np.ndarray]]) -> None:
        """Put each new document in the story of its closest earlier article, or a new story.

        Two articles tell one story when, in both directions, each passage's best match in the
        other article has a mean cosine >= STORY_THRESHOLD: reposts score ~0.95, translations
        and rewrites of one wire story ~0.7, different stories on one topic ~0.55 (seeds).
        Candidates come from one batched neighbour search over the chunk's passages.
        """
        blocks = [block for _, _, block in added if len(block)]
        if not blocks or len(self.vectors) == 0:
            return
        neighbours = min(STORY_NEIGHBOURS, len(self.vectors))
        scores, found = self.vectors.search(np.vstack(blocks), neighbours)
        # Only a neighbour at STORY_THRESHOLD or closer can make its article pass: an article whose
        # passages are all further than that cannot average that close.
        found = np.where(scores >= STORY_THRESHOLD, found, -1)
        owner = self.store.row_documents(sorted({int(r) for r in found.ravel() if r >= 0}))
        offset = 0
        for doc_id, rows, block in added:
            if not len(block):
                continue
            candidates = {owner[int(r)] for r in found[offset : offset + len(block)].ravel()
                          if r >= 0 and owner.get(int(r), doc_id) != doc_id}
            offset += len(block)
            best, story = STORY_THRESHOLD, doc_id
            for other in sorted(candidates):
                other_vectors = self.vectors.reconstruct(self.store.document_rows(other))
                if not len(other_vectors):
                    continue
                similarity = block @ other_vectors.T
                score = float(min(similarity.max(axis=1).mean(), similarity.max(axis=0).mean()))
                if score >= best:
                    best, story = score, self.store.story_of(other) or other
            self.store.conn.execute("INSERT OR REPLACE INTO stories (doc_id, story) VALUES (?, ?)", (doc_id, story))

    # -- finishing -------------------------------------------------------------------------------
    def finish(self, report: BuildReport, labeller) -> dict:
        from toolkit.lexical import LexicalIndex

        self.store.conn.execute("DELETE FROM stories WHERE doc_id NOT IN (SELECT doc_id FROM documents)")
        self.store.commit()
        counts = self.store.counts()
        rows_texts = self.store.texts()
        lexical = LexicalIndex.build([r for r, _ in rows_texts], [t for _, t in rows_texts])
        lexical.save(self.folder / self.files["lexical"])
        del lexical, rows_texts  # saved: free the texts and BM25 arrays before the vector index rebuild
        self.vectors = self.vectors.rebuilt(self.index_type, consume=True)  # flat, or an ANN structure by size
        self.vectors.save(self.folder / self.files["vectors"])
        self.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.store.close()
        with open(self.folder / self.files["store"], "rb+") as handle:
            import os

            os.fsync(handle.fileno())
        fsync_dir(self.folder)
        report.passages_total = counts["passages"]
        report.documents_total = counts["documents"]
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        labels = (self.old or {}).get("labels")
        if labeller is not None:
            labels = labeller.summary()
        return {
            "format": FORMAT_VERSION,
            "toolkit_version": __version__,
            "created": (self.old or {}).get("created", now),
            "updated": now,
            "generation": int(self.files["store"].split(".")[1]),
            "model": {"id": self.embedder.model_id, "dim": int(self.embedder.dim), "normalized": True,
                      "backend": self.embedder.backend, "max_tokens": self.max_tokens},
            "faiss": {"factory": self.vectors.factory, "metric": "inner_product"},
            "vector_index": self.vectors.spec,
            "search": (self.old or {}).get("search", DEFAULT_FUSION),
            "files": self.files,
            "counts": counts,
            "labels": labels,
        }

    def abandon(self) -> None:
        try:
            self.store.close()
        except sqlite3.Error:
            pass
        for name in self.files.values():
            _remove(self.folder / name)


class _ChunkWriter:
    """A thread writing embedded chunks to a :class:`_GenerationWriter` in order, behind embedding.

    Errors raised while writing come back to the embedding thread at its next :meth:`put` or at
    :meth:`close`; :meth:`stop` (always called) waits until no chunk is being written.
    """

    def __init__(self, generation: "_GenerationWriter", report: BuildReport, labeller, bar) -> None:
        self.generation, self.report, self.labeller, self.bar = generation, report, labeller, bar
        self.chunks: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="toolkit-writer")
        self.thread.start()

    def _run(self) -> None:
        while True:
            chunk = self.chunks.get()
            if chunk is None:
                return
            if self.error is None:
                try:
                    self.generation._write(*chunk, self.report, self.labeller, self.bar)
                except BaseException as exc:  # noqa: BLE001 - handed to the embedding thread
                    self.error = exc

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, pending, vectors: np.ndarray) -> None:
        self._check()
        while True:
            try:
                self.chunks.put((pending, vectors), timeout=0.5)
                return
            except queue.Full:
                self._check()
                if not self.thread.is_alive():
                    raise RuntimeError("the index writer thread stopped")

    def close(self) -> None:
        """Wait until every chunk is written; raise the writer's error if there was one."""
        self.chunks.put(None)
        self.thread.join()
        self._check()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.error = self.error or _Stopped()  # skip chunks still queued
            while True:  # make room for the end marker, dropping unwritten chunks
                try:
                    self.chunks.put_nowait(None)
                    break
                except queue.Full:
                    try:
                        self.chunks.get_nowait()
                    except queue.Empty:
                        pass
            self.thread.join()
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _Stopped(Exception):
    """Set as the writer's error when the embedding thread gave up; never raised to the user."""


def _progress(enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(unit=" passages", desc="indexing", leave=False)
