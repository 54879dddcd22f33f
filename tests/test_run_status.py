"""Run status sensors: cancelled runs and runs that died without a word get their
Campaign status, on a real instance with real run records and events."""

from __future__ import annotations

import dagster as dg

from campaign_pipelines.code_location import build_definitions
from campaign_pipelines.jobs import run_config
from campaign_pipelines.sensors import cancelled_runs, failed_runs
from campaign_pipelines.templates import load_catalog
from tests.helpers import people_template


def ended_run(deployment, end) -> tuple[dg.DagsterRun, dg.DagsterEvent]:
    """A run of the people job as the daemon records it, ended by `end` (cancel or failure)."""
    job = build_definitions(deployment.settings).resolve_job_def("people")
    template = load_catalog(deployment.settings.templates_dir, deployment.settings.data_model()).get("people")
    run = deployment.instance.create_run_for_job(job_def=job, run_config=run_config(template, {}), tags=job.tags)
    end(run)
    event = deployment.instance.get_records_for_run(run.run_id).records[-1].event_log_entry.dagster_event
    return deployment.instance.get_run_by_id(run.run_id), event


def evaluate(sensor, deployment, run, event) -> None:
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_instance=deployment.instance, dagster_run=run, dagster_event=event
    )
    sensor(context.for_run_failure() if sensor is failed_runs else context)


def test_a_cancelled_run_gets_the_cancelled_status(deployment):
    deployment.template(people_template())
    run, event = ended_run(deployment, deployment.instance.report_run_canceled)
    assert run.status == dg.DagsterRunStatus.CANCELED
    evaluate(cancelled_runs, deployment, run, event)
    assert deployment.instance.get_run_by_id(run.run_id).tags["campaign/status"] == "cancelled"


def test_a_run_that_died_without_a_status_is_failed_and_a_reported_failure_is_kept(deployment):
    deployment.template(people_template())
    run, event = ended_run(deployment, lambda r: deployment.instance.report_run_failed(r, "worker killed"))
    evaluate(failed_runs, deployment, run, event)
    assert deployment.instance.get_run_by_id(run.run_id).tags["campaign/status"] == "failed"

    # A status the run set itself (its one-sentence failure) is not overwritten.
    def fail_after_status(r):
        deployment.instance.add_run_tags(r.run_id, {"campaign/status": "finished_with_errors"})
        deployment.instance.report_run_failed(r, "the report step failed")

    run, event = ended_run(deployment, fail_after_status)
    evaluate(failed_runs, deployment, deployment.instance.get_run_by_id(run.run_id), event)
    assert deployment.instance.get_run_by_id(run.run_id).tags["campaign/status"] == "finished_with_errors"


def test_runs_outside_campaign_templates_are_left_alone(deployment):
    @dg.op
    def noop() -> None: ...

    @dg.job
    def other() -> None:
        noop()

    run = deployment.instance.create_run_for_job(job_def=other)
    deployment.instance.report_run_canceled(run)
    event = deployment.instance.get_records_for_run(run.run_id).records[-1].event_log_entry.dagster_event
    evaluate(cancelled_runs, deployment, deployment.instance.get_run_by_id(run.run_id), event)
    assert "campaign/status" not in deployment.instance.get_run_by_id(run.run_id).tags
