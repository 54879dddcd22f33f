"""`campaign-pipelines run` and `rejects`: launch a template's job as the UI does, and read what a run rejected."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import schemas
from campaign_pipelines.cli.common import (
    EXIT_FAILED, EXIT_OK, UsageError, checked_launch, dagster_instance, parse_sets, quiet, template_catalog,
)
from campaign_pipelines.settings import Settings, default_db_url
from campaign_pipelines.templates import EXPORT_LAUNCH_KEYS, LAUNCH_KEYS, ExportTemplate
from campaign_pipelines.templates.drops import DROP_LAUNCH_KEYS


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    import dagster as dg

    from campaign_pipelines import launching
    from campaign_pipelines.code_location import build_definitions
    from campaign_pipelines.jobs import run_config
    from campaign_pipelines.partitions import partition_launch

    catalog = template_catalog(settings)
    template = catalog.get(args.name)
    exporting = isinstance(template, ExportTemplate)
    keys = EXPORT_LAUNCH_KEYS if exporting else dict.fromkeys(DROP_LAUNCH_KEYS) if template.parts else LAUNCH_KEYS
    launch = parse_sets(args.set or [], keys)
    if not exporting and template.parts and args.file:
        raise UsageError(f"{template.name} loads the files of a drop's folder: give it with --set drop=FOLDER, not --file.")
    if exporting and args.file:
        raise UsageError(f"--file is for import templates; {template.name} is an export (use --output).")
    if not exporting and args.output:
        raise UsageError(f"--output is for export templates; {template.name} is an import (use --file).")
    if args.file:
        launch["file"] = _data_relative(settings, args.file)
    if args.output:
        launch["output"] = args.output
    launch = checked_launch(template, launch)
    terminal = sys.stderr  # the progress bar's, whatever quiet does to stderr
    with quiet(args.verbose):
        instance = dagster_instance()
        job = build_definitions(settings).resolve_job_def(template.name)
        partitions = job.partitions_def
        if args.partition is None and partitions is not None:
            raise UsageError(
                f"{template.name} is partitioned by day: give --partition YYYY-MM-DD "
                "(with --file to load another file as that day's)."
            )
        if args.partition is not None:
            if partitions is None or not partitions.has_partition_key(args.partition):
                raise UsageError(f"--partition {args.partition!r}: {template.name} has no such daily partition.")
            # The day's own config (its file), with any --file/--set on top.
            config = run_config(template, {**partition_launch(template, args.partition), **launch}) if launch else None
        else:
            config = run_config(template, launch)
        try:
            run = launching.create_run(instance, job, config, args.partition)
        except dg.DagsterInvalidConfigError as exc:
            raise UsageError(f"launch config for {template.name}: {exc.errors[0].message if exc.errors else exc}") from None
        _launch_with_progress(args, instance, job, run, terminal)
    if args.no_wait:
        print(json.dumps({"run_id": run.run_id, "template": template.name, "status": "queued"}) if args.json else run.run_id)
        if not launching.daemon_serves_queue(instance):
            print(f"note: run {run.run_id} is queued; no dagster-daemon serves this instance's queue "
                  f"({os.environ['DAGSTER_HOME']}): it starts when one does.", file=sys.stderr)
        return EXIT_OK
    return _print_outcome(args, launching.run_outcome(instance, run.run_id, template))


def _print_outcome(args: argparse.Namespace, payload: dict[str, Any]) -> int:
    succeeded = "error" not in payload
    if args.json:
        print(json.dumps(payload))
    else:
        for key, value in payload.items():
            print(f"{key}: {value}")
    if not succeeded and not args.json:
        print(f"error: {payload['error']}", file=sys.stderr)
    return EXIT_OK if succeeded else EXIT_FAILED


def cmd_rerun(args: argparse.Namespace, settings: Settings) -> int:
    """Re-execute a run as the UI's "Re-execute" does: every step, or from failure."""
    from campaign_pipelines import launching
    from campaign_pipelines.code_location import build_definitions

    terminal = sys.stderr
    with quiet(args.verbose):
        instance = dagster_instance()
        prefix = args.run_id.lower()
        ids = [r for r in instance.get_run_ids() if r.startswith(prefix)] if RUN_ID_PREFIX.fullmatch(prefix) else []
        if len(ids) != 1:
            raise UsageError(
                f"run id {args.run_id!r} matches {len(ids)} runs of the instance ({os.environ['DAGSTER_HOME']}); "
                "give the run id or more of it."
            )
        parent = instance.get_run_by_id(ids[0])
        template = template_catalog(settings).get(parent.job_name)
        job = build_definitions(settings).resolve_job_def(template.name)
        run = launching.create_rerun(instance, job, parent, from_failure=args.from_failure)
        _launch_with_progress(args, instance, job, run, terminal)
    if args.no_wait:
        print(json.dumps({"run_id": run.run_id, "template": template.name, "status": "queued"}) if args.json else run.run_id)
        return EXIT_OK
    return _print_outcome(args, launching.run_outcome(instance, run.run_id, template))


def _launch_with_progress(args: argparse.Namespace, instance: Any, job: Any, run: Any, terminal: Any) -> None:
    """Launch the run; while it runs, draw its progress lines on a terminal (or with --progress)."""
    import threading

    from campaign_pipelines import launching
    from campaign_pipelines.progress import Bar, follow

    if args.no_wait or not (args.progress or terminal.isatty()):
        launching.launch(instance, job, run, wait=not args.no_wait)
        return
    stop = threading.Event()
    watcher = threading.Thread(target=follow, args=(instance, run.run_id, Bar(terminal), stop), daemon=True)
    watcher.start()
    try:
        launching.launch(instance, job, run, wait=True)
    finally:
        stop.set()
        watcher.join()


def _data_relative(settings: Settings, file: str) -> str:
    """`--file` as typed: relative to CAMPAIGN_DATA_DIR, or a path from the working
    directory that resolves inside it (tab completion from the project folder)."""
    from campaign_pipelines.settings import resolve_data_path

    data_dir = settings.data_dir.resolve()
    given = Path(file)
    if not given.is_absolute() and not (data_dir / given).exists() and Path.cwd().joinpath(given).exists():
        given = Path.cwd() / given
    if given.is_absolute():
        return str(resolve_data_path(data_dir, given, what="--file").relative_to(data_dir))
    return file


RUN_ID_PREFIX = re.compile(r"[0-9a-f-]{1,36}")


def _run_ids(prefix: str, settings: Settings, conn: sa.Connection) -> set[str]:
    """Every run whose id starts with `prefix`: in the rejects table, in the rejects
    files (a failed run's rejects are only there), and in the Dagster instance."""
    table = schemas.BUILTIN.table("import_reject").table
    ids = set(conn.execute(sa.select(table.c.run_id).where(table.c.run_id.startswith(prefix)).distinct()).scalars())
    ids |= {p.name.split(".", 1)[0] for p in settings.data_dir.glob(f"rejects/*/{prefix}*.reasons.csv")}
    with quiet(verbose=False):
        ids |= {run_id for run_id in dagster_instance().get_run_ids() if run_id.startswith(prefix)}
    return ids


def _rejects_of(run_id: str, settings: Settings, conn: sa.Connection) -> list[tuple[Any, ...]]:
    """(part, line, column, reason, text) of a run's rejects (part: None but in a multiple
    import), from the table, else from the reasons files that a failed run leaves
    (<run id>.reasons.csv, or <run id>.<part>.reasons.csv)."""
    table = schemas.BUILTIN.table("import_reject").table
    query = sa.select(table.c.template, table.c.line_number, table.c.column_name, table.c.reason, table.c.line).where(
        table.c.run_id == run_id
    ).order_by(table.c.template, table.c.line_number)
    rows = [(template.partition(".")[2] or None, *rest) for template, *rest in conn.execute(query)]
    if rows:
        return rows
    for path in sorted(settings.data_dir.glob(f"rejects/*/{run_id}*.reasons.csv")):
        part = path.name.removeprefix(run_id).removesuffix(".reasons.csv").lstrip(".") or None
        with open(path, encoding="utf-8", newline="") as handle:
            rows += [(part, int(r["line"]), r["column"] or None, r["reason"], r.get("text", "")) for r in csv.DictReader(handle)]
    return rows


def cmd_rejects(args: argparse.Namespace, settings: Settings) -> int:
    from resources.campaign_db import get_engine

    prefix = args.run_id.lower()
    engine = get_engine(settings.db_url or default_db_url())
    with engine.connect() as conn:
        ids = _run_ids(prefix, settings, conn) if RUN_ID_PREFIX.fullmatch(prefix) else set()
        if not ids:
            print(f"error: no run has the id {args.run_id!r} (give a run id, or the first characters of one).", file=sys.stderr)
            return EXIT_FAILED
        if len(ids) > 1:
            shown = ", ".join(sorted(ids)[:5])
            raise UsageError(f"run id {args.run_id!r} matches {len(ids)} runs ({shown}{', …' if len(ids) > 5 else ''}); give more of it.")
        (run_id,) = ids
        rows = _rejects_of(run_id, settings, conn)
    parts = any(row[0] for row in rows)  # a multiple import's: each reject names its part
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["part", "line", "column", "reason", "text"] if parts else ["line", "column", "reason", "text"])
        writer.writerows(row if parts else row[1:] for row in rows)
    else:
        if not rows:
            print(f"run {run_id} rejected no line")
        for part, line, column, reason, text in rows:
            print(f"{part + ' ' if part else ''}line {line}: {reason}" + (f"  [{column}]" if column else "") + f"\n    {text}")
    return EXIT_OK
