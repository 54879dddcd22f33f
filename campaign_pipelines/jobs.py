"""Job factory: one Dagster asset job per job template, materializing the template's
assets, with a flat Launchpad config pre-filled from the template (a partitioned
template's is filled in per day)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from campaign_pipelines.executors import executor_def
from campaign_pipelines.launch import export_config_schema, launch_config_schema
from campaign_pipelines.names import exports_key, graph_name, imports_key, template_tags
from campaign_pipelines.partitions import partition_launch, partitions_def
from campaign_pipelines.templates import ExportTemplate, Template


def build_job(template: Template, executor: str = "in_process") -> dg.UnresolvedAssetJobDefinition:
    """The job materializing the template's assets (`assets.py`): an import's
    imports/<template> and rejects/<template> with their checks, an export's exports/<template>;
    its steps run on the deployment's executor (executors.py)."""
    if isinstance(template, ExportTemplate):
        schema, key = export_config_schema(template), exports_key(template.name)
    else:
        schema, key = launch_config_schema(template), imports_key(template.name)
    return dg.define_asset_job(
        selection=dg.AssetSelection.assets(key).required_multi_asset_neighbors(),
        tags=template_tags(template),
        executor_def=executor_def(executor),
        **_job_options(template, schema),
    )


def report_node(template: Template) -> str:
    """The handle of the step whose `result` output holds the run's counts."""
    if isinstance(template, ExportTemplate):
        return f"{graph_name(template.name)}.report_export"
    return f"{graph_name(template.name)}.{'report_drop' if template.parts else 'report'}"


def graph_config(template: Template, launch: dict[str, Any]) -> dict[str, Any]:
    """The run config giving the template's graph these launch keys (the others keep
    the template's values: `launch.graph_config_mapping`)."""
    return {"ops": {graph_name(template.name): {"config": launch}}}


def run_config(template: Template, launch: dict[str, Any]) -> dict[str, Any]:
    """A run's config from flat launch keys, shaped as the template's job takes it."""
    if template.partitions is None:
        return dict(launch)
    return graph_config(template, launch)


def _job_options(template: Template, launch_schema: dict[str, dg.Field]) -> dict[str, Any]:
    """What every template's job shares: name, label and description, and its
    launch config: flat (a config mapping), or per day for a partitioned template."""
    partitions = partitions_def(template)
    if partitions is None:

        @dg.config_mapping(config_schema=launch_schema)
        def config(launch: dict[str, Any]) -> dict[str, Any]:
            return graph_config(template, launch)

    else:
        # Dagster does not combine a job's config mapping with partitions: a partitioned
        # job's Launchpad shows its graph's launch keys, filled in for the chosen day.
        config = dg.PartitionedConfig(
            partitions_def=partitions,
            run_config_for_partition_key_fn=lambda key: graph_config(template, partition_launch(template, key)),
        )
    return {
        "name": template.name,
        "description": template.display_label + (f"\n\n{template.description}" if template.description else ""),
        "config": config,
    }
