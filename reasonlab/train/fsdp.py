"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for GRPO and RFT: ``--fsdp=true`` under torchrun
shards parameters, gradients and optimiser state over the ranks, for a policy that does not fit
one device. The data parallel recipe (``train.distributed``, ``train.rl_dist``) is unchanged:
each rank trains on its block of the batch with its rows weighted as rows of the global batch;
FSDP's reduce-scatter averages the gradients over the ranks in backward, as ``all_reduce_grads``
does without it (so ``policy_update.update`` and ``rft.sft_step`` skip that call).

- ``shard_model(model)``: ``fully_shard`` on each decoder layer (our ``Llama``'s ``model.layers``,
  a transformers model's ``model.model.layers``), then on the model; -> a ``ShardedPolicy``
  wrapping it. Called by ``precision.prepare_policy`` after LoRA / checkpointing / device.
  With one process (``world_size() == 1``, no torchrun) it is a no-op: ``fsdp: true`` then
  trains the plain model. LoRA with FSDP is refused by ``precision.check_training_options``.
- The wrapper is not a ``Llama``, so ``logprobs.completion_logprobs`` takes its full-sequence
  path through ``forward`` (the FSDP hooks live on ``forward``; the shared-prompt path calls the
  layers' pieces directly, which would see sharded parameters). Same result up to rounding.
- Every FSDP forward and backward is a collective: ranks must run the same number of passes.
  ``lockstep(gradients)`` makes a rank with fewer micro-batches (or none) run zero-loss passes
  (``idle_loss``) until it has run as many as the busiest rank.
- ``full_model(model)``: a plain, unsharded copy with the full weights, on every rank (a
  collective: every rank calls it). Samplers (``plain_policy`` / ``plain_refresh``), checkpoints
  and the final evaluation take it; rank 0 writes.
- ``optimizer_state`` / ``load_optimizer_state``: the full optimiser state (rank 0) for
  checkpoints, and its load on resume (every rank reads the checkpoint).

Untested on CUDA/nccl (developed on CPU with gloo).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from reasonlab.train.distributed import all_gather_objects, world_size
from reasonlab.train.precision import model_device


class ShardedPolicy(nn.Module):
    """A ``fully_shard``-ed model (``self.module``) whose ``forward`` is the model's; keeps a
    parameter-free skeleton of the model (meta tensors) for ``full_model``."""

    def __init__(self, module: nn.Module, skeleton: nn.Module):
        super().__init__()
        self.module = module
        self.__dict__["skeleton"] = skeleton          # not a submodule: no parameters, no state_dict

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def is_sharded(model) -> bool:
    return isinstance(model, ShardedPolicy)


def decoder_layers(model: nn.Module):
    """Our ``Llama``'s ``layers`` or a transformers causal LM's ``model.layers``."""
    if isinstance(getattr(model, "layers", None), nn.ModuleList):
        return model.layers
    inner = getattr(model, "model", None)
    if isinstance(getattr(inner, "layers", None), nn.ModuleList):
        return inner.layers
    raise ValueError(f"fsdp: cannot find the decoder layers of {type(model).__name__} "
                     f"(expected .layers or .model.layers)")


def shard_model(model: nn.Module) -> nn.Module:
    """``fully_shard`` each decoder layer, then the model -> ``ShardedPolicy``. A no-op (``model``
    itself) on a single process. Call after the model is on its training device."""
    if world_size() == 1:
        return model
    from torch.distributed.fsdp import fully_shard

    layers = decoder_layers(model)
    memo = {id(b): torch.empty_like(b, device="meta") for b in model.buffers()}
    memo.update({id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
                 for p in model.parameters()})
    skeleton = copy.deepcopy(model, memo)        # the same modules (tied weights tied) on meta tensors
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    return ShardedPolicy(model, skeleton)


def full_model(model: nn.Module) -> nn.Module:
    """A plain module with ``model``'s full weights (every parameter gathered, on the device it
    trains on) when ``model`` is sharded; ``model`` itself otherwise. Collective under FSDP:
    every rank must call it, in the same order."""
    if not is_sharded(model):
        return model
    from torch.distributed.tensor import DTensor

    fresh = copy.deepcopy(model.skeleton)
    full = {}
    for name, p in model.module.named_parameters():                  # the same order on every rank
        t = p.full_tensor() if isinstance(p, DTensor) else p
        full[name] = nn.Parameter(t.detach().clone(), requires_grad=p.requires_grad)
    new_for = {}
    for name, meta in fresh.named_parameters(remove_duplicate=False):  # tied weights: one tensor
        if id(meta) not in new_for:                        # a tied weight: under its first name
            new_for[id(meta)] = full[name]
        _set(fresh, name, new_for[id(meta)], "_parameters")
    for name, b in model.module.named_buffers():
        _set(fresh, name, b.detach().clone(), "_buffers")
    return fresh.train(model.module.training)


def _set(root: nn.Module, name: str, value, kind: str) -> None:
    parent, _, leaf = name.rpartition(".")
    getattr(root.get_submodule(parent) if parent else root, kind)[leaf] = value


def plain_policy(model: nn.Module) -> nn.Module:
    """What samplers take: ``full_model`` of a sharded policy, else ``merged_policy`` (LoRA merged)."""
    from reasonlab.models.lora import merged_policy

    return full_model(model) if is_sharded(model) else merged_policy(model)


def plain_refresh(refresh):
    """A sampler's ``refresh(model)`` that is handed ``plain_policy(model)`` (collective under FSDP)."""
    return lambda model: refresh(plain_policy(model))


# ---- keeping the ranks' passes in step ------------------------------------------------------

def idle_loss(model: nn.Module) -> torch.Tensor:
    """A zero loss from a forward over a dummy token: its backward reduces zero gradients, so a
    rank without rows joins a pass's all-gathers and reduce-scatters."""
    out = model(torch.zeros(1, 2, dtype=torch.long, device=model_device(model)))
    logits = out.logits if hasattr(out, "logits") else out
    return logits.float().sum() * 0.0


def lockstep(gradients):
    """A ``policy_update.GradientFn`` for a sharded policy: ``gradients`` on this rank's rows (one
    forward and backward per micro-batch of ``spec.micro_batch`` rows, as ``accumulate`` runs
    them), then zero-loss passes until this rank has run as many as the busiest rank."""
    from reasonlab.train.policy_update import STAT_KEYS

    def run(policy, ref, batch, weights, old, spec, first, n_tok) -> dict:
        rows = batch["mask"].shape[0]
        mine = -(-rows // spec.micro_batch)
        most = max(all_gather_objects(mine))
        stats = dict.fromkeys(STAT_KEYS, 0.0)
        if rows:
            stats = gradients(policy, ref, batch, weights, old, spec, first, n_tok)
        for _ in range(most - mine):
            idle_loss(policy).backward()
        return stats
    return run


# ---- optimiser state in checkpoints ---------------------------------------------------------

def optimizer_state(model: nn.Module, opt) -> dict:
    """``opt.state_dict()``; for a sharded model the full state by parameter name, on rank 0 (empty
    on the others; collective)."""
    if not is_sharded(model):
        return opt.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: nn.Module, opt, state: dict) -> None:
    """Inverse of ``optimizer_state`` (every rank holds the full ``state``, read from the checkpoint)."""
    if not is_sharded(model):
        opt.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True))


def sharded_sft_step(model, opt, chunk: list, grad_clip: float) -> float:
    """``sft.sft_step`` (RFT's call: one pass, no packing, no autocast) for a sharded policy: no
    ``all_reduce_grads`` (the reduce-scatter averages), and a rank without rows runs an idle pass."""
    from reasonlab.train.distributed import all_reduce_mean, block_slice, token_share
    from reasonlab.train.sft import accumulate_loss

    mine = chunk[block_slice(len(chunk))]
    opt.zero_grad(set_to_none=True)
    share = token_share(sum(len(c) for _, c in mine))
    loss = accumulate_loss(model, mine, scale=share) if mine else 0.0
    if not mine:
        idle_loss(model).backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return all_reduce_mean(loss * share)
