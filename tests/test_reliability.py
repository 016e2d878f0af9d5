"""Reliability: bad input, crashes and concurrent use never lose an index, a model or a label.

Four parts (see docs/reliability.md for the table of every case and what the user sees):

1. A bad-input battery through the CLI: exit code, exactly one ``error:`` line naming the file
   (and line), no traceback, and the existing index or bundle byte-for-byte untouched. Cases that
   tests/test_cli.py already pins exactly (k out of range, a 100,000-character query, a tampered
   bundle through ``classify``, a broken JSONL line on a new index) are not repeated here.
2. Crash safety with real processes: ``python -m toolkit index`` / ``train`` killed with SIGKILL at
   several moments; the previous index / bundle still loads and answers exactly as before, and a
   re-run reuses what was embedded.
3. Concurrency: a second writer is refused naming the lock holder's pid; a reader in another
   process querying in a loop during an update sees the old or the new index, never a mix or an error.
4. Property tests (hypothesis) on reading, cleaning and splitting.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from toolkit.cli import app

from conftest import LABELS, SEEDS

runner = CliRunner()
QUERY = "phone call between the US and Russian defence ministers"
OTHER_MODEL = "intfloat/e5-small-v2"


# -- helpers ---------------------------------------------------------------------------------------
def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def one_line_error(result, code: int, *fragments: str) -> str:
    """Exit ``code``, one ``error:`` line containing every fragment, no traceback; returns the line."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def snapshot(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (the lock file's pid excepted)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def answers(folder: Path, embedder, query: str = QUERY, k: int = 5) -> list[dict]:
    """The hits of ``query`` as JSON values (what ``query --json`` prints)."""
    from toolkit.index import Index

    index = Index.open(folder, embedder=embedder)
    try:
        return json.loads(json.dumps([hit.to_dict() for hit in index.search(query, k=k)]))
    finally:
        index.close()


def same_hits(found: list[dict], expected: list[dict]) -> bool:
    """Equal hits JSON, scores to 1e-5: the query is embedded in another process (float rounding)."""
    def strip(hits):
        return [{key: value for key, value in hit.items() if key != "score"} for hit in hits]

    return strip(found) == strip(expected) and all(
        abs(a["score"] - b["score"]) <= 1e-5 for a, b in zip(found, expected))


def label_rows(*names: str) -> list[dict]:
    rows = []
    for name in names:
        rows += [json.loads(line) for line in (LABELS / name).read_text().splitlines() if line.strip()]
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def labelled_folder(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(LABELS / "schema.json", folder / "schema.json")
    write_jsonl(folder / "a.jsonl", rows)
    return folder


def synthetic_articles(count: int, offset: int = 0) -> list[dict]:
    """``count`` one-passage articles made of labelled news passages (distinct texts)."""
    rows = label_rows("written_europe.jsonl", "written_mideast.jsonl", "written_eastasia.jsonl",
                      "written_southasia.jsonl")
    from toolkit.corpus.clean import clean_text

    texts = [r["text"] for r in rows if len(r["text"].split()) >= 20 and clean_text(r["text"]).text == r["text"]]
    texts = texts[offset : offset + count]
    assert len(texts) == count
    return [{"id": f"syn-{offset + i:04d}", "title": f"Synthetic article {offset + i}", "text": text,
             "source": "synthetic.example", "published": "2024-07-01"} for i, text in enumerate(texts)]


def process_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TOOLKIT_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    env.pop("TOOLKIT_DEBUG", None)
    return env


def start_toolkit(args: list, env: dict, cwd: Path) -> subprocess.Popen:
    """``python -m toolkit ARGS`` as a real process."""
    return subprocess.Popen([sys.executable, "-m", "toolkit", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen | None = None, timeout: float = 120.0,
             pause: float = 0.002) -> bool:
    """Poll ``condition`` until it holds (True), the process exits or the time runs out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process is not None and process.poll() is not None:
            return bool(condition())
        time.sleep(pause)
    return False


def kill9(process: subprocess.Popen) -> bool:
    """SIGKILL the process; True if it was still running (False: it had already finished)."""
    alive = process.poll() is None
    if alive:
        os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    return alive and process.returncode == -signal.SIGKILL


def cached_vectors(cache: Path) -> int:
    path = cache / "embeddings.sqlite"
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(path, timeout=1)
        try:
            return conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:  # the table is being created
        return 0


def generation(folder: Path) -> int:
    return json.loads((folder / "manifest.json").read_text())["generation"]


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_index(tmp_path_factory, embedder):
    """An index of the seed articles, built once; tests work on copies (see ``index_copy``)."""
    from toolkit.indexing import build_index

    folder = tmp_path_factory.mktemp("rel-base") / "index"
    build_index([SEEDS], folder, embedder=embedder, bundle=None)
    return folder


@pytest.fixture
def index_copy(base_index, tmp_path):
    folder = tmp_path / "index"
    shutil.copytree(base_index, folder)
    return folder


@pytest.fixture(scope="module")
def base_bundle(tmp_path_factory, embedder):
    """A small bundle trained on 80 labelled passages (three folds), built once."""
    from toolkit.classify.train import train

    data = labelled_folder(tmp_path_factory.mktemp("rel-data"), label_rows("written_europe.jsonl")[:80])
    out = tmp_path_factory.mktemp("rel-bundles") / "bundle"
    train([data], out, splits=None, folds=3, embedder=embedder)
    return out


@pytest.fixture
def bundle_copy(base_bundle, tmp_path):
    folder = tmp_path / "models" / "bundle"
    shutil.copytree(base_bundle, folder)
    return folder


# == 1. Bad input through the CLI ==================================================================
PROSE = "Ministers talk\n\nThe two defence ministers spoke by phone on Monday about the border near the river.\n"


def _bad_input(tmp_path: Path, case: str) -> Path:
    if case == "empty file":
        path = tmp_path / "empty.txt"
        path.write_bytes(b"")
    elif case == "whitespace-only file":
        path = tmp_path / "blank.md"
        path.write_text("  \n\n\t\n")
    elif case == "empty folder":
        path = tmp_path / "nothing"
        path.mkdir()
    elif case == "folder of unreadable files":
        path = tmp_path / "junk"
        path.mkdir()
        (path / "a.txt").write_bytes(b"")
        (path / "b.txt").write_bytes(b"\x00\x01" * 500)
    elif case == "binary file":
        path = tmp_path / "blob.txt"
        path.write_bytes(bytes(range(256)) * 40)
    elif case == "image named .html":
        path = tmp_path / "photo.html"
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    elif case == "html of scripts and styles":
        path = tmp_path / "page.html"
        path.write_text("<html><head><style>body{color:red}</style><script>var a = 1;</script></head>"
                        "<body><script>document.write('x')</script><style>.ad{display:none}</style></body></html>")
    elif case == "html that is no document":
        path = tmp_path / "stub.html"
        path.write_text(" <p>\n")
    elif case == "jsonl with a broken line":
        path = write_jsonl(tmp_path / "rows.jsonl", [{"text": "The envoy met the minister in Doha for talks."}])
        path.write_text(path.read_text() + "{oops\n")
    elif case == "jsonl row without text":
        path = write_jsonl(tmp_path / "rows.jsonl", [{"title": "No body", "url": "https://example.org/a"}])
    elif case == "jsonl of arrays":
        path = tmp_path / "rows.jsonl"
        path.write_text('["not", "an", "object"]\n')
    elif case == "csv without a text column":
        path = tmp_path / "table.csv"
        path.write_text("body,title\nThe ministers met in Ankara.,Talks\n")
    else:  # pragma: no cover
        raise ValueError(case)
    return path


@pytest.mark.parametrize("case, code, fragments", [
    ("empty file", 2, ["no articles found in", "empty.txt: empty file"]),
    ("whitespace-only file", 2, ["blank.md: empty file"]),
    ("empty folder", 2, ["no articles found in", "nothing"]),
    ("folder of unreadable files", 2, ["a.txt: empty file", "and 1 more skipped"]),
    ("binary file", 2, ["blob.txt: binary file (NUL bytes)"]),
    ("image named .html", 2, ["photo.html: binary file"]),
    ("html of scripts and styles", 2, ["page.html: no article text left after cleaning"]),
    ("html that is no document", 2, ["stub.html: no article text left after cleaning"]),
    ("jsonl with a broken line", 1, ["rows.jsonl:2: invalid JSON", "--skip-bad"]),
    ("jsonl row without text", 1, ["rows.jsonl:1: missing or empty 'text'"]),
    ("jsonl of arrays", 1, ["rows.jsonl:1: expected a JSON object, got list"]),
    ("csv without a text column", 1, ["table.csv: CSV has no 'text' column (columns: body, title)"]),
])
def test_bad_articles_leave_the_index_untouched(index_copy, tmp_path, case, code, fragments):
    before = snapshot(index_copy)
    result = run("index", _bad_input(tmp_path, case), "--index", index_copy, "--no-labels")
    error = one_line_error(result, code, *fragments)
    assert result.stderr.splitlines() == [error]  # and no log line of trafilatura's around it
    assert snapshot(index_copy) == before


def test_broken_jsonl_line_with_skip_bad_updates_and_names_the_line(index_copy, tmp_path, embedder):
    corpus = write_jsonl(tmp_path / "rows.jsonl", [
        {"id": "ok-1", "text": "The envoy met the foreign minister in Doha on Tuesday for ceasefire talks."}])
    corpus.write_text(corpus.read_text() + "{oops\n" + json.dumps(
        {"id": "ok-2", "text": "The ambassador was summoned over the naval drill near the islands."}) + "\n")
    result = run("index", corpus, "--index", index_copy, "--no-labels", "--skip-bad", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("warning:")] == [
        f"warning: {corpus}:2: invalid JSON (Expecting property name enclosed in double quotes) "
        "(fix the line or pass --skip-bad)"]
    report = json.loads(result.stdout)
    assert report["documents_added"] == 2 and report["documents_total"] == 7


def test_invalid_utf8_is_replaced_with_a_warning_naming_file_and_byte(index_copy, tmp_path):
    path = tmp_path / "latin1.txt"
    raw = PROSE.replace("river", "Caf\u00e9 river").encode("utf-8").replace("\u00e9".encode(), b"\xe9")
    path.write_bytes(raw)
    result = run("index", path, "--index", index_copy, "--no-labels", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    byte = raw.index(b"\xe9")
    assert result.stderr.splitlines() == [
        f"warning: {path}: invalid UTF-8 at byte {byte}; 1 bytes replaced with U+FFFD"]
    assert json.loads(result.stdout)["documents_added"] == 1
    hits = json.loads(run("query", "caf river", "--index", index_copy, "--mode", "lexical", "--json",
                          "-k", "1").stdout)["hits"]
    assert hits[0]["source"] == "latin1.txt" and "Caf\ufffd river" in hits[0]["text"]


def test_mostly_undecodable_file_is_skipped_not_indexed(index_copy, tmp_path):
    path = tmp_path / "cp1252.txt"
    path.write_bytes(("Minist\xe8res \xe0 Paris: \xe9t\xe9 " * 40).encode("latin-1"))
    result = run("index", path, "--index", index_copy, "--no-labels")
    one_line_error(result, 2, "cp1252.txt: not UTF-8 text (160 undecodable bytes), skipped")


def test_fifty_megabyte_single_line_is_bounded_and_fast(tmp_path, embedder):
    """A 50 MB one-line .txt: cut to MAX_ARTICLE_CHARS with a warning, split in linear time."""
    from toolkit.corpus.read import MAX_ARTICLE_CHARS
    from toolkit.corpus.split import MAX_CHARS_PER_TOKEN
    from toolkit.index import Index

    sentences = [f"The defence ministers spoke by phone for the {word} time about the border incident. "
                 for word in ("first", "second", "third", "fourth", "fifth", "sixth", "seventh")]
    line = "".join(sentences)
    path = tmp_path / "huge.txt"
    with open(path, "w") as handle:
        for _ in range(50_000_000 // len(line)):
            handle.write(line)
    assert path.stat().st_size >= 49_000_000 and path.read_bytes().count(b"\n") == 0
    started = time.perf_counter()
    result = run("index", path, "--index", tmp_path / "index", "--no-labels", "--json", "-q")
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.stderr
    warnings = result.stderr.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {path}: article has 49,"), warnings
    kept = int(warnings[0].split("only the first ")[1].split(" ")[0].replace(",", ""))
    assert MAX_ARTICLE_CHARS - 1000 <= kept <= MAX_ARTICLE_CHARS
    report = json.loads(result.stdout)
    count = embedder.token_counter()
    index = Index.open(tmp_path / "index", embedder=embedder)
    passages = [text for _, text in index.store.texts()]
    assert report["passages_total"] == len(passages) < MAX_ARTICLE_CHARS // 500
    assert max(count(p) for p in passages) <= 128 and max(map(len, passages)) <= 128 * MAX_CHARS_PER_TOKEN
    assert seconds < 60, f"indexing took {seconds:.0f} s"


def test_a_huge_jsonl_row_is_cut_naming_the_line(tmp_path):
    from toolkit.corpus.read import MAX_ARTICLE_CHARS, ReadReport, read_documents

    corpus = write_jsonl(tmp_path / "rows.jsonl", [
        {"id": "small", "text": "The ministers met."},
        {"id": "big", "text": "The ministers met again. " * (MAX_ARTICLE_CHARS // 20)}])
    report = ReadReport()
    documents = list(read_documents([corpus], report))
    assert [d.doc_id for d in documents] == ["small", "big"]
    assert len(documents[1].text) <= MAX_ARTICLE_CHARS
    assert len(report.warnings) == 1 and report.warnings[0].startswith(f"{corpus}:2: article has")


def test_csv_with_carriage_return_line_ends_is_read(tmp_path):
    """Non-regression: bare \r line ends (old Mac exports) raised csv.Error, an unexpected error."""
    from toolkit.corpus.read import ReadReport, read_documents

    corpus = tmp_path / "mac.csv"
    corpus.write_bytes(b"title,text\rTalks,The ministers met in Ankara on Monday.\rCall,They spoke by phone.\r")
    documents = list(read_documents([corpus], ReadReport()))
    assert [d.text for d in documents] == ["The ministers met in Ankara on Monday.", "They spoke by phone."]


def test_html_of_scripts_beside_a_good_article_is_skipped_with_a_warning(index_copy, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.txt").write_text(PROSE)
    (folder / "page.html").write_text("<html><script>var a = 1;</script><style>p{}</style></html>")
    result = run("index", folder, "--index", index_copy, "--no-labels", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"warning: {folder / 'page.html'}: no article text left after cleaning, skipped"]
    assert json.loads(result.stdout)["documents_added"] == 1


def test_an_output_folder_that_is_a_file_is_a_usage_error(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    one_line_error(run("index", SEEDS, "--index", blocker, "--no-labels"), 2,
                   f"{blocker}: cannot create the index folder, {blocker} is a file")
    one_line_error(run("train", LABELS, "--out", blocker / "bundle"), 2,
                   f"{blocker / 'bundle'}: cannot create the bundle folder, {blocker} is a file")
    assert blocker.read_text() == "keep me"


# -- labelled data ---------------------------------------------------------------------------------
def _labels_case(folder: Path, case: str) -> Path:
    rows = label_rows("written_europe.jsonl")[:40]
    if case == "unknown label":
        rows[5] = {**rows[5], "contact_type": ["fax"]}
    elif case == "none mixed with a label":
        rows[7] = {**rows[7], "contact_type": ["none", "call"]}
    elif case == "single-label task with a list":
        rows[3] = {**rows[3], "tone": ["neutral", "cooperative"]}
    elif case == "unknown split":
        rows[2] = {**rows[2], "split": "validation"}
    elif case == "one class":
        rows = [{**row, "tone": "neutral"} for row in rows]
    elif case == "no text":
        rows[4] = {key: value for key, value in rows[4].items() if key != "text"}
    return labelled_folder(folder, rows)


@pytest.mark.parametrize("case, args, fragments", [
    ("unknown label", [], ["a.jsonl:6: unknown contact_type label(s) 'fax'; allowed: call,"]),
    ("none mixed with a label", [], ["a.jsonl:8: 'none' must stand alone in contact_type, got none, call"]),
    ("single-label task with a list", [], ["a.jsonl:4: tone is single-label but has 2 values"]),
    ("unknown split", [], ["a.jsonl:3: split 'validation' is not one of train, dev, test"]),
    ("no text", [], ["a.jsonl:5: missing or empty 'text'"]),
    ("one class", ["--task", "tone"], ["task 'tone' has a single class (neutral) in the data"]),
])
def test_bad_labels_leave_the_bundle_untouched(bundle_copy, tmp_path, case, args, fragments):
    before = snapshot(bundle_copy)
    data = _labels_case(tmp_path / "data", case)
    result = run("train", data, "--out", bundle_copy, "--folds", "3", "--split", "train", "--split", "dev",
                 "--split", "test", "-q", *args)
    one_line_error(result, 1, *fragments)
    assert snapshot(bundle_copy) == before
    assert sorted(p.name for p in bundle_copy.parent.iterdir()) == ["bundle"]  # no staging leftovers


def test_small_data_with_a_label_in_one_story_trains(tmp_path, embedder):
    """Non-regression: a label (or tone) told in one story only leaves a fold without it; that fold
    used to crash one-vs-rest with "setting an array element with a sequence"."""
    from toolkit.classify.bundle import Bundle
    from toolkit.classify.train import train

    rows = label_rows("written_europe.jsonl")[:60]
    rare_story = rows[0]["story"]
    for row in rows:
        rare = row["story"] == rare_story
        row["contact_type"] = ["hotline"] if rare else [c for c in row["contact_type"] if c != "hotline"] or ["call"]
        row["tone"] = "confrontational" if rare else "neutral"
    data = labelled_folder(tmp_path / "data", rows)
    report = train([data], tmp_path / "out", splits=None, folds=3, embedder=embedder)
    assert "hotline" in report.tasks["contact_type"]["classes"]
    assert report.tasks["tone"]["classes"] == ["neutral", "confrontational"]
    bundle = Bundle.load(tmp_path / "out")
    labels, probabilities = bundle.predict(["The hotline was used."], embedder.encode(["The hotline was used."]))
    assert set(probabilities[0]["contact_type"]) == set(bundle.models["contact_type"].classes)


def test_python_warnings_are_one_line_each(tmp_path):
    """scikit-learn warns on small data; the CLI prints one ``warning:`` line, not file and source."""
    rows = label_rows("written_europe.jsonl")[:30]
    stories = []
    for row in rows:
        row["tone"] = "neutral"
        if row["story"] not in stories and len(stories) < 2:
            stories.append(row["story"])
            row["tone"] = "cooperative"  # two passages of two stories: fewer than the three folds
    data = labelled_folder(tmp_path / "data", rows)
    result = run("train", data, "--out", tmp_path / "b", "--folds", "3", "--task", "tone", "--split", "train",
                 "--split", "dev", "--split", "test", "-q")
    assert result.exit_code == 0, result.stderr
    assert "warnings.warn(" not in result.stderr and ".py:" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("warning: ") for line in lines), result.stderr
    assert any("least populated class in y has only 2 members" in line for line in lines), lines


# -- damaged indexes -------------------------------------------------------------------------------
def _damage(folder: Path, case: str) -> str:
    manifest = json.loads((folder / "manifest.json").read_text())
    files = manifest["files"]
    if case == "truncated FAISS file":
        vectors = folder / files["vectors"]
        vectors.write_bytes(vectors.read_bytes()[:1000])
        return f"{files['vectors']}: damaged FAISS file (1000 bytes, cannot be read: truncated or corrupt)"
    if case == "missing SQLite file":
        (folder / files["store"]).unlink()
        return f"{files['store']}: metadata store missing"
    if case == "SQLite file of garbage":
        (folder / files["store"]).write_bytes(b"not a database " * 100)
        return f"{files['store']}: damaged metadata store (file is not a database)"
    if case == "missing lexical index":
        shutil.rmtree(folder / files["lexical"])
        return f"{files['lexical']}: lexical index missing or damaged"
    if case == "truncated manifest":
        (folder / "manifest.json").write_text('{"format": 1, "generation": ')
        return "manifest.json: unreadable manifest"
    raise ValueError(case)  # pragma: no cover


@pytest.mark.parametrize("case", ["truncated FAISS file", "missing SQLite file", "SQLite file of garbage",
                                  "missing lexical index", "truncated manifest"])
def test_damaged_index_fails_cleanly_and_rebuild_repairs_it(index_copy, tmp_path, case, embedder):
    message = _damage(index_copy, case)
    damaged = snapshot(index_copy)
    query = run("query", QUERY, "--index", index_copy)
    update = run("index", SEEDS, "--index", index_copy, "--no-labels")
    if case == "missing lexical index":  # an update rebuilds BM25 from the store, so it repairs this
        one_line_error(query, 1, message, "toolkit index --rebuild")
        assert update.exit_code == 0, update.stderr
        return
    one_line_error(query, 1, message, "toolkit index --rebuild")
    one_line_error(update, 1, message, "toolkit index --rebuild")
    assert snapshot(index_copy) == damaged  # the failed update wrote nothing, not even a next generation
    rebuilt = run("index", SEEDS, "--index", index_copy, "--no-labels", "--rebuild", "--json", "-q")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["documents_total"] == 5
    assert answers(index_copy, embedder)[0]["source"] in {"003_6ec7bb4a00626735.txt", "004_fe373568b3169f25.txt"}


def test_failed_rebuild_keeps_the_current_index(index_copy, embedder, monkeypatch):
    """Non-regression: --rebuild used to delete the current generation before writing the new one."""
    from toolkit import lexical
    from toolkit.indexing import build_index

    before = answers(index_copy, embedder)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lexical.LexicalIndex, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        build_index([SEEDS], index_copy, embedder=embedder, bundle=None, rebuild=True)
    monkeypatch.undo()
    assert answers(index_copy, embedder) == before


# -- bundles ---------------------------------------------------------------------------------------
def test_bundle_of_another_embedding_model_is_refused_everywhere(bundle_copy, index_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["embedding"]["model_id"] = OTHER_MODEL
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    before = snapshot(index_copy)
    one_line_error(run("classify", "The ministers spoke by phone.", "--bundle", bundle_copy), 1,
                   f"{bundle_copy} needs embedding model '{OTHER_MODEL}'")
    one_line_error(run("evaluate", LABELS / "seeds.jsonl", "--bundle", bundle_copy), 1,
                   f"{bundle_copy} needs embedding model '{OTHER_MODEL}'")
    trained_on = f"{bundle_copy} was trained on embeddings of '{OTHER_MODEL}' (dim 384), not " \
                 "'sentence-transformers/all-MiniLM-L6-v2'"
    one_line_error(run("index", SEEDS, "--index", index_copy, "--bundle", bundle_copy), 1, trained_on)
    one_line_error(run("classify", "--index", index_copy, "--bundle", bundle_copy), 1, trained_on)
    assert snapshot(index_copy) == before


def test_tampered_joblib_is_refused_even_with_trust(bundle_copy, index_copy):
    """Non-regression: --trust used to skip the SHA-256 check too; it waives only the version check."""
    with open(bundle_copy / "tone.joblib", "ab") as handle:
        handle.write(b"\x00")
    before = snapshot(index_copy)
    message = f"{bundle_copy / 'tone.joblib'}: SHA-256 does not match the manifest"
    one_line_error(run("classify", "hello", "--bundle", bundle_copy, "--trust"), 1, message)
    one_line_error(run("index", SEEDS, "--index", index_copy, "--bundle", bundle_copy), 1, message)
    one_line_error(run("classify", "--index", index_copy, "--bundle", bundle_copy, "--trust"), 1, message)
    assert snapshot(index_copy) == before


def test_bundle_without_manifest_or_with_a_missing_estimator(bundle_copy):
    (bundle_copy / "contact_type.joblib").unlink()
    one_line_error(run("classify", "hello", "--bundle", bundle_copy), 1,
                   f"{bundle_copy / 'contact_type.joblib'}: missing estimator file")
    (bundle_copy / "manifest.json").unlink()
    one_line_error(run("classify", "hello", "--bundle", bundle_copy), 1,
                   f"{bundle_copy}: not a model bundle (no manifest.json)")


# == 2. Crash safety with real processes ==========================================================
def test_killed_index_runs_leave_the_previous_index_and_a_rerun_reuses_embeddings(tmp_path, embedder):
    from toolkit.indexing import build_index

    folder = tmp_path / "index"
    build_index([SEEDS], folder, embedder=embedder, bundle=None)
    before, files_before = answers(folder, embedder), snapshot(folder)
    corpus = write_jsonl(tmp_path / "news.jsonl", synthetic_articles(300))
    cache = tmp_path / "cache"
    env = process_env(cache)
    args = ["index", SEEDS, corpus, "--index", folder, "--no-labels", "--json", "-q"]

    def unchanged() -> None:
        assert generation(folder) == 1
        assert answers(folder, embedder) == before
        assert {k: v for k, v in snapshot(folder).items() if k in files_before} == files_before

    # Killed while importing / loading the model, then while embedding (after the first cache commit).
    for moment in (0.5, 2.0):
        process = start_toolkit(args, env, tmp_path)
        time.sleep(moment)
        assert kill9(process), process.stderr
        unchanged()
    process = start_toolkit(args, env, tmp_path)
    assert wait_for(lambda: cached_vectors(cache) >= 128, process, pause=0.05), process.communicate()
    assert kill9(process)
    unchanged()
    cached = cached_vectors(cache)
    assert 128 <= cached < 300

    # A re-run completes and embeds only what the killed runs had not cached.
    finished = start_toolkit(args, env, tmp_path)
    stdout, stderr = finished.communicate(timeout=300)
    assert finished.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["documents_added"] == 300 and report["documents_unchanged"] == 5
    assert 0 < report["passages_embedded"] <= report["passages_added"] - cached
    print(f"re-run embedded {report['passages_embedded']} of {report['passages_added']} passages")
    assert generation(folder) == 2
    after = answers(folder, embedder)
    assert after != before and any(hit["source"] == "synthetic.example" for hit in after)

    # Killed while writing the new generation's files: the index stays whole, old or new.
    more = write_jsonl(tmp_path / "more.jsonl", synthetic_articles(20, offset=300))
    files_after = snapshot(folder)
    process = start_toolkit(["index", SEEDS, corpus, more, "--index", folder, "--no-labels", "-q"], env, tmp_path)
    assert wait_for(lambda: (folder / "lexical.3").exists(), process, pause=0.001)
    killed = kill9(process)
    if generation(folder) == 2:
        assert answers(folder, embedder) == after
        assert {k: v for k, v in snapshot(folder).items() if k in files_after} == files_after
    else:  # the run had switched the manifest before the kill landed: it is the complete new index
        assert generation(folder) == 3
        assert json.loads((folder / "manifest.json").read_text())["counts"]["documents"] == 325
    print(f"finishing-stage kill {'landed before' if killed and generation(folder) == 2 else 'came after'} "
          "the manifest switch")
    # The next writer completes and clears what the killed one left behind.
    build_index([SEEDS, corpus, more], folder, embedder=embedder, bundle=None)
    assert json.loads((folder / "manifest.json").read_text())["counts"]["documents"] == 325
    generations = {int(p.name.split(".")[1]) for p in folder.iterdir()
                   if p.name.startswith(("store.", "vectors.", "lexical."))}
    assert len(generations) <= 2 and generation(folder) in generations


def test_killed_train_runs_leave_the_previous_bundle(tmp_path, base_bundle, embedder):
    from toolkit.classify.bundle import Bundle

    out = tmp_path / "models" / "bundle"
    shutil.copytree(base_bundle, out)
    texts = ["Austin spoke by phone with Belousov on Friday.", "The ambassador was summoned to the ministry.",
             "Cookies help us deliver our services."]
    vectors = embedder.encode(texts)

    def predictions() -> list:
        return json.loads(json.dumps(Bundle.load(out).predict(texts, vectors)))

    before, files_before = predictions(), snapshot(out)
    data = labelled_folder(tmp_path / "data", label_rows("written_mideast.jsonl"))
    cache = tmp_path / "cache"
    env = process_env(cache)
    args = ["train", data, "--out", out, "--folds", "3", "--json", "-q"]

    def unchanged() -> None:
        assert snapshot(out) == files_before
        assert predictions() == before

    for moment in (0.5, 2.0):
        process = start_toolkit(args, env, tmp_path)
        time.sleep(moment)
        assert kill9(process)
        unchanged()
    process = start_toolkit(args, env, tmp_path)  # killed while embedding
    assert wait_for(lambda: cached_vectors(cache) >= 128, process, pause=0.05), process.communicate()
    assert kill9(process)
    unchanged()

    # Killed while the bundle is being written (staging folder present): old or new, never a mix.
    staging = f".{out.name}.tmp-"
    process = start_toolkit(args, env, tmp_path)
    assert wait_for(lambda: any(p.name.startswith(staging) for p in out.parent.iterdir()), process, pause=0.001)
    kill9(process)
    swapped = snapshot(out) != files_before  # the kill came after the folder exchange
    print(f"bundle-writing kill {'came after' if swapped else 'landed before'} the swap")
    if not swapped:
        unchanged()
        finished = start_toolkit(args, env, tmp_path)
        stdout, stderr = finished.communicate(timeout=300)
        assert finished.returncode == 0, stderr
        # The completed writer removed the staging folder the killed one left.
        assert sorted(p.name for p in out.parent.iterdir()) == [".bundle.lockdir", "bundle"]
    manifest = json.loads((out / "manifest.json").read_text())
    expected = [r for r in label_rows("written_mideast.jsonl") if r.get("split", "") in ("train", "dev", "")]
    assert manifest["training"]["n"] == len(expected)
    assert Bundle.load(out).tasks == ["contact_type", "tone"]


# == 3. Concurrency ===============================================================================
READER = r"""
import json, sys, time
from pathlib import Path
from toolkit.index import Index

folder, stop, query = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
while not stop.exists():
    try:
        index = Index.open(folder)
        hits = [hit.to_dict() for hit in index.search(query, k=5)]
        answer = {"generation": index.manifest["generation"], "hits": hits}
        index.close()
    except Exception as exc:
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(answer), flush=True)
    time.sleep(0.05)
"""


def test_second_writer_is_refused_and_a_reader_sees_old_or_new(tmp_path, embedder):
    from toolkit.indexing import build_index

    folder = tmp_path / "index"
    build_index([SEEDS], folder, embedder=embedder, bundle=None)
    old = answers(folder, embedder)
    env = process_env(tmp_path / "cache")
    log, stop = tmp_path / "reader.jsonl", tmp_path / "stop"
    with open(log, "w") as out:
        reader = subprocess.Popen([sys.executable, "-c", READER, str(folder), str(stop), QUERY], cwd=tmp_path,
                                  env=env, stdout=out, stderr=subprocess.PIPE, text=True)
    writer = None
    try:
        assert wait_for(lambda: log.stat().st_size > 0, reader, pause=0.05), reader.communicate()
        corpus = write_jsonl(tmp_path / "news.jsonl", synthetic_articles(60))
        writer = start_toolkit(["index", SEEDS, corpus, "--index", folder, "--no-labels", "--json", "-q"],
                               env, tmp_path)
        lock = folder / ".lock"
        assert wait_for(lambda: lock.exists() and lock.read_text().strip() == str(writer.pid), writer, pause=0.01)
        refused = run("index", SEEDS, "--index", folder, "--no-labels")
        one_line_error(refused, 1, f"{folder}: another toolkit process (pid {writer.pid}) is writing this index",
                       "the lock frees itself if that process dies")
        stdout, stderr = writer.communicate(timeout=300)
        assert writer.returncode == 0, stderr
        assert json.loads(stdout)["documents_added"] == 60
        new = answers(folder, embedder)
        assert new != old

        def seen_new() -> bool:
            return any(json.loads(line).get("generation") == 2 for line in log.read_text().splitlines())

        assert wait_for(seen_new, reader, timeout=60, pause=0.05)
    finally:
        stop.touch()
        reader.communicate(timeout=60)
        if writer is not None and writer.poll() is None:
            kill9(writer)
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert not [answer for answer in seen if "error" in answer]
    assert {answer["generation"] for answer in seen} == {1, 2}
    print(f"reader: {sum(a['generation'] == 1 for a in seen)} answers from the old index, "
          f"{sum(a['generation'] == 2 for a in seen)} from the new one, no error; refused: {refused.stderr.strip()}")
    for answer in seen:
        assert same_hits(answer["hits"], old if answer["generation"] == 1 else new)


# == 4. Properties of reading, cleaning and splitting ==============================================
CONTROL = list("\x00\x01\x07\x08\t\n\x0b\x0c\r\x1b\x1c\x1d\x1e\x1f\x7f\x85\xa0\u2028\u2029\ufeff\u200b")
PUNCTUATION = list(".!?…\"'“”‘’«»()[]{};:,-–—•|/<>@#&*")
ANY_TEXT = st.text(alphabet=st.one_of(st.characters(blacklist_categories=("Cs",)), st.sampled_from(CONTROL),
                                      st.sampled_from(PUNCTUATION)), max_size=1500)


@settings(max_examples=200, deadline=None)
@given(ANY_TEXT)
def test_clean_then_split_never_crashes_and_loses_no_character(raw):
    from toolkit.corpus.clean import clean_text
    from toolkit.corpus.split import MAX_CHARS_PER_TOKEN, split_passages

    cleaned = clean_text(raw)
    text = cleaned.text
    assert isinstance(cleaned.title, str)
    passages = split_passages(text, max_tokens=32)
    for i, passage in enumerate(passages):
        assert passage.ordinal == i
        assert text[passage.start : passage.end] == passage.text
        assert passage.text and passage.text.strip() == passage.text
        assert len(passage.text) <= 32 * MAX_CHARS_PER_TOKEN
    assert [p.start for p in passages] == sorted(p.start for p in passages)
    assert "".join("".join(p.text for p in passages).split()) == "".join(text.split())


WORDS = st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=1, max_size=12)


@settings(max_examples=100, deadline=None)
@given(st.lists(WORDS, min_size=1, max_size=400), st.integers(min_value=8, max_value=64))
def test_split_keeps_the_budget_when_words_are_short(words, budget):
    from toolkit.corpus.split import approx_tokens, split_passages

    text = " ".join(words)
    passages = split_passages(text, max_tokens=budget)
    assert all(approx_tokens(p.text) <= budget for p in passages)
    assert "".join(p.text.replace(" ", "") for p in passages) == text.replace(" ", "")


# Ordinary news words, including ones that page furniture also uses ("comment", "share", "search",
# "home", "support", "telegram", "ads", "register", "let") and that must not cost a sentence.
VOCABULARY = """the a an minister ministers defence foreign talks call phone spoke met agreed said border ceasefire
envoy ambassador embassy summoned officials government army navy hotline crisis week morning statement
comment declined share details search crew home support sponsor telegram channel post ads register let
resumed sides both with about after before and but for of to in was were his her their its counterpart
visit invitation parade refused suspended contacts military president chief staff general admiral
""".split()
SENTENCE_WORDS = st.lists(st.sampled_from(VOCABULARY), min_size=5, max_size=20)
TERMINAL = st.sampled_from([".", "!", "?"])


@st.composite
def prose(draw) -> str:
    """Paragraphs of sentences (capital first, terminal punctuation last, five or more words);
    the first paragraph long enough to read as article body."""
    def sentence(min_words: int = 5) -> str:
        words = draw(st.lists(st.sampled_from(VOCABULARY), min_size=min_words, max_size=20))
        return words[0].capitalize() + " " + " ".join(words[1:]) + draw(TERMINAL)

    count = draw(st.integers(min_value=1, max_value=6))
    paragraphs = []
    for i in range(count):
        sentences = [sentence(8 if i == 0 else 5)]
        sentences += [sentence() for _ in range(draw(st.integers(min_value=0, max_value=3)))]
        paragraphs.append(" ".join(sentences))
    separator = draw(st.sampled_from(["\n\n", "\n", "\r\n\r\n"]))
    return separator.join(paragraphs)


@settings(max_examples=200, deadline=None)
@given(prose())
def test_cleaning_keeps_all_plain_prose(text):
    from toolkit.corpus.clean import _PROMPTS, clean_text

    paragraphs = [p for p in text.replace("\r", "").split("\n") if p]
    assume(len({p.casefold() for p in paragraphs}) == len(paragraphs))  # repeated lines are kept once
    assume(not _PROMPTS.search(text))  # "share on", "read more": page prompts, dropped by design
    cleaned = clean_text(text).text
    assert cleaned.split("\n\n") == paragraphs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.sampled_from([".txt", ".md", ".html", ".jsonl", ".csv"]))
def test_reading_any_bytes_gives_documents_a_skip_or_an_input_error(raw, suffix):
    from toolkit.corpus.read import ReadReport, read_file
    from toolkit.errors import InputError

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{suffix}"
        path.write_bytes(raw)
        report = ReadReport()
        try:
            documents = list(read_file(path, report))
        except InputError as exc:
            assert str(path) in str(exc) and suffix in (".jsonl", ".csv")
            return
        for document in documents:
            assert document.text.strip() and document.doc_id
        assert documents or report.skipped or suffix in (".jsonl", ".csv")
