"""Exact number parsing and comparison for final answers.

Numbers are compared as :class:`fractions.Fraction`, never as floats, so ``"0.333"`` and ``1/3``
differ while ``"18"``, ``"18.0"``, ``"$18"`` and ``"18 dollars"`` are the same number.

Only ASCII digits count as digits (unicode digits such as ``"١٢"`` are not numbers here), and a
number token is capped at :data:`MAX_DIGITS` digits so adversarial inputs stay cheap.

>>> parse_number("$1,800.00")
Fraction(1800, 1)
>>> canonical_number("0.50") == canonical_number("1/2")
True
>>> numbers_in("18 or 19 apples")
[Fraction(18, 1), Fraction(19, 1)]
"""
from __future__ import annotations

import re
from fractions import Fraction

MAX_DIGITS = 64

_SIGN = r"[-\u2212]?"
_GROUPED = r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?"
_PLAIN = r"[0-9]+(?:\.[0-9]+)?(?:\s*/\s*[0-9]+(?![0-9.]))?"
_LEADING_DOT = r"\.[0-9]+"
# a number token: optional sign, optional currency symbol, then grouped / plain / fraction
NUMBER_RE = re.compile(
    rf"(?<![0-9.])({_SIGN})[ ]?\\?\$?[ ]?({_GROUPED}|{_PLAIN}|{_LEADING_DOT})(?![0-9])"
)
_LATEX_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{\s*(-?[0-9]+)\s*\}\s*\{\s*(-?[0-9]+)\s*\}")
_DECORATION_RE = re.compile(r"\\text\{[^{}]*\}|\\[,;!]|\\%|[%$]|\\\$|\\left|\\right")


def _token_value(sign: str, body: str) -> Fraction | None:
    """Value of one matched number token, or None if it is too long or has a zero denominator."""
    digits = sum(ch.isdigit() for ch in body)
    if digits > MAX_DIGITS:
        return None
    text = body.replace(",", "").replace(" ", "")
    if "/" in text:
        num, den = text.split("/", 1)
        if int(den) == 0:
            return None
        value = Fraction(num) / Fraction(den)
    else:
        value = Fraction(text)
    return -value if sign else value


def _unlatex(text: str) -> str:
    """Rewrite ``\\frac{a}{b}`` as ``a/b`` and drop ``$``, ``%``, ``\\text{..}`` decorations."""
    text = _LATEX_FRAC_RE.sub(lambda m: f"{m.group(1)}/{m.group(2)}", text)
    return _DECORATION_RE.sub(" ", text)


def numbers_in(text: str) -> list[Fraction]:
    """Every number mentioned in ``text``, in order (tokens that are too long are skipped).

    >>> numbers_in("The total is $1,800, i.e. 3/4 of 2400.")
    [Fraction(1800, 1), Fraction(3, 4), Fraction(2400, 1)]
    """
    values = []
    for match in NUMBER_RE.finditer(_unlatex(text)):
        value = _token_value(match.group(1), match.group(2))
        if value is not None:
            values.append(value)
    return values


def distinct_numbers(text: str) -> list[Fraction]:
    """The different numbers in ``text``, in order of first appearance."""
    seen: list[Fraction] = []
    for value in numbers_in(text):
        if value not in seen:
            seen.append(value)
    return seen


def parse_number(text: str) -> Fraction | None:
    """The single number stated in ``text`` (units, ``$``, ``%``, commas tolerated), else None.

    Returns None when there is no number or when two *different* numbers are stated.

    >>> parse_number("18 dollars."), parse_number("18 or 19"), parse_number("-3/4")
    (Fraction(18, 1), None, Fraction(-3, 4))
    """
    values = distinct_numbers(text)
    return values[0] if len(values) == 1 else None


def format_fraction(value: Fraction) -> str:
    """``"7"`` for integers, ``"p/q"`` otherwise."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator}"


def canonical_number(text: str) -> str:
    """Vote key for a numeric answer: ``"0.5"``, ``"1/2"``, ``"0.50"`` all give ``"1/2"``.

    Text that is not exactly one number is returned with whitespace removed.
    """
    value = parse_number(text)
    if value is None:
        return "".join(text.split())
    return format_fraction(value)


def numbers_equal(a: str, b: str) -> bool:
    """True iff both texts state one number each and the numbers are exactly equal."""
    va, vb = parse_number(a), parse_number(b)
    return va is not None and vb is not None and va == vb
