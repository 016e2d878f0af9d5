"""Benchmark: folds grouped by story and identical for every approach; the CLI's JSON contract."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from toolkit.classify.benchmark import run_benchmark
from toolkit.cli import app

from conftest import corpus_subset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = corpus_subset(tmp_path_factory.mktemp("tiny"), "written_mideast.jsonl", 30)
    return folder


def test_folds_are_grouped_and_identical_across_approaches(tiny, embedder):
    folder = tiny
    result = run_benchmark([folder], approaches=["logreg", "tfidf"], folds=3, repeats=2, tasks=["tone"])
    from toolkit.labels import load_examples

    examples, _, _ = load_examples([folder], tasks=["tone"])
    scores = result.scores["tone"]
    assert scores["logreg"]["folds"] == scores["tfidf"]["folds"]
    assert len(scores["logreg"]["folds"]) == 6 and len(scores["logreg"]["macro"]) == 6
    for repeat in (0, 1):
        tests = [set(t) for r, t in scores["logreg"]["folds"] if r == repeat]
        assert set().union(*tests) == set(range(len(examples)))  # every passage tested once per repeat
        for test in tests:
            held_out = {examples[i].story for i in test}
            trained = {examples[i].story for i in range(len(examples)) if i not in test}
            assert not held_out & trained  # no story on both sides
    first = [t for r, t in scores["logreg"]["folds"] if r == 0]
    second = [t for r, t in scores["logreg"]["folds"] if r == 1]
    assert first != second  # repeats reshuffle


def test_benchmark_cli_json_and_files(tiny, tmp_path):
    folder = tiny
    result = CliRunner().invoke(app, ["benchmark", str(folder), "--classifiers", "logreg,zeroshot", "--folds", "2",
                                      "--repeats", "1", "--json", "-q", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["folds"] == 2 and summary["repeats"] == 1
    row = summary["tasks"]["contact_type"]["logreg"]
    assert set(row) == {"macro_f1_mean", "macro_f1_std", "micro_f1_mean", "fit_seconds", "predict_per_second"}
    assert {"logreg", "zeroshot"} == set(summary["tasks"]["tone"])
    for name in ("benchmark.md", "benchmark.json", "benchmark.png"):
        assert (tmp_path / "b" / name).exists()


def test_unknown_approach_is_a_usage_error(tiny):
    folder = tiny
    result = CliRunner().invoke(app, ["benchmark", str(folder), "--classifiers", "logreg,magic"])
    assert result.exit_code == 2 and "unknown classifier 'magic'" in result.stderr
