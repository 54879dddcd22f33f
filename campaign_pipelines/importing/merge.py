"""The import's last step: merge the validated rows into the Campaign tables in one
transaction and record the rejects; the reject policy decides, after the merge, whether
it commits. A multiple import merges each part's file in link order in one transaction:
a part's records are there for the next part's links, and any part failing writes none.

Given the root run, a merge commits at most once for it: a re-execution after a
committed merge changes nothing and reports it (commits.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

import schemas
from campaign_pipelines.errors import CampaignError
from campaign_pipelines.importing.commits import committed_drop, committed_outcome, record_commit, record_drop_commit
from campaign_pipelines.importing.filter import FILTERED
from campaign_pipelines.importing.formats import write_rejected_records
from campaign_pipelines.importing.outcome import COUNT_KEYS, DropOutcome, ImportOutcome
from campaign_pipelines.importing.read import LINE, TEXT
from campaign_pipelines.importing.reconcile import MergeResult, Reconciler
from campaign_pipelines.importing.rejects import REJECT_SCHEMA, RejectWriter, write_reject_files
from campaign_pipelines.importing.stage import copy_rows
from campaign_pipelines.importing.steps import (
    ImportState, all_rejects, read_batches, read_frames, reject_policy_failure, require_work_files,
)
from campaign_pipelines.templates import ImportTemplate


@dataclass
class Merged:
    """One file's merge in the open transaction: what it did, all its rejects, and why
    the reject policy fails it (None: it may commit)."""

    state: ImportState
    result: MergeResult
    rejects: pa.Table
    failure: str | None


def merge_file(conn: sa.Connection, state: ImportState, now: dt.datetime) -> Merged:
    """Stage (unless the validation did) and merge one file's valid rows in the caller's
    transaction; a file with no data line changes nothing."""
    if state.rows_read == 0:
        return Merged(state, MergeResult(), REJECT_SCHEMA.empty_table(), None)
    template = state.template
    # A run's stage is there until a merge commits; a temporary one lives as long as the
    # session that filled it: merging on another session stages again from the file.
    staged = state.staged if state.staged and conn.scalar(sa.func.to_regclass(state.staged)) else None
    reconciler = Reconciler(conn, template, now, staged=staged)
    if not staged:
        reconciler.stage_rows(read_frames(state.data))
    result = reconciler.merge()
    rejects = all_rejects(state)
    if result.rejects:
        merge_rejects_path = state.work_dir / "rejects_merge.arrow"
        texts = _texts_for(state.data, [r[0] for r in result.rejects])
        with RejectWriter(merge_rejects_path) as writer:
            writer.add(
                pa.array([r[0] for r in result.rejects], pa.int64()),
                pa.array([texts.get(r[0]) for r in result.rejects], pa.string()),
                pa.array([r[1] for r in result.rejects], pa.string()),
                pa.array([r[2] for r in result.rejects], pa.string()),
            )
        rejects = all_rejects(state, merge_rejects_path)
    failure = reject_policy_failure(template.errors, state.rows_read, state.watch_line, rejects)
    return Merged(state, result, rejects, failure)


def reconcile_step(
    state: ImportState, conn: sa.Connection, run_id: str, rejects_dir: Path, now: dt.datetime | None = None,
    root_run_id: str | None = None,
) -> ImportOutcome:
    """Merge one file and record its rejects in one transaction on `conn`. Reject files
    are written either way."""
    template = state.template
    if root_run_id and (committed := committed_outcome(conn, template, root_run_id)) is not None:
        return committed
    require_work_files(state)
    now = now or dt.datetime.now(dt.UTC)
    if state.rows_read == 0:
        return empty_delta(state, conn)
    outcome: ImportOutcome | None = None
    with conn.begin() as transaction:
        merged = merge_file(conn, state, now)
        if merged.failure:
            transaction.rollback()
        else:
            outcome = _recorded(conn, merged, run_id, now)
            if root_run_id:
                outcome.rejects_path = reject_paths(state, run_id, rejects_dir)[0] if merged.rejects.num_rows else None
                record_commit(conn, root_run_id, run_id, outcome, now)
            _commit(transaction, state.shown)
    outcome = outcome or _outcome(merged, 0)
    outcome.rejects_path = write_rejects(state, run_id, rejects_dir, merged.rejects)
    return outcome


def reconcile_drop_step(
    template: ImportTemplate, states: list[ImportState], conn: sa.Connection, run_id: str, rejects_dir: Path,
    now: dt.datetime | None = None, root_run_id: str | None = None,
) -> DropOutcome:
    """A multiple import's merge: each part's file in link order (`states`, as
    `template.imports`), in one transaction, committed only when every part passes its
    reject policy. A part failing stops the merge: the parts after it are not merged, and
    nothing of the drop is written. Each part's rejects are recorded under its name
    (<template>.<part>) and written to its own rejects file."""
    if root_run_id and (committed := committed_drop(conn, template, root_run_id)) is not None:
        return committed
    for state in states:
        require_work_files(state)
    now = now or dt.datetime.now(dt.UTC)
    merged: list[Merged] = []
    outcomes: list[ImportOutcome] = []
    with conn.begin() as transaction:
        _lock_written_tables(conn, [s.template for s in states], now)
        for i, state in enumerate(states):
            merged.append(merge_file(conn, state, now))
            if merged[-1].failure:
                break
            _analyze_for_later_parts(conn, state.template, [s.template for s in states[i + 1:]])
        failed = next((m for m in merged if m.failure), None)
        if failed is not None:
            transaction.rollback()
        else:
            outcomes = [_recorded(conn, m, run_id, now) for m in merged]
            if root_run_id:
                for m, outcome in zip(merged, outcomes):
                    outcome.rejects_path = reject_paths(m.state, run_id, rejects_dir)[0] if m.rejects.num_rows else None
                record_drop_commit(conn, root_run_id, run_id, template, outcomes, now)
            _commit(transaction, f"the drop of {template.name}")
    if failed is not None:
        held_back = f"not written: the part {failed.state.template.part_name} failed"
        outcomes = [_outcome(m if m.failure else dataclasses.replace(m, failure=held_back), 0) for m in merged]
        for state in states[len(merged):]:  # not merged: their rejects so far
            outcomes.append(_outcome(Merged(state, MergeResult(), all_rejects(state), held_back), 0))
    for state, outcome in zip(states, outcomes):
        outcome.rejects_path = write_rejects(state, run_id, rejects_dir, outcome.rejects)
    failure = None
    if failed is not None:
        failure = f"the part {failed.state.template.part_name} ({failed.state.shown}): " + failed.failure.replace("nothing was written", "nothing of the drop was written")
    return DropOutcome(template=template, parts=outcomes, failure=failure)


def _lock_written_tables(conn: sa.Connection, templates: list[ImportTemplate], now: dt.datetime) -> None:
    """PostgreSQL: every table the parts write, and those they link to, locked before the
    first merge, in the one order every import takes (Reconciler.merge): no part waits
    for a lock while holding another, so no two imports deadlock."""
    if conn.dialect.name != "postgresql":
        return
    reconcilers = [Reconciler(conn, t, now) for t in templates]
    written = {t.name: t for r in reconcilers for t in r.written_tables()}
    linked = {t.name: t for r in reconcilers for t in r.linked_tables(list(written.values())) if t.name not in written}
    preparer = conn.dialect.identifier_preparer
    if linked:
        conn.exec_driver_sql(f"LOCK TABLE {', '.join(preparer.format_table(linked[n]) for n in sorted(linked))} IN SHARE MODE")
    conn.exec_driver_sql(f"LOCK TABLE {', '.join(preparer.format_table(written[n]) for n in sorted(written))} IN SHARE ROW EXCLUSIVE MODE")


def _analyze_for_later_parts(conn: sa.Connection, loaded: ImportTemplate, later: list[ImportTemplate]) -> None:
    """PostgreSQL: a table a later part links to was just filled in this transaction;
    its statistics still describe it as it was (empty, maybe), and the later part's link
    joins would be planned for that. ANALYZE reads the transaction's own rows."""
    if conn.dialect.name != "postgresql":
        return
    table = loaded.target.table
    if any(link.table == table for t in later for link in t.table.links):
        conn.exec_driver_sql(f"ANALYZE {conn.dialect.identifier_preparer.format_table(loaded.table.table)}")


def _commit(transaction: sa.RootTransaction, what: str) -> None:
    try:
        transaction.commit()
    except sa.exc.DBAPIError as exc:
        # Lost during COMMIT: the server may have committed or not; no retry can tell,
        # but running the file again converges either way.
        raise CampaignError(
            f"{what}: the connection to the Campaign database was lost while the merge was "
            f"committing ({str(exc.orig).strip().splitlines()[0] if exc.orig else exc}), so whether "
            "it was written is unknown; run the file again (a re-run converges)."
        ) from None


def _recorded(conn: sa.Connection, merged: Merged, run_id: str, now: dt.datetime) -> ImportOutcome:
    """A merge that commits: its rejects recorded in import_reject, its outcome counted."""
    template = merged.state.template
    _record_rejects(conn, template.name, run_id, merged.rejects, now)
    table_rows = conn.execute(sa.select(sa.func.count()).select_from(template.table.table)).scalar_one()
    return _outcome(merged, table_rows)


def _outcome(merged: Merged, table_rows: int) -> ImportOutcome:
    """The merge's outcome, its line accounting checked (a failed one counts its rejects only)."""
    state, result, rejects, failure = merged.state, merged.result, merged.rejects, merged.failure
    if state.rows_filtered:
        result.ignored_by_cause[FILTERED] = state.rows_filtered
    counts = dict(result.counts)
    counts["rows_ignored"] = sum(result.ignored_by_cause.values())
    counts["rows_rejected"] = rejects.num_rows
    accounted = sum(counts.get(k, 0) for k in COUNT_KEYS)
    if accounted != state.rows_read and not failure:
        raise RuntimeError(f"line accounting broke: {accounted} lines accounted for, {state.rows_read} read ({counts})")
    status = "failed" if failure else ("finished_with_errors" if rejects.num_rows else "finished")
    return ImportOutcome(
        template=state.template,
        counts=counts if not failure else {"rows_rejected": rejects.num_rows},
        ignored_by_cause=result.ignored_by_cause,
        links_created={} if failure else result.links_created,
        rejects=rejects,
        rejects_path=None,
        status=status,
        table_rows=table_rows,
        rows_read=state.rows_read,
        failure=failure,
    )


def empty_delta(state: ImportState, conn: sa.Connection) -> ImportOutcome:
    """A file with no data line changes nothing (a list in replace mode keeps its members)."""
    table = state.template.table.table
    with conn.begin():
        table_rows = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    return ImportOutcome(
        template=state.template, counts={}, ignored_by_cause={}, rejects=REJECT_SCHEMA.empty_table(),
        rejects_path=None, status="finished", table_rows=table_rows,
    )


def _texts_for(path: Path | None, lines: list[int]) -> dict[int, str]:
    """The original text of lines the merge rejected (few), from the validated rows:
    searched in Arrow, since turning every row into polars first costs more than the search."""
    wanted = pa.array(lines, pa.int64())
    found: dict[int, str] = {}
    for batch in read_batches(path):
        hit = batch.select([LINE, TEXT]).filter(pc.is_in(batch[LINE], value_set=wanted))
        found.update(zip(hit[LINE].to_pylist(), hit[TEXT].to_pylist()))
    return found


def write_rejects(state: ImportState, run_id: str, rejects_dir: Path, rejects: pa.Table) -> Path | None:
    """The rejects file in the input's format, and its reasons beside it; None if no reject."""
    if not rejects.num_rows:
        return None
    lines_path, reasons_path = reject_paths(state, run_id, rejects_dir)
    source, prefix, schema = state.template.source, list(state.prefix_lines), state.input_schema
    write_reject_files(
        rejects, lambda texts, path: write_rejected_records(source, texts, prefix, schema, path), lines_path, reasons_path
    )
    return lines_path


def reject_paths(state: ImportState, run_id: str, rejects_dir: Path) -> tuple[Path, Path]:
    """A run's rejects file, named and formatted as its input, and its reasons beside it
    (a multiple import's part: <run id>.<part>.csv)."""
    name = state.file.name
    for compressed in (".gz", ".zip"):
        name = name.removesuffix(compressed)
    extension = Path(name).suffix or ".txt"
    stem = f"{run_id}.{state.template.part_name}" if state.template.part_name else run_id
    return rejects_dir / f"{stem}{extension}", rejects_dir / f"{stem}.reasons.csv"


def _storable(texts: pa.ChunkedArray) -> pa.ChunkedArray:
    """A rejected line may hold NUL bytes, which PostgreSQL text cannot: shown as ␀ in the
    table, on every database alike (the rejects file keeps the line as it was)."""
    return pc.replace_substring(texts, "\x00", "\u2400")


def _record_rejects(conn: sa.Connection, template: str, run_id: str, rejects: pa.Table, now: dt.datetime) -> None:
    if not rejects.num_rows:
        return
    table = schemas.BUILTIN.table("import_reject").table
    n = rejects.num_rows
    rows = pa.table({
        "run_id": pa.array([run_id] * n, pa.string()),
        "template": pa.array([template] * n, pa.string()),
        "line_number": rejects["line"],
        "line": _storable(rejects["text"]),
        "column_name": _storable(rejects["column"]),
        "reason": rejects["reason"],
        "created_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
    })
    if conn.dialect.name == "postgresql":
        copy_rows(conn, table, rows)
        return
    listed = rows.to_pylist()
    for start in range(0, n, 10_000):
        conn.execute(sa.insert(table), listed[start : start + 10_000])
