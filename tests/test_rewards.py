"""Rewards: each component, the Kimi length reward, weighting, and the prompt curriculum."""
import doctest

import numpy as np
import pytest

from reasonlab.tasks import get_task
from reasonlab.train import curriculum, rewards
from reasonlab.train.curriculum import PromptSampler
from reasonlab.train.rewards import length_rewards, score_group

EX = {"question": "?", "answer": "12", "meta": {}}


def test_doctests():
    for module in (rewards, curriculum):
        assert doctest.testmod(module).failed == 0


def test_components_on_good_bad_and_hostile_completions():
    task = get_task("arith")
    texts = ["c = 5 + 7 = 12\n</think>\n<answer>12</answer>", "<answer>12</answer>", "</think><answer>13</answer>",
             "\x00" * 10, "wait, " * 5000]
    total, parts, verdicts = score_group(task, EX, texts, [9, 5, 5, 10, 9000],
                                         {"accuracy": 1.0, "format": 0.5, "language": 0.1})
    assert parts["accuracy"] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert parts["format"] == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert parts["language"][:3] == [1.0, 0.0, 0.0]            # arith: no computing line before </think> -> 0
    assert total[0] == pytest.approx(1.0 + 0.5 + 0.1)
    assert total[2] == pytest.approx(0.5)
    assert [v.correct for v in verdicts] == [True, True, False, False, False]


def test_kimi_length_reward_hand_computed():
    # lam = 0.5 - (len - 10) / 30: 0.5, 0.1667, -0.1667, -0.5
    got = length_rewards([10, 20, 30, 40], [True, False, True, False])
    assert got == pytest.approx([0.5, 0.0, -1 / 6, -0.5])
    assert length_rewards([7, 7], [True, False]) == [0.0, 0.0]


def test_length_reward_only_with_weight_and_unknown_reward_rejected():
    task = get_task("arith")
    _, parts, _ = score_group(task, EX, ["<answer>12</answer>"] * 2, [3, 9], {"accuracy": 1.0})
    assert set(parts) == {"accuracy"}
    _, parts, _ = score_group(task, EX, ["<answer>12</answer>"] * 2, [3, 9], {"accuracy": 1.0, "length": 0.2})
    assert parts["length"] == [0.5, -0.5]
    with pytest.raises(ValueError, match="unknown reward 'lenght'.*choose from"):
        score_group(task, EX, ["x"], [1], {"lenght": 1.0})


def test_prompt_sampler_is_deterministic_and_curriculum_filters():
    s = PromptSampler(100, "curriculum", low=0.1, high=0.9, seed=3)
    a, b = s.draw(8, step=5), s.draw(8, step=5)
    assert a == b and len(set(a)) == 8 and s.draw(8, step=6) != a
    for i in range(50):
        s.update(i, 1.0 if i < 25 else 0.0)                     # first 25 too easy, next 25 too hard
    assert set(s.eligible().tolist()) == set(range(50, 100))
    assert all(i >= 50 for i in s.draw(20, step=1))
    s.update(60, 0.5)
    s.update(60, 1.0)                                           # EMA 0.5 -> 0.75, still eligible
    assert s.rate[60] == pytest.approx(0.75) and 60 in s.eligible()
    for i in range(50, 100):
        s.update(i, 1.0)
        s.update(i, 1.0)
    assert len(s.draw(10, step=2)) == 10                       # nothing eligible: whole pool


def test_prompt_sampler_state_roundtrip_and_errors():
    s = PromptSampler(10, "curriculum", seed=0)
    s.update(3, 0.5)
    t = PromptSampler(10, "curriculum", seed=0)
    t.load_state_dict(s.state_dict())
    assert np.array_equal(t.rate, s.rate) and np.array_equal(t.attempts, s.attempts)
    with pytest.raises(ValueError, match="pool of 10 prompts"):
        PromptSampler(11).load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match="choose from: uniform, curriculum"):
        PromptSampler(10, "hardest")
    with pytest.raises(ValueError, match="low <= high"):
        PromptSampler(10, "curriculum", low=0.8, high=0.2)


def test_language_reward_is_the_tasks_notation_consistency():
    task = get_task("arith")
    symbols = "c = a + b = 7 + 12 = 19\nd = c * 2 = 19 * 2 = 38"
    words = "c is a plus b, 7 plus 12 makes 19\nd is c times 2, 19 times 2 makes 38"
    mixed = "c = a + b = 7 + 12 = 19\nd is c times 2, 19 times 2 makes 38\ne = d - 1 = 38 - 1 = 37"
    tail = "\n</think>\n<answer>38</answer>"
    got = [rewards.language_reward(task, EX, t + tail, None) for t in (symbols, words, mixed)]
    assert got == pytest.approx([1.0, 1.0, 2 / 3])
    other = get_task("countdown")                                  # default: share of ASCII words
    assert rewards.language_reward(other, EX, "try 1 + 2 \u6b63</think>", None) == pytest.approx(0.8)
