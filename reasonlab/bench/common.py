"""``reasonlab bench <what>``: speed against transformers on the same weights, in the same run.

Each benchmark alternates the two sides for ``repeats`` rounds and reports medians, so a noisy
neighbour slows both sides alike; the ``ratio`` is ours / theirs. With ``--json`` the last line
printed is one JSON object.
"""
from __future__ import annotations

import importlib
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from reasonlab.models.llama import LlamaConfig

BENCHES = {
    "sampler": "reasonlab.bench.sampler:bench_sampler",
    "train": "reasonlab.bench.train:bench_train",
    "grpo": "reasonlab.bench.grpo:bench_grpo",
    "sandbox": "reasonlab.bench.sandbox:bench_sandbox",
    "sft": "reasonlab.bench.sft:bench_sft",
}


@dataclass
class BenchConfig:
    what: str = "sampler"
    json: bool = False
    model: str = ""                       # checkpoint or Llama/Qwen2/Qwen3 HF dir; empty: fresh `model_cfg`
    model_cfg: LlamaConfig = field(default_factory=LlamaConfig)
    prompts: int = 256
    n: int = 1                            # samples per prompt (both sides share the prompt work)
    workers: int = 0                      # sampler processes; 0: one per CPU core
    new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    dtype: str = "bfloat16"               # our engine's / trainer's compute dtype (in-process: both sides')
    device: str = "cpu"                   # cpu | cuda | auto; off the CPU every side runs in this process
    in_process: bool = False              # on the CPU too: our side in this process (no worker processes)
    task: str = "arith"                   # sampler prompts: this task's test problems in the R1 template
    data_path: str = ""                   # the task's data file (gsm8k: a jsonl of questions)
    extras: bool = False                  # sampler: static-cache generate + our decode-step time (always on CUDA)
    static_compile: bool = True           # extras on CUDA: let transformers compile its static-cache decode step
    decode_rows: int = 256                # decode-step timing: rows decoded together
    decode_steps: int = 16                # decode-step timing: timed steps (median)
    trl: bool = True                      # grpo: also run TRL (CPU only; skipped on an accelerator)
    batch_size: int = 24                  # train bench shape (the tiny recipe's)
    seq_len: int = 256
    steps: int = 8                        # measured train steps per round
    repeats: int = 3
    seed: int = 0
    programs: int = 1000                  # sandbox: programs run through the pool
    sandbox_workers: int = 0              # sandbox: programs at once (0: two per CPU core)
    sandbox_isolation: str = "auto"       # sandbox: auto | bwrap | unshare | none


def run_bench(cfg: BenchConfig) -> dict:
    from reasonlab.checks import check_choice, check_data_path, check_min, check_model_ref, check_task

    check_choice("what", cfg.what, BENCHES)
    check_min(cfg, {"prompts": 1, "n": 1, "workers": 0, "new_tokens": 1, "batch_size": 1, "seq_len": 2, "steps": 1,
                    "repeats": 1, "temperature": 0.0, "top_k": 0, "decode_rows": 1, "decode_steps": 1})
    check_choice("dtype", cfg.dtype, ("bfloat16", "float32"))
    check_task(cfg.task)
    check_data_path(cfg.data_path, cfg.task)
    check_model_ref(cfg.model, required=False)
    from reasonlab.bench.device import bench_device

    bench_device(cfg.device)                                       # cuda without CUDA: one line

    module, attr = BENCHES[cfg.what].split(":")
    result = getattr(importlib.import_module(module), attr)(cfg)
    result = {"bench": cfg.what, **result}
    if cfg.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")
    return result


def load_or_init(cfg: BenchConfig):
    """(model, tokenizer) from ``cfg.model`` or freshly initialised with ``cfg.model_cfg``."""
    import torch

    from reasonlab.models.hf import load_policy
    from reasonlab.models.llama import Llama
    from reasonlab.models.tokenizer import CharTokenizer

    if cfg.model:        # a reasonlab checkpoint or a Llama / Qwen2 / Qwen3 directory, in our code
        model, tokenizer, _ = load_policy(cfg.model, device="cpu", impl="ours")
        return model, tokenizer
    tokenizer = CharTokenizer()
    cfg.model_cfg.vocab_size = tokenizer.vocab_size
    torch.manual_seed(cfg.seed)
    return Llama(cfg.model_cfg), tokenizer


def to_transformers(model, tokenizer):
    """The same weights loaded into ``transformers.AutoModelForCausalLM`` (through a saved dir)."""
    from transformers import AutoModelForCausalLM

    from reasonlab.models.checkpoint import save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "hf", model, tokenizer)
        return AutoModelForCausalLM.from_pretrained(str(path))


def alternate(sides: dict, repeats: int) -> dict:
    """Run each side's callable ``repeats`` times, interleaved; -> median seconds per side.
    Each callable returns the amount of work done (tokens, completions...)."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    work: dict[str, float] = {}
    for _ in range(repeats):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            work[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (work[name], statistics.median(ts)) for name, ts in times.items()}


def race(sides: dict, repeats: int) -> dict:
    """Warm up each side once, time them interleaved, and report tokens/s per side and the
    ratio of ``ours`` to the fastest other side."""
    for fn in sides.values():            # warm-up (allocators, kernels) outside the timing
        fn()
    rate = {name: work / secs for name, (work, secs) in alternate(sides, repeats).items()}
    best = max(v for k, v in rate.items() if k != "ours")
    out = {f"{name}_tokens_per_s": round(v, 1) for name, v in rate.items()}
    out.update(hf_tokens_per_s=round(best, 1), ratio=round(rate["ours"] / best, 2))
    return out
