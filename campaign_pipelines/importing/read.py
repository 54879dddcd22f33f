"""Read an input file into Arrow batches of text, one row per data line.

Lines are split with Arrow kernels so every row keeps its exact line number and
original text; pyarrow's CSV parser then splits the fields. A line with an odd number of
quote characters is rejected on its own (pyarrow would let it swallow the following
lines), and a line with the wrong number of fields is rejected with its line number.
Every column is read as text: `01000` and `+33 6…` arrive intact.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.importing.rejects import RejectWriter
from campaign_pipelines.templates import ImportTemplate, Source

LINE = "__line"
TEXT = "__text"
# Decoded text per block: large enough to amortise per-block work, small enough that
# memory stays flat whatever the file size.
BLOCK_BYTES = 16 << 20


@dataclass
class FileLayout:
    """What the first lines told us: kept lines, column names, where data starts."""

    prefix_lines: list[str] = field(default_factory=list)  # skipped lines + header, verbatim
    columns: list[str] = field(default_factory=list)


def compression_of(path: Path, source: Source) -> str:
    if source.compression != "auto":
        return source.compression
    suffix = path.suffix.lower()
    return {".gz": "gzip", ".zip": "zip"}.get(suffix, "none")


@contextmanager
def open_binary(path: Path, source: Source) -> Iterator[BinaryIO]:
    if not path.exists():
        raise CampaignError(f"file {path} does not exist.")
    if not path.is_file():
        raise CampaignError(f"{path} is not a file.")
    kind = compression_of(path, source)
    try:
        if kind == "gzip":
            with gzip.open(path, "rb") as stream:
                yield stream
        elif kind == "zip":
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise CampaignError(
                        f"zip file {path} holds {len(members)} files; an import reads a zip of exactly one file."
                    )
                with archive.open(members[0]) as stream:
                    yield stream
        else:
            with open(path, "rb") as stream:
                yield stream
    except PermissionError:
        raise CampaignError(f"file {path} cannot be read (permission denied).") from None
    except (gzip.BadGzipFile, zipfile.BadZipFile, EOFError) as exc:
        raise CampaignError(f"file {path} is not a valid {kind} file ({exc}).") from None


def _decode_error_line(path: Path, source: Source) -> tuple[int, str]:
    """Slow path, taken only on failure: find the first line that does not decode."""
    decoder = codecs.getincrementaldecoder(source.encoding)(errors="strict")
    newlines = 0
    with open_binary(path, source) as stream:
        for raw in stream:
            try:
                newlines += decoder.decode(raw).count("\n")
            except UnicodeDecodeError as exc:
                return newlines + 1, f"byte 0x{raw[exc.start]:02x}"
    return newlines + 1, "an incomplete character at the end of the file"


def iter_line_blocks(path: Path, source: Source, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, pa.Array]]:
    """Yield (first line number, lines) blocks; lines have no line terminator."""
    decoder = codecs.getincrementaldecoder(source.encoding)(errors="strict")
    carry = ""
    line_number = 1
    first = True
    with open_binary(path, source) as stream:
        while True:
            raw = stream.read(block_bytes)
            final = not raw
            try:
                text = decoder.decode(raw, final=final)
            except UnicodeDecodeError:
                line, what = _decode_error_line(path, source)
                raise CampaignError(
                    f"file {path}: line {line} is not valid {source.encoding} ({what}); "
                    f"set source.encoding (launch key: encoding) to the file's encoding."
                ) from None
            if first and text:
                text = text.removeprefix("\ufeff")  # a UTF-8 BOM, whatever the declared codec
                first = False
            text = carry + text
            if final:
                carry = ""
                if text.endswith("\n"):
                    text = text[:-1]
                if not text:
                    return
            else:
                cut = text.rfind("\n")
                if cut < 0:
                    carry = text
                    continue
                carry, text = text[cut + 1 :], text[:cut]
            lines = pc.split_pattern(pa.array([text], pa.large_string()), "\n").flatten()
            lines = pc.utf8_rtrim(pc.cast(lines, pa.string()), characters="\r")
            yield line_number, lines
            line_number += len(lines)
            if final:
                return


def _split_one(line: str, source: Source) -> list[str]:
    """Fields of one line (the header), by the same rules as the data."""
    if source.quote is None:
        return line.split(source.delimiter)
    return next(csv.reader([line], delimiter=source.delimiter, quotechar=source.quote, doublequote=True))


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
            raise CampaignError(
                f"file {path} has no column {name!r} (columns[{i}].source); its columns are: {', '.join(columns)}."
            )


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
        self.blank_lines = 0
        # The line number of the N-th data line, N = errors.stop_if_first_lines_rejected.
        self.watch_line: int | None = None
        # Multiline mode: the lines of a record whose quoted value is still open.
        self._open_record: tuple[pa.Array, pa.Array] | None = None

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([(LINE, pa.int64()), (TEXT, pa.string())] + [(c, pa.string()) for c in self.layout.columns])

    def batches(self) -> Iterator[pa.RecordBatch]:
        source = self.source
        to_skip = source.skip_lines + (1 if source.header and source.format == "delimited" else 0)
        saw_any_line = False
        for first_line, lines in iter_line_blocks(self.path, source, self.block_bytes):
            saw_any_line = True
            numbers = pa.array(range(first_line, first_line + len(lines)), pa.int64())
            if to_skip:
                head = lines.slice(0, to_skip).to_pylist()
                self.layout.prefix_lines.extend(head)
                lines, numbers = lines.slice(len(head)), numbers.slice(len(head))
                to_skip -= len(head)
                if to_skip:
                    continue
                if source.header and source.format == "delimited":
                    self._read_header(self.layout.prefix_lines[-1], len(self.layout.prefix_lines))
            if source.multiline:
                lines, numbers = self._records(lines, numbers)
            batch = self._data_batch(lines, numbers)
            if batch is not None and batch.num_rows:
                yield batch
            if source.limit is not None and self.rows_read >= source.limit:
                break
        else:
            if self._open_record is not None:
                self._reject_open_record()
        if not saw_any_line:
            raise CampaignError(f"file {self.path} is empty.")
        if to_skip:
            raise CampaignError(
                f"file {self.path} ends before its data starts (skip_lines: {source.skip_lines}"
                f"{', plus a header line' if source.header else ''})."
            )
        if self.rows_read == 0:
            raise CampaignError(f"file {self.path} has no data lines" + (" after its header." if source.header else "."))

    def _data_batch(self, lines: pa.Array, numbers: pa.Array) -> pa.RecordBatch | None:
        """Parse one block of data lines (records, in multiline mode)."""
        if not len(lines):
            return None
        # Blank lines are not data lines; they are counted apart.
        keep = pc.greater(pc.utf8_length(lines), 0)
        blank = len(lines) - pc.sum(keep).as_py()
        if blank:
            self.blank_lines += blank
            lines, numbers = lines.filter(keep), numbers.filter(keep)
        if self.source.limit is not None:
            room = self.source.limit - self.rows_read
            lines, numbers = lines.slice(0, room), numbers.slice(0, room)
        if not len(lines):
            return None
        if not self.layout.columns:
            self._columns_from_first_line(lines[0].as_py())
        watch = self.template.errors.stop_if_first_lines_rejected
        if watch is not None and self.watch_line is None and self.rows_read + len(lines) >= watch:
            self.watch_line = numbers[watch - self.rows_read - 1].as_py()
        self.rows_read += len(lines)
        return self._parse(lines, numbers)

    def _records(self, lines: pa.Array, numbers: pa.Array) -> tuple[pa.Array, pa.Array]:
        """Join the lines of quoted values that span lines into records, numbered by their
        first line; a record still open at the end of the block waits for the next one."""
        if self._open_record is not None:
            lines = pa.concat_arrays([self._open_record[0], lines])
            numbers = pa.concat_arrays([self._open_record[1], numbers])
            self._open_record = None
        if not len(lines):
            return lines, numbers
        odd = pc.bit_wise_and(pc.count_substring(lines, self.source.quote), 1)
        inside_after = pc.bit_wise_and(pc.cumulative_sum(odd), 1)  # 1: a quote is open after the line
        inside_before = pc.bit_wise_xor(inside_after, odd)
        starts = pc.indices_nonzero(pc.equal(inside_before, 0))
        complete = len(lines)
        if inside_after[-1].as_py():
            complete = starts[-1].as_py()
            self._open_record = (lines.slice(complete), numbers.slice(complete))
            starts = starts.slice(0, len(starts) - 1)
        offsets = pa.concat_arrays([pc.cast(starts, pa.int32()), pa.array([complete], pa.int32())])
        records = pc.binary_join(pa.ListArray.from_arrays(offsets, lines.slice(0, complete)), "\n")
        return records, numbers.take(starts)

    def _reject_open_record(self) -> None:
        lines, numbers = self._open_record
        self._open_record = None
        first = numbers[0].as_py()
        self.rows_read += 1
        self.rejects.add(
            pa.array([first], pa.int64()),
            pa.array(["\n".join(lines.to_pylist())], pa.string()),
            None,
            f"unbalanced quote ({self.source.quote}): the quoted value opened on line {first} is never closed",
        )

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
        if self.source.format == "fixed_width":
            self.layout.columns = [w.name for w in self.source.widths or []]
        else:
            self.layout.columns = [str(i + 1) for i in range(len(_split_one(line, self.source)))]
            _check_mapped_columns(self.template, self.layout.columns, self.path)

    def _parse(self, lines: pa.Array, numbers: pa.Array) -> pa.RecordBatch:
        if self.source.format == "fixed_width":
            return self._parse_fixed(lines, numbers)
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
        if source.quote is not None and not source.multiline:
            odd = pc.equal(pc.bit_wise_and(pc.count_substring(lines, source.quote), 1), 1)
            if pc.any(odd).as_py():
                self.rejects.add(
                    numbers.filter(odd), lines.filter(odd), None, f"unbalanced quote ({source.quote}): a quoted value is not closed"
                )
                even = pc.invert(odd)
                lines, numbers = lines.filter(even), numbers.filter(even)
                if not len(lines):
                    return pa.RecordBatch.from_pylist([], schema=self.schema)
        # Append each line's number as one more field: parsed rows then carry it, and a
        # ragged row's text ends with it.
        tagged = pc.binary_join_element_wise(lines, pc.cast(numbers, pa.string()), source.delimiter)
        offsets = pa.array([0, len(tagged)], pa.int32())
        buffer = pc.binary_join(pa.ListArray.from_arrays(offsets, tagged), "\n")[0].as_buffer()
        names = self.layout.columns + [LINE]
        expected = len(self.layout.columns)
        ragged: list[tuple[int, str, str]] = []

        def on_invalid(row: pacsv.InvalidRow) -> str:
            text, _, number = row.text.rpartition(source.delimiter)
            ragged.append((int(number), text, f"line has {row.actual_columns - 1} fields, expected {expected}"))
            return "skip"

        table = pacsv.read_csv(
            pa.BufferReader(buffer),
            read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 20),
            parse_options=pacsv.ParseOptions(
                delimiter=source.delimiter,
                quote_char=source.quote if source.quote is not None else False,
                double_quote=True,
                escape_char=False,
                newlines_in_values=source.multiline,
                ignore_empty_lines=True,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={**{c: pa.string() for c in self.layout.columns}, LINE: pa.int64()},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
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
