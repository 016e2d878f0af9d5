"""Splitting: sentence-aware, paragraph-aware passages within the token budget, with exact offsets."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.corpus.clean import clean_text
from toolkit.corpus.split import approx_tokens, iter_sentences, split_passages

from conftest import SEEDS


def test_abbreviations_initials_and_quotes_do_not_end_sentences():
    text = ("Mark T. Esper met Gen. Milley at 3 p.m. on Friday. The U.S. side said so. "
            "“It was good,” he said. Then he left... And more.")
    assert list(iter_sentences(text)) == [
        "Mark T. Esper met Gen. Milley at 3 p.m. on Friday.", "The U.S. side said so.",
        "“It was good,” he said.", "Then he left...", "And more."]


def test_offsets_slice_back_and_ordinals_count_up():
    text = clean_text((SEEDS / "001_a7786463cd35b16d.txt").read_text()).text
    passages = split_passages(text)
    assert len(passages) > 5
    for i, passage in enumerate(passages):
        assert passage.ordinal == i
        assert text[passage.start : passage.end] == passage.text


def test_text_without_line_breaks_is_split_by_sentences(embedder):
    sentence = "The defence ministers of the two countries spoke by telephone about the border incident. "
    text = sentence * 40
    count = embedder.token_counter()
    passages = split_passages(text, max_tokens=64, count_tokens=count)
    assert len(passages) > 5
    assert all(count(p.text) <= 64 for p in passages)
    assert all(p.text.endswith(".") for p in passages)


def test_no_passage_exceeds_the_model_budget_on_seeds(embedder):
    count = embedder.token_counter()
    budget = min(128, embedder.max_tokens)
    for path in sorted(SEEDS.glob("*.txt")):
        for passage in split_passages(clean_text(path.read_text()).text, max_tokens=budget, count_tokens=count):
            assert count(passage.text) <= budget, passage.text[:80]


def test_an_overlong_sentence_is_cut_within_budget():
    text = "word, " * 300 + "end."
    passages = split_passages(text, max_tokens=50)
    assert len(passages) > 3
    assert all(approx_tokens(p.text) <= 50 for p in passages)
    assert "".join(p.text.replace(" ", "") for p in passages) == text.replace(" ", "")


def test_short_attribution_paragraph_joins_its_quote():
    text = "“We will keep the line open and talk again next week,” the minister said in a long statement.\n\nKirby said."
    passages = split_passages(text)
    assert len(passages) == 1 and passages[0].text.endswith("Kirby said.")


def test_max_tokens_must_be_sensible():
    with pytest.raises(ValueError, match="max_tokens must be >= 8"):
        split_passages("Some text.", max_tokens=2)


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=0, max_size=600))
def test_split_never_crashes_and_offsets_always_slice_back(text):
    passages = split_passages(text, max_tokens=32)
    covered = "".join(p.text for p in passages)
    for passage in passages:
        assert text[passage.start : passage.end] == passage.text
        assert passage.text.strip() == passage.text and passage.text
    # No non-space character is lost.
    assert "".join(covered.split()) == "".join(text.split())


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=800))
def test_clean_never_crashes(text):
    result = clean_text(text)
    assert isinstance(result.text, str)


def test_summed_sentence_counts_give_the_windows_of_exact_counting(embedder, monkeypatch):
    """Window sizes are estimated from sentence counts; with the model's tokenizer the passages must
    be the same as when every window is tokenised (a huge slack forces exact counts)."""
    import toolkit.corpus.split as split

    count = embedder.token_counter()
    texts = [clean_text(path.read_text()).text for path in sorted(SEEDS.glob("*.txt"))]
    estimated = [split_passages(t, max_tokens=64, count_tokens=count) for t in texts]
    monkeypatch.setattr(split, "SUM_SLACK", 10**6)
    exact = [split_passages(t, max_tokens=64, count_tokens=count) for t in texts]
    assert estimated == exact and sum(map(len, exact)) > 20
