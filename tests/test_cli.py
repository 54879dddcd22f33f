"""`campaign-pipelines`: JSON output, exit codes, and one-sentence errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from campaign_pipelines.cli import main
from tests.helpers import people_file, people_template

SAMPLE = Path(__file__).parent.parent / "examples" / "recipients.csv"


@pytest.fixture
def home(sqlite_campaign, monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    return sqlite_campaign


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_json_then_rejects(home, capsys):
    home.file("inbox/recipients.csv", SAMPLE.read_bytes())
    code, out, _ = run_cli(capsys, "run", "import_recipients", "--json")
    assert code == 0
    payload = json.loads(out.strip().splitlines()[-1])
    assert payload["template"] == "import_recipients"
    assert payload["status"] == "finished_with_errors"
    for key in ("run_id", "rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_ignored", "rows_rejected", "rejects_path"):
        assert key in payload
    assert (payload["rows_read"], payload["rows_inserted"], payload["rows_rejected"]) == (9, 5, 3)
    assert Path(payload["rejects_path"]).exists()

    code, out, _ = run_cli(capsys, "rejects", payload["run_id"], "--csv")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == "line,column,reason,text"
    assert lines[1].startswith("6,email,email: 'not-an-email' is not a valid e-mail address,")
    assert len(lines) == 4


def test_run_failed_exits_1_with_one_sentence(home, capsys):
    code, out, err = run_cli(capsys, "run", "import_recipients", "--file", "inbox/absent.csv", "--json")
    assert code == 1
    payload = json.loads(out.strip().splitlines()[-1])
    assert payload["status"] == "failed"
    assert payload["error"].endswith("absent.csv does not exist.")


def test_set_overrides_and_usage_errors(home, capsys):
    home.template(people_template())
    home.file("inbox/people.tsv", people_file("ann@x.org;C1;Ann;Lee").replace(";", "\t"))
    code, out, _ = run_cli(capsys, "run", "people", "--file", "inbox/people.tsv", "--set", "delimiter=\\t", "--set", "max_rejects=0", "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["rows_inserted"] == 1
    code, _, err = run_cli(capsys, "run", "people", "--set", "colour=blue")
    assert code == 2 and "--set 'colour=blue': expected KEY=VALUE with KEY one of file," in err
    code, _, err = run_cli(capsys, "run", "nope")
    assert code == 2 and "error: no job template named 'nope'" in err
    code, _, err = run_cli(capsys, "run", "people", "--output", "x.csv")
    assert code == 2 and "--output is for export templates" in err
    assert run_cli(capsys, "frobnicate")[0] == 2


def test_templates_list_show_duplicate_validate(home, capsys):
    home.template(people_template(name="broken").replace("keys:\n  - email", "keys:\n  - nope"), name="broken")
    code, out, _ = run_cli(capsys, "templates", "list", "--json")
    listing = json.loads(out)
    assert code == 0
    assert {t["name"] for t in listing["templates"]} == {"new_text_import", "import_recipients", "import_denylist", "new_text_export"}
    assert any("broken.yaml: target.keys: 'nope' is not a mapped column" in e for e in listing["errors"])

    code, out, _ = run_cli(capsys, "templates", "show", "import_denylist")
    assert code == 0 and "name: import_denylist" in out and "email_denylisted" in out

    code, out, _ = run_cli(capsys, "templates", "duplicate", "import_recipients", "my_crm")
    assert code == 0
    copy = yaml.safe_load((home.templates_dir / "my_crm.yaml").read_text())
    assert copy["name"] == "my_crm" and copy["target"]["secondary_keys"] == ["crm_id"]
    code, _, err = run_cli(capsys, "templates", "duplicate", "import_recipients", "import_denylist")
    assert code == 2 and "exists already" in err
    code, _, err = run_cli(capsys, "templates", "duplicate", "import_recipients", "Bad Name")
    assert code == 2 and "name: String should match pattern" in err

    code, out, err = run_cli(capsys, "templates", "validate")
    assert code == 1 and "ok: " in out and "my_crm.yaml" in out and "invalid: " in err
    code, out, _ = run_cli(capsys, "templates", "validate", str(home.templates_dir / "my_crm.yaml"))
    assert code == 0
    code, _, err = run_cli(capsys, "templates", "validate", str(home.templates_dir / "broken.yaml"))
    assert code == 1 and "broken.yaml: target.keys" in err


def test_console_script_prints_only_json_on_stdout(home, tmp_path):
    """The installed command, as a user runs it: stdout is one JSON object."""
    home.file("inbox/recipients.csv", SAMPLE.read_bytes())
    script = Path(sys.executable).parent / "campaign-pipelines"
    done = subprocess.run([str(script), "run", "import_recipients", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads(done.stdout)
    assert payload["rows_inserted"] == 5
    bad = subprocess.run([str(script), "templates", "show", "nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: no job template named 'nope'") and "Traceback" not in bad.stderr


def test_init_creates_folders_and_copies_samples(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAMPAIGN_DATA_DIR", str(tmp_path / "data"))
    code, _, _ = run_cli(capsys, "init", "--samples", str(SAMPLE.parent))
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["archive", "inbox", "outbox", "rejects"]
    assert (tmp_path / "data" / "inbox" / "recipients.csv").read_bytes() == SAMPLE.read_bytes()


def test_preview_writes_nothing(home, capsys):
    home.file("inbox/recipients.csv", SAMPLE.read_bytes())
    code, out, _ = run_cli(capsys, "templates", "preview", "import_recipients", "--rows", "5")
    assert code == 0
    assert out.splitlines()[0] == "5 line(s) read, 4 valid, 1 rejected (before reconciliation)"
    assert "albert.camus@example.org" in out and "01000" in out
    assert "email: 'not-an-email' is not a valid e-mail address" in out
    assert "george.sand" not in out  # line 7: beyond --rows 5
    assert home.rows("recipient") == []
    code, out, _ = run_cli(capsys, "run", "import_recipients", "--json")
    code, out, _ = run_cli(capsys, "templates", "preview", "new_text_export", "--rows", "2")
    assert code == 0
    assert "albert.camus@example.org" in out and "jacques.brel@example.be" in out and "jean.moulin" not in out
    assert list((home.data_dir / "outbox").glob("*")) == []


def test_run_export_json(home, capsys):
    home.file("inbox/recipients.csv", SAMPLE.read_bytes())
    run_cli(capsys, "run", "import_recipients", "--json")
    code, out, _ = run_cli(capsys, "run", "new_text_export", "--output", "outbox/all.csv", "--json")
    payload = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and payload["status"] == "finished" and payload["rows_exported"] == 4
    assert payload["output_path"] == str(home.data_dir / "outbox" / "all.csv")
    assert (home.data_dir / "outbox" / "all.csv").read_text().count("\n") == 5
    code, _, err = run_cli(capsys, "run", "new_text_export", "--file", "x.csv")
    assert code == 2 and "--file is for import templates" in err


def test_run_a_partition_or_a_given_file_of_a_partitioned_template(home, capsys):
    daily = {"daily": {"start": "2025-01-01", "path": "inbox/people_{date:%Y%m%d}.csv"}}
    home.template(people_template(partitions=daily))
    home.file("inbox/people_20250102.csv", people_file("ann@x.org;C1;Ann;Lee"))
    home.file("inbox/late.csv", people_file("bob@x.org;C2;Bob;Ray"))
    code, out, _ = run_cli(capsys, "run", "people", "--partition", "2025-01-02", "--json")
    assert code == 0 and json.loads(out)["rows_inserted"] == 1
    # A day's partition is one asset partition: another file loads as a given day's.
    code, _, err = run_cli(capsys, "run", "people", "--file", "inbox/late.csv")
    assert code == 2 and "people is partitioned by day: give --partition YYYY-MM-DD" in err
    code, out, _ = run_cli(capsys, "run", "people", "--partition", "2025-01-03", "--file", "inbox/late.csv", "--json")
    assert code == 0 and json.loads(out)["rows_inserted"] == 1
    code, _, err = run_cli(capsys, "run", "people", "--partition", "2024-12-31")
    assert code == 2 and "--partition '2024-12-31': people has no such daily partition" in err


def test_a_dated_source_path_reads_todays_file_in_runs_and_previews(home, capsys):
    import datetime as dt

    home.template(people_template(source={"path": "inbox/people_{date:%Y%m%d}.csv"}))
    home.file(f"inbox/people_{dt.date.today():%Y%m%d}.csv", people_file("ann@x.org;C1;Ann;Lee"))
    code, out, _ = run_cli(capsys, "templates", "preview", "people")
    assert code == 0 and out.startswith("1 line(s) read, 1 valid, 0 rejected")
    code, out, _ = run_cli(capsys, "run", "people", "--json")
    assert code == 0 and json.loads(out)["rows_inserted"] == 1
