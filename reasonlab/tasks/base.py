"""The task contract: example rows, :class:`Verdict`, and the :class:`Task` base class.

An example row is a plain dict ``{"id": str, "question": str, "answer": str, "meta": dict}``.
``task.verify(example, completion)`` is pure, deterministic, bounded in time and never raises
(bad input gives a Verdict with a reason); the same call serves eval accuracy, the RL reward and
majority-vote clustering via ``task.canonical(verdict.parsed)``.

Synthetic tasks split train/test by a hash of each problem's identity (:func:`split_of`), so a
problem lands in exactly one split whatever seed generated it: held-out is truly held out.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from reasonlab.grading.extract import ALL_SOURCES, MAX_TEXT_CHARS, extract_final
from reasonlab.grading.numeric import (
    canonical_number,
    distinct_numbers,
    format_fraction,
    parse_number,
)
from reasonlab.tasks import prompts

SPLITS = ("train", "test")
TEST_FRACTION = 0.2

# exceptions a verifier may hit on hostile input; anything else is a bug and should surface
VERIFY_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError,
                 RecursionError)


@dataclass(frozen=True)
class Verdict:
    """Outcome of checking one completion.

    ``parsed`` is the extracted final answer (None if none was found); ``reason`` is one of
    ``"ok"``, ``"wrong"``, ``"no_answer"``, ``"bad_format"``, ``"multiple_answers"``,
    ``"bad_expression"``, ``"wrong_numbers"``, ``"timeout"``, ``"error"``.
    """

    correct: bool
    parsed: str | None
    reason: str


def digest(text: str) -> str:
    """Stable hex digest of ``text`` (independent of PYTHONHASHSEED)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_of(key: str, test_fraction: float = TEST_FRACTION) -> str:
    """``"test"`` for a fixed ``test_fraction`` of keys (by hash), ``"train"`` for the rest."""
    bucket = int(digest(key)[:8], 16) / 0x100000000
    return "test" if bucket < test_fraction else "train"


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from: {', '.join(SPLITS)}")


def verify_numeric(reference: str, completion: str,
                   sources: tuple[str, ...] = ALL_SOURCES) -> Verdict:
    """Extract a final number from ``completion`` and compare it exactly with ``reference``.

    Several answer blocks (or one block / "the answer is" phrase) stating different numbers give
    ``"multiple_answers"``; nested or stray ``<answer>`` tags give ``"bad_format"``.

    >>> verify_numeric("18", "so</think>\\n<answer>$18.00</answer>")
    Verdict(correct=True, parsed='18', reason='ok')
    >>> verify_numeric("18", "<answer>18 or 19</answer>").reason
    'multiple_answers'
    """
    found = extract_final(completion, sources)
    if found is None:
        return Verdict(False, None, "no_answer")
    if found.malformed:
        return Verdict(False, None, "bad_format")
    values = []
    for candidate in found.candidates:
        numbers = distinct_numbers(candidate)
        if len(numbers) > 1:
            return Verdict(False, candidate, "multiple_answers")
        if numbers and numbers[0] not in values:
            values.append(numbers[0])
        if len(values) > 1:
            return Verdict(False, None, "multiple_answers")
    if not values:
        return Verdict(False, found.candidates[-1] if found.candidates else None, "no_answer")
    parsed = format_fraction(values[0])
    correct = values[0] == parse_number(reference)
    return Verdict(correct, parsed, "ok" if correct else "wrong")


class Task:
    """Base class: data generation/loading, prompt, verifier and trace for one task.

    Subclasses set ``name`` and implement :meth:`_verify` and either :meth:`_sample` (synthetic
    tasks; :meth:`generate` then handles seeding, split and dedup) or :meth:`generate`.
    """

    name: str = ""
    step_separator: str = "\n"
    reflection_marker: str = "wait,"
    answer_sources: tuple[str, ...] = ALL_SOURCES
    max_completion_chars: int = MAX_TEXT_CHARS
    difficulty_keys: tuple[str, ...] = ()

    # ---- data -----------------------------------------------------------------------------
    def generate(self, n: int, seed: int, split: str = "train", **difficulty) -> list[dict]:
        """``n`` distinct problems of ``split``, a pure function of the arguments."""
        check_split(split)
        self._check_difficulty(difficulty)
        rng = random.Random(f"{self.name}:{split}:{seed}")
        rows: list[dict] = []
        seen: set[str] = set()
        max_attempts = 100 * n + 1000
        for _ in range(max_attempts):
            if len(rows) >= n:
                break
            item = self._sample(rng, **difficulty)
            key = self.split_key(item)
            if key in seen or split_of(key) != split:
                continue
            seen.add(key)
            rows.append({"id": f"{self.name}-{split}-{digest(key)[:12]}", **item})
        if len(rows) < n:
            raise ValueError(f"{self.name}: only {len(rows)} distinct {split} problems found for "
                             f"n={n} with {difficulty}; ask for fewer or raise the difficulty")
        return rows

    def _check_difficulty(self, difficulty: dict) -> None:
        unknown = sorted(set(difficulty) - set(self.difficulty_keys))
        if unknown:
            raise ValueError(f"{self.name}: unknown difficulty option(s) {unknown}; "
                             f"choose from: {', '.join(self.difficulty_keys) or '(none)'}")

    def _sample(self, rng: random.Random, **difficulty) -> dict:
        """One random problem ``{"question", "answer", "meta"}`` (synthetic tasks)."""
        raise NotImplementedError(f"{self.name} does not generate synthetic problems")

    def split_key(self, item: dict) -> str:
        """The identity of a problem for dedup and the train/test split (its question)."""
        return item["question"]

    # ---- verification ---------------------------------------------------------------------
    def verify(self, example: dict, completion: str) -> Verdict:
        """Check ``completion``; never raises, bounded time."""
        if not isinstance(completion, str):
            return Verdict(False, None, "bad_format")
        if len(completion) > self.max_completion_chars:
            return Verdict(False, None, "bad_format")
        try:
            return self._verify(example, completion)
        except VERIFY_ERRORS:
            return Verdict(False, None, "error")

    def _verify(self, example: dict, completion: str) -> Verdict:
        return verify_numeric(str(example["answer"]), completion, self.answer_sources)

    def canonical(self, parsed: str) -> str:
        """Majority-vote key of a parsed answer (numeric by default: 0.5 == 1/2 == 0.50)."""
        return canonical_number(parsed)

    # ---- text -----------------------------------------------------------------------------
    def trace(self, example: dict, rng: random.Random, **opts) -> str:
        """A completion in the R1 format (reasoning lines, ``</think>``, ``<answer>``)."""
        raise NotImplementedError(f"{self.name} has no trace generator")

    def worked_solution(self, example: dict) -> str:
        """A plain-text solution for few-shot prompts, ending with "The answer is X."."""
        return f"The answer is {example['answer']}."

    def fewshot_examples(self, k: int = 4, seed: int = 0) -> list[dict]:
        """``k`` training rows used as few-shot demonstrations."""
        return self.generate(k, seed=seed, split="train")

    def format_prompt(self, example: dict, template: str = "r1",
                      examples: list[dict] | None = None, k: int = 4) -> str:
        """The prompt for ``example`` with a template from :mod:`reasonlab.tasks.prompts`.

        For ``fewshot``, ``examples`` (rows) default to :meth:`fewshot_examples` (``k`` rows).
        """
        shots = None
        if template == "fewshot" or examples:
            rows = examples if examples is not None else self.fewshot_examples(k + 1)
            rows = [r for r in rows if r.get("id") != example.get("id")][:k]
            shots = [(r["question"], self.worked_solution(r)) for r in rows]
        return prompts.format_prompt(template, example["question"], shots)


def r1_completion(lines: list[str], answer: str, separator: str = "\n") -> str:
    """Join reasoning lines and close the R1 format: ``...\\n</think>\\n<answer>X</answer>``."""
    return separator.join(lines) + f"\n</think>\n<answer>{answer}</answer>"
