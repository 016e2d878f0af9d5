"""Index round trip with the real bundled model: incremental updates, filters, dedupe, crash safety."""
from __future__ import annotations

import json
import multiprocessing
import os
import time

import numpy as np
import pytest

from toolkit.errors import IndexError_, LockedError, ModelError, UsageError
from toolkit.fsutil import write_lock
from toolkit.index import Index
from toolkit.indexing import build_index
from toolkit.store import Filters

QUERY = "phone call between the US and Russian defence ministers"


def test_round_trip_ranks_the_2024_story_first(seed_index):
    index = Index.open(seed_index)
    hits = index.search(QUERY, k=5)
    assert hits[0].path.endswith(("003_6ec7bb4a00626735.txt", "004_fe373568b3169f25.txt"))
    for hit in hits:
        document = index.store.conn.execute("SELECT text FROM documents WHERE doc_id = ?", (hit.doc_id,)).fetchone()[0]
        assert document[hit.start : hit.end] == hit.text
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


def test_manifest_records_model_and_counts(seed_index):
    manifest = json.loads((seed_index / "manifest.json").read_text())
    assert manifest["model"]["id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest["model"]["dim"] == 384
    assert manifest["counts"] == {"documents": 5, "passages": len(Index.open(seed_index))}
    assert manifest["faiss"]["factory"] == "IDMap2,Flat"


def test_vectors_are_the_model_embeddings(seed_index, embedder):
    index = Index.open(seed_index)
    rows = index.store.all_rows()[:3]
    stored = index.vectors.reconstruct(rows)
    texts = [t for _, t in index.store.texts(rows)]
    fresh = embedder._encode_uncached(texts, progress=False)
    assert np.allclose(stored, fresh, atol=1e-5)
    assert np.allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-5)


def test_dense_lexical_and_hybrid_modes(seed_index):
    index = Index.open(seed_index)
    lexical = index.search("Belousov", k=3, mode="lexical")
    assert lexical and all("Belousov" in h.text for h in lexical)
    assert index.search(QUERY, k=3, mode="dense")
    with pytest.raises(UsageError, match="'mode' parameter"):
        index.search(QUERY, mode="fuzzy")


def test_story_dedupe_lists_the_other_source(seed_index):
    index = Index.open(seed_index)
    hits = index.search("Austin Belousov call", k=10)
    story = [h for h in hits if "003_6ec7" in h.path or "004_fe37" in h.path]
    assert len(story) == 1
    assert len(story[0].also_in) == 1
    other = "004" if "003_6ec7" in story[0].path else "003"
    assert story[0].also_in[0]["source"].startswith(other)
    everything = index.search("Austin Belousov call", k=10, dedupe=False)
    assert len([h for h in everything if "003_6ec7" in h.path or "004_fe37" in h.path]) > 1


def test_filter_before_ranking_returns_k_when_k_match_and_fewer_otherwise(seed_index):
    index = Index.open(seed_index)
    source = "002_ed0c0cc4a92dc64e.txt"
    n_source = len(index.store.filter_rows(Filters(sources=(source,))))
    hits = index.search(QUERY, k=n_source, filters=Filters(sources=(source,)), dedupe=False)
    assert len(hits) == n_source and all(h.source == source for h in hits)
    fewer = index.search(QUERY, k=n_source + 5, filters=Filters(sources=(source,)), dedupe=False)
    assert len(fewer) == n_source
    assert index.search(QUERY, k=3, filters=Filters(sources=("nowhere",))) == []


def test_date_filters(tmp_path, embedder):
    rows = [{"id": "a", "text": "The ministers spoke by phone about the border.", "published": "2024-06-25", "source": "x"},
            {"id": "b", "text": "The ministers met in Ankara for border talks.", "published": "2024-07-12", "source": "y"}]
    corpus = tmp_path / "news.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_index([corpus], tmp_path / "ix", embedder=embedder, bundle=None)
    index = Index.open(tmp_path / "ix")
    after = index.search("ministers border", k=5, filters=Filters(after="2024-07-01"))
    assert [h.doc_id for h in after] == ["b"]
    before = index.search("ministers border", k=5, filters=Filters(before="2024-07-01"))
    assert [h.doc_id for h in before] == ["a"]


def test_incremental_reindex_embeds_nothing_and_changed_file_replaces(tmp_path, seed_copy, embedder):
    folder = tmp_path / "ix"
    first = build_index([seed_copy], folder, embedder=embedder, bundle=None)
    assert first.documents_added == 5 and first.passages_total > 20
    again = build_index([seed_copy], folder, embedder=embedder, bundle=None)
    assert again.documents_unchanged == 5 and again.passages_embedded == 0
    assert again.generation == first.generation
    target = seed_copy / "000_f9a5207b2fe42542.txt"
    target.write_text(target.read_text() + "\n\nThe two ministers agreed to speak again from Zanzibar next month.\n")
    changed = build_index([seed_copy], folder, embedder=embedder, bundle=None)
    assert changed.documents_updated == 1 and changed.documents_unchanged == 4
    assert 0 < changed.passages_embedded <= 2
    index = Index.open(folder)
    assert index.search("Zanzibar", k=1, mode="lexical")[0].path.endswith("000_f9a5207b2fe42542.txt")
    assert len(index) == first.passages_total - changed.passages_removed + changed.passages_added
    # Old generation files are cleaned up; only the current and previous ones stay.
    generations = {p.name.split(".")[1] for p in folder.iterdir() if p.name.startswith("store.")}
    assert len(generations) <= 2
    rebuilt = build_index([seed_copy], folder, embedder=embedder, bundle=None, rebuild=True)
    assert rebuilt.documents_added == 5 and rebuilt.passages_embedded == 0  # the cache still has them


def test_crash_during_write_leaves_previous_index_answering(tmp_path, seed_copy, embedder, monkeypatch):
    folder = tmp_path / "ix"
    build_index([seed_copy], folder, embedder=embedder, bundle=None)
    before = [h.to_dict() for h in Index.open(folder).search(QUERY, k=5)]
    (seed_copy / "extra.txt").write_text("Headline here\n\nThe defence ministers spoke again by phone on Monday.\n")

    from toolkit import lexical

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(lexical.LexicalIndex, "save", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        build_index([seed_copy], folder, embedder=embedder, bundle=None)
    monkeypatch.undo()
    assert [h.to_dict() for h in Index.open(folder).search(QUERY, k=5)] == before
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(("store.", "vectors.", "lexical."))]
    assert len(leftovers) == 3  # only the current generation


def _hold_lock(folder, ready):
    with write_lock(folder):
        ready.set()
        time.sleep(30)


def test_second_writer_is_refused_and_a_killed_writer_frees_the_lock(tmp_path, seed_copy, embedder):
    folder = tmp_path / "ix"
    ready = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(target=_hold_lock, args=(folder, ready))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockedError, match=f"pid {holder.pid}"):
            build_index([seed_copy], folder, embedder=embedder, bundle=None)
    finally:
        os.kill(holder.pid, 9)
        holder.join()
    report = build_index([seed_copy], folder, embedder=embedder, bundle=None)
    assert report.documents_added == 5


def test_damaged_indexes_give_clear_errors(tmp_path, seed_copy, embedder):
    folder = tmp_path / "ix"
    build_index([seed_copy], folder, embedder=embedder, bundle=None)
    manifest = json.loads((folder / "manifest.json").read_text())
    vectors = folder / manifest["files"]["vectors"]
    vectors.write_bytes(vectors.read_bytes()[:100])
    with pytest.raises(IndexError_, match="damaged FAISS file"):
        Index.open(folder).search(QUERY)
    (folder / manifest["files"]["store"]).unlink()
    with pytest.raises(IndexError_, match="metadata store missing"):
        Index.open(folder)
    with pytest.raises(IndexError_, match="run `toolkit index"):
        Index.open(tmp_path / "nothing")


def test_other_model_is_refused(seed_index, tmp_path):
    with pytest.raises(ModelError, match="was built with embedding model"):
        Index.open(seed_index, model="sentence-transformers/all-mpnet-base-v2")


def test_empty_folder_and_missing_path(tmp_path, embedder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no articles found"):
        build_index([tmp_path / "empty"], tmp_path / "ix", embedder=embedder, bundle=None)
    assert not (tmp_path / "ix" / "manifest.json").exists()
    with pytest.raises(UsageError, match="no such file or folder"):
        build_index([tmp_path / "missing"], tmp_path / "ix", embedder=embedder, bundle=None)


def test_small_chunks_build_the_same_index_as_one_chunk(tmp_path, seed_copy, embedder, monkeypatch):
    """Reading, embedding and writing overlap chunk by chunk; the result does not depend on the chunking."""
    from toolkit import indexing

    whole = build_index([seed_copy], tmp_path / "whole", embedder=embedder, bundle=None)
    monkeypatch.setattr(indexing, "CHUNK_PASSAGES", 3)
    chunked = build_index([seed_copy], tmp_path / "chunked", embedder=embedder, bundle=None)
    assert (chunked.passages_total, chunked.documents_total) == (whole.passages_total, whole.documents_total)
    one, many = Index.open(tmp_path / "whole"), Index.open(tmp_path / "chunked")
    assert one.store.texts() == many.store.texts()
    assert np.allclose(one.vectors.reconstruct(one.store.all_rows()), many.vectors.reconstruct(many.store.all_rows()))
    def groups(index):  # story ids name one member, which depends on the order seen; the grouping does not
        found: dict[str, set] = {}
        for doc_id, story in index.store.conn.execute("SELECT doc_id, story FROM stories"):
            found.setdefault(story, set()).add(doc_id)
        return sorted(sorted(members) for members in found.values())

    assert groups(one) == groups(many) and len(groups(one)) < whole.documents_total
    assert [h.to_dict() for h in one.search(QUERY, k=5)] == [h.to_dict() for h in many.search(QUERY, k=5)]


def test_a_failing_write_stops_the_build_and_keeps_the_index(tmp_path, seed_copy, embedder, monkeypatch):
    from toolkit import indexing

    folder = tmp_path / "ix"
    build_index([seed_copy], folder, embedder=embedder, bundle=None, rebuild=True)
    before = [h.to_dict() for h in Index.open(folder).search(QUERY, k=5)]
    monkeypatch.setattr(indexing, "CHUNK_PASSAGES", 3)

    def full(*args, **kwargs):
        raise OSError("database or disk is full")

    monkeypatch.setattr(indexing._GenerationWriter, "_write", full)
    with pytest.raises(OSError, match="disk is full"):
        build_index([seed_copy], folder, embedder=embedder, bundle=None, rebuild=True)
    monkeypatch.undo()
    assert [h.to_dict() for h in Index.open(folder).search(QUERY, k=5)] == before
    assert not [t.name for t in __import__("threading").enumerate() if t.name == "toolkit-writer"]
