"""A lean decoder for the Llama family: RMSNorm, RoPE, SwiGLU, grouped-query attention.

One code path serves the tiny reasonlab model and Hugging Face Llama / Qwen2 / Qwen3 checkpoints
(``models.families`` maps their configs and weights); each difference is a config field that
costs nothing when off:

- ``qkv_bias``: biases on the q/k/v projections (Qwen2; ``o`` never has one);
- ``qk_norm``: RMSNorm over each query and key head before RoPE (Qwen3);
- ``attn_head_dim``: a head width other than ``d_model // n_heads`` (Qwen3);
- ``rope_scaling``: Llama 3 (``rope_type: llama3``) or ``linear`` RoPE frequency scaling;
- ``tie_embeddings``: the LM head shares the embedding matrix.

Numerically the same network as the ``transformers`` module of its family (tests check logits
agree to 1e-4). Differences from the Hugging Face modules are for speed only:

- q/k/v live in one fused matrix ``qkv`` and gate/up in one ``gate_up`` (one matmul each);
- training attention is ``scaled_dot_product_attention(is_causal=True)`` over packed sequences;
  with ``positions`` / ``doc_ids`` each document attends to itself only: its tokens are gathered
  into a batch of one document per row for the attention (``DocLayout``: causal, no mask, no
  work spent on the other documents of its row) and scattered back (a block-diagonal mask when
  a document's tokens are not contiguous in its row);
- decoding lives in ``engine.tiny``, which reuses these blocks' projections with a KV cache.

Shapes: B batch, T time, D model width, H query heads, K kv heads, E head dim, V vocabulary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

ROPE_TYPES = ("default", "llama3", "linear")


@dataclass
class LlamaConfig:
    vocab_size: int = 147          # set from the tokenizer by the stages
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 4
    d_ff: int = 352
    max_seq_len: int = 512
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    attn_head_dim: int = 0          # width of one attention head; 0: d_model // n_heads
    qkv_bias: bool = False          # biases on the q/k/v projections (Qwen2)
    qk_norm: bool = False           # RMSNorm on every query/key head before RoPE (Qwen3)
    rope_scaling: dict | None = None  # {"rope_type": "llama3" | "linear", "factor": ..., ...}
    family: str = "llama"           # Hugging Face model_type written to config.json: llama | qwen2 | qwen3

    @property
    def head_dim(self) -> int:
        return self.attn_head_dim or self.d_model // self.n_heads

    def validate(self) -> None:
        if not self.attn_head_dim and self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} must be divisible by n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")
        rope_type = rope_kind(self.rope_scaling)
        if rope_type not in ROPE_TYPES:
            raise ValueError(f"rope_scaling: rope_type {rope_type!r} is not implemented "
                             f"(supported: {', '.join(ROPE_TYPES)})")


def rope_kind(scaling: dict | None) -> str:
    """The RoPE type of a ``rope_scaling`` dict (``rope_type`` or the older ``type`` key)."""
    if not scaling:
        return "default"
    return str(scaling.get("rope_type", scaling.get("type", "default")))


def rope_inv_freq(head_dim: int, theta: float, scaling: dict | None = None) -> torch.Tensor:
    """Inverse frequencies (E/2,) fp32, with Llama 3 or linear scaling as in ``transformers``."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    kind = rope_kind(scaling)
    if kind == "linear":
        return inv_freq / float(scaling["factor"])
    if kind == "llama3":
        factor, low, high = (float(scaling[k]) for k in ("factor", "low_freq_factor", "high_freq_factor"))
        old_len = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old_len / high) & ~(wavelen > old_len / low)
        return torch.where(medium, smoothed, scaled)
    if kind != "default":
        raise ValueError(f"rope_scaling: rope_type {kind!r} is not implemented (supported: {', '.join(ROPE_TYPES)})")
    return inv_freq


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float,
                scaling: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin for integer ``positions`` of any shape -> (*positions.shape, E), fp32."""
    inv_freq = rope_inv_freq(head_dim, theta, scaling).to(positions.device)
    freqs = positions.float()[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


class DocLayout(NamedTuple):
    """Where the tokens of packed rows go for document-wise attention: ``gather`` (N, L) the
    flat (B*T) index of each document's tokens in order, right-padded with index 0; ``back``
    (B*T,) the flat (N*L) slot of each token, N*L (a zero slot) for padding tokens."""
    gather: torch.Tensor
    back: torch.Tensor


def document_layout(doc_ids: torch.Tensor) -> DocLayout | None:
    """doc_ids (B, T) (padding: < 0) -> the ``DocLayout`` of its documents, or None when a
    document's tokens are not one contiguous run of its row."""
    b, t = doc_ids.shape
    flat = doc_ids.reshape(-1)
    where = (flat >= 0).nonzero()[:, 0]
    if where.numel() == 0:
        return None
    key = (where // t) * (int(flat.max()) + 1) + flat[where]              # (row, document) of each token
    _, counts = torch.unique_consecutive(key, return_counts=True)
    if counts.numel() != torch.unique(key).numel():
        return None
    n, length = counts.numel(), int(counts.max())
    doc = torch.repeat_interleave(torch.arange(n, device=flat.device), counts)
    start = torch.cumsum(counts, 0) - counts
    slot = doc * length + torch.arange(where.numel(), device=flat.device) - start[doc]
    gather = torch.zeros(n * length, dtype=torch.long, device=flat.device).index_put_((slot,), where)
    back = torch.full((b * t,), n * length, dtype=torch.long, device=flat.device).index_put_((where,), slot)
    return DocLayout(gather.view(n, length), back)


def attend_documents(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: DocLayout,
                     gqa: bool) -> torch.Tensor:
    """Causal attention of each document to itself: q (B, H, T, E), k / v (B, K, T, E) ->
    (B, T, H*E); padding tokens get zeros."""
    b, h, t, e = q.shape

    def per_document(x: torch.Tensor) -> torch.Tensor:       # (B, X, T, E) -> (N, X, L, E)
        return x.transpose(1, 2).reshape(b * t, x.shape[1], e)[layout.gather].transpose(1, 2)

    y = F.scaled_dot_product_attention(per_document(q), per_document(k), per_document(v), is_causal=True,
                                       enable_gqa=gqa)
    y = y.transpose(1, 2).reshape(-1, h * e)
    return torch.cat([y, y.new_zeros(1, h * e)])[layout.back].view(b, t, h * e)


def document_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """doc_ids (B, T) -> (B, 1, T, T) bool: query t may attend to key s <= t of the same document."""
    t = doc_ids.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=doc_ids.device).tril()
    return ((doc_ids[:, :, None] == doc_ids[:, None, :]) & causal)[:, None]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm computed in fp32 like Hugging Face Llama, cast back to the input dtype."""
    dtype = x.dtype
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, heads, T, E); cos/sin broadcastable to (B, 1, T, E). Rotate-half convention."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        e = cfg.head_dim
        self.attn_norm = nn.Parameter(torch.ones(cfg.d_model))
        self.qkv = nn.Linear(cfg.d_model, (cfg.n_heads + 2 * cfg.n_kv_heads) * e, bias=cfg.qkv_bias)
        if cfg.qk_norm:
            self.q_norm = nn.Parameter(torch.ones(e))
            self.k_norm = nn.Parameter(torch.ones(e))
        self.o = nn.Linear(cfg.n_heads * e, cfg.d_model, bias=False)
        self.mlp_norm = nn.Parameter(torch.ones(cfg.d_model))
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def split_qkv(self, h: torch.Tensor):
        """Normed input h: (B, T, D) -> q (B, H, T, E), k and v (B, K, T, E), before RoPE
        (with ``qk_norm`` the query and key heads are normed here)."""
        cfg, (b, t, _) = self.cfg, h.shape
        e = cfg.head_dim
        q, k, v = self.qkv(h).split([cfg.n_heads * e, cfg.n_kv_heads * e, cfg.n_kv_heads * e], dim=-1)
        q = q.view(b, t, cfg.n_heads, e)
        k = k.view(b, t, cfg.n_kv_heads, e)
        if cfg.qk_norm:
            q, k = rms_norm(q, self.q_norm, cfg.norm_eps), rms_norm(k, self.k_norm, cfg.norm_eps)
        v = v.view(b, t, cfg.n_kv_heads, e).transpose(1, 2)
        return q.transpose(1, 2), k.transpose(1, 2), v

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(rms_norm(x, self.mlp_norm, self.cfg.norm_eps)).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)

    def forward(self, x, cos, sin, mask=None):
        """Causal self-attention block over full sequences. x: (B, T, D); packed documents:
        ``mask`` a ``DocLayout``, or a (B, 1, T, T) bool mask (True: may attend)."""
        b, t, _ = x.shape
        q, k, v = self.split_qkv(rms_norm(x, self.attn_norm, self.cfg.norm_eps))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        gqa = self.cfg.n_heads != self.cfg.n_kv_heads
        if isinstance(mask, DocLayout):
            x = x + self.o(attend_documents(q, k, v, mask, gqa))
            return x + self.mlp(x)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        x = x + self.o(y.transpose(1, 2).reshape(b, t, -1))
        return x + self.mlp(x)


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.Parameter(torch.ones(cfg.d_model))
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.grad_checkpointing = False   # recompute each layer in backward (``checkpointing``)
        self.tie()
        self.reset_parameters()

    def tie(self) -> None:
        """Share the embedding with the LM head when ``tie_embeddings`` (again after loading
        with ``assign=True``, which replaces parameters one by one)."""
        if self.cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def reset_parameters(self, std: float = 0.02) -> None:
        for name, p in self.named_parameters():
            if p.dim() == 2:
                # GPT-2 style: residual output projections scaled by depth.
                scale = 1 / math.sqrt(2 * self.cfg.n_layers) if name.endswith(("o.weight", "down.weight")) else 1.0
                nn.init.normal_(p, 0.0, std * scale)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin (*positions.shape, E) fp32 for this model's head width, theta and scaling."""
        return rope_tables(positions, self.cfg.head_dim, self.cfg.rope_theta, self.cfg.rope_scaling)

    def checkpointing(self, grad_checkpointing: bool | None = None) -> bool:
        """Whether a forward recomputes each decoder layer's activations in backward instead of
        keeping them (``torch.utils.checkpoint``, non-reentrant): ``grad_checkpointing`` (None:
        the model's ``grad_checkpointing`` attribute), and only in training mode with gradients
        enabled (evaluation and sampling never pay for it)."""
        wanted = self.grad_checkpointing if grad_checkpointing is None else grad_checkpointing
        return bool(wanted) and self.training and torch.is_grad_enabled()

    def hidden(self, ids: torch.Tensor, grad_checkpointing: bool | None = None, *,
               positions: torch.Tensor | None = None, doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Causal forward over full sequences. ids: (B, T) -> final normed hidden (B, T, D).
        Packed documents: ``positions`` (B, T) the RoPE position of each token (restarting at 0
        in each document) and ``doc_ids`` (B, T) which document it belongs to (a token attends
        only to earlier tokens of its own document; padding, id < 0, attends to nothing). None:
        positions 0..T-1, one document."""
        t = ids.shape[1]
        if t > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {t} > max_seq_len {self.cfg.max_seq_len}")
        if positions is None:
            cos, sin = self.rope(torch.arange(t, device=ids.device))
        else:
            cos, sin = (u[:, None] for u in self.rope(positions))        # (B, 1, T, E)
        mask = None if doc_ids is None else document_layout(doc_ids)
        if doc_ids is not None and mask is None:                 # a document in several runs of a row
            mask = document_mask(doc_ids)
        x = self.embed(ids)
        recompute = self.checkpointing(grad_checkpointing)
        for layer in self.layers:
            x = checkpoint(layer, x, cos, sin, mask, use_reentrant=False) if recompute else layer(x, cos, sin, mask)
        return rms_norm(x, self.norm, self.cfg.norm_eps)

    def forward(self, ids: torch.Tensor, grad_checkpointing: bool | None = None, *,
                positions: torch.Tensor | None = None, doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        """ids: (B, T) -> logits (B, T, V). ``grad_checkpointing``: see ``checkpointing``;
        ``positions`` / ``doc_ids``: packed documents, see ``hidden``."""
        return self.lm_head(self.hidden(ids, grad_checkpointing, positions=positions, doc_ids=doc_ids))

    def loss(self, ids: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
        """Mean next-token cross-entropy. ids, targets: (B, T)."""
        logits = self.forward(ids)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=ignore_index)
