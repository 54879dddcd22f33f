"""`templates new --from-file` for files whose records name their fields: JSON Lines, a
JSON document's array of objects (its key path found), a Parquet file's schema, an .xlsx
workbook's first sheet (its header row found), an XML document's record element. What it
finds — the format, the records' path, the key paths of the first records and their
values as text — is matched to the table's fields as a delimited file's header is
(detect.py)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ijson
from lxml import etree
import pyarrow as pa
import pyarrow.parquet as pq

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.importing.json_records import value_text
from campaign_pipelines.importing.spreadsheets import cell_text, open_sheet

SAMPLE_RECORDS = 200


@dataclass
class KeyedSample:
    format: str  # jsonl, json, parquet, xlsx or xml
    records: str | None  # a JSON document's key path to the records' array, an XML record element's path
    titles: list[str]  # key paths, in the order first seen
    rows: list[list[str]]  # the sample's values as text, one list per record
    typed: set[str]  # key paths whose values are typed (Parquet): no text format to guess
    sheet: str | None = None  # a workbook's sheet read
    namespaces: dict[str, str] | None = None  # an XML document's prefixes
    skip_lines: int = 0  # a sheet's empty rows above its header


def keyed_format(path: Path, head: bytes) -> str | None:
    """The format the file's name or first bytes say, if a keyed one."""
    name = path.name.lower().removesuffix(".gz")
    if head.startswith(b"PAR1") or name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".xlsx"):
        return "xlsx"
    if name.endswith(".xml") or head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return "xml"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if name.endswith(".json") or text[:1] in (b"{", b"["):
        first = text.split(b"\n", 1)[0].strip()
        try:
            return "jsonl" if isinstance(json.loads(first), dict) and b"\n{" in text else "json"
        except ValueError:
            return "json"
    return None


def _flatten(record: dict, prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted key paths; arrays and scalars are values."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _sample(records: list[dict], fmt: str, records_path: str | None, typed: set[str] | None = None) -> KeyedSample:
    flat = [_flatten(r) for r in records]
    titles = list(dict.fromkeys(k for r in flat for k in r))
    rows = [[_text(r.get(t)) for t in titles] for r in flat]
    return KeyedSample(fmt, records_path, titles, rows, typed or set())


def _text(value: Any) -> str:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return value_text(value) or ""


def _json_lines(path: Path, head: bytes) -> KeyedSample:
    records = []
    for line in head.decode("utf-8", errors="ignore").splitlines()[:SAMPLE_RECORDS]:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            records.append(value)
    if not records:
        raise CampaignError(f"file {path}: none of its first lines is a JSON object.")
    return _sample(records, "jsonl", None)


def _records_prefix(path: Path) -> str:
    """The key path of the document's first array of objects ("item": the root's)."""
    pending: str | None = None  # an array just opened: its items' prefix
    with path.open("rb") as stream:
        try:
            for prefix, event, _ in ijson.parse(stream):
                if pending is not None and prefix == pending:
                    if event == "start_map":
                        return pending
                    pending = None
                if event == "start_array":
                    pending = f"{prefix}.item" if prefix else "item"
        except ijson.JSONError as exc:
            raise CampaignError(f"file {path} is not valid JSON ({' '.join(str(exc).split())[:160]}).") from None
    raise CampaignError(f"file {path} holds no array of JSON objects: there are no records to map.")


def _json_document(path: Path) -> KeyedSample:
    prefix = _records_prefix(path)
    records = []
    with path.open("rb") as stream:
        for record in ijson.items(stream, prefix, use_float=False):
            if isinstance(record, dict):
                records.append(record)
            if len(records) == SAMPLE_RECORDS:
                break
    records_path = prefix.removesuffix(".item") if prefix != "item" else None
    return _sample(records, "json", records_path)


def _parquet(path: Path) -> KeyedSample:
    try:
        parquet = pq.ParquetFile(path)
        batch = next(parquet.iter_batches(batch_size=SAMPLE_RECORDS), None)
    except (pa.ArrowException, OSError) as exc:
        raise CampaignError(f"file {path} is not a Parquet file ({' '.join(str(exc).split())[:160]}).") from None
    schema = parquet.schema_arrow
    typed = {f.name for f in schema if not pa.types.is_string(f.type) and not pa.types.is_large_string(f.type)}
    records = batch.to_pylist() if batch is not None else [{}]
    sample = _sample(records, "parquet", None)
    # Key paths into structs are typed too (the struct's name is their first step).
    sample.typed = {t for t in sample.titles if t.split(".")[0] in typed}
    return sample


def _xlsx(path: Path) -> KeyedSample:
    """The first sheet: its first non-empty row is the header, the next rows the sample."""
    sheet = open_sheet(path, None)
    if sheet.start is None:
        raise CampaignError(f"file {path}: its first sheet {sheet.name!r} is empty.")
    top = sheet.start[0]
    rows = sheet.to_python(skip_empty_area=False, nrows=top + SAMPLE_RECORDS + 1)[top:]  # from its header
    named = [(i, str(cell_text(c) or "").strip()) for i, c in enumerate(rows[0])]
    named = [(i, t) for i, t in named if t]
    body = [list(r) + [""] * (len(rows[0]) - len(r)) for r in rows[1:]]
    typed = {t for i, t in named if any(r[i] != "" for r in body) and all(r[i] == "" or not isinstance(r[i], str) for r in body)}
    text_rows = [[cell_text(r[i]) or "" for i, _ in named] for r in body]
    return KeyedSample("xlsx", None, [t for _, t in named], text_rows, typed, sheet=sheet.name, skip_lines=top)


def _xml(path: Path) -> KeyedSample:
    """The record element: the path the most elements with children or attributes have
    (the shallowest of equals), among the first 20,000 elements; then its first records'
    attributes (@id), leaf children (email) and nested leaves (address/city)."""
    prefixes: dict[str, str] = {}  # namespace URI -> prefix

    def name(tag: str) -> str:
        qname = etree.QName(tag)
        if qname.namespace is None:
            return qname.localname
        return f"{prefixes.setdefault(qname.namespace, f'n{len(prefixes) + 1}')}:{qname.localname}"

    counts: dict[tuple[str, ...], int] = {}
    stack: list[str] = []
    try:
        for seen, (event, element) in enumerate(etree.iterparse(str(path), events=("start", "end"), resolve_entities=False,
                                                               no_network=True, load_dtd=False)):
            if event == "start":
                stack.append(name(element.tag))
                continue
            if len(element) or element.attrib:
                counts[tuple(stack)] = counts.get(tuple(stack), 0) + 1
            stack.pop()
            if seen > 40_000:
                break
    except etree.XMLSyntaxError as exc:
        raise CampaignError(f"file {path} is not well-formed XML ({' '.join(str(exc).split())[:160]}).") from None
    candidates = [p for p in counts if len(p) > 1] or list(counts)
    if not candidates:
        raise CampaignError(f"file {path} holds no element with children or attributes: there are no records to map.")
    record = max(candidates, key=lambda p: (counts[p], -len(p)))
    flat: list[dict[str, str]] = []
    stack = []
    for event, element in etree.iterparse(str(path), events=("start", "end"), resolve_entities=False, no_network=True, load_dtd=False):
        if event == "start":
            stack.append(name(element.tag))
            continue
        if tuple(stack) == record:
            flat.append(_xml_fields(element, name))
            element.clear()
            if len(flat) == SAMPLE_RECORDS:
                break
        stack.pop()
    titles = list(dict.fromkeys(k for r in flat for k in r))
    rows = [[r.get(t, "") for t in titles] for r in flat]
    namespaces = {prefix: uri for uri, prefix in prefixes.items()}
    return KeyedSample("xml", "/".join(record), titles, rows, set(), namespaces=namespaces)


def _xml_fields(element: Any, name: Any, prefix: str = "") -> dict[str, str]:
    fields = {f"{prefix}@{name(k)}": v for k, v in element.attrib.items()}
    for child in element:
        if not isinstance(child.tag, str):
            continue  # a comment or a processing instruction
        path = f"{prefix}{name(child.tag)}"
        if len(child):
            fields.update(_xml_fields(child, name, f"{path}/"))
        else:
            fields.update({f"{path}/@{name(k)}": v for k, v in child.attrib.items()})
            fields.setdefault(path, (child.text or "").strip())
    return fields


def keyed_sample(path: Path, fmt: str, head: bytes) -> KeyedSample:
    if fmt == "xml":
        return _xml(path)
    if fmt == "xlsx":
        return _xlsx(path)
    if fmt == "parquet":
        return _parquet(path)
    if fmt == "jsonl":
        return _json_lines(path, head)
    return _json_document(path)
