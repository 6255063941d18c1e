"""A tiny arithmetic expression language for Countdown answers (never Python ``eval``).

Grammar (recursive descent, usual precedence, left-associative)::

    expr   := term (("+" | "-") term)*
    term   := factor (("*" | "/") factor)*
    factor := INT | "(" expr ")"

Tokens are non-negative integer literals (ASCII digits), ``+ - * / ( )`` and whitespace.
**Unary minus is rejected**: Countdown allows only binary operations on the given numbers, and a
free negation would let ``-3`` stand for a number that was not given. Values are exact
:class:`fractions.Fraction`; division by zero raises :class:`ExprError`. Input length, literal
length and nesting depth are bounded so adversarial strings fail fast.

>>> node = parse("(25 - 5) * 6 / 4")
>>> evaluate(node), literals(node)
(Fraction(30, 1), [25, 5, 6, 4])
>>> to_str(parse("((3 + 4)) * (5 - (2 - 1))"))
'(3 + 4) * (5 - (2 - 1))'
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

MAX_EXPR_CHARS = 200
MAX_DEPTH = 32
MAX_LITERAL_DIGITS = 9

_TOKEN_RE = re.compile(r"\s*(?:([0-9]+)|([-+*/()]))")
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


class ExprError(ValueError):
    """Raised for text that is not a valid expression, or one that cannot be evaluated."""


@dataclass(frozen=True)
class Num:
    value: int


@dataclass(frozen=True)
class BinOp:
    op: str
    left: "Node"
    right: "Node"


Node = Num | BinOp


def tokenize(text: str) -> list[str]:
    """Split into tokens; raise ExprError on any other character or an over-long literal."""
    if len(text) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters")
    tokens: list[str] = []
    pos = 0
    stripped_end = len(text.rstrip())
    while pos < stripped_end:
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise ExprError(f"unexpected character {text[pos:].lstrip()[:1]!r}")
        literal = match.group(1)
        if literal is not None and len(literal) > MAX_LITERAL_DIGITS:
            raise ExprError("number literal too long")
        tokens.append(match.group(1) or match.group(2))
        pos = match.end()
    return tokens


class _Parser:
    """Recursive-descent parser over a token list; depth-bounded."""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ExprError("unexpected end of expression")
        self.pos += 1
        return token

    def expr(self, depth: int) -> Node:
        node = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            node = BinOp(op, node, self.term(depth))
        return node

    def term(self, depth: int) -> Node:
        node = self.factor(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            node = BinOp(op, node, self.factor(depth))
        return node

    def factor(self, depth: int) -> Node:
        token = self.take()
        if token == "(":
            if depth >= MAX_DEPTH:
                raise ExprError(f"parentheses nested deeper than {MAX_DEPTH}")
            node = self.expr(depth + 1)
            if self.take() != ")":
                raise ExprError("expected ')'")
            return node
        if token.isdigit():
            return Num(int(token))
        if token == "-":
            raise ExprError("unary minus is not allowed")
        raise ExprError(f"unexpected token {token!r}")


def parse(text: str) -> Node:
    """Parse ``text`` into an AST; raise ExprError if it is not exactly one expression."""
    tokens = tokenize(text)
    if not tokens:
        raise ExprError("empty expression")
    parser = _Parser(tokens)
    node = parser.expr(0)
    if parser.peek() is not None:
        raise ExprError(f"unexpected token {parser.peek()!r}")
    return node


def apply_op(op: str, a: Fraction, b: Fraction) -> Fraction:
    """Exact binary operation; division by zero raises ExprError."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ExprError("division by zero")
    return a / b


def evaluate(node: Node) -> Fraction:
    """Exact value of the AST."""
    if isinstance(node, Num):
        return Fraction(node.value)
    return apply_op(node.op, evaluate(node.left), evaluate(node.right))


def literals(node: Node) -> list[int]:
    """The integer literals in left-to-right order."""
    if isinstance(node, Num):
        return [node.value]
    return literals(node.left) + literals(node.right)


def _child_str(child: Node, parent_op: str, right: bool) -> str:
    text = to_str(child)
    if isinstance(child, Num):
        return text
    child_prec, parent_prec = _PRECEDENCE[child.op], _PRECEDENCE[parent_op]
    needs = child_prec < parent_prec or (right and child_prec == parent_prec
                                         and parent_op in "-/")
    return f"({text})" if needs else text


def to_str(node: Node) -> str:
    """Render with few parentheses; the text always evaluates to the same value."""
    if isinstance(node, Num):
        return str(node.value)
    left = _child_str(node.left, node.op, right=False)
    right = _child_str(node.right, node.op, right=True)
    return f"{left} {node.op} {right}"
