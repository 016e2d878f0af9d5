"""Split cleaned text into sentence-aware, paragraph-aware passages with character offsets.

Passages are windows of whole sentences, bounded by a token budget so the embedding model never
truncates them. A passage does not cross a paragraph boundary unless one side is short (a quote's
trailing "he said." joins the quote). A sentence longer than the budget is cut at clause or word
boundaries. Every passage records its ``start``/``end`` offsets into the cleaned text, and
``text[start:end] == passage.text`` always holds.

Every step reads only a bounded neighbourhood of the text (the word before a full stop, windows of
``max_tokens * MAX_CHARS_PER_TOKEN`` characters), so splitting is linear in the text's length even
for a megabyte on one line, and no passage is longer than that window.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator

TokenCounter = Callable[[str], int]

# Abbreviations that end in a full stop without ending a sentence (lower-cased, without the dot).
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof gen lt col maj capt cmdr adm sgt cpl pvt rep sen gov pres sec amb st mt ft
    jr sr co corp inc ltd no nos vol fig art para sect ch pp p approx est dept univ assn bros
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thurs fri sat sun
    u.s u.k u.n e.u u.s.a a.m p.m i.e e.g etc vs cf al ca md va pa fla calif ala ariz ark colo conn
    del ga ill ind kan ky la mass mich minn miss mo mont neb nev okla ore tenn tex wash wis wyo
    adj asst atty aug blvd brig cdr cie comdr hon messrs mlle mme msgr rev rt supt""".split()
)
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)|[.!?…]+[\"'”’»)\]]*$")
_TOKEN_STOPS = "\"'“‘«(["  # with whitespace, what delimits the word before a full stop
_NEXT_CHAR = re.compile(r"\s*(\S)")
_PARAGRAPH = re.compile(r"\n\s*\n|\n")
_CLAUSE_BREAK = re.compile(r"[,;:–—]\s+")
# A token is rarely longer than this many characters; only windows this wide are tokenized when a
# long sentence or paragraph is cut or measured (WordPiece maps any word over 100 characters to one
# [UNK] token, so a wider window could only fit more text, never less).
MAX_CHARS_PER_TOKEN = 32


SUM_SLACK = 4  # tokens: window estimates this close to the budget are counted exactly


def approx_tokens(text: str) -> int:
    """Cheap upper estimate of WordPiece tokens: words, punctuation, and long-word splits."""
    words = re.findall(r"[^\W_]+|[^\w\s]", text)
    return sum(1 + len(w) // 8 for w in words)


@dataclass(frozen=True)
class Span:
    start: int
    end: int


@dataclass(frozen=True)
class Passage:
    """A window of sentences. ``start``/``end`` are character offsets into the cleaned text."""

    ordinal: int
    start: int
    end: int
    text: str


def paragraph_spans(text: str) -> list[Span]:
    """Spans of non-empty paragraphs (split on newlines), trimmed of surrounding whitespace."""
    spans = []
    pos = 0
    for match in list(_PARAGRAPH.finditer(text)) + [None]:
        end = match.start() if match else len(text)
        spans.extend(_trim(text, pos, end))
        pos = match.end() if match else len(text)
    return spans


def _trim(text: str, start: int, end: int) -> list[Span]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [Span(start, end)] if end > start else []


def _token_before(text: str, end: int) -> str:
    """The word ending at ``text[end]`` with its trailing full stops removed.

    Scans back from ``end`` only over that word, so the cost does not grow with the paragraph.
    """
    stop = end
    while stop > 0 and text[stop - 1] == ".":
        stop -= 1
    begin = stop
    while begin > 0 and not text[begin - 1].isspace() and text[begin - 1] not in _TOKEN_STOPS:
        begin -= 1
    return text[begin:stop]


def _ends_sentence(text: str, dot_end: int, match_text: str, end: int | None = None) -> bool:
    """Decide whether a terminal mark ending at ``text[dot_end]`` closes a sentence.

    Only the word before the mark and the first character after it (before ``end``) are read.
    """
    end = len(text) if end is None else end
    if match_text.rstrip("\"'”’»)]").endswith((".",)) and not match_text.startswith(("..", "…")):
        token = _token_before(text, dot_end - len(match_text) + 1)
        bare = token.lower().strip(".")
        if bare in _ABBREVIATIONS:
            return False
        if len(token) == 1 and token.isalpha() and token.isupper():
            return False  # an initial: "Mark T. Esper"
        if re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]?", token + "."):
            return False  # "U.S." and other dotted acronyms inside a sentence
    following = _NEXT_CHAR.match(text, dot_end, end)
    if following is None:
        return True
    first = following.group(1)
    # A sentence starts with an upper-case letter, a digit, a quote or a bracket; a lower-case
    # continuation means the mark was inside a sentence ("the No. 2 official", "3 p.m. on Friday").
    return first.isupper() or first.isdigit() or first in "\"'“‘«([—–-•"


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentence spans within ``text[start:end]``, covering every non-space character."""
    end = len(text) if end is None else end
    spans: list[Span] = []
    pos = start
    for match in _SENTENCE_END.finditer(text, start, end):
        if _ends_sentence(text, match.end(), match.group(), end):
            spans.extend(_trim(text, pos, match.end()))
            pos = match.end()
    spans.extend(_trim(text, pos, end))
    return spans


def _cut_long(text: str, span: Span, max_tokens: int, count: TokenCounter) -> list[Span]:
    """Cut one over-long sentence at clause breaks, then at word breaks, within the budget.

    Each piece is searched for in a window of ``max_tokens * MAX_CHARS_PER_TOKEN`` characters, so a
    sentence of any length is cut in time linear in its length.
    """
    pieces: list[Span] = []
    start = span.start
    window = max_tokens * MAX_CHARS_PER_TOKEN
    while start < span.end:
        stop = min(span.end, start + window)
        if stop == span.end and count(text[start:stop]) <= max_tokens:
            pieces.extend(_trim(text, start, span.end))
            break
        # Find the longest prefix that fits, preferring a clause break, else a word break.
        words = [m.end() for m in re.finditer(r"\S+", text[start:stop])]
        lo, hi, best = 0, len(words) - 1, 0
        while lo <= hi:
            mid = (lo + hi) // 2
            if count(text[start : start + words[mid]]) <= max_tokens:
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        cut = start + words[best] if words else stop
        clauses = [start + m.end() for m in _CLAUSE_BREAK.finditer(text[start:cut])]
        if clauses and clauses[-1] - start > (cut - start) // 2:
            cut = clauses[-1]
        pieces.extend(_trim(text, start, cut))
        start = cut
    return pieces


def split_passages(
    text: str,
    *,
    max_tokens: int = 128,
    min_tokens: int = 32,
    count_tokens: TokenCounter = approx_tokens,
) -> list[Passage]:
    """Split cleaned ``text`` into passages of whole sentences.

    Parameters
    ----------
    text : str
        Cleaned article text; paragraphs separated by newlines.
    max_tokens : int
        Hard budget per passage in model tokens; no passage is longer (long sentences are cut).
    min_tokens : int
        A paragraph shorter than this joins its neighbour when the budget allows.
    count_tokens : callable
        Counts tokens of a string; pass the embedding model's tokenizer for exact budgets.

    Returns
    -------
    list of Passage
        In reading order, ordinals from 0.
    """
    if max_tokens < 8:
        raise ValueError(f"max_tokens must be >= 8. Got {max_tokens} instead.")
    max_chars = max_tokens * MAX_CHARS_PER_TOKEN  # also bounds passages of a few huge 'words'
    groups: list[list[tuple[Span, int]]] = []  # (sentence, its tokens) per paragraph
    for paragraph in paragraph_spans(text):
        sentences: list[tuple[Span, int]] = []
        for sentence in sentence_spans(text, paragraph.start, paragraph.end):
            tokens = (max_tokens + 1 if sentence.end - sentence.start > max_chars
                      else count_tokens(text[sentence.start : sentence.end]))
            if tokens > max_tokens:
                sentences.extend((piece, count_tokens(text[piece.start : piece.end]))
                                 for piece in _cut_long(text, sentence, max_tokens, count_tokens))
            else:
                sentences.append((sentence, tokens))
        if sentences:
            groups.append(sentences)

    # A window's tokens are estimated as the sum of its sentences' (exact for tokenizers that split
    # on whitespace first, off by a token or two at a joint otherwise), and counted exactly only
    # when the estimate is within SUM_SLACK of the budget: re-tokenising every growing window was
    # most of the cost of splitting.
    def fits(start: int, end: int, estimate: int) -> tuple[bool, int]:
        if estimate <= max_tokens - SUM_SLACK:
            return True, estimate
        if estimate > max_tokens + SUM_SLACK:
            return False, estimate
        exact = count_tokens(text[start:end])
        return exact <= max_tokens, exact

    windows: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    current_tokens = 0
    current_paragraph_short = False
    for sentences in groups:
        first, last = sentences[0][0], sentences[-1][0]
        paragraph_short = (last.end - first.start <= min_tokens * MAX_CHARS_PER_TOKEN
                           and sum(tokens for _, tokens in sentences) < min_tokens)
        for i, (sentence, tokens) in enumerate(sentences):
            if current is None:
                current, current_tokens = (sentence.start, sentence.end), tokens
                continue
            merged = (current[0], sentence.end)
            joins_paragraph = i == 0
            allowed = not joins_paragraph or paragraph_short or current_paragraph_short
            ok = False
            if allowed and merged[1] - merged[0] <= max_chars:
                ok, merged_tokens = fits(merged[0], merged[1], current_tokens + tokens)
            if ok:
                current, current_tokens = merged, merged_tokens
            else:
                windows.append(current)
                current, current_tokens = (sentence.start, sentence.end), tokens
        current_paragraph_short = current_tokens < min_tokens if current else False
    if current is not None:
        windows.append(current)
    return [Passage(i, s, e, text[s:e]) for i, (s, e) in enumerate(windows)]


def iter_sentences(text: str) -> Iterator[str]:
    """Sentences of ``text`` in order (for tests and tools)."""
    for paragraph in paragraph_spans(text):
        for span in sentence_spans(text, paragraph.start, paragraph.end):
            yield text[span.start : span.end]
