"""Tests for reasonlab.eval.metrics: pass@k, majority vote, maj@k, bootstrap CIs, summaries."""
from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonlab.eval.metrics import (bootstrap_ci, maj_at_k, majority_vote, pass_at_k,
                                    pass_at_k_array, summarize_samples)


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (first c correct) that contain a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def brute_maj_at_k(keys, correct_by_key, k) -> float:
    subsets = list(itertools.combinations(range(len(keys)), k))
    hits = [correct_by_key.get(majority_vote([keys[i] for i in s]), False) for s in subsets]
    return sum(hits) / len(subsets)


# ---------------------------------------------------------------------------------- pass@k


@pytest.mark.parametrize("n,c,k,expected", [
    (5, 2, 2, 0.7), (5, 0, 3, 0.0), (5, 5, 1, 1.0), (4, 1, 1, 0.25), (10, 3, 1, 0.3),
    (3, 1, 2, 2 / 3), (6, 2, 5, 1.0), (10, 1, 10, 1.0),
])
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_brute_force_for_all_small_cases():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_matches_exact_binomials_for_large_n():
    n, c, k = 1000, 7, 100
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-10)


@pytest.mark.parametrize("n,c,k", [(5, 2, 6), (5, 6, 1), (5, -1, 1), (5, 2, 0), (0, 0, 1)])
def test_pass_at_k_validates(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_at_k_rejects_float_arguments():
    with pytest.raises(TypeError):
        pass_at_k(5.0, 2, 2)


def test_pass_at_k_array_equals_scalar_loop():
    rng = np.random.default_rng(0)
    ns = rng.integers(16, 200, size=300)
    cs = np.array([rng.integers(0, n + 1) for n in ns])
    for k in (1, 2, 8, 16):
        vec = pass_at_k_array(ns, cs, k)
        loop = np.array([pass_at_k(int(n), int(c), k) for n, c in zip(ns, cs)])
        np.testing.assert_allclose(vec, loop, atol=1e-10)


def test_pass_at_k_array_validates_and_handles_empty():
    assert pass_at_k_array([], [], 3).shape == (0,)
    with pytest.raises(ValueError):
        pass_at_k_array([4, 2], [1, 1], 3)
    with pytest.raises(ValueError):
        pass_at_k_array([4, 4], [5, 1], 1)
    with pytest.raises(ValueError):
        pass_at_k_array([4], [1, 1], 1)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_is_a_probability_monotone_in_k_and_c(nck):
    n, c, k = nck
    p = pass_at_k(n, c, k)
    assert 0.0 <= p <= 1.0
    if k < n:
        assert pass_at_k(n, c, k + 1) >= p - 1e-12
    if c < n:
        assert pass_at_k(n, c + 1, k) >= p - 1e-12


# ---------------------------------------------------------------------------- majority vote


def test_majority_vote_basic_and_ties_first_occurrence():
    assert majority_vote(["1", "2", "2"]) == "2"
    assert majority_vote(["1", "2", "2", "1"]) == "1"
    assert majority_vote(["2", "1", "1", "2"]) == "2"
    assert majority_vote(["x"]) == "x"


def test_majority_vote_none_never_wins_unless_all_none():
    assert majority_vote([None, None, None, "7"]) == "7"
    assert majority_vote([None, "3", None, "4", None]) == "3"
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None


def test_weighted_vote_with_constant_weights_equals_plain_vote():
    rng = np.random.default_rng(1)
    for _ in range(200):
        keys = [None if v == 0 else str(v) for v in rng.integers(0, 4, size=rng.integers(1, 9))]
        assert majority_vote(keys, weights=[0.37] * len(keys)) == majority_vote(keys)


def test_weighted_vote_sums_weights_per_key():
    assert majority_vote(["a", "b", "b"], weights=[0.9, 0.4, 0.4]) == "a"
    assert majority_vote(["a", "b", "b"], weights=[0.7, 0.4, 0.4]) == "b"
    assert majority_vote(["a", None], weights=[0.1, 100.0]) == "a"
    with pytest.raises(ValueError):
        majority_vote(["a"], weights=[1.0, 2.0])
    with pytest.raises(ValueError):
        majority_vote(["a"], weights=[float("nan")])


# ------------------------------------------------------------------------------------ maj@k


def test_maj_at_k_exact_when_k_equals_n():
    keys = ["3", "4", "4", None, "3", "4"]
    assert maj_at_k(keys, {"4": True}, k=6) == 1.0
    assert maj_at_k(keys, {"3": True}, k=6) == 0.0
    assert maj_at_k([None, None], {"3": True}, k=2) == 0.0


def test_maj_at_k_equals_brute_force_enumeration():
    rng = np.random.default_rng(2)
    for _ in range(30):
        n = int(rng.integers(1, 9))
        keys = [None if v == 0 else str(v) for v in rng.integers(0, 4, size=n)]
        table = {"1": True}
        for k in range(1, n + 1):
            assert maj_at_k(keys, table, k) == pytest.approx(brute_maj_at_k(keys, table, k))


def test_maj_at_k_subsampling_estimate_is_close_and_seeded():
    rng = np.random.default_rng(3)
    keys = [str(v) for v in rng.integers(0, 3, size=20)]
    table = {"0": True}
    exact = brute_maj_at_k(keys, table, 5)  # C(20,5) = 15504 subsets
    est = maj_at_k(keys, table, 5, n_resamples=4000, rng=7)
    assert est == pytest.approx(exact, abs=0.04)
    assert est == maj_at_k(keys, table, 5, n_resamples=4000, rng=7)


def test_maj_at_k_per_sample_correctness_list():
    keys = ["a", "b", "b", None]
    correct = [False, True, True, False]
    assert maj_at_k(keys, correct, k=4) == 1.0
    assert maj_at_k(keys, correct, k=1) == pytest.approx(0.5)  # mean per-sample correctness
    with pytest.raises(ValueError):
        maj_at_k(keys, [True], k=1)
    with pytest.raises(ValueError):
        maj_at_k(keys, correct, k=5)


def test_maj_at_k_weighted():
    keys = ["a", "b", "b"]
    assert maj_at_k(keys, {"a": True}, k=3, weights=[5.0, 1.0, 1.0]) == 1.0
    assert maj_at_k(keys, {"a": True}, k=3, weights=[1.0, 1.0, 1.0]) == 0.0


# ------------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(4)
    small = rng.random(20) < 0.6
    large = rng.random(2000) < 0.6
    m1, lo1, hi1 = bootstrap_ci(small)
    m2, lo2, hi2 = bootstrap_ci(large)
    assert lo1 <= m1 <= hi1 and lo2 <= m2 <= hi2
    assert m1 == pytest.approx(small.mean()) and m2 == pytest.approx(large.mean())
    assert (hi2 - lo2) < (hi1 - lo1) / 3


def test_bootstrap_ci_deterministic_degenerate_and_validated():
    vals = [0.1, 0.5, 0.9, 0.3]
    assert bootstrap_ci(vals, seed=3) == bootstrap_ci(vals, seed=3)
    assert bootstrap_ci([0.25]) == (0.25, 0.25, 0.25)
    m, lo, hi = bootstrap_ci([0.1] * 7)
    assert lo <= m <= hi and hi - lo < 1e-12
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], alpha=1.5)


# -------------------------------------------------------------------------------- summaries


def _rows(n_problems=30, n=8, seed=5):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_problems):
        p = rng.random()
        keys = []
        for _ in range(n):
            u = rng.random()
            keys.append("right" if u < p else (None if u > 0.9 else f"w{rng.integers(3)}"))
        rows.append({"id": str(i), "keys": keys, "correct": [k == "right" for k in keys],
                     "lengths": rng.integers(10, 100, size=n).tolist()})
    return rows


def test_summarize_samples_keys_values_and_json_safe():
    rows = _rows()
    out = summarize_samples(rows, ks=[1, 4, 8, 16], n_boot=200)
    json.dumps(out, allow_nan=False)
    assert out["n_problems"] == 30 and out["n_samples"] == 8
    assert out["ks"] == [1, 4, 8] and out["skipped_ks"] == [16]
    assert out["pass@1"] == pytest.approx(np.mean([np.mean(r["correct"]) for r in rows]))
    for k in (1, 4, 8):
        lo, hi = out[f"pass@{k}_ci"]
        assert lo <= out[f"pass@{k}"] <= hi
        assert out[f"maj@{k}"] <= out[f"pass@{k}"] + 1e-12
    assert out["pass@1"] <= out["pass@4"] <= out["pass@8"]
    assert out["maj@1"] == pytest.approx(out["pass@1"])
    all_len = np.concatenate([r["lengths"] for r in rows])
    assert out["mean_length"] == pytest.approx(all_len.mean())
    assert out["p90_length"] == pytest.approx(np.percentile(all_len, 90))
    n_none = sum(k is None for r in rows for k in r["keys"])
    assert out["no_answer_rate"] == pytest.approx(n_none / (30 * 8))


def test_summarize_samples_exact_maj_at_n_and_optional_fields():
    rows = [{"id": "a", "correct": [True, False, False], "keys": ["1", "2", "2"]},
            {"id": "b", "correct": [True, True, False], "keys": ["5", "5", None]}]
    out = summarize_samples(rows, ks=[3], n_boot=100)
    assert out["maj@3"] == 0.5
    assert out["pass@3"] == 1.0
    assert "mean_length" not in out
    no_keys = summarize_samples([{"id": "a", "correct": [True, False]}], ks=[2])
    assert "maj@2" not in no_keys and no_keys["pass@2"] == 1.0


def test_summarize_samples_validates_rows():
    with pytest.raises(ValueError):
        summarize_samples([])
    with pytest.raises(ValueError, match="row 0"):
        summarize_samples([{"id": "a", "correct": [True], "keys": ["1", "2"]}])


def test_metrics_import_does_not_pull_torch_or_matplotlib():
    code = ("import sys, reasonlab.eval.metrics, reasonlab.eval, reasonlab.eval.plots; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
