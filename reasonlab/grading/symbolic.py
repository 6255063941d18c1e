"""Symbolic answer equivalence for competition math (MATH).

:func:`normalize_latex` is a cheap, pure fast path. :func:`math_equal` calls math-verify and is
meant to run inside a :class:`reasonlab.grading.worker.WorkerPool` (it may hang in sympy);
math-verify is imported lazily, only there.

>>> normalize_latex(r"\\dfrac{1}{2}\\, .") == normalize_latex(r"\\frac{1}{2}")
True
"""
from __future__ import annotations

import importlib.util
import re

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
