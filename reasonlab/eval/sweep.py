"""The test-time compute sweep: every method on the same problems, at matched compute.

``run_sweep(cfg)`` samples ``n_max`` completions per problem once (policy encoded once per
prompt), scores each with the ORM and the PRM (value models from ``reasonlab verifiers``; each
encodes the prompt once and then the completion tokens) and with the arith oracle, then draws
budget curves by subsampling (``eval.budget``). Methods that cannot be subsampled (CoT-decoding,
beam search, DVTS, MCTS) run at each budget in ``search_ns``. Artifacts in ``runs/<name>/``:
``results.jsonl`` (one row per problem), ``trees.jsonl`` (beam search / DVTS / MCTS trees at the
largest budget: every step with its PRM score; ``reasonlab report`` draws them), ``summary.json``
(curves, bars with paired bootstrap intervals, timings), ``table.md``
and ``accuracy_vs_tokens.png``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

SAMPLED = ("pass@k", "majority", "best_of_n_orm", "best_of_n_prm", "weighted_vote_orm", "weighted_vote_prm",
           "best_of_n_oracle")
SEARCHED = ("cot_decoding", "cot_weighted_vote", "beam_search", "dvts", "mcts")
TREES = ("beam_search", "dvts", "mcts")   # methods whose search trees go to trees.jsonl
NEEDS = {"best_of_n_orm": "orm", "weighted_vote_orm": "orm", "best_of_n_prm": "prm", "weighted_vote_prm": "prm",
         "beam_search": "prm", "dvts": "prm", "mcts": "prm"}


@dataclass
class SweepConfig:
    name: str = "sweep"              # run directory: runs_dir/name
    runs_dir: str = "runs"           # where run directories live
    model: str = ""                   # policy checkpoint
    verifiers: str = ""               # a `reasonlab verifiers` run directory (orm/, prm/)
    task: str = "arith"
    split: str = "test"
    data_path: str = ""               # local jsonl/dir for dataset tasks (gsm8k, math)
    generate: dict = field(default_factory=dict)
    limit: int = 200
    n_max: int = 64
    methods: list[str] = field(default_factory=lambda: list(SAMPLED + SEARCHED))
    search_ns: list[int] = field(default_factory=lambda: [4, 16])
    template: str = "r1"
    temperature: float = 1.0
    max_new_tokens: int = 160
    agg: str = "min"                  # PRM aggregation, in search and in selection
    beam_width: int = 4
    subsamples: int = 100
    chunk: int = 16                   # problems per scoring / search batch
    dtype: str = "bfloat16"
    workers: int = 0                  # sampling processes (0: one per core)
    seed: int = 1234
    overwrite: bool = False           # delete an existing run of this name and start over


def sweep_config_from_eval(cfg) -> SweepConfig:
    """``reasonlab eval --methods=[...]``: the sweep over the eval's problems, ``n`` as N_max and
    the eval's ``ks`` (those >= 2) as the budgets of the search methods."""
    return SweepConfig(name=cfg.name, runs_dir=cfg.runs_dir, model=cfg.model, verifiers=cfg.verifiers, task=cfg.task,
                       split=cfg.split, data_path=cfg.data_path, generate=dict(cfg.generate), limit=cfg.limit, n_max=cfg.n,
                       methods=list(cfg.methods), search_ns=[k for k in cfg.ks if 2 <= k <= cfg.n] or [cfg.n],
                       template=cfg.template, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                       dtype=cfg.dtype, seed=cfg.seed, overwrite=cfg.overwrite)


def _check(cfg: SweepConfig) -> None:
    from reasonlab.checks import check_choice, check_data_path, check_min, check_model_ref, check_task
    from reasonlab.models.hf import DTYPES
    from reasonlab.config import ConfigError

    check_task(cfg.task, cfg.split, cfg.template)
    check_data_path(cfg.data_path, cfg.task)
    check_min(cfg, {"limit": 1, "n_max": 1, "max_new_tokens": 1, "beam_width": 1, "chunk": 1, "workers": 0,
                    "temperature": 1e-9})
    check_choice("dtype", cfg.dtype, DTYPES)
    check_choice("agg", cfg.agg, ("min", "prod", "last", "mean"))
    if not cfg.search_ns or min(cfg.search_ns) < 1:
        raise ConfigError(f"search_ns: a non-empty list of budgets >= 1, got {cfg.search_ns}")

    unknown = [m for m in cfg.methods if m not in SAMPLED + SEARCHED]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from: {', '.join(SAMPLED + SEARCHED)}")
    if cfg.subsamples < 100:
        raise ConfigError(f"subsamples must be >= 100 for stable curves, got {cfg.subsamples}")
    if any(NEEDS.get(m) for m in cfg.methods) and not cfg.verifiers:
        raise ConfigError("methods " + ", ".join(m for m in cfg.methods if NEEDS.get(m)) +
                          " need verifiers: pass --verifiers=<dir of a `reasonlab verifiers` run>")
    check_model_ref(cfg.model)
    need = sorted({NEEDS[m] for m in cfg.methods if m in NEEDS})
    for kind in need:
        if not (Path(cfg.verifiers) / kind / "config.json").exists():
            raise ConfigError(f"verifiers: no {kind} value model in {cfg.verifiers} (run `reasonlab verifiers` first)")


def _sample_all(cfg, policy, tokenizer, prompts):
    from reasonlab.backends import make_backend
    from reasonlab.engine.sampler import SamplingConfig
    from reasonlab.models.hf import compute_dtype

    scfg = SamplingConfig(n=cfg.n_max, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed)
    comps = []
    with make_backend(policy, tokenizer, "parallel", dtype=compute_dtype(cfg.dtype), workers=cfg.workers) as pool:
        for start in range(0, len(prompts), 4 * cfg.chunk):
            part = prompts[start: start + 4 * cfg.chunk]
            batch = pool.sample(part, scfg, keys=list(range(start, start + len(part))))   # problem index: own streams
            comps += batch.completion_ids
    return [comps[i * cfg.n_max: (i + 1) * cfg.n_max] for i in range(len(prompts))]


def _score_all(cfg, pool, workers, verifier_dir, problems, prompts, comps) -> list[list[list[float]]]:
    """Per problem, per sample: the value model's score after every token (problems sharded
    over the worker processes)."""
    from reasonlab.eval.sweep_jobs import ScoreJob, score_job, shards

    jobs = [ScoreJob(str(verifier_dir), problems[a:b], prompts[a:b], comps[a:b], cfg.chunk, cfg.dtype)
            for a, b in shards(len(problems), workers)]
    return [row for part in pool.map(score_job, jobs) for row in part]


def _oracle_scores(task, tokenizer, problem, comps, sep_id) -> list[float]:
    from reasonlab.verifiers.scorers import OracleArithScorer

    oracle = OracleArithScorer(task, tokenizer)
    state = oracle.start([problem], [[0]], len(comps), 0)
    return [s[-1] if s else 0.0 for s in oracle.extend(state, comps)]


def _run_search(cfg, pool, workers, method, n, problems):
    from dataclasses import asdict

    from reasonlab.eval.sweep_jobs import SearchJob, search_job, shards
    from reasonlab.search import SearchConfig

    scfg = SearchConfig(n=n, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                        beam_width=min(cfg.beam_width, n), agg=cfg.agg, seed=cfg.seed + n)
    verifier = str(Path(cfg.verifiers) / "prm") if NEEDS.get(method) else ""
    jobs = [SearchJob(method, cfg.model, verifier, cfg.task, cfg.template, problems[a:b], asdict(scfg), cfg.chunk,
                      cfg.dtype) for a, b in shards(len(problems), workers)]
    parts = list(pool.map(search_job, jobs))
    return [r for res, _ in parts for r in res]


def _verdict_samples(cfg, task, tokenizer, problems, prompts, comps, sep):
    """Verify every sample once: the per-problem ``ProblemSamples`` (keys, correctness, lengths,
    oracle scores for arith) and the decoded texts."""
    from reasonlab.eval.budget import ProblemSamples

    texts = [[tokenizer.decode(c) for c in cs] for cs in comps]
    samples = []
    for p, pr, cs, ts in zip(problems, prompts, comps, texts):
        verdicts = [task.verify(p, t) for t in ts]
        keys = [task.canonical(v.parsed) if v.parsed is not None else None for v in verdicts]
        scores = {"oracle": _oracle_scores(task, tokenizer, p, cs, sep)} if cfg.task == "arith" else {}
        samples.append(ProblemSamples(keys, [v.correct for v in verdicts], [len(c) for c in cs], len(pr), scores))
    return samples, texts


def _attach_scores(samples, comps, per_token, kind: str, sep: int, agg: str) -> None:
    """ORM: the score after the last token. PRM: step scores aggregated four ways; ``prm`` is
    the configured aggregation."""
    from reasonlab.verifiers.scorers import aggregate, step_scores

    for ps, cs, sc in zip(samples, comps, per_token):
        if kind == "orm":
            ps.scores["orm"] = [s[-1] for s in sc]
            continue
        steps = [step_scores(c, s, sep) for c, s in zip(cs, sc)]
        for how in ("min", "prod", "last", "mean"):
            ps.scores[f"prm_{how}"] = [aggregate(st, how) for st in steps]
        ps.scores["prm"] = ps.scores[f"prm_{agg}"]


def _sampled_points(cfg, samples, timings, per_problem) -> list[dict]:
    from reasonlab.eval import budget

    points = []
    for method in [m for m in cfg.methods if m in SAMPLED]:
        if method == "best_of_n_oracle" and "oracle" not in samples[0].scores:
            continue
        score = budget.SELECTORS.get(method, (None, None, False))[1]
        wall = timings["sample_s"] + timings.get(f"score_{score}_s", 0.0)
        for pt in budget.curve(samples, method, cfg.n_max, cfg.subsamples, cfg.seed, wall):
            per_problem[(method, pt["n"])] = pt.pop("per_problem")
            points.append(pt)
    return points


def _searched_points(cfg, pool, workers, problems, timings, per_problem, log):
    from reasonlab.eval import budget

    points, searched = [], {}
    for method in [m for m in cfg.methods if m in SEARCHED]:
        for n in cfg.search_ns:
            t0 = time.perf_counter()
            res = _run_search(cfg, pool, workers, method, n, problems)
            wall = timings[f"{method}@{n}_s"] = time.perf_counter() - t0
            log(f"{method} n={n}: accuracy {sum(r.correct for r in res) / len(res):.3f} in {wall:.0f} s")
            points.append(budget.search_point(method, n, [r.correct for r in res], [r.policy_tokens for r in res],
                                              [r.verifier_tokens for r in res], wall, cfg.seed))
            per_problem[(method, n)] = [float(r.correct) for r in res]
            searched[(method, n)] = res
    return points, searched


def _write_rows(run, cfg, problems, samples, texts, searched) -> None:
    from reasonlab.io import write_jsonl

    rows = []
    for i, (p, ps) in enumerate(zip(problems, samples)):
        rows.append({"id": p["id"], "question": p["question"], "answer": p["answer"], "completions": texts[i],
                     "keys": ps.keys, "correct": ps.correct, "lengths": ps.lengths, "scores": ps.scores,
                     "search": {f"{m}@{n}": {"answer": res[i].answer, "correct": res[i].correct,
                                             "policy_tokens": res[i].policy_tokens,
                                             "verifier_tokens": res[i].verifier_tokens}
                                for (m, n), res in searched.items()}})
    write_jsonl(run / "results.jsonl", rows)
    trees = [{"id": problems[i]["id"], "method": m, "n": n, "tree": res[i].tree}
             for (m, n), res in searched.items() if m in TREES and n == max(cfg.search_ns)
             for i in range(len(problems))]
    if trees:
        write_jsonl(run / "trees.jsonl", trees)


def run_sweep(cfg: SweepConfig, progress: bool = True) -> dict:
    """Run the sweep; returns the summary (also written to ``runs/<name>/summary.json``)."""
    from reasonlab.eval import budget
    from reasonlab.tasks import make_task
    from reasonlab.eval.sweep_jobs import make_pool
    from reasonlab.eval.run import generate_problems
    from reasonlab.io import atomic_write_json, atomic_write_text, run_metadata
    from reasonlab.models.hf import load_policy
    from reasonlab.runs import data_digest, fingerprint, model_digest, open_stage_run, path_digest

    _check(cfg)
    log = print if progress else (lambda *a: None)
    t_start = time.perf_counter()
    task = make_task(cfg.task, cfg.data_path)
    problems = generate_problems(task, cfg.limit, cfg.seed, cfg.split, cfg.generate)
    run = open_stage_run(cfg, fingerprint(cfg, ignore=("model", "verifiers", "data_path"),
                                          model_sha=model_digest(cfg.model),
                                          data_sha=data_digest(cfg.task, cfg.split, cfg.data_path),
                                          verifiers_sha=path_digest(cfg.verifiers) if cfg.verifiers else ""))
    policy, tokenizer, _ = load_policy(cfg.model, device="cpu", impl="ours")
    prompts = [tokenizer.prompt_ids(task.format_prompt(p, cfg.template)) for p in problems]
    sep = tokenizer.encode(task.step_separator)[0]
    need = sorted({NEEDS[m] for m in cfg.methods if m in NEEDS})
    workers = cfg.workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    comps = _sample_all(cfg, policy, tokenizer, prompts)
    timings = {"sample_s": time.perf_counter() - t0}
    log(f"sampled {cfg.n_max} x {len(problems)} in {timings['sample_s']:.0f} s")
    samples, texts = _verdict_samples(cfg, task, tokenizer, problems, prompts, comps, sep)
    pool = make_pool(workers)
    try:
        for kind in need:
            t0 = time.perf_counter()
            per_token = _score_all(cfg, pool, workers, Path(cfg.verifiers) / kind, problems, prompts, comps)
            timings[f"score_{kind}_s"] = time.perf_counter() - t0
            log(f"scored with {kind} in {timings[f'score_{kind}_s']:.0f} s")
            _attach_scores(samples, comps, per_token, kind, sep, cfg.agg)
        per_problem: dict = {}
        points = _sampled_points(cfg, samples, timings, per_problem)
        more, searched = _searched_points(cfg, pool, workers, problems, timings, per_problem, log)
    finally:
        pool.shutdown()
    points += more
    timings["total_s"] = time.perf_counter() - t_start
    _write_rows(run, cfg, problems, samples, texts, searched)
    headline = {f"{'pass' if p['method'] == 'pass@k' else 'maj'}@{p['n']}": p["accuracy"] for p in points
                if p["method"] in ("pass@k", "majority")}
    summary = {"stage": "sweep", "run_dir": str(run), "task": cfg.task, "n_problems": len(problems), "workers": workers,
               "n_max": cfg.n_max, "agg": cfg.agg, "metrics": headline, "points": points,
               "bars": budget.bars(per_problem, cfg.seed), "prm_aggregations": _aggregations(samples, cfg),
               "timings": {k: round(v, 1) for k, v in timings.items()}, **run_metadata(cfg.seed)}
    atomic_write_json(run / "summary.json", summary)
    atomic_write_text(run / "table.md", budget.markdown_table(points))
    budget.plot_budget(points, run / "accuracy_vs_tokens.png",
                       title=f"{cfg.task}: {len(problems)} problems, N up to {cfg.n_max}")
    log(budget.markdown_table(points))
    return summary


def _aggregations(samples, cfg) -> dict:
    """Best-of-16 (or n_max) accuracy with each PRM aggregation, for the record."""
    from reasonlab.eval import budget

    if "prm_min" not in samples[0].scores:
        return {}
    n = min(16, cfg.n_max)
    out = {}
    for how in ("min", "prod", "last", "mean"):
        pt = next(p for p in budget.curve(samples, f"best_of_n_prm_{how}", cfg.n_max, cfg.subsamples, cfg.seed,
                                          selector=(budget.best_of, f"prm_{how}", True)) if p["n"] == n)
        out[f"best_of_{n}_prm_{how}"] = {"accuracy": pt["accuracy"], "ci": pt["ci"]}
    return out
