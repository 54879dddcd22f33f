"""JSON records (JSON Lines, the items of a JSON array) as the text columns the mapping reads.

A mapped `source` is a key path: `email`, `address.city`, `items.0.sku` (a number steps
into an array). Its value arrives as the text a delimited file would hold: a string as
is, a number as written in the file (never through a float: `12.30` stays `12.30`, a
20-digit id stays exact), `true`/`false`, null or a missing key as empty, and an object
or array as compact JSON. A record that is not a JSON object is rejected with its number.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pyarrow as pa

from campaign_pipelines.importing.rejects import RejectWriter

KeyPath = tuple[str | int, ...]


def key_path(source: str) -> KeyPath:
    """`address.city` → ("address", "city"); a whole-number step indexes an array."""
    return tuple(int(step) if step.isdigit() else step for step in source.split("."))


def _follow(record: Any, path: KeyPath) -> Any:
    value = record
    for step in path:
        if isinstance(value, dict):
            value = value.get(str(step))
        elif isinstance(value, list) and isinstance(step, int) and step < len(value):
            value = value[step]
        else:
            return None
    return value


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_number_text)


def _number_text(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def value_text(value: Any) -> str | None:
    """The text of one JSON value, as the mapping reads it."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return _number_text(value) if isinstance(value, Decimal) else str(value)
    return _compact(value)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def not_an_object(value: Any) -> str:
    return f"the record is not a JSON object (it is {_kind(value)})"


# Numbers keep their text: parsed as str, never as float (exact decimals and big ids).
_decode_line = json.JSONDecoder(parse_float=str, parse_int=str).decode


def parse_json_lines(
    lines: pa.Array, numbers: pa.Array, paths: list[str], rejects: RejectWriter
) -> tuple[pa.Array, pa.Array, list[pa.Array]]:
    """(line numbers, lines, one text column per key path) of the lines that hold a JSON
    object; the others are rejected with the parser's reason."""
    steps = [key_path(p) for p in paths]
    columns: list[list[str | None]] = [[] for _ in steps]
    kept: list[int] = []
    bad: list[tuple[int, str, str]] = []
    for i, (number, line) in enumerate(zip(numbers.to_pylist(), lines.to_pylist())):
        try:
            record = _decode_line(line)
        except json.JSONDecodeError as exc:
            bad.append((number, line, f"the line is not valid JSON ({exc.msg} at character {exc.pos + 1})"))
            continue
        except RecursionError:
            bad.append((number, line, "the line nests JSON values too deeply"))
            continue
        if not isinstance(record, dict):
            bad.append((number, line, not_an_object(record)))
            continue
        kept.append(i)
        for column, path in zip(columns, steps):
            column.append(value_text(_follow(record, path)))
    if bad:
        rejects.add(
            pa.array([b[0] for b in bad], pa.int64()), pa.array([b[1] for b in bad], pa.string()), None,
            pa.array([b[2] for b in bad], pa.string()),
        )
    if len(kept) < len(lines):
        index = pa.array(kept, pa.int64())
        lines, numbers = lines.take(index), numbers.take(index)
    return numbers, lines, [pa.array(c, pa.string()) for c in columns]


def record_columns(records: Iterable[dict], paths: list[str]) -> list[pa.Array]:
    """One text column per key path of records already parsed (the items of a JSON array)."""
    steps = [key_path(p) for p in paths]
    listed = list(records)
    return [pa.array([value_text(_follow(r, path)) for r in listed], pa.string()) for path in steps]


def record_text(record: Any) -> str:
    """A record as one line of compact JSON: what its reject shows and its rejects file holds."""
    return _compact(record)
