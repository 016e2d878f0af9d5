"""Query latency and ANN recall at 100k and 1M passages; prints a Markdown table.

For each size an index directory is built once and cached in ``--workdir`` (``index-<n>``), from
synthetic passages: vectors are the bundled model's embeddings of the labelled passages
(``data/labels``) blended in pairs and perturbed, so they cluster like real embeddings and real
query embeddings have near neighbours; texts are words drawn from the same passages, for BM25.
Embedding 100k real passages would take ~30 min on 2 cores, so the index is written directly through
the project's lower-level modules (``Store``, ``VectorIndex.rebuilt``, ``LexicalIndex``) with the
manifest ``build_index`` writes; everything a query touches is the product's code.

Each phase runs in its own child process so its peak RSS (``ru_maxrss``) is its own:

- ``build``: write the index (skipped when cached); build seconds, vector-index seconds, peak RSS.
- ``query``: open the index, warm up, then time ``Index.search`` for every query in dense and
  hybrid mode (query embedding with the bundled model included); p50/p99; then the same queries
  against an exact (flat) copy of the vectors give recall@10 of the ANN index vs exact search.
- ``cold``: wall time of ``toolkit query "..." --index DIR`` as a new process, median of 5.

Usage: python scripts/bench_query.py --workdir /tmp/bench-query [--sizes 100000,1000000] [--queries 200]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIM = 384
PASSAGES_PER_DOC = 5
CHUNK = 50_000
NOISE = 0.045  # per-coordinate perturbation: top-1 cosine of real queries ~0.5, as on real news


@dataclass
class SynthDocument:
    doc_id: str
    path: str
    title: str
    source: str
    url: str
    published: str
    content_hash: str
    text: str


@dataclass
class SynthPassage:
    ordinal: int
    start: int
    end: int
    text: str


def label_texts() -> list[str]:
    texts = []
    for path in sorted((ROOT / "data" / "labels").glob("*.jsonl")):
        texts += [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    return sorted(set(texts))


def query_strings(count: int, seed: int) -> list[str]:
    """Short news-like queries: 5-9 word windows of the labelled passages."""
    rng = random.Random(seed + 1)
    texts = label_texts()
    queries = []
    while len(queries) < count:
        words = rng.choice(texts).split()
        if len(words) < 10:
            continue
        start = rng.randrange(0, len(words) - 9)
        queries.append(" ".join(words[start : start + rng.randint(5, 9)]))
    return queries


def build(folder: Path, n: int, seed: int, index_type: str) -> dict:
    from toolkit import __version__
    from toolkit.embed import Embedder
    from toolkit.index import DEFAULT_FUSION, FORMAT_VERSION
    from toolkit.indexing import _generation_files
    from toolkit.lexical import LexicalIndex
    from toolkit.store import Store
    from toolkit.vectors import VectorIndex

    started = time.perf_counter()
    texts = label_texts()
    embedder = Embedder()
    centres = embedder.encode(texts)  # cached after the first run
    words = [re.findall(r"\w+", t) for t in texts]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = _generation_files(1)
    store = Store(folder / files["store"])
    vectors = VectorIndex(DIM)
    rows_texts: list[str] = []
    for first in range(0, n, CHUNK):
        size = min(CHUNK, n - first)
        a, b = rng.integers(0, len(centres), size), rng.integers(0, len(centres), size)
        weight = rng.uniform(0.6, 1.0, (size, 1)).astype(np.float32)
        block = weight * centres[a] + (1 - weight) * centres[b]
        block += NOISE * rng.standard_normal((size, DIM), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        vectors.add(np.arange(first, first + size), block)
        texts_block = []
        for i in range(size):
            own, other = words[a[i]], words[b[i]]
            picked = [own[j] for j in rng.integers(0, len(own), 24)] + [other[j] for j in rng.integers(0, len(other), 6)]
            texts_block.append(f"{first + i} " + " ".join(picked))
        rows_texts += texts_block
        for d in range(0, size, PASSAGES_PER_DOC):
            row = first + d
            body, passages, offset = [], [], 0
            for ordinal, text in enumerate(texts_block[d : d + PASSAGES_PER_DOC]):
                passages.append(SynthPassage(ordinal, offset, offset + len(text), text))
                body.append(text)
                offset += len(text) + 2
            doc = row // PASSAGES_PER_DOC
            document = SynthDocument(f"d{doc}", f"synthetic/{doc}.txt", f"Synthetic article {doc}",
                                     f"site-{doc % 20}", "", f"{2015 + doc % 10}-{1 + doc % 12:02d}-{1 + doc % 28:02d}",
                                     str(doc), "\n\n".join(body))
            store.add_document(document, passages, row)
            # every tenth article reposts the previous one's story, so dedupe has work to do
            story = f"d{doc - 1}" if doc % 10 == 9 else f"d{doc}"
            store.conn.execute("INSERT INTO stories VALUES (?, ?)", (document.doc_id, story))
        store.commit()
    written = time.perf_counter()
    started_vectors = time.perf_counter()
    vectors = vectors.rebuilt(index_type)
    vector_seconds = time.perf_counter() - started_vectors
    vectors.save(folder / files["vectors"])
    started_lexical = time.perf_counter()
    LexicalIndex.build(list(range(n)), rows_texts).save(folder / files["lexical"])
    lexical_seconds = time.perf_counter() - started_lexical
    counts = store.counts()
    store.close()
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    manifest = {  # the fields build_index writes (toolkit/indexing.py, _GenerationWriter.finish)
        "format": FORMAT_VERSION, "toolkit_version": __version__, "created": now, "updated": now, "generation": 1,
        "model": {"id": embedder.model_id, "dim": DIM, "normalized": True, "backend": "torch",
                  "max_tokens": min(128, embedder.max_tokens)},
        "faiss": {"factory": vectors.factory, "metric": "inner_product"}, "vector_index": vectors.spec,
        "search": DEFAULT_FUSION, "files": files, "counts": counts, "labels": None,
        "synthetic": {"seed": seed, "noise": NOISE},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return {"build_s": round(time.perf_counter() - started, 1), "store_s": round(written - started, 1),
            "vector_index_s": round(vector_seconds, 1), "lexical_s": round(lexical_seconds, 1),
            "vector_index": vectors.spec}


def measure_queries(folder: Path, queries: list[str], backend: str | None) -> dict:
    from toolkit.index import Index
    from toolkit.vectors import VectorIndex

    index = Index.open(folder, backend=backend)
    for query in queries[:5]:  # load the model, vectors, BM25 and SQLite pages
        index.search(query, 10)
    out = {"vector_index": index.manifest.get("vector_index", {}).get("type", "flat")}
    found: dict[str, list] = {}
    for mode in ("dense", "hybrid"):
        seconds, found[mode] = [], []
        for query in queries:
            started = time.perf_counter()
            hits = index.search(query, 10, mode=mode)
            seconds.append(time.perf_counter() - started)
            found[mode].append([h.passage_id for h in hits])
        out[f"{mode}_p50_ms"] = round(1000 * float(np.percentile(seconds, 50)), 2)
        out[f"{mode}_p99_ms"] = round(1000 * float(np.percentile(seconds, 99)), 2)
    if index.vectors.index_type != "flat":
        exact = VectorIndex(index.vectors.dim)
        exact.add(*index.vectors.contents())
        index._vectors = exact
    for mode in ("dense", "hybrid"):
        truth = [[h.passage_id for h in index.search(query, 10, mode=mode)] for query in queries]
        out[f"{mode}_recall@10"] = round(float(np.mean(
            [len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(found[mode], truth)])), 4)
    return out


def measure_cold(folder: Path, query: str, backend: str | None, runs: int = 5) -> dict:
    toolkit = Path(sys.executable).with_name("toolkit")
    command = [str(toolkit), "query", query, "--index", str(folder), "-k", "10", "-q"]
    command += ["--backend", backend] if backend else []
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - started)
    return {"cold_query_s": round(statistics.median(seconds), 2)}


def child(phase: str, args) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--size", str(args.size_for_child), "--workdir",
               str(args.workdir), "--queries", str(args.queries), "--seed", str(args.seed),
               "--index-type", args.index_type] + (["--backend", args.backend] if args.backend else [])
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="cache of built indexes (index-<n>)")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index-type", default="auto", help="auto, flat, hnsw or ivf")
    parser.add_argument("--backend", help="query encoding backend (torch, onnx, openvino) [default: torch]")
    parser.add_argument("--phase", choices=("build", "query", "cold"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.phase:
        folder = args.workdir / f"index-{args.size}-{args.index_type}"
        if args.phase == "build":
            record = folder / "build.json"
            if (folder / "manifest.json").exists() and record.exists():
                print(json.dumps({**json.loads(record.read_text()), "cached": True}))
                return
            result = build(folder, args.size, args.seed, args.index_type)
        elif args.phase == "query":
            result = measure_queries(folder, query_strings(args.queries, args.seed), args.backend)
        else:
            result = measure_cold(folder, query_strings(1, args.seed)[0], args.backend)
        who = resource.RUSAGE_CHILDREN if args.phase == "cold" else resource.RUSAGE_SELF  # cold: the toolkit process
        result["peak_rss_mb"] = round(resource.getrusage(who).ru_maxrss / 1024)
        if args.phase == "build":
            (folder / "build.json").write_text(json.dumps(result))
        print(json.dumps(result))
        return
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        args.size_for_child = size
        built = child("build", args)
        print(f"[{size}] build: {built}", file=sys.stderr)
        queried = child("query", args)
        print(f"[{size}] query: {queried}", file=sys.stderr)
        cold = child("cold", args)
        print(f"[{size}] cold: {cold}", file=sys.stderr)
        rows.append((size, built, queried, cold))
    print(f"query encoding backend: {args.backend or 'torch'}\n")
    print(f"| passages | vector index | mode | p50 ms | p99 ms | recall@10 vs exact | build s (vectors s) "
          f"| build peak RSS MB | query peak RSS MB | cold `toolkit query` s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size, built, queried, cold in rows:
        build_s = f"{built['build_s']} ({built['vector_index_s']})"
        build_rss = built["peak_rss_mb"]
        for mode in ("dense", "hybrid"):
            print(f"| {size:,} | {queried['vector_index']} | {mode} | {queried[f'{mode}_p50_ms']} | "
                  f"{queried[f'{mode}_p99_ms']} | {queried[f'{mode}_recall@10']} | {build_s} | {build_rss} | "
                  f"{queried['peak_rss_mb']} | {cold['cold_query_s']} |")
    print(f"\n{args.queries} queries per mode, k=10; reproduce: python scripts/bench_query.py --workdir "
          f"{args.workdir} --sizes {args.sizes} --queries {args.queries} --seed {args.seed}"
          + (f" --index-type {args.index_type}" if args.index_type != "auto" else "")
          + (f" --backend {args.backend}" if args.backend else ""))


if __name__ == "__main__":
    main()
