"""Oracle step labels for arith completions written by a model.

A reasoning line is correct iff afterwards every variable assigned so far holds its true value
(the definition ``ArithTask.trace_with_labels`` uses for generated traces). A line
``x = ... = v`` assigns ``v`` to ``x``; a reflection line ``wait, ... is wrong. ... = v``
re-assigns the most recent variable. A line that assigns nothing leaves the state as it was.
"""
from __future__ import annotations

import re

_ASSIGN = re.compile(r"^\s*([a-z])\s*=.*=\s*\(?(-?\d+)\)?\s*$")
_LAST_NUMBER = re.compile(r"=\s*\(?(-?\d+)\)?\s*$")
END_OF_REASONING = "</think>"


def reasoning_lines(completion: str, separator: str = "\n") -> list[str]:
    """The lines before ``</think>`` (all lines when it is missing)."""
    head = completion.split(END_OF_REASONING, 1)[0]
    return [line for line in head.split(separator) if line.strip()]


def arith_step_labels(example: dict, lines: list[str], marker: str = "wait,") -> list[bool]:
    """Oracle label of each reasoning line of a completion for an arith ``example``.

    >>> ex = {"meta": {"inputs": {"a": 2, "b": 3}, "values": {"a": 2, "b": 3, "c": 5, "d": 10}}}
    >>> arith_step_labels(ex, ["c = a + b = 2 + 3 = 6", "wait, 2 + 3 = 6 is wrong. 2 + 3 = 5",
    ...                        "d = c * 2 = 5 * 2 = 10"])
    [False, True, True]
    """
    truth = example["meta"]["values"]
    believed = dict(example["meta"]["inputs"])
    last = None
    labels = []
    for line in lines:
        text = line.strip()
        if text.startswith(marker):
            found = _LAST_NUMBER.search(text)
            if found and last is not None:
                believed[last] = int(found.group(1))
        else:
            found = _ASSIGN.match(text)
            if found:
                last = found.group(1)
                believed[last] = int(found.group(2))
        labels.append(all(truth.get(k) == v for k, v in believed.items()))
    return labels
