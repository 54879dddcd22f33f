"""Run an export: stream the query in chunks, format, write, then advance the watermark."""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
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
    """The query's rows in chunks, so memory holds one chunk whatever the table size."""
    if conn.dialect.name == "postgresql":
        yield from _copy_frames(conn, query, template)
        return
    spec = template.table
    result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(query)
    names = list(result.keys())
    # SQLite gives naive UTC timestamps: read them naive, then say they are UTC.
    schema = {n: pl.Datetime("us") if spec.field(n).kind == "timestamp" else spec.field(n).polars_dtype for n in names}
    for rows in result.partitions():
        frame = pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")
        yield frame.with_columns(pl.col(pl.Datetime).dt.replace_time_zone("UTC"))


def _copy_blocks(copy: Any, block_bytes: int = 8 << 20) -> Iterator[bytes]:
    """PostgreSQL sends one COPY message per row: gather them into blocks of whole rows.
    Measured on 1M rows: `read()` in a loop with a copy of each row costs ~0.5 s over a
    bare drain; iterating the Copy object, or keeping its memoryviews, costs 3 to 6 s."""
    parts: list[bytes] = []
    size = 0
    while row := copy.read():
        parts.append(bytes(row))
        size += len(row)
        if size >= block_bytes:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)


def _copy_frames(conn: sa.Connection, query: sa.Select, template: ExportTemplate) -> Iterator[pl.DataFrame]:
    """PostgreSQL: COPY (SELECT ...) TO STDOUT, parsed by pyarrow block by block in a
    producer thread, so the database, the parsing and the caller's writing overlap. Filter
    values travel as parameters composed by psycopg; timestamps come as UTC text."""
    spec = template.table
    names = [c.name for c in query.selected_columns]
    columns = [
        sa.func.to_char(sa.func.timezone("UTC", c), 'YYYY-MM-DD"T"HH24:MI:SS.US').label(c.name)
        if spec.field(c.name).kind == "timestamp" else c
        for c in query.selected_columns
    ]
    compiled = query.with_only_columns(*columns, maintain_column_froms=True).compile(
        dialect=conn.dialect, compile_kwargs={"render_postcompile": True}  # IN lists: one parameter per value
    )
    arrow_types = {"string": pa.string(), "integer": pa.int64(), "date": pa.date32(), "boolean": pa.bool_(), "timestamp": pa.string()}
    read_options = pacsv.ReadOptions(column_names=names, block_size=16 << 20)
    parse_options = pacsv.ParseOptions(newlines_in_values=True)
    convert_options = pacsv.ConvertOptions(
        column_types={n: arrow_types[spec.field(n).kind] for n in names},
        true_values=["t"], false_values=["f"],
        strings_can_be_null=True, quoted_strings_can_be_null=False,
    )

    def produce(out: queue.Queue) -> None:
        try:
            cursor = conn.connection.driver_connection.cursor()
            with cursor.copy(f"COPY ({compiled.string}) TO STDOUT (FORMAT csv)", compiled.params) as copy:
                for block in _copy_blocks(copy):
                    out.put(pacsv.read_csv(pa.BufferReader(block), read_options, parse_options, convert_options))
            out.put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            out.put(exc)

    batches: queue.Queue = queue.Queue(maxsize=2)  # bounded: memory stays flat
    producer = threading.Thread(target=produce, args=(batches,), name="export-copy", daemon=True)
    producer.start()
    try:
        while (item := batches.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            frame = pl.from_arrow(item)
            assert isinstance(frame, pl.DataFrame)
            yield frame.with_columns(
                pl.col(n).str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S%.f").dt.replace_time_zone("UTC")
                for n in names
                if spec.field(n).kind == "timestamp"
            )
    finally:
        while producer.is_alive():  # the consumer stopped early: let the producer finish
            try:
                batches.get(timeout=0.1)
            except queue.Empty:
                pass
        producer.join()


def run_export(
    template: ExportTemplate,
    engine: sa.Engine,
    path: Path,
    run_id: str,
    now: dt.datetime | None = None,
    window: Any = None,
) -> ExportOutcome:
    """Write the export's file. With a partition's time `window`, the rows that day
    changed, and the differential watermark is neither read nor moved: a backfilled day
    does not disturb the nightly differential."""
    now = now or dt.datetime.now(dt.UTC)
    differential = template.source.differential.column if template.source.differential and window is None else None
    newest = None
    with engine.connect() as conn:
        since = read_watermark(conn, template) if differential else None
        with ExportWriter(template, path, run_id) as writer:
            for frame in _frames(conn, build_select(template, since, window=window), template):
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
