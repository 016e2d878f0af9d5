"""Schema and labelled data: loading, inference of new tasks, validation with file and line."""
from __future__ import annotations

import json

import pytest

from toolkit.errors import InputError
from toolkit.labels import check_stories, label_counts, load_examples, require_valid

from conftest import LABELS


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


SCHEMA = {"tasks": {
    "contact_type": {"kind": "multi", "exclusive": ["none"], "labels": {"call": "a call", "meeting": "met",
                                                                         "none": "no contact"}},
    "tone": {"kind": "single", "labels": {"neutral": "", "confrontational": ""}},
}}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    return tmp_path


def test_shipped_corpus_is_valid_and_meets_the_counts():
    examples, schema, problems = load_examples([LABELS])
    problems += check_stories(examples)
    assert problems == []
    assert set(schema.tasks) == {"contact_type", "tone"}
    counts = label_counts(examples, schema)
    assert len(examples) >= 1200
    for label in ("call", "meeting", "invitation", "hotline", "refused_contact", "summons", "suspension"):
        assert counts["contact_type"][label] >= 80, label
    assert counts["contact_type"]["none"] == max(counts["contact_type"].values())
    assert min(counts["tone"].values()) >= 250


def test_seed_passages_match_the_splitter(embedder):
    """data/labels/seeds.jsonl holds exactly the passages the splitter makes from the seeds."""
    from toolkit.corpus.read import read_documents
    from toolkit.corpus.split import split_passages
    from toolkit.indexing import passage_token_budget

    from conftest import SEEDS

    count = embedder.token_counter()
    produced = {p.text for d in read_documents([SEEDS])
                for p in split_passages(d.text, max_tokens=passage_token_budget(embedder), count_tokens=count)}
    labelled = {json.loads(line)["text"] for line in (LABELS / "seeds.jsonl").read_text().splitlines()}
    assert produced == labelled


def test_unknown_label_is_reported_with_file_and_line(folder):
    write_jsonl(folder / "a.jsonl", [{"text": "A call.", "contact_type": ["call"], "tone": "neutral"},
                                     {"text": "Other.", "contact_type": ["telepathy"], "tone": "neutral"}])
    _, _, problems = load_examples([folder])
    assert len(problems) == 1
    assert str(problems[0]).startswith(f"{folder / 'a.jsonl'}:2: unknown contact_type label(s) 'telepathy'")


def test_none_must_stand_alone(folder):
    write_jsonl(folder / "a.jsonl", [{"text": "Mixed.", "contact_type": ["none", "call"], "tone": "neutral"}])
    _, _, problems = load_examples([folder])
    assert "'none' must stand alone" in str(problems[0])


def test_empty_duplicate_missing_and_broken_rows(folder):
    (folder / "a.jsonl").write_text(
        json.dumps({"text": "Same text.", "tone": "neutral"}) + "\n"
        + json.dumps({"text": "  same   TEXT. ", "tone": "neutral"}) + "\n"
        + json.dumps({"text": "", "tone": "neutral"}) + "\n"
        + "{broken\n"
        + json.dumps({"text": "No labels at all."}) + "\n")
    _, _, problems = load_examples([folder])
    messages = [str(p) for p in problems]
    assert any(":2: duplicate text (first at" in m for m in messages)
    assert any(":3: missing or empty 'text'" in m for m in messages)
    assert any(":4: invalid JSON" in m for m in messages)
    assert any(":5: no labels for any task" in m for m in messages)


def test_story_in_two_splits_is_a_problem(folder):
    write_jsonl(folder / "a.jsonl", [
        {"text": "One.", "tone": "neutral", "story": "s1", "split": "train"},
        {"text": "Two.", "tone": "neutral", "story": "s1", "split": "test"}])
    examples, _, problems = load_examples([folder])
    assert problems == []
    assert "story 's1' is in several splits" in str(check_stories(examples)[0])


def test_new_task_is_inferred_from_the_data_without_a_schema(tmp_path):
    write_jsonl(tmp_path / "initiator.jsonl", [
        {"text": "Washington asked for the call.", "initiator": "us"},
        {"text": "Moscow asked for the call.", "initiator": "russia"}])
    examples, schema, problems = load_examples([tmp_path])
    assert problems == []
    assert schema.tasks["initiator"].kind == "single" and not schema.tasks["initiator"].declared
    assert set(schema.tasks["initiator"].labels) == {"us", "russia"}
    assert examples[0].labels == {"initiator": "us"}


def test_csv_with_pipe_joined_labels(folder):
    (folder / "a.csv").write_text('text,contact_type,tone\n"They spoke, then met.",call|meeting,neutral\n')
    examples, _, problems = load_examples([folder])
    assert problems == []
    assert examples[0].labels == {"contact_type": ["call", "meeting"], "tone": "neutral"}


def test_csv_without_text_column(folder):
    (folder / "a.csv").write_text("body,tone\nx,neutral\n")
    _, _, problems = load_examples([folder])
    assert "CSV has no 'text' column" in str(problems[0])


def test_require_valid_names_the_first_problem(folder):
    write_jsonl(folder / "a.jsonl", [{"text": "x", "tone": "angry"}, {"text": "y", "tone": "calm"}])
    _, _, problems = load_examples([folder])
    with pytest.raises(InputError, match=r"a.jsonl:1: unknown tone label\(s\) 'angry'.*and 1 more"):
        require_valid(problems)


def test_data_card_figures_match_the_data():
    """data/labels/README.md carries the figures scripts/data_card.py prints for the shipped data."""
    import subprocess
    import sys

    root = LABELS.parent.parent
    result = subprocess.run([sys.executable, "scripts/data_card.py", "--check"], cwd=root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
