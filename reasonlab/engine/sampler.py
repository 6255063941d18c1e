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
from reasonlab.engine.rng import row_hash, uniforms_at


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
                u: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (B, V) fp32 and one uniform per row ``u`` (B,) -> sampled tokens (B,) and their
    logprobs (B,). Sampling inverts the CDF of the (truncated) distribution at ``u``, so a row's
    token depends on its own logits and its own uniform only (``engine.rng``); ``u`` is unused
    for greedy decoding (``temperature`` 0)."""
    if temperature <= 0:
        logp = torch.log_softmax(logits, -1)
        tok = logits.argmax(-1)
        return tok, logp.gather(1, tok[:, None])[:, 0]
    scaled = logits if temperature == 1.0 else logits / temperature
    logp = torch.log_softmax(scaled, -1)
    if top_k <= 0 and top_p >= 1.0:                    # plain sampling: probs are exp(logp)
        return _draw(logp, logp.exp(), u)
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
    return _draw(logp, torch.softmax(filtered, -1), u)


def _draw(logp: torch.Tensor, probs: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    tok = inverse_cdf(probs, u)
    return tok, logp.gather(1, tok[:, None])[:, 0]


def inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The token whose CDF interval holds ``u``: probs (B, V) (need not sum to exactly 1),
    u (B,) in (0, 1) -> (B,) long. A token of probability 0 is never drawn.

    >>> inverse_cdf(torch.tensor([[0.2, 0.0, 0.8]]), torch.tensor([0.1])).item(), \
    ...     inverse_cdf(torch.tensor([[0.2, 0.0, 0.8]]), torch.tensor([0.3])).item()
    (0, 2)
    """
    cdf = probs.cumsum(-1)
    total = cdf[:, -1:]
    # u * total may round up to the total; the largest float below it still lands on a token of
    # positive probability (the first CDF entry above the target grew at that token)
    target = torch.minimum(u.to(cdf.dtype)[:, None] * total, torch.nextafter(total, torch.zeros_like(total)))
    tok = torch.searchsorted(cdf, target, right=True)[:, 0]
    return tok.clamp_(max=probs.shape[-1] - 1)


def _stop_hits(tail: torch.Tensor, stops: list[torch.Tensor]) -> torch.Tensor:
    """Rows whose last generated tokens ``tail`` (B, L) end with one of ``stops``."""
    hit = torch.zeros(tail.shape[0], dtype=torch.bool, device=tail.device)
    for s in stops:
        n = s.numel()
        if n <= tail.shape[1]:
            hit |= (tail[:, tail.shape[1] - n:] == s).all(-1)
    return hit


REASONS = ("length", "eos", "stop")      # finish codes kept on the device while sampling


def row_streams(seed: int, keys, n: int, device) -> torch.Tensor:
    """``engine.rng.row_hash`` of every row: prompt ``p``'s rows ``p*n .. p*n+n-1`` are samples
    ``0 .. n-1`` of key ``keys[p]``."""
    k = torch.as_tensor(list(keys), dtype=torch.long)
    return row_hash(seed, k.repeat_interleave(n), torch.arange(n).repeat(len(k))).to(device)


@torch.inference_mode()
def sample(model: CausalLM, prompts: list[list[int]], cfg: SamplingConfig, *, eos_id: int,
           pad_id: int = 0, stop_ids: list[list[int]] | None = None, progress=None,
           keys: list[int] | None = None) -> SampleBatch:
    """Sample ``cfg.n`` completions for each prompt (lists of token ids).

    ``keys`` (one int per prompt; default: its index in ``prompts``) names each prompt's random
    streams: sample ``j`` of prompt ``p`` draws its ``t``-th token with
    ``engine.rng.row_uniforms(cfg.seed, keys[p], j, t)``, so it does not depend on the batch,
    process or rank it is drawn in (up to the float rounding of the logits). Everything stays on
    the device of the backend's logits; the host reads one count per step."""
    keys = range(len(prompts)) if keys is None else keys
    if len(keys) != len(prompts):
        raise ValueError(f"{len(keys)} keys for {len(prompts)} prompts")
    ids, valid = left_pad(prompts, pad_id)
    logits, state = model.prefill(ids, valid, cfg.max_new_tokens, copies=cfg.n)
    dev, total, width = logits.device, logits.shape[0], cfg.max_new_tokens
    streams = row_streams(cfg.seed, keys, cfg.n, dev)
    out = torch.full((total, width), pad_id, dtype=torch.long, device=dev)
    lps = torch.zeros(total, width, device=dev)
    length = torch.full((total,), width, dtype=torch.long, device=dev)
    reason = torch.zeros(total, dtype=torch.long, device=dev)        # index into REASONS
    stops = [torch.tensor(s, dtype=torch.long, device=dev) for s in (stop_ids or []) if s]
    longest_stop = max((s.numel() for s in stops), default=0)
    rows = torch.arange(total, device=dev)       # original row of every row still in the batch
    alive = torch.ones(total, dtype=torch.bool, device=dev)
    n_alive = total
    for step in range(width):
        tok, lp = next_tokens(logits, cfg.temperature, cfg.top_k, cfg.top_p, uniforms_at(streams[rows], step))
        out[rows, step] = tok          # finished rows write past their length: sliced off below
        lps[rows, step] = lp
        eos = alive & (tok == eos_id)
        done = eos
        if stops:
            tail = out[rows, max(0, step + 1 - longest_stop): step + 1]      # only the window a stop can span
            done = eos | (alive & _stop_hits(tail, stops))
        reason[rows] = torch.where(eos, 1, torch.where(done, 2, reason[rows]))
        length[rows] = torch.where(done, step + 1, length[rows])
        alive &= ~done
        left = int(alive.sum())
        if progress is not None:
            progress(n_alive - left)
        n_alive = left
        if step + 1 == width or n_alive == 0:
            break
        if n_alive < cfg.compact_below * rows.numel():
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
        finish_reasons=[REASONS[r] for r in reason.tolist()],
    )
