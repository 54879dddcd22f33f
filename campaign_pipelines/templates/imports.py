"""Import templates: the source file, the column mapping, the target and the error policy."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

import schemas
from campaign_pipelines.templates.common import (
    NAME_PATTERN, Collector, check_each_part, Decrypt, Launchable, Model, NumberFormat, Partitions, Schedule, _delimiter,
    _encoding, _one_character, _timezone, check_conditions, check_pattern, data_model, has_date_field,
)
from campaign_pipelines.templates import drops
from campaign_pipelines.templates.drops import Drop
from campaign_pipelines.text import scalar_text


class Width(Model):
    name: str
    start: Annotated[int, Field(ge=1)]
    length: Annotated[int, Field(ge=1)]


class Source(Model):
    path: str | None = None
    # The deployment's endpoint the file is on (resources/endpoint_file.py); none: the
    # local data folder. `path` is then under the endpoint's root.
    endpoint: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    # OpenPGP: the file is decrypted (resources/openpgp.py) before it is read.
    decrypt: Decrypt | None = None
    format: Literal["delimited", "fixed_width", "jsonl", "json", "parquet", "xlsx", "xml"] = "delimited"
    # format json: the key path (dotted) of the records' array in the document; none:
    # the document is the array. format xml: the record element's path from the root
    # (crm/people/person), prefixes from `namespaces`.
    records: Annotated[str, Field(min_length=1)] | None = None
    # format xml: prefix -> namespace URI, for `records` and the columns' paths.
    namespaces: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9._-]*$")], str] = {}
    # format xlsx: the sheet, by name or 1-based position; none: the first.
    sheet: Annotated[str, Field(min_length=1)] | Annotated[int, Field(ge=1)] | None = None
    delimiter: str = ","
    quote: str | None = '"'
    encoding: str = "utf-8"
    header: bool = True
    skip_lines: Annotated[int, Field(ge=0)] = 0
    compression: Literal["auto", "none", "gzip", "zip"] = "auto"
    widths: list[Width] | None = None
    limit: Annotated[int, Field(ge=1)] | None = None
    # Quoted values may hold line breaks (RFC 4180); null: yes wherever a quote is set.
    # false is the strict mode: a line with an unclosed quote is rejected on its own.
    multiline: bool | None = None
    # A quoted value still open after this many lines is an unclosed quote: its first
    # line is rejected and reading goes on with the next line.
    max_record_lines: Annotated[int, Field(ge=1)] = 100
    # NUL bytes (0x00) cannot be stored in a text value: reject the line, or strip them.
    nul_bytes: Literal["reject", "strip"] = "reject"
    # Only the lines whose mapped values pass (the export filter's vocabulary, on target
    # column names); the others are ignored, counted with their cause.
    filter: dict[str, Any] = {}

    _check_delimiter = field_validator("delimiter")(lambda v: _delimiter(v))
    _check_quote = field_validator("quote")(lambda v: _one_character(v, "quote"))
    _check_encoding = field_validator("encoding")(lambda v: _encoding(v))

    @model_validator(mode="after")
    def _shape(self) -> "Source":
        if self.format == "fixed_width":
            if not self.widths:
                raise ValueError("widths is required when format is fixed_width")
            names = [w.name for w in self.widths]
            if len(set(names)) != len(names):
                raise ValueError("widths has duplicate names")
            spans = sorted((w.start, w.start + w.length) for w in self.widths)
            for (_, end), (start, _) in zip(spans, spans[1:]):
                if start < end:
                    raise ValueError("widths overlap")
        elif self.widths:
            raise ValueError("widths is only for format: fixed_width")
        if self.records is not None and self.format not in ("json", "xml"):
            raise ValueError("records is only for format: json (the key path of the records' array) or xml (the record element's path)")
        if self.format == "xml" and self.records is None:
            raise ValueError("records is required for format: xml: the record element's path from the root (people/person)")
        if self.namespaces and self.format != "xml":
            raise ValueError("namespaces is only for format: xml")
        if self.format == "xml":
            for step in self.records.split("/"):  # type: ignore[union-attr]
                prefix, _, local = step.rpartition(":")
                if not local or (prefix and prefix not in self.namespaces):
                    raise ValueError(f"records: {step!r} is not an element name" + (f" (no prefix {prefix!r} in namespaces)" if prefix else ""))
        if self.format == "json" and self.encoding.replace("-", "").replace("_", "").lower() not in ("utf8", "utf8sig"):
            raise ValueError("a JSON document is read as UTF-8 (RFC 8259); encoding is only for the line formats")
        if self.format in ("parquet", "xlsx") and self.compression in ("gzip", "zip"):
            raise ValueError(f"a {self.format} file compresses its own content; compression is only for the text formats")
        if self.sheet is not None and self.format != "xlsx":
            raise ValueError("sheet is only for format: xlsx")
        if self.quote is not None and self.quote == self.delimiter:
            raise ValueError("quote and delimiter must differ")
        if self.multiline and (self.quote is None or self.format != "delimited"):
            raise ValueError("multiline needs a delimited format with a quote character")
        return self

    @property
    def keyed(self) -> bool:
        """Whether records name their fields (JSON keys, Parquet columns, XML paths): columns map by
        name or key path, never by position, and there is no header line."""
        return self.format in ("jsonl", "json", "parquet", "xml")

    @property
    def joins_lines(self) -> bool:
        """Whether a quoted value may run over several lines."""
        if self.multiline is None:
            return self.quote is not None and self.format == "delimited"
        return self.multiline


class LinkBy(Model):
    via: str | None = None  # None: the schema's link `via`


class ColumnMapping(Model):
    source: str | int | None = None
    target: str
    value: Any = None
    trim: bool = False
    case: Literal["lower", "upper", "capitalize", "none"] = "none"
    format: str | NumberFormat | None = None
    remap: dict[str, str] | None = None
    on_unmapped: Literal["reject", "default", "keep"] = "reject"
    on_error: Literal["reject_line", "ignore_value", "default"] = "reject_line"
    default: Any = None
    # A link (`target` is a link of the table): the linked table's unique field the value is.
    link: LinkBy | None = None
    on_missing_link: Literal["reject", "ignore", "create"] = "reject"
    # Campaign's reconciliation options, per field: always; if_empty (only fill an empty
    # stored value: enrich without overwriting); on_insert (only when the record is created).
    update: Literal["always", "if_empty", "on_insert"] = "always"
    empty_values: Literal["keep", "overwrite"] | None = None  # None: the target's
    # A timestamp read without an offset is in this time zone (stored in UTC).
    timezone: str | None = None

    _check_timezone = field_validator("timezone")(lambda v: v if v is None else _timezone(v))

    @field_validator("remap", mode="before")
    @classmethod
    def _remap_as_text(cls, v: Any) -> Any:
        # YAML reads `Yes: Y` keys as booleans; the file holds text.
        if isinstance(v, dict):
            return {scalar_text(k): scalar_text(val) for k, val in v.items()}
        return v

    @model_validator(mode="after")
    def _source_or_value(self) -> "ColumnMapping":
        has_value = "value" in self.model_fields_set
        if (self.source is None) == (not has_value):
            raise ValueError("give exactly one of source (a file column) or value (a constant)")
        if isinstance(self.source, int) and self.source < 1:
            raise ValueError("a column position (source) is 1-based")
        if self.on_unmapped == "default" and self.remap is None:
            raise ValueError("on_unmapped applies only with remap")
        if (self.on_unmapped == "default" or self.on_error == "default") and "default" not in self.model_fields_set:
            raise ValueError("a default value is required when on_unmapped or on_error is 'default'")
        return self

    @property
    def is_constant(self) -> bool:
        return self.source is None


class ListTarget(Model):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    mode: Literal["append", "replace"] = "append"


Operation = Literal["insert_or_update", "insert", "update", "reconcile_only", "delete"]


class ImportTarget(Model):
    table: str = Field(alias="schema")
    operation: Operation = "insert_or_update"
    keys: list[str] = Field(min_length=1)
    secondary_keys: list[str] = []
    duplicates_in_file: Literal["update", "ignore", "reject"] = "update"
    existing_records: Literal["update", "ignore"] = "update"
    empty_values: Literal["keep", "overwrite"] = "keep"
    recipient_list: ListTarget | None = Field(None, alias="list")
    service: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    @field_validator("table")
    @classmethod
    def _known_table(cls, v: str, info: ValidationInfo) -> str:
        importable = data_model(info).importable
        if v not in importable:
            raise ValueError(f"unknown schema {v!r}; imports can target: {', '.join(importable)}")
        return v


class RejectsCopy(Model):
    """Where a run's rejects files (the lines, in the input's format, and their reasons) are
    also delivered: a folder of an endpoint (default: rejects/<template>)."""

    endpoint: str
    folder: str | None = None


class ErrorPolicy(Model):
    on_error: Literal["reject_line", "stop"] = "reject_line"
    max_rejects: Annotated[int, Field(ge=0)] | None = None
    # Rejected lines / lines read: above max_reject_rate the run fails (nothing written);
    # above warn_reject_rate it loads with a warning (a yellow check in the UI).
    max_reject_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    warn_reject_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    stop_if_first_lines_rejected: Annotated[int, Field(ge=1)] | None = None
    # A file with no data line is an empty delta (finished, nothing written) unless this is set.
    fail_if_empty: bool = False
    # The rejects files are also delivered to an endpoint (the partner who sent the file).
    rejects_to: RejectsCopy | None = None


# Flat launch config key -> (template section, key): what the Launchpad and `--set` take.
LAUNCH_KEYS: dict[str, tuple[str, str]] = {
    "file": ("source", "path"),
    "delimiter": ("source", "delimiter"),
    "quote": ("source", "quote"),
    "encoding": ("source", "encoding"),
    "skip_lines": ("source", "skip_lines"),
    "limit": ("source", "limit"),
    "operation": ("target", "operation"),
    "on_error": ("errors", "on_error"),
    "max_rejects": ("errors", "max_rejects"),
}

class ImportPart(Model):
    """One file of a multiple import (templates/drops.py): its own source, target and
    mapping; its errors policy, or the template's."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=40)]
    source: Source = Source()
    target: ImportTarget
    columns: list[ColumnMapping] = Field(min_length=1)
    errors: ErrorPolicy | None = None


class ImportTemplate(Launchable):
    launch_keys: ClassVar[dict[str, tuple[str, str]]] = LAUNCH_KEYS
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
    kind: Literal["import"]
    label: str | None = None
    description: str | None = None
    # One file: source, target and columns. The related files of one drop: parts and drop
    # (and target and columns stay None and empty: templates/drops.py).
    source: Source = Source()
    target: ImportTarget = None  # type: ignore[assignment]
    columns: list[ColumnMapping] = []
    parts: list[ImportPart] = []
    drop: Drop | None = None
    errors: ErrorPolicy = ErrorPolicy()
    # Recurring runs: wired by campaign_pipelines.schedules and .sensors.
    schedule: Schedule | None = None
    collector: Collector | None = None
    partitions: Partitions | None = None

    @model_validator(mode="before")
    @classmethod
    def _whole_parts(cls, data: Any, info: ValidationInfo) -> Any:
        """Each part is checked as the one-file import it would be (with the template's errors unless it has its own)."""
        return check_each_part(cls, data, info, "import", ("source", "target", "columns", "errors"), inherited=("errors",))

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "ImportTemplate":
        self._model = data_model(info)
        if self.parts or self.drop:
            drops.check_multiple(self)
            return self
        if self.target is None or not self.columns:
            raise ValueError("give target and columns (one file), or parts (the related files of one drop)")
        spec = self.model.table(self.target.table)
        targets = [c.target for c in self.columns]
        for i, column in enumerate(self.columns):
            self._check_column(i, column, spec)
        if len(set(targets)) != len(targets):
            dup = next(t for t in targets if targets.count(t) > 1)
            raise ValueError(f"columns: {dup!r} is mapped more than once")
        for key_list, name in ((self.target.keys, "keys"), (self.target.secondary_keys, "secondary_keys")):
            for k in key_list:
                if k not in targets:
                    raise ValueError(f"target.{name}: {k!r} is not a mapped column")
        self._check_filter(spec)
        self._check_required(spec)
        generated_keys = [k for k in self.target.keys if not spec.link(k) and spec.field(k).generated]
        if generated_keys and self.target.operation in ("insert", "insert_or_update"):
            raise ValueError(
                f"target.keys: {generated_keys[0]!r} is generated by the database; "
                "use it with update, delete or reconcile_only"
            )
        if (self.target.recipient_list or self.target.service) and self.target.table != "recipient":
            raise ValueError("target.list/target.service: lists and services hold recipients; the target is " + self.target.table)
        if (self.target.recipient_list or self.target.service) and self.target.operation == "delete":
            raise ValueError("target.list/target.service: cannot add deleted records to a list or service")
        for key, path in (("source.path", self.source.path), ("partitions.daily.path", self.partitions and self.partitions.daily.path)):
            if path:
                check_pattern(key, path, date=dt.date(2000, 1, 1))
        if self.partitions:
            daily = self.partitions.daily
            if self.collector:
                raise ValueError(
                    "collector: a daily partitioned import reads its day's file (partitions.daily.path); "
                    "a collected file has no day: use one or the other"
                )
            if daily.column is not None:
                raise ValueError("partitions.daily.column: only for exports; an import partition reads its day's file")
            if daily.path is None and not (self.source.path and has_date_field(self.source.path)):
                raise ValueError(
                    "partitions.daily.path: required (a file pattern with {date:...}) unless source.path holds {date:...}"
                )
        return self

    def _check_column(self, i: int, column: ColumnMapping, spec: schemas.TableSpec) -> None:
        where = f"columns[{i}].target"
        link = spec.link(column.target)
        if link is None and column.target not in spec.field_names:
            names = ", ".join([*(f.name for f in spec.fields if f.importable and not f.foreign_key), *(f"{lk.name} (link)" for lk in spec.links)])
            raise ValueError(f"{where}: {spec.name} has no column {column.target!r} (it has {names})")
        if link is not None:
            via = (column.link.via if column.link else None) or link.via
            linked = self.model.table(link.table)
            if via is None:
                raise ValueError(f"columns[{i}].link.via: {column.target} is a link to {link.table}; say which unique field of {link.table} the value is (link: {{via: email}})")
            if not linked.has(via) or not (linked.field(via).unique or via in linked.primary_key):
                unique = ", ".join(f.name for f in linked.fields if f.unique or f.name in linked.primary_key)
                raise ValueError(f"columns[{i}].link.via: {via!r} is not a unique field of {link.table} (use one of {unique})")
            if column.on_missing_link == "create":
                required = [f.name for f in linked.fields if not f.nullable and f.default is None and not f.generated and not f.managed and f.name != via]
                if via == "id" or required:
                    why = "its id is generated" if via == "id" else f"{', '.join(required)} would be empty"
                    raise ValueError(f"columns[{i}].on_missing_link: create cannot add a {link.table} record from {via} alone ({why})")
        elif column.link is not None or column.on_missing_link != "reject":
            raise ValueError(f"columns[{i}].link: {column.target} is a field of {spec.name}, not a link")
        f = self.value_field(column.target, spec)
        if link is None:
            if not f.importable:
                raise ValueError(f"{where}: {spec.name}.{f.name} is set by the importer, not by a file")
            if f.generated and column.target not in self.target.keys:
                raise ValueError(f"{where}: {spec.name}.{f.name} is generated; map it only as a key")
        numeric = ("integer", "decimal", "float")
        if isinstance(column.format, NumberFormat) and f.kind not in numeric:
            raise ValueError(f"columns[{i}].format: a number format needs a number column, {f.name} is a {f.kind}")
        if isinstance(column.format, str) and f.kind not in ("date", "timestamp"):
            raise ValueError(f"columns[{i}].format: a date format needs a date column, {f.name} is a {f.kind}")
        if column.timezone and f.kind != "timestamp":
            raise ValueError(f"columns[{i}].timezone: only for a timestamp column, {f.name} is a {f.kind}")
        keyed = column.target in (*self.target.keys, *self.target.secondary_keys)
        if keyed and (column.update != "always" or column.empty_values is not None):
            raise ValueError(f"columns[{i}].update: {column.target} is a reconciliation key; it is never updated")
        if self.source.format == "fixed_width" and column.source is not None:
            names = [w.name for w in self.source.widths or []]
            if column.source not in names:
                raise ValueError(f"columns[{i}].source: {column.source!r} is not a name in source.widths")
        elif self.source.keyed and column.source is not None:
            if self.source.format == "xml":
                if not isinstance(column.source, str) or not all(column.source.split("/")):
                    raise ValueError(f"columns[{i}].source: an XML field is named by its path in the record (email, @id, address/city, .)")
            elif not isinstance(column.source, str) or not all(column.source.split(".")):
                raise ValueError(
                    f"columns[{i}].source: a {self.source.format} field is named by its key path "
                    "(email, address.city), not by a position"
                )
        elif not self.source.header and isinstance(column.source, str):
            raise ValueError(
                f"columns[{i}].source: with header: false, give the column's 1-based position, not a title"
            )
        elif self.source.header and isinstance(column.source, int) and self.source.format in ("delimited", "xlsx"):
            raise ValueError(f"columns[{i}].source: with header: true, give the column's title")

    def _check_filter(self, spec: schemas.TableSpec) -> None:
        targets = [c.target for c in self.columns]
        for column, condition in self.source.filter.items():
            if column not in targets:
                raise ValueError(f"source.filter.{column}: not a mapped column (the filter reads mapped values: {', '.join(targets)})")
            check_conditions(self.value_field(column, spec), condition, f"source.filter.{column}")

    def _check_required(self, spec: schemas.TableSpec) -> None:
        """An insert must be able to fill every field that cannot be empty."""
        if self.target.operation not in ("insert", "insert_or_update"):
            return
        mapped = {spec.link(c.target).column if spec.link(c.target) else c.target for c in self.columns}
        for f in spec.fields:
            if not f.nullable and f.default is None and not (f.generated or f.managed) and f.name not in mapped:
                raise ValueError(f"columns: {spec.name}.{f.name} cannot be empty (nullable: false) and is not mapped; map it or make the operation update")

    def value_field(self, target: str, spec: schemas.TableSpec | None = None) -> schemas.Field:
        """The field a mapped value is typed and checked as: the target's own, or for a
        link the linked table's `via` field (an e-mail is checked as an e-mail)."""
        spec = spec or self.table
        link = spec.link(target)
        if link is None:
            return spec.field(target)
        column = next(c for c in self.columns if c.target == target)
        via = (column.link.via if column.link else None) or link.via
        f = self.model.table(link.table).field(via)  # type: ignore[arg-type]
        return dataclasses.replace(f, name=target, unique=False, nullable=link.nullable, generated=False, default=None)

    def with_overrides(self, overrides: dict[str, Any]) -> "ImportTemplate":
        if self.parts:
            return drops.with_drop_overrides(self, overrides)
        return super().with_overrides(overrides)

    def launch_values(self) -> dict[str, Any]:
        return drops.drop_launch_values(self) if self.parts else super().launch_values()

    @property
    def imports(self) -> list["ImportTemplate"]:
        """The one-file imports the template runs: itself, or its parts' in link order."""
        return drops.part_templates(self) if self.parts else [self]

    @property
    def tables(self) -> list[str]:
        """The tables it writes, in load order."""
        return list(dict.fromkeys(t.target.table for t in self.imports))

    @property
    def endpoint(self) -> str | None:
        """The endpoint its files are on (a multiple import's parts share one); None: the data folder."""
        return self.imports[0].source.endpoint

    @property
    def collected_files(self) -> str | None:
        """The glob of the files its collector lists: a multiple import's, every file of the
        drop folders `watch` matches."""
        if self.collector is None:
            return None
        return self.collector.watch + ("/*" if self.parts else "")

    @property
    def asset_name(self) -> str:
        """The template whose assets a run reports: a part's is its multiple import's."""
        return self.name.partition(".")[0]

    @property
    def part_name(self) -> str | None:
        """A multiple import's part: its name (the template is <template>.<part>)."""
        return self.name.partition(".")[2] or None

    def mapping(self, target: str) -> ColumnMapping:
        return next(c for c in self.columns if c.target == target)

    def file_for(self, day: dt.date) -> str | None:
        """The file to import: source.path with {date:...} filled in with `day`."""
        return self.source.path.format(date=day) if self.source.path else None

    @property
    def partition_path(self) -> str | None:
        """The file a daily partition reads, with {date:...} still to fill."""
        if self.partitions is None:
            return None
        return self.partitions.daily.path or self.source.path

    @property
    def table(self) -> schemas.TableSpec:
        return self.model.table(self.target.table)

    @property
    def display_label(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()
