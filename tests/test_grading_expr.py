from fractions import Fraction

import pytest

from reasonlab.grading.expr import (
    MAX_DEPTH,
    NUMBERS,
    ExprError,
    ExprTooLarge,
    evaluate,
    literals,
    parse,
    to_str,
    tokenize,
)


@pytest.mark.parametrize("text, value", [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("10 - 4 - 3", 3), ("10 - (4 - 3)", 9),
    ("100 / 10 / 5", 2), ("100 / (10 / 5)", 50), ("7 / 2", Fraction(7, 2)),
    ("(25 - 5) * 6 / 4", 30), ("((((3))))", 3), (" 3*4+2 ", 14),
])
def test_precedence_and_exact_values(text, value):
    assert evaluate(parse(text)) == Fraction(value)


@pytest.mark.parametrize("text", ["", "1 +", "(1 + 2", "1 + 2)", "1 2", "1 ** 2", "2^3",
                                  "-3 + 5", "3 * -2", "1.5 + 2", "x + 1", "1e3", "()",
                                  "1 + (2)(3)", "\u0661 + 1", "1" * 10])
def test_rejects_invalid(text):
    with pytest.raises(ExprError):
        evaluate(parse(text))


def test_unary_minus_is_rejected_by_design():
    with pytest.raises(ExprError, match="unary minus"):
        parse("-(3 + 4)")


def test_division_by_zero_raises():
    with pytest.raises(ExprError, match="division by zero"):
        evaluate(parse("5 / (3 - 3)"))


def test_depth_and_length_bounds():
    ok = "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH
    assert evaluate(parse(ok)) == 1
    with pytest.raises(ExprError):
        parse("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ExprError):
        tokenize("1+" * 150 + "1")


def test_literals_in_order():
    assert literals(parse("(25 - 5) * 6 / 4")) == [25, 5, 6, 4]


@pytest.mark.parametrize("text", ["1 + 2 * 3", "(1 + 2) * 3", "10 - (4 - 3)", "8 / (4 / 2)",
                                  "(2 + 3) * (7 - 5) / 5", "6 - 2 + 1", "6 / 2 * 3"])
def test_to_str_round_trips_value(text):
    node = parse(text)
    assert evaluate(parse(to_str(node))) == evaluate(node)
    assert to_str(parse(to_str(node))) == to_str(node)


@pytest.mark.parametrize("text, value", [
    ("-2^2", -4), ("(-2)^2", 4), ("2^3^2", 512), ("2**10", 1024), ("2^-1", Fraction(1, 2)),
    ("1,000.5", Fraction(2001, 2)), (".5", Fraction(1, 2)), ("1.8e1", 18), ("5E-1", Fraction(1, 2)),
    ("\\frac{3}{4}", Fraction(3, 4)), ("\\sqrt{16}", 4), ("√(9/4)", Fraction(3, 2)),
    ("324^{1/2}", 18), ("8^{2/3}", 4), ("{[(1 + 2)]} * 2", 6), ("--3", 3), ("-0", 0),
])
def test_numbers_dialect_values(text, value):
    assert evaluate(parse(text, NUMBERS)) == Fraction(value)


@pytest.mark.parametrize("text, error", [
    ("10**10**10", ExprTooLarge), ("2^100000", ExprTooLarge), ("1e100000", ExprTooLarge),
    ("(10^5000)^8", ExprTooLarge), ("\\sqrt{2}", ExprError), ("2^(1/2)", ExprError),
    ("0^0", ExprError), ("0^-1", ExprError), ("1/0", ExprError), ("\\sqrt{-4}", ExprError),
    ("2^(1/100)", ExprError), ("1,00", ExprError), ("9" * 101, ExprError), ("2x", ExprError),
    ("-" * 40 + "1", ExprError), ("1" + "+1" * 300, ExprError),
])
def test_numbers_dialect_limits(text, error):
    with pytest.raises(error):
        evaluate(parse(text, NUMBERS))


def test_too_large_is_refused_fast():
    import time
    start = time.perf_counter()
    for text in ("9^9^9^9", "(10^9999)^(10^4)", "2^10000 * 2^10000 * 2^10000 * 2^10000 * 2^10000"):
        with pytest.raises(ExprTooLarge):
            evaluate(parse(text, NUMBERS))
    assert time.perf_counter() - start < 0.5
