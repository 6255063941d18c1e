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

In this process (``--device=cuda``, or ``--in_process=true`` on the CPU) ours runs with the
``local`` rollout backend: sampler, policy and optimiser in this process on the device (64 prompts
x 8 by default off the CPU). TRL is then left out off the CPU (``trl`` in the JSON says so); on
the CPU ``--trl=false`` leaves it out too.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from reasonlab.bench.common import BenchConfig, load_or_init

TRL_OFF_CPU = "skipped: the TRL side runs on the CPU only (compare with --device=cpu)"


def grpo_shape(cfg: BenchConfig, device: torch.device) -> tuple[int, int]:
    """(prompts, samples per prompt) of a step: ``--prompts`` / ``--n`` when set, else 8 x 8 on
    the CPU and 64 x 8 on an accelerator (the sampler bench's defaults 256 x 1 mean "unset")."""
    prompts = cfg.prompts if cfg.prompts != 256 else (8 if device.type == "cpu" else 64)
    return prompts, cfg.n if cfg.n > 1 else 8


def bench_grpo(cfg: BenchConfig) -> dict:
    from reasonlab.bench.device import bench_device, runs_in_process
    from reasonlab.models.checkpoint import save_checkpoint

    dev = bench_device(cfg.device)
    prompts, n = grpo_shape(cfg, dev)
    steps = max(1, cfg.steps)
    with_trl = cfg.trl and dev.type == "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        path = cfg.model or save_checkpoint(Path(tmp) / "model", *load_or_init(cfg))
        ours = _ours(path, Path(tmp), prompts, n, cfg, dev, runs_in_process(cfg))
        sides = {"ours": ours}
        if with_trl:
            sides["trl"] = _trl(path, Path(tmp), prompts, n, cfg)
        try:
            times = _alternate(sides, cfg.repeats, steps)
        finally:
            ours.close()
    per_step = prompts * n
    rate = {k: per_step / statistics.median(v) for k, v in times.items()}
    params = sum(p.numel() for p in ours.s.policy.parameters())
    out = {"params": params, "completions_per_step": per_step, "prompts": prompts, "n": n,
           "new_tokens": cfg.new_tokens, "steps_per_round": steps, "device": str(dev), "in_process": ours.in_process,
           "threads": torch.get_num_threads(), "precision": cfg.dtype,
           "ours_completions_per_s": round(rate["ours"], 1), **ours.breakdown()}
    if with_trl:
        out.update(trl_completions_per_s=round(rate["trl"], 1), ratio=round(rate["ours"] / rate["trl"], 2))
    else:
        out["trl"] = TRL_OFF_CPU if cfg.trl else "skipped: --trl=false"
    return out


def _alternate(sides: dict, repeats: int, steps: int) -> dict[str, list[float]]:
    """One warm-up step per side, then ``repeats`` rounds of ``steps`` steps, sides interleaved;
    -> seconds per step of every round, per side."""
    for fn in sides.values():
        fn(1)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            times[name].append(fn(steps))
    return times


class _Ours:
    """``fn(k)`` runs ``k`` GRPO steps and returns the seconds per step (device synchronised)."""

    def __init__(self, s, gcfg, device: torch.device, in_process: bool):
        self.s, self.gcfg, self.step, self.device, self.in_process = s, gcfg, 0, device, in_process
        self.rows: list[dict] = []

    def __call__(self, k: int) -> float:
        from reasonlab.bench.device import synchronize
        from reasonlab.train.grpo import train_step

        t0 = time.perf_counter()
        for _ in range(k):
            self.rows.append(train_step(self.s, self.gcfg, self.step))
            self.step += 1
        synchronize(self.device)
        return (time.perf_counter() - t0) / k

    def breakdown(self) -> dict:
        """Median rollout and update seconds of the timed steps (the first, a warm-up, left out)."""
        rows = self.rows[1:] or self.rows
        return {f"ours_{key}": round(statistics.median(r[key] for r in rows), 3) for key in ("rollout_s", "update_s")}

    def close(self) -> None:
        self.s.close()


def _ours(path, tmp: Path, prompts: int, n: int, cfg: BenchConfig, device: torch.device,
          in_process: bool) -> _Ours:
    """Our GRPO set up on ``path``: sampler worker processes, or (``in_process``) the ``local``
    backend in this process with the policy, its optimiser and its sampler on ``device``."""
    import dataclasses

    from reasonlab.train.grpo import GRPOConfig, setup

    gcfg = GRPOConfig(model=str(path), runs_dir=str(tmp / "runs"), name="bench", train_pool=2000,
                      prompts_per_step=prompts, group_size=n, max_new_tokens=cfg.new_tokens,
                      temperature=cfg.temperature, rewards={"accuracy": 1.0}, lr=1e-5, warmup_steps=0,
                      workers=cfg.workers, sampler_dtype=cfg.dtype, eval_every=0, eval_problems=1,
                      preflight=False, final_eval=False, seed=cfg.seed)
    gcfg.train_generate = {"steps": [1, 3], "max_operand": 9, "max_value": 50}
    if in_process:
        gcfg.backend = "local"
        if "device" in {f.name for f in dataclasses.fields(GRPOConfig)}:
            gcfg.device = str(device)
    s = setup(gcfg)
    if in_process and next(s.policy.parameters()).device.type != device.type:
        _move(s, gcfg, device)
    return _Ours(s, gcfg, device, in_process)


def _move(s, gcfg, device: torch.device) -> None:
    """Put a set-up run's policy on ``device``: a fresh optimiser over the moved weights (no
    state yet; ``warmup_steps`` 0 so the schedule is flat) and a sampler built from them."""
    from reasonlab.train.grpo import make_optimizer

    s.policy.to(device)
    s.opt = make_optimizer(s.policy, gcfg)
    s.sched = torch.optim.lr_scheduler.LambdaLR(s.opt, lambda i: 1.0)
    s.refresh(s.policy)


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
