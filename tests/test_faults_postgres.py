"""PostgreSQL under faults, on the real server (nothing of the database is mocked):
concurrent imports of the same new keys, an export beside a merge that waits for its
lock, the run's session terminated by the server, and a CLI run killed with SIGKILL.

What makes each race deterministic is the database, not the clock: the merge lock is
held from a test connection until every run waits for it (pg_locks), a backend is
terminated from a listener at the statement it is about to run, and a CLI run is killed
when pg_stat_activity shows its backend running the statement the test aims at.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from campaign_pipelines.importing import steps
from campaign_pipelines.importing.outcome import COUNT_KEYS
from tests import conftest
from tests.helpers import HEADER, export_template, people_file, people_template

CLI = Path(sys.executable).parent / "campaign-pipelines"
TABLES = ("recipient", "recipient_list", "recipient_list_member", "service", "subscription", "import_reject")
# A guard against a hang, never a measure: every wait below ends on a database state.
PATIENCE = 120.0


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def admin(postgres_campaign) -> Any:
    """An autocommit connection in the test's schema (its search_path), for pg_locks,
    pg_stat_activity and pg_terminate_backend."""
    engine = sa.create_engine(postgres_campaign.db_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        yield conn
    engine.dispose()


def wait_for(check: Callable[[], Any], what: str, running: Callable[[], bool] = lambda: True) -> Any:
    """Poll `check` until it returns something true; fail if `running` says the runs under
    watch ended first (the state awaited will never come) or after PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while True:
        found = check()
        if found:
            return found
        if not running():
            pytest.fail(f"the run ended before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.002)


def lock_waiters(admin: sa.Connection) -> list[tuple[int, str, str]]:
    """Backends waiting for a lock on this schema's recipient table: pid, mode, statement."""
    return admin.execute(sa.text(
        "SELECT l.pid, l.mode, a.query FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'relation' AND l.relation = 'recipient'::regclass AND NOT l.granted ORDER BY l.pid"
    )).all()


def hold_merge_lock(campaign) -> sa.Connection:
    """What an import's merge takes first, from a test connection in an open transaction."""
    holder = campaign.engine.connect()
    holder.begin()
    holder.exec_driver_sql("LOCK TABLE recipient IN SHARE ROW EXCLUSIVE MODE")
    return holder


def table_state(admin: sa.Connection) -> dict[str, tuple[int, str]]:
    """Each Campaign table's row count and a checksum of all its rows (every column)."""
    state = {}
    for table in TABLES:
        state[table] = tuple(admin.execute(sa.text(
            f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {table} t"
        )).one())
    return state


def people_checksum(admin: sa.Connection) -> tuple[int, str]:
    """The recipients' imported values (no id or timestamp), in e-mail byte order."""
    return tuple(admin.execute(sa.text(
        "SELECT count(*), md5(coalesce(string_agg(concat_ws(';', email, crm_id, first_name, last_name), E'\\n' "
        "ORDER BY email COLLATE \"C\"), '')) FROM recipient"
    )).one())


def expected_checksum(lines: list[str]) -> tuple[int, str]:
    """people_checksum of a table holding exactly these `email;crm_id;first;last` lines."""
    ordered = sorted(lines, key=lambda line: line.split(";", 1)[0].encode())
    return len(ordered), hashlib.md5("\n".join(ordered).encode()).hexdigest()


def assert_accounted(counts: dict[str, Any]) -> None:
    assert counts["rows_read"] == sum(counts[k] for k in COUNT_KEYS), counts


def cli_env(campaign, application_name: str) -> dict[str, str]:
    """The environment of a deployment's `campaign-pipelines run`; its sessions carry
    `application_name`, so pg_stat_activity tells them from every other test's."""
    home = campaign.root / "dagster_home"
    home.mkdir(exist_ok=True)  # concurrent first runs create its storage in turn (test_cli_errors)
    return {
        **os.environ,
        "CAMPAIGN_DB_URL": f"{campaign.db_url}&application_name={application_name}",
        "CAMPAIGN_DATA_DIR": str(campaign.data_dir),
        "CAMPAIGN_TEMPLATES_DIR": str(campaign.templates_dir),
        "DAGSTER_HOME": str(home),
    }


def start_cli(campaign, name: str, file: str, application_name: str | None = None) -> subprocess.Popen:
    env = cli_env(campaign, application_name or f"faults_{uuid.uuid4().hex[:8]}")
    return subprocess.Popen(
        [str(CLI), "run", name, "--file", file, "--json"], env=env, cwd=campaign.root,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def finish_cli(proc: subprocess.Popen) -> dict[str, Any]:
    out, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 0, (out[-2000:], err[-2000:])
    return json.loads(out)


def backends(admin: sa.Connection, application_name: str) -> list[tuple[int, str, str]]:
    return admin.execute(sa.text(
        "SELECT pid, state, query FROM pg_stat_activity WHERE application_name = :name"
    ), {"name": application_name}).all()


def terminate(admin: sa.Connection, pid: int) -> None:
    """pg_terminate_backend, waiting (up to 10 s) until the backend has exited."""
    assert admin.execute(sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}).scalar_one()


@pytest.fixture
def threaded_runs(monkeypatch):
    """Lets runs execute in threads of this process. Setting up each run's log manager,
    Dagster calls logging.config.dictConfig to collect the instance's python_logs handlers
    (here none): it holds logging's module lock and waits for every handler's lock, while
    another run's thread holds its handler's lock and waits for the module lock (seen as a
    deadlock with two runs). Building a job's graphs goes through Dagster's composition
    stack, one list for the whole process: two threads building at once desync it (seen in
    CI as "Composition context stack desync" and a run that never started), so the runs'
    definitions are built one at a time. Deployed runs each have their own process."""
    monkeypatch.setattr(dg.DagsterInstance, "get_yaml_python_handlers", lambda self: [])
    building = threading.Lock()
    unlocked = conftest.build_definitions

    def build_one_at_a_time(settings):
        with building:
            return unlocked(settings)

    monkeypatch.setattr(conftest, "build_definitions", build_one_at_a_time)


# -- 1. concurrent imports of the same new keys ------------------------------------------


def overlapping_files(n: int, lines: int) -> tuple[list[str], dict[str, set[str]]]:
    """n files of `lines` lines. A third of each file's keys are in every file; the rest
    slide, each file sharing half of them with the next. Every file brings its own first
    names, so a key loaded again is an update. Returns the files and, per e-mail, the
    first names the files bring for it."""
    shared, own = lines // 3, lines - lines // 3
    step = own // 2
    files, names = [], {}
    for k in range(n):
        rows = [(f"all{j}@x.org", f"CA{j}") for j in range(shared)]
        rows += [(f"s{j}@x.org", f"CS{j}") for j in range(k * step, k * step + own)]
        if k % 2:
            rows.reverse()
        text = []
        for email, crm in rows:
            first = f"F{k}-{crm}"
            names.setdefault(email, set()).add(first)
            # Upper case in some files: the template lower-cases the key.
            text.append(f"{email.upper() if k % 2 else email};{crm};{first};L")
        files.append(people_file(*text))
    return files, names


@pytest.mark.parametrize(("n", "how"), [(2, "threads"), (4, "threads"), (2, "cli"), (4, "cli")])
def test_concurrent_imports_of_the_same_new_keys_insert_each_once(postgres_campaign, admin, threaded_runs, n, how):
    """Every run stages its file, then all their merges wait on the lock a test connection
    holds, so they all run their decisions one right after the other against the same new
    keys. Each key must be inserted by one run only and updated by the others: no run may
    decide from a table another run is still changing (a unique violation, or a key twice)."""
    campaign = postgres_campaign
    campaign.template(people_template())
    lines = 3000
    files, names = overlapping_files(n, lines)
    for k, text in enumerate(files):
        campaign.file(f"inbox/part{k}.csv", text)

    holder = hold_merge_lock(campaign)
    try:
        if how == "threads":
            pool = concurrent.futures.ThreadPoolExecutor(n)
            runs = [pool.submit(campaign.run, "people", file=f"inbox/part{k}.csv") for k in range(n)]
            running = lambda: not any(run.done() for run in runs)  # noqa: E731
        else:
            runs = [start_cli(campaign, "people", f"inbox/part{k}.csv") for k in range(n)]
            running = lambda: all(proc.poll() is None for proc in runs)  # noqa: E731
        waiters = wait_for(lambda: len(w := lock_waiters(admin)) == n and w, f"all {n} runs waited for the lock", running)
    except BaseException:
        for run in runs:  # why a run ended early
            if how == "cli" and run.poll() is not None:
                print(run.returncode, *run.communicate())
            elif how == "threads" and run.done():
                print(run.exception() or (run.result().status, run.result().error))
        raise
    finally:
        holder.rollback()
        holder.close()

    if how == "threads":
        results = [run.result(timeout=PATIENCE) for run in runs]
        pool.shutdown()
        assert all(r.success for r in results), [r.error for r in results]
        outcomes = [{**r.counts, "status": r.status} for r in results]
    else:
        outcomes = [finish_cli(proc) for proc in runs]

    for counts in outcomes:
        assert counts["status"] == "finished", counts
        assert counts["rows_read"] == lines and counts["rows_rejected"] == 0, counts
        assert_accounted(counts)
    assert sum(c["rows_inserted"] for c in outcomes) == len(names)
    # Each later sight of a key brings other values: an update, never a second insert.
    assert sum(c["rows_updated"] for c in outcomes) == n * lines - len(names)
    assert sum(c["rows_unchanged"] + c["rows_ignored"] + c["rows_deleted"] for c in outcomes) == 0

    rows = campaign.rows("recipient", "email", "crm_id", "first_name")
    assert len(rows) == len(names) == len({r["email"] for r in rows})
    # They had all queued at the merge's first statement.
    assert all(mode == "ShareRowExclusiveLock" and query.startswith("LOCK TABLE") for _, mode, query in waiters), waiters
    assert {r["email"] for r in rows} == set(names)
    for r in rows:
        assert r["first_name"] in names[r["email"]], r
        assert r["crm_id"] == r["first_name"].split("-", 1)[1], r


# -- 2. an export beside a merge that waits -----------------------------------------------


def test_an_export_is_not_blocked_by_a_merge_waiting_for_its_lock(postgres_campaign, admin, threaded_runs):
    """The merge's SHARE ROW EXCLUSIVE lock keeps other writers out, not readers: while a
    writer holds it (as a merge does) and an import's merge waits for it, an export finishes
    with the committed rows. The import, once it has the lock, decides against every row
    committed before, including the other writer's."""
    campaign = postgres_campaign
    campaign.template(people_template())
    campaign.template(export_template())
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray", "cid@x.org;C3;Cid;Moe"))
    assert campaign.run("people").counts["rows_inserted"] == 3
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Annie;Lee", "dan@x.org;C4;Dan;Fox", "eve@x.org;C5;Eve;Ito"))

    pool = concurrent.futures.ThreadPoolExecutor(2)
    holder = hold_merge_lock(campaign)
    try:
        importing = pool.submit(campaign.run, "people")
        (waiter,) = wait_for(lambda: lock_waiters(admin), "the import's merge waited for the lock", lambda: not importing.done())
        pid, mode, query = waiter
        assert mode == "ShareRowExclusiveLock" and query.startswith("LOCK TABLE"), waiter
        # Under the lock, another writer adds dan, not committed yet.
        holder.execute(sa.text(
            "INSERT INTO recipient (email, crm_id, first_name, last_name, created_at, updated_at) "
            "VALUES ('dan@x.org', 'C4', 'Daniel', 'Fox', now(), now())"
        ))

        exported = pool.submit(campaign.run, "out").result(timeout=PATIENCE)
        assert exported.success, exported.error
        assert (exported.status, exported.counts["rows_exported"]) == ("finished", 3)
        out = (campaign.data_dir / "outbox" / "out.csv").read_text().splitlines()
        assert out == ["email", "ann@x.org", "bob@x.org", "cid@x.org"]
        # The import is still where it was.
        assert not importing.done()
        assert lock_waiters(admin) == [waiter]
        holder.commit()
    finally:
        holder.rollback()
        holder.close()

    imported = importing.result(timeout=PATIENCE)
    pool.shutdown()
    assert imported.success, imported.error
    # dan was committed before the merge had its lock: an update, not a second insert.
    assert {k: imported.counts[k] for k in ("rows_inserted", "rows_updated", "rows_unchanged")} == {
        "rows_inserted": 1, "rows_updated": 2, "rows_unchanged": 0}
    assert [(r["email"], r["first_name"]) for r in campaign.rows("recipient", "email", "first_name", order_by="email")] == [
        ("ann@x.org", "Annie"), ("bob@x.org", "Bob"), ("cid@x.org", "Cid"), ("dan@x.org", "Dan"), ("eve@x.org", "Eve")]


# -- 3. the run's session terminated by the server ----------------------------------------

BASE = people_file("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray", "cid@x.org;C3;Cid;Moe")
CHANGES = people_file(
    "ann@x.org;C1;Annie;Lee",  # update
    "bob@x.org;C2;Bob;Ray",  # unchanged
    "dan@x.org;C4;Dan;Fox",  # superseded by the next line (ignored)
    "DAN@x.org;C4;Daniel;Fox",  # insert
    "not-an-email;C5;X;Y",  # rejected by the validation
    "eve@x.org;C3;Eve;Ito",  # rejected by the merge: C3 is cid's
    "fay@x.org;C6;Fay;Orr",  # insert
)
# What an undisturbed run of CHANGES gives after BASE (the "none" case proves it).
CHANGES_COUNTS = {"rows_read": 7, "rows_inserted": 2, "rows_updated": 1, "rows_unchanged": 1, "rows_deleted": 0,
                  "rows_ignored": 1, "rows_rejected": 2}
CHANGES_ROWS = [("ann@x.org", "C1", "Annie"), ("bob@x.org", "C2", "Bob"), ("cid@x.org", "C3", "Cid"),
                ("dan@x.org", "C4", "Daniel"), ("fay@x.org", "C6", "Fay")]
CHANGES_REJECTS = [(6, "email"), (7, "crm_id")]

# Where the run's session is terminated: the statement about to run, or the COPY.
MERGE_STATEMENTS = {
    "lock": lambda sql: sql.startswith("LOCK TABLE"),
    "decide": lambda sql: "INSERT INTO decided_" in sql,
    "insert": lambda sql: sql.startswith("INSERT INTO recipient"),
}


class Terminator:
    """Terminates the run session's backend, from another connection, `times` times."""

    def __init__(self, admin: sa.Connection, times: int):
        self.admin, self.times, self.killed = admin, times, []
        self.remove: Callable[[], None] = lambda: None  # undoes the injection

    def __call__(self, pid: int) -> None:
        if len(self.killed) < self.times:
            terminate(self.admin, pid)
            self.killed.append(pid)


def inject(campaign, admin, monkeypatch, where: str, times: int) -> Terminator:
    terminator = Terminator(admin, times)
    if where == "copy":
        copy_to_stage = steps.copy_to_stage

        def copy_then_terminate(conn, template, stage, frames):
            copying = copy_to_stage(conn, template, stage, frames)
            first = next(copying)  # the COPY is open and its first block sent
            pid = conn.connection.driver_connection.info.backend_pid
            if len(terminator.killed) < terminator.times:
                query = admin.execute(sa.text("SELECT query FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar_one()
                assert query.startswith('COPY "import_stage_'), query
            terminator(pid)
            yield first
            yield from copying

        monkeypatch.setattr(steps, "copy_to_stage", copy_then_terminate)
    elif where in MERGE_STATEMENTS:
        matches = MERGE_STATEMENTS[where]

        def before_execute(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
            if matches(statement.lstrip()):
                terminator(conn.connection.driver_connection.info.backend_pid)

        engine = campaign.engine
        sa.event.listen(engine, "before_cursor_execute", before_execute)
        terminator.remove = lambda: sa.event.remove(engine, "before_cursor_execute", before_execute)
    elif where == "commit":
        merging = []

        def note_merge(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
            if statement.lstrip().startswith("LOCK TABLE"):
                merging.append(conn)

        def before_commit(conn):  # noqa: ANN001
            if conn in merging:  # the merge's own transaction, about to COMMIT
                terminator(conn.connection.driver_connection.info.backend_pid)

        engine = campaign.engine
        sa.event.listen(engine, "before_cursor_execute", note_merge)
        sa.event.listen(engine, "commit", before_commit)

        def remove() -> None:
            sa.event.remove(engine, "before_cursor_execute", note_merge)
            sa.event.remove(engine, "commit", before_commit)

        terminator.remove = remove
    return terminator


def run_changes_terminated(campaign, admin, monkeypatch, where: str, times: int):
    """Load BASE, then import CHANGES with the run's session terminated `times` times at
    `where`; the result, the terminator, and the tables as they were before CHANGES."""
    campaign.template(people_template())
    campaign.file("inbox/people.csv", BASE)
    assert campaign.run("people").counts["rows_inserted"] == 3
    before = campaign.snapshot()
    campaign.file("inbox/people.csv", CHANGES)
    terminator = inject(campaign, admin, monkeypatch, where, times=times)
    try:
        result = campaign.run("people")
    finally:
        terminator.remove()
    return result, terminator, before


@pytest.mark.parametrize("where", ["none", "copy", "lock", "decide", "insert"])
def test_a_terminated_session_is_replaced_and_the_run_finishes_as_undisturbed(
    postgres_campaign, admin, monkeypatch, where
):
    """pg_terminate_backend of the run's own session while it copies into the stage, or
    just before a statement of the merge: the step's retry policy runs it again on a new
    session (the stage is rebuilt from the step's inputs) and the run ends as an
    undisturbed one."""
    campaign = postgres_campaign
    result, terminator, _ = run_changes_terminated(campaign, admin, monkeypatch, where, times=1)
    assert result.success, result.error
    assert len(terminator.killed) == (0 if where == "none" else 1)
    assert result.status == "finished_with_errors"
    assert {k: result.counts[k] for k in CHANGES_COUNTS} == CHANGES_COUNTS
    assert [tuple(r.values()) for r in campaign.rows("recipient", "email", "crm_id", "first_name", order_by="email")] == CHANGES_ROWS
    # The rejects are recorded once, by the try that committed.
    recorded = campaign.rows("import_reject", "run_id", "line_number", "column_name", order_by="line_number")
    assert [(r["line_number"], r["column_name"]) for r in recorded] == CHANGES_REJECTS
    assert {r["run_id"] for r in recorded} == {result.run_id}
    retried = [e.user_message for e in campaign.instance.all_logs(result.run_id) if "trying again in" in e.user_message]
    step = "validate_rows" if where == "copy" else "reconcile"
    assert len(retried) == len(terminator.killed)
    assert all(m.startswith(f"{step}: ") and "try 2 of 4" in m for m in retried), retried
    # Dagster's own step retry: the step is up for retry, then restarted.
    for event in (dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_RESTARTED):
        retries = campaign.instance.all_logs(result.run_id, of_type=event)
        assert [e.step_key.rsplit(".", 1)[-1] for e in retries] == [step] * len(terminator.killed)


@pytest.mark.parametrize(("where", "step"), [("copy", "validate_rows"), ("decide", "reconcile")])
def test_a_session_terminated_at_every_try_fails_the_run_in_one_sentence(
    postgres_campaign, admin, monkeypatch, where, step
):
    """The session terminated at every try: after the last, the run fails with one sentence
    naming the step, and no table changed."""
    campaign = postgres_campaign
    result, terminator, before = run_changes_terminated(campaign, admin, monkeypatch, where, times=1_000)
    assert not result.success
    assert len(terminator.killed) == 4  # the first try and the retry policy's 3 more
    assert len(set(terminator.killed)) == 4  # each on a new session
    assert len(campaign.instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 3
    assert result.status == "failed"
    error = result.error.strip()
    assert "\n" not in error and "Traceback" not in error, error
    assert step in error and "nothing was written" in error and "on 3 more tries" in error, error
    assert error.count(". ") == 0 and error.endswith("."), error
    assert campaign.snapshot() == before


# -- 4. a CLI run killed with SIGKILL -----------------------------------------------------

BIG = 250_000
PRELOADED = 1_000  # the big file's first keys, loaded before with other first names
KILL_POINTS = {
    "copy": "query LIKE 'COPY \"import\\_stage\\_%'",
    "decide": "(query LIKE 'WITH matched%' OR query LIKE 'INSERT INTO decided\\_%')",
    "insert": "query LIKE 'INSERT INTO recipient %'",
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_run_killed_mid_statement_leaves_no_trace_and_a_rerun_converges(postgres_campaign, admin, point):
    """SIGKILL of `campaign-pipelines run` while its backend runs the COPY into the stage,
    the merge's decisions, or its insert into recipient: the server rolls the open
    transaction back when the client is gone, so every table keeps its state to the byte,
    and running the same file again gives what an undisturbed run gives."""
    campaign = postgres_campaign
    campaign.template(people_template())
    big = [f"p{i}@x.org;C{i};F{i};L{i}" for i in range(BIG)]
    others = [f"old{i}@x.org;D{i};O{i};P{i}" for i in range(500)]
    base = [f"p{i}@x.org;C{i};Before{i};L{i}" for i in range(PRELOADED)] + others
    campaign.file("inbox/base.csv", people_file(*base))
    assert campaign.run("people", file="inbox/base.csv").counts["rows_inserted"] == len(base)
    campaign.file("inbox/big.csv", HEADER + "\n".join(big) + "\n")
    before = table_state(admin)

    name = f"kill_{uuid.uuid4().hex[:10]}"
    proc = start_cli(campaign, "people", "inbox/big.csv", application_name=name)
    try:
        (pid, query), *_ = wait_for(
            lambda: admin.execute(sa.text(
                f"SELECT pid, query FROM pg_stat_activity WHERE application_name = :name AND state = 'active' "
                f"AND {KILL_POINTS[point]}"), {"name": name}).all(),
            f"its backend ran the {point} statement", lambda: proc.poll() is None,
        )
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=PATIENCE)
        if proc.returncode != -signal.SIGKILL:
            print(proc.returncode, out[-2000:], err[-2000:])  # why it ended by itself
    assert proc.returncode == -signal.SIGKILL
    # The backend finishes its statement, finds its client gone and rolls back.
    wait_for(lambda: not backends(admin, name), "the killed run's backends exited")
    assert table_state(admin) == before, f"backend {pid} killed during {query[:60]!r}"

    rerun = finish_cli(start_cli(campaign, "people", "inbox/big.csv"))
    assert rerun["status"] == "finished"
    assert {k: rerun[k] for k in ("rows_read", *COUNT_KEYS)} == {
        "rows_read": BIG, "rows_inserted": BIG - PRELOADED, "rows_updated": PRELOADED, "rows_unchanged": 0,
        "rows_deleted": 0, "rows_ignored": 0, "rows_rejected": 0}
    assert people_checksum(admin) == expected_checksum(big + others)


def test_a_connection_lost_while_the_merge_commits_says_the_outcome_is_unknown(
    postgres_campaign, admin, monkeypatch
):
    """The session terminated after the merge's last statement, as it commits: the client
    cannot tell whether the server committed, so the run is not tried again; it fails
    saying so, and a re-run of the file converges."""
    campaign = postgres_campaign
    result, terminator, before = run_changes_terminated(campaign, admin, monkeypatch, "commit", times=1)
    assert not result.success and result.status == "failed"
    assert len(terminator.killed) == 1
    assert "the connection to the Campaign database was lost while the merge was committing" in result.error
    assert "whether it was written is unknown; run the file again (a re-run converges)." in result.error
    assert "\n" not in result.error and "Traceback" not in result.error
    assert not [e for e in campaign.instance.all_logs(result.run_id) if "trying again in" in e.user_message]
    assert campaign.snapshot() == before  # terminated before the COMMIT reached it: rolled back

    again = campaign.run("people")
    assert {k: again.counts[k] for k in CHANGES_COUNTS} == CHANGES_COUNTS
    assert [tuple(r.values()) for r in campaign.rows("recipient", "email", "crm_id", "first_name", order_by="email")] == CHANGES_ROWS
