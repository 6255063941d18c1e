"""The PolicyBackend: one interface over which every stage samples, searches and trains.

A backend holds the policy's trainable weights (``model``, fp32) and a sampling copy in
``dtype``, on ``device``:

- ``sample(prompts, cfg, keys=None, stop_ids=None) -> SampleBatch``: ``engine.sampler.sample``
  over the backend's engine (``keys`` name each prompt's random streams, ``engine.rng``);
- ``runner() -> CausalLM``: the engine itself in this process, for tree search (prefill once,
  fork with ``select``, step with an ``active`` mask, ``concat``);
- ``gradients``: the ``train.policy_update`` gradient function (in this process, or in the
  sampler's worker processes);
- ``refresh(model)``: the sampler takes the weights of ``model`` after an optimiser step;
- ``save(directory)``: the policy as a model directory that every stage loads;
- ``close()``: stop worker processes.

Implementations (``BACKENDS``):

- ``parallel``: CPU worker processes, one per core, each with one thread and a shard of the
  prompts (``engine.parallel.ParallelSampler``); with ``grad_buffers`` the workers also compute
  the gradient of their share of a batch. Our model code only (the tiny model and Llama / Qwen2 /
  Qwen3 directories).
- ``local``: torch in this process, on any device (cpu, cuda, mps): our engine
  (``engine.tiny.LlamaRunner``) for our model code, ``engine.hf.HFRunner`` for any other
  transformers model. Sampling stays on the device.
"""
from __future__ import annotations

import os
from typing import Any, Protocol

import torch

from reasonlab.engine.protocol import CausalLM
from reasonlab.engine.sampler import SampleBatch, SamplingConfig, sample


class PolicyBackend(Protocol):
    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype | None          # sampling precision (None: the weights' own)
    workers: int
    gradients: Any

    def sample(self, prompts: list[list[int]], cfg: SamplingConfig, keys: list[int] | None = None,
               stop_ids: list[list[int]] | None = None) -> SampleBatch: ...

    def runner(self) -> CausalLM: ...

    def refresh(self, model: Any = None) -> None: ...

    def save(self, directory) -> None: ...

    def close(self) -> None: ...


def is_ours(model) -> bool:
    """True for our ``Llama`` code (tiny model, Llama / Qwen2 / Qwen3 directories)."""
    from reasonlab.models.llama import Llama

    return isinstance(model, Llama)


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def save_model(directory, model, tokenizer, trainer_state: dict | None = None) -> None:
    """An atomic model directory: ``save_checkpoint`` for our model code (it keeps loading in
    transformers); for a transformers model ``save_pretrained`` + tokenizer (+ ``trainer_state.pt``)."""
    from reasonlab.io import atomic_directory
    from reasonlab.models.checkpoint import save_checkpoint

    if is_ours(model):
        save_checkpoint(directory, model, tokenizer, trainer_state=trainer_state)
        return
    with atomic_directory(directory) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save(tmp)
        if trainer_state is not None:
            torch.save(trainer_state, tmp / "trainer_state.pt")


class _Base:
    """What both backends share: the tokenizer's ids, ``save`` and the context manager."""

    def __init__(self, model, tokenizer, dtype: torch.dtype | None):
        self.model, self.tokenizer, self.dtype = model, tokenizer, dtype

    def _ids(self, stop_ids) -> dict:
        stops = getattr(self.tokenizer, "stop_ids", None) if stop_ids is None else stop_ids
        return {"eos_id": self.tokenizer.eos_id, "pad_id": self.tokenizer.pad_id, "stop_ids": stops}

    def save(self, directory) -> None:
        save_model(directory, self.model, self.tokenizer)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalBackend(_Base):
    """Torch in this process, on the model's device."""

    def __init__(self, model, tokenizer, dtype: torch.dtype | None = None, workers: int = 1, **_):
        from reasonlab.train.policy_update import local_gradients

        super().__init__(model, tokenizer, dtype)
        self.device = model_device(model)
        self.workers = 1
        self.gradients = local_gradients
        self._runner = _make_runner(model, dtype)

    def runner(self) -> CausalLM:
        return self._runner

    def sample(self, prompts, cfg: SamplingConfig, keys=None, stop_ids=None) -> SampleBatch:
        return sample(self._runner, prompts, cfg, keys=keys, **self._ids(stop_ids))

    def refresh(self, model=None) -> None:
        self.model = self.model if model is None else model
        self._runner = _make_runner(self.model, self.dtype)


class WorkerBackend(_Base):
    """CPU worker processes (one thread each) that sample, and with ``grad_buffers`` compute
    gradients, on their own copy of the weights."""

    def __init__(self, model, tokenizer, dtype: torch.dtype | None = None, workers: int = 0,
                 grad_buffers: bool = False, **_):
        from reasonlab.engine.parallel import ParallelSampler
        from reasonlab.train.policy_update import ParallelGradients, local_gradients

        super().__init__(model, tokenizer, dtype)
        self.device = torch.device("cpu")
        self.pool = ParallelSampler(model, workers or os.cpu_count() or 1, dtype, grad_buffers=grad_buffers)
        self.workers = self.pool.workers
        self.gradients = ParallelGradients(self.pool) if grad_buffers else local_gradients
        self._runner = None

    def runner(self) -> CausalLM:
        if self._runner is None:
            self._runner = _make_runner(self.model, self.dtype)
        return self._runner

    def sample(self, prompts, cfg: SamplingConfig, keys=None, stop_ids=None) -> SampleBatch:
        return self.pool.sample(prompts, cfg, keys=keys, **self._ids(stop_ids))

    def refresh(self, model=None) -> None:
        self.model = self.model if model is None else model
        self.pool.refresh(self.model)
        self._runner = None

    def close(self) -> None:
        self.pool.close()


def _make_runner(model, dtype):
    from reasonlab.models.hf import make_runner

    return make_runner(model, dtype=dtype)


BACKENDS = {"parallel": WorkerBackend, "local": LocalBackend}


def make_backend(model, tokenizer, name: str = "parallel", *, dtype: torch.dtype | None = None,
                 workers: int = 0, grad_buffers: bool = False) -> PolicyBackend:
    """The backend ``name`` over ``model``: the one place that checks what the model is.
    ``parallel`` needs our model code on the CPU; anything else is a ConfigError naming
    ``backend``."""
    from reasonlab.config import ConfigError

    if name not in BACKENDS:
        raise ConfigError(f"backend: unknown value {name!r}; choose from: {', '.join(BACKENDS)}")
    if name == "parallel" and not is_ours(model):
        raise ConfigError(f"backend: parallel runs our model code (tiny, Llama, Qwen2, Qwen3) in CPU worker "
                          f"processes; {type(model).__name__} runs through transformers: use --backend=local")
    if name == "parallel" and model_device(model).type != "cpu":
        raise ConfigError(f"backend: parallel samples in CPU worker processes; the model is on "
                          f"{model_device(model)}: use --backend=local")
    return BACKENDS[name](model, tokenizer, dtype=dtype, workers=workers, grad_buffers=grad_buffers)
