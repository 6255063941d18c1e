"""Monte-Carlo tree search over reasoning steps, batched across problems.

One simulation per problem per round:

1. **selection**: from the root, follow the child maximising PUCT ``Q + c * P * sqrt(N_parent) /
   (1 + N)`` (uniform prior P over a node's children) or UCT ``Q + c * sqrt(ln N_parent / N)``
   until a node without children (or a finished path) is reached;
2. **expansion**: the leaf's KV row is forked ``beam_width`` times and each child samples one step;
3. **evaluation**: each child is rolled out to the end of the solution (sampled; the rollout is
   a candidate, not part of the tree) and scored by the PRM (``cfg.agg`` over the rollout's step
   scores);
4. **back-propagation**: every child's value is added to the visit counts and value sums of the
   child and all its ancestors.

Rounds run until ``cfg.n`` rollouts per problem are spent (``n / beam_width`` rounds). The answer:
descend from the root by visit counts to a leaf and take the best-scoring candidate below it.
Node KV lives in per-round states (policy and scorer) that are selected and concatenated, never
re-encoded; rollouts fork a copy, so a node can still be expanded later.
"""
from __future__ import annotations

import math
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
from reasonlab.search.tree import check_budget
from reasonlab.verifiers.scorers import aggregate, step_scores


@dataclass
class Node:
    parent: int
    tokens: list[int]                 # the full path from the prompt
    scores: list[float]               # step scores along the path
    ref: tuple[int, int]              # (round, row) of its KV in the per-round states
    room: int = 0                     # own-cache columns left in that state
    done: bool = False
    children: list[int] = field(default_factory=list)
    visits: int = 0
    value: float = 0.0                # sum of back-propagated values
    rollouts: list[int] = field(default_factory=list)   # candidate indices evaluated from here


def select_leaf(nodes: list[Node], c: float, rule: str) -> int:
    """Descend from node 0 by PUCT / UCT to a node without children (or a finished one)."""
    i = 0
    while nodes[i].children and not nodes[i].done:
        parent = nodes[i]
        best, best_u = None, -math.inf
        for j in parent.children:
            ch = nodes[j]
            q = ch.value / ch.visits if ch.visits else 0.0
            if rule == "uct":
                u = math.inf if ch.visits == 0 else q + c * math.sqrt(math.log(max(1, parent.visits)) / ch.visits)
            else:
                u = q + c * (1.0 / len(parent.children)) * math.sqrt(parent.visits) / (1 + ch.visits)
            if u > best_u:
                best, best_u = j, u
        i = best
    return i


def backpropagate(nodes: list[Node], i: int, value: float) -> None:
    while i >= 0:
        nodes[i].visits += 1
        nodes[i].value += value
        i = nodes[i].parent


def _gather(states, logits, refs, copies, runner, scorer):
    """Fork the KV rows ``refs`` ((round, row) each) ``copies`` times into one batch."""
    pol, sco, lg = [], [], []
    for rnd, row in refs:
        idx = torch.full((copies,), row, dtype=torch.long)
        pol.append(runner.select(states[rnd][0], idx))
        sco.append(scorer.select(states[rnd][1], idx))
        lg.append(logits[rnd][idx])
    return runner.concat(pol), scorer.concat(sco), torch.cat(lg)


@register("mcts")
def mcts(problems, policy: Policy, scorer, cfg: SearchConfig) -> list[SearchResult]:
    if scorer is None:
        raise ValueError("mcts needs a scorer (a PRM)")
    rounds, m = check_budget(cfg), cfg.beam_width
    gen = torch.Generator().manual_seed(cfg.seed)
    runner = policy.runner
    prompts = policy.prompts(problems)
    cap = capacity(policy, prompts, cfg, factor=3)
    logits0, state0 = prefill(policy, prompts, 1, cap)
    states = [(state0, scorer.start(problems, prompts, 1, cap))]
    logits = [logits0]
    trees = [[Node(-1, [], [], (0, i), cap)] for i in range(len(problems))]
    cands: list[list] = [[] for _ in problems]
    scored = getattr(scorer, "network", False)
    ptoks = [len(p) for p in prompts]
    vtoks = [len(p) if scored else 0 for p in prompts]
    for _ in range(rounds):
        leaves = _select_leaves(trees, cfg)
        if not leaves:
            break
        room = max(trees[i][j].room for i, j in leaves)     # concat keeps the roomiest state's room
        pstate, sstate, lg = _gather(states, logits, [trees[i][j].ref for i, j in leaves], m, runner, scorer)
        lengths = torch.tensor([len(trees[i][j].tokens) for i, j in leaves for _ in range(m)])
        step, lg = generate_step(policy, pstate, lg, lengths, cfg, gen, room)
        svals = scorer.extend(sstate, step.tokens)
        rnd = len(states)
        states.append((pstate, sstate))
        logits.append(lg)
        tails = _rollouts(policy, scorer, pstate, sstate, lg, lengths, step, cfg, gen)
        for c, (i, leaf) in enumerate(leaf_rows(leaves, m)):
            tree, parent = trees[i], trees[i][leaf]
            toks = step.tokens[c]
            child = Node(leaf, parent.tokens + toks, parent.scores + [svals[c][-1] if svals[c] else 0.0],
                         (rnd, c), step.room, bool(step.done[c]))
            tree.append(child)
            parent.children.append(len(tree) - 1)
            tail, tail_scores, tail_fed = tails[c]
            ptoks[i] += step.fed[c] + tail_fed
            vtoks[i] += len(toks) + len(tail) if scored else 0
            full_tokens = child.tokens + tail
            full_scores = child.scores + tail_scores
            cand = make_candidate(policy, problems[i], full_tokens)
            cand.step_scores, cand.score = full_scores, aggregate(full_scores, cfg.agg)
            cands[i].append(cand)
            node = len(tree) - 1
            while node >= 0:
                tree[node].rollouts.append(len(cands[i]) - 1)
                node = tree[node].parent
            backpropagate(tree, len(tree) - 1, cand.score)
    return [_result(problems[i], trees[i], cands[i], ptoks[i], vtoks[i], policy) for i in range(len(problems))]


def _select_leaves(trees: list[list[Node]], cfg: SearchConfig) -> list[tuple[int, int]]:
    """Selection for every problem: (problem, leaf) pairs to expand. A finished leaf is
    evaluated again instead (its aggregate back-propagated); a leaf without room is skipped."""
    leaves = []
    for i, tree in enumerate(trees):
        leaf = select_leaf(tree, cfg.c_puct, cfg.selection)
        if tree[leaf].done:
            backpropagate(tree, leaf, aggregate(tree[leaf].scores, cfg.agg))
        elif tree[leaf].room > 0:
            leaves.append((i, leaf))
    return leaves


def _rollouts(policy, scorer, pstate, sstate, logits, lengths, step, cfg, gen):
    """Evaluation: roll every unfinished child out to the end on a forked copy of its KV (the
    child's own state stays at the step boundary). -> per child (tail tokens, tail step
    scores, tail tokens fed)."""
    runner = policy.runner
    tails: list[tuple[list[int], list[float], int]] = [([], [], 0) for _ in step.tokens]
    live = (~step.done).nonzero()[:, 0]
    if live.numel() and step.room > 0:
        rp, rs = runner.select(pstate, live), scorer.select(sstate, live)
        out, _ = generate_step(policy, rp, logits[live], lengths[live].clone(), cfg, gen, step.room, until_sep=False)
        vals = scorer.extend(rs, out.tokens)
        for a, r in enumerate(live.tolist()):
            tails[r] = (out.tokens[a], step_scores(out.tokens[a], vals[a], policy.sep_id), out.fed[a])
    return tails


def leaf_rows(leaves, m):
    for i, leaf in leaves:
        for _ in range(m):
            yield i, leaf


def _result(problem, tree: list[Node], cands, ptok, vtok, policy) -> SearchResult:
    i = 0
    while tree[i].children:
        i = max(tree[i].children, key=lambda j: tree[j].visits)
    below = [cands[c] for c in tree[i].rollouts] or cands
    best = pick_best(below)
    key = best.key if best else None
    nodes = [{"parent": n.parent, "text": policy.tokenizer.decode(n.tokens[len(tree[n.parent].tokens):])
              if n.parent >= 0 else "", "visits": n.visits, "q": n.value / n.visits if n.visits else 0.0,
              "score": n.scores[-1] if n.scores else None, "done": n.done} for n in tree]
    return SearchResult(problem["id"], key, bool(best and best.correct), cands, ptok, vtok, tree=nodes,
                        extras={"root_visits": [tree[j].visits for j in tree[0].children]})
