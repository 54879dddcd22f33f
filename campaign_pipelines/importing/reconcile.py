"""Reconcile valid rows with the target table, set-based, inside the caller's transaction.

Rows go to a temporary staging table: on PostgreSQL by one COPY, while the import
validates them (`copy_to_stage`, called by the validate step). One INSERT ... SELECT
then decides every line's outcome into a second, narrow temporary table (line, keys,
unique values, match, outcome), in layers of CTEs:

0. resolve links: each linked value (an e-mail) becomes the linked record's id, by a
   join (`on_missing_link: create` first inserts the linked records that are missing);
1. match each line to an existing record by its key (or secondary key), and note
   whether the record already holds the line's values;
2. settle duplicates in the file (`duplicates_in_file`);
3. pick the action the operation gives (insert, update, ignore, delete);
4. reject lines whose unique values belong to another record (in the file or the table);
5. turn updates whose values are all equal into `unchanged` (never rewritten).

Then one statement each applies the updates, deletes and inserts (reading the values
from the stage; into an empty table, from the decisions), and the loaded records are
added to a list or service. Every line that does something ends with one outcome code
in `action`; counts and rejects are read from there. Unchanged lines are left out
unless a list or service takes them: they are the staged lines the decisions do not
hold. Writing each table once, rather than updating the staging table step by step, is
what keeps a million-row merge fast.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl
import sqlalchemy as sa

from campaign_pipelines.importing.stage import (
    copy_to_stage, deciding_columns, insert_rows, stage_table, temporary_table, unique_groups,
)
from campaign_pipelines.importing import restrict
from campaign_pipelines.importing.validate import KEY_KIND
from campaign_pipelines.templates import ImportTemplate

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
WRITING = ("insert", "update")


@dataclass
class MergeResult:
    counts: dict[str, int] = field(default_factory=dict)
    ignored_by_cause: dict[str, int] = field(default_factory=dict)
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (line, column, reason)
    links_created: dict[str, int] = field(default_factory=dict)  # on_missing_link: create, by link



class Reconciler:
    def __init__(self, conn: sa.Connection, template: ImportTemplate, now: dt.datetime, staged: str | None = None):
        """`staged`: the stage table the validation already filled on this connection."""
        self.conn = conn
        self.template = template
        self.model = template.model
        self.spec = template.table
        self.target = self.spec.table
        self.now = now
        self.columns = [m.target for m in template.columns]
        # Mapped links (a purchase's `recipient`): the stage holds the linked value (an
        # e-mail), the decisions and the table the linked record's id.
        self.links = {c: link for c in self.columns if (link := self.spec.link(c))}
        self.keys = template.target.keys
        self.secondary = template.target.secondary_keys
        self.dialect = conn.dialect.name
        self.stage = stage_table(template, staged)
        # The decisions carry only what deciding needs (keys, unique values, link ids); the
        # other values stay in the stage until an update or insert reads them. Sorting and
        # writing a million narrow rows instead of wide ones is most of a re-import's merge.
        self.carried = deciding_columns(template)
        # Into an empty table no line matches a record: their other values then ride along
        # in the decisions, so the insert reads them alone instead of joining the stage
        # back. Elsewhere they stay in the stage: carried through the match's join they
        # would widen every spilled row of a re-import. (`merge` sets this.)
        self.payload = [c for c in self.columns if c not in self.carried]
        self.into_empty = False
        # Unique values other than the key, checked against the file and the table. The
        # key itself needs no check: its duplicates are settled, and a new key held by
        # another record would have matched it.
        self.unique_checks = [g for g in unique_groups(template) if set(g) != set(self.keys)]
        # An unchanged line only needs counting, unless a list or service takes every loaded
        # record: a re-import then writes the lines that act, not all of them (1M lines,
        # 990,000 unchanged: the decide statement 2.6 s -> 2.2 s, and the later scans of
        # the decisions read 1,111 rows).
        self.keeps_unchanged = bool(template.target.recipient_list or template.target.service)
        self.decided: sa.Table  # `merge` makes it, once it knows `into_empty`

    def _decided_table(self) -> sa.Table:
        """The decisions. No indexes: nothing looks a line up; each table is written once
        and scanned. The other values only into an empty table (`into_empty`)."""
        return temporary_table(
            "decided",
            [
                sa.Column("line", sa.BigInteger),
                sa.Column(KEY_KIND, sa.String(1)),
                *[
                    sa.Column(c, sa.BigInteger) if c in self.links else self.stage.c[c].copy()
                    for c in self.carried
                ],
                *[self.stage.c[c].copy() for c in (self.payload if self.into_empty else [])],
                sa.Column("match_id", sa.BigInteger),
                sa.Column("action", sa.String(80)),
                sa.Column("ref_line", sa.BigInteger),
            ],
        )

    def column_of(self, name: str) -> str:
        """The target table's column a mapped name fills (a link's `<name>_id`)."""
        return self.links[name].column if name in self.links else name

    # -- staging ---------------------------------------------------------------------

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

    def _via(self, name: str) -> str:
        mapping = self.template.mapping(name)
        return (mapping.link.via if mapping.link else None) or self.links[name].via  # type: ignore[return-value]

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

    def _resolved(self) -> sa.FromClause:
        """The stage with each link's value replaced by the linked record's id (NULL when
        none matches; the value itself stays as `<name>__value`)."""
        s = self.stage
        if not self.links:
            return s
        joins = s
        columns = [s.c.line, s.c[KEY_KIND]]
        for c in self.columns:
            if c not in self.links:
                columns.append(s.c[c])
                continue
            linked = self.model.table(self.links[c].table).table.alias(f"link_{c}")
            joins = joins.outerjoin(linked, linked.c[self._via(c)] == s.c[c])
            columns += [linked.c.id.label(c), s.c[c].label(f"{c}__value")]
        return sa.select(*columns).select_from(joins).cte("resolved")

    def _unique_key(self, key: list[str]) -> bool:
        column = self.column_of(key[0])
        return len(key) == 1 and (self.spec.field(column).unique or column in self.spec.primary_key)

    def _line_faults(self, src: sa.FromClause) -> list[sa.ColumnElement]:
        """Per line, before any match: a link whose value matches nothing ('missing_link:'
        rejects, 'no_link:' ignores), and the first required field left empty for an
        insert ('required:'), or for an update that would empty it."""
        link_faults = [
            (sa.and_(src.c[f"{c}__value"].is_not(None), src.c[c].is_(None)),
             f"{'no_link' if self.template.mapping(c).on_missing_link == 'ignore' else 'missing_link'}:{c}")
            for c in self.links
        ]
        required = [c for c in self.columns if not self.spec.field(self.column_of(c)).nullable
                    and self.spec.field(self.column_of(c)).default is None]
        emptied = [c for c in required if self._overwrites(c)]
        return [
            sa.case(*link_faults, else_=sa.null()).label("link_fault") if link_faults else sa.null().label("link_fault"),
            sa.case(*[(src.c[c].is_(None), c) for c in required], else_=sa.null()).label("empty_insert")
            if required else sa.null().label("empty_insert"),
            sa.case(*[(src.c[c].is_(None), c) for c in emptied], else_=sa.null()).label("empty_update")
            if emptied else sa.null().label("empty_update"),
        ]

    def _decisions(self) -> sa.Select:
        """Every staged line with its match, action and referenced line, as one SELECT."""
        src, t = self._resolved(), self.target
        target = self.template.target

        # 1. Match on the key, or on the secondary key for lines whose key is empty.
        # Whether the matched record already holds the line's values is settled here too,
        # while both rows are at hand, so the later layers carry a flag, not the values.
        # Into an empty table nothing can match: no join, and the lines go straight from
        # the stage into the duplicates' sort (no materialized copy of every line first).
        joins = src
        match_ids, same_values = [], []
        for kind, key in (("p", self.keys), ("s", self.secondary)):
            if key and not self.into_empty:
                found = t.alias(f"by_{kind}")
                joins = joins.outerjoin(
                    found, sa.and_(src.c[KEY_KIND] == kind, *[found.c[self.column_of(k)] == src.c[k] for k in key])
                )
                match_ids.append(found.c.id)
                changed = sa.or_(*[
                    self._new_value(c, src.c[c], found.c[self.column_of(c)]).is_distinct_from(found.c[self.column_of(c)])
                    for c in self.columns
                ])
                same_values.append((found.c.id.is_not(None), sa.not_(changed)))
        if not match_ids:
            match_id, same = sa.null().cast(sa.BigInteger), sa.false()
        else:
            match_id = sa.func.coalesce(*match_ids) if len(match_ids) > 1 else match_ids[0]
            same = sa.case(*same_values, else_=sa.false())
        layer = [src.c.line, src.c[KEY_KIND], *[src.c[c] for c in self.carried], match_id.label("match_id"), same.label("same")]
        if self.into_empty:
            layer += [src.c[c] for c in self.payload]
        layer += self._line_faults(src)
        ambiguous_keys = [key for key in (self.keys, self.secondary) if key and not self._unique_key(key) and not self.into_empty]
        if ambiguous_keys:
            # A key that is not unique in the table may match several records.
            layer.append(sa.func.count().over(partition_by=src.c.line).label("matches"))
            layer.append(sa.func.row_number().over(partition_by=src.c.line, order_by=match_id).label("pick"))
        matched = sa.select(*layer).select_from(joins).cte("matched")
        if match_ids:
            # MATERIALIZED: computed before the sort below, so the sort moves narrow rows
            # and not the stage's and the record's values side by side (1M lines: 222 MB
            # -> 62 MB).
            matched = matched.prefix_with("MATERIALIZED")
        if ambiguous_keys:
            matched = sa.select(*[c for c in matched.c if c.name != "pick"]).where(matched.c.pick == 1).cte("matched_once")

        # 2. Duplicates: lines reaching the same record, or bringing the same new key. A
        # line with a missing link stands alone: it supersedes nothing.
        m = matched.c
        unmatched = m.match_id.is_(None)
        by_match = [m.match_id, sa.case((unmatched, m[KEY_KIND]))]
        by_new_key = [sa.case((sa.and_(unmatched, m[KEY_KIND] == "p"), self._bytewise(m[k]))) for k in self.keys]
        by_new_key += [sa.case((sa.and_(unmatched, m[KEY_KIND] == "s"), self._bytewise(m[k]))) for k in self.secondary]
        # The same groups in either order; the sort goes fastest when its first column
        # tells most lines apart: the record matched, or into an empty table the key
        # (abbreviated bytes, not a column of NULLs: 1M lines, the decide statement
        # 2.7 s -> 2.0 s).
        group = [*by_new_key, *by_match] if self.into_empty else [*by_match, *by_new_key]
        if self.links:
            group.append(sa.case((m.link_fault.is_not(None), m.line)))
        last_wins = target.duplicates_in_file == "update"
        # The group's kept line; any other line of the group is a duplicate. One window
        # function, so one pass over the sorted lines (a row_number and a min took two).
        kept = sa.func.first_value(m.line).over(partition_by=group, order_by=m.line.desc() if last_wins else m.line.asc())

        # 3. The operation's action for each line that is not a duplicate.
        on_match, on_new = {
            "insert_or_update": ("update" if target.existing_records == "update" else "kept", "insert"),
            "insert": ("exists", "insert"),
            "update": ("update", "not_found"),
            "reconcile_only": ("unchanged", "not_found"),
            "delete": ("delete", "not_found"),
        }[target.operation]
        duplicate = {"update": "superseded", "ignore": "duplicate", "reject": "duplicate_reject"}[target.duplicates_in_file]
        grouped = sa.select(*[c for c in m if c.name != "matches"], kept.label("kept"),
                           *([m.matches] if ambiguous_keys else [])).cte("grouped")
        r = grouped.c
        is_duplicate = r.line != r.kept
        new_action = sa.case((r.empty_insert.is_not(None), sa.literal("required:") + r.empty_insert), else_=on_new) if on_new == "insert" else on_new
        match_action = sa.case((r.empty_update.is_not(None), sa.literal("required:") + r.empty_update), else_=on_match) if on_match == "update" else on_match
        action = sa.case(
            *([(r.matches > 1, "ambiguous")] if ambiguous_keys else []),
            (r.link_fault.is_not(None), r.link_fault),
            (is_duplicate, duplicate),
            (r.match_id.is_not(None), match_action),
            else_=new_action,
        )
        ref_line = sa.case((is_duplicate, r.kept))
        base = [c for c in r if c.name not in ("kept", "matches", "link_fault", "empty_insert", "empty_update")]
        acted = sa.select(*base, action.label("action"), ref_line.label("ref_line")).cte("acted")

        # 4. Unique values (`unique_checks`): taken by an earlier line of the file, or by
        # another record.
        for group in self.unique_checks:
            a = acted.c
            name = "+".join(group)
            writing = sa.and_(a.action.in_(WRITING), *[a[c].is_not(None) for c in group])
            holder = t.alias(f"holder_{len(group)}_{group[0]}")
            taken = sa.exists().where(
                *[holder.c[self.column_of(c)] == a[c] for c in group],
                sa.or_(a.match_id.is_(None), holder.c.id != a.match_id),
            )
            buckets = [sa.case((writing, self._bytewise(a[c]))) for c in group]
            first = sa.func.first_value(a.line).over(partition_by=buckets, order_by=a.line)
            earlier = a.line != first
            acted = sa.select(
                *[c for c in a if c.name not in ("action", "ref_line")],
                sa.case(
                    (sa.and_(writing, earlier), f"conflict_file:{name}"),
                    (sa.and_(writing, taken), f"conflict:{name}"),
                    else_=a.action,
                ).label("action"),
                sa.case((sa.and_(writing, earlier), first), else_=a.ref_line).label("ref_line"),
            ).cte(f"unique_{len(group)}_{group[0]}")

        # 5. Updates that change nothing are unchanged.
        a = acted.c
        final_action = sa.case((sa.and_(a.action == "update", a.same), "unchanged"), else_=a.action)
        decisions = sa.select(
            *[a[c.name] for c in self.decided.columns if c.name not in ("action", "ref_line")],
            final_action.label("action"),
            a.ref_line,
        )
        return decisions if self.keeps_unchanged else decisions.where(final_action != "unchanged")

    def _bytewise(self, value: sa.ColumnElement) -> sa.ColumnElement:
        """Text compared byte by byte: partitions need equality, not linguistic order,
        and PostgreSQL sorts a million e-mails several times faster that way."""
        if self.dialect == "postgresql" and isinstance(value.type, sa.String):
            return value.collate("C")
        return value

    def _overwrites(self, name: str) -> bool:
        """Whether an update writes this column's empty value (empty_values: overwrite)."""
        mapping = self.template.mapping(name)
        rule = mapping.empty_values or self.template.target.empty_values
        return rule == "overwrite" and mapping.update == "always" and name not in (*self.keys, *self.secondary)

    def _new_value(self, name: str, incoming: sa.ColumnElement, existing: sa.ColumnElement) -> sa.ColumnElement:
        """What an update writes, by the column's rules: `update: on_insert` keeps the
        stored value, `if_empty` fills only an empty one, `always` writes the line's value
        (an empty one too under empty_values: overwrite). A key is never emptied."""
        rule = self.template.mapping(name).update
        if rule == "on_insert":
            return existing
        if rule == "if_empty":
            return sa.func.coalesce(existing, incoming)
        return incoming if self._overwrites(name) else sa.func.coalesce(incoming, existing)

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
        # records therefore get their ids in key order. Into an empty table with no other
        # unique value to check, the decisions were written in that order already (their
        # duplicate sort leads with the key) and are read as they lie: sorting them again
        # only spilled them to disk once more (1M lines: 170 MB).
        rows = (
            sa.select(*values)
            .select_from(d if self.into_empty else d.join(s, s.c.line == d.c.line))
            .where(d.c.action == "insert")
        )
        if not self.into_empty or self.unique_checks:
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
