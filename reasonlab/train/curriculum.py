"""Prompt sampling for RL: uniform, or a curriculum by running pass rate (Kimi k1.5).

``PromptSampler`` draws prompt indices from a fixed pool. Draws are a pure function of
``(seed, step, draw)``, so a resumed run draws the same prompts; the only state is the
per-prompt statistics (attempts, running pass rate), which the checkpoint stores.

Curriculum: a prompt is eligible while its running pass rate is within ``[low, high]``; prompts
never tried are eligible (their rate is unknown). Too easy prompts (the policy always solves
them) and too hard ones (never) give zero-variance groups and no gradient under GRPO. If fewer
eligible prompts remain than requested, the draw falls back to the whole pool.
"""
from __future__ import annotations

import numpy as np

SAMPLERS = ("uniform", "curriculum")


class PromptSampler:
    def __init__(self, pool_size: int, mode: str = "uniform", low: float = 0.0, high: float = 1.0,
                 ema: float = 0.5, seed: int = 0):
        if mode not in SAMPLERS:
            raise ValueError(f"unknown prompt sampler {mode!r}; choose from: {', '.join(SAMPLERS)}")
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"curriculum bounds need 0 <= low <= high <= 1, got low={low}, high={high}")
        self.mode, self.low, self.high, self.ema, self.seed = mode, low, high, ema, seed
        self.attempts = np.zeros(pool_size, dtype=np.int64)
        self.rate = np.zeros(pool_size, dtype=np.float64)

    def eligible(self) -> np.ndarray:
        """Indices a draw may pick."""
        if self.mode == "uniform":
            return np.arange(len(self.attempts))
        seen = self.attempts > 0
        ok = ~seen | ((self.rate >= self.low) & (self.rate <= self.high))
        return np.nonzero(ok)[0]

    def draw(self, k: int, step: int, draw: int = 0, exclude: set[int] | None = None) -> list[int]:
        """``k`` distinct prompt indices for ``step`` (``draw`` counts refills within a step)."""
        rng = np.random.default_rng([self.seed, step + 1, draw])        # step -1: preflight
        cand = self.eligible()
        if exclude:
            cand = cand[~np.isin(cand, list(exclude))]
        if len(cand) < k:
            cand = np.setdiff1d(np.arange(len(self.attempts)), list(exclude or ()))
        k = min(k, len(cand))
        return [int(i) for i in rng.choice(cand, size=k, replace=False)]

    def update(self, index: int, pass_rate: float) -> None:
        """Record one group's pass rate for prompt ``index`` (exponential moving average)."""
        if self.attempts[index] == 0:
            self.rate[index] = pass_rate
        else:
            self.rate[index] = self.ema * self.rate[index] + (1 - self.ema) * pass_rate
        self.attempts[index] += 1

    def state_dict(self) -> dict:
        return {"attempts": self.attempts.copy(), "rate": self.rate.copy()}

    def load_state_dict(self, state: dict) -> None:
        if len(state["attempts"]) != len(self.attempts):
            raise ValueError(f"checkpoint prompt statistics are for a pool of {len(state['attempts'])} prompts, "
                             f"this run has {len(self.attempts)}: keep train_pool unchanged when resuming")
        self.attempts, self.rate = np.array(state["attempts"]), np.array(state["rate"])

    def summary(self) -> dict:
        seen = self.attempts > 0
        return {"prompts_seen": int(seen.sum()), "eligible": len(self.eligible()),
                "mean_rate_seen": float(self.rate[seen].mean()) if seen.any() else None}
