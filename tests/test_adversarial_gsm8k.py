"""Hostile and tricky completions for the GSM8K verifier (every answer source).

Each case is ``(completion, reference, correct, reason)``; the expected verdict is what a careful
human grader would say. Sources are tried in order (tags, ``\\boxed{}``, ``####``, "The answer
is", the final arithmetic run) and every candidate is read by the same grammar
(:mod:`reasonlab.grading.answer`). Every call returns a Verdict, never raises, and stays far below
the bound.
"""

import pytest
from adversarial import assert_verdict

from reasonlab.tasks import get_task

CALL_BOUND_S = 2.0  # generous for a loaded 2-core machine; measured worst case is ~0.2 s
TASK = get_task("gsm8k")
ROW = {"id": "gsm8k-adv", "question": "Janet's ducks lay 16 eggs per day...", "meta": {}}


def A(text: str) -> str:
    return f"<answer>{text}</answer>"


CASES = [
    # ---- each source, plain --------------------------------------------------------------------
    (A("18"), "18", True, "ok"),
    ("\\boxed{18}", "18", True, "ok"),
    ("so the total is \\boxed{18}.", "18", True, "ok"),
    ("work\n#### 18", "18", True, "ok"),
    ("work\n#### 18\n", "18", True, "ok"),
    ("####18", "18", True, "ok"),
    ("The answer is 18.", "18", True, "ok"),
    ("the answer is: 18", "18", True, "ok"),
    ("THE ANSWER IS 18", "18", True, "ok"),
    ("The final answer is $18.00.", "18", True, "ok"),
    ("She makes 9 * 2 = 18", "18", True, "ok"),
    ("She makes 9 * 2 = $18 every day.", "18", True, "ok"),
    ("so 20 - 2", "18", True, "ok"),
    ("so 17 then 18.", "18", True, "ok"),
    ("3 x 6 = 18", "18", True, "ok"),
    ("1, 2, 18", "18", True, "ok"),
    ("total (18)", "18", True, "ok"),
    ("He paid $20 - $2", "18", True, "ok"),
    ("she has -18", "-18", True, "ok"),
    ("the result is 18²", "324", True, "ok"),
    ("no numbers here", "18", False, "no_answer"),
    ("eighteen", "18", False, "no_answer"),
    ("", "18", False, "no_answer"),
    # ---- source priority -----------------------------------------------------------------------
    (A("18") + " \\boxed{17}", "18", True, "ok"),
    ("\\boxed{18}\n#### 17", "18", True, "ok"),
    ("#### 18\nThe answer is 17.", "18", True, "ok"),
    ("The answer is 18. Then 17", "18", True, "ok"),
    ("\\boxed{17} then \\boxed{18}", "18", True, "ok"),
    ("\\boxed{18} then \\boxed{17}", "18", False, "wrong"),
    ("#### 17\n#### 18", "18", True, "ok"),
    ("#### 18\n#### 17", "18", False, "wrong"),
    ("The answer is 18. The answer is 17.", "18", False, "wrong"),
    ("#### 18 The answer is 17", "18", False, "multiple_answers"),
    ("\\boxed{18", "18", True, "ok"),
    ("work 18 \\boxed{}", "18", False, "no_answer"),
    ("#### ", "18", False, "no_answer"),
    ("#### eighteen", "18", False, "no_answer"),
    ("The answer is eighteen.", "18", False, "no_answer"),
    # ---- every source reads expressions exactly ------------------------------------------------
    ("\\boxed{5-5}", "5", False, "wrong"),
    ("#### 5-5", "5", False, "wrong"),
    ("The answer is 5 - 5.", "5", False, "wrong"),
    ("so the total is 5-5", "5", False, "wrong"),
    ("\\boxed{2*2}", "2", False, "wrong"),
    ("#### 2*2", "2", False, "wrong"),
    ("The answer is 10^10.", "10", False, "wrong"),
    ("so the result is 10^10", "10", False, "wrong"),
    ("\\boxed{10**10**10}", "10", False, "bad_expression"),
    ("#### 10**10**10", "10", False, "bad_expression"),
    ("The answer is not 6.", "6", False, "bad_expression"),
    ("#### not 6", "6", False, "bad_expression"),
    ("\\boxed{not 6}", "6", False, "bad_expression"),
    ("\\boxed{36/2}", "18", True, "ok"),
    ("#### 3*6", "18", True, "ok"),
    ("The answer is 2 * 9.", "18", True, "ok"),
    ("\\boxed{324^{1/2}}", "18", True, "ok"),
    ("\\boxed{\\sqrt{324}}", "18", True, "ok"),
    # ---- the candidate grammar inside tags -----------------------------------------------------
    (A("18 dollars"), "18", True, "ok"),
    (A("18 dollars."), "18", True, "ok"),
    (A("$18.00"), "18", True, "ok"),
    (A("18 dollars per day"), "18", True, "ok"),
    (A("$18/day"), "18", True, "ok"),
    (A("18 eggs"), "18", True, "ok"),
    (A("Janet makes $18 every day."), "18", True, "ok"),
    (A("She sells 16 - 3 - 4 = 9 eggs for $2 each: 9 * 2 = $18"), "18", False,
     "multiple_answers"),
    (A("9 * 2 = 18"), "18", True, "ok"),
    (A("9 * 2 = 19"), "18", False, "multiple_answers"),
    (A("x = 18"), "18", True, "ok"),
    (A("18 = 18.0"), "18", True, "ok"),
    (A("1,800"), "18", False, "wrong"),
    (A("1,800"), "1800", True, "ok"),
    (A("$1,800.00"), "1800", True, "ok"),
    (A("1,80"), "18", False, "multiple_answers"),
    (A("18,000"), "18", False, "wrong"),
    (A("18.000"), "18", True, "ok"),
    (A("1 800"), "1800", False, "multiple_answers"),
    (A("18.0"), "18", True, "ok"),
    (A("018"), "18", True, "ok"),
    (A("18%"), "18", True, "ok"),
    (A("18 percent"), "18", True, "ok"),
    (A("0.18"), "18", False, "wrong"),
    (A("18 cm²"), "18", True, "ok"),
    (A("18 m^2"), "18", True, "ok"),
    (A("18 km/h"), "18", True, "ok"),
    (A("18 years old"), "18", True, "ok"),
    (A("18-year-old"), "18", True, "ok"),
    (A("18°"), "18", True, "ok"),
    (A("18 or 19"), "18", False, "multiple_answers"),
    (A("18 and 19"), "18", False, "multiple_answers"),
    (A("18, 19"), "18", False, "multiple_answers"),
    (A("18-19"), "18", False, "wrong"),
    (A("18–19"), "18", False, "multiple_answers"),
    (A("18 thousand"), "18000", False, "bad_expression"),
    (A("about 18"), "18", False, "bad_expression"),
    (A("~18"), "18", False, "bad_expression"),
    (A("18 or more"), "18", False, "bad_expression"),
    (A("at most 18"), "18", False, "bad_expression"),
    (A("18 is not correct"), "18", False, "bad_expression"),
    (A("36/2"), "18", True, "ok"),
    (A("3*6"), "18", True, "ok"),
    (A("6 x 3"), "18", True, "ok"),
    (A("5-5"), "5", False, "wrong"),
    (A("2*2"), "2", False, "wrong"),
    (A("10**10**10"), "10", False, "bad_expression"),
    (A("10^10"), "10", False, "wrong"),
    (A("not 6"), "6", False, "bad_expression"),
    (A("1 1/2"), "1.5", False, "multiple_answers"),
    (A("1/2"), "0.5", True, "ok"),
    (A("3/4 cup"), "0.75", True, "ok"),
    (A("0.333"), "1/3", False, "wrong"),
    (A("1.8e1"), "18", True, "ok"),
    (A("1.8 \\times 10^{1}"), "18", True, "ok"),
    (A("1.8 × 10¹"), "18", True, "ok"),
    (A("18\\%"), "18", True, "ok"),
    (A("\\frac{36}{2}"), "18", True, "ok"),
    (A("\\dfrac{36}{2}"), "18", True, "ok"),
    (A("\\text{18 dollars}"), "18", True, "ok"),
    (A("\\boxed{18}"), "18", True, "ok"),
    (A("**18**"), "18", True, "ok"),
    (A("18 (dollars)"), "18", True, "ok"),
    (A("(in dollars) 18"), "18", True, "ok"),
    (A("18 dollars!"), "18", True, "ok"),
    (A("18!"), "18", False, "bad_expression"),
    (A("18 + x"), "18", False, "bad_expression"),
    (A("18x"), "18", False, "bad_expression"),
    (A("x + y = 18"), "18", True, "ok"),
    # ---- unclosed, stray, nested, many tags ----------------------------------------------------
    ("<answer>8", "8", False, "bad_format"),
    ("<answer>18", "18", False, "bad_format"),
    ("work 18 <answer>", "18", False, "bad_format"),
    ("</answer> 18", "18", False, "bad_format"),
    (A("18") + "<answer>", "18", False, "bad_format"),
    ("<answer><answer>18</answer></answer>", "18", False, "bad_format"),
    ("\\boxed{18} <answer>", "18", False, "bad_format"),
    ("#### 18 </answer>", "18", False, "bad_format"),
    (A("18") * 16, "18", True, "ok"),
    (A("18") * 17, "18", False, "bad_format"),
    (A("18") * 5000, "18", False, "bad_format"),
    (A("") + "#### 18", "18", False, "no_answer"),
    (A("18") + A("19"), "18", False, "multiple_answers"),
    (A("18") + A("$18"), "18", True, "ok"),
    ("<Answer>18</Answer>", "18", True, "ok"),
    # ---- sizes: the length cap is 1,000,000 characters by default ------------------------------
    ("x" * 60_000 + "\n#### 18", "18", True, "ok"),
    ("think " * 30_000 + A("18"), "18", True, "ok"),
    ("7 " * 100_000 + "\\boxed{18}", "18", True, "ok"),
    ("x" * 1_000_001 + "\n#### 18", "18", False, "bad_format"),
    (A("9" * 101), "18", False, "bad_expression"),
    (A("1e100000"), "18", False, "bad_expression"),
    (A("1" * 1001), "18", False, "bad_format"),
    ("#### " + "9" * 2000, "18", False, "bad_format"),
    ("1+" * 5000 + "1", "18", False, "bad_format"),
    ("\\boxed{" * 5000 + "18", "18", True, "ok"),
    ("(" * 5000 + "18" + ")" * 5000, "18", False, "bad_format"),
    (A("(" * 40 + "18" + ")" * 40), "18", False, "bad_expression"),
    ("{" * 100_000 + "#### 18", "18", True, "ok"),
    # ---- unicode -------------------------------------------------------------------------------
    (A("١٨"), "18", True, "ok"),
    (A("۱۸"), "18", True, "ok"),
    (A("１８"), "18", True, "ok"),
    (A("𝟏𝟖"), "18", True, "ok"),
    (A("১৮"), "18", True, "ok"),
    ("#### ١٨", "18", True, "ok"),
    ("so she makes ١٨", "18", True, "ok"),
    (A("18\u200b"), "18", True, "ok"),
    (A("\u202e18"), "18", True, "ok"),
    (A("１８ドル"), "18", True, "ok"),
    (A("18元"), "18", True, "ok"),
    (A("十八"), "18", False, "no_answer"),
    (A("⑱"), "18", True, "ok"),
    (A("¹⁸"), "18", False, "bad_expression"),
    (A("−18"), "-18", True, "ok"),
    (A("＄18"), "18", True, "ok"),
    # ---- currency, percent, scientific, zeros --------------------------------------------------
    (A("€18"), "18", True, "ok"),
    (A("18€"), "18", True, "ok"),
    (A("£18"), "18", True, "ok"),
    (A("Rs. 18"), "18", True, "ok"),
    (A("\\$18"), "18", True, "ok"),
    ("\\boxed{\\$18.00}", "18", True, "ok"),
    ("\\boxed{18\\%}", "18", True, "ok"),
    ("\\boxed{1{,}800}", "1800", True, "ok"),
    ("\\boxed{18^{\\circ}}", "18", True, "ok"),
    ("\\boxed{\\text{18 dollars}}", "18", True, "ok"),
    ("#### 18%", "18", True, "ok"),
    ("#### $18", "18", True, "ok"),
    ("#### 18 dollars", "18", True, "ok"),
    ("#### -0", "0", True, "ok"),
    ("\\boxed{-0.0}", "0", True, "ok"),
    (A("−0"), "0", True, "ok"),
    (A("0e10"), "0", True, "ok"),
    (A("18e0"), "18", True, "ok"),
    (A("1.8E+1"), "18", True, "ok"),
    (A("180e-1"), "18", True, "ok"),
    # ---- whitespace and control characters -----------------------------------------------------
    (A("\n\n18\n\n"), "18", True, "ok"),
    (A("18\r"), "18", True, "ok"),
    ("work\r\n#### 18\r\n", "18", True, "ok"),
    (A("1\n8"), "18", False, "multiple_answers"),
    (A("18\x00"), "18", False, "bad_expression"),
    (A("\x1b[1m18\x1b[0m"), "18", False, "bad_expression"),
    (A("\x0818"), "18", False, "bad_expression"),
    ("#### 18\x00", "18", False, "bad_expression"),
    # ---- NaN / inf -----------------------------------------------------------------------------
    (A("NaN"), "18", False, "no_answer"),
    (A("inf"), "18", False, "no_answer"),
    ("#### inf", "18", False, "no_answer"),
    ("The answer is NaN.", "18", False, "no_answer"),
    ("\\boxed{\\infty}", "18", False, "bad_expression"),
    (A("float('inf')"), "18", False, "no_answer"),
    # ---- injection -----------------------------------------------------------------------------
    (A("__import__('os').system('echo 18')"), "18", False, "bad_expression"),
    ("#### __import__('os').system('ls')", "18", False, "no_answer"),
    ("\\boxed{eval('18')}", "18", False, "bad_expression"),
    (A("exec('x=18')"), "18", False, "bad_expression"),
    (A("18; import os"), "18", True, "ok"),
    (A("open('/etc/passwd').read()"), "18", False, "no_answer"),
    (A("${18}"), "18", True, "ok"),
    (A("{{18}}"), "18", True, "ok"),
    (A("<img src=x onerror=alert(18)>"), "18", False, "bad_expression"),
    (A("'; DROP TABLE answers; -- 18"), "18", True, "ok"),  # words, then --18 = 18
    ("The answer is __import__('os').", "18", False, "no_answer"),
    (A("lambda x: x"), "18", False, "no_answer"),
]


def test_suite_size():
    assert len(CASES) >= 200


@pytest.mark.parametrize("completion, reference, correct, reason", CASES)
def test_adversarial_case(completion, reference, correct, reason):
    verdict = assert_verdict(TASK, {**ROW, "answer": reference}, completion, correct, reason, CALL_BOUND_S)
    assert (verdict.parsed is not None) == (reason in ("ok", "wrong"))  # only answers vote


def test_length_cap_is_an_option():
    task = get_task("gsm8k", max_completion_chars=50)
    assert task.verify({"answer": "18"}, A("18").ljust(50)).correct
    assert task.verify({"answer": "18"}, A("18").ljust(51)).reason == "bad_format"
