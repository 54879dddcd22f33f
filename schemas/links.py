"""Links on PostgreSQL: checked once per statement, not once per row.

A foreign key makes PostgreSQL look up (and lock) the linked record once per inserted
row: 12-18 s per million purchases linked to their recipient, most of such an import
(bench/NOTES.md, 2 December). Here a link is kept by three statement-level triggers
instead, each one set-based query over the statement's transition table:

- on the linking table (`purchase`), after INSERT and after UPDATE: every new link value
  names an existing record (one anti-join), under a SHARE lock on the linked table
  (`recipient`) held to the end of the transaction, so no linked record can go before
  the new rows are committed;
- on the linked table, after DELETE: the link's `on_delete` rule (cascade, set_null,
  restrict) applied to the deleted ids at once;
- on the linked table, before an UPDATE that sets `id`: refused (ids are generated,
  never changed; a foreign key would refuse a change too).

The cost of the table lock: while a transaction writes links to `recipient`, writers of
`recipient` itself wait for it (readers do not). Campaign Pipelines' merge takes that lock
first (parents before the tables it writes), so two imports cannot deadlock on it.
Under READ COMMITTED (PostgreSQL's default, and the merge's) each query in the triggers
sees every committed row. Under REPEATABLE READ the check also locks the linked rows
(FOR KEY SHARE), so a concurrent delete fails the transaction as a foreign key would;
a REPEATABLE READ *delete* cannot see links committed after its snapshot
(docs/data-schemas.md says so). SQLite keeps real foreign keys (one writer at a time,
and its checks cost little).

Every identifier comes from the validated data model and reaches SQL quoted by the
dialect (DDL) or through `format('%I')` (the functions' dynamic statements).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from schemas.model import DataModel

PREFIX = "campaign_link"
MAX_IDENTIFIER = 63

CHECK_FUNCTION = f"{PREFIX}_check"
DELETE_FUNCTION = f"{PREFIX}_on_delete"
KEEP_ID_FUNCTION = f"{PREFIX}_keep_id"

# TG_ARGV: the link column, the linked table (in the linking table's schema).
CHECK_BODY = """
DECLARE
    missing bigint;
BEGIN
    EXECUTE format('LOCK TABLE %I.%I IN SHARE MODE', TG_TABLE_SCHEMA, TG_ARGV[1]);
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM %2$I.%3$I p WHERE p.id IN '
                       '(SELECT n.%1$I FROM new_rows n) FOR KEY SHARE OF p) l',
                       TG_ARGV[0], TG_TABLE_SCHEMA, TG_ARGV[1]);
    END IF;
    EXECUTE format('SELECT n.%1$I FROM new_rows n WHERE n.%1$I IS NOT NULL AND NOT EXISTS '
                   '(SELECT FROM %2$I.%3$I p WHERE p.id = n.%1$I) LIMIT 1',
                   TG_ARGV[0], TG_TABLE_SCHEMA, TG_ARGV[1]) INTO missing;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME, COLUMN = TG_ARGV[0],
            MESSAGE = format('%s.%s = %s links to no %s record', TG_TABLE_NAME, TG_ARGV[0], missing, TG_ARGV[1]);
    END IF;
    RETURN NULL;
END
"""

# TG_ARGV: the linking table, its link column, the rule (cascade, set_null, restrict).
DELETE_BODY = """
DECLARE
    linked bigint;
BEGIN
    IF TG_ARGV[2] = 'cascade' THEN
        EXECUTE format('DELETE FROM %I.%I c WHERE c.%I IN (SELECT o.id FROM old_rows o)',
                       TG_TABLE_SCHEMA, TG_ARGV[0], TG_ARGV[1]);
    ELSIF TG_ARGV[2] = 'set_null' THEN
        EXECUTE format('UPDATE %I.%I c SET %I = NULL WHERE c.%I IN (SELECT o.id FROM old_rows o)',
                       TG_TABLE_SCHEMA, TG_ARGV[0], TG_ARGV[1], TG_ARGV[1]);
    ELSE
        EXECUTE format('SELECT o.id FROM old_rows o WHERE EXISTS (SELECT FROM %I.%I c WHERE c.%I = o.id) LIMIT 1',
                       TG_TABLE_SCHEMA, TG_ARGV[0], TG_ARGV[1]) INTO linked;
        IF linked IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
                SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_ARGV[0], COLUMN = TG_ARGV[1],
                MESSAGE = format('%s %s is still linked from %s.%s (on_delete: restrict)',
                                 TG_TABLE_NAME, linked, TG_ARGV[0], TG_ARGV[1]);
        END IF;
    END IF;
    RETURN NULL;
END
"""

# Fires only for an UPDATE that sets `id` at all: a row trigger would fetch and lock every
# updated row first (a 1M-recipient re-import was 3-17 % slower with one).
KEEP_ID_BODY = """
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME,
        COLUMN = 'id', MESSAGE = format('%s.id cannot be set by an UPDATE: other tables link to it', TG_TABLE_NAME);
END
"""

FUNCTIONS = {CHECK_FUNCTION: CHECK_BODY, DELETE_FUNCTION: DELETE_BODY, KEEP_ID_FUNCTION: KEEP_ID_BODY}
# (table, trigger name) -> (function, arguments), as the database has them
Triggers = dict[tuple[str, str], tuple[str, tuple[str, ...]]]


@dataclass(frozen=True)
class Trigger:
    table: str  # the table it is on
    name: str
    function: str
    args: tuple[str, ...]
    timing: str  # "AFTER INSERT", ...
    referencing: str  # "NEW TABLE AS new_rows", or ""

    def ddl(self, preparer: sa.sql.compiler.IdentifierPreparer) -> str:
        args = ", ".join("'" + a.replace("'", "''") + "'" for a in self.args)
        referencing = f" REFERENCING {self.referencing}" if self.referencing else ""
        return (
            f"CREATE OR REPLACE TRIGGER {preparer.quote(self.name)} {self.timing} ON {preparer.quote(self.table)}"
            f"{referencing} FOR EACH STATEMENT EXECUTE FUNCTION {self.function}({args})"
        )


@dataclass(frozen=True)
class LinkRule:
    """One link as the database keeps it: `table.column` names an `id` of `linked`."""

    table: str
    column: str
    linked: str
    on_delete: str  # cascade, set_null, restrict

    def triggers(self) -> list[Trigger]:
        args = (self.column, self.linked)
        return [
            Trigger(self.table, _name(f"{PREFIX}_{self.column}_insert"), CHECK_FUNCTION, args, "AFTER INSERT", "NEW TABLE AS new_rows"),
            Trigger(self.table, _name(f"{PREFIX}_{self.column}_update"), CHECK_FUNCTION, args, "AFTER UPDATE", "NEW TABLE AS new_rows"),
            Trigger(self.linked, _name(f"{PREFIX}_{self.table}_{self.column}_delete"), DELETE_FUNCTION,
                    (self.table, self.column, self.on_delete), "AFTER DELETE", "OLD TABLE AS old_rows"),
            Trigger(self.linked, _name(f"{PREFIX}_keep_id"), KEEP_ID_FUNCTION, (), "BEFORE UPDATE OF id", ""),
        ]


def _name(name: str) -> str:
    if len(name) <= MAX_IDENTIFIER:
        return name
    return f"{PREFIX}_{hashlib.sha1(name.encode()).hexdigest()[:20]}"


def rules(model: DataModel) -> list[LinkRule]:
    """The model's links, in the model's table order."""
    found = []
    for table in model.metadata.sorted_tables:
        spec = model.tables.get(table.name)
        if spec is None:
            continue
        for link in spec.links:
            found.append(LinkRule(spec.name, link.column, link.table, link.on_delete))
    return found


def function_ddl() -> list[str]:
    return [
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $campaign${body}$campaign$"
        for name, body in FUNCTIONS.items()
    ]


def trigger_ddl(links: list[LinkRule], preparer: sa.sql.compiler.IdentifierPreparer) -> list[str]:
    statements: dict[tuple[str, str], str] = {}  # keep_id once per linked table
    for link in links:
        for trigger in link.triggers():
            statements[(trigger.table, trigger.name)] = trigger.ddl(preparer)
    return list(statements.values())


def install(conn: sa.Connection, model: DataModel) -> None:
    """The functions and the triggers of the model's links (idempotent)."""
    for statement in function_ddl() + trigger_ddl(rules(model), conn.dialect.identifier_preparer):
        conn.execute(sa.text(statement))


def keep_with(model: DataModel) -> None:
    """`metadata.create_all` on PostgreSQL installs the links' triggers with the tables."""

    def after_create(target: sa.MetaData, connection: sa.Connection, **kw: object) -> None:
        if connection.dialect.name == "postgresql":
            install(connection, model)

    sa.event.listen(model.metadata, "after_create", after_create)


# ---------------------------------------------------------------------------------------
# What the database has


def present_functions(conn: sa.Connection) -> dict[str, str]:
    rows = conn.execute(sa.text(
        "SELECT p.proname, p.prosrc FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace "
        "AND p.proname = ANY(:names)"
    ), {"names": list(FUNCTIONS)})
    return {name: source for name, source in rows}


def present_triggers(conn: sa.Connection) -> Triggers:
    """(table, trigger) -> (function, args) for this module's triggers in the current schema."""
    rows = conn.execute(sa.text(
        "SELECT c.relname, t.tgname, f.proname, t.tgnargs, encode(t.tgargs, 'escape') "
        "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc f ON f.oid = t.tgfoid "
        "WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal AND t.tgname LIKE :prefix"
    ), {"prefix": PREFIX + "%"})
    found = {}
    for table, name, function, nargs, raw in rows:
        args = tuple(raw.split("\\000")[:nargs]) if nargs else ()
        found[(table, name)] = (function, args)
    return found


def kept_rules(triggers: Triggers) -> dict[tuple[str, str], LinkRule]:
    """The links the database keeps by triggers, by (table, column), read off the delete triggers."""
    found = {}
    for (linked, _), (function, args) in triggers.items():
        if function == DELETE_FUNCTION and len(args) == 3:
            found[(args[0], args[1])] = LinkRule(args[0], args[1], linked, args[2])
    return found


def missing_parts(functions: dict[str, str], triggers: Triggers, links: list[LinkRule]) -> list[str]:
    """What of the functions and of `links`' triggers the database (`present_functions`,
    `present_triggers`) lacks or has otherwise."""
    missing = [f"function {name}" for name, body in FUNCTIONS.items() if functions.get(name) != body]
    for link in links:
        for trigger in link.triggers():
            if triggers.get((trigger.table, trigger.name)) != (trigger.function, trigger.args):
                missing.append(f"trigger {trigger.name} on {trigger.table}")
    return missing
