"""The production instance of deploy/dagster.yaml, for real: runs, event logs and
schedules in PostgreSQL, queued runs worked off by a real `dagster-daemon`, and jobs
launched and backfilled with Dagster's own CLI, as an operator would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from resources.campaign_db import get_engine
from campaign_pipelines.names import graph_name
from tests.celery_workers import Workers
from tests.helpers import SERVICES, export_template, people_file, people_template, stage_tables, work_folders

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAILY = {"daily": {"start": "2025-01-01", "path": "inbox/crm/people_{date:%Y%m%d}.csv"}}


class Production:
    def __init__(self, root: Path, env: dict[str, str], db_url: str):
        self.root, self.env, self.db_url = root, env, db_url
        self.log = root / "daemon.log"
        self.instance = dg.DagsterInstance.get()  # DAGSTER_HOME is set: deploy/dagster.yaml
        # Dagster's CLI leaves its code server behind when it exits: each command runs in
        # a session of its own, ended with the test.
        self.sessions: list[int] = []

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def dagster(self, *args: str) -> str:
        """Dagster's CLI on this deployment's workspace."""
        command = subprocess.Popen(
            [str(BIN / "dagster"), *args, "-w", str(REPO / "workspace.yaml")],
            cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        self.sessions.append(command.pid)
        out, err = command.communicate(timeout=120)
        assert command.returncode == 0, out + err
        return out

    def end_sessions(self) -> None:
        """SIGTERM each session; SIGKILL what is left after a grace period (a code server
        was seen here to outlive SIGTERM by minutes)."""

        def signal_all(sig: int) -> list[int]:
            alive = []
            for session in self.sessions:
                try:
                    os.killpg(session, sig)
                    alive.append(session)
                except ProcessLookupError:
                    pass
            return alive

        signal_all(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while signal_all(0) and time.monotonic() < deadline:
            time.sleep(0.2)
        signal_all(signal.SIGKILL)

    def runs(self, job: str) -> list[dg.DagsterRun]:
        return sorted(self.instance.get_runs(dg.RunsFilter(job_name=job)), key=lambda r: r.tags.get("dagster/partition", ""))

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 150) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.5)
        pytest.fail(f"timed out waiting for {what}; daemon log:\n{self.log.read_text()[-4000:]}")


@pytest.fixture
def production(request, tmp_path, postgres_url, postgres_instance_url, monkeypatch):
    """deploy/dagster.yaml with a live daemon. The test's parameter may name the executor
    (in_process unless told; celery with the local RabbitMQ's settings) and the Campaign
    database (PostgreSQL unless told; sqlite for a file in the data folder)."""
    executor, database = getattr(request, "param", "in_process/postgresql").split("/")
    if executor == "celery":
        request.getfixturevalue("celery_env")
    db_url = f"sqlite:///{tmp_path / 'campaign.db'}" if database == "sqlite" else postgres_url
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    pg = sa.make_url(postgres_instance_url)
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": pg.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(pg.port or 5432),
        "DAGSTER_PG_USER": pg.username or "postgres",
        "DAGSTER_PG_PASSWORD": pg.password or "",
        "DAGSTER_PG_DB": pg.database,
        "CAMPAIGN_DB_URL": db_url,
        "CAMPAIGN_DATA_DIR": str(tmp_path / "data"),
        "CAMPAIGN_TEMPLATES_DIR": str(tmp_path / "templates"),
        "CAMPAIGN_EXECUTOR": executor,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    deployment = Production(tmp_path, {**os.environ, **env}, db_url)
    with deployment.log.open("w") as log:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
            cwd=REPO, env=deployment.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deployment.sessions.append(daemon.pid)
        try:
            yield deployment
        finally:
            # Let started runs end before the databases go.
            deployment.wait_for("runs to end", lambda: all(r.is_finished for r in deployment.instance.get_runs()))
            daemon.terminate()
            daemon.wait(timeout=60)
            deployment.end_sessions()  # the code servers and run workers, too
            deployment.instance.dispose()


def test_queued_runs_wait_for_their_table_and_a_backfill_loads_days_in_order(production):
    production.write("templates/people.yaml", people_template(partitions=DAILY))
    production.write("templates/import_services.yaml", SERVICES)
    production.write("templates/out.yaml", export_template())
    production.write("data/inbox/crm/people_20250101.csv", people_file("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray"))
    production.write("data/inbox/crm/people_20250102.csv", people_file("ann@x.org;C1;Ann;Lee-Smith"))
    production.write("data/inbox/services.csv", "name;label;channel\nnews;Newsletter;email\n")

    engine = get_engine(production.db_url)  # creates the Campaign tables
    with engine.connect() as blocker:
        with blocker.begin():
            # Writers of recipient wait on this lock; readers do not.
            blocker.execute(sa.text("LOCK TABLE recipient IN SHARE MODE"))
            production.dagster("job", "backfill", "-j", "people", "--partitions", "2025-01-01,2025-01-02", "--noprompt")
            production.dagster("job", "launch", "-j", "import_services")
            production.dagster("job", "launch", "-j", "out")

            def day_one_blocked_while_others_ran() -> bool:
                days = production.runs("people")
                others = production.runs("import_services") + production.runs("out")
                return (
                    len(days) == 2 and days[0].status == dg.DagsterRunStatus.STARTED
                    and len(others) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in others)
                )

            production.wait_for("the first day's run to block on its table while the others finish", day_one_blocked_while_others_ran)
            # Another table's import and an export of the same table ran; the second day
            # writes the same table as the first, so it waits in the queue.
            assert production.runs("people")[1].status == dg.DagsterRunStatus.QUEUED
            time.sleep(3)  # several daemon iterations
            assert production.runs("people")[1].status == dg.DagsterRunStatus.QUEUED

    production.wait_for("both days to load", lambda: all(r.status == dg.DagsterRunStatus.SUCCESS for r in production.runs("people")))
    day_one, day_two = production.runs("people")
    assert [r.tags["dagster/partition"] for r in (day_one, day_two)] == ["2025-01-01", "2025-01-02"]
    assert day_one.tags.get("dagster/backfill") and day_one.tags["dagster/backfill"] == day_two.tags["dagster/backfill"]
    records = {r.dagster_run.run_id: r for r in production.instance.get_run_records(dg.RunsFilter(job_name="people"))}
    assert records[day_two.run_id].start_time >= records[day_one.run_id].end_time  # one after the other, in date order
    assert [r.tags["campaign/status"] for r in (day_one, day_two)] == ["finished", "finished"]
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT email, last_name FROM recipient ORDER BY email")).all()
    assert [tuple(r) for r in rows] == [("ann@x.org", "Lee-Smith"), ("bob@x.org", "Ray")]


def test_the_daemon_runs_a_collector_that_imports_and_archives(production):
    collector = {"watch": "inbox/crm/people_*.csv", "archive": "archive/crm", "interval_seconds": 1, "default_status": "running"}
    production.write("templates/people.yaml", people_template(collector=collector))
    production.write("data/inbox/crm/people_1.csv", people_file("ann@x.org;C1;Ann;Lee"))

    archive = production.root / "data" / "archive" / "crm"
    production.wait_for("the file to be imported and archived", lambda: archive.exists() and any(archive.iterdir()))
    (run,) = production.runs("people")
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/sensor_name"] == "people_collector"
    assert [p.name for p in archive.iterdir()] == [f"people_1.{run.run_id}.csv"]
    state = next(s for s in production.instance.all_instigator_state() if s.name == "people_collector")
    ticks = production.instance.get_ticks(state.instigator_origin_id, state.selector_id)
    assert ticks and ticks[0].cursor  # the cursor lives in the instance's PostgreSQL storage
    time.sleep(3)  # more ticks: nothing more to import
    assert len(production.runs("people")) == 1


def test_a_cli_run_goes_through_the_queue_the_daemon_serves(production):
    """`campaign-pipelines run` on a queued instance with a live daemon: the run is queued,
    the daemon launches it (the instance's limits apply), the command waits and prints
    its counts; `--no-wait` prints the run id and returns at once."""
    from campaign_pipelines.launching import daemon_serves_queue

    production.write("templates/people.yaml", people_template())
    production.write("data/inbox/people.csv", people_file("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray"))
    production.wait_for("the daemon's first heartbeat", lambda: daemon_serves_queue(production.instance))

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = subprocess.Popen(
            [str(BIN / "campaign-pipelines"), *args], cwd=REPO, env=production.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        out, err = command.communicate(timeout=180)
        return subprocess.CompletedProcess(command.pid, command.returncode, out, err)

    done = cli("run", "people", "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert (payload["status"], payload["rows_read"], payload["rows_inserted"]) == ("finished", 2, 2)
    run_id = payload["run_id"]
    assert production.instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)
    # Dequeued by the daemon and started in a run worker of its code server, not in the command.
    run = production.instance.get_run_by_id(run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/code_location"] == "campaign_pipelines"
    engine_events = [e.user_message for e in production.instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]
    assert any(m.startswith("Executing steps in process (pid: ") for m in engine_events), engine_events
    assert not any(f"(pid: {done.args})" in m for m in engine_events), engine_events  # not the command's process

    queued = cli("run", "people", "--no-wait")
    assert queued.returncode == 0 and "note:" not in queued.stderr, queued.stderr
    second = queued.stdout.strip()
    production.wait_for("the --no-wait run to end", lambda: production.instance.get_run_by_id(second).is_finished)
    assert production.instance.get_run_by_id(second).status == dg.DagsterRunStatus.SUCCESS
    assert production.instance.get_run_by_id(second).tags["campaign/status"] == "finished"


BACKFILL = {
    "20250101": ["dan@x.org;C4;Dan;Poe", "bob@x.org;C2;Bob;Ray"],
    "20250102": ["dan@x.org;C4;Dan;Poe-Lee", "eve@x.org;C5;Eve;Roe"],
    "20250103": ["fay@x.org;C6;Fay;Day"],
}


@pytest.mark.parametrize("production", ["multiprocess/sqlite", "multiprocess/postgresql", "celery/postgresql"], indirect=True)
def test_a_3_day_backfill_runs_its_steps_on_the_deployments_executor(production, tmp_path):
    """`dagster job backfill` of three days, launched by the daemon through the queue, on
    the multiprocess executor (a process per step) or on two Celery workers: each day in
    date order, every step away from its run's process, the tables as the days say."""
    executor = production.env["CAMPAIGN_EXECUTOR"]
    production.write("templates/people.yaml", people_template(partitions=DAILY))
    for day, lines in BACKFILL.items():
        production.write(f"data/inbox/crm/people_{day}.csv", people_file(*lines))
    workers = Workers(tmp_path, production.env["CAMPAIGN_CELERY_QUEUE"]) if executor == "celery" else None
    try:
        production.dagster("job", "backfill", "-j", "people", "--partitions", "2025-01-01,2025-01-02,2025-01-03", "--noprompt")
        production.wait_for(
            "the three days to load",
            lambda: len(runs := production.runs("people")) == 3 and all(r.is_finished for r in runs), timeout=420,
        )
        worker_pids = set().union(*(workers.pids(name) for name in workers.processes)) if workers else set()
    finally:
        if workers:
            workers.stop()
    days = production.runs("people")
    assert [r.status for r in days] == [dg.DagsterRunStatus.SUCCESS] * 3, [r.tags.get("campaign/status") for r in days]
    assert [r.tags["dagster/partition"] for r in days] == ["2025-01-01", "2025-01-02", "2025-01-03"]
    assert len({r.tags["dagster/backfill"] for r in days}) == 1
    records = {r.dagster_run.run_id: r for r in production.instance.get_run_records(dg.RunsFilter(job_name="people"))}
    for earlier, later in zip(days, days[1:]):
        assert records[later.run_id].start_time >= records[earlier.run_id].end_time  # the queue's per-table limit
    steps = [f"{graph_name('people')}.{op}" for op in ("read_file", "map_columns", "validate_rows", "reconcile", "report")]
    for run in days:
        started = production.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        pids = {e.step_key: e.dagster_event.pid for e in started}
        assert sorted(pids) == sorted(steps)
        run_process = {e.dagster_event.pid for e in production.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)}
        assert not run_process & set(pids.values())  # no step in the run's own process
        if executor == "multiprocess":
            assert len(set(pids.values())) == len(steps)  # a process per step
        else:
            assert set(pids.values()) <= worker_pids  # on the Celery workers
    with get_engine(production.db_url).connect() as conn:
        rows = conn.execute(sa.text("SELECT email, first_name, last_name FROM recipient ORDER BY email")).all()
    assert [tuple(r) for r in rows] == [
        ("bob@x.org", "Bob", "Ray"), ("dan@x.org", "Dan", "Poe-Lee"), ("eve@x.org", "Eve", "Roe"), ("fay@x.org", "Fay", "Day"),
    ]
    assert work_folders(production.root / "data") == [] and stage_tables(get_engine(production.db_url)) == []


def test_asset_job_runs_of_one_table_wait_for_each_other_in_the_queue(production):
    """Two runs of Dagster's asset job (what Materialize and a backfill on an asset page
    launch) for one table's days: created without the campaign/table tag, so the queue holds
    the second by the table's pool (deploy/dagster.yaml: a limit of 1 at run granularity,
    set ahead as docs/recurring-exchanges.md says); each takes the template's tags when it starts."""
    from campaign_pipelines import launching
    from campaign_pipelines.code_location import build_definitions
    from campaign_pipelines.settings import Settings

    production.write("templates/people.yaml", people_template(partitions=DAILY))
    production.write("data/inbox/crm/people_20250101.csv", people_file("ann@x.org;C1;Ann;Lee"))
    production.write("data/inbox/crm/people_20250102.csv", people_file("ann@x.org;C1;Ann;Lee-Smith"))
    subprocess.run([str(BIN / "dagster"), "instance", "concurrency", "set", "campaign/recipient", "1"],
                   env=production.env, check=True, capture_output=True)
    asset_job = build_definitions(Settings.from_env()).resolve_implicit_global_asset_job_def()
    keys = {dg.AssetKey(["imports", "people"]), dg.AssetKey(["rejects", "people"])}
    engine = get_engine(production.db_url)
    with engine.connect() as blocker:
        with blocker.begin():
            blocker.execute(sa.text("LOCK TABLE recipient IN SHARE MODE"))  # writers of recipient wait
            for day in ("2025-01-01", "2025-01-02"):
                run = production.instance.create_run_for_job(
                    job_def=asset_job, asset_selection=frozenset(keys), tags={"dagster/partition": day},
                    remote_job_origin=launching.remote_origin(asset_job.name), job_code_origin=launching.code_origin(asset_job.name),
                )
                assert "campaign/table" not in run.tags
                production.instance.submit_run(run.run_id, workspace=None)
            production.wait_for("the first day to block on its table", lambda: [r.status for r in production.runs(asset_job.name)]
                                == [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.QUEUED])
            time.sleep(3)  # several daemon iterations: the second day stays queued
            assert [r.status for r in production.runs(asset_job.name)] == [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.QUEUED]
    production.wait_for("both days to load", lambda: all(r.status == dg.DagsterRunStatus.SUCCESS for r in production.runs(asset_job.name)))
    day_one, day_two = production.runs(asset_job.name)
    records = {r.dagster_run.run_id: r for r in production.instance.get_run_records(dg.RunsFilter(job_name=asset_job.name))}
    assert records[day_two.run_id].start_time >= records[day_one.run_id].end_time
    assert all(r.tags["campaign/table"] == "recipient" and r.tags["campaign/template"] == "people" for r in (day_one, day_two))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT last_name FROM recipient WHERE email = 'ann@x.org'")).scalar_one() == "Lee-Smith"
