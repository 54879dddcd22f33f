"""The ops of a multiple import (templates/drops.py): each part's file read, mapped and
validated by its own steps (`read_<part>`, `map_<part>`, `validate_<part>`: parts run
side by side on a multiprocess executor), then one merge of every part in one
transaction (`reconcile`) and one report.

A part's read step finds its file in the drop's folder (launch key `drop`), named by the
part's `source.path` or by the drop's manifest; a collector's run reads the content its
collector saw complete (the run's `campaign/part_keys` tag).
"""


import json
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa

from campaign_pipelines.checks import IMPORT_CHECKS, import_check_results, reject_rate
from campaign_pipelines.errors import CampaignError
from campaign_pipelines.importing.merge import reconcile_drop_step
from campaign_pipelines.importing.outcome import DropOutcome
from campaign_pipelines.importing.rejects import REJECT_SCHEMA
from campaign_pipelines.importing.steps import ImportState
from campaign_pipelines.inbox import Claim
from campaign_pipelines.names import PART_KEYS_TAG, REJECTED_TAG, STATUS_TAG, table_key, table_pool
from campaign_pipelines.ops import WORK, adopt_run, copy_rejects, read_source, remove_work_data
from campaign_pipelines.reporting import rejects_materialization, report_failed_run
from campaign_pipelines.step_errors import TRANSIENT_RETRY, fails_clearly, retried_on_transient_errors
from campaign_pipelines.templates import ImportTemplate
from campaign_pipelines.templates.drops import manifest_files, part_path
from resources.campaign_db import CampaignDatabase
from resources.endpoints import Endpoint, endpoint_resource_key
from resources.file_store import FileStore
from resources.paths import resolve_data_path
from resources.work_io import root_run_id


def drop_label(folder: str) -> str:
    return f"the drop {folder}" if folder else "the drop in the data folder"


def manifest_text(file_store: FileStore, remote: Endpoint | None, folder: str, name: str, work_dir: Path) -> str:
    """The drop's manifest, from the data folder or the parts' endpoint."""
    path = part_path(folder, name)
    if remote is not None:
        if not remote.exists(path):
            raise CampaignError(f"{drop_label(folder)} has no manifest {name} on the endpoint; nothing of the drop was loaded.")
        local = work_dir / "spool" / name
        remote.spool(path, local)
        return local.read_text(encoding="utf-8")
    local = resolve_data_path(file_store.root, path, what="manifest")
    if not local.is_file():
        raise CampaignError(f"{drop_label(folder)} has no manifest {name}; nothing of the drop was loaded.")
    return local.read_text(encoding="utf-8")


def read_part(template: ImportTemplate, part: ImportTemplate) -> dg.OpDefinition:
    """The first step of one part, the templates bound; its config is the multiple
    import's launch keys (every part's read step gets them)."""
    endpoint = template.endpoint
    name = part.part_name
    assert name is not None

    @dg.op(
        name=f"{template.name}_read_{name}",
        description=f"Read the drop's {name} file: split lines, parse fields as text, reject ragged lines.",
        ins={"inbox": dg.In(dg.Nothing)},
        out=WORK,
        config_schema=dg.Permissive(),
        required_resource_keys={"file_store", "work_io_manager", *([endpoint_resource_key(endpoint)] if endpoint else [])},
    )
    @fails_clearly
    @retried_on_transient_errors(TRANSIENT_RETRY)
    def read(context: dg.OpExecutionContext) -> ImportState:
        adopt_run(context, template)
        file_store: FileStore = context.resources.file_store
        launched = template.with_overrides(context.op_config)
        this = next(t for t in launched.imports if t.name == part.name)
        folder = launched.drop.folder if launched.drop else ""
        remote: Endpoint | None = getattr(context.resources, endpoint_resource_key(endpoint)) if endpoint else None
        work_dir = file_store.work_dir(root_run_id(context.run)) / name
        work_dir.mkdir(parents=True, exist_ok=True)
        file = this.source.path
        if launched.drop and launched.drop.manifest:
            text = manifest_text(file_store, remote, folder, launched.drop.manifest, work_dir)
            file = manifest_files(text, part_path(folder, launched.drop.manifest), [p.name for p in launched.parts])[name]
        assert file is not None  # templates/drops.py: a path, or a manifest naming it
        path = part_path(folder, file)
        present = remote.exists(path) if remote is not None else resolve_data_path(file_store.root, path, what="file").is_file()
        if not present:
            raise CampaignError(f"{drop_label(folder)} lacks its part {name} ({path}): nothing of the drop was loaded.")
        claims = json.loads(context.run.tags.get(PART_KEYS_TAG, "{}"))  # a collector's run: what it saw complete
        return read_source(context, this, path, remote, work_dir, Claim.of(claims.get(name)))

    return read.alias(f"read_{name}")


def reconcile_drop(template: ImportTemplate) -> dg.OpDefinition:
    """The merge of every part, in one transaction, in the pool of the first table it
    writes (runs loading that table merge one after the other). Its inputs: one per
    part, named as the part."""
    parts = [t.part_name for t in template.imports]

    @dg.op(
        name=f"{template.name}_reconcile",
        description=f"Reconcile every part ({', '.join(p for p in parts if p)}) in link order, in one transaction: all or nothing.",
        ins={p: dg.In() for p in parts if p},
        out=WORK,
        pool=table_pool(template.tables[0]),
        required_resource_keys={"file_store", "campaign_db", "work_io_manager"},
    )
    @fails_clearly
    @retried_on_transient_errors(TRANSIENT_RETRY)
    def reconcile(context: dg.OpExecutionContext, **states: ImportState) -> DropOutcome:
        campaign_db: CampaignDatabase = context.resources.campaign_db
        file_store: FileStore = context.resources.file_store
        campaign_db.migrate()
        ordered = [states[p] for p in parts if p]
        rejects_dir = file_store.rejects_dir(template.name)
        outcome = reconcile_drop_step(
            template, ordered, campaign_db.session(), context.run_id, rejects_dir, root_run_id=root_run_id(context.run)
        )
        for part in outcome.parts:
            part.rejects_uri = copy_rejects(context, file_store, part.template, part.rejects_path)
        if outcome.committed_by:
            context.log.info(f"the merge of this run's drop was committed by run {outcome.committed_by}: nothing written again; its counts are reported.")
        if outcome.failure:
            read = sum(p.rows_read for p in outcome.parts)
            report_failed_run(context, file_store, template, read, drop_rejects(outcome), _first_path(outcome), outcome.failure)
            remove_work_data(context)
            raise CampaignError(outcome.failure)
        return outcome

    return reconcile.alias("reconcile")


def _first_path(outcome: DropOutcome) -> Path | None:
    return next((p.rejects_path for p in outcome.parts if p.rejects_path), None)


def drop_rejects(outcome: DropOutcome) -> pa.Table:
    """Every part's rejects in one table, the part first: the rejects asset's value."""
    tables = [
        p.rejects.add_column(0, "part", pa.array([p.template.part_name] * p.rejects.num_rows, pa.string()))
        for p in outcome.parts
    ]
    empty = REJECT_SCHEMA.empty_table()
    return pa.concat_tables(tables) if tables else empty.add_column(0, "part", pa.array([], pa.string()))


def part_summaries(outcome: DropOutcome) -> dict[str, dict[str, Any]]:
    """Each part's counts, status and rejects file (the run's `parts` metadata, for the CLI)."""
    return {
        p.template.part_name or "": {
            **p.summary(), "status": p.status, "table": p.template.target.table,
            "rejects_path": str(p.rejects_path) if p.rejects_path else None,
        }
        for p in outcome.parts
    }


@dg.op(
    description="Report: each part's counts and table materialization, the drop's checks and rejects, the run status.",
    required_resource_keys={"file_store", "campaign_db", "work_io_manager"},
    out={
        "result": dg.Out(description="The drop's counts, each part's and their sum: the imports/<template> asset's value."),
        "rejects": dg.Out(io_manager_key="rejects_io_manager", description="Every part's rejected lines (part, line, column, reason, text)."),
        **{check: dg.Out(dg.Nothing, is_required=False) for check in IMPORT_CHECKS},
    },
)
@fails_clearly
def report_drop(context: dg.OpExecutionContext, outcome: DropOutcome):
    campaign_db: CampaignDatabase = context.resources.campaign_db
    template = outcome.template
    for part in outcome.parts:
        context.log_event(dg.AssetMaterialization(
            asset_key=table_key(part.template.target.table),
            description=f"Loaded by {template.name} (its part {part.template.part_name}).",
            metadata={
                **part.summary(), "dagster/row_count": dg.MetadataValue.int(part.table_rows),
                "database": dg.MetadataValue.text(campaign_db.dialect), "template": dg.MetadataValue.text(template.name),
                "part": dg.MetadataValue.text(part.template.part_name or ""),
            },
        ))
    summary = outcome.summary()
    rejected = {REJECTED_TAG: f"{summary['rows_rejected']} of {summary['rows_read']} lines"} if summary["rows_rejected"] else {}
    context.instance.add_run_tags(context.run_id, {STATUS_TAG: outcome.status, **rejected})
    parts = part_summaries(outcome)
    if summary["rows_rejected"]:
        by_part = ", ".join(f"{n}: {p['rows_rejected']}" for n, p in parts.items() if p["rows_rejected"])
        context.log.warning(
            f"{summary['rows_rejected']} of {summary['rows_read']} lines rejected ({by_part}); the others were loaded. "
            f"Their reasons: the rejects/{template.name} asset, or `campaign-pipelines rejects {context.run_id[:8]}`."
        )
    table = "\n".join(
        ["| part | table | read | inserted | updated | unchanged | ignored | rejected |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        + [f"| {n} | {p['table']} | {p['rows_read']} | {p['rows_inserted']} | {p['rows_updated']} | {p['rows_unchanged']} "
           f"| {p['rows_ignored']} | {p['rows_rejected']} |" for n, p in parts.items()]
    )
    rejects = drop_rejects(outcome)
    yield dg.Output(
        {**summary, "status": outcome.status, "parts": parts},
        "result",
        metadata={
            **summary,
            "reject_rate": dg.MetadataValue.float(reject_rate(summary["rows_rejected"], summary["rows_read"])),
            "status": outcome.status,
            "parts": dg.MetadataValue.json(parts),
            "counts by part": dg.MetadataValue.md(table),
        },
    )
    yield dg.Output(rejects, "rejects", metadata=dict(rejects_materialization(template, context.run_id, rejects, _first_path(outcome)).metadata))
    yield from import_check_results(template, summary)
    remove_work_data(context)
