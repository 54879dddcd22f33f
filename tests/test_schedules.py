"""Schedules from templates: definitions, run requests at given times, template errors."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from campaign_pipelines.code_location import build_definitions
from campaign_pipelines.errors import TemplateError
from campaign_pipelines.templates import parse_template
from tests.helpers import export_template, people_file, people_template

PARIS = ZoneInfo("Europe/Paris")


def evaluate(deployment, name: str, at: dt.datetime) -> list:
    repository = build_definitions(deployment.settings).get_repository_def()
    schedule = repository.get_schedule_def(name)
    context = dg.build_schedule_context(
        instance=deployment.instance, scheduled_execution_time=at, repository_def=repository
    )
    data = schedule.evaluate_tick(context)
    return [*(data.run_requests or []), *([data.skip_message] if data.skip_message else [])]


def test_a_schedule_runs_its_template_job_stopped_unless_told(sqlite_campaign):
    campaign = sqlite_campaign
    campaign.template(people_template(schedule={"cron": "0 2 * * *", "timezone": "Europe/Paris"}))
    campaign.template(people_template(name="people_on", schedule={"cron": "30 6 * * 1-5", "default_status": "running"}))
    repository = build_definitions(campaign.settings).get_repository_def()
    nightly, weekdays = repository.get_schedule_def("people_schedule"), repository.get_schedule_def("people_on_schedule")
    assert (nightly.job_name, nightly.cron_schedule, nightly.execution_timezone) == ("people", "0 2 * * *", "Europe/Paris")
    assert nightly.default_status == dg.DefaultScheduleStatus.STOPPED
    assert (weekdays.execution_timezone, weekdays.default_status) == ("UTC", dg.DefaultScheduleStatus.RUNNING)

    # The request runs the template as it stands: its default file.
    (request,) = evaluate(campaign, "people_schedule", dt.datetime(2025, 3, 4, 2, 0, tzinfo=PARIS))
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Ann;Lee"))
    result = campaign.run_request("people", request)
    assert (result.status, result.counts["rows_inserted"]) == ("finished", 1)
    assert campaign.instance.get_run_by_id(result.run_id).tags["campaign/template"] == "people"


def test_a_partitioned_schedule_loads_the_last_complete_day_in_its_timezone(sqlite_campaign):
    campaign = sqlite_campaign
    campaign.template(
        people_template(
            schedule={"cron": "30 0 * * *", "timezone": "Europe/Paris"},
            partitions={"daily": {"start": "2025-01-01", "end": "2025-03-10", "timezone": "Europe/Paris",
                                  "path": "inbox/people_{date:%Y%m%d}.csv"}},
        )
    )
    # 00:30 in Paris is still the day before in UTC: the partition is the Paris day before.
    (request,) = evaluate(campaign, "people_schedule", dt.datetime(2025, 3, 4, 0, 30, tzinfo=PARIS))
    assert (request.partition_key, request.run_key) == ("2025-03-03", "2025-03-03")
    campaign.file("inbox/people_20250303.csv", people_file("ann@x.org;C1;Ann;Lee"))
    result = campaign.run_request("people", request)
    assert result.counts["rows_inserted"] == 1
    assert campaign.instance.get_run_by_id(result.run_id).tags["dagster/partition"] == "2025-03-03"

    (skip,) = evaluate(campaign, "people_schedule", dt.datetime(2025, 3, 11, 0, 30, tzinfo=PARIS))
    assert "outside people's partitions" in skip


def test_an_export_schedule(sqlite_campaign):
    campaign = sqlite_campaign
    campaign.template(export_template(schedule={"cron": "0 6 * * 1-5", "timezone": "Europe/Paris"}))
    (request,) = evaluate(campaign, "out_schedule", dt.datetime(2025, 3, 4, 6, 0, tzinfo=PARIS))
    result = campaign.run_request("out", request)
    assert result.status == "finished" and (campaign.data_dir / "outbox/out.csv").read_text() == "email\n"


@pytest.mark.parametrize(
    "top_level, message",
    [
        ({"schedule": {"cron": "0 25 * * *"}}, "schedule.cron: '0 25 * * *' is not a valid cron expression"),
        ({"schedule": {"cron": "0 2 * * *", "timezone": "Europe/Pariss"}}, "schedule.timezone: unknown timezone 'Europe/Pariss'"),
        ({"schedule": {"cron": "0 2 * * *", "default_status": "on"}}, "schedule.default_status"),
        ({"partitions": {"daily": {"start": "2025-02-01", "end": "2025-01-01", "path": "inbox/p_{date:%Y%m%d}.csv"}}},
         "partitions.daily: end (2025-01-01) must come after start (2025-02-01)"),
        ({"partitions": {"daily": {"start": "2025-01-01", "path": "inbox/people.csv"}}},
         "partitions.daily: path must hold the partition's date"),
        ({"partitions": {"daily": {"start": "2025-01-01"}}}, "partitions.daily.path: required"),
        ({"partitions": {"daily": {"start": "2025-01-01", "path": "inbox/{day}/p_{date:%Y%m%d}.csv"}}},
         "partitions.daily.path: only {date:…} can be filled in ('day')"),
        ({"source": {"path": "inbox/p_{run_id}.csv"}}, "source.path: only {date:…} can be filled in ('run_id')"),
        ({"partitions": {"daily": {"start": "2025-01-01", "timezone": "Mars/Olympus", "path": "p_{date:%Y%m%d}.csv"}}},
         "partitions.daily.timezone: unknown timezone"),
    ],
)
def test_recurring_keys_errors_name_the_key(top_level, message):
    with pytest.raises(TemplateError) as error:
        parse_template(people_template(**top_level), "people.yaml")
    assert message in str(error.value)


def test_export_partitions_need_a_date_column():
    with pytest.raises(TemplateError, match=r"partitions\.daily\.column: required"):
        parse_template(export_template(partitions={"daily": {"start": "2025-01-01"}}), "out.yaml")
    with pytest.raises(TemplateError, match=r"partitions\.daily\.column: 'email' must be a timestamp or date column"):
        parse_template(export_template(partitions={"daily": {"start": "2025-01-01", "column": "email"}}), "out.yaml")
