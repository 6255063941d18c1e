"""RL math as small pure functions, registered by name: advantages, policy losses, KL, aggregation.

The training loop (``train.grpo``) looks functions up in these registries and never branches on a
name. Shapes: ``P`` prompts (groups), ``G`` completions per prompt, ``B = P * G`` rows, ``T``
token positions (completion tokens are marked by ``mask`` (B, T) bool).

Advantages (``ADVANTAGES[name](rewards) -> advantages``, both (P, G)):

- ``grpo``: ``(r - mean) / (std + eps)`` over the group (DeepSeekMath / R1). ``std`` is the
  unbiased sample std (as TRL and verl compute it).
- ``dr_grpo``: ``r - mean`` (Dr. GRPO, "Understanding R1-Zero-like training"): no std division;
  use it with ``aggregation: constant`` (no per-sequence length normalisation).
- ``rloo``: ``r_i - mean_{j != i} r_j`` (leave-one-out baseline, Ahmadian et al. 2024).

Policy losses (``POLICY_LOSSES[name](logp, old_logp, adv, clip_low, clip_high) -> (loss, clipped)``,
all (B, T), computed per token): ``clip`` is the PPO clipped surrogate
``-min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)`` (``clip_high > clip_low`` is
DAPO's clip-higher); ``reinforce`` is ``-ratio * A`` with no clipping.

Aggregation (``AGGREGATIONS[name](mask, max_len) -> weights`` (B, T)): the loss is
``sum(weights * per_token_loss)``. The weights are computed once over the *whole* batch, so a
batch split into micro-batches and accumulated gives the same gradient as one pass
(accumulation invariance holds by construction):

- ``token``: every completion token of the batch weighs the same (DAPO's token-level loss);
- ``sequence``: the mean over a sequence's tokens, then the mean over sequences (GRPO as written);
- ``constant``: sum over tokens divided by ``B * max_len`` (Dr. GRPO).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

EPS = 1e-4


# ---- advantages ------------------------------------------------------------------------------

def grpo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """rewards (P, G) -> (r - group mean) / (group std + 1e-4), (P, G).

    >>> grpo_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]])).round(decimals=3)
    tensor([[ 0.866, -0.866, -0.866,  0.866]])
    """
    mean = rewards.mean(1, keepdim=True)
    std = rewards.std(1, keepdim=True) if rewards.shape[1] > 1 else torch.zeros_like(mean)
    return (rewards - mean) / (std + EPS)


def dr_grpo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """rewards (P, G) -> r - group mean, (P, G).

    >>> dr_grpo_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    tensor([[ 0.7500, -0.2500, -0.2500, -0.2500]])
    """
    return rewards - rewards.mean(1, keepdim=True)


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """rewards (P, G) -> r_i - mean of the other G-1 rewards, (P, G); zeros when G == 1.

    >>> rloo_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    tensor([[ 1.0000, -0.3333, -0.3333, -0.3333]])
    """
    g = rewards.shape[1]
    if g < 2:
        return torch.zeros_like(rewards)
    others = (rewards.sum(1, keepdim=True) - rewards) / (g - 1)
    return rewards - others


ADVANTAGES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "grpo": grpo_advantages,
    "dr_grpo": dr_grpo_advantages,
    "rloo": rloo_advantages,
}


# ---- policy losses ---------------------------------------------------------------------------

def clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, clip_low: float,
              clip_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate per token. logp, old_logp (B, T), adv (B,) -> (loss (B, T),
    clipped (B, T) bool: the clipped branch was taken, so the token gives no gradient)."""
    ratio = torch.exp(logp - old_logp)
    a = adv[:, None]
    unclipped = ratio * a
    clipped = ratio.clamp(1 - clip_low, 1 + clip_high) * a
    loss = -torch.minimum(unclipped, clipped)
    return loss, (clipped < unclipped).detach()


def reinforce_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, clip_low: float,
                   clip_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Unclipped importance-weighted policy gradient ``-ratio * A`` per token, (B, T)."""
    ratio = torch.exp(logp - old_logp)
    return -ratio * adv[:, None], torch.zeros_like(logp, dtype=torch.bool)


POLICY_LOSSES = {"clip": clip_loss, "reinforce": reinforce_loss}


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(pi || ref) per token, (B, T): ``e^(ref-logp) - (ref-logp) - 1``
    (unbiased, always >= 0).

    >>> kl_k3(torch.tensor([0.0]), torch.tensor([0.0]))
    tensor([0.])
    """
    d = ref_logp - logp
    return torch.exp(d) - d - 1


# ---- aggregation -----------------------------------------------------------------------------

def token_weights(mask: torch.Tensor, max_len: int) -> torch.Tensor:
    """Each completion token of the batch weighs 1 / (number of completion tokens)."""
    m = mask.float()
    return m / m.sum().clamp(min=1)


def sequence_weights(mask: torch.Tensor, max_len: int) -> torch.Tensor:
    """Mean over each sequence's tokens, then mean over the sequences that have tokens."""
    m = mask.float()
    per_seq = m.sum(1, keepdim=True)
    rows = (per_seq > 0).float().sum().clamp(min=1)
    return m / per_seq.clamp(min=1) / rows


def constant_weights(mask: torch.Tensor, max_len: int) -> torch.Tensor:
    """Sum over tokens divided by ``B * max_len`` (Dr. GRPO: no length normalisation)."""
    return mask.float() / (mask.shape[0] * max(1, max_len))


AGGREGATIONS = {"token": token_weights, "sequence": sequence_weights, "constant": constant_weights}


def lookup(registry: dict, name: str, what: str):
    """``registry[name]`` or a ValueError that lists the choices."""
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; choose from: {', '.join(sorted(registry))}")
    return registry[name]


# ---- log-probabilities -----------------------------------------------------------------------

def token_logprobs(model, ids: torch.Tensor, with_entropy: bool = False):
    """Log-probabilities of ``ids[:, 1:]`` under ``model`` (any module returning logits or an
    object with ``.logits``), (B, T-1) fp32; with ``with_entropy`` also the entropy of each
    predictive distribution, (B, T-1). Position t scores token t+1."""
    out = model(ids)
    logits = (out.logits if hasattr(out, "logits") else out)[:, :-1].float()
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(2, ids[:, 1:, None])[..., 0]
    if not with_entropy:
        return logp
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy
