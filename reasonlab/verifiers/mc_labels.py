"""Monte-Carlo step labels (Math-Shepherd, Wang et al. 2024).

For a sampled solution split into steps (task step separator), the prefix ending after step ``i``
is completed ``K`` times by the policy; the *hard* label is "some completion is correct", the
*soft* label the fraction that is. The last step's label is the solution's own verdict (no
rollouts). Rollout correctness is kept per step, so labels for any ``K' <= K`` can be read back.
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
        row["hard"] = [any(r) for r in row["rollouts"]]
    return out


def step_texts(tokenizer, completion: list[int], ends: list[int]) -> list[str]:
    starts = [0] + [e + 1 for e in ends[:-1]]
    return [tokenizer.decode(completion[a: e + 1]) for a, e in zip(starts, ends)]


def oracle_agreement(task, tokenizer, problems: list[dict], solutions: list[tuple[int, list[int]]],
                     labels: list[dict], ks: tuple[int, ...] = (1, 2, 4, 8)) -> dict:
    """Agreement of hard MC labels (first ``k'`` rollouts) with the arith oracle on reasoning
    lines (the steps before ``</think>``), plus the confusion counts at the largest ``k'``."""
    from reasonlab.verifiers.oracle import END_OF_REASONING, arith_step_labels

    pairs = []                                              # (oracle, rollouts)
    for (p, comp), row in zip(solutions, labels):
        texts = step_texts(tokenizer, comp, row["ends"])
        n = next((i for i, t in enumerate(texts) if END_OF_REASONING in t), len(texts))
        lines = [t.rstrip(task.step_separator) for t in texts[:n]]
        oracle = arith_step_labels(problems[p], lines, task.reflection_marker)
        pairs += list(zip(oracle, row["rollouts"][:n]))
    k_max = min(len(r) for _, r in pairs) if pairs else 0
    result = {"steps": len(pairs)}
    for kk in ks:
        if kk <= k_max:
            result[f"agreement@{kk}"] = sum(o == any(r[:kk]) for o, r in pairs) / max(1, len(pairs))
    hard = [(o, any(r[:k_max])) for o, r in pairs]
    result["confusion"] = {"oracle_true_mc_true": sum(o and h for o, h in hard),
                           "oracle_true_mc_false": sum(o and not h for o, h in hard),
                           "oracle_false_mc_true": sum(not o and h for o, h in hard),
                           "oracle_false_mc_false": sum(not o and not h for o, h in hard)}
    result["oracle_correct_rate"] = sum(o for o, _ in pairs) / max(1, len(pairs))
    return result
