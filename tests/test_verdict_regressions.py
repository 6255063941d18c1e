"""One regression test per verifier bug that was reported (each failed before its fix)."""
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from reasonlab.config import ConfigError
from reasonlab.grading.symbolic import has_math_verify
from reasonlab.io import DataError
from reasonlab.tasks import get_task
from reasonlab.tasks.base import REASONS

needs_mv = pytest.mark.skipif(not has_math_verify(), reason="math-verify not installed")


# ---- 1. an answer expression is evaluated, never graded by its last number --------------------
@pytest.mark.parametrize("task_name", ["arith", "gsm8k"])
@pytest.mark.parametrize("answer, reference, reason", [
    ("5-5", "5", "wrong"), ("2*2", "2", "wrong"), ("10**10**10", "10", "bad_expression"),
    ("10^10", "10", "wrong"), ("not 6", "6", "bad_expression"), ("3*6", "18", "ok"),
])
def test_expression_answers_are_evaluated(task_name, answer, reference, reason):
    verdict = get_task(task_name).verify({"answer": reference}, f"<answer>{answer}</answer>")
    assert (verdict.correct, verdict.reason) == (reason == "ok", reason)


@pytest.mark.parametrize("completion, reason", [
    ("so \\boxed{5-5}", "wrong"), ("work\n#### 5-5", "wrong"), ("The answer is 5 - 5.", "wrong"),
    ("The answer is not 5.", "bad_expression"), ("#### 5^2", "wrong"),
    ("so the total is 10 * 0 + 5", "ok"), ("so the total is 5*5", "wrong"),
])
def test_every_gsm8k_source_uses_the_same_candidate_rule(completion, reason):
    verdict = get_task("gsm8k").verify({"answer": "5"}, completion)
    assert (verdict.correct, verdict.reason) == (reason == "ok", reason)


def test_huge_power_is_rejected_fast():
    start = time.perf_counter()
    verdict = get_task("gsm8k").verify({"answer": "10"}, "<answer>10**10**10**10</answer>")
    assert verdict.reason == "bad_expression" and time.perf_counter() - start < 0.5


# ---- 2. the completion length cap is a task option with a generous default ------------------
def test_long_reasoning_is_graded_and_the_cap_is_an_option():
    long_completion = "think " * 25_000 + "</think><answer>18</answer>"  # 150k characters
    assert get_task("gsm8k").verify({"answer": "18"}, long_completion).correct
    capped = get_task("gsm8k", max_completion_chars=100_000)
    assert capped.verify({"answer": "18"}, long_completion).reason == "bad_format"
    assert capped.verify({"answer": "17"}, "<answer>18</answer>").reason == "wrong"
    for name in ("arith", "countdown", "math"):
        assert get_task(name, max_completion_chars=10).max_completion_chars == 10
    with pytest.raises(ValueError, match="max_completion_chars"):
        get_task("arith", max_completion_chars=0)


def test_reasons_are_documented_in_one_place():
    assert {"ok", "wrong", "no_answer", "bad_format", "multiple_answers", "bad_expression",
            "wrong_numbers", "timeout", "error", "fail", "crash", "sandbox_violation",
            "no_code"} == set(REASONS)


# ---- 3. one unclosed-tag rule for every task -------------------------------------------------
@pytest.mark.parametrize("task_name, reference, completion", [
    ("gsm8k", "8", "so <answer>8"), ("gsm8k", "8", "<answer>8</answer> and <answer>8"),
    ("arith", "8", "x</think><answer>8"), ("countdown", None, "<answer>(25 - 5) * 6 / 4"),
    ("math", "8", "<answer>\\boxed{8}"),
])
def test_unclosed_answer_tag_is_bad_format(task_name, reference, completion):
    row = {"answer": reference, "meta": {"numbers": [25, 5, 6, 4], "target": 30}}
    verdict = get_task(task_name).verify(row, completion)
    assert (verdict.correct, verdict.reason) == (False, "bad_format")


# ---- 4. data that does not fit the task is refused with path:LINE ---------------------------
def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GSM8K_ROW = {"question": "q?", "answer": "2 + 3 = 5\n#### 5"}


@pytest.mark.parametrize("task_name, rows, message", [
    ("math", [GSM8K_ROW], r"x\.jsonl:1: math: 'answer' is a worked solution"),
    ("gsm8k", [GSM8K_ROW, {"question": "q"}], r"x\.jsonl:2: gsm8k: missing key 'answer'"),
    ("gsm8k", [{"question": "q", "answer": "5"}], r"x\.jsonl:1: gsm8k: .*no '#### <number>' line"),
    ("gsm8k", ["", {"answer": "#### 5"}], r"x\.jsonl:2: gsm8k: missing key 'question'"),
    ("math", [{"problem": "p", "solution": "no box"}], r"x\.jsonl:1: math: .*no \\boxed"),
    ("gsm8k", [], r"x\.jsonl: no rows"),
    ("math", ["", "  "], r"x\.jsonl: no rows"),
])
def test_rows_that_do_not_fit_are_refused(tmp_path, task_name, rows, message):
    path = _write(tmp_path / "x.jsonl", rows)
    with pytest.raises(DataError, match=message) as info:
        get_task(task_name, path=path).rows("test")
    assert "\n" not in str(info.value)


def test_unknown_split_names_the_choices(tmp_path):
    task = get_task("gsm8k", path=_write(tmp_path / "x.jsonl", [GSM8K_ROW]))
    with pytest.raises(ConfigError, match="choose from: train, test"):
        task.rows("dev")
    with pytest.raises(ValueError):  # still a ValueError for callers that catch those
        get_task("arith").generate(2, seed=0, split="validation")


def test_offline_without_data_fails_fast_naming_the_real_options(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REASONLAB_DATA"}
    env.update(HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    code = ("from reasonlab.tasks import get_task\n"
            "try:\n    get_task('gsm8k').rows('test')\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60).stdout.strip()
    assert time.perf_counter() - start < 15  # was ~26 s of hub retries
    assert out.startswith("DataError gsm8k (test): no local data") and "\n" not in out
    assert "--data_path=<jsonl or dir>" in out and "$REASONLAB_DATA/gsm8k/test.jsonl" in out


def test_unreachable_hub_fails_without_retrying(monkeypatch):
    import reasonlab.tasks.data as data
    pytest.importorskip("datasets")
    monkeypatch.delenv("REASONLAB_DATA", raising=False)
    monkeypatch.setattr(data, "hub_reachable", lambda: False)
    start = time.perf_counter()
    with pytest.raises(DataError, match="unreachable.*--data_path="):
        get_task("math").rows("test")
    assert time.perf_counter() - start < 5


# ---- 5. a hostile math answer never delays other checks past their own timeout -------------
HOSTILE = ["\\boxed{9^{9^{9^{9^{9}}}}}", "\\boxed{(1+x)^{1000}}", "\\boxed{10^{10^{10}}}",
           "\\boxed{(x+y+z)^{300}}"]
HARMLESS = [("x^2", "\\boxed{x \\cdot x}"), ("\\frac{\\sqrt{3}}{2}", "\\boxed{\\sqrt{3}/2}"),
            ("(x+1)^2", "\\boxed{x^2+2x+1}"), ("\\{1,2\\}", "\\boxed{\\{2,1\\}}")]


@needs_mv
def test_hostile_math_answers_do_not_block_harmless_ones():
    timeout = 1.5
    task = get_task("math", timeout=timeout)
    task.verify({"answer": "x"}, "\\boxed{x+0}")  # start the worker template (not timed)
    results: dict[str, tuple] = {}

    def check(key, gold, completion):
        start = time.perf_counter()
        verdict = task.verify({"answer": gold}, completion)
        results[key] = (verdict, time.perf_counter() - start)

    jobs = [(f"hostile{i}", "1", c) for i, c in enumerate(HOSTILE)]
    jobs += [(f"harmless{i}", g, c) for i, (g, c) in enumerate(HARMLESS)]
    threads = [threading.Thread(target=check, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    task.close()
    for key, (verdict, elapsed) in results.items():
        assert elapsed < timeout + 0.5, (key, elapsed)
        if key.startswith("harmless"):
            assert verdict.correct and elapsed < timeout, (key, verdict, elapsed)
        else:
            assert verdict.reason in ("bad_expression", "timeout"), (key, verdict)
