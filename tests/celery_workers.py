"""Real `dagster-celery worker` processes for the Celery executor's tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).parent.parent


class Workers:
    """Two `dagster-celery worker` processes on the local RabbitMQ, on a queue of their own."""

    def __init__(self, root: Path, queue: str, env: dict[str, dict[str, str]] | None = None):
        """`env`: each worker's own variables (by name, w1 and w2) over the test's."""
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        # One after the other: each creates the Dagster home's storage if it is not there yet.
        for name in ("w1", "w2"):
            log = root / f"{name}.log"
            self.logs[name] = log
            self.processes[name] = subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                 "-y", str(ROOT / "deploy" / "celery" / "worker.yaml"), "-n", f"{name}-{queue}", "-q", queue,
                 "--", "--pool", "solo"],
                # dagster-celery starts `celery` from the PATH: the virtual environment's.
                cwd=ROOT,
                env={**os.environ, **(env or {}).get(name, {}), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
                stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
            )
            deadline = time.monotonic() + 120
            while "ready." not in log.read_text():
                if time.monotonic() > deadline or self.processes[name].poll() is not None:
                    self.stop()
                    pytest.fail(f"the Celery worker {name} did not start: {log.read_text()[-1500:]}")
                time.sleep(0.2)

    def pids(self, name: str) -> set[int]:
        process = psutil.Process(self.processes[name].pid)
        return {process.pid, *(child.pid for child in process.children(recursive=True))}

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
