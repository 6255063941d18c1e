"""Validation of value models on held-out *training* problems: how well a verifier ranks the
solutions of one problem (what best-of-N needs), not only how well it ranks across problems.

``validation_report`` scores every held-out solution with a value model (one full forward per
solution, outputs read at the step ends) and returns, per aggregation, the mean within-problem
AUROC (problems with both right and wrong solutions), the global AUROC and best-of-n accuracy.
Used to choose training options and the aggregation without looking at the test split.
"""
from __future__ import annotations

import torch

from reasonlab.verifiers.scorers import AGGREGATIONS, aggregate, step_ends
from reasonlab.verifiers.value_model import value_logits


def auroc(scores: list[float], labels: list[bool]) -> float | None:
    """Probability that a random positive outscores a random negative (ties count half);
    None without both classes.

    >>> auroc([0.9, 0.1, 0.5], [True, False, False]), auroc([0.3], [True])
    (1.0, None)
    """
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def within_group_auroc(scores: list[float], labels: list[bool], groups: list[int]) -> tuple[float | None, int]:
    """(mean AUROC over groups holding both classes, number of such groups)."""
    by: dict[int, tuple[list, list]] = {}
    for s, y, g in zip(scores, labels, groups):
        by.setdefault(g, ([], []))
        by[g][0].append(s)
        by[g][1].append(y)
    vals = [a for a in (auroc(s, y) for s, y in by.values()) if a is not None]
    return (sum(vals) / len(vals) if vals else None), len(vals)


def best_of_group(scores: list[float], labels: list[bool], groups: list[int]) -> float:
    """Accuracy of taking each group's top-scored solution (first one on ties)."""
    best: dict[int, tuple[float, bool]] = {}
    for s, y, g in zip(scores, labels, groups):
        if g not in best or s > best[g][0]:
            best[g] = (s, y)
    return sum(y for _, y in best.values()) / max(1, len(best))


@torch.no_grad()
def step_probabilities(model, prompts: list[list[int]], solutions: list[tuple[int, list[int]]], sep_id: int,
                       pad_id: int, batch_size: int = 64) -> list[list[float]]:
    """Per solution, the head's probability (output 0) after each step's last token."""
    model.eval()
    out = []
    for start in range(0, len(solutions), batch_size):
        chunk = solutions[start: start + batch_size]
        seqs = [prompts[p] + comp for p, comp in chunk]
        ids = torch.full((len(seqs), max(map(len, seqs))), pad_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
        probs = torch.sigmoid(value_logits(model, ids, [len(prompts[p]) for p, _ in chunk])[..., 0])
        for i, (p, comp) in enumerate(chunk):
            out.append([float(probs[i, len(prompts[p]) + e]) for e in step_ends(comp, sep_id)])
    return out


def validation_report(model, prompts, solutions, correct: list[bool], sep_id: int, pad_id: int,
                      aggs: tuple[str, ...] = tuple(AGGREGATIONS)) -> dict:
    """Ranking quality of ``model`` on held-out solutions, per aggregation of its step scores."""
    steps = step_probabilities(model, prompts, solutions, sep_id, pad_id)
    groups = [p for p, _ in solutions]
    report = {"solutions": len(solutions), "problems": len(set(groups)),
              "accuracy": sum(correct) / max(1, len(correct))}
    for how in aggs:
        scores = [aggregate(s, how) for s in steps]
        within, n_mixed = within_group_auroc(scores, correct, groups)
        report[how] = {"within_auroc": within, "mixed_problems": n_mixed, "auroc": auroc(scores, correct),
                       "best_of_n": best_of_group(scores, correct, groups)}
    return report
