"""Reconcile valid rows with the target table, set-based, inside the caller's transaction.

Rows go to a temporary staging table: on PostgreSQL by one COPY, while the import
validates them (`copy_to_stage`, called by the validate step). One INSERT ... SELECT
then decides every line's outcome (`decide.py`) into a second, narrow temporary table
(line, keys, unique values, match, outcome).

Then one statement each applies the updates, deletes and inserts (reading the values
from the stage; into an empty table, from the decisions), and the loaded records are
added to a list or service. Every line that does something ends with one outcome code
in `action`; counts and rejects are read from there. Unchanged lines are left out
unless a list or service takes them: they are the staged lines the decisions do not
hold. Writing each table once, rather than updating the staging table step by step, is
what keeps a million-row merge fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl
import sqlalchemy as sa

from campaign_pipelines.importing import restrict
from campaign_pipelines.importing.decide import Decisions
from campaign_pipelines.importing.stage import copy_to_stage, insert_rows, unique_groups
from campaign_pipelines.importing.validate import KEY_KIND

# Outcome codes, grouped into the counts of spec 5.
APPLIED = {"insert": "rows_inserted", "update": "rows_updated", "unchanged": "rows_unchanged", "delete": "rows_deleted"}
IGNORED = {
    "superseded": "superseded by a later line with the same key",
    "duplicate": "duplicate of an earlier line with the same key",
    "exists": "a record with this key exists (insert only)",
    "not_found": "no record matches the key",
    "kept": "the record exists and existing_records is ignore",
}
REJECT_PREFIXES = ("duplicate_reject", "ambiguous", "conflict:", "conflict_file:", "missing_link:", "required:", restrict.PREFIX)
LOADED = ("insert", "update", "unchanged")


@dataclass
class MergeResult:
    counts: dict[str, int] = field(default_factory=dict)
    ignored_by_cause: dict[str, int] = field(default_factory=dict)
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (line, column, reason)
    links_created: dict[str, int] = field(default_factory=dict)  # on_missing_link: create, by link


class Reconciler(Decisions):
    """The merge: decide every line (`Decisions`), then write the table once per kind of change."""

    def stage_rows(self, frames: Iterable[pl.DataFrame]) -> None:
        """Stage the rows here, when the validation did not (SQLite, or no run session)."""
        if self.dialect == "postgresql":
            for _ in copy_to_stage(self.conn, self.template, self.stage, frames):
                pass
            return
        insert_rows(self.conn, self.stage, self.template, frames)

    # -- merge -----------------------------------------------------------------------

    def written_tables(self) -> list[sa.Table]:
        """Every table the merge may write, in one order for every import (no deadlock)."""
        names = {self.spec.name}
        if self.template.target.recipient_list:
            names |= {"recipient_list", "recipient_list_member"}
        if self.template.target.service:
            names |= {"service", "subscription"}
        names |= {link.table for name, link in self.links.items() if self.template.mapping(name).on_missing_link == "create"}
        return [self.model.table(name).table for name in sorted(names)]

    def linked_tables(self, written: list[sa.Table]) -> list[sa.Table]:
        """The tables the written ones link to, the written ones left out (locked more strongly)."""
        names = {t.name for t in written}
        linked = {link.table for t in written for link in self.model.table(t.name).links} - names
        return [self.model.table(name).table for name in sorted(linked)]

    def merge(self) -> MergeResult:
        if self.dialect == "postgresql":
            # One writer at a time per table, whoever it is, so the decisions below are
            # made against every committed row; SHARE ROW EXCLUSIVE still lets exports
            # and other readers in. (SQLite's BEGIN IMMEDIATE already serializes writers.)
            preparer = self.conn.dialect.identifier_preparer
            written = self.written_tables()
            # The tables they link to first, as their link triggers would (schemas/links.py):
            # no linked record goes before the commit, and no two imports deadlock on them.
            if linked := self.linked_tables(written):
                self.conn.exec_driver_sql(f"LOCK TABLE {', '.join(preparer.format_table(t) for t in linked)} IN SHARE MODE")
            tables = ", ".join(preparer.format_table(t) for t in written)
            self.conn.exec_driver_sql(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE")
            # A few statements, each over every line: JIT compiling them costs ~0.3 s each
            # and saves nothing (1M-line re-import: decide 2.9 s -> 2.6 s without it).
            self.conn.exec_driver_sql("SET LOCAL jit = off")
        created = self._create_missing_links()
        self.into_empty = self.conn.execute(sa.select(~sa.exists(sa.select(self.target.c.id)))).scalar_one()
        self.decided = self._decided_table()
        self.decided.create(self.conn)
        names = [c.name for c in self.decided.columns]
        self.conn.execute(sa.insert(self.decided).from_select(names, self._decisions()))
        self._apply()
        self._link_list_and_service()
        result = self._result()
        result.links_created = created
        self.decided.drop(self.conn)
        self.stage.drop(self.conn)
        return result

    def _create_missing_links(self) -> dict[str, int]:
        """on_missing_link: create — one INSERT ... SELECT DISTINCT per link adds the
        linked records no line's value matches, before anything is decided."""
        created = {}
        s = self.stage
        for name, link in self.links.items():
            if self.template.mapping(name).on_missing_link != "create":
                continue
            linked = self.model.table(link.table)
            table, via = linked.table, self._via(name)
            values = {via: s.c[name]}
            for managed in ("created_at", "updated_at"):
                if managed in table.c:
                    values[managed] = sa.literal(self.now, sa.DateTime(timezone=True))
            for f in linked.fields:
                if f.default is not None and f.name not in values:
                    values[f.name] = sa.literal(f.default, table.c[f.name].type)
            missing = (
                sa.select(*[v.label(k) for k, v in values.items()])
                .where(s.c[name].is_not(None), ~sa.exists().where(table.c[via] == s.c[name]))
                .distinct()
            )
            # Counted from RETURNING: psycopg reports no rowcount for INSERT ... SELECT.
            result = self.conn.execute(sa.insert(table).from_select(list(values), missing).returning(table.c.id))
            created[name] = sum(1 for _ in result)
        return created

    def _value(self, name: str) -> sa.ColumnElement:
        """A mapped value as the update and insert read it: from the stage, or for a link
        the resolved id the decisions carry (`into_empty`: an insert reads every value
        from the decisions)."""
        return self.decided.c[name] if name in self.links else self.stage.c[name]

    def _apply(self) -> None:
        d, s, t = self.decided, self.stage, self.target
        now = sa.literal(self.now, sa.DateTime(timezone=True))
        # `id` only finds the record (a key of a template by id): it is never rewritten, other
        # tables link to it (PostgreSQL's link triggers refuse an UPDATE that sets it).
        updates = {
            self.column_of(c): self._new_value(c, self._value(c), t.c[self.column_of(c)]) for c in self.columns if c != "id"
        }
        if "updated_at" in t.c:
            updates["updated_at"] = now
        self.conn.execute(
            sa.update(t).values(updates).where(t.c.id == d.c.match_id, d.c.action == "update", s.c.line == d.c.line)
        )

        if self.template.target.operation == "delete":
            restrict.hold_restricted(self.conn, d, self.model, self.spec.name)  # such lines are rejected, not deleted
        deleted = sa.select(d.c.match_id).where(d.c.action == "delete")
        self.conn.execute(sa.delete(t).where(t.c.id.in_(deleted)))

        names, values = [], []
        for c in self.columns:
            f = self.spec.field(self.column_of(c))
            names.append(f.name)
            value = d.c[c] if self.into_empty else self._value(c)
            values.append(sa.func.coalesce(value, sa.literal(f.default, t.c[f.name].type)) if f.default is not None else value)
        for managed in ("created_at", "updated_at"):
            if managed in t.c:
                names.append(managed)
                values.append(now)
        # In key order: the key's unique index then grows at its end instead of at random
        # pages (1M rows: 8.1 s -> 5.7 s; more once the index outgrows the cache). New
        # records therefore get their ids in key order. Decisions written in that order
        # already (`decided_in_key_order`) are read as they lie: sorting them again only
        # spilled them to disk once more (1M lines: 170 MB).
        rows = (
            sa.select(*values)
            .select_from(d if self.into_empty else d.join(s, s.c.line == d.c.line))
            .where(d.c.action == "insert")
        )
        if not self.decided_in_key_order:
            rows = rows.order_by(*[self._bytewise(d.c[k]) for k in self.keys], d.c.line)
        self.conn.execute(sa.insert(t).from_select(names, rows))

    def _link_list_and_service(self) -> None:
        target = self.template.target
        if not (target.recipient_list or target.service):
            return
        # Inserted lines learn the id of the record they created.
        d, t = self.decided, self.target
        for kind, key in (("p", self.keys), ("s", self.secondary)):
            if key:
                self.conn.execute(
                    sa.update(d)
                    .values(match_id=t.c.id)
                    .where(d.c.action == "insert", d.c[KEY_KIND] == kind, *[t.c[self.column_of(k)] == d.c[k] for k in key])
                )
        if target.recipient_list:
            list_id = self._named_row(
                self.model.table("recipient_list").table, target.recipient_list.name,
                label=target.recipient_list.name, created_at=self.now,
            )
            members = self.model.table("recipient_list_member").table
            if target.recipient_list.mode == "replace":
                self.conn.execute(sa.delete(members).where(members.c.list_id == list_id))
            self._link(members, "list_id", list_id, {})
        if target.service:
            service_id = self._named_row(self.model.table("service").table, target.service, label=target.service, channel="email")
            self._link(self.model.table("subscription").table, "service_id", service_id, {"created_at": self.now})

    def _named_row(self, table: sa.Table, name: str, **defaults: object) -> int:
        found = self.conn.execute(sa.select(table.c.id).where(table.c.name == name)).scalar()
        if found is None:
            found = self.conn.execute(sa.insert(table).values(name=name, **defaults).returning(table.c.id)).scalar_one()
        return found

    def _link(self, link: sa.Table, owner_column: str, owner_id: int, extra: dict[str, object]) -> None:
        d = self.decided
        already = sa.exists().where(link.c[owner_column] == owner_id, link.c.recipient_id == d.c.match_id)
        literals = [sa.literal(owner_id).label(owner_column), d.c.match_id.label("recipient_id")]
        literals += [sa.literal(v, link.c[k].type).label(k) for k, v in extra.items()]
        rows = sa.select(*literals).where(d.c.action.in_(LOADED), d.c.match_id.is_not(None), sa.not_(already)).distinct()
        self.conn.execute(sa.insert(link).from_select([owner_column, "recipient_id", *extra], rows))

    def _result(self) -> MergeResult:
        d, s = self.decided, self.stage
        result = MergeResult()
        decided = 0
        for action, count in self.conn.execute(sa.select(d.c.action, sa.func.count()).group_by(d.c.action)):
            decided += count
            if action in APPLIED:
                result.counts[APPLIED[action]] = count
            elif action in IGNORED:
                result.ignored_by_cause[IGNORED[action]] = count
            elif action.startswith("no_link:"):
                name = action.partition(":")[2]
                cause = f"no {self.links[name].table} has this {self._via(name)} ({name}, on_missing_link: ignore)"
                result.ignored_by_cause[cause] = count
        if not self.keeps_unchanged:
            # The staged lines left out. Never negative: more decisions than staged lines
            # must break the caller's line accounting, not cancel out.
            staged = self.conn.execute(sa.select(sa.func.count()).select_from(self.stage)).scalar_one()
            if staged > decided:
                result.counts["rows_unchanged"] = staged - decided
        unique_cols = list(dict.fromkeys(c for group in unique_groups(self.template) for c in group))
        rejected = (
            sa.select(d.c.line, d.c.action, d.c.ref_line, *[d.c[c] for c in unique_cols],
                      *[s.c[c].label(f"{c}__value") for c in self.links])
            .select_from(d.join(s, s.c.line == d.c.line) if self.links else d)
            .where(sa.or_(*[d.c.action.startswith(p) for p in REJECT_PREFIXES]))
        )
        labels = {m.target: (str(m.source) if m.source is not None else m.target) for m in self.template.columns}
        keys = ", ".join(self.keys)
        key_labels = ", ".join(labels[k] for k in self.keys)
        restricted = restrict.restricted_reasons(self.conn, d, self.model, self.spec.name) if self.template.target.operation == "delete" else {}
        for row in self.conn.execute(rejected.order_by(d.c.line)).mappings():
            action = row["action"]
            kind, _, column = action.partition(":")
            if row["line"] in restricted:
                result.rejects.append((row["line"], key_labels, restricted[row["line"]]))
            elif action == "duplicate_reject":
                result.rejects.append((row["line"], key_labels, f"duplicate of line {row['ref_line']} (same {keys})"))
            elif action == "ambiguous":
                result.rejects.append((row["line"], key_labels, f"the key matches several {self.spec.name} records"))
            elif kind == "missing_link":
                link = self.links[column]
                reason = f"{column}: no {link.table} has {self._via(column)} '{row[f'{column}__value']}' (on_missing_link: reject)"
                result.rejects.append((row["line"], labels[column], reason))
            elif kind == "required":
                result.rejects.append((row["line"], labels[column], f"{column}: a value is required ({self.spec.name}.{self.column_of(column)} cannot be empty)"))
            else:
                where = f"line {row['ref_line']}" if kind == "conflict_file" else f"another {self.spec.name} record"
                group = column.split("+")
                values = ", ".join(f"'{row[f'{c}__value' if c in self.links else c]}'" for c in group)
                names = ", ".join(group)
                unique = f"{names} is unique" if len(group) == 1 else f"{names} are unique together"
                result.rejects.append((row["line"], ", ".join(labels[c] for c in group), f"{names}: {values} is also on {where} ({unique})"))
        return result
