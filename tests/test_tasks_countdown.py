import random
from collections import Counter

import pytest

from reasonlab.tasks import get_task
from reasonlab.tasks.countdown import check_expression
from reasonlab.tasks.prompts import check_r1_format

TASK = get_task("countdown")


@pytest.fixture(scope="module")
def rows():
    return TASK.generate(300, seed=3)


def test_question_and_meta(rows):
    row = rows[0]
    meta = row["meta"]
    nums = ", ".join(map(str, meta["numbers"]))
    assert row["question"] == (f"Using the numbers [{nums}], make {meta['target']}. "
                               "Use each number once with + - * / and parentheses.")
    assert row["answer"] == meta["solution"]
    assert all(3 <= len(r["meta"]["numbers"]) <= 4 for r in rows)
    assert all(1 <= r["meta"]["target"] <= 999 for r in rows)
    assert all(1 <= n <= 99 for r in rows for n in r["meta"]["numbers"])


def test_deterministic(rows):
    assert TASK.generate(300, seed=3) == rows


def test_every_problem_solvable(rows):
    more = TASK.generate(200, seed=4, n_numbers=(2, 5), max_number=30, max_target=200)
    for row in rows + more:
        verdict = TASK.verify(row, "<answer>" + row["meta"]["solution"] + "</answer>")
        assert verdict.correct, (row, verdict)


def test_train_test_disjoint():
    key = TASK.split_key
    train = {key(r) for r in TASK.generate(1000, seed=0, n_numbers=3, max_number=20)}
    test = {key(r) for r in TASK.generate(300, seed=0, split="test", n_numbers=3, max_number=20)}
    assert train and test and not train & test


NUMS, TARGET = [3, 7, 25, 50], 125


@pytest.mark.parametrize("answer, reason", [
    ("(25 - 3 - 7) * 50 / 6", "wrong_numbers"),
    ("50 * 3 - 25 + 7 - 7", "wrong_numbers"),     # 7 reused
    ("50 * 3 - 25", "wrong_numbers"),             # 7 missing
    ("50 * 3 - 25 * 7 / 7", "wrong_numbers"),
    ("(50 + 25) * 3 / 7", "wrong"),
    ("50 + 25 + 3 * 7", "wrong"),
    ("(7 - 3) * 25 + 50 / 2", "wrong_numbers"),
    ("(50 * 3 - 25) * 7 / 7", "wrong_numbers"),
    ("50 * (7 - 3) - 25 * 3", "wrong_numbers"),
    ("25 / (7 - 7) + 3 + 50", "bad_expression"),
    ("3 + 7 +", "bad_expression"),
    ("-3 + 7 + 25 + 50", "bad_expression"),
    ("eval('125')", "bad_expression"),
    ("1" + "+1" * 150, "bad_format"),
])
def test_check_expression_rejects(answer, reason):
    verdict = check_expression(answer, NUMS, TARGET)
    assert not verdict.correct and verdict.reason == reason


def test_check_expression_accepts_and_division_exact():
    assert check_expression("(50 - 25) * (7 - 3) + 25", [50, 25, 7, 3, 25], 125).correct
    assert check_expression("50 * (25 - 7 * 3)", [50, 25, 7, 3], 200).correct
    assert check_expression("(3 + 7) / 25 * 50 + 105", [3, 7, 25, 50, 105], 125).correct
    assert not check_expression("7 / 3 + 25 + 50", NUMS, 77).correct  # 77.33.. is not 77
    assert check_expression("25 * 50 / (7 + 3)", [25, 50, 7, 3], TARGET).correct


def test_trailing_equals_only_if_target():
    assert check_expression("25 * 50 / (7 + 3) = 125", [25, 50, 7, 3], TARGET).correct
    assert check_expression("25 * 50 / (7 + 3) = 124", [25, 50, 7, 3], TARGET).reason == "wrong"
    assert not check_expression("25 * 50 / (7 + 3) = 125 = 125", [25, 50, 7, 3], TARGET).correct


def test_verify_tags_and_multiple():
    row = {"id": "x", "question": "", "answer": "", "meta": {"numbers": [25, 50, 7, 3],
                                                            "target": 125}}
    good = "25 * 50 / (7 + 3)"
    assert TASK.verify(row, f"t</think>\n<answer>{good}</answer>").correct
    assert TASK.verify(row, f"<answer>{good}</answer><answer>{good} </answer>").correct
    assert TASK.verify(row, f"<answer>{good}</answer><answer>50*25/(3+7)</answer>").reason == \
        "multiple_answers"
    assert TASK.verify(row, good).reason == "no_answer"
    assert get_task("countdown", lenient=True).verify(row, f"The answer is {good}.").correct
    assert TASK.canonical(" 25 * 50 ") == "25*50"


def test_trace_usually_solves_and_is_well_formed(rows):
    solved = 0
    for i, row in enumerate(rows):
        text = TASK.trace(row, random.Random(i))
        assert check_r1_format(text)
        body = text.split("\n</think>")[0].split("\n")
        assert all(line.startswith(("try ", "dead end, back", "give up")) for line in body)
        assert all(len(line) < 80 for line in body)
        solved += TASK.verify(row, text).correct
    assert solved / len(rows) > 0.85


def test_trace_deterministic_and_bounded(rows):
    row = rows[5]
    assert TASK.trace(row, random.Random(1)) == TASK.trace(row, random.Random(1))
    for i, r in enumerate(rows[:100]):
        text = TASK.trace(r, random.Random(i), max_nodes=5)
        assert text.count("try ") <= 5


def test_give_up_traces_fail(rows):
    reasons = Counter()
    for i, row in enumerate(rows):
        text = TASK.trace(row, random.Random(i), give_up_rate=1.0)
        assert "give up" in text and check_r1_format(text)
        reasons[TASK.verify(row, text).reason] += 1
    assert reasons["ok"] == 0
