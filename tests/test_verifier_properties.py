"""Property tests: every verifier survives arbitrary and adversarial strings, fast.

Each call's CPU time (``time.thread_time``) must stay under 50 ms (re-measured once if over,
so a garbage-collection pause is not blamed on the verifier); wall time is checked more loosely
so a busy machine does not make the test flaky, while a real hang still fails.
"""
import random
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonlab.grading.symbolic import has_math_verify
from reasonlab.tasks import Verdict, get_task

CPU_LIMIT_S = 0.050
WALL_LIMIT_S = 1.0
MANY = settings(max_examples=10_000, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gsm8k"

FRAGMENTS = ["<answer>", "</answer>", "<think>", "</think>", "<answer", "answer>", "\\boxed{",
             "\\fbox{", "{", "}", "####", "The answer is", "the final answer is:", "(", ")", "+",
             "-", "*", "/", "=", " ", "\n", "0", "1", "3", "25", "50", "125", "18", "1,800", "$",
             "%", ".", ",", "1/0", "0.5", "-7", "\u0661\u0662", "\u2212", "\u00bd", "\ufffd",
             "9" * 60, "e", "x", "or", "dollars", "\\frac{1}{2}", "wait,", "\x00"]


def _repeat(template: str, n: int) -> str:
    return template * n


ADVERSARIAL = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=30).map("".join),
    st.integers(1, 6000).map(lambda n: "<answer>" + "9" * n + "</answer>"),
    st.integers(1, 5000).map(lambda n: "<answer>" + "(" * n + "1" + ")" * n + "</answer>"),
    st.integers(1, 5000).map(lambda n: "<answer>" + "(" * n + "</answer>"),
    st.integers(1, 3000).map(lambda n: _repeat("<answer>1</answer>", n)),
    st.integers(1, 3000).map(lambda n: _repeat("<answer>", n) + "1" + _repeat("</answer>", n)),
    st.integers(1, 5000).map(lambda n: "\\boxed{" * n + "1"),
    st.integers(1, 3000).map(lambda n: "1+" * n + "1"),
    st.integers(1, 2000).map(lambda n: "#### " + "1," * n + "000"),
    st.integers(1, 2000).map(lambda n: "The answer is " * n),
    st.integers(49_990, 50_010).map(lambda n: "<answer>1</answer>".ljust(n, " ")),
    st.text(alphabet=st.characters(categories=["Nd"]), max_size=300).map(
        lambda s: f"<answer>{s}</answer>"),
)


def _near_miss(row: dict, good: str):
    """Mutations of a correct completion: insertions, deletions, duplicated tags."""
    def mutate(args):
        pos, fragment, cut = args
        pos, cut = pos % (len(good) + 1), cut % 4
        return good[:pos] + fragment + good[pos + cut:]
    return st.tuples(st.integers(0, 10_000), st.sampled_from(FRAGMENTS + [good, ""]),
                     st.integers(0, 3)).map(mutate)


def _timed_verify(task, row, completion):
    start_wall, start_cpu = time.perf_counter(), time.thread_time()
    verdict = task.verify(row, completion)
    return verdict, time.thread_time() - start_cpu, time.perf_counter() - start_wall


def _check(task, row, completion):
    verdict, cpu, wall = _timed_verify(task, row, completion)
    if cpu >= CPU_LIMIT_S or wall >= WALL_LIMIT_S:  # rule out a one-off GC pause: measure again
        again, cpu, wall = _timed_verify(task, row, completion)
        assert again == verdict  # deterministic
    assert isinstance(verdict, Verdict)
    assert isinstance(verdict.correct, bool) and isinstance(verdict.reason, str)
    assert verdict.parsed is None or isinstance(verdict.parsed, str)
    if verdict.parsed is not None:
        task.canonical(verdict.parsed)
    assert cpu < CPU_LIMIT_S, (cpu, completion[:200])
    assert wall < WALL_LIMIT_S, (wall, completion[:200])
    return verdict


ARITH = get_task("arith")
ARITH_ROW = ARITH.generate(1, seed=0, steps=4)[0]
ARITH_GOOD = ARITH.trace(ARITH_ROW, random.Random(0))

COUNTDOWN = get_task("countdown")
COUNTDOWN_ROW = COUNTDOWN.generate(1, seed=0, n_numbers=4)[0]
COUNTDOWN_GOOD = COUNTDOWN.trace(COUNTDOWN_ROW, random.Random(0))

GSM8K = get_task("gsm8k", data_dir=DATA)
GSM8K_ROW = {"id": "gsm8k-test-0", "question": "Janet's ducks...", "answer": "18",
             "meta": {"solution": "She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18"}}
GSM8K_GOOD = GSM8K_ROW["meta"]["solution"]


@MANY
@given(st.one_of(ADVERSARIAL, _near_miss(ARITH_ROW, ARITH_GOOD)))
def test_arith_verifier_total_and_fast(completion):
    _check(ARITH, ARITH_ROW, completion)


@MANY
@given(st.one_of(ADVERSARIAL, _near_miss(COUNTDOWN_ROW, COUNTDOWN_GOOD)))
def test_countdown_verifier_total_and_fast(completion):
    _check(COUNTDOWN, COUNTDOWN_ROW, completion)


@MANY
@given(st.one_of(ADVERSARIAL, _near_miss(GSM8K_ROW, GSM8K_GOOD)))
def test_gsm8k_verifier_total_and_fast(completion):
    _check(GSM8K, GSM8K_ROW, completion)


def test_good_completions_really_are_correct():
    assert ARITH.verify(ARITH_ROW, ARITH_GOOD).correct
    assert COUNTDOWN.verify(COUNTDOWN_ROW, COUNTDOWN_GOOD).correct
    assert GSM8K.verify(GSM8K_ROW, GSM8K_GOOD).correct


# ---- math: symbolic checks run in a killable worker ------------------------------------------
needs_mv = pytest.mark.skipif(not has_math_verify(), reason="math-verify not installed")
MATH_TIMEOUT_S = 3.0
MATH_ROW = {"id": "m", "question": "q", "answer": "\\frac{\\sqrt{3}}{2}", "meta": {}}
MATH_TEXT = st.one_of(
    ADVERSARIAL,
    st.text(max_size=60).map(lambda s: "\\boxed{" + s + "}"),
    st.lists(st.sampled_from(["x", "^", "{", "}", "2", "\\frac", "\\sqrt", "+", "(", ")", "\\pi",
                              "10", "!", "\\infty", ",", "=", "\\le"]), max_size=25).map(
        lambda parts: "<answer>" + "".join(parts) + "</answer>"),
)


@pytest.fixture(scope="module")
def math_task():
    task = get_task("math", timeout=MATH_TIMEOUT_S)
    yield task
    task.close()


def _check_math(task, completion):
    start = time.perf_counter()
    verdict = task.verify(MATH_ROW, completion)
    # a call after a kill also restarts the worker (about a second), hence the slack
    assert time.perf_counter() - start < MATH_TIMEOUT_S + 5.0
    assert isinstance(verdict, Verdict) and isinstance(verdict.correct, bool)


@needs_mv
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(completion=MATH_TEXT)
def test_math_verifier_total_and_bounded(math_task, completion):
    _check_math(math_task, completion)


@needs_mv
@pytest.mark.slow
@MANY
@given(completion=MATH_TEXT)
def test_math_verifier_total_and_bounded_many(math_task, completion):
    _check_math(math_task, completion)
