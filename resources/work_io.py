"""Step outputs any process can read: the work data of a run and its re-executions.

An import's steps hand each other an `ImportState` (paths and counts) while their rows
stay in Arrow files; an export's, its outcome. Both are pickled under
`CAMPAIGN_DATA_DIR/.work/<root run id>/outputs/<run id>/<step>.<output>.pickle`, beside
the Arrow files of the same root run, so a step running in another process, on another
worker sharing the data dir, or in a re-execution ("re-execute from failure" reads its
parent run's outputs) finds them. The folder goes when the run, or a re-execution of it,
succeeds, and otherwise after CAMPAIGN_WORK_RETENTION (`cleanup.py`).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import dagster as dg

from resources.paths import resolve_data_path

WORK = ".work"


def root_run_id(run: dg.DagsterRun) -> str:
    """The first run of a run and its re-executions: whose work data they share."""
    return run.root_run_id or run.run_id


def work_dir(data_dir: Path | str, root: str) -> Path:
    return resolve_data_path(data_dir, f"{WORK}/{root}", what="work data")


class WorkIOManager(dg.ConfigurableIOManager):
    """Pickles each step's output in the root run's work folder; loads it back for the next step."""

    data_dir: str

    def _path(self, root: str, run_id: str, step_key: str, output: str) -> Path:
        return work_dir(self.data_dir, root) / "outputs" / run_id / f"{step_key}.{output}.pickle"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        path = self._path(root_run_id(context.step_context.dagster_run), context.run_id, context.step_key, context.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        partial.replace(path)

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        assert upstream is not None and upstream.run_id is not None
        root = root_run_id(context.step_context.dagster_run)
        path = self._path(root, upstream.run_id, upstream.step_key, upstream.name)
        if not path.exists():
            # Raised before the op body runs: the run's failure says it in one sentence.
            raise dg.Failure(
                description=(
                    f"the work data of run {upstream.run_id} ({upstream.step_key}'s output) was cleaned up "
                    "(CAMPAIGN_WORK_RETENTION) or never written: re-run the whole job; nothing was written."
                ),
                allow_retries=False,
            )
        return pickle.loads(path.read_bytes())
