"""Rollouts for RL: groups of completions, partial rollouts, rewards, and the tensors a loss needs.

A *group* is the ``G`` completions of one prompt. With partial rollouts (Kimi k1.5) each
iteration generates at most ``segment`` new tokens per sequence; a sequence that has not finished
and is still under ``max_tokens`` is kept in a buffer and continued in the next iteration (its
prompt plus what it wrote so far is prefilled again), and a group is scored only when all its
sequences are done. Tokens written by an older policy are marked *stale*: their old log-probs
are the sampler's, so the clipped ratio corrects (and bounds) the policy lag.

Rollouts are drawn from a ``backends.PolicyBackend`` (``make_rollout_backend``):
``sample(prompts, scfg, keys=None)`` (``keys``: one int per prompt naming its random streams, so
a prompt's samples do not depend on the batch, worker or rank that draws them; None: the
prompts' indices); ``refresh(model)`` gives it the trained weights after an optimiser step;
``gradients`` is where the policy update computes its gradient (``train.policy_update``: on the
sampler's workers for ``parallel``, in this process for ``local``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from reasonlab.engine.sampler import SampleBatch, SamplingConfig
from reasonlab.train.policy_update import round_up


def worker_count(backend: str, workers: int) -> int:
    """Sampler processes a run uses (``workers`` 0: one per core; ``local``: this process)."""
    import os

    return (workers or os.cpu_count() or 1) if backend == "parallel" else 1


@dataclass
class Row:
    ids: list[int] = field(default_factory=list)        # completion tokens so far
    logprobs: list[float] = field(default_factory=list)  # sampler log-probs of those tokens
    finish: str | None = None                            # "eos" | "stop" | "length"; None: continue
    stale: int = 0                                       # first `stale` tokens: older policy


@dataclass
class Group:
    index: int                    # prompt index in the training pool
    prompt_ids: list[int]
    rows: list[Row]

    @property
    def done(self) -> bool:
        return all(r.finish is not None for r in self.rows)


# ---- backends --------------------------------------------------------------------------------

def make_rollout_backend(name: str, model, tokenizer, dtype, workers: int):
    """The ``backends.PolicyBackend`` a stage samples from (``parallel``: worker gradients too)."""
    from reasonlab.backends import make_backend

    return make_backend(model, tokenizer, name, dtype=dtype, workers=workers, grad_buffers=name == "parallel")


# ---- generation ------------------------------------------------------------------------------

def generate(sample_fn, buffer: list[Group], new: list[tuple[int, list[int]]], g: int,
             scfg: SamplingConfig, max_tokens: int, key_offsets: tuple[int, int] | None = None
             ) -> tuple[list[Group], list[Group], int]:
    """Continue every unfinished row of ``buffer`` and start ``g`` rows for each ``(index,
    prompt_ids)`` in ``new``, generating at most ``scfg.max_new_tokens`` tokens per row.
    ``key_offsets`` (fresh, continued): the sampler keys of the new prompts and of the continued
    rows count up from these (their positions in a larger batch split over processes: a row
    draws the same samples wherever it is drawn); None: ``sample_fn`` is called without keys.
    -> (finished groups, still unfinished groups, tokens generated)."""
    for grp in buffer:
        for row in grp.rows:
            row.stale = len(row.ids)
    fresh = [Group(i, p, [Row() for _ in range(g)]) for i, p in new]
    todo = [(grp, row) for grp in buffer for row in grp.rows if row.finish is None]
    generated = 0
    if fresh:
        batch = sample_fn([grp.prompt_ids for grp in fresh], replace(scfg, n=g),
                          **_key_range(key_offsets, 0, len(fresh)))
        pairs = [(grp, row) for grp in fresh for row in grp.rows]
        generated += _absorb(batch, pairs, max_tokens)
    if todo:
        prompts = [grp.prompt_ids + row.ids for grp, row in todo]
        batch = sample_fn(prompts, replace(scfg, n=1, seed=scfg.seed + 7919), **_key_range(key_offsets, 1, len(todo)))
        generated += _absorb(batch, todo, max_tokens)
    groups = buffer + fresh
    return [x for x in groups if x.done], [x for x in groups if not x.done], generated


def _key_range(offsets: tuple[int, int] | None, which: int, n: int) -> dict:
    """The ``keys`` keyword for ``n`` prompts counting up from ``offsets[which]`` (none: {})."""
    return {} if offsets is None else {"keys": list(range(offsets[which], offsets[which] + n))}


def _absorb(batch: SampleBatch, pairs: list[tuple[Group, Row]], max_tokens: int) -> int:
    """Append a SampleBatch's rows (in order) to their ``Row``s; -> tokens added."""
    added = 0
    for (_, row), ids, lps, reason in zip(pairs, batch.completion_ids, batch.logprobs, batch.finish_reasons):
        room = max_tokens - len(row.ids)
        ids, lps = ids[:room], lps[:room]
        row.ids += ids
        row.logprobs += lps
        added += len(ids)
        if reason != "length":
            row.finish = reason
        elif len(row.ids) >= max_tokens:
            row.finish = "length"
    return added


# ---- training tensors ------------------------------------------------------------------------

def batch_tensors(groups: list[Group], advantages: torch.Tensor, pad_id: int, pad_to: int = 1) -> dict:
    """Tensors for a loss (``train.logprobs`` layout): ``prompt_ids`` (P, Tp) right-padded,
    ``prompt_len`` (P,), ``group`` (B,) and, aligned with the completions ``ids`` (B, Tc)
    (right-padded, rows group by group): ``mask`` (real tokens), ``stale`` (written by an older
    policy), ``behavior`` (sampler log-probs); ``adv`` (B,). Groups are ordered by their longest
    completion (longest first), so micro-batches of whole groups pad little. ``pad_to``: the
    completion width is rounded up to a multiple of it (``train.policy_update`` trims
    micro-batches to multiples of it, so the kernels see few distinct shapes)."""
    order = sorted(range(len(groups)), key=lambda i: -max(len(r.ids) for r in groups[i].rows))
    groups, advantages = [groups[i] for i in order], advantages[order]
    rows = [(gi, row) for gi, grp in enumerate(groups) for row in grp.rows]
    tp = max(len(g.prompt_ids) for g in groups)
    tc = round_up(max(len(r.ids) for _, r in rows), pad_to)
    prompt_ids = torch.full((len(groups), tp), pad_id, dtype=torch.long)
    for i, grp in enumerate(groups):
        prompt_ids[i, : len(grp.prompt_ids)] = torch.tensor(grp.prompt_ids)
    ids = torch.full((len(rows), tc), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), tc, dtype=torch.bool)
    stale = torch.zeros(len(rows), tc, dtype=torch.bool)
    behavior = torch.zeros(len(rows), tc)
    for i, (_, row) in enumerate(rows):
        n = len(row.ids)
        ids[i, :n] = torch.tensor(row.ids)
        mask[i, :n] = True
        stale[i, : row.stale] = True
        behavior[i, :n] = torch.tensor(row.logprobs)
    return {"prompt_ids": prompt_ids, "prompt_len": torch.tensor([len(g.prompt_ids) for g in groups]),
            "group": torch.tensor([gi for gi, _ in rows]), "ids": ids, "mask": mask, "stale": stale,
            "behavior": behavior, "adv": advantages.reshape(-1).float()}
