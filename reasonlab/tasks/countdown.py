"""Countdown (the TinyZero task): combine the given numbers, each exactly once, into the target.

Question: ``Using the numbers [3, 7, 25, 50], make 125. Use each number once with + - * / and
parentheses.`` Any valid expression is correct; the verifier parses it with the ``INTEGERS``
dialect of :mod:`reasonlab.grading.expr` (never ``eval``), evaluates exactly, and checks the
numbers used. The answer is found by the shared ``<answer>`` rule and its presentation removed
as for every numeric answer (:func:`reasonlab.grading.answer.normalize_candidate`: ``×``,
``\\times``, Unicode digits, ``$...$``, a ``\\boxed{}`` wrapper); an optional ``= target``
is checked. Unary minus, powers, decimals and other symbols are ``"bad_expression"``.

Only solvable problems are generated: the target is built from a random expression tree over
the numbers (positive integer intermediate values). Traces are Stream-of-Search style DFS with
backtracking (see :meth:`CountdownTask.trace`).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from fractions import Fraction

from reasonlab.grading.expr import (
    MAX_EXPR_CHARS,
    BinOp,
    ExprError,
    Node,
    Num,
    evaluate,
    literals,
    parse,
    to_str,
)
from reasonlab.grading.answer import normalize_candidate, read_answer
from reasonlab.grading.extract import DEFAULT_MAX_COMPLETION_CHARS, extract_final
from reasonlab.tasks.base import Task, Verdict, r1_completion

MAX_INTERMEDIATE = 100_000


@dataclass(frozen=True)
class Item:
    """A number available in a search state, with the expression that produced it."""

    value: int
    node: Node


def combine(a: Item, b: Item, op: str) -> Item | None:
    """``a op b`` under the generation rules (larger operand first; results positive integers)."""
    hi, lo = (a, b) if a.value >= b.value else (b, a)
    if op == "+":
        value = hi.value + lo.value
    elif op == "*":
        value = hi.value * lo.value
    elif op == "-":
        value = hi.value - lo.value
    elif lo.value > 1 and hi.value % lo.value == 0:
        value = hi.value // lo.value
    else:
        return None
    if value <= 0 or value > MAX_INTERMEDIATE:
        return None
    return Item(value, BinOp(op, hi.node, lo.node))


def children(items: tuple[Item, ...]) -> list[tuple[Item, Item, str, tuple[Item, ...]]]:
    """Every distinct ``(hi, lo, op, next_state)`` one move away from ``items``."""
    out, seen = [], set()
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            rest = items[:i] + items[i + 1:j] + items[j + 1:]
            for op in "+*-/":
                made = combine(items[i], items[j], op)
                if made is None:
                    continue
                state = rest + (made,)
                key = tuple(sorted(x.value for x in state))
                if key not in seen:
                    seen.add(key)
                    hi, lo = sorted((items[i], items[j]), key=lambda x: -x.value)
                    out.append((hi, lo, op, state))
    return out


def solvable(values: tuple[int, ...], target: int, memo: dict) -> bool:
    """Exhaustive check that ``values`` can reach ``target`` (memoised in ``memo``)."""
    key = tuple(sorted(values))
    if key not in memo:
        if len(key) == 1:
            memo[key] = key[0] == target
        else:
            items = tuple(Item(v, Num(v)) for v in key)
            memo[key] = any(solvable(tuple(x.value for x in s), target, memo)
                            for _, _, _, s in children(items))
    return memo[key]


def _random_tree(numbers: list[int], rng: random.Random) -> Item | None:
    pool = [Item(v, Num(v)) for v in numbers]
    while len(pool) > 1:
        a, b = (pool.pop(rng.randrange(len(pool))) for _ in range(2))
        options = [m for m in (combine(a, b, op) for op in "++**-/") if m is not None]
        if not options:
            return None
        pool.append(rng.choice(options))
    return pool[0]


@dataclass
class _Search:
    """Mutable bookkeeping for one DFS trace."""

    target: int
    rng: random.Random
    max_nodes: int
    max_children: int
    guide: float
    give_up_after: int | None
    avoid_solutions: bool = False
    lines: list[str] = field(default_factory=list)
    memo: dict = field(default_factory=dict)
    nodes: int = 0
    dead_ends: int = 0
    stopped: bool = False
    best: Item | None = None

    def order(self, kids: list, last_level: bool) -> list:
        noise = 0.0 if last_level else 1.0
        keyed = [(abs(s[-1].value - self.target) * (1 + noise * self.rng.random()), n, k)
                 for n, k in enumerate(kids) for s in [k[3]]]
        ordered = [k for _, _, k in sorted(keyed)]
        if self.avoid_solutions:
            ordered = [k for k in ordered if not self.solvable(k[3])]
        elif not last_level and self.rng.random() < self.guide:
            good = [k for k in ordered if self.solvable(k[3])]
            if good:
                ordered.remove(good[0])
                ordered.insert(0, good[0])
        return ordered[:1] if last_level else ordered[:self.max_children]

    def solvable(self, state: tuple[Item, ...]) -> bool:
        return solvable(tuple(x.value for x in state), self.target, self.memo)

    def dfs(self, items: tuple[Item, ...]) -> Item | None:
        if len(items) == 1:
            if self.best is None or (abs(items[0].value - self.target)
                                     < abs(self.best.value - self.target)):
                self.best = items[0]
            return items[0] if items[0].value == self.target else None
        for hi, lo, op, state in self.order(children(items), last_level=len(items) == 2):
            if self.nodes >= self.max_nodes:
                self.stopped = True
            if self.stopped:
                return None
            self.nodes += 1
            left = ", ".join(str(x.value) for x in state)
            self.lines.append(f"try {hi.value} {op} {lo.value} = {state[-1].value}, left [{left}]")
            found = self.dfs(state)
            if found is not None or self.stopped:
                return found
        self.lines.append("dead end, back")
        self.dead_ends += 1
        if self.give_up_after is not None and self.dead_ends >= self.give_up_after:
            self.stopped = True
        return None


def _pick(value, name: str) -> tuple[int, int]:
    lo, hi = (value, value) if isinstance(value, int) else value
    if lo > hi:
        raise ValueError(f"countdown: {name} range ({lo}, {hi}) is empty")
    return int(lo), int(hi)


class CountdownTask(Task):
    """Difficulty: ``n_numbers`` (int or (lo, hi), 2..6), ``max_number``, ``max_target``.

    ``lenient=True`` also reads the expression from "The answer is ..." when no tags are present.
    """

    name = "countdown"
    step_separator = "\n"
    reflection_marker = "dead end"
    difficulty_keys = ("n_numbers", "max_number", "max_target")

    def __init__(self, lenient: bool = False,
                 max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS):
        super().__init__(max_completion_chars)
        self.lenient = lenient
        self.answer_sources = ("tag", "answer_is") if lenient else ("tag",)

    def _sample(self, rng: random.Random, n_numbers=(3, 4), max_number: int = 99,
                max_target: int = 999) -> dict:
        lo, hi = _pick(n_numbers, "n_numbers")
        if not 2 <= lo <= hi <= 6 or max_number < 1 or max_target < 1:
            raise ValueError("countdown: need 2 <= n_numbers <= 6, max_number >= 1 and "
                             "max_target >= 1")
        for _ in range(1000):
            numbers = [rng.randint(1, max_number) for _ in range(rng.randint(lo, hi))]
            made = _random_tree(numbers, rng)
            if made is not None and 1 <= made.value <= max_target:
                break
        else:
            raise ValueError("countdown: could not build a target; raise max_target")
        question = (f"Using the numbers [{', '.join(map(str, numbers))}], make {made.value}. "
                    "Use each number once with + - * / and parentheses.")
        solution = to_str(made.node)
        meta = {"numbers": numbers, "target": made.value, "solution": solution,
                "n_numbers": len(numbers), "max_number": max_number, "max_target": max_target}
        return {"question": question, "answer": solution, "meta": meta}

    def split_key(self, item: dict) -> str:
        """Problem identity: the multiset of numbers and the target (order-free)."""
        return f"{sorted(item['meta']['numbers'])}->{item['meta']['target']}"

    def canonical(self, parsed: str) -> str:
        return "".join(parsed.split())

    def _verify(self, example: dict, completion: str) -> Verdict:
        found = extract_final(completion, self.answer_sources)
        if found is not None and found.malformed:
            return Verdict(False, None, "bad_format")
        blocks = [b for b in found.candidates if b] if found is not None else []
        if not blocks:
            return Verdict(False, None, "no_answer")
        if len({self.canonical(b) for b in blocks}) > 1:
            return Verdict(False, None, "multiple_answers")
        return check_expression(blocks[0], example["meta"]["numbers"], example["meta"]["target"])

    def trace(self, example: dict, rng: random.Random, give_up_rate: float = 0.0,
              max_nodes: int = 40, max_children: int = 3, guide: float = 0.75) -> str:
        """A DFS search trace ending in ``<answer>expression</answer>``.

        Moves are ordered by closeness to the target plus noise; with probability ``guide`` an
        oracle move that still admits a solution is tried first, so traces usually succeed
        after a few dead ends. At most ``max_children`` moves per state (one at the last move)
        and ``max_nodes`` moves in all. With probability ``give_up_rate`` the search only tries
        moves that cannot succeed and gives up after 1-3 dead ends, answering its closest
        (wrong) expression, or nothing if it reached no complete expression.
        """
        meta = example["meta"]
        giving_up = rng.random() < give_up_rate
        search = _Search(target=meta["target"], rng=rng, max_nodes=max_nodes,
                         max_children=max_children, guide=0.0 if giving_up else guide,
                         give_up_after=rng.randint(1, 3) if giving_up else None,
                         avoid_solutions=giving_up)
        found = search.dfs(tuple(Item(v, Num(v)) for v in meta["numbers"]))
        if found is None:
            search.lines.append("give up")
            answer = to_str(search.best.node) if search.best is not None else ""
        else:
            answer = to_str(found.node)
        return r1_completion(search.lines, answer, self.step_separator)

    def worked_solution(self, example: dict) -> str:
        meta = example["meta"]
        return f"{meta['solution']} = {meta['target']}. The answer is {meta['solution']}."


_FRAC_RE = re.compile(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")


def check_expression(text: str, numbers: list[int], target: int) -> Verdict:
    """Verdict for one answer expression.

    ``\\frac{a}{b}`` reads as ``(a) / (b)`` and a final period is punctuation; an optional
    single trailing ``= value`` must state the target (read as a number answer: ``= 30``,
    ``= 30.0``).
    """
    if len(text) > MAX_EXPR_CHARS:
        return Verdict(False, None, "bad_format")
    text = _FRAC_RE.sub(r"(\1) / (\2)", normalize_candidate(text)).strip().rstrip(".")
    expr_text, eq, claimed = text.partition("=")
    expr_text = expr_text.strip()
    parsed = "".join(expr_text.split()) or None
    try:
        node = parse(expr_text)
        value = evaluate(node)
    except ExprError:
        return Verdict(False, parsed, "bad_expression")
    stated = read_answer(claimed) if eq else None
    if stated is not None and (stated.reason != "ok" or "=" in claimed):
        return Verdict(False, parsed, "bad_expression")
    if sorted(literals(node)) != sorted(numbers):
        return Verdict(False, parsed, "wrong_numbers")
    if stated is not None and stated.value != target:
        return Verdict(False, parsed, "wrong")
    correct = value == Fraction(target)
    return Verdict(correct, parsed, "ok" if correct else "wrong")
