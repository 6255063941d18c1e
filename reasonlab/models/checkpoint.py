"""Checkpoints as Hugging Face model directories, written atomically.

A checkpoint directory holds ``config.json`` (a ``LlamaConfig`` that ``transformers`` reads, plus
our own fields under ``"reasonlab"``), ``model.safetensors`` with Hugging Face parameter names,
the tokenizer files and, for resumable training, ``trainer_state.pt``. It loads unchanged in
``transformers.AutoModelForCausalLM`` and ``AutoTokenizer``.

Atomicity: everything is written into ``<dir>.tmp``, then swapped in by renames; a crash leaves
either the old or the new checkpoint complete (``resolve_checkpoint`` also accepts ``<dir>.old``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from reasonlab.io import atomic_directory
from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.tokenizer import EOS, PAD, CharTokenizer


def to_hf_state_dict(model: Llama) -> dict[str, torch.Tensor]:
    """Our fused parameters -> Hugging Face Llama names (contiguous fp32 copies)."""
    cfg, e = model.cfg, model.cfg.head_dim
    sd: dict[str, torch.Tensor] = {"model.embed_tokens.weight": model.embed.weight,
                                   "model.norm.weight": model.norm}
    for i, layer in enumerate(model.layers):
        pre = f"model.layers.{i}."
        q, k, v = layer.qkv.weight.split([cfg.n_heads * e, cfg.n_kv_heads * e, cfg.n_kv_heads * e], 0)
        gate, up = layer.gate_up.weight.chunk(2, 0)
        sd.update({
            pre + "self_attn.q_proj.weight": q, pre + "self_attn.k_proj.weight": k,
            pre + "self_attn.v_proj.weight": v, pre + "self_attn.o_proj.weight": layer.o.weight,
            pre + "mlp.gate_proj.weight": gate, pre + "mlp.up_proj.weight": up,
            pre + "mlp.down_proj.weight": layer.down.weight,
            pre + "input_layernorm.weight": layer.attn_norm,
            pre + "post_attention_layernorm.weight": layer.mlp_norm,
        })
    if not cfg.tie_embeddings:
        sd["lm_head.weight"] = model.lm_head.weight
    return {k: v.detach().float().contiguous().clone() for k, v in sd.items()}


def from_hf_state_dict(cfg: LlamaConfig, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face Llama names -> our module's state dict."""
    out = {"embed.weight": sd["model.embed_tokens.weight"], "norm": sd["model.norm.weight"]}
    for i in range(cfg.n_layers):
        pre = f"model.layers.{i}."
        out[f"layers.{i}.qkv.weight"] = torch.cat(
            [sd[pre + f"self_attn.{n}_proj.weight"] for n in ("q", "k", "v")], 0)
        out[f"layers.{i}.o.weight"] = sd[pre + "self_attn.o_proj.weight"]
        out[f"layers.{i}.gate_up.weight"] = torch.cat(
            [sd[pre + "mlp.gate_proj.weight"], sd[pre + "mlp.up_proj.weight"]], 0)
        out[f"layers.{i}.down.weight"] = sd[pre + "mlp.down_proj.weight"]
        out[f"layers.{i}.attn_norm"] = sd[pre + "input_layernorm.weight"]
        out[f"layers.{i}.mlp_norm"] = sd[pre + "post_attention_layernorm.weight"]
    out["lm_head.weight"] = sd["model.embed_tokens.weight"] if cfg.tie_embeddings else sd["lm_head.weight"]
    return out


def hf_config(cfg: LlamaConfig, extra: dict | None = None) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta, "tie_word_embeddings": cfg.tie_embeddings,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "bos_token_id": None, "eos_token_id": EOS, "pad_token_id": PAD, "torch_dtype": "float32",
        "reasonlab": {"llama": asdict(cfg), **(extra or {})},
    }


def save_checkpoint(directory: str | Path, model: Llama, tokenizer: CharTokenizer,
                    trainer_state: dict | None = None, extra: dict | None = None) -> Path:
    """Write a complete checkpoint directory atomically; returns its path."""
    with atomic_directory(directory) as tmp:
        save_file(to_hf_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config(model.cfg, extra), indent=1))
        (tmp / "generation_config.json").write_text(json.dumps({"eos_token_id": EOS, "pad_token_id": PAD}))
        tokenizer.save(tmp)
        if trainer_state is not None:
            torch.save(trainer_state, tmp / "trainer_state.pt")
    return Path(directory)


def resolve_checkpoint(directory: str | Path) -> Path:
    """The directory, or its ``.old`` twin if a crash interrupted the swap."""
    path = Path(directory)
    if (path / "config.json").exists():
        return path
    old = path.with_name(path.name + ".old")
    if (old / "config.json").exists():
        return old
    raise FileNotFoundError(f"no checkpoint at {path} (expected {path / 'config.json'})")


def load_checkpoint(directory: str | Path, map_location: str = "cpu"
                    ) -> tuple[Llama, CharTokenizer, dict | None]:
    """-> (model, tokenizer, trainer_state or None)."""
    path = resolve_checkpoint(directory)
    meta = json.loads((path / "config.json").read_text())
    if "reasonlab" not in meta:
        raise ValueError(f"{path}/config.json: not a reasonlab tiny-model checkpoint "
                         "(load other Hugging Face models through the hf adapter)")
    known = {f.name for f in fields(LlamaConfig)}
    cfg = LlamaConfig(**{k: v for k, v in meta["reasonlab"]["llama"].items() if k in known})
    model = Llama(cfg)
    model.load_state_dict(from_hf_state_dict(cfg, load_file(str(path / "model.safetensors"))))
    tokenizer = CharTokenizer.load(path)
    state_path = path / "trainer_state.pt"
    state = torch.load(state_path, map_location=map_location, weights_only=False) if state_path.exists() else None
    return model, tokenizer, state
