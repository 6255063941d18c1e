"""Competition math (MATH, Hendrycks et al. 2021) with symbolic answer checking.

Answers are read from ``<answer>`` tags (the last ``\\boxed{}`` inside one, if any; the tag rule
shared by every task, so an unclosed tag is ``"bad_format"``) or else the last ``\\boxed{}`` /
``\\fbox{}`` of the completion; Unicode digits read as digits, superscripts as exponents.
Equivalence: cheap exact paths first (normalised string equality; exact comparison when both
sides state one number by the numeric answer grammar), then a cheap pre-filter
(:func:`~reasonlab.grading.symbolic.too_costly`: power towers, huge exponents / factorials are
``"bad_expression"``), then math-verify in a worker process that is hard-killed at ``timeout``
seconds (reason ``"timeout"``). The worker pool grows on demand up to ``workers`` processes
forked from a warm template, and waiting for a worker counts against the same deadline, so one
hostile answer never delays another check past its own timeout. math-verify is needed only at
verify time: ``pip install 'reasonlab[math]'``.

Rows: local jsonl with ``problem``/``solution`` (MATH format; the answer is the solution's last
boxed expression, or an ``answer`` field) or ``question``/``answer``; else the hub
(``EleutherAI/hendrycks_math`` for train, ``HuggingFaceH4/MATH-500`` for test), lazily. A row
whose answer is a worked solution (several lines, or a GSM8K ``####`` line) is refused with
``path:LINE: ...``.
"""
from __future__ import annotations

import random
from functools import partial
from pathlib import Path

from reasonlab.grading.answer import normalize_digits, read_answer
from reasonlab.grading.extract import DEFAULT_MAX_COMPLETION_CHARS, answer_blocks, last_boxed
from reasonlab.grading.numeric import format_fraction
from reasonlab.grading.symbolic import (
    math_equal,
    normalize_latex,
    require_math_verify,
    too_costly,
)
from reasonlab.grading.worker import TIMEOUT, LazyOnce, WorkerError, WorkerPool
from reasonlab.tasks.base import Task, Verdict, r1_completion
from reasonlab.tasks.data import DatasetRows, RowError, load_hub, require_text

SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
            "number_theory", "prealgebra", "precalculus")
HUB_SOURCES = {
    "train": [("EleutherAI/hendrycks_math", subject, "train") for subject in SUBJECTS],
    "test": [("HuggingFaceH4/MATH-500", None, "test")],
}
MAX_MATH_ANSWER_CHARS = 500
MAX_NESTING = 10  # deeper ({[ nesting is no competition answer, and can stall the parser


def plain_number(text: str) -> str | None:
    """Canonical ``p/q`` if ``text`` states one exact number by the numeric answer grammar
    (:func:`reasonlab.grading.answer.read_answer`: ``0.5``, ``\\frac{1}{2}``, ``18 dollars``,
    ``6^\\circ``), else None."""
    reading = read_answer(text)
    return format_fraction(reading.value) if reading.reason == "ok" else None


def answer_key(text: str) -> str:
    """Vote key: numbers by value (``0.5`` == ``\\frac{1}{2}``), others by normalised text."""
    return plain_number(text) or normalize_latex(text)


def nesting_depth(text: str) -> int:
    """Deepest bracket nesting of ``( [ {`` (closers only need to be counted, not matched)."""
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth = max(0, depth - 1)
    return deepest


def reference_answer(record: dict) -> str:
    """The final answer of a record: its ``answer``, else the last boxed of ``solution``.

    RowError for a missing one, or one that is a worked solution (GSM8K data, say)."""
    if "answer" in record and isinstance(record["answer"], (int, float)) \
            and not isinstance(record["answer"], bool):
        return str(record["answer"])
    if "answer" in record:
        answer = require_text(record, "answer")
    else:
        answer = last_boxed(require_text(record, "solution"))
        if answer is None:
            raise RowError("no 'answer', and 'solution' has no \\boxed{} answer")
    if "\n" in answer.strip() or "####" in answer:
        raise RowError("'answer' is a worked solution (several lines or a '####' line), not a "
                       "final answer; is this GSM8K data? (use --task=gsm8k)")
    if len(answer) > MAX_MATH_ANSWER_CHARS:
        raise RowError(f"'answer' is longer than {MAX_MATH_ANSWER_CHARS} characters")
    return answer.strip()


def to_row(record: dict, split: str, index: int) -> dict:
    """A standard example row from a MATH-style or question/answer record."""
    question = require_text(record, "problem" if "problem" in record else "question")
    meta = {k: record[k] for k in ("solution", "level", "type", "subject") if k in record}
    return {"id": f"math-{split}-{index}", "question": question,
            "answer": reference_answer(record), "meta": {**meta, "index": index}}


def extract_math_answer(completion: str) -> tuple[str | None, str]:
    """``(answer, reason)``: tags first (boxed inside wins), then the last boxed.

    Answers longer than :data:`MAX_MATH_ANSWER_CHARS` or nested deeper than :data:`MAX_NESTING`
    are ``"bad_format"`` (they are never real answers and can stall the symbolic parser).
    """
    found = answer_blocks(completion)
    if found is not None:
        if found.malformed:
            return None, "bad_format"
        answers = [a for a in ((last_boxed(b) or b).strip() for b in found.candidates) if a]
        if len({answer_key(a) for a in answers}) > 1:
            return None, "multiple_answers"
        return _bounded(answers[0]) if answers else (None, "no_answer")
    boxed = last_boxed(completion)
    return _bounded(boxed.strip()) if boxed and boxed.strip() else (None, "no_answer")


def _bounded(answer: str) -> tuple[str | None, str]:
    if len(answer) > MAX_MATH_ANSWER_CHARS or nesting_depth(answer) > MAX_NESTING:
        return None, "bad_format"
    return normalize_digits(answer), "ok"


class MathTask(DatasetRows, Task):
    """MATH. ``timeout`` (s) bounds each symbolic check, waiting for a worker included;
    at most ``workers`` checks run at once (worker processes are forked on demand).

    ``equal_fn(gold, pred) -> bool`` is the (picklable, top-level) equivalence run in the
    worker; math-verify's by default. ``max_completion_chars``: longer is ``"bad_format"``.
    """

    name = "math"
    step_separator = "\n"

    def __init__(self, path: str | Path | None = None, data_dir: str | Path | None = None,
                 timeout: float = 3.0, workers: int = 8, equal_fn=math_equal,
                 max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS):
        super().__init__(max_completion_chars)
        self.path = Path(path) if path is not None else None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.timeout = timeout
        self.workers = workers
        self.equal_fn = equal_fn
        self._pool = self._pool_holder()
        self._rows: dict[str, list[dict]] = {}

    def _pool_holder(self) -> LazyOnce:
        preload = ("reasonlab.grading.symbolic:warm_up",) if self.equal_fn is math_equal else ()
        return LazyOnce(partial(WorkerPool, self.workers, preload=preload))

    def __getstate__(self) -> dict:
        """Picklable: worker processes are not copied; the copy starts its own when needed."""
        state = dict(self.__dict__)
        del state["_pool"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pool = self._pool_holder()

    to_row = staticmethod(to_row)

    def hub_records(self, split: str) -> list[dict]:
        return [r for hub_id, config, hub_split in HUB_SOURCES[split]
                for r in load_hub(hub_id, config, hub_split)]

    def _verify(self, example: dict, completion: str) -> Verdict:
        pred, reason = extract_math_answer(completion)
        if pred is None:
            return Verdict(False, None, reason)
        gold = str(example["answer"])
        if normalize_latex(pred) == normalize_latex(gold):
            return Verdict(True, pred, "ok")
        gold_num, pred_num = plain_number(gold), plain_number(pred)
        if gold_num is not None and pred_num is not None:
            return Verdict(gold_num == pred_num, pred, "ok" if gold_num == pred_num else "wrong")
        if too_costly(pred):
            return Verdict(False, pred, "bad_expression")
        if self.equal_fn is math_equal:
            require_math_verify()
        result = self._pool.get().run(self.equal_fn, (gold, pred), timeout=self.timeout)
        if result is TIMEOUT:
            return Verdict(False, pred, "timeout")
        if isinstance(result, WorkerError):
            return Verdict(False, pred, "error")
        return Verdict(bool(result), pred, "ok" if result else "wrong")

    def canonical(self, parsed: str) -> str:
        """Plain numbers by value (``0.5`` == ``\\frac{1}{2}``), others by normalised text."""
        return answer_key(parsed)

    def close(self) -> None:
        """Stop the worker processes (they also stop at interpreter exit)."""
        pool = self._pool.peek()
        if pool is not None:
            pool.close()

    def trace(self, example: dict, rng: random.Random, **opts) -> str:
        """The reference solution in R1 format (needs ``meta["solution"]``)."""
        lines = example["meta"]["solution"].strip().splitlines()
        return r1_completion(lines, example["answer"], self.step_separator)

    def worked_solution(self, example: dict) -> str:
        solution = example["meta"].get("solution", "")
        return f"{solution}\nThe answer is {example['answer']}.".strip()
