"""Executors chosen by deployment (issue 14), tested for real through the command line:
the multiprocess executor (a process per step) and dagster-celery's with two real
`dagster-celery worker` processes on the local RabbitMQ. Each runs the same exchange as
the in-process executor: a run, a failed merge then `rerun --from-failure`, and three
daily partition runs; the final tables are the in-process run's. A 3-day backfill through
the daemon on each executor is in tests/test_deploy.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psutil
import pytest

from campaign_pipelines.names import graph_name
from tests.celery_workers import Workers
from tests.conftest import Campaign, postgres_schema
from tests.helpers import failing_writes, people_file, people_template, stage_tables, work_folders

ROOT = Path(__file__).parent.parent
CLI = Path(sys.executable).parent / "campaign-pipelines"
FIRST = people_file("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray")
SECOND = people_file("ann@x.org;C1;Annie;Lee", "cid@x.org;C3;Cid;Moe")
DAILY = {"daily": {"start": "2025-01-01", "end": "2025-02-01", "timezone": "Europe/Paris",
                   "path": "inbox/crm/people_{date:%Y%m%d}.csv"}}
DAYS = {
    "2025-01-01": ["dan@x.org;C4;Dan;Poe", "bob@x.org;C2;Bob;Ray"],
    "2025-01-02": ["dan@x.org;C4;Dan;Poe-Lee", "eve@x.org;C5;Eve;Roe"],
    "2025-01-03": ["fay@x.org;C6;Fay;Day"],
}


def deployment(root: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, executor: str) -> Campaign:
    """A deployment of its own (data dir, templates, Dagster home) on `executor`."""
    root.mkdir()
    (root / "dagster_home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    monkeypatch.setenv("CAMPAIGN_EXECUTOR", executor)
    campaign = Campaign(root, db_url, None, monkeypatch)
    campaign.template(people_template(target={"list": {"name": "vip", "mode": "replace"}}))
    campaign.template(people_template(name="people_daily", partitions=DAILY))
    return campaign


def cli(*args: str, timeout: float = 300) -> tuple[int, dict[str, Any]]:
    """The command as a user runs it, in its own process, with the deployment's environment."""
    done = subprocess.run([str(CLI), *args, "--json"], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=timeout)
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout)


def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"])


def step_pids(run_id: str) -> dict[str, int]:
    """The process each step of a run ran in (its STEP_START event's)."""
    with instance() as dagster:
        return {e.step_key: e.dagster_event.pid for e in dagster.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)}


COUNTS = ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_rejected")


def exchange(campaign: Campaign) -> dict[str, Any]:
    """A run, a failed merge re-executed from failure, and three daily partition runs; what
    each reported, which steps ran where, and the final tables."""
    campaign.file("inbox/people.csv", FIRST)
    code, first = cli("run", "people")
    assert code == 0, first
    campaign.file("inbox/people.csv", SECOND)
    with failing_writes(campaign.engine):
        code, failed = cli("run", "people")
    assert code == 1 and "disk on fire" in failed["error"], failed
    assert failed["run_id"] in work_folders(campaign.data_dir)  # kept for the re-execution
    code, again = cli("rerun", failed["run_id"], "--from-failure")
    assert code == 0, again
    for key, lines in DAYS.items():
        campaign.file(f"inbox/crm/people_{key.replace('-', '')}.csv", people_file(*lines))
    days = [cli("run", "people_daily", "--partition", key) for key in DAYS]
    assert all(code == 0 for code, _ in days), days
    runs = [first, again, *(payload for _, payload in days)]
    assert work_folders(campaign.data_dir) == [] and stage_tables(campaign.engine) == []
    steps_again = set(step_pids(again["run_id"]))
    assert steps_again == {f"{graph_name('people')}.reconcile", f"{graph_name('people')}.report"}
    return {
        "counts": [{k: run[k] for k in COUNTS} for run in runs],
        "pids": {run["run_id"]: step_pids(run["run_id"]) for run in runs},
        "tables": {
            "recipient": campaign.rows("recipient", "id", "email", "crm_id", "first_name", "last_name"),
            "recipient_list_member": campaign.rows("recipient_list_member", "list_id", "recipient_id", order_by="recipient_id"),
            "import_commit": len(campaign.rows("import_commit", order_by="root_run_id")),
        },
    }


def in_process_exchange(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    reference = exchange(deployment(tmp_path / "in_process", db_url, monkeypatch, "in_process"))
    assert [c["rows_inserted"] for c in reference["counts"]] == [2, 1, 1, 1, 1]
    return reference


@pytest.fixture
def reference_db_url(db_url: str, tmp_path: Path) -> Any:
    """Another empty database of the same kind, for the in-process reference."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'reference.db'}"
        return
    with postgres_schema() as url:
        yield url


def test_multiprocess_runs_each_step_in_its_own_process(tmp_path, db_url, reference_db_url, monkeypatch):
    reference = in_process_exchange(tmp_path, reference_db_url, monkeypatch)
    result = exchange(deployment(tmp_path / "multiprocess", db_url, monkeypatch, "multiprocess"))
    assert result["counts"] == reference["counts"]
    assert result["tables"] == reference["tables"]
    for pids in reference["pids"].values():
        assert len(set(pids.values())) == 1  # in process: every step in the run's process
    for pids in result["pids"].values():
        assert len(set(pids.values())) == len(pids)  # a process per step


@contextlib.contextmanager
def merge_waiting_for_its_table(campaign: Campaign) -> Iterator[tuple[subprocess.Popen, str, int]]:
    """`run people` on SECOND, its merge waiting for the recipient table, which another
    session holds until the block ends: the command, its run id, and the pid of the
    process running the merge. The lock blocks writers only: the other steps, and each
    step process's schema check, read on."""
    campaign.file("inbox/people.csv", SECOND)
    command = subprocess.Popen([str(CLI), "run", "people", "--json"], cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, text=True)
    with campaign.engine.connect() as holder:
        holder.exec_driver_sql("BEGIN")
        holder.exec_driver_sql("LOCK TABLE recipient IN SHARE ROW EXCLUSIVE MODE")
        waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'recipient'::regclass"
        with campaign.engine.connect() as probe:
            for _ in range(1200):
                if probe.exec_driver_sql(waiting).scalar_one():
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the merge never reached its table lock")
        with instance() as dagster:
            run_id = dagster.get_runs(limit=1)[0].run_id
        try:
            yield command, run_id, step_pids(run_id)[f"{graph_name('people')}.reconcile"]
        finally:
            holder.exec_driver_sql("ROLLBACK")


def test_a_step_process_killed_mid_merge_fails_cleanly_and_resumes(tmp_path, postgres_url, monkeypatch):
    """The merge's process is killed while it waits for the table (another session holds
    it): the run fails, the table is as it was, and a re-execution from failure completes."""
    campaign = deployment(tmp_path / "multiprocess", postgres_url, monkeypatch, "multiprocess")
    campaign.file("inbox/people.csv", FIRST)
    assert cli("run", "people")[0] == 0
    before = campaign.snapshot()
    with merge_waiting_for_its_table(campaign) as (command, _, merging):
        psutil.Process(merging).kill()
        payload = json.loads(command.communicate(timeout=120)[0])
    assert command.returncode == 1, payload
    assert payload["error"] == (
        f"the process running step {graph_name('people')}.reconcile ended before the step did (killed, or out of memory); "
        f"a merge in progress was rolled back; re-execute the run from failure (campaign-pipelines rerun {payload['run_id'][:8]} --from-failure)."
    )
    assert campaign.snapshot() == before
    code, again = cli("rerun", payload["run_id"], "--from-failure")
    assert code == 0 and (again["rows_inserted"], again["rows_updated"]) == (1, 1), again
    assert [r["first_name"] for r in campaign.rows("recipient")] == ["Annie", "Bob", "Cid"]


def test_celery_spreads_the_steps_over_two_workers(tmp_path, postgres_url, monkeypatch, celery_env):
    with postgres_schema() as reference_url:
        reference = in_process_exchange(tmp_path, reference_url, monkeypatch)
    campaign = deployment(tmp_path / "celery", postgres_url, monkeypatch, "celery")
    workers = Workers(tmp_path, celery_env)
    try:
        result = exchange(campaign)
        seen = {name: workers.pids(name) for name in workers.processes}
    finally:
        workers.stop()
    assert result["counts"] == reference["counts"]
    assert result["tables"] == reference["tables"]
    step_processes = [pid for pids in result["pids"].values() for pid in pids.values()]
    # Every step ran on one of the two workers, and the steps of one run on both.
    assert all(any(pid in seen[name] for name in seen) for pid in step_processes)
    workers_of = [{name for name in seen if seen[name] & set(pids.values())} for pids in result["pids"].values()]
    assert set(seen) in workers_of, (seen, result["pids"])


def test_a_broker_that_does_not_answer_is_refused_at_launch(cli_home, monkeypatch, capsys):
    from tests.test_cli import run_cli

    monkeypatch.setenv("CAMPAIGN_EXECUTOR", "celery")
    monkeypatch.setenv("CAMPAIGN_CELERY_BROKER", "pyamqp://guest:secret@127.0.0.1:1//")
    started = time.monotonic()
    code, _, err = run_cli(capsys, "run", "import_recipients")
    assert code == 2
    assert err.startswith("error: the Celery broker amqp://guest:**@127.0.0.1:1// (CAMPAIGN_CELERY_BROKER) does not answer"), err
    assert err.strip().endswith("start it or fix the URL: no run was launched.") and "secret" not in err
    assert time.monotonic() - started < 60  # refused, not hung
    with dg.DagsterInstance.get() as dagster:
        assert dagster.get_run_ids() == []  # no run created


def test_a_celery_worker_killed_mid_merge_hands_the_step_to_the_other(tmp_path, postgres_url, monkeypatch, celery_env):
    """The worker running the merge is killed (SIGKILL) while the merge waits for its table:
    its transaction never commits, the broker hands the unacknowledged step to the other
    worker (task_acks_late), which runs it again from its inputs; the run finishes and the
    changes are written once."""
    campaign = deployment(tmp_path / "celery", postgres_url, monkeypatch, "celery")
    workers = Workers(tmp_path, celery_env)
    try:
        campaign.file("inbox/people.csv", FIRST)
        assert cli("run", "people")[0] == 0
        before = campaign.snapshot()
        with merge_waiting_for_its_table(campaign) as (command, run_id, merging):
            (killed,) = [name for name in workers.processes if merging in workers.pids(name)]
            (other,) = set(workers.processes) - {killed}
            other_pids = workers.pids(other)
            os.killpg(workers.processes[killed].pid, signal.SIGKILL)
            assert campaign.snapshot() == before  # nothing committed by the killed worker
        payload = json.loads(command.communicate(timeout=300)[0])
    finally:
        workers.stop()
    with instance() as dagster:
        starts = [(e.step_key, e.dagster_event.pid) for e in dagster.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)]
    assert command.returncode == 0, payload
    assert (payload["run_id"], payload["rows_inserted"], payload["rows_updated"]) == (run_id, 1, 1), payload
    reconcile_starts = [pid for key, pid in starts if key.endswith(".reconcile")]
    assert reconcile_starts[0] == merging and reconcile_starts[-1] in other_pids, (starts, merging, other_pids)
    assert [r["first_name"] for r in campaign.rows("recipient")] == ["Annie", "Bob", "Cid"]
    assert len(campaign.rows("import_commit", order_by="root_run_id")) == 2
