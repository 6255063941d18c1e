"""Per-row random streams: a row's random numbers depend on (seed, key, sample, step) only.

A sampled completion must not depend on which process or batch it was drawn in, nor on how
many workers or ranks share the work: its ``t``-th token is drawn with the uniform
``row_uniforms(seed, key, sample, t)``, where ``key`` identifies the prompt (its index in the
caller's list, or a problem id) and ``sample`` is the row's index among the prompt's ``n``
samples. The numbers come from a counter-based hash (MurmurHash3's 32-bit finaliser chained
over the four words), computed with int64 tensor arithmetic on any device, so there is no
generator state to split, ship or keep in step.

>>> u = row_uniforms(0, torch.tensor([3, 3, 4]), torch.tensor([0, 1, 0]), 5)
>>> bool(((u > 0) & (u < 1)).all()), u[0].item() == row_uniforms(0, torch.tensor([3]), torch.tensor([0]), 5).item()
(True, True)
"""
from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9


def _fmix32(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's finaliser on int64 tensors holding unsigned 32-bit values. Products overflow
    int64 and wrap modulo 2**64, which keeps the low 32 bits exact."""
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & MASK32
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & MASK32
    return x ^ (x >> 16)


def _absorb(h: torch.Tensor, word: torch.Tensor | int) -> torch.Tensor:
    """Fold one 64-bit word (two 32-bit halves) into the running hash ``h``."""
    if isinstance(word, int):
        word = torch.as_tensor(word, dtype=torch.int64, device=h.device)
    h = _fmix32(h ^ (word & MASK32))
    return _fmix32(((h + GOLDEN) & MASK32) ^ ((word >> 32) & MASK32))


def row_hash(seed: int, keys: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """The step-independent part of each row's stream: keys, samples (B,) int64 -> (B,) int64."""
    h = torch.full_like(keys, GOLDEN, dtype=torch.int64)
    h = _absorb(h, int(seed) & ((1 << 63) - 1))
    h = _absorb(h, keys.long())
    return _absorb(h, samples.long())


def uniforms_at(rows: torch.Tensor, step: int) -> torch.Tensor:
    """Uniforms in (0, 1), float64, for rows with ``row_hash`` values ``rows`` at ``step``."""
    h = _absorb(rows, int(step))
    return (h.double() + 0.5) / float(1 << 32)


def row_uniforms(seed: int, keys: torch.Tensor, samples: torch.Tensor, step: int) -> torch.Tensor:
    """One uniform per row for token position ``step``: a pure function of its arguments."""
    return uniforms_at(row_hash(seed, keys, samples), step)


def generator_uniforms(gen: torch.Generator, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` uniforms from a stateful generator (search strategies that run in one process)."""
    return torch.rand(n, generator=gen, dtype=torch.float64).to(device)
