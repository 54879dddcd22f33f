"""Format exported rows and write them to a file that appears only when complete.

Delimited and fixed-width files are text: every value formatted, as XML's are
(`xml_rows.py`). JSON Lines, JSON arrays
and Parquet keep each value's type (numbers, yes/no, dates, timestamps; decimals exact).
The file is written under a temporary name in the destination folder and renamed at
the end; on any error the temporary file is removed, so a reader never sees half a file
and a failed run leaves none.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.exporting import xml_rows
from campaign_pipelines.exporting.columns import ExportColumns, Selected
from campaign_pipelines.templates import Destination, ExportColumn, ExportTemplate, NumberFormat
from campaign_pipelines.templates.exports import TEXT_FORMATS
from campaign_pipelines.text import cased

FORMULA_START = r"^[=+\-@\t\r]"
DEFAULT_FORMATS = {"date": "%Y-%m-%d", "timestamp": "%Y-%m-%d %H:%M:%S"}


def _grouped(number: int | None, fmt: NumberFormat) -> str | None:
    if number is None:
        return None
    return f"{number:,}".replace(",", fmt.thousands or "")


def column_text(column: ExportColumn, template: ExportTemplate, label: str | None, selected: Selected | None) -> pl.Expr:
    """One output column as text, named by its title: `label` is the query's column
    holding its value (None for a constant), of the `selected` kind."""
    if label is None or selected is None:
        text = pl.lit(column.constant, dtype=pl.Utf8)
        is_text = True
    else:
        kind = selected.kind
        value = pl.col(label)
        is_text = kind == "string"
        if kind in DEFAULT_FORMATS:
            fmt = column.format if isinstance(column.format, str) else DEFAULT_FORMATS[kind]
            if column.timezone:  # the query's timestamps are UTC instants
                value = value.dt.convert_time_zone(column.timezone)
            text = value.dt.strftime(fmt)
        elif kind == "integer" and isinstance(column.format, NumberFormat) and column.format.thousands:
            number_format = column.format
            text = value.map_elements(lambda n: _grouped(n, number_format), return_dtype=pl.Utf8)
        elif kind == "boolean":
            text = pl.when(value).then(pl.lit("true")).when(value.not_()).then(pl.lit("false"))
        else:
            # A decimal keeps its scale's digits, 19.90: polars' Decimal (SQLite) or
            # PostgreSQL's own text (COPY).
            text = value.cast(pl.Utf8)
    text = cased(text, column.case)
    if is_text and template.destination.neutralize_formulas and template.destination.format in TEXT_FORMATS:
        # A spreadsheet would run these as formulas; a leading ' makes them text.
        text = pl.when(text.str.contains(FORMULA_START)).then(pl.lit("'") + text).otherwise(text)
    return text.alias(column.title)


def column_value(column: ExportColumn, template: ExportTemplate, label: str | None, selected: Selected | None) -> pl.Expr:
    """One output column in its own type, for JSON and Parquet: a number, yes/no, date or
    timestamp stays one (a decimal exact, a timestamp in its column's timezone); text, a
    constant, or a value given a `format` is text, as `column_text` writes it."""
    if label is None or selected is None or selected.kind == "string" or column.format is not None:
        return column_text(column, template, label, selected)
    value = pl.col(label)
    if selected.kind == "decimal":  # PostgreSQL's COPY gives its exact text: 19.90
        value = value.cast(selected.polars_dtype)
    elif selected.kind == "timestamp" and column.timezone:
        value = value.dt.convert_time_zone(column.timezone)
    return value.alias(column.title)


def format_rows(frame: pl.DataFrame, template: ExportTemplate, columns: ExportColumns) -> pl.DataFrame:
    selected = columns.by_label()
    value = column_text if template.destination.format in (*TEXT_FORMATS, "xml") else column_value
    return frame.select([
        value(c, template, label, selected.get(label) if label else None)
        for c, label in zip(template.source.columns, columns.outputs, strict=True)
    ])


def no_rows(template: ExportTemplate, columns: ExportColumns) -> pl.DataFrame:
    """An export of no rows, formatted: its columns' titles and types (a Parquet schema)."""
    schema = {s.label: pl.Datetime("us", "UTC") if s.kind == "timestamp" else s.polars_dtype for s in columns.selected.values()}
    return format_rows(pl.DataFrame(schema=schema), template, columns)


class _HashingFile(io.RawIOBase):
    """Counts and hashes what reaches the disk (after compression)."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:  # asked by pyarrow's Parquet writer
        return self.size

    def write(self, data: Any) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.raw.write(data)


class ExportWriter:
    def __init__(self, template: ExportTemplate, columns: ExportColumns, path: Path, run_id: str):
        self.template = template
        self.columns = columns
        self.destination: Destination = template.destination
        self.path = path
        self.temporary = path.parent / f".{path.name}.{run_id}.part"
        self.rows = 0
        self._header_written = False
        self._parquet: pq.ParquetWriter | None = None

    def __enter__(self) -> "ExportWriter":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._raw = open(self.temporary, "wb")
        except OSError as exc:
            raise CampaignError(f"cannot write to {self.path.parent} ({exc.strerror}).") from None
        self._hashing = _HashingFile(self._raw)
        self._out: Any = self._hashing
        if self.destination.compression == "gzip":
            self._out = gzip.GzipFile(fileobj=self._hashing, mode="wb", mtime=0)
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        try:
            if kind is None:
                if not self._header_written:
                    self.write(no_rows(self.template, self.columns))  # a header (a schema), even for no rows
                if self.destination.format == "json":
                    self._out.write(b"\n]\n" if self.rows else b"]\n")
                if self.destination.format == "xml":
                    self._out.write(xml_rows.closing(self.destination))
                if self._parquet is not None:
                    self._parquet.close()
                if self._out is not self._hashing:
                    self._out.close()
                self._raw.flush()
                os.fsync(self._raw.fileno())
                self._raw.close()
                os.replace(self.temporary, self.path)
        finally:
            if not self._raw.closed:
                self._raw.close()
            if kind is not None or self.temporary.exists():
                self.temporary.unlink(missing_ok=True)

    @property
    def size(self) -> int:
        return self._hashing.size

    @property
    def sha256(self) -> str:
        return self._hashing.sha256.hexdigest()

    def write(self, rows: pl.DataFrame) -> None:
        """Append formatted rows (`format_rows`)."""
        header = self.destination.header and not self._header_written
        form = self.destination.format
        if form == "parquet":
            self._write_parquet(rows)
        elif form in ("jsonl", "json"):
            self._out.write(self._json(rows))
        elif form == "xml":
            self._out.write((b"" if self._header_written else xml_rows.opening(self.destination)) + xml_rows.records(rows, self.template, self.rows))
        elif form == "fixed_width":
            self._out.write(self._encode(self._fixed_width(rows, header), rows))
        else:
            self._out.write(self._encode(self._delimited(rows, header), rows))
        self._header_written = True
        self.rows += rows.height

    def _json(self, rows: pl.DataFrame) -> bytes:
        """JSON Lines: an object per row. A JSON array: the same objects between [ and ],
        one per line. Decimals are strings ("19.90"), exact whatever the reader's numbers."""
        lines = rows.write_ndjson() if rows.height else ""
        if self.destination.format == "jsonl":
            return lines.encode("utf-8")
        objects = ",\n".join(lines.split("\n")[:-1])  # polars ends each object with \n, and escapes those inside
        opening = "" if self._header_written else "[\n"
        separator = ",\n" if self.rows and objects else ""
        return (opening + separator + objects).encode("utf-8")

    def _write_parquet(self, rows: pl.DataFrame) -> None:
        """A row group per chunk; the schema is the first chunk's (every chunk has the same)."""
        table = rows.to_arrow()
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(pa.PythonFile(self._out, mode="w"), table.schema, compression="zstd")
        self._parquet.write_table(table)

    def _delimited(self, rows: pl.DataFrame, header: bool) -> bytes:
        d = self.destination
        if d.quote is None:
            self._refuse(rows, "contains the delimiter or a line break, and destination.quote is null", lambda s: s.str.contains(f"[{_class_escape(d.delimiter)}\n\r]"))
        buffer = io.BytesIO()
        rows.write_csv(
            buffer,
            include_header=header,
            separator=d.delimiter,
            quote_char=d.quote or '"',
            quote_style="necessary" if d.quote else "never",
            null_value="",
            line_terminator="\n",
        )
        return buffer.getvalue()

    def _fixed_width(self, rows: pl.DataFrame, header: bool) -> bytes:
        columns = self.template.source.columns
        self._refuse(rows, "contains a line break, which a fixed-width file cannot hold", lambda s: s.str.contains("[\n\r]"))
        for c in columns:
            too_long = rows.with_row_index("row").filter(pl.col(c.title).str.len_chars() > c.width)
            if too_long.height:
                row = too_long.row(0, named=True)
                raise CampaignError(
                    f"row {self.rows + row['row'] + 1}, column {c.title!r}: {row[c.title]!r} is longer than its width ({c.width})."
                )
        lines = rows.select(
            pl.concat_str([pl.col(c.title).fill_null("").str.pad_end(c.width or 0) for c in columns]).alias("line")
        )["line"].to_list()
        if header:
            lines.insert(0, "".join(c.title[: c.width].ljust(c.width or 0) for c in columns))
        return "".join(line + "\n" for line in lines).encode("utf-8")

    def _refuse(self, rows: pl.DataFrame, why: str, test: Any) -> None:
        for title in rows.columns:
            hit = rows.with_row_index("row").filter(test(pl.col(title)).fill_null(False))
            if hit.height:
                raise CampaignError(f"row {self.rows + hit['row'][0] + 1}, column {title!r}: the value {why}.")

    def _encode(self, text: bytes, rows: pl.DataFrame) -> bytes:
        """polars writes UTF-8; other encodings are transcoded (and checked)."""
        if self.destination.encoding == "utf-8":
            return text
        try:
            return text.decode("utf-8").encode(self.destination.encoding)
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            for index, row in enumerate(rows.iter_rows(named=True)):
                for title, value in row.items():
                    if value is not None and bad in value:
                        raise CampaignError(
                            f"row {self.rows + index + 1}, column {title!r}: {bad!r} cannot be written in "
                            f"{self.destination.encoding}; choose another destination.encoding."
                        ) from None
            raise CampaignError(f"the header cannot be written in {self.destination.encoding} ({bad!r}).") from None


def _class_escape(char: str) -> str:
    return "\\" + char if char in "\\]^-[" else char
