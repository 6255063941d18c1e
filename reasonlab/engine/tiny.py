"""KV-cache backend for our ``Llama`` (implements ``engine.protocol.CausalLM``): the tiny model and
Hugging Face Llama / Qwen2 / Qwen3 checkpoints loaded through ``models.families``.

``prefill`` finds the longest token prefix that all prompts share (the prompt template), encodes
it once as a segment read by every row, encodes each prompt's remainder once as a segment read by
its ``copies`` rows, and preallocates each row's own cache for ``max_new`` tokens. Decoding
attends over the segments and the own cache (``engine.attention``), so neither the shared
template nor a prompt is re-encoded or copied per sample. Prompts are left-padded; RoPE positions
count real tokens only, so a padded row computes what it would compute alone.

Tree search extends this with holes: ``decode(state, tokens, active)`` leaves inactive rows where
they are (their own-cache column is marked invalid, their position does not move), ``select``
may repeat rows (a fork copies the row's own cache; the shared segments are only re-grouped) and
``concat`` joins states. The per-row own-cache validity mask exists only once a hole appears, so
plain sampling keeps its fast path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reasonlab.engine.attention import Segment, attend
from reasonlab.engine.protocol import ContextTooLong
from reasonlab.models.llama import Llama, apply_rope, rms_norm

MIN_SHARED_PREFIX = 8
ROPE_TABLE_START = 4096        # positions tabulated up front; more on demand (long-context configs)


@dataclass
class LlamaState:
    segments: list[Segment]
    k: list[torch.Tensor]      # per layer own cache (B, K, S, E)
    v: list[torch.Tensor]
    pos: torch.Tensor          # (B,) RoPE position of the next token
    col: int                   # next own-cache column to write
    own_valid: torch.Tensor | None = None   # (B, S) bool, None while every written column is valid


def shared_prefix_length(ids: torch.Tensor, valid: torch.Tensor) -> int:
    """Longest prefix of real tokens common to all left-padded rows, leaving each row at least
    one token of its own."""
    lengths = valid.sum(1)
    shortest = int(lengths.min())
    if ids.shape[0] < 2 or shortest < 2:
        return 0
    t = ids.shape[1]
    starts = t - lengths                                           # first real column of each row
    cols = starts[:, None] + torch.arange(shortest - 1)[None]
    aligned = ids.gather(1, cols)                                  # (P, shortest-1), right-aligned starts
    same = (aligned == aligned[:1]).all(0).long().cumprod(0)
    return int(same.sum())


class LlamaRunner:
    """Runs a ``Llama`` for sampling, optionally in a lower-precision copy (``dtype``)."""

    def __init__(self, model: Llama, dtype: torch.dtype | None = None, merge_prefix_below: int = 64):
        self.model = model if dtype is None else _cast_copy(model, dtype)
        self.model.eval()
        self.cfg = model.cfg
        self.vocab_size = model.cfg.vocab_size
        self.max_len = model.cfg.max_seq_len           # context window (prompt + generated tokens)
        self.dtype = next(self.model.parameters()).dtype
        self.device = next(self.model.parameters()).device
        self.scale = 1.0 / math.sqrt(self.cfg.head_dim)
        self.merge_prefix_below = merge_prefix_below
        self.tokens_encoded = 0
        self.cos = self.sin = torch.empty(0, self.cfg.head_dim, dtype=self.dtype, device=self.device)
        self._rope_table(min(self.max_len, ROPE_TABLE_START))

    def _rope_table(self, length: int) -> None:
        """cos/sin tables (length, E) in the runner's dtype, computed once (with the model's
        RoPE scaling) and extended only when a longer context is asked for."""
        if length > self.cos.shape[0]:
            cos, sin = self.model.rope(torch.arange(length, device=self.device))
            self.cos, self.sin = cos.to(self.dtype), sin.to(self.dtype)

    def _rope(self, pos: torch.Tensor):
        return self.cos[pos][:, None], self.sin[pos][:, None]          # (B, 1, Tq, E)

    def _qkv(self, layer, x, cos, sin):
        """Normed projections with RoPE applied to q and k in one pass:
        q (B, H, T, E), k and v (B, K, T, E). The projection's bias (``qkv_bias``) rides in the
        matmul; ``qk_norm`` norms all query and key heads in one call before RoPE."""
        cfg, (b, t, _) = self.cfg, x.shape
        h, kh = cfg.n_heads, cfg.n_kv_heads
        qkv = layer.qkv(rms_norm(x, layer.attn_norm, cfg.norm_eps)).view(b, t, h + 2 * kh, cfg.head_dim)
        qkv = qkv.transpose(1, 2)
        qk = qkv[:, : h + kh]
        if cfg.qk_norm:
            weight = torch.cat([layer.q_norm.expand(h, -1), layer.k_norm.expand(kh, -1)])[:, None]
            qk = rms_norm(qk, weight, cfg.norm_eps)                      # weight (H+K, 1, E)
        qk = apply_rope(qk, cos, sin)
        return qk[:, :h], qk[:, h:], qkv[:, h + kh:]

    def _encode(self, x, pos, prefix, mask):
        """Prefill: run all layers over new tokens x (B, T, D) at positions pos (B, T), attending
        to an optional shared ``prefix`` (per layer (k, v), each (1, K, C, E)) and to each other
        under ``mask`` (B, 1, T, C+T) bool. Scores never materialise (fused SDPA).
        Returns (hidden, ks, vs) with the new tokens' keys/values per layer (B, K, T, E)."""
        cfg, b = self.cfg, x.shape[0]
        cos, sin = self._rope(pos)
        ks, vs = [], []
        for i, layer in enumerate(self.model.layers):
            q, k, v = self._qkv(layer, x, cos, sin)
            ks.append(k)
            vs.append(v)
            if prefix is not None:
                pk, pv = prefix[i]
                k = torch.cat([pk.expand(b, -1, -1, -1), k], 2)
                v = torch.cat([pv.expand(b, -1, -1, -1), v], 2)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               enable_gqa=cfg.n_heads != cfg.n_kv_heads)
            x = x + layer.o(y.transpose(1, 2).reshape(b, x.shape[1], -1))
            x = x + layer.mlp(x)
        return x, ks, vs

    def _step(self, x, pos, state: LlamaState):
        """Decode: one token per row, x (B, 1, D); keys/values go to the own cache at ``state.col``
        and attention reads the shared segments plus the own cache (``engine.attention``)."""
        cfg, b, col = self.cfg, x.shape[0], state.col
        g = cfg.n_heads // cfg.n_kv_heads
        cos, sin = self._rope(pos)
        own_mask = None if state.own_valid is None else state.own_valid[:, None, None, None, : col + 1]
        for i, layer in enumerate(self.model.layers):
            q, k, v = self._qkv(layer, x, cos, sin)
            state.k[i][:, :, col] = k[:, :, 0]
            state.v[i][:, :, col] = v[:, :, 0]
            q = q.reshape(b, cfg.n_kv_heads, g, 1, cfg.head_dim)
            y = attend(q, i, state.segments, state.k[i][:, :, : col + 1], state.v[i][:, :, : col + 1],
                       own_mask, self.scale)
            x = x + layer.o(y.reshape(b, 1, -1))
            x = x + layer.mlp(x)
        return x

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(rms_norm(h, self.model.norm, self.cfg.norm_eps)).float()

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, valid: torch.Tensor, max_new: int, copies: int = 1):
        m, cfg, dev = self.model, self.cfg, self.device
        p, t = ids.shape
        ids, valid = ids.cpu(), valid.cpu().bool()       # layout work on the host, then one copy
        lengths = valid.sum(1)
        if int(lengths.max()) + max_new > cfg.max_seq_len:
            raise ContextTooLong(f"a prompt of {int(lengths.max())} tokens + max_new_tokens {max_new} exceeds "
                                 f"the model's context of {cfg.max_seq_len} tokens; lower --max_new_tokens "
                                 "or use shorter problems")
        self._rope_table(int(lengths.max()) + max_new)
        self.tokens_encoded += int(lengths.sum())
        rows = torch.arange(p, device=dev).repeat_interleave(copies)
        segments, prefix = [], None
        c = shared_prefix_length(ids, valid)
        if c >= MIN_SHARED_PREFIX:
            first = t - int(lengths[0])
            shared = ids[:1, first: first + c].to(dev)
            _, ks, vs = self._encode(m.embed(shared), torch.arange(c, device=dev)[None], None,
                                     _causal(c).to(dev)[None, None])
            prefix = list(zip(ks, vs))
            segments.append(Segment.build(ks, vs, torch.ones(1, c, dtype=torch.bool, device=dev),
                                          torch.zeros(p * copies, dtype=torch.long, device=dev)))
            self.tokens_encoded -= c * (p - 1)            # encoded once, not once per prompt
            ids, valid, lengths = _drop_prefix(ids, valid, c)
            t = ids.shape[1]
        else:
            c = 0
        pos = (valid.long().cumsum(1) - 1).clamp(min=0) + c
        mask = _causal(t)[None] & valid[:, None, :]
        mask |= torch.eye(t, dtype=torch.bool)[None]       # padding rows see themselves, never NaN
        if prefix is not None:
            mask = torch.cat([torch.ones(p, t, c, dtype=torch.bool), mask], 2)
        ids, valid, pos, mask, lengths = ids.to(dev), valid.to(dev), pos.to(dev), mask.to(dev), lengths.to(dev)
        x, ks, vs = self._encode(m.embed(ids), pos, prefix, mask[:, None])
        logits = self._logits(x[:, -1])[rows]
        if prefix is not None and c <= self.merge_prefix_below:
            # A short common prefix is cheaper to read as part of every prompt's segment than
            # as a segment of its own (two fewer matmuls per layer and step).
            ks = [torch.cat([pk.expand(p, -1, -1, -1), k], 2) for (pk, _), k in zip(prefix, ks)]
            vs = [torch.cat([pv.expand(p, -1, -1, -1), v], 2) for (_, pv), v in zip(prefix, vs)]
            valid = torch.cat([torch.ones(p, c, dtype=torch.bool, device=dev), valid], 1)
            segments = []
        segments.append(Segment.build(ks, vs, valid, rows))
        shape = (p * copies, cfg.n_kv_heads, max_new, cfg.head_dim)
        own_k = [torch.zeros(shape, dtype=self.dtype, device=dev) for _ in m.layers]
        own_v = [torch.zeros(shape, dtype=self.dtype, device=dev) for _ in m.layers]
        return logits, LlamaState(segments, own_k, own_v, (lengths + c)[rows], 0)

    @torch.inference_mode()
    def decode(self, state: LlamaState, tokens: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        """Append ``tokens`` (B,); rows where ``active`` (B,) is False do not advance (their token
        never enters their context and their returned logits are meaningless)."""
        if state.col >= state.k[0].shape[2]:
            raise RuntimeError("KV cache is full: raise max_new in prefill")
        if active is not None and bool(active.all()):
            active = None
        if active is not None:
            active = active.to(self.device)
            if state.own_valid is None:
                state.own_valid = torch.ones(tokens.shape[0], state.k[0].shape[2], dtype=torch.bool,
                                             device=self.device)
            state.own_valid[:, state.col] = active
        elif state.own_valid is not None:
            state.own_valid[:, state.col] = True
        self.tokens_encoded += tokens.shape[0] if active is None else int(active.sum())
        x = self._step(self.model.embed(tokens.to(self.device)[:, None]), state.pos[:, None], state)
        state.col += 1
        state.pos += 1 if active is None else active.long()
        return self._logits(x[:, 0])

    def select(self, state: LlamaState, rows: torch.Tensor) -> LlamaState:
        """Keep ``rows`` in that order; a repeated row is forked (its own cache copied)."""
        rows = rows.to(self.device)
        return LlamaState([s.select(rows) for s in state.segments], [k[rows] for k in state.k],
                          [v[rows] for v in state.v], state.pos[rows], state.col,
                          None if state.own_valid is None else state.own_valid[rows])

    def concat(self, states: list[LlamaState]) -> LlamaState:
        """The rows of ``states`` in order, as one state (for pooling trees of several searches).

        Own caches are right-aligned at the longest written length (shorter ones get invalid
        leading columns), with room for as many new tokens as the roomiest state had."""
        if not states:
            raise ValueError("concat needs at least one state")
        if len(states) == 1:
            return states[0]
        col = max(s.col for s in states)
        room = max(s.k[0].shape[2] - s.col for s in states)
        n_seg = max(len(s.segments) for s in states)
        segments = [concat_segments([s.segments[j] if j < len(s.segments) else None for s in states],
                                    [s.pos.numel() for s in states]) for j in range(n_seg)]
        ks, vs, valid = [], [], []
        for s in states:
            b = s.pos.numel()
            shape = (b, self.cfg.n_kv_heads, col + room, self.cfg.head_dim)
            start = col - s.col
            k = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in s.k]
            v = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in s.v]
            for dst, src in zip(k + v, s.k + s.v):
                dst[:, :, start: col] = src[:, :, : s.col]
            ok = torch.zeros(b, col + room, dtype=torch.bool, device=self.device)
            ok[:, start: col] = True if s.own_valid is None else s.own_valid[:, : s.col]
            ks.append(k)
            vs.append(v)
            valid.append(ok)
        n_layers = len(states[0].k)
        return LlamaState(segments, [torch.cat([k[i] for k in ks]) for i in range(n_layers)],
                          [torch.cat([v[i] for v in vs]) for i in range(n_layers)],
                          torch.cat([s.pos for s in states]), col, torch.cat(valid))


def concat_segments(parts: list[Segment | None], rows: list[int]) -> Segment:
    """One segment over the rows of several states; a state without this segment reads a
    single all-invalid group (its rows see nothing here)."""
    ref = next(p for p in parts if p is not None)
    n_layers, (_, kh, _, e) = len(ref.k), ref.k[0].shape
    width = max(p.valid.shape[1] for p in parts if p is not None)
    ks, vs, valid, groups, offset = [[] for _ in range(n_layers)], [[] for _ in range(n_layers)], [], [], 0
    for p, b in zip(parts, rows):
        if p is None:
            dev = ref.k[0].device
            pk = [torch.zeros(1, kh, width, e, dtype=ref.k[0].dtype, device=dev)] * n_layers
            p = Segment(pk, pk, torch.zeros(1, width, dtype=torch.bool, device=dev),
                        torch.zeros(b, dtype=torch.long, device=dev), None, None, False, None)
        pad = width - p.valid.shape[1]
        for i in range(n_layers):
            ks[i].append(F.pad(p.k[i], (0, 0, 0, pad)))
            vs[i].append(F.pad(p.v[i], (0, 0, 0, pad)))
        valid.append(F.pad(p.valid, (0, pad), value=False))
        groups.append(p.group + offset)
        offset += p.valid.shape[0]
    return Segment.build([torch.cat(k) for k in ks], [torch.cat(v) for v in vs], torch.cat(valid),
                         torch.cat(groups))


def _causal(t: int) -> torch.Tensor:
    return torch.ones(t, t, dtype=torch.bool).tril()


def _drop_prefix(ids, valid, c):
    """Remove the first ``c`` real tokens of every left-padded row (re-left-padding the rest)."""
    lengths = valid.sum(1) - c
    t = int(lengths.max())
    new_ids = torch.zeros(ids.shape[0], t, dtype=ids.dtype)
    new_valid = torch.zeros(ids.shape[0], t, dtype=torch.bool)
    for i, n in enumerate(lengths.tolist()):
        new_ids[i, t - n:] = ids[i, ids.shape[1] - n:]
        new_valid[i, t - n:] = True
    return new_ids, new_valid, lengths


def _cast_copy(model: Llama, dtype: torch.dtype) -> Llama:
    """A copy in ``dtype`` (deep, so a value head that replaced ``lm_head`` is kept)."""
    import copy

    return copy.deepcopy(model).to(dtype)
