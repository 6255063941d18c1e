import subprocess
import sys

import pytest

from reasonlab.tasks import TASKS, Verdict, get_task


def test_registry_names_and_error():
    assert set(TASKS) == {"arith", "code", "countdown", "gsm8k", "math"}
    message = "unknown task 'x'; choose from: arith, code, countdown, gsm8k, math"
    with pytest.raises(ValueError, match=message):
        get_task("x")
    assert get_task("arith").name == "arith"


def test_import_is_light():
    code = ("import sys, reasonlab.tasks, reasonlab.grading; "
            "print([m for m in ('torch', 'transformers', 'math_verify', 'sympy', 'datasets') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["arith", "countdown"])
def test_verify_never_raises_on_bad_inputs(name):
    task = get_task(name)
    row = task.generate(1, seed=0)[0]
    for completion in [None, 5, b"<answer>1</answer>", "x" * 100_000, ""]:
        verdict = task.verify(row, completion)
        assert isinstance(verdict, Verdict) and not verdict.correct
    assert task.verify({"meta": {}}, "<answer>1</answer>").reason == "error"


def test_unknown_difficulty_and_split():
    task = get_task("arith")
    with pytest.raises(ValueError, match="choose from: steps, max_operand"):
        task.generate(2, seed=0, depth=3)
    with pytest.raises(ValueError, match="split"):
        task.generate(2, seed=0, split="dev")
