"""Symbolic answer equivalence for competition math (MATH).

:func:`normalize_latex` is a cheap, pure fast path. :func:`math_equal` calls math-verify and is
meant to run inside a :class:`reasonlab.grading.worker.WorkerPool` (it may hang in sympy);
math-verify is imported lazily, only there. :func:`too_costly` is the cheap pre-filter run
before a check is sent there: it refuses answers whose numbers would explode (power towers,
huge exponents, factorials, binomials or Gamma of huge arguments), so they never occupy a worker.

>>> normalize_latex(r"\\dfrac{1}{2}\\, .") == normalize_latex(r"\\frac{1}{2}")
True
>>> too_costly(r"9^{9^{9^{9^{9}}}}"), too_costly(r"2^{10} + x^{2}")
('huge exponent', None)
"""
from __future__ import annotations

import importlib.util
import math
import re
from fractions import Fraction

from reasonlab.grading.answer import normalize_candidate
from reasonlab.grading.expr import MAX_EXPONENT, NUMBERS, ExprError, ExprTooLarge, evaluate, parse

MAX_FACTORIAL_ARG = 1_000
MAX_BINOMIAL_ARG = 100_000
_GROWTH_RE = re.compile(r"\\(?:[dt]?binom|Gamma)\s*|\^|\*\*|!(?!=)")
_LIMITS = {"^": (MAX_EXPONENT, "huge exponent"), "**": (MAX_EXPONENT, "huge exponent"),
           "\\Gamma": (MAX_FACTORIAL_ARG, "huge factorial")}  # the rest are binomials
_PAIRS = {"{": "}", "(": ")", "[": "]"}
_BARE_ARG_RE = re.compile(r"\s*(?:[-+]?[0-9.]+(?:\s*(?:\^|\*\*)\s*(?:[-+]?[0-9.]+|\{[^{}]*\}))*"
                          r"|\\[A-Za-z]+|.)")

_DROP_RE = re.compile(r"\\left|\\right|\\[,;:! ]|\\displaystyle|\$|\s+")
_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")


def normalize_latex(text: str) -> str:
    """Light, meaning-preserving normalisation: spacing, ``\\dfrac``, ``\\left``, trailing dot."""
    text = _TEXT_RE.sub(r"\1", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _DROP_RE.sub("", text)
    return text.rstrip(".")


def has_math_verify() -> bool:
    """True if math-verify is importable (checked without importing it)."""
    return importlib.util.find_spec("math_verify") is not None


def require_math_verify() -> None:
    """Raise a helpful ImportError when math-verify is missing."""
    if not has_math_verify():
        raise ImportError(
            "the 'math' task needs math-verify for answer checking: pip install 'reasonlab[math]'"
        )


def _group_after(text: str, i: int) -> str:
    """The argument starting at ``text[i]``: a balanced ``{..}``/``(..)``/``[..]`` group's
    contents, else a number, a command or one character."""
    j = len(text) - len(text[i:].lstrip())
    if j < len(text) and text[j] in _PAIRS:
        opener, closer, depth = text[j], _PAIRS[text[j]], 0
        for k in range(j, len(text)):
            depth += (text[k] == opener) - (text[k] == closer)
            if depth == 0:
                return text[j + 1:k]
        return text[j + 1:]
    match = _BARE_ARG_RE.match(text, i)
    return match.group(0) if match else ""


def _group_before(text: str, i: int) -> str:
    """The operand that ends just before ``text[i]`` (for a postfix ``!``)."""
    j = i
    if j and text[j - 1] in ")}]":
        closer, depth = text[j - 1], 0
        opener = {")": "(", "}": "{", "]": "["}[closer]
        for k in range(j - 1, -1, -1):
            depth += (text[k] == closer) - (text[k] == opener)
            if depth == 0:
                return text[k + 1:j - 1]
        return text[:j - 1]
    while j and (text[j - 1].isdigit() or text[j - 1] == "."):
        j -= 1
    return text[j:i]


def _magnitude(text: str) -> float | None:
    """``|value|`` of a numeric argument; ``inf`` if it is too large to compute; None if it is
    not a plain number expression (symbols)."""
    try:
        value = evaluate(parse(normalize_candidate(text), NUMBERS))
    except ExprTooLarge:
        return math.inf
    except ExprError:
        return None
    return float(min(abs(value), Fraction(10) ** 20))


def too_costly(latex: str) -> str | None:
    """Why ``latex`` is refused before symbolic checking (None when it may be checked).

    Exponents (``^``, ``**``) whose numeric value exceeds ``MAX_EXPONENT`` (this is what stops
    power towers: ``9^{9^{9}}`` has the exponent 387420489), factorials and ``\\Gamma`` of
    more than :data:`MAX_FACTORIAL_ARG` and nested factorials, binomials of more than
    :data:`MAX_BINOMIAL_ARG`. Exponents with symbols pass (``e^{x^2}``).
    """
    for match in _GROWTH_RE.finditer(latex):
        op = match.group(0).strip()
        if op == "!":
            operand = _group_before(latex, match.start())
            size = math.inf if "!" in operand else _magnitude(operand)
            limit, why = MAX_FACTORIAL_ARG, "huge factorial"
        else:
            size = _magnitude(_group_after(latex, match.end()))
            limit, why = _LIMITS.get(op, (MAX_BINOMIAL_ARG, "huge binomial"))
        if size is not None and size > limit:
            return why
    return None


def warm_up() -> None:
    """One check of each kind, run once in the worker template so forked workers start warm."""
    math_equal("\\frac{1}{2}", "0.5")
    math_equal("x^2+2x+1", "(x+1)^2")


def _boxed(text: str) -> str:
    return "\\boxed{" + text + "}"


def math_equal(gold: str, pred: str) -> bool:
    """True iff math-verify judges ``pred`` equivalent to ``gold`` (both bare answers).

    Runs sympy; call it through a worker with a hard timeout, never inline in a server loop.
    """
    from math_verify import parse, verify

    gold_parsed = parse(_boxed(gold))
    pred_parsed = parse(_boxed(pred))
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed))
