"""Each root run's committed merge (the import_commit table), so that a merge commits at
most once for a run and its re-executions: Dagster re-executes a step whose merge
committed when its process died before reporting, or when a user re-executes a run.
A multiple import's commit holds each part's outcome under its name."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

import schemas
from campaign_pipelines.importing.outcome import DropOutcome, ImportOutcome
from campaign_pipelines.importing.rejects import REJECT_SCHEMA
from campaign_pipelines.templates import ImportTemplate


def _payload(outcome: ImportOutcome) -> dict[str, Any]:
    return {
        "counts": outcome.counts, "ignored_by_cause": outcome.ignored_by_cause, "links_created": outcome.links_created,
        "status": outcome.status, "table_rows": outcome.table_rows, "rows_read": outcome.rows_read,
        "rejects_path": str(outcome.rejects_path) if outcome.rejects_path else None,
    }


def _insert(conn: sa.Connection, root_run_id: str, run_id: str, template: str, payload: dict[str, Any], now: dt.datetime) -> None:
    """In the merge's transaction: the root run's primary key lets one merge commit, whoever races."""
    table = schemas.BUILTIN.table("import_commit").table
    conn.execute(sa.insert(table).values(
        root_run_id=root_run_id, run_id=run_id, template=template, outcome=json.dumps(payload), committed_at=now,
    ))


def record_commit(conn: sa.Connection, root_run_id: str, run_id: str, outcome: ImportOutcome, now: dt.datetime) -> None:
    _insert(conn, root_run_id, run_id, outcome.template.name, _payload(outcome), now)


def record_drop_commit(
    conn: sa.Connection, root_run_id: str, run_id: str, template: ImportTemplate, outcomes: list[ImportOutcome], now: dt.datetime
) -> None:
    _insert(conn, root_run_id, run_id, template.name, {"parts": {o.template.part_name: _payload(o) for o in outcomes}}, now)


def _committed(conn: sa.Connection, root_run_id: str) -> tuple[str, dict[str, Any], list[sa.Row]] | None:
    """The run whose merge committed for the root run, its payload and its recorded rejects."""
    commits, rejected = schemas.BUILTIN.table("import_commit").table, schemas.BUILTIN.table("import_reject").table
    with conn.begin():
        row = conn.execute(sa.select(commits.c.run_id, commits.c.outcome).where(commits.c.root_run_id == root_run_id)).first()
        if row is None:
            return None
        lines = conn.execute(
            sa.select(rejected.c.template, rejected.c.line_number, rejected.c.line, rejected.c.column_name, rejected.c.reason)
            .where(rejected.c.run_id == row.run_id).order_by(rejected.c.line_number)
        ).all()
    return row.run_id, json.loads(row.outcome), lines


def _outcome(template: ImportTemplate, payload: dict[str, Any], lines: list[sa.Row], run_id: str) -> ImportOutcome:
    rejects = pa.Table.from_pylist(
        [{"line": r.line_number, "text": r.line, "column": r.column_name, "reason": r.reason} for r in lines if r.template == template.name],
        schema=REJECT_SCHEMA,
    )
    return ImportOutcome(
        template=template, counts=payload["counts"], ignored_by_cause=payload["ignored_by_cause"], rejects=rejects,
        rejects_path=Path(payload["rejects_path"]) if payload["rejects_path"] else None, status=payload["status"],
        table_rows=payload["table_rows"], rows_read=payload["rows_read"], links_created=payload["links_created"],
        committed_by=run_id,
    )


def committed_outcome(conn: sa.Connection, template: ImportTemplate, root_run_id: str) -> ImportOutcome | None:
    """The outcome of the root run's committed merge, with its rejects as recorded; None if none committed."""
    committed = _committed(conn, root_run_id)
    if committed is None:
        return None
    run_id, payload, lines = committed
    return _outcome(template, payload, lines, run_id)


def committed_drop(conn: sa.Connection, template: ImportTemplate, root_run_id: str) -> DropOutcome | None:
    """A multiple import's committed merge: each part's outcome as recorded; None if none committed."""
    committed = _committed(conn, root_run_id)
    if committed is None:
        return None
    run_id, payload, lines = committed
    parts = [_outcome(part, payload["parts"][part.part_name], lines, run_id) for part in template.imports]
    return DropOutcome(template=template, parts=parts, committed_by=run_id)
