"""Text rules shared by imports and exports: a template's scalar as text, and `case`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl


def scalar_text(value: Any) -> str | None:
    """A YAML scalar as the text a file would hold: true/false, ISO dates."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def cased(value: pl.Expr, case: str) -> pl.Expr:
    """The `case` key: lower, upper, capitalize (first letter up, the rest down), none."""
    if case == "lower":
        return value.str.to_lowercase()
    if case == "upper":
        return value.str.to_uppercase()
    if case == "capitalize":
        return value.str.slice(0, 1).str.to_uppercase() + value.str.slice(1).str.to_lowercase()
    return value
