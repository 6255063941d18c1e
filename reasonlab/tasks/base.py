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

from reasonlab.config import ConfigError
from reasonlab.grading.answer import read_answer
from reasonlab.grading.extract import ALL_SOURCES, DEFAULT_MAX_COMPLETION_CHARS, extract_final
from reasonlab.grading.numeric import canonical_number, format_fraction
from reasonlab.tasks import prompts

SPLITS = ("train", "test")
TEST_FRACTION = 0.2

# exceptions a verifier may hit on hostile input; anything else is a bug and should surface
VERIFY_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError,
                 RecursionError)


# every Verdict.reason, in one place (eval summaries count them; RL rewards only see `correct`)
REASONS = {
    "ok": "a final answer was read and it is correct",
    "wrong": "a well-formed final answer that is not the reference",
    "no_answer": "no final answer: no answer source found, or it holds no number / expression",
    "bad_format": "the output is malformed: over max_completion_chars, an <answer> tag nested, "
                  "stray or never closed, too many answer blocks, or an over-long answer",
    "multiple_answers": "the answer states different values (18 or 19; several blocks)",
    "bad_expression": "the answer is not in the task's answer grammar, or too large or undefined "
                      "to evaluate (not 6, 2x, 10**10**10, 1/0, power towers)",
    "wrong_numbers": "countdown: the expression does not use each given number exactly once",
    "timeout": "math: the symbolic check was killed at its timeout; code: the program ran past its "
               "wall-clock or CPU-time limit",
    "fail": "code: the code loaded and ran, and a test failed (Verdict.detail names the test)",
    "crash": "code: the code did not run to the end of the tests: a syntax error, an exception or "
             "exit while loading, a signal, the memory or output limit",
    "sandbox_violation": "code: the program tried a guarded operation (a process, a signal, a "
                         "socket, ctypes, a write or delete outside its work directory)",
    "no_code": "code: no code to run: no <answer> block and no ``` fence, or an empty one",
    "error": "the verifier failed on this input (a bug, or a malformed example row)",
}


class SplitError(ConfigError, ValueError):
    """An unknown split name; one line with the valid choices."""


@dataclass(frozen=True, repr=False)
class Verdict:
    """Outcome of checking one completion.

    ``parsed`` is the extracted final answer (None if none was read); ``reason`` is a key of
    :data:`REASONS`. ``correct`` is True only with reason ``"ok"``. ``score`` is set only by a
    task graded with partial credit (the code task's ``partial_credit=True``: the share of tests
    passed); the accuracy reward uses it instead of ``correct`` when it is set. ``detail`` is one
    optional line on why (the code task: which test failed). Both are left out of the repr when
    unset.
    """

    correct: bool
    parsed: str | None
    reason: str
    score: float | None = None
    detail: str = ""

    def __repr__(self) -> str:
        extra = "".join(f", {name}={getattr(self, name)!r}" for name, unset in
                        (("score", None), ("detail", "")) if getattr(self, name) != unset)
        return f"Verdict(correct={self.correct!r}, parsed={self.parsed!r}, reason={self.reason!r}{extra})"


def digest(text: str) -> str:
    """Stable hex digest of ``text`` (independent of PYTHONHASHSEED)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_of(key: str, test_fraction: float = TEST_FRACTION) -> str:
    """``"test"`` for a fixed ``test_fraction`` of keys (by hash), ``"train"`` for the rest."""
    bucket = int(digest(key)[:8], 16) / 0x100000000
    return "test" if bucket < test_fraction else "train"


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise SplitError(f"split: unknown split {split!r}; choose from: {', '.join(SPLITS)}")


def verify_numeric(reference: str, completion: str,
                   sources: tuple[str, ...] = ALL_SOURCES) -> Verdict:
    """Extract the final answer of ``completion`` and compare its value exactly with
    ``reference``.

    Each candidate is read by the grammar of :mod:`reasonlab.grading.answer` (an expression is
    evaluated exactly, never graded by its last number). Candidates without a number are
    skipped; several candidates stating different values give ``"multiple_answers"``; a
    malformed completion (see :func:`~reasonlab.grading.extract.answer_blocks`) ``"bad_format"``.

    >>> verify_numeric("18", "so</think>\\n<answer>$18.00</answer>")
    Verdict(correct=True, parsed='18', reason='ok')
    >>> [verify_numeric("5", c).reason for c in ("<answer>5-5</answer>", "<answer>5", "#### not 5")]
    ['wrong', 'bad_format', 'bad_expression']
    """
    found = extract_final(completion, sources)
    if found is None:
        return Verdict(False, None, "no_answer")
    if found.malformed:
        return Verdict(False, None, "bad_format")
    value = None
    for candidate in found.candidates:
        reading = read_answer(candidate)
        if reading.reason == "no_answer":
            continue
        if reading.reason != "ok":
            return Verdict(False, None, reading.reason)
        if value is not None and reading.value != value:
            return Verdict(False, None, "multiple_answers")
        value = reading.value
    if value is None:
        return Verdict(False, None, "no_answer")
    gold = read_answer(reference).value
    if gold is None:
        return Verdict(False, format_fraction(value), "error")
    correct = value == gold
    return Verdict(correct, format_fraction(value), "ok" if correct else "wrong")


class Task:
    """Base class: data generation/loading, prompt, verifier and trace for one task.

    Subclasses set ``name`` and implement :meth:`_verify` and either :meth:`_sample` (synthetic
    tasks; :meth:`generate` then handles seeding, split and dedup) or :meth:`generate`.
    """

    name: str = ""
    step_separator: str = "\n"
    reflection_marker: str = "wait,"
    answer_sources: tuple[str, ...] = ALL_SOURCES
    max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS
    difficulty_keys: tuple[str, ...] = ()

    def __init__(self, max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS):
        """``max_completion_chars``: a longer completion is ``"bad_format"`` whatever it says."""
        if not isinstance(max_completion_chars, int) or max_completion_chars < 1:
            raise ValueError(f"{self.name}: max_completion_chars must be a positive integer, "
                             f"got {max_completion_chars!r}")
        self.max_completion_chars = max_completion_chars

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

    def language_consistency(self, thinking: str) -> float:
        """How consistently ``thinking`` keeps to one language, in [0, 1] (R1's language-consistency
        reward; 0 for no reasoning): here the share of words in ASCII (our tasks are English and
        arithmetic). Tasks with two notations of one reasoning override it (arith: the share of
        lines in the majority notation).

        >>> Task().language_consistency("a = 3 \u6b63\u786e"), Task().language_consistency("")
        (0.75, 0.0)
        """
        words = thinking.split()
        return sum(w.isascii() for w in words) / len(words) if words else 0.0

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
