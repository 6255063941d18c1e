"""Multi-step arithmetic chains with named variables, the embedded default task.

Question: ``a = 7, b = 12. c = a + b. d = c * 3. e = d - a. What is e?``
Trace (one step per line)::

    c = a + b = 7 + 12 = 19
    d = c * 3 = 19 * 3 = 57
    e = d - a = 57 - 7 = 50
    </think>
    <answer>50</answer>

:meth:`ArithTask.trace` can inject plausible arithmetic slips that propagate to later steps, and
visible self-corrections (``wait, 19 * 3 = 56 is wrong. 19 * 3 = 57``), with oracle step labels
from :meth:`ArithTask.trace_with_labels` for training process reward models.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from reasonlab.grading.extract import DEFAULT_MAX_COMPLETION_CHARS
from reasonlab.tasks.base import Task, r1_completion

VARIABLES = "abcdefghjkmnpqrstuvwxyz"  # i, l, o skipped: they look like 1 and 0
N_INPUTS = 2
MAX_ABS_VALUE = 10_000
MAX_SMALL_FACTOR = 12
REFLECTION_MARKER = "wait,"
OPS = ("+", "-", "*")
# The second notation of the same reasoning (``trace(notation="words")``): one table, both ways.
OP_WORDS = {"+": "plus", "-": "minus", "*": "times"}
NOTATIONS = ("symbols", "words", "mixed")
_SYMBOL_LINE = re.compile(r"-?\(?\d+\)? [-+*] \(?-?\d+\)? = ")
_WORD_LINE = re.compile(r"\(?-?\d+\)? (?:plus|minus|times) \(?-?\d+\)? makes ")


@dataclass(frozen=True)
class Step:
    """``target = left op right``; operands are variable names or integer literals (as text)."""

    target: str
    left: str
    op: str
    right: str

    def text(self) -> str:
        return f"{self.target} = {self.left} {self.op} {self.right}"

    def words(self) -> str:
        return f"{self.target} is {self.left} {OP_WORDS[self.op]} {self.right}"


def step_line(step: Step, lv: int, rv: int, result: int, notation: str) -> tuple[str, str]:
    """(the step's line, its bare computation) in ``symbols`` (``c = a + b = 7 + 12 = 19``)
    or ``words`` (``c is a plus b, 7 plus 12 makes 19``)."""
    if notation == "words":
        calc = f"{show(lv)} {OP_WORDS[step.op]} {show(rv)}"
        return f"{step.words()}, {calc} makes {result}", calc
    calc = f"{show(lv)} {step.op} {show(rv)}"
    return f"{step.text()} = {calc} = {result}", calc


def line_notation(line: str) -> str | None:
    """Which notation a reasoning line computes in: ``symbols``, ``words`` or None (neither).

    >>> line_notation("c = a + b = 7 + 12 = 19"), line_notation("c is a plus b, 7 plus 12 makes 19")
    ('symbols', 'words')
    >>> line_notation("hello") is None
    True
    """
    if _SYMBOL_LINE.search(line):
        return "symbols"
    if _WORD_LINE.search(line):
        return "words"
    return None


def notation_consistency(thinking: str) -> float:
    """Share of the computing lines written in the notation most of them use (1.0: one notation
    throughout; 0.5: half and half); 0 when no line computes.

    >>> notation_consistency("c = a + b = 7 + 12 = 19\\nd is c times 2, 19 times 2 makes 38")
    0.5
    """
    kinds = [k for k in map(line_notation, thinking.split("\n")) if k is not None]
    if not kinds:
        return 0.0
    return max(kinds.count("symbols"), kinds.count("words")) / len(kinds)


def apply(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def show(value: int) -> str:
    """A value as it appears inside a computation: negatives in parentheses."""
    return f"({value})" if value < 0 else str(value)


def operand_value(operand: str, values: dict[str, int]) -> int:
    return values[operand] if operand in values else int(operand)


def _pick_range(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    lo, hi = value
    if lo > hi:
        raise ValueError(f"arith: {name} range ({lo}, {hi}) is empty")
    return int(lo), int(hi)


def _ok(op: str, a: int, b: int, max_value: int = MAX_ABS_VALUE) -> bool:
    if op == "*" and min(abs(a), abs(b)) > MAX_SMALL_FACTOR:
        return False
    return abs(apply(op, a, b)) <= max_value


def _sample_step(rng: random.Random, target: str, values: dict[str, int],
                 last: str, max_operand: int, max_value: int = MAX_ABS_VALUE) -> Step:
    """One random step whose result stays within ``max_value`` in absolute value."""
    names = list(values)
    for _ in range(30):
        op = rng.choice(OPS)
        left = last if rng.random() < 0.7 else rng.choice(names)
        others = [n for n in names if n != left]
        if rng.random() < 0.5 and others:
            right = rng.choice(others)
        elif op == "*":
            right = str(rng.randint(2, max(2, min(9, max_operand))))
        else:
            right = str(rng.randint(1, max_operand))
        if _ok(op, values[left], operand_value(right, values), max_value):
            return Step(target, left, op, right)
    op = "-" if values[last] > 0 else "+"
    return Step(target, last, op, str(rng.randint(1, max_operand)))


def wrong_value(value: int, rng: random.Random, avoid: int | None = None) -> int:
    """A plausible slip: off by 1..10, or one digit replaced; never ``value`` nor ``avoid``."""
    while True:
        slipped = _slip(value, rng)
        if slipped != avoid:
            return slipped


def _slip(value: int, rng: random.Random) -> int:
    digits = str(abs(value))
    if rng.random() < 0.5 or len(digits) < 2:
        return value + rng.choice((-1, 1)) * rng.randint(1, 10)
    pos = rng.randrange(len(digits))
    choices = [d for d in "0123456789" if d != digits[pos] and not (pos == 0 and d == "0")]
    slipped = int(digits[:pos] + rng.choice(choices) + digits[pos + 1:])
    return -slipped if value < 0 else slipped


class ArithTask(Task):
    """Arithmetic chains. Difficulty: ``steps`` (int or (lo, hi)), ``max_operand`` (int, largest
    input or literal) and ``max_value`` (int, bound on every intermediate value's magnitude).

    ``lenient=True`` also accepts answers outside ``<answer>`` tags (boxed, ``####``, "The answer
    is", the final arithmetic run), for prompts other than ``r1``. Answers are read by the
    candidate grammar of :mod:`reasonlab.grading.answer`; ``max_completion_chars`` caps the
    completion length (longer is ``"bad_format"``).
    """

    name = "arith"
    step_separator = "\n"
    reflection_marker = REFLECTION_MARKER
    difficulty_keys = ("steps", "max_operand", "max_value")

    def __init__(self, lenient: bool = False,
                 max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS):
        super().__init__(max_completion_chars)
        if not lenient:
            self.answer_sources = ("tag",)

    def _sample(self, rng: random.Random, steps=(2, 4), max_operand: int = 20,
                max_value: int = MAX_ABS_VALUE) -> dict:
        lo, hi = _pick_range(steps, "steps")
        if not 1 <= lo <= hi <= len(VARIABLES) - N_INPUTS:
            raise ValueError(f"arith: steps must be within 1..{len(VARIABLES) - N_INPUTS}")
        if not 1 <= max_operand <= max_value <= MAX_ABS_VALUE:
            raise ValueError(f"arith: need 1 <= max_operand <= max_value <= {MAX_ABS_VALUE}")
        n_steps = rng.randint(lo, hi)
        values = {VARIABLES[i]: rng.randint(1, max_operand) for i in range(N_INPUTS)}
        inputs = dict(values)
        program: list[Step] = []
        last = VARIABLES[N_INPUTS - 1]
        for i in range(n_steps):
            step = _sample_step(rng, VARIABLES[N_INPUTS + i], values, last, max_operand, max_value)
            values[step.target] = apply(step.op, values[step.left],
                                        operand_value(step.right, values))
            program.append(step)
            last = step.target
        given = ", ".join(f"{k} = {v}" for k, v in inputs.items())
        body = " ".join(f"{s.text()}." for s in program)
        question = f"{given}. {body} What is {last}?"
        meta = {"steps": n_steps, "max_operand": max_operand, "max_value": max_value, "inputs": inputs,
                "program": [[s.target, s.left, s.op, s.right] for s in program],
                "values": values, "target": last}
        return {"question": question, "answer": str(values[last]), "meta": meta}

    def trace_with_labels(self, example: dict, rng: random.Random, error_rate: float = 0.0,
                          correction_rate: float = 0.0, notation: str = "symbols", words_share: float | dict = 0.5,
                          op_error_rates: dict | None = None) -> tuple[str, list[tuple[str, bool]]]:
        """The completion and ``(step_text, correct)`` per reasoning line.

        Each step is wrong with probability ``error_rate`` (never accidentally equal to the true
        value; the wrong value propagates); a wrong step is followed by a ``wait, ...``
        correction line with probability ``correction_rate``.
        A line is labelled correct iff afterwards every variable computed so far holds its true
        value (Math-Shepherd style oracle).

        ``notation``: ``symbols`` (default), ``words``, or ``mixed`` (each step in words with
        probability ``words_share``, a number or ``{op: probability}``: a writer who switches to
        the notation that suits each operation). ``op_error_rates`` (``{notation: {op: rate}}``) overrides
        ``error_rate`` per notation and operator, so one notation can be the more reliable one
        for some operations (what makes mixing them pay, see ``recipes/notation_tiny.yaml``).
        With the defaults the rng is drawn exactly as before the notations existed.
        """
        if notation not in NOTATIONS:
            raise ValueError(f"arith: notation must be one of {NOTATIONS}, got {notation!r}")
        rates = op_error_rates or {}
        meta = example["meta"]
        truth = meta["values"]
        believed = dict(meta["inputs"])
        steps: list[tuple[str, bool]] = []

        def all_true() -> bool:
            return all(believed[k] == truth[k] for k in believed)

        for target, left, op, right in meta["program"]:
            step = Step(target, left, op, right)
            lv, rv = operand_value(left, believed), operand_value(right, believed)
            result = apply(op, lv, rv)
            share = words_share.get(op, 0.5) if isinstance(words_share, dict) else words_share
            style = notation if notation != "mixed" else ("words" if rng.random() < share else "symbols")
            eq = " makes " if style == "words" else " = "
            if rng.random() < rates.get(style, {}).get(op, error_rate):
                believed[target] = wrong_value(result, rng, avoid=truth[target])
                line, calc = step_line(step, lv, rv, believed[target], style)
                steps.append((line, all_true()))
                if rng.random() < correction_rate:
                    line = (f"{REFLECTION_MARKER} {calc}{eq}{believed[target]} is wrong. "
                            f"{calc}{eq}{result}")
                    believed[target] = result
                    steps.append((line, all_true()))
            else:
                believed[target] = result
                steps.append((step_line(step, lv, rv, result, style)[0], all_true()))
        text = r1_completion([s for s, _ in steps], str(believed[meta["target"]]),
                             self.step_separator)
        return text, steps

    def trace(self, example: dict, rng: random.Random, error_rate: float = 0.0,
              correction_rate: float = 0.0, **notation) -> str:
        """Completion text; equals ``trace_with_labels(...)[0]`` for the same rng state
        (``notation``: the notation options of :meth:`trace_with_labels`)."""
        return self.trace_with_labels(example, rng, error_rate, correction_rate, **notation)[0]

    def language_consistency(self, thinking: str) -> float:
        """The share of computing lines in the majority notation (symbols or words; see
        :func:`notation_consistency`)."""
        return notation_consistency(thinking)

    def worked_solution(self, example: dict) -> str:
        _, steps = self.trace_with_labels(example, random.Random(0))
        lines = [s for s, _ in steps]
        return "\n".join(lines + [f"The answer is {example['answer']}."])
