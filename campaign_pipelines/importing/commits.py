"""Each root run's committed merge (the import_commit table), so that a merge commits at
most once for a run and its re-executions: Dagster re-executes a step whose merge
committed when its process died before reporting, or when a user re-executes a run."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
import pyarrow as pa
import sqlalchemy as sa

import schemas
from campaign_pipelines.importing.outcome import ImportOutcome
from campaign_pipelines.importing.rejects import REJECT_SCHEMA
from campaign_pipelines.templates import ImportTemplate


def record_commit(conn: sa.Connection, root_run_id: str, run_id: str, outcome: ImportOutcome, now: dt.datetime) -> None:
    """In the merge's transaction: the root run's primary key lets one merge commit, whoever races."""
    payload = {
        "counts": outcome.counts, "ignored_by_cause": outcome.ignored_by_cause, "links_created": outcome.links_created,
        "status": outcome.status, "table_rows": outcome.table_rows, "rows_read": outcome.rows_read,
        "rejects_path": str(outcome.rejects_path) if outcome.rejects_path else None,
    }
    table = schemas.BUILTIN.table("import_commit").table
    conn.execute(sa.insert(table).values(
        root_run_id=root_run_id, run_id=run_id, template=outcome.template.name, outcome=json.dumps(payload), committed_at=now,
    ))


def committed_outcome(conn: sa.Connection, template: ImportTemplate, root_run_id: str) -> ImportOutcome | None:
    """The outcome of the root run's committed merge, with its rejects as recorded; None if none committed."""
    commits, rejected = schemas.BUILTIN.table("import_commit").table, schemas.BUILTIN.table("import_reject").table
    with conn.begin():
        row = conn.execute(sa.select(commits.c.run_id, commits.c.outcome).where(commits.c.root_run_id == root_run_id)).first()
        if row is None:
            return None
        lines = conn.execute(
            sa.select(rejected.c.line_number, rejected.c.line, rejected.c.column_name, rejected.c.reason)
            .where(rejected.c.run_id == row.run_id).order_by(rejected.c.line_number)
        ).all()
    payload = json.loads(row.outcome)
    rejects = pa.Table.from_pylist(
        [{"line": n, "text": text, "column": column, "reason": reason} for n, text, column, reason in lines], schema=REJECT_SCHEMA
    )
    return ImportOutcome(
        template=template, counts=payload["counts"], ignored_by_cause=payload["ignored_by_cause"], rejects=rejects,
        rejects_path=Path(payload["rejects_path"]) if payload["rejects_path"] else None, status=payload["status"],
        table_rows=payload["table_rows"], rows_read=payload["rows_read"], links_created=payload["links_created"],
        committed_by=row.run_id,
    )

