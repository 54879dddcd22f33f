"""Read a text file into Arrow batches of text, one row per data line (record):
delimited, fixed width, or JSON Lines (`json_records.py` reads each line's keys).

Lines come from `lines.iter_line_blocks` (any line break, bounded length); pyarrow's CSV
parser then splits the fields. Every row keeps its exact line number and original text.
Quoted values may run over several lines (RFC 4180; `records.py` groups lines by
pyarrow's own quoting rules): a value still open after `source.max_record_lines` lines
is an unclosed quote, so its first line is rejected and reading goes on with the next
one; an unclosed quote never swallows the rest of the file. In strict mode
(`multiline: false`) a line that leaves a quoted value open is rejected on its own. A line with the wrong number of fields, or a NUL byte in a mapped field, is
rejected with its line number. Every column is read as text: `01000` and `+33 6…` arrive
intact.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.importing.json_records import parse_json_lines
from campaign_pipelines.importing.lines import BLOCK_BYTES, MAX_LINE_CHARS, iter_line_blocks, may_hold
from campaign_pipelines.importing.records import QuoteRules, group_records
from campaign_pipelines.importing.rejects import RejectWriter
from campaign_pipelines.templates import ImportTemplate, Source
from schemas.messages import did_you_mean

LINE = "__line"
TEXT = "__text"
# The header is split by Python's csv module, whose default field limit is 128 KiB.
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_CHARS))


@dataclass
class FileLayout:
    """What the first lines told us: kept lines, column names, where data starts."""

    prefix_lines: list[str] = field(default_factory=list)  # skipped lines + header, verbatim
    columns: list[str] = field(default_factory=list)
    schema: pa.Schema | None = None  # a typed file's (Parquet) columns read, as written


def _split_one(line: str, source: Source) -> list[str]:
    """Fields of one line (the header), by the same rules as the data."""
    if source.quote is None:
        return line.split(source.delimiter)
    return next(csv.reader([line], delimiter=source.delimiter, quotechar=source.quote, doublequote=True))


# Delimiters a header read with the wrong one is likely to hold.
LIKELY_DELIMITERS = ";,\t|"


def _check_mapped_columns(template: ImportTemplate, columns: list[str], path: Path) -> None:
    for i, mapping in enumerate(template.columns):
        if mapping.is_constant:
            continue
        name = str(mapping.source)
        if name not in columns:
            if isinstance(mapping.source, int):
                raise CampaignError(
                    f"file {path}: columns[{i}].source is position {mapping.source}, "
                    f"but the first data line has {len(columns)} fields."
                )
            raise CampaignError(_missing_column(template, columns, path, i, name))


def _missing_column(template: ImportTemplate, columns: list[str], path: Path, i: int, name: str) -> str:
    """Why a mapped title is not in the header: most often the header is split by another
    delimiter than the template's (one wide column holding every title)."""
    delimiter = template.source.delimiter
    if len(columns) == 1:
        shown = columns[0] if len(columns[0]) <= 60 else columns[0][:60] + "…"
        for other in LIKELY_DELIMITERS:
            if other != delimiter and name in [t.strip() for t in columns[0].split(other)]:
                return (
                    f"file {path}: its header line {shown!r} looks {other!r}-separated, not {delimiter!r}-separated "
                    f"(source.delimiter); set delimiter: {other!r} in the template or at launch."
                )
    return (
        f"file {path} has no column {name!r} (columns[{i}].source){did_you_mean(name, columns)}; "
        f"its columns are: {', '.join(columns)}."
    )


class _Unparsable(Exception):
    """pyarrow read a block otherwise than its records: split it, find the culprit."""


class SourceReader:
    """Streams a file as Arrow record batches: `__line`, `__text`, then one text column
    per file column (its title, its 1-based position, or its fixed-width name)."""

    def __init__(self, template: ImportTemplate, path: Path, rejects: RejectWriter, block_bytes: int = BLOCK_BYTES):
        self.template = template
        self.block_bytes = block_bytes
        self.source = template.source
        self.path = path
        self.rejects = rejects
        self.layout = FileLayout()
        self.rows_read = 0
        self.bytes_seen = 0  # of the decoded text (progress against the file's size)
        self.blank_lines = 0
        # The line number of the N-th data line, N = errors.stop_if_first_lines_rejected.
        self.watch_line: int | None = None
        self._header = self.source.header and self.source.format == "delimited"
        self._to_skip = self.source.skip_lines + (1 if self._header else 0)  # lines before the data
        # Multiline mode: the lines of a record whose quoted value is still open.
        self._open_record: tuple[pa.Array, pa.Array] | None = None
        self._mapped = [str(m.source) for m in template.columns if not m.is_constant]
        quote = self.source.quote
        self._rules = QuoteRules.of(self.source.delimiter, quote) if quote is not None and self.source.format == "delimited" else None

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([(LINE, pa.int64()), (TEXT, pa.string())] + [(c, pa.string()) for c in self.layout.columns])

    def batches(self) -> Iterator[pa.RecordBatch]:
        source = self.source
        saw_any_line = False
        for first_line, lines in iter_line_blocks(self.path, source, self.block_bytes, self._long_line):
            saw_any_line = True
            self.bytes_seen += (pc.sum(pc.binary_length(lines)).as_py() or 0) + len(lines)
            numbers = pa.array(range(first_line, first_line + len(lines)), pa.int64())
            if self._to_skip:
                head = lines.slice(0, self._to_skip).to_pylist()
                self.layout.prefix_lines.extend(head)
                lines, numbers = lines.slice(len(head)), numbers.slice(len(head))
                self._to_skip -= len(head)
                if self._to_skip:
                    continue
                if self._header:
                    self._read_header(self.layout.prefix_lines[-1], len(self.layout.prefix_lines))
            batch = self._data_batch(*self._records(lines, numbers))
            if batch is not None and batch.num_rows:
                yield batch
            if source.limit is not None and self.rows_read >= source.limit:
                break
        else:
            yield from self._flush_open_record()
        fail_if_empty = self.template.errors.fail_if_empty
        if not saw_any_line and (self._header or fail_if_empty):
            raise CampaignError(f"file {self.path} is empty" + ("; it has no header line." if self._header else " (errors.fail_if_empty)."))
        if self._to_skip:
            raise CampaignError(
                f"file {self.path} ends before its data starts (skip_lines: {source.skip_lines}"
                f"{', plus a header line' if self._header else ''})."
            )
        # A file with no data line is an empty delta (nothing to change), unless told otherwise.
        if self.rows_read == 0 and fail_if_empty:
            raise CampaignError(
                f"file {self.path} has no data lines{' after its header' if self._header else ''} (errors.fail_if_empty)."
            )

    def _long_line(self, number: int, head: str, length: int) -> None:
        """A line longer than a line may be: rejected with its first characters."""
        if self._to_skip:
            raise CampaignError(
                f"file {self.path}: line {number} is {length:,} characters long, more than the {MAX_LINE_CHARS:,} "
                "a line may hold, before the data starts."
            )
        self.rows_read += 1
        if self.rows_read == self.template.errors.stop_if_first_lines_rejected:
            self.watch_line = number
        reason = f"line is {length:,} characters long, more than the {MAX_LINE_CHARS:,} a line may hold (its first {len(head):,} are kept here)"
        self.rejects.add(pa.array([number], pa.int64()), pa.array([head], pa.string()), None, reason)

    def _data_batch(self, lines: pa.Array, numbers: pa.Array, rejected: list[tuple[int, str, str]]) -> pa.RecordBatch | None:
        """Parse one block of records; `rejected` are its lines already rejected (an
        unclosed quote). Both are data lines, counted in line order."""
        if len(lines):
            # Blank lines are not data lines; they are counted apart.
            keep = pc.greater(pc.utf8_length(lines), 0)
            blank = len(lines) - pc.sum(keep).as_py()
            if blank:
                self.blank_lines += blank
                lines, numbers = lines.filter(keep), numbers.filter(keep)
        count = len(lines) + len(rejected)
        if not count:
            return None
        limit, watch = self.source.limit, self.template.errors.stop_if_first_lines_rejected
        if (limit is not None and self.rows_read + count > limit) or (
            watch is not None and self.watch_line is None and self.rows_read + count >= watch
        ):
            in_order = np.sort(np.concatenate([numbers.to_numpy(), np.array([r[0] for r in rejected], np.int64)]))
            if limit is not None and self.rows_read + count > limit:
                last = int(in_order[limit - self.rows_read - 1]) if limit > self.rows_read else 0
                lines, numbers = lines.filter(pc.less_equal(numbers, last)), numbers.filter(pc.less_equal(numbers, last))
                rejected = [r for r in rejected if r[0] <= last]
                count = len(lines) + len(rejected)
            if watch is not None and self.watch_line is None and self.rows_read + count >= watch:
                self.watch_line = int(in_order[watch - self.rows_read - 1])
        self.rows_read += count
        if rejected:
            quote = self.source.quote
            self.rejects.add(
                pa.array([r[0] for r in rejected], pa.int64()),
                pa.array([r[1] for r in rejected], pa.string()),
                None,
                pa.array([f"unbalanced quote ({quote}): the quoted value opened on line {r[0]} {r[2]}" for r in rejected]),
            )
        if not len(lines):
            return None
        if not self.layout.columns:
            self._columns_from_first_line(lines[0].as_py())
        batch = self._parse(lines, numbers)
        # JSON may also spell a NUL byte as \u0000, seen only once decoded.
        held = [batch[c] for c in self.layout.columns] if self.source.format == "jsonl" else [lines]
        if any(may_hold(array, "\x00") for array in held):
            batch = self._reject_nul_bytes(batch)
        return batch

    def _reject_nul_bytes(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """A NUL byte cannot be stored in a text value (PostgreSQL refuses it): the line
        is rejected, naming the first mapped column that holds one, on every database."""
        column = pa.nulls(batch.num_rows, pa.string())
        for name in reversed([c for c in self._mapped if c in batch.schema.names]):
            column = pc.if_else(pc.match_substring(batch[name], "\x00"), name, column)
        bad = pc.is_valid(column)
        if not pc.any(bad).as_py():
            return batch
        self.rejects.add(
            batch[LINE].filter(bad),
            batch[TEXT].filter(bad),
            column.filter(bad),
            "holds a NUL byte (0x00), which a text value cannot store; set source.nul_bytes: strip to drop such bytes",
        )
        return batch.filter(pc.invert(bad))

    def _records(self, lines: pa.Array, numbers: pa.Array, at_end: bool = False) -> tuple[pa.Array, pa.Array, list]:
        """Records (and the lines rejected while grouping them) of a block, with the open
        record the previous block left; in strict mode (or without quotes) a line is a record."""
        source = self.source
        if not source.joins_lines:
            return lines, numbers, []
        if self._open_record is not None:
            lines = pa.concat_arrays([self._open_record[0], lines])
            numbers = pa.concat_arrays([self._open_record[1], numbers])
            self._open_record = None
        grouped = group_records(lines, numbers, self._rules, source.quote, source.max_record_lines, MAX_LINE_CHARS, at_end)
        self._open_record = grouped.open_tail
        return grouped.lines, grouped.numbers, grouped.rejected

    def _flush_open_record(self) -> Iterator[pa.RecordBatch]:
        """At the end of the file, a quoted value still open is an unclosed quote."""
        if self._open_record is not None:
            batch = self._data_batch(*self._records(pa.array([], pa.string()), pa.array([], pa.int64()), at_end=True))
            if batch is not None and batch.num_rows:
                yield batch

    def _read_header(self, line: str, line_number: int) -> None:
        titles = [t.strip() for t in _split_one(line, self.source)]
        seen: set[str] = set()
        for title in titles:
            if title in seen:
                raise CampaignError(f"file {self.path}: header (line {line_number}) has the column {title!r} twice.")
            seen.add(title)
        self.layout.columns = titles
        _check_mapped_columns(self.template, titles, self.path)

    def _columns_from_first_line(self, line: str) -> None:
        if self.source.format == "jsonl":
            self.layout.columns = list(dict.fromkeys(self._mapped))  # key paths, read from each record
        elif self.source.format == "fixed_width":
            self.layout.columns = [w.name for w in self.source.widths or []]
        else:
            self.layout.columns = [str(i + 1) for i in range(len(_split_one(line, self.source)))]
            _check_mapped_columns(self.template, self.layout.columns, self.path)

    def _parse(self, lines: pa.Array, numbers: pa.Array) -> pa.RecordBatch:
        if self.source.format == "fixed_width":
            return self._parse_fixed(lines, numbers)
        if self.source.format == "jsonl":
            numbers, lines, columns = parse_json_lines(lines, numbers, self.layout.columns, self.rejects)
            return pa.RecordBatch.from_arrays([numbers, lines, *columns], schema=self.schema)
        return self._parse_delimited(lines, numbers)

    def _parse_fixed(self, lines: pa.Array, numbers: pa.Array) -> pa.RecordBatch:
        widths = self.source.widths or []
        needed = max(w.start for w in widths)
        lengths = pc.utf8_length(lines)
        short = pc.less(lengths, needed)
        if pc.any(short).as_py():
            self.rejects.add(
                numbers.filter(short),
                lines.filter(short),
                None,
                pc.binary_join_element_wise(
                    "line is ",
                    pc.cast(lengths.filter(short), pa.string()),
                    f" characters long; the fixed-width fields need at least {needed}",
                    "",
                ),
            )
            ok = pc.invert(short)
            lines, numbers = lines.filter(ok), numbers.filter(ok)
        arrays = [numbers, lines] + [
            pc.utf8_slice_codeunits(lines, w.start - 1, w.start - 1 + w.length) for w in widths
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _parse_delimited(self, lines: pa.Array, numbers: pa.Array) -> pa.RecordBatch:
        source = self.source
        if self._rules is not None and not source.joins_lines:
            # Strict mode: a line that leaves a quoted value open is rejected on its own.
            unclosed = self._rules.unclosed(lines, source.quote)
            if len(unclosed):
                reason = f"unbalanced quote ({source.quote}): a quoted value is not closed"
                self.rejects.add(numbers.take(pa.array(unclosed)), lines.take(pa.array(unclosed)), None, reason)
                whole = np.ones(len(lines), dtype=bool)
                whole[unclosed] = False
                lines, numbers = lines.filter(pa.array(whole)), numbers.filter(pa.array(whole))
        return self._parse_safely(lines, numbers)

    def _parse_safely(self, lines: pa.Array, numbers: pa.Array) -> pa.RecordBatch:
        """Parse records; if pyarrow cannot (a record it reads otherwise than the grouping
        did), parse each half on its own, down to the one record it cannot split, which is
        rejected with pyarrow's reason. Only a broken block pays for the halving."""
        if not len(lines):
            return pa.RecordBatch.from_pylist([], schema=self.schema)
        try:
            return self._parse_records(lines, numbers)
        except _Unparsable as exc:
            if len(lines) == 1:
                self.rejects.add(numbers, lines, None, f"the line cannot be split into fields ({exc})")
                return pa.RecordBatch.from_pylist([], schema=self.schema)
            half = len(lines) // 2
            parts = [self._parse_safely(lines.slice(0, half), numbers.slice(0, half)),
                     self._parse_safely(lines.slice(half), numbers.slice(half))]
            return pa.Table.from_batches(parts, schema=self.schema).combine_chunks().to_batches()[0]

    def _parse_records(self, lines: pa.Array, numbers: pa.Array) -> pa.RecordBatch:
        source = self.source
        # Append each line's number as one more field: parsed rows then carry it, and a
        # ragged row's text ends with it.
        tagged = pc.binary_join_element_wise(lines, pc.cast(numbers, pa.string()), source.delimiter)
        offsets = pa.array([0, len(tagged)], pa.int32())
        buffer = pc.binary_join(pa.ListArray.from_arrays(offsets, tagged), "\n")[0].as_buffer()
        names = self.layout.columns + [LINE]
        expected = len(self.layout.columns)
        ragged: list[tuple[int, str, str]] = []
        lost: list[str] = []

        def on_invalid(row: pacsv.InvalidRow) -> str:
            text, _, number = row.text.rpartition(source.delimiter)
            if not number.isdigit():
                lost.append(row.text)  # the row does not end with its line number: not a record we grouped
            else:
                ragged.append((int(number), text, f"line has {row.actual_columns - 1} fields, expected {expected}"))
            return "skip"

        # pyarrow's blocks must hold a whole row; its parser is fastest on blocks of 1 MiB.
        longest = pc.max(pc.binary_length(tagged)).as_py() or 0
        try:
            table = pacsv.read_csv(
                pa.BufferReader(buffer),
                read_options=pacsv.ReadOptions(column_names=names, block_size=max(1 << 20, 2 * longest + 2)),
                parse_options=pacsv.ParseOptions(
                    delimiter=source.delimiter,
                    quote_char=source.quote if source.quote is not None else False,
                    double_quote=True,
                    escape_char=False,
                    # Only records joined from several lines hold one (slower to parse).
                    newlines_in_values=source.joins_lines and may_hold(lines, "\n"),
                    ignore_empty_lines=True,
                    invalid_row_handler=on_invalid,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={**{c: pa.string() for c in self.layout.columns}, LINE: pa.int64()},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid as exc:
            raise _Unparsable(" ".join(str(exc).split())[:200]) from None
        if lost or table.num_rows + len(ragged) != len(lines):
            raise _Unparsable(f"{table.num_rows + len(ragged)} rows read from {len(lines)} records")
        if ragged:
            ragged.sort()
            self.rejects.add(
                pa.array([r[0] for r in ragged], pa.int64()),
                pa.array([r[1] for r in ragged], pa.string()),
                None,
                pa.array([r[2] for r in ragged], pa.string()),
            )
        line_col = table[LINE].combine_chunks()
        # Rows keep their own text; map each parsed row back to its position in `lines`.
        position = pc.index_in(line_col, value_set=numbers)
        text = pc.take(lines, position)
        arrays = [line_col, text] + [table[c].combine_chunks() for c in self.layout.columns]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)
