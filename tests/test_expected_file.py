"""Campaign's "process missing file": a collector's `expected` time of day, its check
`file_arrived` on the inbox asset, its job and its schedule, on real runs (embedded and
PostgreSQL-backed Dagster instances) against the data folder and a real SFTP/S3 inbox."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import pytest

import campaign_pipelines.expected as expected_check
from campaign_pipelines.cli import main
from campaign_pipelines.code_location import build_definitions
from campaign_pipelines.names import inbox_key
from tests.helpers import people_template
from tests.test_collector import COLLECTOR, Collector, inbox
from tests.test_endpoints import remote, remote_collector  # noqa: F401  (the remote fixture)

EXPECTED = {"by": "06:30", "timezone": "Europe/Paris", "weekdays": "mon-fri"}


def expecting(deployment: Any, **collector: Any) -> None:
    deployment.template(people_template(collector={**COLLECTOR, "expected": EXPECTED, **collector}))


def check_run(deployment: Any) -> tuple[dg.ExecuteInProcessResult, dg.AssetCheckEvaluation]:
    """The expected-file job, run as its schedule would: its result and the check's evaluation."""
    defs = build_definitions(deployment.settings)
    result = defs.resolve_job_def("people_expected_file").execute_in_process(
        instance=deployment.instance, raise_on_error=False
    )
    (evaluation,) = [
        e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    return result, evaluation


def test_an_expected_file_has_its_check_job_and_schedule(deployment):
    expecting(deployment, default_status="running")
    defs = build_definitions(deployment.settings)
    schedule = defs.resolve_schedule_def("people_expected_file_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 6 * * mon-fri", "Europe/Paris")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING  # as its collector
    assert schedule.job_name == "people_expected_file"
    check_keys = defs.resolve_asset_graph().asset_check_keys
    assert dg.AssetCheckKey(inbox_key("people"), "file_arrived") in check_keys


def test_no_file_by_the_time_fails_the_check_and_the_run_with_one_sentence(deployment):
    expecting(deployment)
    result, evaluation = check_run(deployment)
    assert not result.success  # a failed run: whatever alerts on failed runs alerts
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.description.startswith(
        "people: no file matching inbox/crm/people_*.csv arrived by 06:30 (Europe/Paris) on "
    )
    assert evaluation.description.endswith(": none collected since 00:00 and none waiting in the inbox.")
    # The run fails with that sentence, not Dagster's "blocking asset check failed" and its trace.
    (failure,) = deployment.instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    assert failure.dagster_event.step_failure_data.user_failure_data.description == evaluation.description
    stored = deployment.instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(inbox_key("people"), "file_arrived")
    )
    assert stored is not None and stored.event.asset_check_evaluation.passed is False  # shown on the asset


def test_a_file_waiting_in_the_inbox_or_collected_today_passes(deployment):
    expecting(deployment)
    inbox(deployment, "people_1.csv", "ann@x.org;C1;Ann;Lee")
    result, evaluation = check_run(deployment)
    assert result.success and evaluation.passed
    assert evaluation.description == "0 file(s) collected since 00:00, 1 waiting in the inbox."
    # Collected, run and archived: the inbox is empty, the run today says it came.
    collector = Collector(deployment)
    collector.tick()
    (run,) = collector.run(collector.tick())
    assert run.success, run.error
    collector.tick()
    assert list((deployment.data_dir / "inbox/crm").iterdir()) == []
    result, evaluation = check_run(deployment)
    assert result.success and evaluation.passed
    assert evaluation.description == "1 file(s) collected since 00:00, 0 waiting in the inbox."


def test_a_run_minutes_after_midnight_counts_whatever_the_zone_s_offset(deployment, monkeypatch):
    """The hour the last CI met: a zone ahead of UTC, its midnight minutes ago. Now is set
    in a fixed-offset zone where it is 00:10, so a run collected a moment ago is of
    today; read as UTC, that midnight would lie hours ahead and count no run (at any hour
    but the first ten minutes of a UTC day, when the two agree anyway)."""
    real_now = dt.datetime.now(dt.UTC)
    past_utc_midnight = real_now - real_now.replace(hour=0, minute=0, second=0, microsecond=0)
    ahead = (dt.timedelta(minutes=10) - past_utc_midnight) % dt.timedelta(days=1)
    zone = dt.timezone(ahead)
    monkeypatch.setattr(expected_check, "local_now", lambda timezone: dt.datetime.now(zone))
    expecting(deployment)
    inbox(deployment, "people_1.csv", "ann@x.org;C1;Ann;Lee")
    collector = Collector(deployment)
    collector.tick()
    (run,) = collector.run(collector.tick())
    assert run.success, run.error
    collector.tick()
    assert expected_check.local_now("Europe/Paris").hour == 0
    result, evaluation = check_run(deployment)
    assert result.success and evaluation.passed
    assert evaluation.description == "1 file(s) collected since 00:00, 0 waiting in the inbox."


def test_a_remote_inbox_is_checked_on_its_endpoint(campaign, remote):
    remote_collector(campaign, expected=EXPECTED)
    result, evaluation = check_run(campaign)
    assert not result.success and not evaluation.passed
    assert "people: no file matching inbox/crm/people_*.csv on the endpoint partner arrived by 06:30" in evaluation.description
    remote.put("inbox/crm/people_1.csv", b"email;code;first;last\n")
    result, evaluation = check_run(campaign)
    assert result.success and evaluation.passed


@pytest.mark.parametrize(
    ("expected", "message"),
    [
        ({"by": "25:00"}, "collector.expected.by: '25:00' is not a time of day as HH:MM (such as 06:00)"),
        ({"by": "06:00", "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"by": "06:00", "weekdays": "someday"}, "'someday' is not a cron day-of-week field"),
    ],
)
def test_a_wrong_expectation_is_one_sentence(sqlite_campaign, capsys, expected, message):
    path = sqlite_campaign.template(people_template(collector={**COLLECTOR, "expected": expected}))
    assert main(["templates", "validate", str(path)]) != 0
    out = capsys.readouterr()
    assert message in out.out + out.err
