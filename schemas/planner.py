"""One difference at a time: for each difference Alembic finds between the database and
the data model (`migrate.plan`), the change that makes it, with its DDL, or the one
sentence that refuses it. Every name comes from the model or the database's reflection;
values are bound.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations, ops

from schemas import links
from schemas.base import ScaledDecimal

if TYPE_CHECKING:
    from schemas.model import DataModel

NOTHING = "nothing was changed."
MAX_IDENTIFIER = 63


@dataclass(frozen=True)
class Change:
    """One change the database needs, as Alembic operations and their DDL for the dialect."""

    table: str
    field: str | None
    summary: str  # "add field recipient.loyalty_tier"
    ddl: tuple[str, ...]
    # Alembic operations, made afresh for each use (rendering one attaches its column to a table).
    make: Callable[[], list[ops.MigrateOperation]] = field(repr=False, compare=False, default=list)

    @property
    def operations(self) -> list[ops.MigrateOperation]:
        return self.make()


def type_text(type_: sa.types.TypeEngine, dialect: sa.Dialect) -> str:
    """A type as the dialect writes it (a variant and a TypeDecorator resolved), normalised:
    what the database holds is compared with what the model would create."""
    text = type_.compile(dialect=dialect)
    return re.sub(r"\s*,\s*", ",", re.sub(r"\s+", " ", text)).strip().upper()


def _string_length(type_: sa.types.TypeEngine, dialect: sa.Dialect) -> tuple[bool, int | None]:
    """(is a string, its length or None for unlimited)."""
    resolved = type_.dialect_impl(dialect) if not isinstance(type_, sa.String) else type_
    if isinstance(resolved, sa.String) and not isinstance(resolved, sa.Enum):
        return True, resolved.length
    return False, None


def _numeric(type_: sa.types.TypeEngine, dialect: sa.Dialect) -> tuple[int, int] | None:
    resolved = type_.dialect_impl(dialect)
    if isinstance(resolved, ScaledDecimal) or isinstance(type_, ScaledDecimal):
        return None  # SQLite: a count of the smallest unit, its precision is not stored
    if isinstance(resolved, sa.Numeric) and not isinstance(resolved, sa.Float) and resolved.precision is not None:
        return resolved.precision, resolved.scale or 0
    return None


def _where(table: str, columns: list[str] | tuple[str, ...]) -> str:
    return f"{table}.{columns[0]}" if len(columns) == 1 else f"{table}.({', '.join(columns)})"


def _index_name(table: str, columns: list[str]) -> str:
    name = f"uq_{table}_{'_'.join(columns)}"
    if len(name) <= MAX_IDENTIFIER:
        return name
    import hashlib

    return f"uq_{hashlib.sha1(name.encode()).hexdigest()[:16]}"


class _Render:
    """Alembic's offline mode writes each statement with one write() call: keep them."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def write(self, text: str) -> None:
        text = "\n".join(line.rstrip() for line in text.strip().splitlines())
        if text:
            self.statements.append(text.removesuffix(";").rstrip())

    def flush(self) -> None:
        pass


def _render(operations: list[ops.MigrateOperation], dialect: sa.Dialect) -> tuple[str, ...]:
    buffer = _Render()
    context = MigrationContext.configure(dialect=dialect, opts={"as_sql": True, "output_buffer": buffer})
    runner = Operations(context)
    for operation in operations:
        runner.invoke(operation)
    return tuple(buffer.statements)


class Planner:
    def __init__(self, conn: sa.Connection, model: DataModel):
        self.conn = conn
        self.model = model
        self.dialect = conn.dialect
        self.sqlite = conn.dialect.name == "sqlite"
        self.changes: list[tuple[int, Change]] = []  # (order, change)
        self.refusals: list[str] = []
        self._counts: dict[str, int] = {}
        self.added: dict[str, dict[str, sa.Column]] = {}  # table -> new columns
        self.refused_columns: set[tuple[str, str]] = set()
        self.added_unique: set[tuple[str, str]] = set()
        self.functions_planned = False

    # -- data checks (names from the model; no value is ever spliced) ---------------
    def rows(self, table: str, at_least: int = 1) -> bool:
        if table not in self._counts:
            limited = sa.select(sa.literal(1)).select_from(sa.table(table)).limit(2).subquery()
            self._counts[table] = self.conn.execute(sa.select(sa.func.count()).select_from(limited)).scalar_one()
        return self._counts[table] >= at_least

    def nulls(self, table: str, column: str) -> int:
        col = sa.column(column)
        return self.conn.execute(sa.select(sa.func.count()).select_from(sa.table(table, col)).where(col.is_(None))).scalar_one()

    def longest(self, table: str, column: str) -> int:
        col = sa.column(column)
        return self.conn.execute(sa.select(sa.func.max(sa.func.length(col))).select_from(sa.table(table, col))).scalar() or 0

    def duplicates(self, table: str, columns: list[str]) -> int:
        cols = [sa.column(c) for c in columns]
        groups = (
            sa.select(*cols).select_from(sa.table(table, *cols))
            .where(*(c.is_not(None) for c in cols))
            .group_by(*cols).having(sa.func.count() > 1).subquery()
        )
        return self.conn.execute(sa.select(sa.func.count()).select_from(groups)).scalar_one()

    def sqlite_on_delete(self, table: str, columns: tuple[str, ...]) -> str | None:
        """The ON DELETE rule SQLite itself keeps for a link (the table name is the model's)."""
        quoted = self.dialect.identifier_preparer.quote(table)
        for row in self.conn.exec_driver_sql(f"PRAGMA foreign_key_list({quoted})").mappings():
            if (row["from"],) == tuple(columns):
                return row["on_delete"]
        return None

    # -- outcomes ----------------------------------------------------------------
    def refuse(self, table: str, columns: list[str] | tuple[str, ...], why: str) -> None:
        self.refusals.append(f"{_where(table, columns)}: {why}")
        self.refused_columns.update((table, c) for c in columns)

    def change(self, order: int, table: str, field_name: str | None, summary: str, make: Callable[[], list[ops.MigrateOperation]]) -> None:
        self.changes.append((order, Change(table, field_name, summary, _render(make(), self.dialect), make)))

    # -- diffs ---------------------------------------------------------------------
    def add_table(self, table: sa.Table) -> None:
        order = [t.name for t in self.model.metadata.sorted_tables].index(table.name)
        self.change(order, table.name, None, f"create table {table.name}", lambda: [ops.CreateTableOp.from_table(self.as_created(table))])

    def as_created(self, table: sa.Table) -> sa.Table:
        """The table as this dialect creates it: on PostgreSQL without its foreign keys
        (its links are triggers, added by `links_by_triggers`)."""
        if self.sqlite:
            return table
        copy = table.to_metadata(sa.MetaData())
        for constraint in list(copy.foreign_key_constraints):
            copy.constraints.discard(constraint)
        for column in copy.c:
            column.foreign_keys.clear()
        return copy

    def add_column(self, table: str, column: sa.Column) -> None:
        self.added.setdefault(table, {})[column.name] = column
        spec = self.model.tables[table].field(column.name)
        server_default = column.server_default
        if spec.kind == "decimal" and spec.default is not None:
            # The model leaves a decimal's default to the importer (its storage differs per
            # dialect); existing rows need it as a literal of the dialect's storage.
            value = decimal.Decimal(spec.default)
            literal = ScaledDecimal(spec.precision, spec.scale).process_bind_param(value, self.dialect) if self.sqlite else value
            server_default = sa.DefaultClause(sa.text(str(literal)))
        if not column.nullable and server_default is None:
            if self.rows(table):
                return self.refuse(table, [column.name], "a new required field (nullable: false) needs a default to fill the rows the table has; " + NOTHING)
            if self.sqlite:
                return self.refuse(
                    table, [column.name],
                    "SQLite cannot add a required field (nullable: false) without a default to an existing table; "
                    "give it a default or make it nullable, so " + NOTHING,
                )
        if column.unique and server_default is not None and self.rows(table, 2):
            return self.refuse(table, [column.name], "a new unique field cannot have a default on a table with rows (each would get the same value); " + NOTHING)
        unique = bool(column.unique)

        def make_column() -> sa.Column:
            foreign_keys = [sa.ForeignKey(fk.target_fullname, ondelete=fk.ondelete) for fk in column.foreign_keys if self.sqlite]
            return sa.Column(column.name, column.type, *foreign_keys, nullable=column.nullable, server_default=server_default, comment=column.comment)

        def operations() -> list[ops.MigrateOperation]:
            made: list[ops.MigrateOperation] = [ops.AddColumnOp(table, make_column(), inline_references=True)]
            if unique:  # ADD COLUMN cannot say UNIQUE on SQLite: a unique index, on both
                made.append(ops.CreateIndexOp(_index_name(table, [column.name]), table, [column.name], unique=True))
            return made

        self.added[table][column.name] = make_column()
        if unique:
            self.added_unique.add((table, column.name))
        self.change(1000, table, column.name, f"add field {table}.{column.name}", operations)

    def remove_column(self, table: str, column: sa.Column) -> None:
        self.refuse(table, [column.name], "the field is in the database but not in the data model; removing it would lose its data, so " + NOTHING)

    def modify_type(self, table: str, column: str, info: dict[str, Any], old: Any, new: Any) -> None:
        old_is_string, old_length = _string_length(old, self.dialect)
        new_is_string, new_length = _string_length(new, self.dialect)
        if old_is_string and new_is_string:
            # SQLite stores no length (it does not enforce one): a change there only needs the
            # stored values to fit, checked every time since the declared length says nothing.
            narrower = new_length is not None and (self.sqlite or old_length is None or new_length < old_length)
            if narrower and (longest := self.longest(table, column)) > new_length:
                return self.refuse(
                    table, [column],
                    f"the length would shrink to {new_length} characters but a stored value has {longest}; " + NOTHING,
                )
            if self.sqlite:
                return
            verb = "widen" if new_length is None or (old_length is not None and new_length > old_length) else "shorten"
            self.change(2000, table, column, f"{verb} field {table}.{column} to {type_text(new, self.dialect)}", lambda: [
                ops.AlterColumnOp(table, column, modify_type=new, existing_type=old, existing_nullable=info.get("existing_nullable")),
            ])
            return
        old_numeric, new_numeric = _numeric(old, self.dialect), _numeric(new, self.dialect)
        if old_numeric and new_numeric and old_numeric[1] == new_numeric[1] and new_numeric[0] >= old_numeric[0]:
            self.change(2000, table, column, f"widen field {table}.{column} to {type_text(new, self.dialect)}", lambda: [
                ops.AlterColumnOp(table, column, modify_type=new, existing_type=old, existing_nullable=info.get("existing_nullable")),
            ])
            return
        self.refuse(
            table, [column],
            f"the type would change from {type_text(old, self.dialect)} to {type_text(new, self.dialect)}; "
            "a type change could lose data, so " + NOTHING,
        )

    def modify_nullable(self, table: str, column: str, info: dict[str, Any], nullable: bool) -> None:
        if not nullable and (count := self.nulls(table, column)):
            return self.refuse(
                table, [column],
                f"the field would become required (nullable: false) but {count} row{'s' if count > 1 else ''} "
                f"{'have' if count > 1 else 'has'} no value; " + NOTHING,
            )
        if self.sqlite:
            what = "optional (nullable: true)" if nullable else "required (nullable: false)"
            return self.refuse(table, [column], f"SQLite cannot make an existing field {what} without rebuilding its table; " + NOTHING)
        self.change(3000, table, column, f"make field {table}.{column} {'optional' if nullable else 'required'}", lambda: [
            ops.AlterColumnOp(table, column, modify_nullable=nullable, existing_type=info.get("existing_type")),
        ])

    def add_index(self, index: sa.Index) -> None:
        table, columns = index.table.name, [c.name for c in index.columns]
        if any((table, c) in self.refused_columns for c in columns):
            return
        self.change(4500, table, columns[0], f"index {_where(table, columns)}",
                    lambda: [ops.CreateIndexOp(index.name, table, columns)])

    def uniques(self, wanted: dict[tuple[str, frozenset[str]], tuple[str, list[str]]], present: dict[tuple[str, frozenset[str]], list[str]]) -> None:
        """Unique constraints and unique indexes are the same promise: match them by columns
        (SQLite cannot add a constraint, so a field made unique later has a unique index)."""
        for key in sorted(set(wanted) - set(present), key=str):
            table, columns = wanted[key][0], wanted[key][1]
            added = self.added.get(table, {})
            if any((table, c) in self.refused_columns for c in columns):
                continue
            new = [c for c in columns if c in added]
            existing = [c for c in columns if c not in added]
            if len(columns) == 1 and (table, columns[0]) in self.added_unique:
                continue  # made with the column
            if any(added[c].server_default is None for c in new):
                pass  # a new column is empty (NULL): no two rows can be equal
            elif not existing and self.rows(table, 2):
                self.refuse(table, columns, "the new unique fields have defaults, so the table's rows would all get the same value; " + NOTHING)
                continue
            elif existing and (count := self.duplicates(table, existing)):
                self.refuse(
                    table, columns,
                    f"the field{'s' if len(columns) > 1 else ''} would become unique but {count} "
                    f"value{'s are' if count > 1 else ' is'} stored more than once; " + NOTHING,
                )
                continue
            name = _index_name(table, columns)
            self.change(4000, table, columns[0], f"make {_where(table, columns)} unique",
                        lambda name=name, table=table, columns=columns: [ops.CreateIndexOp(name, table, columns, unique=True)])
        for key in sorted(set(present) - set(wanted), key=str):
            table, columns = key[0], present[key]
            if any((table, c) in self.refused_columns for c in columns) or not all(self.model.tables[table].has(c) for c in columns):
                continue
            self.refuse(
                table, columns,
                "the field is unique in the database but not in the data model; schema apply does not remove a "
                "unique constraint, so " + NOTHING,
            )

    def foreign_keys(self, added: list[sa.ForeignKeyConstraint], removed: list[sa.ForeignKeyConstraint]) -> None:
        def key(fk: sa.ForeignKeyConstraint) -> tuple[str, tuple[str, ...]]:
            return fk.parent.name, tuple(fk.column_keys)

        before = {key(fk): fk for fk in removed}
        after = {key(fk): fk for fk in added}
        for k in sorted(set(before) | set(after)):
            table, columns = k
            if any((table, c) in self.refused_columns for c in columns):
                continue
            if k in after and all(c in self.added.get(table, {}) for c in columns):
                continue  # written inline with the new column
            if k in before and not all(self.model.tables[table].has(c) for c in columns):
                continue  # the field itself is refused as removed
            if k in before and k in after:
                old, new = before[k], after[k]
                old_rule = self.sqlite_on_delete(table, columns) if self.sqlite else old.ondelete
                if _referred(old) == _referred(new) and _rule(old_rule) == _rule(new.ondelete):
                    continue  # SQLAlchemy reads no ON DELETE from a REFERENCES written in ADD COLUMN
                detail = f"on_delete {_rule(old_rule)} to {_rule(new.ondelete)}"
                if _referred(old) != _referred(new):
                    detail = f"from {_referred(old)} to {_referred(new)}"
                why = f"the link would change ({detail}); schema apply does not change an existing link, so "
            elif k in after:
                why = f"the field would become a link to {_referred(after[k])}; schema apply does not add a link to an existing field, so "
            else:
                why = "the field is a link in the database but not in the data model; schema apply does not remove a link, so "
            self.refuse(table, list(columns), why + NOTHING)

    def links_by_triggers(self) -> None:
        """PostgreSQL: every link of the model kept by its triggers (schemas/links.py). A
        database made before keeps a link by a foreign key: the change replaces it, when
        it links the same table with the same on_delete rule."""
        inspector = sa.inspect(self.conn)
        existing = set(inspector.get_table_names())
        functions, triggers = links.present_functions(self.conn), links.present_triggers(self.conn)
        kept = links.kept_rules(triggers)
        constraints: dict[tuple[str, str], tuple[str, links.LinkRule]] = {}
        for table in sorted(existing & set(self.model.tables)):
            for fk in inspector.get_foreign_keys(table):
                if len(fk["constrained_columns"]) == 1 and fk["name"]:
                    column = fk["constrained_columns"][0]
                    rule = _rule(fk.get("options", {}).get("ondelete"))
                    constraints[(table, column)] = (fk["name"], links.LinkRule(table, column, fk["referred_table"], rule))
        wanted = links.rules(self.model)
        for link in wanted:
            key = (link.table, link.column)
            if key in self.refused_columns:
                continue
            if link.table not in existing or link.column in self.added.get(link.table, {}):
                self.link(link, links.missing_parts(functions, triggers, [link]))
                continue
            old = kept.get(key) or (constraints[key][1] if key in constraints else None)
            if old is None:
                self.refuse(link.table, [link.column], f"the field would become a link to {link.linked}; schema apply does not add a link to an existing field, so " + NOTHING)
            elif (old.linked, _rule(old.on_delete)) != (link.linked, _rule(link.on_delete)):
                detail = f"from {old.linked} to {link.linked}" if old.linked != link.linked else f"on_delete {_rule(old.on_delete)} to {_rule(link.on_delete)}"
                self.refuse(link.table, [link.column], f"the link would change ({detail}); schema apply does not change an existing link, so " + NOTHING)
            else:
                self.link(link, links.missing_parts(functions, triggers, [link]), constraints[key][0] if key in constraints else None)
        wanted_keys = {(link.table, link.column) for link in wanted}
        for table, column in sorted((set(kept) | set(constraints)) - wanted_keys):
            if table in self.model.tables and self.model.tables[table].has(column) and (table, column) not in self.refused_columns:
                self.refuse(table, [column], "the field is a link in the database but not in the data model; schema apply does not remove a link, so " + NOTHING)

    def link(self, link: links.LinkRule, missing: list[str], replacing: str | None = None) -> None:
        """The statements that make the database keep `link` by its triggers, when it lacks
        some of them (`missing`) or keeps the link by a foreign key (`replacing`, its name)."""
        if not missing and replacing is None:
            return
        preparer = self.dialect.identifier_preparer
        statements = [f"ALTER TABLE {preparer.quote(link.table)} DROP CONSTRAINT {preparer.quote(replacing)}"] if replacing else []
        if any(part.startswith("function ") for part in missing) and not self.functions_planned:
            statements += links.function_ddl()
            self.functions_planned = True
        statements += links.trigger_ddl([link], preparer)
        verb = "check" if replacing is None else "check (instead of a foreign key)"
        self.change(5000, link.table, link.column, f"{verb} link {link.table}.{link.column} to {link.linked} per statement",
                    lambda: [ops.ExecuteSQLOp(statement) for statement in statements])

    def other(self, diff: tuple[Any, ...]) -> None:
        table, column = _diff_place(diff)
        self.refuse(table, [column], f"{diff[0].replace('_', ' ')} is not a change schema apply makes; " + NOTHING)


def _referred(fk: sa.ForeignKeyConstraint) -> str:
    return fk.elements[0].target_fullname.rsplit(".", 1)[0]


def _rule(ondelete: str | None) -> str:
    return (ondelete or "no action").lower().replace(" ", "_")


def _diff_place(diff: tuple[Any, ...]) -> tuple[str, str]:
    for item in diff[1:]:
        if isinstance(item, sa.Table):
            return item.name, "*"
        if isinstance(item, (sa.Index, sa.Constraint)) and item.table is not None:
            return item.table.name, ",".join(c.name for c in item.columns) or "*"
    if len(diff) > 3 and isinstance(diff[2], str) and isinstance(diff[3], str):
        return diff[2], diff[3]
    return (diff[2] if len(diff) > 2 and isinstance(diff[2], str) else "?"), "*"
