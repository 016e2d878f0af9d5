"""Vector index types: exact flat, HNSW and IVF recall, persistence, filtered search, the manifest."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from toolkit import vectors as vectors_module
from toolkit.errors import UsageError
from toolkit.index import Index
from toolkit.indexing import build_index
from toolkit.store import Filters
from toolkit.vectors import VectorIndex, choose_index_type, index_spec

DIM = 384


def clustered(n: int, seed: int = 0, centers: int = 50) -> np.ndarray:
    """Normalised vectors around ``centers`` random directions (embeddings cluster by topic)."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centers, DIM)).astype(np.float32)
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    points = middle[rng.integers(0, centers, n)] + 0.06 * rng.standard_normal((n, DIM)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def collection():
    points = clustered(4000)
    rows = np.arange(4000, dtype=np.int64) * 3 + 7  # row ids need not be positions
    queries = clustered(100, seed=1)  # same centres (same seed for them), other points
    flat = VectorIndex(DIM)
    flat.add(rows, points)
    return rows, points, queries, flat


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(found, truth)]))


@pytest.mark.parametrize("index_type", ["hnsw", "ivf"])
def test_ann_recall_at_10_against_exact(collection, index_type):
    rows, _, queries, flat = collection
    ann = flat.rebuilt(index_type)
    assert ann.index_type == index_type and len(ann) == len(rows)
    _, truth = flat.search(queries, 10)
    _, found = ann.search(queries, 10)
    assert recall_at_10(found, truth) >= 0.95


@pytest.mark.parametrize("index_type", ["hnsw", "ivf"])
def test_ann_round_trips_to_disk(collection, tmp_path, index_type):
    rows, points, queries, flat = collection
    ann = flat.rebuilt(index_type)
    ann.save(tmp_path / "vectors.faiss")
    loaded = VectorIndex.load(tmp_path / "vectors.faiss", DIM, ann.factory, ann.params)
    assert loaded.spec == ann.spec
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], ann.search(queries, 10)[1])
    np.testing.assert_allclose(loaded.reconstruct(rows[[5, 17]]), points[[5, 17]], atol=1e-6)


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf"])
@pytest.mark.parametrize("allowed_count", [12, 300, 2500])
def test_filtered_search_returns_k_hits_when_k_match(collection, monkeypatch, index_type, allowed_count):
    rows, _, queries, flat = collection
    monkeypatch.setattr(vectors_module, "SMALL_SUBSET", 0)  # force the FAISS selector path on a tiny corpus
    index = flat.rebuilt(index_type)
    allowed = np.sort(np.random.default_rng(2).choice(rows, allowed_count, replace=False))
    scores, found = index.search(queries[:20], 10, allowed)
    assert (found >= 0).all() and np.isin(found, allowed).all()
    _, truth = vectors_module._exact_subset(flat.reconstruct(allowed), allowed, queries[:20], 10)
    assert recall_at_10(found, truth) >= 0.9


def test_small_filters_are_scored_exactly(collection):
    rows, _, queries, flat = collection
    hnsw = flat.rebuilt("hnsw")
    allowed = rows[:15]
    _, found = hnsw.search(queries[:3], 10, allowed)
    _, truth = flat.search(queries[:3], 10, allowed)
    np.testing.assert_array_equal(found, truth)


def test_ivf_takes_new_vectors_in_place(collection):
    rows, points, queries, flat = collection
    ivf = VectorIndex(DIM)
    ivf.add(rows[:3000], points[:3000])
    ivf = ivf.rebuilt("ivf")
    ivf.add(rows[3000:], points[3000:])
    assert ivf.index_type == "ivf" and len(ivf) == len(rows)
    np.testing.assert_allclose(ivf.reconstruct(rows[-2:]), points[-2:], atol=1e-6)
    _, truth = flat.search(queries, 10)
    assert recall_at_10(ivf.search(queries, 10)[1], truth) >= 0.95


def test_removing_from_an_ann_index_converts_it_to_flat_and_rebuilt_restores_it(collection):
    rows, points, queries, flat = collection
    hnsw = flat.rebuilt("hnsw")
    hnsw.remove(rows[:10])
    assert hnsw.index_type == "flat" and len(hnsw) == len(rows) - 10
    hnsw.add(rows[:10], points[:10])
    again = hnsw.rebuilt("hnsw")
    assert again.index_type == "hnsw" and len(again) == len(rows)
    assert again.rebuilt("hnsw") is again  # already that structure: not rebuilt


def test_auto_chooses_by_size_and_unknown_types_are_refused():
    assert choose_index_type(1000) == "flat"
    assert choose_index_type(vectors_module.EXACT_LIMIT + 1) == "ivf"
    # IVF probes enough lists to scan about IVF_SCAN vectors, however large the collection
    for n in (100_000, 1_000_000):
        _, params = index_spec("auto", n)
        scanned = params["nprobe"] * n / params["nlist"]
        assert vectors_module.IVF_SCAN <= scanned < 1.1 * vectors_module.IVF_SCAN
    assert index_spec("auto", 10)[0] == "IDMap2,Flat"
    factory, params = index_spec("hnsw", 10)
    assert factory.startswith("IDMap2,HNSW") and params["efSearch"] >= 100
    with pytest.raises(UsageError, match="'index_type' parameter must be one of auto, flat, hnsw, ivf. Got 'lsh'"):
        index_spec("lsh", 10)


# -- through the index directory -----------------------------------------------------------------
@pytest.fixture(scope="module")
def hnsw_index(tmp_path_factory, embedder):
    from conftest import SEEDS

    articles = tmp_path_factory.mktemp("hnsw") / "articles"
    shutil.copytree(SEEDS, articles)
    folder = articles.parent / "index"
    build_index([articles], folder, embedder=embedder, bundle=None, index_type="hnsw")
    return articles, folder


def test_manifest_records_the_vector_index_and_search_uses_it(hnsw_index, seed_index):
    _, folder = hnsw_index
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["vector_index"]["type"] == "hnsw"
    assert manifest["vector_index"]["params"]["efSearch"] == vectors_module.HNSW_EF_SEARCH
    assert manifest["faiss"]["factory"] == manifest["vector_index"]["factory"]
    index = Index.open(folder)
    assert index.vectors.index_type == "hnsw"
    exact = Index.open(seed_index)
    query = "phone call between the US and Russian defence ministers"
    def found(hits):  # doc ids hash the path, and this index's articles are copies
        return [(h.path.rsplit("/", 1)[-1], h.start) for h in hits]

    assert found(index.search(query, 5, mode="dense")) == found(exact.search(query, 5, mode="dense"))
    source = index.search(query, 1)[0].source
    hits = index.search(query, 3, filters=Filters(sources=(source,)))
    assert hits and all(h.source == source for h in hits)


def test_updating_an_hnsw_index_keeps_its_type(hnsw_index, embedder):
    articles, folder = hnsw_index
    changed = sorted(articles.glob("*.txt"))[0]
    changed.write_text(changed.read_text() + "\n\nA late paragraph about a naval exercise in the Baltic.\n")
    report = build_index([articles], folder, embedder=embedder, bundle=None, index_type="hnsw")
    assert report.documents_updated == 1
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["vector_index"]["type"] == "hnsw"
    index = Index.open(folder)
    assert len(index.vectors) == manifest["counts"]["passages"]


def test_index_without_vector_index_field_loads_as_flat(seed_index, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(seed_index, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("vector_index", None)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    index = Index.open(folder)
    assert index.vectors.index_type == "flat"
    assert index.search("defence ministers", 3)
