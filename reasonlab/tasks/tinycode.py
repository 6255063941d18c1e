"""Tiny-code: procedurally generated one-function Python problems a tiny character-level model
can learn on CPU.

A problem states a chain of integer operations in words and one worked example; the answer is a
function ``f`` computing it, checked by hidden tests on more inputs (so hard-coding the example
fails)::

    Write f(x): add 3, then multiply by 2. Example: f(4) = 14.

    def f(x):
        return (x + 3) * 2

Levels: 1, one of ``+ - *``; 2, a chain of ``+ - *``; 3, a chain that may also floor-divide,
take a remainder or square; 4, a two-branch ``if x > k`` with a level-2 chain on each branch.
Difficulty options: ``level`` (1-4, default 2), ``ops`` (operations per chain, int or (lo, hi)) and
``max_operand`` (largest constant, default 9; level 1 has only 26 distinct functions with 9).
Every character of questions, traces and code is in the tiny model's tokenizer (newline and
printable ASCII; indentation by spaces, never tabs). Expected values come from the chain itself
(Python's integer semantics), never from ``eval``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

LEVELS = (1, 2, 3, 4)
DEFAULT_OPS = {1: (1, 1), 2: (2, 3), 3: (2, 3), 4: (1, 2)}
N_TESTS = 6
MAX_VALUE = 100_000
INPUTS = {1: (0, 20), 2: (0, 20), 3: (0, 20), 4: (-10, 20)}
PHRASES = {"+": "add {a}", "-": "subtract {a}", "*": "multiply by {a}", "//": "floor-divide by {a}",
           "%": "take the remainder mod {a}", "**": "square it"}
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2, "%": 2, "**": 3}
LEVEL_OPS = {1: ("+", "-", "*"), 2: ("+", "-", "*"), 3: ("+", "-", "*", "//", "%", "**"),
             4: ("+", "-", "*")}


@dataclass(frozen=True)
class Op:
    """One step ``acc = acc <symbol> operand`` (``**`` always squares)."""

    symbol: str
    operand: int

    def apply(self, value: int) -> int:
        a = self.operand
        return {"+": value + a, "-": value - a, "*": value * a, "//": value // a if a else 0,
                "%": value % a if a else 0, "**": value * value}[self.symbol]

    def phrase(self) -> str:
        return PHRASES[self.symbol].format(a=self.operand)

    def code(self) -> str:
        return "** 2" if self.symbol == "**" else f"{self.symbol} {self.operand}"


def run_chain(chain: tuple[Op, ...], x: int) -> int:
    for op in chain:
        x = op.apply(x)
    return x


def chain_expr(chain: tuple[Op, ...], var: str = "x") -> str:
    """The chain as one Python expression with the fewest parentheses.

    >>> chain_expr((Op("+", 3), Op("*", 2))), chain_expr((Op("*", 3), Op("+", 1)))
    ('(x + 3) * 2', 'x * 3 + 1')
    >>> chain_expr((Op("*", 3), Op("**", 2)))
    '(x * 3) ** 2'
    """
    text, prec = var, 4
    for op in chain:
        p = PRECEDENCE[op.symbol]
        if prec < p or (op.symbol == "**" and prec <= p):
            text = f"({text})"
        text, prec = f"{text} {op.code()}", p
    return text


def chain_phrase(chain: tuple[Op, ...]) -> str:
    return ", then ".join(op.phrase() for op in chain)


def show(value: int) -> str:
    """A value inside a computation: negatives in parentheses (as in arith traces)."""
    return f"({value})" if value < 0 else str(value)


def chain_steps(chain: tuple[Op, ...], x: int) -> list[str]:
    """``["4 + 3 = 7", "7 * 2 = 14"]``: the chain evaluated one operation a line."""
    lines = []
    for op in chain:
        y = op.apply(x)
        lines.append(f"{show(x)} {op.code()} = {y}" if op.symbol == "**"
                     else f"{show(x)} {op.symbol} {op.operand} = {y}")
        x = y
    return lines


def _pick(value, name: str) -> tuple[int, int]:
    lo, hi = (value, value) if isinstance(value, int) else value
    if not 1 <= lo <= hi <= 6:
        raise ValueError(f"code: {name} must be within 1..6, got {value!r}")
    return int(lo), int(hi)


def _sample_op(rng: random.Random, symbols: tuple[str, ...], used_square: bool,
               max_operand: int = 9) -> Op:
    choices = [s for s in symbols if not (s == "**" and used_square)]
    symbol = rng.choice(choices)
    if symbol == "**":
        return Op("**", 2)
    low = 2 if symbol in ("*", "//", "%") else 1
    return Op(symbol, rng.randint(low, max_operand))


def sample_chain(rng: random.Random, n_ops: int, symbols: tuple[str, ...], inputs: tuple[int, int],
                 max_operand: int = 9) -> tuple[Op, ...]:
    """A chain of ``n_ops`` operations whose values stay within :data:`MAX_VALUE` on ``inputs``."""
    for _ in range(100):
        chain: list[Op] = []
        for _ in range(n_ops):
            chain.append(_sample_op(rng, symbols, any(op.symbol == "**" for op in chain), max_operand))
        values = [run_chain(tuple(chain[:k]), x) for x in inputs for k in range(1, n_ops + 1)]
        identity = all(run_chain(tuple(chain), x) == x for x in range(inputs[0], inputs[1] + 1))
        if all(abs(v) <= MAX_VALUE for v in values) and not identity:
            return tuple(chain)
    return (Op("+", 1),) * n_ops


def test_inputs(rng: random.Random, level: int, example: int, threshold: int | None) -> list[int]:
    """The example input first, then distinct others; level 4 covers both branches."""
    lo, hi = INPUTS[level]
    pool = [v for v in range(lo, hi + 1) if v != example]
    rng.shuffle(pool)
    if threshold is None:
        return [example] + pool[:N_TESTS - 1]
    above = [v for v in pool if v > threshold][:(N_TESTS - 1) // 2]
    below = [v for v in pool if v <= threshold][:N_TESTS - 1 - len(above)]
    return [example] + above + below


def sample(rng: random.Random, level: int = 2, ops=None, max_operand: int = 9) -> dict:
    """One problem ``{"question", "answer", "meta"}`` (see the module docstring)."""
    if level not in LEVELS:
        raise ValueError(f"code: level must be one of {LEVELS}, got {level!r}")
    if not isinstance(max_operand, int) or not 2 <= max_operand <= 1000:
        raise ValueError(f"code: max_operand must be an integer within 2..1000, got {max_operand!r}")
    lo, hi = _pick(ops if ops is not None else DEFAULT_OPS[level], "ops")
    symbols, span = LEVEL_OPS[level], INPUTS[level]
    if level < 4:
        chain = sample_chain(rng, rng.randint(lo, hi), symbols, span, max_operand)
        example = rng.randint(0, 9)
        value = run_chain(chain, example)
        question = f"Write f(x): {chain_phrase(chain)}. Example: f({example}) = {value}."
        code = f"def f(x):\n    return {chain_expr(chain)}"
        spec = {"chains": [[[op.symbol, op.operand] for op in chain]], "threshold": None}
        inputs = test_inputs(rng, level, example, None)
        expected = [run_chain(chain, x) for x in inputs]
        examples = [example]
    else:
        threshold = rng.randint(0, 9)
        then = sample_chain(rng, rng.randint(lo, hi), symbols, span, max_operand)
        other = sample_chain(rng, rng.randint(lo, hi), symbols, span, max_operand)
        examples = [rng.randint(threshold + 1, threshold + 9), rng.randint(threshold - 9, threshold)]
        values = [run_chain(then, examples[0]), run_chain(other, examples[1])]
        question = (f"Write f(x): if x > {threshold}, {chain_phrase(then)}; otherwise "
                    f"{chain_phrase(other)}. Example: f({examples[0]}) = {values[0]}, "
                    f"f({examples[1]}) = {values[1]}.")
        code = (f"def f(x):\n    if x > {threshold}:\n        return {chain_expr(then)}\n"
                f"    return {chain_expr(other)}")
        spec = {"chains": [[[op.symbol, op.operand] for op in c] for c in (then, other)],
                "threshold": threshold}
        inputs = test_inputs(rng, level, examples[0], threshold)
        inputs = inputs[:1] + [examples[1]] + [v for v in inputs[1:] if v != examples[1]][:N_TESTS - 2]
        expected = [evaluate(spec, x) for x in inputs]
    tests = [f"assert f({x}) == {y}" for x, y in zip(inputs, expected)]
    meta = {"source": "tiny", "level": level, "entry_point": "f", "prefix": "", "setup": "",
            "tests": tests, "examples": examples, **spec}
    return {"question": question, "answer": code, "meta": meta}


def chains_of(meta: dict) -> list[tuple[Op, ...]]:
    return [tuple(Op(s, a) for s, a in chain) for chain in meta["chains"]]


def evaluate(meta: dict, x: int) -> int:
    """The problem's function at ``x``, from its stored chains."""
    chains = chains_of(meta)
    if meta.get("threshold") is None:
        return run_chain(chains[0], x)
    return run_chain(chains[0] if x > meta["threshold"] else chains[1], x)


def trace_lines(meta: dict) -> list[str]:
    """Reasoning lines: each example evaluated one operation a line.

    >>> trace_lines({"chains": [[["+", 3], ["*", 2]]], "threshold": None, "examples": [4]})
    ['f(4): 4 + 3 = 7', '7 * 2 = 14']
    """
    chains, lines = chains_of(meta), []
    for i, x in enumerate(meta["examples"]):
        if meta.get("threshold") is None:
            head, chain = f"f({x}): ", chains[0]
        else:
            above = x > meta["threshold"]
            head = f"f({x}): {x} > {meta['threshold']} is {'true' if above else 'false'}, so "
            chain = chains[0] if above else chains[1]
        steps = chain_steps(chain, x)
        lines += [head + steps[0]] + steps[1:]
    return lines
