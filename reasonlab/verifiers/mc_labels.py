"""Monte-Carlo step labels (Math-Shepherd, Wang et al. 2024).

For a sampled solution split into steps (task step separator), the prefix ending after step ``i``
is completed ``K`` times by the policy; the *hard* label is "some completion is correct", the
*soft* label the fraction that is. The last step's label is the solution's own verdict (no
rollouts). Rollout correctness is kept per step, so labels for any ``K' <= K`` can be read back.

*Consistent* hard labels (``hard_labels(..., consistent=True)``) also count the rollouts of later
steps: the solution's own step ``i+1`` is a sample of the policy after prefix ``i``, so a correct
rollout from prefix ``i+1`` (or a correct solution) is a correct completion of prefix ``i`` too.
The labels become monotone (good up to the last step with a correct completion, then bad) — the
assumption OmegaPRM's binary search makes — at no extra rollouts. Soft labels stay per prefix.
"""
from __future__ import annotations

from collections.abc import Callable

from reasonlab.engine.sampler import SampleBatch, SamplingConfig
from reasonlab.verifiers.scorers import step_ends

SampleFn = Callable[[list[list[int]], SamplingConfig], SampleBatch]


def mc_step_labels(task, tokenizer, problems: list[dict], prompts: list[list[int]],
                   solutions: list[tuple[int, list[int]]], sample_fn: SampleFn, k: int,
                   max_new_tokens: int, temperature: float = 1.0, seed: int = 0,
                   prefixes_per_call: int = 256) -> list[dict]:
    """Label every step of every ``(problem index, completion ids)`` solution.

    Returns per solution ``{"ends": [token index of each step's last token], "rollouts":
    [[bool]*k per step], "soft": [float], "hard": [bool], "correct": bool}``.
    """
    sep = tokenizer.encode(task.step_separator)[0]
    jobs: list[tuple[int, int]] = []                       # (solution, step)
    out = []
    for s, (p, comp) in enumerate(solutions):
        ends = step_ends(comp, sep)
        correct = task.verify(problems[p], tokenizer.decode(comp)).correct
        out.append({"ends": ends, "rollouts": [None] * len(ends), "correct": correct})
        out[-1]["rollouts"][-1] = [correct] * k
        jobs += [(s, i) for i in range(len(ends) - 1)]
    for start in range(0, len(jobs), prefixes_per_call):
        chunk = jobs[start: start + prefixes_per_call]
        heads = [solutions[s][1][: out[s]["ends"][i] + 1] for s, i in chunk]
        batch = sample_fn([prompts[solutions[s][0]] + h for (s, _), h in zip(chunk, heads)],
                          SamplingConfig(n=k, max_new_tokens=max_new_tokens, temperature=temperature,
                                         seed=seed + start))
        for j, ((s, i), head) in enumerate(zip(chunk, heads)):
            problem = problems[solutions[s][0]]
            out[s]["rollouts"][i] = [task.verify(problem, tokenizer.decode(head + batch.completion_ids[r])).correct
                                     for r in range(j * k, (j + 1) * k)]
    for row in out:
        row["soft"] = [sum(r) / len(r) for r in row["rollouts"]]
        row["hard"] = hard_labels(row["rollouts"])
    return out


def step_texts(tokenizer, completion: list[int], ends: list[int]) -> list[str]:
    starts = [0] + [e + 1 for e in ends[:-1]]
    return [tokenizer.decode(completion[a: e + 1]) for a, e in zip(starts, ends)]


def hard_labels(rollouts: list[list[bool]], k: int | None = None, consistent: bool = False) -> list[bool]:
    """Hard label of every step from its first ``k`` rollouts (all when None); ``consistent``:
    a step is also good when a later one is (see the module docstring).

    >>> hard_labels([[False, False], [True, False], [False, False]])
    [False, True, False]
    >>> hard_labels([[False, False], [True, False], [False, False]], consistent=True)
    [True, True, False]
    """
    hard = [any(r[:k]) for r in rollouts]
    if consistent:
        for i in range(len(hard) - 2, -1, -1):
            hard[i] = hard[i] or hard[i + 1]
    return hard


def _confusion(pairs: list[tuple[bool, bool]]) -> dict:
    return {"oracle_true_mc_true": sum(o and h for o, h in pairs),
            "oracle_true_mc_false": sum(o and not h for o, h in pairs),
            "oracle_false_mc_true": sum(not o and h for o, h in pairs),
            "oracle_false_mc_false": sum(not o and not h for o, h in pairs)}


def oracle_agreement(task, tokenizer, problems: list[dict], solutions: list[tuple[int, list[int]]],
                     labels: list[dict], ks: tuple[int, ...] = (1, 2, 4, 8)) -> dict:
    """Agreement of hard MC labels (first ``k'`` rollouts) with the arith oracle on reasoning
    lines (the steps before ``</think>``): ``agreement@k`` for Math-Shepherd's labels,
    ``consistent_agreement@k`` for consistent ones, and both confusions at the largest ``k'``."""
    from reasonlab.verifiers.oracle import END_OF_REASONING, arith_step_labels

    per_solution = []                                       # (oracle labels, rollouts of every step)
    for (p, comp), row in zip(solutions, labels):
        texts = step_texts(tokenizer, comp, row["ends"])
        n = next((i for i, t in enumerate(texts) if END_OF_REASONING in t), len(texts))
        lines = [t.rstrip(task.step_separator) for t in texts[:n]]
        per_solution.append((arith_step_labels(problems[p], lines, task.reflection_marker), row["rollouts"]))
    k_max = min((len(r) for _, rs in per_solution for r in rs), default=0)
    steps = sum(len(o) for o, _ in per_solution)
    result = {"steps": steps}

    def pairs(k: int, consistent: bool) -> list[tuple[bool, bool]]:
        return [(o, h) for oracle, rollouts in per_solution
                for o, h in zip(oracle, hard_labels(rollouts, k, consistent))]
    for consistent, prefix in ((False, ""), (True, "consistent_")):
        for kk in ks:
            if kk <= k_max:
                result[f"{prefix}agreement@{kk}"] = sum(o == h for o, h in pairs(kk, consistent)) / max(1, steps)
    result["confusion"] = _confusion(pairs(k_max, False))
    result["consistent_confusion"] = _confusion(pairs(k_max, True))
    result["oracle_correct_rate"] = sum(sum(o) for o, _ in per_solution) / max(1, steps)
    return result
