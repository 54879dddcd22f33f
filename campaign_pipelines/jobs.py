"""Job factory: one Dagster job per job template, with a flat Launchpad config pre-filled
from the template (a partitioned template's is filled in per day)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from campaign_pipelines.ops import export_file, map_columns, read_file, reconcile, report, report_export, validate_rows
from campaign_pipelines.partitions import partition_launch, partitions_def
from campaign_pipelines.templates import ExportTemplate, ImportTemplate, Template

# Runs that write the same table wait for each other (the instance's tag_concurrency_limits).
TABLE_TAG = "campaign/table"
ON_ERROR = dg.Enum("OnError", [dg.EnumValue("reject_line"), dg.EnumValue("stop")])


def launch_config_schema(template: ImportTemplate) -> dict[str, dg.Field]:
    source, errors = template.source, template.errors
    return {
        "file": dg.Field(str, default_value=source.path or "", description="File to import, under CAMPAIGN_DATA_DIR."),
        "delimiter": dg.Field(str, default_value=source.delimiter, description="One character; \\t for tab."),
        "quote": dg.Field(dg.Noneable(str), default_value=source.quote, description="String delimiter; null for none."),
        "encoding": dg.Field(str, default_value=source.encoding, description="Any Python codec."),
        "skip_lines": dg.Field(int, default_value=source.skip_lines, description="Lines skipped before the header."),
        "limit": dg.Field(dg.Noneable(int), default_value=source.limit, description="Import only the first N data lines."),
        "on_error": dg.Field(
            ON_ERROR,
            default_value=errors.on_error,
            description="reject_line: reject the line, load the rest; stop: any reject fails the run.",
        ),
        "max_rejects": dg.Field(dg.Noneable(int), default_value=errors.max_rejects, description="More rejects fail the run."),
    }


def build_import_job(template: ImportTemplate) -> dg.JobDefinition:
    @dg.job(**_job_options(template, launch_config_schema(template)), tags={**_tags(template), TABLE_TAG: template.target.table})
    def import_job() -> None:
        report(reconcile(validate_rows(map_columns(read_file()))))

    return import_job


def export_config_schema(template: ExportTemplate) -> dict[str, dg.Field]:
    destination = template.destination
    return {
        "output": dg.Field(str, default_value=destination.path, description="File to write under CAMPAIGN_DATA_DIR; {date:%Y%m%d} and {run_id} are filled in."),
        "delimiter": dg.Field(str, default_value=destination.delimiter, description="One character; \\t for tab."),
        "quote": dg.Field(dg.Noneable(str), default_value=destination.quote, description="String delimiter; null for none."),
        "encoding": dg.Field(str, default_value=destination.encoding, description="Any Python codec."),
        "header": dg.Field(bool, default_value=destination.header, description="Write a header line."),
        "limit": dg.Field(dg.Noneable(int), default_value=template.source.limit, description="Export at most N rows."),
    }


def build_export_job(template: ExportTemplate) -> dg.JobDefinition:
    # An export only reads its table: it does not take the table's write slot.
    @dg.job(**_job_options(template, export_config_schema(template)), tags={**_tags(template), "campaign/source": template.source.table})
    def export_job() -> None:
        report_export(export_file())

    return export_job


def build_job(template: Template) -> dg.JobDefinition:
    if isinstance(template, ExportTemplate):
        return build_export_job(template)
    return build_import_job(template)


def first_op_config(template: Template, launch: dict[str, Any]) -> dict[str, Any]:
    """The first op's config: the template as JSON, and the launch keys."""
    first_op = "export_file" if isinstance(template, ExportTemplate) else "read_file"
    template_json = template.model_dump_json(by_alias=True, exclude_unset=True)
    return {"ops": {first_op: {"config": {"template": template_json, "overrides": launch}}}}


def run_config(template: Template, launch: dict[str, Any]) -> dict[str, Any]:
    """A run's config from flat launch keys, shaped as the template's job takes it."""
    if template.partitions is None:
        return dict(launch)
    return first_op_config(template, launch)


def _tags(template: Template) -> dict[str, str]:
    return {"campaign/template": template.name, "campaign/kind": template.kind}


def _job_options(template: Template, launch_schema: dict[str, dg.Field]) -> dict[str, Any]:
    """What every template's job shares: name, label and description, executor, and its
    launch config: flat (a config mapping), or per day for a partitioned template."""
    partitions = partitions_def(template)
    if partitions is None:

        @dg.config_mapping(config_schema=launch_schema)
        def config(launch: dict[str, Any]) -> dict[str, Any]:
            return first_op_config(template, launch)

    else:
        # Dagster does not combine a config mapping with partitions: a partitioned job's
        # Launchpad shows its first op's config (the template and the launch keys),
        # filled in for the chosen day.
        config = dg.PartitionedConfig(
            partitions_def=partitions,
            run_config_for_partition_key_fn=lambda key: first_op_config(template, partition_launch(template, key)),
        )
    return {
        "name": template.name,
        "description": template.display_label + (f"\n\n{template.description}" if template.description else ""),
        "config": config,
        # The steps run one after the other and hand each other files on disk, and an
        # import's validation and merge share one database session (its staged rows): a
        # process per op would break that and add seconds of start-up to every run.
        "executor_def": dg.in_process_executor,
    }
