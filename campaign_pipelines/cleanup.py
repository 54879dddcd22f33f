"""Retention of work data: the root run's work folder (`.work/<root run id>`, the steps'
outputs and Arrow files) and, on PostgreSQL, its stage table (`import_stage_<run id>`).

A run that succeeds (or a re-execution of it) removes its own at its last step. The
others' stay for a re-execution from failure until CAMPAIGN_WORK_RETENTION (default 7
days) after the last run of their group ended; the `campaign_cleanup` job, on an hourly
schedule that is on by default, removes them then. A group with a run still going is
never touched; work data no run of the instance knows ages by its folder's time.
"""

import datetime as dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from campaign_pipelines.importing.stage import root_of_stage
from campaign_pipelines.settings import Settings, parse_duration
from resources.campaign_db import CampaignDatabase
from resources.file_store import FileStore
from resources.work_io import WORK, WorkIOManager, work_dir

# The statuses a run ends in (launching.py waits for one too).
ENDED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@dataclass
class Removed:
    folders: list[str] = field(default_factory=list)
    stage_tables: list[str] = field(default_factory=list)


def stage_tables(engine: sa.Engine) -> dict[str, list[str]]:
    """The runs' stage tables by root run id (PostgreSQL; SQLite stages in temporary
    tables): one, or a multiple import's one per part."""
    if engine.dialect.name != "postgresql":
        return {}
    tables: dict[str, list[str]] = {}
    for name in sorted(sa.inspect(engine).get_table_names()):
        if (root := root_of_stage(name)) is not None:
            tables.setdefault(root, []).append(name)
    return tables


def remove_run_work(data_dir: Path, engine: sa.Engine, root: str, work: WorkIOManager) -> Removed:
    """The root run's work folder, here and on the shared work endpoint, and its stage table."""
    removed = Removed()
    folder = work_dir(data_dir, root)
    if folder.exists() or root in work.shared_roots():
        shutil.rmtree(folder, ignore_errors=True)
        work.remove_shared(root)
        removed.folders.append(root)
    for name in stage_tables(engine).get(root, []):
        with engine.begin() as conn:
            if conn.scalar(sa.func.to_regclass(name)) is not None:
                conn.exec_driver_sql(f'DROP TABLE "{name}"')
                removed.stage_tables.append(name)
    return removed


def _expired(instance: dg.DagsterInstance, root: str, folder: Path, cutoff: dt.datetime) -> bool:
    """Whether the root run's work data has nothing left to serve."""
    records = []
    if instance.get_run_by_id(root) is not None:
        _, runs = instance.get_run_group(root)
        records = instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in runs]))
    if not records:
        return not folder.exists() or dt.datetime.fromtimestamp(folder.stat().st_mtime, dt.UTC) < cutoff
    if any(r.dagster_run.status not in ENDED for r in records):
        return False  # a run of the group is still going
    latest = max(records, key=lambda r: r.create_timestamp)
    if latest.dagster_run.status == dg.DagsterRunStatus.SUCCESS:
        return True
    ended = max(dt.datetime.fromtimestamp(r.end_time, dt.UTC) if r.end_time else r.update_timestamp for r in records)
    return ended.astimezone(dt.UTC) < cutoff


def clean_work_data(
    instance: dg.DagsterInstance, data_dir: Path, engine: sa.Engine, retention: dt.timedelta, work_io: WorkIOManager,
    now: dt.datetime | None = None,
) -> Removed:
    """Remove the work data whose retention is over; what was removed."""
    cutoff = (now or dt.datetime.now(dt.UTC)) - retention
    work = Path(data_dir) / WORK
    folders = {p.name for p in work.iterdir() if p.is_dir()} if work.exists() else set()
    removed = Removed()
    for root in sorted(folders | set(stage_tables(engine)) | set(work_io.shared_roots())):
        if _expired(instance, root, work / root, cutoff):
            done = remove_run_work(Path(data_dir), engine, root, work_io)
            removed.folders += done.folders
            removed.stage_tables += done.stage_tables
    return removed


@dg.op(
    description="Remove the work data (folders and stage tables) of runs whose retention is over.",
    config_schema={
        "retention": dg.Field(
            str, is_required=False, description="How long a run that did not succeed keeps its work data (7d, 12h); default CAMPAIGN_WORK_RETENTION."
        )
    },
)
def clean_work(
    context: dg.OpExecutionContext, file_store: FileStore, campaign_db: CampaignDatabase, work_io_manager: dg.ResourceParam[WorkIOManager]
) -> None:
    given = context.op_config.get("retention")
    retention = parse_duration(given, "retention") if given else Settings.from_env().work_retention
    removed = clean_work_data(context.instance, file_store.root, campaign_db.engine, retention, work_io_manager)
    context.log.info(
        f"removed the work data of {len(removed.folders)} run folder(s) and {len(removed.stage_tables)} stage table(s) "
        f"older than {retention} or of succeeded runs."
    )
    context.add_output_metadata({"folders_removed": len(removed.folders), "stage_tables_removed": len(removed.stage_tables)})


@dg.job(name="campaign_cleanup", description="Removes expired work data (CAMPAIGN_WORK_RETENTION).", executor_def=dg.in_process_executor)
def cleanup_job() -> None:
    clean_work()


cleanup_schedule = dg.ScheduleDefinition(
    name="campaign_cleanup_hourly",
    cron_schedule="17 * * * *",
    job=cleanup_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Removes expired work data every hour (CAMPAIGN_WORK_RETENTION).",
)
