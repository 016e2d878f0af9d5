"""A fitted model for one task: estimator, label order, thresholds and the decision rule."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from toolkit.labels import Task


@dataclass
class TaskModel:
    """Probabilities and decisions for one task.

    For multi-label tasks a label is chosen when its probability reaches its threshold; when none
    does, the label closest to its threshold is chosen, so every passage gets a label. Exclusive
    labels (``none``) stand alone: if the strongest label is exclusive it is the only one,
    otherwise exclusive labels are dropped.
    """

    task: Task
    estimator: object
    classes: list[str]
    thresholds: dict[str, float] = field(default_factory=dict)

    def predict_proba(self, X: Sequence, shared: dict | None = None) -> np.ndarray:
        """Array of shape (n_passages, n_classes), columns in ``self.classes`` order.

        ``shared`` (a dict kept by the caller for one ``X``) lets tasks whose pipelines have the
        same fitted feature steps compute the features once: the default bundle's two tasks use
        one TF-IDF vocabulary, and its character n-grams are most of the cost of labelling.
        """
        key = self._feature_key() if shared is not None else None
        if key is None:
            proba = self.estimator.predict_proba(X)
        else:
            if key not in shared:
                features = X
                for _, step in self.estimator.steps[:-1]:  # what Pipeline.predict_proba does before the last step
                    features = step.transform(features)
                shared[key] = features
            proba = self.estimator[-1].predict_proba(shared[key])
        proba = np.asarray(proba, dtype=np.float64)
        order = list(getattr(self.estimator, "classes_", self.classes))
        if self.task.kind == "multi" or order == self.classes:
            return proba
        # Single-label estimators order columns by their classes_; align to self.classes.
        aligned = np.zeros((len(proba), len(self.classes)))
        for j, label in enumerate(order):
            aligned[:, self.classes.index(str(label))] = proba[:, j]
        return aligned

    def _feature_key(self) -> str | None:
        """Fingerprint of the fitted steps before the classifier, or None for a single estimator."""
        if not hasattr(self, "_features"):
            from sklearn.pipeline import Pipeline

            self._features = None
            if isinstance(self.estimator, Pipeline) and len(self.estimator.steps) > 1:
                import hashlib
                import pickle

                self._features = hashlib.sha256(pickle.dumps(self.estimator.steps[:-1], protocol=5)).hexdigest()
        return self._features

    def decide(self, proba: np.ndarray) -> list:
        return decide(proba, self.classes, self.task, self.thresholds)


def decide(proba: np.ndarray, classes: Sequence[str], task: Task, thresholds: dict[str, float]) -> list:
    """Labels per passage from probabilities: a string (single) or a sorted list (multi)."""
    classes = list(classes)
    if task.kind == "single":
        return [classes[i] for i in proba.argmax(axis=1)]
    limits = np.array([thresholds.get(c, 0.5) for c in classes])
    ratio = proba / np.maximum(limits, 1e-6)
    exclusive = [classes.index(c) for c in task.exclusive if c in classes]
    out = []
    for p, r in zip(proba, ratio):
        chosen = [i for i in range(len(classes)) if p[i] >= limits[i]]
        top = int(r.argmax())
        if not chosen:
            chosen = [top]
        if exclusive and len(chosen) > 1:
            best = max(chosen, key=lambda i: r[i])
            chosen = [best] if best in exclusive else [i for i in chosen if i not in exclusive]
        out.append(sorted(classes[i] for i in chosen))
    return out


def tune_thresholds(proba: np.ndarray, y: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Per-label threshold maximising F1 on out-of-fold probabilities.

    Parameters
    ----------
    proba : array of shape (n_passages, n_labels)
        Out-of-fold probabilities.
    y : array of shape (n_passages, n_labels)
        Binary indicator of the true labels.
    """
    grid = np.round(np.arange(0.05, 0.951, 0.025), 3)
    thresholds = {}
    for j, label in enumerate(classes):
        truth = y[:, j].astype(bool)
        if truth.sum() == 0:
            thresholds[label] = 0.5
            continue
        best, best_f1 = 0.5, -1.0
        for limit in grid:
            predicted = proba[:, j] >= limit
            tp = float(np.sum(predicted & truth))
            f1 = 2 * tp / (predicted.sum() + truth.sum()) if (predicted.sum() + truth.sum()) else 0.0
            # Prefer the threshold nearest 0.5 among near-ties, for stability on new data.
            if f1 > best_f1 + 1e-9 or (abs(f1 - best_f1) <= 1e-9 and abs(limit - 0.5) < abs(best - 0.5)):
                best, best_f1 = float(limit), f1
        thresholds[label] = best
    return thresholds
