"""Worker-process jobs of the sweep: verifier scoring and search on shards of problems.

Small models decode in many small kernels, so the sweep uses one single-threaded process per
core (like ``engine.parallel``). Jobs are top-level functions of plain arguments (paths, rows,
configs) so they pickle into a spawned process; each job loads its models itself (well under a
second for the tiny model) and returns plain results.
"""
from __future__ import annotations

import itertools
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from reasonlab.models.hf import compute_dtype


def _init_worker() -> None:
    import torch

    from reasonlab.engine.parallel import ignore_interrupts

    ignore_interrupts()
    torch.set_num_threads(1)


def make_pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing as mp

    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)


def shards(n: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges covering ``range(n)`` in ``parts`` near-equal pieces.

    >>> shards(5, 2)
    [(0, 3), (3, 5)]
    """
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


@dataclass
class ScoreJob:
    verifier_dir: str
    problems: list[dict]
    prompts: list[list[int]]
    completions: list[list[list[int]]]       # per problem, its samples
    chunk: int
    dtype: str


def score_job(job: ScoreJob) -> list[list[list[float]]]:
    """Per problem, per sample: the value model's score after every completion token."""
    from reasonlab.engine.tiny import LlamaRunner
    from reasonlab.verifiers.scorers import ValueScorer
    from reasonlab.verifiers.value_model import load_value_model, lp_weight

    model, tokenizer, _ = load_value_model(job.verifier_dir)
    scorer = ValueScorer(LlamaRunner(model, dtype=compute_dtype(job.dtype)), tokenizer.pad_id, lp_weight=lp_weight(model))
    out = []
    for start in range(0, len(job.problems), job.chunk):
        comps = job.completions[start: start + job.chunk]
        n = len(comps[0])
        flat = scorer.score(job.problems[start: start + job.chunk], job.prompts[start: start + job.chunk], n,
                            [c for cs in comps for c in cs])
        out += [flat[i * n: (i + 1) * n] for i in range(len(comps))]
    return out


@dataclass
class SearchJob:
    method: str
    model: str
    verifier_dir: str                        # "" for methods without a scorer
    task: str
    template: str
    problems: list[dict]
    search: dict                             # SearchConfig fields
    chunk: int
    dtype: str


def search_job(job: SearchJob):
    """-> (list of SearchResult, seconds)."""
    import torch

    from reasonlab.engine.tiny import LlamaRunner
    from reasonlab.tasks import make_task
    from reasonlab.models.hf import load_policy
    from reasonlab.search import Policy, SearchConfig, get_strategy
    from reasonlab.verifiers.scorers import ValueScorer
    from reasonlab.verifiers.value_model import load_value_model, lp_weight

    t0 = time.perf_counter()
    model, tokenizer, _ = load_policy(job.model, device="cpu", impl="ours")
    policy = Policy(LlamaRunner(model, dtype=compute_dtype(job.dtype)), tokenizer, make_task(job.task),
                    job.template)
    verifier = load_value_model(job.verifier_dir)[0] if job.verifier_dir else None
    strategy, cfg = get_strategy(job.method), SearchConfig(**job.search)
    results = []
    for start in range(0, len(job.problems), job.chunk):
        scorer = (ValueScorer(LlamaRunner(verifier, dtype=compute_dtype(job.dtype)), tokenizer.pad_id,
                              lp_weight=lp_weight(verifier)) if verifier else None)
        with torch.inference_mode():
            results += strategy(job.problems[start: start + job.chunk], policy, scorer, cfg)
    return results, time.perf_counter() - t0
