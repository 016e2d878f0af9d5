"""Train one estimator per task on sentence embeddings and write a model bundle.

Cross-validation is grouped by story (passages of one story never sit on both sides) and produces
out-of-fold probabilities, from which multi-label tasks get per-label decision thresholds and the
bundle gets its cross-validated metrics. The final estimators are fitted on all the data given.
"""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold

from toolkit import __version__
from toolkit.classify.approaches import Approach, ConstantClassifier, get_approach, make_estimator
from toolkit.classify.bundle import MANIFEST, WRITER, sha256
from toolkit.classify.model import TaskModel, decide, tune_thresholds
from toolkit.errors import InputError, UsageError
from toolkit.evaluate import task_metrics
from toolkit.fsutil import (file_in_the_way, remove_stale_staging, replace_dir, staging_dir, write_json_atomic,
                            write_lock)
from toolkit.labels import Example, Schema, Task, check_stories, load_examples, require_valid

log = logging.getLogger(__name__)

DEFAULT_SPLITS = ("train", "dev")


@dataclass
class TrainReport:
    out: str
    n: int
    classifier: str
    tasks: dict = field(default_factory=dict)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def task_data(examples: Sequence[Example], task: Task) -> tuple[list[int], list, list[str]]:
    """Indices of examples labelled for ``task``, their gold values, and the classes to learn."""
    index = [i for i, e in enumerate(examples) if task.name in e.labels]
    gold = [examples[i].labels[task.name] for i in index]
    present: set[str] = set()
    for value in gold:
        present.update([value] if isinstance(value, str) else value)
    classes = [c for c in task.labels if c in present] + sorted(present - set(task.labels))
    return index, gold, classes


def indicator(gold: Sequence, classes: Sequence[str]) -> np.ndarray:
    """Binary matrix of shape (n, n_classes) for multi-label gold values."""
    position = {c: j for j, c in enumerate(classes)}
    y = np.zeros((len(gold), len(classes)), dtype=int)
    for i, values in enumerate(gold):
        for value in values:
            y[i, position[value]] = 1
    return y


def fold_indices(gold: Sequence, groups: Sequence[str], folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, story-grouped folds (stratified on the first label of each passage)."""
    strata = [g if isinstance(g, str) else (g[0] if g else "") for g in gold]
    n_groups = len(set(groups))
    if n_groups < 2:
        raise InputError("cross-validation needs passages from at least two stories")
    splitter = StratifiedGroupKFold(n_splits=min(folds, n_groups), shuffle=True, random_state=seed)
    return [(np.asarray(a), np.asarray(b)) for a, b in splitter.split(np.zeros(len(gold)), strata, groups)]


def fit_task(approach: Approach, task: Task, X: list, gold: list, classes: list[str], *, seed: int,
             definitions: dict | None = None):
    """A fitted estimator for one task (not yet wrapped in a :class:`TaskModel`)."""
    estimator = make_estimator(approach, task.kind, seed)
    if approach.name == "zeroshot":
        estimator.set_params(definitions={c: definitions[c] for c in classes})
        return estimator.fit(X)
    y = indicator(gold, classes) if task.kind == "multi" else np.asarray(gold)
    if task.kind == "single" and len(set(gold)) < 2:  # a fold whose training part has one class
        return ConstantClassifier().fit(X, y)
    return estimator.fit(X, y)


def out_of_fold(approach: Approach, task: Task, X: list, gold: list, classes: list[str],
                folds: list[tuple[np.ndarray, np.ndarray]], *, seed: int, definitions=None) -> np.ndarray:
    """Out-of-fold probabilities of shape (n, n_classes), columns in ``classes`` order."""
    proba = np.zeros((len(X), len(classes)))
    for train_idx, test_idx in folds:
        sub_gold = [gold[i] for i in train_idx]
        estimator = fit_task(approach, task, [X[i] for i in train_idx], sub_gold, classes, seed=seed,
                             definitions=definitions)
        model = TaskModel(task, estimator, classes)
        proba[test_idx] = _aligned(model, [X[i] for i in test_idx], classes)
    return proba


def _aligned(model: TaskModel, X: list, classes: list[str]) -> np.ndarray:
    """Probabilities for ``classes`` even when a fold's estimator never saw some class."""
    if model.task.kind == "multi":
        return model.predict_proba(X)
    raw = np.asarray(model.estimator.predict_proba(X))
    out = np.zeros((len(X), len(classes)))
    for j, label in enumerate(model.estimator.classes_):
        out[:, classes.index(str(label))] = raw[:, j]
    return out


def definition_vectors(embedder, task: Task, classes: Sequence[str]) -> dict[str, np.ndarray]:
    texts = [f"{c.replace('_', ' ')}: {task.labels.get(c, '')}".strip(": ") for c in classes]
    return dict(zip(classes, embedder.encode(texts)))


def train(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    classifier: str = "hybrid",
    model: str | None = None,
    splits: Sequence[str] | None = DEFAULT_SPLITS,
    folds: int = 5,
    seed: int = 0,
    progress: bool = False,
    embedder=None,
) -> TrainReport:
    """Train a bundle on labelled files and write it to ``out`` atomically.

    Parameters
    ----------
    paths : labelled files or folders (JSONL / CSV) with schema files beside them
    out : bundle directory; replaced only once the new bundle is complete
    tasks : train only these tasks (default: every task in the data)
    classifier : approach name (see ``toolkit.classify.approaches``)
    splits : rows of these splits are used; rows without a split always are
    """
    from toolkit.embed import Embedder

    started = time.perf_counter()
    approach = get_approach(classifier)
    if folds < 2:
        raise UsageError(f"The 'folds' parameter must be an int >= 2. Got {folds} instead.")
    blocker = file_in_the_way(Path(out))
    if blocker is not None:  # say so now, not after training
        raise UsageError(f"{out}: cannot create the bundle folder, {blocker} is a file", hint="choose a folder path")
    examples, schema, problems = load_examples(paths, tasks=tasks, splits=splits)
    problems += check_stories(examples)
    require_valid(problems)
    if not examples:
        raise InputError(f"no labelled passages in {', '.join(map(str, paths))} for splits {', '.join(splits or [])}")
    embedder = embedder or Embedder(model)
    texts = [e.text for e in examples]
    vectors = embedder.encode(texts, progress=progress) if approach.uses_embeddings or approach.name == "zeroshot" \
        else np.zeros((len(texts), 1), dtype=np.float32)
    X_all = list(zip(texts, vectors))
    report = TrainReport(out=str(out), n=len(examples), classifier=classifier)
    fitted: dict[str, TaskModel] = {}
    cv_metrics: dict[str, dict] = {}
    for name, task in schema.tasks.items():
        index, gold, classes = task_data(examples, task)
        if not index:
            report.warnings.append(f"task {name}: no labelled passages, skipped")
            continue
        if len(classes) < 2:
            raise InputError(f"task {name!r} has a single class ({', '.join(classes)}) in the data",
                             hint="a classifier needs at least two label values")
        missing = [c for c in task.labels if c not in classes]
        if missing:
            report.warnings.append(f"task {name}: no examples of {', '.join(missing)}; never predicted")
        X = [X_all[i] for i in index]
        groups = [examples[i].story or examples[i].id or str(i) for i in index]
        definitions = definition_vectors(embedder, task, classes) if approach.name == "zeroshot" else None
        folds_ = fold_indices(gold, groups, folds, seed)
        oof = out_of_fold(approach, task, X, gold, classes, folds_, seed=seed, definitions=definitions)
        thresholds = {}
        if task.kind == "multi":
            thresholds = ({c: 1.01 for c in classes} if not approach.trains
                          else tune_thresholds(oof, indicator(gold, classes), classes))
        metrics = task_metrics(gold, decide(oof, classes, task, thresholds), classes, task.kind)
        cv_metrics[name] = {k: metrics[k] for k in ("macro_f1", "micro_f1", "n")}
        estimator = fit_task(approach, task, X, gold, classes, seed=seed, definitions=definitions)
        fitted[name] = TaskModel(task, estimator, classes, thresholds)
        report.tasks[name] = {"classes": classes, "thresholds": thresholds, "cv": cv_metrics[name]}
    if not fitted:
        raise InputError("no task had labelled passages to train on")
    write_bundle(Path(out), fitted, embedder=embedder, examples=examples, classifier=classifier,
                 cv_metrics=cv_metrics, folds=len(folds_), splits=splits, seed=seed)
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def data_hash(examples: Sequence[Example]) -> str:
    digest = hashlib.sha256()
    for e in examples:
        digest.update(json.dumps([e.text, e.labels], sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()


def write_bundle(out: Path, models: dict[str, TaskModel], *, embedder, examples, classifier, cv_metrics,
                 folds, splits, seed) -> None:
    """Write estimators and manifest to a staging folder, then swap it into ``out``."""
    import joblib
    import sklearn

    with write_lock(out.parent / f".{out.name}.lockdir", "bundle"):
        remove_stale_staging(out)  # what a killed writer left; the bundle itself is whole
        staged = staging_dir(out)
        try:
            tasks = {}
            for name, model in models.items():
                file = staged / f"{name}.joblib"
                joblib.dump(model.estimator, file)
                tasks[name] = {"file": file.name, "sha256": sha256(file), "classes": model.classes,
                               "thresholds": model.thresholds, "schema": model.task.to_dict()}
            manifest = {
                "writer": WRITER,
                "toolkit_version": __version__,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "classifier": classifier,
                "tasks": tasks,
                "embedding": {"model_id": embedder.model_id, "dim": int(embedder.dim)},
                "training": {"n": len(examples), "sha256": data_hash(examples), "splits": list(splits or []),
                             "folds": folds, "seed": seed},
                "cv_metrics": cv_metrics,
                "versions": {"toolkit": __version__, "scikit-learn": sklearn.__version__,
                             "numpy": np.__version__, "python": platform.python_version()},
            }
            write_json_atomic(staged / MANIFEST, manifest)
            replace_dir(staged, out)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
