"""An export's columns as SQL, for one SELECT: a linked column reads across LEFT OUTER
JOINs (one per link path, aliased _j1, _j2…: a table's name starts with a letter, so
an alias never shadows one; a record whose link is empty is still exported), a collection is a grouped subquery LEFT JOINed on the owner's id, and
calculated texts, date parts and labels are SQL expressions with bound values.

Every selected expression has a stable label (c0, c1…) and a kind: the linked field's
kind, integer for a date part, string for calculated, labelled and collection columns.
The SQLite reader types its rows by it; the PostgreSQL COPY reader gives it to pyarrow.
Expressions that differ by dialect (a value as text, a date part, an ordered
aggregate) are constructs compiled per dialect, so one statement serves both.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

import schemas
from campaign_pipelines.templates import ExportColumn, ExportTemplate
from campaign_pipelines.templates.grouping import aggregate_field, grouped
from campaign_pipelines.templates.paths import (
    FieldPath,
    collection_path,
    follow,
    label_key,
    value_parts,
)


class SqlText(FunctionElement):
    """A value as the text an export writes by default: dates YYYY-MM-DD, timestamps
    YYYY-MM-DD HH:MM:SS in UTC, true/false, decimals with all their scale's digits."""

    type = sa.Text()
    name = "sql_text"
    inherit_cache = True
    _traverse_internals: ClassVar[list] = [
        *FunctionElement._traverse_internals,
        ("kind", InternalTraversal.dp_string),
        ("scale", InternalTraversal.dp_plain_obj),
    ]

    def __init__(self, value: Any, kind: str, scale: int = 0):
        self.kind, self.scale = kind, scale
        super().__init__(value)


class DatePart(FunctionElement):
    """A date or timestamp's year, quarter, month, day, hour, minute, second, day of week
    (0 is Sunday) or day of year, as an integer; a timestamp's parts are in UTC."""

    type = sa.Integer()
    name = "date_part"
    inherit_cache = True
    _traverse_internals: ClassVar[list] = [
        *FunctionElement._traverse_internals,
        ("part", InternalTraversal.dp_string),
        ("kind", InternalTraversal.dp_string),
    ]

    def __init__(self, value: Any, part: str, kind: str):
        self.part, self.kind = part, kind
        super().__init__(value)


class DecimalAverage(FunctionElement):
    """A decimal column's average, rounded half away from zero to the column's scale: exact
    on PostgreSQL (numeric); on SQLite, where a decimal is an integer count of its smallest
    unit, the rounded average count, read back as a decimal by the column's type."""

    name = "decimal_average"
    inherit_cache = True
    _traverse_internals: ClassVar[list] = [
        *FunctionElement._traverse_internals,
        ("scale", InternalTraversal.dp_plain_obj),
    ]

    def __init__(self, value: Any, scale: int, type_: sa.types.TypeEngine):
        self.scale, self.type = scale, type_
        super().__init__(value)


@compiles(DecimalAverage)
def _sqlite_average(element: DecimalAverage, compiler: Any, **kw: Any) -> str:
    return f"CAST(round(avg({_arg(compiler, element, 0, **kw)})) AS INTEGER)"


@compiles(DecimalAverage, "postgresql")
def _postgresql_average(element: DecimalAverage, compiler: Any, **kw: Any) -> str:
    return f"round(avg({_arg(compiler, element, 0, **kw)}), {int(element.scale)})"


class OrderedConcat(FunctionElement):
    """string_agg(text, separator ORDER BY value). SQLite 3.40's group_concat takes no
    ORDER BY: there it aggregates a subquery already sorted by value (SQLite does not
    flatten an ordered subquery into an aggregate, so the order holds)."""

    type = sa.Text()
    name = "ordered_concat"
    inherit_cache = True


def _arg(compiler: Any, element: FunctionElement, i: int, **kw: Any) -> str:
    return compiler.process(list(element.clauses)[i], **kw)


@compiles(SqlText)
def _sqlite_text(element: SqlText, compiler: Any, **kw: Any) -> str:
    x = _arg(compiler, element, 0, **kw)
    if element.kind == "string":
        return x
    if element.kind == "timestamp":  # stored as naive UTC text
        return f"strftime('%Y-%m-%d %H:%M:%S', {x})"
    if element.kind == "boolean":
        return f"(CASE WHEN {x} THEN 'true' WHEN NOT {x} THEN 'false' END)"
    if element.kind == "decimal" and element.scale:
        # Stored as an integer count of the smallest unit (ScaledDecimal): 1990 is 19.90.
        unit, zeros = 10**element.scale, "0" * element.scale
        return (f"(CASE WHEN {x} < 0 THEN '-' ELSE '' END || (abs({x}) / {unit}) || '.' "
                f"|| substr('{zeros}' || (abs({x}) % {unit}), -{element.scale}))")
    return f"CAST({x} AS TEXT)"


@compiles(SqlText, "postgresql")
def _postgresql_text(element: SqlText, compiler: Any, **kw: Any) -> str:
    x = _arg(compiler, element, 0, **kw)
    if element.kind == "string":
        return x
    if element.kind == "timestamp":
        return f"to_char(timezone('UTC', {x}), 'YYYY-MM-DD HH24:MI:SS')"
    if element.kind == "date":
        return f"to_char({x}, 'YYYY-MM-DD')"
    if element.kind == "boolean":
        return f"(CASE WHEN {x} THEN 'true' WHEN NOT {x} THEN 'false' END)"
    return f"CAST({x} AS TEXT)"  # numeric keeps its scale: 19.90


SQLITE_PARTS = {"year": "%Y", "month": "%m", "day": "%d", "hour": "%H", "minute": "%M", "second": "%S", "dow": "%w", "doy": "%j"}


@compiles(DatePart)
def _sqlite_part(element: DatePart, compiler: Any, **kw: Any) -> str:
    x = _arg(compiler, element, 0, **kw)
    if element.part == "quarter":
        return f"((CAST(strftime('%m', {x}) AS INTEGER) + 2) / 3)"
    return f"CAST(strftime('{SQLITE_PARTS[element.part]}', {x}) AS INTEGER)"


@compiles(DatePart, "postgresql")
def _postgresql_part(element: DatePart, compiler: Any, **kw: Any) -> str:
    x = _arg(compiler, element, 0, **kw)
    if element.kind == "timestamp":
        x = f"timezone('UTC', {x})"
    # EXTRACT gives numeric (seconds with their fraction): the whole part, as SQLite does.
    return f"CAST(floor(EXTRACT({element.part} FROM {x})) AS INTEGER)"


@compiles(OrderedConcat)
def _sqlite_concat(element: OrderedConcat, compiler: Any, **kw: Any) -> str:
    return f"group_concat({_arg(compiler, element, 0, **kw)}, {_arg(compiler, element, 1, **kw)})"


@compiles(OrderedConcat, "postgresql")
def _postgresql_concat(element: OrderedConcat, compiler: Any, **kw: Any) -> str:
    text, separator, order = (_arg(compiler, element, i, **kw) for i in range(3))
    return f"string_agg({text}, {separator} ORDER BY {order})"


def as_text(value: sa.ColumnElement, f: schemas.Field | None) -> sa.ColumnElement:
    """`f` None: a date part (an integer)."""
    return SqlText(value, f.kind if f else "integer", (f.scale or 0) if f else 0)


class Joins:
    """A FROM clause growing one LEFT OUTER JOIN per distinct link path."""

    def __init__(self, model: schemas.DataModel, base: sa.FromClause, prefix: str):
        self.model = model
        self.base = base
        self.from_clause: sa.FromClause = base
        self.prefix = prefix
        self.aliases: dict[tuple[str, ...], sa.FromClause] = {}

    def column(self, path: FieldPath) -> sa.ColumnElement:
        source, key = self.base, ()
        for link in path.links:
            key += (link.name,)
            if key not in self.aliases:
                target = self.model.table(link.table).table.alias(f"{self.prefix}{len(self.aliases) + 1}")
                self.outerjoin(target, target.c.id == source.c[link.column])
                self.aliases[key] = target
            source = self.aliases[key]
        return source.c[path.field.name]

    def outerjoin(self, target: sa.FromClause, on: sa.ColumnElement[bool]) -> None:
        self.from_clause = self.from_clause.outerjoin(target, on)


@dataclass(frozen=True)
class Selected:
    label: str
    kind: str  # a field kind: what the value read is
    field: schemas.Field | None  # for a decimal, its precision and scale
    expression: sa.ColumnElement

    @property
    def polars_dtype(self) -> Any:
        if self.kind == "decimal" and self.field is not None:
            return self.field.polars_dtype
        return schemas.Field("x", self.kind).polars_dtype  # type: ignore[arg-type]

    @property
    def arrow_type(self) -> pa.DataType:
        """How pyarrow parses COPY's text (timestamps: sent as ISO text in UTC). A
        numeric(p, s) comes as exact text with its s digits (19.90): what the file holds,
        so it stays text (parsing it as decimal128 costs ~0.6 s per million rows)."""
        return {"string": pa.string(), "integer": pa.int64(), "float": pa.float64(), "decimal": pa.string(),
                "date": pa.date32(), "boolean": pa.bool_(), "timestamp": pa.timestamp("us", "UTC")}[self.kind]


class ExportColumns:
    """What one export selects: `outputs[i]` is the label of the template's i-th column
    (None for a constant), `watermark` the differential column's label."""

    def __init__(self, template: ExportTemplate):
        self.template = template
        self.spec = template.table
        self.model = template.model
        self.joins = Joins(self.model, self.spec.table, "_j")
        self.selected: dict[tuple, Selected] = {}
        self._collections = 0
        self.outputs = [self._output(c) for c in template.source.columns]
        differential = template.source.differential
        # To advance the watermark: the differential column, selected once even if exported
        # (in a grouped export, its highest value in each group).
        self.watermark = None
        if differential:
            aggregate = "max" if grouped(template.source) else None
            self.watermark = self._output(ExportColumn(column=differential.column, aggregate=aggregate))

    def column(self, dotted: str) -> tuple[sa.ColumnElement, schemas.Field]:
        """A column of the table, or across its links: joined on first use."""
        path = follow(self.model, self.spec, dotted)
        return self.joins.column(path), path.field

    def by_label(self) -> dict[str, Selected]:
        return {s.label: s for s in self.selected.values()}

    def _select(self, key: tuple, build: Any) -> str:
        """The label of one selected expression; the same expression is selected once."""
        if key not in self.selected:
            expression, kind, f = build()
            label = f"c{len(self.selected)}"
            self.selected[key] = Selected(label, kind, f, expression.label(label))
        return self.selected[key].label

    def _output(self, column: ExportColumn) -> str | None:
        if column.aggregate is not None:
            key = ("aggregate", column.aggregate, column.column)
            return self._select(key, functools.partial(self._aggregate, column))
        if column.column is not None:
            key = ("column", column.column, column.part, tuple((column.labels or {}).items()))
            return self._select(key, functools.partial(self._column, column))
        if column.collection is not None:
            key = ("collection", column.collection, column.link, column.separator)
            return self._select(key, functools.partial(self._collection, column))
        if column.calculated:
            return self._select(("value", column.value), functools.partial(self._calculated, column.value))
        return None

    def _column(self, column: ExportColumn) -> tuple[sa.ColumnElement, str, schemas.Field | None]:
        value, f = self.column(column.column or "")
        kind: str = f.kind
        keyed: schemas.Field | None = f
        if column.part is not None:
            value, kind, keyed = DatePart(value, column.part, f.kind), "integer", None
        if column.labels is None:
            return value, kind, keyed
        # Searched CASE: each value compares in the column's type (a decimal scaled on SQLite).
        whens = [(value == label_key(keyed, raw), sa.literal(label, sa.Text)) for raw, label in column.labels.items()]
        return sa.type_coerce(sa.case(*whens, else_=as_text(value, keyed)), sa.Text), "string", None

    def _aggregate(self, column: ExportColumn) -> tuple[sa.ColumnElement, str, schemas.Field]:
        """count, count_distinct, sum, min, max or avg over each group; `aggregate_field`
        says the kind. PostgreSQL's sum and avg of whole numbers are numeric: cast back."""
        result = aggregate_field(self.model, self.spec, column)
        if column.column is None:
            return sa.func.count(), "integer", result
        value, f = self.column(column.column)
        aggregate = column.aggregate
        if aggregate == "count":
            expression = sa.func.count(value)
        elif aggregate == "count_distinct":
            expression = sa.func.count(sa.distinct(value))
        elif aggregate == "avg" and f.kind == "decimal":
            expression = DecimalAverage(value, f.scale or 0, result.sql_type())
        elif aggregate == "avg":
            expression = sa.cast(sa.func.avg(value), sa.Double)
        elif aggregate == "sum" and f.kind == "integer":
            expression = sa.cast(sa.func.sum(value), sa.BigInteger)
        elif aggregate == "sum" and f.kind == "decimal":
            expression = sa.type_coerce(sa.func.sum(value), result.sql_type())
        else:  # min, max; a float's sum
            expression = getattr(sa.func, aggregate or "")(value)
        return expression, result.kind, result

    def grouping(self) -> list[sa.ColumnElement]:
        """The GROUP BY of a grouped export: each group_by entry, an exported column's
        title (its expression: a date part, labels) or a column path."""
        keys = []
        for name in self.template.source.group_by:
            titled = self.titled(name, plain=True)
            keys.append(titled if titled is not None else self.column(name)[0])
        return keys

    def titled(self, title: str, plain: bool = False) -> sa.ColumnElement | None:
        """The expression of the exported column of this title, an aggregated one unless
        `plain` (None: no such column)."""
        for column, label in zip(self.template.source.columns, self.outputs, strict=True):
            if column.title == title and label is not None and not (plain and column.aggregate):
                return self.expression(label)
        return None

    def expression(self, label: str) -> sa.ColumnElement:
        """A selected expression without its label (GROUP BY, HAVING and ORDER BY repeat it)."""
        return self.by_label()[label].expression.element  # type: ignore[attr-defined]

    def _calculated(self, text: str) -> tuple[sa.ColumnElement, str, None]:
        pieces: list[sa.ColumnElement] = []
        for literal, name in value_parts(text):
            if literal:
                pieces.append(sa.literal(literal, sa.Text))
            if name is not None:
                value, f = self.column(name)
                pieces.append(sa.func.coalesce(as_text(value, f), sa.literal("", sa.Text)))
        return functools.reduce(lambda a, b: a.concat(b), pieces), "string", None

    def _collection(self, column: ExportColumn) -> tuple[sa.ColumnElement, str, None]:
        """Distinct values, per owner, sorted (by value, not by text), joined as text."""
        path = collection_path(self.model, self.spec, column.collection or "", column.link)
        self._collections += 1
        n = self._collections
        rows = path.table.table.alias(f"_k{n}")
        joins = Joins(self.model, rows, f"_k{n}j")
        value = joins.column(path.path)
        owner = rows.c[path.owner.column]
        values = (
            sa.select(owner.label("owner"), value.label("value"))
            .select_from(joins.from_clause)
            .where(owner.is_not(None), value.is_not(None))
            .distinct()
            .order_by(owner, value)
            .subquery(f"_k{n}v")
        )
        text = OrderedConcat(as_text(values.c.value, path.path.field), sa.literal(column.separator, sa.Text), values.c.value)
        grouped = sa.select(values.c.owner, text.label("value")).group_by(values.c.owner).subquery(f"_k{n}g")
        self.joins.outerjoin(grouped, grouped.c.owner == self.spec.table.c.id)
        return grouped.c.value, "string", None
