"""Benchmarks in this process on one device (``--device=cuda``, or ``--in_process=true`` on the CPU).

On an accelerator there are no CPU worker processes: our side is ``engine.sampler.sample`` over
``models.hf.make_runner(model, dtype)`` with our model moved to the device, and transformers
runs on the same device, on the same weights, in the same dtype. Every timed call ends with a
device synchronisation (CUDA kernels are asynchronous), and the first call of each side (the
warm-up: allocator, kernel selection, ``torch.compile`` of a static-cache ``generate``) is
reported as ``<side>_first_call_s``.

The extra figures (``--extras``, always on CUDA): transformers ``generate`` with a static cache
(``cache_implementation="static"``; on CUDA transformers compiles the decode step on the first
call unless ``--static_compile=false``: :func:`static_side`) and our engine's decode-step time
(:func:`decode_step_ms`).
"""
from __future__ import annotations

import copy
import statistics
import time

import torch

from reasonlab.bench.common import BenchConfig, load_or_init, race


def bench_device(name: str) -> torch.device:
    """``cpu``, ``cuda[:i]`` or ``auto`` (cuda if available, else cpu) -> a device; a ConfigError
    when CUDA is asked for and absent."""
    from reasonlab.config import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"device: unknown value {name!r}; choose from: cpu, cuda, auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {name} requested but CUDA is not available here (use --device=cpu)")
    return torch.device(name)


def runs_in_process(cfg: BenchConfig) -> bool:
    """Our side runs in this process (no worker processes): always off the CPU, or when asked."""
    return cfg.in_process or bench_device(cfg.device).type != "cpu"


def extras_on(cfg: BenchConfig, device: torch.device) -> bool:
    """Static-cache generate and decode-step timing: asked for, or on CUDA."""
    return cfg.extras or device.type == "cuda"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timed:
    """``fn`` followed by a device synchronisation; remembers how long the first call took."""

    def __init__(self, fn, device: torch.device):
        self.fn, self.device, self.first_s = fn, device, None

    def __call__(self):
        t0 = time.perf_counter()
        work = self.fn()
        synchronize(self.device)
        if self.first_s is None:
            self.first_s = time.perf_counter() - t0
        return work


def timed_race(sides: dict, repeats: int, device: torch.device) -> dict:
    """``common.race`` with synchronised sides, plus each side's first-call (warm-up) seconds."""
    timed = {name: Timed(fn, device) for name, fn in sides.items()}
    out = race(timed, repeats)
    out.update({f"{name}_first_call_s": round(t.first_s, 2) for name, t in timed.items()})
    return out


def load_pair(cfg: BenchConfig, device: torch.device):
    """(ours, transformers model, tokenizer) on ``device`` with the same weights: ours in fp32
    (a runner or the trainer casts), transformers in fp32 (callers cast it). ``models.hf`` loads
    our code on the CPU, so the bench moves it."""
    from transformers import AutoModelForCausalLM

    from reasonlab.bench.common import to_transformers

    model, tokenizer = load_or_init(cfg)
    if cfg.model:                       # the directory itself: transformers reads our checkpoints too
        hf = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
    else:
        hf = to_transformers(model, tokenizer)
    return model.to(device), hf.to(device).eval(), tokenizer


def hf_generate(hf, ids: torch.Tensor, valid: torch.Tensor, gen, static: bool = False) -> int:
    """transformers ``generate`` on left-padded ``ids`` / ``valid`` (on the model's device);
    ``static``: with a static KV cache. -> generated tokens (all rows)."""
    if static:
        gen = copy.deepcopy(gen)
        gen.cache_implementation = "static"
    with torch.inference_mode():
        out = hf.generate(input_ids=ids, attention_mask=valid.long(), generation_config=gen)
    return (out.shape[1] - ids.shape[1]) * out.shape[0]


def static_side(hf, ids: torch.Tensor, valid: torch.Tensor, gen, compile_ok: bool = True) -> tuple:
    """(callable, info) for transformers' static-cache ``generate``. transformers compiles its
    decode step on CUDA (not on the CPU) unless ``compile_ok`` is False; a compilation that
    fails falls back to the uncompiled static cache, with the error in ``info``. The first call
    (compilation included) happens here: ``info["hf_static_warmup_s"]``."""
    gen = copy.deepcopy(gen)
    gen.disable_compile = not compile_ok
    device = ids.device
    info = {"hf_static_compiled": compile_ok and device.type == "cuda"}
    t0 = time.perf_counter()
    try:
        hf_generate(hf, ids, valid, gen, static=True)
    except Exception as err:  # noqa: BLE001 - compilation needs a toolchain; the static cache itself does not
        if gen.disable_compile:
            raise
        gen.disable_compile = True
        reason = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
        info["hf_static_compiled"] = f"failed, ran uncompiled ({reason})"
        hf_generate(hf, ids, valid, gen, static=True)
    synchronize(device)
    info["hf_static_warmup_s"] = round(time.perf_counter() - t0, 2)
    return (lambda: hf_generate(hf, ids, valid, gen, static=True)), info


def decode_step_ms(runner, prompts: list[list[int]], pad_id: int, rows: int, steps: int,
                   device: torch.device, warmup: int = 2) -> float:
    """Median milliseconds of one ``runner.decode`` over ``rows`` rows (``prompts`` cycled), after
    a prefill of those rows; tensors are handed to the runner on ``device``. Each timed call is
    bracketed by synchronisations; the next token is the argmax, outside the timing. Prompts are
    cut to leave room for the steps in the runner's context (``max_len``)."""
    from reasonlab.engine.sampler import left_pad

    room = getattr(runner, "max_len", None)
    limit = max(1, room - (warmup + steps)) if room else None
    batch = [prompts[i % len(prompts)][:limit] for i in range(rows)]
    ids, valid = left_pad(batch, pad_id)
    logits, state = runner.prefill(ids.to(device), valid.to(device), warmup + steps)
    tokens = logits.argmax(-1)
    times = []
    for i in range(warmup + steps):
        synchronize(device)
        t0 = time.perf_counter()
        logits = runner.decode(state, tokens)
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        tokens = logits.argmax(-1)
    return statistics.median(times) * 1000.0

