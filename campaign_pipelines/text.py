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


# A reject reason quotes the value at fault, up to this many characters.
SHOWN_CHARS = 100


def shown(value: pl.Expr) -> pl.Expr:
    """A value as a reject reason quotes it: a runaway value is cut, not copied whole."""
    return pl.when(value.str.len_chars() > SHOWN_CHARS).then(value.str.slice(0, SHOWN_CHARS) + "…").otherwise(value)
