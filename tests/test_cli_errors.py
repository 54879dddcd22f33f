"""The command line when things go wrong: usage errors before any run, one sentence on
stderr, and a failed run's rejects reported like a finished run's."""

from __future__ import annotations

import csv
import io
import json

import dagster as dg
import pytest

from tests.helpers import people_file, people_template
from tests.test_cli import run_cli


def runs_in_home() -> list[str]:
    with dg.DagsterInstance.get() as instance:
        return list(instance.get_run_ids())


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("max_rejects=abc", "max_rejects='abc' (errors.max_rejects): Input should be a valid integer"),
        ("limit=-1", "limit=-1 (source.limit): Input should be greater than or equal to 1"),
        ("on_error=maybe", "on_error='maybe' (errors.on_error): Input should be 'reject_line' or 'stop'"),
        ("skip_lines=1.5", "skip_lines=1.5 (source.skip_lines): Input should be a valid integer"),
    ],
)
def test_a_launch_value_of_the_wrong_type_is_a_usage_error_before_any_run(cli_home, capsys, setting, says):
    code, out, err = run_cli(capsys, "run", "import_recipients", "--set", setting, "--json")
    assert code == 2 and out == ""
    assert err == f"error: launch config for import_recipients: {says}" + err.split(says, 1)[1]
    assert err.count("\n") == 1 and "Traceback" not in err
    assert runs_in_home() == []


def test_a_whole_number_given_as_a_float_is_taken_as_the_number(cli_home, capsys):
    code, out, _ = run_cli(capsys, "run", "import_recipients", "--set", "max_rejects=3.0", "--json")
    assert code == 0 and json.loads(out)["rows_rejected"] == 3


def test_a_missing_dagster_home_is_one_sentence(cli_home, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "typo"))
    code, out, err = run_cli(capsys, "run", "import_recipients")
    assert code == 2 and out == ""
    assert err == f"error: DAGSTER_HOME is {tmp_path / 'typo'}, which is not a folder; create it, or unset DAGSTER_HOME to keep runs in .campaign/dagster.\n"
    assert not (tmp_path / "typo").exists()


def test_a_failed_run_prints_one_sentence_unless_verbose(cli_home, capsys):
    code, out, err = run_cli(capsys, "run", "import_recipients", "--file", "inbox/absent.csv")
    assert code == 1
    assert err == f"error: file {cli_home.data_dir / 'inbox' / 'absent.csv'} does not exist.\n"
    assert "status: failed" in out
    code, _, err = run_cli(capsys, "run", "import_recipients", "--file", "inbox/absent.csv", "--verbose")
    assert code == 1
    assert "STEP_FAILURE" in err and "RUN_FAILURE" in err  # Dagster's own events
    assert err.rstrip().endswith("absent.csv does not exist.")


def test_a_failed_runs_rejects_are_reported_like_a_finished_runs(cli_home, capsys):
    code, out, err = run_cli(capsys, "run", "import_recipients", "--set", "max_rejects=1", "--json")
    payload = json.loads(out)
    assert code == 1 and payload["status"] == "failed" and err == ""
    assert "3 lines rejected, more than errors.max_rejects (1)" in payload["error"]
    assert payload["rows_rejected"] == 3
    rejects_file = cli_home.data_dir / "rejects" / "import_recipients" / f"{payload['run_id']}.csv"
    assert payload["rejects_path"] == str(rejects_file) and rejects_file.exists()
    assert cli_home.rows("import_reject", order_by="line_number") == [] and cli_home.rows("recipient") == []  # nothing written

    # `rejects` takes the short id the UI shows, and reads the failed run's rejects file.
    code, out, _ = run_cli(capsys, "rejects", payload["run_id"][:8], "--csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and rows[0] == ["line", "column", "reason", "text"]
    assert [(r[0], r[1]) for r in rows[1:]] == [("6", "email"), ("7", "birth_date"), ("10", "country")]
    assert rows[1][3].startswith("not-an-email;CRM-0005;Edith")

    # The rejects asset holds the failed run's rejects too.
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["rejects", "import_recipients"]))
    metadata = event.asset_materialization.metadata
    assert event.run_id == payload["run_id"] and metadata["rows_rejected"].value == 3
    assert metadata["run_status"].value == "failed"
    assert event.asset_materialization.description.startswith(f"Lines rejected by the failed run {payload['run_id']}: 3 lines rejected")


def test_rejects_of_an_unknown_ambiguous_or_clean_run(cli_home, capsys):
    cli_home.template(people_template())
    cli_home.file("inbox/people.csv", people_file("ann@x.org;C1;Ann;Lee"))
    code, out, _ = run_cli(capsys, "run", "people", "--json")
    clean = json.loads(out)["run_id"]
    code, out, err = run_cli(capsys, "rejects", clean)
    assert code == 0 and out == f"run {clean} rejected no line\n"
    code, out, err = run_cli(capsys, "rejects", "0000dead")
    assert code == 1 and out == "" and err == "error: no run has the id '0000dead' (give a run id, or the first characters of one).\n"
    code, _, err = run_cli(capsys, "rejects", "x'; DROP TABLE recipient; --")
    assert code == 1 and "no run has the id" in err
    code, _, err = run_cli(capsys, "rejects", "")
    assert code == 1
    # Two runs whose ids start alike (their rejects files are all `rejects` needs to see them).
    for run_id in ("abcd1111-0000-0000-0000-000000000000", "abcd2222-0000-0000-0000-000000000000"):
        cli_home.file(f"rejects/people/{run_id}.reasons.csv", "line,column,reason,text\n2,email,bad,x\n")
    code, _, err = run_cli(capsys, "rejects", "abcd")
    assert code == 2
    assert err == "error: run id 'abcd' matches 2 runs (abcd1111-0000-0000-0000-000000000000, abcd2222-0000-0000-0000-000000000000); give more of it.\n"
    code, out, _ = run_cli(capsys, "rejects", "abcd2")
    assert code == 0 and out == "line 2: bad  [email]\n    x\n"


def test_first_runs_on_a_new_dagster_home_at_once_all_finish(cli_home, tmp_path):
    """Three commands started together on a home no run has used yet: they create its
    storage in turn (each used to race the others in alembic and print a traceback)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "campaign-pipelines"
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "new_home")}
    (tmp_path / "new_home").mkdir()
    started = [
        subprocess.Popen([str(script), "run", "import_recipients", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outcomes = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in started]
    assert [code for code, _, _ in outcomes] == [0, 0, 0], [err[-2000:] for _, _, err in outcomes]
    assert sorted(json.loads(out)["rows_inserted"] for _, out, _ in outcomes) == [0, 0, 5]
    assert all(err == "" for _, _, err in outcomes)


def test_a_header_read_with_the_wrong_delimiter_says_which_one_it_looks_like(cli_home, capsys):
    cli_home.template(people_template(source={"delimiter": ","}))
    cli_home.file("inbox/people.csv", people_file("ann@x.org;C1;Ann;Lee"))
    code, _, err = run_cli(capsys, "run", "people")
    assert code == 1
    assert err == (
        f"error: file {cli_home.data_dir / 'inbox' / 'people.csv'}: its header line 'email;crm_id;first_name;last_name' "
        "looks ';'-separated, not ','-separated (source.delimiter); set delimiter: ';' in the template or at launch.\n"
    )
    code, _, _ = run_cli(capsys, "run", "people", "--set", "delimiter=;")
    assert code == 0


def test_a_mistyped_file_or_column_names_the_closest_one(cli_home, capsys):
    code, _, err = run_cli(capsys, "run", "import_recipients", "--file", "inbox/recipient.csv")
    assert code == 1
    assert err == f"error: file {cli_home.data_dir / 'inbox' / 'recipient.csv'} does not exist (did you mean 'recipients.csv'?).\n"
    code, _, err = run_cli(capsys, "run", "import_recipients", "--file", "nowhere/recipients.csv")
    assert code == 1 and err.endswith(f"does not exist (there is no folder {cli_home.data_dir / 'nowhere'}).\n")

    cli_home.template(people_template(columns=[{"source": "e-mail", "target": "email"}], target={"secondary_keys": []}))
    cli_home.file("inbox/people.csv", people_file("ann@x.org;C1;Ann;Lee"))
    code, _, err = run_cli(capsys, "run", "people")
    assert code == 1
    assert "has no column 'e-mail' (columns[0].source) (did you mean 'email'?); its columns are: email, crm_id" in err
