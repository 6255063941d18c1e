"""CoT-decoding (Wang & Zhou 2024): branch on the top-k first tokens, continue each branch
greedily, and measure confidence as the mean margin between the top two token probabilities
over the *answer span only* (the tokens inside the last ``<answer>`` block, or else the last
occurrence of the parsed answer). ``cot_decoding`` picks the most confident path;
``cot_weighted_vote`` sums confidences per canonical answer.

Deviation from the paper: branches are the top-``n`` first tokens of the model's first
distribution (the paper's k), and the answer span is located by characters, which is exact for
the character/word-piece tokenizer of the tiny model.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from reasonlab.eval.metrics import majority_vote
from reasonlab.search.base import (
    Policy,
    SearchConfig,
    SearchResult,
    fed_tokens,
    make_candidate,
    pick_best,
    register,
    sample_paths,
)


def answer_span(pieces: list[str], parsed: str | None) -> tuple[int, int] | None:
    """Token index range [a, b) of the answer: inside the last ``<answer>...</answer>``, else
    the last occurrence of ``parsed``.

    >>> answer_span(["x", "<answer>", "1", "2", "</answer>"], "12")
    (2, 4)
    """
    text = "".join(pieces)
    start = text.rfind("<answer>")
    if start >= 0:
        start += len("<answer>")
        end = text.find("</answer>", start)
        end = len(text) if end < 0 else end
    elif parsed:
        start = text.rfind(parsed)
        if start < 0:
            return None
        end = start + len(parsed)
    else:
        return None
    offsets, pos = [], 0
    for p in pieces:
        offsets.append((pos, pos + len(p)))
        pos += len(p)
    idx = [i for i, (a, b) in enumerate(offsets) if a < end and b > start and b > a]
    return (idx[0], idx[-1] + 1) if idx else None


def confidence(pieces: list[str], margins: list[float], parsed: str | None) -> float:
    span = answer_span(pieces, parsed)
    if span is None:
        return 0.0
    a, b = span
    return sum(margins[a:b]) / (b - a)


def top_first_tokens(n: int):
    """Row ``p*n + j`` starts with prompt ``p``'s ``j``-th most likely first token."""
    def pick(logits: torch.Tensor) -> torch.Tensor:
        per_prompt = logits.view(-1, n, logits.shape[-1])[:, 0]
        return per_prompt.topk(min(n, logits.shape[-1]), -1).indices.reshape(-1)
    return pick


def _run(problems, policy: Policy, cfg: SearchConfig, weighted: bool) -> list[SearchResult]:
    prompts = policy.prompts(problems)
    paths = sample_paths(policy, prompts, cfg.n, replace(cfg, temperature=0.0),
                         torch.Generator().manual_seed(cfg.seed), first_tokens=top_first_tokens(cfg.n),
                         margins=True)
    eos, out = policy.tokenizer.eos_id, []
    for i, p in enumerate(problems):
        cands = []
        for j in range(cfg.n):
            r = i * cfg.n + j
            c = make_candidate(policy, p, paths.tokens[r])
            pieces = [policy.tokenizer.decode([t]) for t in c.tokens]
            parsed = policy.task.verify(p, c.text).parsed
            c.score = confidence(pieces, paths.margins[r], parsed)
            cands.append(c)
        if weighted:
            key = majority_vote([c.key for c in cands], weights=[c.score for c in cands])
        else:
            best = pick_best(cands)
            key = best.key if best else None
        ok = key is not None and any(c.correct for c in cands if c.key == key)
        ptok = len(prompts[i]) + sum(fed_tokens(c.tokens, eos, cfg.max_new_tokens) for c in cands)
        out.append(SearchResult(p["id"], key, ok, cands, ptok, extras={"confidences": [c.score for c in cands]}))
    return out


@register("cot_decoding")
def cot_decoding(problems, policy: Policy, scorer, cfg: SearchConfig) -> list[SearchResult]:
    """The most confident of ``cfg.n`` greedy branches (no verifier)."""
    return _run(problems, policy, cfg, weighted=False)


@register("cot_weighted_vote")
def cot_weighted_vote(problems, policy: Policy, scorer, cfg: SearchConfig) -> list[SearchResult]:
    """Confidence-weighted vote over the ``cfg.n`` greedy branches."""
    return _run(problems, policy, cfg, weighted=True)
