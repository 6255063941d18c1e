from fractions import Fraction

import pytest

from reasonlab.grading.expr import NUMBERS
from reasonlab.grading.numeric import canonical_number, numbers_equal, parse_number


@pytest.mark.parametrize("text, value", [
    ("18", 18), ("18.0", 18), ("18.00", 18), ("$18", 18), ("\\$18", 18), ("18 dollars", 18),
    ("18 apples.", 18), ("$1,800", 1800), ("1,450,000", 1450000), ("50%", 50), ("-10", -10),
    ("\u22127", -7), ("3/4", Fraction(3, 4)), ("\\frac{3}{4}", Fraction(3, 4)),
    (".5", Fraction(1, 2)),
    ("x = 5", 5), ("1 / 2", Fraction(1, 2)), ("The total is 18.", 18),
    ("2 + 3 = 5", 5),  # an equation states its value (was "two numbers" before the grammar)
    ("\u0661\u0662", 12),  # Arabic-Indic digits are digits (were rejected before)
])
def test_parse_number_single_values(text, value):
    assert parse_number(text) == Fraction(value)


@pytest.mark.parametrize("text", ["", "eighteen", "18 or 19", "18, 19", "18,19", "2 + 3 = 6",
                                  "1/0", "9" * (NUMBERS.max_literal_digits + 1), "not 18"])
def test_parse_number_rejects_none_or_several(text):
    assert parse_number(text) is None


def test_repeated_same_number_is_one_number():
    assert parse_number("18 dollars, i.e. $18.00") == 18
    assert parse_number("18 and 18.0 and 19") is None


def test_exact_not_float():
    assert not numbers_equal("0.333", "1/3")
    assert numbers_equal("0.5", "1/2")
    assert not numbers_equal("0.1", "0.10000000000000001")


def test_canonical_groups_equal_values():
    assert canonical_number("0.5") == canonical_number("1/2") == canonical_number("0.50") == "1/2"
    assert canonical_number("$1,800.0") == "1800"
    assert canonical_number("18 or 19") == "18or19"


def test_expressions_are_evaluated_not_split():
    assert parse_number("10-3") == 7
    assert parse_number("x = -3 apples") == -3
    assert parse_number("a -3 b") is None  # "a - 3": a variable in an expression
    assert parse_number("x" * 10 + "9" * 5000) is None
