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
    return _encode(value)


def _number_text(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"{type(value).__name__} is not a JSON value")


# One encoder for every record (json.dumps with options builds one per call).
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_number_text).encode


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
_raw_decode = json.JSONDecoder(parse_float=str, parse_int=str).raw_decode


def _decode_line(line: str) -> Any:
    """`JSONDecoder.decode` without its two whitespace regexes per call (a quarter of the
    time on short lines): surrounding whitespace is rare, and handled the slow way."""
    if line[:1].isspace():
        line = line.lstrip()
    value, end = _raw_decode(line)
    if end != len(line) and line[end:].strip():
        raise json.JSONDecodeError("Extra data", line, end + len(line[end:]) - len(line[end:].lstrip()))
    return value


def parse_json_lines(
    lines: pa.Array, numbers: pa.Array, paths: list[str], rejects: RejectWriter
) -> tuple[pa.Array, pa.Array, list[pa.Array]]:
    """(line numbers, lines, one text column per key path) of the lines that hold a JSON
    object; the others are rejected with the parser's reason."""
    columns, plan = _plan(paths)
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
        _take(record, plan)
    if bad:
        rejects.add(
            pa.array([b[0] for b in bad], pa.int64()), pa.array([b[1] for b in bad], pa.string()), None,
            pa.array([b[2] for b in bad], pa.string()),
        )
    if len(kept) < len(lines):
        index = pa.array(kept, pa.int64())
        lines, numbers = lines.take(index), numbers.take(index)
    return numbers, lines, [pa.array(c, pa.string()) for c in columns]


def _plan(paths: list[str]) -> tuple[list[list[str | None]], list[tuple[list, str | None, KeyPath]]]:
    """Empty columns, and how to fill each: a top-level key is one dict lookup, a path
    into nested values is followed."""
    columns: list[list[str | None]] = [[] for _ in paths]
    plan = []
    for column, path in zip(columns, (key_path(p) for p in paths)):
        plan.append((column, path[0] if len(path) == 1 and isinstance(path[0], str) else None, path))
    return columns, plan


def _take(record: dict, plan: list[tuple[list, str | None, KeyPath]]) -> None:
    """Append a record's value of each key path to its column, as text."""
    for column, key, path in plan:
        value = record.get(key) if key is not None else _follow(record, path)
        column.append(value if value.__class__ is str else value_text(value))


def record_columns(records: Iterable[dict], paths: list[str]) -> list[pa.Array]:
    """One text column per key path of records already parsed (the items of a JSON array)."""
    columns, plan = _plan(paths)
    for record in records:
        _take(record, plan)
    return [pa.array(c, pa.string()) for c in columns]


def record_text(record: Any) -> str:
    """A record as one line of compact JSON: what its reject shows and its rejects file holds."""
    return _compact(record)
