"""Export templates: the query (table, columns, filter, order) and the destination file."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

import schemas
from campaign_pipelines.templates.common import (
    FILTER_OPERATORS, NAME_PATTERN, Launchable, Model, NumberFormat, Partitions, Schedule, _delimiter, _encoding,
    _one_character, check_pattern, filter_conditions, filter_value,
)


EXPORT_LAUNCH_KEYS: dict[str, tuple[str, str]] = {
    "output": ("destination", "path"),
    "delimiter": ("destination", "delimiter"),
    "quote": ("destination", "quote"),
    "encoding": ("destination", "encoding"),
    "header": ("destination", "header"),
    "limit": ("source", "limit"),
}
# Keys where null means something (no limit); elsewhere null means "as the template says".

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
        if v not in schemas.current().tables:
            raise ValueError(f"unknown schema {v!r}; known: {', '.join(sorted(schemas.current().tables))}")
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
        spec = schemas.table(self.source.table)
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
        return schemas.table(self.source.table)

    @property
    def display_label(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()
