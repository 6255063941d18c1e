"""Which sampled completions an imitation round trains on: one registry, one signature.

``SELECTORS[name](samples, threshold) -> list[int]`` gets the ``n`` samples of one problem, each a
``Sample`` (completion ids, verdict, canonical answer key, finish reason), and returns the indices
to keep (before de-duplication). Every selector keeps only completions that ended by themselves
(EOS or a stop sequence), never one cut at the length limit.

- ``correct`` (STaR / ReST / RFT, distillation): every sample the task verifier accepts (gold labels);
- ``shortest``: the shortest correct sample(s) (distillation into short traces; ties all kept);
- ``readable`` (R1's cold-start and rejection-sampling data): correct samples that are also readable
  (the R1 format, and one language / notation throughout: ``Task.language_consistency`` = 1);
- ``majority`` (LMSI, Huang et al. 2022): no gold label. The majority answer of the problem's
  samples is its pseudo-label when its vote share is at least ``threshold``; the samples that
  give it are kept. Whether the label is right is not looked at (the caller counts it).

>>> s = [Sample([1], True, "7", "eos"), Sample([2, 3], True, "7", "eos"), Sample([4], False, "8", "eos")]
>>> SELECTORS["correct"](s, 0.0), SELECTORS["shortest"](s, 0.0), SELECTORS["majority"](s, 0.5)
([0, 1], [0], [0, 1])
>>> SELECTORS["majority"](s, 0.7)
[]
>>> SELECTORS["readable"]([Sample([1], True, "7", "eos", readable=False), Sample([2], True, "7", "eos")], 0.0)
[1]
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reasonlab.eval.metrics import majority_vote

FINISHED = ("eos", "stop")


@dataclass
class Sample:
    ids: list[int]
    correct: bool
    key: object           # canonical answer (None: no answer)
    finish: str           # "eos" | "stop" | "length"
    readable: bool = True  # R1 format and one language throughout (``readable`` selector)


def _correct(samples: list[Sample], threshold: float) -> list[int]:
    return [i for i, s in enumerate(samples) if s.correct and s.finish in FINISHED]


def _shortest(samples: list[Sample], threshold: float) -> list[int]:
    ok = _correct(samples, threshold)
    if not ok:
        return []
    least = min(len(samples[i].ids) for i in ok)
    return [i for i in ok if len(samples[i].ids) == least]


def _readable(samples: list[Sample], threshold: float) -> list[int]:
    return [i for i in _correct(samples, threshold) if samples[i].readable]


def majority_label(samples: list[Sample], threshold: float) -> object:
    """The pseudo-label: the majority answer among finished samples if its share of all samples
    reaches ``threshold``, else None."""
    keys = [s.key if s.finish in FINISHED else None for s in samples]
    top = majority_vote(keys)
    if top is None or sum(k == top for k in keys) < threshold * len(samples):
        return None
    return top


def _majority(samples: list[Sample], threshold: float) -> list[int]:
    label = majority_label(samples, threshold)
    if label is None:
        return []
    return [i for i, s in enumerate(samples) if s.key == label and s.finish in FINISHED]


SELECTORS: dict[str, Callable[[list[Sample], float], list[int]]] = {
    "correct": _correct,
    "shortest": _shortest,
    "readable": _readable,
    "majority": _majority,
}


def select(samples: list[Sample], name: str, threshold: float = 0.0, dedup: bool = True) -> list[int]:
    """``SELECTORS[name]`` followed by de-duplication of identical completions (first kept).

    >>> s = [Sample([1], True, "7", "eos"), Sample([1], True, "7", "eos"), Sample([5], True, "7", "length")]
    >>> select(s, "correct"), select(s, "correct", dedup=False)
    ([0], [0, 1])
    """
    picked, seen = [], set()
    for i in SELECTORS[name](samples, threshold):
        ids = tuple(samples[i].ids)
        if dedup and ids in seen:
            continue
        seen.add(ids)
        picked.append(i)
    return picked
