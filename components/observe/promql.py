"""Which metrics a PromQL expression reads: a small tokenizer, no evaluation.

`query_metric_names` returns the metric names an expression selects: identifiers that
are neither function or aggregation names, keywords, label names inside `{...}` or the
grouping lists of `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`, nor parts
of strings, numbers or durations. A selector `{__name__="x"}` names `x`. A name chosen by
a regular expression (`{__name__=~"..."}`) cannot be checked and is an error, as is a
call of a function PromQL does not have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Prometheus 3.x functions (prometheus.io/docs/prometheus/latest/querying/functions/),
# experimental ones included.
FUNCTIONS = frozenset(
    [
        "abs",
        "absent",
        "absent_over_time",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atanh",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "cos",
        "cosh",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "deg",
        "delta",
        "deriv",
        "double_exponential_smoothing",
        "exp",
        "first_over_time",
        "floor",
        "histogram_avg",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_stddev",
        "histogram_stdvar",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "info",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "mad_over_time",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rad",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sin",
        "sinh",
        "sort",
        "sort_by_label",
        "sort_by_label_desc",
        "sort_desc",
        "sqrt",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "tan",
        "tanh",
        "time",
        "timestamp",
        "ts_of_max_over_time",
        "ts_of_min_over_time",
        "ts_of_last_over_time",
        "vector",
        "year",
        "start",
        "end",
    ]
)
AGGREGATIONS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ]
)
BINARY_KEYWORDS = frozenset({"and", "or", "unless", "atan2", "bool", "offset"})
GROUPING_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
NUMBER_WORDS = frozenset({"inf", "nan"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![A-Za-z0-9_:]))
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@:])
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    """An expression this checker cannot read, with the reason and the position."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    at: int


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise PromQLError(f"unexpected character {expr[pos]!r} at {pos} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    _check_brackets(tokens, expr)
    return tokens


def _check_brackets(tokens: list[Token], expr: str) -> None:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[Token] = []
    for token in tokens:
        if token.text in ("(", "[", "{"):
            stack.append(token)
        elif token.text in pairs:
            if not stack or stack[-1].text != pairs[token.text]:
                raise PromQLError(f"unmatched {token.text!r} at {token.at} in {expr!r}")
            stack.pop()
    if stack:
        raise PromQLError(f"unclosed {stack[-1].text!r} at {stack[-1].at} in {expr!r}")


def _unquote(text: str) -> str:
    body = text[1:-1]
    return body if text[0] == "`" else re.sub(r"\\(.)", r"\1", body)


def _skip_group(tokens: list[Token], i: int, open_: str, close: str) -> int:
    """Index after the bracket that closes the one at `i`."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j].text == open_:
            depth += 1
        elif tokens[j].text == close:
            depth -= 1
            if depth == 0:
                return j + 1
    raise PromQLError(f"unclosed {open_!r} at {tokens[i].at}")


def _selector_names(tokens: list[Token], start: int, end: int, expr: str) -> set[str]:
    """Names given by `__name__` matchers inside one `{...}` (tokens start..end)."""
    names: set[str] = set()
    for j in range(start, end):  # Prometheus 3: `{"a.name", job="x"}` quotes the name
        before, after = tokens[j - 1].text, tokens[j + 1].text
        if tokens[j].kind == "string" and before in ("{", ",") and after in (",", "}"):
            names.add(_unquote(tokens[j].text))
    for j in range(start, end - 2):
        if tokens[j].text == "__name__" and tokens[j + 1].kind == "op":
            op, value = tokens[j + 1].text, tokens[j + 2]
            if op == "=" and value.kind == "string":
                names.add(_unquote(value.text))
            elif op in ("=~", "!~", "!="):
                raise PromQLError(
                    f"__name__{op} at {tokens[j].at} in {expr!r} selects metrics by pattern; "
                    "name them so they can be checked"
                )
    return names


@dataclass(frozen=True)
class Selector:
    """One vector selector: the metric it names (None: only label matchers, no `__name__`)
    and the label names its matchers test."""

    name: str | None
    labels: frozenset[str]


def _matcher_labels(tokens: list[Token], start: int, end: int) -> frozenset[str]:
    return frozenset(
        _unquote(t.text) if t.kind == "string" else t.text
        for j, t in enumerate(tokens[start:end], start)
        if t.kind in ("ident", "string")
        and tokens[j + 1].text in ("=", "!=", "=~", "!~")
        and t.text != "__name__"
    )


def query_selectors(expr: str) -> list[Selector]:
    """Every vector selector of the PromQL expression `expr`, in order."""
    tokens = tokenize(expr)
    selectors: list[Selector] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.text == "{":
            end = _skip_group(tokens, i, "{", "}")
            labels = _matcher_labels(tokens, i + 1, end - 1)
            named = _selector_names(tokens, i + 1, end - 1, expr)
            selectors += [Selector(n, labels) for n in sorted(named)] or [Selector(None, labels)]
            i = end
            continue
        if token.text == "[":  # range or subquery: durations only
            i = _skip_group(tokens, i, "[", "]")
            continue
        if token.kind != "ident":
            i += 1
            continue
        word = token.text
        keyword = word.lower()  # keywords and aggregations are case-insensitive
        if keyword in GROUPING_KEYWORDS:
            # by (a, b) / on (a) / group_left (c): a list of label names, not metrics.
            i += 1
            if i < len(tokens) and tokens[i].text == "(":
                i = _skip_group(tokens, i, "(", ")")
            continue
        if keyword in NUMBER_WORDS or keyword in BINARY_KEYWORDS:
            i += 1  # `a or (b)`: an operator, even before a bracket
            continue
        if following is not None and following.text == "(":
            if word not in FUNCTIONS and keyword not in AGGREGATIONS:
                raise PromQLError(f"{word!r} at {token.at} in {expr!r} is not a PromQL function")
            i += 1
            continue
        if (
            keyword in AGGREGATIONS
            and following is not None
            and following.text.lower() in GROUPING_KEYWORDS
        ):
            i += 1  # `sum by (x) (...)`: the aggregation comes before its grouping
            continue
        if following is not None and following.text == "{":  # name{matchers}
            end = _skip_group(tokens, i + 1, "{", "}")
            selectors.append(Selector(word, _matcher_labels(tokens, i + 2, end - 1)))
            i = end
            continue
        selectors.append(Selector(word, frozenset()))
        i += 1
    return selectors


def query_metric_names(expr: str) -> set[str]:
    """Every metric name the PromQL expression `expr` selects."""
    return {s.name for s in query_selectors(expr) if s.name is not None}
