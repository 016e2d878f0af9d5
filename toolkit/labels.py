"""Label schemas and labelled passages: loading and validation.

Tasks and label values come from schema files beside the data and from the data itself, never from
constants in the code. A folder's ``schema.json`` and ``*.schema.json`` files declare tasks::

    {"tasks": {"contact_type": {"kind": "multi", "exclusive": ["none"], "labels": {"call": "...", ...}},
               "tone": {"kind": "single", "labels": {"neutral": "...", ...}}}}

A key of a labelled row that no schema declares is a task inferred from the data (a list value makes
it multi-label, a string single-label), so a user's new task needs no schema at all. Rows are JSON
Lines or CSV (multi-label values joined with ``|``).
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from toolkit.errors import InputError, UsageError, located

RESERVED = frozenset({"id", "text", "split", "story", "source", "title", "url", "published", "meta", "note", "notes"})
SPLITS = ("train", "dev", "test")
LABEL_SUFFIXES = {".jsonl", ".ndjson", ".csv"}


@dataclass
class Task:
    """One labelling task: ``kind`` is ``"multi"`` or ``"single"``; ``labels`` maps value → definition."""

    name: str
    kind: str
    labels: dict[str, str] = field(default_factory=dict)
    exclusive: list[str] = field(default_factory=list)
    description: str = ""
    declared: bool = True

    def to_dict(self) -> dict:
        return {"kind": self.kind, "labels": self.labels, "exclusive": self.exclusive,
                "description": self.description}

    @classmethod
    def from_dict(cls, name: str, spec: dict, *, where: str = "schema") -> "Task":
        kind = spec.get("kind", "single")
        if kind not in ("single", "multi"):
            raise InputError(f"{where}: task {name!r} has kind {kind!r}", hint="use 'single' or 'multi'")
        labels = spec.get("labels") or {}
        if isinstance(labels, list):
            labels = {str(v): "" for v in labels}
        return cls(name, kind, {str(k): str(v) for k, v in labels.items()}, list(spec.get("exclusive") or []),
                   str(spec.get("description", "")))


@dataclass
class Schema:
    """Tasks by name."""

    tasks: dict[str, Task] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"tasks": {name: task.to_dict() for name, task in self.tasks.items()}}

    @classmethod
    def from_dict(cls, value: dict) -> "Schema":
        return cls({name: Task.from_dict(name, spec) for name, spec in (value.get("tasks") or {}).items()})

    @classmethod
    def load(cls, path: str | Path) -> "Schema":
        path = Path(path)
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable schema ({exc})") from exc
        return cls({name: Task.from_dict(name, spec, where=str(path))
                    for name, spec in (value.get("tasks") or {}).items()})

    def merge(self, other: "Schema") -> None:
        for name, task in other.tasks.items():
            if name in self.tasks and self.tasks[name].declared:
                self.tasks[name].labels.update({k: v for k, v in task.labels.items() if k not in self.tasks[name].labels})
            else:
                self.tasks[name] = task


@dataclass
class Example:
    """A labelled passage. ``labels[task]`` is a list for multi-label tasks, a string otherwise."""

    text: str
    labels: dict[str, object]
    id: str = ""
    split: str = ""
    story: str = ""
    source: str = ""
    where: str = ""


@dataclass
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def _label_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder", hint="check the path")
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in LABEL_SUFFIXES and p.is_file()))
        else:
            files.append(path)
    if not files:
        raise UsageError(f"no labelled files (.jsonl, .csv) in {', '.join(map(str, paths))}")
    return files


def find_schema(files: Sequence[Path]) -> Schema:
    """Merge ``schema.json`` and ``*.schema.json`` files found in the folders of ``files``."""
    schema = Schema()
    for folder in sorted({f.parent for f in files}):
        for candidate in sorted(folder.glob("*schema.json")):
            schema.merge(Schema.load(candidate))
    return schema


def _rows(path: Path) -> Iterable[tuple[int, dict | Problem]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        yield 0, Problem(str(path), f"not UTF-8 (byte {exc.start}); save the file as UTF-8")
        return
    except OSError as exc:
        yield 0, Problem(str(path), f"cannot read ({exc.strerror})")
        return
    if not text.strip():
        yield 0, Problem(str(path), "empty file")
        return
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))  # newline="": \r and \r\n rows too
        try:
            if "text" not in [c.strip() for c in (reader.fieldnames or [])]:
                yield 0, Problem(str(path), f"CSV has no 'text' column (columns: {', '.join(reader.fieldnames or [])})")
                return
            for row in reader:
                yield reader.line_num, {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}
        except csv.Error as exc:
            yield reader.line_num, Problem(located(path, reader.line_num), f"malformed CSV ({exc})")
        return
    for number, line in enumerate(io.StringIO(text), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, Problem(located(path, number), f"invalid JSON ({exc.msg})")
            continue
        yield number, row if isinstance(row, dict) else Problem(located(path, number), "expected a JSON object")


def load_examples(
    paths: Iterable[str | Path], *, schema: Schema | None = None, tasks: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
) -> tuple[list[Example], Schema, list[Problem]]:
    """Read labelled rows from files and folders, validate them, and return (examples, schema, problems).

    ``schema`` overrides the schema files found beside the data; tasks found only in the data are
    inferred. ``tasks`` keeps only those tasks; ``splits`` keeps only rows of those splits (rows
    without a split are kept). Validation problems are returned, not raised: callers decide.
    """
    files = _label_files(paths)
    schema = schema if schema is not None else find_schema(files)
    raw: list[tuple[str, str, dict]] = []
    problems: list[Problem] = []
    for path in files:
        for number, row in _rows(path):
            if isinstance(row, Problem):
                problems.append(row)
            else:
                raw.append((str(path), located(path, number), row))
    _infer_tasks(schema, raw)
    if tasks:
        unknown = [t for t in tasks if t not in schema.tasks]
        if unknown:
            raise UsageError(f"unknown task(s) {', '.join(unknown)}; the data has {', '.join(schema.tasks) or 'none'}")
    examples: list[Example] = []
    seen: dict[str, str] = {}
    for file, where, row in raw:
        example = _example(row, file, where, schema, problems)
        if example is None:
            continue
        key = " ".join(example.text.split()).casefold()
        if key in seen:
            problems.append(Problem(where, f"duplicate text (first at {seen[key]})"))
            continue
        seen[key] = where
        if tasks:
            example.labels = {t: v for t, v in example.labels.items() if t in tasks}
        if splits and example.split and example.split not in splits:
            continue
        examples.append(example)
    if tasks:
        schema = Schema({t: schema.tasks[t] for t in tasks})
    return examples, schema, problems


def _is_csv(file: str) -> bool:
    return file.lower().endswith(".csv")


def _infer_tasks(schema: Schema, raw: list[tuple[str, str, dict]]) -> None:
    """Add undeclared tasks from row keys; collect their label values from the data."""
    for file, _where, row in raw:
        for key, value in row.items():
            if key in RESERVED or key in schema.tasks and schema.tasks[key].declared:
                continue
            if value in (None, "", []):
                continue
            multi = isinstance(value, list) or (_is_csv(file) and isinstance(value, str) and "|" in value)
            task = schema.tasks.setdefault(key, Task(key, "multi" if multi else "single", declared=False))
            if multi:
                task.kind = "multi"
            for label in _values(value, task, file):
                task.labels.setdefault(label, "")


def _values(value: object, task: Task, file: str) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    if isinstance(value, str):
        if task.kind == "multi" and _is_csv(file):
            return [v.strip() for v in value.split("|") if v.strip()]
        return [value.strip()] if value.strip() else []
    return [str(value)]


def _example(row: dict, file: str, where: str, schema: Schema, problems: list[Problem]) -> Example | None:
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        problems.append(Problem(where, "missing or empty 'text'"))
        return None
    labels: dict[str, object] = {}
    ok = True
    for name, task in schema.tasks.items():
        if name not in row or row[name] in (None, "", []):
            continue
        values = _values(row[name], task, file)
        unknown = [v for v in values if v not in task.labels]
        if unknown:
            problems.append(Problem(where, f"unknown {name} label(s) {', '.join(map(repr, unknown))}; "
                                           f"allowed: {', '.join(task.labels)}"))
            ok = False
            continue
        if task.kind == "single":
            if len(values) != 1:
                problems.append(Problem(where, f"{name} is single-label but has {len(values)} values"))
                ok = False
                continue
            labels[name] = values[0]
        else:
            for value in task.exclusive:
                if value in values and len(set(values)) > 1:
                    problems.append(Problem(where, f"'{value}' must stand alone in {name}, got {', '.join(values)}"))
                    ok = False
            labels[name] = sorted(set(values))
    if not ok:
        return None
    if not labels:
        problems.append(Problem(where, f"no labels for any task ({', '.join(schema.tasks) or 'none known'})"))
        return None
    split = str(row.get("split") or "")
    if split and split not in SPLITS:
        problems.append(Problem(where, f"split {split!r} is not one of {', '.join(SPLITS)}"))
        return None
    return Example(text=text.strip(), labels=labels, id=str(row.get("id") or ""), split=split,
                   story=str(row.get("story") or ""), source=str(row.get("source") or ""), where=where)


def check_stories(examples: Sequence[Example]) -> list[Problem]:
    """Passages of one story must sit in one split."""
    splits: dict[str, set[str]] = {}
    first: dict[str, str] = {}
    for example in examples:
        if example.story and example.split:
            splits.setdefault(example.story, set()).add(example.split)
            first.setdefault(example.story, example.where)
    return [Problem(first[s], f"story {s!r} is in several splits ({', '.join(sorted(v))})")
            for s, v in splits.items() if len(v) > 1]


def require_valid(problems: Sequence[Problem]) -> None:
    """Raise :class:`InputError` naming the first problem (and how many more) if there are any."""
    if problems:
        more = f" (and {len(problems) - 1} more problems; run `toolkit data check`)" if len(problems) > 1 else ""
        raise InputError(f"{problems[0]}{more}")


def label_counts(examples: Sequence[Example], schema: Schema) -> dict[str, Counter]:
    counts: dict[str, Counter] = {name: Counter() for name in schema.tasks}
    for example in examples:
        for name, value in example.labels.items():
            counts.setdefault(name, Counter()).update([value] if isinstance(value, str) else value)
    return counts
