"""Diagnostics for RL runs: per-step metrics, preflight checks, held-out evaluation, plots.

Everything here reads rollouts or logs and returns plain dicts; nothing changes training state.
"""
from __future__ import annotations

import numpy as np

from reasonlab.config import ConfigError


class PreflightError(ConfigError):
    """The first sampled batch shows the run cannot learn; the message says how to fix it."""


def rollout_metrics(groups, parts: dict[str, list[float]], totals: list[float], texts: list[str],
                    reflection_marker: str, zero_var_frac: float) -> dict:
    """Metrics of the scored groups of one step (before any zero-variance groups are dropped)."""
    lengths = np.array([len(r.ids) for g in groups for r in g.rows], dtype=float)
    finish = [r.finish for g in groups for r in g.rows]
    out = {"reward": float(np.mean(totals)), "accuracy": float(np.mean(parts["accuracy"])),
           "length_mean": float(lengths.mean()), "length_p90": float(np.percentile(lengths, 90)),
           "truncation_rate": finish.count("length") / len(finish),
           "zero_variance_frac": zero_var_frac,
           "reflection_rate": float(np.mean([reflection_marker in t for t in texts]))}
    out.update({f"reward_{k}": float(np.mean(v)) for k, v in parts.items()})
    return out


def sample_rows(step: int, pool: list[dict], groups, texts: list[str], totals: list[list[float]],
                accuracy: list[float], parsed: list, n: int) -> list[dict]:
    """Up to ``n`` rollouts of one step for ``samples.jsonl`` (what the policy wrote, as training saw
    it): the first completion of each of the step's first ``n`` scored groups. ``texts``,
    ``accuracy`` and ``parsed`` are flat in group order, ``totals`` per group.

    >>> class G: index, rows = 0, [None, None]
    >>> sample_rows(5, [{"id": "p", "question": "q", "answer": "4"}], [G()], ["<answer>4</answer>", "x"],
    ...             [[1.1, 0.0]], [1.0, 0.0], ["4", None], 4)[0]["correct"]
    True
    """
    out, at = [], 0
    for grp, total in zip(groups, totals):
        if len(out) < n:
            problem = pool[grp.index]
            out.append({"step": step, "id": problem.get("id"), "question": problem.get("question"),
                        "answer": problem.get("answer"), "completion": texts[at], "reward": total[0],
                        "correct": bool(accuracy[at] > 0) if at < len(accuracy) else None,
                        "parsed": parsed[at] if at < len(parsed) else None})
        at += len(grp.rows)
    return out


def preflight(groups, parts: dict[str, list[float]], totals_by_group: list[list[float]], parsed: list) -> None:
    """Stop with a fix hint when a sampled batch shows the run cannot learn."""
    finish = [r.finish for g in groups for r in g.rows]
    if finish and all(f == "length" for f in finish):
        raise PreflightError(
            "preflight: no completion terminated (all hit max_new_tokens); raise max_new_tokens, check that "
            "the model emits its EOS token, or pretrain/SFT it on the template first")
    if parsed and all(p is None for p in parsed):
        raise PreflightError(
            "preflight: no completion contained an answer the verifier could parse (every reward is the "
            "no-answer case); check the prompt template matches the task's answer format "
            "(template: r1 -> <answer>...</answer>) or start from a model that follows it")
    if totals_by_group and all(len(set(t)) <= 1 for t in totals_by_group):
        raise PreflightError(
            "preflight: every group has zero reward variance, so every advantage is 0; use problems the "
            "model sometimes solves (difficulty options in train_generate), more samples per prompt "
            "(group_size), a higher temperature, or prompts.mode: curriculum")


def heldout_eval(sample_fn, tokenizer, task, problems: list[dict], template: str, n: int, max_new: int,
                 seed: int, ks: list[int]) -> dict:
    """pass@1 and maj@k of the current policy on held-out ``problems`` (n samples each, T=1)."""
    from reasonlab.engine.sampler import SamplingConfig
    from reasonlab.eval.metrics import summarize_samples
    from reasonlab.eval.run import score_completions

    prompts = [tokenizer.prompt_ids(task.format_prompt(p, template)) for p in problems]
    batch = sample_fn(prompts, SamplingConfig(n=n, max_new_tokens=max_new, temperature=1.0, seed=seed))
    rows = []
    for i, example in enumerate(problems):
        texts = [tokenizer.decode(batch.completion_ids[r]) for r in range(i * n, (i + 1) * n)]
        rows.append({"id": example["id"], **score_completions(task, example, texts)})
    m = summarize_samples(rows, [k for k in ks if k <= n], n_boot=200)
    return {f"heldout_{k}": m[k] for k in m if k.startswith(("pass@", "maj@")) and not k.endswith("_ci")}


PLOTS = {
    "accuracy.png": (["accuracy", "heldout_pass@1", "heldout_maj@"], "accuracy"),
    "reward.png": (["reward"], "reward"),
    "length.png": (["length_mean", "length_p90"], "completion tokens"),
    "rates.png": (["truncation_rate", "zero_variance_frac", "reflection_rate", "clip_frac"], "rate"),
    "entropy_kl.png": (["entropy", "kl"], "nats / token"),
    "speed.png": (["tokens_per_s"], "generated tokens / s"),
}


def plot_run(log: list[dict], run_dir, smooth: int = 10) -> list:
    """One PNG per family of metrics against steps (the R1-Zero accuracy / length figures).
    Per-step training metrics are drawn as ``smooth``-step running means; held-out points as is."""
    from reasonlab.eval.plots import plot_curves

    written = []
    for fname, (prefixes, ylabel) in PLOTS.items():
        curves = {}
        keys = sorted({k for row in log for k in row if k != "heldout_maj@1" and any(
            k == p or (p.endswith("@") and k.startswith(p)) or (p == "reward" and k.startswith("reward_"))
            for p in prefixes)})
        for key in keys:
            pts = [(row["step"], row[key]) for row in log if row.get(key) is not None]
            if not pts:
                continue
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            if not key.startswith("heldout_") and smooth > 1:
                ys = [sum(ys[max(0, i - smooth + 1): i + 1]) / len(ys[max(0, i - smooth + 1): i + 1])
                      for i in range(len(ys))]
                key = f"{key} ({smooth}-step mean)"
            curves[key] = (xs, ys)
        if curves:
            written.append(plot_curves(curves, run_dir / fname, xlabel="step", ylabel=ylabel))
    return written


def write_summary(cfg, run, summary: dict, model, tokenizer, progress: bool) -> dict:
    """A training stage's last act: the full held-out evaluation of ``model`` (``cfg.eval`` with
    the stage's template, when ``cfg.final_eval``) into ``summary["eval"]``, then ``summary.json``."""
    from reasonlab.eval.run import evaluate
    from reasonlab.io import atomic_write_json

    if cfg.final_eval:
        cfg.eval.template = cfg.template
        summary["eval"] = evaluate(cfg.eval, model=model, tokenizer=tokenizer, run_dir=run, progress=progress)
    atomic_write_json(run / "summary.json", summary)
    return summary
