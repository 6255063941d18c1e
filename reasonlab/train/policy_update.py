"""The GRPO policy update: ``mu`` clipped-ratio optimiser steps on one batch.

Each step accumulates the gradient of ``sum(weights * per_token_loss)`` over micro-batches; the
weights come from ``rl.AGGREGATIONS`` over the *whole* batch, so splitting the batch (into
micro-batches, or into shards on several processes) gives the same gradient up to float rounding.

Where the gradient is computed is a choice (``GradientFn``):

- ``local_gradients``: in this process, over micro-batches (any model);
- ``ParallelGradients``: the batch is split by whole groups into one shard per sampler worker
  process (``engine.parallel``); each worker runs forward and backward on its shard with one
  thread and writes its gradient into a shared buffer, and this process sums the shards, clips
  and steps. The workers hold the weights already (they sample with them), so only the batch
  tensors travel. Small models run their many small kernels one core per process far better
  than with torch's intra-op threads (docs/LOG.md: 1.25x from a second thread, ~2x from a
  second process).

Data parallel under ``torchrun`` (``train.distributed``): each process holds a shard of whole
groups; ``update`` weights its rows as rows of the global batch (``global_weights``) and, after
whichever ``GradientFn`` filled ``.grad``, averages the gradients over the processes
(``all_reduce_grads``) before clipping and stepping, so every process applies the global
batch's update. A process with an empty shard (``batch=None``) joins with zeros. With FSDP
(``train.fsdp``) the reduce-scatter in backward averages instead, and every rank runs as many
micro-batch passes as the busiest one (``fsdp.lockstep``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from reasonlab.train import rl
from reasonlab.train.distributed import (
    all_gather_objects,
    all_reduce_grads,
    all_reduce_sum,
    is_dist,
    rank,
    world_size,
)
from reasonlab.train.fsdp import is_sharded, lockstep
from reasonlab.train.logprobs import completion_logprobs
from reasonlab.train.precision import autocast_for, batch_to, model_device

STAT_KEYS = ("loss", "kl", "clip_frac", "entropy")
PAD_TO = 16                      # micro-batch widths are multiples of this (see micro_batches)


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass
class UpdateSpec:
    """What a gradient pass needs besides the model and the batch (picklable: sent to workers)."""
    policy_loss: str = "clip"
    clip_low: float = 0.2
    clip_high: float = 0.2
    beta: float = 0.0
    micro_batch: int = 64
    autocast: str = "bfloat16"


def micro_batches(batch: dict, size: int, pad_to: int = PAD_TO):
    """Row slices of ``batch`` of ``size`` rows, each with only its groups' prompts (trimmed to the
    longest) and its completion columns trimmed to its longest completion rounded up to a
    multiple of ``pad_to`` (within the batch's width): a new shape costs extra on first use, and
    rounding makes shapes repeat. Prompt widths are not rounded: the padding cost more than it
    saved (docs/LOG.md)."""
    lengths = batch["mask"].sum(1)
    width = batch["ids"].shape[1]
    for lo in range(0, batch["ids"].shape[0], size):
        sl = slice(lo, lo + size)
        t = min(width, round_up(int(lengths[sl].max()), pad_to))
        used, group = torch.unique(batch["group"][sl], return_inverse=True)
        tp = int(batch["prompt_len"][used].max())
        yield sl, {"prompt_ids": batch["prompt_ids"][used, :tp], "prompt_len": batch["prompt_len"][used],
                   "group": group, "ids": batch["ids"][sl, :t]}, t


def accumulate(policy, ref, batch: dict, weights: torch.Tensor, old: torch.Tensor, spec: UpdateSpec,
               first: bool, n_tok: float) -> dict:
    """Backward of ``sum(weights * per_token_loss)`` over micro-batches of ``batch`` into the
    parameters' ``.grad``. ``first``: the first epoch, where ``old`` (B, T) takes the policy's
    own log-probs for tokens that are not stale (in place). Each micro-batch moves to the
    policy's device, where its loss is computed (autocast there). -> sums of the statistics."""
    mask, stale, adv = batch["mask"], batch["stale"], batch["adv"]
    loss_fn = rl.POLICY_LOSSES[spec.policy_loss]
    stats = dict.fromkeys(STAT_KEYS, 0.0)
    dev = model_device(policy)
    for sl, mb, t in micro_batches(batch, spec.micro_batch):
        mb = batch_to(mb, dev)
        m, w, old_mb = mask[sl, :t].to(dev), weights[sl, :t].to(dev), old[sl, :t].to(dev)
        with autocast_for(policy, spec.autocast):
            logp, ent = completion_logprobs(policy, **mb, with_entropy=True)
            if first:
                old_mb = torch.where(stale[sl, :t].to(dev), old_mb, logp.detach())
                old[sl, :t] = old_mb.to(old.device)
            per_tok, clipped = loss_fn(logp, old_mb, adv[sl].to(dev), spec.clip_low, spec.clip_high)
            if spec.beta > 0:
                with torch.no_grad():
                    ref_logp = completion_logprobs(ref, **mb)
                kl = rl.kl_k3(logp, ref_logp)
                per_tok = per_tok + spec.beta * kl
                stats["kl"] += float((kl.detach() * m).sum()) / n_tok
        loss = (per_tok * w).sum()
        loss.backward()
        stats["loss"] += float(loss.detach())
        stats["clip_frac"] += float((clipped & m).sum()) / n_tok
        if first:
            stats["entropy"] += float((ent.detach() * m).sum()) / n_tok
    return stats


# (policy, ref, batch, weights, old, spec, first, n_tok) -> stats, with the gradient in policy's .grad
GradientFn = Callable[..., dict]


local_gradients: GradientFn = accumulate           # the gradient in this process


def update(policy, ref, opt, batch: dict | None, spec: UpdateSpec, mu: int = 1, aggregation: str = "token",
           grad_clip: float = 1.0, gradients: GradientFn = local_gradients) -> dict:
    """``mu`` optimiser steps on one batch; pi_old is fixed before the first (``train.grpo``'s
    docstring). -> metrics: loss, clip_frac, entropy, grad_norm (and kl when ``beta > 0``), of
    the global batch under ``torchrun`` (``batch``: this process's shard, None when empty)."""
    if batch is None:                          # data parallel: this rank's shard is empty
        batch = {"mask": torch.zeros(0, 0, dtype=torch.bool), "behavior": torch.zeros(0, 0)}
    mask = batch["mask"]
    weights, n_tok, share = global_weights(mask, aggregation)              # (B, Tc), whole batch
    old = batch["behavior"].clone()
    stats = dict.fromkeys(STAT_KEYS, 0.0)
    sharded = is_sharded(policy)               # FSDP: gradients averaged by its reduce-scatter
    gradients = lockstep(gradients) if sharded else gradients
    for epoch in range(mu):
        opt.zero_grad(set_to_none=True)
        part = (gradients(policy, ref, batch, weights, old, spec, epoch == 0, n_tok) if mask.shape[0] or sharded
                else dict.fromkeys(STAT_KEYS, 0.0))
        part = reduce_stats(part, share)
        if not sharded:
            all_reduce_grads(policy)           # every rank now holds the global batch's gradient
        for k in ("loss", "kl", "clip_frac"):
            stats[k] += part[k] / mu
        if epoch == 0:
            stats["entropy"] = part["entropy"]
        norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip if grad_clip > 0 else float("inf"))
        opt.step()
        stats["grad_norm"] = float(norm)
    if spec.beta <= 0:
        stats.pop("kl")
    return stats


def global_weights(mask: torch.Tensor, aggregation: str) -> tuple[torch.Tensor, float, float]:
    """-> (weights of this process's rows, loss tokens of the global batch, ``share``).

    On a single process: ``rl.AGGREGATIONS`` over ``mask``, its token count and 1. Under
    ``torchrun`` every rank holds a shard of whole groups: the weights are those of the rows in
    the *global* batch (every aggregation depends only on the completion lengths, which are
    gathered; ``mask`` rows are prefixes, as ``batch_tensors`` lays them out) times ``share`` =
    the world size, so that ``all_reduce_grads`` (a mean over ranks) gives the global batch's
    gradient. For ``token`` aggregation that is the local weight times ``token_share``."""
    if not is_dist():
        return rl.AGGREGATIONS[aggregation](mask, int(mask.sum(1).max())), float(mask.sum()), 1.0
    lengths = mask.sum(1)
    if not torch.equal(mask, torch.arange(mask.shape[1])[None, :] < lengths[:, None]):
        raise ValueError("global_weights needs right-padded completion masks (rows of True, then False)")
    everyone = all_gather_objects(lengths.tolist())
    flat = torch.tensor([n for part in everyone for n in part], dtype=torch.long)
    width = max(mask.shape[1], int(flat.max()))
    full = torch.arange(width)[None, :] < flat[:, None]
    lo = sum(len(part) for part in everyone[: rank()])
    share = float(world_size())
    weights = rl.AGGREGATIONS[aggregation](full, int(flat.max()))[lo: lo + mask.shape[0], : mask.shape[1]] * share
    return weights, float(flat.sum()), share


def reduce_stats(part: dict, share: float) -> dict:
    """Statistics of the global batch from each rank's ``part``: sums over ranks (the token
    normaliser ``n_tok`` is already global); the loss was computed with weights times ``share``."""
    if not is_dist():
        return part
    keys = list(part)
    total = all_reduce_sum(torch.tensor([float(part[k]) for k in keys], dtype=torch.float64))
    out = dict(zip(keys, total.tolist()))
    out["loss"] /= share
    return out


# ---- gradients on the sampler's worker processes --------------------------------------------

def shard_rows(batch: dict, parts: int) -> list[torch.Tensor]:
    """Row indices of up to ``parts`` shards of whole, consecutive groups (rows lie group by group,
    as ``batch_tensors`` lays them out), cut where the largest shard's cost is smallest. A shard's
    cost is what its forward pays: rows x its longest completion (every row is padded to it) plus
    its prompt tokens."""
    group, lengths = batch["group"], batch["mask"].sum(1)
    n = int(group.max()) + 1 if group.numel() else 0
    rows = torch.bincount(group, minlength=n).tolist()
    longest = torch.zeros(n, dtype=torch.long).scatter_reduce_(0, group, lengths, "amax").tolist()
    prompt = batch["prompt_len"][:n].tolist()
    parts = max(1, min(parts, n))
    inf = float("inf")
    # best[k][e]: (largest cost, cuts) of splitting groups 0..e-1 into k shards
    best = [[(inf, [])] * (n + 1) for _ in range(parts + 1)]
    best[0][0] = (0, [])
    for k in range(1, parts + 1):
        for a in range(k - 1, n):
            if best[k - 1][a][0] == inf:
                continue
            n_rows, top, n_prompt = 0, 0, 0
            for e in range(a + 1, n + 1):                  # shard k = groups a..e-1
                n_rows, top, n_prompt = n_rows + rows[e - 1], max(top, longest[e - 1]), n_prompt + prompt[e - 1]
                cand = (max(best[k - 1][a][0], n_rows * top + n_prompt), best[k - 1][a][1] + [e])
                if cand[0] < best[k][e][0]:
                    best[k][e] = cand
    cuts = [0] + best[parts][n][1]
    first_row = [0] + torch.cumsum(torch.tensor(rows), 0).tolist()
    return [torch.arange(first_row[a], first_row[b]) for a, b in zip(cuts, cuts[1:])]


def sub_batch(batch: dict, rows: torch.Tensor) -> dict:
    """The rows ``rows`` of ``batch`` (whole groups) with their prompts, groups renumbered."""
    used, group = torch.unique(batch["group"][rows], return_inverse=True)
    tp = int(batch["prompt_len"][used].max())
    out = {k: batch[k][rows] for k in ("ids", "mask", "stale", "adv")}
    return {**out, "prompt_ids": batch["prompt_ids"][used, :tp], "prompt_len": batch["prompt_len"][used],
            "group": group}


def worker_gradients(ctx, shard: dict, weights: torch.Tensor, old: torch.Tensor, spec: UpdateSpec,
                     first: bool, n_tok: float):
    """Runs in a sampler worker (``ParallelSampler.call``): the gradient of its shard into the
    worker's shared buffer. -> (statistics, ``old`` after the first epoch)."""
    model = ctx.model
    model.zero_grad(set_to_none=True)
    stats = accumulate(model, None, shard, weights, old, spec, first, n_tok)
    for name, p in model.named_parameters():
        if p.grad is None:
            ctx.grads[name].zero_()
        else:
            ctx.grads[name].copy_(p.grad)
    return stats, old


class ParallelGradients:
    """A ``GradientFn`` over a ``ParallelSampler`` made with ``grad_buffers=True`` whose workers
    hold the policy's current weights (they are refreshed after every optimiser step; for
    ``mu > 1`` this refreshes them between epochs). No reference model (``beta`` must be 0)."""

    def __init__(self, pool):
        self.pool = pool

    def __call__(self, policy, ref, batch, weights, old, spec, first, n_tok) -> dict:
        if spec.beta > 0:
            raise ValueError("ParallelGradients has no reference model; use local gradients when beta > 0")
        if not first:
            self.pool.refresh(policy)
        shards = shard_rows(batch, self.pool.workers)
        args = [(sub_batch(batch, rows), weights[rows], old[rows], spec, first, n_tok) for rows in shards]
        results = self.pool.call(worker_gradients, args)
        stats = dict.fromkeys(STAT_KEYS, 0.0)
        for rows, (part, part_old) in zip(shards, results):
            old[rows] = part_old
            for k in STAT_KEYS:
                stats[k] += part[k]
        with torch.no_grad():
            for name, p in policy.named_parameters():
                grads = [self.pool.grads[w][name] for w in range(len(shards))]
                p.grad = torch.stack(grads).sum(0) if len(grads) > 1 else grads[0].clone()
        return stats
