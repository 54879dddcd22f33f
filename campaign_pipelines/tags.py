"""The run tags a template's runs carry, named once.

Every run of a template carries `campaign/template` and `campaign/kind`; an import
`campaign/table` (the table it writes), an export `campaign/source` (the table it reads).
A run launched on the template's job gets them from the job; a run of Dagster's asset job
(*Materialize* on an asset page, an asset backfill) gets them from its first step
(`ops.adopt_run`). `campaign/status` is the Campaign status the run ends with.
"""

from __future__ import annotations

from campaign_pipelines.templates import ExportTemplate, Template

TEMPLATE_TAG = "campaign/template"
KIND_TAG = "campaign/kind"
TABLE_TAG = "campaign/table"  # an import's target table
SOURCE_TAG = "campaign/source"  # an export's source table
STATUS_TAG = "campaign/status"
# Only on a run that rejected lines: "3 of 9 lines", shown beside the status in the runs list.
REJECTED_TAG = "campaign/rejected"


def template_tags(template: Template) -> dict[str, str]:
    """The tags every run of `template` carries, however it was launched."""
    table = {SOURCE_TAG: template.source.table} if isinstance(template, ExportTemplate) else {TABLE_TAG: template.target.table}
    return {TEMPLATE_TAG: template.name, KIND_TAG: template.kind, **table}


def table_pool(table: str) -> str:
    """The concurrency pool of the steps that write `table`: with a limit of one (the
    deployment's `concurrency.pools`), runs writing one table go one after the other,
    whichever way they were launched."""
    return f"campaign/{table}"
