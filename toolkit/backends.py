"""ONNX Runtime and OpenVINO inference for sentence-transformers models, exported once and cached.

sentence-transformers' own ``backend="onnx"|"openvino"`` goes through ``optimum-onnx`` /
``optimum-intel``, whose releases pin ``transformers<4.58`` / ``<5.6``; this project runs
transformers 5.2x. So the export is done here with torch itself (``torch.onnx.export`` for ONNX,
``openvino.convert_model`` for OpenVINO IR), and inference is the model's fast tokenizer, one
forward pass per batch and the model's pooling in NumPy. Models made of Transformer + Pooling
(+ Normalize) modules are supported, which covers the MiniLM/MPNet/BGE family.

Exports live under ``$TOOLKIT_CACHE_DIR/models/<model>-<fingerprint>/<backend>/``, written into a
staging folder and renamed into place, so a killed export never leaves a half model behind and a
second run loads the export instead of redoing it. :func:`choose_backend` is ``--backend auto``.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np

from toolkit.errors import ModelError
from toolkit.fsutil import staging_dir

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "openvino")
EXPORT_VERSION = 1  # bump when the export recipe changes: old exports are then ignored
# The import each backend needs at run time and at export time, and the package providing it.
_NEEDS = {"onnx": (("onnxruntime", "onnxruntime"),), "openvino": (("openvino", "openvino"),)}
_EXPORT_NEEDS = {"onnx": (("onnx", "onnx"),), "openvino": ()}
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _require(backend: str, needs) -> None:
    for module, package in needs:
        try:
            __import__(module)
        except ImportError:
            raise ModelError(f"the {backend} backend needs the {package} package",
                             hint=f"pip install {package}, or install the project with its `fast` extra") from None


def installed_backends() -> list[str]:
    """Backends whose packages import, ``torch`` first."""
    found = ["torch"]
    for backend in ("onnx", "openvino"):
        try:
            _require(backend, _NEEDS[backend] + _EXPORT_NEEDS[backend])
        except ModelError:
            continue
        found.append(backend)
    return found


def model_fingerprint(load_path: str, model_id: str) -> str:
    """Short hash of what identifies the model's weights (id, config, weight files' size and mtime)."""
    folder = Path(load_path)
    parts = [model_id, str(EXPORT_VERSION)]
    for name in ("config.json", "modules.json", "sentence_bert_config.json"):
        path = folder / name
        parts.append(path.read_text() if path.exists() else "")
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        stat = path.stat()
        parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:12]


def export_dir(load_path: str, model_id: str, backend: str) -> Path:
    from toolkit.embed import cache_dir

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id.strip("/"))[-60:]
    return cache_dir() / "models" / f"{slug}-{model_fingerprint(load_path, model_id)}" / backend


def _model_layout(load_path: str) -> tuple[str, bool]:
    """The pooling mode (mean, cls, max) and whether a Normalize module follows; refuse others."""
    folder = Path(load_path)
    modules = json.loads((folder / "modules.json").read_text()) if (folder / "modules.json").exists() else []
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise ModelError(f"{load_path}: the onnx/openvino backends support Transformer + Pooling (+ Normalize) "
                         f"models, this one has {' + '.join(kinds) or 'no modules.json'}",
                         hint="use --backend torch")
    config = json.loads((folder / modules[1]["path"] / "config.json").read_text())
    for mode in ("mean", "cls", "max"):
        if config.get(f"pooling_mode_{mode}_tokens" if mode != "cls" else "pooling_mode_cls_token"):
            return mode, "Normalize" in kinds
    raise ModelError(f"{load_path}: pooling {config} is not supported by the onnx/openvino backends",
                     hint="use --backend torch")


def _torch_module(load_path: str):
    """The model's transformer as a module taking ``(input_ids, attention_mask[, token_type_ids])``."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(load_path, attn_implementation="eager").eval()
    names = [n for n in _INPUTS if n in inspect.signature(model.forward).parameters]

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                inputs["token_type_ids"] = token_type_ids
            return self.model(**inputs).last_hidden_state

    example = torch.ones(2, 16, dtype=torch.long)
    return Hidden(), names, tuple(example if n != "token_type_ids" else torch.zeros_like(example) for n in names)


def _export(load_path: str, backend: str, folder: Path) -> None:
    import torch

    module, names, example = _torch_module(load_path)
    with torch.no_grad():
        if backend == "onnx":
            axes = {name: {0: "batch", 1: "tokens"} for name in (*names, "last_hidden_state")}
            torch.onnx.export(module, example, str(folder / "model.onnx"), dynamo=False, input_names=names,
                              output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17)
        else:
            import openvino as ov

            converted = ov.convert_model(module, example_input=dict(zip(names, example)))
            ov.save_model(converted, str(folder / "openvino_model.xml"), compress_to_fp16=False)


def ensure_export(load_path: str, model_id: str, backend: str) -> Path:
    """The folder of the cached export of the model for ``backend``, exported now if missing."""
    target = export_dir(load_path, model_id, backend)
    if (target / "export.json").exists():
        return target
    _require(backend, _EXPORT_NEEDS[backend])
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = staging_dir(target)
    try:
        log.info("exporting %s to %s (once; cached in %s)", model_id, backend, target)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow
            _export(load_path, backend, staged)
        (staged / "export.json").write_text(json.dumps({"model": model_id, "backend": backend,
                                                        "version": EXPORT_VERSION}) + "\n")
        try:
            os.rename(staged, target)
        except OSError:  # another process finished the same export first: use that one
            if not (target / "export.json").exists():
                raise
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch/openvino raise many kinds
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot export {model_id!r} to {backend}: {first}", hint="use --backend torch") from exc
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return target


class ExportedEncoder:
    """A sentence encoder running an exported transformer; ``encode`` matches SentenceTransformer's.

    Parameters
    ----------
    load_path : str
        The sentence-transformers model folder (tokenizer, pooling and sequence length come from it).
    folder : Path
        The export made by :func:`ensure_export`.
    backend : {"onnx", "openvino"}
    """

    def __init__(self, load_path: str, folder: Path, backend: str) -> None:
        from tokenizers import Tokenizer

        from toolkit.embed import _read_max_seq_length

        self.backend = backend
        self.pooling, self.normalize = _model_layout(load_path)
        self.max_seq_length = _read_max_seq_length(load_path) or 256
        self.tokenizer = Tokenizer.from_file(str(Path(load_path) / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_seq_length)
        # Lengths padded to a multiple of 16: OpenVINO keeps compiled kernels and buffers per input
        # shape, and fewer shapes kept its memory 113 MB lower over 20k passages at the same speed.
        self.tokenizer.enable_padding(pad_to_multiple_of=16)
        if backend == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
            self.inputs = [i.name for i in session.get_inputs()]
            self._run = lambda feed: session.run(None, feed)[0]
        else:
            import openvino as ov

            core = ov.Core()
            config = {}
            if os.environ.get("TOOLKIT_OPENVINO_PRECISION"):  # e.g. f32; default: the CPU's (bf16 with AMX)
                config["INFERENCE_PRECISION_HINT"] = os.environ["TOOLKIT_OPENVINO_PRECISION"]
            model = core.read_model(str(folder / "openvino_model.xml"))
            compiled = core.compile_model(model, "CPU", {**config, "PERFORMANCE_HINT": "LATENCY"})
            self.inputs = [i.get_any_name() for i in compiled.inputs]
            request, lock = compiled.create_infer_request(), threading.Lock()  # a request is single-threaded

            def run(feed):
                with lock:
                    return request.infer(feed)[0].copy()

            self._run = run
            # Many batches (indexing) go through a second compilation with the throughput hint: one
            # stream per core, each running its own request, fed by a queue while the calling thread
            # tokenises the next batch. Compiled on first use, so queries never pay for it.
            self._queue = None
            self._throughput_lock = threading.Lock()
            self._compile_throughput = lambda: core.compile_model(model, "CPU", {**config, "PERFORMANCE_HINT": "THROUGHPUT"})
        self._dim: int | None = None

    def get_embedding_dimension(self) -> int:
        if self._dim is None:
            self._dim = int(self.encode(["dimension"]).shape[1])
        return self._dim

    def encode(self, sentences, batch_size: int = 32, show_progress_bar: bool = False,
               convert_to_numpy: bool = True, normalize_embeddings: bool = False) -> np.ndarray:
        """Embed ``sentences`` in order; float32 array of shape ``(len(sentences), dim)``."""
        sentences = [sentences] if isinstance(sentences, str) else list(sentences)
        batches = [sentences[start : start + batch_size] for start in range(0, len(sentences), batch_size)]
        if self.backend == "openvino" and len(batches) > 1:
            out = self._encode_queued(batches)
        else:
            out = []
            for batch in batches:
                feed, mask = self._tokenize(batch)
                out.append(_pool(np.asarray(self._run(feed), dtype=np.float32), mask, self.pooling))
        vectors = np.vstack(out) if out else np.zeros((0, self._dim or 0), np.float32)
        if self.normalize or normalize_embeddings:
            vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        return vectors

    def _tokenize(self, batch: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The model's inputs for ``batch``, and its attention mask (for pooling)."""
        encoded = self.tokenizer.encode_batch(batch)
        arrays = {"input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
                  "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
                  "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64)}
        return {name: arrays[name] for name in self.inputs}, arrays["attention_mask"]

    def _encode_queued(self, batches: list[list[str]]) -> list[np.ndarray]:
        """OpenVINO: run ``batches`` on the throughput-compiled model, several requests in flight.

        The queue and its requests are made once and reused: indexing calls this every 128 texts.
        """
        results: list[np.ndarray | None] = [None] * len(batches)
        with self._throughput_lock:
            if self._queue is None:
                import openvino as ov

                compiled = self._compile_throughput()
                jobs = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
                self._queue = ov.AsyncInferQueue(compiled, jobs)
                self._queue.set_callback(self._pool_result)
            for index, batch in enumerate(batches):
                feed, mask = self._tokenize(batch)
                self._queue.start_async(feed, userdata=(results, index, mask))
            self._queue.wait_all()
        if any(r is None for r in results):
            raise ModelError("OpenVINO returned no result for a batch; retry with --backend torch")
        return results

    def _pool_result(self, request, job) -> None:
        """AsyncInferQueue callback: pool one finished batch into its slot of the caller's results."""
        results, index, mask = job
        hidden = np.asarray(request.get_output_tensor(0).data, dtype=np.float32)
        results[index] = _pool(hidden, mask, self.pooling)


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Token vectors of shape (batch, tokens, dim) to sentence vectors of shape (batch, dim)."""
    if mode == "cls":
        return hidden[:, 0].copy()
    weights = mask[..., None].astype(np.float32)
    if mode == "max":
        return np.where(weights > 0, hidden, -1e9).max(axis=1)
    return (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)


def load_exported(load_path: str, model_id: str, backend: str) -> ExportedEncoder:
    """Load ``model_id`` for ``backend`` ("onnx" or "openvino"), exporting it first if needed."""
    _require(backend, _NEEDS[backend])
    _model_layout(load_path)  # refuse unsupported models before exporting anything
    return ExportedEncoder(load_path, ensure_export(load_path, model_id, backend), backend)
