"""Final-answer extraction from model completions.

All functions are pure and linear-time in the length of the text (no nested regex backtracking),
so they are safe on adversarial strings; tasks cap the completion length with their
``max_completion_chars`` option (default :data:`DEFAULT_MAX_COMPLETION_CHARS`, room for long
chain-of-thought outputs of 32k tokens and more).

Answer tags follow one rule for every task (:func:`answer_blocks`): the contents of well-paired
``<answer>...</answer>`` blocks are the candidates; a tag opened inside an open block, a closing
tag without an opener, an ``<answer>`` that is never closed, or more than
:data:`MAX_ANSWER_BLOCKS` blocks make the completion malformed (reason ``"bad_format"``), and no
other source is consulted. Every candidate, whatever its source, is then read by the same rule
(:mod:`reasonlab.grading.answer` for numbers).

>>> scan_tags("x</think>\\n<answer>18</answer>").blocks
('18',)
>>> answer_blocks("so <answer>8").malformed
True
>>> last_boxed(r"so \\boxed{\\frac{1}{2}} and finally \\fbox{3}")
'3'
>>> extract_final("He makes 9 * 2 = 18 dollars.\\n#### 18").candidates
('18',)
>>> last_number("so the total is 10^10.")
'10^10'
"""
from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_MAX_COMPLETION_CHARS = 1_000_000
MAX_ANSWER_CHARS = 1_000  # a longer "final answer" is malformed (and costly to scan)
MAX_ANSWER_BLOCKS = 16  # more blocks than this is malformed, not a list of answers to weigh

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_HASH_RE = re.compile(r"^[ \t]*####[ \t]*(.*)$", re.MULTILINE)
_ANSWER_IS_RE = re.compile(r"the (?:final )?answer is\s*:?", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)|\n")
_LAST_NUMBER_RE = re.compile(r"\d[\d,]*(?:\.\d+)?")
_RUN_OPERATORS = frozenset(".+-*/^()×÷−·$ \t")
_RUN_TAIL = frozenset(")⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻")


@dataclass(frozen=True)
class TagScan:
    """Result of scanning for ``<tag>...</tag>`` blocks.

    ``blocks`` are the contents of well-paired blocks in order; ``malformed`` is True when a tag
    opens inside an open block or a closing tag has no opener; ``unclosed`` when text ends inside
    an open block. Callers treat more than :data:`MAX_ANSWER_BLOCKS` blocks as malformed too.
    """

    blocks: tuple[str, ...]
    malformed: bool
    unclosed: bool

    @property
    def usable(self) -> bool:
        """Well formed, every tag closed, with at most :data:`MAX_ANSWER_BLOCKS` blocks."""
        return not (self.malformed or self.unclosed) and len(self.blocks) <= MAX_ANSWER_BLOCKS


def scan_tags(text: str, tag: str = "answer") -> TagScan:
    """Pair ``<tag>`` / ``</tag>`` in one left-to-right pass."""
    pattern = re.compile(rf"<(/?){re.escape(tag)}>")
    blocks: list[str] = []
    malformed = False
    open_end: int | None = None
    for match in pattern.finditer(text):
        closing = match.group(1) == "/"
        if not closing:
            malformed = malformed or open_end is not None
            open_end = match.end()
        elif open_end is None:
            malformed = True
        else:
            blocks.append(text[open_end:match.start()])
            open_end = None
    return TagScan(tuple(blocks), malformed, open_end is not None)


def _matching_braces(text: str) -> dict[int, int]:
    """Map the index of every ``{`` that gets closed to the index of its ``}`` (one pass)."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            pairs[stack.pop()] = i
    return pairs


def boxed_contents(text: str) -> list[str]:
    """Contents of every balanced ``\\boxed{...}`` / ``\\fbox{...}``, nested braces allowed."""
    starts = [m.end() - 1 for m in _BOXED_RE.finditer(text)]
    if not starts:
        return []
    pairs = _matching_braces(text)
    return [text[s + 1:pairs[s]] for s in starts if s in pairs]


def last_boxed(text: str) -> str | None:
    """The last balanced boxed answer (the convention of MATH solutions), or None."""
    found = boxed_contents(text)
    return found[-1] if found else None


def hash_answer(text: str) -> str | None:
    """The text after the last ``#### `` marker line (GSM8K reference format), or None."""
    found = _HASH_RE.findall(text)
    if not found or not found[-1].strip():
        return None
    return found[-1].strip()


def _last_match(pattern: re.Pattern, text: str) -> re.Match | None:
    last = None
    for match in pattern.finditer(text):
        last = match
    return last


def answer_is(text: str) -> str | None:
    """The rest of the sentence after the last "The answer is", or None."""
    last = _last_match(_ANSWER_IS_RE, text)
    if last is None:
        return None
    rest = text[last.end():]
    end = _SENTENCE_END_RE.search(rest)
    phrase = (rest[:end.start()] if end else rest).strip()
    return phrase or None


def _in_run(text: str, i: int) -> bool:
    ch = text[i]
    if ch == ",":  # a thousands separator, not a list comma
        return text[i + 1:i + 2].isdigit()
    return ch.isdigit() or ch in _RUN_OPERATORS


def last_number(text: str) -> str | None:
    """The arithmetic run that ends with the last number of the text, or None.

    The run reaches left over digits, operators, parentheses and spaces on the same line, but
    not over ``=``: ``"9 * 2 = 18"`` gives ``"18"``, ``"so 10^10"`` gives ``"10^10"``. It stops
    after :data:`MAX_ANSWER_CHARS` characters (a longer run is malformed anyway).
    """
    last = _last_match(_LAST_NUMBER_RE, text)
    if last is None:
        return None
    start, end = last.start(), last.end()
    limit = max(0, start - MAX_ANSWER_CHARS)
    while start > limit and _in_run(text, start - 1):
        start -= 1
    while end < len(text) and end - last.end() < MAX_ANSWER_CHARS and text[end] in _RUN_TAIL:
        end += 1
    return text[start:end].strip().rstrip(",") or None


@dataclass(frozen=True)
class Extraction:
    """Candidate final answers and where they came from (``"tag"``, ``"boxed"``, ...).

    Several candidates only come from several ``<answer>`` blocks; ``malformed`` flags nested or
    stray answer tags, too many blocks, or a candidate longer than :data:`MAX_ANSWER_CHARS`.
    """

    candidates: tuple[str, ...]
    source: str
    malformed: bool = False


def answer_blocks(text: str) -> Extraction | None:
    """The ``<answer>`` rule shared by every task: None when the text has no answer tag at all;
    a malformed Extraction when any tag is nested, stray or unclosed, or there are too many
    blocks; else the stripped block contents as candidates."""
    scan = scan_tags(text)
    if not scan.usable:
        return Extraction((), "tag", True)
    if not scan.blocks:
        return None
    return Extraction(tuple(b.strip() for b in scan.blocks), "tag")


def _single(source: str, finder):
    def extract(text: str) -> Extraction | None:
        found = finder(text)
        return None if found is None else Extraction((found.strip(),), source)
    return extract


EXTRACTORS = {
    "tag": answer_blocks,
    "boxed": _single("boxed", last_boxed),
    "hash": _single("hash", hash_answer),
    "answer_is": _single("answer_is", answer_is),
    "last_number": _single("last_number", last_number),
}
ALL_SOURCES = ("tag", "boxed", "hash", "answer_is", "last_number")


def extract_final(text: str, sources: tuple[str, ...] = ALL_SOURCES) -> Extraction | None:
    """Try each extractor in ``sources`` order; the first that finds something wins."""
    for source in sources:
        found = EXTRACTORS[source](text)
        if found is not None:
            if any(len(c) > MAX_ANSWER_CHARS for c in found.candidates):
                return Extraction((), found.source, True)
            return found
    return None
