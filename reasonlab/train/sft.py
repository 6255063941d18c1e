"""Stage: supervised fine-tuning (SFT) on prompt/completion documents.

Data (``train.sft_data``): a jsonl of ``{"prompt", "completion"}`` or ``{"messages"}`` rows, or a
run's ``results.jsonl`` filtered by verdict; with no file, ``data.rows`` of the task's own
traces, written to ``<run>/data.jsonl`` first. The loss is the mean next-token loss over the
completion tokens (EOS included) of a step's ``batch_size`` documents; prompts are context only.

Packing (``packing: true``): a step's documents are packed first-fit-decreasing into rows of
``seq_len`` tokens; every document keeps its own RoPE positions (from 0) and attends only to
itself (``Llama.forward(positions=, doc_ids=)``, a block-diagonal causal mask), so a packed
step computes the same loss and gradients as one document per row, without the padding. Models
that run through transformers (architectures ``models.families`` does not cover) take one
document per row (right padding; causal attention never sees it). Rows are grouped into
micro-batches of at most ``micro_batch_tokens`` tokens (padding included) whose gradients add
up to the step's (each is divided by the step's completion-token count).

Training: AdamW (0.9, 0.99, no weight decay) on fp32 weights (``grpo.load_policy``), bf16
autocast on the policy's device, linear warm-up then cosine or linear decay to 0 at the last
step, gradient clipping, ``epochs`` passes (a fresh shuffle each, a pure function of ``seed``
and the epoch) or ``max_steps``; LoRA / gradient checkpointing / device through
``prepare_policy``. A checkpoint (weights, optimiser, counters) every ``ckpt_every`` steps and at
the end; ``resume: true`` continues from it and ends with the weights of an uninterrupted run.
One process (the step itself, ``sft_step``, is also RFT's and splits its batch over torchrun
ranks there). Artifacts in ``runs/<name>/``: ``config.yaml``, ``metrics.jsonl`` (loss per step),
``loss.png``, ``model/``, ``summary.json`` and, with ``final_eval``, the held-out evaluation.
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from reasonlab.train.rl_monitor import write_summary
from reasonlab.config import config_to_dict, save_config
from reasonlab.eval.run import EvalConfig
from reasonlab.io import read_jsonl, run_metadata, write_jsonl
from reasonlab.models.lora import lora_state, merged_policy, trainable_parameters
from reasonlab.train import rl
from reasonlab.train.distributed import all_reduce_grads, all_reduce_mean, block_slice, token_share
from reasonlab.train.precision import autocast_for, batch_to, check_training_options, model_device, prepare_policy
from reasonlab.train.sft_data import Doc, DataReport
from reasonlab.train.sinks import open_metrics


@dataclass
class SFTDataConfig:
    path: str = ""                   # jsonl: {"prompt","completion"} | {"messages"} rows, or a run's results.jsonl ("": task traces)
    filter: str = "correct"          # results.jsonl rows: correct (verified completions) | all (every one that ended)
    bad_rows: str = "skip"           # skip (count, list path:LINE in the summary and on stderr) | error (stop at the first)
    rows: int = 2000                 # path "": task traces written to <run>/data.jsonl and trained on
    generate: dict = field(default_factory=dict)   # path "": difficulty of their problems (task.generate options)
    trace: dict = field(default_factory=dict)      # path "": trace options (arith: error_rate, correction_rate)


@dataclass
class SFTConfig:
    name: str = "sft"                # run directory: runs_dir/name
    runs_dir: str = "runs"           # where run directories live
    seed: int = 0                    # data order (and generated traces) are a function of it
    model: str = ""                  # checkpoint directory (tiny) or Hugging Face model
    task: str = "arith"              # results.jsonl prompts and generated traces use its template
    template: str = "r1"             # prompt template (also the final evaluation's)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    seq_len: int = 512               # tokens per packed row; a longer document is a bad row
    packing: bool = True             # several documents per row, each attending only to itself (transformers models: one per row)
    batch_size: int = 32             # documents per optimiser step
    micro_batch_tokens: int = 8192   # tokens per forward/backward, padding included (0: the whole step at once)
    epochs: int = 1                  # passes over the data (reshuffled each)
    max_steps: int = 0               # > 0: this many steps instead (the data repeats)
    lr: float = 3e-4
    schedule: str = "cosine"         # after warm-up, decay to 0 at the last step: cosine | linear | constant
    warmup_steps: int = 10
    grad_clip: float = 1.0           # max gradient norm (0: off)
    autocast: str = "bfloat16"       # bfloat16 | none (on the policy's device; weights stay fp32)
    device: str = "cpu"              # where the policy trains: cpu | cuda | cuda:N | mps | auto
    grad_checkpointing: bool = False  # recompute each layer's activations in backward (less memory, slower)
    lora_rank: int = 0               # > 0: train only LoRA adapters of this rank (0: full fine-tuning)
    lora_alpha: float = 16.0         # LoRA update scale alpha / lora_rank
    lora_targets: list[str] = field(default_factory=list)  # Linear names to adapt ([]: models.lora.DEFAULT_TARGETS)
    log_to: list[str] = field(default_factory=list)  # metric sinks besides the jsonl: tensorboard, wandb (train.sinks)
    ckpt_every: int = 50             # checkpoint every K steps (and at the end)
    resume: bool = False             # continue from the run's checkpoint (same settings only)
    overwrite: bool = False          # delete an existing run of this name and start over
    final_eval: bool = True          # held-out evaluation (``eval``, with this template) of the final model
    eval: EvalConfig = field(default_factory=EvalConfig)


# ---- one step (shared with RFT) -------------------------------------------------------------

def pack_rows(docs: list[Doc], seq_len: int) -> list[list[Doc]]:
    """First-fit-decreasing packing of documents (each at most ``seq_len`` tokens) into rows of
    at most ``seq_len`` tokens."""
    rows: list[list[Doc]] = []
    room: list[int] = []
    for doc in sorted(docs, key=lambda d: -(len(d[0]) + len(d[1]))):
        n = len(doc[0]) + len(doc[1])
        slot = next((r for r, free in enumerate(room) if n <= free), None)
        if slot is None:
            rows.append([doc])
            room.append(seq_len - n)
        else:
            rows[slot].append(doc)
            room[slot] -= n
    return rows


def _row_len(row: list[Doc]) -> int:
    return sum(len(p) + len(c) for p, c in row)


def micro_batches(rows: list[list[Doc]], max_tokens: int) -> list[list[list[Doc]]]:
    """Rows grouped so that rows x longest row <= ``max_tokens`` (at least one row each;
    longest first). ``max_tokens`` 0: one group, in the given order."""
    if max_tokens <= 0:
        return [rows]
    groups: list[list[list[Doc]]] = [[]]
    for row in sorted(rows, key=_row_len, reverse=True):
        if groups[-1] and (len(groups[-1]) + 1) * _row_len(groups[-1][0]) > max_tokens:
            groups.append([])
        groups[-1].append(row)
    return groups


def row_tensors(rows: list[list[Doc]]) -> dict:
    """Right-padded (id 0) ``ids`` (B, L), each token's ``positions`` in its document and
    ``doc_ids`` (padding: -1), and ``mask`` (B, L-1): 1 where the next token is a completion token."""
    length = max(_row_len(row) for row in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    positions = torch.zeros(len(rows), length, dtype=torch.long)
    doc_ids = torch.full((len(rows), length), -1, dtype=torch.long)
    mask = torch.zeros(len(rows), length - 1)
    for b, row in enumerate(rows):
        at = 0
        for j, (p, c) in enumerate(row):
            n = len(p) + len(c)
            ids[b, at: at + n] = torch.tensor(p + c)
            positions[b, at: at + n] = torch.arange(n)
            doc_ids[b, at: at + n] = j
            mask[b, at + len(p) - 1: at + n - 1] = 1.0
            at += n
    return {"ids": ids, "positions": positions, "doc_ids": doc_ids, "mask": mask}


def _packed_completion_nll(model, t: dict) -> torch.Tensor:
    """Summed next-token loss of the completion tokens of packed rows (document positions and
    mask). The LM head and the softmax run only at the positions that predict a completion token:
    the prompts' logits, which the loss never reads, are not computed (nor their gradients)."""
    import torch.nn.functional as F

    hidden = model.hidden(t["ids"], positions=t["positions"], doc_ids=t["doc_ids"])[:, :-1]
    keep = t["mask"].bool()
    logits = model.lm_head(hidden[keep]).float()
    return F.cross_entropy(logits, t["ids"][:, 1:][keep], reduction="sum")


def accumulate_loss(model, docs: list[Doc], seq_len: int = 0, packing: bool = False, micro_tokens: int = 0,
                    autocast: str = "none", scale: float = 1.0) -> float:
    """Backward of ``scale`` x the mean next-token loss over the completion tokens of ``docs``,
    micro-batch by micro-batch (gradients add up in ``.grad``). Packing applies to our ``Llama``
    with ``seq_len`` > 0; other models take one document per row. -> the mean loss."""
    from reasonlab.models.llama import Llama

    packed = packing and seq_len > 0 and isinstance(model, Llama)
    rows = pack_rows(docs, seq_len) if packed else [[d] for d in docs]
    n_tok = sum(len(c) for _, c in docs)
    total = 0.0
    for group in micro_batches(rows, micro_tokens):
        t = batch_to(row_tensors(group), model_device(model))
        with autocast_for(model, autocast):
            if packed:
                nll = _packed_completion_nll(model, t)
            else:
                nll = -(rl.token_logprobs(model, t["ids"]) * t["mask"]).sum()
        loss = nll / n_tok
        (loss * scale if scale != 1.0 else loss).backward()
        total += float(loss.detach())
    return total


def sft_step(model, opt, chunk: list[Doc], grad_clip: float, seq_len: int = 0, packing: bool = False,
             micro_tokens: int = 0, autocast: str = "none", lr: float | None = None) -> float:
    """One optimiser step on the mean next-token loss of ``chunk``'s completion tokens
    (``accumulate_loss``; ``lr``: set first, None: as is). Under torchrun each rank takes its
    block of the chunk (possibly none), its loss scaled by its share of the tokens
    (``token_share``) before the gradients are averaged. -> the chunk's mean loss."""
    mine = chunk[block_slice(len(chunk))]
    opt.zero_grad(set_to_none=True)
    share = token_share(sum(len(c) for _, c in mine))
    loss = accumulate_loss(model, mine, seq_len, packing, micro_tokens, autocast, share) if mine else 0.0
    all_reduce_grads(model)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if lr is not None:
        for group in opt.param_groups:
            group["lr"] = lr
    opt.step()
    return all_reduce_mean(loss * share)


# ---- schedule and data order ----------------------------------------------------------------

def lr_at(step: int, cfg: SFTConfig, total: int) -> float:
    """Linear warm-up to ``lr``, then ``schedule`` decay towards 0 at ``total`` steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * (1 - progress) if cfg.schedule == "linear" else cfg.lr


def steps_per_epoch(n_docs: int, batch_size: int) -> int:
    return -(-n_docs // batch_size)


def epoch_order(n_docs: int, seed: int, epoch: int) -> list[int]:
    """The document order of ``epoch``: a shuffle seeded by (seed, epoch)."""
    order = list(range(n_docs))
    random.Random(f"sft:{seed}:{epoch}").shuffle(order)
    return order


# ---- the stage ------------------------------------------------------------------------------

def check_config(cfg: SFTConfig) -> None:
    """Every cheap check before anything is written or loaded."""
    from reasonlab.checks import check_choice, check_min, check_model_ref, check_task
    from reasonlab.config import ConfigError
    from reasonlab.eval.run import check_config as check_eval_config
    from reasonlab.runs import check_run_name

    check_run_name(cfg.name)
    check_min(cfg, {"seq_len": 2, "batch_size": 1, "micro_batch_tokens": 0, "epochs": 1, "max_steps": 0,
                    "lr": 1e-12, "warmup_steps": 0, "grad_clip": 0, "ckpt_every": 1, "data.rows": 1})
    check_choice("schedule", cfg.schedule, ("cosine", "linear", "constant"))
    check_choice("autocast", cfg.autocast, ("bfloat16", "none"))
    check_choice("data.filter", cfg.data.filter, ("correct", "all"))
    check_choice("data.bad_rows", cfg.data.bad_rows, ("skip", "error"))
    check_training_options(cfg)
    check_task(cfg.task, template=cfg.template)
    check_eval_config(cfg.eval, model_required=False, prefix="eval.")
    check_model_ref(cfg.model)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("sft runs in one process; start it without torchrun")
    if cfg.data.path and not Path(cfg.data.path).is_file():
        raise ConfigError(f"data.path: {cfg.data.path} is not a file (a .jsonl of training rows)")


def context_length(model, cfg: SFTConfig) -> int:
    """The longest document: ``seq_len``, which must fit the model's context."""
    from reasonlab.config import ConfigError

    limit = getattr(getattr(model, "cfg", None), "max_seq_len", None) or \
        getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if limit and cfg.seq_len > limit:
        raise ConfigError(f"seq_len: {cfg.seq_len} is longer than the model's context ({limit})")
    return cfg.seq_len


def load_data(cfg: SFTConfig, task, tokenizer, max_len: int) -> tuple[list[Doc], DataReport, list[dict] | None]:
    """(documents, report, generated rows or None): the data file, or ``data.rows`` task traces."""
    from reasonlab.config import ConfigError
    from reasonlab.train.sft_data import documents_from_rows, load_documents, task_sft_rows

    d = cfg.data
    if d.path:
        docs, report = load_documents(d.path, tokenizer, task, cfg.template, d.filter, max_len, d.bad_rows)
        return docs, report, None
    try:
        rows = task_sft_rows(task, d.rows, cfg.seed, cfg.template, d.generate, d.trace)
    except NotImplementedError as err:
        raise ConfigError(f"data.path: {err}; pass a jsonl file") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"data.generate / data.trace: {err}") from None
    label = str(Path(cfg.runs_dir) / cfg.name / "data.jsonl")
    docs, report = documents_from_rows(enumerate(rows, 1), label, tokenizer, task, cfg.template, "all", max_len,
                                       d.bad_rows)
    return docs, report, rows


def report_bad(report: DataReport) -> None:
    """One stderr line for skipped bad rows (the first few by ``path:LINE``)."""
    if report.bad:
        more = f" (+{report.bad - len(report.bad_examples)} more)" if report.bad > len(report.bad_examples) else ""
        print(f"sft: skipped {report.bad} bad row(s): {'; '.join(report.bad_examples)}{more}", file=sys.stderr)


def _load_checkpoint(path: Path):
    """(model, trainer state) of the run's checkpoint (or of ``.old``, a swap a crash cut short)."""
    from reasonlab.train.grpo import load_policy

    for candidate in (path, Path(str(path) + ".old")):
        if (candidate / "trainer_state.pt").exists():
            model, _ = load_policy(str(candidate))
            return model, torch.load(candidate / "trainer_state.pt", map_location="cpu", weights_only=False)
    return None, None


def setup(cfg: SFTConfig):
    """Checks, model, data, run directory, optimiser and the resumed state -> (run, policy,
    tokenizer, opt, docs, report, state)."""
    from reasonlab.runs import fingerprint, model_digest, open_stage_run, path_digest
    from reasonlab.tasks import get_task
    from reasonlab.train.grpo import load_policy

    check_config(cfg)
    task = get_task(cfg.task)
    policy, tokenizer = load_policy(cfg.model)
    docs, report, generated = load_data(cfg, task, tokenizer, context_length(policy, cfg))   # bad data: no write
    fp = fingerprint(cfg, ignore=("model", "ckpt_every", "grad_checkpointing", "final_eval", "eval", "data.bad_rows"),
                     model_sha=model_digest(cfg.model),
                     data_sha=path_digest(cfg.data.path) if cfg.data.path else "task-traces")
    run = open_stage_run(cfg, fp)
    save_config(cfg, run / "config.yaml")
    if generated is not None:
        write_jsonl(run / "data.jsonl", generated)
    report_bad(report)
    torch.manual_seed(cfg.seed)
    saved, state = _load_checkpoint(run / "checkpoint") if cfg.resume else (None, None)
    if saved is not None and cfg.lora_rank == 0:          # LoRA: the base never changes; adapters below
        policy = saved
    policy = prepare_policy(policy, cfg, state.get("lora") if state else None)
    policy.train()
    opt = torch.optim.AdamW(trainable_parameters(policy), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    log = run / "metrics.jsonl"
    if state:
        opt.load_state_dict(state["optimizer"])
        if log.exists():                                  # later rows are recomputed
            write_jsonl(log, [r for r in read_jsonl(log) if r.get("step", 0) <= state["step"]])
    elif log.exists():
        log.unlink()
    return run, policy, tokenizer, opt, docs, report, state or {"step": 0, "elapsed_s": 0.0, "tokens": 0}


def sft(cfg: SFTConfig, progress: bool = True) -> dict:
    """Run the stage; returns the summary (also ``summary.json``)."""
    from tqdm.auto import tqdm

    run, policy, tokenizer, opt, docs, report, state = setup(cfg)
    per_epoch = steps_per_epoch(len(docs), cfg.batch_size)
    total = cfg.max_steps or cfg.epochs * per_epoch
    start, tokens = state["step"], state["tokens"]
    t0 = time.perf_counter() - state["elapsed_s"]
    order: tuple[int, list[int]] = (-1, [])
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"sft {cfg.name}", disable=not progress,
               dynamic_ncols=True)
    metrics = open_metrics(run / "metrics.jsonl", cfg.log_to, run, cfg.name, config_to_dict(cfg), start)
    for step in bar:
        epoch, k = divmod(step, per_epoch)
        if order[0] != epoch:
            order = (epoch, epoch_order(len(docs), cfg.seed, epoch))
        chunk = [docs[i] for i in order[1][k * cfg.batch_size: (k + 1) * cfg.batch_size]]
        lr = lr_at(step, cfg, total)
        loss = sft_step(policy, opt, chunk, cfg.grad_clip, cfg.seq_len, cfg.packing, cfg.micro_batch_tokens,
                        cfg.autocast, lr)
        tokens += sum(len(p) + len(c) for p, c in chunk)
        elapsed = time.perf_counter() - t0
        metrics.write({"step": step + 1, "epoch": epoch + 1, "loss": loss, "lr": lr, "tokens": tokens,
                       "tokens_per_s": tokens / max(elapsed, 1e-9), "elapsed_s": elapsed})
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == total:
            _save_state(run, policy, tokenizer, opt, {"step": step + 1, "elapsed_s": elapsed, "tokens": tokens}, cfg)
    bar.close()
    metrics.close()
    return finish(cfg, run, policy, tokenizer, report, total, tokens, time.perf_counter() - t0, progress)


def _save_state(run: Path, policy, tokenizer, opt, counters: dict, cfg: SFTConfig) -> None:
    """The checkpoint: weights (LoRA merged), optimiser, adapters, counters, config."""
    from reasonlab.train.grpo import save_policy

    trainer = {**counters, "optimizer": opt.state_dict(), "lora": lora_state(policy), "config": config_to_dict(cfg)}
    save_policy(run / "checkpoint", policy, tokenizer, trainer_state=trainer)


def finish(cfg: SFTConfig, run: Path, policy, tokenizer, report: DataReport, steps: int, tokens: int,
           train_s: float, progress: bool) -> dict:
    """Model, loss plot, summary and the held-out evaluation."""
    from reasonlab.models.llama import Llama
    from reasonlab.train.grpo import save_policy

    save_policy(run / "model", policy, tokenizer)
    log = read_jsonl(run / "metrics.jsonl") if (run / "metrics.jsonl").exists() else []
    _plot_loss(log, run)
    summary = {"stage": "sft", "steps": steps, "rows": report.rows, "documents": report.documents,
               "bad_rows": report.bad, "bad_examples": report.bad_examples, "filtered": report.filtered,
               "packing": cfg.packing and isinstance(policy, Llama), "tokens": tokens,
               "final_loss": log[-1]["loss"] if log else None, "train_seconds": round(train_s, 1),
               "tokens_per_s": round(tokens / max(train_s, 1e-9), 1), "run_dir": str(run), **run_metadata(cfg.seed)}
    return write_summary(cfg, run, summary, merged_policy(policy), tokenizer, progress)


def _plot_loss(log: list[dict], run: Path) -> None:
    from reasonlab.eval.plots import plot_curves

    rows = [r for r in log if "loss" in r]
    if rows:
        plot_curves({"train loss": ([r["step"] for r in rows], [r["loss"] for r in rows])}, run / "loss.png",
                    xlabel="step", ylabel="loss (completion tokens)")
