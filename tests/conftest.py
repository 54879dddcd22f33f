"""Shared fixtures: a Campaign environment on SQLite or on a real PostgreSQL.

PostgreSQL tests use one schema per test in CAMPAIGN_TEST_PG_URL (default: the local
server's `test` database). When it does not answer they are skipped, except under
CI=true where they fail.
"""

from __future__ import annotations

import contextlib
import os
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

import schemas

from campaign_pipelines.code_location import build_definitions
from campaign_pipelines.importing.outcome import COUNT_KEYS
from campaign_pipelines.jobs import report_node, run_config
from campaign_pipelines.launching import failure_message
from campaign_pipelines.settings import Settings
from campaign_pipelines.templates import load_catalog
from resources.campaign_db import get_engine

PG_URL = os.environ.get("CAMPAIGN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def postgres_admin_engine() -> sa.Engine:
    engine = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        message = f"PostgreSQL is not reachable at {PG_URL}: {exc.orig}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return engine


def require_service(name: str, host: str, port: int) -> None:
    """A test that needs a service fails without it on CI, and is skipped elsewhere."""
    import socket

    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        message = f"{name} is not reachable at {host}:{port}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def postgres_schema() -> Any:
    """An empty PostgreSQL schema of its own, as a Campaign database URL."""
    admin = postgres_admin_engine()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Any:
    with postgres_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'campaign.db'}"
    return request.getfixturevalue("postgres_url")


@dataclass
class RunResult:
    success: bool
    run_id: str
    status: str | None
    counts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    dagster: Any = None


class Campaign:
    """A throwaway Campaign deployment: data dir, templates dir, database, instance."""

    def __init__(self, root: Path, db_url: str, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        self.db_url = db_url
        self.instance = instance
        self.data_dir = root / "data"
        self.templates_dir = root / "templates"
        self.schemas_dir = root / "data_schemas"
        self.data_dir.mkdir()
        self.templates_dir.mkdir()
        self.schemas_dir.mkdir()
        # As a deployment would: the code location reads its settings from the environment.
        monkeypatch.setenv("CAMPAIGN_DB_URL", db_url)
        monkeypatch.setenv("CAMPAIGN_DATA_DIR", str(self.data_dir))
        monkeypatch.setenv("CAMPAIGN_TEMPLATES_DIR", str(self.templates_dir))
        monkeypatch.setenv("CAMPAIGN_SCHEMAS_DIR", str(self.schemas_dir))
        self.endpoints_file = root / "endpoints.yaml"  # written by a test that declares endpoints
        monkeypatch.setenv("CAMPAIGN_ENDPOINTS", str(self.endpoints_file))

    @property
    def settings(self) -> Settings:
        return Settings.from_env()

    @property
    def model(self) -> schemas.DataModel:
        """The deployment's data model, as its files are now."""
        return self.settings.data_model()

    @property
    def engine(self) -> sa.Engine:
        return get_engine(self.db_url, self.model)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def template(self, text: str, name: str | None = None) -> Path:
        text = textwrap.dedent(text)
        name = name or text.split("name:", 1)[1].split()[0]
        path = self.templates_dir / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    def schema(self, text: str, name: str) -> Path:
        """A user data schema file (the data model is read again on its next use, as a code
        location reload does)."""
        path = self.schemas_dir / f"{name}.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def file(self, relative: str, content: str | bytes, encoding: str = "utf-8") -> Path:
        path = self.data_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = textwrap.dedent(content).lstrip("\n").encode(encoding)
        path.write_bytes(content)
        return path

    def run(self, name: str, partition_key: str | None = None, **launch: Any) -> RunResult:
        """Run a template's job with flat launch keys (one day of a partitioned job)."""
        template = load_catalog(self.settings.templates_dir, self.model).get(name)
        if partition_key is not None and not launch:
            config = None  # the partition's own config
        else:
            config = run_config(template, launch)
        return self.execute(name, config, partition_key=partition_key)

    def run_request(self, name: str, request: dg.RunRequest) -> RunResult:
        """Do what the daemon does with a schedule's or sensor's run request."""
        return self.execute(name, request.run_config, tags=request.tags, partition_key=request.partition_key)

    def execute(
        self, name: str, config: Any, tags: dict[str, str] | None = None, partition_key: str | None = None
    ) -> RunResult:
        defs = build_definitions(self.settings)
        job = defs.resolve_job_def(name)
        result = job.execute_in_process(
            run_config=config, instance=self.instance, raise_on_error=False, tags=tags, partition_key=partition_key
        )
        status = self.instance.get_run_by_id(result.run_id).tags.get("campaign/status")
        if result.success:  # a successful run leaves no work data (a failed one keeps it to resume)
            assert not (self.data_dir / ".work" / result.run_id).exists()
        if not result.success:
            return RunResult(False, result.run_id, status, error=failure_message(self.instance, result.run_id), dagster=result)
        template = load_catalog(self.settings.templates_dir, self.model).get(name)
        counts = result.output_for_node(report_node(template))
        if template.kind == "export":
            return RunResult(True, result.run_id, status, counts=counts, dagster=result)
        # The accounting identity of spec 5 holds for every import run.
        assert counts["rows_read"] == sum(counts[k] for k in COUNT_KEYS), counts
        return RunResult(True, result.run_id, status, counts=counts, dagster=result)

    def rows(self, table: str, *columns: str, order_by: str = "id") -> list[dict[str, Any]]:
        cols = ", ".join(columns) if columns else "*"
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(f"SELECT {cols} FROM {table} ORDER BY {order_by}")).mappings()]

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every Campaign table's rows, to prove a failed run changed nothing."""
        order = {"recipient_list_member": "list_id, recipient_id", "subscription": "service_id, recipient_id",
                 "import_reject": "run_id, line_number"}
        return {
            t: self.rows(t, order_by=order.get(t, "id"))
            for t in ("recipient", "recipient_list", "recipient_list_member", "service", "subscription", "import_reject")
        }


@pytest.fixture
def campaign(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    with dg.instance_for_test() as instance:
        yield Campaign(tmp_path, db_url, instance, monkeypatch)
    get_engine(db_url).dispose()


@pytest.fixture
def postgres_campaign(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """For what only the PostgreSQL path does (staging by COPY while validating)."""
    with dg.instance_for_test() as instance:
        yield Campaign(tmp_path, postgres_url, instance, monkeypatch)
    get_engine(postgres_url).dispose()


@pytest.fixture
def sqlite_campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """For tests about templates and the CLI, where the database does not matter."""
    with dg.instance_for_test() as instance:
        yield Campaign(tmp_path, f"sqlite:///{tmp_path / 'campaign.db'}", instance, monkeypatch)


@pytest.fixture
def postgres_instance_url() -> Any:
    """A fresh PostgreSQL database for a Dagster instance's runs, events and schedules."""
    admin = postgres_admin_engine()
    name = f"dagster_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    # psycopg2, as deploy/dagster.yaml says: dagster-postgres's NOTIFY fails on psycopg 3,
    # which SQLAlchemy 2.1 picks for a plain postgresql:// URL.
    yield sa.make_url(PG_URL).set(drivername="postgresql+psycopg2", database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A Campaign deployment whose Dagster instance and Campaign database are both
    embedded (SQLite), or both on PostgreSQL as in production."""
    if request.param == "sqlite":
        with dg.instance_for_test() as instance:
            yield Campaign(tmp_path, f"sqlite:///{tmp_path / 'campaign.db'}", instance, monkeypatch)
        return
    db_url = request.getfixturevalue("postgres_url")
    storage = {"storage": {"postgres": {"postgres_url": request.getfixturevalue("postgres_instance_url")}}}
    with dg.instance_for_test(overrides=storage) as instance:
        yield Campaign(tmp_path, db_url, instance, monkeypatch)


@pytest.fixture
def cli_home(sqlite_campaign: Campaign, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Campaign:
    """For CLI tests: a Dagster home with no dagster.yaml (Dagster's default, a run queue
    and no daemon) and the sample file in the inbox."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    sqlite_campaign.file("inbox/recipients.csv", (Path(__file__).parent.parent / "examples" / "recipients.csv").read_bytes())
    return sqlite_campaign


@pytest.fixture
def celery_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """The Celery executor's settings: the local RabbitMQ, a queue of the test's own."""
    require_service("RabbitMQ", "127.0.0.1", 5672)
    queue = f"campaign_test_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CAMPAIGN_CELERY_BROKER", "pyamqp://guest:guest@127.0.0.1:5672//")
    monkeypatch.setenv("CAMPAIGN_CELERY_BACKEND", "rpc://")
    monkeypatch.setenv("CAMPAIGN_CELERY_QUEUE", queue)
    return queue
