"""Stage: sample ``n`` completions per problem, verify them, write results and metrics.

Artifacts in the run directory: ``results.jsonl`` (one row per problem: completions, verdicts,
canonical answer keys, lengths, finish reasons), ``summary.json`` (pass@1, unbiased pass@k,
maj@k with bootstrap intervals, lengths, truncation rate, timings, seed, git revision) and
``accuracy_vs_k.png``. Rows are appended chunk by chunk; with ``resume: true`` problems already
in ``results.jsonl`` are skipped, so an interrupted evaluation continues where it stopped.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from reasonlab.io import append_jsonl, atomic_write_json, make_run_dir, run_metadata


@dataclass
class EvalConfig:
    name: str = "eval"
    runs_dir: str = "runs"
    model: str = ""                  # reasonlab checkpoint, Hugging Face model directory or hub id
    task: str = "arith"
    split: str = "test"
    data_path: str = ""              # local jsonl/dir for dataset tasks (gsm8k, math)
    generate: dict = field(default_factory=dict)   # difficulty options for synthetic tasks
    limit: int = 500
    n: int = 16
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    template: str = "r1"
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    prompts_per_batch: int = 32
    dtype: str = "bfloat16"         # sampling precision: bfloat16 | float16 | float32
    device: str = "auto"            # Hugging Face models: auto | cpu | cuda | mps
    chat_template: str = "auto"     # Hugging Face tokenizers: auto | always | never
    seed: int = 1234
    resume: bool = False
    methods: list[str] = field(default_factory=list)   # search methods: delegates to eval.sweep
    verifiers: str = ""              # `reasonlab verifiers` run dir (ORM / PRM) for those methods


def make_task(cfg: EvalConfig):
    """The task, pointed at local data when ``data_path`` is a jsonl file or a directory."""
    from pathlib import Path

    from reasonlab.tasks import get_task

    if not cfg.data_path:
        return get_task(cfg.task)
    path = Path(cfg.data_path)
    if not path.exists():
        raise FileNotFoundError(f"data_path not found: {path}")
    return get_task(cfg.task, **({"data_dir": path} if path.is_dir() else {"path": path}))


def load_problems(cfg: EvalConfig, task) -> list[dict]:
    """Held-out problems for the task (synthetic: generated from the test split)."""
    return task.generate(cfg.limit, seed=cfg.seed, split=cfg.split, **cfg.generate)


def score_completions(task, example: dict, texts: list[str]) -> dict:
    """Verify each completion; the same verifier gives correctness and the vote key."""
    verdicts = [task.verify(example, t) for t in texts]
    return {
        "correct": [v.correct for v in verdicts],
        "parsed": [v.parsed for v in verdicts],
        "keys": [task.canonical(v.parsed) if v.parsed is not None else None for v in verdicts],
        "reasons": [v.reason for v in verdicts],
    }


def greedy_accuracy(model, tokenizer, task, problems: list[dict], template: str, max_new_tokens: int,
                    dtype=None) -> float:
    """Share of ``problems`` solved by greedy decoding: a cheap held-out check during training."""
    from reasonlab.engine.sampler import SamplingConfig, sample
    from reasonlab.models.hf import make_runner

    was_training = model.training
    prompts = [tokenizer.prompt_ids(task.format_prompt(p, template)) for p in problems]
    batch = sample(make_runner(model, dtype=dtype), prompts, SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0),
                   eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, stop_ids=getattr(tokenizer, "stop_ids", None))
    model.train(was_training)
    solved = [task.verify(p, tokenizer.decode(c)).correct for p, c in zip(problems, batch.completion_ids)]
    return sum(solved) / max(1, len(solved))


def read_finished(path) -> dict[str, dict]:
    """Rows already written by an interrupted run; a line cut off by the interruption is
    dropped (its problem is evaluated again)."""
    import json

    done = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "id" in row:
                done[row["id"]] = row
    return done


def evaluate(cfg: EvalConfig, model=None, tokenizer=None, run_dir=None, progress: bool = True) -> dict:
    """Run the evaluation; pass an in-memory ``model``/``tokenizer`` or set ``cfg.model``."""
    if cfg.methods:
        from reasonlab.eval.sweep import run_sweep, sweep_config_from_eval
        return run_sweep(sweep_config_from_eval(cfg), progress=progress)
    import torch
    from tqdm.auto import tqdm

    from reasonlab.engine.sampler import SamplingConfig, sample
    from reasonlab.eval.metrics import summarize_samples
    from reasonlab.eval.plots import plot_accuracy_vs_k
    from reasonlab.models.hf import DTYPES, load_policy, make_runner

    if model is None:
        if not cfg.model:
            raise FileNotFoundError("eval needs a model: pass --model=<checkpoint dir or hub id>")
        model, tokenizer, _ = load_policy(cfg.model, device=cfg.device, dtype=cfg.dtype,
                                          chat_template=cfg.chat_template)
    run = run_dir if run_dir is not None else make_run_dir(cfg.runs_dir, cfg.name)
    task = make_task(cfg)
    problems = load_problems(cfg, task)
    results_path = run / "results.jsonl"
    done = {}
    if cfg.resume and results_path.exists():
        done = read_finished(results_path)
    elif results_path.exists():
        results_path.unlink()
    if cfg.dtype not in DTYPES:
        from reasonlab.config import ConfigError

        raise ConfigError(f"eval: dtype={cfg.dtype!r}: expected one of {', '.join(DTYPES)}")
    dtype = None if DTYPES[cfg.dtype] == torch.float32 else DTYPES[cfg.dtype]
    runner = make_runner(model, dtype=dtype)
    t0, policy_tokens = time.perf_counter(), 0
    n_done = sum(p["id"] in done for p in problems)
    bar = tqdm(total=len(problems), initial=n_done, desc=f"eval {cfg.task}", disable=not progress,
               dynamic_ncols=True)
    # Chunks are fixed on the full problem list and seeded by their position, so a resumed run
    # draws exactly the samples an uninterrupted run would have drawn.
    for start in range(0, len(problems), cfg.prompts_per_batch):
        chunk = problems[start: start + cfg.prompts_per_batch]
        if all(p["id"] in done for p in chunk):
            continue
        prompts = [tokenizer.prompt_ids(task.format_prompt(p, cfg.template)) for p in chunk]
        scfg = SamplingConfig(n=cfg.n, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                              top_p=cfg.top_p, top_k=cfg.top_k, seed=cfg.seed + start)
        batch = sample(runner, prompts, scfg, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                       stop_ids=getattr(tokenizer, "stop_ids", None))
        for i, example in enumerate(chunk):
            if example["id"] in done:
                continue
            rows = range(i * cfg.n, (i + 1) * cfg.n)
            texts = [tokenizer.decode(batch.completion_ids[r]) for r in rows]
            lengths = [len(batch.completion_ids[r]) for r in rows]
            policy_tokens += sum(lengths)
            row = {"id": example["id"], "question": example["question"], "answer": example["answer"],
                   "completions": texts, "lengths": lengths,
                   "finish_reasons": [batch.finish_reasons[r] for r in rows],
                   **score_completions(task, example, texts)}
            append_jsonl(results_path, row)
            done[row["id"]] = row
            bar.update(1)
    bar.close()
    rows = [done[p["id"]] for p in problems]
    ks = sorted({k for k in cfg.ks if k <= cfg.n} | {1})
    metrics = summarize_samples(rows, ks)
    n_samples = sum(len(r["finish_reasons"]) for r in rows)
    metrics["truncation_rate"] = sum(r["finish_reasons"].count("length") for r in rows) / max(1, n_samples)
    metrics["answered_rate"] = sum(k is not None for r in rows for k in r["keys"]) / max(1, n_samples)
    seconds = time.perf_counter() - t0
    summary = {"task": cfg.task, "split": cfg.split, "template": cfg.template, "temperature": cfg.temperature,
               "n": cfg.n, "metrics": metrics, "policy_tokens": policy_tokens, "eval_seconds": round(seconds, 1),
               "tokens_per_s": round(policy_tokens / seconds, 1) if seconds > 0 else None}
    if run_dir is None:
        summary.update(run_metadata(cfg.seed))
        atomic_write_json(run / "summary.json", summary)
    atomic_write_json(run / "eval_summary.json", summary)
    plot_accuracy_vs_k(metrics, run / "accuracy_vs_k.png", title=f"{cfg.task} ({cfg.split}, T={cfg.temperature})")
    return summary
