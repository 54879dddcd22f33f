"""Which lines make a record, by the quoting rules pyarrow's parser follows.

A quote opens a quoted value only at the start of a field. Inside it, a doubled quote is
a quote and a lone quote closes the value; after the closing quote, and anywhere in an
unquoted value, a quote is plain text (`5" tall`). So a line, read from outside a quoted
value, either ends outside one (it is complete) or inside one (it opens a value that goes
on to the next line); read from inside, it either closes the value or not. Two regular
expressions decide that for every line holding a quote, vectorised; only the lines of
multi-line records are walked one by one.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from campaign_pipelines.importing.lines import may_hold


def _char(c: str) -> str:
    return f"\\x{{{ord(c):x}}}"  # RE2's escape for any character


@dataclass(frozen=True)
class QuoteRules:
    complete: str  # read from outside a quoted value, the line ends outside one
    closes: str  # read from inside a quoted value, the line ends outside one

    @classmethod
    def of(cls, delimiter: str, quote: str) -> "QuoteRules":
        d, q = _char(delimiter), _char(quote)
        inside = f"(?:[^{q}]|{q}{q})*"  # a quoted value's text, up to its closing quote
        value = f"(?:{q}{inside}{q}[^{d}]*|(?:[^{d}{q}][^{d}]*)?)"  # quoted, or not
        rest = f"(?:{d}{value})*"
        return cls(complete=f"^{value}{rest}$", closes=f"^{inside}{q}[^{d}]*{rest}$")

    def unclosed(self, lines: pa.Array, quote: str) -> np.ndarray:
        """Positions of the lines that leave a quoted value open, read from outside one.
        Only lines holding a quote can, and only they meet the regular expression."""
        if not may_hold(lines, quote):
            return np.empty(0, dtype=np.int64)
        quoted = np.flatnonzero(pc.match_substring(lines, quote).to_numpy(zero_copy_only=False))
        if not len(quoted):
            return quoted
        whole = pc.match_substring_regex(lines.take(pa.array(quoted)), self.complete).to_numpy(zero_copy_only=False)
        return quoted[~whole]


@dataclass
class Records:
    """A block's lines grouped into records, the lines rejected while grouping them, and
    the lines of a record still open at the end of the block."""

    lines: pa.Array
    numbers: pa.Array
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (line number, text, reason)
    open_tail: tuple[pa.Array, pa.Array] | None = None


def group_records(
    lines: pa.Array, numbers: pa.Array, rules: QuoteRules, quote: str, max_lines: int, max_chars: int, at_end: bool
) -> Records:
    """Join the lines of quoted values that span lines into records numbered by their
    first line. A record longer than `max_lines` lines or `max_chars` characters, or
    still open at the end of the file, is an unclosed quote: its first line is rejected
    and the lines after it are read again. Before the end, a record still open at the end
    of the block is handed back to be continued by the next block."""
    opening = rules.unclosed(lines, quote)
    if not len(opening):
        return Records(lines, numbers)
    # Lines that close a quoted value they start inside of: only lines holding a quote can.
    quoted = np.flatnonzero(pc.match_substring(lines, quote).to_numpy(zero_copy_only=False))
    closes = pc.match_substring_regex(lines.take(pa.array(quoted)), rules.closes).to_numpy(zero_copy_only=False)
    closing = quoted[closes]
    ends = np.cumsum(pc.utf8_length(lines).to_numpy(zero_copy_only=False) + 1)  # chars up to each line's end
    n = len(lines)
    starts = np.ones(n, dtype=bool)  # which lines begin a record
    rejected: list[tuple[int, str, str]] = []
    rejected_at: list[int] = []
    open_tail = None
    i = 0
    while True:
        k = bisect.bisect_left(opening, i)
        if k == len(opening):
            break
        first = int(opening[k])
        j = bisect.bisect_right(closing, first)
        last = int(closing[j]) if j < len(closing) else None  # the line that closes the value
        end = last if last is not None else n - 1
        chars = int(ends[end] - (ends[first - 1] if first else 0))
        too_long = end - first + 1 > max_lines or chars > max_chars
        if last is None and not too_long and not at_end:
            open_tail = (lines.slice(first), numbers.slice(first))
            n = first
            break
        if too_long or last is None:
            how = f"is not closed within {max_lines} lines" if too_long else "is never closed"
            rejected.append((numbers[first].as_py(), lines[first].as_py(), how))
            rejected_at.append(first)
            i = first + 1
            continue
        starts[first + 1 : last + 1] = False
        i = last + 1
    record_starts = np.flatnonzero(starts[:n])
    offsets = pa.array(np.append(record_starts, n), pa.int32())
    records = pc.binary_join(pa.ListArray.from_arrays(offsets, lines.slice(0, n)), "\n")
    record_numbers = numbers.take(pa.array(record_starts))
    if rejected_at:  # each rejected line is a record of its own: drop it
        keep = ~np.isin(record_starts, rejected_at)
        records, record_numbers = records.filter(pa.array(keep)), record_numbers.filter(pa.array(keep))
    return Records(records, record_numbers, rejected, open_tail)
