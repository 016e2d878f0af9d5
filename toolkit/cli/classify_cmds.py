"""CLI: train, evaluate, classify."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from toolkit.cli import app, emit_json, err, handle_errors, setup_logging
from toolkit.cli.search_cmds import JsonOpt, QuietOpt

BundleOpt = typer.Option(None, "--bundle", "-b", help="Model bundle directory [default: models/default].")
TrustOpt = typer.Option(False, "--trust", help="Load a bundle written by another toolkit version (runs its code).")


def _bundle(path: Optional[Path], trust: bool):
    from toolkit.classify.bundle import Bundle, default_bundle_path
    from toolkit.errors import UsageError

    path = path or default_bundle_path()
    if path is None:
        raise UsageError("no model bundle: models/default is missing", hint="pass --bundle DIR or run `toolkit train`")
    return Bundle.load(path, trust=trust)


def _embedder_for(bundle):
    from toolkit.embed import Embedder
    from toolkit.errors import ModelError

    embedder = Embedder(bundle.model_id)
    try:
        bundle.check_embedder(embedder)  # loads the model when its folder does not give the dimension
    except ModelError as exc:
        if str(bundle.path) in exc.message:
            raise
        raise ModelError(f"{bundle.path} needs embedding model {bundle.model_id!r}: {exc.message}",
                         hint=exc.hint) from exc
    return embedder


@app.command("train")
@handle_errors
def train_cmd(
    data: List[Path] = typer.Argument(..., help="Labelled JSONL/CSV files or folders (schema files beside them)."),
    out: Path = typer.Option(Path("models/default"), "--out", "-o", help="Bundle directory to write."),
    task: List[str] = typer.Option([], "--task", "-t", help="Train only this task (repeatable)."),
    classifier: str = typer.Option("hybrid", "--classifier", "-c", help="Approach: hybrid (embeddings + "
                                   "TF-IDF), logreg, svm, knn, mlp, tfidf, zeroshot, setfit."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Embedding model [default: bundled MiniLM]."),
    split: List[str] = typer.Option(["train", "dev"], "--split", help="Use rows of these splits (repeatable); "
                                    "rows without a split are always used."),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds (grouped by story)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train a classifier bundle: one estimator per task on sentence embeddings.

    Example: toolkit train data/labels --out models/mine
    """
    setup_logging(quiet)
    from toolkit.classify.train import train

    report = train(data, out, tasks=task or None, classifier=classifier, model=model, splits=split,
                   folds=folds, seed=seed, progress=not quiet and sys.stderr.isatty())
    for message in report.warnings:
        err(f"warning: {message}")
    if as_json:
        emit_json(report.__dict__)
        return
    typer.echo(f"trained {report.classifier} on {report.n} passages in {report.seconds:.1f} s -> {report.out}")
    for name, info in report.tasks.items():
        cv = info["cv"]
        typer.echo(f"  {name}: {len(info['classes'])} labels, cross-validated macro-F1 {cv['macro_f1']:.3f}, "
                   f"micro-F1 {cv['micro_f1']:.3f}")


@app.command("evaluate")
@handle_errors
def evaluate_cmd(
    data: List[Path] = typer.Argument(..., help="Labelled JSONL/CSV files or folders."),
    bundle: Optional[Path] = BundleOpt,
    split: Optional[str] = typer.Option(None, "--split", help="Evaluate only rows of this split "
                                        "(e.g. test); rows without a split count too."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write report.md, metrics.json and "
                                       "confusion PNGs here."),
    trust: bool = TrustOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Evaluate a bundle: macro/micro-F1, per-label figures and confusion matrices per task.

    Example: toolkit evaluate data/labels --split test --out reports/test
    """
    setup_logging(quiet)
    import json

    from toolkit.evaluate import markdown_report, plot_confusion

    loaded = _bundle(bundle, trust)
    from toolkit.evaluate import evaluate_bundle

    results = evaluate_bundle(loaded, data, split, _embedder_for(loaded))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
        title = f"Evaluation of {loaded.path} on {', '.join(map(str, data))}" + (f" ({split} split)" if split else "")
        (out / "report.md").write_text(markdown_report(results, title=title) + "\n")
        for name, result in results["tasks"].items():
            plot_confusion(result, f"{name} (rows gold, columns predicted)", out / f"confusion_{name}.png")
    if as_json:
        emit_json(results)
        return
    typer.echo(f"{results['n']} passages")
    for name, result in results["tasks"].items():
        exact = result.get("subset_accuracy", result.get("accuracy"))
        typer.echo(f"{name}: macro-F1 {result['macro_f1']:.3f}  micro-F1 {result['micro_f1']:.3f}  exact {exact:.3f}")
        for label, row in result["per_label"].items():
            typer.echo(f"  {label:<18} P {row['precision']:.3f}  R {row['recall']:.3f}  F1 {row['f1']:.3f}"
                       f"  n {row['support']}")
    if out is not None:
        err(f"report written to {out}/report.md")


def _read_inputs(inputs: List[str]) -> List[str]:
    """Texts from arguments: '-' reads stdin, an existing file is read line by line, else the text itself."""
    from toolkit.errors import InputError

    texts: List[str] = []
    for item in inputs:
        if item == "-":
            texts.extend(line.rstrip("\n") for line in sys.stdin)
            continue
        path = Path(item)
        if len(item) < 4096 and path.is_file():
            try:
                texts.extend(path.read_text(encoding="utf-8").splitlines())
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}: not UTF-8 text (byte {exc.start})", hint="save the file as UTF-8") from exc
            continue
        texts.append(item)
    return [t for t in texts if t.strip()]


@app.command("classify")
@handle_errors
def classify_cmd(
    inputs: List[str] = typer.Argument(None, help="Passages, files (one passage per line), or - for stdin."),
    bundle: Optional[Path] = BundleOpt,
    index: Optional[Path] = typer.Option(None, "--index", "-i", help="Relabel every passage of this index instead."),
    trust: bool = TrustOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON Lines, one object per passage, in input order."),
    quiet: bool = QuietOpt,
) -> None:
    """Label passages by contact type and tone, with probabilities.

    Example: echo "Austin spoke by phone with Belousov." | toolkit classify - --json
    """
    setup_logging(quiet)
    from toolkit.errors import UsageError

    loaded = _bundle(bundle, trust)
    if index is not None:
        if inputs:
            raise UsageError("give passages or --index, not both")
        from toolkit.indexing import relabel_index

        count = relabel_index(index, loaded)
        typer.echo(f"relabelled {count} passages of {index} with {loaded.path}")
        return
    texts = _read_inputs(inputs or [])
    if not texts:
        raise UsageError("no passages to classify", hint="pass text, a file, or - to read stdin")
    embedder = _embedder_for(loaded)
    for start in range(0, len(texts), 4096):
        chunk = texts[start : start + 4096]
        labels, probabilities = loaded.predict(chunk, embedder.encode(chunk))
        for text, label, proba in zip(chunk, labels, probabilities):
            if as_json:
                emit_json({"text": text, "labels": label, "probabilities": proba})
            else:
                rendered = "  ".join(
                    f"{task}=" + (",".join(f"{v}({proba[task][v]:.2f})" for v in value) if isinstance(value, list)
                                  else f"{value}({proba[task][value]:.2f})")
                    for task, value in label.items())
                typer.echo(f"{rendered}\t{text[:120]}")


@app.command("benchmark")
@handle_errors
def benchmark_cmd(
    data: List[Path] = typer.Argument(..., help="Labelled JSONL/CSV files or folders."),
    classifiers: str = typer.Option("logreg,svm,knn,mlp,tfidf,hybrid,zeroshot,setfit", "--classifiers",
                                    help="Comma-separated approaches."),
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated embedding models "
                                         "[default: the bundled one]; 'default' names the bundled model."),
    folds: int = typer.Option(5, "--folds", help="Folds per repeat (grouped by story)."),
    repeats: int = typer.Option(2, "--repeats", help="Repeats with different fold shuffles."),
    task: List[str] = typer.Option([], "--task", "-t", help="Only this task (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the first repeat."),
    jobs: int = typer.Option(-1, "--jobs", "-j", help="Worker processes for the folds of scikit-learn "
                             "approaches (-1: one per core; 1: none)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write benchmark.md, benchmark.json and "
                                       "benchmark.png here."),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Compare classifiers (and embedding models) by repeated story-grouped cross-validation.

    Example: toolkit benchmark data/labels --classifiers logreg,tfidf,hybrid --out /tmp/bench
    """
    setup_logging(quiet)
    import json
    import shlex

    from toolkit.classify.benchmark import markdown, plot, run_benchmark

    model_list = [None if m.strip() in ("", "default") else m.strip() for m in models.split(",")] if models else [None]
    result = run_benchmark(data, approaches=[c.strip() for c in classifiers.split(",") if c.strip()],
                           models=model_list, folds=folds, repeats=repeats, tasks=task or None, seed=seed,
                           jobs=jobs, progress=None if quiet else (lambda message: err(message)))
    summary = result.summary()
    command = "toolkit " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "toolkit benchmark"
    report = markdown(summary, result.n, command)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "benchmark.json").write_text(json.dumps(summary, indent=2) + "\n")
        (out / "benchmark.md").write_text(report + "\n")
        plot(summary, out / "benchmark.png")
    if as_json:
        emit_json(summary)
    else:
        typer.echo(report)
