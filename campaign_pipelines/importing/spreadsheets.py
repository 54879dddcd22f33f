"""Read a sheet of an Excel workbook (.xlsx) into the read step's batches, with
python-calamine (Rust's calamine): `__line` is the row number Excel shows, `__text` the
row's cells as one line of JSON (an array, from column A), then one column per mapped title (or 1-based position).

Cells keep their type where a whole column agrees: a column of date cells is a date
column, of date-and-time cells a timestamp column, of numbers a number column, of
TRUE/FALSE a boolean column, each converted as a Parquet column is (typed.py), whatever
the template's `format`. A column that mixes kinds is text: a text cell as written, a
number as its shortest exact text (75001, 19.9), a date as 2024-03-05, a date and time as
2024-03-05 10:15:30 — read with the column's `format` like any text. Rows with no mapped
value are blank, not records. calamine holds a sheet in memory (at most Excel's
1,048,576 rows); batches are built from it one at a time.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import python_calamine

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.importing import typed
from campaign_pipelines.importing.documents import BATCH_RECORDS, DocumentReader
from campaign_pipelines.importing.read import LINE, TEXT
from schemas.messages import did_you_mean

# An encrypted workbook is an OLE compound file, not a zip.
OLE_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")


def cell_json(value: Any) -> Any:
    """A cell as a JSON value (its row's `__text`)."""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time, dt.timedelta)):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def cell_text(value: Any) -> str | None:
    if value == "" or value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    value = cell_json(value)
    return value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dt.datetime):
        return "timestamp"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, (int, float)):
        return "integer" if float(value).is_integer() else "float"
    return "text"


def _arrow_type(kinds: set[str]) -> pa.DataType:
    """The type of a column whose cells are of `kinds`: one kind (or whole and fractional
    numbers, or dates and timestamps) keeps its type; any other mix is text."""
    if kinds <= {"integer"}:
        return pa.int64() if kinds else pa.string()
    if kinds <= {"integer", "float"}:
        return pa.float64()
    if kinds == {"date"}:
        return pa.date32()
    if kinds <= {"date", "timestamp"}:
        return pa.timestamp("us")
    if kinds == {"boolean"}:
        return pa.bool_()
    return pa.string()


def _typed(value: Any, kind: pa.DataType) -> Any:
    if value == "":
        return None
    if pa.types.is_string(kind):
        return cell_text(value)
    if pa.types.is_int64(kind):
        return int(value)
    if pa.types.is_timestamp(kind) and not isinstance(value, dt.datetime):
        return dt.datetime.combine(value, dt.time())
    return value


def open_sheet(path: Path, sheet: str | int | None) -> Any:
    """A workbook's sheet by name or 1-based position (none: the first), or a sentence."""
    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
    except FileNotFoundError:
        raise CampaignError(f"file {path} does not exist.") from None
    except python_calamine.CalamineError as exc:
        with open(path, "rb") as stream:
            if stream.read(8) == OLE_MAGIC:
                raise CampaignError(
                    f"file {path} is a password-protected (encrypted) workbook or an old .xls file, not an "
                    ".xlsx workbook: save it unprotected as .xlsx."
                ) from None
        raise CampaignError(f"file {path} is not an .xlsx workbook ({' '.join(str(exc).split())[:160]}).") from None
    names = workbook.sheet_names
    if sheet is None:
        sheet = 1
    if isinstance(sheet, int):
        if sheet > len(names):
            raise CampaignError(f"file {path} has {len(names)} sheet(s), not a sheet {sheet} (source.sheet): {', '.join(names)}.")
        return workbook.get_sheet_by_index(sheet - 1)
    if sheet not in names:
        raise CampaignError(f"file {path} has no sheet {sheet!r} (source.sheet){did_you_mean(sheet, names)}; its sheets: {', '.join(names)}.")
    return workbook.get_sheet_by_name(sheet)


class ExcelReader(DocumentReader):
    """The rows of one sheet: by name or 1-based position (`source.sheet`), the first by default."""

    def _batches(self) -> Iterator[tuple[pa.RecordBatch, pa.Array]]:
        sheet = open_sheet(self.path, self.source.sheet)
        rows = sheet.to_python(skip_empty_area=False) if sheet.start is not None else []  # from A1
        header, body_at = self.source.skip_lines, self.source.skip_lines + self.source.header
        # The rows above the data, as the rejects workbook repeats them.
        self.layout.prefix_lines = [json.dumps([cell_json(c) for c in r], ensure_ascii=False) for r in rows[:body_at]]
        self.layout.prefix_lines += ["[]"] * (body_at - len(self.layout.prefix_lines))
        titles = self._titles(rows, header, max((len(r) for r in rows), default=0))
        picks = [titles.index(c) for c in self.layout.columns]
        kinds = [{_kind(r[p]) for r in rows[body_at:] if p < len(r) and r[p] != ""} for p in picks]
        types = [_arrow_type(k) for k in kinds]
        for i, m in enumerate(self.template.columns):
            if not m.is_constant:
                why = typed.misfit(str(m.source), types[self.layout.columns.index(str(m.source))], self.template.value_field(m.target))
                if why:
                    raise CampaignError(f"file {self.path}: {why} (columns[{i}]).")
        self.layout.schema = pa.schema([(c, t) for c, t in zip(self.layout.columns, types)])
        ordinal = 0
        for start in range(body_at, len(rows), BATCH_RECORDS):
            numbers, texts, ordinals, values = [], [], [], [[] for _ in picks]
            for i, row in enumerate(rows[start : start + BATCH_RECORDS], start=start):
                cells = list(row)
                picked = [cells[p] if p < len(cells) else "" for p in picks]
                if all(c == "" for c in picked):
                    self.blank_lines += 1
                    continue
                ordinal += 1
                numbers.append(i + 1)  # the row Excel shows
                ordinals.append(ordinal)
                texts.append(json.dumps([cell_json(c) for c in cells], ensure_ascii=False))
                for column, cell, kind in zip(values, picked, types):
                    column.append(_typed(cell, kind))
                if ordinal == self.source.limit:
                    break
            self.consumed = ordinal
            self.bytes_seen = self.path.stat().st_size * (start + BATCH_RECORDS) // max(len(rows), 1)
            arrays = [pa.array(v, t) for v, t in zip(values, types)]
            yield pa.RecordBatch.from_arrays(
                [pa.array(numbers, pa.int64()), pa.array(texts, pa.string()), *arrays], names=[LINE, TEXT, *self.layout.columns]
            ), pa.array(ordinals, pa.int64())
            if ordinal == self.source.limit:
                return

    def _titles(self, rows: list[list[Any]], header: int, width: int) -> list[str]:
        """Each column's name: its header title, or its 1-based position; a mapped one missing is refused."""
        if not self.source.header:
            titles = [str(i + 1) for i in range(width)]
        else:
            if header >= len(rows) or all(c == "" for c in rows[header]):
                raise CampaignError(f"file {self.path}: the header row (row {header + 1}) of the sheet is empty.")
            titles = [str(cell_text(c) or "").strip() for c in rows[header]]
        for i, m in enumerate(self.template.columns):
            if not m.is_constant and str(m.source) not in titles:
                shown = [t for t in titles if t]
                raise CampaignError(
                    f"file {self.path} has no column {str(m.source)!r} (columns[{i}].source){did_you_mean(str(m.source), shown)}; "
                    f"its columns are: {', '.join(shown)}."
                )
        return titles


ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ISO_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?$")


def _cell(value: Any) -> Any:
    """A cell of a row's JSON back as a cell: dates as dates, empty as empty."""
    if value == "":
        return None
    if isinstance(value, str) and ISO_DATE.match(value):
        return dt.date.fromisoformat(value)
    if isinstance(value, str) and ISO_TIMESTAMP.match(value):
        return dt.datetime.fromisoformat(value)
    return value


def write_rejected_rows(source: Any, rows: list[str], path: Any) -> None:
    """A workbook of the rows above the data (skipped rows, header) and the rejected rows,
    on the sheet the template reads (its name, or its position after empty sheets)."""
    import openpyxl  # 70 ms to import: only a run with rejects of a workbook pays it

    workbook = openpyxl.Workbook(write_only=True)
    if isinstance(source.sheet, int):
        for n in range(1, source.sheet):
            workbook.create_sheet(f"Sheet{n}")
    sheet = workbook.create_sheet(source.sheet if isinstance(source.sheet, str) else f"Sheet{source.sheet or 1}")
    for row in rows:
        sheet.append([_cell(c) for c in json.loads(row)])
    workbook.save(path)
