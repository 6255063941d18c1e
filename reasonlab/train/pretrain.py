"""Stage: pretrain the tiny Llama on a mixture of synthetic reasoning traces.

Next-token loss on packed documents, AdamW with linear warm-up and cosine decay, bf16 autocast
(AMX on recent x86 CPUs), gradient clipping, atomic checkpoints with the full training state,
``resume: true`` to continue, held-out evaluation of the final model (``eval.run``).
Data parallel under ``torchrun`` (``train.distributed``, gloo): every rank builds the same
global batch of ``batch_size`` rows and trains on its ``batch_size / world`` block; gradients are
averaged, weighted by each rank's share of the loss tokens, so the update equals that of one
process on the whole batch; rank 0 writes every artifact and runs the evaluation.
Artifacts in ``runs/<name>/``: ``config.yaml``, ``train_log.jsonl``, ``model/`` (a Hugging Face
directory), ``loss.png``, and the evaluation's ``results.jsonl`` / ``summary.json`` / plot.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reasonlab.config import config_to_dict, save_config
from reasonlab.eval.run import EvalConfig, evaluate, greedy_accuracy
from reasonlab.io import atomic_write_json, run_metadata
from reasonlab.models.checkpoint import (
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.tokenizer import DEFAULT_WORDS, CharTokenizer
from reasonlab.tasks import get_task
from reasonlab.train.corpus import build_mixture, packed_batch
from reasonlab.train.distributed import (
    all_gather_objects,
    all_reduce_grads,
    all_reduce_mean,
    dist_setup,
    shard_rows,
    token_share,
)
from reasonlab.train.precision import autocast_for, model_device, set_grad_checkpointing
from reasonlab.train.sinks import check_log_to, open_metrics


def _default_mixture() -> dict:
    return {"arith": {"weight": 1.0, "generate": {"steps": [1, 6], "max_operand": 20},
                      "trace": {"error_rate": 0.1, "correction_rate": 0.3}}}


@dataclass
class PretrainConfig:
    name: str = "tiny"               # run directory: runs_dir/name
    runs_dir: str = "runs"           # where run directories live
    seed: int = 0
    model: LlamaConfig = field(default_factory=LlamaConfig)
    mixture: dict = field(default_factory=_default_mixture)
    tokenizer_words: list[str] = field(default_factory=list)  # word pieces added to the tokenizer's defaults
    template: str = "r1"
    loss_on_prompt: bool = True      # False: the loss sees completions (traces) only
    seq_len: int = 512
    batch_size: int = 32
    max_steps: int = 1000
    time_budget_s: float = 0.0       # > 0: stop early (and decay the LR) to fit this wall budget
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    autocast: str = "bfloat16"       # "bfloat16" or "none"
    grad_checkpointing: bool = False  # recompute each layer's activations in backward (less memory, slower)
    log_to: list[str] = field(default_factory=list)  # metric sinks besides the jsonl: tensorboard, wandb (train.sinks)
    ckpt_every: int = 200
    log_every: int = 10
    eval_every: int = 0              # > 0: greedy accuracy on 64 held-out problems every K steps
    resume: bool = False             # continue from the run's checkpoint (same settings only)
    overwrite: bool = False          # delete an existing run of this name and start over
    eval: EvalConfig = field(default_factory=EvalConfig)


def lr_at(step: int, cfg: PretrainConfig, total: int) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``total`` steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not norms)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)


def train_step(model: Llama, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               lr: float, grad_clip: float, autocast: str) -> float:
    """One optimisation step on a batch; returns the loss. Under torchrun ``x``/``y`` are this
    rank's rows: the gradients are averaged over ranks and the returned loss is the mean over all
    loss tokens of the global batch. ``x``/``y`` move to the model's device; ``autocast`` runs there."""
    for group in opt.param_groups:
        group["lr"] = lr
    x, y = x.to(model_device(model)), y.to(model_device(model))
    n_tokens = int((y != -100).sum())
    with autocast_for(model, autocast):
        # A shard without loss tokens still takes part in the gradient all-reduce, with zeros.
        loss = model.loss(x, y) if n_tokens else model(x).float().sum() * 0.0
    share = token_share(n_tokens)
    opt.zero_grad(set_to_none=True)
    (loss * share if share != 1.0 else loss).backward()
    all_reduce_grads(model)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return all_reduce_mean(float(loss.detach()) * share)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def check_config(cfg: PretrainConfig) -> list:
    """Every cheap check before anything is written; returns the resolved mixture."""
    from reasonlab.checks import check_choice, check_min, check_task
    from reasonlab.config import ConfigError
    from reasonlab.eval.run import check_config as check_eval_config

    try:
        cfg.model.validate()
    except ValueError as err:
        raise ConfigError(f"model: {err}") from None
    try:
        mixture = build_mixture(cfg.mixture, cfg.template, get_task)
    except ValueError as err:
        raise ConfigError(f"mixture: {err}") from None
    check_task("arith", template=cfg.template)
    check_min(cfg, {"batch_size": 1, "seq_len": 8, "max_steps": 1, "log_every": 1, "ckpt_every": 1,
                    "warmup_steps": 0, "lr": 1e-12, "eval_every": 0, "model.d_model": 2, "model.n_layers": 1,
                    "model.n_heads": 1, "model.n_kv_heads": 1, "model.d_ff": 1})
    if cfg.seq_len > cfg.model.max_seq_len:
        raise ConfigError(f"seq_len: {cfg.seq_len} is longer than model.max_seq_len={cfg.model.max_seq_len}")
    check_choice("autocast", cfg.autocast, ("bfloat16", "none"))
    check_log_to(cfg.log_to)
    check_eval_config(cfg.eval, model_required=False, prefix="eval.")
    return mixture


def open_pretrain_run(cfg: PretrainConfig, world: int, main: bool):
    """Rank 0 opens (or refuses) the run directory; every rank learns the outcome."""

    from reasonlab.config import ConfigError
    from reasonlab.runs import fingerprint, open_stage_run

    error = None
    if main:
        try:
            open_stage_run(cfg, fingerprint(cfg, ignore=("log_every", "ckpt_every", "max_steps", "time_budget_s",
                                                          "grad_checkpointing"),
                                              world_size=world))
        except ConfigError as err:
            error = str(err)
    error = all_gather_objects(error)[0]
    if error is not None:
        raise ConfigError(error)
    return Path(cfg.runs_dir) / cfg.name


def pretrain(cfg: PretrainConfig, progress: bool = True) -> dict:
    """Run the stage; returns the summary dict (also written to ``summary.json``)."""
    from tqdm.auto import tqdm

    tokenizer = CharTokenizer(words=DEFAULT_WORDS + tuple(cfg.tokenizer_words))
    cfg.model.vocab_size = tokenizer.vocab_size
    mixture = check_config(cfg)
    dist = dist_setup(backend="gloo")          # the tiny model trains on the cpu
    main = dist.is_main
    run = open_pretrain_run(cfg, dist.world, main)
    if main:
        save_config(cfg, run / "config.yaml")
    ckpt_dir = run / "checkpoint"
    start, elapsed_before = 0, 0.0
    torch.manual_seed(cfg.seed)
    model = Llama(cfg.model)
    opt = make_optimizer(model, cfg)
    if cfg.resume and _has_checkpoint(ckpt_dir):
        model, _, state = load_checkpoint(ckpt_dir)
        opt = make_optimizer(model, cfg)
        opt.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
        start, elapsed_before = state["step"], state["elapsed_s"]
    elif main and not cfg.resume and (run / "train_log.jsonl").exists():
        (run / "train_log.jsonl").unlink()
    set_grad_checkpointing(model, cfg.grad_checkpointing)
    model.train()
    if cfg.eval_every > 0:
        eval_task = get_task(cfg.eval.task)
        quick_problems = eval_task.generate(64, seed=cfg.eval.seed + 1, split=cfg.eval.split, **cfg.eval.generate)
    total = cfg.max_steps
    t0 = time.perf_counter() - elapsed_before
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"pretrain {cfg.name}",
               disable=not progress or not main, dynamic_ncols=True)
    tokens_per_step = cfg.batch_size * cfg.seq_len
    window_t, window_steps, step = time.perf_counter(), 0, start
    metrics = open_metrics(run / "train_log.jsonl", cfg.log_to if main else [], run, cfg.name, config_to_dict(cfg),
                           start)
    for step in bar:
        if cfg.time_budget_s > 0 and step > cfg.warmup_steps:
            # Re-plan the schedule so the cosine ends when the wall budget does.
            per_step = (time.perf_counter() - t0) / max(1, step)
            total = min(cfg.max_steps, step + max(0, int((cfg.time_budget_s - (time.perf_counter() - t0)) / per_step)))
            total = all_gather_objects(total)[0]          # every rank follows rank 0's plan
            bar.total = total
            if step >= total:
                break
        x, y = packed_batch(mixture, tokenizer.encode, tokenizer.eos_id, cfg.batch_size, cfg.seq_len, cfg.seed, step,
                            tokenizer.pad_id, cfg.loss_on_prompt)
        if dist.world > 1:
            x, y = shard_rows(x, dist.rank, dist.world), shard_rows(y, dist.rank, dist.world)
        lr = lr_at(step, cfg, total)
        loss = train_step(model, opt, x, y, lr, cfg.grad_clip, cfg.autocast)
        window_steps += 1
        if main and ((step + 1) % cfg.log_every == 0 or step + 1 == total):
            now = time.perf_counter()
            tok_s = window_steps * tokens_per_step / (now - window_t)
            window_t, window_steps = now, 0
            metrics.write({"step": step + 1, "loss": loss, "lr": lr, "tokens_per_s": tok_s, "elapsed_s": now - t0})
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tok_s:,.0f}")
        if main and cfg.eval_every > 0 and (step + 1) % cfg.eval_every == 0:
            acc = greedy_accuracy(model, tokenizer, eval_task, quick_problems, cfg.eval.template,
                                  cfg.eval.max_new_tokens)
            metrics.write({"step": step + 1, "heldout_greedy_acc": acc, "elapsed_s": time.perf_counter() - t0})
            bar.write(f"step {step + 1}: held-out greedy accuracy {acc:.3f}")
        if main and (step + 1) % cfg.ckpt_every == 0:
            _save(ckpt_dir, model, tokenizer, opt, step + 1, time.perf_counter() - t0, cfg)
    bar.close()
    metrics.close()
    steps_done = step + 1 if total > start else start
    train_s = time.perf_counter() - t0
    if not main:
        return {"stage": "pretrain", "steps": steps_done, "rank": dist.rank}
    _save(ckpt_dir, model, tokenizer, opt, steps_done, train_s, cfg)
    save_checkpoint(run / "model", model, tokenizer)
    _plot_loss(run)
    eval_summary = evaluate(cfg.eval, model=model, tokenizer=tokenizer, run_dir=run, progress=progress)
    summary = {"stage": "pretrain", "steps": steps_done, "train_seconds": round(train_s, 1),
               "params": model.num_params(), "tokens_seen": steps_done * tokens_per_step,
               "world_size": dist.world, "loss_trace": loss_trace(run / "train_log.jsonl"),
               "eval": eval_summary, **run_metadata(cfg.seed)}
    atomic_write_json(run / "summary.json", summary)
    return summary


def loss_trace(path) -> list[list]:
    """``[[step, loss], ...]`` of a run's training log: the fingerprint that shows where two runs
    of one recipe part (:func:`reasonlab.runs.first_divergence`)."""
    from reasonlab.io import read_jsonl

    return [[row["step"], row["loss"]] for row in read_jsonl(path) if "loss" in row] if Path(path).exists() else []


def _has_checkpoint(path) -> bool:
    try:
        resolve_checkpoint(path)
        return True
    except FileNotFoundError:
        return False


def _save(path, model, tokenizer, opt, step, elapsed, cfg) -> None:
    state = {"step": step, "elapsed_s": elapsed, "optimizer": opt.state_dict(), "rng": _rng_state(),
             "config": config_to_dict(cfg)}
    save_checkpoint(path, model, tokenizer, trainer_state=state)


def _plot_loss(run) -> None:
    from reasonlab.eval.plots import plot_curves
    from reasonlab.io import read_jsonl

    log = read_jsonl(run / "train_log.jsonl") if (run / "train_log.jsonl").exists() else []
    losses = [r for r in log if "loss" in r]
    if losses:
        plot_curves({"train loss": ([r["step"] for r in losses], [r["loss"] for r in losses])}, run / "loss.png",
                    xlabel="step", ylabel="loss")
