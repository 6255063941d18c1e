"""Sampler throughput: our KV-cache engine against ``transformers`` ``model.generate``.

Both sides decode the same left-padded batch (``prompts`` arith problems in the R1 template,
``n`` samples each) for exactly ``new_tokens`` tokens at temperature ``T`` with top-k off (EOS disabled on both
sides, so both do the same amount of work). transformers runs in the checkpoint's dtype
(fp32, its default) and in bf16, with torch's intra-op threads on every core; the ratio is taken
against the faster of the two. Our engine runs one single-threaded worker process per core
(``engine.parallel``), which is how it uses a multi-core CPU.
"""
from __future__ import annotations

import torch

from reasonlab.bench.common import BenchConfig, load_or_init, race, to_transformers


def bench_prompts(tokenizer, count: int, seed: int) -> list[list[int]]:
    from reasonlab.tasks import get_task

    task = get_task("arith")
    problems = task.generate(count, seed=seed, split="test")
    return [tokenizer.encode(task.format_prompt(p, "r1")) for p in problems]


def bench_sampler(cfg: BenchConfig) -> dict:
    from transformers import GenerationConfig

    import os

    from reasonlab.engine.parallel import ParallelSampler
    from reasonlab.engine.sampler import SamplingConfig, left_pad

    model, tokenizer = load_or_init(cfg)
    prompts = bench_prompts(tokenizer, cfg.prompts, cfg.seed)
    ids, valid = left_pad(prompts, tokenizer.pad_id)
    from reasonlab.models.hf import compute_dtype

    dtype = compute_dtype(cfg.dtype)
    workers = cfg.workers or os.cpu_count() or 1
    scfg = SamplingConfig(n=cfg.n, max_new_tokens=cfg.new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                          seed=cfg.seed)
    hf32 = to_transformers(model, tokenizer).eval()
    hf16 = to_transformers(model, tokenizer).to(torch.bfloat16).eval()
    gen = GenerationConfig(do_sample=cfg.temperature > 0, temperature=cfg.temperature or 1.0, top_k=cfg.top_k,
                           top_p=1.0, max_new_tokens=cfg.new_tokens, min_new_tokens=0,
                           pad_token_id=tokenizer.pad_id, eos_token_id=None, bos_token_id=None,
                           num_return_sequences=cfg.n)

    pool = ParallelSampler(model, workers, dtype)

    def ours() -> int:
        batch = pool.sample(prompts, scfg, eos_id=-1, pad_id=tokenizer.pad_id)
        return sum(len(c) for c in batch.completion_ids)

    def theirs(hf) -> int:
        with torch.inference_mode():
            out = hf.generate(input_ids=ids, attention_mask=valid.long(), generation_config=gen)
        return (out.shape[1] - ids.shape[1]) * out.shape[0]

    sides = {"ours": ours, "hf_fp32": lambda: theirs(hf32), "hf_bf16": lambda: theirs(hf16)}
    try:
        timing = race(sides, cfg.repeats)
    finally:
        pool.close()
    return {
        "params": model.num_params(), "prompts": len(prompts), "n": cfg.n, "new_tokens": cfg.new_tokens,
        "mean_prompt_tokens": round(sum(map(len, prompts)) / len(prompts), 1),
        "engine_dtype": cfg.dtype, "engine_workers": workers, "hf_threads": torch.get_num_threads(),
        **timing,
    }
