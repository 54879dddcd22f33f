"""The file collector: real files, real sensor ticks (build_sensor_context) and real runs,
on an embedded and on a PostgreSQL-backed Dagster instance."""

from __future__ import annotations

import os

import dagster as dg
import pytest

from campaign_pipelines.code_location import build_definitions
from campaign_pipelines.names import FILE_KEY_TAG, FILE_TAG
from tests.helpers import people_file, people_template

COLLECTOR = {"watch": "inbox/crm/people_*.csv", "archive": "archive/crm", "error": "error/crm"}


class Collector:
    """Ticks a template's collector as the daemon would, keeping its cursor in between."""

    def __init__(self, deployment, name: str = "people"):
        self.deployment = deployment
        self.name = name
        self.cursor: str | None = None

    def tick(self) -> list[dg.RunRequest]:
        defs = build_definitions(self.deployment.settings)
        name = f"{self.name}_collector"
        repository = defs.get_repository_def()
        sensor = repository.get_sensor_def(name)
        # As the daemon does: the code location's resources (opened for the tick and
        # closed after it), the cursor of the last tick.
        with dg.build_sensor_context(
            instance=self.deployment.instance, cursor=self.cursor, resources=repository.get_top_level_resources()
        ) as context:
            data = sensor.evaluate_tick(context)
        self.cursor = data.cursor
        return list(data.run_requests or [])

    def run(self, requests: list[dg.RunRequest]) -> list:
        return [self.deployment.run_request(self.name, r) for r in requests]


def inbox(deployment, name: str, *lines: str) -> str:
    deployment.file(f"inbox/crm/{name}", people_file(*lines))
    return f"inbox/crm/{name}"


def archived(deployment, folder: str = "archive/crm") -> list[str]:
    path = deployment.data_dir / folder
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def request_run(deployment) -> str:
    """The id of the only run so far."""
    (run,) = deployment.instance.get_runs()
    return run.run_id


def ann_requested(deployment) -> tuple[Collector, list[dg.RunRequest]]:
    """The people collector with one file in its inbox, ticked until it asks for a run."""
    deployment.template(people_template(collector=COLLECTOR))
    collector = Collector(deployment)
    inbox(deployment, "people_1.csv", "ann@x.org;C1;Ann;Lee")
    collector.tick()
    return collector, collector.tick()


def test_complete_files_are_imported_in_name_order_once_then_archived(deployment):
    deployment.template(people_template(collector=COLLECTOR))
    collector = Collector(deployment)
    inbox(deployment, "people_2.csv", "bob@x.org;C2;Bob;Ray")
    inbox(deployment, "people_1.csv", "ann@x.org;C1;Ann;Lee")
    deployment.file("inbox/crm/other.csv", people_file("zed@x.org;C9;Zed;Roe"))  # not matched

    # First sight: a file whose size and mtime have not been seen twice may still be growing.
    assert collector.tick() == []
    requests = collector.tick()
    assert [r.tags[FILE_TAG] for r in requests] == ["inbox/crm/people_1.csv", "inbox/crm/people_2.csv"]
    assert all(r.run_key == r.tags[FILE_KEY_TAG] and r.run_key.startswith(r.tags[FILE_TAG] + "|") for r in requests)

    results = collector.run(requests)
    assert [r.status for r in results] == ["finished", "finished"]
    assert [r["email"] for r in deployment.rows("recipient", "email")] == ["ann@x.org", "bob@x.org"]  # in name order

    assert collector.tick() == []  # imported once
    assert archived(deployment) == sorted(f"people_{i}.{r.run_id}.csv" for i, r in zip((1, 2), results))
    assert sorted(p.name for p in (deployment.data_dir / "inbox/crm").iterdir()) == ["other.csv"]
    assert collector.tick() == []


def test_a_growing_file_waits_until_it_stops_changing(deployment):
    deployment.template(people_template(collector=COLLECTOR))
    collector = Collector(deployment)
    path = deployment.data_dir / inbox(deployment, "people_1.csv", "ann@x.org;C1;Ann;Lee")
    assert collector.tick() == []
    with path.open("a") as f:  # still being written
        f.write("bob@x.org;C2;Bob;Ray\n")
    assert collector.tick() == []
    (request,) = collector.tick()
    (result,) = collector.run([request])
    assert result.counts["rows_inserted"] == 2


def test_a_file_appended_to_after_its_claim_is_not_read_by_the_claiming_run(deployment):
    """Stable over two ticks, then appended to before its run reads it: that run loads
    nothing, and the whole file is collected as new content, once."""
    collector, (request,) = ann_requested(deployment)
    with (deployment.data_dir / "inbox/crm/people_1.csv").open("a") as f:
        f.write("bob@x.org;C2;Bob;Ray\n")
    (failed,) = collector.run([request])
    assert failed.status == "failed" and deployment.rows("recipient", "email") == []
    assert "inbox/crm/people_1.csv changed since the collector found it complete (" in failed.error
    assert collector.tick() == []
    (again,) = collector.tick()
    (result,) = collector.run([again])
    assert result.counts["rows_inserted"] == 2
    collector.tick()
    assert archived(deployment) == [f"people_1.{result.run_id}.csv"]


def test_ready_marker_decides_when_a_file_is_complete(deployment):
    deployment.template(people_template(collector={**COLLECTOR, "ready_marker": ".done"}))
    collector = Collector(deployment)
    path = deployment.data_dir / inbox(deployment, "people_1.csv", "ann@x.org;C1;Ann;Lee")
    assert collector.tick() == [] and collector.tick() == []  # stable, but no marker
    marker = path.with_name(path.name + ".done")
    marker.touch()
    os.utime(marker, ns=(path.stat().st_mtime_ns - 10**9,) * 2)  # a marker left from before this version
    assert collector.tick() == []
    marker.touch()
    (request,) = collector.tick()  # no second tick needed with a marker
    collector.run([request])
    collector.tick()
    assert archived(deployment) == sorted([f"people_1.{request_run(deployment)}.csv", f"people_1.{request_run(deployment)}.csv.done"])
    assert list((deployment.data_dir / "inbox/crm").iterdir()) == []


def test_exactly_once_across_a_restart_and_a_crash_before_the_move(deployment):
    collector, requests = ann_requested(deployment)
    # The daemon may evaluate a tick again before the run exists: the same run key.
    again = Collector(deployment)
    again.cursor = collector.cursor
    assert [r.run_key for r in again.tick()] == [r.run_key for r in requests]
    collector.run(requests)

    # The process died after the run, before the file was moved, and the cursor was lost.
    restarted = Collector(deployment)
    assert restarted.tick() == []
    assert restarted.tick() == []  # complete again: its run exists, so it is archived, not re-imported
    assert len(deployment.instance.get_runs()) == 1
    assert archived(deployment) == [f"people_1.{request_run(deployment)}.csv"]
    assert deployment.rows("recipient", "email") == [{"email": "ann@x.org"}]


def test_the_same_name_with_new_content_is_a_new_file(deployment):
    collector, first = ann_requested(deployment)
    collector.run(first)
    collector.tick()  # archived
    inbox(deployment, "people_1.csv", "ann@x.org;C1;Ann;Lee-Smith")
    collector.tick()
    (second,) = collector.tick()
    assert second.run_key != first[0].run_key
    collector.run([second])
    assert deployment.rows("recipient", "last_name") == [{"last_name": "Lee-Smith"}]


def test_a_failed_run_moves_its_file_to_error_and_the_collector_goes_on(deployment):
    deployment.template(people_template(collector=COLLECTOR))
    collector = Collector(deployment)
    deployment.file("inbox/crm/people_1.csv", "mail;crm\nann@x.org;C1\n")  # columns missing
    inbox(deployment, "people_2.csv", "bob@x.org;C2;Bob;Ray")
    collector.tick()
    bad, good = collector.tick()
    failed, finished = collector.run([bad, good])
    assert (failed.success, failed.status, finished.status) == (False, "failed", "finished")
    assert "people_1.csv" in failed.error and "email" in failed.error
    collector.tick()
    assert archived(deployment, "error/crm") == [f"people_1.{failed.run_id}.csv"]
    assert archived(deployment) == [f"people_2.{finished.run_id}.csv"]


def test_a_file_gone_between_tick_and_run_fails_that_run_only(deployment):
    deployment.template(people_template(collector=COLLECTOR))
    collector = Collector(deployment)
    first = deployment.data_dir / inbox(deployment, "people_1.csv", "ann@x.org;C1;Ann;Lee")
    inbox(deployment, "people_2.csv", "bob@x.org;C2;Bob;Ray")
    collector.tick()
    requests = collector.tick()
    first.unlink()
    gone, present = collector.run(requests)
    assert not gone.success and "people_1.csv" in gone.error
    assert present.counts["rows_inserted"] == 1
    assert collector.tick() == []  # carries on, nothing to move for the vanished file
    assert archived(deployment) == [f"people_2.{present.run_id}.csv"]


def test_unreadable_entries_are_skipped_with_a_reason_logged_once(deployment, capfd):
    deployment.template(people_template(collector=COLLECTOR))
    collector = Collector(deployment)
    inbox(deployment, "people_1.csv", "ann@x.org;C1;Ann;Lee")
    os.mkfifo(deployment.data_dir / "inbox/crm/people_0.csv")  # opening it would block a tick
    outside = deployment.root / "secret.csv"
    outside.write_text(people_file("eve@x.org;C6;Eve;Spy"))
    (deployment.data_dir / "inbox/crm/people_9.csv").symlink_to(outside)  # leads out of the data dir
    collector.tick()
    (request,) = collector.tick()
    collector.tick()
    assert request.tags[FILE_TAG] == "inbox/crm/people_1.csv"
    # The sensor's log (the tick's log in the UI) is written to stderr too.
    skipped = [line for line in capfd.readouterr().err.splitlines() if "WARNING - people: skipped" in line]
    assert len(skipped) == 2, skipped  # once each, not at every tick
    assert any("people_0.csv: not a regular file" in m for m in skipped)
    assert any("people_9.csv" in m and "outside CAMPAIGN_DATA_DIR" in m for m in skipped)


def test_collector_template_errors_name_the_key(sqlite_campaign):
    from campaign_pipelines.errors import TemplateError
    from campaign_pipelines.templates import parse_template

    for collector, key in (
        ({"watch": "../elsewhere/*.csv"}, "collector.watch"),
        ({"watch": "/etc/*.csv"}, "collector.watch"),
        ({"watch": "inbox/*.csv", "archive": "../archive"}, "collector.archive"),
        ({"watch": "inbox/*.csv", "ready_marker": "x/.done"}, "collector.ready_marker"),
    ):
        with pytest.raises(TemplateError, match=key.replace(".", r"\.")):
            parse_template(people_template(collector=collector), "people.yaml")


def test_a_header_only_file_is_an_empty_delta_and_is_archived(deployment):
    """A night with no change in the CRM: the run finishes, writes nothing, and the file
    goes to the archive like any other."""
    deployment.template(people_template(collector=COLLECTOR))
    collector = Collector(deployment)
    inbox(deployment, "people_1.csv")  # the header alone
    assert collector.tick() == []
    (result,) = collector.run(collector.tick())
    assert result.status == "finished" and result.counts["rows_read"] == 0
    assert deployment.rows("recipient") == []
    assert collector.tick() == []
    assert archived(deployment) == [f"people_1.{result.run_id}.csv"]
