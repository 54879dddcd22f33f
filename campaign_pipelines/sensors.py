"""Sensors: the file collector of each template with a `collector`, and the run status
sensors that give killed or cancelled runs their Campaign status.

The collector watches the data folder, or the endpoint its template's source names (an
SFTP server, a bucket: inbox.py). It is safe to re-run at any moment. Each tick it lists
the files its glob matches, in name order, and for each one:
  - not complete yet (marker missing, or size and mtime or ETag changed since the last
    tick): waits;
  - complete, with no run yet: requests one; the run key (path, size, mtime or ETag, and
    the content's SHA-256 or ETag) names this content, so the same file is never imported
    twice, and the same name with new content is a new file;
  - its run has ended: moves it to `archive` (success, run id in the name) or `error`
    (on an endpoint: a rename on SFTP, a copy then delete on S3).
What a tick decides rests on the files and on the runs in the instance, not on memory:
a crash between a run's end and the move only delays the move to the next tick. The
cursor (durable in the instance) only remembers what the last tick saw and the hashes
already computed.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import dagster as dg

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.inbox import EndpointInbox, LocalInbox, Seen, archived_name, file_key, open_inbox
from campaign_pipelines.jobs import run_config
from campaign_pipelines.names import ARCHIVE_TAG, FILE_KEY_TAG, FILE_TAG, STATUS_TAG, TEMPLATE_TAG
from campaign_pipelines.templates import Collector, ImportTemplate
from resources.endpoints import endpoint_resource_key

SETTLED = {dg.DagsterRunStatus.SUCCESS: "archive", dg.DagsterRunStatus.FAILURE: "error", dg.DagsterRunStatus.CANCELED: "error"}


def collector_name(template: ImportTemplate) -> str:
    return f"{template.name}_collector"


class CollectorTick:
    """One evaluation of a collector: what to request, what to move, what to remember."""

    def __init__(self, template: ImportTemplate, inbox: LocalInbox | EndpointInbox, cursor: str | None, log: Any):
        assert template.collector is not None
        self.template = template
        self.collector: Collector = template.collector
        self.inbox = inbox
        self.log = log
        state = json.loads(cursor) if cursor else {}
        self.seen_before: dict[str, list[Any]] = state.get("seen", {})
        self.digests_before: dict[str, list[Any]] = state.get("digests", {})
        self.skipped_before: dict[str, list[Any]] = state.get("skipped", {})
        self.unmoved_before: dict[str, str] = state.get("unmoved", {})
        self.seen: dict[str, list[Any]] = {}
        self.digests: dict[str, list[Any]] = {}
        self.skipped: dict[str, list[Any]] = {}
        self.unmoved: dict[str, str] = {}  # file name: the run whose file could not be moved

    @property
    def cursor(self) -> str:
        state = {"seen": self.seen, "digests": self.digests, "skipped": self.skipped, "unmoved": self.unmoved}
        return json.dumps(state, sort_keys=True)

    def _skip(self, name: str, identity: list[Any], reason: str) -> None:
        """Set a file aside with a reason, logged once per version of the file (no hot loop)."""
        self.skipped[name] = identity
        if self.skipped_before.get(name) != identity:
            self.log.warning(f"{self.template.name}: skipped {name}: {reason}")

    def is_complete(self, seen: Seen) -> bool:
        """Its marker is there, or (without one) it did not change between two ticks."""
        if self.collector.ready_marker:
            return self.inbox.marked(seen, self.collector.ready_marker)
        return self.seen_before.get(seen.name) == seen.identity

    def digest(self, seen: Seen) -> str | None:
        cached = self.digests_before.get(seen.name)
        if cached and cached[:2] == seen.identity:
            digest = cached[2]
        else:
            try:
                digest = self.inbox.digest(seen)
            except FileNotFoundError:
                return None
            except (OSError, CampaignError) as exc:
                self._skip(seen.name, seen.identity, f"unreadable ({getattr(exc, 'strerror', None) or exc})")
                return None
        self.digests[seen.name] = [*seen.identity, digest]
        return digest

    def settle(self, seen: Seen, run: dg.DagsterRun, instance: dg.DagsterInstance) -> bool:
        """The file's run has ended: archive it (success) or set it aside in error/; the run's
        tag `campaign/archive` says where. When the endpoint refuses (no permission, gone
        away), the run's load stands, its run key keeps the file from a second import, the
        tag and one warning say why, and the next ticks try again. Whether it moved."""
        folder = self.collector.archive if run.status == dg.DagsterRunStatus.SUCCESS else self.collector.error
        try:
            moved = self.inbox.move(seen, folder, archived_name(PurePosixPath(seen.name).name, run.run_id), self.collector.ready_marker)
        except FileNotFoundError:
            return True  # moved by someone else since the listing
        except (OSError, CampaignError) as exc:
            self.unmoved[seen.name] = run.run_id
            if self.unmoved_before.get(seen.name) != run.run_id:
                reason = getattr(exc, "strerror", None) or str(exc)
                self.log.warning(f"{self.template.name}: could not move {seen.name} after run {run.run_id}: {reason} (tried again each tick)")
                instance.add_run_tags(run.run_id, {ARCHIVE_TAG: f"not archived: {reason}"})
            return False
        instance.add_run_tags(run.run_id, {ARCHIVE_TAG: moved})
        self.log.info(f"{self.template.name}: run {run.run_id} {run.status.value.lower()}; moved {seen.name} to {moved}")
        return True

    def evaluate(self, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
        complete: list[tuple[Seen, str]] = []
        for seen in self.inbox.candidates(self.collector.watch, self.collector.ready_marker, self._skip):
            self.seen[seen.name] = seen.identity
            if self.is_complete(seen) and (digest := self.digest(seen)) is not None:
                complete.append((seen, file_key(seen, digest)))
        runs = {}
        if complete:
            keys = [key for _, key in complete]
            filters = dg.RunsFilter(tags={TEMPLATE_TAG: self.template.name, FILE_KEY_TAG: keys})
            for run in instance.get_runs(filters=filters):
                runs.setdefault(run.tags[FILE_KEY_TAG], run)  # newest first
        requests = []
        for seen, key in complete:
            run = runs.get(key)
            if run is None:
                requests.append(
                    dg.RunRequest(
                        run_key=key,
                        run_config=run_config(self.template, {"file": seen.name}),
                        tags={FILE_TAG: self.inbox.where(seen.name), FILE_KEY_TAG: key},
                    )
                )
            elif run.status in SETTLED and self.settle(seen, run, instance):
                del self.seen[seen.name]
                self.digests.pop(seen.name, None)
        return requests


def build_collector(template: ImportTemplate, job: dg.JobDefinition, tick: type[CollectorTick] = CollectorTick) -> dg.SensorDefinition:
    """The template's collector; `tick`: how one evaluation decides (a multiple import's:
    drop_collector.DropTick)."""
    collector = template.collector
    assert collector is not None
    status = dg.DefaultSensorStatus.RUNNING if collector.default_status == "running" else dg.DefaultSensorStatus.STOPPED
    endpoint = template.endpoint
    where = f" on the endpoint {endpoint}" if endpoint else ""
    what = "each complete drop (a folder)" if template.parts else "each complete file"
    it = "its files" if template.parts else "it"

    @dg.sensor(
        name=collector_name(template),
        job=job,
        minimum_interval_seconds=collector.interval_seconds,
        default_status=status,
        description=f"Imports {what} matching {collector.watch}{where} with {template.name}, in name order, "
        f"then moves {it} to {collector.archive} (or {collector.error} when its run failed).",
        required_resource_keys={"file_store", *([endpoint_resource_key(endpoint)] if endpoint else [])},
    )
    def collect(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        evaluation = tick(template, open_inbox(endpoint, context.resources), context.cursor, context.log)
        try:
            requests = evaluation.evaluate(context.instance)
        except CampaignError as exc:  # the inbox cannot be listed: the tick says why; the next one tries again
            context.log.warning(f"{template.name}: {exc}")
            return dg.SensorResult(skip_reason=str(exc), cursor=context.cursor)
        return dg.SensorResult(run_requests=requests, cursor=evaluation.cursor)

    return collect


def _campaign_run(run: dg.DagsterRun) -> bool:
    return TEMPLATE_TAG in run.tags


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.CANCELED,
    name="campaign_cancelled_runs",
    description="Tags cancelled template runs campaign/status=cancelled (their transaction was rolled back).",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def cancelled_runs(context: dg.RunStatusSensorContext) -> None:
    if _campaign_run(context.dagster_run):
        context.instance.add_run_tags(context.dagster_run.run_id, {STATUS_TAG: "cancelled"})


@dg.run_failure_sensor(
    name="campaign_failed_runs",
    description="Tags template runs that died without a status (killed, out of memory) campaign/status=failed.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def failed_runs(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    if _campaign_run(run) and STATUS_TAG not in run.tags:
        context.instance.add_run_tags(run.run_id, {STATUS_TAG: "failed"})
