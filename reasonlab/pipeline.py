"""``reasonlab pipeline``: the DeepSeek-R1 recipe as one run of ordinary stages, with one table.

Stages (each a normal stage — ``pretrain``, ``grpo``, ``distill`` — with its own run directory
``runs/<name>_<stage>/``; the pipeline only wires models into the next stage and compares):

1. ``pretrain`` / ``student_pretrain`` — the base model and a smaller student (unless given);
2. ``zero``          — R1-Zero: GRPO from the base (accuracy + format rewards);
3. ``cold_start``    — samples of ``zero`` kept when correct and readable -> SFT of the base;
4. ``reasoning_rl``  — GRPO from the cold start with the language-consistency reward
   (``reasoning_rl_nolang``: the same without it, the ablation that prices readability);
5. ``rejection_sft`` — samples of ``reasoning_rl`` kept when correct and readable -> SFT
   restarted from the base (R1 restarts from the base, not from the RL model);
6. ``final_rl``      — GRPO from the rejection-sampling model, all rewards;
7. ``distill``       — ``final_rl`` writes solutions, the verifier keeps the correct ones, the
   student is fine-tuned on them; ``student_rl`` — GRPO on the same student with as many
   trained completions as the distillation trained on (R1's Table 6 comparison).

The recipe (``recipes/r1_pipeline_tiny.yaml``) gives each stage ``{recipe: FILE, set: {...}}``;
``eval`` is applied to every stage so all are measured on the same held-out problems.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

# stage -> (kind, model from, teacher from); "" = none. Order is execution order.
STAGES = {
    "pretrain": ("pretrain", "", ""),
    "student_pretrain": ("pretrain", "", ""),
    "zero": ("grpo", "pretrain", ""),
    "cold_start": ("distill", "pretrain", "zero"),
    "reasoning_rl": ("grpo", "cold_start", ""),
    "reasoning_rl_nolang": ("grpo", "cold_start", ""),
    "rejection_sft": ("distill", "pretrain", "reasoning_rl"),
    "final_rl": ("grpo", "rejection_sft", ""),
    "distill": ("distill", "student_pretrain", "final_rl"),
    "student_rl": ("grpo", "student_pretrain", ""),
}
LABELS = {"pretrain": "base", "student_pretrain": "student base", "zero": "R1-Zero (GRPO from base)",
          "cold_start": "cold-start SFT of base", "reasoning_rl": "reasoning RL (+ consistency reward)",
          "reasoning_rl_nolang": "reasoning RL, no consistency reward", "rejection_sft": "rejection-sampling SFT of base",
          "final_rl": "final RL", "distill": "student distilled from final RL",
          "student_rl": "student GRPO, equal student compute"}

# quick mode: every stage on tiny budgets (a smoke test of the chain, about a minute)
QUICK = {
    "pretrain": {"max_steps": 20, "batch_size": 8},
    "grpo": {"steps": 2, "preflight": False, "eval_every": 0, "prompts_per_step": 4, "group_size": 4,
             "eval_problems": 8, "max_new_tokens": 48, "backend": "local"},
    "distill": {"prompts_per_round": 8, "samples_per_prompt": 2, "eval_every": 0, "eval_problems": 8,
                "max_new_tokens": 48, "backend": "local"},
}
QUICK_EVAL = {"limit": 8, "n": 2, "ks": [1, 2], "max_new_tokens": 48}


@dataclass
class PipelineConfig:
    name: str = "r1"
    runs_dir: str = "runs"
    stages: dict = field(default_factory=dict)   # stage -> {recipe: FILE, set: {settings over the recipe}}
    run: list[str] = field(default_factory=list)  # stages to run (empty: all of STAGES in order)
    base_model: str = ""            # start from this base instead of running `pretrain`
    student_model: str = ""         # start from this student instead of running `student_pretrain`
    eval: dict = field(default_factory=dict)     # eval settings applied to every stage
    quick: bool = False             # a smoke version of every stage
    resume: bool = False            # keep the stages that finished (summary.json exists)
    overwrite: bool = False         # delete the pipeline's earlier runs and start over


def check_config(cfg: PipelineConfig) -> list[str]:
    """The stages to run, in order; ConfigError naming the offending key."""
    from reasonlab.config import ConfigError

    if cfg.resume and cfg.overwrite:
        raise ConfigError("resume and overwrite: choose one")
    unknown = sorted(set(cfg.stages) - set(STAGES)) or sorted(set(cfg.run) - set(STAGES))
    if unknown:
        raise ConfigError(f"stages: unknown stage(s) {unknown}; choose from {list(STAGES)}")
    for stage, spec in cfg.stages.items():
        if not isinstance(spec, dict) or set(spec) - {"recipe", "set"}:
            raise ConfigError(f"stages.{stage}: expected {{recipe: FILE, set: {{...}}}}, got {spec!r}")
    todo = [s for s in STAGES if (not cfg.run or s in cfg.run) and s in cfg.stages]
    if cfg.base_model:
        todo = [s for s in todo if s != "pretrain"]
    if cfg.student_model:
        todo = [s for s in todo if s != "student_pretrain"]
    return todo


def run_dir(cfg: PipelineConfig, stage: str) -> Path:
    return Path(cfg.runs_dir) / f"{cfg.name}_{stage}"


def model_of(cfg: PipelineConfig, stage: str) -> str:
    """Where ``stage``'s model is (given base/student models stand in for their pretraining)."""
    given = {"pretrain": cfg.base_model, "student_pretrain": cfg.student_model}.get(stage)
    return given or str(run_dir(cfg, stage) / "model")


def stage_settings(cfg: PipelineConfig, stage: str, matched: dict) -> dict:
    """The mapping a stage's config gets over its recipe: the pipeline's ``set``, the wiring
    (run name, model, teacher), the shared eval, quick budgets and compute matching."""
    kind, model_from, teacher_from = STAGES[stage]
    values = dict(cfg.stages[stage].get("set") or {})
    values.update(name=f"{cfg.name}_{stage}", runs_dir=cfg.runs_dir)
    if model_from:
        values["model"] = model_of(cfg, model_from)
    if teacher_from:
        values["teacher"] = model_of(cfg, teacher_from)
    if cfg.eval:
        values["eval"] = {**values.get("eval", {}), **cfg.eval}
    if cfg.quick:
        values.update(QUICK[kind])
        values["eval"] = {**values.get("eval", {}), **QUICK_EVAL}
    values.update(matched.get(stage, {}))
    if cfg.overwrite or (cfg.resume and kind != "distill"):
        values["resume" if cfg.resume else "overwrite"] = True
    elif cfg.resume:
        values["overwrite"] = True                     # distill has no resume: an unfinished one restarts
    return values


def matched_student_rl(cfg: PipelineConfig) -> dict:
    """``student_rl``'s steps: as many completions through the student's forward and backward
    as the distillation trained on (kept samples x epochs); GRPO also generates them itself."""
    import yaml

    path = run_dir(cfg, "distill")
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = int((yaml.safe_load((path / "config.yaml").read_text()) or {}).get("epochs", 1))
    rl = stage_config(cfg, "student_rl", {})
    return {"steps": max(1, math.floor(sum(r["kept"] for r in rows) * epochs / (rl.prompts_per_step * rl.group_size)
                                       + 0.5))}


def stage_config(cfg: PipelineConfig, stage: str, matched: dict):
    """The stage's config object: its recipe, then the pipeline's settings for it."""
    from reasonlab.config import load_config
    from reasonlab.demo import _stage_entry, find_recipe

    config_cls, _ = _stage_entry(STAGES[stage][0])
    recipe = cfg.stages[stage].get("recipe")
    return load_config(config_cls, find_recipe(recipe) if recipe else None,
                       updates=stage_settings(cfg, stage, matched), updates_where=f"pipeline stages.{stage}")


def run_stage(cfg: PipelineConfig, stage: str, matched: dict) -> dict:
    from reasonlab.demo import _stage_entry

    return _stage_entry(STAGES[stage][0])[1](stage_config(cfg, stage, matched))


def collect(cfg: PipelineConfig) -> dict:
    """stage -> summary of every stage that finished."""
    out = {}
    for stage in STAGES:
        path = run_dir(cfg, stage) / "summary.json"
        if path.exists():
            out[stage] = json.loads(path.read_text())
    return out


def _f(value, fmt: str = ".3f") -> str:
    return "" if value is None else format(value, fmt)


def pipeline_table(results: dict) -> str:
    """One row per stage: what it trained on, its held-out accuracy, length and readability."""
    from reasonlab.demo import _cell

    lines = ["| stage | model | samples | train s | pass@1 [95% CI] | maj@k | mean length | consistency | mixed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for stage, summary in results.items():
        ev = summary.get("eval") or {}
        m = ev.get("metrics")
        if not m:
            continue
        top = max(m.get("ks", [1]))
        samples = summary.get("samples")
        train = summary.get("train_seconds")
        lines.append(f"| {stage} | {LABELS[stage]} | {'' if samples is None else f'{samples:,}'} | "
                     f"{'' if train is None else f'{train:.0f}'} | {_cell(m, 'pass@1')} | "
                     f"{_f(m.get(f'maj@{top}'))} | {_f(m.get('mean_length'), '.1f')} | "
                     f"{_f(m.get('language_consistency'))} | {_f(m.get('mixed_rate'))} |")
    return "\n".join(lines) + "\n"


def run_pipeline(cfg: PipelineConfig) -> dict:
    from reasonlab.io import atomic_write_json, atomic_write_text

    todo = check_config(cfg)
    times, matched = {}, {}
    for i, stage in enumerate(todo):
        if cfg.resume and (run_dir(cfg, stage) / "summary.json").exists():
            print(f"\n=== pipeline stage {i + 1}/{len(todo)}: {stage} (finished earlier: kept) ===", flush=True)
            continue
        for needed in STAGES[stage][1:]:
            if needed and not Path(model_of(cfg, needed)).exists():
                raise FileNotFoundError(f"pipeline: stage '{stage}' needs the model of '{needed}' "
                                        f"({model_of(cfg, needed)}); run that stage first")
        if stage == "student_rl" and (run_dir(cfg, "distill") / "metrics.jsonl").exists():
            matched[stage] = matched_student_rl(cfg)
        print(f"\n=== pipeline stage {i + 1}/{len(todo)}: {stage} — {LABELS[stage]} ===", flush=True)
        t0 = time.perf_counter()
        run_stage(cfg, stage, matched)
        times[stage] = round(time.perf_counter() - t0, 1)
    results = collect(cfg)
    table = pipeline_table(results)
    root = Path(cfg.runs_dir) / cfg.name
    timing = "Stage wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + "\n"
    atomic_write_text(root / "results.md", table + "\n" + timing)
    atomic_write_json(root / "results.json", results)
    print("\n" + table + "\n" + timing + f"tables in {root}/results.md")
    from reasonlab.demo import write_report

    write_report([run_dir(cfg, s) for s in STAGES], root / "report.html", f"reasonlab pipeline {cfg.name}")
    return {"stage": "pipeline", "run_dir": str(root), "stage_seconds": times, "stages": list(results)}
