"""Hostile and tricky completions for the MATH verifier (symbolic checks in killable workers).

Each case is ``(completion, reference, correct, reason)``; the expected verdict is what a careful
human grader would say. The whole suite shares one task (one worker pool). Every call returns a
Verdict, never raises, and returns within its timeout plus a margin (the real margin, measured
by hand, is under 0.5 s; the bound here is looser so a loaded machine does not fail the test).
"""

import pytest
from adversarial import assert_verdict

from reasonlab.grading.symbolic import has_math_verify
from reasonlab.tasks import get_task

pytestmark = pytest.mark.skipif(not has_math_verify(), reason="math-verify not installed")
TIMEOUT_S = 2.0
CALL_BOUND_S = TIMEOUT_S + 1.5


def B(text: str) -> str:
    return "so \\boxed{" + text + "}"


def A(text: str) -> str:
    return f"<answer>{text}</answer>"


HALF = "\\frac{1}{2}"
CASES = [
    # ---- numbers: fast exact paths -------------------------------------------------------------
    (B("\\frac{1}{2}"), HALF, True, "ok"),
    (B("\\dfrac{1}{2}"), HALF, True, "ok"),
    (B("\\tfrac{1}{2}"), HALF, True, "ok"),
    (B("\\frac { 1 } { 2 }"), HALF, True, "ok"),
    (B("0.5"), HALF, True, "ok"),
    (B("1/2"), HALF, True, "ok"),
    (B("2/4"), HALF, True, "ok"),
    (B(".5"), HALF, True, "ok"),
    (B("0.50"), HALF, True, "ok"),
    (B("\\frac12"), HALF, True, "ok"),
    (B("\\frac{2}{4}"), HALF, True, "ok"),
    (B("\\left(\\frac{1}{2}\\right)"), HALF, True, "ok"),
    (B("\\frac{1}{2}\\,"), HALF, True, "ok"),
    (B("$\\frac{1}{2}$"), HALF, True, "ok"),
    (B("\\text{0.5}"), HALF, True, "ok"),
    (B("\\frac{1}{2}}"), HALF, True, "ok"),
    (B("١/٢"), HALF, True, "ok"),
    (B("１/２"), HALF, True, "ok"),
    (B("½"), HALF, True, "ok"),
    (B("0.4"), HALF, False, "wrong"),
    (B("0.5000001"), HALF, False, "wrong"),
    (B("0.49999999999"), HALF, False, "wrong"),
    (B("\\frac{1}{3}"), HALF, False, "wrong"),
    (B("-\\frac{1}{2}"), HALF, False, "wrong"),
    (B("2"), HALF, False, "wrong"),
    (B("5"), "5", True, "ok"),
    (B("5."), "5", True, "ok"),
    (B("5.0"), "5", True, "ok"),
    (B("+5"), "5", True, "ok"),
    (B("  5  "), "5", True, "ok"),
    (B("05"), "5", True, "ok"),
    (B("5e0"), "5", True, "ok"),
    (B("500e-2"), "5", True, "ok"),
    (B("x = 5"), "5", True, "ok"),
    (B("5 \\text{ units}"), "5", True, "ok"),
    (B("\\text{5 units}"), "5", True, "ok"),
    (B("5^\\circ"), "5", True, "ok"),
    (B("\\$5"), "5", True, "ok"),
    (B("5\\%"), "5", True, "ok"),
    (B("-5"), "-5", True, "ok"),
    (B("- 5"), "-5", True, "ok"),
    (B("−5"), "-5", True, "ok"),
    (B("(-5)"), "-5", True, "ok"),
    (B("5"), "-5", False, "wrong"),
    (B("-0"), "0", True, "ok"),
    (B("-0.0"), "0", True, "ok"),
    (B("0.75"), "\\frac{3}{4}", True, "ok"),
    (B("\\frac{6}{8}"), "\\frac{3}{4}", True, "ok"),
    (B("3.5"), "\\frac{7}{2}", True, "ok"),
    (B("1000"), "1,000", True, "ok"),
    (B("1{,}000"), "1000", True, "ok"),
    (B("1\\,000"), "1000", True, "ok"),
    (B("0.001"), "10^{-3}", True, "ok"),
    (B("30"), "30^\\circ", True, "ok"),
    (B("5"), "5\\%", True, "ok"),
    (B("18"), "\\$18", True, "ok"),
    (B("2"), "x=2", True, "ok"),
    (B("720"), "6!", True, "ok"),
    (B("6!"), "720", True, "ok"),
    (B("2^{2004} \\cdot 2"), "2^{2005}", True, "ok"),
    (B("2^{2005}"), "2^{2005}", True, "ok"),
    (B("2^{10000}"), "1", False, "wrong"),
    (B("10^{10}"), "10", False, "wrong"),
    (B("5-5"), "5", False, "wrong"),
    (B("2*2"), "2", False, "wrong"),
    (B("2 \\times 2"), "2", False, "wrong"),
    (B("3 \\cdot 2 = 6"), "6", True, "ok"),
    (B("x = 5"), "6", False, "wrong"),
    (B("6!"), "6", False, "wrong"),
    (B("-6"), "6", False, "wrong"),
    # ---- symbolic answers: math-verify in a worker ---------------------------------------------
    (B("(x+1)^2"), "x^2+2x+1", True, "ok"),
    (B("x^2+2x+1"), "(x+1)^2", True, "ok"),
    (B("x^2+2x+2"), "(x+1)^2", False, "wrong"),
    (B("2^{1/2}"), "\\sqrt{2}", True, "ok"),
    (B("\\sqrt2"), "\\sqrt{2}", True, "ok"),
    (B("1.414"), "\\sqrt{2}", False, "wrong"),
    (B("\\sqrt{8}"), "2\\sqrt{2}", True, "ok"),
    (B("\\sqrt{18}"), "3\\sqrt{2}", True, "ok"),
    (B("2.828"), "2\\sqrt{2}", False, "wrong"),
    (B("\\sqrt{3}/2"), "\\frac{\\sqrt{3}}{2}", True, "ok"),
    (B("\\frac{1}{2}\\sqrt{3}"), "\\frac{\\sqrt{3}}{2}", True, "ok"),
    (B("\\frac{\\sqrt{3}}{3}"), "\\frac{\\sqrt{3}}{2}", False, "wrong"),
    (B("3.14"), "\\pi", False, "wrong"),
    (B("6.28"), "2\\pi", False, "wrong"),
    (B("\\pi"), "\\pi", True, "ok"),
    (B("\\pi/2"), "\\frac{\\pi}{2}", True, "ok"),
    (B("\\frac{\\pi}{3}"), "\\frac{\\pi}{2}", False, "wrong"),
    (B("\\{2,1\\}"), "\\{1,2\\}", True, "ok"),
    (B("\\{1,3\\}"), "\\{1,2\\}", False, "wrong"),
    (B("(1, 2)"), "(1,2)", True, "ok"),
    (B("(2, 1)"), "(1,2)", False, "wrong"),
    (B("[1, 2)"), "[1,2)", True, "ok"),
    (B("(1,2]"), "[1,2)", False, "wrong"),
    (B("1+x"), "x+1", True, "ok"),
    (B("x+2"), "x+1", False, "wrong"),
    (B("\\infty"), "\\infty", True, "ok"),
    (B("-\\infty"), "\\infty", False, "wrong"),
    (B("\\text{Monday}"), "\\text{Monday}", True, "ok"),
    (B("Monday"), "\\text{Monday}", True, "ok"),
    (B("\\text{(A)}"), "\\text{(A)}", True, "ok"),
    (B("y=2x+3"), "y = 2x + 3", True, "ok"),
    (B("\\begin{pmatrix}1\\\\2\\end{pmatrix}"), "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", True,
     "ok"),
    (B("x^{-1}"), "\\frac{1}{x}", True, "ok"),
    (B("\\frac{2}{x}"), "\\frac{1}{x}", False, "wrong"),
    (B("(-\\infty, 2]"), "(-\\infty,2]", True, "ok"),
    (B("(-\\infty, 2)"), "(-\\infty,2]", False, "wrong"),
    (B("x \\in [0, 1]"), "[0,1]", True, "ok"),
    (B("\\sin^2 x + \\cos^2 x"), "1", True, "ok"),
    (B("\\log_2 8"), "3", True, "ok"),
    (B("\\dfrac{\\sqrt{2}}{2}"), "\\frac{1}{\\sqrt{2}}", True, "ok"),
    (B("4\\sqrt{2}"), "\\sqrt{32}", True, "ok"),
    (B("a+b"), "b+a", True, "ok"),
    (B("2a"), "a+a", True, "ok"),
    # ---- words, hedges, alternatives -----------------------------------------------------------
    (B("6 or 7"), "6", False, "wrong"),
    (B("not 6"), "6", False, "wrong"),
    (B("\\text{not } 6"), "6", False, "wrong"),
    (B("about 6"), "6", False, "wrong"),
    (B("6, 7"), "6", False, "wrong"),
    (B("6 \\text{ or } 7"), "6", False, "wrong"),
    (B("6x"), "6", False, "wrong"),
    (B("f(6)"), "6", False, "wrong"),
    # ---- hostile sizes: refused before any worker, or killed at the timeout --------------------
    (B("9^{9^{9^{9^{9}}}}"), "1", False, "bad_expression"),
    (B("2^{2^{2^{2^{10}}}}"), "1", False, "bad_expression"),
    (B("10^{10^{10}}"), "10", False, "bad_expression"),
    (B("10^{100000}"), "1", False, "bad_expression"),
    (B("9^{99999}"), "1", False, "bad_expression"),
    (B("(10^{6})!"), "1", False, "bad_expression"),
    (B("1000000!"), "1", False, "bad_expression"),
    (B("\\binom{1000000}{500000}"), "1", False, "bad_expression"),
    (B("\\Gamma(10^{10})"), "1", False, "bad_expression"),
    (B("((3!)!)!"), "1", False, "bad_expression"),
    (B("x^{9^{9^{9}}}"), "1", False, "bad_expression"),
    (B("e^{10^{10}}"), "1", False, "bad_expression"),
    (B("2**10**10"), "1", False, "bad_expression"),
    (B("\\sqrt{2}^{10^{9}}"), "1", False, "bad_expression"),
    (B("(1+x)^{1000}"), "1", False, "timeout"),
    (B("(x+y+z)^{300}"), "1", False, "timeout"),
    (B("(" * 10 + "1" + ")" * 10), "1", True, "ok"),
    (B("(" * 11 + "1" + ")" * 11), "1", False, "bad_format"),
    (B("{" * 11 + "1" + "}" * 11), "1", False, "bad_format"),
    (B("x" * 501), "1", False, "bad_format"),
    (B("1" * 500), "1", False, "wrong"),
    ("\\boxed{" * 5000 + "1", "1", False, "no_answer"),
    (B("1") + "}" * 5000, "1", True, "ok"),
    ("x" * 999_000 + B("1"), "1", True, "ok"),
    ("x" * 1_000_001 + B("1"), "1", False, "bad_format"),
    ("{" * 200_000 + B("1"), "1", True, "ok"),
    # ---- answer sources and tags ---------------------------------------------------------------
    (A("\\frac{1}{2}"), HALF, True, "ok"),
    (A("x \\boxed{\\frac{1}{2}}"), HALF, True, "ok"),
    (A("The answer is $\\frac{1}{2}$."), HALF, True, "ok"),
    ("\\fbox{\\frac{1}{2}}", HALF, True, "ok"),
    ("\\boxed {\\frac{1}{2}}", HALF, True, "ok"),
    (B("\\frac{1}{2}") + " and " + B("3"), HALF, False, "wrong"),
    (B("3") + " and " + B("\\frac{1}{2}"), HALF, True, "ok"),
    (A("\\frac{1}{2}") + " \\boxed{3}", HALF, True, "ok"),
    (A("\\frac{1}{2}") + A("0.5"), HALF, True, "ok"),
    (A("1") + A("2"), "1", False, "multiple_answers"),
    (A("") + A("1"), "1", True, "ok"),
    (A(""), "1", False, "no_answer"),
    (A("1") * 16, "1", True, "ok"),
    (A("1") * 17, "1", False, "bad_format"),
    ("<answer>\\boxed{8}", "8", False, "bad_format"),
    ("<answer>8", "8", False, "bad_format"),
    ("8</answer>", "8", False, "bad_format"),
    ("<answer><answer>1</answer></answer>", "1", False, "bad_format"),
    (B("1") + " <answer>", "1", False, "bad_format"),
    ("The answer is 1.", "1", False, "no_answer"),
    ("1", "1", False, "no_answer"),
    ("", "1", False, "no_answer"),
    ("\\boxed{}", "1", False, "no_answer"),
    (B(" "), "1", False, "no_answer"),
    ("\\boxed{1", "1", False, "no_answer"),
    # ---- unicode -------------------------------------------------------------------------------
    (B("١٨"), "18", True, "ok"),
    (B("۱۸"), "18", True, "ok"),
    (B("１８"), "18", True, "ok"),
    (B("𝟏𝟖"), "18", True, "ok"),
    (B("18\u200b"), "18", True, "ok"),
    (B("−18"), "-18", True, "ok"),
    (B("⑱"), "18", True, "ok"),
    (B("10²"), "100", True, "ok"),
    (B("x²"), "x^2", True, "ok"),
    (B("x⁻¹"), "x^{-1}", True, "ok"),
    (B("x³"), "x^2", False, "wrong"),
    (B("٣\\sqrt{٢}"), "3\\sqrt{2}", True, "ok"),
    (B("\\frac{１}{２}"), HALF, True, "ok"),
    (B("x^{٢}"), "x^2", True, "ok"),
    (B("\\sqrt{２}"), "\\sqrt{2}", True, "ok"),
    # ---- control characters, NaN / inf ---------------------------------------------------------
    (B("1\x00"), "1", False, "wrong"),
    (B("\x1b[31m1\x1b[0m"), "1", False, "wrong"),
    (B("1\n"), "1", True, "ok"),
    (B("\t1\r\n"), "1", True, "ok"),
    (B("NaN"), "1", False, "wrong"),
    (B("nan"), "1", False, "wrong"),
    (B("inf"), "\\infty", True, "ok"),
    (B("\\frac{0}{0}"), "1", False, "wrong"),
    (B("\\frac{1}{0}"), "1", False, "wrong"),
    (B("\\frac{1}{0}"), "\\infty", False, "wrong"),
    # ---- injection -----------------------------------------------------------------------------
    (B("__import__('os').system('ls')"), "6", False, "wrong"),
    (B("eval(6)"), "6", False, "wrong"),
    (B("\\text{eval}(6)"), "6", False, "wrong"),
    (B("exec('6')"), "6", False, "wrong"),
    (B("\\input{/etc/passwd}"), "6", False, "wrong"),
    (B("${6}$"), "6", True, "ok"),
    (B("lambda: 6"), "6", True, "ok"),  # a label, like "Answer: 6"
    (B("open('/etc/passwd')"), "6", False, "wrong"),
    (B("6; import os"), "6", True, "ok"),
    (B("<script>6</script>"), "6", False, "wrong"),
]


@pytest.fixture(scope="module")
def task():
    task = get_task("math", timeout=TIMEOUT_S)
    task.verify({"answer": "x"}, "\\boxed{x+0}")  # start the worker template once (not timed)
    yield task
    task.close()


def test_suite_size():
    assert len(CASES) >= 200


@pytest.mark.parametrize("completion, reference, correct, reason", CASES)
def test_adversarial_case(task, completion, reference, correct, reason):
    assert_verdict(task, {"answer": reference, "meta": {}}, completion, correct, reason, CALL_BOUND_S)
