"""Compile an export template to one SQLAlchemy SELECT: declarative filters become bound
parameters (never SQL text), empty values sort last on every database."""

from __future__ import annotations

import datetime as dt
import operator
from typing import Any

import sqlalchemy as sa

import schemas
from campaign_pipelines.templates import ExportTemplate, filter_conditions, filter_value

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


def exported_columns(template: ExportTemplate) -> list[str]:
    """Table columns the file needs, each once, in template order."""
    return list(dict.fromkeys(c.column for c in template.source.columns if c.column is not None))


def day_window(template: ExportTemplate, window: Any) -> sa.ColumnElement[bool]:
    """Rows whose partition column falls in [window.start, window.end): a partition's day,
    in the partition's timezone. Timestamps are stored in UTC; dates compare as dates."""
    name = template.partition_column
    assert name is not None
    column = template.table.table.c[name]
    if template.table.field(name).kind == "date":
        return sa.and_(column >= window.start.date(), column < window.end.date())
    return sa.and_(column >= window.start.astimezone(dt.UTC), column < window.end.astimezone(dt.UTC))


def build_select(template: ExportTemplate, since: Any = None, limit: int | None = None, window: Any = None) -> sa.Select:
    spec = template.table
    table = spec.table
    source = template.source
    names = exported_columns(template)
    differential = source.differential.column if source.differential else None
    selected = [table.c[n] for n in names]
    if differential and differential not in names:
        selected.append(table.c[differential])  # to advance the watermark
    query = sa.select(*selected)
    for name, conditions in source.filter.items():
        for op, raw in filter_conditions(conditions):
            query = query.where(condition(table.c[name], op, filter_value(spec.field(name), op, raw)))
    if differential and since is not None:
        query = query.where(table.c[differential] > since)
    if window is not None:
        query = query.where(day_window(template, window))
    if source.distinct:
        query = query.distinct()
    order = [table.c[n].asc().nulls_last() for n in source.order_by]
    if not source.distinct and spec.primary_key:
        # A stable order for equal sort keys; DISTINCT may only order by selected columns.
        order += [table.c[k].asc() for k in spec.primary_key if k not in source.order_by]
    query = query.order_by(*order)
    limit = limit if limit is not None else source.limit
    return query.limit(limit) if limit is not None else query


def read_watermark(conn: sa.Connection, template: ExportTemplate) -> Any:
    table = schemas.table("export_watermark").table
    row = conn.execute(sa.select(table.c.value).where(table.c.template == template.name)).first()
    if row is None or template.source.differential is None:
        return None
    f = template.table.field(template.source.differential.column)
    return f.python_value(row.value) if f.kind != "integer" else int(row.value)


def write_watermark(conn: sa.Connection, template: ExportTemplate, value: Any, run_id: str, now: Any) -> None:
    """Advance the watermark (same transaction as the caller's)."""
    table = schemas.table("export_watermark").table
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
