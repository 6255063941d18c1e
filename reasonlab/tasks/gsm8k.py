"""GSM8K grade-school word problems (Cobbe et al. 2021).

Rows come from a local jsonl (``question``, ``answer`` whose last line is ``#### N``), given as
``path=`` or ``data_dir=`` (``{data_dir}/{split}.jsonl``), or else from the Hugging Face hub
(``openai/gsm8k``, config ``main``; needs ``datasets``, imported lazily).

Answers are extracted in order: ``<answer>`` tags, ``\\boxed{}``, ``#### N``, "The answer is N",
the final arithmetic run of the text; whatever the source, the candidate is read by the grammar of
:mod:`reasonlab.grading.answer` and compared exactly (commas, ``$``, units, ``18.0``, ``%``
tolerated; an expression is evaluated, never graded by its last number). A completion longer
than ``max_completion_chars`` (default 1,000,000) is ``"bad_format"``.

A row must have a ``question`` and an ``answer`` whose ``#### `` line states one number; other
rows are refused with ``path:LINE: ...`` (:class:`reasonlab.io.DataError`).
"""
from __future__ import annotations

import random
import re
from pathlib import Path

from reasonlab.grading.extract import DEFAULT_MAX_COMPLETION_CHARS, hash_answer
from reasonlab.grading.numeric import parse_number
from reasonlab.tasks.base import Task, r1_completion
from reasonlab.tasks.data import DatasetRows, RowError, load_hub, require_text

HUB_ID = ("openai/gsm8k", "main")
_CALC_RE = re.compile(r"<<[^<>]*>>")


def final_answer(solution: str) -> str:
    """The number after ``####`` with commas removed; RowError (a ValueError) if there is none.

    >>> final_answer("3 * 400 = 1200\\n#### 1,200")
    '1200'
    """
    found = hash_answer(solution)
    if found is None:
        raise RowError("'answer' has no '#### <number>' line (GSM8K rows: 'question', and "
                       "'answer' = a worked solution ending in '#### N')")
    if parse_number(found) is None:
        raise RowError(f"the '####' line states no single number: {found[:40]!r}")
    return found.replace(",", "").strip()


def to_row(record: dict, split: str, index: int) -> dict:
    """A standard example row from one GSM8K record."""
    question = require_text(record, "question")
    solution = require_text(record, "answer")
    return {"id": f"gsm8k-{split}-{index}", "question": question,
            "answer": final_answer(solution), "meta": {"solution": solution, "index": index}}


def clean_solution(solution: str) -> str:
    """Reference solution without ``<<calc>>`` annotations and without the ``####`` line."""
    lines = [ln for ln in _CALC_RE.sub("", solution).splitlines() if not ln.startswith("####")]
    return "\n".join(lines).strip()


class GSM8KTask(DatasetRows, Task):
    """GSM8K. ``path`` (one jsonl, any split) or ``data_dir`` (``{split}.jsonl``) or the hub."""

    name = "gsm8k"
    step_separator = "\n"

    def __init__(self, path: str | Path | None = None, data_dir: str | Path | None = None,
                 max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS):
        super().__init__(max_completion_chars)
        self.path = Path(path) if path is not None else None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._rows: dict[str, list[dict]] = {}

    to_row = staticmethod(to_row)

    def hub_records(self, split: str) -> list[dict]:
        return load_hub(HUB_ID[0], HUB_ID[1], split)

    def trace(self, example: dict, rng: random.Random, **opts) -> str:
        """The reference solution in R1 format (for SFT / distillation warm-starts)."""
        lines = clean_solution(example["meta"]["solution"]).splitlines()
        return r1_completion(lines, example["answer"], self.step_separator)

    def worked_solution(self, example: dict) -> str:
        return f"{clean_solution(example['meta']['solution'])}\nThe answer is {example['answer']}."
