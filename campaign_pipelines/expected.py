"""Campaign's "process missing file": a collector's `expected: {by: "06:00", timezone,
weekdays}` says a file arrives every such day by that time. At that time a schedule runs
the check `file_arrived` on the template's inbox asset: it passes when the collector asked
for a run of a file since midnight, or a matching file waits in the inbox (an endpoint's or
the data folder); otherwise it fails with ERROR severity and fails its run with the same
sentence, so whatever alerts on failed runs alerts on a missing file."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import dagster as dg

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.inbox import open_inbox
from campaign_pipelines.names import FILE_KEY_TAG, TEMPLATE_TAG, inbox_key
from campaign_pipelines.templates import Expected, ImportTemplate
from resources.endpoints import endpoint_resource_key

EXPECTED_TAG = "campaign/expected"  # the template whose file the run checks


def expected_file_job_name(template: ImportTemplate) -> str:
    return f"{template.name}_expected_file"


def local_now(timezone: str) -> dt.datetime:
    """The time in the expectation's timezone (one place, so a test can set the hour)."""
    return dt.datetime.now(ZoneInfo(timezone))


def since_midnight(now: dt.datetime) -> dt.datetime:
    """The start of `now`'s day, in UTC: Dagster's run storages compare create times as
    naive UTC, so a Paris midnight given as 00:00+01:00 would be read as 00:00 UTC (and
    between 23:00 and 24:00 UTC no run of the day would count)."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)


def arrival(template: ImportTemplate, expected: Expected, collected: int, waiting: list[str], unreachable: str | None,
            now: dt.datetime) -> dg.AssetCheckResult:
    """The check's verdict on what arrived since midnight (in the expectation's timezone)."""
    collector = template.collector
    assert collector is not None
    where = f" on the endpoint {template.endpoint}" if template.endpoint else ""
    metadata = {
        "collected_since_midnight": collected,
        "waiting_in_inbox": dg.MetadataValue.text(", ".join(waiting) or "none"),
        "expected_by": dg.MetadataValue.text(f"{expected.by} {expected.timezone}"),
    }
    if collected or waiting:
        return dg.AssetCheckResult(
            passed=True, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
            description=f"{collected} file(s) collected since 00:00, {len(waiting)} waiting in the inbox.",
        )
    why = f" (the inbox could not be listed: {unreachable})" if unreachable else ""
    return dg.AssetCheckResult(
        passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
        description=(
            f"{template.name}: no file matching {collector.watch}{where} arrived by {expected.by} ({expected.timezone}) "
            f"on {now.date().isoformat()}: none collected since 00:00 and none waiting in the inbox{why}."
        ),
    )


def expected_file_check(template: ImportTemplate) -> dg.AssetChecksDefinition:
    collector = template.collector
    assert collector is not None and collector.expected is not None
    expected = collector.expected
    endpoint = template.endpoint

    @dg.asset_check(
        asset=inbox_key(template.name),
        name="file_arrived",
        blocking=True,
        description=f"A file matching {collector.watch} arrives by {expected.by} ({expected.timezone}), days '{expected.weekdays}'.",
        required_resource_keys={"file_store", *([endpoint_resource_key(endpoint)] if endpoint else [])},
    )
    def file_arrived(context) -> Iterator[dg.AssetCheckResult]:  # noqa: ANN001  (Dagster refuses the annotation as text)
        now = local_now(expected.timezone)
        runs = context.instance.get_runs(
            dg.RunsFilter(tags={TEMPLATE_TAG: template.name}, created_after=since_midnight(now))
        )
        collected = sum(1 for run in runs if FILE_KEY_TAG in run.tags)
        waiting: list[str] = []
        unreachable = None
        try:
            seen = open_inbox(endpoint, context.resources).candidates(template.collected_files or collector.watch, collector.ready_marker, lambda *_: None)
            waiting = [s.name for s in seen]
        except CampaignError as exc:
            unreachable = str(exc)
        verdict = arrival(template, expected, collected, waiting, unreachable, now)
        yield verdict
        if not verdict.passed:
            # The run fails with the check's sentence, as an import's does, rather than
            # with Dagster's "blocking asset check failed" error and its stack trace.
            raise dg.Failure(description=verdict.description, allow_retries=False)

    return file_arrived


def expected_file_definitions(templates: list[ImportTemplate]) -> dg.Definitions:
    """The check, its job and its schedule for each template whose collector expects a file;
    the schedule is on when the collector is."""
    checks, jobs, schedules = [], [], []
    for template in templates:
        collector = template.collector
        if collector is None or collector.expected is None:
            continue
        expected = collector.expected
        check = expected_file_check(template)
        job = dg.define_asset_job(
            expected_file_job_name(template),
            selection=dg.AssetSelection.checks(check),
            description=f"Checks that a file of {template.name} arrived by {expected.by} ({expected.timezone}).",
            tags={EXPECTED_TAG: template.name},
        )
        status = dg.DefaultScheduleStatus.RUNNING if collector.default_status == "running" else dg.DefaultScheduleStatus.STOPPED
        schedule = dg.ScheduleDefinition(
            name=f"{expected_file_job_name(template)}_schedule", job=job, cron_schedule=expected.cron,
            execution_timezone=expected.timezone, default_status=status,
            description=f"Fails when no file of {template.name} arrived by {expected.by} ({expected.timezone}).",
        )
        checks.append(check)
        jobs.append(job)
        schedules.append(schedule)
    return dg.Definitions(asset_checks=checks, jobs=jobs, schedules=schedules)
