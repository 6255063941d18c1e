"""Stage ``reasonlab export``: write a model as a clean Hugging Face directory.

Our checkpoints already are Hugging Face directories (``models.checkpoint``): transformers and
vLLM load ``runs/<name>/model`` directly. Export makes the hand-over explicit and clean: the
training state (``trainer_state.pt``) is left behind, a peft LoRA model is merged into its base
weights, and the weights are written in the requested ``dtype``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ExportConfig:
    model: str = ""              # reasonlab checkpoint, Hugging Face model directory or hub id
    out: str = ""                # output directory (replaced atomically for reasonlab checkpoints)
    dtype: str = "float32"       # weights on disk for Hugging Face models: float32 | bfloat16 | float16


def export(cfg: ExportConfig) -> dict:
    """Write ``cfg.model`` to ``cfg.out``; returns a small summary."""
    from reasonlab.models.checkpoint import save_checkpoint
    from reasonlab.models.hf import load_policy, merge_lora

    if not cfg.model or not cfg.out:
        raise FileNotFoundError("export needs --model=<checkpoint dir or hub id> and --out=<dir>")
    out = Path(cfg.out)
    model, tokenizer, kind = load_policy(cfg.model, device="cpu", dtype=cfg.dtype, chat_template="never")
    if kind == "tiny":
        save_checkpoint(out, model, tokenizer)           # fp32, no trainer state
    else:
        model = merge_lora(model)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out))
        tokenizer.save(out)
    params = sum(p.numel() for p in model.parameters())
    return {"stage": "export", "kind": kind, "out": str(out), "params": params}
