"""Tasks: data, prompts, verifiers and traces, one class per task, found by name.

>>> task = get_task("arith")
>>> rows = task.generate(2, seed=0)
>>> task.verify(rows[0], "<answer>" + rows[0]["answer"] + "</answer>").correct
True

Every ``Verdict.reason`` is a key of :data:`REASONS` (one line each on what it means).
Importing this package never imports torch, transformers or math-verify.
"""
from __future__ import annotations

from reasonlab.tasks.arith import ArithTask
from reasonlab.tasks.base import REASONS, Task, Verdict
from reasonlab.tasks.code import CodeTask
from reasonlab.tasks.countdown import CountdownTask
from reasonlab.tasks.gsm8k import GSM8KTask
from reasonlab.tasks.math import MathTask
from reasonlab.tasks.prompts import TEMPLATES, check_r1_format, format_prompt

TASKS = {
    "arith": ArithTask,
    "code": CodeTask,
    "countdown": CountdownTask,
    "gsm8k": GSM8KTask,
    "math": MathTask,
}


def get_task(name: str, **kwargs) -> Task:
    """A task instance by name; ``kwargs`` go to its constructor (e.g. ``data_dir=``)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from: {', '.join(sorted(TASKS))}")
    return TASKS[name](**kwargs)


def make_task(name: str, data_path: str = "", **options) -> Task:
    """The task factory every stage uses: ``get_task`` pointed at local data when ``data_path``
    is a jsonl file or a directory; ``options`` go to the task (e.g. ``max_completion_chars``)."""
    from pathlib import Path

    if not data_path:
        return get_task(name, **options)
    path = Path(data_path)
    return get_task(name, **({"data_dir": path} if path.is_dir() else {"path": path}), **options)


__all__ = ["REASONS", "TASKS", "TEMPLATES", "Task", "Verdict", "get_task", "make_task", "check_r1_format",
           "format_prompt", "ArithTask", "CodeTask", "CountdownTask", "GSM8KTask", "MathTask"]
