"""Indexing throughput: end-to-end `toolkit index` per backend beside raw SentenceTransformer.encode, one run.

Builds a synthetic corpus of news-like articles from the labelled passages (each article a random
draw of passages, so texts repeat across articles only as often as the draw allows), then, each in
its own child process with an empty embedding cache:

1. `toolkit index --backend B` for every backend in --backends (default torch,auto); for a backend
   other than torch, the one-time model export and the auto probe are done first (timed apart) on a
   few articles, so the figure is the steady-state rate;
2. plain `SentenceTransformer.encode` (torch fp32, batch 32) of the very passages the index made.

Prints passages/s of each, their ratio to the raw encode, and the peak RSS of each child process
(from wait4). With --scifact DIR it also runs `toolkit evaluate-search DIR --backend B --json` per
backend and prints nDCG@10 and its difference to torch.

Indexing labels every passage with the default classifier, as `toolkit index` does unless told
--no-labels. --no-raw skips the raw encode (a peak-memory run at 100,000 passages).

Usage: python scripts/bench_index.py [--passages 20000] [--seed 0] [--backends torch,auto]
           [--scifact ../shared/benchmarks/scifact] [--keep DIR] [--no-labels] [--no-raw]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
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


def run_child(args: list[str], env: dict, out: Path) -> tuple[int, float, float, str]:
    """Run a child process; return (exit code, seconds, peak RSS in MB, stdout) via wait4."""
    started = time.perf_counter()
    with open(out, "w") as stdout, open(out.with_suffix(".err"), "w") as stderr:
        process = subprocess.Popen(args, env=env, stdout=stdout, stderr=stderr, text=True)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        print(out.with_suffix(".err").read_text(), file=sys.stderr)
    return process.returncode, seconds, usage.ru_maxrss / 1024, out.read_text()


def raw_encode(texts_file: Path) -> None:
    """Child mode: plain SentenceTransformer.encode (torch fp32, batch 32) of the texts; prints JSON."""
    from sentence_transformers import SentenceTransformer

    from toolkit.embed import resolve_model

    texts = json.loads(texts_file.read_text())
    model = SentenceTransformer(resolve_model(None)[1], device="cpu")
    model.encode(texts[:64], batch_size=32)  # warm-up
    started = time.perf_counter()
    model.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
    print(json.dumps({"seconds": time.perf_counter() - started, "passages": len(texts)}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", default="torch,auto", help="comma-separated --backend values to index with")
    parser.add_argument("--scifact", type=Path, default=None, help="BEIR folder: also compare nDCG@10 per backend")
    parser.add_argument("--scifact-mode", default="hybrid", help="evaluate-search --mode (hybrid, dense)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the corpus and indexes here")
    parser.add_argument("--no-labels", action="store_true",
                        help="index with --no-labels (default: label with the default classifier, as `toolkit index` does)")
    parser.add_argument("--no-raw", action="store_true",
                        help="skip the raw torch encode (for memory runs at 100k passages, where it takes ~12 min)")
    parser.add_argument("--raw-encode", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_encode:
        raw_encode(args.raw_encode)
        return 0
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-index-"))
    articles = synthetic_corpus(work / "corpus", args.passages, args.seed)
    warm = work / "warm"
    lines = (work / "corpus" / "corpus.jsonl").read_text().splitlines(keepends=True)
    warm.mkdir(parents=True, exist_ok=True)
    (warm / "corpus.jsonl").write_text("".join(lines[:20]))
    toolkit = [sys.executable, "-m", "toolkit"]
    results, texts = {}, None
    for backend in args.backends.split(","):
        cache = work / f"cache-{backend}"
        env = {**os.environ, "TOOLKIT_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        setup = 0.0
        if backend != "torch":  # export + probe once, then start from an empty embedding cache
            code, setup, _, _ = run_child([*toolkit, "index", str(warm), "--index", str(work / "warm-index"),
                                           "--rebuild", "--backend", backend, "--no-labels", "-q"], env,
                                          work / f"warm-{backend}.out")
            if code:
                return 1
            for path in cache.glob("embeddings.sqlite*"):
                path.unlink()
        index = work / f"index-{backend}"
        labels = ["--no-labels"] if args.no_labels else []
        code, wall, rss, stdout = run_child([*toolkit, "index", str(work / "corpus"), "--index", str(index),
                                             "--rebuild", "--backend", backend, *labels, "--json", "-q"],
                                            env, work / f"index-{backend}.out")
        if code:
            return 1
        report = json.loads(stdout)
        used = json.loads((index / "manifest.json").read_text())["model"]["backend"]
        results[backend] = {"wall": wall, "rss": rss, "report": report, "used": used, "setup": setup}
        if texts is None:
            from toolkit.index import Index

            opened = Index.open(index)
            texts = [t for _, t in opened.store.texts()]
            opened.close()
    n = len(texts)
    print(f"corpus: {articles} synthetic articles, {n} passages (mean {sum(map(len, texts)) / n:.0f} chars); "
          f"{os.cpu_count()} CPUs; labelling {'off' if args.no_labels else 'on (default classifier)'}")
    raw_rate = None
    if not args.no_raw:
        texts_file = work / "texts.json"
        texts_file.write_text(json.dumps(texts))
        code, _, raw_rss, stdout = run_child([sys.executable, __file__, "--raw-encode", str(texts_file)],
                                             {**os.environ, "HF_HUB_OFFLINE": "1"}, work / "raw.out")
        if code:
            return 1
        raw = json.loads(stdout)
        raw_rate = raw["passages"] / raw["seconds"]
        print(f"raw SentenceTransformer.encode (torch fp32, batch 32): {raw['seconds']:.1f} s = {raw_rate:.1f} "
              f"passages/s; peak RSS {raw_rss:.0f} MB")
    for backend, result in results.items():
        report = result["report"]
        rate = report["passages_total"] / result["wall"]
        embed_rate = report["passages_embedded"] / report["embed_seconds"] if report["embed_seconds"] else 0.0
        print(f"toolkit index --backend {backend} (used: {result['used']}), end to end incl. start-up: "
              f"{result['wall']:.1f} s = {rate:.1f} passages/s"
              + (f" = {rate / raw_rate:.2f}x raw encode; " if raw_rate else "; ") +
              f"embedding alone {embed_rate:.1f} passages/s; peak RSS {result['rss']:.0f} MB"
              + (f"; one-time export/probe run {result['setup']:.1f} s" if result["setup"] else ""))
    if args.scifact:
        scores = {}
        for backend in args.backends.split(","):
            code, wall, _, stdout = run_child([*toolkit, "evaluate-search", str(args.scifact), "--backend", backend,
                                               "--mode", args.scifact_mode, "--json", "-q"],
                                              {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
                                              work / f"scifact-{backend}.out")
            if code:
                return 1
            result = json.loads(stdout)
            scores[backend] = result["ndcg@10"]
            delta = f" ({result['ndcg@10'] - scores['torch']:+.4f} vs torch)" if "torch" in scores else ""
            print(f"{args.scifact.name} {args.scifact_mode} nDCG@10 --backend {backend} "
                  f"(used: {result.get('backend', backend)}): {result['ndcg@10']:.4f}{delta} [{wall:.0f} s]")
    print(f"command: python scripts/bench_index.py --passages {args.passages} --seed {args.seed} "
          f"--backends {args.backends}" + (f" --scifact {args.scifact}" if args.scifact else "")
          + (" --no-labels" if args.no_labels else "") + (" --no-raw" if args.no_raw else ""))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
