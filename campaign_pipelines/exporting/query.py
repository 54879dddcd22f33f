"""Compile an export template to one SQLAlchemy SELECT: columns (linked, collected,
calculated: see `columns`), declarative filters as bound parameters (never SQL text),
empty values sorted last on every database; and the differential watermark."""

from __future__ import annotations

import datetime as dt
import operator
from typing import Any

import sqlalchemy as sa

import schemas
from campaign_pipelines.exporting.columns import ExportColumns
from campaign_pipelines.templates import ExportTemplate, filter_conditions, filter_value
from campaign_pipelines.templates.grouping import aggregate_field, grouped

COMPARISONS = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}


def condition(column: sa.Column, op: str, value: Any) -> sa.ColumnElement[bool]:
    if op == "is_null":
        return column.is_(None) if value else column.is_not(None)
    if op == "in":
        return column.in_(value)
    if op == "not_in":
        return column.not_in(value)
    if op == "like":
        return column.like(value)
    return COMPARISONS[op](column, value)


def day_window(template: ExportTemplate, window: Any) -> sa.ColumnElement[bool]:
    """Rows whose partition column falls in [window.start, window.end): a partition's day,
    in the partition's timezone. Timestamps are stored in UTC; dates compare as dates."""
    name = template.partition_column
    assert name is not None
    column = template.table.table.c[name]
    if template.table.field(name).kind == "date":
        return sa.and_(column >= window.start.date(), column < window.end.date())
    return sa.and_(column >= window.start.astimezone(dt.UTC), column < window.end.astimezone(dt.UTC))


def build_select(
    template: ExportTemplate, since: Any = None, limit: int | None = None, window: Any = None,
    columns: ExportColumns | None = None,
) -> sa.Select:
    """One SELECT: the template's columns labelled c0, c1… (see `ExportColumns`), its
    links and collections as LEFT OUTER JOINs, its filter as bound parameters."""
    spec = template.table
    table = spec.table
    source = template.source
    columns = columns or ExportColumns(template)
    query = sa.select(*(s.expression for s in columns.selected.values()))
    for name, conditions in source.filter.items():
        column, f = columns.column(name)
        for op, raw in filter_conditions(conditions):
            query = query.where(condition(column, op, filter_value(f, op, raw)))
    if columns.watermark and since is not None:
        query = query.where(table.c[source.differential.column] > since)  # type: ignore[union-attr]
    if window is not None:
        query = query.where(day_window(template, window))
    if source.distinct:
        query = query.distinct()
    if grouped(source):
        query, order = _grouped(query, template, columns)
    else:
        order = [columns.column(n)[0].asc().nulls_last() for n in source.order_by]
        if not source.distinct and spec.primary_key:
            # A stable order for equal sort keys; DISTINCT may only order by selected columns.
            order += [table.c[k].asc() for k in spec.primary_key if k not in source.order_by]
    query = query.select_from(columns.joins.from_clause).order_by(*order)
    limit = limit if limit is not None else source.limit
    return query.limit(limit) if limit is not None else query


def _grouped(query: sa.Select, template: ExportTemplate, columns: ExportColumns) -> tuple[sa.Select, list]:
    """GROUP BY the template's group_by, HAVING its conditions on aggregated columns (bound
    values of the aggregate's kind), ordered by its order_by then by every group key, so
    a file is reproducible (each group is one row)."""
    source = template.source
    keys = columns.grouping()
    query = query.group_by(*keys)
    aggregated = {c.title: c for c in source.columns if c.aggregate}
    for title, conditions in source.having.items():
        expression = columns.titled(title)
        f = aggregate_field(template.model, template.table, aggregated[title])
        for op, raw in filter_conditions(conditions):
            query = query.having(condition(expression, op, filter_value(f, op, raw)))
    order = []
    for name in source.order_by:
        titled = columns.titled(name)
        order.append((titled if titled is not None else columns.column(name)[0]).asc().nulls_last())
    return query, order + [key.asc().nulls_last() for key in keys]


def read_watermark(conn: sa.Connection, template: ExportTemplate) -> Any:
    table = schemas.BUILTIN.table("export_watermark").table
    row = conn.execute(sa.select(table.c.value).where(table.c.template == template.name)).first()
    if row is None or template.source.differential is None:
        return None
    f = template.table.field(template.source.differential.column)
    return f.python_value(row.value) if f.kind != "integer" else int(row.value)


def write_watermark(conn: sa.Connection, template: ExportTemplate, value: Any, run_id: str, now: Any) -> None:
    """Advance the watermark (same transaction as the caller's)."""
    table = schemas.BUILTIN.table("export_watermark").table
    assert template.source.differential is not None
    values = {
        "column_name": template.source.differential.column,
        "value": value.isoformat() if hasattr(value, "isoformat") else str(value),
        "run_id": run_id,
        "updated_at": now,
    }
    updated = conn.execute(sa.update(table).where(table.c.template == template.name).values(**values))
    if updated.rowcount == 0:
        conn.execute(sa.insert(table).values(template=template.name, **values))
