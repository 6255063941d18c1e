"""Selectors of imitation rounds: pure functions over one problem's samples."""
import random

import pytest

from reasonlab.train.selectors import SELECTORS, Sample, majority_label, select


def S(ids, ok, key, finish="eos"):
    return Sample(list(ids), ok, key, finish)


def test_unfinished_samples_are_never_kept():
    s = [S([1], True, "7", "length"), S([2], True, "7", "stop"), S([3], True, "7", "eos")]
    for name in SELECTORS:
        assert 0 not in select(s, name, threshold=0.0)


def test_majority_ignores_gold_labels_and_respects_the_threshold():
    wrong_majority = [S([1], False, "8"), S([2], False, "8"), S([3], True, "7")]
    assert select(wrong_majority, "majority", 0.5) == [0, 1]      # pseudo-label "8", wrong but kept
    assert select(wrong_majority, "correct") == [2]
    assert majority_label(wrong_majority, 0.67) is None           # 2/3 < 0.67
    assert majority_label([S([1], True, None)] * 3, 0.0) is None   # no answer, no label


def test_majority_share_counts_all_samples_including_truncated():
    s = [S([1], True, "7"), S([2], True, "7", "length"), S([3], False, "8"), S([4], False, "9")]
    assert majority_label(s, 0.25) == "7" and majority_label(s, 0.5) is None


@pytest.mark.parametrize("seed", range(20))
def test_selected_indices_are_valid_distinct_and_ordered(seed):
    rng = random.Random(seed)
    s = [S([rng.randint(0, 3) for _ in range(rng.randint(1, 3))], rng.random() < 0.5, rng.choice("78 "),
           rng.choice(["eos", "eos", "stop", "length"])) for _ in range(rng.randint(1, 12))]
    for name in SELECTORS:
        for dedup in (True, False):
            picked = select(s, name, rng.random(), dedup)
            assert picked == sorted(set(picked)) and all(0 <= i < len(s) for i in picked)
            if dedup:
                assert len({tuple(s[i].ids) for i in picked}) == len(picked)
    short = select(s, "shortest", dedup=False)
    if short:
        assert set(short) <= set(select(s, "correct", dedup=False))
        assert len({len(s[i].ids) for i in short}) == 1
