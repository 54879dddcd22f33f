"""Materialize on an asset page against the template's own job, end to end, in one run.

    .venv/bin/python bench/launch_paths.py --rounds 10 [--template import_recipients]

Starts a dagster-webserver on a fresh home (runs launched at once, no queue) with the
10-line sample in its inbox, then alternates two launches of the same import, as the UI
makes them, through the webserver's GraphQL API:

- `job`: the template's job, as its Launchpad launches it (the flat launch keys defaulted);
- `asset page`: Dagster's asset job on `imports/<t>` and `rejects/<t>` with their checks,
  as *Materialize* on the asset page launches it.

Each launch is timed from the mutation to the run's end as the UI sees it (wall), and by
what the machine's load barely moves: the seconds from the run's RUN_START to its
RUN_SUCCESS event, and the events the run stored. Prints the medians and the ratios
(asset page / job); saves nothing. Both must end SUCCESS with campaign/status.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[1]
LOCATION = "campaign_pipelines"

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""


def graphql(port: int, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["data"]


def selector(job: str, template: str, assets: bool) -> dict:
    chosen = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "pipelineName": job}
    if assets:
        keys = [{"path": ["imports", template]}, {"path": ["rejects", template]}]
        chosen["assetSelection"] = keys
        chosen["assetCheckSelection"] = [
            {"assetKey": {"path": ["imports", template]}, "name": name} for name in ("lines_accounted", "reject_rate")
        ]
    return chosen


def launch(port: int, instance: dg.DagsterInstance, job: str, template: str) -> dict[str, float]:
    params = {"selector": selector(job, template, job == "__ASSET_JOB"), "runConfigData": "{}", "mode": "default",
              "executionMetadata": {"tags": []}}
    started = time.perf_counter()
    result = graphql(port, LAUNCH, {"params": params})["launchPipelineExecution"]
    if result["__typename"] != "LaunchRunSuccess":
        sys.exit(f"{job}: the launch failed: {result}")
    run_id = result["run"]["runId"]
    while not (run := instance.get_run_by_id(run_id)).is_finished:
        time.sleep(0.05)
    wall = time.perf_counter() - started
    if run.status != dg.DagsterRunStatus.SUCCESS or "campaign/status" not in run.tags:
        sys.exit(f"{job}: run {run_id} ended {run.status} with tags {run.tags}")
    entries = instance.all_logs(run_id)
    by_type = {e.dagster_event_type: e.timestamp for e in entries if e.is_dagster_event}
    in_run = by_type[dg.DagsterEventType.RUN_SUCCESS] - by_type[dg.DagsterEventType.RUN_START]
    return {"wall": wall, "in_run": in_run, "events": float(len(entries))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--template", default="import_recipients")
    parser.add_argument("--port", type=int, default=3399)
    parser.add_argument("--repo", type=Path, default=REPO,
                        help="the checkout whose workspace and code to serve (its code first on PYTHONPATH)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="launch-paths-"))
    home, data = root / "home", root / "data"
    (data / "inbox").mkdir(parents=True)
    home.mkdir()
    shutil.copy(args.repo / "examples" / "recipients.csv", data / "inbox" / "recipients.csv")
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGN_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), CAMPAIGN_DATA_DIR=str(data), CAMPAIGN_TEMPLATES_DIR=str(root / "templates"),
               PYTHONPATH=str(args.repo))
    binary = Path(sys.executable).parent / "dagster-webserver"
    server = subprocess.Popen([str(binary), "-w", str(args.repo / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(args.port)],
                              cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{args.port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        results: dict[str, list[dict[str, float]]] = {"job": [], "asset page": []}
        with dg.DagsterInstance.from_config(str(home)) as instance:
            launch(args.port, instance, args.template, args.template)  # warm-up: the first run creates the tables
            for i in range(args.rounds):
                # Alternating which goes first, so a drift of the machine weighs on both alike.
                order = [("job", args.template), ("asset page", "__ASSET_JOB")]
                for name, job in order if i % 2 == 0 else order[::-1]:
                    results[name].append(launch(args.port, instance, job, args.template))
        print(f"{args.rounds} rounds, {args.template}, the 10-line sample, one home (SQLite storage), in-process executor")
        print(f"{'launch':<12} {'wall s':>8} {'in-run s':>9} {'events':>7}")
        medians = {}
        for name, rows in results.items():
            medians[name] = {k: statistics.median(r[k] for r in rows) for k in ("wall", "in_run", "events")}
            m = medians[name]
            print(f"{name:<12} {m['wall']:>8.2f} {m['in_run']:>9.2f} {m['events']:>7.0f}")
        ratio = {k: medians["asset page"][k] / medians["job"][k] for k in ("wall", "in_run", "events")}
        print(f"{'ratio':<12} {ratio['wall']:>8.3f} {ratio['in_run']:>9.3f} {ratio['events']:>7.3f}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # its code server and run workers too
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
