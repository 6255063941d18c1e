"""Compute-matched budget curves: generate once at ``N_max``, subsample for smaller ``N``.

For every problem we hold ``N_max`` samples with their correctness, canonical answer keys,
token counts and verifier scores. A selection method (majority vote, best-of-N by a score,
weighted vote) is evaluated at ``N = 1, 2, 4, .., N_max`` on ``subsamples`` random subsets of
size ``N`` per problem (all subsets when there are fewer); the per-problem accuracy is the mean
over subsets, and the 95 % interval is a percentile bootstrap over problems. Compute is reported
as policy tokens (prompt once + sampled tokens) plus verifier tokens (prompt once + scored
tokens), averaged over the same subsets, and as wall time (measured at ``N_max``, scaled by
``N / N_max`` since generation and scoring are batched).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reasonlab.eval.metrics import bootstrap_ci, majority_vote, pass_at_k_array


@dataclass
class ProblemSamples:
    keys: list[str | None]
    correct: list[bool]
    lengths: list[int]                # tokens sampled per completion
    prompt_tokens: int
    scores: dict[str, list[float]]    # score name -> one score per sample


def budgets(n_max: int) -> list[int]:
    """1, 2, 4, .. up to ``n_max`` (``n_max`` included).

    >>> budgets(12)
    [1, 2, 4, 8, 12]
    """
    out, n = [], 1
    while n < n_max:
        out.append(n)
        n *= 2
    return out + [n_max]


def subsets(n_max: int, n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(R, n) index subsets: all of them when C(n_max, n) <= count, else ``count`` random ones."""
    if math.comb(n_max, n) <= count:
        import itertools

        return np.array(list(itertools.combinations(range(n_max), n)), dtype=np.int64).reshape(-1, n)
    return np.argsort(rng.random((count, n_max)), axis=1)[:, :n]


Selector = Callable[[ProblemSamples, np.ndarray], bool]


def vote(ps: ProblemSamples, idx: np.ndarray, weights: str | None = None) -> bool:
    keys = [ps.keys[i] for i in idx]
    w = None if weights is None else [ps.scores[weights][i] for i in idx]
    key = majority_vote(keys, w)
    return key is not None and any(ps.correct[i] for i in idx if ps.keys[i] == key)


def best_of(ps: ProblemSamples, idx: np.ndarray, score: str) -> bool:
    s = np.asarray(ps.scores[score])[idx]
    return bool(ps.correct[int(idx[int(np.argmax(s))])])


SELECTORS: dict[str, tuple[Callable[..., bool], str | None, bool]] = {
    # name -> (selector, score name, uses a verifier network)
    "majority": (vote, None, False),
    "best_of_n_orm": (best_of, "orm", True),
    "best_of_n_prm": (best_of, "prm", True),
    "weighted_vote_orm": (lambda ps, idx, s: vote(ps, idx, s), "orm", True),
    "weighted_vote_prm": (lambda ps, idx, s: vote(ps, idx, s), "prm", True),
    "best_of_n_oracle": (best_of, "oracle", False),
}


def curve(problems: list[ProblemSamples], method: str, n_max: int, count: int = 100, seed: int = 0,
          wall_s: float = 0.0, selector: tuple | None = None) -> list[dict]:
    """Budget curve of one subsampled method (``pass@k`` or a key of :data:`SELECTORS`, or any
    name with an explicit ``selector`` tuple). Each point keeps ``per_problem`` accuracies."""
    points = []
    for n in budgets(n_max):
        rng = np.random.default_rng([seed, n])
        acc, ptok, vtok = [], [], []
        for ps in problems:
            sub = subsets(n_max, n, count, rng)
            lens = np.asarray(ps.lengths)[sub].sum(1).mean()
            ptok.append(ps.prompt_tokens + lens)
            if method == "pass@k":
                c = int(sum(ps.correct))
                acc.append(float(pass_at_k_array(np.array([n_max]), np.array([c]), n)[0]))
                vtok.append(0.0)
                continue
            fn, score, network = selector or SELECTORS[method]
            acc.append(float(np.mean([fn(ps, s, score) if score else fn(ps, s) for s in sub])))
            vtok.append(ps.prompt_tokens + lens if network else 0.0)
        mean, lo, hi = bootstrap_ci(acc, seed=seed)
        p, v = float(np.mean(ptok)), float(np.mean(vtok))
        points.append({"method": method, "n": n, "accuracy": mean, "ci": [lo, hi], "policy_tokens": p,
                       "verifier_tokens": v, "tokens": p + v, "wall_s": wall_s * n / n_max,
                       "per_problem": acc})
    return points


def paired_difference(a: list[float], b: list[float], n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean of ``a - b`` over the same problems with a percentile bootstrap 95 % interval."""
    mean, lo, hi = bootstrap_ci(np.asarray(a) - np.asarray(b), n_boot=n_boot, seed=seed)
    return {"difference": mean, "ci": [lo, hi]}


BARS = (
    # name, (method, n), (baseline method, n), required margin
    ("maj@16 >= pass@1 + 0.10", ("majority", 16), ("pass@k", 1), 0.10),
    ("best_of_16_prm >= maj@16 - 0.02", ("best_of_n_prm", 16), ("majority", 16), -0.02),
)


def bars(per_problem: dict, seed: int = 0) -> dict:
    """The issue's bars from per-problem accuracies keyed by (method, n): each with both
    accuracies, the paired difference and its interval, and whether the point estimate passes."""
    out = {}
    for name, a, b, margin in BARS:
        if a in per_problem and b in per_problem:
            diff = paired_difference(per_problem[a], per_problem[b], seed=seed)
            out[name] = {"value": float(np.mean(per_problem[a])), "baseline": float(np.mean(per_problem[b])),
                         **diff, "required": margin, "passed": diff["difference"] >= margin}
    return out


def search_point(method: str, n: int, correct: list[bool], policy_tokens: list[int], verifier_tokens: list[int],
                 wall_s: float, seed: int = 0) -> dict:
    """One point of a method that is run at each budget (tree search, CoT-decoding)."""
    mean, lo, hi = bootstrap_ci([float(c) for c in correct], seed=seed)
    p, v = float(np.mean(policy_tokens)), float(np.mean(verifier_tokens))
    return {"method": method, "n": n, "accuracy": mean, "ci": [lo, hi], "policy_tokens": p,
            "verifier_tokens": v, "tokens": p + v, "wall_s": wall_s}


def markdown_table(points: list[dict]) -> str:
    lines = ["| method | N | accuracy [95% CI] | policy tokens / problem | verifier tokens / problem | wall s |",
             "|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['method']} | {p['n']} | {p['accuracy']:.3f} [{p['ci'][0]:.3f}, {p['ci'][1]:.3f}] | "
                     f"{p['policy_tokens']:.0f} | {p['verifier_tokens']:.0f} | {p['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


def plot_budget(points: list[dict], path, title: str | None = None):
    """One PNG: accuracy (with 95 % bands) against tokens per problem (log2), one line per
    method; sampled methods solid, searched ones (single points per budget) dashed."""
    from matplotlib import colormaps

    from reasonlab.eval.plots import _new_figure, _save_png

    methods = list(dict.fromkeys(p["method"] for p in points))
    if not methods:
        raise ValueError("plot_budget: no points")
    colors = colormaps["tab20"].colors
    fig = _new_figure((7.5, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    for i, method in enumerate(methods):
        pts = sorted((p for p in points if p["method"] == method), key=lambda p: p["tokens"])
        x = [p["tokens"] for p in pts]
        style = "-" if method in SELECTORS or method == "pass@k" else "--"
        ax.plot(x, [p["accuracy"] for p in pts], style, marker="os^Dv<>p"[i % 8], markersize=4,
                color=colors[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20], label=method)
        ax.fill_between(x, [p["ci"][0] for p in pts], [p["ci"][1] for p in pts],
                        color=colors[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20], alpha=0.12, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("tokens per problem (policy + verifier)")
    ax.set_ylabel("accuracy")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return _save_png(fig, path)
