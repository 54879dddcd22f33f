"""Our import at two commits, side by side: rounds that alternate the commits (and which
goes first), so the machine's drift weighs on both alike.

    .venv/bin/python bench/compare.py BEFORE AFTER --rows 1000000 --rounds 3

Each commit is checked out in a temporary git worktree and runs on this venv's packages,
its own code first on PYTHONPATH, through `bench/run.py --only ours --db pg` (first load,
then re-import, on the same generated file), in a work folder (data, Dagster home) per
commit, so that neither reads the other's runs. The harness (bench/*.py and its
templates) is this checkout's, copied into both worktrees: the commits differ in their
code only, and both get the same options (`--dagster-storage postgres`: each its own
PostgreSQL database for the Dagster instance, as in production). Prints each round's
seconds and the ratio AFTER / BEFORE of the medians and round by round; saves nothing.

Besides wall time, each round's figures that other load on the machine barely moves:
`cpu_ours` (CPU seconds of bench/run.py's process tree: the command, its run, its steps)
and `cpu_pg` (CPU seconds of the PostgreSQL server's processes over the round, backends
included: the postmaster's own and its reaped children's, plus the live children's).
`wal_mb` and `temp_mb`: what the PostgreSQL server wrote to its WAL and to temporary files
over the round (`pg_current_wal_lsn`, `pg_stat_database.temp_bytes`, the whole server).
They cover the whole round (both loads, and the harness's own few queries).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASE = re.compile(r"^\s*ours pg\s+(first|reimport)\s+\.\.\. ([0-9.]+) s", re.M)
STEPS = re.compile(r"^\s*steps: (.*)$", re.M)


def worktree(rev: str, parent: Path) -> Path:
    path = parent / rev
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(path), rev], check=True)
    for harness in [*(ROOT / "bench").glob("*.py"), *(ROOT / "bench" / "templates").glob("*.yaml")]:
        target = path / harness.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(harness, target)
    return path


def postgres_cpu_seconds() -> float:
    """CPU seconds the PostgreSQL server has used: the postmaster's own, its exited
    children's (reaped by it) and its live children's."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["name", "ppid"]):
        try:
            if proc.info["name"] == "postgres" and psutil.Process(proc.info["ppid"]).name() != "postgres":
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
                total += sum(c.cpu_times().user + c.cpu_times().system for c in proc.children())
        except psutil.Error:
            continue
    return total


def postgres_bytes() -> tuple[str, int]:
    """The server's WAL position and the temporary-file bytes its databases wrote so far."""
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-X", "-A", "-t", "-c",
         "SELECT pg_current_wal_lsn() || '|' || (SELECT sum(temp_bytes) FROM pg_stat_database)"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    lsn, temp = out.split("|")
    return lsn, int(temp)


def wal_mb_since(lsn: str) -> float:
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-X", "-A", "-t", "-c",
         f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn}')"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    return float(out) / 2**20


def children_cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def one_run(tree: Path, args: argparse.Namespace, loads: str) -> dict[str, float]:
    ours, pg = children_cpu_seconds(), postgres_cpu_seconds()
    lsn, temp = postgres_bytes()
    cmd = [sys.executable, str(tree / "bench" / "run.py"), "--rows", str(args.rows), "--only", "ours", "--db", "pg",
           "--loads", loads, "--no-save", "--work", str(args.work / tree.name),
           "--dagster-storage", args.dagster_storage]
    done = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{tree.name}: bench/run.py failed (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    for load, steps in zip(loads.split(","), STEPS.findall(done.stdout)):
        print(f"  {tree.name} {load} steps: {steps}", flush=True)
    figures = {load: float(seconds) for load, seconds in CASE.findall(done.stdout)}
    figures["cpu_ours"] = children_cpu_seconds() - ours
    figures["cpu_pg"] = postgres_cpu_seconds() - pg
    figures["wal_mb"] = wal_mb_since(lsn)
    figures["temp_mb"] = (postgres_bytes()[1] - temp) / 2**20
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/campaign-bench"))
    parser.add_argument("--dagster-storage", choices=("sqlite", "postgres"), default="sqlite",
                        help="the Dagster instance's storage for both commits (bench/run.py's option)")
    parser.add_argument("--reimport-only", action="store_true",
                        help="load the table once with BEFORE, then time re-imports only (quicker rounds, so more of "
                             "them); for two commits that make the same tables")
    args = parser.parse_args()
    loads = "reimport" if args.reimport_only else "first,reimport"
    samples: dict[str, list[dict[str, float]]] = {args.before: [], args.after: []}
    with tempfile.TemporaryDirectory(prefix="campaign-compare-") as parent:
        trees = {rev: worktree(rev, Path(parent)) for rev in samples}
        try:
            if args.reimport_only:
                print(f"loading the table with {args.before} (untimed): {one_run(trees[args.before], args, 'first')}", flush=True)
            for round_number in range(args.rounds):
                order = [args.before, args.after] if round_number % 2 == 0 else [args.after, args.before]
                for rev in order:
                    samples[rev].append(one_run(trees[rev], args, loads))
                    print(f"round {round_number + 1} {rev}: {samples[rev][-1]}", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    for load in [*loads.split(","), "cpu_ours", "cpu_pg", "wal_mb", "temp_mb"]:
        unit = "MiB" if load.endswith("_mb") else "s"
        before = [s[load] for s in samples[args.before]]
        after = [s[load] for s in samples[args.after]]
        rounds = ", ".join(f"{a / b:.3f}" for a, b in zip(after, before))
        print(f"{load:<8} {args.before}: median {statistics.median(before):.2f} {unit} {before}; "
              f"{args.after}: median {statistics.median(after):.2f} {unit} {after}; "
              f"ratio of medians {statistics.median(after) / statistics.median(before):.3f} (round by round {rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
