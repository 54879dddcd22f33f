"""Building test templates from dicts, so each test states only what it changes."""

from __future__ import annotations

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


def campaign_job(name: str) -> Any:
    """A template's job from the code location the environment describes: what Dagster
    rebuilds in a new process to re-execute a run (dg.build_reconstructable_job)."""
    from campaign_pipelines.definitions import build_definitions

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
