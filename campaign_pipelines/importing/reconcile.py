"""Reconcile valid rows with the target table, set-based, inside the caller's transaction.

Rows go to a temporary staging table: on PostgreSQL by one COPY, while the import
validates them (`copy_to_stage`, called by the validate step). One INSERT ... SELECT
then decides every line's outcome into a second, narrow temporary table (line, keys,
unique values, match, outcome), in layers of CTEs:

1. match each line to an existing record by its key (or secondary key), and note
   whether the record already holds the line's values;
2. settle duplicates in the file (`duplicates_in_file`);
3. pick the action the operation gives (insert, update, ignore, delete);
4. reject lines whose unique values belong to another record (in the file or the table);
5. turn updates whose values are all equal into `unchanged` (never rewritten).

Then one statement each applies the updates, deletes and inserts (reading the values
from the stage), and the loaded records are added to a list or service. Every line that
does something ends with one outcome code in `action`; counts and rejects are read from
there. Unchanged lines are left out unless a list or service takes them: they are the
staged lines the decisions do not hold. Writing each table once, rather than updating
the staging table step by step, is what keeps a million-row merge fast.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

import schemas
from campaign_pipelines.importing.read import LINE
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
REJECT_PREFIXES = ("duplicate_reject", "ambiguous", "conflict:", "conflict_file:")
LOADED = ("insert", "update", "unchanged")
WRITING = ("insert", "update")


@dataclass
class MergeResult:
    counts: dict[str, int] = field(default_factory=dict)
    ignored_by_cause: dict[str, int] = field(default_factory=dict)
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (line, column, reason)


def _temporary_table(name: str, columns: list[sa.Column]) -> sa.Table:
    # Dropped by the merge; a failed run's go with its session (CampaignDatabase.session).
    return sa.Table(f"{name}_{uuid.uuid4().hex[:12]}", sa.MetaData(), *columns, prefixes=["TEMPORARY"])


def stage_table(template: ImportTemplate, name: str | None = None) -> sa.Table:
    """The temporary table of a template's valid rows: line number, key kind and the
    mapped columns with their types. `name`: one already created and filled."""
    columns = [
        sa.Column("line", sa.BigInteger),
        sa.Column(KEY_KIND, sa.String(1)),
        *[sa.Column(m.target, template.table.field(m.target).sql_type()) for m in template.columns],
    ]
    if name:
        return sa.Table(name, sa.MetaData(), *columns, prefixes=["TEMPORARY"])
    return _temporary_table("stage", columns)


CSV_ROWS = pacsv.WriteOptions(include_header=False, quoting_style="needed")  # null: empty; "": quoted


def _copy_statement(table: sa.Table, names: list[str]) -> object:
    from psycopg import sql

    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, names))
    )


def _csv(rows: pa.Table) -> memoryview:
    buffer = io.BytesIO()
    pacsv.write_csv(rows, buffer, CSV_ROWS)
    return buffer.getbuffer()


def copy_rows(conn: sa.Connection, table: sa.Table, rows: pa.Table) -> None:
    """PostgreSQL: COPY an Arrow table's rows into the table (columns by name)."""
    raw = conn.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(_copy_statement(table, rows.column_names)) as copy:
        copy.write(_csv(rows))


def deciding_columns(template: ImportTemplate) -> list[str]:
    """The mapped columns the merge matches, groups or checks lines on: keys, secondary
    keys and unique values."""
    columns = [m.target for m in template.columns]
    unique = [f.name for f in template.table.unique_fields if f.name in columns]
    return list(dict.fromkeys([*template.target.keys, *template.target.secondary_keys, *unique]))


def copy_to_stage(
    conn: sa.Connection, template: ImportTemplate, stage: sa.Table, frames: Iterable[pl.DataFrame]
) -> Iterator[pl.DataFrame]:
    """PostgreSQL: create the stage and COPY each frame into it as it passes through, then
    ANALYZE it. One COPY for all the frames, sent by psycopg's queued writer from its own
    thread: the server parses one chunk on the other core while Python validates the next
    (1M lines: validate and stage 2.3-2.8 s, against 3.0-4.0 s one after the other)."""
    from psycopg.copy import QueuedLibpqWriter

    stage.create(conn)
    names = [c.name for c in stage.columns]
    raw = conn.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(_copy_statement(stage, names), writer=QueuedLibpqWriter(cursor)) as copy:
        for frame in frames:
            copy.write(_csv(frame.rename({LINE: "line"}).select(names).to_arrow()))
            yield frame
    # Statistics for what the merge joins and groups on; the other columns are only
    # carried (1M lines: 0.13 s instead of 0.24 s).
    analyzed = ", ".join(f'"{c}"' for c in ["line", KEY_KIND, *deciding_columns(template)])
    conn.exec_driver_sql(f'ANALYZE "{stage.name}" ({analyzed})')


class Reconciler:
    def __init__(self, conn: sa.Connection, template: ImportTemplate, now: dt.datetime, staged: str | None = None):
        """`staged`: the stage table the validation already filled on this connection."""
        self.conn = conn
        self.template = template
        self.spec = template.table
        self.target = self.spec.table
        self.now = now
        self.columns = [m.target for m in template.columns]
        self.keys = template.target.keys
        self.secondary = template.target.secondary_keys
        self.dialect = conn.dialect.name
        self.stage = stage_table(template, staged)
        data = [c for c in self.stage.columns if c.name in self.columns]
        # The decisions carry only what deciding needs (keys and unique values); the other
        # values stay in the stage until an update or insert reads them. Sorting and
        # writing a million narrow rows instead of wide ones is most of a re-import's merge.
        self.carried = deciding_columns(template)
        # An unchanged line only needs counting, unless a list or service takes every loaded
        # record: a re-import then writes the lines that act, not all of them (1M lines,
        # 990,000 unchanged: the decide statement 2.6 s -> 2.2 s, and the later scans of
        # the decisions read 1,111 rows).
        self.keeps_unchanged = bool(template.target.recipient_list or template.target.service)
        # No indexes: nothing looks a line up; each table is written once and scanned.
        self.decided = _temporary_table(
            "decided",
            [
                sa.Column("line", sa.BigInteger),
                sa.Column(KEY_KIND, sa.String(1)),
                *[c.copy() for c in data if c.name in self.carried],
                sa.Column("match_id", sa.BigInteger),
                sa.Column("action", sa.String(80)),
                sa.Column("ref_line", sa.BigInteger),
            ],
        )

    # -- staging ---------------------------------------------------------------------

    def stage_rows(self, frames: Iterable[pl.DataFrame]) -> None:
        """Stage the rows here, when the validation did not (SQLite, or no run session)."""
        if self.dialect == "postgresql":
            for _ in copy_to_stage(self.conn, self.template, self.stage, frames):
                pass
            return
        self.stage.create(self.conn)
        names = [c.name for c in self.stage.columns]
        for frame in frames:
            self._insert_many(frame.rename({LINE: "line"}).select(names), names)

    def _insert_many(self, frame: pl.DataFrame, names: list[str]) -> None:
        # SQLite stores dates as ISO text and booleans as 0/1, as SQLAlchemy does.
        frame = frame.with_columns(pl.col(pl.Date).cast(pl.Utf8), pl.col(pl.Boolean).cast(pl.Int8))
        placeholders = ", ".join("?" for _ in names)
        quoted = ", ".join(f'"{n}"' for n in names)
        self.conn.exec_driver_sql(
            f'INSERT INTO "{self.stage.name}" ({quoted}) VALUES ({placeholders})', frame.rows()
        )

    # -- merge -----------------------------------------------------------------------

    def written_tables(self) -> list[sa.Table]:
        """Every table the merge may write, in one order for every import (no deadlock)."""
        names = {self.spec.name}
        if self.template.target.recipient_list:
            names |= {"recipient_list", "recipient_list_member"}
        if self.template.target.service:
            names |= {"service", "subscription"}
        return [schemas.table(name).table for name in sorted(names)]

    def merge(self) -> MergeResult:
        if self.dialect == "postgresql":
            # One writer at a time per table, whoever it is, so the decisions below are
            # made against every committed row; SHARE ROW EXCLUSIVE still lets exports
            # and other readers in. (SQLite's BEGIN IMMEDIATE already serializes writers.)
            preparer = self.conn.dialect.identifier_preparer
            tables = ", ".join(preparer.format_table(t) for t in self.written_tables())
            self.conn.exec_driver_sql(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE")
            # A few statements, each over every line: JIT compiling them costs ~0.3 s each
            # and saves nothing (1M-line re-import: decide 2.9 s -> 2.6 s without it).
            self.conn.exec_driver_sql("SET LOCAL jit = off")
        self.decided.create(self.conn)
        names = [c.name for c in self.decided.columns]
        self.conn.execute(sa.insert(self.decided).from_select(names, self._decisions()))
        self._apply()
        self._link_list_and_service()
        result = self._result()
        self.decided.drop(self.conn)
        self.stage.drop(self.conn)
        return result

    def _unique_key(self, key: list[str]) -> bool:
        return len(key) == 1 and (self.spec.field(key[0]).unique or key[0] in self.spec.primary_key)

    def _decisions(self) -> sa.Select:
        """Every staged line with its match, action and referenced line, as one SELECT."""
        s, t = self.stage, self.target
        target = self.template.target

        # 1. Match on the key, or on the secondary key for lines whose key is empty.
        # Whether the matched record already holds the line's values is settled here too,
        # while both rows are at hand, so the later layers carry a flag, not the values.
        joins = s
        match_ids, same_values = [], []
        for kind, key in (("p", self.keys), ("s", self.secondary)):
            if key:
                found = t.alias(f"by_{kind}")
                joins = joins.outerjoin(found, sa.and_(s.c[KEY_KIND] == kind, *[found.c[k] == s.c[k] for k in key]))
                match_ids.append(found.c.id)
                changed = sa.or_(*[self._new_value(c, s.c[c], found.c[c]).is_distinct_from(found.c[c]) for c in self.columns])
                same_values.append((found.c.id.is_not(None), sa.not_(changed)))
        match_id = sa.func.coalesce(*match_ids) if len(match_ids) > 1 else match_ids[0]
        same = sa.case(*same_values, else_=sa.false())
        layer = [s.c.line, s.c[KEY_KIND], *[s.c[c] for c in self.carried], match_id.label("match_id"), same.label("same")]
        ambiguous_keys = [key for key in (self.keys, self.secondary) if key and not self._unique_key(key)]
        if ambiguous_keys:
            # A key that is not unique in the table may match several records.
            layer.append(sa.func.count().over(partition_by=s.c.line).label("matches"))
            layer.append(sa.func.row_number().over(partition_by=s.c.line, order_by=match_id).label("pick"))
        # MATERIALIZED: computed before the sort below, so the sort moves narrow rows and
        # not the stage's and the record's values side by side (1M lines: 222 MB -> 62 MB).
        matched = sa.select(*layer).select_from(joins).cte("matched").prefix_with("MATERIALIZED")
        if ambiguous_keys:
            matched = sa.select(*[c for c in matched.c if c.name != "pick"]).where(matched.c.pick == 1).cte("matched_once")

        # 2. Duplicates: lines reaching the same record, or bringing the same new key.
        m = matched.c
        unmatched = m.match_id.is_(None)
        group = [m.match_id, sa.case((unmatched, m[KEY_KIND]))]
        group += [sa.case((sa.and_(unmatched, m[KEY_KIND] == "p"), self._bytewise(m[k]))) for k in self.keys]
        group += [sa.case((sa.and_(unmatched, m[KEY_KIND] == "s"), self._bytewise(m[k]))) for k in self.secondary]
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
        action = sa.case(
            *([(r.matches > 1, "ambiguous")] if ambiguous_keys else []),
            (is_duplicate, duplicate),
            (r.match_id.is_not(None), on_match),
            else_=on_new,
        )
        ref_line = sa.case((is_duplicate, r.kept))
        base = [c for c in r if c.name not in ("kept", "matches")]
        acted = sa.select(*base, action.label("action"), ref_line.label("ref_line")).cte("acted")

        # 4. Unique values: taken by an earlier line of the file, or by another record.
        # The key itself needs no check: its duplicates are settled, and a new key held
        # by another record would have matched it.
        for f in self.spec.unique_fields:
            if f.name not in self.columns or self.keys == [f.name]:
                continue
            a = acted.c
            value = a[f.name]
            writing = sa.and_(a.action.in_(WRITING), value.is_not(None))
            holder = t.alias(f"holder_{f.name}")
            taken = sa.exists().where(holder.c[f.name] == value, sa.or_(a.match_id.is_(None), holder.c.id != a.match_id))
            bucket = sa.case((writing, self._bytewise(value)))
            first = sa.func.first_value(a.line).over(partition_by=bucket, order_by=a.line)
            earlier = a.line != first
            checked = sa.select(
                *[c for c in a if c.name not in ("action", "ref_line")],
                sa.case(
                    (sa.and_(writing, earlier), f"conflict_file:{f.name}"),
                    (sa.and_(writing, taken), f"conflict:{f.name}"),
                    else_=a.action,
                ).label("action"),
                sa.case((sa.and_(writing, earlier), first), else_=a.ref_line).label("ref_line"),
            ).cte(f"unique_{f.name}")
            acted = checked

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

    def _new_value(self, name: str, incoming: sa.ColumnElement, existing: sa.ColumnElement) -> sa.ColumnElement:
        """What an update writes: an empty value keeps the field unless empty_values is
        overwrite; a key is never emptied."""
        keep = self.template.target.empty_values == "keep" or name in self.keys or name in self.secondary
        return sa.func.coalesce(incoming, existing) if keep else incoming

    def _apply(self) -> None:
        d, s, t = self.decided, self.stage, self.target
        now = sa.literal(self.now, sa.DateTime(timezone=True))
        updates = {c: self._new_value(c, s.c[c], t.c[c]) for c in self.columns}
        if "updated_at" in t.c:
            updates["updated_at"] = now
        self.conn.execute(
            sa.update(t).values(updates).where(t.c.id == d.c.match_id, d.c.action == "update", s.c.line == d.c.line)
        )

        deleted = sa.select(d.c.match_id).where(d.c.action == "delete")
        self.conn.execute(sa.delete(t).where(t.c.id.in_(deleted)))

        names, values = [], []
        for c in self.columns:
            f = self.spec.field(c)
            names.append(c)
            values.append(sa.func.coalesce(s.c[c], sa.literal(f.default)) if f.default is not None else s.c[c])
        for managed in ("created_at", "updated_at"):
            if managed in t.c:
                names.append(managed)
                values.append(now)
        # In key order: the key's unique index then grows at its end instead of at random
        # pages (1M rows: 8.1 s -> 5.7 s; more once the index outgrows the cache). New
        # records therefore get their ids in key order.
        in_key_order = [self._bytewise(d.c[k]) for k in self.keys]
        self.conn.execute(
            sa.insert(t).from_select(
                names,
                sa.select(*values)
                .select_from(d.join(s, s.c.line == d.c.line))
                .where(d.c.action == "insert")
                .order_by(*in_key_order, d.c.line),
            )
        )

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
                    .where(d.c.action == "insert", d.c[KEY_KIND] == kind, *[t.c[k] == d.c[k] for k in key])
                )
        if target.recipient_list:
            list_id = self._named_row(
                schemas.table("recipient_list").table, target.recipient_list.name,
                label=target.recipient_list.name, created_at=self.now,
            )
            members = schemas.table("recipient_list_member").table
            if target.recipient_list.mode == "replace":
                self.conn.execute(sa.delete(members).where(members.c.list_id == list_id))
            self._link(members, "list_id", list_id, {})
        if target.service:
            service_id = self._named_row(schemas.table("service").table, target.service, label=target.service, channel="email")
            self._link(schemas.table("subscription").table, "service_id", service_id, {"created_at": self.now})

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
        d = self.decided
        result = MergeResult()
        decided = 0
        for action, count in self.conn.execute(sa.select(d.c.action, sa.func.count()).group_by(d.c.action)):
            decided += count
            if action in APPLIED:
                result.counts[APPLIED[action]] = count
            elif action in IGNORED:
                result.ignored_by_cause[IGNORED[action]] = count
        if not self.keeps_unchanged:
            # The staged lines left out. Never negative: more decisions than staged lines
            # must break the caller's line accounting, not cancel out.
            staged = self.conn.execute(sa.select(sa.func.count()).select_from(self.stage)).scalar_one()
            if staged > decided:
                result.counts["rows_unchanged"] = staged - decided
        unique_cols = [f.name for f in self.spec.unique_fields if f.name in self.columns]
        rejected = sa.select(d.c.line, d.c.action, d.c.ref_line, *[d.c[c] for c in unique_cols]).where(
            sa.or_(*[d.c.action.startswith(p) for p in REJECT_PREFIXES])
        )
        labels = {m.target: (str(m.source) if m.source is not None else m.target) for m in self.template.columns}
        keys = ", ".join(self.keys)
        key_labels = ", ".join(labels[k] for k in self.keys)
        for row in self.conn.execute(rejected.order_by(d.c.line)).mappings():
            action = row["action"]
            if action == "duplicate_reject":
                result.rejects.append((row["line"], key_labels, f"duplicate of line {row['ref_line']} (same {keys})"))
            elif action == "ambiguous":
                result.rejects.append((row["line"], key_labels, f"the key matches several {self.spec.name} records"))
            else:
                kind, _, column = action.partition(":")
                where = f"line {row['ref_line']}" if kind == "conflict_file" else f"another {self.spec.name} record"
                result.rejects.append((row["line"], labels[column], f"{column}: '{row[column]}' is also on {where} ({column} is unique)"))
        return result
