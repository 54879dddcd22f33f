"""`campaign-pipelines run` launches as the UI does: a run of the workspace's code
location (job origin, repository label, tags) that shows on its job's page; `--no-wait`
hands it to the run queue; `--progress` draws the steps' progress lines; `--file` takes a
path from the working directory inside CAMPAIGN_DATA_DIR."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import dagster as dg

from campaign_pipelines.launching import LOCATION_NAME
from campaign_pipelines.progress import Bar
from tests.test_cli import SAMPLE, run_cli

REPOSITORY_LABEL = f"__repository__@{LOCATION_NAME}"  # what a job page's Runs tab filters on


def dagster_home_instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"])


def test_a_cli_run_belongs_to_the_code_location_and_its_job(cli_home, capsys):
    code, out, _ = run_cli(capsys, "run", "import_recipients", "--json")
    payload = json.loads(out)
    assert code == 0 and (payload["rows_read"], payload["rows_inserted"], payload["rows_rejected"]) == (9, 5, 3)
    with dagster_home_instance() as instance:
        run = instance.get_run_by_id(payload["run_id"])
        assert run.remote_job_origin.location_name == LOCATION_NAME
        assert run.remote_job_origin.job_name == "import_recipients"
        assert run.job_code_origin.repository_origin.code_pointer.module == "campaign_pipelines.definitions"
        assert run.tags["campaign/table"] == "recipient" and run.tags["dagster/code_location"] == LOCATION_NAME
        # The job page's Runs tab: its job name and the location's repository label.
        on_job_page = instance.get_runs(dg.RunsFilter(job_name="import_recipients", tags={".dagster/repository": REPOSITORY_LABEL}))
        assert [r.run_id for r in on_job_page] == [payload["run_id"]]
        # No daemon serves this home's queue: the command ran the job itself.
        assert instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED) == []


def test_no_wait_queues_the_run_and_says_no_daemon_serves_the_queue(cli_home, capsys):
    code, out, err = run_cli(capsys, "run", "import_recipients", "--no-wait")
    run_id = out.strip()
    assert code == 0
    assert f"note: run {run_id} is queued; no dagster-daemon serves this instance's queue" in err
    with dagster_home_instance() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.QUEUED
    assert cli_home.rows("recipient") == []  # nothing ran


def test_no_wait_on_an_instance_without_a_queue_is_one_sentence(cli_home, capsys):
    (cli_home.root / "dagster_home" / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    code, _, err = run_cli(capsys, "run", "import_recipients", "--no-wait")
    assert code == 2
    assert err.strip() == (
        "error: --no-wait hands the run to the instance's run queue, and this instance has none "
        "(its run_coordinator is not the QueuedRunCoordinator): run without --no-wait."
    )


def test_progress_lines_go_to_stderr_when_asked(cli_home, capsys):
    code, out, err = run_cli(capsys, "run", "import_recipients", "--json", "--progress")
    assert code == 0 and json.loads(out)["rows_inserted"] == 5
    lines = err.strip().splitlines()
    assert lines == [
        line for line in lines if line.startswith("progress ")
    ], err  # nothing else: Dagster's own output stays off stderr
    steps = [line.split(":")[0] for line in lines]
    assert steps == ["progress read_file", "progress map_columns", "progress validate_rows"]
    assert lines[-1].startswith("progress validate_rows: 9 of 9 lines (100%), 3 rejected so far,")
    # Without --progress and not on a terminal: nothing.
    code, _, err = run_cli(capsys, "run", "import_recipients", "--json")
    assert code == 0 and err == ""


def test_a_file_given_from_the_working_directory_inside_the_data_dir(cli_home, capsys, monkeypatch):
    monkeypatch.chdir(cli_home.root)
    code, out, _ = run_cli(capsys, "run", "import_recipients", "--file", "data/inbox/recipients.csv", "--json")
    assert code == 0 and json.loads(out)["rows_read"] == 9
    (cli_home.root / "elsewhere.csv").write_bytes(SAMPLE.read_bytes())
    code, _, err = run_cli(capsys, "run", "import_recipients", "--file", "elsewhere.csv")
    assert code == 2 and "is outside CAMPAIGN_DATA_DIR" in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_progress_is_one_bar_redrawn_in_place():
    screen = Terminal()
    bar = Bar(screen)
    bar.draw("progress validate_rows: 250 of 1,000 lines (25%), 2 rejected so far, 0.5 s elapsed, about 1.5 s left")
    bar.draw("unrelated log line")
    bar.draw("progress validate_rows: 1,000 of 1,000 lines (100%), 3 rejected so far, 2.0 s elapsed, about 0.0 s left")
    bar.close()
    frames = screen.getvalue().split("\r\x1b[2K")[1:]
    assert frames[0] == "[######..................] validate_rows: 250 of 1,000 lines (25%), 2 rejected so far, 0.5 s elapsed, about 1.5 s left"
    assert frames[1].startswith("[########################] validate_rows: 1,000 of 1,000 lines (100%)") and frames[1].endswith("\n")
    assert len(frames) == 2  # the other line drew nothing


def test_each_steps_last_progress_line_counts_all_of_its_lines(cli_home, capsys):
    """A line the map step rejects (no such date) is not in the validation's total."""
    lines = SAMPLE.read_text().splitlines()
    lines[1] = lines[1].replace("07/11/1967", "31/02/1967")
    cli_home.file("inbox/recipients.csv", "\n".join(lines) + "\n")
    code, out, err = run_cli(capsys, "run", "import_recipients", "--json", "--progress")
    assert code == 0 and json.loads(out)["rows_rejected"] == 4
    last = {line.split(":")[0]: line for line in err.splitlines()}
    assert last["progress map_columns"].startswith("progress map_columns: 9 of 9 lines (100%), 1 rejected so far")
    done, total = re.match(r"progress validate_rows: (\d+) of (\d+) lines \(100%\)", last["progress validate_rows"]).groups()
    assert done == total, last["progress validate_rows"]


def test_a_run_loads_only_what_it_uses(cli_home):
    """A command builds the definitions once (not again through the code location's
    module-level `defs`), and an export does not load pandas (bench/fixed_cost.py: 6 % of its CPU):
    pandas comes with the rejects' DataFrame only."""
    code = (
        "import sys; from campaign_pipelines.cli import main; "
        "code = main(['run', 'new_text_export', '--json']); "
        "print(code, 'pandas' in sys.modules, 'campaign_pipelines.definitions' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "0 False False", done.stdout + done.stderr
