"""Reading a final-answer candidate as one exact number: the rule for numeric tasks.

A *candidate* is the text one answer source yields (an ``<answer>`` block, a ``\\boxed{}``, a
``####`` line, the phrase after "The answer is", or the arithmetic run that ends a completion).
:func:`read_answer` reads it as a sequence of

* **value expressions**: exact arithmetic over numbers in the :data:`~reasonlab.grading.expr.
  NUMBERS` dialect: ``18``, ``-18``, ``1,000``, ``18.00``, ``.5``, ``1.8e1``, ``1/2``,
  ``\\frac{1}{2}``, ``\\sqrt{324}``, ``2^10`` / ``2**10`` (``^`` is power), ``10²``, ``3 × 6``,
  ``3 x 6``, ``12 ÷ 4``, parentheses and braces;
* **words**: runs of letters (units, labels, prose: ``dollars``, ``x =``, ``The answer is``);
  a unit may carry a power or a "per" (``cm²``, ``m^2``, ``km/h``, ``$18/day``);
* **punctuation**: ``. , ; : ! ? = " '``, dashes; ``%`` is a unit (``18%`` reads 18).

Before that, presentation is removed: currency signs (``$ € £ ...``, ``\\$``), ``$...$`` math
delimiters, LaTeX spacing, ``\\left``/``\\right``, ``\\text{...}`` (its words stay), a
``\\boxed{}`` wrapper, markdown emphasis (``**18**``: a ``*`` or ``**`` with no operand on one
side), zero-width and direction marks. Unicode digits read as digits (``١٨`` and ``１８`` are
18); superscript digits are exponents (``10²`` is 100).

The candidate **states v** iff it holds at least one value expression and all of them equal v
(``9 * 2 = 18 dollars`` states 18; ``x = 18`` states 18). Between ``=`` signs, a part without
any number is a label and is not read (``e = d - a = 50`` states 50). Otherwise the reading is

* ``bad_expression`` when the text is not in the grammar: an unknown symbol, LaTeX command or
  control character; an operator applied to a word or variable (``x - 5``, ``2x``, ``18 + x``,
  ``f(2)``, ``eval(18)``); ``18!`` (a factorial?); an expression over the limits
  (``10**10**10``), undefined (``1/0``) or irrational (``\\sqrt{2}``); or a *modifier word*
  that negates, hedges or changes the number (``not 6``, ``about 18``, ``18 or more``,
  ``half 36``, ``18 thousand``: see :data:`MODIFIERS`);
* ``no_answer`` when it holds no number at all (``eighteen``, ``NaN``, ``inf``);
* ``multiple_answers`` when its expressions disagree (``18 or 19``, ``5 - 5 = 5``, ``18, 19``).

An answer that is an expression is never graded by its last number: ``5-5`` states 0, ``2*2``
states 4, ``10^10`` states 10000000000.

>>> read_answer("The answer is $1,800.00 per month.")
Reading(value=Fraction(1800, 1), reason='ok')
>>> [read_answer(t).reason for t in ("not 6", "18 or 19", "eighteen", "10**10**10")]
['bad_expression', 'multiple_answers', 'no_answer', 'bad_expression']
>>> read_answer("5-5").value, read_answer("**١٨**").value, read_answer("10²").value
(Fraction(0, 1), Fraction(18, 1), Fraction(100, 1))
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction

from reasonlab.grading.expr import (
    NUMBERS,
    ExprError,
    Token,
    evaluate,
    parse_prefix,
    starts_operand,
    tokenize,
)
from reasonlab.grading.extract import MAX_ANSWER_CHARS, last_boxed

# words that negate, hedge, bound, scale or operate on a number: a careful grader would not
# read "not 6", "about 18", "18 or more", "half 36" or "18 thousand" as the bare number
MODIFIERS = frozenset("""
not no never none nor neither isn't isnt aren't wasn't weren't won't cannot can't without except
wrong incorrect false or either maybe perhaps possibly probably unless if otherwise
about approx approximately around roughly nearly almost circa estimated over under above below
least most than within between exceeds
plus minus negative half twice double triple thrice quarter square squared cube cubed root
power factorial divided multiplied
hundred hundreds thousand thousands million millions billion billions trillion trillions
dozen dozens lakh crore
""".split())
UNIT_LETTERS = frozenset("mgshlLKCFWJNV")  # single-letter unit symbols ("18 m", "5 kg" is a word)
TIMES_WORDS = frozenset("xX")  # "3 x 6" between two operands means multiplication

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻", "0123456789+-")
_SUPERSCRIPT_RE = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻]+")
_TEXT_RE = re.compile(r"\\(?:text|textbf|textrm|textnormal|mathrm|mbox|operatorname)\s*"
                      r"\{([^{}]*)\}")
_LATEX_DROP_RE = re.compile(r"\\(?:left|right|displaystyle|!|,|\(|\)|\[|\])(?![A-Za-z])|\$")
_LATEX_SPACE_RE = re.compile(r"\\(?:quad|qquad|;|:| )(?![A-Za-z])")
_LATEX_OPS = (("^{\\circ}", "°"), ("^\\circ", "°"), ("\\circ", "°"), ("\\degree", "°"),
              ("\\%", "%"), ("{,}", ","), ("\\times", "*"), ("\\cdot", "*"), ("\\ast", "*"),
              ("\\div", "/"), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\$", ""))
_CHAR_OPS = str.maketrans({"×": "*", "·": "*", "⋅": "*", "∗": "*", "÷": "/", "−": "-",
                           "⁄": "/", "∕": "/"})


@dataclass(frozen=True)
class Reading:
    """The number a candidate states (``reason == "ok"``), or why it states none."""

    value: Fraction | None
    reason: str


def _digit(ch: str) -> str:
    value = unicodedata.decimal(ch, None)
    return ch if value is None else str(value)


def normalize_digits(text: str) -> str:
    """Unicode decimal digits to ASCII; superscript runs to exponents (``x²`` -> ``x^{2}``)."""
    text = _SUPERSCRIPT_RE.sub(lambda m: "^{" + m.group(0).translate(_SUPERSCRIPTS) + "}", text)
    if text.isascii():
        return text
    return "".join(_digit(ch) if ch.isdigit() else ch for ch in text)


def _visible(ch: str) -> str:
    """Drop format characters (zero-width, direction marks) and currency signs."""
    return "" if unicodedata.category(ch) in ("Cf", "Sc") else ch


def normalize_candidate(text: str) -> str:
    """Remove presentation (see the module docstring); the result is what gets tokenized."""
    boxed = last_boxed(text)
    if boxed is not None:
        text = boxed
    text = unicodedata.normalize("NFKC", normalize_digits(text)).translate(_CHAR_OPS)
    text = _TEXT_RE.sub(r" \1", text)
    for old, new in _LATEX_OPS:
        text = text.replace(old, new)
    text = _LATEX_SPACE_RE.sub(" ", _LATEX_DROP_RE.sub("", text))
    return text if text.isascii() else "".join(_visible(ch) for ch in text)


def _operand_end(token: Token | None) -> bool:
    return token is not None and token.kind in ("num", "close", "pct")


def _touch(left: Token | None, right: Token | None) -> bool:
    return left is not None and right is not None and left.end == right.start


def _variable(text: str) -> bool:
    """A single Latin or Greek letter that is not a unit symbol: ``x``, ``n``, ``α``."""
    return len(text) == 1 and text not in UNIT_LETTERS and (
        text.isascii() or "\u0370" <= text <= "\u03ff")


def _unit(token: Token | None) -> bool:
    """A word that can be a unit (``cm``, ``m``, ``元``): letters, and not a variable."""
    return token is not None and token.kind == "word" and token.text.isalpha() and (
        not _variable(token.text))


def _unit_power_end(tokens: list[Token], i: int) -> int | None:
    """If ``tokens[i]`` is a ``^`` raising a unit (``cm^2``, ``m^{3}``, from ``cm²``), the index
    after the exponent; else None."""
    if not (tokens[i].text in ("^", "**") and i and _unit(tokens[i - 1])
            and _touch(tokens[i - 1], tokens[i])):
        return None
    kinds = [t.kind for t in tokens[i + 1:i + 4]]
    if kinds[:1] == ["num"]:
        return i + 2
    if kinds == ["open", "num", "close"]:
        return i + 4
    return None


def _rewrite_operators(tokens: list[Token]) -> list[Token]:
    """``x`` between operands becomes ``*``; ``*``/``**`` without an operand on one side is
    markdown emphasis and is dropped; ``sqrt(`` is the square-root function; ``/`` glued
    before a unit means "per" (``18/h``, ``km/h``); a power of a unit is dropped (``cm²``)."""
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        token, prev = tokens[i], (out[-1] if out else None)
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        between = _operand_end(prev) and starts_operand(nxt, NUMBERS)
        skip_to = _unit_power_end(tokens, i)
        if skip_to is not None:
            i = skip_to
            continue
        if token.kind == "word" and token.text in TIMES_WORDS and between:
            token = Token("op", "*", token.start, token.end)
        elif token.kind == "op" and token.text in ("*", "**") and not between:
            i += 1
            continue
        elif token.text == "sqrt" and nxt is not None and nxt.text == "(" and _touch(token, nxt):
            token = Token("func", "√", token.start, token.end)
        elif token.text == "/" and _touch(prev, token) and _touch(token, nxt) and _unit(nxt):
            token = Token("punct", "/", token.start, token.end)
        out.append(token)
        i += 1
    return out


def _bad_word(tokens: list[Token], i: int) -> bool:
    """A word used as an operand or a function: ``2x``, ``x - 5``, ``-x``, ``f(2)``, ``5kg2``."""
    word = tokens[i]
    prev = tokens[i - 1] if i else None
    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
    if _touch(word, nxt) and nxt.kind in ("open", "op", "num", "func"):
        return True
    if _touch(prev, word) and prev.kind == "op":
        return True
    glued_after = _touch(prev, word) and _operand_end(prev)
    if glued_after and not word.text.isalpha():
        return True
    near_operator = any(t is not None and t.kind == "op" for t in (prev, nxt))
    return _variable(word.text) and (glued_after or near_operator)


def _sides(tokens: list[Token]) -> list[list[Token]]:
    """The token runs between ``=`` signs outside brackets."""
    sides: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        depth = max(0, depth + (token.kind == "open") - (token.kind == "close"))
        if token.text == "=" and depth == 0:
            sides.append([])
        else:
            sides[-1].append(token)
    return sides


def _scan_side(tokens: list[Token], values: list[Fraction]) -> None:
    """Append the values of the expressions in one side; ExprError for text outside the
    grammar. A side without numbers is a label (``e = d - a = 50``) and is not checked."""
    if not any(t.kind == "num" for t in tokens):
        return
    i = 0
    while i < len(tokens):
        token = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        grouping = token.kind != "open" or starts_operand(nxt, NUMBERS)  # not "(in dollars)"
        if grouping and starts_operand(token, NUMBERS):
            node, i = parse_prefix(tokens, i)
            values.append(evaluate(node))
            continue
        if token.kind == "op":
            raise ExprError(f"operator {token.text!r} without operands")
        if token.text == "!" and i and _operand_end(tokens[i - 1]) and _touch(tokens[i - 1], token):
            raise ExprError("'!' after a number may be a factorial")
        if token.kind == "word" and _bad_word(tokens, i):
            raise ExprError(f"{token.text!r} used as a variable or function")
        i += 1


def _has_modifier(tokens: list[Token]) -> bool:
    return any(t.kind == "word" and t.text.lower().replace("’", "'") in MODIFIERS for t in tokens)


def read_answer(text: str) -> Reading:
    """The exact number ``text`` states, by the grammar in the module docstring."""
    if len(text) > MAX_ANSWER_CHARS:
        return Reading(None, "bad_expression")
    try:
        tokens = _rewrite_operators(tokenize(normalize_candidate(text), NUMBERS))
        values: list[Fraction] = []
        for side in _sides(tokens):
            _scan_side(side, values)
    except ExprError:
        return Reading(None, "bad_expression")
    if not values:
        return Reading(None, "no_answer")
    if any(v != values[0] for v in values):
        return Reading(None, "multiple_answers")
    if _has_modifier(tokens):
        return Reading(None, "bad_expression")
    return Reading(values[0], "ok")
