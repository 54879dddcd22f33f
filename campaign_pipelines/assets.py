"""The exchanges as assets: inbox file -> import -> Campaign table -> export -> outbox file.

- `inbox/<template>`: the files an import reads (observable: its data version changes
  when a file arrives or changes);
- `imports/<template>` and `rejects/<template>`: materialized together by the import's
  graph (read -> map -> validate -> reconcile -> report), with the checks of `checks.py`;
  the rejects load as a pandas DataFrame (`resources.rejects_io`);
- `campaign/<table>`: the stored table, downstream of every import writing it and
  materialized (row count, counts) by each load; several templates may write one table;
- `exports/<template>`: the export's graph, reading its table; `outbox/<template>`: the file
  it writes.
"""

from __future__ import annotations

import glob
import hashlib
import os
import warnings

import dagster as dg

import schemas
from campaign_pipelines.checks import IMPORT_CHECKS, table_checks
from campaign_pipelines.drop_ops import read_part, reconcile_drop, report_drop
from campaign_pipelines.launch import graph_config_mapping
from campaign_pipelines.load_errors import load_error_metadata, table_load_errors
from campaign_pipelines.names import exports_key, graph_name, imports_key, inbox_key, outbox_key, rejects_key, table_key
from campaign_pipelines.ops import (
    export_file, map_columns, read_file, reconcile_into, report, report_export, table_inputs, validate_rows,
)
from campaign_pipelines.partitions import partitions_def
from campaign_pipelines.templates import Catalog, ExportTemplate, ImportTemplate
from resources.file_store import FileStore


def inbox_pattern(template: ImportTemplate) -> str | None:
    """The glob of the files the template reads: its collector's, its daily path's, or its file."""
    if template.collected_files:
        return template.collected_files
    if template.parts:  # the drop's folder, or the data folder
        return f"{template.drop.folder}/*" if template.drop and template.drop.folder else None
    path = template.partition_path or template.source.path
    if not path:
        return None
    # {date:%Y%m%d} (and any other field) matches any text.
    return "".join("*" if i % 2 else part for i, part in enumerate(path.replace("}", "{").split("{")))


def inbox_asset(template: ImportTemplate) -> dg.SourceAsset:
    pattern = inbox_pattern(template)

    def observe(context: dg.OpExecutionContext, file_store: FileStore) -> dg.ObserveResult:
        files = sorted(glob.glob(str(file_store.root / pattern))) if pattern else []
        stats = [(f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
        digest = hashlib.sha256(repr(stats).encode()).hexdigest()[:16]
        return dg.ObserveResult(
            data_version=dg.DataVersion(digest),
            metadata={"pattern": dg.MetadataValue.text(pattern or "none"), "files": len(files)},
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.observable_source_asset(
            key=inbox_key(template.name),
            description=f"The files {template.name} reads: {pattern or 'given at launch'} under CAMPAIGN_DATA_DIR.",
            group_name="inbox",
        )(observe)


def import_asset(template: ImportTemplate) -> dg.AssetsDefinition:
    name = template.name
    checks = [dg.AssetCheckSpec(check, asset=imports_key(name), description=text) for check, text in IMPORT_CHECKS.items()]

    def drop_steps(inbox):
        """A multiple import: each part read, mapped and validated, then one merge of all."""
        states = {
            t.part_name: validate_rows.alias(f"validate_{t.part_name}")(map_columns.alias(f"map_{t.part_name}")(read_part(template, t)(inbox)))
            for t in template.imports
        }
        return report_drop(reconcile_drop(template)(**states))

    def file_steps(inbox):
        # The merge, in the target table's concurrency pool (ops.reconcile_into).
        reconcile = reconcile_into(template.target.table).alias("reconcile")
        return report(reconcile(validate_rows(map_columns(read_file(template)(inbox)))))

    tables = ", ".join(template.tables)

    @dg.graph_multi_asset(
        name=graph_name(name),
        outs={
            "result": dg.AssetOut(
                key=imports_key(name),
                description=f"{template.display_label}: the last load of {name} into {tables} (its counts).",
                kinds={"python"},
            ),
            "rejects": dg.AssetOut(
                key=rejects_key(name),
                description=f"Lines rejected by the {name} import, with their line number and reason.",
                io_manager_key="rejects_io_manager",
                kinds={"pandas"},
            ),
        },
        ins={"inbox": dg.AssetIn(key=inbox_key(name), dagster_type=dg.Nothing)},
        partitions_def=partitions_def(template),
        check_specs=checks,
        config=graph_config_mapping(template),
        group_name="imports",
    )
    def import_graph(inbox):
        result, rejects, *check_results = (drop_steps if template.parts else file_steps)(inbox)
        return {"result": result, "rejects": rejects} | {
            spec.get_python_identifier(): out for spec, out in zip(checks, check_results, strict=True)
        }

    # The rejects in a group of their own: the lineage labels an asset by the last part of
    # its key, and imports/<t> and rejects/<t> would both read <t> in one group.
    # (graph_multi_asset takes one group for all its outputs.)
    return dg.map_asset_specs(
        lambda spec: spec.replace_attributes(group_name="rejects") if spec.key == rejects_key(name) else spec, [import_graph]
    )[0]


def export_asset(template: ExportTemplate) -> dg.AssetsDefinition:
    name = template.name
    inputs = table_inputs(template)  # one per table read

    # graph_multi_asset, not graph_asset: for the graph's name (where its ops' config sits).
    @dg.graph_multi_asset(
        name=graph_name(name),
        outs={
            "result": dg.AssetOut(
                key=exports_key(name),
                description=f"{template.display_label}: the last export of {', '.join(template.tables)} by {name}.",
                kinds={"python"},
            )
        },
        group_name="exports",
        ins={key: dg.AssetIn(key=table_key(table), dagster_type=dg.Nothing) for key, table in inputs.items()},
        partitions_def=partitions_def(template),
        config=graph_config_mapping(template),
    )
    def export_graph(**tables):
        return {"result": report_export(export_file(template)(**tables))}

    return export_graph


def table_specs(catalog: Catalog, model: schemas.DataModel) -> list[dg.AssetSpec]:
    writers: dict[str, list[dg.AssetKey]] = {}
    for name, template in sorted(catalog.templates.items()):
        if isinstance(template, ImportTemplate):
            for table in template.tables:
                writers.setdefault(table, []).append(imports_key(name))
    problems = table_load_errors(model.errors)
    specs = []
    for spec in model.tables.values():
        errors = problems.get(spec.name, [])
        warning = f"\n\nA data schema of this table cannot load: {'; '.join(errors)}" if errors else ""
        specs.append(
            dg.AssetSpec(
                key=table_key(spec.name),
                description=((spec.description or "") + warning) or None,
                group_name="campaign",
                kinds={"sql"},
                deps=writers.get(spec.name, []),
                metadata={
                    "dagster/column_schema": dg.TableSchema(
                        columns=[
                            dg.TableColumn(
                                f.name, f.type_name, description=f.description or None,
                                constraints=dg.TableColumnConstraints(nullable=f.nullable, unique=f.unique),
                            )
                            for f in spec.fields
                        ]
                    ),
                    "schema_origin": dg.MetadataValue.text(spec.origin),
                    **(load_error_metadata(errors) if errors else {}),
                },
            )
        )
    # A new table whose schema cannot load: its asset says why, where the user looks for it.
    for table, errors in sorted(problems.items()):
        if table not in model.tables:
            specs.append(
                dg.AssetSpec(
                    key=table_key(table),
                    description=f"This data schema cannot load: {'; '.join(errors)}",
                    group_name="campaign",
                    metadata=load_error_metadata(errors),
                )
            )
    return specs


def outbox_spec(template: ExportTemplate) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=outbox_key(template.name),
        description=f"The file{'s' if template.parts else ''} {template.name} writes: "
        f"{', '.join(t.destination.path for t in template.exports)} under CAMPAIGN_DATA_DIR.",
        group_name="outbox",
        deps=[exports_key(template.name)],
    )


def exchange_assets(catalog: Catalog, model: schemas.DataModel) -> list[dg.AssetsDefinition | dg.AssetSpec | dg.SourceAsset]:
    imports = [t for _, t in sorted(catalog.templates.items()) if isinstance(t, ImportTemplate)]
    exports = [t for _, t in sorted(catalog.templates.items()) if isinstance(t, ExportTemplate)]
    return [
        *(inbox_asset(t) for t in imports),
        *(import_asset(t) for t in imports),
        *table_specs(catalog, model),
        *(export_asset(t) for t in exports),
        *(outbox_spec(t) for t in exports),
    ]


def exchange_checks(model: schemas.DataModel) -> list[dg.AssetChecksDefinition]:
    return [table_checks(spec, table_key(spec.name)) for spec in model.tables.values()]
