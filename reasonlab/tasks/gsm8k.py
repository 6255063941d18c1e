"""GSM8K grade-school word problems (Cobbe et al. 2021).

Rows come from a local jsonl (``question``, ``answer`` whose last line is ``#### N``), given as
``path=`` or ``data_dir=`` (``{data_dir}/{split}.jsonl``), or else from the Hugging Face hub
(``openai/gsm8k``, config ``main``; needs ``datasets``, imported lazily).

Answers are extracted in order: ``<answer>`` tags, ``\\boxed{}``, ``#### N``, "The answer is N",
the last number; numbers compare exactly (commas, ``$``, units, ``18.0``, ``%`` tolerated).
"""
from __future__ import annotations

import random
import re
from pathlib import Path

from reasonlab.grading.extract import hash_answer
from reasonlab.tasks.base import Task, r1_completion
from reasonlab.tasks.data import DatasetRows, load_hub

HUB_ID = ("openai/gsm8k", "main")
_CALC_RE = re.compile(r"<<[^<>]*>>")


def final_answer(solution: str) -> str:
    """The number after ``####`` with commas removed; ValueError if there is none."""
    found = hash_answer(solution)
    if found is None:
        raise ValueError("solution has no '#### <answer>' line")
    return found.replace(",", "").strip()


def to_row(record: dict, split: str, index: int) -> dict:
    """A standard example row from one GSM8K record."""
    return {"id": f"gsm8k-{split}-{index}", "question": record["question"],
            "answer": final_answer(record["answer"]),
            "meta": {"solution": record["answer"], "index": index}}


def clean_solution(solution: str) -> str:
    """Reference solution without ``<<calc>>`` annotations and without the ``####`` line."""
    lines = [ln for ln in _CALC_RE.sub("", solution).splitlines() if not ln.startswith("####")]
    return "\n".join(lines).strip()


class GSM8KTask(DatasetRows, Task):
    """GSM8K. ``path`` (one jsonl, any split) or ``data_dir`` (``{split}.jsonl``) or the hub."""

    name = "gsm8k"
    step_separator = "\n"

    def __init__(self, path: str | Path | None = None, data_dir: str | Path | None = None):
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
