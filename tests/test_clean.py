"""Cleaning: page boilerplate never reaches a passage, the article body is kept whole (seed fixture)."""
from __future__ import annotations

import json
import re

import pytest

from toolkit.corpus.clean import clean_text, strip_inline_code
from toolkit.corpus.split import iter_sentences, split_passages

from conftest import ROOT, SEEDS

FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "seed_body.json").read_text())
SEED_NAMES = sorted(k for k in FIXTURE if not k.startswith("_"))


def words(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def seed_passages(name: str) -> list[str]:
    cleaned = clean_text((SEEDS / name).read_text(encoding="utf-8"))
    return [words(p.text) for p in split_passages(cleaned.text)]


@pytest.mark.parametrize("name", SEED_NAMES)
def test_every_body_sentence_reaches_a_passage(name):
    marks = FIXTURE[name]
    passages = seed_passages(name)
    lines = (SEEDS / name).read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip() or number in marks["boilerplate_lines"]:
            continue
        for fragment in marks["boilerplate_fragments"]:
            line = line.replace(fragment, " ")
        for sentence in iter_sentences(line):
            needle = words(sentence)
            if needle:
                assert any(needle in p for p in passages), f"{name}:{number} body sentence lost: {sentence[:80]}"


@pytest.mark.parametrize("name", SEED_NAMES)
def test_no_boilerplate_reaches_a_passage(name):
    marks = FIXTURE[name]
    passages = seed_passages(name)
    lines = (SEEDS / name).read_text(encoding="utf-8").split("\n")
    body = " ".join(words(lines[n - 1]) for n in range(1, len(lines) + 1) if n not in marks["boilerplate_lines"])
    for number in marks["boilerplate_lines"]:
        needle = words(lines[number - 1])
        if not needle or needle in body:  # a short label like "USA" may also be a word of the body
            continue
        assert not any(needle in p for p in passages), f"{name}:{number} boilerplate kept: {needle[:80]}"
    for fragment in marks["boilerplate_fragments"]:
        assert not any(words(fragment) in p for p in passages), f"{name}: fragment kept: {fragment}"


def test_titles_of_seeds():
    titles = {name: clean_text((SEEDS / name).read_text()).title for name in SEED_NAMES}
    assert titles["000_f9a5207b2fe42542.txt"] == "US Defense Secretary Esper invited to Moscow military parade"
    assert titles["003_6ec7bb4a00626735.txt"].startswith("US defence secretary talks with new Russian defence minister")
    assert titles["004_fe373568b3169f25.txt"] == (
        "The head of the Pentagon spoke with the head of the Russian Ministry of Defense")


def test_inline_css_is_cut_out_of_prose():
    line = ("Spider Web operations were disclosed. .in_text_content_22 {width: 300px; Height: 600px; } "
            "@Media (min-width: 600px) {.in_text_content_22 {width: 580px; }} On Sunday, June 1, it began.")
    stripped = strip_inline_code(line)
    assert "{" not in stripped and "width" not in stripped
    assert stripped.startswith("Spider Web operations were disclosed.")
    assert stripped.endswith("On Sunday, June 1, it began.")


def test_short_input_without_body_like_lines_is_kept():
    # A headline alone has no sentence punctuation; cleaning must not empty it.
    assert clean_text("Russians attack Sumy Oblast 7 times: woman injured").text == (
        "Russians attack Sumy Oblast 7 times: woman injured")


def test_long_sentence_mentioning_telegram_is_body():
    text = ("The defence ministry said on Telegram that the two chiefs of staff spoke by phone on Monday "
            "and agreed to keep the line open.")
    assert clean_text(text).text == text


def test_headline_lists_after_the_body_are_dropped():
    text = "\n".join([
        "Ministers meet in Ankara",
        "The Turkish and Greek defence ministers met in Ankara on Tuesday and agreed to revive the hotline.",
        "Both sides called the talks constructive and said they would meet again in spring.",
        "RECENT NEWS",
        "10:20",
        "Storm hits coastal towns",
        "10:12",
        "Football club signs new striker",
    ])
    cleaned = clean_text(text).text
    assert "Storm hits" not in cleaned and "striker" not in cleaned and "RECENT" not in cleaned
    assert "agreed to revive the hotline." in cleaned
    assert cleaned.startswith("Ministers meet in Ankara")
