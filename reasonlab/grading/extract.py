"""Final-answer extraction from model completions.

All functions are pure and linear-time in the length of the text (no nested regex backtracking),
so they are safe on adversarial strings. Callers cap the text length with :data:`MAX_TEXT_CHARS`.

>>> scan_tags("x</think>\\n<answer>18</answer>").blocks
('18',)
>>> last_boxed(r"so \\boxed{\\frac{1}{2}} and finally \\fbox{3}")
'3'
>>> extract_final("He makes 9 * 2 = 18 dollars.\\n#### 18").candidates
('18',)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TEXT_CHARS = 50_000
MAX_ANSWER_CHARS = 1_000  # a longer "final answer" is malformed (and costly to scan)
MAX_ANSWER_BLOCKS = 16  # more blocks than this is malformed, not a list of answers to weigh

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_HASH_RE = re.compile(r"^[ \t]*####[ \t]*(.*)$", re.MULTILINE)
_ANSWER_IS_RE = re.compile(r"the (?:final )?answer is\s*:?", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)|\n")
_LAST_NUMBER_RE = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?")


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
        """Well formed, with at most :data:`MAX_ANSWER_BLOCKS` blocks."""
        return not self.malformed and len(self.blocks) <= MAX_ANSWER_BLOCKS


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


def last_number(text: str) -> str | None:
    """The last number-looking token in the text, or None."""
    last = _last_match(_LAST_NUMBER_RE, text)
    return last.group(0).rstrip(",") if last else None


@dataclass(frozen=True)
class Extraction:
    """Candidate final answers and where they came from (``"tag"``, ``"boxed"``, ...).

    Several candidates only come from several ``<answer>`` blocks; ``malformed`` flags nested or
    stray answer tags, too many blocks, or a candidate longer than :data:`MAX_ANSWER_CHARS`.
    """

    candidates: tuple[str, ...]
    source: str
    malformed: bool = False


def _from_tags(text: str) -> Extraction | None:
    scan = scan_tags(text)
    if not scan.blocks:
        return Extraction((), "tag", True) if scan.malformed else None
    if len(scan.blocks) > MAX_ANSWER_BLOCKS:
        return Extraction((), "tag", True)
    return Extraction(tuple(b.strip() for b in scan.blocks), "tag", scan.malformed)


def _single(source: str, finder):
    def extract(text: str) -> Extraction | None:
        found = finder(text)
        return None if found is None else Extraction((found.strip(),), source)
    return extract


EXTRACTORS = {
    "tag": _from_tags,
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
