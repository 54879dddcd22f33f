"""The vocabulary every table describes itself in once, built-in module or user file.

A `TableSpec` lists `Field`s and `Link`s; from it we derive the SQLAlchemy table (DDL on
every dialect), the polars dtypes the import maps values to, the pandera schema that
validates them and the Dagster column schema. Nothing else restates a column's type,
length or checks.

Time-zone rule: a `timestamp` is an instant, stored in UTC (PostgreSQL `timestamptz`;
SQLite text in UTC). A value read without an offset is taken in the import column's
`timezone` (default UTC); exports write UTC unless a column says otherwise.
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
import sqlalchemy as sa

if TYPE_CHECKING:
    import pandera.polars as pa

Kind = Literal["string", "integer", "decimal", "float", "date", "boolean", "timestamp"]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]
# One limit on both databases: a SQLite decimal is a 64-bit count of its smallest unit.
MAX_DECIMAL_PRECISION = 18

_POLARS_DTYPES: dict[str, Any] = {
    "string": pl.Utf8,
    "integer": pl.Int64,
    "float": pl.Float64,
    "date": pl.Date,
    "boolean": pl.Boolean,
    "timestamp": pl.Datetime("us", "UTC"),
}


class ScaledDecimal(sa.types.TypeDecorator):
    """SQLite has no exact decimal type (NUMERIC is stored as a float): keep a decimal as
    an integer count of its smallest unit (19.99 at scale 2 is 1999). Exact, ordered and
    compared right, through bound values like any other."""

    impl = sa.BigInteger
    cache_ok = True

    def __init__(self, precision: int, scale: int):
        super().__init__()
        self.precision, self.scale = precision, scale

    def process_bind_param(self, value: Any, dialect: Any) -> int | None:
        if value is None:
            return None
        return int(decimal.Decimal(value).scaleb(self.scale).to_integral_exact())

    def process_result_value(self, value: Any, dialect: Any) -> decimal.Decimal | None:
        return None if value is None else decimal.Decimal(int(value)).scaleb(-self.scale)


@dataclass(frozen=True)
class Check:
    """A pandera built-in check, as data: `Check("isin", ["M", "F"], error=...)`.
    An argument may be a callable, resolved when the schema is built (today's date);
    pandera itself is only imported then, so reading or exporting never pays for it."""

    name: str
    args: tuple[Any, ...]
    error: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    def __init__(self, name: str, *args: Any, error: str, **kwargs: Any):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "error", error)
        object.__setattr__(self, "kwargs", tuple(kwargs.items()))

    def build(self) -> "pa.Check":
        import pandera.polars as pa

        args = [a() if callable(a) else a for a in self.args]
        return getattr(pa.Check, self.name)(*args, error=self.error, **dict(self.kwargs))


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
    precision: int | None = None  # decimal: digits in all
    scale: int | None = None  # decimal: digits after the point

    @property
    def polars_dtype(self) -> Any:
        if self.kind == "decimal":
            return pl.Decimal(self.precision, self.scale)
        return _POLARS_DTYPES[self.kind]

    @property
    def type_name(self) -> str:
        """The kind as the Dagster UI's column schema shows it: decimal(12,2), string(64)."""
        if self.kind == "decimal":
            return f"decimal({self.precision},{self.scale})"
        if self.kind == "string" and self.max_length:
            return f"string({self.max_length})"
        return self.kind

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
        if self.kind in ("decimal", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float, str, decimal.Decimal)):
                raise ValueError(f"{value!r} is not a number")
            try:
                number = decimal.Decimal(str(value))
            except decimal.InvalidOperation:
                raise ValueError(f"{value!r} is not a number") from None
            if self.kind == "float":
                return float(number)
            if not number.is_finite() or number != number.quantize(decimal.Decimal(1).scaleb(-(self.scale or 0))):
                raise ValueError(f"{value!r} has more than {self.scale} digits after the point")
            if abs(number) >= 10 ** ((self.precision or 0) - (self.scale or 0)):
                raise ValueError(f"{value!r} has more than {(self.precision or 0) - (self.scale or 0)} digits before the point")
            return number
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
        if self.kind == "decimal":
            return sa.Numeric(self.precision, self.scale).with_variant(ScaledDecimal(self.precision, self.scale), "sqlite")
        if self.kind == "float":
            return sa.Double()
        if self.kind == "date":
            return sa.Date()
        if self.kind == "boolean":
            return sa.Boolean()
        return sa.DateTime(timezone=True)

    def server_default(self) -> Any:
        """The default as DDL, so that a field added to a table with rows fills them."""
        if self.default is None:
            return None
        if self.kind == "boolean":
            return sa.true() if self.default else sa.false()
        if self.kind == "decimal":
            return None  # stored differently per dialect; the importer fills it instead
        return str(self.default)

    def pandera_checks(self) -> list["pa.Check"]:
        checks = list(self.checks)
        if self.max_length is not None:
            checks.insert(0, Check("str_length", None, self.max_length, error=f"is longer than {self.max_length} characters"))
        return [c.build() for c in checks]


@dataclass(frozen=True)
class Link:
    """A many-to-one link: this table's `<name>_id` column holds the id of a record of
    `table` (a purchase's recipient). A template fills it by any unique field of the
    linked table (`link: {via: email}`); an export reads across it (`recipient.email`)."""

    name: str
    table: str
    description: str = ""
    nullable: bool = True
    on_delete: Literal["cascade", "set_null", "restrict"] = "cascade"
    via: str | None = None  # the linked table's unique field templates resolve it by, by default

    @property
    def column(self) -> str:
        return f"{self.name}_id"

    def as_field(self) -> Field:
        return Field(
            self.column, "integer", self.description or f"The linked {self.table} record's id.",
            nullable=self.nullable, foreign_key=f"{self.table}.id",
        )


@dataclass(frozen=True)
class TableSpec:
    name: str
    description: str
    fields: tuple[Field, ...]
    primary_key: tuple[str, ...]
    unique_together: tuple[tuple[str, ...], ...] = ()
    importable: bool = False
    label: str = ""
    links: tuple[Link, ...] = ()
    origin: str = "built-in"  # or the schema files that define and extend it
    _table: list[sa.Table] = field(default_factory=list, compare=False, repr=False)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def link(self, name: str) -> Link | None:
        return next((link for link in self.links if link.name == name), None)

    def has(self, name: str) -> bool:
        return name in self.field_names

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def unique_fields(self) -> list[Field]:
        return [f for f in self.fields if f.unique]

    def bind(self, metadata: sa.MetaData) -> "TableSpec":
        """A copy of this spec with its SQLAlchemy table in `metadata` (one per data model:
        an extension changes a built-in table's columns)."""
        spec = replace(self, _table=[])
        spec._table.append(spec._build(metadata))
        return spec

    @property
    def table(self) -> sa.Table:
        if not self._table:
            raise RuntimeError(f"{self.name} is not bound to a data model's metadata")
        return self._table[0]

    def _build(self, metadata: sa.MetaData) -> sa.Table:
        on_delete = {link.column: link.on_delete.replace("_", " ").upper() for link in self.links}
        columns = []
        for f in self.fields:
            args: list[Any] = []
            if f.foreign_key:
                args.append(sa.ForeignKey(f.foreign_key, ondelete=on_delete.get(f.name, "CASCADE")))
            if f.generated:
                args.append(sa.Identity())
            columns.append(
                sa.Column(
                    f.name,
                    f.sql_type(),
                    *args,
                    primary_key=f.name in self.primary_key,
                    nullable=f.nullable and f.name not in self.primary_key,
                    unique=f.unique or None,
                    # A link's column is indexed (unless the primary key starts with it):
                    # deleting a linked record then finds the rows to cascade to directly.
                    index=(bool(f.foreign_key) and not f.unique and self.primary_key[:1] != (f.name,)) or None,
                    server_default=f.server_default(),
                    comment=f.description or None,
                )
            )
        constraints = [
            sa.UniqueConstraint(*cols, name=f"uq_{self.name}_{'_'.join(cols)}")
            for cols in self.unique_together
        ]
        table = sa.Table(self.name, metadata, *columns, *constraints, comment=self.description or None)
        for link in table.foreign_key_constraints:
            # PostgreSQL keeps links by statement-level triggers instead (schemas/links.py);
            # the constraint stays in the metadata for joins and the tables' order.
            link.ddl_if(callable_=_not_postgresql)
        return table

    def pandera_schema(self, columns: list[str]) -> "pa.DataFrameSchema":
        return pandera_schema([self.field(name) for name in columns])


def _not_postgresql(ddl: Any, target: Any, bind: Any, **kw: Any) -> bool:
    return kw["dialect"].name != "postgresql"


def pandera_schema(fields: list[Field]) -> "pa.DataFrameSchema":
    """Checks for the given (mapped) values, each under its field's name. Emptiness is
    allowed here: an empty value means "leave the field" on update, and keys and
    required fields are checked by the importer."""
    import pandera.polars as pa

    return pa.DataFrameSchema(
        {f.name: pa.Column(f.polars_dtype, checks=f.pandera_checks(), nullable=True, coerce=False) for f in fields},
        strict=False,
    )
