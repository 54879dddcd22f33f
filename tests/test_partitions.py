"""Daily partitions: one run per day's file, re-runs that converge, a missing day that
fails alone, and exports of the rows a day changed; on both kinds of deployment."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from campaign_pipelines.code_location import build_definitions
from tests.helpers import export_template, people_file, people_template

DAILY = {"daily": {"start": "2025-01-01", "end": "2025-02-01", "timezone": "Europe/Paris",
                   "path": "inbox/crm/people_{date:%Y%m%d}.csv"}}
DAYS = {
    "2025-01-01": ["ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray"],
    "2025-01-02": ["ann@x.org;C1;Ann;Lee-Smith", "cid@x.org;C3;Cid;Roe"],  # Ann married on the 2nd
    "2025-01-03": ["dan@x.org;C4;Dan;Poe"],
}


def day_file(deployment, key: str, *lines: str) -> None:
    deployment.file(f"inbox/crm/people_{key.replace('-', '')}.csv", people_file(*lines))


def test_a_partitioned_job_reads_each_days_file(deployment):
    deployment.template(people_template(partitions=DAILY))
    job = build_definitions(deployment.settings).resolve_job_def("people")
    partitions = job.partitions_def
    assert (partitions.start.date(), partitions.end.date(), partitions.timezone) == (
        dt.date(2025, 1, 1), dt.date(2025, 2, 1), "Europe/Paris")
    assert partitions.get_partition_keys()[-1] == "2025-01-31"
    config = job.partitioned_config.get_run_config_for_partition_key("2025-01-02")
    assert config["ops"]["people_steps"]["config"] == {"file": "inbox/crm/people_20250102.csv"}


def test_a_three_day_backfill_loads_each_day_and_a_rerun_converges(deployment):
    deployment.template(people_template(partitions=DAILY))
    for key, lines in DAYS.items():
        day_file(deployment, key, *lines)
    results = [deployment.run("people", partition_key=key) for key in DAYS]  # in date order
    assert [(r.counts["rows_inserted"], r.counts["rows_updated"]) for r in results] == [(2, 0), (1, 1), (1, 0)]
    assert [deployment.instance.get_run_by_id(r.run_id).tags["dagster/partition"] for r in results] == list(DAYS)
    after_backfill = deployment.snapshot()
    assert [(r["email"], r["last_name"]) for r in deployment.rows("recipient", "email", "last_name")] == [
        ("ann@x.org", "Lee-Smith"), ("bob@x.org", "Ray"), ("cid@x.org", "Roe"), ("dan@x.org", "Poe")]

    rerun = deployment.run("people", partition_key="2025-01-02")
    assert (rerun.counts["rows_unchanged"], rerun.counts["rows_inserted"], rerun.counts["rows_updated"]) == (2, 0, 0)
    assert deployment.snapshot() == after_backfill  # not even updated_at moved


def test_a_missing_days_file_fails_that_partition_alone(deployment):
    deployment.template(people_template(partitions=DAILY))
    day_file(deployment, "2025-01-01", *DAYS["2025-01-01"])
    day_file(deployment, "2025-01-03", *DAYS["2025-01-03"])
    first, missing, third = (deployment.run("people", partition_key=k) for k in DAYS)
    assert (first.status, third.status) == ("finished", "finished")
    assert (missing.success, missing.status) == (False, "failed")
    assert "inbox/crm/people_20250102.csv" in missing.error and "does not exist" in missing.error, missing.error
    assert len(deployment.rows("recipient")) == 3


def test_an_export_partition_writes_the_rows_its_day_changed(deployment):
    deployment.template(people_template())
    deployment.file("inbox/people.csv", people_file(*DAYS["2025-01-01"], "cid@x.org;C3;Cid;Roe"))
    deployment.run("people")
    # Stored in UTC; the partitions' days are Paris days (UTC+1 in January).
    changed = {"ann@x.org": "2025-01-01 23:30:00", "bob@x.org": "2025-01-02 22:59:59", "cid@x.org": "2025-01-02 23:00:00"}
    table = sa.table("recipient", sa.column("email"), sa.column("updated_at", sa.DateTime(timezone=True)))
    with deployment.engine.begin() as conn:
        for email, when in changed.items():
            stamp = dt.datetime.fromisoformat(when).replace(tzinfo=dt.UTC)
            conn.execute(sa.update(table).where(table.c.email == email).values(updated_at=stamp))
    deployment.template(
        export_template(
            source={"differential": {"column": "updated_at"}},
            destination={"path": "outbox/changed_{date:%Y%m%d}.csv"},
            partitions={"daily": {"start": "2025-01-01", "timezone": "Europe/Paris"}},
        )
    )
    result = deployment.run("out", partition_key="2025-01-02")
    assert result.counts["rows_exported"] == 2
    assert (deployment.data_dir / "outbox/changed_20250102.csv").read_text() == "email\nann@x.org\nbob@x.org\n"
    with deployment.engine.connect() as conn:  # a backfilled day leaves the nightly differential alone
        assert conn.execute(sa.text("SELECT count(*) FROM export_watermark")).scalar() == 0
    assert deployment.run("out", partition_key="2025-01-03").counts["rows_exported"] == 1
