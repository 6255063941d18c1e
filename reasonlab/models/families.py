"""Hugging Face Llama, Qwen2 and Qwen3 directories <-> our ``Llama`` (``models.llama``).

The three families share one network; what differs is a few ``LlamaConfig`` flags (``FAMILIES``)
and nothing else: Hugging Face names their parameters alike, so one table (``LAYER_WEIGHTS``)
converts weights both ways for all of them, and one (``CONFIG_KEYS``) converts configs.

A config field that would change the math in a way ``models.llama`` does not implement (a
sliding window, YaRN / dynamic / LongRoPE RoPE, an ``o_proj`` or MLP bias, an activation other
than SiLU, partial rotary embeddings, quantised weights) raises ``ConfigError`` naming the field,
and weights the table does not consume (say an ``o_proj.bias``) raise too: a model we load
computes what transformers computes, or does not load.

Reading a directory needs no ``transformers`` (config.json + safetensors, single file or sharded
with ``model.safetensors.index.json``; ``pytorch_model.bin`` likewise); its tokenizer does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from reasonlab.config import ConfigError
from reasonlab.models.llama import ROPE_TYPES, Llama, LlamaConfig, rope_kind


@dataclass(frozen=True)
class Family:
    architecture: str          # config.json "architectures"
    qkv_bias: bool             # q/k/v projections carry biases
    qk_norm: bool              # per-head RMSNorm on queries and keys before RoPE
    max_positions: int         # transformers' default max_position_embeddings
    head_dim: int = 0          # transformers' default head_dim (0: hidden_size // heads)
    attention_bias_key: bool = True   # `attention_bias: true` means biases on q, k, v AND o


FAMILIES = {
    "llama": Family("LlamaForCausalLM", qkv_bias=False, qk_norm=False, max_positions=2048),
    "qwen2": Family("Qwen2ForCausalLM", qkv_bias=True, qk_norm=False, max_positions=32768,
                    attention_bias_key=False),
    "qwen3": Family("Qwen3ForCausalLM", qkv_bias=False, qk_norm=True, max_positions=32768, head_dim=128),
}

# Hugging Face config key -> LlamaConfig field (the rest: head_dim, rope, family flags)
CONFIG_KEYS = {
    "vocab_size": "vocab_size", "hidden_size": "d_model", "num_hidden_layers": "n_layers",
    "num_attention_heads": "n_heads", "num_key_value_heads": "n_kv_heads", "intermediate_size": "d_ff",
    "max_position_embeddings": "max_seq_len", "rms_norm_eps": "norm_eps", "tie_word_embeddings": "tie_embeddings",
}
REQUIRED_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def _falsy(value) -> bool:
    return not value


# config keys whose other values change the math in ways we do not implement: (key, accepted, why)
UNSUPPORTED: tuple[tuple[str, Callable[[object], bool], str], ...] = (
    ("hidden_act", lambda v: v in (None, "silu"), "only silu is implemented"),
    ("mlp_bias", _falsy, "MLP biases are not implemented"),
    ("use_sliding_window", _falsy, "sliding-window attention is not implemented"),
    ("layer_types", lambda v: not v or all(t == "full_attention" for t in v),
     "only full-attention layers are implemented"),
    ("partial_rotary_factor", lambda v: v in (None, 1, 1.0), "partial rotary embeddings are not implemented"),
    ("quantization_config", lambda v: v is None, "quantised weights are not supported"),
)

# our per-layer parameter <- Hugging Face parameters concatenated on dim 0, their row counts,
# and the config flag without which the parameter does not exist
LAYER_WEIGHTS: tuple[tuple[str, tuple[str, ...], Callable[[LlamaConfig], list[int]] | None, str | None], ...] = (
    ("qkv.weight", ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
     lambda c: [c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.n_kv_heads * c.head_dim], None),
    ("qkv.bias", ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"),
     lambda c: [c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.n_kv_heads * c.head_dim], "qkv_bias"),
    ("q_norm", ("self_attn.q_norm.weight",), None, "qk_norm"),
    ("k_norm", ("self_attn.k_norm.weight",), None, "qk_norm"),
    ("o.weight", ("self_attn.o_proj.weight",), None, None),
    ("gate_up.weight", ("mlp.gate_proj.weight", "mlp.up_proj.weight"), lambda c: [c.d_ff, c.d_ff], None),
    ("down.weight", ("mlp.down_proj.weight",), None, None),
    ("attn_norm", ("input_layernorm.weight",), None, None),
    ("mlp_norm", ("post_attention_layernorm.weight",), None, None),
)
MODEL_WEIGHTS = (("embed.weight", "model.embed_tokens.weight"), ("norm", "model.norm.weight"))
IGNORED_WEIGHTS = ("rotary_emb.inv_freq",)      # buffers some old checkpoints saved


# ---- configs ---------------------------------------------------------------------------------

def supported_family(hf: dict) -> bool:
    return hf.get("model_type") in FAMILIES


def config_from_hf(hf: dict) -> LlamaConfig:
    """A Hugging Face ``config.json`` (as a dict) -> ``LlamaConfig``, or ``ConfigError`` naming
    the first field we do not implement."""
    family = hf.get("model_type")
    if family not in FAMILIES:
        raise ConfigError(f"model_type: {family!r} is not implemented by reasonlab's model code "
                          f"(supported: {', '.join(FAMILIES)}); load it with impl=transformers")
    fam = FAMILIES[family]
    for key, accepted, why in UNSUPPORTED:
        if not accepted(hf.get(key)):
            raise ConfigError(f"{key}: {hf[key]!r} in a {family} config: {why}; load it with impl=transformers")
    if fam.attention_bias_key and hf.get("attention_bias"):
        raise ConfigError(f"attention_bias: true in a {family} config puts a bias on o_proj, which is not "
                          "implemented; load it with impl=transformers")
    for key in REQUIRED_KEYS:
        if key not in hf:
            raise ConfigError(f"{key}: missing from the {family} config.json")
    heads = int(hf["num_attention_heads"])
    head_dim = int(hf.get("head_dim") or fam.head_dim or hf["hidden_size"] // heads)
    theta, scaling = _rope_from_hf(hf)
    values = {ours: hf[key] for key, ours in CONFIG_KEYS.items() if hf.get(key) is not None}
    values.setdefault("n_kv_heads", heads)
    values.setdefault("max_seq_len", fam.max_positions)
    values.setdefault("norm_eps", 1e-6)
    cfg = LlamaConfig(**values, rope_theta=theta, rope_scaling=scaling, family=family,
                      attn_head_dim=0 if head_dim * heads == hf["hidden_size"] else head_dim,
                      qkv_bias=fam.qkv_bias, qk_norm=fam.qk_norm)
    try:
        cfg.validate()
    except ValueError as err:
        raise ConfigError(f"config.json: {err}") from None
    return cfg


def _rope_from_hf(hf: dict) -> tuple[float, dict | None]:
    """(theta, scaling or None) from ``rope_parameters`` (transformers 5) and/or the older
    ``rope_theta`` + ``rope_scaling`` (which wins where both are given, as in transformers)."""
    key = "rope_scaling" if hf.get("rope_scaling") else "rope_parameters"
    params = {**(hf.get("rope_parameters") or {}), **(hf.get("rope_scaling") or {})}
    if any(isinstance(v, dict) for v in params.values()):
        raise ConfigError(f"{key}: per-layer-type RoPE parameters are not implemented")
    theta = float(params.pop("rope_theta", None) or hf.get("rope_theta") or 10000.0)
    kind = rope_kind(params)
    if kind not in ROPE_TYPES:
        raise ConfigError(f"{key}: rope_type {kind!r} is not implemented (supported: {', '.join(ROPE_TYPES)}); "
                          "load it with impl=transformers")
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise ConfigError(f"{key}: partial_rotary_factor {params['partial_rotary_factor']} is not implemented")
    need = {"default": (), "linear": ("factor",),
            "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}[kind]
    missing = [k for k in need if params.get(k) is None]
    if missing:
        raise ConfigError(f"{key}: rope_type {kind} needs {', '.join(missing)}")
    return theta, ({"rope_type": kind, **{k: params[k] for k in need}} if need else None)


def config_to_hf(cfg: LlamaConfig) -> dict:
    """``LlamaConfig`` -> the ``config.json`` fields transformers (4.x and 5.x) reads for its family."""
    if cfg.family not in FAMILIES:
        raise ConfigError(f"family: {cfg.family!r} unknown (choose from {', '.join(FAMILIES)})")
    fam = FAMILIES[cfg.family]
    if (cfg.qkv_bias, cfg.qk_norm) != (fam.qkv_bias, fam.qk_norm):
        raise ConfigError(f"family: a {cfg.family} model has qkv_bias={fam.qkv_bias}, qk_norm={fam.qk_norm}; this "
                          f"config has {cfg.qkv_bias}, {cfg.qk_norm} (pick the family that matches)")
    out = {"architectures": [fam.architecture], "model_type": cfg.family}
    out.update({key: getattr(cfg, ours) for key, ours in CONFIG_KEYS.items()})
    out.update({"head_dim": cfg.head_dim, "rope_theta": cfg.rope_theta, "rope_scaling": cfg.rope_scaling,
                "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "use_sliding_window": False,
                "torch_dtype": "float32"})
    return out


# ---- weights ---------------------------------------------------------------------------------

def _present(cfg: LlamaConfig, flag: str | None) -> bool:
    return flag is None or bool(getattr(cfg, flag))


def to_hf_state_dict(model: Llama) -> dict[str, torch.Tensor]:
    """Our fused parameters -> Hugging Face names (contiguous fp32 copies)."""
    cfg = model.cfg
    params = dict(model.named_parameters(remove_duplicate=False))
    sd = {hf: params[ours] for ours, hf in MODEL_WEIGHTS}
    for i in range(cfg.n_layers):
        for ours, names, rows, flag in LAYER_WEIGHTS:
            if not _present(cfg, flag):
                continue
            tensor = params[f"layers.{i}.{ours}"]
            parts = tensor.split(rows(cfg), 0) if rows is not None else (tensor,)
            sd.update({f"model.layers.{i}.{name}": part for name, part in zip(names, parts)})
    if not cfg.tie_embeddings:
        sd["lm_head.weight"] = params["lm_head.weight"]
    return {k: v.detach().float().contiguous().clone() for k, v in sd.items()}


def from_hf_state_dict(cfg: LlamaConfig, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face names -> our module's state dict. Missing weights, and weights the table does
    not consume (which the model would silently ignore), raise ``KeyError`` naming them."""
    used, out = set(), {}

    def take(name: str) -> torch.Tensor:
        if name not in sd:
            raise KeyError(f"weight {name} is missing from the checkpoint")
        used.add(name)
        return sd[name]

    for ours, hf in MODEL_WEIGHTS:
        out[ours] = take(hf)
    for i in range(cfg.n_layers):
        for ours, names, _, flag in LAYER_WEIGHTS:
            if _present(cfg, flag):
                parts = [take(f"model.layers.{i}.{name}") for name in names]
                out[f"layers.{i}.{ours}"] = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
    if cfg.tie_embeddings:
        used.add("lm_head.weight")          # some tied checkpoints store the copy anyway
        out["lm_head.weight"] = out["embed.weight"]
    else:
        out["lm_head.weight"] = take("lm_head.weight")
    extra = sorted(k for k in sd if k not in used and not k.endswith(IGNORED_WEIGHTS))
    if extra:
        more = f" (+{len(extra) - 3} more)" if len(extra) > 3 else ""
        raise KeyError(f"weights {', '.join(extra[:3])}{more} are not part of a {cfg.family} model with this "
                       "config (an unsupported variant?)")
    return out


WEIGHT_FILES = (("model.safetensors.index.json", "model.safetensors"),
                ("pytorch_model.bin.index.json", "pytorch_model.bin"))


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_hf_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a model directory: one weight file, or the shards its index names."""
    directory = Path(directory)
    for index, single in WEIGHT_FILES:
        if (directory / single).is_file():
            return _read_weight_file(directory / single)
        if (directory / index).is_file():
            shards = sorted(set(json.loads((directory / index).read_text())["weight_map"].values()))
            sd: dict[str, torch.Tensor] = {}
            for shard in shards:
                sd.update(_read_weight_file(directory / shard))
            return sd
    raise FileNotFoundError(f"{directory}: no model.safetensors, pytorch_model.bin or their sharded index")


def build_model(cfg: LlamaConfig, hf_sd: dict[str, torch.Tensor]) -> Llama:
    """Our fp32 model holding copies of ``hf_sd`` (built on the meta device: no random init to
    pay for; copies, so training never writes into a memory-mapped weight file)."""
    with torch.device("meta"):
        model = Llama(cfg)
    ours = {k: v.to(torch.float32, copy=True) for k, v in from_hf_state_dict(cfg, hf_sd).items()}
    model.load_state_dict(ours, assign=True)
    model.tie()
    return model


def read_hf_config(directory: str | Path) -> dict:
    path = Path(directory) / "config.json"
    return json.loads(path.read_text())


def load_pretrained(directory: str | Path, chat_template: str = "auto", trust_remote_code: bool = False):
    """A Hugging Face Llama / Qwen2 / Qwen3 directory -> (our fp32 ``Llama`` on the CPU, ``HFTokenizer``)."""
    cfg = config_from_hf(read_hf_config(directory))
    model = build_model(cfg, load_hf_weights(directory))
    return model, load_tokenizer(directory, chat_template, trust_remote_code)


def load_tokenizer(directory: str | Path, chat_template: str = "auto", trust_remote_code: bool = False):
    """The directory's tokenizer as an ``HFTokenizer``; extra end-of-turn ids come from
    ``generation_config.json`` (else ``config.json``), as transformers' ``generate`` reads them."""
    from reasonlab.models.hf import HFTokenizer, require_transformers

    tok = require_transformers().AutoTokenizer.from_pretrained(str(directory), trust_remote_code=trust_remote_code)
    eos = None
    for name in ("generation_config.json", "config.json"):
        path = Path(directory) / name
        if path.is_file():
            eos = json.loads(path.read_text()).get("eos_token_id")
            if eos is not None:
                break
    extra = eos if isinstance(eos, list) else ([eos] if eos is not None else [])
    return HFTokenizer(tok, chat_template, extra)
