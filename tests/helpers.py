"""Building test templates from dicts, so each test states only what it changes."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import yaml

PEOPLE = {
    "name": "people",
    "kind": "import",
    "label": "People",
    "source": {"path": "inbox/people.csv", "delimiter": ";"},
    "target": {"schema": "recipient", "operation": "insert_or_update", "keys": ["email"], "secondary_keys": ["crm_id"]},
    "columns": [
        {"source": "email", "target": "email", "trim": True, "case": "lower"},
        {"source": "crm_id", "target": "crm_id"},
        {"source": "first_name", "target": "first_name"},
        {"source": "last_name", "target": "last_name"},
    ],
}


def people_template(
    *, source: dict | None = None, target: dict | None = None, errors: dict | None = None,
    columns: list[dict] | None = None, extra_columns: list[dict] | None = None, name: str = "people",
    **top_level: Any,
) -> str:
    """The people import, changed where told; `top_level` adds keys such as collector."""
    data: dict[str, Any] = copy.deepcopy(PEOPLE)
    data["name"] = name
    data["source"].update(source or {})
    data["target"].update(target or {})
    if errors:
        data["errors"] = errors
    if columns is not None:
        data["columns"] = columns
    data["columns"] += extra_columns or []
    data.update(top_level)
    return yaml.safe_dump(data, sort_keys=False)


HEADER = "email;crm_id;first_name;last_name\n"


def people_file(*lines: str) -> str:
    return HEADER + "".join(line + "\n" for line in lines)


def export_template(name="out", columns=None, **changes) -> str:
    """An export of recipients' e-mails; each keyword updates (or adds) a section."""
    data = {
        "name": name,
        "kind": "export",
        "source": {"schema": "recipient", "columns": columns or [{"column": "email"}], "order_by": ["email"]},
        "destination": {"path": f"outbox/{name}.csv"},
    }
    for section, values in changes.items():
        data.setdefault(section, {}).update(values)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# An import into another table than recipient: the service catalogue.
SERVICES = """\
name: import_services
kind: import
source: {path: inbox/services.csv, delimiter: ";"}
target: {schema: service, keys: [name]}
columns:
  - {source: name, target: name}
  - {source: label, target: label}
  - {source: channel, target: channel}
"""


def campaign_job(name: str, deployment: str = "") -> Any:
    """A template's job from the code location the environment describes: what Dagster
    rebuilds in a new process to re-execute a run (dg.build_reconstructable_job). Dagster
    caches a rebuilt job by its arguments: `deployment` (a test's folder) keeps one test's
    job, with its data dir, from serving the next test in the same process."""
    from campaign_pipelines.code_location import build_definitions

    return build_definitions().resolve_job_def(name)


# A small user table other data schemas link to.
STORE = """\
name: store
label: Store
fields:
  - {name: code, kind: string, max_length: 8, nullable: false, unique: true}
  - {name: city, kind: string, max_length: 64}
key: [code]
"""


# A table whose link to recipient restricts deletes (on_delete: restrict).
CARD = """\
name: loyalty_card
fields:
  - {name: number, kind: string, max_length: 16, nullable: false}
links:
  - {name: recipient, table: recipient, via: email, nullable: false, on_delete: restrict}
key: [number]
"""


@contextlib.contextmanager
def failing_writes(engine: Any, table: str = "recipient") -> Any:
    """Every write to `table` fails ("disk on fire") while this lasts, in any process:
    a trigger in the database, as a real fault would be (a run's merge rolls back)."""
    import sqlalchemy as sa

    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text(
                "CREATE FUNCTION disk_on_fire() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$"
            ))
            conn.execute(sa.text(
                f'CREATE TRIGGER disk_on_fire BEFORE INSERT OR UPDATE ON "{table}" '
                "FOR EACH STATEMENT EXECUTE FUNCTION disk_on_fire()"
            ))
        else:
            for event in ("INSERT", "UPDATE"):
                conn.execute(sa.text(
                    f'CREATE TRIGGER disk_on_fire_{event.lower()} BEFORE {event} ON "{table}" '
                    "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
                ))
    try:
        yield
    finally:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text(f'DROP TRIGGER disk_on_fire ON "{table}"'))
                conn.execute(sa.text("DROP FUNCTION disk_on_fire()"))
            else:
                for event in ("insert", "update"):
                    conn.execute(sa.text(f"DROP TRIGGER disk_on_fire_{event}"))


def work_folders(data_dir: Any) -> list[str]:
    work = data_dir / ".work"
    return sorted(p.name for p in work.iterdir()) if work.exists() else []


def stage_tables(engine: Any) -> list[str]:
    import sqlalchemy as sa

    return sorted(n for n in sa.inspect(engine).get_table_names() if n.startswith("import_stage_"))
