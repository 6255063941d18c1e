"""SFT throughput: trained tokens per second of whole SFT steps, ours against TRL's ``SFTTrainer``.

Same weights (the fresh tiny model saved as a reasonlab checkpoint, or ``--model``: a checkpoint
or a Llama / Qwen2 / Qwen3 directory), same documents: ``(steps + 1) x batch_size`` prompt /
completion rows of the task's own traces (``train.sft_data.task_sft_rows``, through
``train.sft.load_data`` as the ``sft`` stage builds them), tokenised once by the model's tokenizer
(``prompt_ids`` + completion + EOS). TRL gets those very token ids as a tokenised
prompt-completion dataset (``input_ids`` + ``completion_mask``, ``completion_only_loss=True``), so
both sides train on identical tokens, in the same order (TRL: ``train_sampling_strategy="sequential"``),
``batch_size`` documents per optimiser step (matched in documents, hence in tokens).

A step on both sides: mean next-token loss over the completion tokens, backward, gradient
clipping at 1.0, AdamW (0.9, 0.99, no weight decay) at the constant ``lr`` of the ``sft`` stage's
default (3e-4), no warm-up, no gradient checkpointing. Ours is ``train.sft.sft_step`` with packing
on (documents first-fit into rows of ``seq_len`` tokens, each attending only to itself) and the
stage's micro-batch size. TRL runs twice, and the ratio is taken against the faster:
``padding_free=True`` (the step's documents flattened into one row, document boundaries from
``position_ids``: TRL's packing without regrouping the documents) and ``padding_free=False``
(one document per row, right-padded). Precision: fp32 weights on both sides; with
``--dtype=bfloat16`` (the default) both compute under bf16 autocast (ours: ``autocast``; TRL:
``bf16=True``), with ``--dtype=float32`` both in fp32. Otherwise TRL keeps its own defaults
(fused AdamW, its fused LM-head loss, its per-step entropy and accuracy metrics); ``trl_options``
in the JSON lists what was set. Defaults: 24 documents per step, rows of 512 tokens, 3 timed
steps per round, 3 rounds.

Each round starts every side afresh from the same weights (a fresh optimiser too) and trains
``steps + 1`` steps on the same documents; the first step is a warm-up outside the timing (TRL:
seconds between step-end callbacks, so set-up and data preparation are not counted). Rounds
alternate between the sides; tokens/s are over the median seconds per step. The losses of the
warm-up step (same weights, same documents) and of the last step are reported for both sides as
a sanity check: they should agree to within bf16 noise.

Off the CPU (``--device=cuda``) ours trains there; TRL is left out there, as in ``bench grpo``
(``trl`` in the JSON says so); ``--trl=false`` leaves it out on the CPU too.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from reasonlab.bench.common import BenchConfig, load_or_init

TRL_OFF_CPU = "skipped: the TRL side runs on the CPU only, as in bench grpo (compare with --device=cpu)"
LR = 3e-4                               # the sft stage's default learning rate, constant here
GRAD_CLIP = 1.0                         # the sft stage's default
TRL_MODES = {"trl_padding_free": True, "trl_padded": False}     # side name -> padding_free


def sft_shape(cfg: BenchConfig) -> tuple[int, int, int]:
    """(documents per step, packed row length, timed steps per round): ``--batch_size``,
    ``--seq_len`` and ``--steps``; the shared defaults of the latter two (the train bench's 256
    and 8) mean unset here: 512 (the ``sft`` stage's default) and 3 (three sides x rounds of
    whole steps of a 20M model in a few minutes on two CPU cores)."""
    return cfg.batch_size, cfg.seq_len if cfg.seq_len != 256 else 512, cfg.steps if cfg.steps != 8 else 3


def step_chunks(path: str, cfg: BenchConfig, batch: int, seq_len: int, steps: int) -> list[list]:
    """``steps + 1`` chunks of ``batch`` documents ``(prompt ids, completion ids)`` of the task's
    traces, tokenised by the model's tokenizer as the ``sft`` stage does (documents longer than
    ``seq_len`` are dropped as bad rows; the model's context must hold ``seq_len``)."""
    from reasonlab.config import ConfigError
    from reasonlab.tasks import get_task
    from reasonlab.train.grpo import load_policy
    from reasonlab.train.sft import SFTConfig, context_length, load_data

    need = (steps + 1) * batch
    scfg = SFTConfig(task=cfg.task, seed=cfg.seed, seq_len=seq_len)
    scfg.data.rows = need
    model, tokenizer = load_policy(path)
    docs, report, _ = load_data(scfg, get_task(cfg.task), tokenizer, context_length(model, scfg))
    if len(docs) < need:
        raise ConfigError(f"seq_len: only {len(docs)} of {need} documents fit in {seq_len} tokens "
                          f"({report.bad} longer); raise --seq_len")
    return [docs[i * batch: (i + 1) * batch] for i in range(steps + 1)]


def bench_sft(cfg: BenchConfig) -> dict:
    from reasonlab.bench.device import bench_device
    from reasonlab.models.checkpoint import save_checkpoint

    dev = bench_device(cfg.device)
    batch, seq_len, steps = sft_shape(cfg)
    with_trl = cfg.trl and dev.type == "cpu" and trl_installed()
    with tempfile.TemporaryDirectory() as tmp:
        path = cfg.model or str(save_checkpoint(Path(tmp) / "model", *load_or_init(cfg)))
        chunks = step_chunks(path, cfg, batch, seq_len, steps)
        sides = {"ours": OursSFT(path, chunks, seq_len, cfg.dtype, dev)}
        if with_trl:
            sides.update({name: TRLSFT(path, chunks, Path(tmp), cfg, free) for name, free in TRL_MODES.items()})
        times = alternate_rounds(sides, cfg.repeats)
    return summarize(cfg, chunks, sides, times, seq_len, dev, with_trl)


def alternate_rounds(sides: dict, repeats: int) -> dict[str, list[float]]:
    """``repeats`` rounds, sides interleaved; -> seconds per timed step of every round, per side."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, side in sides.items():
            times[name].append(side())
    return times


def summarize(cfg: BenchConfig, chunks: list[list], sides: dict, times: dict, seq_len: int,
              device: torch.device, with_trl: bool) -> dict:
    """The JSON row: shape, what is matched, tokens/s per side, ratio, losses."""
    timed = chunks[1:]
    tokens = sum(len(p) + len(c) for chunk in timed for p, c in chunk)
    rate = {name: tokens / (len(timed) * statistics.median(ts)) for name, ts in times.items()}
    ours = sides["ours"]
    out = {"params": ours.params, "documents_per_step": len(chunks[0]), "steps_per_round": len(timed),
           "tokens_per_step": round(tokens / len(timed), 1),
           "completion_tokens_per_step": round(sum(len(c) for ch in timed for _, c in ch) / len(timed), 1),
           "matched": "same weights and token ids in the same order; same documents (so tokens) per "
                      "optimizer step; same constant lr, AdamW betas, weight decay 0, clipping 1.0, steps, "
                      "fp32 weights and compute dtype",
           "seq_len": seq_len, "packing": ours.packed, **(packing_stats(timed, seq_len) if ours.packed else {}),
           "device": str(device), "threads": torch.get_num_threads(), "precision": cfg.dtype,
           "ours_tokens_per_s": round(rate["ours"], 1), **ours.losses("ours")}
    if not with_trl:
        out["trl"] = trl_skipped(cfg, device)
        return out
    import trl

    best = max(TRL_MODES, key=lambda name: rate[name])
    out.update(trl_version=trl.__version__, trl_options=sides[best].options(), trl_best=best,
               trl_tokens_per_s=round(rate[best], 1), ratio=round(rate["ours"] / rate[best], 2))
    for name in TRL_MODES:
        out.update({f"{name}_tokens_per_s": round(rate[name], 1), **sides[name].losses(name)})
    return out


def trl_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("trl") is not None


def trl_skipped(cfg: BenchConfig, device: torch.device) -> str:
    """Why the TRL side did not run."""
    if not cfg.trl:
        return "skipped: --trl=false"
    return TRL_OFF_CPU if device.type != "cpu" else "skipped: trl is not installed"


def packing_stats(chunks: list[list], seq_len: int) -> dict:
    """Our packed rows per step and the share of padding in them (rows padded to the longest)."""
    from reasonlab.train.sft import pack_rows

    rows = [pack_rows(chunk, seq_len) for chunk in chunks]
    real = sum(len(p) + len(c) for chunk in chunks for p, c in chunk)
    padded = sum(len(r) * max(sum(len(p) + len(c) for p, c in row) for row in r) for r in rows)
    return {"ours_rows_per_step": round(sum(map(len, rows)) / len(rows), 1),
            "ours_padding_share": round(1 - real / padded, 3)}


class OursSFT:
    """``side()`` runs one round: our policy afresh from ``path`` on ``device`` with a fresh
    AdamW (as ``train.sft.setup`` builds it), a warm-up ``sft_step`` on ``chunks[0]``, then the
    timed steps; -> seconds per timed step (device synchronised)."""

    def __init__(self, path: str, chunks: list[list], seq_len: int, dtype: str, device: torch.device):
        from reasonlab.train.sft import SFTConfig

        self.path, self.chunks, self.seq_len, self.device = path, chunks, seq_len, device
        self.autocast = "bfloat16" if dtype == "bfloat16" else "none"
        self.micro_tokens = SFTConfig().micro_batch_tokens
        self.params, self.packed, self.first, self.last = 0, False, [], []

    def __call__(self) -> float:
        from reasonlab.bench.device import synchronize
        from reasonlab.models.llama import Llama
        from reasonlab.models.lora import trainable_parameters
        from reasonlab.train.grpo import load_policy
        from reasonlab.train.sft import sft_step

        policy, _ = load_policy(self.path)
        policy = policy.to(self.device).train()
        self.params = sum(p.numel() for p in policy.parameters())
        self.packed = isinstance(policy, Llama)       # as in the stage: transformers models take one per row
        opt = torch.optim.AdamW(trainable_parameters(policy), lr=LR, betas=(0.9, 0.99), weight_decay=0.0)
        losses = []

        def step(chunk) -> None:
            losses.append(sft_step(policy, opt, chunk, GRAD_CLIP, self.seq_len, True, self.micro_tokens,
                                   self.autocast, LR))
        step(self.chunks[0])
        synchronize(self.device)
        t0 = time.perf_counter()
        for chunk in self.chunks[1:]:
            step(chunk)
        synchronize(self.device)
        seconds = (time.perf_counter() - t0) / (len(self.chunks) - 1)
        self.first.append(losses[0])
        self.last.append(losses[-1])
        return seconds

    def losses(self, name: str) -> dict:
        return round_losses(name, self.first, self.last)


def round_losses(name: str, first: list[float], last: list[float]) -> dict:
    """``<name>_loss_first`` (the warm-up step's) and ``<name>_loss_last`` of the last round."""
    return {f"{name}_loss_first": round(first[-1], 4), f"{name}_loss_last": round(last[-1], 4)}


class TRLSFT:
    """``side()`` runs one round of TRL's ``SFTTrainer`` (a fresh trainer on the weights at
    ``path``) over the same documents; -> seconds per step after the first (between step-end
    callbacks)."""

    def __init__(self, path: str, chunks: list[list], tmp: Path, cfg: BenchConfig, padding_free: bool):
        from datasets import Dataset

        self.path, self.tmp, self.cfg, self.padding_free = path, tmp, cfg, padding_free
        self.steps, self.batch = len(chunks), len(chunks[0])
        self.data = Dataset.from_list([{"input_ids": p + c, "completion_mask": [0] * len(p) + [1] * len(c)}
                                       for chunk in chunks for p, c in chunk])
        self.first, self.last, self.attn = [], [], ""

    def args(self):
        import dataclasses

        from trl import SFTConfig as TRLConfig

        names = {f.name for f in dataclasses.fields(TRLConfig)}   # newer transformers: activation_checkpointing
        no_recompute = {"activation_checkpointing" if "activation_checkpointing" in names
                        else "gradient_checkpointing": False}
        return TRLConfig(output_dir=str(self.tmp / "trl"), per_device_train_batch_size=self.batch,
                         gradient_accumulation_steps=1, max_steps=self.steps, learning_rate=LR,
                         lr_scheduler_type="constant", warmup_steps=0, adam_beta1=0.9, adam_beta2=0.99,
                         weight_decay=0.0, max_grad_norm=GRAD_CLIP, **no_recompute,
                         completion_only_loss=True, padding_free=self.padding_free, packing=False,
                         max_length=None, train_sampling_strategy="sequential", bf16=self.cfg.dtype == "bfloat16",
                         use_cpu=True, logging_steps=10_000, save_strategy="no", report_to=[], disable_tqdm=True,
                         dataloader_num_workers=0, seed=self.cfg.seed)

    def options(self) -> dict:
        a = self.args()
        return {"padding_free": a.padding_free, "packing": a.packing, "completion_only_loss": a.completion_only_loss,
                "bf16": a.bf16, "gradient_checkpointing": a.gradient_checkpointing, "optim": enum_value(a.optim),
                "lr_scheduler_type": enum_value(a.lr_scheduler_type), "train_sampling_strategy": a.train_sampling_strategy,
                "attn_implementation": self.attn}

    def __call__(self) -> float:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        marks, losses = [], []
        trainer_cls, timer = recording_trainer(), step_timer(marks)
        model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32)
        self.attn = str(model.config._attn_implementation)
        trainer = trainer_cls(model=model, args=self.args(), train_dataset=self.data,
                              processing_class=AutoTokenizer.from_pretrained(self.path), callbacks=[timer])
        trainer.losses = losses
        trainer.train()
        self.first.append(float(losses[0]))
        self.last.append(float(losses[-1]))
        return (marks[-1] - marks[0]) / max(1, len(marks) - 1)

    def losses(self, name: str) -> dict:
        return round_losses(name, self.first, self.last)


def enum_value(x) -> str:
    return str(getattr(x, "value", x))


def recording_trainer():
    """``trl.SFTTrainer`` that also keeps each step's (detached) loss in ``self.losses``."""
    from trl import SFTTrainer

    class Recording(SFTTrainer):
        losses: list

        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            self.losses.append(loss)
            return loss
    return Recording


def step_timer(marks: list):
    """A ``TrainerCallback`` appending ``time.perf_counter()`` at every step end to ``marks``."""
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            marks.append(time.perf_counter())
    return Timer()
