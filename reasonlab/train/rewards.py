"""Rule-based rewards: small functions, combined with weights from the config, each logged.

Per-completion rewards take ``(task, example, text, verdict)`` and return a float; group rewards
(the Kimi length reward) see a whole group of completions of one prompt. ``score_group``
computes every weighted component for a group and their weighted sum.

>>> from reasonlab.tasks import get_task
>>> task = get_task("arith")
>>> ex = {"question": "?", "answer": "4", "meta": {}}
>>> texts = ["2 + 2 = 4\\n</think>\\n<answer>4</answer>", "</think><answer>5</answer>"]
>>> total, parts, verdicts = score_group(task, ex, texts, [10, 4], {"accuracy": 1.0, "length": 1.0})
>>> parts["accuracy"], parts["length"]
([1.0, 0.0], [-0.5, 0.0])
"""
from __future__ import annotations



from reasonlab.tasks.prompts import check_r1_format


def accuracy_reward(task, example: dict, text: str, verdict) -> float:
    """1 if the task's verifier accepts the completion, else 0; a task graded with partial credit
    sets ``verdict.score`` (the code task: share of tests passed), which is used instead.

    >>> from reasonlab.tasks import get_task
    >>> t = get_task("arith"); ex = {"answer": "3"}
    >>> accuracy_reward(t, ex, "<answer>3</answer>", t.verify(ex, "<answer>3</answer>"))
    1.0
    """
    if getattr(verdict, "score", None) is not None:
        return float(verdict.score)
    return 1.0 if verdict.correct else 0.0


def format_reward(task, example: dict, text: str, verdict) -> float:
    """1 if the completion follows the R1 template exactly (``...</think> <answer>..</answer>``).

    >>> format_reward(None, {}, "x</think>\\n<answer>1</answer>", None)
    1.0
    >>> format_reward(None, {}, "x<answer>1</answer>", None)
    0.0
    """
    return 1.0 if check_r1_format(text) else 0.0


def language_reward(task, example: dict, text: str, verdict) -> float:
    """Language consistency (R1) of the reasoning part (before ``</think>``), as the task defines
    it (:meth:`Task.language_consistency`: the share of ASCII words by default; arith: the share
    of lines in one notation). An empty reasoning gets 0.

    >>> from reasonlab.tasks import get_task
    >>> t = get_task("countdown")
    >>> language_reward(t, {}, "a = 1 + 2 = 3 ok</think>", None)
    1.0
    >>> language_reward(t, {}, "a = 3 \u6b63\u786e</think>", None)
    0.75
    """
    return task.language_consistency(text.split("</think>", 1)[0])


def length_rewards(lengths: list[int], correct: list[bool]) -> list[float]:
    """Kimi k1.5 length reward within a group: ``lam = 0.5 - (len - min) / (max - min)``;
    a correct answer gets ``lam``, a wrong one ``min(0, lam)``; all 0 when lengths are equal.

    >>> length_rewards([10, 20, 30], [True, True, False])
    [0.5, 0.0, -0.5]
    >>> length_rewards([10, 30], [False, True])
    [0.0, -0.5]
    """
    lo, hi = min(lengths), max(lengths)
    if hi == lo:
        return [0.0] * len(lengths)
    lams = [0.5 - (n - lo) / (hi - lo) for n in lengths]
    return [lam if ok else min(0.0, lam) for lam, ok in zip(lams, correct)]


REWARDS = {"accuracy": accuracy_reward, "format": format_reward, "language": language_reward}
GROUP_REWARDS = {"length": length_rewards}


def check_weights(weights: dict) -> None:
    """Raise a ValueError naming the unknown reward and the choices."""
    known = set(REWARDS) | set(GROUP_REWARDS)
    for name in weights:
        if name not in known:
            raise ValueError(f"unknown reward {name!r} in rewards; choose from: {', '.join(sorted(known))}")


def score_group(task, example: dict, texts: list[str], lengths: list[int], weights: dict
                ) -> tuple[list[float], dict[str, list[float]], list]:
    """-> (weighted total per completion, {component: unweighted values}, verdicts).

    Every registered component with a non-zero weight is computed; ``accuracy`` is always
    computed (it is also the training accuracy metric)."""
    check_weights(weights)
    verdicts = [task.verify(example, t) for t in texts]
    parts: dict[str, list[float]] = {}
    for name, fn in REWARDS.items():
        if weights.get(name, 0.0) or name == "accuracy":
            parts[name] = [fn(task, example, t, v) for t, v in zip(texts, verdicts)]
    for name, fn in GROUP_REWARDS.items():
        if weights.get(name, 0.0):
            parts[name] = fn(lengths, [v.correct for v in verdicts])
    total = [sum(weights.get(name, 0.0) * vals[i] for name, vals in parts.items()) for i in range(len(texts))]
    return total, parts, verdicts
