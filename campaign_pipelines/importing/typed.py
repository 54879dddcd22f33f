"""Typed columns (a Parquet file's) into the table's kinds, exactly.

What the reader hands on: a column of one of the `CARRIED` types. Which field kinds each
may fill is `FITS`; a column that cannot fill its field is refused before anything is
read, in one sentence. Dates, timestamps, whole numbers, floats and booleans convert
directly (a timestamp without a zone is in the column's `timezone`, default UTC); a
decimal, and every value mapped with `remap`, is converted through its exact text
(`12.30`), so it is checked, rejected and reported as the same value in a CSV would be.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import polars as pl

from schemas.base import Field


def carried(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """The column as the steps carry it: dictionaries decoded, large and 256-bit types
    narrowed (a 256-bit decimal as its exact text), dates as days."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return carried(column.cast(kind.value_type))
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind) or pa.types.is_decimal256(kind):
        return pc.cast(column, pa.string())
    if pa.types.is_date64(kind):
        return pc.cast(column, pa.date32())
    return column


def _family(kind: pa.DataType) -> str | None:
    if pa.types.is_dictionary(kind):
        return _family(kind.value_type)
    for family, test in (
        ("text", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)),
        ("boolean", pa.types.is_boolean),
        ("integer", pa.types.is_integer),
        ("decimal", pa.types.is_decimal),
        ("float", pa.types.is_floating),
        ("date", pa.types.is_date),
        ("timestamp", pa.types.is_timestamp),
    ):
        if test(kind):
            return family
    return None


# Field kind -> the column families that can fill it.
FITS = {
    "string": {"text", "boolean", "integer", "decimal", "float", "date", "timestamp"},
    "integer": {"text", "integer", "decimal", "float"},
    "decimal": {"text", "integer", "decimal", "float"},
    "float": {"text", "integer", "decimal", "float"},
    "date": {"text", "date"},
    "timestamp": {"text", "date", "timestamp"},
    "boolean": {"text", "boolean", "integer"},
}


def misfit(name: str, kind: pa.DataType, f: Field) -> str | None:
    """Why a column of type `kind` cannot fill field `f`, or None."""
    family = _family(kind)
    if family is None:
        if pa.types.is_struct(kind):
            return f"column {name!r} is a struct; map one of its fields by key path ({name}.{kind.field(0).name})"
        return f"column {name!r} is of type {kind}, which no field can hold"
    if family not in FITS[f.kind]:
        return f"column {name!r} holds {family} values ({kind}), which cannot fill {f.name} (a {f.kind})"
    return None


def direct(dtype: pl.DataType, f: Field) -> bool:
    """Whether a typed column converts to the field's kind without going through text."""
    return (
        (f.kind == "date" and dtype == pl.Date)
        or (f.kind == "timestamp" and (isinstance(dtype, pl.Datetime) or dtype == pl.Date))
        or (f.kind == "integer" and (dtype.is_integer() or dtype.is_float()))
        or (f.kind == "float" and dtype.is_numeric() and not isinstance(dtype, pl.Decimal))
        or (f.kind == "boolean" and dtype == pl.Boolean)
    )


def convert(value: pl.Expr, dtype: pl.DataType, f: Field, timezone: str | None) -> tuple[pl.Expr, pl.Expr]:
    """(typed value, conversion failed) of a column `direct` accepts."""
    if f.kind == "timestamp":
        typed = value.cast(pl.Datetime("us"))
        if dtype == pl.Date or getattr(dtype, "time_zone", None) is None:
            typed = typed.dt.replace_time_zone(timezone or "UTC", ambiguous="earliest", non_existent="null")
        typed = typed.dt.convert_time_zone("UTC")
    elif f.kind == "integer":
        if dtype.is_float():
            whole = value.is_finite() & (value == value.floor()) & (value.abs() < 2.0**63)
            typed = pl.when(whole).then(value).cast(pl.Int64, strict=False)
        else:
            typed = value.cast(pl.Int64, strict=False)  # an unsigned 64-bit value past 2^63: null
    elif f.kind == "float":
        typed = value.cast(pl.Float64)
    else:
        typed = value
    return typed, value.is_not_null() & typed.is_null()
