"""Stage: GRPO with rule-based rewards (the DeepSeek-R1-Zero recipe) plus the Kimi k1.5 options.

One iteration: draw prompts -> sample ``group_size`` completions each -> rewards (``rewards.py``)
-> group advantages (``rl.ADVANTAGES``) -> ``mu`` clipped-ratio updates over the batch
(``rl.POLICY_LOSSES``, KL to a frozen reference, ``rl.AGGREGATIONS``) -> new weights to the
sampler. ``grpo(cfg)`` below is that loop; the pieces are small functions in this module and in
``rl``, ``rewards``, ``rollout``, ``curriculum`` and ``rl_monitor``.

Deviations from the papers (all deliberate, all configurable where it matters):

- ``pi_old`` for tokens sampled by the current policy is the trainer's own log-prob in the first
  epoch (detached), not the sampler's: the sampler runs in bf16 and its log-probs differ from
  the trainer's by ~1e-2, which would put a numerical ratio != 1 into every on-policy token.
  Tokens written by an older policy (partial rollouts) use the sampler's log-probs: that ratio
  is the real policy lag, and clipping bounds it.
- The KL term is added to the per-token loss (as in GRPO), not to the reward; ``beta`` defaults
  to 0 (as Dr. GRPO and DAPO recommend for rule-based rewards): set it to use a reference.
- Aggregation defaults to ``token`` (DAPO) rather than GRPO's per-sequence mean; ``sequence``
  and Dr. GRPO's ``constant`` are available. Weights are normalised over the whole batch, so
  gradient accumulation is exact.
- Curriculum (Kimi): prompts are kept while their running pass rate is within bounds, instead of
  Kimi's weighting by ``1 - success rate``; dynamic sampling (DAPO) drops zero-variance groups and
  refills up to ``max_refills`` times per step.
- Partial rollouts continue an unfinished sequence by prefilling its prompt plus its tokens again
  (no KV cache is kept between iterations); Kimi additionally replays only the newest segment
  into the loss; here every token of a finished group enters the loss once, when its group is
  complete.
- No value model, no reward model, no entropy bonus. AdamW (0.9, 0.99), no weight decay,
  linear warm-up then constant LR; ``norm_lr_mult`` lets the RMSNorm gains (which set the logit
  scale) move faster than the matrices — on the tiny model RL's gain is mostly sharpening, which
  Adam's per-weight step bound otherwise makes slow (docs/LOG.md).
- Groups enter the update ordered by completion length (the loss is a sum, so order only
  changes float rounding); each group's prompt is encoded once per micro-batch
  (``train.logprobs``). With the ``parallel`` backend the gradient of each worker's share of the
  groups is computed on that worker and summed here (``train.policy_update``); the result is
  the same gradient up to float rounding.
- Data parallel under ``torchrun --nproc_per_node=N -m reasonlab.cli grpo ...`` (``train.rl_dist``):
  each rank samples and scores its block of the step's prompts (whole groups, sampler keys = the
  prompts' positions in the step, so the completions are those of one process), every rank holds
  the gathered groups and makes the same decisions, trains on its block with gradients averaged,
  and rank 0 writes the run directory; the weights equal one process's up to float rounding.
  ``fsdp: true`` shards the policy over the ranks (``train.fsdp``): the samplers, checkpoints and
  the final evaluation take a gathered full copy.
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
    append_jsonl,
    read_jsonl,
    run_metadata,
    write_jsonl,
)
from reasonlab.models.lora import lora_state, merged_policy
from reasonlab.runs import fingerprint, model_digest
from reasonlab.train import policy_update, rl
from reasonlab.train.curriculum import PromptSampler
from reasonlab.train.policy_update import UpdateSpec, local_gradients
from reasonlab.train.precision import (
    TrainingOptions,
    process_group_backend,
    check_training_options,
    model_device,
    prepare_policy,
    workers_can_compute_gradients,
)
from reasonlab.train.distributed import agree, dist_setup, is_main, rank, world_size
from reasonlab.train.fsdp import (full_model, is_sharded, load_optimizer_state, optimizer_state, plain_policy,
                                  plain_refresh)
from reasonlab.train.rewards import check_weights, score_group
from reasonlab.train.rl_dist import (
    check_divisible,
    generate_sharded,
    local_batch,
    main_only,
    map_sharded,
    open_run_on_main,
    rank_workers,
    world_facts,
)
from reasonlab.train.rl_monitor import (
    heldout_eval,
    plot_run,
    preflight,
    rollout_metrics,
    sample_rows,
    write_summary,
)
from reasonlab.train.sinks import open_metrics
from reasonlab.backends import BACKENDS
from reasonlab.train.rollout import make_rollout_backend


@dataclass
class LossConfig:
    advantage: str = "grpo"          # rl.ADVANTAGES: grpo | dr_grpo | rloo
    policy_loss: str = "clip"        # rl.POLICY_LOSSES: clip | reinforce
    aggregation: str = "token"       # rl.AGGREGATIONS: token | sequence | constant
    clip_low: float = 0.2
    clip_high: float = 0.2           # > clip_low: DAPO clip-higher
    beta: float = 0.0                # KL(pi || ref) weight, k3 estimator; 0: no reference model
    mu: int = 1                      # updates per batch (pi_old kept fixed across them)


@dataclass
class PromptConfig:
    mode: str = "uniform"            # uniform | curriculum
    low: float = 0.0                 # curriculum: keep prompts with running pass rate in [low, high]
    high: float = 1.0
    dynamic: bool = False            # drop zero-variance groups and refill
    max_refills: int = 2


@dataclass
class GRPOConfig(TrainingOptions):
    name: str = "grpo"               # run directory: runs_dir/name
    runs_dir: str = "runs"           # where run directories live
    seed: int = 0
    model: str = ""                  # checkpoint directory (tiny) or Hugging Face model
    task: str = "arith"
    template: str = "r1"
    train_generate: dict = field(default_factory=dict)   # difficulty of the training problems
    train_pool: int = 20000          # training problems (prompt statistics are kept per problem)
    steps: int = 100
    time_budget_s: float = 0.0       # > 0: stop after this much training wall time (final eval not counted)
    prompts_per_step: int = 16
    group_size: int = 8
    max_new_tokens: int = 160        # longest response
    segment_tokens: int = 0          # partial rollouts: tokens per iteration (0: off)
    temperature: float = 1.0
    rewards: dict = field(default_factory=lambda: {"accuracy": 1.0, "format": 0.1})
    loss: LossConfig = field(default_factory=LossConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    lr: float = 3e-4
    norm_lr_mult: float = 1.0        # LR multiplier of the 1-D parameters (norm gains: the logit scale)
    warmup_steps: int = 5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    micro_batch: int = 64            # rows per forward/backward (gradient accumulation)
    worker_gradients: bool = True    # parallel backend, beta = 0: each sampler worker computes its shard's gradient
    autocast: str = "bfloat16"       # bfloat16 | none (on the policy's device; weights stay fp32)
    backend: str = "parallel"        # rollout.BACKENDS: parallel (tiny, one worker/core) | local
    workers: int = 0                 # 0: one per core
    sampler_dtype: str = "bfloat16"
    eval_every: int = 10             # held-out pass@1 / maj@k every K steps (0: off)
    sample_log_every: int = 10       # step 1 and every K steps: a few rollouts to samples.jsonl (0: off)
    sample_log_n: int = 4            # rollouts written per logged step (one per group, the step's first groups)
    eval_problems: int = 200
    eval_n: int = 4
    ckpt_every: int = 10
    resume: bool = False             # continue from the run's checkpoint (same settings; steps may grow)
    overwrite: bool = False          # delete an existing run of this name and start over
    deterministic: bool = False      # deterministic kernels; a resumed run repeats the metrics
    preflight: bool = True
    final_eval: bool = True          # full held-out evaluation (``eval``) of the final policy
    eval: EvalConfig = field(default_factory=EvalConfig)


TIMING_KEYS = ("tokens_per_s", "completions_per_s", "step_s", "rollout_s", "update_s", "elapsed_s")


def grpo(cfg: GRPOConfig, progress: bool = True) -> dict:
    """Run the stage; returns the summary (also ``summary.json``)."""
    from tqdm.auto import tqdm

    s = setup(cfg)
    bar = tqdm(range(s.step, cfg.steps), initial=s.step, total=cfg.steps, desc=f"grpo {cfg.name}",
               disable=not progress or not is_main(), dynamic_ncols=True)
    try:
        if cfg.preflight and s.step == 0:
            collect(s, cfg, step=-1, check=True)
        for step in bar:
            row = train_step(s, cfg, step)
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0:         # rank 0; the others wait
                row.update(main_only(heldout_eval, s.sample_fn, s.tokenizer, s.task, s.eval_problems, cfg.template,
                                     cfg.eval_n, cfg.max_new_tokens, cfg.eval.seed, [1, cfg.eval_n]) or {})
            if is_main():
                s.metrics.write(row)                                       # metrics.jsonl and the log_to sinks
                if cfg.sample_log_every and (step == 0 or (step + 1) % cfg.sample_log_every == 0):
                    for sample in sample_rows(step + 1, s.pool, *s.step_samples, cfg.sample_log_n):
                        append_jsonl(s.run / "samples.jsonl", sample)
            bar.set_postfix(reward=f"{row.get('reward', 0):.3f}", acc=f"{row.get('accuracy', 0):.3f}",
                            len=f"{row.get('length_mean', 0):.0f}")
            out_of_time = cfg.time_budget_s > 0 and agree(cfg.time_budget_s <= row["elapsed_s"])  # rank 0's clock
            if ((is_main() or is_sharded(s.policy))                       # FSDP: every rank gathers
                    and ((step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps or out_of_time)):
                save_state(s, cfg, step + 1)
            if out_of_time:
                break
    finally:
        bar.close()
        s.close()
        s.metrics.close()
    return finish(s, cfg, progress)


def train_step(s: State, cfg: GRPOConfig, step: int) -> dict:
    """One iteration: rollout -> rewards -> advantages -> mu updates -> weights to the sampler."""
    t0 = time.perf_counter()
    groups, adv, row = collect(s, cfg, step)                       # rollout, rewards, advantages
    t1 = time.perf_counter()
    if groups:                                                     # the same groups on every rank
        batch = local_batch(groups, adv, s.tokenizer.pad_id, policy_update.PAD_TO)   # this rank's block
        row.update(update(s.policy, s.ref, s.opt, batch, cfg, s.gradients))   # mu clipped-ratio updates
        s.refresh(s.policy)                                        # new weights to the sampler
        s.sched.step()                                             # the schedule counts updates
    t2 = time.perf_counter()
    row.update(step=step + 1, lr=s.sched.get_last_lr()[0], rollout_s=t1 - t0, update_s=t2 - t1, step_s=t2 - t0,
               tokens_per_s=row.pop("generated") / max(t1 - t0, 1e-9),
               completions_per_s=row["groups_scored"] * cfg.group_size / max(t2 - t0, 1e-9),
               buffered_groups=len(s.buffer), elapsed_s=s.elapsed + time.perf_counter() - s.t0)
    return row


# ---- setup -----------------------------------------------------------------------------------

class State:
    """Everything a run holds: policy, reference, optimiser, sampler, prompt statistics, buffer."""


def setup(cfg: GRPOConfig) -> State:
    from reasonlab.tasks import get_task

    check_config(cfg)
    dist_setup(backend=process_group_backend(cfg.device))   # torchrun: join the group (else a no-op)
    s = State()
    s.task = get_task(cfg.task)
    pool = generate_problems(s.task, cfg.train_pool, cfg.seed, "train", cfg.train_generate, "train_generate")
    s.pool = pool
    s.eval_problems = generate_problems(s.task, cfg.eval_problems, cfg.eval.seed, "test", cfg.eval.generate,
                                          "eval.generate")
    s.workers = rank_workers(cfg.backend, cfg.workers)
    s.run = open_run_on_main(cfg, fingerprint(cfg, ignore=("model", "steps", "time_budget_s", "ckpt_every",
                                                           "grad_checkpointing", *(() if cfg.fsdp else ("fsdp",))),
                                              model_sha=model_digest(cfg.model), workers=s.workers, **world_facts()))
    if is_main():
        save_config(cfg, s.run / "config.yaml")
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    s.sampler = PromptSampler(len(pool), cfg.prompts.mode, cfg.prompts.low, cfg.prompts.high, seed=cfg.seed)
    s.policy, s.tokenizer = load_policy(cfg.model)
    s.prompt_ids = {}
    s.step, s.elapsed, s.buffer, s.samples, state = 0, 0.0, [], 0, None
    ckpt = s.run / "checkpoint"
    if cfg.resume:
        state = _try_load(ckpt)
        if state is not None and cfg.lora_rank == 0:     # LoRA: the base never changes; adapters below
            s.policy = state["model"]
    s.policy = prepare_policy(s.policy, cfg, state["trainer"].get("lora") if state is not None else None)
    s.policy.train()
    s.ref = _frozen(cfg.model).to(model_device(s.policy)) if cfg.loss.beta > 0 else None
    s.opt = make_optimizer(s.policy, cfg)
    s.sched = torch.optim.lr_scheduler.LambdaLR(s.opt, lambda i: min(1.0, (i + 1) / max(1, cfg.warmup_steps)))
    if state is not None:
        restore(s, state["trainer"])
    elif is_main():
        for log in (s.run / "metrics.jsonl", s.run / "samples.jsonl"):
            if log.exists():
                log.unlink()
    from reasonlab.models.hf import compute_dtype

    dtype = compute_dtype(cfg.sampler_dtype)
    backend = make_rollout_backend(cfg.backend, plain_policy(s.policy), s.tokenizer, dtype, s.workers)   # samplers: plain weights
    s.sample_fn, s.refresh, s.close = backend.sample, plain_refresh(backend.refresh), backend.close
    on_workers = cfg.worker_gradients and cfg.loss.beta <= 0 and workers_can_compute_gradients(s.policy)
    s.gradients = backend.gradients if on_workers else local_gradients
    s.metrics = open_metrics(s.run / "metrics.jsonl", cfg.log_to if is_main() else [], s.run, cfg.name,
                             config_to_dict(cfg), s.step)
    s.t0 = time.perf_counter()
    return s


def make_optimizer(model, cfg: GRPOConfig) -> torch.optim.AdamW:
    """AdamW; the 1-D parameters (norm gains) may get ``norm_lr_mult`` times the LR."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "lr": cfg.lr},
              {"params": [p for p in params if p.dim() < 2], "lr": cfg.lr * cfg.norm_lr_mult}]
    return torch.optim.AdamW([g for g in groups if g["params"]], betas=(0.9, 0.99), weight_decay=cfg.weight_decay)


def check_config(cfg: GRPOConfig) -> None:
    """Every cheap check before anything is written or loaded."""
    from reasonlab.checks import check_choice, check_min, check_model_ref, check_task
    from reasonlab.models.hf import DTYPES
    from reasonlab.config import ConfigError
    from reasonlab.eval.run import check_config as check_eval_config

    checks = [(rl.ADVANTAGES, cfg.loss.advantage, "loss.advantage"),
              (rl.POLICY_LOSSES, cfg.loss.policy_loss, "loss.policy_loss"),
              (rl.AGGREGATIONS, cfg.loss.aggregation, "loss.aggregation"), (BACKENDS, cfg.backend, "backend")]
    for registry, name, key in checks:
        if name not in registry:
            raise ConfigError(f"{key}: unknown value {name!r}; choose from: {', '.join(sorted(registry))}")
    if cfg.group_size < 2:
        raise ConfigError(f"group_size: {cfg.group_size} gives no group baseline; use >= 2")
    check_divisible(cfg.prompts_per_step, "prompts_per_step")      # torchrun: whole groups per rank
    check_min(cfg, {"steps": 1, "prompts_per_step": 1, "max_new_tokens": 1, "micro_batch": 1, "loss.mu": 1,
                    "ckpt_every": 1, "eval_problems": 1, "eval_n": 1, "eval_every": 0, "workers": 0,
                    "segment_tokens": 0, "warmup_steps": 0, "temperature": 1e-9, "train_pool": cfg.prompts_per_step,
                    "prompts.max_refills": 0})
    check_choice("sampler_dtype", cfg.sampler_dtype, DTYPES)
    check_choice("autocast", cfg.autocast, ("bfloat16", "none"))
    check_training_options(cfg)
    check_choice("prompts.mode", cfg.prompts.mode, ("uniform", "curriculum"))
    check_task(cfg.task, template=cfg.template)
    check_eval_config(cfg.eval, model_required=False, prefix="eval.")
    check_model_ref(cfg.model)
    try:
        check_weights(cfg.rewards)
    except ValueError as err:
        raise ConfigError(f"rewards: {err}") from None


def load_policy(path: str):
    """(model, tokenizer) for training: our ``Llama`` code for reasonlab checkpoints and Llama /
    Qwen2 / Qwen3 directories, else a transformers model (``models.hf``); always fp32 weights
    (the optimiser's master copy: AdamW on bf16 weights loses every update below bf16's
    resolution), while sampling and autocast compute in ``sampler_dtype`` / ``autocast``."""
    from reasonlab.models.hf import load_policy as load_any

    model, tokenizer, _ = load_any(path, device="cpu", dtype="float32")
    return model, tokenizer


def save_policy(directory, model, tokenizer, trainer_state: dict | None = None) -> None:
    """``backends.policy.save_model`` (an atomic model directory) with LoRA adapters merged."""
    from reasonlab.backends.policy import save_model

    save_model(directory, merged_policy(model), tokenizer, trainer_state=trainer_state)


def _frozen(path: str):
    ref, _ = load_policy(path)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


# ---- one iteration ---------------------------------------------------------------------------

def prompt_tokens(s: State, cfg: GRPOConfig, index: int) -> list[int]:
    if index not in s.prompt_ids:
        s.prompt_ids[index] = s.tokenizer.prompt_ids(s.task.format_prompt(s.pool[index], cfg.template))
    return s.prompt_ids[index]


def collect(s: State, cfg: GRPOConfig, step: int, check: bool = False):
    """Rollout, rewards and advantages for one step (with refills under dynamic sampling).
    -> (groups to train on, advantages (P, G), metrics row). ``check``: preflight only."""
    scfg = SamplingConfig(max_new_tokens=cfg.segment_tokens or cfg.max_new_tokens, temperature=cfg.temperature,
                          seed=cfg.seed * 1_000_033 + (step + 1) * 101)
    kept, scored, totals, parts_all, texts_all, parsed, generated = [], [], [], {}, [], [], 0
    buffer, s.buffer = s.buffer, []
    for draw in range(1 + (cfg.prompts.max_refills if cfg.prompts.dynamic else 0)):
        want = cfg.prompts_per_step - len(kept) - (len(buffer) if draw == 0 else 0)
        busy = {g.index for g in buffer + s.buffer + scored}
        new = [(i, prompt_tokens(s, cfg, i)) for i in s.sampler.draw(max(0, want), step, draw, busy)]
        done, pending, n_tok = generate_sharded(s.sample_fn, buffer, new, cfg.group_size,   # each rank its block
                                                SamplingConfig(**{**scfg.__dict__, "seed": scfg.seed + draw}),
                                                cfg.max_new_tokens)
        generated, buffer = generated + n_tok, []
        s.buffer += pending
        for grp, (texts, total, parts, grp_parsed) in zip(done, map_sharded(lambda g: score(s, cfg, g), done)):
            if not check:
                s.sampler.update(grp.index, float(np.mean(parts["accuracy"])))
            scored.append(grp)
            totals.append(total)
            texts_all += texts
            parsed += grp_parsed
            for k, v in parts.items():
                parts_all.setdefault(k, []).extend(v)
            if not (cfg.prompts.dynamic and len(set(total)) <= 1):
                kept.append((grp, total))
        if len(kept) >= cfg.prompts_per_step or not cfg.prompts.dynamic:
            break
    if check:
        s.buffer = []
        preflight(scored, parts_all, totals, parsed)
        return None
    s.samples += len(scored) * cfg.group_size
    s.step_samples = (scored, texts_all, totals, parts_all.get("accuracy", []), parsed)   # for samples.jsonl
    row = {"generated": generated, "groups_scored": len(scored), "groups_trained": len(kept), "samples": s.samples}
    if scored:
        zero_var = float(np.mean([len(set(t)) <= 1 for t in totals]))
        row.update(rollout_metrics(scored, parts_all, [x for t in totals for x in t], texts_all,
                                   s.task.reflection_marker, zero_var))
    if not kept:
        return [], None, row
    adv = rl.ADVANTAGES[cfg.loss.advantage](torch.tensor([t for _, t in kept], dtype=torch.float32))
    return [g for g, _ in kept], adv, row


def score(s: State, cfg: GRPOConfig, grp) -> tuple[list[str], list[float], dict, list]:
    """A finished group's texts, total rewards, reward parts and parsed answers."""
    texts = [s.tokenizer.decode(r.ids) for r in grp.rows]
    total, parts, verdicts = score_group(s.task, s.pool[grp.index], texts, [len(r.ids) for r in grp.rows], cfg.rewards)
    return texts, total, parts, [v.parsed for v in verdicts]


def update(policy, ref, opt, batch: dict | None, cfg: GRPOConfig, gradients=local_gradients) -> dict:
    """``cfg.loss.mu`` clipped-ratio optimiser steps on one batch (``policy_update.update``)."""
    lc = cfg.loss
    spec = UpdateSpec(lc.policy_loss, lc.clip_low, lc.clip_high, lc.beta, cfg.micro_batch, cfg.autocast)
    return policy_update.update(policy, ref, opt, batch, spec, lc.mu, lc.aggregation, cfg.grad_clip, gradients)


# ---- checkpoints -----------------------------------------------------------------------------

def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def save_state(s: State, cfg: GRPOConfig, step: int) -> None:
    """The checkpoint (FSDP: every rank gathers weights and optimiser state, rank 0 writes)."""
    model, opt_state = full_model(s.policy), optimizer_state(s.policy, s.opt)
    if not is_main():
        return
    trainer = {"step": step, "elapsed_s": s.elapsed + time.perf_counter() - s.t0, "optimizer": opt_state,
               "scheduler": s.sched.state_dict(), "rng": _rng_state(), "prompt_stats": s.sampler.state_dict(),
               "buffer": s.buffer, "samples": s.samples, "config": config_to_dict(cfg),
               "lora": lora_state(s.policy)}                 # adapters (None: full fine-tuning)
    save_policy(s.run / "checkpoint", model, s.tokenizer, trainer_state=trainer)


def _try_load(path):
    from pathlib import Path

    for candidate in (Path(path), Path(str(path) + ".old")):      # .old: a crash interrupted the swap
        if (candidate / "trainer_state.pt").exists():
            model, _ = load_policy(str(candidate))
            trainer = torch.load(candidate / "trainer_state.pt", map_location="cpu", weights_only=False)
            return {"model": model, "trainer": trainer}
    return None


def restore(s: State, trainer: dict) -> None:
    """Continue from a checkpoint: optimiser, scheduler, RNGs, prompt statistics, buffer; the
    metrics log is cut back to the checkpoint's step (later rows are recomputed)."""
    load_optimizer_state(s.policy, s.opt, trainer["optimizer"])
    s.sched.load_state_dict(trainer["scheduler"])
    torch.set_rng_state(trainer["rng"]["torch"])
    random.setstate(trainer["rng"]["python"])
    np.random.set_state(trainer["rng"]["numpy"])
    s.sampler.load_state_dict(trainer["prompt_stats"])
    s.buffer, s.step, s.elapsed, s.samples = trainer["buffer"], trainer["step"], trainer["elapsed_s"], trainer["samples"]
    for log in (s.run / "metrics.jsonl", s.run / "samples.jsonl"):
        if is_main() and log.exists():
            write_jsonl(log, [r for r in read_jsonl(log) if r.get("step", 0) <= s.step])


# ---- end of run ------------------------------------------------------------------------------

def finish(s: State, cfg: GRPOConfig, progress: bool) -> dict:

    train_s = s.elapsed + time.perf_counter() - s.t0
    policy = full_model(s.policy)               # FSDP: every rank gathers the full weights
    if not is_main():                           # torchrun: rank 0 writes the artifacts
        return {"stage": "grpo", "samples": s.samples, "rank": rank()}
    save_policy(s.run / "model", policy, s.tokenizer)
    log = read_jsonl(s.run / "metrics.jsonl") if (s.run / "metrics.jsonl").exists() else []
    plot_run(log, s.run)
    summary = {"stage": "grpo", "steps": log[-1]["step"] if log else 0, "samples": s.samples, "workers": s.workers,
               "world_size": world_size(), "train_seconds": round(train_s, 1),
               "run_dir": str(s.run), "last": log[-1] if log else {}, **run_metadata(cfg.seed)}
    return write_summary(cfg, s.run, summary, merged_policy(policy), s.tokenizer, progress)

