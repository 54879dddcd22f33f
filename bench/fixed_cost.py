"""What a run pays whatever its rows: the 10-line sample import and the sample export, end to end.

    .venv/bin/python bench/fixed_cost.py --rounds 10                 # this checkout
    .venv/bin/python bench/fixed_cost.py BEFORE AFTER --rounds 10    # two commits, side by side

Each checkout gets its own project folder (`campaign-pipelines init --samples examples`:
the embedded SQLite database, a Dagster home of SQLite files), one untimed run of each
case to create the storage, then rounds that alternate the cases and, given two
commits, the commits (which goes first too), so the machine's drift weighs on all alike:

- `import`: `campaign-pipelines run import_recipients --json`, the sample's 9 lines
  (re-imported: 5 unchanged, 1 ignored, 3 rejected);
- `export`: `campaign-pipelines run new_text_export --json`, the sample's 4 rows;
- `startup`: `python -c "import campaign_pipelines.cli.runs"`, what the command imports
  before it reads its arguments.

Figures per case: CPU seconds of the command's process tree (user + system, from
`wait4`), wall seconds, and the Dagster events the run stored. As in compare.py, CPU
moves with the host on this VM (bench/NOTES.md, the A/A run) while events do not; the
medians over 10 rounds are what to read. Commits run on this venv's packages, their own
code first on PYTHONPATH, with this checkout's harness. Prints the medians (and the
ratios AFTER / BEFORE); saves nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compare import ROOT, worktree
from figures import events_stored

VENV_BIN = Path(sys.executable).parent
COMMAND = ["-c", "from campaign_pipelines.cli import console; console()"]  # the console script, on PYTHONPATH's code
CASES = {
    "import": [*COMMAND, "run", "import_recipients", "--json"],
    "export": [*COMMAND, "run", "new_text_export", "--json"],
    "startup": ["-c", "import campaign_pipelines.cli.runs"],
}


def project(tree: Path, work: Path) -> tuple[Path, dict[str, str]]:
    """A project folder of the samples for one checkout, and the environment its commands run in."""
    folder = work / tree.name
    folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGN_", "DAGSTER_"))}
    env.update(PYTHONPATH=str(tree), DAGSTER_HOME=str(folder / ".campaign" / "dagster"))
    (folder / ".campaign" / "dagster").mkdir(parents=True)
    subprocess.run([sys.executable, *COMMAND, "init", "--samples", str(ROOT / "examples")],
                   cwd=folder, env=env, check=True, capture_output=True)
    return folder, env


def one(case: str, folder: Path, env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *CASES[case]], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{case} in {folder} exited {os.waitstatus_to_exitcode(status)}: {out[-2000:]!r}")
    figures = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime}
    if case != "startup":
        figures["events"] = events_stored(json.loads(out)["run_id"], Path(env["DAGSTER_HOME"]))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("commits", nargs="*", help="none (this checkout), or BEFORE AFTER")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    if len(args.commits) not in (0, 2):
        parser.error("give no commit, or two: BEFORE AFTER")
    cases = args.cases.split(",")
    parent = Path(tempfile.mkdtemp(prefix="fixed-cost-"))
    try:
        trees = [worktree(rev, parent / "trees") for rev in args.commits] or [ROOT]
        projects = {tree.name: project(tree, parent / "work") for tree in trees}
        for folder, env in projects.values():
            for case in cases:
                one(case, folder, env)  # creates the storage: untimed
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for n in range(args.rounds):
            order = list(projects) if n % 2 == 0 else list(reversed(projects))
            for name in order:
                for case in cases:
                    results.setdefault((name, case), []).append(one(case, *projects[name]))
            print(f"round {n + 1}: " + ", ".join(
                f"{name} {case} {results[name, case][-1]['cpu']:.2f} s CPU" for name in order for case in cases), flush=True)
        medians = {key: {f: statistics.median(r[f] for r in rounds) for f in rounds[0]} for key, rounds in results.items()}
        print("\nmedians over", args.rounds, "rounds (CPU s of the command's processes; wall s; events stored):")
        for (name, case), m in medians.items():
            print(f"  {name:>10} {case:<8} cpu {m['cpu']:.3f}  wall {m['wall']:.3f}" +
                  (f"  events {m['events']:.0f}" if "events" in m else ""))
        if len(trees) == 2:
            before, after = (t.name for t in trees)
            print(f"\n{after} / {before}:")
            for case in cases:
                b, a = medians[before, case], medians[after, case]
                print(f"  {case:<8} " + "  ".join(f"{f} {a[f] / b[f]:.3f}" for f in b if b[f]))
    finally:
        for tree in trees if args.commits else []:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
