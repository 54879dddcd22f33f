"""What each staged line of an import does, decided by one SELECT (`Decisions`); the
merge (`reconcile.py`) writes its result to a narrow temporary table and applies it.

The SELECT is built in layers of CTEs:

0. resolve links: each linked value (an e-mail) becomes the linked record's id, by a
   join (`on_missing_link: create` first inserts the linked records that are missing);
1. match each line to an existing record by its key (or secondary key), and note
   whether the record already holds the line's values (into an empty table: nothing to
   match, no join);
2. settle duplicates in the file (`duplicates_in_file`);
3. pick the action the operation gives (insert, update, ignore, delete);
4. reject lines whose unique values belong to another record (in the file or the table);
5. turn updates whose values are all equal into `unchanged` (never rewritten).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from campaign_pipelines.importing.stage import deciding_columns, stage_table, temporary_table, unique_groups
from campaign_pipelines.importing.validate import KEY_KIND
from campaign_pipelines.templates import ImportTemplate

# The actions that write the line's values to the table.
WRITING = ("insert", "update")


class Decisions:
    """A template's import into its table, as far as deciding goes: the facts every line's
    decision needs (keys, links, what is carried), and the SELECT that decides."""

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
        # How a group's first line is found (`_first_line`): a window, or on SQLite a GROUP
        # BY joined back, which reads its rows twice and leaves them out of key order.
        self.groups_by_window = self.dialect != "sqlite"
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

    @property
    def decided_in_key_order(self) -> bool:
        """Whether the decisions are written in the key's order: into an empty table, by
        the duplicates' window, whose sort leads with the key (`_first_line` on
        PostgreSQL), unless a unique check's window sorts them again."""
        return self.into_empty and self.groups_by_window and not self.unique_checks

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

    def _via(self, name: str) -> str:
        mapping = self.template.mapping(name)
        return (mapping.link.via if mapping.link else None) or self.links[name].via  # type: ignore[return-value]

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
        elif not self.groups_by_window:
            # Read twice by the duplicates' grouping (`_first_line`): a projection of the
            # stage, read again rather than copied.
            matched = matched.prefix_with("NOT MATERIALIZED")
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
        # The group's kept line; any other line of the group is a duplicate.
        grouped_from, kept = self._first_line(matched, group, "repeated", last=target.duplicates_in_file == "update")

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
                           *([m.matches] if ambiguous_keys else [])).select_from(grouped_from).cte("grouped")
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
            bucketed, first = self._first_line(acted, buckets, f"taken_{len(group)}_{group[0]}")
            earlier = a.line != first
            acted = sa.select(
                *[c for c in a if c.name not in ("action", "ref_line")],
                sa.case(
                    (sa.and_(writing, earlier), f"conflict_file:{name}"),
                    (sa.and_(writing, taken), f"conflict:{name}"),
                    else_=a.action,
                ).label("action"),
                sa.case((sa.and_(writing, earlier), first), else_=a.ref_line).label("ref_line"),
            ).select_from(bucketed).cte(f"unique_{len(group)}_{group[0]}")

        # 5. Updates that change nothing are unchanged.
        a = acted.c
        final_action = sa.case((sa.and_(a.action == "update", a.same), "unchanged"), else_=a.action)
        decisions = sa.select(
            *[a[c.name] for c in self.decided.columns if c.name not in ("action", "ref_line")],
            final_action.label("action"),
            a.ref_line,
        )
        return decisions if self.keeps_unchanged else decisions.where(final_action != "unchanged")

    def _first_line(
        self, rows: sa.CTE, group: list[sa.ColumnElement], name: str, last: bool = False
    ) -> tuple[sa.FromClause, sa.ColumnElement]:
        """The first (or last) line of each row's group, and what to select it from.
        PostgreSQL: one window over the rows sorted by group, so one pass (a row_number
        and a min took two). SQLite, whose window functions
        store every wide row before reading it back: the groups of two lines or more by
        one narrow GROUP BY, joined back (1M lines into an empty table, 1,111 repeated
        e-mails: the decide statement 9.5 s -> 4.4 s)."""
        order = rows.c.line.desc() if last else rows.c.line.asc()
        if self.groups_by_window:
            return rows, sa.func.first_value(rows.c.line).over(partition_by=group, order_by=order)
        keys = [g.label(f"g{i}") for i, g in enumerate(group)]
        pick = (sa.func.max if last else sa.func.min)(rows.c.line)
        repeated = (
            sa.select(*keys, pick.label("first"))
            .group_by(*group)
            .having(sa.func.count() > 1)
            .cte(name)
            .prefix_with("MATERIALIZED")
        )
        joined = rows.outerjoin(repeated, sa.and_(*[repeated.c[k.name].is_not_distinct_from(g) for k, g in zip(keys, group)]))
        return joined, sa.func.coalesce(repeated.c.first, rows.c.line)

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
