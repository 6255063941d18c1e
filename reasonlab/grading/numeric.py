"""Exact numbers for final answers: parse, compare, and the majority-vote key.

Numbers are compared as :class:`fractions.Fraction`, never as floats, so ``"0.333"`` and ``1/3``
differ while ``"18"``, ``"18.0"``, ``"$18"`` and ``"18 dollars"`` are the same number. What text
states which number is decided by the candidate grammar of :mod:`reasonlab.grading.answer`.

>>> parse_number("$1,800.00")
Fraction(1800, 1)
>>> canonical_number("0.50") == canonical_number("1/2") == canonical_number(r"\\frac{1}{2}")
True
>>> parse_number("18 or 19") is None, parse_number("5-5")
(True, Fraction(0, 1))
"""
from __future__ import annotations

from fractions import Fraction

from reasonlab.grading.answer import read_answer


def parse_number(text: str) -> Fraction | None:
    """The single number ``text`` states (units, ``$``, ``%``, commas tolerated), else None.

    >>> parse_number("18 dollars."), parse_number("not 18"), parse_number("-3/4")
    (Fraction(18, 1), None, Fraction(-3, 4))
    """
    return read_answer(text).value


def format_fraction(value: Fraction) -> str:
    """``"7"`` for integers, ``"p/q"`` otherwise."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator}"


def canonical_number(text: str) -> str:
    """Vote key for a numeric answer: ``"0.5"``, ``"1/2"``, ``"0.50"`` all give ``"1/2"``.

    Text that does not state one number is returned with whitespace removed.
    """
    value = parse_number(text)
    if value is None:
        return "".join(text.split())
    return format_fraction(value)


def numbers_equal(a: str, b: str) -> bool:
    """True iff both texts state one number each and the numbers are exactly equal."""
    va, vb = parse_number(a), parse_number(b)
    return va is not None and vb is not None and va == vb
