"""Job factory: one Dagster job per job template, with a flat Launchpad config pre-filled
from the template."""

from __future__ import annotations

from typing import Any

import dagster as dg

from campaign_pipelines.ops import export_file, map_columns, read_file, reconcile, report, report_export, validate_rows
from campaign_pipelines.templates import ExportTemplate, ImportTemplate, Template

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
    @dg.job(**_job_options(template, launch_config_schema(template), first_op="read_file", table=template.target.table))
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
    @dg.job(**_job_options(template, export_config_schema(template), first_op="export_file", table=template.source.table))
    def export_job() -> None:
        report_export(export_file())

    return export_job


def build_job(template: Template) -> dg.JobDefinition:
    if isinstance(template, ExportTemplate):
        return build_export_job(template)
    return build_import_job(template)


def _job_options(template: Template, launch_schema: dict[str, dg.Field], first_op: str, table: str) -> dict[str, Any]:
    """What every template's job shares: name, label and description, the flat launch
    config handed to its first op (with the template as JSON), executor and tags."""
    template_json = template.model_dump_json(by_alias=True, exclude_unset=True)

    @dg.config_mapping(config_schema=launch_schema)
    def flat_launch_config(launch: dict[str, Any]) -> dict[str, Any]:
        return {"ops": {first_op: {"config": {"template": template_json, "overrides": launch}}}}

    return {
        "name": template.name,
        "description": template.display_label + (f"\n\n{template.description}" if template.description else ""),
        "config": flat_launch_config,
        # The steps run one after the other and hand each other files on disk: a process
        # per op would only add seconds of start-up to every run.
        "executor_def": dg.in_process_executor,
        "tags": {"campaign/template": template.name, "campaign/kind": template.kind, "campaign/table": table},
    }
