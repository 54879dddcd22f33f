"""Where an input format plugs in: the reader that turns its file into the read step's
batches, and the writer of its rejects file (the rejected records in the input's own
shape, so that the fixed file re-imports with the same template)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from campaign_pipelines.importing.documents import DocumentReader, JsonArrayReader, ParquetReader, parquet_texts
from campaign_pipelines.importing.read import SourceReader
from campaign_pipelines.importing.rejects import RejectWriter
from campaign_pipelines.importing.spreadsheets import ExcelReader, write_rejected_rows
from campaign_pipelines.importing.xml_records import XmlReader
from campaign_pipelines.templates import ImportTemplate, Source

READERS: dict[str, type[SourceReader] | type[DocumentReader]] = {
    "delimited": SourceReader,
    "fixed_width": SourceReader,
    "jsonl": SourceReader,  # one record a line: the text reader, each line parsed as JSON
    "json": JsonArrayReader,
    "parquet": ParquetReader,
    "xlsx": ExcelReader,
    "xml": XmlReader,
}


def reader_for(template: ImportTemplate, path: Path, rejects: RejectWriter) -> SourceReader | DocumentReader:
    return READERS[template.source.format](template, path, rejects)


def with_texts(source: Source, file: Path, input_schema: pa.Schema | None, rejects: pa.Table) -> pa.Table:
    """The rejects with every record's text: a Parquet read leaves it for the end, when
    the few rejected records are read again (documents.parquet_texts)."""
    if source.format != "parquet" or input_schema is None or not rejects["text"].null_count:
        return rejects
    lines, texts = rejects["line"].to_pylist(), rejects["text"].to_pylist()
    found = parquet_texts(file, input_schema.names, [n for n, t in zip(lines, texts) if t is None])
    filled = pa.array([t if t is not None else found.get(n) for n, t in zip(lines, texts)], pa.string())
    return rejects.set_column(rejects.schema.get_field_index("text"), "text", filled)


def write_rejected_records(
    source: Source, texts: list[str | None], prefix_lines: list[str], input_schema: pa.Schema | None, path: Path
) -> None:
    """The rejected records (their `__text`, in input order) as a file of the input's format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if source.format == "parquet":
        assert input_schema is not None, "a Parquet read records its columns' types"
        rows = [json.loads(t) for t in texts if t is not None]
        table = pa.Table.from_pylist([_typed_row(r, input_schema) for r in rows], schema=input_schema)
        pq.write_table(table, path)
        return
    if source.format == "xlsx":
        write_rejected_rows(source, [*prefix_lines, *(t for t in texts if t is not None)], path)
        return
    if source.format == "xml":
        declaration, opening, closing = prefix_lines
        records = "".join(f"{t}\n" for t in texts if t is not None)
        path.write_text(f"{declaration}\n{opening}\n{records}{closing}\n", encoding="utf-8")
        return
    if source.format == "json":
        records = ",\n".join(t for t in texts if t is not None)
        document = f"[\n{records}\n]" if records else "[]"
        for key in reversed((source.records or "").split(".") if source.records else []):
            document = f"{{{json.dumps(key)}: {document}}}"
        path.write_text(document + "\n", encoding="utf-8")
        return
    # A line format: the skipped lines and header, then the rejected lines, verbatim.
    with open(path, "w", encoding=source.encoding, newline="", errors="replace") as out:
        for line in [*prefix_lines, *texts]:
            out.write((line or "") + "\n")


def _typed_row(row: list[Any], schema: pa.Schema) -> dict[str, Any]:
    return {f.name: _typed(value, f.type) for f, value in zip(schema, row, strict=True)}


def _typed(value: Any, kind: pa.DataType) -> Any:
    """A value of a record's JSON text back as its Parquet type (JSON holds decimals,
    dates and timestamps as text)."""
    if value is None:
        return None
    if pa.types.is_dictionary(kind):
        return _typed(value, kind.value_type)
    if pa.types.is_decimal(kind):
        return Decimal(str(value))
    if pa.types.is_date(kind):
        return dt.date.fromisoformat(value)
    if pa.types.is_timestamp(kind):
        return dt.datetime.fromisoformat(value)
    if pa.types.is_struct(kind):
        return {kind.field(i).name: _typed(value.get(kind.field(i).name), kind.field(i).type) for i in range(kind.num_fields)}
    return value
