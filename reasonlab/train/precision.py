"""Where and in what precision a policy trains: device, bf16 autocast, adapters, checkpointing.

Weights always train in fp32 (the optimiser's master copy: AdamW on bf16 weights loses every
update below bf16's resolution); ``autocast: bfloat16`` runs the forward and backward matmuls in
bf16 on the device the parameters live on (CPU: AMX on recent x86; CUDA: tensor cores). The
training stages call:

- ``autocast_for(model, setting)``: the autocast context for that model's device;
- ``batch_to(batch, device)`` / ``model_device(model)``: batches go to the model's device;
- ``prepare_policy(model, cfg)``: LoRA adapters (``cfg.lora_rank``), gradient checkpointing
  (``cfg.grad_checkpointing``), the move to ``cfg.device`` and FSDP2 sharding (``cfg.fsdp``,
  ``train.fsdp``), for any stage config with those fields; ``check_training_options(cfg)``
  checks them before anything is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

DEVICE_TYPES = ("cpu", "cuda", "mps")


def model_device(model) -> torch.device:
    """The device of ``model``'s first parameter (cpu for a model without parameters)."""
    return next(model.parameters(), torch.empty(0)).device


def autocast_for(model, setting: str) -> torch.autocast:
    """bf16 autocast on the device type of ``model``'s parameters when ``setting`` is
    ``"bfloat16"``; disabled autocast (plain fp32) for ``"none"``. The weights stay fp32."""
    return torch.autocast(device_type=model_device(model).type, dtype=torch.bfloat16,
                          enabled=setting == "bfloat16")


def batch_to(batch: dict, device: torch.device) -> dict:
    """``batch`` with every tensor on ``device`` (the same dict's values when already there)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@dataclass
class TrainingOptions:
    """Where and how a stage trains its policy (GRPO and RFT inherit these settings)."""
    device: str = "cpu"              # where the policy trains: cpu | cuda | cuda:N | mps | auto
    grad_checkpointing: bool = False  # recompute each layer's activations in backward (less memory, slower)
    fsdp: bool = False               # FSDP2: shard params, grads, optimizer state over torchrun ranks (models too big for one device)
    lora_rank: int = 0               # > 0: train only LoRA adapters of this rank (0: full fine-tuning)
    lora_alpha: float = 16.0         # LoRA update scale alpha / lora_rank
    lora_targets: list[str] = field(default_factory=list)  # Linear names to adapt ([]: models.lora.DEFAULT_TARGETS)
    log_to: list[str] = field(default_factory=list)  # metric sinks besides the jsonl: tensorboard, wandb (train.sinks)


def training_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (``models.hf.resolve_device``) -> the
    device; ValueError for an unknown name or an accelerator this machine lacks."""
    from reasonlab.models.hf import resolve_device

    try:
        device = resolve_device(name)
    except RuntimeError as err:                    # torch.device("nonsense")
        raise ValueError(f"unknown device {name!r} (use cpu, cuda, cuda:N, mps or auto)") from err
    if device.type not in DEVICE_TYPES:
        raise ValueError(f"unsupported device {name!r} (use cpu, cuda, cuda:N, mps or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} requested but MPS is not available (use device=cpu)")
    return device


def process_group_backend(device: str) -> str:
    """torch.distributed backend for a stage training on ``device``: nccl for CUDA, else gloo."""
    try:
        return "nccl" if training_device(device).type == "cuda" else "gloo"
    except ValueError:                     # a bad device name is reported by the config check
        return "gloo"


def rank_device(device: torch.device) -> torch.device:
    """Under torchrun, a bare ``cuda`` means this rank's GPU (``cuda:LOCAL_RANK``); otherwise
    ``device`` as it is."""
    import os

    if device.type == "cuda" and device.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def check_training_options(cfg) -> None:
    """ConfigError for a bad ``device``, ``lora_rank``, ``lora_alpha`` of a stage config."""
    from reasonlab.config import ConfigError
    from reasonlab.train.sinks import check_log_to

    try:
        training_device(cfg.device)
    except ValueError as err:
        raise ConfigError(f"device: {err}") from None
    if cfg.lora_rank < 0:
        raise ConfigError(f"lora_rank: must be >= 0 (0: full fine-tuning), got {cfg.lora_rank}")
    if cfg.lora_rank > 0 and not cfg.lora_alpha > 0:
        raise ConfigError(f"lora_alpha: must be > 0, got {cfg.lora_alpha}")
    check_log_to(getattr(cfg, "log_to", []))
    if getattr(cfg, "fsdp", False) and cfg.lora_rank > 0:
        raise ConfigError("fsdp: LoRA adapters cannot be trained with fsdp; use lora_rank=0 or fsdp=false")


def set_grad_checkpointing(model, enabled: bool) -> None:
    """Recompute each decoder layer's activations in backward (less memory, ~1 more forward):
    our ``Llama``'s ``grad_checkpointing`` flag, or transformers' non-reentrant checkpointing."""
    from reasonlab.models.llama import Llama

    if isinstance(model, Llama):
        model.grad_checkpointing = enabled
    elif enabled and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def prepare_policy(model, cfg, adapters: dict | None = None):
    """The policy as a stage trains it: LoRA adapters when ``cfg.lora_rank > 0`` (``adapters``:
    their saved tensors, on resume), gradient checkpointing per ``cfg.grad_checkpointing``, on
    ``cfg.device``, then sharded over the torchrun ranks when ``cfg.fsdp`` (``train.fsdp.shard_model``:
    a no-op on one process). Weights keep their dtype (fp32 from ``train.grpo.load_policy``). -> model."""
    from reasonlab.config import ConfigError
    from reasonlab.models.lora import add_lora, load_lora_state

    if cfg.lora_rank > 0:
        try:
            add_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets)
            if adapters is not None:
                load_lora_state(model, adapters)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    set_grad_checkpointing(model, cfg.grad_checkpointing)
    model = model.to(rank_device(training_device(cfg.device)))
    if getattr(cfg, "fsdp", False):
        from reasonlab.train.fsdp import shard_model

        model = shard_model(model)
    return model


def workers_can_compute_gradients(model) -> bool:
    """Sampler workers (``engine.parallel``) hold a plain fp32 CPU copy of the policy: they can
    compute its gradient only when it is on the CPU, has no adapters and is not sharded (FSDP)."""
    from reasonlab.models.lora import has_lora
    from reasonlab.train.fsdp import is_sharded

    return model_device(model).type == "cpu" and not has_lora(model) and not is_sharded(model)
