"""Log-probabilities of completions for RL losses, with each group's prompt encoded once.

The ``G`` completions of a prompt share it. ``completion_logprobs`` runs the prompt through the
network once per group (with gradients) and the completions attend to its keys and values, so a
training step pays for ``P * prompt + B * completion`` tokens instead of
``B * (prompt + completion)`` — the training-side twin of the sampler's shared-prefix
attention. It applies to the tiny ``Llama``; any other module (a Hugging Face model) takes the
plain path over full sequences, with the same result.

Batch layout (``rollout.batch_tensors``): ``prompt_ids`` (P, Tp) right-padded with lengths
``prompt_len`` (P,); ``ids`` (B, Tc) completions right-padded; ``group`` (B,) the prompt of each
row. Results are aligned with ``ids``: position t scores completion token t.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reasonlab.models.llama import Llama, apply_rope, rms_norm
from reasonlab.train.rl import token_logprobs


def completion_logprobs(model, prompt_ids: torch.Tensor, prompt_len: torch.Tensor, ids: torch.Tensor,
                        group: torch.Tensor, with_entropy: bool = False):
    """-> logp (B, Tc) fp32 of each completion token [, entropy (B, Tc)]."""
    if isinstance(model, Llama):
        logits = _grouped_logits(model, prompt_ids, prompt_len, ids, group)
        logp_all = torch.log_softmax(logits.float(), -1)
        logp = logp_all.gather(2, ids[..., None])[..., 0]
        if not with_entropy:
            return logp
        return logp, -(logp_all.exp() * logp_all).sum(-1)
    return _full_sequence_logprobs(model, prompt_ids, prompt_len, ids, group, with_entropy)


def _grouped_logits(model: Llama, prompt_ids, prompt_len, ids, group) -> torch.Tensor:
    """Logits (B, Tc, V) predicting each completion token: from the group's last prompt
    position for token 0, from the row's own position t-1 for token t."""
    cfg = model.cfg
    p, tp = prompt_ids.shape
    b, tc = ids.shape
    pos_p = torch.arange(tp)
    pos_c = prompt_len[group][:, None] + torch.arange(tc)[None]                 # (B, Tc)
    cos_p, sin_p = model.rope(pos_p)                       # the model's RoPE (scaling included)
    cos_c, sin_c = (t[:, None] for t in model.rope(pos_c))
    key_ok = pos_p[None, :] < prompt_len[group][:, None]                        # (B, Tp)
    mask = torch.cat([key_ok[:, None, :].expand(b, tc, tp),
                      torch.ones(tc, tc, dtype=torch.bool).tril()[None].expand(b, tc, tc)], 2)[:, None]
    xp, xc = model.embed(prompt_ids), model.embed(ids)
    causal = torch.ones(tp, tp, dtype=torch.bool).tril()
    for layer in model.layers:
        qp, kp, vp = layer.split_qkv(rms_norm(xp, layer.attn_norm, cfg.norm_eps))
        if cos_p.dtype != qp.dtype:                    # autocast: RoPE in the activations' dtype (as HF)
            cos_p, sin_p, cos_c, sin_c = (t.to(qp.dtype) for t in (cos_p, sin_p, cos_c, sin_c))
        qp, kp = apply_rope(qp, cos_p, sin_p), apply_rope(kp, cos_p, sin_p)
        yp = attend(qp, kp, vp, causal)
        qc, kc, vc = layer.split_qkv(rms_norm(xc, layer.attn_norm, cfg.norm_eps))
        qc, kc = apply_rope(qc, cos_c, sin_c), apply_rope(kc, cos_c, sin_c)
        k = torch.cat([kp[group], kc], 2)
        v = torch.cat([vp[group], vc], 2)
        yc = attend(qc, k, v, mask)
        xp = xp + layer.o(yp.transpose(1, 2).reshape(p, tp, -1))
        xp = xp + layer.mlp(xp)
        xc = xc + layer.o(yc.transpose(1, 2).reshape(b, tc, -1))
        xc = xc + layer.mlp(xc)
    last = xp[torch.arange(p), prompt_len - 1]                                  # (P, D)
    h = torch.cat([last[group][:, None], xc[:, :-1]], 1)                        # (B, Tc, D)
    return model.lm_head(rms_norm(h, model.norm, cfg.norm_eps))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax attention under a boolean ``mask`` (True: may attend), broadcastable to the scores.
    In bf16 on CPU the scores are materialised (softmax in fp32): for the short rows of RL batches
    forward + backward run ~2.5x faster than the fused kernel, whose CPU backward is slow in bf16
    (docs/LOG.md); in fp32 and on other devices the fused kernel. Every query row must see at
    least one key."""
    if q.device.type != "cpu" or q.dtype == torch.float32:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])
    if q.shape[1] != k.shape[1]:
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    scores = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores.float(), -1).to(v.dtype) @ v


def _full_sequence_logprobs(model, prompt_ids, prompt_len, ids, group, with_entropy):
    """Plain path: ``[prompt ; completion]`` per row through the model, completion positions kept."""
    b, tc = ids.shape
    lens = prompt_len[group]
    length = int(lens.max()) + tc
    full = torch.zeros(b, length, dtype=torch.long)
    for i in range(b):
        n = int(lens[i])
        full[i, :n] = prompt_ids[group[i], :n]
        full[i, n: n + tc] = ids[i]
    device = next(model.parameters(), torch.empty(0)).device
    out = token_logprobs(model, full.to(device), with_entropy)
    cols = (lens[:, None] - 1 + torch.arange(tc)[None]).clamp(max=length - 2)  # position predicting token t
    if not with_entropy:
        return out.cpu().gather(1, cols)
    return out[0].cpu().gather(1, cols), out[1].cpu().gather(1, cols)
