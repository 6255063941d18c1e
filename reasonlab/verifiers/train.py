"""Stage ``reasonlab verifiers``: sample solutions from the policy on training problems, label
them (outcome: ``task.verify``; process: Monte-Carlo rollouts), train an ORM and a PRM value
model initialised from the policy, and measure the MC labels against the arith oracle.

Artifacts in ``runs/<name>/``: ``orm/`` and ``prm/`` (value-model checkpoints), ``labels.jsonl``
(solutions with their MC step labels; reused with ``resume: true``), ``metrics.jsonl`` (the value
models' loss per step, also to the ``log_to`` sinks), ``summary.json``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field


@dataclass
class VerifierTrainConfig:
    name: str = "verifiers"          # run directory: runs_dir/name
    runs_dir: str = "runs"           # where run directories live
    model: str = ""                   # policy checkpoint directory
    task: str = "arith"
    generate: dict = field(default_factory=dict)   # difficulty of the training problems
    problems: int = 800
    samples: int = 4                  # solutions per problem (ORM data)
    prm_samples: int = 2              # of those, how many get Monte-Carlo step labels
    mc_k: int = 8                     # rollouts per step prefix
    mc_temperature: float = 0.0       # rollout temperature of the MC labels (0: same as `temperature`)
    completer: str = ""               # checkpoint that completes the MC rollouts (Math-Shepherd's completer); "": the policy
    mc_consistent: bool = True        # hard labels: a step is also good when a later one is (mc_labels.hard_labels)
    prm_targets: str = "soft"         # soft | hard
    orm_targets: str = "token"        # token (Cobbe et al.) | solution (last token only)
    template: str = "r1"
    temperature: float = 1.0
    max_new_tokens: int = 160
    workers: int = 0                  # sampling processes (0: one per core)
    epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-3
    pairwise: float = 0.0             # weight of the within-problem ranking loss (0: BCE only)
    val_fraction: float = 0.0         # training problems held out to validate the verifiers
    feature_lr: float = 0.05          # learning rate of the log-prob feature weights
    lm_features: bool = False         # value models also read the policy's token log-probs (value_model)
    prm_outcomes: bool = False        # PRM also sees the solutions without rollouts, on their last step only
    kinds: list[str] = field(default_factory=lambda: ["orm", "prm"])
    log_to: list[str] = field(default_factory=list)  # metric sinks besides metrics.jsonl: tensorboard, wandb (train.sinks)
    seed: int = 7
    resume: bool = False              # reuse the run's labels.jsonl (same settings only)
    overwrite: bool = False           # delete an existing run of this name and start over


TRAINING_KEYS = ("mc_consistent", "prm_targets", "orm_targets", "epochs", "batch_size", "lr", "pairwise",
                 "val_fraction", "feature_lr", "lm_features", "prm_outcomes", "kinds")


def _check(cfg: VerifierTrainConfig) -> None:
    from reasonlab.checks import check_min, check_model_ref, check_task
    from reasonlab.config import ConfigError
    from reasonlab.train.sinks import check_log_to

    check_task(cfg.task, template=cfg.template)
    check_min(cfg, {"problems": 1, "samples": 1, "mc_k": 1, "max_new_tokens": 1, "workers": 0, "epochs": 1,
                    "batch_size": 1, "lr": 1e-12, "temperature": 1e-9})

    if cfg.prm_targets not in ("soft", "hard"):
        raise ConfigError(f"prm_targets must be soft or hard, got {cfg.prm_targets!r}")
    if cfg.orm_targets not in ("token", "solution"):
        raise ConfigError(f"orm_targets must be token or solution, got {cfg.orm_targets!r}")
    if not 1 <= cfg.prm_samples <= cfg.samples:
        raise ConfigError(f"need 1 <= prm_samples <= samples, got {cfg.prm_samples} and {cfg.samples}")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {cfg.val_fraction}")
    if cfg.pairwise < 0 or cfg.mc_temperature < 0:
        raise ConfigError("pairwise and mc_temperature must be >= 0")
    if not cfg.kinds or set(cfg.kinds) - {"orm", "prm"}:
        raise ConfigError(f"kinds must be a non-empty subset of [orm, prm], got {cfg.kinds}")
    check_model_ref(cfg.model)
    check_model_ref(cfg.completer, "completer", required=False)
    check_log_to(cfg.log_to)


def orm_rows(prompts, solutions, correct, per_token: bool):
    """(ids, targets): the solution's label on every completion token, or on its last one."""
    rows = []
    for (p, comp), ok in zip(solutions, correct):
        pre = [None] * len(prompts[p])
        tail = [float(ok)] * len(comp) if per_token else [None] * (len(comp) - 1) + [float(ok)]
        rows.append((prompts[p] + comp, pre + tail))
    return rows


def prm_rows(prompts, solutions, labels, kind: str, consistent: bool = True):
    """(ids, targets): the MC label (soft or hard) at the last token of every step."""
    from reasonlab.verifiers.mc_labels import hard_labels

    rows = []
    for (p, comp), lab in zip(solutions, labels):
        targets = [None] * (len(prompts[p]) + len(comp))
        for end, soft, hard in zip(lab["ends"], lab["soft"], hard_labels(lab["rollouts"], consistent=consistent)):
            targets[len(prompts[p]) + end] = soft if kind == "soft" else float(hard)
        rows.append((prompts[p] + comp, targets))
    return rows


def prm_data(prompts, solutions, correct, mc_solutions, labels, cfg):
    """(solutions, rows, rank positions) of the PRM: the MC-labelled solutions, and with
    ``prm_outcomes`` the other sampled solutions too, supervised on their last step only with the
    label MC gives a last step (the solution's own verdict)."""
    sols, rows = list(mc_solutions), prm_rows(prompts, mc_solutions, labels, cfg.prm_targets, cfg.mc_consistent)
    if cfg.prm_outcomes:
        labelled = {(s[0], tuple(s[1])) for s in mc_solutions}
        rest = [(s, ok) for s, ok in zip(solutions, correct) if (s[0], tuple(s[1])) not in labelled]
        sols += [s for s, _ in rest]
        rows += orm_rows(prompts, [s for s, _ in rest], [ok for _, ok in rest], per_token=False)
    return sols, rows, None


def _sample_solutions(cfg, pool, prompts):
    from reasonlab.engine.sampler import SamplingConfig

    batch = pool.sample(prompts, SamplingConfig(n=cfg.samples, max_new_tokens=cfg.max_new_tokens,
                                                temperature=cfg.temperature, seed=cfg.seed))
    return [(p, c) for p, c in zip(batch.prompt_index, batch.completion_ids)]


def _completer(path: str, tokenizer):
    """The model that completes the MC rollouts; it must share the policy's tokenizer."""
    from reasonlab.config import ConfigError
    from reasonlab.models.hf import load_policy

    model, other, _ = load_policy(path, device="cpu", impl="ours")
    if other.vocab_size != tokenizer.vocab_size or any(
            other.encode(t) != tokenizer.encode(t) for t in ("a = 3 + 4 = 7\n", "</think> <answer>")):
        raise ConfigError(f"completer: {path} has a different tokenizer from the policy; the rollouts "
                          "continue the policy's token prefixes, so both must share one tokenizer")
    return model


def train_verifiers(cfg: VerifierTrainConfig) -> dict:
    import torch

    from reasonlab.backends import make_backend
    from reasonlab.eval.run import generate_problems
    from reasonlab.tasks import make_task
    from reasonlab.io import atomic_write_json, read_jsonl, run_metadata, write_jsonl
    from reasonlab.runs import fingerprint, model_digest, open_stage_run
    from reasonlab.models.hf import load_policy
    from reasonlab.verifiers.mc_labels import mc_step_labels, oracle_agreement
    from reasonlab.config import config_to_dict
    from reasonlab.train.sinks import open_metrics
    from reasonlab.verifiers.validate import validation_report
    from reasonlab.verifiers.value_model import (
        ValueTrainConfig,
        make_value_model,
        save_value_model,
        train_value_model,
    )

    _check(cfg)
    t0 = time.perf_counter()
    task = make_task(cfg.task)
    problems = generate_problems(task, cfg.problems, cfg.seed, "train", cfg.generate)
    workers = cfg.workers or os.cpu_count() or 1
    # resume reuses the labels and trains the value models again: only what makes labels must match
    run = open_stage_run(cfg, fingerprint(cfg, ignore=("model", "completer") + TRAINING_KEYS,
                                          model_sha=model_digest(cfg.model),
                                          completer_sha=model_digest(cfg.completer) if cfg.completer else "",
                                          workers=workers))
    policy, tokenizer, _ = load_policy(cfg.model, device="cpu", impl="ours")
    prompts = [tokenizer.prompt_ids(task.format_prompt(p, cfg.template)) for p in problems]
    labels_path = run / "labels.jsonl"
    timings = {}
    if cfg.resume and labels_path.exists():
        saved = read_jsonl(labels_path, ["problem", "completion", "correct"])
        solutions = [(r["problem"], r["completion"]) for r in saved]
        correct = [r["correct"] for r in saved]
        labels = [r["mc"] for r in saved if r.get("mc")]
        mc_solutions = [(r["problem"], r["completion"]) for r in saved if r.get("mc")]
    else:
        pool = make_backend(policy, tokenizer, "parallel", workers=workers)
        try:
            solutions = _sample_solutions(cfg, pool, prompts)
            timings["sample_s"] = round(time.perf_counter() - t0, 1)
            correct = [task.verify(problems[p], tokenizer.decode(c)).correct for p, c in solutions]
            mc_solutions = [s for i, s in enumerate(solutions) if i % cfg.samples < cfg.prm_samples]
            t1 = time.perf_counter()
            if cfg.completer:
                pool.close()
                pool = make_backend(_completer(cfg.completer, tokenizer), tokenizer, "parallel", workers=workers)
            labels = mc_step_labels(task, tokenizer, problems, prompts, mc_solutions, pool.sample, cfg.mc_k,
                                    cfg.max_new_tokens, cfg.mc_temperature or cfg.temperature, seed=cfg.seed + 1)
            timings["mc_label_s"] = round(time.perf_counter() - t1, 1)
        finally:
            pool.close()
        mc_by_index = iter(labels)
        write_jsonl(labels_path, [{"problem": p, "completion": c, "correct": ok,
                                   "mc": next(mc_by_index) if i % cfg.samples < cfg.prm_samples else None}
                                  for i, ((p, c), ok) in enumerate(zip(solutions, correct))])
    agreement = oracle_agreement(task, tokenizer, problems, mc_solutions, labels) if cfg.task == "arith" else None
    vcfg = ValueTrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                            pairwise=cfg.pairwise, feature_lr=cfg.feature_lr)
    torch.manual_seed(cfg.seed)
    n_train = len(problems) - round(cfg.val_fraction * len(problems))
    val = [i for i, (p, _) in enumerate(solutions) if p >= n_train]
    sep_id = tokenizer.encode(task.step_separator)[0]
    data = {"orm": (solutions, orm_rows(prompts, solutions, correct, cfg.orm_targets == "token"),
                    [[len(prompts[p]) + len(c) - 1] for p, c in solutions]),
            "prm": prm_data(prompts, solutions, correct, mc_solutions, labels, cfg)}
    out = {}
    (run / "metrics.jsonl").unlink(missing_ok=True)      # value-model losses: step counts over both models
    metrics = open_metrics(run / "metrics.jsonl", cfg.log_to, run, cfg.name, config_to_dict(cfg))
    for kind in cfg.kinds:
        sols, rows, rank_pos = data[kind]
        keep = [i for i, (p, _) in enumerate(sols) if p < n_train]
        t1 = time.perf_counter()
        model = make_value_model(policy, lm_features=cfg.lm_features)
        losses = train_value_model(model, [rows[i] for i in keep], vcfg, tokenizer.pad_id, log=print,
                                   starts=[len(prompts[sols[i][0]]) for i in keep],
                                   groups=[sols[i][0] for i in keep],
                                   rank_positions=None if rank_pos is None else [rank_pos[i] for i in keep])
        done = sum(o["steps"] for o in out.values())
        for i, loss in enumerate(losses):
            metrics.write({"step": done + i + 1, f"{kind}_loss": loss})
        save_value_model(run / kind, model, tokenizer, {"kind": kind, "policy": cfg.model,
                                                        "targets": cfg.orm_targets if kind == "orm" else cfg.prm_targets,
                                                        "pairwise": cfg.pairwise})
        out[kind] = {"rows": len(keep), "steps": len(losses), "first_loss": losses[0],
                     "final_loss": sum(losses[-20:]) / len(losses[-20:]),
                     "train_s": round(time.perf_counter() - t1, 1)}
        if val:
            out[kind]["validation"] = validation_report(model, prompts, [solutions[i] for i in val],
                                                        [correct[i] for i in val], sep_id, tokenizer.pad_id)
            print(kind, "validation", out[kind]["validation"])
    metrics.close()
    summary = {"stage": "verifiers", "run_dir": str(run), "workers": workers, "solutions": len(solutions),
               "solution_accuracy": sum(correct) / max(1, len(correct)), "mc_solutions": len(mc_solutions),
               "mc_k": cfg.mc_k, "completer": cfg.completer or cfg.model, "mc_temperature": cfg.mc_temperature or cfg.temperature,
               "mc_steps": sum(len(r["ends"]) for r in labels), "agreement": agreement, "train_problems": n_train,
               "models": out, "timings": {**timings, "total_s": round(time.perf_counter() - t0, 1)},
               **run_metadata(cfg.seed)}
    atomic_write_json(run / "summary.json", summary)
    return summary
