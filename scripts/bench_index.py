"""Indexing throughput: end-to-end `toolkit index` beside raw SentenceTransformer.encode, one run.

Builds a synthetic corpus of news-like articles from the labelled passages (each article a random
draw of passages, so texts repeat across articles only as often as the draw allows), indexes it with
the CLI in a subprocess with an empty embedding cache, and encodes the very passages the index made
with plain `SentenceTransformer.encode` (torch fp32, batch 32, as sentence-transformers does by
default). Prints passages/s for both, their ratio, and peak memory (RSS) of the index process.

Usage: python scripts/bench_index.py [--passages 20000] [--seed 0] [--backend torch] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def synthetic_corpus(folder: Path, target_passages: int, seed: int) -> int:
    """Write articles (JSONL) whose passages add up to about ``target_passages``; return articles."""
    rows = []
    for path in sorted((ROOT / "data" / "labels").glob("*.jsonl")):
        rows += [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    articles, n = [], 0
    while n < target_passages:
        k = rng.randint(3, 9)
        # Each paragraph gets an article-specific lead so passages are distinct texts, as in real news.
        body = [f"Report {len(articles)}, paragraph {i}: {rng.choice(rows)}" for i in range(k)]
        articles.append({"id": f"syn-{len(articles)}", "title": f"Synthetic article {len(articles)}",
                         "text": "\n\n".join(body), "source": f"site-{len(articles) % 17}"})
        n += k
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(a) + "\n" for a in articles))
    return len(articles)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--keep", type=Path, default=None, help="keep the corpus and index here")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-index-"))
    articles = synthetic_corpus(work / "corpus", args.passages, args.seed)
    env = {**os.environ, "TOOLKIT_CACHE_DIR": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
    toolkit = [sys.executable, "-m", "toolkit"]
    started = time.perf_counter()
    result = subprocess.run([*toolkit, "index", str(work / "corpus"), "--index", str(work / "index"), "--rebuild",
                             "--backend", args.backend, "--json", "-q"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return 1
    report = json.loads(result.stdout)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    from toolkit.index import Index

    index = Index.open(work / "index")
    texts = [t for _, t in index.store.texts()]
    from sentence_transformers import SentenceTransformer

    from toolkit.embed import resolve_model

    model = SentenceTransformer(resolve_model(None)[1], device="cpu")
    model.encode(texts[:64], batch_size=32)  # warm-up
    started = time.perf_counter()
    model.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
    raw = time.perf_counter() - started

    n = report["passages_total"]
    print(f"corpus: {articles} synthetic articles, {n} passages (mean {sum(map(len, texts)) / len(texts):.0f} chars)")
    print(f"toolkit index ({args.backend}), end to end incl. model load: {wall:.1f} s = {n / wall:.1f} passages/s; "
          f"embedding alone {report['embed_seconds']:.1f} s = {n / report['embed_seconds']:.1f} passages/s; "
          f"peak RSS {peak_mb:.0f} MB")
    print(f"raw SentenceTransformer.encode (torch fp32, batch 32, unsorted): {raw:.1f} s = {n / raw:.1f} passages/s")
    print(f"ratio end-to-end / raw encode: {raw / wall:.2f}x")
    print(f"command: python scripts/bench_index.py --passages {args.passages} --seed {args.seed} --backend {args.backend}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
