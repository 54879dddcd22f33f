"""End-to-end UI tests: a real dagster-webserver on the project's workspace, driven by
Debian's Chromium through Playwright (spec section 5: jobs, Launchpad, runs, schedules,
collectors and backfills). The webserver, the browser and the steps: tests/ui_support.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.scheduler.instigation import InstigatorType

from tests.ui_support import (
    DAILY_TEMPLATE, LOCATION, SCREENSHOT, USER_TEMPLATE, Page, Webserver, builtin_job_names, check_row, detail, expect,
    instigator_status, launch_and_wait, materialize_from_the_asset_page, re_execute, switches_on_and_off,
)
from tests.ui_support import browser, finished_run, page, webserver  # noqa: F401  (fixtures, found by name)


def test_jobs_page_lists_one_job_per_template(page: Page) -> None:
    expected = builtin_job_names() | {USER_TEMPLATE, DAILY_TEMPLATE, "campaign_cleanup"}  # and the work data cleanup
    assert {"import_recipients", "import_denylist", "new_text_import"} <= expected
    page.goto("/jobs")
    job_links = page.locator(f"a[href^='/locations/{LOCATION}/jobs/']")
    for name in sorted(expected):
        link = page.locator(f"a[href='/locations/{LOCATION}/jobs/{name}']")
        expect(link).to_be_visible()
        expect(link).to_have_text(name)
    expect(job_links).to_have_count(len(expected))
    assert {link.inner_text().strip() for link in job_links.all()} == expected


def test_job_page_shows_label_and_description(page: Page) -> None:
    page.goto(f"/locations/{LOCATION}/jobs/import_recipients")
    expect(page.get_by_text("Import recipients", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Insert or update recipients from a semicolon-separated file"))).to_be_visible()
    expect(page.get_by_text("campaign/template: import_recipients")).to_be_visible()
    expect(page.get_by_text("campaign/table: recipient")).to_be_visible()


def test_launchpad_is_flat_and_prefilled(page: Page) -> None:
    page.goto(f"/locations/{LOCATION}/jobs/import_recipients/playground")
    editor = page.locator(".CodeMirror-code")
    expect(editor.get_by_text("file: inbox/recipients.csv", exact=True)).to_be_visible()
    expect(editor.get_by_text("delimiter: ;", exact=True)).to_be_visible()
    expect(editor.get_by_text("on_error: reject_line", exact=True)).to_be_visible()
    # Flat: no `ops:` / `config:` nesting for the user to fill in.
    expect(editor).not_to_contain_text("ops:")
    expect(page.get_by_text("No errors", exact=True)).to_be_visible()
    expect(page.get_by_text("No missing config", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Launch Run")).to_be_enabled()


def test_run_page_shows_status_tag_and_rejects_asset(page: Page, webserver: Webserver, finished_run: str) -> None:
    run_id = finished_run
    # The run worker inherits the webserver's working directory: the embedded SQLite database is there.
    assert (webserver.root / ".campaign" / "campaign.db").is_file()
    assert (webserver.data_dir / "rejects" / "import_recipients" / f"{run_id}.csv").is_file()

    page.goto(f"/runs/{run_id}")
    expect(page.get_by_text(run_id[:8], exact=True)).to_be_visible()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    expect(page.get_by_role("link", name="import_recipients", exact=True)).to_be_visible()
    expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible()

    # Run tags are behind "View tags and config" in Dagster 1.13.
    page.get_by_role("button", name="View tags and config").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("campaign/status: finished_with_errors", exact=True)).to_be_visible()
    expect(dialog.get_by_text("campaign/template: import_recipients", exact=True)).to_be_visible()
    expect(page.locator(".bp5-overlay-enter-active, .bp5-overlay-appear-active")).to_have_count(0)  # faded in
    page.screenshot(path=str(SCREENSHOT.with_name("ui_run_tags.png")))
    dialog.get_by_role("button", name="OK").click()
    expect(dialog).to_have_count(0)

    # The event log, filtered to materializations, as a user would type it in "Filter...".
    page.goto(f"/runs/{run_id}?logs=type:ASSET_MATERIALIZATION")
    expect(page.get_by_text("rejects / import_recipients")).to_be_visible()
    expect(page.get_by_text("imports / import_recipients")).to_be_visible()
    expect(page.locator("a[href^='/assets/rejects/import_recipients']")).to_be_visible()
    expect(page.get_by_text("Loaded by import_recipients.")).to_be_visible()
    expect(page.get_by_text("campaign / recipient")).to_be_visible()
    # The three materializations (the import's, the table's folded under "View full message",
    # and the rejects') count the sample's 3 rejected lines.
    rejected = page.locator("tr").filter(has=page.get_by_text("rows_rejected", exact=True))
    expect(rejected.locator("td:nth-child(2)")).to_have_text(["3", "3", "3"])
    expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_have_count(0)  # the filter is applied
    page.screenshot(path=str(SCREENSHOT))


def test_failed_run_on_max_rejects_keeps_its_rejects_asset(page: Page, webserver: Webserver) -> None:
    """A run failed by its reject policy (3 rejects > errors.max_rejects 1) still records a
    materialization of rejects/import_recipients: its run log and the asset's events show it
    next to the step failure's one-sentence error."""
    run_id, status = launch_and_wait(webserver, {"file": "inbox/recipients.csv", "max_rejects": 1})
    assert status == "FAILURE", f"run {run_id} ended {status}:\n{webserver.log_tail()}"
    assert (webserver.data_dir / "rejects" / "import_recipients" / f"{run_id}.csv").is_file()

    page.goto(f"/runs/{run_id}?logs=type:STEP_FAILURE")
    expect(page.get_by_text("Failure", exact=True).first).to_be_visible()
    expect(page.get_by_text(re.compile(
        r"recipients\.csv: 3 lines rejected, more than errors\.max_rejects \(1\); nothing was written "
        r"\(first: line 6: email: 'not-an-email' is not a valid e-mail address\)\."
    ))).to_be_visible()

    page.goto(f"/runs/{run_id}?logs=type:ASSET_MATERIALIZATION")
    expect(page.get_by_text(re.compile(re.escape(f"Lines rejected by the failed run {run_id}: 3 lines rejected")))).to_be_visible()
    expect(page.locator("a[href^='/assets/rejects/import_recipients']")).to_be_visible()
    rejected = page.locator("tr").filter(has=page.get_by_text("rows_rejected", exact=True))
    expect(rejected.locator("td:nth-child(2)")).to_have_text(["3"])
    expect(page.get_by_text("RUN_FAILURE", exact=True)).to_have_count(0)  # the filter is applied

    # The asset's Events tab, opened on this run's materialization (as a click in its list does).
    with dg.DagsterInstance.from_config(str(webserver.home)) as instance:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(["rejects", "import_recipients"])), limit=100
        ).records
    [record] = [r for r in records if r.run_id == run_id]
    page.goto(f"/assets/rejects/import_recipients?view=events&time={int(record.timestamp * 1000)}")
    expect(page.get_by_text(f"Materialized in run {run_id[:8]}", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(re.escape(f"Lines rejected by the failed run {run_id}: 3 lines rejected")))).to_be_visible()
    preview = page.locator("tr").filter(has=page.get_by_text("preview", exact=True))
    lines = {"6": "email: 'not-an-email'", "7": "birth_date: '2104-07-01'", "10": "country_code: 'FRA'"}
    for line, reason in lines.items():
        row = preview.locator("tr").filter(has=page.get_by_text(line, exact=True)).filter(has_text=reason)
        expect(row).to_be_visible()
    page.screenshot(path=str(SCREENSHOT.with_name("ui_failed_run_rejects.png")))


def test_schedule_shows_its_cron_and_switches_on_and_off(page: Page, webserver: Webserver) -> None:
    name = f"{USER_TEMPLATE}_schedule"
    assert instigator_status(webserver, name, InstigatorType.SCHEDULE) is None  # stopped by default
    page.goto("/automation")
    page.get_by_role("link", name=re.compile(rf"\b{name}\b")).click()
    expect(page).to_have_url(re.compile(rf"/locations/{LOCATION}/schedules/{name}$"))
    expect(detail(page, "Schedule").get_by_text("(0 2 * * *)", exact=True)).to_be_visible()
    expect(detail(page, "Execution timezone")).to_contain_text("Europe/Paris")
    expect(detail(page, "Target").get_by_role("link", name=USER_TEMPLATE, exact=True)).to_be_visible()
    switches_on_and_off(page, webserver, name, InstigatorType.SCHEDULE, "startSchedule", "stopRunningSchedule")


def test_collector_is_listed_on_its_job_and_switches_on_and_off(page: Page, webserver: Webserver) -> None:
    name = f"{USER_TEMPLATE}_collector"
    assert instigator_status(webserver, name, InstigatorType.SENSOR) is None  # stopped by default
    # The job's page counts the schedules and sensors that start it and lists them in a dialog.
    page.goto(f"/locations/{LOCATION}/jobs/{USER_TEMPLATE}")
    page.get_by_role("button", name="2 schedules/sensors").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("link", name=f"{USER_TEMPLATE}_schedule", exact=True)).to_be_visible()
    dialog.get_by_role("link", name=name, exact=True).click()
    expect(page).to_have_url(re.compile(rf"/locations/{LOCATION}/sensors/{name}$"))
    # What it watches and where it archives, from the template's collector.
    description = detail(page, "Description")
    expect(description).to_contain_text(f"matching inbox/crm/people_*.csv with {USER_TEMPLATE}")
    expect(description).to_contain_text("moves it to archive/crm")
    switches_on_and_off(page, webserver, name, InstigatorType.SENSOR, "startSensor", "stopSensor")


def test_backfill_of_a_date_range_is_launched_from_the_partitions_tab(page: Page, webserver: Webserver) -> None:
    """Three days of a daily template, typed as a range in the job's Materialize dialog: the
    instance records one asset backfill of exactly those days of the import's assets
    (without a daemon, none of its runs start)."""
    with dg.DagsterInstance.from_config(str(webserver.home)) as instance:
        assert instance.get_backfills() == []
    page.goto(f"/locations/{LOCATION}/jobs/{DAILY_TEMPLATE}/partitions")
    expect(page.get_by_text("Total partitions", exact=True)).to_be_visible()
    page.get_by_role("button", name=re.compile(r"Materialize…$")).first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Launch runs to materialize 2 assets", exact=True)).to_be_visible()
    # The box's example spans the template's days: `end` (2025-01-11) is exclusive.
    days = dialog.get_by_placeholder("ex: 2025-01-01, 2025-01-02, [2025-01-03...2025-01-10]", exact=True)
    days.fill("[2025-01-02...2025-01-04]")
    days.press("Enter")  # the box applies what was typed on Enter (or on blur)
    expect(dialog.get_by_text("3 partitions", exact=True)).to_be_visible()
    submit = dialog.get_by_role("button", name="Launch backfill", exact=True)
    expect(submit).to_be_enabled()
    with page.expect_response(
        lambda r: "/graphql" in r.url and "launchPartitionBackfill(" in (r.request.post_data or "")
    ) as response:
        submit.click()
    launched = response.value.json()["data"]["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    expect(dialog).to_have_count(0)

    with dg.DagsterInstance.from_config(str(webserver.home)) as instance:
        (backfill,) = instance.get_backfills()
        runs = instance.get_runs(dg.RunsFilter(job_name=DAILY_TEMPLATE))
    assert backfill.backfill_id == launched["backfillId"] and backfill.status == BulkActionStatus.REQUESTED
    imports, rejects = dg.AssetKey(["imports", DAILY_TEMPLATE]), dg.AssetKey(["rejects", DAILY_TEMPLATE])
    assert set(backfill.asset_selection) == {imports, rejects}
    assert backfill.partition_names == ["2025-01-02", "2025-01-03", "2025-01-04"]
    # The UI records the backfill rather than launching runs: the daemon submits them.
    assert runs == []


def test_a_user_table_is_an_asset_with_its_column_schema(page: Page) -> None:
    """The shop example's purchase table: its columns with their kinds, the decimal with
    its precision and scale, and the link column; recipient shows its extension field."""
    page.goto("/assets/campaign/purchase")
    expect(page.get_by_text("Purchases from the web shop, one row per order line.").first).to_be_visible()
    columns = page.get_by_role("row")
    expect(columns.filter(has_text="amount").filter(has_text="decimal(12,2)").first).to_be_visible()
    expect(columns.filter(has_text="recipient_id").first).to_be_visible()
    page.screenshot(path="/tmp/ui_purchase_asset.png", full_page=True)
    page.goto("/assets/campaign/recipient")
    expect(page.get_by_role("row").filter(has_text="loyalty_tier").filter(has_text="string(16)").first).to_be_visible()


LINEAGE = [("inbox", "import_recipients"), ("imports", "import_recipients"), ("campaign", "recipient"),
           ("exports", "new_text_export"), ("outbox", "new_text_export")]


def graph_nodes_and_edges(page: Page) -> tuple[list[dict], list[dict]]:
    """The lineage graph as drawn: each asset node's name and box, each edge's two ends."""
    return page.evaluate("""() => {
        const nodes = Array.from(document.querySelectorAll("[class*='AssetNode_assetName']")).map(e => {
            const box = e.closest('foreignObject');
            return {name: e.textContent, x: +box.getAttribute('x'), y: +box.getAttribute('y'),
                    width: +box.getAttribute('width'), height: +box.getAttribute('height')};
        });
        const svg = document.querySelector('foreignObject').ownerSVGElement;
        const edges = Array.from(svg.querySelectorAll('path[stroke]')).map(p => {
            const n = p.getAttribute('d').match(/-?[0-9.]+/g).map(Number);
            return {x1: n[0], y1: n[1], x2: n[n.length - 2], y2: n[n.length - 1]};
        });
        return [nodes, edges];
    }""")


def test_the_lineage_reads_inbox_import_table_export_outbox(page: Page) -> None:
    """From the import's asset page, its lineage: the inbox file, the import, the table it
    loads, the export reading that table and the file the export writes, each joined to
    the next by an edge."""
    page.goto("/assets/imports/import_recipients?view=lineage&lineageScope=neighbors&lineageDepth=3")
    for group, name in LINEAGE:
        expect(page.get_by_text(group, exact=True).first).to_be_visible()
    expect(page.locator("[class*='AssetNode_assetName']", has_text="new_text_export")).to_have_count(2)
    nodes, edges = graph_nodes_and_edges(page)
    columns = sorted(nodes, key=lambda n: n["x"])
    assert [n["name"] for n in columns] == [name for _, name in LINEAGE], nodes
    for left, right in zip(columns, columns[1:]):
        joined = [e for e in edges
                  if abs(e["x1"] - (left["x"] + left["width"])) < 12 and abs(e["x2"] - right["x"]) < 12
                  and left["y"] <= e["y1"] <= left["y"] + left["height"] and right["y"] <= e["y2"] <= right["y"] + right["height"]]
        assert joined, (left["name"], right["name"], edges)
    page.screenshot(path="/tmp/ui_lineage.png")


def test_materialize_runs_the_import_and_its_checks_warn_then_pass(page: Page, webserver: Webserver) -> None:
    """Materialize on an import's asset page runs the import. A file with a rejected line:
    reject_rate fails as a warning (yellow), lines_accounted passes; the same file fixed:
    both pass (green)."""
    inbox = webserver.data_dir / "inbox" / "people.csv"  # the user template's source.path
    inbox.write_text("email;crm_id;first_name;last_name\nui.one@example.org;U1;Ui;One\n;;No;Key\n")
    run_id = materialize_from_the_asset_page(page, webserver, USER_TEMPLATE)
    page.goto(f"/assets/imports/{USER_TEMPLATE}?view=checks")
    expect(page.get_by_text("Checks (2)", exact=True)).to_be_visible()
    expect(check_row(page, "reject_rate")).to_contain_text("Failed")
    expect(check_row(page, "reject_rate").locator("[aria-label='warning_outline']")).to_be_visible()
    expect(check_row(page, "lines_accounted")).to_contain_text("Succeeded")
    page.get_by_text("reject_rate", exact=True).first.click()
    expect(page.get_by_text(re.compile(r"1 of 2 lines rejected \(50\.00%\); errors\.warn_reject_rate is 0\.00%\."))).to_be_visible()
    page.screenshot(path="/tmp/ui_checks_warn.png")
    with dg.DagsterInstance.from_config(str(webserver.home)) as instance:
        run = instance.get_run_by_id(run_id)
        engine = [e.user_message for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]
    # Dagster's asset job (the asset page's choice), with the template's tags from its first
    # step and the deployment's executor (in process), not Dagster's multiprocess default.
    assert run.job_name == "__ASSET_JOB" and run.tags["campaign/status"] == "finished_with_errors"
    assert {k: run.tags[k] for k in ("campaign/template", "campaign/kind", "campaign/table", "campaign/rejected")} == {
        "campaign/template": USER_TEMPLATE, "campaign/kind": "import", "campaign/table": "recipient",
        "campaign/rejected": "1 of 2 lines",
    }
    assert any(m.startswith("Executing steps in process") for m in engine), engine
    # The runs list tells a run with rejects at a glance, beside its green status.
    page.goto("/runs")
    expect(page.locator(f"a[href='/runs/{run_id}']").first).to_be_visible()
    expect(page.get_by_text("campaign/rejected: 1 of 2 lines", exact=True)).to_be_visible()  # this run's alone
    page.screenshot(path="/tmp/ui_runs_list_rejected.png")

    inbox.write_text("email;crm_id;first_name;last_name\nui.one@example.org;U1;Ui;One\nui.two@example.org;U2;Ui;Two\n")
    materialize_from_the_asset_page(page, webserver, USER_TEMPLATE)
    page.goto(f"/assets/imports/{USER_TEMPLATE}?view=checks")
    expect(check_row(page, "reject_rate")).to_contain_text("Succeeded")
    expect(check_row(page, "lines_accounted")).to_contain_text("Succeeded")
    page.screenshot(path="/tmp/ui_checks_pass.png")


def test_a_cli_run_is_on_its_jobs_page_and_re_executes_from_the_ui(page: Page, webserver: Webserver) -> None:
    """`campaign-pipelines run` with the webserver's home: the run shows on its job's Runs
    tab, its log carries the progress lines, and Re-execute all launches a new run of it."""
    cli = Path(sys.executable).parent / "campaign-pipelines"
    done = subprocess.run([str(cli), "run", "import_recipients", "--file", "inbox/recipients.csv", "--json"],
                          cwd=webserver.root, env=webserver.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]

    page.goto(f"/locations/{LOCATION}/jobs/import_recipients/runs")
    expect(page.locator(f"a[href='/runs/{run_id}']").filter(has_text=run_id[:8])).to_be_visible()  # its row
    page.screenshot(path="/tmp/ui_cli_run_on_job_page.png")

    page.goto(f"/runs/{run_id}?logs=progress")
    for step in ("read_file", "map_columns", "validate_rows"):
        expect(page.get_by_text(re.compile(rf"^progress {step}: .*9 lines.*\(100%\)")).first).to_be_visible()
    page.screenshot(path="/tmp/ui_progress_lines.png")

    again = re_execute(page, webserver, run_id)
    with dg.DagsterInstance.from_config(str(webserver.home)) as instance:
        rerun = instance.get_run_by_id(again)
    assert rerun.parent_run_id == run_id and rerun.tags["campaign/status"] == "finished_with_errors"


def test_a_duplicated_template_shows_as_a_job_after_the_reload_it_asks_for(page: Page, webserver: Webserver) -> None:
    """`templates duplicate --reload`: the copy is a job of the running UI at once, with its own label."""
    cli = Path(sys.executable).parent / "campaign-pipelines"
    done = subprocess.run(
        [str(cli), "templates", "duplicate", "import_recipients", "ui_copy", "--reload", f"127.0.0.1:{webserver.port}"],
        cwd=webserver.root, env={**webserver.env, "CAMPAIGN_TEMPLATES_DIR": str(webserver.root / "templates")},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    try:
        assert done.stdout.strip().endswith(f"reloaded {LOCATION} on 127.0.0.1:{webserver.port}")
        page.goto("/jobs")
        expect(page.locator(f"a[href='/locations/{LOCATION}/jobs/ui_copy']")).to_have_text("ui_copy")
        page.goto(f"/locations/{LOCATION}/jobs/ui_copy")
        expect(page.get_by_text("Import recipients (copy)").first).to_be_visible()
    finally:  # the other tests of this webserver count its jobs
        (webserver.root / "templates" / "ui_copy.yaml").unlink()
        from dagster_graphql import DagsterGraphQLClient

        DagsterGraphQLClient("127.0.0.1", port_number=webserver.port, timeout=60).reload_repository_location(LOCATION)


def test_a_failed_merge_re_executes_from_failure_in_the_ui(page: Page, webserver: Webserver, finished_run: str) -> None:
    """A run whose merge failed on the database: Re-execute → From failure in the UI runs
    the merge and the report alone, on the rows the earlier steps kept, and loads them."""
    import sqlalchemy as sa

    from tests.helpers import failing_writes

    engine = sa.create_engine(f"sqlite:///{webserver.root / '.campaign' / 'campaign.db'}")
    webserver.data_dir.joinpath("inbox", "late.csv").write_text(
        "email;crm_id;first_name;last_name;birth_date;gender;phone;postal_code;city;country\n"
        "late@x.org;CRM-LATE;Late;Comer;01/02/1990;F;+33 6 00 00 00 01;75005;Paris;FR\n", encoding="utf-8")
    cli = Path(sys.executable).parent / "campaign-pipelines"
    with failing_writes(engine):
        done = subprocess.run([str(cli), "run", "import_recipients", "--file", "inbox/late.csv", "--json"],
                              cwd=webserver.root, env=webserver.env, capture_output=True, text=True, timeout=120)
    failed = json.loads(done.stdout)
    assert done.returncode == 1 and "disk on fire" in failed["error"], failed

    again = re_execute(page, webserver, failed["run_id"], "From failure")
    page.goto(f"/runs/{again}")
    expect(page.get_by_text("Success").first).to_be_visible()
    page.screenshot(path="/tmp/ui_reexecuted_from_failure.png")
    with dg.DagsterInstance.from_config(str(webserver.home)) as instance:
        run = instance.get_run_by_id(again)
        steps = {e.step_key for e in instance.all_logs(again, of_type=dg.DagsterEventType.STEP_SUCCESS)}
    assert run.root_run_id == failed["run_id"] and run.tags["campaign/status"] == "finished"
    assert steps == {"import_recipients_steps.reconcile", "import_recipients_steps.report"}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT first_name FROM recipient WHERE email = 'late@x.org'")).scalar_one() == "Late"
    engine.dispose()
