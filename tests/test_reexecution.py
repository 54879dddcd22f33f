"""Re-execution and retention of work data (issue 14): the steps hand each other their
outputs through the work IO manager and keep their rows in the root run's work folder
and (PostgreSQL) stage table, so "re-execute from failure" resumes at the failed step; a
merge commits at most once per root run; work data goes when the run succeeds, else
after CAMPAIGN_WORK_RETENTION (the campaign_cleanup job)."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest

from campaign_pipelines.cleanup import clean_work_data
from resources.work_io import WorkIOManager
from campaign_pipelines.errors import CampaignError
from campaign_pipelines.importing.stage import run_stage_name
from campaign_pipelines.jobs import run_config
from campaign_pipelines.launching import failure_message, run_outcome
from campaign_pipelines.names import graph_name
from campaign_pipelines.settings import Settings, parse_duration
from campaign_pipelines.templates import load_catalog
from tests.helpers import failing_writes, people_file, people_template, stage_tables, work_folders

FIRST = people_file("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray")
SECOND = people_file("ann@x.org;C1;Annie;Lee", "cid@x.org;C3;Cid;Moe")


@pytest.fixture
def loaded(campaign):
    campaign.template(people_template(target={"list": {"name": "vip", "mode": "replace"}}))
    campaign.file("inbox/people.csv", FIRST)
    campaign.first = campaign.run("people")
    assert campaign.first.counts["rows_inserted"] == 2
    return campaign


def people_job(campaign) -> dg.ReconstructableJob:
    # What Dagster rebuilds in another process to run or re-execute a step.
    return dg.build_reconstructable_job("tests.helpers", "campaign_job", reconstructable_args=("people", str(campaign.root)))


def execute(campaign, **options):
    config = run_config(load_catalog(campaign.templates_dir, campaign.model).get("people"), {})
    with dg.execute_job(people_job(campaign), instance=campaign.instance, run_config=config, raise_on_error=False, **options) as result:
        return result.run_id, result.success, {e.step_key for e in result.get_step_success_events()}


def outcome(campaign, run_id):
    return run_outcome(campaign.instance, run_id, load_catalog(campaign.templates_dir, campaign.model).get("people"))


def failed_merge(campaign) -> str:
    """A run of SECOND whose merge fails on the database: rolled back, work data kept."""
    before = campaign.snapshot()
    campaign.file("inbox/people.csv", SECOND)
    with failing_writes(campaign.engine):
        run_id, success, done = execute(campaign)
    assert not success and "disk on fire" in failure_message(campaign.instance, run_id)
    assert done == {f"{graph_name('people')}.{step}" for step in ("read_file", "map_columns", "validate_rows")}
    assert campaign.snapshot() == before
    assert run_id in work_folders(campaign.data_dir), failure_message(campaign.instance, run_id)
    if campaign.dialect == "postgresql":
        assert run_stage_name(run_id) in stage_tables(campaign.engine)
    else:
        assert stage_tables(campaign.engine) == []  # SQLite stages in a temporary table
    return run_id


def test_re_execution_from_failure_resumes_at_the_merge(loaded):
    failed = failed_merge(loaded)
    loaded.file("inbox/people.csv", FIRST)  # the re-execution reads the kept rows, not the file again
    again, success, done = execute(loaded, reexecution_options=dg.ReexecutionOptions.from_failure(failed, loaded.instance))
    assert success
    assert done == {f"{graph_name('people')}.reconcile", f"{graph_name('people')}.report"}
    result = outcome(loaded, again)
    assert (result["rows_read"], result["rows_inserted"], result["rows_updated"]) == (2, 1, 1)
    assert [(r["email"], r["first_name"]) for r in loaded.rows("recipient")] == [
        ("ann@x.org", "Annie"), ("bob@x.org", "Bob"), ("cid@x.org", "Cid"),
    ]
    # The list in replace mode holds the second file's members only.
    assert len(loaded.rows("recipient_list_member", order_by="recipient_id")) == 2
    run = loaded.instance.get_run_by_id(again)
    assert run.root_run_id == failed and run.parent_run_id == failed
    # Succeeded: its root's work data is gone.
    assert work_folders(loaded.data_dir) == [] and stage_tables(loaded.engine) == []


def test_a_re_execution_whose_work_data_was_cleaned_up_says_so(loaded):
    failed = failed_merge(loaded)
    before = loaded.snapshot()
    removed = clean_work_data(
        loaded.instance, loaded.data_dir, loaded.engine, dt.timedelta(days=7), WorkIOManager(data_dir=str(loaded.data_dir)),
        now=dt.datetime.now(dt.UTC) + dt.timedelta(days=8),
    )
    assert removed.folders == [failed]
    assert removed.stage_tables == ([run_stage_name(failed)] if loaded.dialect == "postgresql" else [])
    again, success, done = execute(loaded, reexecution_options=dg.ReexecutionOptions.from_failure(failed, loaded.instance))
    assert not success and done == set()
    error = failure_message(loaded.instance, again)
    assert f"the work data of run {failed}" in error and "was cleaned up" in error, error
    assert error.endswith("re-run the whole job; nothing was written.") and "\n" not in error
    assert loaded.snapshot() == before


def test_a_re_executed_merge_after_a_committed_one_changes_nothing(loaded):
    """Re-executing every step of a run whose merge committed (a user's "re-execute all",
    or a step re-run after its process died once the merge had committed): the merge
    sees the root run's commit, writes nothing, and reports the committed counts."""
    after = loaded.snapshot()
    loaded.file("inbox/people.csv", SECOND)  # even with another file in the inbox
    again, success, _ = execute(loaded, reexecution_options=dg.ReexecutionOptions(parent_run_id=loaded.first.run_id))
    assert success
    assert loaded.snapshot() == after
    result = outcome(loaded, again)
    assert {k: result[k] for k in ("rows_read", "rows_inserted", "rows_updated")} == {
        k: loaded.first.counts[k] for k in ("rows_read", "rows_inserted", "rows_updated")
    }
    logs = [e.user_message for e in loaded.instance.all_logs(again)]
    assert any(f"was committed by run {loaded.first.run_id}: nothing written again" in m for m in logs)
    assert work_folders(loaded.data_dir) == [] and stage_tables(loaded.engine) == []


def test_nothing_outlives_its_retention(loaded):
    """Work folders and stage tables counted before and after the cleanup job: a failed
    run's stay within CAMPAIGN_WORK_RETENTION, a succeeded run leaves none, and the
    cleanup removes the expired ones."""
    from campaign_pipelines.code_location import build_definitions

    failed = [failed_merge(loaded), failed_merge(loaded)]
    loaded.file("inbox/people.csv", SECOND)
    assert loaded.run("people").success
    postgres = loaded.dialect == "postgresql"
    assert work_folders(loaded.data_dir) == sorted(failed)
    assert stage_tables(loaded.engine) == (sorted(run_stage_name(r) for r in failed) if postgres else [])

    defs = build_definitions(loaded.settings)
    assert defs.get_schedule_def("campaign_cleanup_hourly").default_status == dg.DefaultScheduleStatus.RUNNING
    cleanup = defs.resolve_job_def("campaign_cleanup")
    kept = cleanup.execute_in_process(instance=loaded.instance)  # the default, 7 days: both kept
    assert kept.success and len(work_folders(loaded.data_dir)) == 2
    removed = cleanup.execute_in_process(instance=loaded.instance, run_config={"ops": {"clean_work": {"config": {"retention": "0m"}}}})
    assert removed.success
    metadata = removed.get_step_success_events()[0]  # its counts, as the UI shows them
    assert metadata.step_key == "clean_work"
    assert work_folders(loaded.data_dir) == [] and stage_tables(loaded.engine) == []


def test_retention_and_executor_settings_are_checked(monkeypatch):
    assert parse_duration("1d12h") == dt.timedelta(days=1, hours=12)
    assert parse_duration("30m") == dt.timedelta(minutes=30)
    monkeypatch.setenv("CAMPAIGN_WORK_RETENTION", "soon")
    with pytest.raises(CampaignError, match=r"CAMPAIGN_WORK_RETENTION 'soon' is not a duration such as 7d"):
        Settings.from_env()
    monkeypatch.setenv("CAMPAIGN_WORK_RETENTION", "2d")
    assert Settings.from_env().work_retention == dt.timedelta(days=2)
    monkeypatch.setenv("CAMPAIGN_EXECUTOR", "threads")
    with pytest.raises(CampaignError, match=r"CAMPAIGN_EXECUTOR 'threads' is not one of in_process, multiprocess, celery"):
        Settings.from_env()


def test_rerun_from_failure_on_the_command_line(cli_home, capsys):
    from tests.test_cli import run_cli

    with failing_writes(cli_home.engine):
        code, out, _ = run_cli(capsys, "run", "import_recipients", "--json")
    failed = json.loads(out)
    assert code == 1 and "disk on fire" in failed["error"] and cli_home.rows("recipient") == []
    code, out, _ = run_cli(capsys, "rerun", failed["run_id"][:8], "--from-failure", "--json")
    payload = json.loads(out)
    assert code == 0, payload
    assert (payload["rows_read"], payload["rows_inserted"], payload["rows_rejected"]) == (9, 5, 3)
    assert len(cli_home.rows("recipient")) == 5
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(payload["run_id"])
        assert run.root_run_id == failed["run_id"] and run.tags["dagster/is_resume_retry"] == "true"
        assert run.remote_job_origin.job_name == "import_recipients"  # it re-executes from the UI too
        steps = {e.step_key for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}
        assert steps == {f"{graph_name('import_recipients')}.reconcile", f"{graph_name('import_recipients')}.report"}
    # Again from failure, on a run that succeeded: one sentence.
    code, _, err = run_cli(capsys, "rerun", payload["run_id"], "--from-failure")
    assert code == 2 and err.strip().startswith(f"error: run {payload['run_id']} did not fail (success)"), err
