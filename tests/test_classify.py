"""Training, bundles and prediction on a small real subset of the corpus, with the bundled model."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from toolkit.classify.bundle import Bundle
from toolkit.classify.model import decide, tune_thresholds
from toolkit.classify.train import train
from toolkit.errors import InputError, ModelError
from toolkit.labels import Task

from conftest import LABELS, corpus_subset


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """About 200 passages of the shipped corpus (whole stories), with its schema."""
    folder = corpus_subset(tmp_path_factory.mktemp("small"), "written_milhard.jsonl", 50, "small.jsonl")
    return folder


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory, small_data, embedder):
    out = tmp_path_factory.mktemp("bundles") / "small"
    train([small_data], out, splits=None, folds=3, embedder=embedder)
    return out


def test_bundle_manifest_and_files(small_bundle):
    manifest = json.loads((small_bundle / "manifest.json").read_text())
    assert set(manifest["tasks"]) == {"contact_type", "tone"}
    assert manifest["embedding"] == {"model_id": "sentence-transformers/all-MiniLM-L6-v2", "dim": 384}
    assert manifest["training"]["n"] > 100 and len(manifest["training"]["sha256"]) == 64
    contact = manifest["tasks"]["contact_type"]
    assert set(contact["thresholds"]) == set(contact["classes"])
    assert 0 < manifest["cv_metrics"]["tone"]["macro_f1"] <= 1
    assert {"scikit-learn", "numpy", "python", "toolkit"} <= set(manifest["versions"])
    for spec in manifest["tasks"].values():
        assert (small_bundle / spec["file"]).exists()


def test_predictions_have_labels_and_probabilities(small_bundle, embedder):
    bundle = Bundle.load(small_bundle)
    texts = ["Defence Minister Andrei Belousov spoke by telephone with Lloyd Austin on Friday.",
             "Subscribe to our newsletter and follow us on Telegram."]
    labels, probabilities = bundle.predict(texts, embedder.encode(texts))
    assert "call" in labels[0]["contact_type"]
    assert labels[1]["contact_type"] == ["none"]
    assert isinstance(labels[0]["tone"], str)
    assert sum(probabilities[0]["tone"].values()) == pytest.approx(1.0, abs=1e-3)
    assert set(probabilities[0]["contact_type"]) == set(bundle.models["contact_type"].classes)


def test_tasks_with_the_same_fitted_features_share_them_without_changing_results(small_bundle, embedder):
    bundle = Bundle.load(small_bundle)
    texts = ["The two ministers spoke by phone on Monday.", "Beijing summoned the ambassador.",
             "The exercise ended on Friday."]
    X = list(zip(texts, embedder.encode(texts)))
    shared: dict = {}
    for model in bundle.models.values():
        assert np.array_equal(model.predict_proba(X, shared), model.predict_proba(X))
    # hybrid: both tasks fit one TF-IDF vocabulary on the same passages, so it is computed once
    assert len(shared) == 1


def test_tampered_joblib_is_refused(small_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(small_bundle, copy)
    with open(copy / "tone.joblib", "ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(ModelError, match="SHA-256 does not match"):
        Bundle.load(copy)


def test_bundle_from_another_version_needs_trust(small_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(small_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["toolkit_version"] = "0.0.1"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="pass --trust"):
        Bundle.load(copy)
    assert Bundle.load(copy, trust=True).tasks == ["contact_type", "tone"]


def test_bundle_from_another_embedder_is_refused(small_bundle, tmp_path, embedder):
    copy = tmp_path / "b"
    shutil.copytree(small_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["embedding"]["model_id"] = "intfloat/e5-small-v2"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="trained on embeddings of 'intfloat/e5-small-v2'"):
        Bundle.load(copy).check_embedder(embedder)


def test_new_task_trains_end_to_end(tmp_path, small_data, embedder):
    rows = [json.loads(line) for line in (small_data / "small.jsonl").read_text().splitlines()]
    extra = tmp_path / "extra"
    extra.mkdir()
    # A user's own task: was the passage about a scheduled or a past contact? Derived here for the test.
    task_rows = [{"text": r["text"], "story": r["story"],
                  "timing": "future" if "invitation" in r["contact_type"] else "other"} for r in rows]
    (extra / "timing.jsonl").write_text("".join(json.dumps(r) + "\n" for r in task_rows))
    out = tmp_path / "bundle"
    report = train([extra], out, tasks=["timing"], splits=None, folds=3, embedder=embedder)
    assert sorted(report.tasks["timing"]["classes"]) == ["future", "other"]
    bundle = Bundle.load(out)
    labels, probabilities = bundle.predict(["They agreed to meet next week in Geneva."],
                                           embedder.encode(["They agreed to meet next week in Geneva."]))
    assert labels[0]["timing"] in {"future", "other"} and set(probabilities[0]["timing"]) == {"future", "other"}


def test_single_class_task_is_refused_and_the_old_bundle_survives(tmp_path, small_bundle, embedder):
    before = (small_bundle / "manifest.json").read_text()
    data = tmp_path / "one"
    data.mkdir()
    (data / "a.jsonl").write_text("".join(json.dumps({"text": f"Passage number {i}.", "story": f"s{i}",
                                                      "mood": "calm"}) + "\n" for i in range(6)))
    with pytest.raises(InputError, match="task 'mood' has a single class"):
        train([data], small_bundle, splits=None, folds=3, embedder=embedder)
    assert (small_bundle / "manifest.json").read_text() == before


def test_unknown_labels_stop_training(tmp_path, embedder):
    data = tmp_path / "bad"
    data.mkdir()
    shutil.copy(LABELS / "schema.json", data / "schema.json")
    (data / "a.jsonl").write_text(json.dumps({"text": "x", "contact_type": ["fax"], "tone": "neutral"}) + "\n")
    with pytest.raises(InputError, match=r"a.jsonl:1: unknown contact_type label\(s\) 'fax'"):
        train([data], tmp_path / "out", embedder=embedder)
    assert not (tmp_path / "out").exists()


def test_decide_keeps_exclusive_label_alone():
    task = Task("contact_type", "multi", {"call": "", "invitation": "", "none": ""}, ["none"])
    classes = ["call", "invitation", "none"]
    proba = np.array([[0.9, 0.6, 0.1], [0.6, 0.1, 0.9], [0.2, 0.1, 0.3], [0.1, 0.2, 0.1]])
    thresholds = {"call": 0.5, "invitation": 0.5, "none": 0.5}
    assert decide(proba, classes, task, thresholds) == [["call", "invitation"], ["none"], ["none"], ["invitation"]]


def test_tune_thresholds_finds_the_separating_value():
    proba = np.array([[0.9], [0.7], [0.35], [0.3], [0.1]])
    y = np.array([[1], [1], [1], [0], [0]])
    # Every threshold in (0.30, 0.35] separates the classes; ties go to the one nearest 0.5.
    assert tune_thresholds(proba, y, ["call"])["call"] == pytest.approx(0.35)


def test_setfit_reuses_frozen_layers_and_matches_the_full_encoder():
    """SetFit embeds through cached frozen-layer states; the result equals encoding with the whole model."""
    import numpy as np

    from toolkit.classify import setfit
    from toolkit.classify.setfit import SetFitClassifier

    texts = [f"The defence ministers of country {i} and its neighbour spoke by phone on day {i}." for i in range(12)]
    texts += [f"Heavy rain flooded {i} villages in the north, officials said, and schools were shut." for i in range(12)]
    y = np.array(["call"] * 12 + ["none"] * 12)
    setfit._LOWER_CACHE.clear()
    clf = SetFitClassifier(max_pairs=16, batch_size=8).fit([(t, None) for t in texts], y)
    assert clf.frozen_layers_ == 3  # bundled MiniLM: 6 layers, top 3 trained
    cached = sum(len(v) for v in setfit._LOWER_CACHE.values())
    assert cached == len(texts)
    full = clf.encoder_.encode(texts, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    assert np.abs(clf._embed(texts) - full).max() < 1e-5
    proba = clf.predict_proba([(t, None) for t in texts])
    assert proba.shape == (24, 2) and (proba.argmax(axis=1) == (y == "none")).mean() > 0.9
    # A second fit on the same passages (another fold or task) adds nothing to the cache.
    SetFitClassifier(max_pairs=16, batch_size=8, random_state=1).fit([(t, None) for t in texts], y)
    assert sum(len(v) for v in setfit._LOWER_CACHE.values()) == cached
