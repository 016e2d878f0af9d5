"""Classification metrics, confusion matrices and reports (pure functions, plus plot/report writers).

Macro-F1 averages per-label F1 over the labels of the task that occur in the gold data or the
predictions; micro-F1 pools decisions over labels (for single-label tasks it equals accuracy).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _as_sets(values: Sequence) -> list[set[str]]:
    return [set([v]) if isinstance(v, str) else set(v) for v in values]


def task_metrics(gold: Sequence, predicted: Sequence, labels: Sequence[str], kind: str) -> dict:
    """Metrics of one task.

    Parameters
    ----------
    gold, predicted : sequence of str (single) or of list of str (multi), length n_passages
    labels : the task's label values, in display order
    kind : ``"single"`` or ``"multi"``

    Returns
    -------
    dict with ``macro_f1``, ``micro_f1``, ``per_label`` (precision, recall, f1, support), ``n``, and
    ``subset_accuracy`` (multi) or ``accuracy`` (single), and ``confusion`` (see :func:`confusion`).
    """
    gold_sets, pred_sets = _as_sets(gold), _as_sets(predicted)
    per_label = {}
    tp_all = fp_all = fn_all = 0
    f1s = []
    for label in labels:
        tp = sum(1 for g, p in zip(gold_sets, pred_sets) if label in g and label in p)
        fp = sum(1 for g, p in zip(gold_sets, pred_sets) if label not in g and label in p)
        fn = sum(1 for g, p in zip(gold_sets, pred_sets) if label in g and label not in p)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                            "support": tp + fn}
        if tp + fn or tp + fp:
            f1s.append(f1)
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
    micro = 2 * tp_all / (2 * tp_all + fp_all + fn_all) if tp_all + fp_all + fn_all else 0.0
    out = {
        "n": len(gold_sets),
        "macro_f1": round(float(np.mean(f1s)) if f1s else 0.0, 4),
        "micro_f1": round(micro, 4),
        "per_label": per_label,
        "confusion": confusion(gold, predicted, labels, kind),
    }
    exact = sum(1 for g, p in zip(gold_sets, pred_sets) if g == p) / len(gold_sets) if gold_sets else 0.0
    out["subset_accuracy" if kind == "multi" else "accuracy"] = round(exact, 4)
    return out


def confusion(gold: Sequence, predicted: Sequence, labels: Sequence[str], kind: str) -> dict:
    """Confusion counts: ``matrix[i][j]`` counts gold ``labels[i]`` predicted as ``labels[j]``.

    For multi-label tasks each gold label of a passage is counted against each predicted label of
    that passage when the label was missed, and on the diagonal when it was found; a final
    ``(missing)`` column counts gold labels with no wrong prediction to blame.
    """
    index = {label: i for i, label in enumerate(labels)}
    if kind == "single":
        matrix = np.zeros((len(labels), len(labels)), dtype=int)
        for g, p in zip(gold, predicted):
            if g in index and p in index:
                matrix[index[g], index[p]] += 1
        return {"labels": list(labels), "matrix": matrix.tolist()}
    matrix = np.zeros((len(labels), len(labels) + 1), dtype=int)
    for g, p in zip(_as_sets(gold), _as_sets(predicted)):
        wrong = [x for x in p if x not in g and x in index]
        for label in g:
            if label not in index:
                continue
            if label in p:
                matrix[index[label], index[label]] += 1
            elif wrong:
                for x in wrong:
                    matrix[index[label], index[x]] += 1
            else:
                matrix[index[label], -1] += 1
    return {"labels": list(labels), "columns": [*labels, "(missing)"], "matrix": matrix.tolist()}


def plot_confusion(result: dict, title: str, path: Path) -> None:
    """Write the confusion matrix of one task as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = result["confusion"]
    matrix = np.array(conf["matrix"])
    columns = conf.get("columns", conf["labels"])
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(columns), 1.0 + 0.7 * len(conf["labels"])))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(columns)), columns, rotation=40, ha="right")
    ax.set_yticks(range(len(conf["labels"])), conf["labels"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    high = matrix.max() or 1
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > high / 2 else "black", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_report(results: dict, *, title: str, baselines: dict | None = None) -> str:
    """Markdown tables: per task summary, per-label figures, confusion matrix."""
    lines = [f"# {title}", "", f"Passages evaluated: {results['n']}", ""]
    for task, result in results["tasks"].items():
        exact_key = "subset_accuracy" if "subset_accuracy" in result else "accuracy"
        lines += [f"## {task}", "", f"macro-F1 **{result['macro_f1']:.3f}** · micro-F1 {result['micro_f1']:.3f} · "
                  f"{exact_key.replace('_', ' ')} {result[exact_key]:.3f} · n = {result['n']}", ""]
        if baselines and task in baselines:
            lines += ["| model | macro-F1 | micro-F1 |", "|---|---|---|",
                      f"| this bundle | {result['macro_f1']:.3f} | {result['micro_f1']:.3f} |"]
            for name, base in baselines[task].items():
                lines.append(f"| {name} | {base['macro_f1']:.3f} | {base['micro_f1']:.3f} |")
            lines.append("")
        lines += ["| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for label, row in result["per_label"].items():
            lines.append(f"| {label} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |")
        conf = result["confusion"]
        columns = conf.get("columns", conf["labels"])
        lines += ["", "Confusion (rows gold, columns predicted):", "",
                  "| gold \\ predicted | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for label, row in zip(conf["labels"], conf["matrix"]):
            lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
        lines.append("")
    return "\n".join(lines)


def evaluate_bundle(bundle, data: Sequence[Path], split: str | None, embedder) -> dict:
    """Metrics of a classifier ``bundle`` on labelled data, for the tasks present in both.

    Parameters
    ----------
    bundle : toolkit.classify.bundle.Bundle
    data : files or folders of labelled passages
    split : evaluate only rows of this split (rows without a split count too); None for all rows
    embedder : the embedder the bundle was trained with (checked by the caller)

    Returns ``{"n": int, "tasks": {task: task_metrics(...)}}``.
    """
    from toolkit.errors import InputError
    from toolkit.labels import load_examples, require_valid

    examples, _schema, problems = load_examples(list(data), splits=[split] if split else None)
    require_valid(problems)
    if split:
        examples = [e for e in examples if e.split in ("", split)]
    if not examples:
        raise InputError(f"no labelled passages to evaluate in {', '.join(map(str, data))}"
                         + (f" for split {split!r}" if split else ""))
    texts = [e.text for e in examples]
    labels, _ = bundle.predict(texts, embedder.encode(texts))
    tasks = {}
    for name, model in bundle.models.items():
        rows = [i for i, e in enumerate(examples) if name in e.labels]
        if not rows:
            continue
        gold = [examples[i].labels[name] for i in rows]
        predicted = [labels[i][name] for i in rows]
        unseen = sorted({v for g in gold for v in ([g] if isinstance(g, str) else g)} - set(model.classes))
        tasks[name] = task_metrics(gold, predicted, list(model.classes) + unseen, model.task.kind)
    if not tasks:
        raise InputError(f"the data has none of the bundle's tasks ({', '.join(bundle.models)})")
    return {"n": len(examples), "tasks": tasks}
