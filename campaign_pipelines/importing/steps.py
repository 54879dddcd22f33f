"""The import's steps as plain functions: read → map → validate (then the merge: merge.py).

Each step streams the previous step's Arrow IPC file batch by batch and writes its own,
so memory stays bounded by one batch whatever the file size, and each op stays a thin
wrapper that can be tested without Dagster. `ImportState` carries what a step learnt to
the next one (it is small: paths and counts).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import sqlalchemy as sa

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.importing.documents import DocumentReader
from campaign_pipelines.importing.formats import reader_for, with_texts
from campaign_pipelines.importing.read import SourceReader
from campaign_pipelines.importing.stage import copy_to_stage, run_stage_name, stage_table
from campaign_pipelines.importing.rejects import RejectWriter, read_rejects
from campaign_pipelines.importing.transform import Mapper
from campaign_pipelines.importing.validate import Validator
from campaign_pipelines.progress import Progress
from campaign_pipelines.templates import ErrorPolicy, ImportTemplate


@dataclass(frozen=True)
class ImportState:
    template: ImportTemplate
    file: Path
    work_dir: Path
    rows_read: int = 0
    blank_lines: int = 0
    # The N-th data line's number, N = errors.stop_if_first_lines_rejected.
    watch_line: int | None = None
    prefix_lines: tuple[str, ...] = ()
    input_schema: pa.Schema | None = None  # a typed file's columns (its rejects file is typed alike)
    data: Path | None = None  # the latest step's rows
    reject_files: tuple[Path, ...] = ()
    staged: str | None = None  # the table holding the valid rows (PostgreSQL: the run's stage)
    rows_filtered: int = 0  # lines source.filter left out (ignored)
    rejected_so_far: int = 0  # by the steps before (progress lines)
    data_rows: int = 0  # the rows `data` holds (the next step's progress total)
    origin: str | None = None  # the file's URI on its endpoint (`file` is then its local spool)

    @property
    def shown(self) -> str:
        """The file as sentences name it: its endpoint URI, or its local path."""
        return self.origin or str(self.file)

    def next(self, **changes: object) -> "ImportState":
        return dataclasses.replace(self, **changes)

    def work_files(self) -> list[Path]:
        """The files the next steps read (a shared work endpoint carries them: work_io.py)."""
        return [p for p in (self.data, *self.reject_files) if p is not None]

    def rebased(self, work_dir: Path) -> "ImportState":
        """The same state in another work folder: a worker with another data folder's (a
        multiple import's part keeps its files in its own folder there)."""
        if self.template.part_name:
            work_dir = work_dir / self.template.part_name

        def moved(path: Path) -> Path:
            return work_dir / path.relative_to(self.work_dir) if path.is_relative_to(self.work_dir) else path

        return self.next(
            work_dir=work_dir, file=moved(self.file), data=moved(self.data) if self.data else None,
            reject_files=tuple(moved(p) for p in self.reject_files),
        )


def _write_batches(path: Path, batches: Iterator[pa.RecordBatch | pl.DataFrame]) -> int:
    """Stream batches to an Arrow IPC file (none at all when there is no batch); the rows written."""
    writer = None
    rows = 0
    try:
        for batch in batches:
            if isinstance(batch, pl.DataFrame):
                batch = batch.to_arrow()
            if writer is None:
                writer = ipc.new_file(path, batch.schema)
            writer.write(batch)
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def read_batches(path: Path | None) -> Iterator[pa.RecordBatch]:
    if path is None or not path.exists():
        return
    # Plain reads, not a memory map: mapped pages of every step's file would stay
    # resident and grow with the file.
    with pa.OSFile(str(path)) as source, ipc.open_file(source) as reader:
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def read_frames(path: Path | None) -> Iterator[pl.DataFrame]:
    for batch in read_batches(path):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        yield frame


def require_work_files(state: ImportState) -> None:
    """A step reads the files of the steps before it, kept until the run (or a
    re-execution of it) succeeds or CAMPAIGN_WORK_RETENTION passes: a step re-executed
    after the cleanup must not load nothing (a list's "replace" would empty it)."""
    missing_rows = state.data_rows and state.data is not None and not state.data.exists()
    if missing_rows or not state.work_dir.exists():
        raise CampaignError(
            f"{state.shown}: the work data of run {state.work_dir.name} was cleaned up (CAMPAIGN_WORK_RETENTION): "
            "re-run the whole job; nothing was written."
        )


def _reported(frames: Iterator[Any], progress: Progress | None, rejects: RejectWriter, before: int) -> Iterator[Any]:
    """The frames, with a progress line after each one is consumed."""
    lines = 0
    for frame in frames:
        yield frame
        lines += len(frame)
        if progress is not None:
            progress.update(lines, before + rejects.lines_rejected)
    if progress is not None:
        progress.finish()


def _read_reported(reader: SourceReader | DocumentReader, rejects: RejectWriter, progress: Progress) -> Iterator[pa.RecordBatch]:
    for batch in reader.batches():
        yield batch
        progress.update(reader.rows_read, rejects.lines_rejected, done=reader.bytes_seen)
    progress.finish()


def read_step(
    template: ImportTemplate, file: Path, work_dir: Path, progress: Progress | None = None, origin: str | None = None
) -> ImportState:
    rejects_path = work_dir / "rejects_read.arrow"
    if progress is not None and file.is_file() and file.suffix.lower() not in (".gz", ".zip"):
        progress.total, progress.unit = file.stat().st_size, "bytes"  # a compressed file's size says little
    with RejectWriter(rejects_path) as rejects:
        reader = reader_for(template, file, rejects)
        data = work_dir / "lines.arrow"
        data_rows = _write_batches(data, reader.batches() if progress is None else _read_reported(reader, rejects, progress))
    return ImportState(
        template=template,
        file=file,
        work_dir=work_dir,
        origin=origin,
        rows_read=reader.rows_read,
        blank_lines=reader.blank_lines,
        watch_line=reader.watch_line,
        prefix_lines=tuple(reader.layout.prefix_lines),
        input_schema=reader.layout.schema,
        data=data,
        reject_files=(rejects_path,),
        rejected_so_far=rejects.lines_rejected,
        data_rows=data_rows,
    )


def map_step(state: ImportState, progress: Progress | None = None) -> ImportState:
    require_work_files(state)
    mapper = Mapper(state.template)
    rejects_path = state.work_dir / "rejects_map.arrow"
    out = state.work_dir / "mapped.arrow"
    if progress is not None:
        progress.total = state.data_rows
    with RejectWriter(rejects_path) as rejects:
        frames = _reported(read_frames(state.data), progress, rejects, state.rejected_so_far)
        data_rows = _write_batches(out, (mapper.map_frame(frame, rejects) for frame in frames))
    return state.next(
        data=out, reject_files=(*state.reject_files, rejects_path), rows_filtered=mapper.rows_filtered,
        rejected_so_far=state.rejected_so_far + rejects.lines_rejected, data_rows=data_rows,
    )


def validate_step(
    state: ImportState, session: sa.Connection | None = None, progress: Progress | None = None, root_run_id: str | None = None
) -> ImportState:
    """Validate every row. Given a PostgreSQL session, also stage the valid rows as they
    come (the server parses them while Python validates): in the root run's stage table,
    which the merge reads from any session, or without a run in a temporary table of this
    session. Nothing reaches the target tables before the reconcile step."""
    require_work_files(state)
    validator = Validator(state.template, Mapper(state.template))
    rejects_path = state.work_dir / "rejects_validate.arrow"
    out = state.work_dir / "valid.arrow"
    staged = None
    if progress is not None:
        progress.total = state.data_rows
    with RejectWriter(rejects_path) as rejects:
        frames = _reported(read_frames(state.data), progress, rejects, state.rejected_so_far)
        valid = (validator.validate_batch(f, rejects) for f in frames)
        if session is not None and session.dialect.name == "postgresql":
            stage = stage_table(state.template, run_stage_name(root_run_id, state.template.part_name) if root_run_id else None)
            # Closed on any error, so the COPY ends before the rollback (else it waits forever).
            with session.begin(), contextlib.closing(copy_to_stage(session, state.template, stage, valid)) as copying:
                data_rows = _write_batches(out, copying)
            staged = stage.name
        else:
            data_rows = _write_batches(out, valid)
    return state.next(
        data=out, reject_files=(*state.reject_files, rejects_path), staged=staged,
        rejected_so_far=state.rejected_so_far + rejects.lines_rejected, data_rows=data_rows,
    )


def all_rejects(state: ImportState, *more: Path) -> pa.Table:
    """Every reject of the steps so far (and of `more` files), each with its record's text."""
    return with_texts(state.template.source, state.file, state.input_schema, read_rejects([*state.reject_files, *more]))


def early_failure(state: ImportState) -> str | None:
    """Fail before touching the database when the rejects so far already break the policy."""
    rejects = read_rejects(list(state.reject_files))
    return reject_policy_failure(state.template.errors, state.rows_read, state.watch_line, rejects)


def reject_policy_failure(policy: ErrorPolicy, rows_read: int, watch_line: int | None, rejects: pa.Table) -> str | None:
    """Why the reject policy fails the run, or None."""
    count = rejects.num_rows
    if not count:
        return None
    first = f"line {rejects['line'][0].as_py()}: {rejects['reason'][0].as_py()}"
    if policy.on_error == "stop":
        return f"{count} line(s) rejected and errors.on_error is stop; nothing was written (first: {first})."
    if policy.max_rejects is not None and count > policy.max_rejects:
        return f"{count} lines rejected, more than errors.max_rejects ({policy.max_rejects}); nothing was written (first: {first})."
    if policy.max_reject_rate is not None and rows_read and count / rows_read > policy.max_reject_rate:
        return (
            f"{count} of {rows_read} lines rejected ({count / rows_read:.1%}), more than errors.max_reject_rate "
            f"({policy.max_reject_rate:.1%}); nothing was written (first: {first})."
        )
    n = policy.stop_if_first_lines_rejected
    if n and watch_line is not None:
        early = pc.sum(pc.less_equal(rejects["line"], watch_line)).as_py() or 0
        if early >= n:
            return (
                f"the first {n} lines were all rejected (errors.stop_if_first_lines_rejected); the file does not "
                f"look like this template's layout; nothing was written (first: {first})."
            )
    return None
