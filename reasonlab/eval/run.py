"""Stage: sample ``n`` completions per problem, verify them, write results and metrics.

Artifacts in the run directory: ``results.jsonl`` (one row per problem: completions, verdicts,
canonical answer keys, lengths, finish reasons), ``summary.json`` (pass@1, unbiased pass@k,
maj@k with bootstrap intervals, lengths, truncation rate, timings, seed, git revision) and
``accuracy_vs_k.png``. Rows are appended chunk by chunk; with ``resume: true`` problems already
in ``results.jsonl`` are skipped, so an interrupted evaluation continues where it stopped.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from reasonlab.io import append_jsonl, atomic_write_json, run_metadata
from reasonlab.runs import open_stage_run


@dataclass
class EvalConfig:
    name: str = "eval"              # run directory: runs_dir/name
    runs_dir: str = "runs"          # where run directories live
    model: str = ""                  # reasonlab checkpoint, Hugging Face model directory or hub id
    task: str = "arith"             # arith | countdown | gsm8k | math
    split: str = "test"             # train | test
    data_path: str = ""              # local jsonl/dir for dataset tasks (gsm8k, math)
    generate: dict = field(default_factory=dict)   # difficulty options for synthetic tasks
    max_completion_chars: int = 1_000_000   # a longer completion is graded bad_format
    limit: int = 500                # problems to evaluate
    n: int = 16                     # samples per problem
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])   # pass@k / maj@k reported
    template: str = "r1"            # prompt template: r1 | r1_paper | cot | direct | fewshot
    temperature: float = 1.0        # 0: greedy
    top_p: float = 1.0              # nucleus sampling (1: off)
    top_k: int = 0                  # top-k sampling (0: off)
    max_new_tokens: int = 256       # longest completion
    prompts_per_batch: int = 32     # prompts sampled together (each with its n samples)
    dtype: str = "bfloat16"         # sampling precision: bfloat16 | float16 | float32
    device: str = "auto"            # Hugging Face models: auto | cpu | cuda | mps
    chat_template: str = "auto"     # Hugging Face tokenizers: auto | always | never
    seed: int = 1234                # problems and samples are a function of the seed
    resume: bool = False             # continue an interrupted run with the same settings
    overwrite: bool = False          # delete an existing run of this name and start over
    methods: list[str] = field(default_factory=list)   # search methods: delegates to eval.sweep
    verifiers: str = ""              # `reasonlab verifiers` run dir (ORM / PRM) for those methods


def make_task(cfg: EvalConfig):
    """``tasks.make_task`` with an eval config's task, data and options."""
    from reasonlab.tasks import make_task as factory

    return factory(cfg.task, cfg.data_path, max_completion_chars=cfg.max_completion_chars)


def generate_problems(task, n: int, seed: int, split: str, options: dict, key: str = "generate") -> list[dict]:
    """``task.generate`` with a user mistake in ``options`` (unknown difficulty option, too few
    distinct problems) reported as one line naming the config ``key``; bad data files stay
    ``DataError`` (``path:LINE: ...``)."""
    from reasonlab.config import ConfigError
    from reasonlab.io import DataError

    try:
        return task.generate(n, seed=seed, split=split, **options)
    except (DataError, ConfigError):
        raise
    except ValueError as err:
        raise ConfigError(f"{key}: {err}") from None


def load_problems(cfg: EvalConfig, task) -> list[dict]:
    """Held-out problems for the task (synthetic: generated from the test split)."""
    return generate_problems(task, cfg.limit, cfg.seed, cfg.split, cfg.generate)


def score_completions(task, example: dict, texts: list[str]) -> dict:
    """Verify each completion; the same verifier gives correctness and the vote key."""
    verdicts = [task.verify(example, t) for t in texts]
    return {
        "correct": [v.correct for v in verdicts],
        "parsed": [v.parsed for v in verdicts],
        "keys": [task.canonical(v.parsed) if v.parsed is not None else None for v in verdicts],
        "reasons": [v.reason for v in verdicts],
    }


def greedy_accuracy(model, tokenizer, task, problems: list[dict], template: str, max_new_tokens: int,
                    dtype=None) -> float:
    """Share of ``problems`` solved by greedy decoding: a cheap held-out check during training."""
    from reasonlab.backends.policy import LocalBackend
    from reasonlab.engine.sampler import SamplingConfig

    was_training = model.training
    prompts = [tokenizer.prompt_ids(task.format_prompt(p, template)) for p in problems]
    batch = LocalBackend(model, tokenizer, dtype=dtype).sample(
        prompts, SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0))
    model.train(was_training)
    solved = [task.verify(p, tokenizer.decode(c)).correct for p, c in zip(problems, batch.completion_ids)]
    return sum(solved) / max(1, len(solved))


def language_stats(task, texts: list[str]) -> dict:
    """Mean language consistency of the reasoning parts (``Task.language_consistency``; arith:
    one notation or two) and the share of samples that mix (consistency below 1), over samples
    with any reasoning.

    >>> from reasonlab.tasks import get_task
    >>> language_stats(get_task("arith"), ["c = a + b = 1 + 2 = 3\\n</think>", "no"])
    {'language_consistency': 1.0, 'mixed_rate': 0.0}
    """
    scores = [task.language_consistency(t.split("</think>", 1)[0]) for t in texts]
    scores = [x for x in scores if x > 0]
    if not scores:
        return {"language_consistency": None, "mixed_rate": None}
    return {"language_consistency": sum(scores) / len(scores), "mixed_rate": sum(x < 1 for x in scores) / len(scores)}


def reason_counts(rows: list[dict]) -> dict[str, int]:
    """How many samples got each verdict reason, in the order of ``tasks.REASONS`` (``ok``,
    ``wrong``, then each way of not answering: ``bad_format`` apart from ``wrong``).

    >>> reason_counts([{"reasons": ["ok", "wrong"]}, {"reasons": ["bad_format", "ok"]}])
    {'ok': 2, 'wrong': 1, 'bad_format': 1}
    """
    from reasonlab.tasks import REASONS

    counts: dict[str, int] = {}
    for row in rows:
        for reason in row["reasons"]:
            counts[reason] = counts.get(reason, 0) + 1
    order = list(REASONS)
    return dict(sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def read_finished(path) -> dict[str, dict]:
    """Rows already written by an interrupted run; a line cut off by the interruption is
    dropped (its problem is evaluated again)."""
    import json

    done = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "id" in row:
                done[row["id"]] = row
    return done


def check_config(cfg: EvalConfig, model_required: bool = True, prefix: str = "") -> None:
    """Every cheap check of an evaluation config (no disk writes, no model load)."""
    from reasonlab.checks import check_eval

    check_eval(cfg, prefix, model_required)
    if cfg.methods:                          # the sweep: CPU workers, plain temperature sampling
        from reasonlab.config import ConfigError

        unused = {"resume": (cfg.resume, False), "top_p": (cfg.top_p, 1.0), "top_k": (cfg.top_k, 0)}
        for key, (value, default) in unused.items():
            if value != default:
                raise ConfigError(f"{key}: eval --methods runs the search sweep, which does not use it "
                                  f"(it samples at `temperature` and starts over; --overwrite=true replaces a run)")
        if cfg.device not in ("auto", "cpu"):
            raise ConfigError(f"device: eval --methods runs on CPU worker processes; got {cfg.device!r}")


def eval_fingerprint(cfg: EvalConfig, model=None) -> dict:
    """What a resumed evaluation must share with the run it continues (``model``: one in memory)."""
    from reasonlab.runs import data_digest, fingerprint, model_digest

    return fingerprint(cfg, ignore=("model", "ks", "methods", "verifiers"),
                       model_sha=model_digest(model if model is not None else cfg.model),
                       data_sha=data_digest(cfg.task, cfg.split, cfg.data_path))


def evaluate(cfg: EvalConfig, model=None, tokenizer=None, run_dir=None, progress: bool = True) -> dict:
    """Run the evaluation; pass an in-memory ``model``/``tokenizer`` (and the caller's ``run_dir``)
    or set ``cfg.model``."""
    check_config(cfg, model_required=model is None)
    if cfg.methods:
        from reasonlab.eval.sweep import run_sweep, sweep_config_from_eval
        return run_sweep(sweep_config_from_eval(cfg), progress=progress)
    from tqdm.auto import tqdm

    from reasonlab.engine.sampler import SamplingConfig
    from reasonlab.eval.metrics import summarize_samples
    from reasonlab.eval.plots import plot_accuracy_vs_k
    from reasonlab.backends.policy import LocalBackend
    from reasonlab.models.hf import compute_dtype, load_policy

    task = make_task(cfg)
    problems = load_problems(cfg, task)                 # bad data stops here, before any write
    run = run_dir if run_dir is not None else open_stage_run(cfg, eval_fingerprint(cfg, model))
    if model is None:
        model, tokenizer, _ = load_policy(cfg.model, device=cfg.device, dtype=cfg.dtype,
                                          chat_template=cfg.chat_template)
    results_path = run / "results.jsonl"
    done = {}
    if cfg.resume and results_path.exists():
        done = read_finished(results_path)
    elif results_path.exists():
        results_path.unlink()
    dtype = compute_dtype(cfg.dtype)
    backend = LocalBackend(model, tokenizer, dtype=dtype)
    t0, policy_tokens = time.perf_counter(), 0
    n_done = sum(p["id"] in done for p in problems)
    bar = tqdm(total=len(problems), initial=n_done, desc=f"eval {cfg.task}", disable=not progress,
               dynamic_ncols=True)
    # Every problem's samples draw from the streams of its index in the full problem list
    # (``engine.rng``), so a resumed run, or one with another ``prompts_per_batch``, draws exactly
    # the samples an uninterrupted run would have drawn.
    for start in range(0, len(problems), cfg.prompts_per_batch):
        chunk = problems[start: start + cfg.prompts_per_batch]
        if all(p["id"] in done for p in chunk):
            continue
        prompts = [tokenizer.prompt_ids(task.format_prompt(p, cfg.template)) for p in chunk]
        scfg = SamplingConfig(n=cfg.n, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                              top_p=cfg.top_p, top_k=cfg.top_k, seed=cfg.seed)
        batch = backend.sample(prompts, scfg, keys=list(range(start, start + len(chunk))))
        for i, example in enumerate(chunk):
            if example["id"] in done:
                continue
            rows = range(i * cfg.n, (i + 1) * cfg.n)
            texts = [tokenizer.decode(batch.completion_ids[r]) for r in rows]
            lengths = [len(batch.completion_ids[r]) for r in rows]
            policy_tokens += sum(lengths)
            row = {"id": example["id"], "question": example["question"], "answer": example["answer"],
                   "completions": texts, "lengths": lengths,
                   "finish_reasons": [batch.finish_reasons[r] for r in rows],
                   **score_completions(task, example, texts)}
            append_jsonl(results_path, row)
            done[row["id"]] = row
            bar.update(1)
    bar.close()
    rows = [done[p["id"]] for p in problems]
    ks = sorted({k for k in cfg.ks if k <= cfg.n} | {1})
    metrics = summarize_samples(rows, ks)
    n_samples = sum(len(r["finish_reasons"]) for r in rows)
    metrics["truncation_rate"] = sum(r["finish_reasons"].count("length") for r in rows) / max(1, n_samples)
    metrics["answered_rate"] = sum(k is not None for r in rows for k in r["keys"]) / max(1, n_samples)
    metrics["verdicts"] = reason_counts(rows)
    metrics.update(language_stats(task, [t for r in rows for t in r["completions"]]))
    seconds = time.perf_counter() - t0
    summary = {"task": cfg.task, "split": cfg.split, "template": cfg.template, "temperature": cfg.temperature,
               "n": cfg.n, "metrics": metrics, "policy_tokens": policy_tokens, "eval_seconds": round(seconds, 1),
               "tokens_per_s": round(policy_tokens / seconds, 1) if seconds > 0 else None}
    if run_dir is None:
        summary.update(run_metadata(cfg.seed))
        atomic_write_json(run / "summary.json", summary)
    atomic_write_json(run / "eval_summary.json", summary)
    plot_accuracy_vs_k(metrics, run / "accuracy_vs_k.png", title=f"{cfg.task} ({cfg.split}, T={cfg.temperature})")
    return summary
