"""PRM-guided step-level beam search and DVTS (Beeching et al. 2024, "search-and-learn").

Both run one batch over all problems: each problem starts ``n`` rows (its prompt encoded once),
every row samples one step (up to the task's step separator), the PRM scores the step
incrementally, and within each *group* the ``n / beam_width`` (beam search) or 1 (DVTS) best
active paths by aggregated score (``cfg.agg``) are forked ``beam_width`` times with ``select`` (KV
copied, not re-encoded). Beam search has one group per problem; DVTS splits the budget into
``n / beam_width`` independent subtrees. Finished paths are final candidates; the answer is the
best by the same aggregation. Every node is recorded in ``SearchResult.tree``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from reasonlab.search.base import (
    Policy,
    SearchConfig,
    SearchResult,
    capacity,
    generate_step,
    make_candidate,
    pick_best,
    prefill,
    register,
)
from reasonlab.verifiers.scorers import aggregate


@dataclass
class Row:
    problem: int
    group: int
    node: int
    tokens: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


def check_budget(cfg: SearchConfig) -> int:
    if cfg.beam_width < 1 or cfg.n % cfg.beam_width:
        raise ValueError(f"n={cfg.n} must be a multiple of beam_width={cfg.beam_width}")
    return cfg.n // cfg.beam_width


def _choose(rows: list[Row], idx: list[int], keep: int, agg: str) -> list[int]:
    ranked = sorted(idx, key=lambda i: -aggregate(rows[i].scores, agg))
    return ranked[:keep]


def grouped_search(problems, policy: Policy, scorer, cfg: SearchConfig, groups: int, keep: int,
                   max_depth: int = 64) -> list[SearchResult]:
    if scorer is None:
        raise ValueError("tree search needs a scorer (a PRM)")
    gen = torch.Generator().manual_seed(cfg.seed)
    prompts = policy.prompts(problems)
    cap = capacity(policy, prompts, cfg)
    logits, state = prefill(policy, prompts, cfg.n, cap)
    sstate = scorer.start(problems, prompts, cfg.n, cap)
    per_group = cfg.n // groups
    rows = [Row(i // cfg.n, (i % cfg.n) // per_group, -1) for i in range(len(problems) * cfg.n)]
    lengths = torch.zeros(len(rows), dtype=torch.long)
    trees: list[list[dict]] = [[] for _ in problems]
    finished: list[list[Row]] = [[] for _ in problems]
    ptoks = [len(p) for p in prompts]
    scored = getattr(scorer, "network", False)        # a network (not an oracle) scores
    vtoks = [len(p) if scored else 0 for p in prompts]
    room = cap
    for _depth in range(max_depth):
        step, logits = generate_step(policy, state, logits, lengths, cfg, gen, room)
        room = step.room
        values = scorer.extend(sstate, step.tokens)
        for r, (row, toks, vals, fed) in enumerate(zip(rows, step.tokens, values, step.fed)):
            ptoks[row.problem] += fed
            vtoks[row.problem] += len(toks) if scored else 0
            row.tokens = row.tokens + toks
            row.scores = row.scores + [vals[-1] if vals else 0.0]
            tree = trees[row.problem]
            tree.append({"parent": row.node, "group": row.group, "text": policy.tokenizer.decode(toks),
                         "score": row.scores[-1], "done": bool(step.done[r])})
            row.node = len(tree) - 1
        keep_rows: list[int] = []
        for (p, g), idx in _by_group(rows).items():
            live = [i for i in idx if not step.done[i]]
            finished[p] += [rows[i] for i in idx if step.done[i]]
            for i in _choose(rows, live, keep, cfg.agg):
                keep_rows += [i] * cfg.beam_width
        if not keep_rows or room <= 0:
            break
        sel = torch.tensor(keep_rows)
        state, sstate = policy.runner.select(state, sel), scorer.select(sstate, sel)
        logits, lengths = logits[sel], lengths[sel]
        rows = [Row(rows[i].problem, rows[i].group, rows[i].node, rows[i].tokens, rows[i].scores) for i in keep_rows]
    return [_result(policy, p, finished[i] or [r for r in rows if r.problem == i], trees[i], ptoks[i], vtoks[i],
                    cfg.agg, finished=bool(finished[i]))
            for i, p in enumerate(problems)]


def _by_group(rows: list[Row]) -> dict[tuple[int, int], list[int]]:
    out: dict[tuple[int, int], list[int]] = {}
    for i, r in enumerate(rows):
        out.setdefault((r.problem, r.group), []).append(i)
    return out


def _result(policy, problem, rows, tree, ptok, vtok, agg, finished=True) -> SearchResult:
    cands = []
    for r in rows:
        c = make_candidate(policy, problem, r.tokens, finished)
        c.step_scores, c.score = r.scores, aggregate(r.scores, agg)
        cands.append(c)
    best = pick_best(cands)
    key = best.key if best else None
    return SearchResult(problem["id"], key, bool(best and best.correct), cands, ptok, vtok, tree=tree)


@register("beam_search")
def beam_search(problems, policy: Policy, scorer, cfg: SearchConfig) -> list[SearchResult]:
    """Keep the ``n / beam_width`` best paths per problem, each expanded ``beam_width`` times."""
    return grouped_search(problems, policy, scorer, cfg, groups=1, keep=check_budget(cfg))


@register("dvts")
def dvts(problems, policy: Policy, scorer, cfg: SearchConfig) -> list[SearchResult]:
    """Diverse verifier tree search: ``n / beam_width`` independent subtrees, each keeping its
    single best path and expanding it ``beam_width`` times."""
    return grouped_search(problems, policy, scorer, cfg, groups=check_budget(cfg), keep=1)
