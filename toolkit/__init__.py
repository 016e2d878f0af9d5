"""toolkit: classify and search news passages about official contacts between states and militaries.

The public Python API is importable from here; heavy dependencies (torch, faiss, scikit-learn) load
only when the object that needs them is used.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Index": "toolkit.index",
    "build_index": "toolkit.indexing",
    "Hit": "toolkit.index",
    "Embedder": "toolkit.embed",
    "read_documents": "toolkit.corpus.read",
    "clean_text": "toolkit.corpus.clean",
    "split_passages": "toolkit.corpus.split",
    "Schema": "toolkit.labels",
    "load_examples": "toolkit.labels",
    "Bundle": "toolkit.classify.bundle",
    "train": "toolkit.classify.train",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
