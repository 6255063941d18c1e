"""Batched sampling with a KV cache over any ``engine.protocol.CausalLM``.

``sample(model, prompts, cfg)`` draws ``cfg.n`` completions for every prompt. Each prompt is
encoded once; its KV is copied to its ``n`` rows. Rows stop at EOS, at a stop sequence or at
``max_new_tokens``; finished rows are dropped from the batch as it thins out.

Logprobs are those of the sampled token under ``softmax(logits / temperature)`` *before* top-k /
top-p truncation (``softmax(logits)`` for greedy): the policy's own probability, which is what RL
ratios need. Stop sequences are matched on token ids (exact for the character tokenizer) and
the stop tokens stay in the completion, like EOS.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from reasonlab.engine.protocol import CausalLM


@dataclass
class SamplingConfig:
    n: int = 1
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    compact_below: float = 0.5   # drop finished rows once fewer than this share are active


@dataclass
class SampleBatch:
    """One row per completion; row ``i`` answers prompt ``prompt_index[i]``."""
    prompt_index: list[int]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    logprobs: list[list[float]]
    finish_reasons: list[str]     # "eos" | "stop" | "length"

    def __len__(self) -> int:
        return len(self.completion_ids)

    def tensors(self, pad_id: int = 0):
        """Right-padded (B, L) tensors over prompt+completion: ids, logprobs and the mask of
        sampled tokens (False on prompt and padding, so they never enter a loss)."""
        seqs = [self.prompt_ids[p] + c for p, c in zip(self.prompt_index, self.completion_ids)]
        length = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
        lps = torch.zeros(len(seqs), length)
        mask = torch.zeros(len(seqs), length, dtype=torch.bool)
        for i, (s, p, c, lp) in enumerate(zip(seqs, self.prompt_index, self.completion_ids, self.logprobs)):
            start = len(self.prompt_ids[p])
            ids[i, : len(s)] = torch.tensor(s)
            lps[i, start: len(s)] = torch.tensor(lp)
            mask[i, start: len(s)] = True
        return ids, lps, mask


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists -> ids (P, T) and valid (P, T)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    t = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), t), pad_id, dtype=torch.long)
    valid = torch.zeros(len(prompts), t, dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, t - len(p):] = torch.tensor(p, dtype=torch.long)
        valid[i, t - len(p):] = True
    return ids, valid


def next_tokens(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
                gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (B, V) fp32 -> sampled tokens (B,) and their logprobs (B,)."""
    if temperature <= 0:
        logp = torch.log_softmax(logits, -1)
        tok = logits.argmax(-1)
        return tok, logp.gather(1, tok[:, None])[:, 0]
    scaled = logits if temperature == 1.0 else logits / temperature
    logp = torch.log_softmax(scaled, -1)
    if top_k <= 0 and top_p >= 1.0:                    # plain sampling: probs are exp(logp)
        noise = torch.empty_like(logp).exponential_(generator=gen)
        tok = (logp.exp() / noise).argmax(-1)
        return tok, logp.gather(1, tok[:, None])[:, 0]
    filtered = scaled
    if 0 < top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
        filtered = filtered.masked_fill(filtered < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(filtered, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, -1)
        drop = probs.cumsum(-1) - probs > top_p          # keep the smallest prefix reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        filtered = torch.full_like(filtered, float("-inf")).scatter(1, order, sorted_logits)
    # Exponential race (equivalent to multinomial): argmax p_i / E_i with E_i ~ Exp(1).
    probs = torch.softmax(filtered, -1)
    noise = torch.empty_like(probs).exponential_(generator=gen)
    tok = (probs / noise).argmax(-1)
    return tok, logp.gather(1, tok[:, None])[:, 0]


def _stop_hits(tail: torch.Tensor, stops: list[torch.Tensor]) -> torch.Tensor:
    """Rows whose last generated tokens ``tail`` (B, L) end with one of ``stops``."""
    hit = torch.zeros(tail.shape[0], dtype=torch.bool)
    for s in stops:
        n = s.numel()
        if n <= tail.shape[1]:
            hit |= (tail[:, tail.shape[1] - n:] == s).all(-1)
    return hit


@torch.inference_mode()
def sample(model: CausalLM, prompts: list[list[int]], cfg: SamplingConfig, *, eos_id: int,
           pad_id: int = 0, stop_ids: list[list[int]] | None = None, progress=None) -> SampleBatch:
    """Sample ``cfg.n`` completions for each prompt (lists of token ids)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    ids, valid = left_pad(prompts, pad_id)
    logits, state = model.prefill(ids, valid, cfg.max_new_tokens, copies=cfg.n)
    total = logits.shape[0]
    out = torch.full((total, cfg.max_new_tokens), pad_id, dtype=torch.long)
    lps = torch.zeros(total, cfg.max_new_tokens)
    length = torch.full((total,), cfg.max_new_tokens, dtype=torch.long)
    reason = ["length"] * total
    stops = [torch.tensor(s, dtype=torch.long) for s in (stop_ids or []) if s]
    longest_stop = max((s.numel() for s in stops), default=0)
    rows = torch.arange(total)                   # original row of every row still in the batch
    alive = torch.ones(total, dtype=torch.bool)  # per batch row: still generating
    for step in range(cfg.max_new_tokens):
        tok, lp = next_tokens(logits, cfg.temperature, cfg.top_k, cfg.top_p, gen)
        live = rows[alive]
        out[live, step] = tok[alive]
        lps[live, step] = lp[alive]
        done = alive & (tok == eos_id)
        if stops:
            tail = out[rows, max(0, step + 1 - longest_stop): step + 1]      # only the window a stop can span
            stop_hit = alive & ~done & _stop_hits(tail, stops)
            for r in rows[stop_hit].tolist():
                reason[r] = "stop"
            done |= stop_hit
        if done.any():
            finished = rows[done]
            length[finished] = step + 1
            for r in finished.tolist():
                if reason[r] == "length":
                    reason[r] = "eos"
            alive &= ~done
        if progress is not None:
            progress(int(done.sum()))
        if step + 1 == cfg.max_new_tokens or not alive.any():
            break
        if alive.sum() < cfg.compact_below * rows.numel():
            keep = alive.nonzero()[:, 0]
            state, rows, tok, alive = model.select(state, keep), rows[keep], tok[keep], alive[keep]
        logits = model.decode(state, torch.where(alive, tok, torch.full_like(tok, pad_id)))
    if progress is not None:
        progress(0)
    lengths = length.tolist()
    out_l, lp_l = out.tolist(), lps.tolist()
    copies = cfg.n
    return SampleBatch(
        prompt_index=[i // copies for i in range(total)],
        prompt_ids=[list(p) for p in prompts],
        completion_ids=[o[:n] for o, n in zip(out_l, lengths)],
        logprobs=[lp[:n] for lp, n in zip(lp_l, lengths)],
        finish_reasons=reason,
    )
