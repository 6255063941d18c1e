"""Shared pieces of the search strategies: the policy bundle, config, results, the registry and
the batched step generator that every step-level strategy uses.

KV reuse: a strategy prefills each prompt once (``copies`` rows per problem), then only ever
decodes new tokens, forks rows with ``select`` and pools rows with ``concat``; the policy's and
the scorer's ``tokens_encoded`` therefore equal the prompt tokens plus the tokens generated, which
the tests check for every strategy.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from reasonlab.engine.protocol import CausalLM
from reasonlab.engine.rng import generator_uniforms
from reasonlab.engine.sampler import left_pad, next_tokens


@dataclass
class Policy:
    """What a strategy needs from the policy side: the backend, its tokenizer, the task."""
    runner: CausalLM
    tokenizer: Any
    task: Any
    template: str = "r1"

    def prompts(self, problems: list[dict]) -> list[list[int]]:
        return [self.tokenizer.prompt_ids(self.task.format_prompt(p, self.template)) for p in problems]

    @property
    def sep_id(self) -> int:
        return self.tokenizer.encode(self.task.step_separator)[0]


@dataclass
class SearchConfig:
    n: int = 16                       # budget: samples / beams / branches / simulations x width
    temperature: float = 1.0
    max_new_tokens: int = 160
    max_step_tokens: int = 48         # a step longer than this is cut (and continues next step)
    beam_width: int = 4               # children per kept beam (beam search, DVTS, MCTS expansion)
    agg: str = "min"                  # PRM step aggregation, same in search and final selection
    c_puct: float = 1.0
    selection: str = "puct"           # puct | uct
    seed: int = 0


@dataclass
class Candidate:
    tokens: list[int]
    text: str
    key: str | None                   # task.canonical of the parsed answer
    correct: bool
    score: float | None = None        # verifier score (aggregated) or confidence
    step_scores: list[float] = field(default_factory=list)
    finished: bool = True


@dataclass
class SearchResult:
    id: str
    answer: str | None                # the chosen canonical answer
    correct: bool
    candidates: list[Candidate]
    policy_tokens: int                # token positions the policy encoded for this problem
    verifier_tokens: int = 0
    tree: list[dict] | None = None    # nodes {"parent", "tokens", "score", ...} of tree searches
    extras: dict = field(default_factory=dict)


Strategy = Callable[[list[dict], Policy, Any, SearchConfig], list[SearchResult]]
STRATEGIES: dict[str, Strategy] = {}


def register(name: str):
    def wrap(fn: Strategy) -> Strategy:
        STRATEGIES[name] = fn
        return fn
    return wrap


def get_strategy(name: str) -> Strategy:
    import reasonlab.search.cot_decoding
    import reasonlab.search.mcts
    import reasonlab.search.sampling
    import reasonlab.search.tree  # noqa: F401

    if name not in STRATEGIES:
        raise ValueError(f"unknown search strategy {name!r}; choose from: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]


def make_candidate(policy: Policy, problem: dict, tokens: list[int], finished: bool = True) -> Candidate:
    text = policy.tokenizer.decode(tokens)
    verdict = policy.task.verify(problem, text)
    key = policy.task.canonical(verdict.parsed) if verdict.parsed is not None else None
    return Candidate(tokens, text, key, verdict.correct, finished=finished)


def prefill(policy: Policy, prompts: list[list[int]], copies: int, max_new: int):
    """Encode every prompt once; ``copies`` rows per prompt. -> (logits, state)."""
    ids, valid = left_pad(prompts, policy.tokenizer.pad_id)
    logits, state = policy.runner.prefill(ids, valid, max_new, copies=copies)
    return logits.cpu(), state


def capacity(policy: Policy, prompts: list[list[int]], cfg: SearchConfig, factor: int = 2) -> int:
    """Own-cache columns for step-level search: steps of rows advance together, so columns run
    ahead of any one row's length; ``factor`` x max_new_tokens, within the model's context."""
    limit = getattr(policy.runner, "max_len", None)          # the backend's context window, if known
    want = factor * cfg.max_new_tokens
    if limit is None:
        return want
    return max(cfg.max_new_tokens, min(want, limit - max(len(p) for p in prompts)))


@dataclass
class StepOut:
    tokens: list[list[int]]           # the step's tokens per row (separator / EOS included)
    done: torch.Tensor                # (B,) bool: the path ended (EOS, length or cache full)
    room: int                         # own-cache columns left afterwards
    fed: list[int]                    # tokens of the step fed back to the policy, per row


def draw(logits: torch.Tensor, temperature: float, gen: torch.Generator) -> torch.Tensor:
    """One token per row (B,) from logits (B, V), with uniforms from the search's generator."""
    return next_tokens(logits, temperature, 0, 1.0, generator_uniforms(gen, logits.shape[0], logits.device))[0]


@torch.inference_mode()
def generate_step(policy: Policy, state, logits: torch.Tensor, lengths: torch.Tensor, cfg: SearchConfig,
                  gen: torch.Generator, room: int, until_sep: bool = True) -> tuple[StepOut, torch.Tensor]:
    """Sample one step for every row: tokens until the step separator, EOS, ``max_step_tokens``,
    the row's ``max_new_tokens`` or the cache's ``room``. Every token but EOS is fed back, so the
    returned logits (B, V) continue each row's path. ``lengths`` (B,) is updated in place.
    ``until_sep=False`` continues through separators (a rollout to the end of the solution)."""
    runner, sep, eos = policy.runner, policy.sep_id, policy.tokenizer.eos_id
    b = logits.shape[0]
    out = [[] for _ in range(b)]
    active = torch.ones(b, dtype=torch.bool)
    done = torch.zeros(b, dtype=torch.bool)
    fed = torch.zeros(b, dtype=torch.long)
    for t in range(cfg.max_step_tokens if until_sep else cfg.max_new_tokens):
        tok = draw(logits, cfg.temperature, gen)
        for r in active.nonzero()[:, 0].tolist():
            out[r].append(int(tok[r]))
        lengths += active.long()
        room -= 1            # one column per token position, for the policy and for a scorer fed the step
        ended = active & ((tok == eos) | (lengths >= cfg.max_new_tokens))
        if room <= 0:                                       # no column left to feed it
            ended |= active
        done |= ended
        feed = active & ~ended
        fed += feed.long()
        if feed.any():
            new = runner.decode(state, tok, feed).cpu()
            logits = torch.where(feed[:, None], new, logits)
        active = feed & (tok != sep) if until_sep else feed
        if not active.any():
            break
    return StepOut(out, done, room, fed.tolist()), logits


@dataclass
class Paths:
    tokens: list[list[int]]           # per row (prompt p's rows are p*n .. p*n+n-1)
    margins: list[list[float]] | None  # per token: top-1 minus top-2 probability


@torch.inference_mode()
def sample_paths(policy: Policy, prompts: list[list[int]], n: int, cfg: SearchConfig, gen: torch.Generator,
                 first_tokens: Callable[[torch.Tensor], torch.Tensor] | None = None, margins: bool = False,
                 compact_below: float = 0.5) -> Paths:
    """``n`` full completions per prompt (each prompt encoded once). Finished rows stop being
    fed (``active``) and are dropped once fewer than ``compact_below`` of the rows are alive.
    ``first_tokens`` maps the prompt logits (P*n, V) to every row's first token (CoT-decoding
    branches)."""
    runner, eos = policy.runner, policy.tokenizer.eos_id
    logits, state = prefill(policy, prompts, n, cfg.max_new_tokens)
    total, length = logits.shape[0], cfg.max_new_tokens
    out = torch.full((total, length), -1, dtype=torch.long)
    marg = torch.zeros(total, length) if margins else None
    rows = torch.arange(total)
    alive = torch.ones(total, dtype=torch.bool)
    for step in range(length):
        if step == 0 and first_tokens is not None:
            tok = first_tokens(logits)
        else:
            tok = draw(logits, cfg.temperature, gen)
        if marg is not None:
            top = torch.softmax(logits, -1).topk(2, -1).values
            marg[rows, step] = top[:, 0] - top[:, 1]
        out[rows[alive], step] = tok[alive]
        alive &= (tok != eos)
        if step + 1 == length or not alive.any():
            break
        if alive.sum() < compact_below * rows.numel():
            keep = alive.nonzero()[:, 0]
            state, rows, tok, alive = runner.select(state, keep), rows[keep], tok[keep], alive[keep]
        logits = runner.decode(state, tok, alive).cpu()
    lens = (out >= 0).sum(1).tolist()
    toks = [r[:k] for r, k in zip(out.tolist(), lens)]
    return Paths(toks, [m[:k] for m, k in zip(marg.tolist(), lens)] if marg is not None else None)


def fed_tokens(tokens: list[int], eos_id: int, max_new: int) -> int:
    """Tokens of a sampled completion that were fed back to the model (all but a final EOS or
    a final token at the length limit)."""
    return max(0, len(tokens) - 1) if tokens and (tokens[-1] == eos_id or len(tokens) >= max_new) else len(tokens)


def pick_best(candidates: list[Candidate]) -> Candidate | None:
    """Highest score; ties go to the first."""
    best = None
    for c in candidates:
        if c.score is not None and (best is None or c.score > best.score):
            best = c
    return best
