"""``reasonlab demo``: the main job, end to end on a CPU with no downloads — the R1 story in small.

Stages (each a normal stage with its own recipe; the demo only chains them and writes a report):

1. ``pretrain``  — the tiny base model on synthetic reasoning traces, held-out eval (recipes/tiny.yaml);
2. ``verifiers`` — ORM and Monte-Carlo PRM value models for it (recipes/verifiers_tiny.yaml);
3. ``sweep``     — every test-time method at matched compute, budget curves (recipes/sweep_tiny.yaml);
4. ``grpo``      — RL with verifiable rewards from the base model (recipes/r1_zero_tiny.yaml);
5. ``rft``       — the rejection-sampling baseline at the same sample budget (recipes/rft_tiny.yaml);
6. ``distill``   — imitation: the GRPO model teaches the base model (recipes/distill_tiny.yaml).

Artifacts go to ``runs/<name>/`` (pretraining) and ``runs/<name>_<stage>/``; ``runs/<name>/results.md``
holds the tables the README shows. ``--stages=[grpo,rft]`` re-runs some stages on the artifacts of
the earlier ones; ``--quick=true`` is a one-minute smoke version of every stage.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

STAGES = ("pretrain", "verifiers", "sweep", "grpo", "rft", "distill")

# quick mode: tiny versions of every stage (a smoke test of the whole chain)
QUICK = {
    "pretrain": ["--max_steps=30", "--time_budget_s=0", "--eval.limit=20", "--eval.n=4", "--eval.ks=[1,2,4]",
                 "--batch_size=8"],
    "verifiers": ["--problems=24", "--samples=2", "--prm_samples=1", "--mc_k=2", "--epochs=1"],
    "sweep": ["--limit=12", "--n_max=4", "--search_ns=[4]"],
    # (30 pretraining steps solve nothing, so the preflight would rightly stop GRPO: skip it here)
    "grpo": ["--steps=3", "--time_budget_s=0", "--preflight=false", "--eval_every=0", "--prompts_per_step=4", "--group_size=4",
             "--eval_problems=12", "--eval.limit=12", "--eval.n=4", "--eval.ks=[1,2,4]"],
    "rft": ["--rounds=1", "--prompts_per_round=12", "--samples_per_prompt=4", "--eval_problems=12",
            "--eval.limit=12", "--eval.n=4", "--eval.ks=[1,2,4]"],
    "distill": ["--prompts_per_round=12", "--samples_per_prompt=4", "--eval_problems=12",
                "--eval.limit=12", "--eval.n=4", "--eval.ks=[1,2,4]"],
}

RECIPES = {"pretrain": "recipes/tiny.yaml", "verifiers": "recipes/verifiers_tiny.yaml",
           "sweep": "recipes/sweep_tiny.yaml", "grpo": "recipes/r1_zero_tiny.yaml", "rft": "recipes/rft_tiny.yaml",
           "distill": "recipes/distill_tiny.yaml"}


@dataclass
class DemoConfig:
    name: str = "demo"
    runs_dir: str = "runs"
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    quick: bool = False             # a smoke version of every stage (about a minute or two)
    resume: bool = False            # continue an interrupted demo: finished stages are kept
    overwrite: bool = False         # delete the demo's earlier runs and start over


RESUMABLE = ("pretrain", "verifiers", "grpo")
# rough wall seconds of each full stage on 2 idle cores (docs/LOG.md); only the ETA uses them
TYPICAL_S = {"pretrain": 430, "verifiers": 250, "sweep": 180, "grpo": 530, "rft": 700, "distill": 220}


def progress_line(index: int, todo: list[str], elapsed_s: float, done: list[str]) -> str:
    """``demo stage i/n: <stage> — ETA ...``: the remaining stages' typical times, scaled by how
    this machine has done so far against the typical times of the stages it finished.

    >>> progress_line(2, ["pretrain", "grpo"], 860.0, ["pretrain"])
    'demo stage 2/2: grpo (elapsed 14m20s, about 17m40s to go)'
    >>> progress_line(1, ["pretrain", "grpo"], 0.0, [])
    'demo stage 1/2: pretrain (elapsed 0m00s, about 16m00s to go)'
    """
    def clock(seconds: float) -> str:
        return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"

    typical_done = sum(TYPICAL_S.get(s, 0) for s in done)
    speed = elapsed_s / typical_done if typical_done and elapsed_s > 0 else 1.0
    remaining = speed * sum(TYPICAL_S.get(s, 0) for s in todo[index - 1:])
    return (f"demo stage {index}/{len(todo)}: {todo[index - 1]} (elapsed {clock(elapsed_s)}, "
            f"about {clock(remaining)} to go)")   # stages with `resume`; the others rerun unless finished


def find_recipe(path: str) -> Path:
    """A recipe path as given, or relative to the source checkout (for installed use)."""
    candidate = Path(path)
    if candidate.exists():
        return candidate
    bundled = Path(__file__).resolve().parent.parent / path
    if bundled.exists():
        return bundled
    raise FileNotFoundError(f"recipe not found: {path}")


def _cell(m: dict, key: str) -> str:
    lo, hi = m.get(f"{key}_ci", [None, None])
    return f"{m[key]:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{m[key]:.3f}"


def results_table(summary: dict) -> str:
    """The pretraining stage's table: pass@k and maj@k of the base model."""
    m = summary["eval"]["metrics"]
    ks = [k for k in m.get("ks", []) if f"pass@{k}" in m]
    lines = ["| metric | value [95% CI] |", "|---|---|"]
    lines += [f"| pass@{k} | {_cell(m, f'pass@{k}')} |" for k in ks]
    lines += [f"| maj@{k} | {_cell(m, f'maj@{k}')} |" for k in ks if k > 1 and f"maj@{k}" in m]
    ratio = m[f"pass@{ks[-1]}"] / m["pass@1"] if m.get("pass@1") else float("nan")
    lines.append(f"| pass@{ks[-1]} / pass@1 | {ratio:.2f} |")
    lines.append(f"| mean response length (tokens) | {m.get('mean_length', float('nan')):.1f} |")
    head = (f"Tiny model: {summary['params']:,} parameters, {summary['steps']} steps, "
            f"{summary['tokens_seen']:,} tokens, {summary['train_seconds']:.0f} s training; "
            f"eval {summary['eval']['eval_seconds']:.0f} s on {m['n_problems']} held-out "
            f"{summary['eval']['task']} problems, n={summary['eval']['n']}, T={summary['eval']['temperature']}.")
    return head + "\n\n" + "\n".join(lines) + "\n"


def agreement_line(summary: dict) -> str:
    """How often the verifier stage's hard MC labels agree with the arith oracle."""
    a, k = summary.get("agreement"), summary.get("mc_k")
    if not a or f"agreement@{k}" not in a:
        return "(no oracle for this task)\n"
    consistent = a.get(f"consistent_agreement@{k}")
    extra = "" if consistent is None else f"; consistent hard labels {consistent:.3f}"
    return (f"K={k} rollouts per step, {a['steps']:,} reasoning steps: Math-Shepherd hard labels agree on "
            f"{a[f'agreement@{k}']:.3f}{extra}.\n")


def sweep_table(summary: dict, ns: tuple[int, ...] = (4, 16, 64)) -> str:
    """Accuracy [95% CI] of every method at a few budgets, with tokens per problem."""
    points = {(p["method"], p["n"]): p for p in summary["points"]}
    methods = list(dict.fromkeys(p["method"] for p in summary["points"]))
    ns = tuple(n for n in ns if any(k[1] == n for k in points))
    lines = ["| method | " + " | ".join(f"N={n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]
    for method in methods:
        cells = []
        for n in ns:
            p = points.get((method, n))
            cells.append("" if p is None else
                         f"{p['accuracy']:.3f} [{p['ci'][0]:.3f}, {p['ci'][1]:.3f}] · {p['tokens']:.0f} tok")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    bars = [f"- {name}: {b['value']:.3f} vs {b['baseline']:.3f}, difference {b['difference']:+.3f} "
            f"[{b['ci'][0]:+.3f}, {b['ci'][1]:+.3f}] ({'holds' if b['passed'] else 'does not hold'})"
            for name, b in summary.get("bars", {}).items()]
    head = (f"{summary['n_problems']} held-out problems, N up to {summary['n_max']}, "
            f"{summary['timings']['total_s']:.0f} s for the whole sweep; tokens = policy + verifier per problem.")
    return head + "\n\n" + "\n".join(lines) + "\n\n" + "\n".join(bars) + "\n"


def rl_table(base: dict, runs: dict[str, dict]) -> str:
    """Base model against the RL-trained ones on the same held-out problems."""
    top = max(base["eval"]["metrics"]["ks"])
    lines = [f"| model | samples | train s | pass@1 [95% CI] | maj@{top} | pass@{top} | mean length |",
             "|---|---|---|---|---|---|---|"]
    rows = [("base", {"eval": base["eval"], "samples": None, "train_seconds": None})] + list(runs.items())
    for name, s in rows:
        m = s["eval"]["metrics"]
        samples = "" if s["samples"] is None else f"{s['samples']:,}"
        train = "" if s["train_seconds"] is None else f"{s['train_seconds']:.0f}"
        lines.append(f"| {name} | {samples} | {train} | {_cell(m, 'pass@1')} | {m.get(f'maj@{top}', float('nan')):.3f} "
                     f"| {m[f'pass@{top}']:.3f} | {m['mean_length']:.1f} |")
    return "\n".join(lines) + "\n"


def _run_stage(stage: str, cfg: DemoConfig, base_model: Path) -> dict:
    from reasonlab.config import load_config

    config_cls, fn = _stage_entry(stage)
    root = Path(cfg.runs_dir)
    name = cfg.name if stage == "pretrain" else f"{cfg.name}_{stage}"
    overrides = [f"--name={name}", f"--runs_dir={cfg.runs_dir}"] + _reuse_flags(stage, cfg)
    if stage != "pretrain":
        overrides.append(f"--model={base_model}")
    if stage == "sweep":
        overrides.append(f"--verifiers={root / (cfg.name + '_verifiers')}")
    if stage == "distill":
        overrides.append(f"--teacher={root / (cfg.name + '_grpo') / 'model'}")
    if stage == "rft" and not cfg.quick:
        overrides += _matched_rounds(root / f"{cfg.name}_grpo" / "summary.json", RECIPES["rft"])
    if cfg.quick:
        overrides += QUICK[stage]
    return fn(load_config(config_cls, find_recipe(RECIPES[stage]), overrides))


def _reuse_flags(stage: str, cfg: DemoConfig) -> list[str]:
    """How a stage treats its earlier run: ``--overwrite``, or under ``resume`` ``--resume``
    (resumable stages) or a fresh start (the others; a finished one is skipped by the caller,
    :func:`stage_finished`)."""
    if cfg.overwrite:
        return ["--overwrite=true"]
    if not cfg.resume:
        return []
    return ["--resume=true"] if stage in RESUMABLE else ["--overwrite=true"]


def stage_finished(stage: str, cfg: DemoConfig, run: Path) -> bool:
    """Under ``resume``, a non-resumable stage whose run finished is kept as it is."""
    return cfg.resume and stage not in RESUMABLE and (run / "summary.json").exists()


def _matched_rounds(grpo_summary: Path, rft_recipe: str) -> list[str]:
    """RFT rounds that spend the sample budget GRPO actually spent (its ``samples``), so the two
    are compared at equal samples; no override when GRPO has not run."""
    import math

    import yaml

    if not grpo_summary.exists():
        return []
    samples = json.loads(grpo_summary.read_text())["samples"]
    recipe = yaml.safe_load(find_recipe(rft_recipe).read_text())
    per_round = recipe["prompts_per_round"] * recipe["samples_per_prompt"]
    return [f"--rounds={max(1, math.floor(samples / per_round + 0.5))}"]


def _stage_entry(stage: str):
    """(config class, stage function) of a command, from the CLI's one table."""
    from reasonlab.cli import COMMANDS, _load

    config_spec, fn_spec, _ = COMMANDS[stage]
    return _load(config_spec), _load(fn_spec)


def _load_summary(path: Path, stage: str) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"demo: stage '{stage}' needs {path}; run it first (--stages=[{stage}, ...])")
    return json.loads(path.read_text())


SECTIONS = (("pretrain", "Base model (pretraining)"), ("verifiers", "Monte-Carlo step labels against the arith oracle"),
            ("sweep", "Test-time compute on the base model"), ("rl", "RL with verifiable rewards from the base model"))
RL_LABELS = (("grpo", "GRPO"), ("rft", "rejection sampling (RFT)"), ("distill", "base distilled from GRPO"))


def collect_results(root: Path, name: str) -> dict:
    """The stage summaries the README tables are made of (``results.json``): stage -> summary."""
    out = {}
    for stage in STAGES:
        path = root / (name if stage == "pretrain" else f"{name}_{stage}") / "summary.json"
        if path.exists():
            out[stage] = json.loads(path.read_text())
    return out


def render_sections(results: dict) -> dict[str, str]:
    """Section title -> markdown, from :func:`collect_results`'s dict (or a committed copy)."""
    base = results.get("pretrain")
    if base is None:
        return {}
    parts = {SECTIONS[0][1]: results_table(base)}
    if "verifiers" in results:
        parts[SECTIONS[1][1]] = agreement_line(results["verifiers"])
    if "sweep" in results:
        parts[SECTIONS[2][1]] = sweep_table(results["sweep"])
    runs = {label: results[stage] for stage, label in RL_LABELS if stage in results}
    if runs:
        parts[SECTIONS[3][1]] = rl_table(base, runs)
    return parts


def report(cfg: DemoConfig) -> str:
    """``results.md`` from whatever stages have artifacts."""
    sections = render_sections(collect_results(Path(cfg.runs_dir), cfg.name))
    return "\n".join(f"### {title}\n\n{text}" for title, text in sections.items())


def reproduction_line(new: dict | None, reference: dict | None) -> str:
    """Whether this demo's pretraining is the README's run: the first logged step whose loss
    differs from the committed reference (``docs/demo_results.json``), or "" with nothing to compare."""
    from reasonlab.runs import first_divergence

    if not new or not reference or not new.get("loss_trace") or not reference.get("loss_trace"):
        return ""
    d = first_divergence(reference["loss_trace"], new["loss_trace"])
    if not d["compared"]:
        return ""
    if d["step"] is None:
        return (f"Pretraining reproduced the README's run: the same loss at all {d['compared']} logged steps "
                "(the same base model).")
    return (f"Pretraining parted from the README's run at step {d['step']} (loss {d['other']:.6f} here, "
            f"{d['reference']:.6f} there): this machine's numerics differ (CPU kernels, bf16), so expect the "
            "figures within the spread the README states rather than equal to them.")


def write_report(runs: list[Path], out: Path, title: str) -> str:
    """The HTML report (``reasonlab report``) over the runs that exist; prints its path."""
    from reasonlab.report.build import ReportConfig, build_report

    present = [str(r) for r in runs if r.exists()]
    return build_report(ReportConfig(runs=present, out=str(out), title=title)) if present else ""


def reference_results() -> dict:
    """The committed results of the README's demo run ({} when not in a source checkout)."""
    try:
        return json.loads(find_recipe("docs/demo_results.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def run_demo(cfg: DemoConfig) -> dict:
    from reasonlab.config import ConfigError
    from reasonlab.io import atomic_write_json, atomic_write_text

    unknown = [s for s in cfg.stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"stages: unknown stage(s) {unknown}; choose from {list(STAGES)}")
    if cfg.resume and cfg.overwrite:
        raise ConfigError("resume and overwrite: choose one")
    root = Path(cfg.runs_dir)
    base_model = root / cfg.name / "model"
    times, summary = {}, {}
    todo, done, t_start = [s for s in STAGES if s in cfg.stages], [], time.perf_counter()
    for stage in todo:
        if stage != "pretrain" and not base_model.exists():
            raise FileNotFoundError(f"demo: stage '{stage}' needs the base model {base_model}; "
                                    "run the pretrain stage first")
        run = root / (cfg.name if stage == "pretrain" else f"{cfg.name}_{stage}")
        if stage_finished(stage, cfg, run):
            print(f"\n=== demo stage: {stage} (finished earlier: kept) ===", flush=True)
            continue
        print(f"\n=== {progress_line(todo.index(stage) + 1, todo, time.perf_counter() - t_start, done)} ===",
              flush=True)
        t0 = time.perf_counter()
        result = _run_stage(stage, cfg, base_model)
        times[stage] = round(time.perf_counter() - t0, 1)
        done.append(stage)
        if stage == "pretrain":
            summary = result
    table = report(cfg)
    timing = "Stage wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + "\n"
    atomic_write_text(root / cfg.name / "results.md", table + "\n" + timing)
    atomic_write_json(root / cfg.name / "results.json", collect_results(root, cfg.name))
    print("\n" + table + "\n" + timing)
    if not cfg.quick and "pretrain" in times:
        line = reproduction_line(collect_results(root, cfg.name).get("pretrain"), reference_results().get("pretrain"))
        if line:
            print(line)
    write_report([root / (cfg.name if s == "pretrain" else f"{cfg.name}_{s}") for s in STAGES],
                 root / cfg.name / "report.html", "reasonlab demo")
    print(f"artifacts: {root}/{cfg.name}/ and {root}/{cfg.name}_<stage>/; tables in {root}/{cfg.name}/results.md")
    summary = dict(summary) if summary else _load_summary(root / cfg.name / "summary.json", "pretrain")
    summary["run_dir"] = str(root / cfg.name)
    summary["stage_seconds"] = times
    return summary
