"""Remove page boilerplate from scraped article text, keeping the article body whole.

Scraped pages carry menus, language switchers, advertisement markers, CSS fragments, subscribe
prompts, comment forms, photo captions, bylines and lists of other stories' headlines. The cleaner
works on lines and paragraphs, in three passes:

1. *Line rules*: inline CSS/JS is cut out of lines; lines that are boilerplate by their wording
   (short lines matching known prompts), timestamps, bylines, captions and teasers ending in "..."
   are dropped.
2. *Body region*: the body runs from the first to the last *body-like* paragraph (a sentence that
   ends in terminal punctuation and has enough words). Everything before it is page header, except
   the headline, which becomes the first line; everything after it is page footer. A strong
   end-of-article marker ("Leave a Reply", "Most Popular", "Read Now" ...) closes the body early.
3. *Inside the body*: short lines without terminal punctuation (section labels, menu items) are
   dropped, and repeated lines are kept once.

If no paragraph looks like body (a one-line headline, a table cell), only the line rules apply, so
short inputs are never emptied by the heuristics.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Inline CSS rules such as ".in_text_content_22 {width: 300px; } @Media (min-width: 600px) {...}".
_CSS_BLOCK = re.compile(
    r"@media[^{}]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}"
    r"|[.#][A-Za-z_][\w\-]*(?:[\s,>]+[.#]?[A-Za-z_][\w\-]*)*\s*\{[^{}]*\}",
    re.IGNORECASE,
)
_JS_LINE = re.compile(
    r"^\s*(?:(?:var|let|const)\s+[\w$]+\s*(?:=|;|,|$)|function\s*\(|window\.|document\.|\(function|\}\)\(|"
    r"<script|</?div|<!--|"
    r"googletag|adsbygoogle|dataLayer)",
    re.IGNORECASE,
)
_CSS_LINE = re.compile(r"^[^{}]*\{[^{}]*:[^{}]*;?[^{}]*\}\s*$")

# Prompts and page furniture; matched against whole short lines (see _is_boilerplate_line).
# _PROMPTS are phrases that only page furniture uses; _FURNITURE_WORDS are words that also occur in
# news prose ("declined to comment", "the search for the crew", "a post on its Telegram channel"),
# so they mark a line as boilerplate only when the line is not a sentence.
_PROMPTS = re.compile(
    r"("
    r"subscribe|newsletter|sign up|sign in|log ?in\b|follow us|join (?:us|our)|share (?:this|on)|"
    r"become (?:our|a) (?:patron|member|subscriber)|"
    r"leave a (?:reply|comment)|no comments yet|be the first to comment|your email address|required fields|"
    r"please enter your|more from (?:the )?author|most (?:popular|read)|read (?:now|more|also)|"
    r"recent news|all news|latest news|related (?:news|articles|stories|posts)|you may also like|"
    r"back to top|all sections|all rights reserved|copyright|©|cookie|privacy policy|terms of use|"
    r"originally published|reprinted with permission|news of the day\b|"
    r"skip to (?:main )?content|main menu|home\s*[›>/»]"
    r")",
    re.IGNORECASE,
)
_FURNITURE_WORDS = re.compile(
    r"("
    r"register\b|telegram|whatsapp|facebook|twitter|instagram|youtube|tiktok|\bshare\b|"
    r"support (?:us|up)\b|donate|advertis|sponsor|promoted|\bads?\b|comments?\b|search\b|menu\b|^home"
    r")",
    re.IGNORECASE,
)
_BOILERPLATE = re.compile(f"{_PROMPTS.pattern}|{_FURNITURE_WORDS.pattern}", re.IGNORECASE)
_SENTENCE_CLOSE = re.compile(r"[.!?][\"'”’»)\]]*$")
# Markers after which nothing belongs to the article any more.
_END_MARKERS = re.compile(
    r"^\W*(?:leave a (?:reply|comment)|comments?|most (?:popular|read)|more from (?:the )?author|"
    r"read now|related (?:news|articles|stories|posts)|recent news|all news|you may also like|"
    r"back to top(?: button)?|subjects?:.*|tags?:.*|share this(?: article)?|read more)\W*$",
    re.IGNORECASE,
)
_TIMESTAMP = re.compile(r"^\s*(?:updated\s*)?\d{1,2}[:.]\d{2}(?:\s*(?:am|pm))?\s*$", re.IGNORECASE)
_BYLINE = re.compile(
    r"(?:\b\d{1,2}[:.]\d{2}\b.*\b(?:19|20)\d{2}\b|\b(?:19|20)\d{2}\b.*\b\d{1,2}:\d{2}\b|"
    r"^\s*(?:by|author|posted by|written by)\s+[A-Z])",
)
_CAPTION = re.compile(
    r"(\((?:[^()]*\b)?photo(?:graph)?s? (?:by|credit)[^()]*\)\s*$|^\s*(?:stock )?(?:photo|image|picture|"
    r"illustration|file photo|video)\s*(?:credit)?\s*:|\b(?:getty images|reuters/|ap photo|afp photo)\b\W*$)",
    re.IGNORECASE,
)
_SOURCE_LINE = re.compile(r"^\s*(?:source|via|credit)\s*:\s*\S", re.IGNORECASE)
_TEASER = re.compile(r"(?:\.\.\.|…)\s*$")
_TERMINAL = re.compile(r"[.!?…:;][\"'”’»)\]]*\s*$|[\"”»]\s*[-–—]?\s*$")
_LABEL = re.compile(r"^\W*\w+(?:\s\w+)?\s*:\s*$")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")

MIN_BODY_WORDS = 8
MAX_BOILERPLATE_WORDS = 18


@dataclass(frozen=True)
class CleanResult:
    """Cleaned article text and the headline found in the page header (may be empty)."""

    text: str
    title: str
    dropped_lines: int


def _words(line: str) -> int:
    return len(_WORD.findall(line))


def strip_inline_code(line: str) -> str:
    """Remove CSS rule blocks embedded in a line of prose and collapse the spaces left behind."""
    if "{" not in line:
        return line
    stripped = _CSS_BLOCK.sub(" ", line)
    return re.sub(r"[ \t]{2,}", " ", stripped).strip()


def _is_code_line(line: str) -> bool:
    return bool(_JS_LINE.search(line) or _CSS_LINE.match(line))


def _is_boilerplate_line(line: str) -> bool:
    """Short lines whose wording is page furniture; long sentences mentioning 'Telegram' stay."""
    n = _words(line)
    if n == 0:
        return not re.search(r"[A-Za-z0-9]", line) or bool(re.fullmatch(r"\W*[-–—]+\W*", line))
    if _TIMESTAMP.match(line) or _CAPTION.search(line) or _TEASER.search(line):
        return True
    if n <= MAX_BOILERPLATE_WORDS and (
            _PROMPTS.search(line) or (_FURNITURE_WORDS.search(line) and not _is_sentence(line, n))):
        return True
    if n <= 12 and _BYLINE.search(line):
        return True
    if _SOURCE_LINE.match(line) and n <= 6:
        return True
    return False


def _is_sentence(line: str, words: int) -> bool:
    """Five or more words, a capital (or digit) first and a full stop, ! or ? last."""
    head = line.lstrip("\"'“‘«([")
    return (words >= 5 and bool(head) and (head[0].isupper() or head[0].isdigit())
            and bool(_SENTENCE_CLOSE.search(line)))


def _is_body_like(line: str) -> bool:
    return _words(line) >= MIN_BODY_WORDS and bool(_TERMINAL.search(line))


def _is_headline_like(line: str) -> bool:
    """Four to thirty words and no closing full stop: how headlines look."""
    return 4 <= _words(line) <= 30 and not line.rstrip().endswith(".")


def clean_text(raw: str) -> CleanResult:
    """Return the article body of ``raw`` with page boilerplate removed.

    Parameters
    ----------
    raw : str
        Text of a scraped page; lines are separated by newlines, paragraphs by blank lines or
        single newlines.

    Returns
    -------
    CleanResult
        ``text`` has one paragraph per line-group, paragraphs separated by a blank line; ``title``
        is the headline found before the body, or ``""``.
    """
    text = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ").replace("\ufeff", "")
    lines = [re.sub(r"[ \t]+", " ", strip_inline_code(line)).strip(" \t•·▪●◦-–—*>|") for line in text.split("\n")]
    raw_count = sum(1 for line in text.split("\n") if line.strip())
    # Bullets and dash prefixes were stripped above; a stripped line may lose a leading quote dash,
    # which is harmless for retrieval and classification.
    kept: list[str] = [line for line in lines if line and not _is_code_line(line)]
    # A strong end marker closes the article once some body has been seen: the rest is footer.
    seen_body = 0
    for i, line in enumerate(kept):
        if _END_MARKERS.match(line) and seen_body >= 2:
            kept = kept[:i]
            break
        if _is_body_like(line) and not _is_boilerplate_line(line):
            seen_body += 1
    candidates = [line for line in kept if not _is_boilerplate_line(line)]

    body_idx = [i for i, line in enumerate(candidates) if _is_body_like(line)]
    if not body_idx:
        paragraphs = _dedupe(candidates)
        title = paragraphs[0] if paragraphs else ""
        return CleanResult("\n\n".join(paragraphs), title, raw_count - len(paragraphs))

    first, last = body_idx[0], body_idx[-1]
    # Short sentences right after the last long one ("Moscow denied it.") still belong to the body.
    while last + 1 < len(candidates) and _is_short_sentence(candidates[last + 1]):
        last += 1
    header = [_strip_boilerplate_sentences(line) for line in candidates[:first]]
    region = [line for line in candidates[first : last + 1] if _keep_in_body(line)]
    headlines = [line for line in header if _is_headline_like(line)]
    title = headlines[-1] if headlines else ""
    paragraphs = _dedupe(([title] if title else []) + region)
    return CleanResult("\n\n".join(paragraphs), title or paragraphs[0], raw_count - len(paragraphs))


def _is_short_sentence(line: str) -> bool:
    return _words(line) >= 2 and bool(_TERMINAL.search(line)) and not _LABEL.match(line)


def _keep_in_body(line: str) -> bool:
    """Inside the body, drop only section labels and menu-like fragments without punctuation."""
    return _words(line) >= MIN_BODY_WORDS or _is_short_sentence(line)


def _strip_boilerplate_sentences(line: str) -> str:
    """Drop site taglines glued to a headline: 'Headline. News of the day in the world'."""
    parts = re.split(r"(?<=[.!?])\s+", line)
    kept = [part for part in parts if not (_BOILERPLATE.search(part) and _words(part) <= MAX_BOILERPLATE_WORDS)]
    joined = " ".join(kept).strip()
    if joined.endswith(".") and len(kept) == 1 and len(parts) > 1:
        joined = joined[:-1]
    return joined


def _dedupe(paragraphs: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for paragraph in paragraphs:
        key = paragraph.casefold()
        if key not in seen:
            seen.add(key)
            out.append(paragraph)
    return out
