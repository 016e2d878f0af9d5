"""Model bundles: fitted estimators (joblib) plus a ``manifest.json`` that says what they are.

joblib files are pickles: loading one runs code. A bundle therefore loads only when every joblib
file's SHA-256 matches the hash recorded in its manifest (always), and only when the manifest was
written by this toolkit version (``trust=True`` waives this version check, never the hash check).
Loading also checks that the bundle's embedding model is the one in use.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from toolkit import __version__
from toolkit.classify.model import TaskModel
from toolkit.errors import ModelError
from toolkit.labels import Task

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
WRITER = "toolkit"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_bundle_path() -> Path | None:
    """``$TOOLKIT_BUNDLE``, else ``models/default`` of the project checkout, if it exists."""
    env = os.environ.get("TOOLKIT_BUNDLE")
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = base / "models" / "default"
        if (candidate / MANIFEST).exists():
            return candidate
    return None


class Bundle:
    """A loaded bundle: one :class:`TaskModel` per task, and the manifest."""

    def __init__(self, path: Path, manifest: dict, models: dict[str, TaskModel]) -> None:
        self.path = path
        self.manifest = manifest
        self.models = models

    @property
    def model_id(self) -> str:
        return self.manifest["embedding"]["model_id"]

    @property
    def bundle_id(self) -> str:
        return f"{self.path.name}@{self.manifest.get('created', '')}"

    @property
    def tasks(self) -> list[str]:
        return list(self.models)

    def summary(self) -> dict:
        """What an index records about the bundle that labelled it."""
        return {"bundle": str(self.path), "bundle_id": self.bundle_id,
                "tasks": {name: {"kind": m.task.kind, "labels": m.classes} for name, m in self.models.items()}}

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, *, trust: bool = False) -> "Bundle":
        import joblib

        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.exists():
            raise ModelError(f"{path}: not a model bundle (no {MANIFEST})", hint="train one with `toolkit train`")
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError as exc:
            raise ModelError(f"{manifest_path}: unreadable manifest ({exc})") from exc
        if manifest.get("writer") != WRITER or manifest.get("toolkit_version") != __version__:
            if not trust:
                raise ModelError(
                    f"{path}: bundle written by {manifest.get('writer', 'an unknown program')} "
                    f"{manifest.get('toolkit_version', '?')}, not toolkit {__version__}; its joblib files would run code",
                    hint="retrain it, or pass --trust if you know where it came from",
                )
        models = {}
        for name, spec in manifest.get("tasks", {}).items():
            file = path / spec["file"]
            if not file.exists():
                raise ModelError(f"{file}: missing estimator file", hint="retrain the bundle")
            if sha256(file) != spec.get("sha256"):  # never waived, not even by trust: a changed pickle runs any code
                raise ModelError(f"{file}: SHA-256 does not match the manifest; the file was changed after training",
                                 hint="retrain the bundle; a changed joblib file could run any code")
            try:
                estimator = joblib.load(file)
            except Exception as exc:  # noqa: BLE001 - unpickling raises anything
                raise ModelError(f"{file}: cannot load estimator ({type(exc).__name__}: {exc})") from exc
            task = Task.from_dict(name, spec["schema"])
            models[name] = TaskModel(task, estimator, list(spec["classes"]), dict(spec.get("thresholds") or {}))
        versions = manifest.get("versions", {})
        import sklearn

        if versions.get("scikit-learn") and versions["scikit-learn"] != sklearn.__version__:
            log.warning("%s was trained with scikit-learn %s, running %s", path, versions["scikit-learn"],
                        sklearn.__version__)
        return cls(path, manifest, models)

    def check_embedder(self, embedder) -> None:
        """Refuse an embedder other than the one the bundle was trained with."""
        wanted = self.manifest["embedding"]
        if embedder.model_id != wanted["model_id"] or int(embedder.dim) != int(wanted["dim"]):
            raise ModelError(
                f"{self.path} was trained on embeddings of {wanted['model_id']!r} (dim {wanted['dim']}), "
                f"not {embedder.model_id!r} (dim {embedder.dim})",
                hint="use the same --model, or retrain the bundle with this model",
            )

    # -- prediction ------------------------------------------------------------------------------
    def predict(self, texts: Sequence[str], vectors: np.ndarray) -> tuple[list[dict], list[dict]]:
        """Labels and probabilities per passage for every task.

        Returns
        -------
        labels : list of dict, task -> str (single) or list of str (multi)
        probabilities : list of dict, task -> {label: probability}
        """
        X = list(zip(texts, vectors))
        labels: list[dict] = [{} for _ in texts]
        probabilities: list[dict] = [{} for _ in texts]
        if not X:
            return labels, probabilities
        # Features computed once for tasks whose fitted feature steps are identical (one task: nothing to share).
        shared: dict | None = {} if len(self.models) > 1 else None
        for name, model in self.models.items():
            proba = model.predict_proba(X, shared)
            decided = model.decide(proba)
            for i in range(len(X)):
                labels[i][name] = decided[i]
                probabilities[i][name] = {c: round(float(p), 4) for c, p in zip(model.classes, proba[i])}
        return labels, probabilities
