"""Retrieval evaluation: metrics by hand, BEIR reading errors, and evaluate-search end to end."""
from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.errors import InputError, UsageError
from toolkit.retrieval import (
    default_index_dir,
    evaluate_search,
    mrr_at_k,
    ndcg_at_k,
    prepare_index,
    read_corpus,
    read_qrels,
    recall_at_k,
    score_run,
    single_query_threads,
)

KEYS = {"ndcg@10", "recall@10", "recall@100", "mrr@10", "queries", "mode", "backend"}
CORPUS = [
    {"_id": "d1", "title": "Defence ministers call",
     "text": "The US and Russian defence ministers spoke by phone on Friday about Ukraine."},
    {"_id": "d2", "title": "Naval exercise", "text": "China and Russia held a joint naval exercise in the Sea of Japan."},
    {"_id": "d3", "title": "", "text": "Vitamin D supplements did not reduce the risk of fractures in older adults."},
    {"_id": "d4", "title": "Trade talks", "text": "Trade negotiators from the EU and Japan met in Brussels on tariffs."},
    {"_id": "d5", "title": "Malaria vaccine",
     "text": "A new malaria vaccine showed 77 percent efficacy in a trial among children in Burkina Faso."},
    {"_id": "d6", "title": "Summit", "text": "The presidents of France and Germany met on European defence cooperation."},
]
QUERIES = [
    {"_id": "q1", "text": "phone call between defence ministers"},
    {"_id": "q2", "text": "malaria vaccine efficacy in children"},
    {"_id": "q3", "text": "a query without judgements does not count"},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td6\t1\nq2\td5\t1\n"


def write_beir(folder, corpus=CORPUS, queries=QUERIES, qrels=QRELS, split="test"):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    (folder / "qrels" / f"{split}.tsv").write_text(qrels)
    return folder


@pytest.fixture
def beir(tmp_path):
    return write_beir(tmp_path / "tiny")


@pytest.fixture
def shared_model(monkeypatch, embedder):
    """Make every Embedder() the CLI creates the session's already-loaded model."""
    monkeypatch.setattr("toolkit.embed.Embedder", lambda *args, **kwargs: embedder)
    return embedder


# -- metrics, by hand ----------------------------------------------------------------------------
def test_metrics_match_hand_computed_values(tmp_path):
    folder = tmp_path / "hand"
    (folder / "qrels").mkdir(parents=True)
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\ta\t2\nq1\tb\t1\nq1\tc\t0\nq2\td\t1\n")
    qrels = read_qrels(folder, "test")
    assert qrels == {"q1": {"a": 2, "b": 1, "c": 0}, "q2": {"d": 1}}
    run = {"q1": ["b", "x", "a", "c"], "q2": ["y", "z", "d"]}

    # q1: gains by rank 1, 0, 2, 0 -> DCG = 1/log2(2) + 2/log2(4) = 1 + 1 = 2
    #     ideal gains 2, 1 -> IDCG = 2/log2(2) + 1/log2(3) = 2 + 0.6309298 = 2.6309298
    #     nDCG@10 = 2 / 2.6309298 = 0.7601875; "c" (score 0) is judged but not relevant
    q1_ndcg = 2 / (2 + 1 / math.log2(3))
    assert ndcg_at_k(run["q1"], qrels["q1"], 10) == pytest.approx(0.7601875, abs=1e-7)
    assert ndcg_at_k(run["q1"], qrels["q1"], 10) == pytest.approx(q1_ndcg)
    # nDCG@2: only "b" counts -> 1 / 2.6309298 = 0.3800938
    assert ndcg_at_k(run["q1"], qrels["q1"], 2) == pytest.approx(0.3800938, abs=1e-7)
    # recall: relevant {a, b}; top 1 holds b -> 1/2; top 10 holds both -> 1
    assert recall_at_k(run["q1"], qrels["q1"], 1) == 0.5
    assert recall_at_k(run["q1"], qrels["q1"], 10) == 1.0
    assert mrr_at_k(run["q1"], qrels["q1"], 10) == 1.0
    # q2: d at rank 3 -> DCG = 1/log2(4) = 0.5, IDCG = 1 -> nDCG 0.5; MRR 1/3; MRR@2 0
    assert ndcg_at_k(run["q2"], qrels["q2"], 10) == pytest.approx(0.5)
    assert mrr_at_k(run["q2"], qrels["q2"], 10) == pytest.approx(1 / 3)
    assert mrr_at_k(run["q2"], qrels["q2"], 2) == 0.0
    assert recall_at_k(run["q2"], qrels["q2"], 2) == 0.0

    means = score_run(run, qrels)
    # nDCG@10 = (0.7601875 + 0.5) / 2 = 0.6300938; MRR@10 = (1 + 1/3) / 2 = 0.6666667
    assert means == pytest.approx({"ndcg@10": 0.6300938, "recall@10": 1.0, "recall@100": 1.0,
                                   "mrr@10": 0.6666667}, abs=1e-7)
    # a judged query with no results scores 0 and still counts
    assert score_run({"q1": run["q1"]}, qrels)["mrr@10"] == pytest.approx(0.5)


def test_metric_edge_cases():
    assert ndcg_at_k(["a", "a", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(1.0)  # repeats ignored
    assert ndcg_at_k(["a"], {"a": 0}, 10) == 0.0  # nothing relevant: 0, not a division by zero
    assert recall_at_k([], {"a": 1}, 10) == 0.0
    assert score_run({}, {}) == {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}


def test_single_query_threads_restores_thread_counts():
    import faiss
    import torch

    before = (torch.get_num_threads(), faiss.omp_get_max_threads())
    with single_query_threads():
        assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (1, 1)
    assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == before


# -- reading a BEIR folder -----------------------------------------------------------------------
def test_corpus_rows_become_documents_without_cleaning(beir):
    documents = {d.doc_id: d for d in read_corpus(beir)}
    assert list(documents) == ["d1", "d2", "d3", "d4", "d5", "d6"]
    assert documents["d1"].text == "Defence ministers call\n\n" + CORPUS[0]["text"]
    assert documents["d3"].text == CORPUS[2]["text"]  # no title, no blank line
    assert documents["d1"].path.endswith("corpus.jsonl:1")
    assert len({d.content_hash for d in documents.values()}) == 6


@pytest.mark.parametrize("qrels, where, what", [
    ("query-id\tcorpus-id\tscore\nq1\td1\tx\n", "test.tsv:2", "score must be an integer"),
    ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td5\n", "test.tsv:3", "expected 'query-id"),
    ("query-id\tcorpus-id\tscore\n", "test.tsv", "no judgements"),
])
def test_bad_qrels_name_file_and_line(tmp_path, qrels, where, what):
    folder = write_beir(tmp_path / "bad", qrels=qrels)
    with pytest.raises(InputError, match=rf"{where}: .*{what}"):
        read_qrels(folder, "test")


def test_bad_corpus_and_queries_name_file_and_line(tmp_path):
    folder = write_beir(tmp_path / "bad")
    (folder / "corpus.jsonl").write_text(json.dumps(CORPUS[0]) + "\n{not json\n")
    with pytest.raises(InputError, match=r"corpus\.jsonl:2: invalid JSON"):
        list(read_corpus(folder))
    (folder / "corpus.jsonl").write_text(json.dumps(CORPUS[0]) + "\n" + json.dumps(CORPUS[0]) + "\n")
    with pytest.raises(InputError, match=r"corpus\.jsonl:2: _id 'd1' appears twice"):
        list(read_corpus(folder))
    (folder / "queries.jsonl").write_text(json.dumps(QUERIES[1]) + "\n")
    with pytest.raises(InputError, match=r"1 judged queries are not in queries\.jsonl \(first: 'q1'\)"):
        evaluate_search(folder, index=tmp_path / "never-built")
    assert not (tmp_path / "never-built").exists()  # inputs are checked before any indexing


def test_missing_files_and_bad_arguments(tmp_path, beir):
    with pytest.raises(InputError, match=r"qrels/dev\.tsv: no such file .*splits here: test"):
        evaluate_search(beir, split="dev")
    with pytest.raises(UsageError, match="'mode' parameter"):
        evaluate_search(beir, mode="fuzzy")
    with pytest.raises(UsageError, match="'split' parameter"):
        evaluate_search(beir, split="../test")
    (beir / "corpus.jsonl").unlink()
    with pytest.raises(InputError, match=r"corpus\.jsonl: no such file"):
        list(read_corpus(beir))


def test_refuses_to_fill_a_folder_that_is_not_a_benchmark_index(tmp_path, beir, embedder):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty and not an index"):
        prepare_index(beir, other, embedder=embedder)


# -- end to end ----------------------------------------------------------------------------------
def test_cli_evaluates_a_tiny_benchmark_and_reuses_its_index(tmp_path, beir, shared_model):
    runner = CliRunner()
    index = tmp_path / "index"
    result = runner.invoke(app, ["evaluate-search", str(beir), "--index", str(index), "--json", "-q"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert set(scores) == KEYS
    assert scores["queries"] == 2 and scores["mode"] == "hybrid"  # q3 has no judgements
    assert scores["mrr@10"] == 1.0  # both queries find their best document first
    assert 0.9 <= scores["ndcg@10"] <= 1.0 and scores["recall@100"] == 1.0
    assert (index / "beir.json").exists()

    result = runner.invoke(app, ["evaluate-search", str(beir), "--index", str(index), "--mode", "lexical"])
    assert result.exit_code == 0, result.output
    assert "reusing the index" in result.stderr
    assert "tiny (test, 2 queries), lexical search" in result.stdout
    assert "ndcg@10" in result.stdout


def test_default_index_is_cached_and_rebuilt_when_the_corpus_changes(beir, embedder):
    from toolkit.index import read_manifest

    scores = evaluate_search(beir, mode="lexical", embedder=embedder)
    assert scores["queries"] == 2 and scores["mode"] == "lexical"
    cached = default_index_dir(beir)
    assert (cached / "beir.json").exists() and read_manifest(cached)["counts"]["documents"] == 6
    extra = {"_id": "d7", "title": "Missile test", "text": "North Korea tested a ballistic missile on Monday."}
    with open(beir / "corpus.jsonl", "a") as handle:
        handle.write(json.dumps(extra) + "\n")
    assert default_index_dir(beir) != cached  # a new corpus file size: a new cache folder
    explicit = cached  # an explicit --index with a stale fingerprint is rebuilt in place
    prepare_index(beir, explicit, embedder=embedder)
    assert read_manifest(explicit)["counts"]["documents"] == 7


def test_cli_bad_input_is_one_line_and_an_exit_code(tmp_path, beir):
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate-search", str(beir), "--split", "dev", "--json"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and "qrels/dev.tsv: no such file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr

    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    result = runner.invoke(app, ["evaluate-search", str(beir), "--json"])
    assert result.exit_code == 1 and "test.tsv:2: expected" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    result = runner.invoke(app, ["evaluate-search", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no such folder" in result.stderr
    result = runner.invoke(app, ["evaluate-search", str(beir), "--mode", "fuzzy"])
    assert result.exit_code == 2 and "'mode' parameter" in result.stderr


def test_help_has_an_example():
    result = CliRunner().invoke(app, ["evaluate-search", "--help"])
    assert result.exit_code == 0 and "Example:" in result.stdout
