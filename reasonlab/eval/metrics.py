"""Evaluation metrics: unbiased pass@k, majority vote, maj@k, bootstrap CIs, per-run summaries.

Conventions: a problem has ``n`` sampled completions; ``correct[i]`` says whether sample ``i`` is
right and ``keys[i]`` is its canonical answer (``task.canonical(parsed)``), or None when no answer
could be parsed. None never wins a vote unless every sample is None (then the vote is None and
counts as wrong). All functions are pure; randomness comes from explicit seeds / Generators.
Only numpy is imported.
"""
from __future__ import annotations

import itertools
import math
import operator
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

__all__ = ["pass_at_k", "pass_at_k_array", "majority_vote", "maj_at_k", "bootstrap_ci",
           "summarize_samples"]


def _check_nck(n: int, c: int, k: int) -> tuple[int, int, int]:
    n, c, k = operator.index(n), operator.index(c), operator.index(k)
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got n={n}, k={k}")
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got n={n}, c={c}")
    return n, c, k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): P(at least one of k draws w/o replacement is correct).

    ``1 - C(n-c, k) / C(n, k)``, computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` to avoid huge
    binomials. ``n`` samples, ``c`` of them correct, ``1 <= k <= n``.

    >>> round(pass_at_k(5, 2, 2), 12)
    0.7
    >>> pass_at_k(10, 0, 5), pass_at_k(10, 6, 5), pass_at_k(4, 1, 1)
    (0.0, 1.0, 0.25)
    """
    n, c, k = _check_nck(n, c, k)
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return float(1.0 - prod)


def pass_at_k_array(ns: Any, cs: Any, k: int) -> np.ndarray:
    """Vectorised :func:`pass_at_k` over problems: ``ns``, ``cs`` int arrays of equal shape.

    Uses ``log C(m,k)^-1 = sum_{i=k+1}^{m} log(1 - k/i)`` prefix sums, so the cost is
    O(max(ns) + len(ns)). Returns a float array of the same shape.

    >>> pass_at_k_array([5, 5, 4], [2, 0, 4], 2).round(12).tolist()
    [0.7, 0.0, 1.0]
    """
    ns = np.asarray(ns)
    cs = np.asarray(cs)
    k = operator.index(k)
    if ns.shape != cs.shape:
        raise ValueError(f"ns and cs must have the same shape, got {ns.shape} and {cs.shape}")
    if ns.size == 0:
        return np.zeros(ns.shape, dtype=float)
    if not (np.issubdtype(ns.dtype, np.integer) and np.issubdtype(cs.dtype, np.integer)):
        raise ValueError("ns and cs must be integer arrays")
    if k < 1 or np.any(ns < k):
        raise ValueError(f"pass@k needs 1 <= k <= n for every problem, got k={k}, "
                         f"min n={int(ns.min())}")
    if np.any(cs < 0) or np.any(cs > ns):
        raise ValueError("pass@k needs 0 <= c <= n for every problem")
    if k == 1:
        return cs / ns  # exact; the general path below carries ~1e-15 * n rounding
    top = int(ns.max())
    # log_inv_comb[m] = log(1 / C(m, k)) for m >= k (0 for m <= k).
    terms = np.zeros(top + 1)
    i = np.arange(k + 1, top + 1)
    terms[k + 1:] = np.log1p(-k / i)
    log_inv_comb = np.cumsum(terms)
    wrong = ns - cs
    ok = wrong >= k
    safe_wrong = np.where(ok, wrong, k)
    ratio = np.exp(log_inv_comb[ns] - log_inv_comb[safe_wrong])  # C(n-c,k)/C(n,k)
    return np.where(ok, 1.0 - ratio, 1.0)


def majority_vote(keys: Sequence[Hashable | None],
                  weights: Sequence[float] | None = None) -> Hashable | None:
    """The answer with the most votes (or largest summed weight); None only if all are None.

    Ties go to the key that occurs first in ``keys``.

    >>> majority_vote(["3", None, "4", "4", "3"])
    '3'
    >>> majority_vote(["3", "4", "4"], weights=[0.9, 0.3, 0.4])
    '3'
    >>> majority_vote([None, None]) is None
    True
    """
    if weights is not None and len(weights) != len(keys):
        raise ValueError(f"weights has {len(weights)} entries for {len(keys)} keys")
    totals: dict[Hashable, float] = {}
    for i, key in enumerate(keys):
        if key is None:
            continue
        w = 1.0 if weights is None else float(weights[i])
        if not math.isfinite(w):
            raise ValueError(f"weight {i} is not finite: {w}")
        totals[key] = totals.get(key, 0.0) + w
    best_key, best = None, -math.inf
    for key, total in totals.items():  # dicts keep first-occurrence order
        if total > best:
            best_key, best = key, total
    return best_key


def _key_correctness(keys: Sequence[Hashable | None],
                     correct: Mapping[Hashable, bool] | Sequence[bool]) -> dict:
    """Map canonical key -> correct. From a per-sample list, a key's first sample decides."""
    if isinstance(correct, Mapping):
        return {k: bool(v) for k, v in correct.items()}
    if len(correct) != len(keys):
        raise ValueError(f"correct has {len(correct)} entries for {len(keys)} keys")
    table: dict = {}
    for key, ok in zip(keys, correct):
        if key is not None and key not in table:
            table[key] = bool(ok)
    return table


def _subset_indices(n: int, k: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(R, k) sorted sample indices: all C(n,k) subsets if that is <= n_resamples, else random."""
    if math.comb(n, k) <= n_resamples:
        return np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(-1, k)
    idx = np.argsort(rng.random((n_resamples, n)), axis=1)[:, :k]
    return np.sort(idx, axis=1)


def maj_at_k(keys: Sequence[Hashable | None], correct: Mapping[Hashable, bool] | Sequence[bool],
             k: int, n_resamples: int = 1000, rng: np.random.Generator | int | None = None,
             weights: Sequence[float] | None = None) -> float:
    """Expected accuracy of a majority vote over ``k`` of the ``n`` samples (w/o replacement).

    Args:
        keys: ``(n,)`` canonical answers, None for "no answer".
        correct: ``{key: bool}`` or ``(n,)`` per-sample correctness (the first sample of each
            key decides that key). Keys absent from the mapping count as wrong.
        k: votes per simulated problem, ``1 <= k <= n``.
        n_resamples: random subsets when ``C(n, k) > n_resamples``; otherwise every subset is
            enumerated and the result is exact (always the case for k == n and k == 1).
        rng: Generator or seed (default seed 0).
        weights: optional ``(n,)`` vote weights (verifier-weighted voting).
    Within a subset, ties go to the key that was sampled first (original order), so
    ``maj_at_k(keys, c, n) == correct-of(majority_vote(keys))``.

    >>> maj_at_k(["a", "a", "b"], {"a": True}, k=3)
    1.0
    >>> round(maj_at_k(["a", "a", "b"], {"a": True}, k=2), 6)  # {a,a}:a {a,b}:a {a,b}:a
    1.0
    >>> round(maj_at_k(["b", "a", "a"], {"a": True}, k=2), 6)  # {b,a}:b {b,a}:b {a,a}:a
    0.333333
    """
    n = len(keys)
    k = operator.index(k)
    if not 1 <= k <= n:
        raise ValueError(f"maj@k needs 1 <= k <= n, got k={k}, n={n}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if weights is not None and len(weights) != n:
        raise ValueError(f"weights has {len(weights)} entries for {n} keys")
    table = _key_correctness(keys, correct)
    uniq = list(dict.fromkeys(key for key in keys if key is not None))
    if not uniq:
        return 0.0
    code = {key: j for j, key in enumerate(uniq)}
    ids = np.array([-1 if key is None else code[key] for key in keys], dtype=np.int64)
    key_ok = np.array([table.get(key, False) for key in uniq], dtype=float)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(0 if rng is None else rng)

    subsets = _subset_indices(n, k, n_resamples, rng)          # (R, k)
    sub_ids = ids[subsets]                                      # (R, k)
    onehot = sub_ids[:, :, None] == np.arange(len(uniq))        # (R, k, m)
    totals = (onehot * w[subsets][:, :, None]).sum(axis=1)      # (R, m)
    present = onehot.any(axis=1)                                # (R, m)
    first = np.where(onehot, np.arange(k)[None, :, None], k).min(axis=1)  # (R, m)
    totals = np.where(present, totals, -np.inf)
    best = totals.max(axis=1, keepdims=True)
    first = np.where(present & (totals == best), first, k + 1)
    winner = first.argmin(axis=1)                               # (R,)
    has_vote = present.any(axis=1)
    return float(np.mean(np.where(has_vote, key_ok[winner], 0.0)))


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: percentile bootstrap over problems (resample problems w/ replacement).

    ``values`` is ``(P,)`` per-problem scores. The interval is widened to include the mean if
    float rounding or a degenerate distribution would put the mean outside it.

    >>> bootstrap_ci([1.0, 1.0, 1.0])
    (1.0, 1.0, 1.0)
    """
    vals = np.asarray(values, dtype=float).reshape(-1)
    if vals.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    mean = float(vals.mean())
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 4_000_000 // vals.size)  # bound memory at ~32 MB of indices
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, vals.size, size=(stop - start, vals.size))
        means[start:stop] = vals[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return mean, float(min(lo, mean)), float(max(hi, mean))


def _row_arrays(row: Mapping, i: int) -> tuple[np.ndarray, list | None, list | None]:
    if "correct" not in row:
        raise ValueError(f"row {i} (id={row.get('id')!r}) has no 'correct' list")
    correct = np.asarray(row["correct"], dtype=bool).reshape(-1)
    if correct.size == 0:
        raise ValueError(f"row {i} (id={row.get('id')!r}) has no samples")
    keys = row.get("keys")
    lengths = row.get("lengths")
    for name, seq in (("keys", keys), ("lengths", lengths)):
        if seq is not None and len(seq) != correct.size:
            raise ValueError(f"row {i} (id={row.get('id')!r}): {len(seq)} {name} for "
                             f"{correct.size} samples")
    return correct, keys, lengths


def summarize_samples(rows: Sequence[Mapping], ks: Sequence[int] = (1,), n_boot: int = 1000,
                      alpha: float = 0.05, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Aggregate per-problem sampling results into a JSON-safe summary.

    Each row: ``{"id", "correct": [bool]*n, "keys": [str|None]*n (optional),
    "lengths": [int]*n (optional)}``; ``n`` may differ between rows, and metrics are reported
    for each ``k`` in ``ks`` with ``k <= min n`` (others are listed in ``"skipped_ks"``).

    Returns ``{"n_problems", "n_samples" (min n), "ks", "pass@1", "pass@1_ci": [lo, hi],
    "pass@k", "pass@k_ci", "maj@k", "maj@k_ci", ..., "no_answer_rate", "mean_length",
    "p90_length", "mean_length_correct", "mean_length_incorrect"}``; CIs are percentile
    bootstraps over problems at level ``1 - alpha``.
    """
    if not rows:
        raise ValueError("summarize_samples needs at least one row")
    parsed = [_row_arrays(row, i) for i, row in enumerate(rows)]
    ns = np.array([c.size for c, _, _ in parsed])
    cs = np.array([int(c.sum()) for c, _, _ in parsed])
    n_min = int(ns.min())
    wanted = sorted({1, *(operator.index(k) for k in ks)})
    used = [k for k in wanted if k <= n_min]
    out: dict[str, Any] = {"n_problems": len(rows), "n_samples": n_min, "ks": used}
    if int(ns.max()) != n_min:
        out["n_samples_max"] = int(ns.max())
    skipped = [k for k in wanted if k > n_min]
    if skipped:
        out["skipped_ks"] = skipped

    def put(name: str, per_problem: np.ndarray) -> None:
        mean, lo, hi = bootstrap_ci(per_problem, n_boot=n_boot, alpha=alpha, seed=seed)
        out[name], out[f"{name}_ci"] = mean, [lo, hi]

    for k in used:
        put(f"pass@{k}", pass_at_k_array(ns, cs, k))
    has_keys = all(keys is not None for _, keys, _ in parsed)
    if has_keys:
        for k in used:
            per = [maj_at_k(keys, correct.tolist(), k, n_resamples=n_resamples,
                            rng=np.random.default_rng([seed, i, k]))
                   for i, (correct, keys, _) in enumerate(parsed)]
            put(f"maj@{k}", np.array(per))
        n_none = sum(sum(key is None for key in keys) for _, keys, _ in parsed)
        out["no_answer_rate"] = n_none / int(ns.sum())
    if all(lengths is not None for _, _, lengths in parsed):
        lengths = np.concatenate([np.asarray(ln, dtype=float) for _, _, ln in parsed])
        correct_all = np.concatenate([c for c, _, _ in parsed])
        out["mean_length"] = float(lengths.mean())
        out["p90_length"] = float(np.percentile(lengths, 90))
        out["mean_length_correct"] = (float(lengths[correct_all].mean())
                                      if correct_all.any() else None)
        out["mean_length_incorrect"] = (float(lengths[~correct_all].mean())
                                        if not correct_all.all() else None)
    return out
