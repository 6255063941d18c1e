"""Scorers: verifiers that read a growing token path and give a score per token.

Protocol (every scorer; ``tokens_encoded`` counts token positions run through a network):

- ``start(problems, prompts, copies, max_new) -> state``: encode each prompt once, ``copies``
  rows per prompt (rows ``p*copies ..`` belong to prompt ``p``).
- ``extend(state, chunks) -> list[list[float]]``: feed each row its chunk of new tokens (lists
  may differ in length or be empty) and return, per row, the score after each fed token: the
  verifier's probability that the solution so far is (or will end) correct.
- ``select(state, rows)`` / ``concat(states)``: like the policy's, so a scorer's rows follow the
  policy's rows through forks and pools without re-encoding anything.

Step scores are the scores at the step separators (and at the last token), aggregated over a
path by one of :data:`AGGREGATIONS`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from reasonlab.engine.protocol import CausalLM
from reasonlab.engine.sampler import left_pad


class Scorer(Protocol):
    tokens_encoded: int
    network: bool            # True when scoring runs a model (its tokens count as compute)

    def start(self, problems: list[dict], prompts: list[list[int]], copies: int, max_new: int) -> Any: ...

    def extend(self, state: Any, chunks: list[list[int]]) -> list[list[float]]: ...

    def select(self, state: Any, rows: torch.Tensor) -> Any: ...

    def concat(self, states: list[Any]) -> Any: ...


def _prod(xs: list[float]) -> float:
    return math.prod(xs)


AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "min": min,
    "prod": _prod,
    "last": lambda xs: xs[-1],
    "mean": lambda xs: sum(xs) / len(xs),
}


def aggregate(step_scores: list[float], how: str) -> float:
    """Path score from its step scores (an empty path scores 0).

    >>> aggregate([0.9, 0.5, 0.8], "min"), aggregate([0.9, 0.5, 0.8], "last")
    (0.5, 0.8)
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; choose from: {', '.join(AGGREGATIONS)}")
    return AGGREGATIONS[how](step_scores) if step_scores else 0.0


def step_ends(tokens: list[int], sep_id: int) -> list[int]:
    """Indices of the last token of every step (separators, plus the final token).

    >>> step_ends([5, 6, 9, 7, 9, 8], sep_id=9)
    [2, 4, 5]
    """
    ends = [i for i, t in enumerate(tokens) if t == sep_id]
    if tokens and (not ends or ends[-1] != len(tokens) - 1):
        ends.append(len(tokens) - 1)
    return ends


def step_scores(tokens: list[int], token_scores: list[float], sep_id: int) -> list[float]:
    return [token_scores[i] for i in step_ends(tokens, sep_id)]


@dataclass
class _LpState:
    """A value model's backend state plus, per row, the log-probability features of the tokens
    fed so far (LM-feature models): the next-token log-probs ``prev`` (rows, V), their running
    ``total``, ``count`` and ``low`` (min)."""
    inner: Any
    prev: torch.Tensor
    total: torch.Tensor
    count: torch.Tensor
    low: torch.Tensor

    def select(self, runner, rows):
        return _LpState(runner.select(self.inner, rows), self.prev[rows], self.total[rows], self.count[rows],
                        self.low[rows])


class ValueScorer:
    """A value-head model (``verifiers.value_model``) run through any ``CausalLM`` backend whose
    'logits' are the head's outputs; ``head`` picks the output column. With ``lp_weight`` (the
    (outputs, 2) weights of a model with LM features) the logits also hold the next-token
    logits from column ``outputs`` on, and the score adds the weighted running mean / min of the
    fed tokens' log-probabilities (as ``value_model.value_logits`` does on a full forward)."""

    network = True

    def __init__(self, runner: CausalLM, pad_id: int = 0, head: int = 0, lp_weight: torch.Tensor | None = None):
        self.runner, self.pad_id, self.head, self.lp_weight = runner, pad_id, head, lp_weight
        self.outputs = None if lp_weight is None else lp_weight.shape[0]

    @property
    def tokens_encoded(self) -> int:
        return self.runner.tokens_encoded

    def start(self, problems, prompts, copies, max_new):
        ids, valid = left_pad(prompts, self.pad_id)
        logits, state = self.runner.prefill(ids, valid, max_new, copies=copies)
        logits = logits.cpu()                  # search bookkeeping lives on the host
        if self.lp_weight is None:
            return state
        n = logits.shape[0]
        return _LpState(state, torch.log_softmax(logits[:, self.outputs:].float(), -1), torch.zeros(n),
                        torch.zeros(n), torch.full((n,), float("inf")))

    def _step(self, state, toks: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (inactive rows do not advance); the rows' scores."""
        if self.lp_weight is None:
            return torch.sigmoid(self.runner.decode(state, toks, active)[:, self.head].float().cpu())
        lp = state.prev.gather(1, toks[:, None])[:, 0]
        state.total = torch.where(active, state.total + lp, state.total)
        state.count = torch.where(active, state.count + 1, state.count)
        state.low = torch.where(active, torch.minimum(state.low, lp), state.low)
        out = self.runner.decode(state.inner, toks, active).float().cpu()
        state.prev = torch.where(active[:, None], torch.log_softmax(out[:, self.outputs:], -1), state.prev)
        feats = torch.stack([state.total / state.count.clamp(min=1),
                             torch.where(state.count > 0, state.low, torch.zeros_like(state.low))], 1)
        return torch.sigmoid(out[:, self.head] + feats @ self.lp_weight[self.head])

    @torch.inference_mode()
    def extend(self, state, chunks):
        lens = torch.tensor([len(c) for c in chunks])
        width = int(lens.max()) if chunks else 0
        toks = torch.full((len(chunks), max(1, width)), self.pad_id, dtype=torch.long)
        for r, c in enumerate(chunks):
            toks[r, : len(c)] = torch.tensor(c, dtype=torch.long)
        vals = torch.zeros(len(chunks), max(1, width))
        for t in range(width):
            vals[:, t] = self._step(state, toks[:, t], lens > t)
        return [vals[r, :n].tolist() for r, n in enumerate(lens.tolist())]

    def select(self, state, rows):
        return self.runner.select(state, rows) if self.lp_weight is None else state.select(self.runner, rows)

    def concat(self, states):
        if self.lp_weight is None:
            return self.runner.concat(states)
        return _LpState(self.runner.concat([s.inner for s in states]),
                        *(torch.cat([getattr(s, f) for s in states]) for f in ("prev", "total", "count", "low")))

    @torch.inference_mode()
    def score(self, problems, prompts, copies, completions, compact_below: float = 0.5) -> list[list[float]]:
        """One-shot ``start`` + ``extend`` of whole completions whose state is not kept: rows
        that have run out of tokens are dropped (``select``) once fewer than ``compact_below``
        are still being fed, as the sampler does."""
        lens = torch.tensor([len(c) for c in completions])
        width = int(lens.max()) if completions else 0
        state = self.start(problems, prompts, copies, max(1, width))
        toks = torch.full((len(completions), max(1, width)), self.pad_id, dtype=torch.long)
        for r, c in enumerate(completions):
            toks[r, : len(c)] = torch.tensor(c, dtype=torch.long)
        vals = torch.zeros(len(completions), max(1, width))
        rows = torch.arange(len(completions))
        for t in range(width):
            active = lens[rows] > t
            if active.sum() < compact_below * rows.numel():
                keep = active.nonzero()[:, 0]
                state, rows, active = self.select(state, keep), rows[keep], active[keep]
            vals[rows, t] = self._step(state, toks[rows, t], active)
        return [vals[r, :n].tolist() for r, n in enumerate(lens.tolist())]


@dataclass
class _TextRows:
    problems: list[dict]
    texts: list[str]


class OracleArithScorer:
    """The arith oracle as a PRM (an upper bound; it knows the true values): a prefix scores 1
    while every reasoning line so far is correct and any answer given is right, else 0."""

    network = False

    def __init__(self, task, tokenizer):
        self.task, self.tokenizer = task, tokenizer
        self.sep_id = tokenizer.encode(task.step_separator)[0]
        self.tokens_encoded = 0

    def start(self, problems, prompts, copies, max_new):
        return _TextRows([p for p in problems for _ in range(copies)], [""] * (len(problems) * copies))

    def _score(self, problem: dict, text: str) -> float:
        from reasonlab.verifiers.oracle import arith_step_labels, reasoning_lines

        labels = arith_step_labels(problem, reasoning_lines(text, self.task.step_separator),
                                   self.task.reflection_marker)
        if labels and not labels[-1]:
            return 0.0
        if "</answer>" in text:
            return float(self.task.verify(problem, text).correct)
        return 1.0

    def extend(self, state, chunks):
        out = []
        for r, chunk in enumerate(chunks):
            scores, score = [], 1.0
            for i, tok in enumerate(chunk):
                state.texts[r] += self.tokenizer.decode([tok])
                if tok == self.sep_id or i == len(chunk) - 1:
                    score = self._score(state.problems[r], state.texts[r])
                scores.append(score)
            out.append(scores)
        return out

    def select(self, state, rows):
        rows = rows.tolist()
        return _TextRows([state.problems[r] for r in rows], [state.texts[r] for r in rows])

    def concat(self, states):
        return _TextRows([p for s in states for p in s.problems], [t for s in states for t in s.texts])


class ConstantScorer:
    """Scores every token ``value``: a verifier that knows nothing (for tests and baselines)."""

    network = False

    def __init__(self, value: float = 0.5):
        self.value, self.tokens_encoded = value, 0

    def start(self, problems, prompts, copies, max_new):
        return len(problems) * copies

    def extend(self, state, chunks):
        return [[self.value] * len(c) for c in chunks]

    def select(self, state, rows):
        return len(rows)

    def concat(self, states):
        return sum(states)
