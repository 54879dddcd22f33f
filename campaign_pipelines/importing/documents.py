"""Read a whole-document file — a JSON array, a Parquet file — into the same Arrow batches
as a text file: `__line` (here the record's 1-based number), `__text` (the record as one
line of compact JSON: what a reject shows; a Parquet row's values as an array, in its
columns' order), then one column per mapped key path.

Both stream: ijson's C parser yields one record at a time, pyarrow reads a Parquet file
batch by batch and only the columns the template maps. A document that cannot be read
(malformed JSON, a corrupted Parquet file) fails the run with one sentence before
anything is written; a record whose values fail is rejected with its number, like a line.
"""

from __future__ import annotations

import bisect

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import ijson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.importing import typed
from campaign_pipelines.importing.json_records import not_an_object, record_columns, record_text
from campaign_pipelines.importing.lines import open_binary
from campaign_pipelines.importing.read import LINE, TEXT, FileLayout
from campaign_pipelines.importing.rejects import RejectWriter
from campaign_pipelines.templates import ImportTemplate
from schemas.messages import did_you_mean

BATCH_RECORDS = 65_536


class _Counted:
    """A binary stream that counts the bytes read through it (progress)."""

    def __init__(self, stream: BinaryIO):
        self.stream, self.bytes_read = stream, 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.bytes_read += len(data)
        return data


class DocumentReader:
    """What `SourceReader` offers the read step, for records numbered 1, 2, 3…"""

    def __init__(self, template: ImportTemplate, path, rejects: RejectWriter):
        self.template, self.source, self.path, self.rejects = template, template.source, path, rejects
        self.layout = FileLayout(columns=list(dict.fromkeys(str(m.source) for m in template.columns if not m.is_constant)))
        self.rows_read = 0
        self.bytes_seen = 0
        self.blank_lines = 0
        self.watch_line: int | None = None
        self.consumed = 0

    def batches(self) -> Iterator[pa.RecordBatch]:
        for batch, ordinals in self._batches():
            batch = self._counted(batch, ordinals)
            if batch.num_rows:
                yield batch
            if self.source.limit is not None and self.rows_read >= self.source.limit:
                break
        if self.rows_read == 0 and self.template.errors.fail_if_empty:
            raise CampaignError(f"file {self.path} has no records (errors.fail_if_empty).")

    def _batches(self) -> Iterator[tuple[pa.RecordBatch, pa.Array]]:
        """(batch, each row's 1-based record ordinal), `self.consumed` kept at the ordinal of
        the last record read (a record the reader rejected is one too)."""
        raise NotImplementedError

    def _counted(self, batch: pa.RecordBatch, ordinals: pa.Array) -> pa.RecordBatch:
        """Counts the records read, up to `limit`; notes the N-th record's number (watch)."""
        through, limit = self.consumed, self.source.limit
        if limit is not None and through > limit:
            batch, ordinals, through = batch.filter(pc.less_equal(ordinals, limit)), ordinals.filter(pc.less_equal(ordinals, limit)), limit
        watch = self.template.errors.stop_if_first_lines_rejected
        if watch is not None and self.watch_line is None and self.rows_read < watch <= through:
            at = batch[LINE].filter(pc.equal(ordinals, watch))
            self.watch_line = at[0].as_py() if len(at) else watch  # a rejected record: its number is its ordinal
        self.rows_read = through
        return batch

    def _batch(self, numbers: list[int], texts: list[str], columns: list[pa.Array]) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays(
            [pa.array(numbers, pa.int64()), pa.array(texts, pa.string()), *columns],
            names=[LINE, TEXT, *self.layout.columns],
        )


class JsonArrayReader(DocumentReader):
    """The objects of an array: the document itself, or the array at `source.records`."""

    def _batches(self) -> Iterator[tuple[pa.RecordBatch, pa.Array]]:
        records = self.source.records
        prefix = f"{records}.item" if records else "item"
        number = 0
        with open_binary(self.path, self.source) as stream:
            counted = _Counted(stream)
            chunk: list[tuple[int, Any]] = []
            limit = self.source.limit
            try:
                for record in ijson.items(counted, prefix, use_float=False):
                    number += 1
                    chunk.append((number, record))
                    if len(chunk) == BATCH_RECORDS or number == limit:
                        self.bytes_seen = counted.bytes_read
                        yield self._records(chunk)
                        chunk = []
                    if number == limit:
                        break
            except ijson.JSONError as exc:
                raise CampaignError(
                    f"file {self.path} is not valid JSON after its record {number} "
                    f"({' '.join(str(exc).split())[:160]}); nothing was loaded."
                ) from None
            self.bytes_seen = counted.bytes_read
            if chunk:
                yield self._records(chunk)
        if number == 0:
            self._check_records_path()

    def _records(self, chunk: list[tuple[int, Any]]) -> tuple[pa.RecordBatch, pa.Array]:
        objects: list[tuple[int, dict]] = []
        for number, record in chunk:
            try:
                text = record_text(record)
            except RecursionError:
                self.rejects.add(pa.array([number], pa.int64()), pa.array([None], pa.string()), None,
                                 "the record nests JSON values too deeply")
                continue
            if isinstance(record, dict):
                objects.append((number, record, text))  # type: ignore[arg-type]
            else:
                self.rejects.add(pa.array([number], pa.int64()), pa.array([text], pa.string()), None, not_an_object(record))
        columns = record_columns((o[1] for o in objects), self.layout.columns)
        self.consumed = chunk[-1][0]
        batch = self._batch([o[0] for o in objects], [o[2] for o in objects], columns)  # type: ignore[misc]
        return batch, batch[LINE]

    def _check_records_path(self) -> None:
        """No record: an empty array is an empty delta, a missing one a wrong template,
        said with the keys found where the path breaks off."""
        records = self.source.records or ""
        steps = records.split(".") if records else []
        chain = [".".join(steps[:i]) for i in range(len(steps) + 1)]  # "", "data", "data.items"
        keys: dict[str, list[str]] = {}
        found: str | None = None  # what is at the records path, if not an array
        with open_binary(self.path, self.source) as stream:
            try:
                for prefix, event, value in ijson.parse(stream):
                    if prefix == records and event == "start_array":
                        return
                    if prefix == records and event not in ("map_key", "end_map") and found is None:
                        found = {"start_map": "an object"}.get(event, f"a {event}" if event != "null" else "null")
                    if event == "map_key" and prefix in chain:
                        keys.setdefault(prefix, []).append(value)
                    elif prefix == "" and event == "start_array" and records:
                        raise CampaignError(
                            f"file {self.path}: its root is an array, not an object with {records!r}; "
                            "remove source.records to read the array's items."
                        )
            except ijson.JSONError as exc:
                raise CampaignError(f"file {self.path} is not valid JSON ({' '.join(str(exc).split())[:160]}).") from None
        if not records:
            if not keys:
                raise CampaignError(f"file {self.path} is empty, or its root is neither an array nor an object.")
            raise CampaignError(
                f"file {self.path} has no array of records at its root; set source.records to the key path of the "
                f"records' array (its top-level keys: {', '.join(keys[''][:20])})."
            )
        deepest = max((p for p in chain if p in keys), key=len, default=None)
        if found is not None:
            found = f"it holds {found}, not an array" + (f" (its keys: {', '.join(keys[records][:20])})" if records in keys else "")
        elif deepest is None:
            found = "its root is not an object"
        else:
            missing = steps[len(deepest.split(".")) if deepest else 0]
            where = repr(deepest) if deepest else "its root"
            found = f"{where} has the keys {', '.join(keys[deepest][:20])}, not {missing!r}{did_you_mean(missing, keys[deepest])}"
        raise CampaignError(f"file {self.path} has no array of records at {records!r} (source.records): {found}.")


class ParquetReader(DocumentReader):
    """The rows of a Parquet file, its mapped columns typed as written (typed.py)."""

    def _batches(self) -> Iterator[tuple[pa.RecordBatch, pa.Array]]:
        try:
            parquet = pq.ParquetFile(self.path)
        except FileNotFoundError:
            raise CampaignError(f"file {self.path} does not exist.") from None
        except (pa.ArrowException, OSError) as exc:
            raise CampaignError(f"file {self.path} is not a Parquet file ({' '.join(str(exc).split())[:160]}).") from None
        schema = parquet.schema_arrow
        needed = self._check_columns(schema)
        self.layout.schema = pa.schema([schema.field(name) for name in needed])
        size, total = self.path.stat().st_size, max(parquet.metadata.num_rows, 1)
        number = 0
        try:
            for batch in parquet.iter_batches(batch_size=BATCH_RECORDS, columns=needed, use_threads=False):
                numbers = pa.array(range(number + 1, number + 1 + batch.num_rows), pa.int64())
                number += batch.num_rows
                self.bytes_seen = size * number // total
                columns = [typed.carried(_column(batch, path)) for path in self.layout.columns]
                self.consumed = number
                # No text yet: the few rejected records' is read again at the end (parquet_texts).
                yield pa.RecordBatch.from_arrays([numbers, pa.nulls(batch.num_rows, pa.string()), *columns],
                                                 names=[LINE, TEXT, *self.layout.columns]), numbers
        except (pa.ArrowException, OSError) as exc:
            raise CampaignError(
                f"file {self.path}: its rows after row {number} cannot be read ({' '.join(str(exc).split())[:160]}); "
                "nothing was loaded."
            ) from None

    def _check_columns(self, schema: pa.Schema) -> list[str]:
        """The top-level columns the mapping reads; a missing or misfit column is refused."""
        needed: list[str] = []
        for i, m in enumerate(self.template.columns):
            if m.is_constant:
                continue
            head, *rest = str(m.source).split(".")
            if head not in schema.names:
                raise CampaignError(
                    f"file {self.path} has no column {head!r} (columns[{i}].source){did_you_mean(head, schema.names)}; "
                    f"its columns are: {', '.join(schema.names)}."
                )
            kind = schema.field(head).type
            for step in rest:
                if not pa.types.is_struct(kind) or kind.get_field_index(step) < 0:
                    raise CampaignError(f"file {self.path}: column {head!r} has no field {str(m.source)!r} (columns[{i}].source).")
                kind = kind.field(step).type
            why = typed.misfit(str(m.source), kind, self.template.value_field(m.target))
            if why:
                raise CampaignError(f"file {self.path}: {why} (columns[{i}]).")
            needed.append(head)
        return list(dict.fromkeys(needed))


def parquet_texts(path: Path, columns: list[str], numbers: list[int]) -> dict[int, str]:
    """The text of the Parquet records numbered `numbers` (1-based), as the rejects show
    them and their file is written from: each a JSON array of its mapped columns' values.
    Read again for the rejected records, from the row groups holding them, rather than
    built for every record read (1M records: 1.6 s of CPU the read step no longer spends)."""
    wanted = sorted(set(numbers))
    found: dict[int, str] = {}
    parquet = pq.ParquetFile(path)
    first = 1
    for group in range(parquet.metadata.num_row_groups):
        last = first + parquet.metadata.row_group(group).num_rows - 1
        here = wanted[bisect.bisect_left(wanted, first):bisect.bisect_right(wanted, last)]
        if here:
            rows = parquet.read_row_group(group, columns=columns, use_threads=False).take(pa.array([n - first for n in here]))
            texts = _json_rows(pl.from_arrow(pa.table([typed.carried(c.combine_chunks()) for c in rows.columns], names=columns)))
            found.update(zip(here, texts.to_pylist()))
        first = last + 1
    return found


def _json_rows(frame: pl.DataFrame) -> pa.Array:
    """Each row as a JSON array of its values, in column order: a Parquet record's text,
    shorter than an object (every step carries it) and typed back by its schema."""
    values = []
    for name in frame.columns:
        encoded = pl.struct(pl.col(name)).struct.json_encode()  # {"name":value}
        prefix = len(pl.select(pl.struct(pl.lit(None).alias(name)).struct.json_encode()).item()) - len("null}")
        values.append(encoded.str.slice(prefix, encoded.str.len_chars() - prefix - 1))
    row = pl.concat_str([pl.lit("["), pl.concat_str(values, separator=","), pl.lit("]")])
    return frame.select(row.alias("text")).to_series().to_arrow()


def _column(batch: pa.RecordBatch, path: str) -> pa.Array:
    head, *rest = path.split(".")
    column = batch.column(head)
    for step in rest:
        column = pc.struct_field(column, step)
    return column
