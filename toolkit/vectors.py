"""FAISS vector index keyed by passage row ids, with filtered search.

Vectors are L2-normalised float32 and searched by inner product. The structure depends on the size
of the collection (:func:`choose_index_type`, measured in ``docs/performance.md``): an exact
``IndexIDMap2`` around a flat index up to :data:`EXACT_LIMIT` passages, inverted lists (IVF,
k-means over the same float32 vectors) above it; ``hnsw`` is offered too. At 1M passages IVF with
4096 lists reached recall@10 0.99 at 2.6 ms and built in 37 s, where HNSW32 (efSearch 512) fell to
0.87, and needed efConstruction 80, a 150 s build and efSearch 1024 (3 ms) for 0.97. New vectors
are added in place; removing vectors converts the index to flat (HNSW cannot remove, and IDMap2
renumbering breaks IVF ids), and :meth:`VectorIndex.rebuilt` restores the chosen structure when a
generation is finished.

Filtered search scores small allowed sets exactly (the vectors are read back from the index) and
passes an ID selector to FAISS otherwise, with a search widened by the filter's selectivity; an
approximate search that still finds fewer than ``k`` allowed rows falls back to exact scoring, so a
filter never hides matches that exist.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from toolkit.errors import IndexError_, UsageError

log = logging.getLogger(__name__)

INDEX_TYPES = ("auto", "flat", "hnsw", "ivf")
EXACT_LIMIT = 50_000  # passages; flat search p50 ~6 ms here (1 thread), IVF ~2-3 ms above it
SMALL_SUBSET = 10_000  # a filter allowing this many rows or fewer is scored exactly: 8 ms at 10k,
# like HNSW with a selector (which took 8.5 ms at 2-20% of 100k rows; docs/performance.md)
HNSW_M = 32  # graph neighbours per node
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 512  # recall@10 0.99 vs exact at 100k, short real queries, ~2 ms (docs/performance.md)
IVF_NPROBE = 128  # for an IVF index whose manifest has no nprobe
IVF_SCAN = 16_000  # vectors scanned per query by default: nprobe = IVF_SCAN / mean list size, which
# gave recall@10 0.98 at 100k (1024 lists, nprobe 128, short real queries, ~2 ms) and 0.99 at 1M
# (4096 lists, nprobe 64, 2.6 ms) against exact search (docs/performance.md)
IVF_TRAIN_PER_LIST = 64  # k-means sample: 64 vectors per list (FAISS warns below 39)
MAX_EF_SEARCH = 2048


def _faiss():
    import faiss

    return faiss


def choose_index_type(n: int) -> str:
    """``"flat"`` (exact) up to :data:`EXACT_LIMIT` vectors, ``"ivf"`` above."""
    return "flat" if n <= EXACT_LIMIT else "ivf"


def index_spec(index_type: str, n: int) -> tuple[str, dict]:
    """FAISS factory string and search parameters for ``index_type`` over ``n`` vectors."""
    if index_type not in INDEX_TYPES:
        raise UsageError(f"The 'index_type' parameter must be one of {', '.join(INDEX_TYPES)}. "
                         f"Got {index_type!r} instead.")
    if index_type == "auto":
        index_type = choose_index_type(n)
    if index_type == "hnsw":
        return (f"IDMap2,HNSW{HNSW_M},Flat",
                {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": HNSW_EF_SEARCH})
    if index_type == "ivf":
        # about 4 sqrt(n) lists, a power of two, so it changes (and the index is retrained) only when n
        # quadruples; at least 39 training vectors per list
        nlist = max(1, min(2 ** round(math.log2(max(1.0, 4 * math.sqrt(n)))), n // 39 or 1))
        nprobe = max(16, math.ceil(IVF_SCAN * nlist / max(n, 1)))  # lists holding ~IVF_SCAN vectors
        return f"IDMap2,IVF{nlist},Flat", {"nlist": nlist, "nprobe": min(nprobe, nlist)}
    return "IDMap2,Flat", {}


def factory_type(factory: str) -> str:
    """The index type a factory string builds: ``flat``, ``hnsw`` or ``ivf``."""
    return "hnsw" if "HNSW" in factory else "ivf" if "IVF" in factory else "flat"


def choose_factory(n: int, dim: int) -> str:
    """FAISS factory string of the automatic choice for ``n`` vectors (``dim`` is not used)."""
    return index_spec("auto", n)[0]


class VectorIndex:
    """Vectors by integer row id.

    Parameters
    ----------
    dim : int
        Vector dimension.
    factory : str
        FAISS factory string; its type (:func:`factory_type`) says how search is tuned.
    index : faiss.Index, optional
        An existing index (read from disk) instead of an empty one.
    params : dict, optional
        Search parameters (``efSearch`` for HNSW, ``nprobe`` for IVF); defaults per type.
    """

    def __init__(self, dim: int, factory: str = "IDMap2,Flat", index=None, params: dict | None = None) -> None:
        faiss = _faiss()
        self.dim = dim
        self.factory = factory
        self.index_type = factory_type(factory)
        defaults = {"hnsw": {"efSearch": HNSW_EF_SEARCH}, "ivf": {"nprobe": IVF_NPROBE}}.get(self.index_type, {})
        self.params = {**defaults, **(params or {})}
        self.index = index if index is not None else faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def spec(self) -> dict:
        """What the manifest records: ``{"type", "factory", "params"}``."""
        return {"type": self.index_type, "factory": self.factory, "params": dict(self.params)}

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
            if self.index_type != "flat":
                self._to_flat()  # HNSW cannot remove; IDMap2 renumbering breaks IVF ids
            self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(rows, dtype=np.int64)))

    def reconstruct(self, rows: Sequence[int]) -> np.ndarray:
        if not len(rows):
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.index.reconstruct_batch(np.asarray(rows, dtype=np.int64)).astype(np.float32, copy=False)

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        """All ``(rows, vectors)`` in insertion order."""
        faiss = _faiss()
        rows = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        if not len(rows):
            return rows, np.zeros((0, self.dim), dtype=np.float32)
        return rows, self.index.index.reconstruct_n(0, len(rows))

    def _to_flat(self) -> None:
        rows, vectors = self.contents()
        log.info("converting the %s vector index to flat for editing", self.index_type)
        flat = VectorIndex(self.dim)
        flat.add(rows, vectors)
        self.__dict__.update(flat.__dict__)

    def rebuilt(self, index_type: str = "auto", *, consume: bool = False) -> "VectorIndex":
        """This index as ``index_type`` (``auto``: by size); ``self`` when it already is that structure.

        With ``consume`` the vectors are moved out of ``self`` (emptied) before the new structure is
        filled, so the two never hold them at once: 150 MB less at the peak of 100k passages.
        """
        factory, params = index_spec(index_type, len(self))
        if factory == self.factory or not len(self):  # an empty index stays as it is (IVF needs training data)
            self.params = {**self.params, **params}
            return self
        faiss = _faiss()
        rows, vectors = self.contents()
        if consume:
            self.index.reset()
        target = VectorIndex(self.dim, factory, params=params)
        inner = faiss.downcast_index(target.index.index)
        if target.index_type == "hnsw":
            inner.hnsw.efConstruction = params["efConstruction"]
        if target.index_type == "ivf" and len(rows):
            size = IVF_TRAIN_PER_LIST * params["nlist"]
            sample = vectors if len(rows) <= size else vectors[
                np.random.default_rng(0).choice(len(rows), size, replace=False)]
            target.index.train(sample)
        if len(rows):
            target.index.add_with_ids(vectors, rows)
        if target.index_type == "ivf":
            inner.make_direct_map(True)  # reconstruct by row (relabelling, story grouping, filters)
        log.info("vector index: %s over %d vectors", factory, len(rows))
        return target

    def search(self, queries: np.ndarray, k: int, allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, rows) per query; rows are -1 where fewer than ``k`` exist."""
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(k, len(self) or 1))
        if allowed is None:
            return self.index.search(queries, k, params=self._params(k))
        allowed = np.asarray(allowed, dtype=np.int64)
        if len(allowed) == 0:
            return (np.full((len(queries), k), -np.inf, dtype=np.float32), np.full((len(queries), k), -1))
        if len(allowed) <= SMALL_SUBSET:
            return _exact_subset(self.reconstruct(allowed), allowed, queries, k)
        # A bitmap over row ids is cheaper to make than IDSelectorBatch's hash set for large sets.
        mask = np.zeros(int(allowed.max()) + 1, dtype=bool)
        mask[allowed] = True
        bitmap = np.packbits(mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        widen = max(1.0, len(self) / len(allowed))  # 1 / the share of rows the filter allows
        scores, rows = self.index.search(queries, k, params=self._params(k, selector, widen))
        if len(allowed) >= k and (rows < 0).any():
            return _exact_subset(self.reconstruct(allowed), allowed, queries, k)
        return scores, rows

    def _params(self, k: int, selector=None, widen: float = 1.0):
        faiss = _faiss()
        if self.index_type == "hnsw":
            ef = max(k, min(MAX_EF_SEARCH, int(max(self.params["efSearch"], k) * widen)))
            return faiss.SearchParametersHNSW(sel=selector, efSearch=ef) if selector else \
                faiss.SearchParametersHNSW(efSearch=ef)
        if self.index_type == "ivf":
            nlist = faiss.extract_index_ivf(self.index).nlist
            nprobe = min(nlist, int(self.params["nprobe"] * widen))
            return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe) if selector else \
                faiss.SearchParametersIVF(nprobe=nprobe)
        return faiss.SearchParameters(sel=selector) if selector else None

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        faiss = _faiss()
        faiss.write_index(self.index, str(path))
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())

    @classmethod
    def load(cls, path: Path, dim: int, factory: str, params: dict | None = None) -> "VectorIndex":
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
        return cls(dim, factory, index, params)


def _exact_subset(vectors: np.ndarray, rows: np.ndarray, queries: np.ndarray, k: int):
    scores = queries @ vectors.T
    k = min(k, len(rows))
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1)
    return (np.take_along_axis(top_scores, order, axis=1).astype(np.float32),
            rows[np.take_along_axis(top, order, axis=1)])
