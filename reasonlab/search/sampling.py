"""Strategies over N independent samples: repeated sampling (pass@k), majority vote,
best-of-N with an ORM or a PRM, verifier-weighted vote.

All of them draw the same samples (``sample_paths``: each prompt encoded once, ``n`` rows) and,
when a scorer is given, score every sample incrementally (the scorer encodes each prompt once
and then only the completion tokens). ``best_of_n_prm`` and ``weighted_vote`` aggregate step
scores with ``cfg.agg``; ``best_of_n_orm`` uses the score after the last token.
"""
from __future__ import annotations

import torch

from reasonlab.eval.metrics import majority_vote, pass_at_k
from reasonlab.search.base import (
    Candidate,
    Policy,
    SearchConfig,
    SearchResult,
    fed_tokens,
    make_candidate,
    pick_best,
    register,
    sample_paths,
)
from reasonlab.verifiers.scorers import aggregate, step_scores


def sample_and_score(problems: list[dict], policy: Policy, scorer, cfg: SearchConfig
                     ) -> tuple[list[list[Candidate]], list[int], list[int]]:
    """-> candidates per problem (with ``step_scores`` when scored), policy and verifier tokens
    per problem."""
    gen = torch.Generator().manual_seed(cfg.seed)
    prompts = policy.prompts(problems)
    paths = sample_paths(policy, prompts, cfg.n, cfg, gen)
    cands = [[make_candidate(policy, p, paths.tokens[i * cfg.n + j]) for j in range(cfg.n)]
             for i, p in enumerate(problems)]
    eos = policy.tokenizer.eos_id
    ptoks = [len(pr) + sum(fed_tokens(c.tokens, eos, cfg.max_new_tokens) for c in cs)
             for pr, cs in zip(prompts, cands)]
    vtoks = [0] * len(problems)
    if scorer is not None:
        if hasattr(scorer, "score"):
            scores = scorer.score(problems, prompts, cfg.n, paths.tokens)
        else:
            scores = scorer.extend(scorer.start(problems, prompts, cfg.n, cfg.max_new_tokens), paths.tokens)
        for i, cs in enumerate(cands):
            for j, c in enumerate(cs):
                c.step_scores = step_scores(c.tokens, scores[i * cfg.n + j], policy.sep_id)
            if getattr(scorer, "network", False):
                vtoks[i] = len(prompts[i]) + sum(len(c.tokens) for c in cs)
    return cands, ptoks, vtoks


def _result(problem, cands, chosen_key, ptok, vtok, **extras) -> SearchResult:
    ok = chosen_key is not None and any(c.correct for c in cands if c.key == chosen_key)
    return SearchResult(problem["id"], chosen_key, ok, cands, ptok, vtok, extras=extras)


def _run(problems, policy, scorer, cfg, choose):
    cands, ptoks, vtoks = sample_and_score(problems, policy, scorer, cfg)
    return [_result(p, cs, choose(cs), pt, vt) for p, cs, pt, vt in zip(problems, cands, ptoks, vtoks)]


@register("sample")
def repeated_sampling(problems, policy: Policy, scorer, cfg: SearchConfig) -> list[SearchResult]:
    """Repeated sampling: ``correct`` is pass@n (some sample right); ``extras`` has the unbiased
    pass@k (Chen et al. 2021) for k = 1, 2, 4, .. n. The chosen answer is the first sample's."""
    cands, ptoks, _ = sample_and_score(problems, policy, None, cfg)
    out = []
    for p, cs, pt in zip(problems, cands, ptoks):
        c = sum(x.correct for x in cs)
        ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k <= cfg.n]
        res = SearchResult(p["id"], cs[0].key, c > 0, cs, pt, extras={f"pass@{k}": pass_at_k(cfg.n, c, k) for k in ks})
        out.append(res)
    return out


@register("majority")
def majority(problems, policy: Policy, scorer, cfg: SearchConfig) -> list[SearchResult]:
    """Self-consistency: the most frequent canonical answer (``task.canonical``)."""
    return _run(problems, policy, None, cfg, lambda cs: majority_vote([c.key for c in cs]))


def _orm_score(c: Candidate) -> float:
    return c.step_scores[-1] if c.step_scores else 0.0


@register("best_of_n_orm")
def best_of_n_orm(problems, policy: Policy, scorer, cfg: SearchConfig) -> list[SearchResult]:
    """The sample the outcome verifier scores highest (score after the last token)."""
    def choose(cs):
        for c in cs:
            c.score = _orm_score(c)
        best = pick_best(cs)
        return best.key if best else None
    return _run(problems, policy, scorer, cfg, choose)


@register("best_of_n_prm")
def best_of_n_prm(problems, policy: Policy, scorer, cfg: SearchConfig) -> list[SearchResult]:
    """The sample with the best aggregated PRM step scores (``cfg.agg``)."""
    def choose(cs):
        for c in cs:
            c.score = aggregate(c.step_scores, cfg.agg)
        best = pick_best(cs)
        return best.key if best else None
    return _run(problems, policy, scorer, cfg, choose)


@register("weighted_vote")
def weighted_vote(problems, policy: Policy, scorer, cfg: SearchConfig) -> list[SearchResult]:
    """Verifier-weighted majority vote: each answer's weight is the sum of its samples'
    aggregated scores (``cfg.agg``; use ``last`` for an ORM)."""
    def choose(cs):
        for c in cs:
            c.score = aggregate(c.step_scores, cfg.agg)
        return majority_vote([c.key for c in cs], weights=[c.score for c in cs])
    return _run(problems, policy, scorer, cfg, choose)
