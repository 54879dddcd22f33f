"""Daily partitions: a template's `partitions.daily` as a Dagster partitions definition,
and what one day's run reads or writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg

from campaign_pipelines.templates import ImportTemplate, Template


def partitions_def(template: Template) -> dg.DailyPartitionsDefinition | None:
    if template.partitions is None:
        return None
    daily = template.partitions.daily
    return dg.DailyPartitionsDefinition(
        start_date=daily.start.isoformat(),
        end_date=daily.end.isoformat() if daily.end else None,
        timezone=daily.timezone,
    )


def partition_day(partition_key: str) -> dt.date:
    return dt.date.fromisoformat(partition_key)


def partition_launch(template: Template, partition_key: str) -> dict[str, Any]:
    """The launch keys a daily partition sets: for an import, that day's file. (An
    export's rows and output name follow the partition in the op.)"""
    if isinstance(template, ImportTemplate) and template.partition_path:
        return {"file": template.partition_path.format(date=partition_day(partition_key))}
    return {}
