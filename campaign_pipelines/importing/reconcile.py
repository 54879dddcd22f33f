"""Reconcile valid rows with the target table, set-based, inside the caller's transaction.

Rows go to a temporary staging table (COPY on PostgreSQL), then a few statements, each
over the whole staging table, decide every line's outcome and apply it:

1. match each line to an existing record by its key (or secondary key);
2. settle duplicates in the file (`duplicates_in_file`);
3. pick the action the operation gives (insert, update, ignore, delete);
4. reject lines whose unique values belong to another record (in the table or the file);
5. mark matched lines whose values are all equal as unchanged (never rewritten);
6. apply updates, inserts and deletes; add the loaded records to a list or service.

Each line ends with one outcome code in `action`; counts and rejects are read from there.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl
import pyarrow.csv as pacsv
import sqlalchemy as sa

import schemas
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


@dataclass
class MergeResult:
    counts: dict[str, int] = field(default_factory=dict)
    ignored_by_cause: dict[str, int] = field(default_factory=dict)
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (line, column, reason)


class Reconciler:
    def __init__(self, conn: sa.Connection, template: ImportTemplate, now: dt.datetime):
        self.conn = conn
        self.template = template
        self.spec = template.table
        self.target = self.spec.table
        self.now = now
        self.columns = [m.target for m in template.columns]
        self.keys = template.target.keys
        self.secondary = template.target.secondary_keys
        self.dialect = conn.dialect.name
        stage_meta = sa.MetaData()
        self.stage = sa.Table(
            f"stage_{uuid.uuid4().hex[:12]}",
            stage_meta,
            sa.Column("line", sa.BigInteger, primary_key=True),
            sa.Column(KEY_KIND, sa.String(1)),
            *[sa.Column(c, self.spec.field(c).sql_type()) for c in self.columns],
            sa.Column("match_id", sa.BigInteger),
            sa.Column("action", sa.String(80)),
            sa.Column("ref_line", sa.BigInteger),
            prefixes=["TEMPORARY"],
            postgresql_on_commit="DROP",
        )

    # -- staging ---------------------------------------------------------------------

    def stage_rows(self, frames: Iterable[pl.DataFrame]) -> int:
        self.stage.create(self.conn)
        names = ["line", KEY_KIND, *self.columns]
        staged = 0
        for frame in frames:
            frame = frame.rename({"__line": "line"}).select(names)
            staged += frame.height
            if self.dialect == "postgresql":
                self._copy(frame, names)
            else:
                self._insert_many(frame, names)
        if self.dialect == "postgresql":
            self.conn.exec_driver_sql(f'ANALYZE "{self.stage.name}"')
        return staged

    def _copy(self, frame: pl.DataFrame, names: list[str]) -> None:
        from psycopg import sql

        buffer = io.BytesIO()
        pacsv.write_csv(frame.to_arrow(), buffer, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            sql.Identifier(self.stage.name), sql.SQL(", ").join(map(sql.Identifier, names))
        )
        raw = self.conn.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(buffer.getbuffer())

    def _insert_many(self, frame: pl.DataFrame, names: list[str]) -> None:
        # SQLite stores dates as ISO text and booleans as 0/1, as SQLAlchemy does.
        frame = frame.with_columns(pl.col(pl.Date).cast(pl.Utf8), pl.col(pl.Boolean).cast(pl.Int8))
        placeholders = ", ".join("?" for _ in names)
        quoted = ", ".join(f'"{n}"' for n in names)
        self.conn.exec_driver_sql(
            f'INSERT INTO "{self.stage.name}" ({quoted}) VALUES ({placeholders})', frame.rows()
        )

    # -- merge -----------------------------------------------------------------------

    def merge(self) -> MergeResult:
        s, t = self.stage, self.target
        self._match(s.c.action.is_(None))
        self._reject_ambiguous_keys()
        self._settle_duplicates()
        self._choose_actions()
        self._reject_unique_conflicts()
        self._mark_unchanged()
        self._apply()
        self._link_list_and_service()
        return self._result()

    def _key_match(self, kind: str, key: list[str]) -> sa.ColumnElement[bool]:
        s, t = self.stage, self.target
        return sa.and_(s.c[KEY_KIND] == kind, *[t.c[k] == s.c[k] for k in key])

    def _match(self, which: sa.ColumnElement[bool]) -> None:
        s, t = self.stage, self.target
        for kind, key in (("p", self.keys), ("s", self.secondary)):
            if key:
                self.conn.execute(sa.update(s).values(match_id=t.c.id).where(which, self._key_match(kind, key)))

    def _reject_ambiguous_keys(self) -> None:
        """A key that is not unique in the table may match several records: reject."""
        s, t = self.stage, self.target
        for kind, key in (("p", self.keys), ("s", self.secondary)):
            if not key or (len(key) == 1 and (self.spec.field(key[0]).unique or key[0] in self.spec.primary_key)):
                continue
            matches = sa.select(sa.func.count()).where(*[t.c[k] == s.c[k] for k in key]).scalar_subquery()
            self.conn.execute(
                sa.update(s).values(action="ambiguous").where(s.c[KEY_KIND] == kind, s.c.match_id.is_not(None), matches > 1)
            )

    def _settle_duplicates(self) -> None:
        """Lines that reach the same record (or carry the same new key) are duplicates."""
        s = self.stage
        unmatched = s.c.match_id.is_(None)
        group = [s.c.match_id, sa.case((unmatched, s.c[KEY_KIND]))]
        group += [sa.case((sa.and_(unmatched, s.c[KEY_KIND] == "p"), s.c[k])) for k in self.keys]
        group += [sa.case((sa.and_(unmatched, s.c[KEY_KIND] == "s"), s.c[k])) for k in self.secondary]
        rule = self.template.target.duplicates_in_file
        last_wins = rule == "update"
        order = s.c.line.desc() if last_wins else s.c.line.asc()
        ranked = (
            sa.select(
                s.c.line,
                sa.func.row_number().over(partition_by=group, order_by=order).label("rank"),
                (sa.func.max if last_wins else sa.func.min)(s.c.line).over(partition_by=group).label("kept"),
            )
            .where(s.c.action.is_(None))
            .subquery()
        )
        code = {"update": "superseded", "ignore": "duplicate", "reject": "duplicate_reject"}[rule]
        self.conn.execute(
            sa.update(s)
            .values(action=code, ref_line=ranked.c.kept)
            .where(s.c.line == ranked.c.line, ranked.c.rank > 1)
        )

    def _choose_actions(self) -> None:
        s = self.stage
        matched = s.c.match_id.is_not(None)
        target = self.template.target
        on_match, on_new = {
            "insert_or_update": ("update" if target.existing_records == "update" else "kept", "insert"),
            "insert": ("exists", "insert"),
            "update": ("update", "not_found"),
            "reconcile_only": ("unchanged", "not_found"),
            "delete": ("delete", "not_found"),
        }[target.operation]
        self.conn.execute(
            sa.update(s).values(action=sa.case((matched, on_match), else_=on_new)).where(s.c.action.is_(None))
        )

    def _reject_unique_conflicts(self) -> None:
        s, t = self.stage, self.target
        writing = s.c.action.in_(("insert", "update"))
        for f in self.spec.unique_fields:
            if f.name not in self.columns:
                continue
            col = s.c[f.name]
            # Two lines of the file bring the same unique value for different records.
            ranked = (
                sa.select(
                    s.c.line,
                    sa.func.row_number().over(partition_by=col, order_by=s.c.line).label("rank"),
                    sa.func.min(s.c.line).over(partition_by=col).label("first"),
                )
                .where(writing, col.is_not(None))
                .subquery()
            )
            self.conn.execute(
                sa.update(s)
                .values(action=f"conflict_file:{f.name}", ref_line=ranked.c.first)
                .where(s.c.line == ranked.c.line, ranked.c.rank > 1)
            )
            # The value already belongs to another record of the table.
            taken = sa.exists().where(t.c[f.name] == col, sa.or_(s.c.match_id.is_(None), t.c.id != s.c.match_id))
            self.conn.execute(
                sa.update(s).values(action=f"conflict:{f.name}").where(writing, col.is_not(None), taken)
            )

    def _new_value(self, name: str) -> sa.ColumnElement:
        """What an update writes: an empty value keeps the field unless empty_values is
        overwrite; a key is never emptied."""
        s, t = self.stage, self.target
        keep = self.template.target.empty_values == "keep" or name in self.keys or name in self.secondary
        return sa.func.coalesce(s.c[name], t.c[name]) if keep else s.c[name]

    def _mark_unchanged(self) -> None:
        s, t = self.stage, self.target
        changed = sa.or_(*[self._new_value(c).is_distinct_from(t.c[c]) for c in self.columns])
        self.conn.execute(
            sa.update(s)
            .values(action="unchanged")
            .where(s.c.action == "update", t.c.id == s.c.match_id, sa.not_(changed))
        )

    def _apply(self) -> None:
        s, t = self.stage, self.target
        now = sa.literal(self.now, sa.DateTime(timezone=True))
        updates = {c: self._new_value(c) for c in self.columns}
        if "updated_at" in t.c:
            updates["updated_at"] = now
        self.conn.execute(sa.update(t).values(updates).where(t.c.id == s.c.match_id, s.c.action == "update"))

        deleted = sa.select(s.c.match_id).where(s.c.action == "delete")
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
        self.conn.execute(
            sa.insert(t).from_select(names, sa.select(*values).where(s.c.action == "insert").order_by(s.c.line))
        )
        self._match(s.c.action == "insert")

    def _link_list_and_service(self) -> None:
        target = self.template.target
        if target.recipient_list:
            list_id = self._named_row(schemas.TABLES["recipient_list"].table, target.recipient_list.name, label=target.recipient_list.name, created_at=self.now)
            members = schemas.TABLES["recipient_list_member"].table
            if target.recipient_list.mode == "replace":
                self.conn.execute(sa.delete(members).where(members.c.list_id == list_id))
            self._link(members, "list_id", list_id, {})
        if target.service:
            service_id = self._named_row(schemas.TABLES["service"].table, target.service, label=target.service, channel="email")
            self._link(schemas.TABLES["subscription"].table, "service_id", service_id, {"created_at": self.now})

    def _named_row(self, table: sa.Table, name: str, **defaults: object) -> int:
        found = self.conn.execute(sa.select(table.c.id).where(table.c.name == name)).scalar()
        if found is None:
            found = self.conn.execute(sa.insert(table).values(name=name, **defaults).returning(table.c.id)).scalar_one()
        return found

    def _link(self, link: sa.Table, owner_column: str, owner_id: int, extra: dict[str, object]) -> None:
        s = self.stage
        already = sa.exists().where(link.c[owner_column] == owner_id, link.c.recipient_id == s.c.match_id)
        literals = [sa.literal(owner_id).label(owner_column), s.c.match_id.label("recipient_id")]
        literals += [sa.literal(v, link.c[k].type).label(k) for k, v in extra.items()]
        rows = sa.select(*literals).where(s.c.action.in_(LOADED), s.c.match_id.is_not(None), sa.not_(already)).distinct()
        self.conn.execute(sa.insert(link).from_select([owner_column, "recipient_id", *extra], rows))

    def _result(self) -> MergeResult:
        s = self.stage
        result = MergeResult()
        for action, count in self.conn.execute(sa.select(s.c.action, sa.func.count()).group_by(s.c.action)):
            if action in APPLIED:
                result.counts[APPLIED[action]] = count
            elif action in IGNORED:
                result.ignored_by_cause[IGNORED[action]] = count
        unique_cols = [f.name for f in self.spec.unique_fields if f.name in self.columns]
        rejected = sa.select(s.c.line, s.c.action, s.c.ref_line, *[s.c[c] for c in unique_cols]).where(
            sa.or_(*[s.c.action.startswith(p) for p in REJECT_PREFIXES])
        )
        labels = {m.target: (str(m.source) if m.source is not None else m.target) for m in self.template.columns}
        keys = ", ".join(self.keys)
        for row in self.conn.execute(rejected.order_by(s.c.line)).mappings():
            action = row["action"]
            if action == "duplicate_reject":
                result.rejects.append((row["line"], ", ".join(labels[k] for k in self.keys), f"duplicate of line {row['ref_line']} (same {keys})"))
            elif action == "ambiguous":
                result.rejects.append((row["line"], ", ".join(labels[k] for k in self.keys), f"the key matches several {self.spec.name} records"))
            else:
                kind, _, column = action.partition(":")
                value = row[column]
                where = f"line {row['ref_line']}" if kind == "conflict_file" else f"another {self.spec.name} record"
                result.rejects.append((row["line"], labels[column], f"{column}: '{value}' is also on {where} ({column} is unique)"))
        if self.dialect != "postgresql":
            self.stage.drop(self.conn)
        return result
