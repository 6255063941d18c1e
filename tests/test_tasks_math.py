import json
import time

import pytest

from reasonlab.grading.symbolic import has_math_verify
from reasonlab.grading.worker import hang
from reasonlab.tasks import get_task
from reasonlab.tasks.math import extract_math_answer

needs_mv = pytest.mark.skipif(not has_math_verify(), reason="math-verify not installed")
ROW = {"id": "m", "question": "q", "answer": "\\frac{1}{2}", "meta": {}}


@pytest.fixture(scope="module")
def task():
    task = get_task("math", timeout=3.0)
    yield task
    task.close()


def test_extraction():
    assert extract_math_answer("so \\boxed{\\frac{1}{2}} or \\fbox{3}") == ("3", "ok")
    assert extract_math_answer("<answer>x \\boxed{2}</answer>") == ("2", "ok")
    assert extract_math_answer("<answer>1</answer><answer>2</answer>")[1] == "multiple_answers"
    assert extract_math_answer("nothing") == (None, "no_answer")
    assert extract_math_answer("<answer><answer>1</answer>")[1] == "bad_format"


def test_fast_paths_need_no_worker():
    task = get_task("math", equal_fn=hang, timeout=0.1)
    assert task.verify(ROW, "\\boxed{\\dfrac{1}{2}}").correct
    assert task.verify(ROW, "\\boxed{0.5}").correct
    assert task.verify(ROW, "<answer>2/4</answer>").correct
    assert task.verify(ROW, "\\boxed{0.4}").reason == "wrong"
    assert not task.verify(ROW, "\\boxed{0.5000001}").correct
    assert task.canonical("0.5") == task.canonical("\\frac{1}{2}")
    task.close()


def test_hanging_check_is_killed_in_time():
    task = get_task("math", equal_fn=hang, timeout=0.5)
    task.verify(ROW, "\\boxed{x}")  # first call also starts the worker
    start = time.perf_counter()
    verdict = task.verify(ROW, "\\boxed{y}")
    assert verdict.reason == "timeout" and not verdict.correct
    assert time.perf_counter() - start < 2.5
    task.close()


@needs_mv
@pytest.mark.parametrize("gold, pred, correct", [
    ("\\frac{1}{2}", "\\frac{2}{4}", True), ("x^2+2x+1", "(x+1)^2", True),
    ("\\{1,2\\}", "\\{2,1\\}", True), ("3", "4", False), ("\\sqrt{2}", "2^{1/2}", True),
    ("\\pi", "3.14", False),
])
def test_symbolic_equivalence(task, gold, pred, correct):
    assert task.verify({**ROW, "answer": gold}, f"\\boxed{{{pred}}}").correct == correct


@needs_mv
def test_math_verify_hang_times_out():
    task = get_task("math", timeout=1.0)
    task.verify(ROW, "\\boxed{x+1}")  # warm the worker
    start = time.perf_counter()
    verdict = task.verify({**ROW, "answer": "1"}, "\\boxed{(1+x)^{1000}}")  # sympy expands
    assert verdict.reason == "timeout"
    assert time.perf_counter() - start < 2.5
    assert task.verify({**ROW, "answer": "x^2"}, "\\boxed{x \\cdot x}").correct
    task.close()


def test_power_towers_are_refused_before_any_worker():
    task = get_task("math", equal_fn=hang, timeout=5.0)
    start = time.perf_counter()
    verdict = task.verify({**ROW, "answer": "1"}, "\\boxed{2^{2^{2^{2^{10}}}}}")
    assert verdict.reason == "bad_expression" and time.perf_counter() - start < 0.5
    assert task._pool.peek() is None  # no worker was started for it


def test_local_rows(tmp_path):
    path = tmp_path / "m.jsonl"
    records = [{"problem": "p1", "solution": "so \\boxed{\\frac{1}{2}}.", "level": "Level 1"},
               {"question": "p2", "answer": "7"}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    rows = get_task("math", path=path).generate(None, seed=0, split="test")
    assert [r["answer"] for r in rows] == ["\\frac{1}{2}", "7"]
    assert rows[0]["meta"]["level"] == "Level 1" and rows[1]["id"] == "math-test-1"


def test_missing_math_verify_is_a_clear_error(monkeypatch):
    import reasonlab.grading.symbolic as symbolic
    monkeypatch.setattr(symbolic, "has_math_verify", lambda: False)
    task = get_task("math")
    assert task.verify(ROW, "\\boxed{0.5}").correct  # fast paths still work
    with pytest.raises(ImportError, match=r"pip install 'reasonlab\[math\]'"):
        task.verify(ROW, "\\boxed{x}")


def test_task_pickles_without_its_workers():
    import pickle
    task = get_task("math", equal_fn=hang, timeout=0.1)
    copy = pickle.loads(pickle.dumps(task))
    assert copy.timeout == 0.1 and copy.verify(ROW, "\\boxed{0.5}").correct
