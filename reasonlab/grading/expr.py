"""Exact arithmetic expressions from model output (never Python ``eval``).

One tokenizer, parser and evaluator serve two dialects:

:data:`INTEGERS` (Countdown answers)::

    expr   := term (("+" | "-") term)*
    term   := factor (("*" | "/") factor)*
    factor := INT | "(" expr ")"

Tokens are non-negative integer literals (ASCII digits), ``+ - * / ( )`` and whitespace.
**Unary minus is rejected**: Countdown allows only binary operations on the given numbers, and a
free negation would let ``-3`` stand for a number that was not given.

:data:`NUMBERS` (final answers of numeric tasks, and numeric parts of LaTeX)::

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary)*
    unary  := ("+" | "-") unary | power
    power  := atom (("^" | "**") unary)?          right-associative; -2^2 = -4
    atom   := NUMBER | "(" expr ")" | "[" expr "]" | "{" expr "}"
            | "\\frac" atom atom | ("\\sqrt" | "√") atom
    NUMBER := 18 | 1,000 | 18.25 | .5 | 1.8e3      (commas only in groups of three)

The text may also hold words, punctuation and ``%`` (token kinds ``word``, ``punct``, ``pct``):
:mod:`reasonlab.grading.answer` reads those; :func:`parse` accepts only an expression.

Values are exact :class:`fractions.Fraction`. Everything is bounded so adversarial strings fail
fast with :class:`ExprError`: text length, literal digits, nesting depth, tokens per
expression, exponents (``|e| <= MAX_EXPONENT``, integer only) and the size of every intermediate
value (``MAX_BITS``; :class:`ExprTooLarge`), so ``10**10**10`` is rejected in microseconds.
Roots (``\\sqrt``, fractional exponents) must come out rational; ``0^0`` and division by zero
are errors.

>>> node = parse("(25 - 5) * 6 / 4")
>>> evaluate(node), literals(node)
(Fraction(30, 1), [25, 5, 6, 4])
>>> to_str(parse("((3 + 4)) * (5 - (2 - 1))"))
'(3 + 4) * (5 - (2 - 1))'
>>> evaluate(parse(r"\\frac{3}{4} + 2^{-2} * \\sqrt{16}", NUMBERS))
Fraction(7, 4)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

MAX_EXPR_CHARS = 200
MAX_DEPTH = 32
MAX_LITERAL_DIGITS = 9
MAX_TOKENS = 256
MAX_EXPONENT = 10_000
MAX_ROOT_DEGREE = 64
MAX_BITS = 40_000  # about 12,000 decimal digits

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "^": 3}
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_NUMBER = (r"(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
           r"|\.[0-9]+(?:[eE][-+]?[0-9]+)?")


class ExprError(ValueError):
    """Raised for text that is not a valid expression, or one that cannot be evaluated."""


class ExprTooLarge(ExprError):
    """An expression whose value (or an intermediate one) exceeds the size limits."""


@dataclass(frozen=True)
class Token:
    kind: str  # num | op | open | close | func | word | punct | pct
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Dialect:
    """What a tokenizer accepts and which operators the parser allows."""

    name: str
    pattern: re.Pattern
    binary: str
    unary: bool
    max_chars: int
    max_literal_digits: int


INTEGERS = Dialect("integers", re.compile(r"\s*(?:(?P<num>[0-9]+)|(?P<op>[-+*/])"
                                          r"|(?P<open>\()|(?P<close>\)))"),
                   binary="+-*/", unary=False, max_chars=MAX_EXPR_CHARS,
                   max_literal_digits=MAX_LITERAL_DIGITS)
NUMBERS = Dialect("numbers", re.compile(
    r"\s*(?:(?P<num>" + _NUMBER + r")"
    r"|(?P<punct>(?<=\S)-(?=[^\W\d_]{2})|[.,;:!?=\"'`“”‘’—–…°])"
    r"|(?P<op>\*\*|[-+*/^])|(?P<open>[(\[{])|(?P<close>[)\]}])"
    r"|(?P<func>\\frac(?![A-Za-z])|\\sqrt(?![A-Za-z])|√)"
    r"|(?P<word>[^\W\d][\w'’]*)|(?P<pct>%))"),
    binary="+-*/^", unary=True, max_chars=1_000, max_literal_digits=100)


@dataclass(frozen=True)
class Num:
    value: int | Fraction


@dataclass(frozen=True)
class BinOp:
    op: str
    left: "Node"
    right: "Node"


@dataclass(frozen=True)
class UnOp:
    op: str  # "-" or "sqrt"
    operand: "Node"


Node = Num | BinOp | UnOp


def tokenize(text: str, dialect: Dialect = INTEGERS) -> list[Token]:
    """Split into tokens; ExprError on a character the dialect does not know, or text longer
    than its ``max_chars``."""
    if len(text) > dialect.max_chars:
        raise ExprError(f"expression longer than {dialect.max_chars} characters")
    tokens: list[Token] = []
    pos, end = 0, len(text.rstrip())
    while pos < end:
        match = dialect.pattern.match(text, pos)
        if match is None:
            raise ExprError(f"unexpected character {text[pos:].lstrip()[:1]!r}")
        kind = match.lastgroup
        tokens.append(Token(kind, match.group(kind), match.start(kind), match.end()))
        pos = match.end()
    return tokens


def literal_value(text: str, dialect: Dialect = NUMBERS) -> int | Fraction:
    """Exact value of one number literal (``1,000`` -> 1000, ``1.5e2`` -> 150)."""
    mantissa, _, exponent = text.replace(",", "").lower().partition("e")
    if sum(ch.isdigit() for ch in mantissa) > dialect.max_literal_digits:
        raise ExprError("number literal too long")
    if dialect is INTEGERS:
        return int(mantissa)
    value = Fraction(mantissa)
    if exponent:
        value *= power(Fraction(10), Fraction(int(exponent[:8])))
    return value.numerator if value.denominator == 1 else value


class _Parser:
    """Recursive-descent parser over a token list; depth- and length-bounded."""

    def __init__(self, tokens: list[Token], dialect: Dialect, pos: int = 0):
        self.tokens, self.dialect, self.pos, self.start = tokens, dialect, pos, pos

    def peek(self, offset: int = 0) -> Token | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise ExprError("unexpected end of expression")
        self.pos += 1
        if self.pos - self.start > MAX_TOKENS:
            raise ExprError(f"expression longer than {MAX_TOKENS} tokens")
        return token

    def binary_next(self, ops: str) -> bool:
        """The next token is one of ``ops`` and an operand follows it (else it is not ours)."""
        token = self.peek()
        if token is None or token.kind != "op":
            return False
        op = "^" if token.text == "**" else token.text
        return op in ops and op in self.dialect.binary and starts_operand(self.peek(1),
                                                                          self.dialect)

    def left_assoc(self, depth: int, ops: str, operand) -> Node:
        """``operand (op operand)*`` for the operators ``ops``, left-associative."""
        node = operand(depth)
        while self.binary_next(ops):
            op = self.take().text
            node = BinOp(op, node, operand(depth))
        return node

    def expr(self, depth: int) -> Node:
        return self.left_assoc(depth, "+-", self.term)

    def term(self, depth: int) -> Node:
        return self.left_assoc(depth, "*/", self.unary)

    def unary(self, depth: int) -> Node:
        token = self.peek()
        if token is not None and token.kind == "op" and token.text in "+-":
            if not self.dialect.unary:
                raise ExprError("unary minus is not allowed")
            self.take()
            operand = self.unary(self.deeper(depth))
            return UnOp("-", operand) if token.text == "-" else operand
        return self.power(depth)

    def power(self, depth: int) -> Node:
        node = self.atom(depth)
        if self.binary_next("^"):
            self.take()
            node = BinOp("^", node, self.unary(self.deeper(depth)))
        return node

    def atom(self, depth: int) -> Node:
        token = self.take()
        if token.kind == "num":
            return Num(literal_value(token.text, self.dialect))
        if token.kind == "open":
            node = self.expr(self.deeper(depth))
            closer = self.take()
            if closer.text != _OPENERS[token.text]:
                raise ExprError(f"expected {_OPENERS[token.text]!r}")
            return node
        if token.kind == "func":
            if token.text == "\\frac":
                num = self.atom(self.deeper(depth))
                return BinOp("/", num, self.atom(self.deeper(depth)))
            return UnOp("sqrt", self.atom(self.deeper(depth)))
        if token.kind == "op" and token.text == "-":
            raise ExprError("unary minus is not allowed")
        raise ExprError(f"unexpected token {token.text!r}")

    @staticmethod
    def deeper(depth: int) -> int:
        if depth >= MAX_DEPTH:
            raise ExprError(f"expression nested deeper than {MAX_DEPTH}")
        return depth + 1


def starts_operand(token: Token | None, dialect: Dialect) -> bool:
    """Can an operand (of a binary operator) begin with ``token``?"""
    if token is None:
        return False
    if token.kind in ("num", "func") or (token.kind == "open" and token.text in "([{"):
        return True
    return dialect.unary and token.kind == "op" and token.text in "+-"


def parse_prefix(tokens: list[Token], pos: int, dialect: Dialect = NUMBERS) -> tuple[Node, int]:
    """The longest expression starting at ``tokens[pos]`` and the index just after it.

    A binary operator that is not followed by an operand ends the expression (it is left for the
    caller); anything malformed after the expression has started raises ExprError.
    """
    parser = _Parser(tokens, dialect, pos)
    return parser.expr(0), parser.pos


def parse(text: str, dialect: Dialect = INTEGERS) -> Node:
    """Parse ``text`` into an AST; raise ExprError if it is not exactly one expression."""
    tokens = tokenize(text, dialect)
    if not tokens:
        raise ExprError("empty expression")
    node, end = parse_prefix(tokens, 0, dialect)
    if end < len(tokens):
        raise ExprError(f"unexpected token {tokens[end].text!r}")
    return node


def _bits(value: Fraction) -> int:
    return max(value.numerator.bit_length(), value.denominator.bit_length())


def _checked(value: Fraction) -> Fraction:
    if _bits(value) > MAX_BITS:
        raise ExprTooLarge("number too large")
    return value


def power(base: Fraction, exponent: Fraction) -> Fraction:
    """``base ** exponent`` exactly: integer exponents, or ``p/q`` when the ``q``-th root is
    rational (``324^{1/2}`` is 18); refused before it would grow too large."""
    if abs(exponent) > MAX_EXPONENT:
        raise ExprTooLarge(f"exponent beyond {MAX_EXPONENT}")
    if exponent.denominator > MAX_ROOT_DEGREE:
        raise ExprError(f"root of degree beyond {MAX_ROOT_DEGREE}")
    if base == 0 and exponent <= 0:
        raise ExprError("zero to a non-positive power")
    if exponent.denominator != 1:
        base, exponent = exact_root(base, exponent.denominator), Fraction(exponent.numerator)
    if abs(base) != 1 and abs(exponent.numerator) * _bits(base) > MAX_BITS:
        raise ExprTooLarge("power too large")
    return base ** exponent.numerator


def _integer_root(n: int, degree: int) -> int | None:
    """The exact ``degree``-th root of ``n >= 0``, or None (Newton's method on integers)."""
    if n < 2:
        return n
    x = 1 << -(-n.bit_length() // degree)
    while True:
        y = ((degree - 1) * x + n // x ** (degree - 1)) // degree
        if y >= x:
            return x if x ** degree == n else None
        x = y


def exact_root(value: Fraction, degree: int = 2) -> Fraction:
    """The rational ``degree``-th root of ``value >= 0``; ExprError if it is irrational."""
    if value < 0:
        raise ExprError("root of a negative number")
    num = _integer_root(value.numerator, degree)
    den = _integer_root(value.denominator, degree)
    if num is None or den is None:
        raise ExprError("irrational root")
    return Fraction(num, den)


def apply_op(op: str, a: Fraction, b: Fraction) -> Fraction:
    """Exact binary operation; division by zero raises ExprError."""
    if op == "+":
        return _checked(a + b)
    if op == "-":
        return _checked(a - b)
    if op == "*":
        return _checked(a * b)
    if op == "^":
        return power(a, b)
    if b == 0:
        raise ExprError("division by zero")
    return _checked(a / b)


def evaluate(node: Node) -> Fraction:
    """Exact value of the AST (ExprError / ExprTooLarge when it cannot be computed)."""
    if isinstance(node, Num):
        return _checked(Fraction(node.value))
    if isinstance(node, UnOp):
        value = evaluate(node.operand)
        return -value if node.op == "-" else exact_root(value)
    return apply_op(node.op, evaluate(node.left), evaluate(node.right))


def literals(node: Node) -> list[int | Fraction]:
    """The number literals in left-to-right order."""
    if isinstance(node, Num):
        return [node.value]
    if isinstance(node, UnOp):
        return literals(node.operand)
    return literals(node.left) + literals(node.right)


def _child_str(child: Node, parent_op: str, right: bool) -> str:
    text = to_str(child)
    if not isinstance(child, BinOp):
        return f"({text})" if text.startswith("-") else text
    child_prec, parent_prec = _PRECEDENCE[child.op], _PRECEDENCE[parent_op]
    needs = child_prec < parent_prec or (child_prec == parent_prec
                                         and (parent_op == "^" or (right and parent_op in "-/")))
    return f"({text})" if needs else text


def to_str(node: Node) -> str:
    """Render with few parentheses; the text always evaluates to the same value."""
    if isinstance(node, Num):
        return str(node.value) if isinstance(node.value, int) else f"({node.value})"
    if isinstance(node, UnOp):
        inner = to_str(node.operand)
        return f"-({inner})" if node.op == "-" else f"√({inner})"
    left = _child_str(node.left, node.op, right=False)
    right = _child_str(node.right, node.op, right=True)
    return f"{left} {node.op} {right}"
