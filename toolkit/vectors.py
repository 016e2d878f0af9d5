"""FAISS vector index keyed by passage row ids, with filtered search.

Vectors are L2-normalised float32 and searched by inner product. The index is an ``IndexIDMap2``
around a flat (exact) index while the collection is small; :func:`choose_factory` picks an
approximate structure for large collections (see ``docs/performance.md``). Filtered search passes an
ID selector to FAISS, and for small allowed sets scores the allowed vectors exactly, so a filter
never hides matches that exist.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from toolkit.errors import IndexError_

log = logging.getLogger(__name__)

EXACT_LIMIT = 200_000  # passages; below this exact search answers within a few milliseconds
SMALL_SUBSET = 20_000  # a filter allowing this many rows or fewer is scored exactly


def _faiss():
    import faiss

    return faiss


def choose_factory(n: int, dim: int) -> str:
    """FAISS factory string for a collection of ``n`` vectors of dimension ``dim``."""
    if n <= EXACT_LIMIT:
        return "IDMap2,Flat"
    return "IDMap2,HNSW32,Flat"


class VectorIndex:
    """Vectors by integer row id."""

    def __init__(self, dim: int, factory: str = "IDMap2,Flat", index=None) -> None:
        faiss = _faiss()
        self.dim = dim
        self.factory = factory
        self.index = index if index is not None else faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, rows: Sequence[int], vectors: np.ndarray) -> None:
        if len(rows) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(rows), self.dim):
            raise ValueError(f"vectors must have shape ({len(rows)}, {self.dim}). Got {vectors.shape} instead.")
        self.index.add_with_ids(vectors, np.asarray(rows, dtype=np.int64))

    def remove(self, rows: Sequence[int]) -> None:
        if len(rows):
            faiss = _faiss()
            self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(rows, dtype=np.int64)))

    def reconstruct(self, rows: Sequence[int]) -> np.ndarray:
        if not len(rows):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([self.index.reconstruct(int(r)) for r in rows]).astype(np.float32)

    def search(self, queries: np.ndarray, k: int, allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, rows) per query; rows are -1 where fewer than ``k`` exist."""
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(k, len(self) or 1))
        if allowed is None:
            return self.index.search(queries, k)
        allowed = np.asarray(allowed, dtype=np.int64)
        if len(allowed) == 0:
            return (np.full((len(queries), k), -np.inf, dtype=np.float32), np.full((len(queries), k), -1))
        if len(allowed) <= SMALL_SUBSET:
            return _exact_subset(self.reconstruct(allowed), allowed, queries, k)
        selector = faiss.IDSelectorBatch(allowed)
        if "HNSW" in self.factory:
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(256, 2 * k))
        else:
            params = faiss.SearchParameters(sel=selector)
        return self.index.search(queries, k, params=params)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        faiss = _faiss()
        faiss.write_index(self.index, str(path))
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())

    @classmethod
    def load(cls, path: Path, dim: int, factory: str) -> "VectorIndex":
        faiss = _faiss()
        if not path.exists():
            raise IndexError_(f"{path}: vector file missing", hint="rebuild with `toolkit index --rebuild`")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            # FAISS's message is a C++ signature and source line; the size says enough to the user.
            raise IndexError_(f"{path}: damaged FAISS file ({path.stat().st_size} bytes, cannot be read: "
                              "truncated or corrupt)", hint="rebuild with `toolkit index --rebuild`") from exc
        if index.d != dim:
            raise IndexError_(f"{path}: vectors have dimension {index.d}, manifest says {dim}",
                              hint="rebuild with `toolkit index --rebuild`")
        return cls(dim, factory, index)


def _exact_subset(vectors: np.ndarray, rows: np.ndarray, queries: np.ndarray, k: int):
    scores = queries @ vectors.T
    k = min(k, len(rows))
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1)
    return (np.take_along_axis(top_scores, order, axis=1).astype(np.float32),
            rows[np.take_along_axis(top, order, axis=1)])
