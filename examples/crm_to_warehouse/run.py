"""Two nights of a CRM -> Campaign -> warehouse exchange, on a real Dagster daemon.

Each night the CRM drops a recipients file into inbox/crm; the collector sensor of
`crm_nightly_recipients` imports it once complete and archives it. In the morning the
`warehouse_recipients_export` job (on its schedule in production; launched here, as the
schedule would) writes the recipients changed since its last successful run.

Everything lives under examples/crm_to_warehouse/.run (recreated at each run): the
SQLite Campaign database, the data folders and a Dagster instance whose run queue holds
the same per-table limits as deploy/dagster.yaml.

    .venv/bin/python examples/crm_to_warehouse/run.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BIN = Path(sys.executable).parent
ROOT = HERE / ".run"
DATA = ROOT / "data"
IMPORT, EXPORT = "crm_nightly_recipients", "warehouse_recipients_export"


def prepare() -> dict[str, str]:
    shutil.rmtree(ROOT, ignore_errors=True)
    (ROOT / "dagster").mkdir(parents=True)
    # The production queue policy (one writer per table), on embedded SQLite storage.
    deploy = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    instance = {"run_coordinator": deploy["run_coordinator"], "concurrency": deploy["concurrency"], "telemetry": {"enabled": False}}
    (ROOT / "dagster" / "dagster.yaml").write_text(yaml.safe_dump(instance))
    env = {
        "DAGSTER_HOME": str(ROOT / "dagster"),
        "CAMPAIGN_DB_URL": f"sqlite:///{ROOT / 'campaign.db'}",
        "CAMPAIGN_DATA_DIR": str(DATA),
        "CAMPAIGN_TEMPLATES_DIR": str(HERE / "job_templates"),
    }
    os.environ.update(env)
    return {**os.environ, **env}


def wait_for(what: str, condition, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}; see {ROOT / 'daemon.log'}")
        time.sleep(0.5)


def main() -> None:
    env = prepare()
    import dagster as dg  # after DAGSTER_HOME is set

    instance = dg.DagsterInstance.get()

    def finished_runs(job: str) -> list[dg.DagsterRun]:
        runs = instance.get_runs(dg.RunsFilter(job_name=job))
        return sorted((r for r in runs if r.is_finished), key=lambda r: r.tags.get("campaign/file", ""))

    log = (ROOT / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        for night, sample in enumerate(sorted((HERE / "files").glob("recipients_*.csv")), start=1):
            print(f"night {night}: the CRM drops {sample.name} into inbox/crm")
            (DATA / "inbox" / "crm").mkdir(parents=True, exist_ok=True)
            shutil.copy(sample, DATA / "inbox" / "crm" / sample.name)
            wait_for(f"{sample.name} to be collected", lambda: len(finished_runs(IMPORT)) == night
                     and not (DATA / "inbox" / "crm" / sample.name).exists())
            run = finished_runs(IMPORT)[-1]
            loaded = instance.get_latest_materialization_event(dg.AssetKey(["campaign", "recipient"]))
            counts = {k: v.value for k, v in loaded.asset_materialization.metadata.items() if k.startswith("rows_")}
            print(f"  collector run {run.run_id[:8]}: {run.tags.get('campaign/status')} {counts}")
            print(f"  archived as archive/crm/{next((DATA / 'archive' / 'crm').glob(f'*{run.run_id}*')).name}")
            reasons = DATA / "rejects" / IMPORT / f"{run.run_id}.reasons.csv"
            if reasons.exists():
                print(f"  rejects (rejects/{IMPORT}/{reasons.name}):")
                print("    " + reasons.read_text().rstrip().replace("\n", "\n    "))
            print("morning: the warehouse export (its schedule: weekdays 06:00 Europe/Paris)")
            subprocess.run(
                [str(BIN / "dagster"), "job", "launch", "-j", EXPORT, "-w", str(REPO / "workspace.yaml")],
                cwd=REPO, env=env, check=True, capture_output=True,
            )
            wait_for("the export", lambda: len(finished_runs(EXPORT)) == night)
            export = max(finished_runs(EXPORT), key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp)
            (written,) = (DATA / "outbox" / "warehouse").glob(f"*{export.run_id}.csv")
            print(f"  export run {export.run_id[:8]}: {export.tags.get('campaign/status')}; "
                  f"{written.relative_to(DATA)}:")
            print("    " + written.read_text().rstrip().replace("\n", "\n    "))
        print("\nto browse these runs in the UI:")
        print(f"  DAGSTER_HOME={ROOT / 'dagster'} CAMPAIGN_DATA_DIR={DATA} CAMPAIGN_DB_URL=sqlite:///{ROOT / 'campaign.db'} \\")
        print(f"  CAMPAIGN_TEMPLATES_DIR={HERE / 'job_templates'} .venv/bin/dagster dev -w workspace.yaml")
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        log.close()


if __name__ == "__main__":
    main()
