"""Figures beside wall time, for each measured case: the work it did.

Wall time on this VM drifts by a third within an hour. Bytes written and events stored
do not move at all for the same code; CPU seconds move with the host about as much as
wall time (steal time, no hardware counters here: bench/NOTES.md, issue 25's A/A run).
Around each case the harness takes:

- `cpu_s`: user + system CPU seconds of the case's own process tree (the command and
  every process it waited for), from `wait4`'s rusage;
- `cpu_pg_s`: CPU seconds of the PostgreSQL server over the case, read from `/proc`:
  each server process by pid (backends, and the checkpointer, WAL writer and
  autovacuum that worked for it), backends that exited during the case through the
  postmaster's cumulative children time (`cutime + cstime`, exact once reaped);
- `wal_bytes` and `temp_bytes`: what the server wrote to its WAL (`pg_current_wal_lsn`)
  and to temporary files (`pg_stat_database.temp_bytes`, sorts and hashes that spilled);
- `events`: the Dagster events the run stored (ours only).

The server figures are server-wide: the harness runs one case at a time and its own
queries (a few `psql` calls) fall outside the window.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[str, int, list[int]]]:
    """Every process: its name, its parent and its CPU ticks (utime, stime, cutime,
    cstime), from one pass over /proc/<pid>/stat."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue  # gone since the listing
        # The name, in parentheses, may hold spaces; proc(5)'s fields 4 and 14-17 follow it.
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        found[int(entry.name)] = (name, int(fields[1]), [int(f) for f in fields[11:15]])
    return found


def server_cpu_seconds() -> dict[int, float]:
    """CPU seconds by server process: the postmaster (a `postgres` whose parent is not
    one) with its reaped children, and each live child."""
    processes = _processes()
    roots = [pid for pid, (name, parent, _) in processes.items()
             if name == "postgres" and processes.get(parent, ("",))[0] != "postgres"]
    if not roots:
        return {}
    root = min(roots)
    used = {root: sum(processes[root][2]) / CLOCK_TICKS}
    for pid, (_, parent, ticks) in processes.items():
        if parent == root:
            used[pid] = (ticks[0] + ticks[1]) / CLOCK_TICKS
    return used


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """The server's CPU between two readings. A process alive at both counts its
    difference; one born since counts all it used; one that exited is in the
    postmaster's children time, which the postmaster's entry carries."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def server_counters(psql_args: list[str]) -> tuple[str, int]:
    """The server's WAL position and the temporary-file bytes its databases wrote so far."""
    out = subprocess.run(
        [*psql_args, "-X", "-A", "-t", "-c",
         "SELECT pg_current_wal_lsn() || '|' || (SELECT sum(temp_bytes) FROM pg_stat_database)"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    lsn, temp = out.split("|")
    return lsn, int(temp)


def wal_bytes_since(psql_args: list[str], lsn: str) -> int:
    out = subprocess.run(
        [*psql_args, "-X", "-A", "-t", "-c", f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn}')"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    return int(float(out))


class ServerWindow:
    """The PostgreSQL server's CPU and bytes written between `start()` and `stop()`."""

    def __init__(self, psql_args: list[str]):
        self.psql_args = psql_args

    def start(self) -> None:
        self.lsn, self.temp = server_counters(self.psql_args)
        self.cpu = server_cpu_seconds()

    def wait_for_backends_to_exit(self, timeout: float = 5.0) -> None:
        """A backend exits just after its client disconnects: its CPU reaches the
        postmaster's children time, and its temporary bytes pg_stat_database, when it has."""
        deadline = time.monotonic() + timeout
        sql = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        while time.monotonic() < deadline:
            out = subprocess.run([*self.psql_args, "-X", "-A", "-t", "-c", sql], check=True, capture_output=True, text=True)
            if out.stdout.strip() == "0":
                return

    def stop(self) -> dict[str, float]:
        self.wait_for_backends_to_exit()
        cpu = cpu_between(self.cpu, server_cpu_seconds())
        _, temp = server_counters(self.psql_args)
        return {"cpu_pg_s": cpu, "wal_bytes": wal_bytes_since(self.psql_args, self.lsn), "temp_bytes": temp - self.temp}


def events_stored(run_id: str, dagster_home: Path) -> int:
    """How many events the Dagster instance holds for a run (counted after the case, untimed)."""
    code = "import sys, dagster; print(len(dagster.DagsterInstance.get().all_logs(sys.argv[1])))"
    out = subprocess.run([sys.executable, "-c", code, run_id], env={**os.environ, "DAGSTER_HOME": str(dagster_home)},
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1])


def describe(m: dict) -> str:
    """One case's figures as run.py prints them (compare.py reads them back)."""
    parts = [f"cpu {m['cpu_s']:.2f} s"]
    if "cpu_pg_s" in m:
        parts += [f"pg cpu {m['cpu_pg_s']:.2f} s", f"wal {m['wal_bytes'] / 2**20:.1f} MiB",
                  f"temp {m['temp_bytes'] / 2**20:.1f} MiB"]
    if "events" in m:
        parts.append(f"events {m['events']}")
    return ", ".join(parts)
