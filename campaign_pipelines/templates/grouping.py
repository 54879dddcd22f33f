"""Grouped extractions (Campaign's Extraction activity with grouping): export columns that
aggregate over `source.group_by`, and `source.having` on what they aggregate. What a
template must say to be one SQL query, checked when it loads, and the kind of value each
aggregate gives; `exporting/columns.py` builds the SQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import schemas
from campaign_pipelines.templates.common import check_conditions
from campaign_pipelines.templates.paths import follow, value_parts

if TYPE_CHECKING:
    from campaign_pipelines.templates.exports import ExportColumn, ExportSource

AGGREGATES = ("count", "count_distinct", "sum", "min", "max", "avg")
NUMBERS = ("integer", "decimal", "float")


def aggregate_field(model: schemas.DataModel, spec: schemas.TableSpec, column: ExportColumn) -> schemas.Field:
    """The value an aggregating column gives, as a field: a count is a whole number; a sum,
    a minimum or a maximum is of the column's kind (a decimal sum has up to 18 digits, its
    scale kept); an average is a float, or a decimal's average rounded to its scale. A
    ValueError starts with the key at fault (`column: …`, `aggregate: …`)."""
    if column.column is None:  # count: the rows
        return schemas.Field(column.title, "integer")
    try:
        f = follow(model, spec, column.column).field
    except ValueError as exc:
        raise ValueError(f"column: {exc}") from None
    aggregate = column.aggregate
    if aggregate in ("count", "count_distinct"):
        return schemas.Field(column.title, "integer")
    if aggregate in ("sum", "avg") and f.kind not in NUMBERS:
        raise ValueError(f"aggregate: {aggregate} needs a number column, {column.column} is a {f.kind}")
    if f.kind == "boolean":
        raise ValueError(f"aggregate: {aggregate} of a yes/no column; count the rows where it holds with a filter instead")
    if f.kind == "decimal" and aggregate in ("sum", "avg"):
        return schemas.Field(column.title, "decimal", precision=schemas.MAX_DECIMAL_PRECISION, scale=f.scale)
    if aggregate == "avg":
        return schemas.Field(column.title, "float")
    return schemas.Field(column.title, f.kind, precision=f.precision, scale=f.scale)


def grouped(source: ExportSource) -> bool:
    return bool(source.group_by) or any(c.aggregate for c in source.columns)


def group_keys(source: ExportSource) -> set[str]:
    """The names an order may use in a grouped export: its group_by entries and the titles
    of its aggregated columns."""
    return set(source.group_by) | {c.title for c in source.columns if c.aggregate}


def check_grouping(model: schemas.DataModel, spec: schemas.TableSpec, source: ExportSource) -> None:
    """Every exported column is aggregated, grouped or constant; group_by names columns;
    having filters aggregated columns with values of their kind. A ValueError names the
    key at fault."""
    if not grouped(source):
        if source.having:
            raise ValueError("source.having: filters aggregated columns, and no column has an aggregate; use source.filter")
        return
    if source.distinct:
        raise ValueError("source.distinct: the rows of a grouped export are distinct already; remove it")
    plain_titles = {c.title for c in source.columns if not c.aggregate}
    for name in source.group_by:
        if name in plain_titles:
            continue
        try:
            follow(model, spec, name)
        except ValueError as exc:
            raise ValueError(f"source.group_by: {name!r} is neither an exported column's title nor a column: {exc}") from None
    by = set(source.group_by)
    for i, column in enumerate(source.columns):
        where = f"source.columns[{i}]"
        if column.aggregate or not _needs_grouping(column):
            continue
        if column.collection is not None:
            raise ValueError(f"{where}.collection: a collection cannot be exported by a grouped export")
        if column.column is not None:
            covered = column.title in by or column.column in by
        else:
            covered = column.title in by or all(name in by for _, name in value_parts(column.value) if name)
        if not covered:
            raise ValueError(f"{where}: {column.title!r} is neither aggregated nor in source.group_by; "
                             f"add {column.column or column.title!r} to group_by, or give it an aggregate")
    aggregated = {c.title: c for c in source.columns if c.aggregate}
    for title, condition in source.having.items():
        if title not in aggregated:
            known = ", ".join(sorted(aggregated)) or "none"
            raise ValueError(f"source.having.{title}: not an aggregated column (aggregated: {known}); "
                             "filter the rows with source.filter")
        check_conditions(aggregate_field(model, spec, aggregated[title]), condition, f"source.having.{title}")
    keys = group_keys(source)
    for name in source.order_by:
        if name not in keys:
            raise ValueError(f"source.order_by: {name!r}; a grouped export orders by its group_by columns and "
                             f"aggregated columns ({', '.join(sorted(keys))})")


def _needs_grouping(column: Any) -> bool:
    """A constant is the same in every group; anything read from a row needs a group."""
    return column.column is not None or column.collection is not None or column.calculated
