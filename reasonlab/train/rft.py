"""Stage: rejection-sampling fine-tuning (STaR / ReST), the baseline GRPO is compared against.

Each round: draw ``prompts_per_round`` training problems, sample ``samples_per_prompt``
completions each with the same sampler and verifier as GRPO, keep the correct ones (distinct
texts per problem), and fine-tune on them (next-token loss on the completion only) for
``epochs`` passes. Wrong answers are never pushed down: that is the difference from RL that
Kimi k1.5 measures. The sample budget (``rounds * prompts_per_round * samples_per_prompt``) is
the number to match against GRPO's ``steps * prompts_per_step * group_size``.

Data parallel under ``torchrun --nproc_per_node=N -m reasonlab.cli rft ...``: each rank samples and
verifies its block of the round's problems (sampler keys = the problems' positions, so the
completions are one process's), the kept pairs are gathered in order, and every SFT batch is
split over the ranks with gradients averaged by completion tokens (``train.distributed``); rank
0 writes the run directory and runs the held-out evaluations. ``fsdp: true`` shards the policy
over the ranks (``train.fsdp``); samplers and the saved model take a gathered full copy.

Deviations: like ReST, rounds continue from the current model (STaR restarts from the base model
each round); there is no reward threshold schedule (the reward is binary).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from reasonlab.config import config_to_dict, save_config
from reasonlab.engine.sampler import SamplingConfig
from reasonlab.eval.run import EvalConfig, generate_problems
from reasonlab.io import (
    read_jsonl,
    run_metadata,
)
from reasonlab.models.lora import merged_policy, trainable_parameters
from reasonlab.train.distributed import (
    all_gather_objects,
    block_slice,
    dist_setup,
    is_dist,
    is_main,
    rank,
    world_size,
)
from reasonlab.train.rl_dist import check_divisible, main_only, open_run_on_main, rank_workers, world_facts
from reasonlab.train.precision import TrainingOptions, check_training_options, prepare_policy, process_group_backend
from reasonlab.train.rl_monitor import heldout_eval, plot_run, write_summary
from reasonlab.train.sinks import open_metrics
from reasonlab.train.selectors import FINISHED, SELECTORS, Sample, select
from reasonlab.train.sft import sft_step
from reasonlab.train.fsdp import full_model, is_sharded, plain_policy, plain_refresh, sharded_sft_step
from reasonlab.runs import fingerprint, model_digest
from reasonlab.backends import BACKENDS
from reasonlab.train.rollout import make_rollout_backend


@dataclass
class RFTConfig(TrainingOptions):
    name: str = "rft"                # run directory: runs_dir/name
    runs_dir: str = "runs"           # where run directories live
    seed: int = 0
    model: str = ""
    task: str = "arith"
    template: str = "r1"
    train_generate: dict = field(default_factory=dict)
    train_pool: int = 20000
    rounds: int = 10
    prompts_per_round: int = 256
    samples_per_prompt: int = 8
    max_new_tokens: int = 160
    temperature: float = 1.0
    dedup: bool = True                # keep one copy of identical kept completions of a problem
    selector: str = "correct"         # train.selectors: correct (gold labels) | shortest | readable | majority (LMSI: no labels)
    vote_threshold: float = 0.0       # majority: least vote share of the pseudo-label (0: any plurality)
    teacher: str = ""                 # sample from this model instead of the policy (distillation); "": the policy
    epochs: int = 1
    batch_size: int = 32
    lr: float = 3e-4
    grad_clip: float = 1.0
    backend: str = "parallel"
    workers: int = 0
    sampler_dtype: str = "bfloat16"
    eval_every: int = 1               # held-out pass@1 / maj@k every K rounds (0: off)
    eval_problems: int = 200
    eval_n: int = 4
    final_eval: bool = True
    overwrite: bool = False           # delete an existing run of this name and start over
    eval: EvalConfig = field(default_factory=EvalConfig)


def check_config(cfg: RFTConfig) -> None:
    """Every cheap check before anything is written or loaded."""
    from reasonlab.checks import check_choice, check_min, check_model_ref, check_task
    from reasonlab.config import ConfigError
    from reasonlab.models.hf import DTYPES
    from reasonlab.eval.run import check_config as check_eval_config

    check_min(cfg, {"rounds": 1, "prompts_per_round": 1, "samples_per_prompt": 1, "max_new_tokens": 1,
                    "epochs": 1, "batch_size": 1, "lr": 1e-12, "workers": 0, "eval_every": 0, "eval_problems": 1,
                    "eval_n": 1, "temperature": 1e-9, "train_pool": cfg.prompts_per_round})
    check_choice("backend", cfg.backend, sorted(BACKENDS))
    check_choice("selector", cfg.selector, sorted(SELECTORS))
    if not 0.0 <= cfg.vote_threshold <= 1.0:
        raise ConfigError(f"vote_threshold: a vote share in [0, 1], got {cfg.vote_threshold}")
    if cfg.teacher:
        check_model_ref(cfg.teacher, "teacher")
    check_divisible(cfg.prompts_per_round, "prompts_per_round")      # torchrun: equal blocks per rank
    check_choice("sampler_dtype", cfg.sampler_dtype, DTYPES)
    check_training_options(cfg)
    check_task(cfg.task, template=cfg.template)
    check_eval_config(cfg.eval, model_required=False, prefix="eval.")
    check_model_ref(cfg.model)


def rft(cfg: RFTConfig, progress: bool = True) -> dict:
    """Run the stage; returns the summary (also ``summary.json``)."""
    from reasonlab.tasks import get_task
    from reasonlab.train.grpo import load_policy, save_policy

    check_config(cfg)
    dist_setup(backend=process_group_backend(cfg.device))   # torchrun: join the group (else a no-op)
    task = get_task(cfg.task)
    pool = generate_problems(task, cfg.train_pool, cfg.seed, "train", cfg.train_generate, "train_generate")
    eval_problems = generate_problems(task, cfg.eval_problems, cfg.eval.seed, "test", cfg.eval.generate,
                                      "eval.generate")
    workers = rank_workers(cfg.backend, cfg.workers)
    run = open_run_on_main(cfg, fingerprint(cfg, ignore=("model", *(() if cfg.fsdp else ("fsdp",))),
                                            model_sha=model_digest(cfg.model), workers=workers,
                                            **({"teacher_sha": model_digest(cfg.teacher)} if cfg.teacher else {}), **world_facts()))
    if is_main():
        save_config(cfg, run / "config.yaml")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    policy, tokenizer = load_policy(cfg.model)
    policy = prepare_policy(policy, cfg)                 # LoRA adapters, checkpointing, device, FSDP
    opt = torch.optim.AdamW(trainable_parameters(policy), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    from reasonlab.models.hf import compute_dtype

    dtype = compute_dtype(cfg.sampler_dtype)
    if cfg.teacher:                                      # distillation: a fixed teacher writes the data
        backend = make_rollout_backend(cfg.backend, load_teacher(cfg.teacher, tokenizer), tokenizer, dtype, workers)
        refresh = lambda _policy: None                   # noqa: E731 - the teacher never changes
    else:
        backend = make_rollout_backend(cfg.backend, plain_policy(policy), tokenizer, dtype, workers)   # plain weights
        refresh = plain_refresh(backend.refresh)
    sample_fn, close = backend.sample, backend.close
    metrics = open_metrics(run / "metrics.jsonl", cfg.log_to if is_main() else [], run, cfg.name, config_to_dict(cfg))
    t0, samples = time.perf_counter(), 0
    try:
        for r in range(cfg.rounds):
            t1 = time.perf_counter()
            rng = np.random.default_rng([cfg.seed, r])
            picked = [pool[int(i)] for i in rng.choice(len(pool), cfg.prompts_per_round, replace=False)]
            kept, stats = collect_kept(sample_fn, tokenizer, task, picked, cfg, seed=cfg.seed * 7919 + r)
            acc = stats["accuracy"]
            samples += len(picked) * cfg.samples_per_prompt
            loss = sft(policy, opt, kept, cfg, seed=cfg.seed * 31 + r)
            refresh(full_model(policy) if is_sharded(policy) else policy)
            row = {"step": r + 1, "samples": samples, **stats, "kept": len(kept), "sft_loss": loss,
                   "round_s": time.perf_counter() - t1, "elapsed_s": time.perf_counter() - t0}
            if cfg.eval_every and (r + 1) % cfg.eval_every == 0:             # rank 0; the others wait
                row.update(main_only(heldout_eval, sample_fn, tokenizer, task, eval_problems, cfg.template, cfg.eval_n,
                                     cfg.max_new_tokens, cfg.eval.seed, [1, cfg.eval_n]) or {})
            if not is_main():
                continue
            metrics.write(row)                                   # metrics.jsonl and the log_to sinks
            if progress:
                print(f"rft round {r + 1}/{cfg.rounds}: sample acc {acc:.3f}, kept {len(kept)}, loss {loss:.3f}"
                      + (f", held-out pass@1 {row['heldout_pass@1']:.3f}" if "heldout_pass@1" in row else ""))
    finally:
        close()
        metrics.close()
    train_s = time.perf_counter() - t0
    policy = full_model(policy)                            # FSDP: every rank gathers the full weights
    if not is_main():                                      # torchrun: rank 0 writes the artifacts
        return {"stage": "rft", "steps": cfg.rounds, "samples": samples, "rank": rank()}
    save_policy(run / "model", policy, tokenizer)          # LoRA: adapters merged
    plot_run(read_jsonl(run / "metrics.jsonl"), run)
    summary = {"stage": "rft", "steps": cfg.rounds, "samples": samples, "workers": workers, "world_size": world_size(),
               "train_seconds": round(train_s, 1),
               "run_dir": str(run), **run_metadata(cfg.seed)}
    return write_summary(cfg, run, summary, merged_policy(policy), tokenizer, progress)


def collect_kept(sample_fn, tokenizer, task, problems: list[dict], cfg: RFTConfig, seed: int
                 ) -> tuple[list[tuple[list[int], list[int]]], dict]:
    """``keep_selected`` over the ranks: each samples its block of ``problems`` (sampler keys:
    their positions in ``problems``); every rank gets all kept pairs in order and global stats."""
    sl = block_slice(len(problems))
    kept, counts = keep_selected(sample_fn, tokenizer, task, problems[sl], cfg, seed, key0=sl.start)
    if is_dist():
        parts = all_gather_objects((kept, counts))
        kept = [x for part in parts for x in part[0]]
        counts = {k: sum(p[1][k] for p in parts) for k in counts}
    return kept, round_stats(counts)


def round_stats(counts: dict) -> dict:
    """Sample accuracy (gold), and for the kept problems the share whose kept samples are right
    (LMSI's pseudo-label accuracy; 1.0 for gold selectors)."""
    return {"accuracy": counts["correct"] / max(1, counts["samples"]),
            "problems_kept": counts["problems_kept"] / max(1, counts["problems"]),
            "kept_correct": counts["kept_correct"] / max(1, counts["kept"])}


def keep_selected(sample_fn, tokenizer, task, problems: list[dict], cfg: RFTConfig, seed: int,
                  key0: int | None = None) -> tuple[list[tuple[list[int], list[int]]], dict]:
    """Sample ``samples_per_prompt`` completions per problem, verify them, keep those the
    selector picks (``train.selectors``; distinct ones with ``cfg.dedup``) -> ([(prompt_ids,
    completion_ids)], counts). ``key0``: the sampler keys of the problems count up from it
    (None: ``sample_fn`` is called without keys)."""
    n = cfg.samples_per_prompt
    prompts = [tokenizer.prompt_ids(task.format_prompt(p, cfg.template)) for p in problems]
    keys = {} if key0 is None else {"keys": list(range(key0, key0 + len(prompts)))}
    batch = sample_fn(prompts, SamplingConfig(n=n, max_new_tokens=cfg.max_new_tokens,
                                              temperature=cfg.temperature, seed=seed), **keys)
    kept = []
    counts = dict.fromkeys(("samples", "correct", "problems", "problems_kept", "kept", "kept_correct"), 0)
    for i, example in enumerate(problems):
        group = []
        for r in range(i * n, (i + 1) * n):
            text = tokenizer.decode(batch.completion_ids[r])
            verdict = task.verify(example, text)
            key = task.canonical(verdict.parsed) if verdict.parsed is not None else None
            group.append(Sample(batch.completion_ids[r], verdict.correct, key, batch.finish_reasons[r],
                                readable(task, text) if cfg.selector == "readable" else True))
        picked = select(group, cfg.selector, cfg.vote_threshold, cfg.dedup)
        kept += [(prompts[i], group[j].ids) for j in picked]
        counts["samples"] += n
        counts["correct"] += sum(g.correct and g.finish in FINISHED for g in group)   # a cut-off answer is not one
        counts["problems"] += 1
        counts["problems_kept"] += bool(picked)
        counts["kept"] += len(picked)
        counts["kept_correct"] += sum(group[j].correct for j in picked)
    return kept, counts


def readable(task, text: str) -> bool:
    """R1's readability filter: the completion follows the R1 format and its reasoning keeps to
    one language (notation) throughout."""
    from reasonlab.tasks.prompts import check_r1_format

    return check_r1_format(text) and task.language_consistency(text.split("</think>", 1)[0]) >= 1.0


def load_teacher(path: str, tokenizer):
    """The teacher for distillation (fp32, frozen); it must share the student's tokenizer (the
    student is trained on the teacher's token ids)."""
    from reasonlab.config import ConfigError
    from reasonlab.train.grpo import load_policy

    teacher, other = load_policy(path)
    if other.vocab_size != tokenizer.vocab_size or any(
            other.encode(t) != tokenizer.encode(t) for t in ("a = 3 + 4 = 7\n", "</think> <answer>")):
        raise ConfigError(f"teacher: {path} has a different tokenizer from the student; distillation here trains "
                          "on the teacher's token ids, so both must share one tokenizer")
    teacher.eval()
    return teacher


def sft(model, opt, pairs: list[tuple[list[int], list[int]]], cfg: RFTConfig, seed: int) -> float:
    """Next-token loss on completion tokens only, ``cfg.epochs`` shuffled passes. -> mean loss."""
    if not pairs:
        return float("nan")
    model.train()
    order, losses = list(range(len(pairs))), []
    rng = random.Random(seed)
    step = sharded_sft_step if is_sharded(model) else sft_step
    for _ in range(cfg.epochs):
        rng.shuffle(order)
        for lo in range(0, len(order), cfg.batch_size):
            losses.append(step(model, opt, [pairs[i] for i in order[lo: lo + cfg.batch_size]], cfg.grad_clip))
    return float(np.mean(losses))
