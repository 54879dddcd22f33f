"""End-to-end UI tests: a real dagster-webserver on the project's workspace, driven by
Debian's Chromium through Playwright (spec section 5: jobs, Launchpad, runs).

One webserver per module (per xdist worker), on a free port, with its own DAGSTER_HOME,
data dir, templates dir and working directory (where the embedded SQLite database goes).
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

import pytest

from campaign_pipelines.templates import load_catalog

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
    shutil.copy(REPO / "examples" / "recipients.csv", data_dir / "inbox" / "recipients.csv")
    # Without the daemon, the default QueuedRunCoordinator would leave runs QUEUED forever.
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGN_", "DAGSTER_"))}
    env.update(CAMPAIGN_DATA_DIR=str(data_dir), CAMPAIGN_TEMPLATES_DIR=str(templates_dir), DAGSTER_HOME=str(home))

    server = Webserver(root=root, data_dir=data_dir, port=free_port(), log=root / "webserver.log")
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
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=webserver.port, timeout=60)
    run_id = client.submit_job_execution("import_recipients", run_config={"file": "inbox/recipients.csv"})
    deadline = time.monotonic() + RUN_TIMEOUT
    while (status := client.get_run_status(run_id).value) not in ("SUCCESS", "FAILURE", "CANCELED"):
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} still {status} after {RUN_TIMEOUT}s:\n{webserver.log_tail()}")
        time.sleep(0.5)
    assert status == "SUCCESS", f"run {run_id} ended {status}:\n{webserver.log_tail()}"
    return run_id


def builtin_job_names() -> set[str]:
    return set(load_catalog(Path("/nonexistent-templates-dir")).templates)


def test_jobs_page_lists_one_job_per_template(page: Page) -> None:
    expected = builtin_job_names()
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
    expect(page.get_by_text(f"Lines rejected by the run {run_id}.")).to_be_visible()
    expect(page.get_by_text("rejects / import_recipients")).to_be_visible()
    expect(page.locator("a[href^='/assets/rejects/import_recipients']")).to_be_visible()
    expect(page.get_by_text("Loaded by import_recipients.")).to_be_visible()
    expect(page.get_by_text("campaign / recipient")).to_be_visible()
    # Both materializations (the table's, folded under "View full message", and the rejects')
    # count the sample's 3 rejected lines.
    rejected = page.locator("tr").filter(has=page.get_by_text("rows_rejected", exact=True))
    expect(rejected.locator("td:nth-child(2)")).to_have_text(["3", "3"])
    expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_have_count(0)  # the filter is applied
    page.screenshot(path=str(SCREENSHOT))
