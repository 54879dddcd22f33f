"""Schedules: a template's `schedule` (cron, timezone, default_status) as a Dagster
schedule on its job. A partitioned template's schedule runs the last complete day."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from campaign_pipelines.templates import Template


def schedule_name(template: Template) -> str:
    return f"{template.name}_schedule"


def last_complete_day(template: Template, at: dt.datetime) -> dt.date | None:
    """The partition a run scheduled at `at` loads: the day before, in the partitions'
    timezone (today's file or changes are not complete yet); None outside the range."""
    assert template.partitions is not None
    daily = template.partitions.daily
    day = at.astimezone(ZoneInfo(daily.timezone)).date() - dt.timedelta(days=1)
    if day < daily.start or (daily.end is not None and day >= daily.end):
        return None
    return day


def build_schedule(template: Template, job: dg.JobDefinition) -> dg.ScheduleDefinition:
    schedule = template.schedule
    assert schedule is not None
    status = dg.DefaultScheduleStatus.RUNNING if schedule.default_status == "running" else dg.DefaultScheduleStatus.STOPPED
    options = {
        "name": schedule_name(template),
        "cron_schedule": schedule.cron,
        "execution_timezone": schedule.timezone,
        "job": job,
        "default_status": status,
        "description": f"Runs {template.name} at '{schedule.cron}' ({schedule.timezone}).",
    }
    if template.partitions is None:
        return dg.ScheduleDefinition(**options)

    @dg.schedule(**options)
    def run_last_complete_day(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        at = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        day = last_complete_day(template, at)
        if day is None:
            return dg.SkipReason(f"the day before {at:%Y-%m-%d} is outside {template.name}'s partitions")
        key = day.isoformat()
        return dg.RunRequest(run_key=key, partition_key=key)

    return run_last_complete_day
