"""Checkpoints as Hugging Face model directories, written atomically.

A checkpoint directory holds ``config.json`` (the Hugging Face config of the model's family,
Llama / Qwen2 / Qwen3 via ``models.families``, plus our own fields under ``"reasonlab"``),
``model.safetensors`` with Hugging Face parameter names, the tokenizer files (our
``CharTokenizer`` or a Hugging Face policy's own) and, for resumable training,
``trainer_state.pt``. It loads unchanged in ``transformers.AutoModelForCausalLM`` and
``AutoTokenizer``.

Atomicity: everything is written into ``<dir>.tmp``, then swapped in by renames; a crash leaves
either the old or the new checkpoint complete (``resolve_checkpoint`` also accepts ``<dir>.old``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import torch
from safetensors.torch import save_file

from reasonlab.io import atomic_directory
from reasonlab.models.families import (  # noqa: F401 - to_/from_hf_state_dict: public API here
    build_model,
    config_to_hf,
    from_hf_state_dict,
    load_hf_weights,
    to_hf_state_dict,
)
from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.tokenizer import EOS, PAD, CharTokenizer


def hf_config(cfg: LlamaConfig, extra: dict | None = None, tokenizer=None) -> dict:
    """``config.json``: the family's Hugging Face fields (``families.config_to_hf``), the
    tokenizer's special ids, and our own fields under ``"reasonlab"``."""
    eos, pad, bos = _special_ids(tokenizer)
    return {**config_to_hf(cfg), "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad,
            "reasonlab": {"llama": asdict(cfg), **(extra or {})}}


def _special_ids(tokenizer) -> tuple[int, int, int | None]:
    """(eos, pad, bos) of a ``CharTokenizer`` or ``HFTokenizer`` (the tiny model: EOS, PAD, None)."""
    if tokenizer is None:
        return EOS, PAD, None
    bos = getattr(getattr(tokenizer, "tok", None), "bos_token_id", None)
    return int(tokenizer.eos_id), int(tokenizer.pad_id), bos


def save_checkpoint(directory: str | Path, model: Llama, tokenizer,
                    trainer_state: dict | None = None, extra: dict | None = None) -> Path:
    """Write a complete checkpoint directory atomically; returns its path. ``tokenizer``: our
    ``CharTokenizer`` or an ``HFTokenizer`` (a Llama / Qwen policy loaded from Hugging Face)."""
    config = hf_config(model.cfg, extra, tokenizer)          # unsupported family: fails before writing
    eos = [config["eos_token_id"], *getattr(tokenizer, "extra_eos", [])]
    generation = {"eos_token_id": eos if len(eos) > 1 else eos[0], "pad_token_id": config["pad_token_id"]}
    if config["bos_token_id"] is not None:
        generation["bos_token_id"] = config["bos_token_id"]
    with atomic_directory(directory) as tmp:
        save_file(to_hf_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        (tmp / "generation_config.json").write_text(json.dumps(generation))
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
    """-> (model, tokenizer, trainer_state or None). The tokenizer is our ``CharTokenizer``, or an
    ``HFTokenizer`` for a checkpoint of a Hugging Face policy (needs transformers)."""
    path = resolve_checkpoint(directory)
    meta = json.loads((path / "config.json").read_text())
    if "reasonlab" not in meta:
        raise ValueError(f"{path}/config.json: not a reasonlab tiny-model checkpoint "
                         "(load other Hugging Face models through the hf adapter)")
    known = {f.name for f in fields(LlamaConfig)}
    cfg = LlamaConfig(**{k: v for k, v in meta["reasonlab"]["llama"].items() if k in known})
    model = build_model(cfg, load_hf_weights(path))
    tokenizer = _load_tokenizer(path)
    state_path = path / "trainer_state.pt"
    state = torch.load(state_path, map_location=map_location, weights_only=False) if state_path.exists() else None
    return model, tokenizer, state


def has_char_tokenizer(directory: str | Path) -> bool:
    """True when the directory's tokenizer is our ``CharTokenizer``."""
    path = Path(directory) / "tokenizer_config.json"
    try:
        return "reasonlab_chars" in json.loads(path.read_text())
    except (OSError, ValueError):
        return False


def _load_tokenizer(path: Path):
    if has_char_tokenizer(path):
        return CharTokenizer.load(path)
    from reasonlab.models.families import load_tokenizer

    return load_tokenizer(path, chat_template="auto")
