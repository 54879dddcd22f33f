"""A console a data engineer can trust, in Debian's Chromium against a real
dagster-webserver (tests/ui_support.py): no run config moves a deployment setting, a bad
Launchpad value is refused or fails in one sentence, a template that cannot load shows
where its job would be, and runs launched from an asset page (Materialize, a partitioned
backfill through the daemon) run the template's steps with its tags on the deployment's
executor."""

from __future__ import annotations

import re
import time
import urllib.parse

import dagster as dg
import pytest

from tests.helpers import people_file, people_template
from tests.ui_support import (
    DAILY_TEMPLATE, LOCATION, RUN_TIMEOUT, Page, Webserver, cli, daemon, expect, reload_location, wait_for_run,
)
from tests.ui_support import browser, page, webserver  # noqa: F401  (fixtures, found by name)

SHOTS = "/tmp/ui_console_{}.png"


def open_launchpad(page: Page, job: str, config: str) -> None:
    """A job's Launchpad holding `config`, as a user would have typed it."""
    page.goto(f"/locations/{LOCATION}/jobs/{job}/playground/setup?config={urllib.parse.quote(config)}")
    expect(page.locator(".CodeMirror-code")).to_contain_text(config.splitlines()[0].strip())


def runs_of(webserver: Webserver, **tags: str) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(webserver.home)) as instance:
        return list(instance.get_runs(dg.RunsFilter(tags=tags) if tags else None))


def test_a_run_config_moving_the_data_folder_is_refused_before_any_run(page: Page, webserver: Webserver) -> None:
    """The partitioned job's Launchpad shows the resources section, with nothing to set:
    a data_dir typed there is an error and the run cannot be launched (nor through the API)."""
    before = len(runs_of(webserver))
    open_launchpad(page, DAILY_TEMPLATE, (
        "ops:\n  crm_daily_steps:\n    config:\n      file: inbox/crm/people_20250102.csv\n"
        "resources:\n  file_store:\n    config:\n      data_dir: /tmp\n"
    ))
    error = 'Received unexpected config entry "data_dir" at path root:resources:file_store:config.'
    expect(page.get_by_text(re.compile(re.escape(error)))).to_be_visible()
    expect(page.get_by_role("button", name="Launch Run")).to_be_disabled()
    page.screenshot(path=SHOTS.format("data_dir_refused"))

    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    client = DagsterGraphQLClient("127.0.0.1", port_number=webserver.port, timeout=60)
    with pytest.raises(DagsterGraphQLClientError, match="RunConfigValidationInvalid"):
        client.submit_job_execution("import_recipients", run_config={
            "file": "inbox/recipients.csv", "resources": {"campaign_db": {"config": {"url": "sqlite:////tmp/x.db"}}},
        })
    assert len(runs_of(webserver)) == before


def test_a_bad_launchpad_value_is_refused_or_fails_in_the_clis_one_sentence(page: Page, webserver: Webserver) -> None:
    # An enumerated key: refused by the Launchpad itself.
    open_launchpad(page, "import_recipients", "file: inbox/recipients.csv\non_error: maybe\n")
    expect(page.get_by_text("Value at path root:on_error not in enum type OnError got maybe")).to_be_visible()
    expect(page.get_by_role("button", name="Launch Run")).to_be_disabled()

    # A value only the template model can judge: the run fails at once with the CLI's sentence.
    refused = cli(webserver, "run", "import_recipients", "--set", "skip_lines=-1")
    assert refused.returncode == 2
    sentence = refused.stderr.removeprefix("error: ").strip()
    assert sentence == "launch config for import_recipients: skip_lines=-1 (source.skip_lines): Input should be greater than or equal to 0"
    open_launchpad(page, "import_recipients", "file: inbox/recipients.csv\nskip_lines: -1\n")
    with page.expect_response(lambda r: "/graphql" in r.url and "LaunchPipelineExecution" in (r.request.post_data or "")) as response:
        page.get_by_role("button", name="Launch Run").click()
    launched = response.value.json()["data"]["launchPipelineExecution"]
    run_id = launched["run"].get("runId") or launched["run"]["id"]
    assert wait_for_run(webserver, run_id) == "FAILURE"
    with dg.DagsterInstance.from_config(str(webserver.home)) as instance:
        (failure,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        run = instance.get_run_by_id(run_id)
    assert failure.dagster_event.step_failure_data.user_failure_data.description == sentence
    assert run.tags["campaign/status"] == "failed"
    page.goto(f"/runs/{run_id}?logs=type:STEP_FAILURE")
    expect(page.get_by_text(re.compile(re.escape(sentence))).first).to_be_visible()
    page.screenshot(path=SHOTS.format("launch_value_failed"))


def test_a_template_that_cannot_load_shows_as_its_job_saying_why(page: Page, webserver: Webserver) -> None:
    broken = webserver.root / "templates" / "crm_typo.yaml"
    broken.write_text(people_template(name="crm_typo").replace("delimiter", "delimter"), encoding="utf-8")
    try:
        reload_location(webserver)
        page.goto("/jobs")
        expect(page.locator(f"a[href='/locations/{LOCATION}/jobs/crm_typo']")).to_have_text("crm_typo")
        expect(page.locator(f"a[href='/locations/{LOCATION}/jobs/import_recipients']")).to_be_visible()  # the others load
        page.goto(f"/locations/{LOCATION}/jobs/crm_typo")
        expect(page.get_by_text(re.compile(
            r"^This job template cannot load: .*crm_typo\.yaml: source\.delimter: unknown key \(did you mean 'delimiter'\?\)$"
        )).first).to_be_visible()
        expect(page.get_by_text("campaign/load_error: template")).to_be_visible()
        page.screenshot(path=SHOTS.format("broken_template"))
    finally:
        broken.unlink()
        reload_location(webserver)


def test_templates_new_reload_shows_the_draft_as_a_job(page: Page, webserver: Webserver) -> None:
    webserver.data_dir.joinpath("inbox", "sample.csv").write_text("Mail;Prénom\nann@x.org;Ann\n", encoding="utf-8")
    done = cli(webserver, "templates", "new", "ui_draft", "--from-file", "inbox/sample.csv", "--reload", f"127.0.0.1:{webserver.port}")
    try:
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith(f"reloaded {LOCATION} on 127.0.0.1:{webserver.port}")
        page.goto(f"/locations/{LOCATION}/jobs/ui_draft")
        expect(page.get_by_text("ui_draft (draft)").first).to_be_visible()
    finally:
        (webserver.root / "templates" / "ui_draft.yaml").unlink()
        reload_location(webserver)


def test_a_partitioned_backfill_from_the_asset_page_runs_with_the_templates_tags(page: Page, webserver: Webserver) -> None:
    """Materialize… on imports/<daily template>: Dagster makes it an asset backfill, which
    the daemon runs on its asset job; each day's run carries the template's tags and runs
    its steps on the deployment's executor (in process), and loads its day's file."""
    for day, email in (("20250105", "d5@x.org"), ("20250106", "d6@x.org")):
        webserver.data_dir.joinpath("inbox", "crm").mkdir(parents=True, exist_ok=True)
        webserver.data_dir.joinpath("inbox", "crm", f"people_{day}.csv").write_text(people_file(f"{email};{day};Day;{day}"))
    page.goto(f"/assets/imports/{DAILY_TEMPLATE}")
    page.get_by_role("button", name=re.compile(r"Materialize…$")).first.click()
    confirm = page.get_by_role("dialog")
    expect(confirm.get_by_text(f"rejects / {DAILY_TEMPLATE}")).to_be_visible()  # materialized with it
    confirm.get_by_role("button", name="Confirm").click()
    dialog = page.get_by_role("dialog").filter(has_text="Partition selection")
    days = dialog.get_by_placeholder(re.compile(r"^ex: 2025-01-01"))
    days.fill("[2025-01-05...2025-01-06]")
    days.press("Enter")
    expect(dialog.get_by_text("2 partitions", exact=True)).to_be_visible()
    page.screenshot(path=SHOTS.format("asset_backfill_dialog"))
    with page.expect_response(lambda r: "/graphql" in r.url and "launchPartitionBackfill(" in (r.request.post_data or "")) as response:
        dialog.get_by_role("button", name="Launch backfill", exact=True).click()
    launched = response.value.json()["data"]["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill = launched["backfillId"]

    with daemon(webserver):
        deadline = time.monotonic() + RUN_TIMEOUT
        while not ((runs := runs_of(webserver, **{"dagster/backfill": backfill})) and len(runs) == 2 and all(r.is_finished for r in runs)):
            assert time.monotonic() < deadline, f"the backfill's runs did not end: {runs}\n{webserver.log_tail()}"
            time.sleep(1)
    with dg.DagsterInstance.from_config(str(webserver.home)) as instance:
        for run in runs:
            assert run.status == dg.DagsterRunStatus.SUCCESS, run.tags
            assert run.job_name == "__ASSET_JOB"  # the asset page launches Dagster's asset job (docs/console.md)
            tags = {k: v for k, v in run.tags.items() if k.startswith("campaign/")}
            assert tags == {"campaign/template": DAILY_TEMPLATE, "campaign/kind": "import", "campaign/table": "recipient",
                            "campaign/status": "finished"}
            engine = [e.user_message for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]
            assert any(m.startswith("Executing steps in process") for m in engine), engine
    assert sorted(r.tags["dagster/partition"] for r in runs) == ["2025-01-05", "2025-01-06"]
    page.goto(f"/runs/b/{backfill}?tab=runs")  # the backfill's page, its runs listed
    expect(page.get_by_text(backfill).first).to_be_visible()
    for run in runs:
        expect(page.locator(f"a[href='/runs/{run.run_id}']").first).to_be_visible()
    page.screenshot(path=SHOTS.format("asset_backfill"))
