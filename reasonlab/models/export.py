"""Stage ``reasonlab export``: write a model as a clean Hugging Face directory.

Our checkpoints already are Hugging Face directories (``models.checkpoint``): transformers
loads ``runs/<name>/model`` directly. Export makes the hand-over explicit and clean: the
training state (``trainer_state.pt``) is left behind, a peft LoRA model is merged into its base
weights, and the weights are written in the requested ``dtype``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ExportConfig:
    model: str = ""              # reasonlab checkpoint, Hugging Face model directory or hub id
    out: str = ""                # output directory: new or empty, or replaced whole with `overwrite`
    dtype: str = "float32"       # weights on disk for Hugging Face models: float32 | bfloat16 | float16
    overwrite: bool = False      # replace an earlier model directory at `out` (never the model itself)


def check_config(cfg: ExportConfig) -> None:
    """``out`` must be new or empty (or ``overwrite``), and never the model's own directory or one
    that contains it."""
    from reasonlab.checks import check_choice, check_model_ref
    from reasonlab.config import ConfigError

    check_model_ref(cfg.model)
    check_choice("dtype", cfg.dtype, ("float32", "bfloat16", "float16"))
    if not cfg.out:
        raise ConfigError("out: pass --out=<directory to write>")
    out, source = Path(cfg.out).resolve(), Path(cfg.model).resolve()
    if Path(cfg.model).exists() and (out == source or out in source.parents):
        raise ConfigError(f"out: {cfg.out} holds the model being exported ({cfg.model}); pick another --out")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {cfg.out} is a file")
    if out.is_dir() and any(out.iterdir()):
        if not cfg.overwrite:
            raise ConfigError(f"out: {cfg.out} is not empty; pass --overwrite=true to replace it, or another --out")
        if not (out / "config.json").is_file():
            raise ConfigError(f"out: {cfg.out} is not a model directory (no config.json), so --overwrite does not "
                              "replace it; remove it yourself or pick another --out")


def export(cfg: ExportConfig) -> dict:
    """Write ``cfg.model`` to ``cfg.out``; returns a small summary."""
    from reasonlab.io import atomic_directory
    from reasonlab.models.checkpoint import save_checkpoint
    from reasonlab.models.hf import load_policy, merge_lora

    check_config(cfg)
    out = Path(cfg.out)
    model, tokenizer, kind = load_policy(cfg.model, device="cpu", dtype=cfg.dtype, chat_template="never", impl=None)
    if kind == "tiny":
        save_checkpoint(out, model, tokenizer)           # fp32, no trainer state; atomic
    else:
        model = merge_lora(model)
        with atomic_directory(out) as tmp:
            model.save_pretrained(str(tmp))
            tokenizer.save(tmp)
    params = sum(p.numel() for p in model.parameters())
    return {"stage": "export", "kind": kind, "out": str(out), "params": params}
