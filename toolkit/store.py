"""SQLite metadata store of an index: documents, passages and predicted labels.

A passage's integer ``row`` is its id in the FAISS index and its position in the lexical index.
Labels are stored twice: the chosen labels per task in ``labels`` (for filtering with SQL) and the
probabilities of every label value in ``predictions`` (for display).
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY, path TEXT, title TEXT, source TEXT, url TEXT, published TEXT,
    content_hash TEXT, text TEXT
);
CREATE TABLE IF NOT EXISTS passages (
    row INTEGER PRIMARY KEY, passage_id TEXT UNIQUE NOT NULL, doc_id TEXT NOT NULL, ordinal INTEGER,
    start INTEGER, "end" INTEGER, text TEXT NOT NULL, text_hash TEXT
);
CREATE INDEX IF NOT EXISTS passages_doc ON passages(doc_id);
CREATE INDEX IF NOT EXISTS passages_hash ON passages(text_hash);
CREATE TABLE IF NOT EXISTS labels (row INTEGER, task TEXT, label TEXT, PRIMARY KEY (row, task, label))
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS labels_task_label ON labels(task, label);
CREATE TABLE IF NOT EXISTS predictions (row INTEGER PRIMARY KEY, probabilities TEXT, bundle TEXT);
CREATE TABLE IF NOT EXISTS stories (doc_id TEXT PRIMARY KEY, story TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS stories_story ON stories(story);
CREATE INDEX IF NOT EXISTS documents_source ON documents(source);
CREATE INDEX IF NOT EXISTS documents_published ON documents(published);
"""


@dataclass(frozen=True)
class PassageRow:
    row: int
    passage_id: str
    doc_id: str
    ordinal: int
    start: int
    end: int
    text: str
    title: str
    source: str
    url: str
    published: str
    path: str


@dataclass(frozen=True)
class Filters:
    """Restrictions applied before ranking. Empty filters match every passage."""

    labels: tuple[tuple[str, str], ...] = ()
    sources: tuple[str, ...] = ()
    after: str = ""
    before: str = ""

    def __bool__(self) -> bool:
        return bool(self.labels or self.sources or self.after or self.before)


class Store:
    """Thin wrapper over one SQLite file."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.conn = sqlite3.connect(self.path, check_same_thread=False)
            self.conn.executescript(SCHEMA)
        self.conn.execute("PRAGMA foreign_keys=OFF")

    def close(self) -> None:
        self.conn.close()

    # -- documents -------------------------------------------------------------------------------
    def document_hashes(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT doc_id, content_hash FROM documents"))

    def document_rows(self, doc_id: str) -> list[int]:
        return [r for (r,) in self.conn.execute("SELECT row FROM passages WHERE doc_id = ?", (doc_id,))]

    def row_documents(self, rows: Sequence[int]) -> dict[int, str]:
        return dict(self._select("SELECT row, doc_id FROM passages WHERE row IN ({})", rows))

    def story_of(self, doc_id: str) -> str | None:
        found = self.conn.execute("SELECT story FROM stories WHERE doc_id = ?", (doc_id,)).fetchone()
        return found[0] if found else None

    def delete_document(self, doc_id: str) -> list[int]:
        rows = self.document_rows(doc_id)
        self.delete_rows(rows)
        self.conn.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
        return rows

    def delete_rows(self, rows: Sequence[int]) -> None:
        for table in ("passages", "labels", "predictions"):
            self.conn.executemany(f"DELETE FROM {table} WHERE row = ?", [(r,) for r in rows])

    def add_document(self, document, passages: Sequence, first_row: int) -> list[int]:
        """Insert a document and its passages; rows are ``first_row, first_row + 1, ...``."""
        import hashlib

        self.conn.execute(
            "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (document.doc_id, document.path, document.title, document.source, document.url,
             document.published, document.content_hash, document.text),
        )
        rows = []
        for i, passage in enumerate(passages):
            row = first_row + i
            rows.append(row)
            self.conn.execute(
                "INSERT INTO passages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (row, f"{document.doc_id}:{passage.ordinal}", document.doc_id, passage.ordinal,
                 passage.start, passage.end, passage.text,
                 hashlib.sha1(passage.text.encode("utf-8", "surrogatepass")).hexdigest()),
            )
        return rows

    def next_row(self) -> int:
        (value,) = self.conn.execute("SELECT COALESCE(MAX(row), -1) + 1 FROM passages").fetchone()
        return int(value)

    # -- counts and reads ------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        (docs,) = self.conn.execute("SELECT COUNT(*) FROM documents").fetchone()
        (passages,) = self.conn.execute("SELECT COUNT(*) FROM passages").fetchone()
        return {"documents": int(docs), "passages": int(passages)}

    def all_rows(self) -> list[int]:
        return [r for (r,) in self.conn.execute("SELECT row FROM passages ORDER BY row")]

    def texts(self, rows: Sequence[int] | None = None) -> list[tuple[int, str]]:
        if rows is None:
            return list(self.conn.execute("SELECT row, text FROM passages ORDER BY row"))
        return [(r, t) for r, t in self._select("SELECT row, text FROM passages WHERE row IN ({})", rows)]

    def passages(self, rows: Sequence[int]) -> dict[int, PassageRow]:
        query = (
            'SELECT p.row, p.passage_id, p.doc_id, p.ordinal, p.start, p."end", p.text, d.title, d.source,'
            " d.url, d.published, d.path FROM passages p JOIN documents d ON d.doc_id = p.doc_id"
            " WHERE p.row IN ({})"
        )
        return {r[0]: PassageRow(*r) for r in self._select(query, rows)}

    def text_hashes(self, rows: Sequence[int]) -> dict[int, str]:
        return dict(self._select("SELECT row, text_hash FROM passages WHERE row IN ({})", rows))

    def labels_for(self, rows: Sequence[int]) -> dict[int, dict[str, list[str]]]:
        out: dict[int, dict[str, list[str]]] = {}
        for row, task, label in self._select("SELECT row, task, label FROM labels WHERE row IN ({})", rows):
            out.setdefault(row, {}).setdefault(task, []).append(label)
        return out

    def probabilities_for(self, rows: Sequence[int]) -> dict[int, dict]:
        return {r: json.loads(p) for r, p in self._select(
            "SELECT row, probabilities FROM predictions WHERE row IN ({})", rows)}

    def _select(self, query: str, rows: Sequence[int]) -> Iterable[tuple]:
        rows = list(rows)
        for i in range(0, len(rows), 900):
            chunk = rows[i : i + 900]
            yield from self.conn.execute(query.format(",".join("?" * len(chunk))), chunk)

    # -- labels ----------------------------------------------------------------------------------
    def set_predictions(self, rows: Sequence[int], labels: Sequence[dict], probabilities: Sequence[dict],
                        bundle: str) -> None:
        self.delete_labels(rows)
        self.conn.executemany(
            "INSERT INTO labels VALUES (?, ?, ?)",
            [(row, task, value) for row, by_task in zip(rows, labels) for task, values in by_task.items()
             for value in ([values] if isinstance(values, str) else values)],
        )
        self.conn.executemany(
            "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?)",
            [(row, json.dumps(p), bundle) for row, p in zip(rows, probabilities)],
        )

    def delete_labels(self, rows: Sequence[int] | None = None) -> None:
        if rows is None:
            self.conn.execute("DELETE FROM labels")
            self.conn.execute("DELETE FROM predictions")
        else:
            self.delete_rows_from(("labels", "predictions"), rows)

    def delete_rows_from(self, tables: Sequence[str], rows: Sequence[int]) -> None:
        for table in tables:
            self.conn.executemany(f"DELETE FROM {table} WHERE row = ?", [(r,) for r in rows])

    def label_values(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for task, label in self.conn.execute("SELECT DISTINCT task, label FROM labels"):
            out.setdefault(task, set()).add(label)
        return out

    # -- filters ---------------------------------------------------------------------------------
    def filter_rows(self, filters: Filters) -> list[int]:
        """Rows matching every filter: all label pairs, any of the sources, a date range."""
        clauses, params = [], []
        for task, label in filters.labels:
            clauses.append("p.row IN (SELECT row FROM labels WHERE task = ? AND label = ?)")
            params += [task, label]
        if filters.sources:
            clauses.append(f"lower(d.source) IN ({','.join('?' * len(filters.sources))})")
            params += [s.lower() for s in filters.sources]
        if filters.after:
            clauses.append("d.published != '' AND d.published >= ?")
            params.append(filters.after)
        if filters.before:
            clauses.append("d.published != '' AND d.published <= ?")
            params.append(filters.before)
        where = " AND ".join(clauses) or "1"
        query = f"SELECT p.row FROM passages p JOIN documents d ON d.doc_id = p.doc_id WHERE {where} ORDER BY p.row"
        return [r for (r,) in self.conn.execute(query, params)]

    def commit(self) -> None:
        self.conn.commit()
