"""Column paths of an export: a column across many-to-one links (`recipient.email`), a
collection of the rows that link to the exported record, and the placeholders of a
calculated value; each checked against the data model, with a ValueError naming what is
missing."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import schemas


@dataclass(frozen=True)
class FieldPath:
    """A column of the exported table, or of a table reached from it through many-to-one
    links (`recipient.email`): the links in the order followed, and the field at the end."""

    links: tuple[schemas.Link, ...]
    field: schemas.Field


@dataclass(frozen=True)
class CollectionPath:
    """A collection: the rows of `table` whose `owner` link points at the exported record,
    and the column (possibly across `table`'s other links) whose values are gathered."""

    table: schemas.TableSpec
    owner: schemas.Link
    path: FieldPath


def follow(model: schemas.DataModel, spec: schemas.TableSpec, dotted: str) -> FieldPath:
    """`field` or `link.….field` from `spec`; ValueError naming what is missing."""
    names = dotted.split(".")
    if not all(names):
        raise ValueError(f"{dotted!r} is not a column path (names joined by dots, such as recipient.email)")
    links: list[schemas.Link] = []
    current = spec
    for name in names[:-1]:
        link = current.link(name)
        if link is None:
            if current.has(name):
                raise ValueError(f"{current.name}.{name} is a column, not a link; only links can be followed")
            known = ", ".join(l.name for l in current.links) or "none"
            raise ValueError(f"{current.name} has no link {name!r} (its links: {known})")
        links.append(link)
        current = model.table(link.table)
    if not current.has(names[-1]):
        link = current.link(names[-1])
        hint = f"; {names[-1]} is a link: name one of its columns, such as {names[-1]}.id" if link else ""
        raise ValueError(f"{current.name} has no column {names[-1]!r}{hint}")
    return FieldPath(tuple(links), current.field(names[-1]))


def collection_path(model: schemas.DataModel, spec: schemas.TableSpec, dotted: str, link: str | None) -> CollectionPath:
    """`<table>.<field>` or `<table>.<link>.….<field>`, `<table>` linking to `spec`; a
    ValueError names the key at fault (`collection` or `link`)."""
    names = dotted.split(".")
    if len(names) < 2 or not all(names):
        raise ValueError(f"collection: {dotted!r} is not <table>.<column> or <table>.<link>.<column>")
    table = model.tables.get(names[0])
    linking = sorted({s.name for s, _ in model.links_to(spec.name)})
    if table is None:
        raise ValueError(f"collection: no table named {names[0]!r} (tables linking to {spec.name}: {', '.join(linking) or 'none'})")
    owners = [l for l in table.links if l.table == spec.name]
    if link is not None:
        owner = table.link(link)
        if owner is None or owner.table != spec.name:
            raise ValueError(f"link: {table.name} has no link {link!r} to {spec.name} (its links to {spec.name}: "
                             f"{', '.join(l.name for l in owners) or 'none'})")
    elif not owners:
        raise ValueError(f"collection: {table.name} has no link to {spec.name}; a collection gathers the rows of a "
                         f"table that links to it (tables linking to {spec.name}: {', '.join(linking) or 'none'})")
    elif len(owners) > 1:
        raise ValueError(f"collection: {table.name} has {len(owners)} links to {spec.name} "
                         f"({', '.join(l.name for l in owners)}); say which one holds the exported record with link:")
    else:
        owner = owners[0]
    try:
        return CollectionPath(table, owner, follow(model, table, ".".join(names[1:])))
    except ValueError as exc:
        raise ValueError(f"collection: {exc}") from None


def value_parts(text: str) -> list[tuple[str, str | None]]:
    """A calculated value as (literal text, column path or None) pieces: `{last_name}`
    is a placeholder, `{{` and `}}` are braces."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        raise ValueError("a single { or } must be written {{ or }}") from None
    parts: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parsed:
        if name == "":
            raise ValueError("{} names no column; write {{ and }} for braces")
        if spec or conversion:
            raise ValueError(f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}: a "
                             "placeholder holds only a column path, such as {last_name}")
        parts.append((literal, name))
    return parts


def label_key(f: schemas.Field | None, key: str) -> Any:
    """A `labels` key (kept as text, so the template reads the same from YAML and from
    the job's JSON) as a value of the column: `f` None means a date part (an integer)."""
    kind = f.kind if f is not None else "integer"
    if kind == "string":
        return key
    if kind == "integer":
        try:
            return int(key)
        except ValueError:
            raise ValueError(f"{key!r} is not a whole number") from None
    if kind == "boolean":
        if key not in ("true", "false"):
            raise ValueError(f"{key!r} is not true or false")
        return key == "true"
    assert f is not None
    return f.python_value(key)
