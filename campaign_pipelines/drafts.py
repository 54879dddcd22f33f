"""An import template draft from what `detect.py` found in a sample file: always written,
even when the guess is incomplete. What the guess could not settle (a reconciliation key,
a required field, a link no column names) is left as a commented TODO at its place, for the
user to finish; the draft then loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

import schemas
from campaign_pipelines.detect import Detected, candidate_keys, keys_of


@dataclass
class Draft:
    text: str
    todos: list[str]  # what is left to the user, one line each


def _column(found: Detected, model: schemas.DataModel, spec: schemas.TableSpec, title: str, target: str) -> dict[str, Any]:
    column: dict[str, Any] = {"source": title if found.header else int(title), "target": target}
    if title in found.links:
        column["link"] = {"via": found.links[title]}
        kind = model.table(spec.link(target).table).field(found.links[title]).kind  # type: ignore[union-attr]
        value_field = found.links[title]
    else:
        kind, value_field = spec.field(target).kind, target
    if kind == "string":
        column["trim"] = True
    if value_field == "email":
        column["case"] = "lower"
    if title in found.formats:
        column["format"] = found.formats[title]
    return column


def _flow(column: dict[str, Any]) -> str:
    return yaml.safe_dump(column, sort_keys=False, allow_unicode=True, default_flow_style=True, width=10_000).strip()


def _missing(found: Detected, model: schemas.DataModel, spec: schemas.TableSpec) -> list[tuple[str, str]]:
    """(target, why) for each field an insert must fill and each required link, unmapped."""
    mapped = set(found.mapping.values())
    missing = [
        (f.name, f"{spec.name}.{f.name} cannot be empty")
        for f in spec.fields
        if not f.nullable and f.default is None and not (f.generated or f.managed or f.foreign_key) and f.name not in mapped
    ]
    for link in spec.links:
        if link.name not in mapped:
            via = link.via or next((f.name for f in model.table(link.table).unique_fields), "id")
            required = "required" if not link.nullable else "optional"
            missing.append((link.name, f"the {required} link to {link.table}, by its {via}"))
    return missing


def _source(found: Detected, path: str) -> dict[str, Any]:
    if found.format == "delimited":
        return {"path": path, "delimiter": found.delimiter, "quote": found.quote, "encoding": found.encoding, "header": found.header}
    source: dict[str, Any] = {"path": path, "format": found.format}
    if found.records:
        source["records"] = found.records
    if found.namespaces:
        source["namespaces"] = found.namespaces
    if found.sheet:
        source["sheet"] = found.sheet
    if found.skip_lines:
        source["skip_lines"] = found.skip_lines
    return source


def draft_template(name: str, found: Detected, table: str, path: str, origin: str, model: schemas.DataModel) -> Draft:
    spec = model.table(table)
    keys, secondary = keys_of(found, spec)
    target: dict[str, Any] = {"schema": table, "operation": "insert_or_update", "keys": keys}
    if secondary:
        target["secondary_keys"] = secondary
    draft = {
        "name": name,
        "kind": "import",
        "label": f"{name} (draft)",
        "source": _source(found, path),
        "target": target,
    }
    columns = [_column(found, model, spec, title, target_) for title, target_ in found.mapping.items()]
    todos: list[str] = []
    body = yaml.safe_dump(draft, sort_keys=False, allow_unicode=True, default_flow_style=None, width=120)
    # One line per column, as the built-in templates are written.
    body += "columns:\n" + "".join(f"  - {_flow(column)}\n" for column in columns)
    if not keys:
        choices = " or ".join(", ".join(k) for k in candidate_keys(spec)) or "a unique field"
        todo = f"no column maps to a key field of {table} ({choices}): map one and name it in target.keys"
        todos.append(todo)
        body = body.replace("  keys: []\n", f"  keys: []  # TODO: {todo}\n", 1)
    for field, why in _missing(found, model, spec):
        todos.append(f"{why}: map a column to {field}")
        body += f"  # TODO: {why}; map a column to it:\n  # - {{source: \"<column title>\", target: {field}}}\n"
    unmapped = ", ".join(repr(t) for t in found.unmapped) or "none"
    header = (
        f"# Drafted by `campaign-pipelines templates new` from {origin}: check it with\n"
        f"# `campaign-pipelines templates preview {name}` before running it.\n"
        f"# Columns not mapped (no field of {table} answers to their title): {unmapped}.\n"
    )
    if todos:
        header += f"# {len(todos)} TODO(s) below: the template loads once they are done.\n"
    return Draft(header + body, todos)
