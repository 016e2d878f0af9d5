"""Rank fusion of dense and lexical result lists (pure functions).

Two methods are offered. Reciprocal-rank fusion (RRF) sums ``w / (k + rank)`` and ignores score
scales; convex combination (``"convex"``) min-max normalises each list's scores and sums
``w * score``. Which one is the default is decided by measurement (``docs/benchmarks.md``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

RankedList = Sequence[tuple[int, float]]  # (row, score), best first


def rrf(lists: Sequence[RankedList], weights: Sequence[float] | None = None, k: int = 60) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion; returns (row, fused score) best first, ties broken by row."""
    weights = weights or [1.0] * len(lists)
    fused: dict[int, float] = {}
    for ranked, weight in zip(lists, weights):
        for rank, (row, _score) in enumerate(ranked, 1):
            fused[row] = fused.get(row, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def minmax(ranked: RankedList) -> dict[int, float]:
    """Scores scaled to [0, 1] within the list; a list of equal scores maps to 1."""
    if not ranked:
        return {}
    scores = [s for _, s in ranked]
    low, high = min(scores), max(scores)
    span = high - low
    return {row: (1.0 if span == 0 else (score - low) / span) for row, score in ranked}


def convex(lists: Sequence[RankedList], weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """Weighted sum of min-max normalised scores; a row missing from a list scores 0 there."""
    weights = weights or [1.0 / len(lists)] * len(lists)
    fused: dict[int, float] = {}
    for ranked, weight in zip(lists, weights):
        for row, score in minmax(ranked).items():
            fused[row] = fused.get(row, 0.0) + weight * score
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def fuse(lists: Sequence[RankedList], method: str = "rrf", params: Mapping[str, float] | None = None) -> list[tuple[int, float]]:
    """Dispatch to :func:`rrf` or :func:`convex` with ``params`` (weights, k)."""
    params = dict(params or {})
    weights = [params.get("dense_weight", 1.0), params.get("lexical_weight", 1.0)][: len(lists)]
    if method == "rrf":
        return rrf(lists, weights, int(params.get("k", 60)))
    if method == "convex":
        total = sum(weights) or 1.0
        return convex(lists, [w / total for w in weights])
    raise ValueError(f"The 'method' parameter of fuse must be 'rrf' or 'convex'. Got {method!r} instead.")
