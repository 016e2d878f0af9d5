"""Compare classification approaches (and embedding models) by repeated, story-grouped cross-validation.

Every approach sees identical folds: for each repeat ``r`` the folds come from one
``StratifiedGroupKFold(shuffle=True, random_state=seed + r)`` split per task, grouped by story. Within
a fold each approach is fitted on the training part and scored on the held-out part with the same
decision rule as ``toolkit train`` (multi-label thresholds tuned on out-of-fold probabilities of an
inner story-grouped split of the training part; an approach that fine-tunes its encoder supplies its
head's out-of-fold probabilities instead, so the encoder is fine-tuned once per fold). Embeddings are computed once per
model through the embedding cache, so adding an approach costs only its fitting.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from joblib import Parallel, delayed

from toolkit.classify.approaches import get_approach
from toolkit.classify.model import TaskModel, decide, tune_thresholds
from toolkit.classify.train import (definition_vectors, fit_task, fold_indices, indicator, out_of_fold,
                                    task_data)
from toolkit.errors import InputError, UsageError
from toolkit.evaluate import task_metrics
from toolkit.labels import check_stories, load_examples, require_valid

INNER_FOLDS = 3


@dataclass
class BenchmarkResult:
    """Scores per task and approach: lists over folds × repeats, plus timings."""

    folds: int
    repeats: int
    n: int
    scores: dict = field(default_factory=dict)  # task -> approach -> {"macro": [...], "folds": [...], ...}

    def summary(self) -> dict:
        """The ``--json`` object: mean/std per approach and task."""
        tasks = {}
        for task, approaches in self.scores.items():
            tasks[task] = {}
            for name, s in approaches.items():
                tasks[task][name] = {
                    "macro_f1_mean": round(float(np.mean(s["macro"])), 4),
                    "macro_f1_std": round(float(np.std(s["macro"])), 4),
                    "micro_f1_mean": round(float(np.mean(s["micro"])), 4),
                    "fit_seconds": round(float(np.mean(s["fit_seconds"])), 3),
                    "predict_per_second": round(float(np.sum(s["predicted"]) / max(np.sum(s["predict_seconds"]), 1e-9)), 1),
                }
        return {"tasks": tasks, "folds": self.folds, "repeats": self.repeats}


def _score_fold(approach, task, X, gold, classes, train_idx, test_idx, seed, definitions, groups):
    """Fit on ``train_idx``, decide on ``test_idx``; returns (macro, micro, fit s, predict s)."""
    X_train = [X[i] for i in train_idx]
    gold_train = [gold[i] for i in train_idx]
    started = time.perf_counter()
    estimator = fit_task(approach, task, X_train, gold_train, classes, seed=seed, definitions=definitions)
    thresholds = {}
    if task.kind == "multi":
        if not approach.trains:
            thresholds = {c: 1.01 for c in classes}
        else:
            # Estimators that fine-tune an encoder report their head's out-of-fold probabilities;
            # the others are refitted on an inner story-grouped split of the training part.
            oof = getattr(estimator, "oof_proba_", None)
            if oof is None:
                inner = fold_indices(gold_train, [groups[i] for i in train_idx], INNER_FOLDS, seed)
                oof = out_of_fold(approach, task, X_train, gold_train, classes, inner, seed=seed,
                                  definitions=definitions)
            thresholds = tune_thresholds(oof, indicator(gold_train, classes), classes)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model = TaskModel(task, estimator, classes, thresholds)
    from toolkit.classify.train import _aligned

    proba = _aligned(model, [X[i] for i in test_idx], classes)
    predicted = decide(proba, classes, task, thresholds)
    predict_seconds = time.perf_counter() - started
    metrics = task_metrics([gold[i] for i in test_idx], predicted, classes, task.kind)
    return metrics["macro_f1"], metrics["micro_f1"], fit_seconds, predict_seconds


def run_benchmark(
    paths: Sequence[str | Path],
    *,
    approaches: Sequence[str] = ("logreg", "svm", "knn", "mlp", "tfidf", "hybrid", "zeroshot", "setfit"),
    models: Sequence[str | None] = (None,),
    folds: int = 5,
    repeats: int = 2,
    tasks: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    seed: int = 0,
    jobs: int = -1,
    progress=None,
) -> BenchmarkResult:
    """Cross-validate every (model, approach) pair on the labelled data.

    With several ``models``, result keys are ``"<approach>@<model>"`` for the non-default models.
    ``jobs`` is the number of worker processes for the folds of scikit-learn approaches (-1: one per
    core); fit times are then measured inside workers that share the machine. ``progress`` is called
    with a message after each fold.
    """
    from toolkit.embed import Embedder

    if folds < 2 or repeats < 1:
        raise UsageError(f"folds must be >= 2 and repeats >= 1. Got folds={folds}, repeats={repeats} instead.")
    resolved = [get_approach(a) for a in approaches]
    examples, schema, problems = load_examples(paths, tasks=tasks, splits=splits)
    problems += check_stories(examples)
    require_valid(problems)
    if not examples:
        raise InputError("no labelled passages to benchmark")
    result = BenchmarkResult(folds=folds, repeats=repeats, n=len(examples))
    texts = [e.text for e in examples]
    for model in models:
        embedder = Embedder(model)
        vectors = embedder.encode(texts)
        suffix = "" if model is None or model == models[0] else f"@{Path(str(model)).name}"
        X_all = list(zip(texts, vectors))
        for name, task in schema.tasks.items():
            index, gold, classes = task_data(examples, task)
            if len(classes) < 2:
                continue
            X = [X_all[i] for i in index]
            groups = [examples[i].story or examples[i].id or str(i) for i in index]
            task_scores = result.scores.setdefault(name, {})
            for repeat in range(repeats):
                split = fold_indices(gold, groups, folds, seed + repeat)
                for approach in resolved:
                    definitions = definition_vectors(embedder, task, classes) if approach.name == "zeroshot" else None
                    scores = task_scores.setdefault(approach.name + suffix, {
                        "macro": [], "micro": [], "fit_seconds": [], "predict_seconds": [], "predicted": [],
                        "folds": []})
                    # scikit-learn fits are single-threaded: folds run in parallel worker processes.
                    # An approach that fine-tunes the encoder uses every core through torch already.
                    workers = 1 if approach.handles_multi or jobs == 1 else jobs
                    fold_scores = Parallel(n_jobs=workers)(
                        delayed(_score_fold)(approach, task, X, gold, classes, train_idx, test_idx, seed,
                                             definitions, groups)
                        for train_idx, test_idx in split)
                    for fold_no, ((train_idx, test_idx), (macro, micro, fit_s, pred_s)) in enumerate(
                            zip(split, fold_scores)):
                        scores["macro"].append(macro)
                        scores["micro"].append(micro)
                        scores["fit_seconds"].append(fit_s)
                        scores["predict_seconds"].append(pred_s)
                        scores["predicted"].append(len(test_idx))
                        scores["folds"].append((repeat, tuple(sorted(int(i) for i in test_idx))))
                        if progress:
                            progress(f"{name} {approach.name}{suffix} repeat {repeat + 1} fold {fold_no + 1}: "
                                     f"macro-F1 {macro:.3f}")
    return result


def best(summary: dict, task: str) -> str:
    rows = summary["tasks"][task]
    return max(rows, key=lambda name: rows[name]["macro_f1_mean"])


def markdown(summary: dict, n: int, command: str) -> str:
    lines = [f"# Classifier benchmark", "", f"{n} passages; {summary['repeats']} × {summary['folds']}-fold "
             "cross-validation grouped by story, identical folds for every approach.", "",
             f"Command: `{command}`", ""]
    for task, rows in summary["tasks"].items():
        winner = best(summary, task)
        lines += [f"## {task}", "", "| approach | macro-F1 (mean ± std) | micro-F1 | fit s | predict passages/s |",
                  "|---|---|---|---|---|"]
        for name, row in sorted(rows.items(), key=lambda item: -item[1]["macro_f1_mean"]):
            mark = " **best**" if name == winner else ""
            lines.append(f"| {name}{mark} | {row['macro_f1_mean']:.3f} ± {row['macro_f1_std']:.3f} | "
                         f"{row['micro_f1_mean']:.3f} | {row['fit_seconds']:.1f} | {row['predict_per_second']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(summary["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = sorted(summary["tasks"][task].items(), key=lambda item: item[1]["macro_f1_mean"])
        names = [name for name, _ in rows]
        ax.barh(names, [r["macro_f1_mean"] for _, r in rows], xerr=[r["macro_f1_std"] for _, r in rows],
                color="#4878a8")
        ax.set_xlim(0, 1)
        ax.set_xlabel("macro-F1 (mean ± std over folds)")
        ax.set_title(task)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
