"""The calculator tool's arithmetic parser: precedence, limits, and no code execution."""

from __future__ import annotations

from fractions import Fraction

import pytest
from agent_worker.calculator import CalculatorError, evaluate, format_number
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("12*7+3", 87),
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 3 ** 2", 512),
        ("2^10", 1024),
        ("-2 ** 2", -4),
        ("--3", 3),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("1.5e3 / 3", 500),
        (".5 + .25", 0.75),
        ("  4  ", 4),
    ],
)
def test_values(expression: str, value: float) -> None:
    assert evaluate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "   ",
        "__import__('os').system('id')",
        "open('/etc/passwd')",
        "1 + ",
        "(1 + 2",
        "1 + 2)",
        "2 3",
        "1 / 0",
        "5 // 0",
        "5 % 0",
        "0 ** -1",
        "2 ** 1000",
        "(-8) ** 0.5",
        "9" * 300,
        "(" * 40 + "1" + ")" * 40,
        "-" * 40 + "1",
        "1e308 * 1e308",
    ],
)
def test_rejects(expression: str) -> None:
    with pytest.raises(CalculatorError):
        evaluate(expression)


def test_format_number() -> None:
    assert format_number(12.0) == 12 and isinstance(format_number(12.0), int)
    assert format_number(0.1 + 0.2) == 0.3
    assert format_number(2.5) == 2.5


# An independent evaluator over expression trees (exact rationals) checks the parser.
_leaf = st.integers(min_value=0, max_value=999).map(lambda n: (str(n), Fraction(n)))


def _combine(
    children: st.SearchStrategy[tuple[str, Fraction]],
) -> st.SearchStrategy[tuple[str, Fraction]]:
    def build(a: tuple[str, Fraction], op: str, b: tuple[str, Fraction]) -> tuple[str, Fraction]:
        value = {"+": a[1] + b[1], "-": a[1] - b[1], "*": a[1] * b[1]}[op]
        return (f"({a[0]} {op} {b[0]})", value)

    return st.builds(build, children, st.sampled_from("+-*"), children)


@given(st.recursive(_leaf, _combine, max_leaves=12))
def test_matches_reference(tree: tuple[str, Fraction]) -> None:
    text, value = tree
    assert evaluate(text) == pytest.approx(float(value), rel=1e-9, abs=1e-9)
