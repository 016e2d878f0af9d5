"""The command line through typer's CliRunner: contracts (--json shapes), help, errors and exit codes."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from toolkit.cli import app

from conftest import SEEDS

runner = CliRunner()
QUERY = "phone call between the US and Russian defence ministers"


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def one_line_error(result, code, *fragments):
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "index"
    result = run("index", SEEDS, "--index", folder, "--no-labels", "-q")
    assert result.exit_code == 0, result.output
    return folder


def commands():
    import typer.main

    group = typer.main.get_command(app)
    names = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            names += [(name, sub) for sub in command.commands]
        else:
            names.append((name,))
    return names


@pytest.mark.parametrize("command", commands())
def test_every_command_has_help_with_an_example(command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output


def test_index_then_query_json_contract(cli_index):
    result = run("query", QUERY, "--index", cli_index, "--json", "-k", "3")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"query", "hits"} and payload["query"] == QUERY
    assert len(payload["hits"]) == 3
    for key in ("rank", "score", "passage_id", "doc_id", "title", "source", "text", "start", "end", "labels", "also_in"):
        assert key in payload["hits"][0]
    assert payload["hits"][0]["source"] in {"003_6ec7bb4a00626735.txt", "004_fe373568b3169f25.txt"}


def test_query_table_and_batch(cli_index):
    table = run("query", QUERY, "--index", cli_index, "-k", "2")
    assert table.exit_code == 0 and "  1  " in table.stdout
    batch = run("query", "--batch", "--index", cli_index, "--json", "-k", "1", input="Belousov\nShoigu parade\n")
    lines = [json.loads(line) for line in batch.stdout.splitlines()]
    assert [line["query"] for line in lines] == ["Belousov", "Shoigu parade"]


def test_reindex_reports_nothing_embedded(cli_index):
    result = run("index", SEEDS, "--index", cli_index, "--no-labels", "--json", "-q")
    report = json.loads(result.stdout)
    assert report["documents_unchanged"] == 5 and report["passages_embedded"] == 0


def test_info(cli_index):
    result = run("info", "--index", cli_index, "--json")
    assert json.loads(result.stdout)["counts"]["documents"] == 5


@pytest.mark.parametrize("args, code, fragment", [
    (["query", "", "--index", "IDX"], 2, "the query is empty"),
    (["query", QUERY, "--index", "IDX", "-k", "0"], 2, "'k' parameter of query must be an int"),
    (["query", QUERY, "--index", "IDX", "-k", "-3"], 2, "Got -3 instead"),
    (["query", QUERY, "--index", "IDX", "-k", "99999999"], 2, "'k' parameter"),
    (["query", "x" * 100_000, "--index", "IDX"], 2, "the query has 100000 characters"),
    (["query", QUERY, "--index", "IDX", "--label", "contact_type"], 2, "is not TASK=VALUE"),
    (["query", QUERY, "--index", "IDX", "--after", "yesterday"], 2, "is not a date"),
    (["query", QUERY, "--index", "IDX", "--model", "intfloat/e5-small-v2"], 1, "was built with embedding model"),
])
def test_query_errors(cli_index, args, code, fragment):
    args = [str(cli_index) if a == "IDX" else a for a in args]
    one_line_error(run(*args), code, fragment)


def test_missing_index_and_missing_paths(tmp_path):
    one_line_error(run("query", QUERY, "--index", tmp_path / "none"), 1, "run `toolkit index")
    one_line_error(run("index", tmp_path / "missing", "--index", tmp_path / "ix"), 2, "no such file or folder")
    (tmp_path / "empty").mkdir()
    one_line_error(run("index", tmp_path / "empty", "--index", tmp_path / "ix"), 2, "no articles found")


def test_unreadable_files_are_skipped_with_a_warning(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.txt").write_text("Ministers talk\n\nThe two defence ministers spoke by phone on Monday about the border.\n")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    (folder / "empty.txt").write_text("")
    result = run("index", folder, "--index", tmp_path / "ix", "--no-labels", "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["documents_added"] == 1 and len(report["skipped"]) == 2
    assert "binary.txt: binary file" in result.stderr and "empty.txt: empty file" in result.stderr


def test_broken_jsonl_line_is_named_and_skip_bad_continues(tmp_path):
    corpus = tmp_path / "a.jsonl"
    corpus.write_text(json.dumps({"text": "The envoy met the minister in Doha on Tuesday for talks."}) + "\n{oops\n"
                      + json.dumps({"text": "The ambassador was summoned over the strike."}) + "\n")
    one_line_error(run("index", corpus, "--index", tmp_path / "ix", "--no-labels"), 1, "a.jsonl:2: invalid JSON")
    assert not (tmp_path / "ix" / "manifest.json").exists()
    result = run("index", corpus, "--index", tmp_path / "ix", "--no-labels", "--skip-bad", "--json", "-q")
    assert result.exit_code == 0 and json.loads(result.stdout)["documents_added"] == 2


def test_csv_without_text_column(tmp_path):
    corpus = tmp_path / "a.csv"
    corpus.write_text("body,title\nhello,world\n")
    one_line_error(run("index", corpus, "--index", tmp_path / "ix"), 1, "CSV has no 'text' column")


@pytest.fixture(scope="module")
def cli_bundle(tmp_path_factory):
    from conftest import LABELS

    folder = tmp_path_factory.mktemp("cli-data")
    rows = [json.loads(line) for line in (LABELS / "written_europe.jsonl").read_text().splitlines()][:150]
    (folder / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "schema.json").write_text((LABELS / "schema.json").read_text())
    out = tmp_path_factory.mktemp("cli-bundle") / "b"
    result = run("train", folder, "--out", out, "--folds", "3", "--split", "train", "--split", "dev", "-q")
    assert result.exit_code == 0, result.output
    return folder, out


def test_evaluate_json_contract_and_report(cli_bundle, tmp_path):
    data, bundle = cli_bundle
    result = run("evaluate", data, "--bundle", bundle, "--split", "test", "--json", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert isinstance(payload["n"], int) and set(payload["tasks"]) == {"contact_type", "tone"}
    contact = payload["tasks"]["contact_type"]
    assert {"macro_f1", "micro_f1", "per_label", "subset_accuracy"} <= set(contact)
    assert set(contact["per_label"]["call"]) == {"precision", "recall", "f1", "support"}
    assert (tmp_path / "r" / "report.md").exists() and (tmp_path / "r" / "confusion_tone.png").exists()


def test_classify_json_lines_in_input_order(cli_bundle):
    _, bundle = cli_bundle
    lines = ["Austin spoke by phone with Belousov on Friday.", "Cookies help us deliver our services.",
             "The ambassador was summoned to the foreign ministry."]
    result = run("classify", "-", "--bundle", bundle, "--json", input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == lines
    assert set(rows[0]) == {"text", "labels", "probabilities"}
    assert set(rows[0]["labels"]) == {"contact_type", "tone"} and isinstance(rows[0]["labels"]["tone"], str)


def test_classify_relabels_an_index_and_query_filters_by_label(cli_bundle, tmp_path):
    _, bundle = cli_bundle
    folder = tmp_path / "ix"
    assert run("index", SEEDS, "--index", folder, "--bundle", bundle, "-q").exit_code == 0
    result = run("query", QUERY, "--index", folder, "--label", "contact_type=call", "--json", "-k", "50",
                 "--no-dedupe")
    hits = json.loads(result.stdout)["hits"]
    assert hits and all("call" in h["labels"]["contact_type"] for h in hits)
    relabel = run("classify", "--index", folder, "--bundle", bundle)
    assert relabel.exit_code == 0 and "relabelled" in relabel.stdout


def test_classify_with_a_tampered_bundle_fails_cleanly(cli_bundle, tmp_path):
    import shutil

    _, bundle = cli_bundle
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    (copy / "tone.joblib").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    one_line_error(run("classify", "hello", "--bundle", copy), 1, "SHA-256 does not match")


def test_data_check(tmp_path):
    from conftest import LABELS

    ok = run("data", "check", LABELS)
    assert ok.exit_code == 0 and "contact_type (multi)" in ok.stdout
    (tmp_path / "schema.json").write_text((LABELS / "schema.json").read_text())
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "x", "contact_type": ["none", "call"], "tone": "neutral"}) + "\n")
    bad = run("data", "check", tmp_path)
    assert bad.exit_code == 1 and "a.jsonl:1: 'none' must stand alone" in bad.stderr


def test_index_type_option(tmp_path):
    folder = tmp_path / "ix"
    result = run("index", SEEDS, "--index", folder, "--no-labels", "-q", "--index-type", "hnsw")
    assert result.exit_code == 0, result.output
    assert json.loads((folder / "manifest.json").read_text())["vector_index"]["type"] == "hnsw"
    assert "(hnsw)" in run("info", "--index", folder).stdout
    assert json.loads(run("query", QUERY, "--index", folder, "--json", "-k", "3").stdout)["hits"]
    one_line_error(run("index", SEEDS, "--index", tmp_path / "other", "--index-type", "lsh"), 2,
                   "'index_type' parameter must be one of auto, flat, hnsw, ivf")


def test_version_prints_and_exits_zero():
    from toolkit import __version__

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == __version__


def test_data_passages_writes_what_indexing_splits_ready_to_label(tmp_path):
    from conftest import LABELS

    out = tmp_path / "to_label.jsonl"
    result = run("data", "passages", SEEDS, "--out", out, "--split", "train")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    shipped = {json.loads(line)["text"] for line in (LABELS / "seeds.jsonl").read_text().splitlines()}
    assert {r["text"] for r in rows} == shipped  # the same passages the seeds were labelled on
    assert len({r["story"] for r in rows}) == 5 and len({r["id"] for r in rows}) == len(rows)
    # Labelled as the help says, the file passes `data check` with the project's schema beside it.
    labelled = tmp_path / "labelled"
    labelled.mkdir()
    (labelled / "schema.json").write_text((LABELS / "schema.json").read_text())
    (labelled / "rows.jsonl").write_text("".join(
        json.dumps({**r, "contact_type": ["none"], "tone": "neutral"}) + "\n" for r in rows))
    assert run("data", "check", labelled).exit_code == 0
    # A file indexing would skip is skipped here too, with the same warning.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.txt").write_text((SEEDS / sorted(p.name for p in SEEDS.iterdir())[0]).read_text())
    (mixed / "empty.txt").write_text("")
    warned = run("data", "passages", mixed, "--out", tmp_path / "mixed.jsonl")
    assert warned.exit_code == 0 and "warning: " in warned.stderr and "empty.txt: empty file, skipped" in warned.stderr
    one_line_error(run("data", "passages", SEEDS, "--out", out, "--split", "holdout"), 2, "unknown split")
    one_line_error(run("data", "passages", tmp_path / "nowhere", "--out", out), 2, "no such file")
