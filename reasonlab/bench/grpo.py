"""GRPO throughput: completions per second of whole GRPO steps, ours against TRL's ``GRPOTrainer``.

Same weights (ours exported to a transformers directory), same prompts (arith, R1 template), same
step: ``prompts`` x ``n`` completions (64 by default) of up to ``new_tokens`` tokens at T = 1,
accuracy reward from the same verifier, one clipped-ratio update with beta = 0 and the same
learning rate. A step is rollout + reward + advantage + forward/backward + optimiser step (+ our
weight refresh to the sampler workers). TRL runs on the CPU with torch's intra-op threads on
every core; ours samples on one worker process per core, each worker computes the gradient of
its own groups, and the main process sums them and steps the optimiser (``train.policy_update``).
Both sides train fp32 weights; with ``--dtype=bfloat16`` (the default) both compute in bf16 (ours:
bf16 sampler and bf16 autocast; TRL: ``bf16=True``, accelerate's bf16 autocast), with
``--dtype=float32`` both in fp32. Rounds alternate between the sides; completions/s are medians over rounds of ``steps`` steps
(the first step of each side is a warm-up outside the timing). ``--prompts`` and ``--n`` keep
their sampler-bench defaults (256, 1) in the shared config; here those mean 8 prompts x 8.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from reasonlab.bench.common import BenchConfig, load_or_init


def bench_grpo(cfg: BenchConfig) -> dict:
    import torch

    from reasonlab.models.checkpoint import save_checkpoint

    model, tokenizer = load_or_init(cfg)
    n, prompts = cfg.n if cfg.n > 1 else 8, cfg.prompts if cfg.prompts != 256 else 8
    steps = max(1, cfg.steps)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "model", model, tokenizer)
        ours = _ours(path, Path(tmp), prompts, n, cfg)
        theirs = _trl(path, Path(tmp), prompts, n, cfg)
        times = {"ours": [], "trl": []}
        ours(1), theirs(1)                                  # warm-up
        for _ in range(cfg.repeats):
            for name, fn in (("ours", ours), ("trl", theirs)):
                times[name].append(fn(steps))
        ours.close()
    per_step = prompts * n
    rate = {k: per_step / statistics.median(v) for k, v in times.items()}
    return {"params": model.num_params(), "completions_per_step": per_step, "new_tokens": cfg.new_tokens,
            "steps_per_round": steps, "threads": torch.get_num_threads(), "precision": cfg.dtype,
            "ours_completions_per_s": round(rate["ours"], 1), "trl_completions_per_s": round(rate["trl"], 1),
            "ratio": round(rate["ours"] / rate["trl"], 2)}


class _Ours:
    """``fn(k)`` runs ``k`` GRPO steps and returns the seconds per step."""

    def __init__(self, s, gcfg):
        self.s, self.gcfg, self.step = s, gcfg, 0

    def __call__(self, k: int) -> float:
        from reasonlab.train.grpo import train_step

        t0 = time.perf_counter()
        for _ in range(k):
            train_step(self.s, self.gcfg, self.step)
            self.step += 1
        return (time.perf_counter() - t0) / k

    def close(self) -> None:
        self.s.close()


def _ours(path, tmp: Path, prompts: int, n: int, cfg: BenchConfig) -> _Ours:
    from reasonlab.train.grpo import GRPOConfig, setup

    gcfg = GRPOConfig(model=str(path), runs_dir=str(tmp / "runs"), name="bench", train_pool=2000,
                      prompts_per_step=prompts, group_size=n, max_new_tokens=cfg.new_tokens,
                      temperature=cfg.temperature, rewards={"accuracy": 1.0}, lr=1e-5, warmup_steps=0,
                      workers=cfg.workers, sampler_dtype=cfg.dtype, eval_every=0, eval_problems=1,
                      preflight=False, final_eval=False, seed=cfg.seed)
    gcfg.train_generate = {"steps": [1, 3], "max_operand": 9, "max_value": 50}
    return _Ours(setup(gcfg), gcfg)


def _trl(path, tmp: Path, prompts: int, n: int, cfg: BenchConfig):
    """TRL's GRPOTrainer on the same weights; ``fn(k)`` trains ``k`` steps, -> seconds per step
    (measured between step callbacks, so model loading and trainer set-up are not counted)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    from reasonlab.tasks import get_task

    task = get_task("arith")
    problems = task.generate(2000, seed=cfg.seed, split="train", steps=[1, 3], max_operand=9, max_value=50)
    answers = {task.format_prompt(p, "r1"): p for p in problems}
    data = Dataset.from_list([{"prompt": q} for q in answers])
    hf_tok = AutoTokenizer.from_pretrained(str(path))

    def accuracy(prompts, completions, **_):
        return [1.0 if task.verify(answers[p], c).correct else 0.0 for p, c in zip(prompts, completions)]

    class Timer(TrainerCallback):
        def __init__(self):
            self.marks = []

        def on_step_end(self, args, state, control, **kw):
            self.marks.append(time.perf_counter())

    def run(k: int) -> float:
        timer = Timer()
        args = TRLConfig(output_dir=str(tmp / "trl"), per_device_train_batch_size=prompts * n, num_generations=n,
                         max_completion_length=cfg.new_tokens, max_steps=k + 1, learning_rate=1e-5, beta=0.0,
                         temperature=cfg.temperature, logging_steps=10_000, save_strategy="no", report_to=[],
                         use_cpu=True, disable_tqdm=True, seed=cfg.seed, dataloader_num_workers=0,
                         bf16=cfg.dtype == "bfloat16")      # matched precision: bf16 autocast, fp32 weights
        model = AutoModelForCausalLM.from_pretrained(str(path))
        trainer = GRPOTrainer(model=model, reward_funcs=accuracy, args=args, train_dataset=data,
                              processing_class=hf_tok, callbacks=[timer])
        timer.marks.append(time.perf_counter())
        trainer.train()
        marks = timer.marks[1:]                               # from the end of the first step
        return (marks[-1] - marks[0]) / max(1, len(marks) - 1)
    return run
