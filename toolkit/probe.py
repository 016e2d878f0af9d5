"""``--backend auto``: measure the installed backends once per model and CPU, keep the fastest faithful one.

The probe embeds :data:`PROBE_PASSAGES` news-like passages of realistic length with torch fp32 and
with every other installed backend (after a warm-up), keeps the backends whose embeddings have
cosine >= :data:`MIN_COSINE` to torch's on every passage, and picks the fastest. The result is
cached in ``$TOOLKIT_CACHE_DIR/backend-probe.json`` under a key made of the model's fingerprint,
the set of installed backends and the CPU model, so later runs do not probe again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import random
import time
from datetime import datetime, timezone

import numpy as np

from toolkit.backends import installed_backends, model_fingerprint

log = logging.getLogger(__name__)

MIN_COSINE = 0.99
PROBE_PASSAGES = 64
_CHOSEN: dict[str, str] = {}  # probe key -> backend, so the choice is logged once per process

_SENTENCES = (
    "The defence ministers of the two countries spoke by telephone on Tuesday, their ministries said.",
    "According to a readout published after the call, they discussed the situation in the region and "
    "agreed to keep channels of communication open to avoid miscalculation.",
    "The foreign minister arrived in the capital for a two-day visit, the first by a senior official in "
    "more than three years.",
    "Officials said the talks covered trade, energy security and the return of detained citizens.",
    "A spokesperson declined to comment on whether the leaders would meet on the sidelines of the summit.",
    "Military delegations held a round of consultations on maritime incidents and air safety.",
    "The statement gave no details of the agenda, but analysts expect sanctions to feature prominently.",
    "Earlier this month the chief of the general staff met his counterpart at a base near the border.",
    "The embassy said the ambassador had been summoned to receive a formal protest over the exercises.",
    "Negotiators will reconvene next week in Geneva, where a ceasefire monitoring mechanism is on the table.",
    "The president thanked his counterpart for the humanitarian aid and invited him to visit in the spring.",
    "Both sides described the conversation as frank and constructive, a phrase often used for difficult talks.",
    "Hours later the navy announced that joint patrols would resume after a pause of eighteen months.",
    "The prime minister's office said the call lasted about an hour and was requested by the other side.",
    "Observers noted that the meeting took place despite a sharp exchange of accusations in recent weeks.",
    "The two ministers signed a memorandum on defence cooperation, including training and arms procurement.",
)


def probe_passages(n: int = PROBE_PASSAGES, seed: int = 0) -> list[str]:
    """``n`` deterministic news-like passages of 2-6 sentences (about 40-130 tokens)."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(_SENTENCES, rng.randint(2, 6))) for _ in range(n)]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def probe_key(load_path: str, model_id: str, backends: list[str]) -> str:
    raw = json.dumps([model_fingerprint(load_path, model_id), sorted(backends), cpu_model()])
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def _probe_file():
    from toolkit.embed import cache_dir

    return cache_dir() / "backend-probe.json"


def _read_results() -> dict:
    try:
        return json.loads(_probe_file().read_text())
    except (OSError, ValueError):
        return {}


def run_probe(load_path: str, model_id: str, backends: list[str]) -> dict:
    """Rates (passages/s) and the lowest cosine to torch fp32 for each of ``backends``."""
    from toolkit.embed import _load_model

    passages = probe_passages()
    rates, cosines, errors = {}, {}, {}
    reference = None
    for backend in ["torch", *[b for b in backends if b != "torch"]]:
        try:
            model = _load_model(load_path, model_id, backend)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot load is simply not chosen
            errors[backend] = str(exc)
            continue
        model.encode(passages[:8], batch_size=32, normalize_embeddings=True)  # warm-up
        started = time.perf_counter()
        vectors = model.encode(passages, batch_size=32, normalize_embeddings=True)
        rates[backend] = round(len(passages) / (time.perf_counter() - started), 1)
        vectors = np.asarray(vectors, dtype=np.float32)
        if reference is None:
            reference = vectors
        cosines[backend] = round(float((vectors * reference).sum(axis=1).min()), 6)
    faithful = [b for b in rates if cosines[b] >= MIN_COSINE]
    chosen = max(faithful, key=lambda b: rates[b])
    return {"backend": chosen, "rates": rates, "min_cosine": cosines, "errors": errors,
            "model": model_id, "cpu": cpu_model(), "passages": len(passages),
            "probed": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def choose_backend(load_path: str, model_id: str) -> str:
    """The fastest installed backend whose embeddings match torch fp32 (probed once, then cached)."""
    from toolkit.embed import _forget_models
    from toolkit.fsutil import write_json_atomic

    backends = installed_backends()
    key = probe_key(load_path, model_id, backends)
    if key in _CHOSEN:
        return _CHOSEN[key]
    if len(backends) == 1:
        result = {"backend": "torch", "rates": {}, "min_cosine": {}}
        log.info("auto backend: torch (no onnxruntime or openvino installed)")
    else:
        result = _read_results().get(key)
        if result is None:
            log.info("auto backend: probing %s on %d passages (once for this model and CPU)",
                     ", ".join(backends), PROBE_PASSAGES)
            result = run_probe(load_path, model_id, backends)
            results = _read_results()
            results[key] = result
            _probe_file().parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(_probe_file(), results)
        rates = ", ".join(f"{b} {r:.0f}/s (cosine {result['min_cosine'][b]:.4f})" for b, r in result["rates"].items())
        log.info("auto backend: %s [%s]", result["backend"], rates)
    _CHOSEN[key] = result["backend"]
    _forget_models(load_path, keep=result["backend"])  # free the models the probe loaded and will not use
    return result["backend"]
