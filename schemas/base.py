"""The vocabulary every table module uses to describe itself once.

A `TableSpec` lists `Field`s; from it we derive the SQLAlchemy table (DDL on every
dialect), the polars dtypes the import maps values to, and the pandera schema that
validates them. Nothing else restates a column's type, length or checks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
import sqlalchemy as sa

if TYPE_CHECKING:
    import pandera.polars as pa

Kind = Literal["string", "integer", "date", "boolean", "timestamp"]

metadata = sa.MetaData()

_POLARS_DTYPES: dict[str, Any] = {
    "string": pl.Utf8,
    "integer": pl.Int64,
    "date": pl.Date,
    "boolean": pl.Boolean,
    "timestamp": pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True)
class Check:
    """A pandera built-in check, as data: `Check("isin", ["M", "F"], error=...)`.
    An argument may be a callable, resolved when the schema is built (today's date);
    pandera itself is only imported then, so reading or exporting never pays for it."""

    name: str
    args: tuple[Any, ...]
    error: str

    def __init__(self, name: str, *args: Any, error: str):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "error", error)

    def build(self) -> "pa.Check":
        import pandera.polars as pa

        args = [a() if callable(a) else a for a in self.args]
        return getattr(pa.Check, self.name)(*args, error=self.error)


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    description: str = ""
    max_length: int | None = None
    nullable: bool = True
    # UNIQUE in the database; several NULLs are allowed on both dialects ("unique when present").
    unique: bool = False
    # Generated primary key (identity): never mapped from a file except as a reconciliation key.
    generated: bool = False
    # Set by the loader (created_at/updated_at), never by a file.
    managed: bool = False
    default: Any = None
    foreign_key: str | None = None
    checks: tuple[Check, ...] = ()

    @property
    def polars_dtype(self) -> Any:
        return _POLARS_DTYPES[self.kind]

    @property
    def importable(self) -> bool:
        return not self.managed

    def python_value(self, value: Any) -> Any:
        """A template's literal (YAML scalar) as this column's Python type; ValueError if
        it is not one."""
        if value is None:
            return None
        if self.kind == "string":
            if isinstance(value, (dict, list)):
                raise ValueError(f"{value!r} is not text")
            return str(value)
        if self.kind == "boolean":
            if not isinstance(value, bool):
                raise ValueError(f"{value!r} is not true or false")
            return value
        if self.kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{value!r} is not a whole number")
            return value
        if self.kind == "date":
            if isinstance(value, dt.datetime):
                return value.date()
            if isinstance(value, dt.date):
                return value
            try:
                return dt.date.fromisoformat(str(value))
            except ValueError:
                raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
        if isinstance(value, dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        try:
            parsed = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a date and time (YYYY-MM-DD HH:MM:SS)") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)

    def sql_type(self) -> sa.types.TypeEngine:
        if self.kind == "string":
            return sa.String(self.max_length) if self.max_length else sa.Text()
        if self.kind == "integer":
            # BIGINT on PostgreSQL; SQLite only auto-generates ids for "INTEGER PRIMARY KEY".
            return sa.BigInteger().with_variant(sa.Integer(), "sqlite")
        if self.kind == "date":
            return sa.Date()
        if self.kind == "boolean":
            return sa.Boolean()
        return sa.DateTime(timezone=True)

    def pandera_checks(self) -> list["pa.Check"]:
        checks = list(self.checks)
        if self.max_length is not None:
            checks.insert(0, Check("str_length", None, self.max_length, error=f"is longer than {self.max_length} characters"))
        return [c.build() for c in checks]


@dataclass(frozen=True)
class TableSpec:
    name: str
    description: str
    fields: tuple[Field, ...]
    primary_key: tuple[str, ...]
    unique_together: tuple[tuple[str, ...], ...] = ()
    importable: bool = False
    _table: list[sa.Table] = field(default_factory=list, compare=False, repr=False)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def unique_fields(self) -> list[Field]:
        return [f for f in self.fields if f.unique]

    @property
    def table(self) -> sa.Table:
        """The SQLAlchemy table, registered once in the shared metadata."""
        if not self._table:
            columns = []
            for f in self.fields:
                args: list[Any] = []
                if f.foreign_key:
                    args.append(sa.ForeignKey(f.foreign_key, ondelete="CASCADE"))
                if f.generated:
                    args.append(sa.Identity())
                server_default = None
                if f.default is not None and f.kind == "boolean":
                    server_default = sa.true() if f.default else sa.false()
                columns.append(
                    sa.Column(
                        f.name,
                        f.sql_type(),
                        *args,
                        primary_key=f.name in self.primary_key,
                        nullable=f.nullable and f.name not in self.primary_key,
                        unique=f.unique or None,
                        server_default=server_default,
                        comment=f.description or None,
                    )
                )
            constraints = [
                sa.UniqueConstraint(*cols, name=f"uq_{self.name}_{'_'.join(cols)}")
                for cols in self.unique_together
            ]
            self._table.append(
                sa.Table(self.name, metadata, *columns, *constraints, comment=self.description)
            )
        return self._table[0]

    def pandera_schema(self, columns: list[str]) -> "pa.DataFrameSchema":
        """Checks for the given (mapped) columns. Emptiness is allowed here: an empty
        value means "leave the field" on update, and keys are checked by the importer."""
        import pandera.polars as pa

        return pa.DataFrameSchema(
            {
                name: pa.Column(
                    self.field(name).polars_dtype,
                    checks=self.field(name).pandera_checks(),
                    nullable=True,
                    coerce=False,
                )
                for name in columns
            },
            strict=False,
        )
