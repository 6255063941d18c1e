import random
import re

import pytest

from reasonlab.tasks import get_task
from reasonlab.tasks.arith import REFLECTION_MARKER
from reasonlab.tasks.prompts import check_r1_format

TASK = get_task("arith")


@pytest.fixture(scope="module")
def rows():
    return TASK.generate(300, seed=11, steps=(2, 6))


def test_question_shape_and_meta(rows):
    row = rows[0]
    assert set(row) == {"id", "question", "answer", "meta"}
    step = r"[a-z] = [a-z0-9]+ [-+*] [a-z0-9]+\. "
    assert re.fullmatch(rf"a = \d+, b = \d+\. ({step})+What is [a-z]\?", row["question"])
    meta = row["meta"]
    assert len(meta["program"]) == meta["steps"]
    assert str(meta["values"][meta["target"]]) == row["answer"]
    assert all(abs(v) <= 10_000 for r in rows for v in r["meta"]["values"].values())


def test_generate_deterministic_and_distinct(rows):
    assert TASK.generate(300, seed=11, steps=(2, 6)) == rows
    assert TASK.generate(5, seed=12) != TASK.generate(5, seed=11)
    assert len({r["question"] for r in rows}) == len(rows) == len({r["id"] for r in rows})


def test_steps_difficulty():
    for steps in (1, 3, 8):
        assert all(r["meta"]["steps"] == steps for r in TASK.generate(20, seed=0, steps=steps))


def test_train_test_disjoint():
    train = TASK.generate(2000, seed=0, steps=2, max_operand=9)
    test = TASK.generate(500, seed=0, split="test", steps=2, max_operand=9)
    test_other_seed = TASK.generate(500, seed=1, split="test", steps=2, max_operand=9)
    train_q = {r["question"] for r in train}
    assert not train_q & {r["question"] for r in test + test_other_seed}


def test_clean_trace_is_correct_and_well_formed(rows):
    for i, row in enumerate(rows):
        text = TASK.trace(row, random.Random(i))
        assert check_r1_format(text)
        assert TASK.verify(row, text).correct
        assert len(text.split("\n</think>")[0].split("\n")) == row["meta"]["steps"]


def test_errors_without_correction_are_wrong(rows):
    for i, row in enumerate(rows):
        text = TASK.trace(row, random.Random(i), error_rate=1.0)
        assert REFLECTION_MARKER not in text
        assert TASK.verify(row, text).reason == "wrong"


def test_errors_with_correction_are_right(rows):
    for i, row in enumerate(rows):
        text = TASK.trace(row, random.Random(i), error_rate=1.0, correction_rate=1.0)
        lines = text.split("\n</think>")[0].split("\n")
        assert len(lines) == 2 * row["meta"]["steps"]
        assert all(line.startswith("wait, ") for line in lines[1::2])
        assert TASK.verify(row, text).correct


def test_trace_equals_labelled_text(rows):
    for i, row in enumerate(rows[:50]):
        a = TASK.trace(row, random.Random(i), error_rate=0.3, correction_rate=0.5)
        b, _ = TASK.trace_with_labels(row, random.Random(i), 0.3, 0.5)
        assert a == b


def _replay_labels(row, lines):
    """Independent oracle: re-read the text and check every computed variable after each line."""
    truth = row["meta"]["values"]
    believed, last_target, labels = {}, None, []
    for line in lines:
        value = int(line.rsplit("= ", 1)[1].strip("()"))
        if line.startswith(REFLECTION_MARKER):
            believed[last_target] = value
        else:
            last_target = line.split(" = ", 1)[0]
            believed[last_target] = value
        labels.append(all(believed[k] == truth[k] for k in believed))
    return labels


@pytest.mark.parametrize("error_rate, correction_rate", [(0.0, 0.0), (0.3, 0.0), (0.3, 0.7),
                                                          (1.0, 0.5)])
def test_oracle_labels_match_definition(rows, error_rate, correction_rate):
    seen_false = 0
    for i, row in enumerate(rows):
        text, steps = TASK.trace_with_labels(row, random.Random(i), error_rate, correction_rate)
        lines = text.split("\n</think>")[0].split("\n")
        assert [s for s, _ in steps] == lines
        labels = [ok for _, ok in steps]
        assert labels == _replay_labels(row, lines)
        seen_false += labels.count(False)
        if error_rate == 0:
            assert all(labels)
    assert (seen_false > 0) == (error_rate > 0)


@pytest.mark.parametrize("completion, reason", [
    ("</think><answer>{a}</answer>", "ok"),
    ("</think><answer>{a}.0</answer>", "ok"),
    ("</think><answer> {a} </answer>", "ok"),
    ("</think><answer>{a}</answer><answer>{a}</answer>", "ok"),
    ("</think><answer>{a}</answer><answer>{b}</answer>", "multiple_answers"),
    ("</think><answer>{a} or {b}</answer>", "multiple_answers"),
    ("</think><answer>{b}</answer>", "wrong"),
    ("the answer is {a}", "no_answer"),
    ("<answer></answer>", "no_answer"),
    ("<answer><answer>{a}</answer></answer>", "bad_format"),
])
def test_verify_cases(rows, completion, reason):
    row = rows[0]
    a, b = row["answer"], str(int(row["answer"]) + 1)
    verdict = TASK.verify(row, completion.format(a=a, b=b))
    assert verdict.reason == reason and verdict.correct == (reason == "ok")


def test_lenient_accepts_untagged(rows):
    row = rows[0]
    assert get_task("arith", lenient=True).verify(row, f"so it is {row['answer']}").correct


def test_fewshot_prompt(rows):
    prompt = TASK.format_prompt(rows[0], "fewshot", k=2)
    assert prompt.count("Question:") == 3 and prompt.endswith(rows[0]["question"] + "\nAnswer:")
    assert TASK.format_prompt(rows[0], "r1").endswith("Assistant: <think>")
