"""Read articles from files and folders into :class:`Document` objects.

Formats, chosen by extension:

- ``.txt`` / ``.md``: one article per file; the first non-empty line of the cleaned text is the title
  and the file name is the source.
- ``.html`` / ``.htm``: main text extracted with trafilatura, then cleaned like text.
- ``.jsonl`` / ``.csv``: one article per row; ``text`` is required, ``id``, ``title``, ``url``,
  ``published`` and ``source`` are optional.

An article longer than :data:`MAX_ARTICLE_CHARS` is cut there, with a warning naming the file (and
line), so one huge file cannot stall indexing.

Unreadable files (binary, empty) are skipped with a warning and counted in :class:`ReadReport`;
a broken row in a JSONL/CSV file is an :class:`~toolkit.errors.InputError` naming the line, unless
``skip_bad`` is set, in which case it is skipped and counted.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Iterable, Iterator

from toolkit.corpus.clean import clean_text
from toolkit.errors import InputError, UsageError, located

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
ROW_SUFFIXES = {".jsonl", ".ndjson", ".csv"}
SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | ROW_SUFFIXES
MAX_FIELD = 50_000_000  # bytes; csv's default field limit is 128 KiB, too small for long articles
# characters of one article that are indexed: ten times the longest news features, and enough to
# keep cleaning, splitting and embedding one file to seconds-to-minutes instead of hours
MAX_ARTICLE_CHARS = 1_000_000


@dataclass
class Document:
    """One article, cleaned. ``doc_id`` is stable across runs for the same file or row."""

    doc_id: str
    text: str
    title: str = ""
    source: str = ""
    url: str = ""
    published: str = ""
    path: str = ""
    content_hash: str = ""


@dataclass
class ReadReport:
    """What reading skipped, for the CLI to report."""

    files: int = 0
    documents: int = 0
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _hash(*parts: str) -> str:
    digest = hashlib.sha1()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and folders (recursively, sorted) into readable article files."""
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder", hint="check the path")
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
                if child.suffix.lower() in SUFFIXES:
                    yield child
        else:
            yield path


def _decode(raw: bytes, path: Path, report: ReadReport) -> str | None:
    if not raw.strip():
        report.skipped.append(f"{path}: empty file, skipped")
        return None
    sample = raw[:8192]
    if b"\x00" in sample:
        report.skipped.append(f"{path}: binary file (NUL bytes), skipped")
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        if bad > max(16, len(text) // 20):
            report.skipped.append(f"{path}: not UTF-8 text ({bad} undecodable bytes), skipped")
            return None
        report.warnings.append(
            f"{path}: invalid UTF-8 at byte {exc.start}; {bad} bytes replaced with U+FFFD"
        )
        return text


def _bounded(text: str, where: str, report: ReadReport) -> str:
    """``text`` cut to :data:`MAX_ARTICLE_CHARS` (at a space when one is near), with a warning."""
    if len(text) <= MAX_ARTICLE_CHARS:
        return text
    cut = MAX_ARTICLE_CHARS
    space = max(text.rfind(" ", cut - 1000, cut), text.rfind("\n", cut - 1000, cut))
    if space > 0:
        cut = space
    report.warnings.append(
        f"{where}: article has {len(text):,} characters; only the first {cut:,} are indexed "
        f"(split it into several articles, e.g. one JSONL row each)"
    )
    return text[:cut]


def normalise_date(value: str) -> str:
    """ISO date (YYYY-MM-DD) from common date strings, or ``""`` if it cannot be parsed."""
    value = (value or "").strip()
    if not value:
        return ""
    match = re.match(r"(\d{4})-(\d{2})-(\d{2})", value)
    if match:
        try:
            return date(*map(int, match.groups())).isoformat()
        except ValueError:
            return ""
    for fmt in ("%d %B %Y", "%B %d, %Y", "%d.%m.%Y", "%Y/%m/%d", "%d/%m/%Y", "%b %d, %Y", "%d %b %Y"):
        try:
            return datetime.strptime(value, fmt).date().isoformat()
        except ValueError:
            continue
    return ""


def _document(text: str, *, doc_id: str, path: str, title: str = "", **meta: str) -> Document | None:
    cleaned = clean_text(text)
    if not cleaned.text.strip():
        return None
    return Document(
        doc_id=doc_id,
        text=cleaned.text,
        title=(title or cleaned.title).strip()[:300],
        source=meta.get("source", "") or "",
        url=meta.get("url", "") or "",
        published=normalise_date(meta.get("published", "") or ""),
        path=path,
        content_hash=_hash(text, title, *(meta.get(k, "") or "" for k in ("source", "url", "published"))),
    )


def _html_text(html: str) -> tuple[str, str]:
    """Main text and title of an HTML page (trafilatura), falling back to tag stripping."""
    try:
        import trafilatura
    except ImportError as exc:  # pragma: no cover - trafilatura is a declared dependency
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"reading HTML needs trafilatura and its dependencies ({first})",
                         hint="reinstall the project: pip install -e .") from exc
    text = trafilatura.extract(html, include_comments=False, include_tables=False, favor_precision=True) or ""
    title = ""
    meta = trafilatura.extract_metadata(html)
    if meta is not None and meta.title:
        title = meta.title
    return text, title


def read_file(path: Path, report: ReadReport, *, skip_bad: bool = False) -> Iterator[Document]:
    """Documents of one file; see the module docstring for formats."""
    suffix = path.suffix.lower()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        report.skipped.append(f"{path}: cannot read ({exc.strerror}), skipped")
        return
    report.files += 1
    text = _decode(raw, path, report)
    if text is None:
        return
    stable = str(path.resolve())
    if suffix in ROW_SUFFIXES:
        rows = _jsonl_rows(text, path) if suffix in {".jsonl", ".ndjson"} else _csv_rows(text, path)
        for line, row in rows:
            try:
                document = _row_document(row, path, line, stable, report)
            except InputError as exc:
                if not skip_bad:
                    raise
                report.skipped.append(str(exc))
                continue
            if document is not None:
                report.documents += 1
                yield document
        return
    title = ""
    if suffix in HTML_SUFFIXES:
        text, title = _html_text(text)
    text = _bounded(text, str(path), report)
    document = _document(text, doc_id=_hash(stable)[:16], path=str(path), title=title, source=path.name)
    if document is None:
        report.skipped.append(f"{path}: no article text left after cleaning, skipped")
        return
    report.documents += 1
    yield document


def _jsonl_rows(text: str, path: Path) -> Iterator[tuple[int, dict | Exception]]:
    for line_no, line in enumerate(io.StringIO(text), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield line_no, InputError(f"{located(path, line_no)}: invalid JSON ({exc.msg})",
                                      hint="fix the line or pass --skip-bad")
            continue
        yield line_no, row if isinstance(row, dict) else InputError(
            f"{located(path, line_no)}: expected a JSON object, got {type(row).__name__}",
            hint="write one object per line")


def _csv_rows(text: str, path: Path) -> Iterator[tuple[int, dict | Exception]]:
    csv.field_size_limit(MAX_FIELD)
    reader = csv.DictReader(io.StringIO(text, newline=""))  # newline="": \r and \r\n rows too
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise InputError(f"{located(path, reader.line_num)}: malformed CSV header ({exc})") from exc
    if fieldnames is None or "text" not in [f.strip() for f in fieldnames]:
        raise InputError(f"{path}: CSV has no 'text' column (columns: {', '.join(fieldnames or [])})",
                         hint="name the article column 'text'")
    try:
        for row in reader:
            yield reader.line_num, {(k or "").strip(): v for k, v in row.items()}
    except csv.Error as exc:
        raise InputError(f"{located(path, reader.line_num)}: malformed CSV ({exc})") from exc


def _row_document(row: dict | Exception, path: Path, line: int, stable: str,
                  report: ReadReport | None = None) -> Document | None:
    if isinstance(row, Exception):
        raise row
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{located(path, line)}: missing or empty 'text'", hint="every row needs a text")
    meta = {k: str(row.get(k) or "") for k in ("source", "url", "published")}
    doc_id = str(row.get("id") or "") or _hash(stable, text)[:16]
    text = _bounded(text, located(path, line), report if report is not None else ReadReport())
    return _document(text, doc_id=doc_id, path=f"{path}:{line}", title=str(row.get("title") or ""), **meta)


def read_documents(
    paths: Iterable[str | Path], report: ReadReport | None = None, *, skip_bad: bool = False
) -> Iterator[Document]:
    """Stream documents from files and folders, cleaning each as it is read."""
    report = report if report is not None else ReadReport()
    for path in iter_files(paths):
        yield from read_file(path, report, skip_bad=skip_bad)
