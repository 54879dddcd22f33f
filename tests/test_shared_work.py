"""Celery workers that share no folder (issue 27, item 6): each worker has a data folder of
its own, the launcher another; they share the broker (RabbitMQ), the Dagster instance and
the Campaign database (PostgreSQL), and a bucket on the real S3 server, which holds the
source file, the delivered export and the work data (`CAMPAIGN_WORK_ENDPOINT`)."""

from __future__ import annotations

import uuid

import yaml

from tests.celery_workers import Workers
from tests.helpers import export_template, failing_writes, people_file, people_template, work_folders
from tests.test_endpoints import BUCKET, Remote, s3_declaration
from tests.test_executors import FIRST, SECOND, cli, deployment, step_pids


def test_celery_workers_with_no_shared_folder_share_the_work_data_through_the_bucket(tmp_path, postgres_url, monkeypatch, celery_env):
    campaign = deployment(tmp_path / "celery", postgres_url, monkeypatch, "celery")
    crm = Remote(campaign, "s3", monkeypatch)  # the CRM's bucket folder: the file comes from there, the export goes there
    work = s3_declaration(monkeypatch, f"work-{uuid.uuid4().hex[:12]}")
    campaign.endpoints_file.write_text(yaml.safe_dump({"partner": crm.declaration, "work": work}, sort_keys=False))
    monkeypatch.setenv("CAMPAIGN_WORK_ENDPOINT", "work")
    campaign.template(people_template(source={"endpoint": "partner", "path": "inbox/people.csv", "delimiter": ";"}))
    campaign.template(export_template(destination={"endpoint": "partner", "path": "outbox/emails.csv"}))
    shared = crm.declared("work").with_environment()
    own = {name: tmp_path / f"{name}-data" for name in ("w1", "w2")}
    for folder in own.values():
        folder.mkdir()
    workers = Workers(tmp_path, celery_env, env={name: {"CAMPAIGN_DATA_DIR": str(folder)} for name, folder in own.items()})
    try:
        crm.put("inbox/people.csv", FIRST.encode())
        code, first = cli("run", "people")
        assert code == 0, first
        # A merge that fails: its work data stays, on the bucket, for the re-execution.
        crm.put("inbox/people.csv", SECOND.encode())
        with failing_writes(campaign.engine):
            code, failed = cli("run", "people")
        assert code == 1 and "disk on fire" in failed["error"], failed
        assert shared.folders() == [failed["run_id"]]
        assert work_folders(campaign.data_dir) == []  # the launcher's folder holds none of it
        code, again = cli("rerun", failed["run_id"], "--from-failure")
        assert code == 0, again
        code, exported = cli("run", "out")
        assert code == 0, exported
        seen = {name: workers.pids(name) for name in workers.processes}
    finally:
        workers.stop()
    assert (first["rows_inserted"], again["rows_inserted"], again["rows_updated"]) == (2, 1, 1)
    assert [r["first_name"] for r in campaign.rows("recipient")] == ["Annie", "Bob", "Cid"]
    assert crm.get("outbox/emails.csv").decode().splitlines() == ["email", "ann@x.org", "bob@x.org", "cid@x.org"]
    # Steps of one run ran on both workers, which have no folder in common.
    runs = [first, failed, again, exported]
    workers_of = [{name for name in seen if seen[name] & set(step_pids(run["run_id"]).values())} for run in runs]
    assert set(seen) in workers_of, (seen, workers_of)
    # Succeeded: no work data left, on the bucket or in any folder.
    assert shared.folders() == []
    assert all(work_folders(folder) == [] for folder in [campaign.data_dir, *own.values()])
    assert BUCKET in crm.endpoint.uri("")
