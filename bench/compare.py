"""Our import at two commits, side by side: rounds that alternate the commits (and which
goes first), so the machine's drift weighs on both alike.

    .venv/bin/python bench/compare.py BEFORE AFTER --rows 1000000 --rounds 3

Each commit is checked out in a temporary git worktree and runs on this venv's packages,
its own code first on PYTHONPATH, through `bench/run.py --only ours --db pg` (first load,
then re-import, on the same generated file; `--db sqlite`: the first load into SQLite),
in a work folder (data, Dagster home) per commit, so that neither reads the other's runs. The harness (bench/*.py and its
templates) is this checkout's, copied into both worktrees: the commits differ in their
code only, and both get the same options (`--dagster-storage postgres`: each its own
PostgreSQL database for the Dagster instance, as in production). Prints each round's
seconds and the ratio AFTER / BEFORE of the medians and round by round; saves nothing.

Besides wall time, each load's figures of the work done, as bench/run.py reports them
(bench/figures.py; the bytes and events do not move for the same code, the CPU does): CPU seconds of our process tree and of the
PostgreSQL server, MiB written to WAL and to temporary files, Dagster events stored.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASE = re.compile(r"^\s*ours (?:pg|sqlite)\s+(first|reimport)\s+\.\.\. ([0-9.]+) s", re.M)
STEPS = re.compile(r"^\s*steps: (.*)$", re.M)


def worktree(rev: str, parent: Path) -> Path:
    path = parent / rev
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(path), rev], check=True)
    for harness in [*(ROOT / "bench").glob("*.py"), *(ROOT / "bench" / "templates").glob("*.yaml")]:
        target = path / harness.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(harness, target)
    return path


FIGURES = re.compile(r"^\s*figures: (.*)$", re.M)
# What a figures line names, and the name it goes by here (SQLite's has no server figures).
FIGURE_NAMES = {"cpu": "cpu", "pg cpu": "pg_cpu", "wal": "wal_mb", "temp": "temp_mb", "events": "events"}
FIGURE = re.compile(r"(pg cpu|cpu|wal|temp|events) ([0-9.]+)")


def one_run(tree: Path, args: argparse.Namespace, loads: str) -> dict[str, float]:
    cmd = [sys.executable, str(tree / "bench" / "run.py"), "--rows", str(args.rows), "--only", "ours", "--db", args.db,
           "--loads", loads, "--no-save", "--work", str(args.work / tree.name),
           "--dagster-storage", args.dagster_storage]
    done = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{tree.name}: bench/run.py failed (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    for load, steps in zip(loads.split(","), STEPS.findall(done.stdout)):
        print(f"  {tree.name} {load} steps: {steps}", flush=True)
    figures = {load: float(seconds) for load, seconds in CASE.findall(done.stdout)}
    for load, line in zip(loads.split(","), FIGURES.findall(done.stdout)):
        figures.update({f"{load}_{FIGURE_NAMES[name]}": float(v) for name, v in FIGURE.findall(line)})
    return figures


def ratio(after: float, before: float) -> str:
    return f"{after / before:.3f}" if before else "—"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/campaign-bench"))
    parser.add_argument("--dagster-storage", choices=("sqlite", "postgres"), default="sqlite",
                        help="the Dagster instance's storage for both commits (bench/run.py's option)")
    parser.add_argument("--db", choices=("pg", "sqlite"), default="pg",
                        help="the Campaign database: PostgreSQL (first load and re-import) or SQLite (first load)")
    parser.add_argument("--reimport-only", action="store_true",
                        help="load the table once with BEFORE, then time re-imports only (quicker rounds, so more of "
                             "them); for two commits that make the same tables")
    args = parser.parse_args()
    loads = "first" if args.db == "sqlite" else "reimport" if args.reimport_only else "first,reimport"
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
    measured = samples[args.before][0]
    names = [f"{load}{suffix}" for load in loads.split(",")
             for suffix in ("", *(f"_{n}" for n in FIGURE_NAMES.values())) if f"{load}{suffix}" in measured]
    for load in names:
        unit = "MiB" if load.endswith("_mb") else "" if load.endswith("events") else "s"
        before = [s[load] for s in samples[args.before]]
        after = [s[load] for s in samples[args.after]]
        rounds = ", ".join(ratio(a, b) for a, b in zip(after, before))
        print(f"{load:<16} {args.before}: median {statistics.median(before):.2f} {unit} {before}; "
              f"{args.after}: median {statistics.median(after):.2f} {unit} {after}; "
              f"ratio of medians {ratio(statistics.median(after), statistics.median(before))} (round by round {rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
