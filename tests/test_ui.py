"""End-to-end UI tests: a real dagster-webserver on the project's workspace, driven by
Debian's Chromium through Playwright (spec section 5: jobs, Launchpad, runs, schedules,
collectors and backfills).

One webserver per module (per xdist worker), on a free port, with its own DAGSTER_HOME,
data dir, templates dir (two user templates: one with a schedule and a collector, one with
daily partitions) and working directory (where the embedded SQLite database goes).
Without Chromium or Playwright the tests are skipped, except under CI=true where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType

from campaign_pipelines.templates import load_catalog
from tests.helpers import people_template

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCATION = "campaign_pipelines"
STARTUP_TIMEOUT = 90  # seconds for the webserver and its code server to answer
RUN_TIMEOUT = 180  # seconds for the import run to end
UI_TIMEOUT = 30_000  # milliseconds for any element to show up
SCREENSHOT = Path("/tmp/ui_run.png")
SHOP_SCHEMAS = REPO / "examples" / "shop" / "data_schemas"
USER_TEMPLATE = "crm_people"  # in the templates dir: its job, schedule and collector
DAILY_TEMPLATE = "crm_daily"  # in the templates dir too: daily partitions, 2025-01-01 to 2025-01-10


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"UI tests cannot run under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError as exc:  # pragma: no cover - the dev extra installs it
    if os.environ.get("CI") == "true":
        raise
    pytest.skip(f"playwright is not installed: {exc}", allow_module_level=True)

expect.set_options(timeout=UI_TIMEOUT)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Webserver:
    root: Path  # the webserver's working directory
    data_dir: Path
    home: Path  # DAGSTER_HOME
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webserver]:
    root = tmp_path_factory.mktemp("ui")
    data_dir, templates_dir, home = root / "data", root / "templates", root / "dagster_home"
    (data_dir / "inbox").mkdir(parents=True)
    templates_dir.mkdir()
    home.mkdir()
    # Both stopped by default: the UI tests turn them on.
    (templates_dir / f"{USER_TEMPLATE}.yaml").write_text(
        people_template(
            name=USER_TEMPLATE,
            schedule={"cron": "0 2 * * *", "timezone": "Europe/Paris"},
            collector={"watch": "inbox/crm/people_*.csv", "archive": "archive/crm"},
        ),
        encoding="utf-8",
    )
    # `end` is exclusive: ten days, so a backfill picks a range inside them.
    (templates_dir / f"{DAILY_TEMPLATE}.yaml").write_text(
        people_template(
            name=DAILY_TEMPLATE,
            partitions={"daily": {"start": "2025-01-01", "end": "2025-01-11", "timezone": "Europe/Paris",
                                  "path": "inbox/crm/people_{date:%Y%m%d}.csv"}},
        ),
        encoding="utf-8",
    )
    shutil.copy(REPO / "examples" / "recipients.csv", data_dir / "inbox" / "recipients.csv")
    # Without the daemon, the default QueuedRunCoordinator would leave runs QUEUED forever.
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGN_", "DAGSTER_"))}
    # The shop example's data model: a purchase table of its own and a recipient extension.
    env.update(CAMPAIGN_DATA_DIR=str(data_dir), CAMPAIGN_TEMPLATES_DIR=str(templates_dir), DAGSTER_HOME=str(home),
               CAMPAIGN_SCHEMAS_DIR=str(SHOP_SCHEMAS))

    server = Webserver(root=root, data_dir=data_dir, home=home, port=free_port(), log=root / "webserver.log")
    binary = Path(sys.executable).parent / "dagster-webserver"
    command = [str(binary), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(server.port)]
    with server.log.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"dagster-webserver exited with {process.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{server.url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dagster-webserver did not answer within {STARTUP_TIMEOUT}s:\n{server.log_tail()}")
            time.sleep(0.25)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        # The code server and any run worker are in the webserver's own session: end them too.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        unavailable(f"{CHROMIUM} is missing; install it with `apt-get install -y chromium`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, webserver: Webserver) -> Iterator[Page]:
    context = browser.new_context(base_url=webserver.url, viewport={"width": 1400, "height": 900})
    # The first visit opens a "Join the Dagster community" dialog over everything; mark it seen.
    context.add_init_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")
    context.set_default_timeout(UI_TIMEOUT)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="module")
def finished_run(webserver: Webserver) -> str:
    """An import_recipients run of the sample file, launched through the webserver's GraphQL API."""
    run_id, status = launch_and_wait(webserver, {"file": "inbox/recipients.csv"})
    assert status == "SUCCESS", f"run {run_id} ended {status}:\n{webserver.log_tail()}"
    return run_id


def launch_and_wait(webserver: Webserver, run_config: dict) -> tuple[str, str]:
    """Launch import_recipients through the webserver's GraphQL API; its id and end status."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=webserver.port, timeout=60)
    run_id = client.submit_job_execution("import_recipients", run_config=run_config)
    deadline = time.monotonic() + RUN_TIMEOUT
    while (status := client.get_run_status(run_id).value) not in ("SUCCESS", "FAILURE", "CANCELED"):
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} still {status} after {RUN_TIMEOUT}s:\n{webserver.log_tail()}")
        time.sleep(0.5)
    return run_id, status


def builtin_job_names() -> set[str]:
    return set(load_catalog(Path("/nonexistent-templates-dir")).templates)


def detail(page: Page, label: str):
    """The row of a schedule's or sensor's details table whose first cell is `label`."""
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=label, exact=True))


def flip_running_switch(page: Page, mutation: str) -> None:
    """Click the Running switch and wait for the server's answer to `mutation` (a GraphQL
    field): the switch alone may show the new state before the instance has it."""
    with page.expect_response(lambda r: "/graphql" in r.url and f"{mutation}(" in (r.request.post_data or "")):
        # Its <input> is visually hidden: a user clicks the switch drawn in its label.
        detail(page, "Running").locator("label").click()


def instigator_status(webserver: Webserver, name: str, kind: InstigatorType) -> InstigatorStatus | None:
    """What the webserver's instance stored for a schedule or sensor (None: never switched)."""
    with dg.DagsterInstance.from_config(str(webserver.home)) as instance:
        states = [s for s in instance.all_instigator_state() if s.name == name and s.instigator_type == kind]
    assert len(states) <= 1, states
    return states[0].status if states else None


def switches_on_and_off(page: Page, webserver: Webserver, name: str, kind: InstigatorType, start: str, stop: str) -> None:
    """On a schedule's or sensor's page: stopped, then the Running switch turns it on and
    off, in the UI and in the instance."""
    running = detail(page, "Running").get_by_role("checkbox")
    expect(running).not_to_be_checked()
    flip_running_switch(page, start)
    expect(running).to_be_checked()
    assert instigator_status(webserver, name, kind) == InstigatorStatus.RUNNING
    flip_running_switch(page, stop)
    expect(running).not_to_be_checked()
    assert instigator_status(webserver, name, kind) == InstigatorStatus.STOPPED


def test_jobs_page_lists_one_job_per_template(page: Page) -> None:
    expected = builtin_job_names() | {USER_TEMPLATE, DAILY_TEMPLATE}
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
    """Three days of a daily template, typed as a range in the backfill dialog: the instance
    records one backfill of exactly those days (without a daemon, none of its runs start)."""
    with dg.DagsterInstance.from_config(str(webserver.home)) as instance:
        assert instance.get_backfills() == []
    page.goto(f"/locations/{LOCATION}/jobs/{DAILY_TEMPLATE}/partitions")
    page.get_by_role("button", name="Launch backfill…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Launch {DAILY_TEMPLATE} backfill", exact=True)).to_be_visible()
    # Its buttons' names start with their icon's (a ligature such as open_in_new).
    expect(dialog.get_by_role("button", name=re.compile(r"\bSelect partitions to submit$"))).to_be_disabled()
    # The box's example spans the template's days: `end` (2025-01-11) is exclusive.
    days = dialog.get_by_placeholder("ex: 2025-01-01, 2025-01-02, [2025-01-03...2025-01-10]", exact=True)
    days.fill("[2025-01-02...2025-01-04]")
    days.press("Enter")  # the box applies what was typed on Enter (or on blur)
    # All three days are missing, and the missing ones are selected by default.
    expect(dialog.get_by_role("checkbox", name="Missing (3)", exact=True)).to_be_checked()
    submit = dialog.get_by_role("button", name=re.compile(r"\bSubmit 3 runs$"))
    expect(submit).to_be_enabled()
    with page.expect_response(
        lambda r: "/graphql" in r.url and "launchPartitionBackfill(" in (r.request.post_data or "")
    ) as response:
        submit.click()
    launched = response.value.json()["data"]["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    expect(dialog).to_have_count(0)
    # The tab's backfill history lists it, with its three days.
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=backfill_id, exact=True))
    expect(row).to_contain_text("3 partitions")

    with dg.DagsterInstance.from_config(str(webserver.home)) as instance:
        backfills = instance.get_backfills()
        runs = instance.get_runs(dg.RunsFilter(job_name=DAILY_TEMPLATE))
    assert [(b.backfill_id, b.job_name, b.partition_names, b.status) for b in backfills] == [
        (backfill_id, DAILY_TEMPLATE, ["2025-01-02", "2025-01-03", "2025-01-04"], BulkActionStatus.REQUESTED)
    ]
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
