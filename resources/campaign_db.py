"""The Campaign database: SQLite (embedded default) or PostgreSQL, through SQLAlchemy."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr
from sqlalchemy.engine import make_url

import schemas
from resources.paths import default_db_url


@functools.cache
def raw_engine(url: str) -> sa.Engine:
    """One engine per URL and process, as it is: no table created or changed (what
    `schema plan` reads through)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})
        _sqlite_transactions(engine)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
        _postgres_session(engine)
    return engine


_lock = threading.RLock()
# (url, id(model)) of the databases prepared for a model, the model kept so that its id
# is never another model's.
_prepared: dict[tuple[str, int], schemas.DataModel] = {}
# (url, id(model)) -> the model checked: kept, so that its id is never another model's.
_checked: dict[tuple[str, int], schemas.DataModel] = {}


def get_engine(url: str, model: schemas.DataModel = schemas.BUILTIN) -> sa.Engine:
    """The engine for plain connections (reading rows, rejects, previews). On first use in
    a process with `model` the database is brought to it when no change is refused; when
    one is, only the built-in tables it lacks are created, and runs report the refusal."""
    engine = raw_engine(url)
    key = (url, id(model))
    if _prepared.get(key) is not model:
        with _lock:
            if _prepared.get(key) is not model:
                from schemas import migrate  # Alembic: imported when a database is first used

                migrate.prepare(engine, model, schemas.BUILTIN)
                _prepared[key] = model
    return engine


def model_engine(url: str, model: schemas.DataModel) -> sa.Engine:
    """The engine runs use: the database brought to `model` first, once per model and
    process; a refused change raises SchemaChangeRefused (a CampaignError: one sentence
    per refusal) and changes nothing."""
    engine = raw_engine(url)
    key = (url, id(model))
    if _checked.get(key) is not model:
        with _lock:
            if _checked.get(key) is not model:
                from schemas import migrate

                migrate.apply(engine, model)
                _checked[key] = model
                _prepared[key] = model
    return engine


def _sqlite_transactions(engine: sa.Engine) -> None:
    """pysqlite opens transactions lazily and not before DDL; take the write lock at
    BEGIN instead, so an import is one transaction and concurrent writers queue."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):  # noqa: ANN001
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _postgres_session(engine: sa.Engine) -> None:
    """Imports stage a file in temporary tables; let them stay in memory (the setting
    only takes effect before a session first touches a temporary table)."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):  # noqa: ANN001
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET temp_buffers = '256MB'")
        dbapi_connection.commit()


# SQLSTATEs worth another try: the transaction lost a race, or the server went away.
RETRY_SQLSTATES = {
    "40001": "a serialization failure",
    "40P01": "a deadlock",
    "57P01": "the server ended the session",  # pg_terminate_backend, a fast shutdown
    "57P02": "the server crashed",
    "57P03": "the server is starting up or shutting down",
}


def transient_error(exc: BaseException) -> str | None:
    """What went wrong, in a few words, when another try may succeed: the connection was
    lost or refused (failover, restart, a terminated backend), or the transaction lost a
    race (serialization failure, deadlock). None for any other error."""
    import psycopg

    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return "the connection was lost"
    if not isinstance(orig, psycopg.Error):
        return None
    state = orig.sqlstate or ""
    if state in RETRY_SQLSTATES:
        return RETRY_SQLSTATES[state]
    if state.startswith("08"):
        return "the connection failed"
    if orig.__class__ is psycopg.OperationalError and not state:
        # No SQLSTATE: the client saw the connection go (closed, refused, reset).
        return "the connection was lost or refused"
    return None


class CampaignDatabase(dg.ConfigurableResource):
    """The database imports load into and exports read from. `url` is a SQLAlchemy URL;
    empty means the embedded SQLite file. The deployment fixes it
    (campaign_pipelines/deployment.py): read from CAMPAIGN_DB_URL when a run starts, so
    the value, which may hold a password, is never shown, and no run config can change it.
    A step that meets a transient error (`transient_error`) is tried again by its retry
    policy (campaign_pipelines/step_errors.py: TRANSIENT_RETRY).

    `schemas_dir` and `check_modules` name the data model the database is brought to and
    the steps read their templates against (`Settings.schemas_dir`, `.check_modules`),
    fixed by the deployment too."""

    url: str | None = None
    schemas_dir: str = "data_schemas"
    check_modules: list[str] = []
    _session: sa.Connection | None = PrivateAttr(default=None)

    @property
    def model(self) -> schemas.DataModel:
        return schemas.load(Path(self.schemas_dir), tuple(self.check_modules))

    def session(self) -> sa.Connection:
        """The run's own connection, opened on first use and closed when the run ends.
        An import copies its valid rows into a temporary table while it validates them
        and merges them later in one transaction: both need the same connection."""
        if self._session is None:
            self._session = raw_engine(self.resolved_url).connect()
        return self._session

    def reset_session(self) -> None:
        """Drop the run's connection (and whatever it staged); the next session() opens
        another. Never back to the pool: a pooled PostgreSQL connection would keep the
        run's temporary tables (a failed or cancelled run's staged rows) for its next user."""
        if self._session is None:
            return
        session, self._session = self._session, None
        try:
            if session.dialect.name == "postgresql":
                session.invalidate()
            session.close()
        except sa.exc.DBAPIError:
            pass  # a connection already lost: nothing left to close

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.reset_session()

    @property
    def resolved_url(self) -> str:
        return self.url or default_db_url()

    @property
    def engine(self) -> sa.Engine:
        """The engine, the database as it is: nothing created or changed. A step that reads
        or writes the model's tables calls `migrate()` first."""
        return raw_engine(self.resolved_url)

    def migrate(self) -> None:
        """Bring the database to the data model: what a step does first when it reads or
        writes the model's tables (ops.py), so that a run, or a re-execution from any of its
        steps, meets the tables its templates were validated against. Checked once per
        model and process; a refused change raises SchemaChangeRefused (a CampaignError:
        one sentence per refusal) and changes nothing."""
        model_engine(self.resolved_url, self.model)

    @property
    def dialect(self) -> str:
        return make_url(self.resolved_url).get_backend_name()
