"""Safe arithmetic: a small tokenizer and recursive-descent parser, no eval.

Grammar (usual precedence, `^` and `**` are power and bind right):
    expr   := term (('+' | '-') term)*
    term   := unary (('*' | '/' | '//' | '%') unary)*
    unary  := ('+' | '-') unary | power
    power  := atom (('**' | '^') unary)?
    atom   := NUMBER | '(' expr ')'
"""

from __future__ import annotations

import math
import re

MAX_EXPRESSION_CHARS = 256
MAX_DEPTH = 32
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e100

_TOKEN_RE = re.compile(
    r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|(\*\*|//|[-+*/%^()]))"
)


class CalculatorError(ValueError):
    """The expression is not valid arithmetic or its value is out of bounds."""


def tokenize(expression: str) -> list[str]:
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    tokens: list[str] = []
    pos = 0
    text = expression.rstrip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise CalculatorError(f"unexpected character {text[pos:].lstrip()[:1]!r}")
        tokens.append(match.group(1) or match.group(2))
        pos = match.end()
    if not tokens:
        raise CalculatorError("empty expression")
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise CalculatorError("unexpected end of expression")
        self.pos += 1
        return token

    def expr(self) -> float:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CalculatorError("expression nested too deeply")
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            value = _check(value + self.term() if op == "+" else value - self.term())
        self.depth -= 1
        return value

    def term(self) -> float:
        value = self.unary()
        while self.peek() in ("*", "/", "//", "%"):
            op = self.take()
            right = self.unary()
            if op == "*":
                value = _check(value * right)
                continue
            if right == 0:
                raise CalculatorError("division by zero")
            if op == "/":
                value = _check(value / right)
            elif op == "//":
                value = _check(float(math.floor(value / right)))
            else:
                value = _check(value % right)
        return value

    def unary(self) -> float:
        if self.peek() in ("+", "-"):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise CalculatorError("expression nested too deeply")
            op = self.take()
            value = self.unary()
            self.depth -= 1
            return -value if op == "-" else value
        return self.power()

    def power(self) -> float:
        base = self.atom()
        if self.peek() in ("**", "^"):
            self.take()
            exponent = self.unary()
            if abs(exponent) > MAX_EXPONENT:
                raise CalculatorError(f"exponent larger than {MAX_EXPONENT}")
            if base == 0 and exponent < 0:
                raise CalculatorError("division by zero")
            if base < 0 and not float(exponent).is_integer():
                raise CalculatorError("fractional power of a negative number")
            return _check(math.pow(base, exponent))
        return base

    def atom(self) -> float:
        token = self.take()
        if token == "(":
            value = self.expr()
            if self.take() != ")":
                raise CalculatorError("expected ')'")
            return value
        if token[0].isdigit() or token[0] == ".":
            return _check(float(token))
        raise CalculatorError(f"unexpected {token!r}")


def _check(value: float) -> float:
    if math.isnan(value) or math.isinf(value) or abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("result out of range")
    return value


def evaluate(expression: str) -> float:
    """Value of an arithmetic expression; raises CalculatorError when it is not one."""
    parser = _Parser(tokenize(expression))
    value = parser.expr()
    if parser.peek() is not None:
        raise CalculatorError(f"unexpected {parser.peek()!r}")
    return value


def format_number(value: float) -> int | float:
    """Integers as ints (12 not 12.0), others rounded to 12 significant digits."""
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return float(f"{value:.12g}")
