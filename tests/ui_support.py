"""What the UI tests share: a real dagster-webserver on the project's workspace, driven by
Debian's Chromium through Playwright, and the steps a user takes in it.

One webserver per module (per xdist worker), on a free port, with its own DAGSTER_HOME,
data dir, templates dir (two user templates: one with a schedule and a collector, one with
daily partitions) and working directory (where the embedded SQLite database goes).
Without Chromium or Playwright the tests are skipped, except under CI=true where they fail.
"""

from __future__ import annotations

import contextlib
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
    env: dict[str, str]  # the webserver's environment: a CLI run with it shares its home and data

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

    server = Webserver(root=root, data_dir=data_dir, home=home, port=free_port(), log=root / "webserver.log", env=env)
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
        end_session(process)


def end_session(process: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM `process`, then SIGKILL its session: the code server and any run worker a
    webserver or daemon started are in it too."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
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


def launch_and_wait(webserver: Webserver, run_config: dict, job: str = "import_recipients") -> tuple[str, str]:
    """Launch a job through the webserver's GraphQL API; its id and end status."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=webserver.port, timeout=60)
    run_id = client.submit_job_execution(job, run_config=run_config)
    return run_id, wait_for_run(webserver, run_id)


def wait_for_run(webserver: Webserver, run_id: str) -> str:
    """The run's end status, once it has one."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=webserver.port, timeout=60)
    deadline = time.monotonic() + RUN_TIMEOUT
    while (status := client.get_run_status(run_id).value) not in ("SUCCESS", "FAILURE", "CANCELED"):
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} still {status} after {RUN_TIMEOUT}s:\n{webserver.log_tail()}")
        time.sleep(0.5)
    return status


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


def check_row(page: Page, name: str):
    """A check in the asset's Checks tab list: its icon, its name and its last result."""
    return page.locator(f"div[title='{name}']").first.locator("xpath=ancestor::div[contains(@class, 'Box_flexRow')][1]")


def materialize_from_the_asset_page(page: Page, webserver: Webserver, template: str) -> str:
    """Materialize on imports/<template>'s page (no config to give); the run's id, once it succeeded."""
    page.goto(f"/assets/imports/{template}")
    page.get_by_role("button", name=re.compile(r"Materialize$")).first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"rejects / {template}")).to_be_visible()  # materialized with it
    with page.expect_response(lambda r: "/graphql" in r.url and "LaunchPipelineExecution" in (r.request.post_data or "")) as response:
        dialog.get_by_role("button", name="Confirm").click()
    launched = response.value.json()["data"]["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"].get("runId") or launched["run"]["id"]
    assert wait_for_run(webserver, run_id) == "SUCCESS", webserver.log_tail()
    return run_id


def re_execute(page: Page, webserver: Webserver, run_id: str, option: str | None = None) -> str:
    """A run page's "Re-execute all", or `option` of its menu ("From failure"); the new
    run's id, once it succeeded."""
    page.goto(f"/runs/{run_id}")
    primary = page.get_by_role("button", name=re.compile(r"Re-execute all"))
    with page.expect_response(lambda r: "/graphql" in r.url and "LaunchPipelineReexecution" in (r.request.post_data or "")) as response:
        if option is None:
            primary.click()
        else:
            page.get_by_role("img", name="arrow_drop_down").locator("xpath=ancestor::button[1]").click()  # its menu
            item = page.get_by_role("menuitem", name=re.compile(option))
            expect(item).to_be_enabled()
            page.screenshot(path="/tmp/ui_reexecute_menu.png")
            item.click()
    launched = response.value.json()["data"]["launchPipelineReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    again = launched["run"].get("runId") or launched["run"]["id"]
    assert wait_for_run(webserver, again) == "SUCCESS", webserver.log_tail()
    return again


@contextlib.contextmanager
def daemon(webserver: Webserver) -> Iterator[subprocess.Popen]:
    """A dagster-daemon on the webserver's home (it launches backfills' runs), ended after."""
    binary = Path(sys.executable).parent / "dagster-daemon"
    with (webserver.root / "daemon.log").open("ab") as log:
        process = subprocess.Popen(
            [str(binary), "run", "-w", str(REPO / "workspace.yaml")],
            cwd=webserver.root, env=webserver.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        yield process
    finally:
        end_session(process)


def reload_location(webserver: Webserver) -> None:
    from dagster_graphql import DagsterGraphQLClient

    DagsterGraphQLClient("127.0.0.1", port_number=webserver.port, timeout=60).reload_repository_location(LOCATION)


def cli(webserver: Webserver, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`campaign-pipelines` on the webserver's home, data and templates."""
    binary = Path(sys.executable).parent / "campaign-pipelines"
    return subprocess.run([str(binary), *args], cwd=webserver.root, env={**webserver.env, **env},
                          capture_output=True, text=True, timeout=180)
