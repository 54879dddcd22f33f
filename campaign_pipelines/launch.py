"""A template's launch keys: the flat config its job's Launchpad shows, pre-filled from
the template, and how its graph hands them to the first step."""

from __future__ import annotations

from typing import Any

import dagster as dg

from campaign_pipelines.templates import ExportTemplate, ImportTemplate, Template

ON_ERROR = dg.Enum("OnError", [dg.EnumValue("reject_line"), dg.EnumValue("stop")])


def launch_config_schema(template: ImportTemplate) -> dict[str, dg.Field]:
    if template.parts:
        return drop_config_schema(template)
    source, errors = template.source, template.errors
    return {
        # A daily template's path keeps its {date:...}: the run fills in its partition's day.
        "file": dg.Field(
            str, default_value=template.partition_path or source.path or "", description="File to import, under CAMPAIGN_DATA_DIR."
        ),
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


def drop_config_schema(template: ImportTemplate) -> dict[str, dg.Field]:
    """A multiple import's launch keys: the drop's folder, and every part's limit and error policy."""
    values = template.launch_values()
    return {
        "drop": dg.Field(str, default_value=values["drop"], description="The drop's folder under CAMPAIGN_DATA_DIR (or the parts' endpoint): each part's file is in it."),
        "limit": dg.Field(dg.Noneable(int), default_value=values["limit"], description="Import only the first N data lines of each file."),
        "on_error": dg.Field(ON_ERROR, default_value=values["on_error"], description="reject_line: reject the line, load the rest; stop: any reject fails the run."),
        "max_rejects": dg.Field(dg.Noneable(int), default_value=values["max_rejects"], description="More rejects in a part fail the run."),
    }


def export_config_schema(template: ExportTemplate) -> dict[str, dg.Field]:
    if template.parts:  # several files: their paths and formats are the parts'
        return {"limit": dg.Field(dg.Noneable(int), default_value=template.launch_values()["limit"], description="Export at most N rows per file.")}
    destination = template.destination
    return {
        "output": dg.Field(str, default_value=destination.path, description="File to write under CAMPAIGN_DATA_DIR; {date:%Y%m%d} and {run_id} are filled in."),
        "delimiter": dg.Field(str, default_value=destination.delimiter, description="One character; \\t for tab."),
        "quote": dg.Field(dg.Noneable(str), default_value=destination.quote, description="String delimiter; null for none."),
        "encoding": dg.Field(str, default_value=destination.encoding, description="Any Python codec."),
        "header": dg.Field(bool, default_value=destination.header, description="Write a header line."),
        "limit": dg.Field(dg.Noneable(int), default_value=template.source.limit, description="Export at most N rows."),
    }


def graph_config_mapping(template: Template) -> dg.ConfigMapping:
    """The template's graph takes the flat launch keys, every one defaulted from the
    template (so Materialize on the asset page needs no config), and hands them to its
    first step (each part's, in a multiple import), which holds the template (ops.read_file,
    ops.export_file, drop_ops.read_part)."""
    if isinstance(template, ExportTemplate):
        first_ops, schema = ["export_file"], export_config_schema(template)
    elif template.parts:  # each part's read step
        first_ops, schema = [f"read_{t.part_name}" for t in template.imports], launch_config_schema(template)
    else:
        first_ops, schema = ["read_file"], launch_config_schema(template)

    def to_first_step(launch: dict[str, Any]) -> dict[str, Any]:
        return {op: {"config": launch} for op in first_ops}

    return dg.ConfigMapping(config_fn=to_first_step, config_schema=schema)
