"""Sweep hybrid fusion (RRF vs convex, weights, k) and BM25 k1/b on one BEIR split, in memory.

The dense and lexical candidate lists do not depend on the fusion parameters, so each query is
embedded and searched once, at the depth ``toolkit evaluate-search`` uses (``Index._rank`` asks each
side for ``max(depth, 3 * 1000 + 10)`` passages when 1000 passages are requested), and every fusion
setting is applied to those lists in memory. BM25 settings are swept by building the lexical index
in memory from the index's passage texts with :class:`toolkit.lexical.LexicalIndex`. The documents
are ranked exactly as :func:`toolkit.retrieval.rank_documents` ranks them (best passage, top 1000
fused passages), and a self-check compares the in-memory fusion with :func:`toolkit.fusion.fuse`
and with ``Index.search`` before the sweep starts.

Tune on the train queries only; report test with ``toolkit evaluate-search``.

Usage:
    python scripts/tune_fusion.py ../shared/benchmarks/scifact --index DIR [--split train] [--out sweep.json]
        [--bm25 K1,B ...]

``DIR`` is an index of the benchmark's corpus, e.g. the one ``toolkit evaluate-search`` built (its
path is logged), or build one with ``toolkit evaluate-search BEIR --index DIR``.
Prints markdown tables (best BM25 settings, then the fusion grid at the best BM25 setting) on stdout.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from toolkit.fusion import fuse  # noqa: E402
from toolkit.index import DEFAULT_FUSION, Index  # noqa: E402
from toolkit.lexical import LexicalIndex  # noqa: E402
from toolkit.retrieval import (  # noqa: E402
    PASSAGE_DEPTH, ndcg_at_k, rank_documents, read_qrels, read_queries, score_run, single_query_threads)

log = logging.getLogger("tune_fusion")

BM25_GRID = [(k1, b) for k1 in (0.9, 1.2, 1.5, 2.0) for b in (0.4, 0.6, 0.75, 0.9)]
RRF_K = (5, 10, 20, 30, 60, 100)
RRF_LEXICAL_WEIGHT = (0.5, 0.75, 1.0, 1.5, 2.0)  # with dense_weight 1.0
CONVEX_DENSE_WEIGHT = (0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9)  # lexical weight = 1 - this
SHALLOW = 100  # candidate depth of an interactive query (k=10): DEFAULT_FUSION["depth"]
BUILD_DEFAULT_BM25 = (1.2, 0.75)  # LexicalIndex.build defaults before tuning
BASELINE_FUSION = {"method": "rrf", "k": 60, "dense_weight": 1.0, "lexical_weight": 1.0}  # DEFAULT_FUSION before


def fusion_grid() -> list[dict]:
    grid = [{"method": "rrf", "k": k, "dense_weight": 1.0, "lexical_weight": w}
            for k, w in itertools.product(RRF_K, RRF_LEXICAL_WEIGHT)]
    grid += [{"method": "convex", "k": 60, "dense_weight": a, "lexical_weight": round(1 - a, 2)}
             for a in CONVEX_DENSE_WEIGHT]
    return grid


def fuse_np(dense: tuple[np.ndarray, np.ndarray], lexical: tuple[np.ndarray, np.ndarray], params: dict) -> np.ndarray:
    """Rows best first; the same arithmetic and tie-break (row) as :func:`toolkit.fusion.fuse`."""
    (rows_d, scores_d), (rows_l, scores_l) = dense, lexical
    union, inverse = np.unique(np.concatenate([rows_d, rows_l]), return_inverse=True)
    fused = np.zeros(len(union))
    wd, wl = float(params["dense_weight"]), float(params["lexical_weight"])
    if params["method"] == "rrf":
        k = int(params["k"])
        parts = [wd / (k + np.arange(1, len(rows_d) + 1)), wl / (k + np.arange(1, len(rows_l) + 1))]
    else:
        total = (wd + wl) or 1.0
        parts = [(wd / total) * _minmax(scores_d), (wl / total) * _minmax(scores_l)]
    fused[inverse[: len(rows_d)]] += parts[0]
    fused[inverse[len(rows_d):]] += parts[1]
    return union[np.lexsort((union, -fused))]


def _minmax(scores: np.ndarray) -> np.ndarray:
    if not len(scores):
        return scores.astype(np.float64)
    scores = scores.astype(np.float64)
    low, high = scores.min(), scores.max()
    return np.ones_like(scores) if high == low else (scores - low) / (high - low)


def documents(rows: np.ndarray, doc_of: np.ndarray, passages: int = PASSAGE_DEPTH) -> list[str]:
    """Document ids by best passage among the top ``passages`` rows (as rank_documents does)."""
    seen: dict[str, None] = {}
    for row in rows[:passages]:
        seen.setdefault(doc_of[row], None)
    return list(seen)


def evaluate(grid, dense_lists, lexical_lists, qrels, doc_of) -> tuple[list[dict], list[np.ndarray]]:
    """Mean metrics per fusion setting, and each setting's per-query nDCG@10 (for paired tests)."""
    results, per_query = [], []
    ids = list(qrels)
    for params in grid:
        run, shallow = {}, {}
        for qid in ids:
            run[qid] = documents(fuse_np(dense_lists[qid], lexical_lists[qid], params), doc_of)
            cut = tuple((r[:SHALLOW], s[:SHALLOW]) for r, s in (dense_lists[qid], lexical_lists[qid]))
            shallow[qid] = documents(fuse_np(cut[0], cut[1], params), doc_of)
        results.append({**params, **score_run(run, qrels), "ndcg@10_depth100": score_run(shallow, qrels)["ndcg@10"]})
        per_query.append(np.array([ndcg_at_k(run[qid], qrels[qid], 10) for qid in ids]))
    return results, per_query


def paired(a: np.ndarray, b: np.ndarray) -> str:
    """Mean per-query difference a - b with its standard error, and wins/losses."""
    diff = a - b
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    return (f"{diff.mean():+.4f} ± {se:.4f} (SE; {diff.mean() / se if se else 0:+.1f} SE), "
            f"better on {(diff > 0).sum()}, worse on {(diff < 0).sum()} of {len(diff)} queries")


def _name(params: dict) -> str:
    return f"{params['method']} {params['dense_weight']}/{params['lexical_weight']}" + (
        f" k={params['k']}" if params["method"] == "rrf" else "")


def single(lists, qrels, doc_of) -> dict:
    return score_run({qid: documents(lists[qid][0], doc_of) for qid in qrels}, qrels)


def self_check(index: Index, queries, qrels, dense_lists, lexical_lists, doc_of, grid) -> None:
    """The in-memory fusion must reproduce toolkit.fusion.fuse and Index.search exactly."""
    sample = list(qrels)[:25]
    for qid, params in itertools.product(sample, grid[::7] + grid[-3:]):
        lists = [list(zip(r.tolist(), s.tolist())) for r, s in (dense_lists[qid], lexical_lists[qid])]
        expected = [row for row, _ in fuse(lists, params["method"], params)]
        got = fuse_np(dense_lists[qid], lexical_lists[qid], params).tolist()
        assert got == expected, f"in-memory fusion differs from toolkit.fusion.fuse on {qid} with {params}"
    built = {**DEFAULT_FUSION, **index.manifest.get("search", {})}
    for qid in sample[:10]:
        via_index = rank_documents(index, queries[qid], mode="hybrid")
        via_sweep = documents(fuse_np(dense_lists[qid], lexical_lists[qid], built), doc_of)
        assert via_index == via_sweep, f"sweep ranking differs from Index.search on {qid}"


def markdown(rows: list[dict], columns: list[str]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        out.append("| " + " | ".join(f"{row[c]:.4f}" if isinstance(row[c], float) and c not in
                                      ("dense_weight", "lexical_weight", "k1", "b") else str(row[c])
                                      for c in columns) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="BEIR folder")
    parser.add_argument("--index", type=Path, required=True, help="index of the folder's corpus")
    parser.add_argument("--split", default="train", help="qrels split to tune on [train]")
    parser.add_argument("--out", type=Path, help="write every result as JSON here")
    parser.add_argument("--bm25", nargs="+", metavar="K1,B", help="BM25 settings to try [a 4x4 grid]")
    args = parser.parse_args(argv)
    bm25_grid = [tuple(float(v) for v in pair.split(",")) for pair in args.bm25] if args.bm25 else BM25_GRID
    if BUILD_DEFAULT_BM25 not in bm25_grid:
        bm25_grid.append(BUILD_DEFAULT_BM25)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("sentence_transformers", "transformers", "bm25s", "faiss"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    qrels, queries = read_qrels(args.folder, args.split), read_queries(args.folder)
    index = Index.open(args.index)
    depth = max(int({**DEFAULT_FUSION, **index.manifest.get("search", {})}["depth"]), 3 * PASSAGE_DEPTH + 10)
    rows_texts = index.store.texts()
    doc_of = np.empty(max(r for r, _ in rows_texts) + 1, dtype=object)
    for row, doc_id in index.store.conn.execute("SELECT row, doc_id FROM passages"):
        doc_of[row] = doc_id
    log.info("%s: %d queries, %d passages, candidate depth %d", args.split, len(qrels), len(rows_texts), depth)

    started = time.perf_counter()
    dense_lists = {}
    with single_query_threads():
        for qid in qrels:
            scores, rows = index.vectors.search(index.embedder.encode_query(queries[qid]), depth)
            keep = rows[0] >= 0
            dense_lists[qid] = (rows[0][keep].astype(np.int64), scores[0][keep])
    log.info("dense lists in %.1f s", time.perf_counter() - started)

    def lexical_lists_for(lexical: LexicalIndex) -> dict:
        out = {}
        for qid in qrels:
            scores, rows = lexical.search(queries[qid], depth)
            out[qid] = (np.asarray(rows, dtype=np.int64), np.asarray(scores))
        return out

    grid = fusion_grid()
    built_lexical = lexical_lists_for(index.lexical)
    with single_query_threads():
        self_check(index, queries, qrels, dense_lists, built_lexical, doc_of, grid)
    log.info("self-check passed: in-memory fusion == toolkit.fusion.fuse == Index.search")

    dense_scores = single(dense_lists, qrels, doc_of)
    bm25_rows, everything = [], {"split": args.split, "queries": len(qrels), "dense": dense_scores, "bm25": []}
    texts = [t for _, t in rows_texts]
    row_ids = [r for r, _ in rows_texts]
    per_query: dict[tuple, list[np.ndarray]] = {}
    for k1, b in bm25_grid:
        started = time.perf_counter()
        lexical_lists = lexical_lists_for(LexicalIndex.build(row_ids, texts, k1=k1, b=b))
        fused, per_query[(k1, b)] = evaluate(grid, dense_lists, lexical_lists, qrels, doc_of)
        best = max(fused, key=lambda r: r["ndcg@10"])
        lexical_scores = single(lexical_lists, qrels, doc_of)
        bm25_rows.append({"k1": k1, "b": b, "lexical ndcg@10": lexical_scores["ndcg@10"],
                          "best hybrid ndcg@10": best["ndcg@10"],
                          "best fusion": _name(best)})
        everything["bm25"].append({"k1": k1, "b": b, "lexical": lexical_scores, "fusion": fused})
        log.info("BM25 k1=%s b=%s: lexical nDCG@10 %.4f, best hybrid %.4f (%s) [%.1f s]", k1, b,
                 lexical_scores["ndcg@10"], best["ndcg@10"], bm25_rows[-1]["best fusion"], time.perf_counter() - started)

    # Selection rule: highest train nDCG@10. BM25 leaves its defaults only when the best setting beats
    # the same fusion at the default BM25 by more than 2 standard errors of the paired difference.
    top = max(everything["bm25"], key=lambda e: max(r["ndcg@10"] for r in e["fusion"]))
    top_i = int(np.argmax([r["ndcg@10"] for r in top["fusion"]]))
    default_entry = next(e for e in everything["bm25"] if (e["k1"], e["b"]) == BUILD_DEFAULT_BM25)
    default_bm25 = per_query[BUILD_DEFAULT_BM25]
    gain = per_query[(top["k1"], top["b"])][top_i] - default_bm25[top_i]
    significant = gain.std(ddof=1) > 0 and gain.mean() > 2 * gain.std(ddof=1) / np.sqrt(len(gain))
    chosen = top if significant else default_entry
    chosen_i = int(np.argmax([r["ndcg@10"] for r in chosen["fusion"]]))
    baseline_i = next(i for i, g in enumerate(grid) if all(g[k] == v for k, v in BASELINE_FUSION.items()))
    chosen_q = per_query[(chosen["k1"], chosen["b"])]
    runner_up = max((i for i, g in enumerate(grid) if g["method"] != grid[chosen_i]["method"]),
                    key=lambda i: chosen_q[i].mean())

    print(f"## {args.folder.name}, {args.split} split ({len(qrels)} queries)\n")
    print(f"dense: nDCG@10 {dense_scores['ndcg@10']:.4f}, recall@100 {dense_scores['recall@100']:.4f}\n")
    print("### BM25 settings (hybrid column: best fusion setting of the grid)\n")
    print(markdown(bm25_rows, ["k1", "b", "lexical ndcg@10", "best hybrid ndcg@10", "best fusion"]) + "\n")
    print(f"### Fusion grid with BM25 k1={chosen['k1']} b={chosen['b']} "
          f"(lexical nDCG@10 {chosen['lexical']['ndcg@10']:.4f})\n")
    columns = ["method", "k", "dense_weight", "lexical_weight", "ndcg@10", "recall@10", "recall@100", "mrr@10",
               "ndcg@10_depth100"]
    rows = sorted(chosen["fusion"], key=lambda r: -r["ndcg@10"])
    print(markdown([{**r, "k": r["k"] if r["method"] == "rrf" else "-"} for r in rows], columns))
    print("\n### Paired differences in nDCG@10 (per query)\n")
    print(f"- best overall (BM25 k1={top['k1']} b={top['b']}, {_name(grid[top_i])}) vs the same fusion with BM25 "
          f"k1={BUILD_DEFAULT_BM25[0]} b={BUILD_DEFAULT_BM25[1]}: {paired(gain + default_bm25[top_i], default_bm25[top_i])}"
          f" -> {'change' if significant else 'keep'} the BM25 defaults")
    print(f"- chosen ({_name(grid[chosen_i])}) vs best of the other method ({_name(grid[runner_up])}): "
          f"{paired(chosen_q[chosen_i], chosen_q[runner_up])}")
    print(f"- chosen ({_name(grid[chosen_i])}) vs RRF k=60 1/1: {paired(chosen_q[chosen_i], chosen_q[baseline_i])}")
    chosen_fusion = {k: grid[chosen_i][k] for k in ("method", "k", "dense_weight", "lexical_weight")}
    print(f"\nchosen: BM25 k1={chosen['k1']} b={chosen['b']}; DEFAULT_FUSION = "
          f"{json.dumps({**chosen_fusion, 'depth': DEFAULT_FUSION['depth']})}")
    if args.out:
        args.out.write_text(json.dumps(everything, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
