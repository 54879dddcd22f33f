"""Job templates: the typed model of the spec's YAML, and the catalog that loads them.

Built-in templates ship inside the package (read-only); user templates live in
CAMPAIGN_TEMPLATES_DIR. A template that fails validation is reported with its file,
key and reason, and the others still load.
"""

from __future__ import annotations

import codecs
import datetime as dt
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, ClassVar, Literal, Self, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import schemas
from campaign_pipelines.errors import TemplateError
from campaign_pipelines.text import scalar_text

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
BUILTIN_PACKAGE = "campaign_pipelines.job_templates"


class Model(BaseModel):
    # Unknown keys are errors: a typo must not be silently ignored.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _one_character(value: str | None, key: str) -> str | None:
    if value is None:
        return None
    if value == "\\t":
        return "\t"
    if len(value) != 1:
        raise ValueError(f"{key} must be one character, got {value!r}")
    return value


def _delimiter(value: str) -> str:
    value = _one_character(value, "delimiter")
    if value in ("\n", "\r"):
        raise ValueError("delimiter cannot be a line break")
    return value


def _encoding(value: str) -> str:
    try:
        return codecs.lookup(value).name
    except LookupError:
        raise ValueError(f"unknown encoding {value!r}") from None


class Width(Model):
    name: str
    start: Annotated[int, Field(ge=1)]
    length: Annotated[int, Field(ge=1)]


class Source(Model):
    path: str | None = None
    format: Literal["delimited", "fixed_width"] = "delimited"
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
        if self.quote is not None and self.quote == self.delimiter:
            raise ValueError("quote and delimiter must differ")
        if self.multiline and (self.quote is None or self.format != "delimited"):
            raise ValueError("multiline needs a delimited format with a quote character")
        return self

    @property
    def joins_lines(self) -> bool:
        """Whether a quoted value may run over several lines."""
        if self.multiline is None:
            return self.quote is not None and self.format == "delimited"
        return self.multiline


class NumberFormat(Model):
    decimal: str = "."
    thousands: str | None = None


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
    def _known_table(cls, v: str) -> str:
        if v not in schemas.IMPORTABLE:
            raise ValueError(f"unknown schema {v!r}; imports can target: {', '.join(schemas.IMPORTABLE)}")
        return v


class ErrorPolicy(Model):
    on_error: Literal["reject_line", "stop"] = "reject_line"
    max_rejects: Annotated[int, Field(ge=0)] | None = None
    stop_if_first_lines_rejected: Annotated[int, Field(ge=1)] | None = None
    # A file with no data line is an empty delta (finished, nothing written) unless this is set.
    fail_if_empty: bool = False


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r}; use an IANA name such as Europe/Paris") from None
    return value


def _inside_data_dir(value: str) -> str:
    """A folder or glob relative to CAMPAIGN_DATA_DIR; checked again when resolved."""
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{value!r} must be a relative path under CAMPAIGN_DATA_DIR (no '..', not absolute)")
    return value


def check_pattern(key: str, pattern: str, **fields: Any) -> None:
    """A path pattern may fill in only `fields` (such as {date:%Y%m%d})."""
    try:
        pattern.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        names = " and ".join("{date:…}" if name == "date" else f"{{{name}}}" for name in fields)
        raise ValueError(f"{key}: only {names} can be filled in ({exc})") from None


def has_date_field(pattern: str) -> bool:
    return any(name == "date" for _, name, _, _ in string.Formatter().parse(pattern) if name is not None)


class Schedule(Model):
    cron: str
    timezone: str = "UTC"
    default_status: Literal["running", "stopped"] = "stopped"

    _check_timezone = field_validator("timezone")(lambda v: _timezone(v))

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, v: str) -> str:
        # Dagster's own check (what it accepts, it schedules); imported here because
        # loading dagster costs a second that `templates list` need not pay.
        from dagster._utils.schedules import is_valid_cron_string

        if not is_valid_cron_string(v):
            raise ValueError(f"{v!r} is not a valid cron expression (five fields, such as '0 2 * * *')")
        return v


class Collector(Model):
    watch: str  # a glob under CAMPAIGN_DATA_DIR
    archive: str = "archive"  # imported files go here, with the run id in their name
    error: str = "error"  # files whose run failed go here
    interval_seconds: Annotated[int, Field(ge=1)] = 30
    # A file is complete when `<file><ready_marker>` exists (say `.done`); without a
    # marker, when its size and mtime did not change between two ticks.
    ready_marker: str | None = None
    default_status: Literal["running", "stopped"] = "stopped"

    _check_paths = field_validator("watch", "archive", "error")(lambda v: _inside_data_dir(v))

    @field_validator("ready_marker")
    @classmethod
    def _suffix(cls, v: str | None) -> str | None:
        if v is not None and (not v or "/" in v):
            raise ValueError("ready_marker is a suffix added to the file's name, such as .done")
        return v


class DailyPartitions(Model):
    start: dt.date
    end: dt.date | None = None  # exclusive: the last partition is the day before
    timezone: str = "UTC"
    # Imports: the day's file, with {date:...} (default: source.path).
    path: str | None = None
    # Exports: the timestamp column whose day picks the rows (default: source.differential).
    column: str | None = None

    _check_timezone = field_validator("timezone")(lambda v: _timezone(v))

    @model_validator(mode="after")
    def _range(self) -> "DailyPartitions":
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must come after start ({self.start})")
        if self.path is not None and not has_date_field(self.path):
            raise ValueError("path must hold the partition's date, such as inbox/crm/recipients_{date:%Y%m%d}.csv")
        return self


class Partitions(Model):
    daily: DailyPartitions


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
EXPORT_LAUNCH_KEYS: dict[str, tuple[str, str]] = {
    "output": ("destination", "path"),
    "delimiter": ("destination", "delimiter"),
    "quote": ("destination", "quote"),
    "encoding": ("destination", "encoding"),
    "header": ("destination", "header"),
    "limit": ("source", "limit"),
}
# Keys where null means something (no limit); elsewhere null means "as the template says".
NULLABLE_LAUNCH_KEYS = ("limit", "max_rejects")


class Launchable(Model):
    """A template a launch can override with flat keys."""

    launch_keys: ClassVar[dict[str, tuple[str, str]]] = {}

    def with_overrides(self, overrides: dict[str, Any]) -> Self:
        """The template as launched: flat launch keys applied to their template keys."""
        data = self.model_dump(by_alias=True, exclude_unset=True)
        for key, value in overrides.items():
            if value is None and key not in NULLABLE_LAUNCH_KEYS:
                continue
            section, name = self.launch_keys[key]
            data.setdefault(section, {})[name] = value
        try:
            return type(self).model_validate(data)
        except ValidationError as exc:
            raise TemplateError(f"launch config for {self.name}: {self._launch_errors(exc, overrides)}") from None

    def _launch_errors(self, exc: ValidationError, overrides: dict[str, Any]) -> str:
        """Errors on launched values name the launch key as well as the template key."""
        by_template_key = {".".join(where): key for key, where in self.launch_keys.items() if key in overrides}
        parts = []
        for part in format_validation_error(exc).split("; "):
            location, _, message = part.partition(": ")
            key = by_template_key.get(location)
            parts.append(f"{key}={overrides[key]!r} ({location}): {message}" if key else part)
        return "; ".join(parts)

    def launch_values(self) -> dict[str, Any]:
        """The template's value of every launch key, as the model typed it."""
        return {key: getattr(getattr(self, section), name) for key, (section, name) in self.launch_keys.items()}


class ImportTemplate(Launchable):
    launch_keys: ClassVar[dict[str, tuple[str, str]]] = LAUNCH_KEYS
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
    kind: Literal["import"]
    label: str | None = None
    description: str | None = None
    source: Source = Source()
    target: ImportTarget
    columns: list[ColumnMapping] = Field(min_length=1)
    errors: ErrorPolicy = ErrorPolicy()
    # Recurring runs: wired by campaign_pipelines.schedules and .sensors.
    schedule: Schedule | None = None
    collector: Collector | None = None
    partitions: Partitions | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "ImportTemplate":
        spec = schemas.TABLES[self.target.table]
        targets = [c.target for c in self.columns]
        for i, column in enumerate(self.columns):
            where = f"columns[{i}].target"
            if column.target not in spec.field_names:
                raise ValueError(f"{where}: {spec.name} has no column {column.target!r}")
            f = spec.field(column.target)
            if not f.importable:
                raise ValueError(f"{where}: {spec.name}.{f.name} is set by the importer, not by a file")
            if f.generated and column.target not in self.target.keys:
                raise ValueError(f"{where}: {spec.name}.{f.name} is generated; map it only as a key")
            if isinstance(column.format, NumberFormat) and f.kind != "integer":
                raise ValueError(f"columns[{i}].format: a number format needs a number column, {f.name} is a {f.kind}")
            if isinstance(column.format, str) and f.kind not in ("date", "timestamp"):
                raise ValueError(f"columns[{i}].format: a date format needs a date column, {f.name} is a {f.kind}")
            if self.source.format == "fixed_width" and column.source is not None:
                names = [w.name for w in self.source.widths or []]
                if column.source not in names:
                    raise ValueError(f"columns[{i}].source: {column.source!r} is not a name in source.widths")
            elif not self.source.header and isinstance(column.source, str):
                raise ValueError(
                    f"columns[{i}].source: with header: false, give the column's 1-based position, not a title"
                )
            elif self.source.header and isinstance(column.source, int) and self.source.format == "delimited":
                raise ValueError(f"columns[{i}].source: with header: true, give the column's title")
        if len(set(targets)) != len(targets):
            dup = next(t for t in targets if targets.count(t) > 1)
            raise ValueError(f"columns: {dup!r} is mapped more than once")
        for key_list, name in ((self.target.keys, "keys"), (self.target.secondary_keys, "secondary_keys")):
            for k in key_list:
                if k not in targets:
                    raise ValueError(f"target.{name}: {k!r} is not a mapped column")
        generated_keys = [k for k in self.target.keys if spec.field(k).generated]
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
            if daily.column is not None:
                raise ValueError("partitions.daily.column: only for exports; an import partition reads its day's file")
            if daily.path is None and not (self.source.path and has_date_field(self.source.path)):
                raise ValueError(
                    "partitions.daily.path: required (a file pattern with {date:...}) unless source.path holds {date:...}"
                )
        return self

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
        return schemas.TABLES[self.target.table]

    @property
    def display_label(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()




# -- export templates -----------------------------------------------------------------

FILTER_OPERATORS = ("eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "like", "is_null")


def filter_conditions(condition: Any) -> list[tuple[str, Any]]:
    """`{in: [FR, BE]}` -> [("in", [FR, BE])]; a bare value means eq."""
    if isinstance(condition, dict):
        return list(condition.items())
    return [("eq", condition)]


def filter_value(f: "schemas.Field", op: str, value: Any) -> Any:
    """The bound value of one condition, in the column's type."""
    if op == "is_null":
        if not isinstance(value, bool):
            raise ValueError("is_null takes true or false")
        return value
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ValueError(f"{op} takes a non-empty list")
        return [f.python_value(v) for v in value]
    if op == "like":
        if not isinstance(value, str):
            raise ValueError("like takes a text pattern")
        return value
    if value is None:
        raise ValueError(f"{op} needs a value; use is_null for empty values")
    return f.python_value(value)


class ExportColumn(Model):
    column: str | None = None
    value: Any = None
    label: str | None = None
    case: Literal["lower", "upper", "capitalize", "none"] = "none"
    format: str | NumberFormat | None = None
    width: Annotated[int, Field(ge=1)] | None = None  # fixed-width destinations

    @model_validator(mode="after")
    def _column_or_value(self) -> "ExportColumn":
        if (self.column is None) == ("value" not in self.model_fields_set):
            raise ValueError("give exactly one of column (a table column) or value (a constant)")
        if self.column is None and self.label is None:
            raise ValueError("a constant (value) needs a label")
        return self

    @property
    def title(self) -> str:
        return self.label or self.column or ""


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

    @field_validator("table")
    @classmethod
    def _known_table(cls, v: str) -> str:
        if v not in schemas.TABLES:
            raise ValueError(f"unknown schema {v!r}; known: {', '.join(sorted(schemas.TABLES))}")
        return v


class Destination(Model):
    path: str
    format: Literal["delimited", "fixed_width"] = "delimited"
    delimiter: str = ","
    quote: str | None = '"'
    header: bool = True
    encoding: str = "utf-8"
    compression: Literal["none", "gzip"] = "none"
    # Cells a spreadsheet would run as a formula (=, +, -, @, tab, CR) get a leading '.
    neutralize_formulas: bool = True

    _check_delimiter = field_validator("delimiter")(lambda v: _delimiter(v))
    _check_quote = field_validator("quote")(lambda v: _one_character(v, "quote"))
    _check_encoding = field_validator("encoding")(lambda v: _encoding(v))


class ExportTemplate(Launchable):
    launch_keys: ClassVar[dict[str, tuple[str, str]]] = EXPORT_LAUNCH_KEYS
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
    kind: Literal["export"]
    label: str | None = None
    description: str | None = None
    source: ExportSource
    destination: Destination
    schedule: Schedule | None = None
    partitions: Partitions | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "ExportTemplate":
        spec = schemas.TABLES[self.source.table]
        for i, column in enumerate(self.source.columns):
            if column.column is not None and column.column not in spec.field_names:
                raise ValueError(f"source.columns[{i}].column: {spec.name} has no column {column.column!r}")
            if self.destination.format == "fixed_width" and column.width is None:
                raise ValueError(f"source.columns[{i}].width: required for a fixed_width destination")
            if column.column is not None and column.format is not None:
                kind = spec.field(column.column).kind
                if isinstance(column.format, str) and kind not in ("date", "timestamp"):
                    raise ValueError(f"source.columns[{i}].format: a date format needs a date column, {column.column} is a {kind}")
                if isinstance(column.format, NumberFormat) and kind != "integer":
                    raise ValueError(f"source.columns[{i}].format: a number format needs a number column, {column.column} is a {kind}")
        for name in self.source.order_by:
            if name not in spec.field_names:
                raise ValueError(f"source.order_by: {spec.name} has no column {name!r}")
        if self.source.differential:
            column = self.source.differential.column
            if column not in spec.field_names or spec.field(column).kind not in ("timestamp", "date", "integer"):
                raise ValueError(f"source.differential.column: {column!r} must be a timestamp, date or number column of {spec.name}")
        for column, condition in self.source.filter.items():
            if column not in spec.field_names:
                raise ValueError(f"source.filter.{column}: {spec.name} has no column {column!r}")
            for op, value in filter_conditions(condition):
                where = f"source.filter.{column}.{op}"
                if op not in FILTER_OPERATORS:
                    raise ValueError(f"{where}: unknown operator; use one of {', '.join(FILTER_OPERATORS)}")
                try:
                    filter_value(spec.field(column), op, value)
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
        if self.source.distinct:
            exported = {c.column for c in self.source.columns}
            for name in self.source.order_by:
                if name not in exported:
                    raise ValueError(f"source.order_by: with distinct, {name!r} must be an exported column")
        check_pattern("destination.path", self.destination.path, date=dt.datetime(2000, 1, 1), run_id="run")
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

    @property
    def partition_column(self) -> str | None:
        """The column whose day selects a partition's rows."""
        if self.partitions is None:
            return None
        differential = self.source.differential.column if self.source.differential else None
        return self.partitions.daily.column or differential

    @property
    def table(self) -> schemas.TableSpec:
        return schemas.TABLES[self.source.table]

    @property
    def display_label(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()




Template = Union[ImportTemplate, ExportTemplate]


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ""
        for item in err["loc"]:
            if isinstance(item, int):
                loc += f"[{item}]"
            elif item in ("function-after", "function-before") or "[" in str(item):
                continue
            else:
                loc += ("." if loc else "") + str(item)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def parse_template(text: str, origin: str) -> Template:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise TemplateError(f"{origin}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise TemplateError(f"{origin}: a job template is a YAML mapping of keys")
    kind = data.get("kind")
    model = {"import": ImportTemplate, "export": ExportTemplate}.get(kind)
    if model is None:
        raise TemplateError(f"{origin}: kind: must be 'import' or 'export', got {kind!r}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise TemplateError(f"{origin}: {format_validation_error(exc)}") from None


@dataclass
class Catalog:
    """Every template found, by name, and the ones that failed to load."""

    templates: dict[str, Template] = field(default_factory=dict)
    builtin: set[str] = field(default_factory=set)
    origins: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def get(self, name: str) -> Template:
        try:
            return self.templates[name]
        except KeyError:
            known = ", ".join(sorted(self.templates)) or "none"
            raise TemplateError(f"no job template named {name!r} (known: {known})") from None


def builtin_sources() -> list[tuple[str, str]]:
    folder = resources.files(BUILTIN_PACKAGE)
    return sorted(
        (f"builtin:{entry.name}", entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )


def load_catalog(templates_dir: Path) -> Catalog:
    catalog = Catalog()
    for origin, text in builtin_sources():
        template = parse_template(text, origin)  # a broken built-in is a bug: let it raise
        catalog.templates[template.name] = template
        catalog.builtin.add(template.name)
        catalog.origins[template.name] = origin
    if templates_dir.is_dir():
        for path in sorted([*templates_dir.glob("*.yaml"), *templates_dir.glob("*.yml")]):
            try:
                template = parse_template(path.read_text(encoding="utf-8"), str(path))
            except (TemplateError, OSError, UnicodeDecodeError) as exc:
                catalog.errors.append(str(exc))
                continue
            if template.name in catalog.builtin:
                catalog.errors.append(f"{path}: name: {template.name!r} is a built-in template's name; choose another")
            elif template.name in catalog.templates:
                catalog.errors.append(
                    f"{path}: name: {template.name!r} is already used by {catalog.origins[template.name]}"
                )
            else:
                catalog.templates[template.name] = template
                catalog.origins[template.name] = str(path)
    return catalog
