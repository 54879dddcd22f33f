"""What a run reports besides its outputs: the rejects asset's materialization (with a
preview), and for a run the reject policy failed, its rejects and checks."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow as pa

from campaign_pipelines.checks import failed_run_checks
from campaign_pipelines.names import rejects_key
from campaign_pipelines.templates import ImportTemplate
from resources.file_store import FileStore
from resources.rejects_io import last_rejects_path, store_last_rejects

PREVIEW_ROWS = 20


def report_failed_run(
    context: dg.OpExecutionContext, file_store: FileStore, template: ImportTemplate, rows_read: int, rejects: pa.Table,
    path: Path | None, failure: str, uri: str | None = None,
) -> None:
    """A run the reject policy failed still shows its rejects (the asset's value and its
    materialization), an ERROR on the reject_rate check, and lines_accounted passing."""
    partition = context.partition_key if context.has_partition_key else None
    store_last_rejects(last_rejects_path(file_store.root, template.asset_name, partition), rejects, context.run_id)
    context.log_event(rejects_materialization(template, context.run_id, rejects, path, failure, uri))
    for evaluation in failed_run_checks(template, rejects.num_rows, rows_read, failure):
        context.log_event(evaluation)


def rejects_materialization(
    template: ImportTemplate, run_id: str, rejects: pa.Table, path: Path | None, failure: str | None = None, uri: str | None = None
) -> dg.AssetMaterialization:
    """The rejects asset of a run; a failed run's says so (it wrote nothing but its rejects files)."""
    preview = rejects.slice(0, PREVIEW_ROWS).to_pylist()
    return dg.AssetMaterialization(
        asset_key=rejects_key(template.asset_name),
        description=f"Lines rejected by the failed run {run_id}: {failure}" if failure else f"Lines rejected by the run {run_id}.",
        metadata={
            "run_status": dg.MetadataValue.text("failed" if failure else "loaded"),
            "rows_rejected": dg.MetadataValue.int(rejects.num_rows),
            "dagster/row_count": dg.MetadataValue.int(rejects.num_rows),
            "rejects_path": dg.MetadataValue.path(str(path)) if path else dg.MetadataValue.text("none"),
            **({"rejects_uri": dg.MetadataValue.url(uri)} if uri else {}),
            "run_id": dg.MetadataValue.text(run_id),
            "preview": dg.MetadataValue.table(
                records=[
                    dg.TableRecord({"line": r["line"], "column": r["column"] or "", "reason": r["reason"], "text": r["text"] or ""})
                    for r in preview
                ],
                schema=dg.TableSchema(
                    columns=[
                        dg.TableColumn("line", "int"),
                        dg.TableColumn("column", "string"),
                        dg.TableColumn("reason", "string"),
                        dg.TableColumn("text", "string"),
                    ]
                ),
            ),
        },
    )
