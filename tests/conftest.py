"""Shared fixtures: one real bundled model per session, an isolated cache, a seed index."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "data" / "articles"
LABELS = ROOT / "data" / "labels"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# New indexes default to the auto backend; tests pin torch so index vectors compare exactly with the
# session embedder (tests/test_backends.py covers onnx, openvino and auto).
os.environ["TOOLKIT_BACKEND"] = "torch"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test session gets its own embedding cache, so tests never see a user's cache."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("TOOLKIT_CACHE_DIR")
    os.environ["TOOLKIT_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("TOOLKIT_CACHE_DIR", None)
    else:
        os.environ["TOOLKIT_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def embedder():
    """The bundled all-MiniLM-L6-v2, loaded once."""
    from toolkit.embed import Embedder

    model = Embedder()
    model.model  # load now, so a failure shows here
    return model


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory, embedder):
    """An index of the five seed articles (labelled when models/default exists)."""
    from toolkit.indexing import build_index

    folder = tmp_path_factory.mktemp("seed") / "index"
    build_index([SEEDS], folder, embedder=embedder)
    return folder


@pytest.fixture
def seed_copy(tmp_path):
    """A writable copy of the seed articles."""
    target = tmp_path / "articles"
    shutil.copytree(SEEDS, target)
    return target


def corpus_subset(folder: Path, source: str, stories: int, name: str = "data.jsonl") -> Path:
    """Copy the schema and the first ``stories`` whole stories of ``data/labels/<source>`` into ``folder``."""
    import json

    shutil.copy(LABELS / "schema.json", folder / "schema.json")
    rows = [json.loads(line) for line in (LABELS / source).read_text().splitlines()]
    keep = set(sorted({r["story"] for r in rows})[:stories])
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows if r["story"] in keep))
    return folder
