"""LoRA adapters for training (our own ~100 lines, no peft): a frozen ``nn.Linear`` plus a
trainable low-rank update, ``y = base(x) + (alpha / r) * x A^T B^T``.

Why not peft: our ``Llama`` is not a transformers model; wrapping it in a ``PeftModel`` hides the
``Llama`` class that ``train.logprobs`` (shared-prompt log-probs), checkpointing and the samplers
dispatch on. Here the adapters replace the targeted Linears *in place*, so the model stays a
``Llama`` (or the same transformers class) and every training path runs unchanged.

- ``add_lora(model, rank, alpha, targets)``: wrap every ``nn.Linear`` whose last name component is
  in ``targets`` (``DEFAULT_TARGETS``: our fused ``qkv`` / ``o`` / ``gate_up`` / ``down``, and the
  Hugging Face ``q_proj`` ... ``down_proj``), freeze every other parameter. Note that our ``qkv``
  is one fused matrix, so its adapter is one rank-r update of q, k and v together (peft on a
  transformers model would give q, k and v a rank-r adapter each).
- ``merged_policy(model)``: a plain model (no adapters) whose weights are ``W + scale * B A``;
  the model itself when it has no adapters. Samplers, checkpoints and evaluation take this.
- ``lora_state`` / ``load_lora_state``: the adapter tensors alone (what a resumed run needs: the
  base weights never change, so they are reloaded from the base model).

A starts Kaiming-uniform and B at zero (as in the LoRA paper and peft): the wrapped model is
exactly the base model before the first update, and in the first optimiser step only B moves.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_TARGETS = ("qkv", "o", "gate_up", "down",                                  # our Llama
                   "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")   # transformers


class LoRALinear(nn.Module):
    """``base(x) + scale * (x A^T) B^T`` with ``base`` frozen, A (r, in), B (out, r)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        kw = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **kw))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        base.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale

    def merged(self) -> nn.Linear:
        """A new plain ``nn.Linear`` with ``W + scale * B A`` (and the base bias)."""
        base = self.base
        out = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                        device=base.weight.device, dtype=base.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(base.weight + self.scale * (self.lora_B @ self.lora_A))
            if base.bias is not None:
                out.bias.copy_(base.bias)
        return out


def add_lora(model: nn.Module, rank: int, alpha: float = 16.0, targets=()) -> nn.Module:
    """Wrap the targeted Linears of ``model`` in place (``targets`` empty: ``DEFAULT_TARGETS``);
    only the adapters train afterwards. -> ``model``. ValueError when nothing matches."""
    if rank < 1:
        raise ValueError(f"lora rank must be >= 1, got {rank}")
    names = set(targets or DEFAULT_TARGETS)
    model.requires_grad_(False)
    found = [(name, m) for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in names]
    if not found:
        linears = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"lora_targets {sorted(names)} match no Linear of the model (its Linears: {', '.join(linears)})")
    for name, linear in found:
        _set_module(model, name, LoRALinear(linear, rank, alpha))
    return model


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimiser gets: all of them, or only the adapters under LoRA."""
    return [p for p in model.parameters() if p.requires_grad]


def merged_policy(model: nn.Module) -> nn.Module:
    """A plain model with the adapters merged into its weights (a copy; its parameters require
    gradients again, like a freshly loaded model), or ``model`` itself when it has none."""
    if not has_lora(model):
        return model
    plain = copy.deepcopy(model)
    for name, m in list(plain.named_modules()):
        if isinstance(m, LoRALinear):
            _set_module(plain, name, m.merged())
    return plain.requires_grad_(True)


def merged_refresh(refresh: Callable[[nn.Module], None]) -> Callable[[nn.Module], None]:
    """A sampler's ``refresh(model)`` that is handed ``merged_policy(model)`` instead."""
    return lambda model: refresh(merged_policy(model))


def lora_state(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """The adapter tensors (cpu copies) by parameter name; None without adapters."""
    state = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if ".lora_" in n}
    return state or None


def load_lora_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy saved adapter tensors into ``model`` (same targets and rank, else ValueError)."""
    params = {n: p for n, p in model.named_parameters() if ".lora_" in n}
    if set(params) != set(state) or any(params[n].shape != t.shape for n, t in state.items()):
        raise ValueError("saved LoRA adapters do not match this run's lora_rank / lora_targets")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)
