"""A lean Llama-shaped decoder: RMSNorm, RoPE, SwiGLU, grouped-query attention, no biases.

Numerically the same network as ``transformers.LlamaForCausalLM`` (``checkpoint.py`` maps the
fused projections to Hugging Face names; a test checks logits agree to 1e-4). Differences from
the Hugging Face module are for speed only:

- q/k/v live in one fused matrix ``qkv`` and gate/up in one ``gate_up`` (one matmul each);
- training attention is ``scaled_dot_product_attention(is_causal=True)`` over packed sequences;
- decoding lives in ``engine.tiny``, which reuses these blocks' projections with a KV cache.

Shapes: B batch, T time, D model width, H query heads, K kv heads, E head dim, V vocabulary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


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

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def validate(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} must be divisible by n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm computed in fp32 like Hugging Face Llama, cast back to the input dtype."""
    dtype = x.dtype
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(dtype)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin for integer ``positions`` of any shape -> (*positions.shape, E), fp32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    freqs = positions.float()[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


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
        self.qkv = nn.Linear(cfg.d_model, (cfg.n_heads + 2 * cfg.n_kv_heads) * e, bias=False)
        self.o = nn.Linear(cfg.n_heads * e, cfg.d_model, bias=False)
        self.mlp_norm = nn.Parameter(torch.ones(cfg.d_model))
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def split_qkv(self, h: torch.Tensor):
        """h: (B, T, D) -> q (B, H, T, E), k and v (B, K, T, E)."""
        cfg, (b, t, _) = self.cfg, h.shape
        e = cfg.head_dim
        q, k, v = self.qkv(h).split([cfg.n_heads * e, cfg.n_kv_heads * e, cfg.n_kv_heads * e], dim=-1)
        q = q.view(b, t, cfg.n_heads, e).transpose(1, 2)
        k = k.view(b, t, cfg.n_kv_heads, e).transpose(1, 2)
        v = v.view(b, t, cfg.n_kv_heads, e).transpose(1, 2)
        return q, k, v

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(rms_norm(x, self.mlp_norm, self.cfg.norm_eps)).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)

    def forward(self, x, cos, sin):
        """Causal self-attention block over full sequences. x: (B, T, D)."""
        b, t, _ = x.shape
        q, k, v = self.split_qkv(rms_norm(x, self.attn_norm, self.cfg.norm_eps))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           enable_gqa=self.cfg.n_heads != self.cfg.n_kv_heads)
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
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        for name, p in self.named_parameters():
            if p.dim() == 2:
                # GPT-2 style: residual output projections scaled by depth.
                scale = 1 / math.sqrt(2 * self.cfg.n_layers) if name.endswith(("o.weight", "down.weight")) else 1.0
                nn.init.normal_(p, 0.0, std * scale)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """Causal forward over full sequences. ids: (B, T) -> final normed hidden (B, T, D)."""
        t = ids.shape[1]
        if t > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {t} > max_seq_len {self.cfg.max_seq_len}")
        cos, sin = rope_tables(torch.arange(t, device=ids.device), self.cfg.head_dim, self.cfg.rope_theta)
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return rms_norm(x, self.norm, self.cfg.norm_eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, T) -> logits (B, T, V)."""
        return self.lm_head(self.hidden(ids))

    def loss(self, ids: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
        """Mean next-token cross-entropy. ids, targets: (B, T)."""
        logits = self.forward(ids)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=ignore_index)
