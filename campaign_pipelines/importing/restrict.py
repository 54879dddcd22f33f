"""A `delete` import meeting a link with `on_delete: restrict`: the lines whose record
another table still links to are rejected, naming that table and one of its records, and
the other lines are deleted. Without this the database would refuse the whole statement
(SQLite: "FOREIGN KEY constraint failed", naming nothing), failing the run.

Decided set-based, in the merge's transaction (the linking tables are read after the
target's write lock is taken): one UPDATE of the decisions per restricting link.
"""

from __future__ import annotations

import sqlalchemy as sa

import schemas

PREFIX = "restricted:"


def restricting_links(model: schemas.DataModel, table: str) -> list[tuple[schemas.TableSpec, schemas.Link]]:
    """(linking table, link) of every link to `table` whose on_delete is restrict."""
    found = []
    for spec, name in model.links_to(table):
        link = spec.link(name)
        if link is not None and link.on_delete == "restrict":
            found.append((spec, link))
    return found


def hold_restricted(conn: sa.Connection, decided: sa.Table, model: schemas.DataModel, table: str) -> None:
    """Turn `delete` into `restricted:<table>.<link>` for the records still linked."""
    for spec, link in restricting_links(model, table):
        linking = spec.table
        still_linked = sa.exists().where(linking.c[link.column] == decided.c.match_id)
        conn.execute(
            sa.update(decided)
            .where(decided.c.action == "delete", still_linked)
            .values(action=f"{PREFIX}{spec.name}.{link.name}")
        )


def _label(spec: schemas.TableSpec) -> list[str]:
    """The columns that name a record of `spec` to a user: its natural key, else its id."""
    if spec.unique_fields:
        return [spec.unique_fields[0].name]
    if spec.unique_together:
        return list(spec.unique_together[0])
    return list(spec.primary_key)


def restricted_reasons(conn: sa.Connection, decided: sa.Table, model: schemas.DataModel, target: str) -> dict[int, str]:
    """line -> why its record was kept, for every line `hold_restricted` held back."""
    reasons: dict[int, str] = {}
    for spec, link in restricting_links(model, target):
        linking = spec.table
        action = f"{PREFIX}{spec.name}.{link.name}"
        label = _label(spec)
        counted = (
            sa.select(decided.c.line, sa.func.count().label("n"), sa.func.min(linking.c.id).label("first"))
            .select_from(decided.join(linking, linking.c[link.column] == decided.c.match_id))
            .where(decided.c.action == action)
            .group_by(decided.c.line)
            .subquery()
        )
        rows = conn.execute(
            sa.select(counted.c.line, counted.c.n, *[linking.c[c] for c in label])
            .select_from(counted.join(linking, linking.c.id == counted.c.first))
        ).mappings()
        for row in rows:
            first = ", ".join(f"{c} {row[c]!r}" for c in label)
            records = f"{row['n']} {spec.name} record{'s' if row['n'] > 1 else ''}"
            reasons[row["line"]] = (
                f"the {target} record is still linked from {records} (first: {first}); "
                f"{spec.name}.{link.name} has on_delete: restrict, so it was not deleted"
            )
    return reasons
