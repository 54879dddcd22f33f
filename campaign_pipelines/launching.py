"""How `campaign-pipelines run` launches a template's job: as the UI does, a run of the
workspace's code location (its job origin, tags and `.dagster/repository` label), so it
shows on its job's page and re-executes from the UI; through the run queue when the
instance has one and a daemon serves it.

- Queued instance (QueuedRunCoordinator, Dagster's default) with a live `dagster-daemon`:
  the run is queued, the daemon launches it under the instance's limits (one writer per
  table), and the command waits for its end (`--no-wait`: prints its id and returns).
- Queued instance, no live daemon: waiting would never end, so the command runs the job in
  its own process at once (the per-table limits then do not apply to it; the merge's table
  locks still keep writers apart). `--no-wait` queues it: it starts when a daemon does.
- Instance without a queue (DefaultRunCoordinator): the command runs the job itself.

The command runs the job in its own process with the job's executor: in-process from the
definitions already loaded; any other (multiprocess, Celery) from the code location's
module, which each step's process loads again. A Celery run is refused at launch when its
broker does not answer.

`campaign-pipelines rerun RUN_ID [--from-failure]` creates a re-execution as the UI's
"Re-execute" does (the parent's config and tags, its root run), launched the same way.

The result (counts, status, rejects) is read back from the run's events in the instance,
whichever process ran it.
"""

from __future__ import annotations

import time
from typing import Any

import dagster as dg

from campaign_pipelines import run_internals
from campaign_pipelines.cleanup import ENDED
from campaign_pipelines.errors import CampaignError
from campaign_pipelines.executors import check_broker
from campaign_pipelines.importing.outcome import COUNT_KEYS
from campaign_pipelines.names import PARENT_RUN_ID_TAG, PARTITION_TAG, RESUME_RETRY_TAG, ROOT_RUN_ID_TAG, STATUS_TAG, exports_key, imports_key, rejects_key
from campaign_pipelines.templates import ExportTemplate, Template

# workspace.yaml's code location: runs launched here belong to it.
LOCATION_NAME = "campaign_pipelines"
DEFINITIONS_MODULE = "campaign_pipelines.definitions"
POLL_SECONDS = 0.5
HEARTBEAT_TOLERANCE_SECONDS = 60


def code_origin(job_name: str) -> Any:
    """Where a step process loads the job from: the code location's module."""
    return run_internals.code_origin(DEFINITIONS_MODULE, job_name)


def remote_origin(job_name: str) -> Any:
    """The job in the workspace's code location, as the UI's job page and Re-execute find it."""
    return run_internals.remote_origin(DEFINITIONS_MODULE, LOCATION_NAME, job_name)


def daemon_serves_queue(instance: dg.DagsterInstance) -> bool:
    """A dagster-daemon beat for the queue within two of its 30-second intervals. Stricter
    than Dagster's own health check (30 minutes' tolerance), which would have the command
    wait on a queue no daemon serves any more; and it spares importing the daemon (0.3 s)."""
    beat = instance.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR")
    return beat is not None and time.time() - beat.timestamp < HEARTBEAT_TOLERANCE_SECONDS


def create_run(
    instance: dg.DagsterInstance, job: dg.JobDefinition, run_config: dict[str, Any] | None, partition: str | None
) -> dg.DagsterRun:
    check_executor(job)
    tags: dict[str, str] = {}
    if partition is not None:
        tags[PARTITION_TAG] = partition
        if run_config is None:
            run_config = job.partitioned_config.get_run_config_for_partition_key(partition)
    return instance.create_run_for_job(
        job_def=job,
        run_config=run_config,
        tags={**job.run_tags, **tags},
        remote_job_origin=remote_origin(job.name),
        job_code_origin=code_origin(job.name),
    )


# A re-execution's own: the parent's status tag and Dagster's re-execution tags are set anew.
_NOT_INHERITED = (STATUS_TAG, PARENT_RUN_ID_TAG, ROOT_RUN_ID_TAG, RESUME_RETRY_TAG)


def create_rerun(instance: dg.DagsterInstance, job: dg.JobDefinition, parent: dg.DagsterRun, *, from_failure: bool) -> dg.DagsterRun:
    """A re-execution of `parent` as the UI creates one: every step, or from failure (the
    failed and skipped steps, on the outputs of the steps that succeeded)."""
    check_executor(job)
    plan = None
    root = parent.root_run_id or parent.run_id
    tags = {k: v for k, v in parent.tags.items() if k not in _NOT_INHERITED and not k.startswith(".dagster")}
    tags |= {PARENT_RUN_ID_TAG: parent.run_id, ROOT_RUN_ID_TAG: root}
    if from_failure:
        if parent.status != dg.DagsterRunStatus.FAILURE:
            raise CampaignError(
                f"run {parent.run_id} did not fail ({parent.status.value.lower()}): --from-failure re-executes a failed run; "
                "rerun it without --from-failure to re-execute every step."
            )
        plan = run_internals.from_failure_plan(instance, job, parent)
        tags[RESUME_RETRY_TAG] = "true"
    return instance.create_run_for_job(
        job_def=job,
        execution_plan=plan,
        run_config=parent.run_config,
        tags=tags,
        asset_selection=parent.asset_selection,
        root_run_id=root,
        parent_run_id=parent.run_id,
        remote_job_origin=remote_origin(job.name),
        job_code_origin=code_origin(job.name),
    )


def check_executor(job: dg.JobDefinition) -> None:
    """Before a run is created: a Celery run's steps would wait on a broker that does not answer."""
    if job.executor_def.name == "campaign_celery":
        check_broker()


def launch(instance: dg.DagsterInstance, job: dg.JobDefinition, run: dg.DagsterRun, *, wait: bool) -> None:
    """Hand the run to the queue, or run `job` (the code location's, built in this process) here."""
    queued = isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
    if not wait:
        if not queued:
            raise CampaignError(
                "--no-wait hands the run to the instance's run queue, and this instance has none "
                "(its run_coordinator is not the QueuedRunCoordinator): run without --no-wait."
            )
        instance.submit_run(run.run_id, workspace=None)  # type: ignore[arg-type]  # the queue only records it
        return
    if queued and daemon_serves_queue(instance):
        instance.submit_run(run.run_id, workspace=None)  # type: ignore[arg-type]
        while instance.get_run_by_id(run.run_id).status not in ENDED:
            time.sleep(POLL_SECONDS)
        return
    # Other executors' step processes load the job from the code location.
    in_process = job.executor_def.name == dg.in_process_executor.name
    run_internals.execute_created_run(job, DEFINITIONS_MODULE, run, instance, in_process=in_process)


def run_outcome(instance: dg.DagsterInstance, run_id: str, template: Template) -> dict[str, Any]:
    """The command's payload, from the run's events: what its report step materialized, or
    its one-sentence error and its rejects."""
    run = instance.get_run_by_id(run_id)
    succeeded = run.status == dg.DagsterRunStatus.SUCCESS
    payload: dict[str, Any] = {
        "run_id": run_id,
        "template": template.name,
        "status": run.tags.get(STATUS_TAG, "finished" if succeeded else "failed"),
    }
    materialized = _materializations(instance, run_id)
    exporting = isinstance(template, ExportTemplate)
    if succeeded:
        metadata = materialized.get(exports_key(template.name) if exporting else imports_key(template.name), {})
        keys = ("rows_exported", "output_path", "bytes", "sha256", "parts") if exporting else ("rows_read", *COUNT_KEYS, "links_created", "parts")
        payload.update({k: metadata[k].value for k in keys if k in metadata})
    else:
        payload["error"] = failure_message(instance, run_id)
        if not exporting and "rows_rejected" in (rejects := materialized.get(rejects_key(template.name), {})):
            payload["rows_rejected"] = rejects["rows_rejected"].value
    if not exporting:
        rejects_path = materialized.get(rejects_key(template.name), {}).get("rejects_path")
        # A path, or the text "none" when no line was rejected.
        payload["rejects_path"] = rejects_path.value if isinstance(rejects_path, dg.PathMetadataValue) else None
    return payload


def _materializations(instance: dg.DagsterInstance, run_id: str) -> dict[dg.AssetKey, dict[str, Any]]:
    """Each asset's last materialization metadata in the run."""
    found: dict[dg.AssetKey, dict[str, Any]] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.dagster_event.event_specific_data.materialization
        found[materialization.asset_key] = dict(materialization.metadata)
    return found


def failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    """The failed step's one sentence (or the run's own failure, e.g. a config error)."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = entry.dagster_event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return data.user_failure_data.description
        if data.error and data.error.cls_name == "ChildProcessCrashException":
            return (
                f"the process running step {entry.step_key} ended before the step did (killed, or out of memory); "
                "a merge in progress was rolled back; re-execute the run from failure "
                f"(campaign-pipelines rerun {run_id[:8]} --from-failure)."
            )
        return data.error.message.strip() if data.error else "the run failed"
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
        return entry.message or "the run failed"
    return "the run failed"
