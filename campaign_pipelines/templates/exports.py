"""Export templates: the query (table, columns, filter, order) and the destination file."""

from __future__ import annotations

import codecs
import datetime as dt
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

import schemas
from campaign_pipelines.templates.common import (
    check_each_part, format_validation_error, NAME_PATTERN, Encrypt, Launchable, Model, NumberFormat, Partitions, Schedule, _delimiter, _encoding, name_suffix,
    _one_character, _timezone, check_conditions, check_pattern, data_model,
)
from campaign_pipelines.errors import TemplateError
from campaign_pipelines.templates.grouping import AGGREGATES, aggregate_field, check_grouping, group_keys, grouped
from campaign_pipelines.templates.paths import collection_path, follow, label_key, value_parts
from campaign_pipelines.text import scalar_text


EXPORT_LAUNCH_KEYS: dict[str, tuple[str, str]] = {
    "output": ("destination", "path"),
    "delimiter": ("destination", "delimiter"),
    "quote": ("destination", "quote"),
    "encoding": ("destination", "encoding"),
    "header": ("destination", "header"),
    "limit": ("source", "limit"),
}
# Keys where null means something (no limit); elsewhere null means "as the template says".

# Files of text, every value formatted; the others keep each value's type.
TEXT_FORMATS = ("delimited", "fixed_width")
XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")  # an XML element or attribute name, no namespace
# Python codec name -> the name an XML declaration gives it (IANA).
XML_ENCODINGS = {"utf-8": "UTF-8", "utf-16": "UTF-16", "cp1252": "windows-1252", "latin-1": "ISO-8859-1",
                 "iso8859-15": "ISO-8859-15", "ascii": "US-ASCII"}


def declared_encoding(encoding: str) -> str | None:
    """The XML declaration's name of a codec, if an XML export may be written in it."""
    return XML_ENCODINGS.get(codecs.lookup(encoding).name)
FORMATS = (*TEXT_FORMATS, "jsonl", "json", "parquet", "xml")

PARTS = ("year", "quarter", "month", "day", "hour", "minute", "second", "dow", "doy")


class ExportColumn(Model):
    column: str | None = None  # a column, or a linked one: recipient.email
    value: Any = None  # a constant, or a calculated text: "{last_name} {first_name}"
    collection: str | None = None  # <table>.<column> or <table>.<link>.<column>
    link: str | None = None  # collection: the table's link to the exported record, when it has several
    separator: str = ","  # collection: between values
    part: Literal[PARTS] | None = None  # type: ignore[valid-type]
    labels: dict[str, str] | None = None  # value -> label; other values pass unchanged
    label: str | None = None
    case: Literal["lower", "upper", "capitalize", "none"] = "none"
    format: str | NumberFormat | None = None
    # Timestamps (stored in UTC) are written in this IANA zone; default UTC.
    timezone: str | None = None
    width: Annotated[int, Field(ge=1)] | None = None  # fixed-width destinations
    # Grouped exports: the column's values over each group (count alone counts the rows).
    aggregate: Literal[AGGREGATES] | None = None  # type: ignore[valid-type]
    # An XML destination: the column as a child element of the record, or an attribute.
    xml: Literal["element", "attribute"] = "element"

    _check_timezone = field_validator("timezone")(lambda v: v if v is None else _timezone(v))

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        if not v:
            raise ValueError("give at least one value: label pair")
        for value, label in v.items():
            if value is None or isinstance(value, (dict, list)) or label is None or isinstance(label, (dict, list)):
                raise ValueError(f"{value!r}: {label!r}: values and labels are plain values")
        return {scalar_text(value): scalar_text(label) for value, label in v.items()}

    @model_validator(mode="after")
    def _one_source(self) -> "ExportColumn":
        given = [k for k in ("column", "value", "collection") if k in self.model_fields_set and (k == "value" or getattr(self, k) is not None)]
        if self.aggregate is not None and self.column is None:
            if self.aggregate != "count" or given:
                raise ValueError("aggregate goes with column (or, for count, alone: the rows)")
            if self.label is None:
                raise ValueError("a count of rows needs a label")
            return self
        if len(given) != 1:
            raise ValueError("give exactly one of column (a table column), value (a constant or calculated text) or collection")
        if self.aggregate is not None:
            for key in ("part", "labels"):
                if key in self.model_fields_set:
                    raise ValueError(f"{key} does not go with aggregate")
        if self.column is None and self.collection is None and self.label is None:
            raise ValueError("a calculated value needs a label" if self.calculated else "a constant (value) needs a label")
        for key, needs in (("part", "column"), ("labels", "column"), ("separator", "collection"), ("link", "collection")):
            if key in self.model_fields_set and getattr(self, needs) is None:
                raise ValueError(f"{key} goes with {needs}")
        return self

    @property
    def calculated(self) -> bool:
        """A value holding placeholders: computed in SQL, per row."""
        if self.column is not None or self.collection is not None or not isinstance(self.value, str):
            return False
        try:
            return any(name is not None for _, name in value_parts(self.value))
        except ValueError:
            return True  # reported as such by the template's checks

    @property
    def constant(self) -> str | None:
        """A constant's text (braces unescaped in a string)."""
        if isinstance(self.value, str):
            return "".join(literal for literal, _ in value_parts(self.value))
        return scalar_text(self.value)

    @property
    def title(self) -> str:
        return self.label or self.column or self.collection or ""


def column_kind(model: schemas.DataModel, spec: schemas.TableSpec, column: ExportColumn, where: str) -> str | None:
    """Check one column's paths against the data model; the kind of value the query
    gives for it (None for a constant, which never reaches SQL)."""
    if column.aggregate is not None:
        try:
            return aggregate_field(model, spec, column).kind
        except ValueError as exc:
            raise ValueError(f"{where}.{exc}") from None
    if column.column is not None:
        try:
            f = follow(model, spec, column.column).field
        except ValueError as exc:
            raise ValueError(f"{where}.column: {exc}") from None
        kind = f.kind
        if column.part is not None:
            if kind not in ("date", "timestamp"):
                raise ValueError(f"{where}.part: a date part needs a date or timestamp column, {column.column} is a {kind}")
            if kind == "date" and column.part in ("hour", "minute", "second"):
                raise ValueError(f"{where}.part: {column.column} is a date: it has no {column.part}")
            kind = "integer"
        for key in column.labels or {}:
            try:
                label_key(f if column.part is None else None, key)
            except ValueError as exc:
                raise ValueError(f"{where}.labels: {exc}") from None
        return "string" if column.labels is not None else kind
    if column.collection is not None:
        try:
            collection_path(model, spec, column.collection, column.link)
        except ValueError as exc:
            raise ValueError(f"{where}.{exc}") from None
        return "string"
    if not isinstance(column.value, str):
        return None
    try:
        names = [name for _, name in value_parts(column.value) if name is not None]
        for name in names:
            try:
                follow(model, spec, name)
            except ValueError as exc:
                raise ValueError(f"{{{name}}}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{where}.value: {exc}") from None
    return "string" if names else None


class Differential(Model):
    column: str


class ExportSource(Model):
    table: str = Field(alias="schema")
    columns: list[ExportColumn] = Field(min_length=1)
    filter: dict[str, Any] = {}
    order_by: list[str] = []
    distinct: bool = False
    limit: Annotated[int, Field(ge=1)] | None = None
    differential: Differential | None = None
    # Grouped exports (grouping.py): the columns or exported titles each row is a group of,
    # and conditions on aggregated columns, by title.
    group_by: list[str] = []
    having: dict[str, Any] = {}

    @field_validator("table")
    @classmethod
    def _known_table(cls, v: str, info: ValidationInfo) -> str:
        tables = data_model(info).tables
        if v not in tables:
            raise ValueError(f"unknown schema {v!r}; known: {', '.join(sorted(tables))}")
        return v


class Destination(Model):
    path: str
    # The deployment's endpoint the file is delivered to, whole or not at all; none: the
    # local data folder.
    endpoint: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    # An empty `<path><marker>` written once the file is in place (say `.done`), for the
    # readers that wait for one.
    marker: str | None = None
    # OpenPGP: the finished file is encrypted to these public keys before it is delivered.
    encrypt: Encrypt | None = None
    format: Literal[FORMATS] = "delimited"  # type: ignore[valid-type]
    delimiter: str = ","
    quote: str | None = '"'
    header: bool = True
    encoding: str = "utf-8"
    compression: Literal["none", "gzip"] = "none"
    # Cells a spreadsheet would run as a formula (=, +, -, @, tab, CR) get a leading '.
    neutralize_formulas: bool = True
    # An XML destination: the document's root element and each row's element.
    root: str = "records"
    record: str = "record"

    _check_delimiter = field_validator("delimiter")(lambda v: _delimiter(v))
    _check_quote = field_validator("quote")(lambda v: _one_character(v, "quote"))
    _check_encoding = field_validator("encoding")(lambda v: _encoding(v))
    _check_marker = field_validator("marker")(lambda v: name_suffix(v, "marker"))

    @model_validator(mode="after")
    def _typed_formats(self) -> "Destination":
        if self.format in ("jsonl", "json") and self.encoding != "utf-8":  # as codecs names it
            raise ValueError(f"encoding: JSON is written in UTF-8, not {self.encoding}")
        if self.format == "parquet" and self.compression != "none":
            raise ValueError("compression: Parquet compresses its own pages (zstd); leave compression: none")
        if self.format == "xml":
            if declared_encoding(self.encoding) is None:
                raise ValueError(f"encoding: an XML file is written in {', '.join(XML_ENCODINGS)}, not {self.encoding}")
            for key in ("root", "record"):
                if not XML_NAME.match(getattr(self, key)):
                    raise ValueError(f"{key}: {getattr(self, key)!r} is not an XML element name (a letter or _, then letters, digits, . _ -)")
        elif "root" in self.model_fields_set or "record" in self.model_fields_set:
            raise ValueError("root and record are for an XML destination (format: xml)")
        return self


class ExportPart(Model):
    """One file of a multiple export: its own query and destination."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
    source: ExportSource
    destination: Destination


class ExportTemplate(Launchable):
    launch_keys: ClassVar[dict[str, tuple[str, str]]] = EXPORT_LAUNCH_KEYS
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
    kind: Literal["export"]
    label: str | None = None
    description: str | None = None
    # One file: source and destination. Several files from one snapshot: parts (and
    # these stay None: typed without None so that a schema's errors name the exact key).
    source: ExportSource = None  # type: ignore[assignment]
    destination: Destination = None  # type: ignore[assignment]
    parts: list[ExportPart] = []
    schedule: Schedule | None = None
    partitions: Partitions | None = None

    @model_validator(mode="before")
    @classmethod
    def _whole_parts(cls, data: Any, info: ValidationInfo) -> Any:
        """Each part is checked as the one-file export it would be."""
        return check_each_part(cls, data, info, "export", ("source", "destination"))

    @model_validator(mode="before")
    @classmethod
    def _yes_no_label_keys(cls, data: Any, info: ValidationInfo) -> Any:
        """YAML reads yes, no, on, off, true and false as booleans: a `labels` key read so
        for a column holding no booleans was meant as text (and would match nothing)."""
        model = data_model(info)
        try:
            spec = model.table(data["source"]["schema"])
            columns = list(data["source"]["columns"])
        except (TypeError, KeyError):
            return data
        for i, column in enumerate(columns):
            if not (isinstance(column, dict) and isinstance(column.get("labels"), dict) and isinstance(column.get("column"), str)):
                continue
            read_as = next((key for key in column["labels"] if isinstance(key, bool)), None)
            try:
                kind = follow(model, spec, column["column"]).field.kind
            except ValueError:
                continue
            if read_as is not None and (kind != "boolean" or column.get("part")):
                raise ValueError(f"source.columns[{i}].labels: a key was read as {str(read_as).lower()} (YAML reads yes, no, "
                                 "on, off, true and false so); quote it, such as 'yes'")
        return data

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "ExportTemplate":
        self._model = model = data_model(info)
        if self.parts:
            return self._consistent_parts()
        if self.source is None or self.destination is None:
            raise ValueError("give source and destination (one file), or parts (several files from one snapshot)")
        spec = model.table(self.source.table)
        for i, column in enumerate(self.source.columns):
            kind = column_kind(model, spec, column, f"source.columns[{i}]")
            if self.destination.format == "fixed_width" and column.width is None:
                raise ValueError(f"source.columns[{i}].width: required for a fixed_width destination")
            if column.timezone is not None and (kind != "timestamp" or column.part is not None or column.labels is not None):
                raise ValueError(f"source.columns[{i}].timezone: only for a timestamp column written as a timestamp")
            if column.format is not None and kind is not None:
                if column.column is not None and column.labels is None:
                    shown = f"{column.column} is a {kind}" if column.part is None else f"its {column.part} is a whole number"
                else:
                    shown = f"{column.title} is text"
                if isinstance(column.format, str) and kind not in ("date", "timestamp"):
                    raise ValueError(f"source.columns[{i}].format: a date format needs a date column, {shown}")
                if isinstance(column.format, NumberFormat) and kind != "integer":
                    raise ValueError(f"source.columns[{i}].format: a number format needs a number column, {shown}")
        for name in self.source.order_by:
            if grouped(self.source) and name in group_keys(self.source):
                continue  # an exported title; grouping.py checks the order
            try:
                follow(model, spec, name)
            except ValueError as exc:
                raise ValueError(f"source.order_by: {exc}") from None
        check_grouping(model, spec, self.source)
        if self.source.differential:
            column = self.source.differential.column
            if column not in spec.field_names or spec.field(column).kind not in ("timestamp", "date", "integer"):
                raise ValueError(f"source.differential.column: {column!r} must be a timestamp, date or number column of {spec.name}")
        for column, condition in self.source.filter.items():
            try:
                filtered = follow(model, spec, column).field
            except ValueError as exc:
                raise ValueError(f"source.filter.{column}: {exc}") from None
            check_conditions(filtered, condition, f"source.filter.{column}")
        if self.source.distinct:
            # Ordered by what is selected: a column as stored, not through a part or labels.
            exported = {c.column for c in self.source.columns if c.part is None and c.labels is None}
            for name in self.source.order_by:
                if name not in exported:
                    raise ValueError(f"source.order_by: with distinct, {name!r} must be an exported column")
        check_pattern("destination.path", self.destination.path, date=dt.datetime(2000, 1, 1), run_id="run")
        for i, column in enumerate(self.source.columns):
            if self.destination.format != "xml" and "xml" in column.model_fields_set:
                raise ValueError(f"source.columns[{i}].xml: only for an XML destination (format: xml)")
            if self.destination.format == "xml" and not XML_NAME.match(column.title):
                raise ValueError(f"source.columns[{i}]: {column.title!r} is not an XML name; give a label (letters, digits, . _ -)")
        titles = [c.title for c in self.source.columns]
        if len(set(titles)) != len(titles):
            dup = next(t for t in titles if titles.count(t) > 1)
            raise ValueError(f"source.columns: the title {dup!r} is used twice; give a label")
        if self.partitions:
            daily = self.partitions.daily
            if daily.path is not None:
                raise ValueError("partitions.daily.path: only for imports; an export partition fills destination.path's {date:...}")
            column = self.partition_column
            if column is None:
                raise ValueError("partitions.daily.column: required (the timestamp that dates a row) unless source.differential is set")
            if column not in spec.field_names or spec.field(column).kind not in ("timestamp", "date"):
                raise ValueError(f"partitions.daily.column: {column!r} must be a timestamp or date column of {spec.name}")
        return self

    def _consistent_parts(self) -> "ExportTemplate":
        if self.source is not None or self.destination is not None:
            raise ValueError("parts: a multiple export's source and destination are its parts'; remove the top-level ones")
        if self.partitions is not None:
            raise ValueError("partitions: a multiple export runs whole (each part's differential picks its rows)")
        for what, values in (("name", [p.name for p in self.parts]), ("destination.path", [p.destination.path for p in self.parts])):
            if len(set(values)) != len(values):
                raise ValueError(f"parts: two parts have the {what} {next(v for v in values if values.count(v) > 1)!r}")
        return self

    def with_overrides(self, overrides: dict[str, Any]) -> "ExportTemplate":
        if not self.parts:
            return super().with_overrides(overrides)
        unknown = [k for k in overrides if k != "limit"]
        if unknown:
            raise TemplateError(f"launch config for {self.name}: a multiple export takes limit only, not {', '.join(unknown)}")
        data = self.model_dump(by_alias=True, exclude_unset=True)
        if "limit" in overrides:
            for part in data["parts"]:
                part["source"]["limit"] = overrides["limit"]
        try:
            return type(self).parse(data, self.model)
        except ValidationError as exc:
            raise TemplateError(f"launch config for {self.name}: {format_validation_error(exc)}") from None

    def launch_values(self) -> dict[str, Any]:
        if not self.parts:
            return super().launch_values()
        limits = {p.source.limit for p in self.parts}
        return {"limit": limits.pop() if len(limits) == 1 else None}

    @property
    def exports(self) -> list["ExportTemplate"]:
        """The one-file exports the template runs: itself, or one per part, named
        <template>.<part> (the part's differential watermark is kept under that name)."""
        if not self.parts:
            return [self]
        return [
            self.model_copy(update={"name": f"{self.name}.{p.name}", "source": p.source, "destination": p.destination, "parts": []})
            for p in self.parts
        ]

    @property
    def tables(self) -> list[str]:
        """The tables it reads, in part order."""
        return list(dict.fromkeys(t.source.table for t in self.exports))

    @property
    def partition_column(self) -> str | None:
        """The column whose day selects a partition's rows."""
        if self.partitions is None:
            return None
        differential = self.source.differential.column if self.source.differential else None
        return self.partitions.daily.column or differential

    @property
    def table(self) -> schemas.TableSpec:
        return self.model.table(self.source.table)

    @property
    def display_label(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()
