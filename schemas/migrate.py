"""Schema changes on an existing database: what the data model needs (`plan`), made in
one transaction (`apply`), or refused when a change could lose or break data.

The comparison is Alembic's (`alembic.autogenerate.compare_metadata`), restricted to the
model's own tables: any other table of the database (Dagster's, a user's own, a table
whose schema file was removed) is never reported nor touched. Allowed: a new table, a new
field (with its unique index or its link), a string length that grows (or shrinks when
every stored value still fits). Refused, with one sentence naming table and field: a type
change, a removed field, `nullable: false` with NULLs present, a length shorter than a
stored value, and whatever else the dialect cannot do in place.

Every name in the DDL comes from the validated model (or from the database's own
reflection, to name what is refused); values in checks are bound. What each difference
becomes, a change or a refusal, is `planner.py`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations

from schemas.errors import CampaignError
from schemas.planner import Change, Planner, type_text

if TYPE_CHECKING:
    from schemas.model import DataModel

# pg_advisory_xact_lock(CLASS, hashtext(current_schema())): one migration at a time per schema.
PG_LOCK_CLASS = 0x43504D47  # "CPMG"


class SchemaChangeRefused(CampaignError):
    """The database cannot be brought to the data model without losing or breaking data."""

    def __init__(self, refusals: list[str]):
        self.refusals = list(refusals)
        super().__init__(" ".join(self.refusals))


@dataclass
class Plan:
    dialect: str
    changes: list[Change] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes and not self.refusals

    @property
    def ddl(self) -> list[str]:
        return [statement for change in self.changes for statement in change.ddl]


# ---------------------------------------------------------------------------------------
# Comparing


def _compare_type(context: Any, inspected_column: Any, metadata_column: Any, inspected_type: Any, metadata_type: Any) -> bool:
    # Stricter than Alembic's affinity rule on SQLite, where INTEGER (an integer field) and
    # BIGINT (a decimal's count of its smallest unit) have the same affinity but do not
    # hold the same thing.
    return type_text(inspected_type, context.dialect) != type_text(metadata_type, context.dialect)


def _flatten(diffs: list[Any]) -> Iterator[tuple[Any, ...]]:
    for diff in diffs:
        if isinstance(diff, list):
            yield from diff
        else:
            yield diff


IGNORED = {"modify_comment", "add_table_comment", "remove_table_comment", "modify_default", "remove_table"}


def plan(bind: sa.Engine | sa.Connection, model: DataModel) -> Plan:
    """What the database needs to match `model`: the changes with their DDL, and the
    refusals (one sentence each). Reads only."""
    if isinstance(bind, sa.Engine):
        with bind.connect() as conn:
            return plan(conn, model)
    conn = bind
    names = set(model.tables)

    def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
        if type_ == "schema":
            return name is None  # the default schema (search_path) only
        if type_ == "table":
            return name in names
        return True

    def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return name in names
        if type_ == "foreign_key_constraint" and conn.dialect.name == "postgresql":
            return False  # links are triggers there: compared by `links_by_triggers`
        return True

    context = MigrationContext.configure(conn, opts={
        "compare_type": _compare_type,
        "compare_server_default": False,
        "include_name": include_name,
        "include_object": include_object,
    })
    planner = Planner(conn, model)
    wanted: dict[tuple[str, frozenset[str]], tuple[str, list[str]]] = {}
    present: dict[tuple[str, frozenset[str]], list[str]] = {}
    fk_added: list[sa.ForeignKeyConstraint] = []
    fk_removed: list[sa.ForeignKeyConstraint] = []
    diffs = list(_flatten(compare_metadata(context, model.metadata)))
    # Columns first: what is added or refused decides how constraints on it are read.
    for diff in sorted(diffs, key=lambda d: d[0] not in ("add_table", "add_column", "remove_column")):
        kind = diff[0]
        if kind in IGNORED:
            continue
        if kind == "add_table":
            planner.add_table(diff[1])
        elif kind == "add_column":
            planner.add_column(diff[2], diff[3])
        elif kind == "remove_column":
            planner.remove_column(diff[2], diff[3])
        elif kind == "modify_type":
            planner.modify_type(diff[2], diff[3], diff[4], diff[5], diff[6])
        elif kind == "modify_nullable":
            planner.modify_nullable(diff[2], diff[3], diff[4], diff[6])
        elif kind in ("add_constraint", "remove_constraint") and isinstance(diff[1], sa.UniqueConstraint):
            columns = [c.name for c in diff[1].columns]
            key = (diff[1].table.name, frozenset(columns))
            if kind == "add_constraint":
                wanted[key] = (diff[1].table.name, columns)
            else:
                present[key] = columns
        elif kind in ("add_index", "remove_index") and isinstance(diff[1], sa.Index):
            if not diff[1].unique:
                if kind == "add_index":  # the model's own: a link column's index
                    planner.add_index(diff[1])
                continue  # an index of the database's own (a DBA's): not the model's business
            columns = [c.name for c in diff[1].columns]
            key = (diff[1].table.name, frozenset(columns))
            if kind == "add_index":
                wanted[key] = (diff[1].table.name, columns)
            else:
                present[key] = columns
        elif kind == "add_fk":
            fk_added.append(diff[1])
        elif kind == "remove_fk":
            fk_removed.append(diff[1])
        else:
            planner.other(diff)
    if conn.dialect.name == "sqlite":
        present |= _unnamed_sqlite_uniques(conn, model)
    planner.uniques(wanted, present)
    planner.foreign_keys(fk_added, fk_removed)
    if conn.dialect.name == "postgresql":
        planner.links_by_triggers()
    changes = [change for _, change in sorted(planner.changes, key=lambda item: item[0])]
    return Plan(conn.dialect.name, changes, sorted(planner.refusals))  # by table and field


def _model_uniques(table: sa.Table) -> set[frozenset[str]]:
    """The column sets `table` promises unique: unique columns, constraints and indexes."""
    found = {frozenset([c.name]) for c in table.columns if c.unique}
    found |= {frozenset(c.name for c in uq.columns) for uq in table.constraints if isinstance(uq, sa.UniqueConstraint)}
    return found | {frozenset(c.name for c in ix.columns) for ix in table.indexes if ix.unique}


def _unnamed_sqlite_uniques(conn: sa.Connection, model: DataModel) -> dict[tuple[str, frozenset[str]], list[str]]:
    """The unique constraints SQLite holds without a name (made with CREATE TABLE) that the
    model no longer has: Alembic leaves unnamed constraints out of its comparison."""
    inspector = sa.inspect(conn)
    existing = set(inspector.get_table_names())
    found: dict[tuple[str, frozenset[str]], list[str]] = {}
    for name in sorted(set(model.tables) & existing):
        promised = _model_uniques(model.metadata.tables[name])
        for uq in inspector.get_unique_constraints(name):
            columns = frozenset(uq["column_names"])
            if uq.get("name") is None and columns not in promised:
                found[(name, columns)] = list(uq["column_names"])
    return found


# ---------------------------------------------------------------------------------------
# Applying


def _lock(conn: sa.Connection) -> None:
    """One migration at a time: SQLite's BEGIN IMMEDIATE already holds the write lock;
    PostgreSQL takes an advisory lock for the transaction, per schema."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_LOCK_CLASS, sa.func.hashtext(sa.func.current_schema()))))


def execute(conn: sa.Connection, planned: Plan) -> None:
    runner = Operations(MigrationContext.configure(conn))
    for change in planned.changes:
        for operation in change.operations:
            runner.invoke(operation)


def apply(engine: sa.Engine, model: DataModel) -> Plan:
    """Bring the database to `model` in one transaction and return what was done; or
    raise SchemaChangeRefused (one sentence per refusal) having changed nothing."""
    first = plan(engine, model)  # reads only: most of the time there is nothing to do
    if first.refusals:
        raise SchemaChangeRefused(first.refusals)
    if first.empty:
        return first
    with engine.begin() as conn:
        _lock(conn)
        planned = plan(conn, model)  # again, under the lock: another process may have done it
        if planned.refusals:
            raise SchemaChangeRefused(planned.refusals)
        execute(conn, planned)
    return planned


def prepare(engine: sa.Engine, model: DataModel, builtin: DataModel) -> Plan | None:
    """A plain connection's first use: bring the database to `model` when nothing is
    refused, else only create the built-in tables it lacks (the importer's bookkeeping),
    leaving the refusals for `apply` to report."""
    try:
        return apply(engine, model)
    except SchemaChangeRefused:
        builtin.metadata.create_all(engine, checkfirst=True)
        return None
