"""Stage ``reasonlab sample``: print completions of a checkpoint for a prompt or task problems."""
from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class SampleConfig:
    model: str = ""                 # reasonlab checkpoint, Hugging Face model directory or hub id
    prompt: str = ""                # raw prompt text; empty: use `task` problems
    task: str = "arith"
    split: str = "test"
    limit: int = 2
    template: str = "r1"
    n: int = 2
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    device: str = "auto"            # Hugging Face models: auto | cpu | cuda | mps
    dtype: str = "auto"             # Hugging Face models: auto | bfloat16 | float16 | float32
    chat_template: str = "auto"     # Hugging Face tokenizers: auto | always | never
    json: bool = False


def run_sample(cfg: SampleConfig) -> list[dict]:
    from reasonlab.backends.policy import LocalBackend
    from reasonlab.engine.sampler import SamplingConfig
    from reasonlab.models.hf import load_policy
    from reasonlab.tasks import get_task

    from reasonlab.checks import SAMPLING_MINIMA, check_min, check_model_ref, check_task

    check_model_ref(cfg.model)
    check_task(cfg.task, cfg.split, cfg.template)
    check_min(cfg, {k: v for k, v in SAMPLING_MINIMA.items() if k != "prompts_per_batch"})
    model, tokenizer, _ = load_policy(cfg.model, device=cfg.device, dtype=cfg.dtype, chat_template=cfg.chat_template)
    task = None if cfg.prompt else get_task(cfg.task)
    problems = [None] if cfg.prompt else task.generate(cfg.limit, seed=cfg.seed, split=cfg.split)
    texts = [cfg.prompt] if cfg.prompt else [task.format_prompt(p, cfg.template) for p in problems]
    scfg = SamplingConfig(n=cfg.n, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                          top_p=cfg.top_p, top_k=cfg.top_k, stop=cfg.stop, seed=cfg.seed)
    stop_ids = [tokenizer.encode(s) for s in cfg.stop] + list(getattr(tokenizer, "stop_ids", []))
    batch = LocalBackend(model, tokenizer).sample([tokenizer.prompt_ids(t) for t in texts], scfg, stop_ids=stop_ids)
    out = []
    for row, (p, ids) in enumerate(zip(batch.prompt_index, batch.completion_ids)):
        text = tokenizer.decode(ids)
        item = {"prompt": texts[p], "completion": text, "finish_reason": batch.finish_reasons[row]}
        if task is not None:
            verdict = task.verify(problems[p], text)
            item.update(correct=verdict.correct, parsed=verdict.parsed, reason=verdict.reason)
        out.append(item)
        if cfg.json:
            print(json.dumps(item))
        else:
            print(f"--- prompt {p} sample {row % cfg.n} ({item['finish_reason']}"
                  + (f", {item['reason']}" if task is not None else "") + ")")
            print(texts[p] + text)
    return out
