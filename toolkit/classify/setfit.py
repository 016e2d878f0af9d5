"""SetFit-style classifier: contrastive fine-tuning of the sentence encoder, then a logistic head.

Fine-tuning follows SetFit (Tunstall et al., 2022): pairs of training passages are embedded by the
encoder and its weights are updated so that the cosine of a pair approaches its target. For a
single-label task the target is 1 for the same label and 0 otherwise; for a multi-label task it is
the Jaccard overlap of the two label sets, so partially matching passages are pulled partly
together. A logistic-regression head (one-vs-rest for multi-label tasks) is then fitted on the
fine-tuned embeddings. Everything runs on the CPU with the bundled model; the fitted estimator
carries its own fine-tuned encoder, so predictions embed the texts again with it.
"""
from __future__ import annotations

import copy
import logging

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.utils.validation import check_is_fitted

log = logging.getLogger(__name__)


def pair_targets(y: np.ndarray, multi: bool, n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample ``n_pairs`` index pairs, half of them sharing a label where possible.

    Returns (left, right, target) arrays; target is 1/0 (single) or Jaccard overlap (multi).
    """
    n = len(y)
    left = rng.integers(0, n, size=n_pairs)
    right = rng.integers(0, n, size=n_pairs)
    # Half the pairs are drawn among passages that share a label, so positives are not too rare.
    key = [tuple(np.flatnonzero(row)) for row in y] if multi else list(y)
    groups: dict = {}
    for i, k in enumerate(key):
        for part in (k if multi else [k]):
            groups.setdefault(part, []).append(i)
    for j in range(0, n_pairs, 2):
        part = (key[left[j]] if not multi else (key[left[j]] or (None,))[0])
        members = groups.get(part)
        if members:
            right[j] = members[rng.integers(0, len(members))]
    if multi:
        a, b = y[left].astype(bool), y[right].astype(bool)
        union = (a | b).sum(axis=1)
        target = np.where(union > 0, (a & b).sum(axis=1) / np.maximum(union, 1), 1.0)
    else:
        target = (np.asarray(y)[left] == np.asarray(y)[right]).astype(float)
    return left, right, target.astype(np.float32)


def _freeze_lower_layers(encoder, trainable_layers: int | None) -> int:
    """Stop gradients below the top ``trainable_layers`` transformer layers (BERT-like models).

    Returns the number of frozen layers (0 when every layer trains: no ``trainable_layers``, or a
    model whose layer list cannot be found).
    """
    if trainable_layers is None:
        return 0
    transformer = getattr(encoder[0], "auto_model", None)
    layers = getattr(getattr(transformer, "encoder", None), "layer", None)
    if transformer is None or layers is None:
        log.info("setfit: layer list not found, fine-tuning every layer")
        return 0
    n_frozen = max(len(layers) - trainable_layers, 0)
    frozen = [getattr(transformer, "embeddings", None), *list(layers)[:n_frozen]]
    for module in frozen:
        if module is not None:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
    return n_frozen


# Hidden states after the frozen lower layers, per (model, frozen layers, length limit) and text.
# Frozen layers are identical in every fitted copy of a model, so cross-validation folds and tasks
# (the benchmark fits 20 SetFit models on the same passages) run them once per passage and only the
# fine-tuned top layers per fit. Bounded: cleared when it would exceed LOWER_CACHE_TEXTS texts.
_LOWER_CACHE: dict[tuple, dict[str, np.ndarray]] = {}
LOWER_CACHE_TEXTS = 20_000


def _mean_pooling_only(encoder) -> bool:
    """True for a plain transformer + mean pooling (+ normalisation) sentence-transformers model."""
    names = [type(module).__name__ for module in encoder]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return False
    pooling = encoder[1]
    mode = getattr(pooling, "pooling_mode", None)  # sentence-transformers 5: a string such as "mean"
    if isinstance(mode, str):
        return mode == "mean"
    return bool(getattr(pooling, "pooling_mode_mean_tokens", False)) and not any(
        getattr(pooling, flag, False) for flag in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                                     "pooling_mode_mean_sqrt_len_tokens"))


class _LayerSlice:
    """Run a BERT-like model's forward over a slice of its layers; optionally skip its embeddings."""

    def __init__(self, transformer, start: int, stop: int | None, skip_embeddings: bool):
        self.transformer, self.start, self.stop, self.skip = transformer, start, stop, skip_embeddings

    def __enter__(self):
        import torch

        class _Given(torch.nn.Module):  # stands in for the embeddings: inputs are hidden states
            def forward(self, input_ids=None, position_ids=None, token_type_ids=None, inputs_embeds=None,
                        **kwargs):
                return inputs_embeds

        encoder = self.transformer.encoder
        self.saved = (encoder.layer, self.transformer.embeddings)
        encoder.layer = torch.nn.ModuleList(list(encoder.layer)[self.start:self.stop])
        if self.skip:
            self.transformer.embeddings = _Given()
        return self.transformer

    def __exit__(self, *exc):
        self.transformer.encoder.layer, self.transformer.embeddings = self.saved
        return False


class SetFitClassifier(BaseEstimator, ClassifierMixin):
    """Contrastive fine-tuning of a sentence-transformers model plus a logistic-regression head.

    Parameters
    ----------
    model : str or None
        Encoder to fine-tune (name, alias or path); None is the bundled all-MiniLM-L6-v2.
    multi : bool
        Multi-label task: ``y`` is an indicator matrix of shape (n_passages, n_labels).
    pairs_per_example, max_pairs : int
        Training pairs drawn per passage and epoch, capped at ``max_pairs`` (SetFit needs few pairs).
    max_tokens : int
        Sequence length during fine-tuning only (shorter is faster); predictions use the full length.
    trainable_layers : int or None
        Fine-tune only the top this many transformer layers (and pooling); the token embeddings and
        lower layers stay frozen, which roughly halves the backward pass. None trains every layer.
    epochs, batch_size, learning_rate : training schedule of the encoder.
    C : float
        Inverse regularisation of the logistic head.
    random_state : int
    """

    def __init__(self, model=None, multi=False, pairs_per_example=2, max_pairs=320, max_tokens=64, epochs=1,
                 batch_size=16, learning_rate=3e-5, C=4.0, trainable_layers=3, random_state=0):
        self.model = model
        self.multi = multi
        self.pairs_per_example = pairs_per_example
        self.max_pairs = max_pairs
        self.max_tokens = max_tokens
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.C = C
        self.trainable_layers = trainable_layers
        self.random_state = random_state

    def _encoder(self):
        from toolkit.embed import _load_model, resolve_model

        model_id, path = resolve_model(self.model)
        return copy.deepcopy(_load_model(path, model_id, "torch"))

    def fit(self, X, y):
        import torch

        texts = [text for text, _ in X]
        y = np.asarray(y)
        rng = np.random.default_rng(self.random_state)
        torch.manual_seed(self.random_state)
        encoder = self._encoder()
        full_length = encoder.max_seq_length
        encoder.max_seq_length = min(full_length, self.max_tokens)
        self.frozen_layers_ = _freeze_lower_layers(encoder, self.trainable_layers)
        optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=self.learning_rate)
        encoder.train()
        n_pairs = min(self.pairs_per_example * len(texts), self.max_pairs)
        for _ in range(self.epochs):
            left, right, target = pair_targets(y, self.multi, n_pairs, rng)
            for start in range(0, len(left), self.batch_size):
                i, j = left[start : start + self.batch_size], right[start : start + self.batch_size]
                features = encoder.tokenize([texts[k] for k in i] + [texts[k] for k in j])
                embeddings = encoder(features)["sentence_embedding"]
                a, b = embeddings[: len(i)], embeddings[len(i) :]
                cosine = torch.nn.functional.cosine_similarity(a, b)
                loss = torch.nn.functional.mse_loss(cosine, torch.from_numpy(target[start : start + len(i)]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        encoder.eval()
        encoder.max_seq_length = full_length
        self.encoder_ = encoder
        head = LogisticRegression(C=self.C, max_iter=3000, class_weight="balanced", random_state=self.random_state)
        self.head_ = OneVsRestClassifier(head) if self.multi else head
        embeddings = self._embed(texts)
        # Out-of-fold probabilities of the head, for tuning decision thresholds without fine-tuning the
        # encoder again per fold (the encoder has seen these passages, so they are a little optimistic).
        from sklearn.model_selection import KFold, cross_val_predict

        folds = KFold(n_splits=min(3, len(texts)), shuffle=True, random_state=self.random_state)
        self.oof_proba_ = cross_val_predict(clone(self.head_), embeddings, y, cv=folds, method="predict_proba")
        self.head_.fit(embeddings, y)
        if not self.multi:
            self.classes_ = self.head_.classes_
        return self

    def _embed(self, texts):
        texts = list(texts)
        if getattr(self, "frozen_layers_", 0) and _mean_pooling_only(self.encoder_):
            return self._embed_from_frozen(texts)
        return self.encoder_.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True,
                                    show_progress_bar=False)

    def _embed_from_frozen(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Normalised mean-pooled embeddings, reusing cached outputs of the frozen lower layers.

        Matches ``encoder.encode`` (same tokenisation, truncation and pooling) up to float rounding.
        """
        import torch

        module = self.encoder_[0]
        transformer, split = module.auto_model, self.frozen_layers_
        key = (str(self.model), split, self.encoder_.max_seq_length, type(transformer).__name__)
        cache = _LOWER_CACHE.setdefault(key, {})
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if len(cache) + len(missing) > LOWER_CACHE_TEXTS:
            cache.clear()
            missing = list(dict.fromkeys(texts))
        with torch.no_grad(), _LayerSlice(transformer, 0, split, skip_embeddings=False) as lower:
            order = sorted(range(len(missing)), key=lambda i: -len(missing[i]))
            for start in range(0, len(order), batch_size):
                chunk = [missing[i] for i in order[start:start + batch_size]]
                features = module.tokenizer([t.strip() for t in chunk], padding=True, truncation="longest_first",
                                            max_length=self.encoder_.max_seq_length, return_tensors="pt")
                states = lower(**features).last_hidden_state
                lengths = features["attention_mask"].sum(dim=1).tolist()
                for text, state, n in zip(chunk, states, lengths):
                    cache[text] = state[:n].numpy().copy()
        out = np.zeros((len(texts), transformer.config.hidden_size), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(cache[texts[i]]))
        with torch.no_grad(), _LayerSlice(transformer, split, None, skip_embeddings=True) as upper:
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                states = [cache[texts[i]] for i in rows]
                width = max(len(x) for x in states)
                hidden = torch.zeros((len(rows), width, states[0].shape[1]), dtype=torch.float32)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, x in enumerate(states):
                    hidden[r, : len(x)] = torch.from_numpy(x)
                    mask[r, : len(x)] = 1
                tokens = upper(inputs_embeds=hidden, attention_mask=mask).last_hidden_state
                weights = mask.unsqueeze(-1).to(tokens.dtype)
                pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
                out[rows] = torch.nn.functional.normalize(pooled, dim=1).numpy()
        return out

    def predict_proba(self, X):
        check_is_fitted(self, "head_")
        return self.head_.predict_proba(self._embed([text for text, _ in X]))

    def predict(self, X):
        proba = self.predict_proba(X)
        if self.multi:
            return (proba >= 0.5).astype(int)
        return self.classes_[proba.argmax(axis=1)]
