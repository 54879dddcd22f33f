"""Rejects, reject policies, all-or-nothing, and bad input: one clear sentence, no partial load."""

from __future__ import annotations

import csv
import os
import time

import dagster as dg
import pytest
import sqlalchemy as sa

from campaign_pipelines.importing import merge, steps
from campaign_pipelines.importing.reconcile import Reconciler
from resources.campaign_db import CampaignDatabase
from tests.helpers import failing_writes, people_file, people_template, stage_tables

GOOD = people_file("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray")


@pytest.fixture
def loaded(campaign):
    """A deployment whose tables already hold data, so "unchanged" means something."""
    campaign.template(people_template(target={"list": {"name": "vip", "mode": "replace"}, "service": "news"}))
    campaign.file("inbox/people.csv", GOOD)
    assert campaign.run("people").status == "finished"
    return campaign


def assert_failed_cleanly(campaign, result, before, *fragments):
    assert not result.success
    assert result.status == "failed"
    for fragment in fragments:
        assert fragment in result.error, result.error
    assert "Traceback" not in result.error and "\n" not in result.error.strip()
    assert campaign.snapshot() == before


def test_rejects_are_kept_three_ways_and_can_be_reimported(campaign):
    campaign.template(people_template(source={"skip_lines": 1}))
    campaign.file("inbox/people.csv", "# CRM export\n" + people_file("ann@x.org;C1;Ann;Lee", "bad-mail;C2;Bob;Ray", "cid@x.org;C3;Cid"))
    result = campaign.run("people")
    assert result.status == "finished_with_errors"
    assert (result.counts["rows_inserted"], result.counts["rows_rejected"]) == (1, 2)

    table = campaign.rows("import_reject", order_by="line_number")
    assert [(r["line_number"], r["line"], r["column_name"]) for r in table] == [
        (4, "bad-mail;C2;Bob;Ray", "email"),
        (5, "cid@x.org;C3;Cid", None),
    ]
    assert {r["run_id"] for r in table} == {result.run_id} and {r["template"] for r in table} == {"people"}

    rejects_file = campaign.data_dir / "rejects" / "people" / f"{result.run_id}.csv"
    assert result.counts["rejects_path"] == str(rejects_file)
    assert rejects_file.read_text().splitlines() == [
        "# CRM export", "email;crm_id;first_name;last_name", "bad-mail;C2;Bob;Ray", "cid@x.org;C3;Cid",
    ]
    with open(rejects_file.with_suffix(".reasons.csv")) as handle:
        reasons = list(csv.DictReader(handle))
    assert [r["line"] for r in reasons] == ["4", "5"]
    assert reasons[0]["reason"] == "email: 'bad-mail' is not a valid e-mail address"

    materializations = {
        e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
        for e in result.dagster.get_asset_materialization_events()
    }
    assert materializations["rejects/people"]["rows_rejected"].value == 2
    assert [r.data["line"] for r in materializations["rejects/people"]["preview"].records] == [4, 5]
    assert materializations["campaign/recipient"]["dagster/row_count"].value == 1

    # Fix the rejected lines in place and re-import the rejects file with the same template.
    fixed = rejects_file.read_text().replace("bad-mail", "bob@x.org").replace("C3;Cid", "C3;Cid;Moe")
    campaign.file("inbox/fixed.csv", fixed)
    again = campaign.run("people", file="inbox/fixed.csv")
    assert again.status == "finished" and again.counts["rows_inserted"] == 2


def test_status_tags(campaign):
    campaign.template(people_template())
    campaign.file("inbox/people.csv", GOOD)
    assert campaign.run("people").status == "finished"
    campaign.file("inbox/people.csv", people_file("cid@x.org;C3;Cid;Moe", "oops;C4;X;Y"))
    assert campaign.run("people").status == "finished_with_errors"
    assert campaign.run("people", file="inbox/missing.csv").status == "failed"


def test_on_error_stop_writes_nothing(loaded):
    before = loaded.snapshot()
    loaded.file("inbox/people.csv", people_file("cid@x.org;C3;Cid;Moe", "oops;C4;X;Y"))
    result = loaded.run("people", on_error="stop")
    assert_failed_cleanly(loaded, result, before, "1 line(s) rejected and errors.on_error is stop", "line 3")
    # The rejects file explains the failure even though nothing was loaded.
    assert (loaded.data_dir / "rejects" / "people" / f"{result.run_id}.csv").exists()


def test_max_rejects_fails_the_run_after_the_merge(loaded):
    before = loaded.snapshot()
    # Two rejects, one of them found only by the merge (a unique crm_id taken by ann).
    loaded.file("inbox/people.csv", people_file("cid@x.org;C1;Cid;Moe", "oops;C4;X;Y", "dan@x.org;C5;Dan;Fox"))
    result = loaded.run("people", max_rejects=1)
    assert_failed_cleanly(loaded, result, before, "2 lines rejected, more than errors.max_rejects (1)")
    ok = loaded.run("people", max_rejects=2)
    assert ok.status == "finished_with_errors" and ok.counts["rows_inserted"] == 1


def test_stop_if_first_lines_rejected(loaded):
    loaded.template(people_template(name="strict", errors={"stop_if_first_lines_rejected": 2}))
    before = loaded.snapshot()
    loaded.file("inbox/people.csv", people_file("x;C7;A;B", "y;C8;A;B", "eve@x.org;C9;Eve;Ito"))
    result = loaded.run("strict")
    assert_failed_cleanly(loaded, result, before, "the first 2 lines were all rejected")
    loaded.file("inbox/people.csv", people_file("x;C7;A;B", "eve@x.org;C9;Eve;Ito", "y;C8;A;B"))
    assert loaded.run("strict").status == "finished_with_errors"


def test_a_crash_in_the_merge_leaves_every_table_unchanged(loaded, monkeypatch):
    before = loaded.snapshot()

    def crash(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Reconciler, "_link_list_and_service", crash)
    loaded.file("inbox/people.csv", people_file("ann@x.org;C1;Annie;Lee", "cid@x.org;C3;Cid;Moe"))
    result = loaded.run("people")
    assert_failed_cleanly(loaded, result, before, "unexpected error in reconcile: RuntimeError: disk on fire")


def test_a_statement_the_database_refuses_fails_the_run_in_one_sentence(loaded):
    """A write the server refuses (here a trigger raising, as a full disk or a constraint
    another writer added would): the server's own message in one sentence naming the
    file and the step, no SQL, and every table unchanged."""
    before = loaded.snapshot()
    loaded.file("inbox/people.csv", people_file("ann@x.org;C1;Annie;Lee", "cid@x.org;C3;Cid;Moe"))
    with failing_writes(loaded.engine):
        result = loaded.run("people")
    assert_failed_cleanly(loaded, result, before, "inbox/people.csv: the Campaign database refused reconcile (", "disk on fire")
    assert result.error.strip().endswith("); nothing was written."), result.error
    assert "unexpected" not in result.error and "[SQL" not in result.error and "INSERT" not in result.error
    assert loaded.run("people").status == "finished"  # the fault gone, the same file loads


def test_staged_rows_live_in_the_run_stage_table(postgres_campaign, monkeypatch):
    """PostgreSQL: the validate step copies the valid rows into the root run's stage table
    (import_stage_<run id>, UNLOGGED: any session, any process can read it), the merge
    reads it and drops it with its commit; a run the reject policy failed drops it too.
    Each run's session ends with the run."""
    from campaign_pipelines.importing.stage import run_stage_name

    campaign = postgres_campaign
    campaign.template(people_template())
    sessions: dict[sa.Connection, int] = {}  # each run's session -> its backend pid
    staged: list[tuple[str, int, str]] = []  # (table, rows, persistence) when each validation ended
    validate_step, session = steps.validate_step, CampaignDatabase.session

    def spy_session(self):
        conn = session(self)
        if conn not in sessions:
            sessions[conn] = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            conn.commit()
        return conn

    def spy_validate(state, conn=None, progress=None, root=None):
        state = validate_step(state, conn, progress, root)
        with campaign.engine.connect() as other:  # another session sees the stage
            rows = other.exec_driver_sql(f'SELECT count(*) FROM "{state.staged}"').scalar_one()
            persistence = other.execute(
                sa.text("SELECT relpersistence FROM pg_class WHERE relname = :n"), {"n": state.staged}
            ).scalar_one()
        staged.append((state.staged, rows, persistence))
        return state

    monkeypatch.setattr(CampaignDatabase, "session", spy_session)
    monkeypatch.setattr(steps, "validate_step", spy_validate)

    def backend_alive(pid: int) -> bool:
        with campaign.engine.connect() as conn:
            query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
            for _ in range(50):  # a closed connection's backend exits a moment later
                if not conn.execute(query, {"pid": pid}).scalar_one():
                    return False
                time.sleep(0.1)
        return True

    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Ann;Lee", "oops;C2;X;Y", "bob@x.org;C3;Bob;Ray"))
    ok = campaign.run("people")
    assert ok.counts["rows_inserted"] == 2
    assert stage_tables(campaign.engine) == []
    before = campaign.snapshot()
    # Staged, then failed by the reject policy after the merge: rolled back, stage dropped.
    campaign.file("inbox/people.csv", people_file("cid@x.org;C1;Cid;Moe", "oops;C4;X;Y", "dan@x.org;C5;Dan;Fox"))
    failed = campaign.run("people", max_rejects=1)
    assert_failed_cleanly(campaign, failed, before, "2 lines rejected, more than errors.max_rejects (1)")
    assert staged == [(run_stage_name(ok.run_id), 2, "u"), (run_stage_name(failed.run_id), 2, "u")]
    assert stage_tables(campaign.engine) == []
    assert len(sessions) == 2 and not any(backend_alive(pid) for pid in sessions.values())


def test_a_merge_on_another_session_stages_again(postgres_campaign, tmp_path):
    """A reconcile step re-executed in a new process (after a run was killed, its work
    files left) does not find the stage of the dead session: it stages from the file."""
    from campaign_pipelines.templates import parse_template

    template = parse_template(people_template(), "people.yaml")
    file = postgres_campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray"))
    work = tmp_path / "work"
    work.mkdir()
    engine = postgres_campaign.engine
    with engine.connect() as validating, engine.connect() as merging:
        state = steps.validate_step(steps.map_step(steps.read_step(template, file, work)), validating)
        assert state.staged
        outcome = merge.reconcile_step(state, merging, "run", tmp_path / "rejects")
    assert outcome.counts["rows_inserted"] == 2
    assert [r["email"] for r in postgres_campaign.rows("recipient")] == ["ann@x.org", "bob@x.org"]


def test_missing_file(loaded):
    before = loaded.snapshot()
    result = loaded.run("people", file="inbox/nope.csv")
    assert_failed_cleanly(loaded, result, before, "nope.csv does not exist")


@pytest.mark.parametrize("path", ["../outside.csv", "/etc/passwd", "inbox/link.csv"])
def test_paths_outside_the_data_dir_are_refused(loaded, path):
    (loaded.root / "outside.csv").write_text(GOOD)
    os.symlink(loaded.root / "outside.csv", loaded.data_dir / "inbox" / "link.csv")
    before = loaded.snapshot()
    result = loaded.run("people", file=path)
    assert_failed_cleanly(loaded, result, before, f"file '{path}' is outside CAMPAIGN_DATA_DIR")


def test_undecodable_bytes_name_the_line(loaded):
    before = loaded.snapshot()
    loaded.file("inbox/people.csv", GOOD.encode() + "cid@x.org;C3;Cécile;Moe\n".encode("latin-1"))
    result = loaded.run("people")
    assert_failed_cleanly(loaded, result, before, "line 4 is not valid utf-8 (byte 0xe9)", "encoding")


def test_mapped_column_missing_from_the_header(loaded):
    before = loaded.snapshot()
    loaded.file("inbox/people.csv", "email;crm;first_name;last_name\nann@x.org;C1;Ann;Lee\n")
    result = loaded.run("people")
    assert_failed_cleanly(loaded, result, before, "has no column 'crm_id' (columns[1].source)", "its columns are: email, crm,")


def test_an_empty_file_has_no_header_and_fails(loaded):
    before = loaded.snapshot()
    loaded.file("inbox/people.csv", b"")
    assert_failed_cleanly(loaded, loaded.run("people"), before, "is empty; it has no header line")


def test_a_header_only_file_is_an_empty_delta(loaded):
    """A nightly file with no change: finished, nothing written (the list in replace mode
    keeps its members), unless errors.fail_if_empty asks for the alarm."""
    before = loaded.snapshot()
    loaded.file("inbox/people.csv", b"email;crm_id;first_name;last_name\r\n")
    result = loaded.run("people")
    assert result.status == "finished"
    assert result.counts["rows_read"] == 0 and result.counts["rejects_path"] is None
    assert loaded.snapshot() == before
    loaded.template(people_template(target={"list": {"name": "vip", "mode": "replace"}}, errors={"fail_if_empty": True}))
    assert_failed_cleanly(loaded, loaded.run("people"), before, "has no data lines after its header (errors.fail_if_empty)")


def test_duplicate_column_titles(loaded):
    before = loaded.snapshot()
    loaded.file("inbox/people.csv", "email;crm_id;email;last_name\nann@x.org;C1;x;Lee\n")
    result = loaded.run("people")
    assert_failed_cleanly(loaded, result, before, "header (line 1) has the column 'email' twice")


def test_bad_launch_override_is_a_clear_error(loaded):
    before = loaded.snapshot()
    result = loaded.run("people", delimiter=";;")
    assert_failed_cleanly(loaded, result, before, "launch config for people: delimiter=';;' (source.delimiter): delimiter must be one character")


def test_unknown_encoding_at_launch(loaded):
    before = loaded.snapshot()
    result = loaded.run("people", encoding="klingon")
    assert_failed_cleanly(loaded, result, before, "encoding='klingon' (source.encoding): unknown encoding 'klingon'")


def test_failed_run_rejects_asset_is_reported(loaded):
    loaded.file("inbox/people.csv", people_file("oops;C4;X;Y"))
    result = loaded.run("people", on_error="stop")
    # What the UI shows: the instance's event log for the run.
    events = [
        log.dagster_event
        for log in loaded.instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    ]
    assert [e.asset_key.to_user_string() for e in events] == ["rejects/people"]
    assert events[0].event_specific_data.materialization.metadata["rows_rejected"].value == 1
