"""Log-probabilities of completions for RL losses, with each group's prompt encoded once.

The ``G`` completions of a prompt share it. ``completion_logprobs`` runs the prompt through the
network once per group (with gradients) and the completions attend to its keys and values, so a
training step pays for ``P * prompt + B * completion`` tokens instead of
``B * (prompt + completion)`` — the training-side twin of the sampler's shared-prefix
attention. It applies to the tiny ``Llama``; any other module (a Hugging Face model) takes the
plain path over full sequences, with the same result.

Batch layout (``rollout.batch_tensors``): ``prompt_ids`` (P, Tp) right-padded with lengths
``prompt_len`` (P,); ``ids`` (B, Tc) completions right-padded; ``group`` (B,) the prompt of each
row. Results are aligned with ``ids``: position t scores completion token t. The tensors are
computed on the model's device and returned on the device of ``ids``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from reasonlab.models.llama import Llama, apply_rope, rms_norm
from reasonlab.train.precision import model_device
from reasonlab.train.rl import token_logprobs


def completion_logprobs(model, prompt_ids: torch.Tensor, prompt_len: torch.Tensor, ids: torch.Tensor,
                        group: torch.Tensor, with_entropy: bool = False):
    """-> logp (B, Tc) fp32 of each completion token [, entropy (B, Tc)], on ``ids``' device."""
    home, dev = ids.device, model_device(model)
    prompt_ids, prompt_len, ids, group = (t.to(dev) for t in (prompt_ids, prompt_len, ids, group))
    if not isinstance(model, Llama):
        out = _full_sequence_logprobs(model, prompt_ids, prompt_len, ids, group, with_entropy)
        return tuple(t.to(home) for t in out) if with_entropy else out.to(home)
    logits = _grouped_logits(model, prompt_ids, prompt_len, ids, group)
    logp_all = torch.log_softmax(logits.float(), -1)
    logp = logp_all.gather(2, ids[..., None])[..., 0]
    if not with_entropy:
        return logp.to(home)
    return logp.to(home), (-(logp_all.exp() * logp_all).sum(-1)).to(home)


def _grouped_logits(model: Llama, prompt_ids, prompt_len, ids, group) -> torch.Tensor:
    """Logits (B, Tc, V) predicting each completion token: from the group's last prompt
    position for token 0, from the row's own position t-1 for token t. With the model's
    ``grad_checkpointing`` each layer is recomputed in backward (``Llama.checkpointing``)."""
    cfg, dev = model.cfg, ids.device
    p, tp = prompt_ids.shape
    b, tc = ids.shape
    pos_p = torch.arange(tp, device=dev)
    pos_c = prompt_len[group][:, None] + torch.arange(tc, device=dev)[None]     # (B, Tc)
    cos_p, sin_p = model.rope(pos_p)                       # the model's RoPE (scaling included)
    cos_c, sin_c = (t[:, None] for t in model.rope(pos_c))
    key_ok = pos_p[None, :] < prompt_len[group][:, None]                        # (B, Tp)
    mask = torch.cat([key_ok[:, None, :].expand(b, tc, tp),
                      torch.ones(tc, tc, dtype=torch.bool, device=dev).tril()[None].expand(b, tc, tc)], 2)[:, None]
    xp, xc = model.embed(prompt_ids), model.embed(ids)
    causal = torch.ones(tp, tp, dtype=torch.bool, device=dev).tril()
    rope, recompute = (cos_p, sin_p, cos_c, sin_c), model.checkpointing()
    for layer in model.layers:
        args = (layer, xp, xc, rope, group, causal, mask)
        xp, xc = checkpoint(_grouped_layer, *args, use_reentrant=False) if recompute else _grouped_layer(*args)
    last = xp[torch.arange(p, device=dev), prompt_len - 1]                      # (P, D)
    h = torch.cat([last[group][:, None], xc[:, :-1]], 1)                        # (B, Tc, D)
    return model.lm_head(rms_norm(h, model.norm, cfg.norm_eps))


def _grouped_layer(layer, xp, xc, rope, group, causal, mask):
    """One decoder layer over the prompts ``xp`` (P, Tp, D) and the completions ``xc`` (B, Tc, D),
    whose queries also attend to their group's prompt keys and values. -> (xp, xc)."""
    eps = layer.cfg.norm_eps
    (p, tp, _), (b, tc, _) = xp.shape, xc.shape
    qp, kp, vp = layer.split_qkv(rms_norm(xp, layer.attn_norm, eps))
    cos_p, sin_p, cos_c, sin_c = (t.to(qp.dtype) for t in rope)   # autocast: RoPE in the activations' dtype (as HF)
    qp, kp = apply_rope(qp, cos_p, sin_p), apply_rope(kp, cos_p, sin_p)
    yp = attend(qp, kp, vp, causal)
    qc, kc, vc = layer.split_qkv(rms_norm(xc, layer.attn_norm, eps))
    qc, kc = apply_rope(qc, cos_c, sin_c), apply_rope(kc, cos_c, sin_c)
    k = torch.cat([kp[group], kc], 2)
    v = torch.cat([vp[group], vc], 2)
    yc = attend(qc, k, v, mask)
    xp = xp + layer.o(yp.transpose(1, 2).reshape(p, tp, -1))
    xp = xp + layer.mlp(xp)
    xc = xc + layer.o(yc.transpose(1, 2).reshape(b, tc, -1))
    return xp, xc + layer.mlp(xc)


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
    """Plain path: ``[prompt ; completion]`` per row through the model, completion positions kept
    (every tensor on the device of ``ids``, the model's)."""
    b, tc = ids.shape
    lens = prompt_len[group][:, None]                                           # (B, 1)
    length = int(lens.max()) + tc
    pos = torch.arange(length, device=ids.device)[None]                         # (1, L)
    from_prompt = prompt_ids[group].gather(1, pos.clamp(max=prompt_ids.shape[1] - 1).expand(b, -1))
    from_completion = ids.gather(1, (pos - lens).clamp(0, tc - 1))
    full = torch.where(pos < lens, from_prompt, torch.where(pos < lens + tc, from_completion, 0))
    out = token_logprobs(model, full, with_entropy)
    cols = (lens - 1 + torch.arange(tc, device=ids.device)[None]).clamp(max=length - 2)  # position predicting token t
    if not with_entropy:
        return out.gather(1, cols)
    return out[0].gather(1, cols), out[1].gather(1, cols)
