"""Classification metrics against hand-computed values."""
from __future__ import annotations

import pytest

from toolkit.evaluate import markdown_report, plot_confusion, task_metrics


def test_single_label_metrics_by_hand():
    gold = ["a", "a", "b", "c"]
    pred = ["a", "b", "b", "a"]
    m = task_metrics(gold, pred, ["a", "b", "c"], "single")
    # a: tp1 fp1 fn1 -> P .5 R .5 F1 .5; b: tp1 fp1 fn0 -> P .5 R 1 F1 2/3; c: tp0 fn1 -> 0
    assert m["per_label"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_label"]["b"]["f1"] == pytest.approx(0.6667, abs=1e-4)
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0) / 3, abs=1e-4)
    assert m["micro_f1"] == m["accuracy"] == 0.5
    assert m["confusion"]["matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_multi_label_metrics_by_hand():
    gold = [["call"], ["call", "invitation"], ["none"]]
    pred = [["call"], ["call"], ["call"]]
    m = task_metrics(gold, pred, ["call", "invitation", "none"], "multi")
    # call: tp2 fp1 fn0 -> P 2/3 R 1 F1 .8; invitation: fn1 -> 0; none: fn1 -> 0
    assert m["per_label"]["call"]["f1"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx(0.8 / 3, abs=1e-4)
    # micro: tp2 fp1 fn2 -> 4 / (4 + 3)
    assert m["micro_f1"] == pytest.approx(4 / 7, abs=1e-4)
    assert m["subset_accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    # invitation missed with no wrong label to blame -> (missing); none predicted as call.
    assert m["confusion"]["matrix"][1] == [0, 0, 0, 1]
    assert m["confusion"]["matrix"][2] == [1, 0, 0, 0]


def test_labels_absent_from_gold_and_predictions_do_not_count_in_macro():
    m = task_metrics(["a", "b"], ["a", "b"], ["a", "b", "never"], "single")
    assert m["macro_f1"] == 1.0


def test_report_and_plot(tmp_path):
    m = task_metrics(["a", "b"], ["a", "a"], ["a", "b"], "single")
    text = markdown_report({"n": 2, "tasks": {"tone": m}}, title="T")
    assert "## tone" in text and "| a | 0.500 | 1.000 | 0.667 | 1 |" in text
    plot_confusion(m, "tone", tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
