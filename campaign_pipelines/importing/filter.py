"""The import's source filter (Campaign's import filter): the export filter's vocabulary,
applied to the mapped values as one polars expression. A line that does not pass is
ignored, with its cause, never rejected."""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from campaign_pipelines.templates import ImportTemplate, filter_conditions, filter_value

FILTERED = "not selected by source.filter"


def like_pattern(pattern: str) -> str:
    """SQL LIKE (% any run, _ one character) as an anchored regular expression."""
    return "^" + "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern) + "$"


def _condition(column: pl.Expr, op: str, value: Any) -> pl.Expr:
    if op == "is_null":
        return column.is_null() if value else column.is_not_null()
    if op == "in":
        return column.is_in(value)
    if op == "not_in":
        return ~column.is_in(value)
    if op == "like":
        return column.str.contains(like_pattern(value))
    return {"eq": column.__eq__, "ne": column.__ne__, "lt": column.__lt__, "le": column.__le__,
            "gt": column.__gt__, "ge": column.__ge__}[op](value)


def source_filter(template: ImportTemplate) -> pl.Expr | None:
    """True for the lines to import; None when the template has no filter. A comparison
    with an empty value does not pass, as in SQL (use is_null for those)."""
    if not template.source.filter:
        return None
    conditions = []
    for name, condition in template.source.filter.items():
        f = template.value_field(name)
        for op, raw in filter_conditions(condition):
            conditions.append(_condition(pl.col(name), op, filter_value(f, op, raw)).fill_null(False))
    return pl.all_horizontal(conditions)
