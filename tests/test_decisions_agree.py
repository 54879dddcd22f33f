"""SQLite and PostgreSQL settle a file's duplicates and unique values by different
statements (a narrow GROUP BY joined back on SQLite, a window on PostgreSQL:
`Decisions._first_line`); for any file they must decide alike. Generated files of a few
e-mails and CRM ids, repeated in any case, some empty, are imported into an empty table
and then again into the loaded one, under each duplicates rule, on both databases
through the import's own steps; the tables, counts and rejects must be the same."""

from __future__ import annotations

import datetime as dt
import itertools
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaign_pipelines.importing import merge, steps
from campaign_pipelines.templates import parse_template
from resources.campaign_db import model_engine
import schemas
from tests.conftest import postgres_schema
from tests.helpers import people_file, people_template

EMAILS = ["ann@x.org", "ANN@x.org", "bob@x.org", "cid@x.org", ""]
CRM_IDS = ["C1", "C2", "C3", ""]
LINES = st.lists(
    st.tuples(st.sampled_from(EMAILS), st.sampled_from(CRM_IDS), st.sampled_from(["A", "B", "C"])),
    min_size=1, max_size=12,
)
NOW = dt.datetime(2026, 12, 8, tzinfo=dt.UTC)
counter = itertools.count()


def import_file(url: str, template, lines: list[tuple[str, str, str]], work: Path) -> dict:
    """One import of `lines` through the steps a run takes; its counts and rejects."""
    n = next(counter)
    path = work / f"people_{n}.csv"
    path.write_text(people_file(*[f"{e};{c};{name};L" for e, c, name in lines]))
    run_dir = work / f"run_{n}"
    run_dir.mkdir()
    with model_engine(url, schemas.BUILTIN).connect() as session:
        state = steps.validate_step(steps.map_step(steps.read_step(template, path, run_dir)), session)
        outcome = merge.reconcile_step(state, session, f"run-{n}", work / "rejects", now=NOW)
    return outcome.summary()


def contents(url: str) -> tuple[list, list]:
    """The recipients and the rejects, emptied for the next example."""
    with model_engine(url, schemas.BUILTIN).begin() as conn:
        records = conn.execute(sa.text("SELECT email, crm_id, first_name FROM recipient")).all()
        rejects = conn.execute(sa.text("SELECT line_number, column_name, reason FROM import_reject")).all()
        conn.execute(sa.text("DELETE FROM import_reject"))
        conn.execute(sa.text("DELETE FROM recipient"))
    in_order = lambda rows: sorted((tuple(r) for r in rows), key=lambda r: [(v is None, str(v)) for v in r])  # noqa: E731
    return in_order(records), in_order(rejects)


@pytest.fixture(scope="module")
def databases():
    with tempfile.TemporaryDirectory() as tmp, postgres_schema() as pg_url:
        yield Path(tmp), {"sqlite": f"sqlite:///{Path(tmp) / 'campaign.db'}", "postgresql": pg_url}


@pytest.mark.parametrize("rule", ["update", "ignore", "reject"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=LINES, second=LINES)
def test_both_databases_decide_a_file_alike(databases, rule, first, second):
    work, urls = databases
    template = parse_template(people_template(target={"duplicates_in_file": rule}), "people.yaml")
    results = {}
    for name, url in urls.items():
        counts = [import_file(url, template, lines, work) for lines in (first, second)]
        results[name] = (counts, *contents(url))
    assert results["sqlite"] == results["postgresql"]
