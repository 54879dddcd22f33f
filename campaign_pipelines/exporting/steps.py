"""Run an export: stream the query in chunks, format, write, then advance the watermark."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

from campaign_pipelines.exporting.query import build_select, read_watermark, write_watermark
from campaign_pipelines.exporting.write import ExportWriter, format_rows
from campaign_pipelines.templates import ExportTemplate

CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class ExportOutcome:
    template: ExportTemplate
    path: Path
    rows_exported: int
    size: int
    sha256: str
    since: Any
    watermark: Any


def output_path(template: ExportTemplate, run_id: str, when: dt.datetime) -> str:
    return template.destination.path.format(date=when, run_id=run_id)


def _frames(conn: sa.Connection, query: sa.Select, template: ExportTemplate) -> Iterator[pl.DataFrame]:
    """The query's rows in chunks: a server-side cursor on PostgreSQL, so memory holds one
    chunk whatever the table size."""
    spec = template.table
    result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(query)
    names = list(result.keys())
    schema = {n: spec.field(n).polars_dtype for n in names}
    for rows in result.partitions():
        frame = pl.DataFrame([tuple(r) for r in rows], schema={n: _naive(t) for n, t in schema.items()}, orient="row")
        # SQLite returns naive UTC timestamps, PostgreSQL aware ones: one type for both.
        yield frame.with_columns(pl.col(pl.Datetime).dt.replace_time_zone("UTC"))


def _naive(dtype: Any) -> Any:
    return pl.Datetime("us") if isinstance(dtype, pl.Datetime) else dtype


def run_export(
    template: ExportTemplate, engine: sa.Engine, path: Path, run_id: str, now: dt.datetime | None = None
) -> ExportOutcome:
    now = now or dt.datetime.now(dt.UTC)
    differential = template.source.differential.column if template.source.differential else None
    newest = None
    with engine.connect() as conn:
        since = read_watermark(conn, template) if differential else None
        with ExportWriter(template, path, run_id) as writer:
            for frame in _frames(conn, build_select(template, since), template):
                if differential and frame.height:
                    chunk_max = frame[differential].max()
                    newest = chunk_max if newest is None or chunk_max > newest else newest
                writer.write(format_rows(frame, template))
    # The file is complete and in place: only now may the watermark move.
    if differential and newest is not None:
        with engine.begin() as conn:
            write_watermark(conn, template, newest, run_id, now)
    return ExportOutcome(template, path, writer.rows, writer.size, writer.sha256, since, newest if newest is not None else since)


def preview_export(template: ExportTemplate, engine: sa.Engine, rows: int) -> pl.DataFrame:
    """The first rows the export would write (watermark included), writing nothing."""
    with engine.connect() as conn:
        since = read_watermark(conn, template) if template.source.differential else None
        frames = list(_frames(conn, build_select(template, since, limit=rows), template))
    if not frames:
        return pl.DataFrame({c.title: pl.Series([], dtype=pl.Utf8) for c in template.source.columns})
    return format_rows(pl.concat(frames), template)
