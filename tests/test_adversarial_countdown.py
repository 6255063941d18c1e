"""Hostile and tricky completions for the Countdown verifier.

Countdown keeps its own semantics: the answer is an expression over the given numbers (each used
exactly once, ``+ - * /`` and parentheses, no unary minus), evaluated exactly; it shares the tag
rule and the presentation clean-up (``×``, Unicode digits, ``$...$``, ``\\boxed{}``) with the
numeric tasks. Each case is ``(completion, reference, correct, reason)``: the reference is
``"numbers->target"``. Every call returns a Verdict, never raises, and stays far below the bound.
"""

import pytest
from adversarial import assert_verdict

from reasonlab.tasks import get_task

CALL_BOUND_S = 2.0  # generous for a loaded 2-core machine; measured worst case is ~0.1 s
TASK = get_task("countdown")
LENIENT = get_task("countdown", lenient=True)
P = "25,5,6,4->30"  # the main problem: (25 - 5) * 6 / 4 = 30
Q = "3,84,26,87->194"  # 84 + 26 - 3 + 87 = 194


def A(text: str) -> str:
    return f"<answer>{text}</answer>"


def row_of(reference: str) -> dict:
    numbers, target = reference.split("->")
    return {"id": "adv", "question": "q", "answer": "",
            "meta": {"numbers": [int(n) for n in numbers.split(",")], "target": int(target)}}


CASES = [
    # ---- correct expressions in many spellings -------------------------------------------------
    (A("(25 - 5) * 6 / 4"), P, True, "ok"),
    (A("(25-5)*6/4"), P, True, "ok"),
    (A("  (25 - 5) * 6 / 4  "), P, True, "ok"),
    (A("\n(25 - 5)\n* 6\n/ 4\n"), P, True, "ok"),
    (A("\t(25\t-\t5)\t*\t6\t/\t4"), P, True, "ok"),
    (A("((25 - 5) * 6) / 4"), P, True, "ok"),
    (A("(25 - 5) * (6 / 4)"), P, True, "ok"),
    (A("6 / 4 * (25 - 5)"), P, True, "ok"),
    (A("6 * (25 - 5) / 4"), P, True, "ok"),
    (A("25 - 5 + 6 + 4"), P, True, "ok"),
    (A("25 + 6 + 4 - 5"), P, True, "ok"),
    (A("4 + 6 + 25 - 5"), P, True, "ok"),
    (A("(((25 - 5) * 6) / 4)"), P, True, "ok"),
    (A("(" * 30 + "25 - 5 + 6 + 4" + ")" * 30), P, True, "ok"),
    (A("(25 - 5) * 6 / 4 = 30"), P, True, "ok"),
    (A("(25 - 5) * 6 / 4 = 30.0"), P, True, "ok"),
    (A("(25 - 5) * 6 / 4 = $30"), P, True, "ok"),
    (A("(25 - 5) * 6 / 4 = 6 * 5"), P, True, "ok"),
    (A("(25 - 5) * 6 / 4."), P, True, "ok"),
    (A("025 - 5 + 6 + 4"), P, True, "ok"),
    (A("(25 − 5) × 6 ÷ 4"), P, True, "ok"),
    (A("(25 - 5) · 6 / 4"), P, True, "ok"),
    (A("(25 - 5) \\times 6 \\div 4"), P, True, "ok"),
    (A("(25 - 5) \\cdot 6 / 4"), P, True, "ok"),
    (A("$(25 - 5) \\times 6 / 4$"), P, True, "ok"),
    (A("\\((25 - 5) * 6 / 4\\)"), P, True, "ok"),
    (A("\\left(25 - 5\\right) * 6 / 4"), P, True, "ok"),
    (A("\\frac{(25 - 5) * 6}{4}"), P, True, "ok"),
    (A("\\dfrac{(25 - 5) * 6}{4}"), P, True, "ok"),
    (A("\\boxed{(25 - 5) * 6 / 4}"), P, True, "ok"),
    (A("（25－5）×6÷4"), P, True, "ok"),
    (A("(٢٥ - ٥) * ٦ / ٤"), P, True, "ok"),
    (A("(२५ - ५) * ६ / ४"), P, True, "ok"),
    (A("(𝟐𝟓 - 𝟓) * 𝟔 / 𝟒"), P, True, "ok"),
    (A("(25 - 5)\u200b * 6 / 4"), P, True, "ok"),
    (A("\u200f(25 - 5) * 6 / 4"), P, True, "ok"),
    (A("(25\u00a0-\u00a05) * 6 / 4"), P, True, "ok"),
    (A("84 + 26 - 3 + 87"), Q, True, "ok"),
    (A("87 + 84 + 26 - 3"), Q, True, "ok"),
    (A("(84 + 26) + (87 - 3)"), Q, True, "ok"),
    ("search...\n</think>\n" + A("(25 - 5) * 6 / 4"), P, True, "ok"),
    (A("(25 - 5) * 6 / 4") + "\nthat's it", P, True, "ok"),
    (A("(25 - 5) * 6 / 4") + A("(25-5)*6/4"), P, True, "ok"),
    (A("(25 - 5) * 6 / 4") * 16, P, True, "ok"),
    (A("") + A("(25 - 5) * 6 / 4"), P, True, "ok"),
    # ---- right numbers, wrong value ------------------------------------------------------------
    (A("25 + 5 + 6 - 4"), P, False, "wrong"),
    (A("(25 + 5) * 6 / 4"), P, False, "wrong"),
    (A("25 * 5 * 6 * 4"), P, False, "wrong"),
    (A("25 / 5 / 6 / 4"), P, False, "wrong"),
    (A("(25 - 5) * 6 / 4 = 31"), P, False, "wrong"),
    (A("25 - 5 + 6 + 4 = 32"), P, False, "wrong"),
    (A("84 + 26 + 3 + 87"), Q, False, "wrong"),
    (A("84 - 26 - 3 - 87"), Q, False, "wrong"),
    (A("(25 - 5) * 6 / 4 = 30 = 31"), P, False, "bad_expression"),
    # ---- wrong numbers -------------------------------------------------------------------------
    (A("30"), P, False, "wrong_numbers"),
    (A("25 + 5"), P, False, "wrong_numbers"),
    (A("(25 - 5) * 6 / 4 + 0"), P, False, "wrong_numbers"),
    (A("(25 - 5) * 6 / 4 * 1"), P, False, "wrong_numbers"),
    (A("(25 - 5) * 6 / 4 + 4 - 4"), P, False, "wrong_numbers"),
    (A("(25 - 5) * 6 / 2 / 2"), P, False, "wrong_numbers"),
    (A("(25 - 5) * 3 / 2"), P, False, "wrong_numbers"),
    (A("25 + 5 + 5 - 5"), P, False, "wrong_numbers"),
    (A("26 - 6 + 6 + 4"), P, False, "wrong_numbers"),
    (A("(20) * 6 / 4"), P, False, "wrong_numbers"),
    (A("(25 - 5) * 6 / 4 + 25 - 25"), P, False, "wrong_numbers"),
    (A("25 - 5 + 10"), P, False, "wrong_numbers"),
    (A("84 + 26 + 84"), Q, False, "wrong_numbers"),
    (A("194"), Q, False, "wrong_numbers"),
    (A("0"), P, False, "wrong_numbers"),
    # ---- not an expression of the dialect ------------------------------------------------------
    (A("-(25 - 5) * 6 / 4"), P, False, "bad_expression"),
    (A("(25 - 5) * -6 / -4"), P, False, "bad_expression"),
    (A("-4 + 6 + 25 + 5 - 2"), P, False, "bad_expression"),
    (A("+25 - 5 + 6 + 4"), P, False, "bad_expression"),
    (A("(25 - 5) * 6 / 4 +"), P, False, "bad_expression"),
    (A("(25 - 5) * 6 //4"), P, False, "bad_expression"),
    (A("(25 - 5) ** 1 * 6 / 4"), P, False, "bad_expression"),
    (A("(25 - 5) ^ 1 * 6 / 4"), P, False, "bad_expression"),
    (A("(25 - 5)² * 6 / 4"), P, False, "bad_expression"),
    (A("(25 - 5) * 6 / 4.0"), P, False, "bad_expression"),
    (A("(25 - 5) * 1.5"), P, False, "bad_expression"),
    (A("25 % 5 + 6 + 4"), P, False, "bad_expression"),
    (A("(25 - 5)(6) / 4"), P, False, "bad_expression"),
    (A("(25 - 5 * 6 / 4"), P, False, "bad_expression"),
    (A("25 - 5) * 6 / 4"), P, False, "bad_expression"),
    (A("()"), P, False, "bad_expression"),
    (A("(25 - 5) * 6 / 4 = x"), P, False, "bad_expression"),
    (A("(25 - 5) * 6 / 4 = not 30"), P, False, "bad_expression"),
    (A("[25 - 5] * 6 / 4"), P, False, "bad_expression"),
    (A("{25 - 5} * 6 / 4"), P, False, "bad_expression"),
    (A("\\sqrt{25} + 5 * 6 - 4"), P, False, "bad_expression"),
    (A("\\frac{25}{5} * 6"), P, False, "wrong_numbers"),
    (A("\\frac{(25 - 5) * 6}{4"), P, False, "bad_expression"),
    (A("25 minus 5 plus 6 plus 4"), P, False, "bad_expression"),
    (A("twenty-five - 5 + 6 + 4"), P, False, "bad_expression"),
    (A("(25 - 5) x 6 / 4"), P, False, "bad_expression"),
    (A("a = 25 - 5; a * 6 / 4"), P, False, "bad_expression"),
    (A("(25 - 5) * 6 / 4; 30"), P, False, "bad_expression"),
    (A("(25 - 5) * 6 / 4 # 30"), P, False, "bad_expression"),
    (A("25 / (5 - 5) * 6 * 4"), P, False, "bad_expression"),
    (A("6 / (25 - 25) + 5 + 4"), P, False, "bad_expression"),
    (A("1,000 - 5 + 6 + 4"), P, False, "bad_expression"),
    (A("**(25 - 5) * 6 / 4**"), P, False, "bad_expression"),
    (A("`(25 - 5) * 6 / 4`"), P, False, "bad_expression"),
    (A("(25 - 5) * 6 / 4 30"), P, False, "bad_expression"),
    (A("30 = (25 - 5) * 6 / 4"), P, False, "wrong_numbers"),
    (A("?"), P, False, "bad_expression"),
    (A("(25 - 5) * 6 / 4 ≈ 30"), P, False, "bad_expression"),
    (A("(25 - 5) * 6 / 4 != 30"), P, False, "bad_expression"),
    # ---- empty and missing answers -------------------------------------------------------------
    (A(""), P, False, "no_answer"),
    (A("   "), P, False, "no_answer"),
    (A("\n\n"), P, False, "no_answer"),
    (A("") + A(""), P, False, "no_answer"),
    ("(25 - 5) * 6 / 4", P, False, "no_answer"),
    ("The answer is (25 - 5) * 6 / 4.", P, False, "no_answer"),
    ("\\boxed{(25 - 5) * 6 / 4}", P, False, "no_answer"),
    ("#### (25 - 5) * 6 / 4", P, False, "no_answer"),
    ("", P, False, "no_answer"),
    ("<ANSWER>(25 - 5) * 6 / 4</ANSWER>", P, False, "no_answer"),
    # ---- tags: unclosed, stray, nested, many, different ----------------------------------------
    ("<answer>(25 - 5) * 6 / 4", P, False, "bad_format"),
    ("(25 - 5) * 6 / 4</answer>", P, False, "bad_format"),
    ("<answer><answer>(25 - 5) * 6 / 4</answer></answer>", P, False, "bad_format"),
    (A("(25 - 5) * 6 / 4") + "<answer>", P, False, "bad_format"),
    (A("(25 - 5) * 6 / 4") + "</answer>", P, False, "bad_format"),
    ("<answer >(25 - 5) * 6 / 4</answer>", P, False, "bad_format"),
    ("<answer>(25 - 5) * 6 / 4</answer", P, False, "bad_format"),
    (A("(25 - 5) * 6 / 4") * 17, P, False, "bad_format"),
    ("<answer>" * 2000 + "(25 - 5) * 6 / 4" + "</answer>" * 2000, P, False, "bad_format"),
    ("</answer>" * 50, P, False, "bad_format"),
    (A("(25 - 5) * 6 / 4") + A("25 - 5 + 6 + 4"), P, False, "multiple_answers"),
    (A("25 + 5 + 6 - 4") + A("(25 - 5) * 6 / 4"), P, False, "multiple_answers"),
    ("<think>" + A("1") + "</think>" + A("(25 - 5) * 6 / 4"), P, False, "multiple_answers"),
    # ---- huge sizes ----------------------------------------------------------------------------
    (A("1" + "+1" * 150), P, False, "bad_format"),
    (A("(" * 33 + "25 - 5 + 6 + 4" + ")" * 33), P, False, "bad_expression"),
    (A("(" * 95 + "25 - 5 + 6 + 4" + ")" * 95), P, False, "bad_format"),
    (A("(" * 5000), P, False, "bad_format"),
    (A("9" * 10 + " - 5 + 6 + 4"), P, False, "bad_expression"),
    (A("9" * 9 + " - 5 + 6 + 4"), P, False, "wrong_numbers"),
    (A("9" * 1001), P, False, "bad_format"),
    (A("1e3 - 5 + 6 + 4"), P, False, "bad_expression"),
    (A(" " * 900 + "(25 - 5) * 6 / 4"), P, True, "ok"),
    ("x" * 999_000 + A("(25 - 5) * 6 / 4"), P, True, "ok"),
    ("x" * 1_000_001 + A("(25 - 5) * 6 / 4"), P, False, "bad_format"),
    ("(" * 100_000 + A("(25 - 5) * 6 / 4"), P, True, "ok"),
    ("\\boxed{" * 50_000 + A("(25 - 5) * 6 / 4"), P, True, "ok"),
    # ---- control characters --------------------------------------------------------------------
    (A("(25 - 5) * 6 / 4\x00"), P, False, "bad_expression"),
    (A("\x00(25 - 5) * 6 / 4"), P, False, "bad_expression"),
    (A("(25 - 5)\x07 * 6 / 4"), P, False, "bad_expression"),
    (A("\x1b[31m(25 - 5) * 6 / 4\x1b[0m"), P, False, "bad_expression"),
    (A("(25 - 5) * 6 / 4\r\n"), P, True, "ok"),
    (A("(25 - 5)\x0b* 6 / 4"), P, True, "ok"),
    (A("2\x005 - 5 + 6 + 4"), P, False, "bad_expression"),
    # ---- NaN / inf and other words -------------------------------------------------------------
    (A("nan"), P, False, "bad_expression"),
    (A("inf - 5 + 6 + 4"), P, False, "bad_expression"),
    (A("float('inf')"), P, False, "bad_expression"),
    (A("None"), P, False, "bad_expression"),
    (A("thirty"), P, False, "bad_expression"),
    # ---- Python injection ----------------------------------------------------------------------
    (A("eval('30')"), P, False, "bad_expression"),
    (A("__import__('os').system('echo 30')"), P, False, "bad_expression"),
    (A("exec('print(30)')"), P, False, "bad_expression"),
    (A("(25 - 5) * 6 / 4 if True else 0"), P, False, "bad_expression"),
    (A("(lambda: 30)()"), P, False, "bad_expression"),
    (A("sum([25, -5, 6, 4])"), P, False, "bad_expression"),
    (A("int('30')"), P, False, "bad_expression"),
    (A("(25 - 5) * 6 / 4; import os"), P, False, "bad_expression"),
    (A("().__class__.__bases__[0].__subclasses__()"), P, False, "bad_expression"),
    (A("25 - 5 + 6 + 4 or 1"), P, False, "bad_expression"),
    (A("{'a': 30}['a']"), P, False, "bad_expression"),
    (A("${(25 - 5) * 6 / 4}"), P, False, "bad_expression"),
    (A("<script>30</script>"), P, False, "bad_expression"),
    (A("0x1E"), P, False, "bad_expression"),
    (A("0b11110"), P, False, "bad_expression"),
    (A("25_0"), P, False, "bad_expression"),
    (A("1_0 + 5 + 6 + 4"), P, False, "bad_expression"),
    # ---- Q: a second problem -------------------------------------------------------------------
    (A("84+26-3+87"), Q, True, "ok"),
    (A("84 + 26 - 3 + 87 = 194"), Q, True, "ok"),
    (A("84 + 26 - 3 + 87 = 195"), Q, False, "wrong"),
    (A("(84 + 26 - 3) + 87"), Q, True, "ok"),
    (A("84 + (26 - 3) + 87"), Q, True, "ok"),
    (A("84 + 26 - (3 - 87)"), Q, True, "ok"),
    (A("84 + 26 - 3"), Q, False, "wrong_numbers"),
    (A("84 + 26 - 3 + 87 + 0"), Q, False, "wrong_numbers"),
    (A("84 + 26 - 3 + 78"), Q, False, "wrong_numbers"),
    (A("٨٤ + ٢٦ - ٣ + ٨٧"), Q, True, "ok"),
    (A("84 + 26 − 3 + 87"), Q, True, "ok"),
    (A("84 + 26 - -3 + 87"), Q, False, "bad_expression"),
    (A("84+26-3+87\n"), Q, True, "ok"),
    (A("84 + 26 - 3 + 87 ="), Q, False, "bad_expression"),
    (A("= 84 + 26 - 3 + 87"), Q, False, "bad_expression"),
    (A("87 + 84 + 26 - 3 - 0"), Q, False, "wrong_numbers"),
    (A("(87 + 84) + (26 - 3)"), Q, True, "ok"),
    (A("87 * 84 / 26 - 3"), Q, False, "wrong"),
    (A("87 * 84 / 26 / 3"), Q, False, "wrong"),
    (A("87 * 84 / (26 * 3)"), Q, False, "wrong"),
    (A("(87 - 3) * 26 / 84"), Q, False, "wrong"),
    (A("84 + 26 - 3 + 87 = 388 / 2"), Q, True, "ok"),
    (A("84 + 26 - 3 + 87 = 1.94e2"), Q, True, "ok"),
    (A("84 + 26 - 3 + 87 = 194 or 195"), Q, False, "bad_expression"),
    (A("84 + 26 - 3 + 87 = 10**10**10"), Q, False, "bad_expression"),
    (A("\\boxed{84 + 26 - 3 + 87}"), Q, True, "ok"),
    (A("84 + 26 - 3 + 87 \\quad"), Q, True, "ok"),
    (A("84 + 26 - 3 + 87 + "), Q, False, "bad_expression"),
    (A("84 + 26 - 3 + 87)"), Q, False, "bad_expression"),
    (A("84 + 26 - 3 + 87" + " " * 300), Q, True, "ok"),
    (A("84 + 26 - 3 + 87" + "." * 150), Q, True, "ok"),
]


def test_suite_size():
    assert len(CASES) >= 200


@pytest.mark.parametrize("completion, reference, correct, reason", CASES)
def test_adversarial_case(completion, reference, correct, reason):
    assert_verdict(TASK, row_of(reference), completion, correct, reason, CALL_BOUND_S)


@pytest.mark.parametrize("completion, correct, reason", [
    ("The answer is (25 - 5) * 6 / 4.", True, "ok"),
    ("so the answer is 25 - 5 + 6 + 4", True, "ok"),
    ("The answer is (25 - 5) * 6 / 4 or 25 - 5 + 6 + 4.", False, "bad_expression"),
    ("The answer is <answer>(25 - 5) * 6 / 4", False, "bad_format"),
    ("The answer is 30.", False, "wrong_numbers"),
])
def test_lenient_reads_the_answer_is_phrase(completion, correct, reason):
    verdict = LENIENT.verify(row_of(P), completion)
    assert (verdict.correct, verdict.reason) == (correct, reason), verdict
