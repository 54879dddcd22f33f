"""What one Dagster event costs the run that stores it, by kind and by instance storage.

    .venv/bin/python bench/event_cost.py --events 100 [--storage sqlite,postgres]

Every log line, step event, asset materialization and check evaluation of a run is
committed to the instance's event log as it happens. An asset job stores more of them
than an op job did (planned materializations and checks, one materialization per asset,
check evaluations, progress lines): this measures what each kind costs here, on a fresh
instance per storage (SQLite files in a temporary home, or a PostgreSQL database made for
it, as deploy/dagster.yaml has it), alternating the kinds so the machine's drift weighs on
each alike. Prints milliseconds per event (median of the rounds); saves nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from run import postgres_storage_yaml, psql

JOB = "event_cost"


def log_line(instance: dg.DagsterInstance, run_id: str, n: int) -> None:
    instance.handle_new_event(
        EventLogEntry(error_info=None, level=20, user_message=f"progress step: {n} lines", run_id=run_id,
                      timestamp=time.time(), step_key="step", job_name=JOB)
    )


def engine_event(instance: dg.DagsterInstance, run_id: str, n: int) -> None:
    instance.report_engine_event(f"step event {n}", run_id=run_id, job_name=JOB)


def materialization(instance: dg.DagsterInstance, run_id: str, n: int) -> None:
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name=JOB,
        event_specific_data=StepMaterializationData(dg.AssetMaterialization(["imports", "t"], metadata={"rows": n})),
    )
    instance.report_dagster_event(event, run_id=run_id)


KINDS = {"log line": log_line, "engine event": engine_event, "asset materialization": materialization}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100, help="events of each kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--storage", default="sqlite,postgres")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--pg-db", default="test")
    args = parser.parse_args()
    database = "bench_event_cost"
    for storage in args.storage.split(","):
        with tempfile.TemporaryDirectory(prefix="event-cost-") as home:
            section = postgres_storage_yaml(args, database) if storage == "postgres" else ""
            Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + section)
            os.environ["DAGSTER_HOME"] = home
            instance = dg.DagsterInstance.get()
            run_id = instance.create_run_for_job(dg.JobDefinition(name=JOB, graph_def=dg.GraphDefinition(JOB)), run_id=str(uuid.uuid4())).run_id
            log_line(instance, run_id, 0)  # the run's first event creates its storage: not timed
            seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
            for _ in range(args.rounds):
                for kind, store in KINDS.items():
                    start = time.perf_counter()
                    for n in range(args.events):
                        store(instance, run_id, n)
                    seconds[kind].append((time.perf_counter() - start) / args.events)
            instance.dispose()
        print(f"{storage}: " + "; ".join(
            f"{kind} {statistics.median(s) * 1000:.1f} ms ({', '.join(f'{x * 1000:.1f}' for x in s)})" for kind, s in seconds.items()
        ), flush=True)
        if storage == "postgres":
            psql(args, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
