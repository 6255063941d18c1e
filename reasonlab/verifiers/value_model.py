"""Value-head verifiers: a copy of the policy's trunk whose LM head is replaced by a linear head
with ``outputs`` logits (sigmoid = probability of correct), trained with per-token targets.

The model stays a ``Llama`` (only ``lm_head`` changes), so ``engine.tiny.LlamaRunner`` runs it with
the same KV cache, prefix sharing and forking as the policy; its "logits" are the head's outputs.
Cobbe et al. (2021) put the value head on every token (token-level targets = the solution's
label); the solution-level variant supervises only the last token. A PRM (Math-Shepherd) is
supervised at the step separators with Monte-Carlo labels (soft: fraction of rollouts correct).

Checkpoint directory: ``config.json`` (``{"reasonlab_value": {"llama": ..., "outputs": n, ...}}``),
``model.safetensors`` and the tokenizer files; written into ``<dir>.tmp`` then renamed.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reasonlab.models.llama import Llama, LlamaConfig


def make_value_model(policy: Llama, outputs: int = 1) -> Llama:
    """A copy of ``policy`` (trunk initialised from it) with a zero-initialised value head."""
    model = copy.deepcopy(policy)
    model.lm_head = nn.Linear(policy.cfg.d_model, outputs, bias=True)
    nn.init.zeros_(model.lm_head.weight)
    nn.init.zeros_(model.lm_head.bias)
    return model


def save_value_model(directory: str | Path, model: Llama, tokenizer, meta: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(directory)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    info = {"llama": asdict(model.cfg), "outputs": model.lm_head.out_features, **(meta or {})}
    (tmp / "config.json").write_text(json.dumps({"reasonlab_value": info}, indent=1))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    tokenizer.save(tmp)
    old = path.with_name(path.name + ".old")
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def load_value_model(directory: str | Path):
    """-> (model, tokenizer, meta)."""
    from safetensors.torch import load_file

    from reasonlab.models.tokenizer import CharTokenizer

    path = Path(directory)
    config = path / "config.json"
    if not config.exists():
        raise FileNotFoundError(f"no value model at {path} (expected {config})")
    meta = json.loads(config.read_text()).get("reasonlab_value")
    if meta is None:
        raise ValueError(f"{config}: not a reasonlab value model (no 'reasonlab_value')")
    known = {f.name for f in fields(LlamaConfig)}
    model = Llama(LlamaConfig(**{k: v for k, v in meta["llama"].items() if k in known}))
    model.lm_head = nn.Linear(model.cfg.d_model, int(meta["outputs"]), bias=True)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.eval(), CharTokenizer.load(path), meta


@dataclass
class ValueTrainConfig:
    epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0


def _batch(rows: list[tuple[list[int], list]], pad_id: int, outputs: int):
    """Right-padded ids (B, T), targets (B, T, O) and mask (B, T, O)."""
    t = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), t), pad_id, dtype=torch.long)
    target = torch.zeros(len(rows), t, outputs)
    mask = torch.zeros(len(rows), t, outputs, dtype=torch.bool)
    for i, (seq, targets) in enumerate(rows):
        ids[i, : len(seq)] = torch.tensor(seq)
        for pos, y in enumerate(targets):
            ys = y if isinstance(y, (list, tuple)) else [y] * outputs
            for o, v in enumerate(ys):
                if v is not None:
                    target[i, pos, o], mask[i, pos, o] = float(v), True
    return ids, target, mask


def train_value_model(model: Llama, rows: list[tuple[list[int], list]], cfg: ValueTrainConfig,
                      pad_id: int = 0, log=None) -> list[float]:
    """Binary cross-entropy (soft targets allowed) of the head's logits at the positions with a
    target. ``rows``: (token ids, per-position targets of the same length; None = no loss, a
    float, or one value per output). Returns the loss of every step."""
    if not rows:
        raise ValueError("no training rows for the value model")
    outputs = model.lm_head.out_features
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    losses, t0 = [], time.perf_counter()
    steps = cfg.epochs * -(-len(rows) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / max(1, steps)))
    for _ in range(cfg.epochs):
        order = torch.randperm(len(rows), generator=gen).tolist()
        for start in range(0, len(order), cfg.batch_size):
            ids, target, mask = _batch([rows[i] for i in order[start: start + cfg.batch_size]], pad_id, outputs)
            logits = model(ids).float()
            loss = F.binary_cross_entropy_with_logits(logits[mask], target[mask])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if log is not None and len(losses) % 50 == 0:
                log(f"value model step {len(losses)}/{steps} loss {sum(losses[-50:]) / 50:.4f} "
                    f"({time.perf_counter() - t0:.0f} s)")
    model.eval()
    return losses
