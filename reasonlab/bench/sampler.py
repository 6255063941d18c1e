"""Sampler throughput: our KV-cache engine against ``transformers`` ``model.generate``.

Both sides decode the same left-padded batch (``prompts`` problems of ``task`` in the R1
template, ``n`` samples each) for exactly ``new_tokens`` tokens at temperature ``T`` with top-k
off (EOS disabled on both sides, so both do the same amount of work).

On the CPU (default) transformers runs in the checkpoint's dtype (fp32, its default) and in bf16,
with torch's intra-op threads on every core; the ratio is taken against the faster of the two.
Our engine runs one single-threaded worker process per core (``engine.parallel``), which is how
it uses a multi-core CPU.

In this process (``--device=cuda``, or ``--in_process=true``; ``bench.device``) both sides run
on the device in ``dtype``: ours is ``engine.sampler.sample`` over ``make_runner``; with
``--extras`` (always on CUDA) transformers also runs with a static KV cache, and our engine's
decode-step time at ``decode_rows`` rows is reported as ``decode_step_ms``.
"""
from __future__ import annotations

import torch

from reasonlab.bench.common import BenchConfig, load_or_init, race, to_transformers


def bench_prompts(tokenizer, count: int, seed: int, task: str = "arith", data_path: str = "",
                  limit: int | None = None) -> list[list[int]]:
    """``count`` test problems of ``task`` (read from ``data_path`` if given) in the R1 template,
    tokenized; each cut to its first ``limit`` tokens when ``limit`` is set (a small context)."""
    from reasonlab.tasks import get_task

    problems_of = get_task(task, **({"path": data_path} if data_path else {}))
    problems = problems_of.generate(count, seed=seed, split="test")
    prompts = [tokenizer.encode(problems_of.format_prompt(p, "r1")) for p in problems]
    return [p[:limit] for p in prompts] if limit else prompts


def prompt_limit(model, new_tokens: int) -> int | None:
    """The longest prompt that leaves room for ``new_tokens`` in our model's context."""
    from reasonlab.config import ConfigError

    context = getattr(getattr(model, "cfg", None), "max_seq_len", None)
    if context is None:
        return None
    if context <= new_tokens:
        raise ConfigError(f"new_tokens: {new_tokens} leaves no room for a prompt in the model's context of "
                          f"{context} tokens")
    return context - new_tokens


def generation_config(cfg: BenchConfig, pad_id: int):
    """transformers' sampling settings matching ours: exactly ``new_tokens`` tokens, no EOS."""
    from transformers import GenerationConfig

    return GenerationConfig(do_sample=cfg.temperature > 0, temperature=cfg.temperature or 1.0, top_k=cfg.top_k,
                            top_p=1.0, max_new_tokens=cfg.new_tokens, min_new_tokens=0, pad_token_id=pad_id,
                            eos_token_id=None, bos_token_id=None, num_return_sequences=cfg.n)


def _prompts_for(model, tokenizer, cfg: BenchConfig) -> tuple[list[list[int]], dict]:
    """The bench's prompts and the fields that describe them."""
    full = bench_prompts(tokenizer, cfg.prompts, cfg.seed, cfg.task, cfg.data_path)
    limit = prompt_limit(model, cfg.new_tokens)
    prompts = [p[:limit] for p in full] if limit else full
    info = {"task": cfg.task, "prompts": len(prompts), "n": cfg.n, "new_tokens": cfg.new_tokens,
            "mean_prompt_tokens": round(sum(map(len, prompts)) / len(prompts), 1),
            "clipped_prompts": sum(len(a) != len(b) for a, b in zip(full, prompts))}
    return prompts, info


def bench_sampler(cfg: BenchConfig) -> dict:
    from reasonlab.bench.device import runs_in_process

    return bench_sampler_in_process(cfg) if runs_in_process(cfg) else bench_sampler_workers(cfg)


def _scfg(cfg: BenchConfig):
    from reasonlab.engine.sampler import SamplingConfig

    return SamplingConfig(n=cfg.n, max_new_tokens=cfg.new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                          seed=cfg.seed)


def bench_sampler_workers(cfg: BenchConfig) -> dict:
    """The CPU bench: our worker processes against transformers in fp32 and bf16."""
    import os

    from reasonlab.bench.device import hf_generate
    from reasonlab.engine.parallel import ParallelSampler
    from reasonlab.engine.sampler import left_pad
    from reasonlab.models.hf import compute_dtype

    model, tokenizer = load_or_init(cfg)
    prompts, info = _prompts_for(model, tokenizer, cfg)
    ids, valid = left_pad(prompts, tokenizer.pad_id)
    workers = cfg.workers or os.cpu_count() or 1
    scfg = _scfg(cfg)
    hf32 = to_transformers(model, tokenizer).eval()
    hf16 = to_transformers(model, tokenizer).to(torch.bfloat16).eval()
    gen = generation_config(cfg, tokenizer.pad_id)
    pool = ParallelSampler(model, workers, compute_dtype(cfg.dtype))

    def ours() -> int:
        batch = pool.sample(prompts, scfg, eos_id=-1, pad_id=tokenizer.pad_id)
        return sum(len(c) for c in batch.completion_ids)

    sides = {"ours": ours, "hf_fp32": lambda: hf_generate(hf32, ids, valid, gen),
             "hf_bf16": lambda: hf_generate(hf16, ids, valid, gen)}
    try:
        timing = race(sides, cfg.repeats)
    finally:
        pool.close()
    return {"params": model.num_params(), **info, "device": "cpu", "engine_dtype": cfg.dtype,
            "engine_workers": workers, "hf_threads": torch.get_num_threads(), **timing}


def bench_sampler_in_process(cfg: BenchConfig) -> dict:
    """Both sides in this process on ``cfg.device`` in ``cfg.dtype``; on CUDA (or ``--extras``)
    also transformers with a static cache and our decode-step time."""
    from reasonlab.bench.device import (bench_device, decode_step_ms, extras_on, hf_generate, load_pair, static_side,
                                        timed_race)
    from reasonlab.engine.sampler import left_pad, sample
    from reasonlab.models.hf import DTYPES, compute_dtype, make_runner

    dev = bench_device(cfg.device)
    model, hf, tokenizer = load_pair(cfg, dev)
    hf = hf.to(DTYPES[cfg.dtype])
    prompts, info = _prompts_for(model, tokenizer, cfg)
    ids, valid = (t.to(dev) for t in left_pad(prompts, tokenizer.pad_id))
    runner = make_runner(model, dtype=compute_dtype(cfg.dtype))
    scfg, gen = _scfg(cfg), generation_config(cfg, tokenizer.pad_id)

    def ours() -> int:
        batch = sample(runner, prompts, scfg, eos_id=-1, pad_id=tokenizer.pad_id)
        return sum(len(c) for c in batch.completion_ids)

    sides = {"ours": ours, "hf_generate": lambda: hf_generate(hf, ids, valid, gen)}   # hf_*: best of them
    extras, static_info = extras_on(cfg, dev), {}
    if extras:
        sides["hf_static"], static_info = static_side(hf, ids, valid, gen, cfg.static_compile)
    out = {"params": model.num_params(), **info, "device": str(dev), "dtype": cfg.dtype, "in_process": True,
           "hf_threads": torch.get_num_threads(), **timed_race(sides, cfg.repeats, dev), **static_info}
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
    if extras:
        ms = decode_step_ms(runner, prompts, tokenizer.pad_id, cfg.decode_rows, cfg.decode_steps, dev)
        out.update(decode_rows=cfg.decode_rows, decode_step_ms=round(ms, 3),
                   decode_tokens_per_s=round(cfg.decode_rows / ms * 1000.0, 1))
    return out
