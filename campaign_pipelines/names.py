"""The names users and the UI rely on, each spelled once: asset keys, run tags, pools.

The lineage reads `inbox/<import>` → `imports/<import>` (with `rejects/<import>`) →
`campaign/<table>` → `exports/<export>` → `outbox/<export>`.

Every run of a template carries `campaign/template` and `campaign/kind`; an import
`campaign/table` (the table it writes), an export `campaign/source` (the table it reads).
A run launched on the template's job gets them from the job; a run of Dagster's asset job
(*Materialize* on an asset page, an asset backfill) gets them from its first step
(`ops.adopt_run`). `campaign/status` is the Campaign status the run ends with.
"""

from __future__ import annotations

import dagster as dg

from campaign_pipelines.templates import ExportTemplate, Template


def inbox_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["inbox", name])


def imports_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["imports", name])


def rejects_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["rejects", name])


def table_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["campaign", table])


def exports_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["exports", name])


def outbox_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["outbox", name])


def graph_name(name: str) -> str:
    """The node a template's steps sit in (a job's own graph already has the job's name)."""
    return f"{name}_steps"


TEMPLATE_TAG = "campaign/template"
KIND_TAG = "campaign/kind"
TABLE_TAG = "campaign/table"  # an import's target table
SOURCE_TAG = "campaign/source"  # an export's source table
STATUS_TAG = "campaign/status"
# Only on a run that rejected lines: "3 of 9 lines", shown beside the status in the runs list.
REJECTED_TAG = "campaign/rejected"
# On the job of a template or data schema that cannot load (load_errors.py): which.
LOAD_ERROR_TAG = "campaign/load_error"
# On a collected file's run (sensors.py): the file, relative to CAMPAIGN_DATA_DIR (its URI on an endpoint), and its
# run key (path, size, mtime and content hash).
FILE_TAG = "campaign/file"
FILE_KEY_TAG = "campaign/file_key"
# On a collected drop's run (a multiple import): each part's file key, as JSON {part: key}.
PART_KEYS_TAG = "campaign/part_keys"
ARCHIVE_TAG = "campaign/archive"  # where the collector moved the run's file, or why it could not

# Dagster's own tags, as its UI and daemon set and read them (their documented names).
PARTITION_TAG = "dagster/partition"
PARENT_RUN_ID_TAG = "dagster/parent_run_id"
ROOT_RUN_ID_TAG = "dagster/root_run_id"
RESUME_RETRY_TAG = "dagster/is_resume_retry"


def template_tags(template: Template) -> dict[str, str]:
    """The tags every run of `template` carries, however it was launched."""
    table = {SOURCE_TAG: ",".join(template.tables)} if isinstance(template, ExportTemplate) else {TABLE_TAG: ",".join(template.tables)}
    return {TEMPLATE_TAG: template.name, KIND_TAG: template.kind, **table}


def table_pool(table: str) -> str:
    """The concurrency pool of the steps that write `table`: with a limit of one (the
    deployment's `concurrency.pools`), runs writing one table go one after the other,
    whichever way they were launched."""
    return f"campaign/{table}"
