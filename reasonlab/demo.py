"""``reasonlab demo``: the main job, end to end on a CPU with no downloads.

Stage 1 (this release): pretrain the tiny model on synthetic reasoning traces, evaluate it on
held-out arith problems (pass@1, pass@k, maj@k with 95 % intervals), plot loss and accuracy
against k, and write ``runs/<name>/results.md`` — the table the README shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class DemoConfig:
    name: str = "demo"
    runs_dir: str = "runs"
    recipe: str = "recipes/tiny.yaml"
    quick: bool = False             # a 1-minute smoke version (tiny budget, few problems)


def find_recipe(path: str) -> Path:
    """A recipe path as given, or relative to the source checkout (for installed use)."""
    candidate = Path(path)
    if candidate.exists():
        return candidate
    bundled = Path(__file__).resolve().parent.parent / path
    if bundled.exists():
        return bundled
    raise FileNotFoundError(f"recipe not found: {path}")


def results_table(summary: dict) -> str:
    m = summary["eval"]["metrics"]
    ks = [k for k in m.get("ks", []) if f"pass@{k}" in m]

    def cell(key):
        lo, hi = m.get(f"{key}_ci", [None, None])
        return f"{m[key]:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{m[key]:.3f}"

    lines = ["| metric | value [95% CI] |", "|---|---|"]
    lines += [f"| pass@{k} | {cell(f'pass@{k}')} |" for k in ks]
    lines += [f"| maj@{k} | {cell(f'maj@{k}')} |" for k in ks if k > 1 and f"maj@{k}" in m]
    ratio = m[f"pass@{ks[-1]}"] / m["pass@1"] if m.get("pass@1") else float("nan")
    lines.append(f"| pass@{ks[-1]} / pass@1 | {ratio:.2f} |")
    lines.append(f"| mean response length (tokens) | {m.get('mean_length', float('nan')):.1f} |")
    head = (f"Tiny model: {summary['params']:,} parameters, {summary['steps']} steps, "
            f"{summary['tokens_seen']:,} tokens, {summary['train_seconds']:.0f} s training; "
            f"eval {summary['eval']['eval_seconds']:.0f} s on {m['n_problems']} held-out "
            f"{summary['eval']['task']} problems, n={summary['eval']['n']}, T={summary['eval']['temperature']}.")
    return head + "\n\n" + "\n".join(lines) + "\n"


def run_demo(cfg: DemoConfig) -> dict:
    from reasonlab.config import load_config
    from reasonlab.io import atomic_write_text
    from reasonlab.train.pretrain import PretrainConfig, pretrain

    overrides = [f"--name={cfg.name}", f"--runs_dir={cfg.runs_dir}"]
    if cfg.quick:
        overrides += ["--max_steps=30", "--time_budget_s=0", "--eval.limit=20", "--eval.n=4",
                      "--eval.ks=[1,2,4]", "--batch_size=8"]
    pcfg = load_config(PretrainConfig, find_recipe(cfg.recipe), overrides)
    summary = pretrain(pcfg)
    run = Path(cfg.runs_dir) / cfg.name
    table = results_table(summary)
    atomic_write_text(run / "results.md", table)
    print("\n" + table)
    print(f"artifacts: {run}/ (summary.json, results.jsonl, loss.png, accuracy_vs_k.png, model/)")
    summary["run_dir"] = str(run)
    return summary
