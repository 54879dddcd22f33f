"""The ops: thin Dagster wrappers around `importing.steps` and `exporting.steps`.

Defined once and shared by every template's graph (assets.py), but for the first step, made
for its template (`read_file`, `export_file`): the template is bound when the definitions
are built, and the graph's config mapping hands that step the launch keys. Any error ends
the run with one sentence, the run tag `campaign/status=failed`, and nothing written to the
database (`step_errors.py`).

A step that reads or writes the model's tables brings the database to the data model first
(`campaign_db.migrate()`, once per model and process): in a re-execution that starts at
any step, too. A refused change fails that step with its sentence.

The steps hand each other their outputs through the work IO manager (resources/work_io.py)
and keep their rows in the root run's work folder (and, on PostgreSQL, its stage table),
so any executor can run them in other processes and "re-execute from failure" resumes at
the failed step. A successful run removes its work data; the cleanup job removes the
others' after CAMPAIGN_WORK_RETENTION.

The merge step of an import is defined once per table (`reconcile_into`), in the table's
concurrency pool: runs writing one table merge one after the other however they were
launched (the deployment's `concurrency.pools`, docs/recurring-exchanges.md).
"""

import datetime as dt
import functools
from pathlib import Path
from typing import Any

import dagster as dg

from campaign_pipelines.checks import IMPORT_CHECKS, import_check_results, reject_rate
from campaign_pipelines.cleanup import remove_run_work
from campaign_pipelines.errors import CampaignError
from campaign_pipelines.exporting.deliver import Delivery
from campaign_pipelines.exporting.steps import ExportOutcome, ExportsOutcome, output_path, run_export, run_exports
from campaign_pipelines.importing import merge, steps
from campaign_pipelines.importing.fetch import fetch
from campaign_pipelines.importing.outcome import ImportOutcome
from campaign_pipelines.importing.rejects import deliver_reject_files
from campaign_pipelines.inbox import Claim
from campaign_pipelines.names import FILE_KEY_TAG, REJECTED_TAG, STATUS_TAG, TEMPLATE_TAG, table_key, table_pool, template_tags
from campaign_pipelines.partitions import partition_day
from campaign_pipelines.progress import Progress
from campaign_pipelines.reporting import rejects_materialization, report_failed_run
from campaign_pipelines.step_errors import TRANSIENT_RETRY, fails_clearly, retried_on_transient_errors, set_status
from campaign_pipelines.templates import ExportTemplate, ImportTemplate, Template
from resources.campaign_db import CampaignDatabase
from resources.endpoints import Endpoint, endpoint_resource_key
from resources.file_store import FileStore
from resources.work_io import WorkIOManager, root_run_id

# A step's output, for the next step in any process (resources/work_io.py).
WORK = dg.Out(io_manager_key="work_io_manager")


def progress(context: dg.OpExecutionContext) -> Progress:
    """The step's progress lines, in the run's log."""
    return Progress(context.op.name, context.log.info)


def remove_work_data(context: dg.OpExecutionContext) -> None:
    """The root run's work folder (here and on the shared work endpoint) and stage table:
    nothing is left to resume."""
    resources = context.resources
    remove_run_work(resources.file_store.root, resources.campaign_db.engine, root_run_id(context.run), resources.work_io_manager)


def adopt_run(context: dg.OpExecutionContext, template: Template) -> None:
    """A run of Dagster's asset job (Materialize on an asset page, an asset backfill) takes
    the tags a run of the template's job has from its job, before it reads anything.

    Such a run may hold several templates' assets (Materialize all on a group): each
    template's import is one transaction with work data of its own run, kept and removed
    by run, so the run is refused before anything is read."""
    selected = context.run.asset_selection or set()
    names = sorted({key.path[-1] for key in selected if key.path[0] in ("imports", "exports")})
    if len(names) > 1:
        raise CampaignError(
            f"this run holds the assets of {len(names)} job templates ({', '.join(names)}); a run loads or "
            "exports one template: launch each from its job or its own asset page. Nothing was read or written."
        )
    if TEMPLATE_TAG not in context.run.tags:
        context.instance.add_run_tags(context.run_id, template_tags(template))


def read_file(template: ImportTemplate) -> dg.OpDefinition:
    """The first step of `template`'s import, the template bound: its config is the flat
    launch keys its graph's config mapping hands it (launch.py). A template's graph calls it
    `read_file` (its step key: `<template>_steps.read_file`)."""

    endpoint = template.endpoint

    @dg.op(
        name=f"{template.name}_read_file",
        description="Read the file: split lines, parse fields as text, reject ragged lines.",
        ins={"inbox": dg.In(dg.Nothing)},
        out=WORK,
        config_schema=dg.Permissive(),
        required_resource_keys={"file_store", "work_io_manager", *([endpoint_resource_key(endpoint)] if endpoint else [])},
    )
    @fails_clearly
    @retried_on_transient_errors(TRANSIENT_RETRY)
    def read(context: dg.OpExecutionContext) -> steps.ImportState:
        adopt_run(context, template)
        file_store: FileStore = context.resources.file_store
        launched = template.with_overrides(context.op_config)
        # {date:...} in the path: the partition's day, else today's.
        day = partition_day(context.partition_key) if context.has_partition_key else dt.date.today()
        path = launched.file_for(day)
        if not path:
            raise CampaignError(f"{template.name}: no file to import; give one at launch (file) or in source.path.")
        work_dir = file_store.work_dir(root_run_id(context.run))
        remote: Endpoint | None = getattr(context.resources, endpoint_resource_key(endpoint)) if endpoint else None
        claim = Claim.of(context.run.tags.get(FILE_KEY_TAG))  # a collector's run: the content it saw complete
        return read_source(context, launched, path, remote, work_dir, claim)

    return read.alias("read_file")


def read_source(
    context: dg.OpExecutionContext, launched: ImportTemplate, path: str, remote: Endpoint | None, work_dir: Path, claim: Claim | None
) -> steps.ImportState:
    """Fetch the file (a collector's run: the content it claimed) and read it into the work folder."""
    file_store: FileStore = context.resources.file_store
    file, origin = fetch(launched, path, file_store.root, remote, work_dir, claim)
    context.log.info(f"reading {origin or file}")
    state = steps.read_step(launched, file, work_dir, progress(context), origin=origin)
    if claim is not None and remote is None and launched.source.decrypt is None:  # read in place: still that content?
        claim.check(str(file), file.stat().st_size, file.stat().st_mtime_ns)
    shown = dg.MetadataValue.url(origin) if origin and "://" in origin else dg.MetadataValue.path(origin or str(file))
    context.add_output_metadata({"file": shown, "rows_read": state.rows_read, "blank_lines": state.blank_lines})
    return state


@dg.op(
    description="Map the file's columns to the target's: trim, case, remap, formats, constants.",
    required_resource_keys={"file_store", "work_io_manager"},
    out=WORK,
)
@fails_clearly
def map_columns(context: dg.OpExecutionContext, state: steps.ImportState) -> steps.ImportState:
    return steps.map_step(state, progress(context))


@dg.op(
    description="Validate every row with the target table's pandera checks; set failing rows aside.",
    out=WORK,
)
@fails_clearly
@retried_on_transient_errors(TRANSIENT_RETRY)
def validate_rows(
    context: dg.OpExecutionContext, state: steps.ImportState, campaign_db: CampaignDatabase, file_store: FileStore,
    work_io_manager: dg.ResourceParam[WorkIOManager],
) -> steps.ImportState:
    campaign_db.migrate()
    root = root_run_id(context.run)
    state = steps.validate_step(state, campaign_db.session(), progress(context), root)
    failure = steps.early_failure(state)
    if failure:
        rejects = steps.all_rejects(state)
        path = merge.write_rejects(state, context.run_id, file_store.rejects_dir(state.template.asset_name), rejects)
        uri = copy_rejects(context, file_store, state.template, path)
        report_failed_run(context, file_store, state.template, state.rows_read, rejects, path, failure, uri)
        remove_work_data(context)  # the same file fails the same way: nothing to resume
        raise CampaignError(f"{state.shown}: {failure}")
    return state


@fails_clearly
@retried_on_transient_errors(TRANSIENT_RETRY)
def _reconcile(
    context: dg.OpExecutionContext, state: steps.ImportState, campaign_db: CampaignDatabase, file_store: FileStore,
    work_io_manager: dg.ResourceParam[WorkIOManager],
) -> ImportOutcome:
    campaign_db.migrate()  # again when a re-execution starts here, in a process of its own
    rejects_dir = file_store.rejects_dir(state.template.asset_name)
    root = root_run_id(context.run)
    outcome = merge.reconcile_step(state, campaign_db.session(), context.run_id, rejects_dir, root_run_id=root)
    outcome.rejects_uri = copy_rejects(context, file_store, state.template, outcome.rejects_path)
    if outcome.committed_by:
        context.log.info(
            f"the merge of this run's file was committed by run {outcome.committed_by}: nothing written again; "
            "its counts are reported."
        )
    if outcome.failure:
        report_failed_run(
            context, file_store, state.template, state.rows_read, outcome.rejects, outcome.rejects_path, outcome.failure,
            outcome.rejects_uri,
        )
        remove_work_data(context)
        raise CampaignError(f"{state.shown}: {outcome.failure}")
    return outcome


def copy_rejects(context: dg.OpExecutionContext, file_store: FileStore, template: ImportTemplate, path: Path | None) -> str | None:
    """The run's rejects files also on the endpoint `errors.rejects_to` names, where the
    machine that wrote them is (a table's merge serves every template: the endpoint comes
    from the deployment's endpoints file, not from a resource of the op)."""
    copy = template.errors.rejects_to
    if copy is None or path is None:
        return None
    try:
        uri = deliver_reject_files(path, file_store.endpoint(copy.endpoint), copy.folder or f"rejects/{template.asset_name}")
    except CampaignError as exc:  # the load stands; its rejects are in import_reject and in the data folder
        context.log.warning(f"the rejects files were not delivered: {exc}")
        return None
    context.log.info(f"rejects delivered to {uri}")
    return uri


@functools.cache
def reconcile_into(table: str) -> dg.OpDefinition:
    """The merge step of every import into `table`, in the table's pool. A template's graph
    calls it `reconcile` (its step key: `<template>_steps.reconcile`)."""
    return dg.op(
        name=f"reconcile_{table}",
        description=f"Reconcile valid rows with {table} in one transaction (at most once per root run).",
        out=WORK,
        pool=table_pool(table),
    )(_reconcile)


@dg.op(
    description="Report: counts, checks, rejects (the rejects asset's value), target table materialization, run status.",
    required_resource_keys={"file_store", "campaign_db", "work_io_manager"},
    out={
        "result": dg.Out(description="The run's counts and status: the imports/<template> asset's value."),
        "rejects": dg.Out(io_manager_key="rejects_io_manager", description="The rejected lines (line, column, reason, text)."),
        **{check: dg.Out(dg.Nothing, is_required=False) for check in IMPORT_CHECKS},
    },
)
@fails_clearly
def report(context: dg.OpExecutionContext, outcome: ImportOutcome):
    campaign_db: CampaignDatabase = context.resources.campaign_db
    template = outcome.template
    summary = outcome.summary()
    context.log_event(
        dg.AssetMaterialization(
            asset_key=table_key(template.target.table),
            description=f"Loaded by {template.name}.",
            metadata={
                **summary,
                "dagster/row_count": dg.MetadataValue.int(outcome.table_rows),
                "database": dg.MetadataValue.text(campaign_db.dialect),
                "template": dg.MetadataValue.text(template.name),
            },
        )
    )
    rejected = {REJECTED_TAG: f"{summary['rows_rejected']} of {summary['rows_read']} lines"} if summary["rows_rejected"] else {}
    context.instance.add_run_tags(context.run_id, {STATUS_TAG: outcome.status, **rejected})
    if summary["rows_rejected"]:
        context.log.warning(
            f"{summary['rows_rejected']} of {summary['rows_read']} lines rejected "
            f"({reject_rate(summary['rows_rejected'], summary['rows_read']):.2%}); the others were loaded. "
            f"Their reasons: the rejects/{template.name} asset, or `campaign-pipelines rejects {context.run_id[:8]}`."
        )
    ignored = {f"ignored: {cause}": count for cause, count in outcome.ignored_by_cause.items()}
    created = {f"created by the {link} link": count for link, count in outcome.links_created.items()}
    if outcome.links_created:  # the same, as one value for `run --json`
        created["links_created"] = dg.MetadataValue.json(outcome.links_created)
    rejects_metadata = rejects_materialization(template, context.run_id, outcome.rejects, outcome.rejects_path, uri=outcome.rejects_uri).metadata
    yield dg.Output(
        {**summary, "status": outcome.status, "rejects_path": str(outcome.rejects_path) if outcome.rejects_path else None},
        "result",
        metadata={
            **summary,
            "reject_rate": dg.MetadataValue.float(reject_rate(summary["rows_rejected"], summary["rows_read"])),
            "status": outcome.status,
            **ignored,
            **created,
        },
    )
    yield dg.Output(outcome.rejects, "rejects", metadata=dict(rejects_metadata))
    yield from import_check_results(template, summary)
    remove_work_data(context)


def export_file(template: ExportTemplate) -> dg.OpDefinition:
    """The first step of `template`'s export, the template bound (as `read_file`): one
    file, or a multiple export's files from one snapshot."""

    endpoints = sorted({t.destination.endpoint for t in template.exports if t.destination.endpoint})

    @dg.op(
        name=f"{template.name}_export_file",
        description="Query the Campaign database in chunks and write the file under a temporary name, then rename it.",
        ins={name: dg.In(dg.Nothing) for name in table_inputs(template)},
        config_schema=dg.Permissive(),
        out=WORK,
        required_resource_keys={"file_store", "campaign_db", "work_io_manager", *(endpoint_resource_key(e) for e in endpoints)},
    )
    @fails_clearly
    @retried_on_transient_errors(TRANSIENT_RETRY)
    def export(context: dg.OpExecutionContext) -> Any:  # ExportOutcome, or ExportsOutcome (parts)
        adopt_run(context, template)
        campaign_db: CampaignDatabase = context.resources.campaign_db
        file_store: FileStore = context.resources.file_store
        campaign_db.migrate()
        launched = template.with_overrides(context.op_config)
        # A daily partition exports the rows its day changed, to a file named after that day.
        window = context.partition_time_window if context.has_partition_key else None
        when = window.start if window else dt.datetime.now()
        deliveries = []
        for part in launched.exports:
            endpoint = part.destination.endpoint
            remote: Endpoint | None = getattr(context.resources, endpoint_resource_key(endpoint)) if endpoint else None
            if remote is not None:
                remote.warm_up()  # connected while the query runs
            deliveries.append(Delivery(
                part, output_path(part, context.run_id, when), file_store.root, file_store.work_dir(root_run_id(context.run)),
                remote, context.log.info, with_others=bool(launched.parts),
            ))
            context.log.info(f"exporting {part.source.table} to {deliveries[-1].where}")
        if launched.parts:
            return run_exports(launched, campaign_db.engine, [d.write_path() for d in deliveries], context.run_id, deliveries=deliveries)
        (delivery,) = deliveries
        return run_export(
            launched, campaign_db.engine, delivery.write_path(), context.run_id, window=window, progress=progress(context), deliver=delivery
        )

    return export.alias("export_file")


def table_inputs(template: ExportTemplate) -> dict[str, str]:
    """The export op's inputs, one per table it reads (a multiple export's: table_<name>)."""
    if not template.parts:
        return {"table": template.source.table}
    return {f"table_{table}": table for table in template.tables}


def location(outcome: ExportOutcome) -> dg.MetadataValue:
    """Where the file is: its remote URI, or its local path."""
    return dg.MetadataValue.url(outcome.uri) if outcome.uri else dg.MetadataValue.path(str(outcome.path))


@dg.op(
    description="Report: file path, size, checksum, source table observation, run status.",
    required_resource_keys={"file_store", "campaign_db", "work_io_manager"},
)
@fails_clearly
def report_export(context: dg.OpExecutionContext, outcome: Any) -> dict[str, Any]:  # ExportOutcome or ExportsOutcome
    if isinstance(outcome, ExportsOutcome):
        return _report_exports(context, outcome)
    template = outcome.template
    context.log_event(
        dg.AssetObservation(
            asset_key=table_key(template.source.table),
            description=f"Read by {template.name}.",
            metadata={"rows_exported": outcome.rows_exported, "output_path": location(outcome)},
        )
    )
    context.log_event(
        dg.AssetMaterialization(
            asset_key=["outbox", template.name],
            description=f"Written by {template.name}.",
            metadata={
                "path": location(outcome),
                "dagster/row_count": dg.MetadataValue.int(outcome.rows_exported),
                "bytes": outcome.size,
                "sha256": outcome.sha256,
            },
        )
    )
    summary = {"rows_exported": outcome.rows_exported, "output_path": outcome.location}
    context.add_output_metadata(
        {
            **summary,
            "output_path": location(outcome),
            "bytes": outcome.size,
            "sha256": outcome.sha256,
            "watermark": str(outcome.watermark) if outcome.watermark is not None else "none",
        }
    )
    set_status(context, "finished")
    remove_work_data(context)
    return {**summary, "status": "finished", "bytes": outcome.size, "sha256": outcome.sha256}


def _report_exports(context: dg.OpExecutionContext, outcome: ExportsOutcome) -> dict[str, Any]:
    """A multiple export: each table read observed, the outbox materialized with a table of
    the files (the run's output keeps each part's figures and SHA-256, for the CLI)."""
    template = outcome.template
    names = [p.name for p in template.parts]
    for table in template.tables:
        read = [(n, o) for n, o in zip(names, outcome.parts) if o.template.source.table == table]
        context.log_event(dg.AssetObservation(
            asset_key=table_key(table), description=f"Read by {template.name} ({', '.join(n for n, _ in read)}).",
            metadata={"rows_exported": sum(o.rows_exported for _, o in read)},
        ))
    files = "\n".join(
        ["| rows | bytes | part | file |", "|---:|---:|---|---|"]
        + [f"| {o.rows_exported} | {o.size} | {n} | {o.location} |" for n, o in zip(names, outcome.parts)]
    )
    metadata = {"dagster/row_count": dg.MetadataValue.int(outcome.rows_exported), "files": dg.MetadataValue.md(files)}
    context.log_event(dg.AssetMaterialization(asset_key=["outbox", template.name], description=f"Written by {template.name}.", metadata=metadata))
    parts = {n: {"rows_exported": o.rows_exported, "output_path": o.location, "bytes": o.size, "sha256": o.sha256}
             for n, o in zip(names, outcome.parts)}
    context.add_output_metadata({"rows_exported": outcome.rows_exported, "parts": dg.MetadataValue.json(parts)})
    set_status(context, "finished")
    remove_work_data(context)
    return {"rows_exported": outcome.rows_exported, "status": "finished", "parts": parts}
