"""Inference backends: onnx/openvino agree with torch fp32, exports are cached, auto picks and records."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import LABELS, SEEDS
from toolkit.errors import ModelError, UsageError

PASSAGES = 48  # real labelled passages, the longest included


@pytest.fixture(scope="module")
def passages():
    rows = [json.loads(line)["text"] for line in (LABELS / "written_europe.jsonl").read_text().splitlines()]
    rows.sort(key=len)
    return rows[-8:] + rows[: PASSAGES - 8]  # the longest ones exercise truncation at 256 tokens


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_backend_matches_torch_fp32(backend, passages, embedder):
    pytest.importorskip("onnxruntime" if backend == "onnx" else "openvino")
    from toolkit.embed import Embedder

    reference = embedder._encode_uncached(passages, progress=False)
    other = Embedder(backend=backend, cache=False)
    vectors = other.encode(passages)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosines = (vectors * reference).sum(axis=1)
    assert cosines.min() >= 0.99, cosines.min()
    assert other.cache_key == f"{other.model_id}#{backend}"  # vectors of each backend are cached apart


def test_export_is_cached_and_not_redone(monkeypatch, embedder):
    pytest.importorskip("openvino")
    from toolkit import backends

    folder = backends.ensure_export(embedder.load_path, embedder.model_id, "openvino")
    assert (folder / "export.json").exists() and (folder / "openvino_model.xml").exists()
    assert folder.is_relative_to(backends.export_dir(embedder.load_path, embedder.model_id, "openvino").parents[2])
    monkeypatch.setattr(backends, "_export", lambda *a: pytest.fail("exported twice"))
    assert backends.ensure_export(embedder.load_path, embedder.model_id, "openvino") == folder
    leftovers = [p.name for p in folder.parent.iterdir() if ".tmp-" in p.name]
    assert not leftovers


def test_auto_picks_a_backend_records_it_and_queries_use_it(tmp_path, monkeypatch):
    from toolkit import probe
    from toolkit.backends import installed_backends
    from toolkit.index import Index
    from toolkit.indexing import build_index

    folder = tmp_path / "index"
    build_index([SEEDS], folder, backend="auto", bundle=None)
    manifest = json.loads((folder / "manifest.json").read_text())
    chosen = manifest["model"]["backend"]
    assert chosen in installed_backends()
    results = json.loads(probe._probe_file().read_text())
    (result,) = [r for r in results.values() if r["model"] == manifest["model"]["id"]]
    assert result["backend"] == chosen and all(c >= probe.MIN_COSINE for b, c in result["min_cosine"].items()
                                               if b == chosen)
    # Cached on disk: a new process (simulated by forgetting the in-process choice) does not probe again.
    monkeypatch.setattr(probe, "_CHOSEN", {})
    monkeypatch.setattr(probe, "run_probe", lambda *a: pytest.fail("probed twice"))
    from toolkit.embed import Embedder

    assert Embedder(backend="auto").backend == chosen
    # Queries use the recorded backend unless one is given.
    assert Index.open(folder).embedder.backend == chosen
    assert Index.open(folder, backend="torch").embedder.backend == "torch"
    assert Index.open(folder).search("defence ministers phone call", k=3)
    # Updating the index keeps its backend.
    build_index([SEEDS], folder, bundle=None)
    assert json.loads((folder / "manifest.json").read_text())["model"]["backend"] == chosen


def test_missing_backend_package_is_a_one_line_error(monkeypatch, tmp_path, seed_index):
    from toolkit.cli import app
    from toolkit.embed import Embedder

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    monkeypatch.setattr("toolkit.embed._MODELS", {})
    with pytest.raises(ModelError, match=r"^the onnx backend needs the onnxruntime package \(pip install"):
        Embedder(backend="onnx", cache=False).encode(["a passage"])
    result = CliRunner().invoke(app, ["query", "defence ministers", "--index", str(seed_index), "--backend", "onnx"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: the onnx backend needs the onnxruntime package"), result.output
    assert len([line for line in lines if line.startswith("error")]) == 1 and "Traceback" not in result.output


def test_unknown_backend_is_a_usage_error():
    from toolkit.embed import Embedder

    with pytest.raises(UsageError, match=r"'backend' parameter must be one of torch, onnx, openvino, auto\. "
                                         r"Got 'cuda' instead"):
        Embedder(backend="cuda").backend


def test_new_indexes_default_to_auto_unless_the_environment_says_otherwise(monkeypatch):
    from toolkit.embed import default_backend

    monkeypatch.delenv("TOOLKIT_BACKEND", raising=False)
    assert default_backend() == "auto"
    monkeypatch.setenv("TOOLKIT_BACKEND", "openvino")
    assert default_backend() == "openvino"


def test_queued_openvino_encoding_exits_cleanly_and_matches_single_batches():
    """Many batches go through a reused AsyncInferQueue. A queue made per call aborted the process at
    exit ("terminate called without an active exception", code 134) in about a quarter of runs."""
    pytest.importorskip("openvino")
    import subprocess

    script = (
        "import json, numpy as np\n"
        "from toolkit.embed import resolve_model\n"
        "from toolkit.backends import load_exported\n"
        "model_id, path = resolve_model(None)\n"
        "enc = load_exported(path, model_id, 'openvino')\n"
        f"texts = [json.loads(l)['text'] for l in open({str(LABELS / 'seeds.jsonl')!r}) if l.strip()] * 4\n"
        "single = np.vstack([enc.encode(texts[i:i + 32]) for i in range(0, len(texts), 32)])\n"
        "for _ in range(3):\n"
        "    assert (enc.encode(texts) * single).sum(axis=1).min() > 0.9999\n"
        "print('ok')\n"
    )
    for _ in range(4):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-500:]
