"""Step outputs any process can read: the work data of a run and its re-executions.

An import's steps hand each other an `ImportState` (paths and counts) while their rows
stay in Arrow files; an export's, its outcome. Both are pickled under
`CAMPAIGN_DATA_DIR/.work/<root run id>/outputs/<run id>/<step>.<output>.pickle`, beside
the Arrow files of the same root run, so a step running in another process, on another
worker sharing the data dir, or in a re-execution ("re-execute from failure" reads its
parent run's outputs) finds them. The folder goes when the run, or a re-execution of it,
succeeds, and otherwise after CAMPAIGN_WORK_RETENTION (`cleanup.py`).

Workers that share no folder share the work data through an endpoint, a bucket say
(`CAMPAIGN_WORK_ENDPOINT`, docs/executors.md): each output is also put there, with the
files it names (`work_files()`), under `<root run id>/…` in the endpoint's root; a step
on another machine fetches what it lacks into its own data folder's work folder, and
reads the output rebased there (`rebased()`).
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from resources.endpoints import Endpoint
from resources.paths import resolve_data_path

WORK = ".work"


def root_run_id(run: dg.DagsterRun) -> str:
    """The first run of a run and its re-executions: whose work data they share."""
    return run.root_run_id or run.run_id


def work_dir(data_dir: Path | str, root: str) -> Path:
    return resolve_data_path(data_dir, f"{WORK}/{root}", what="work data")


class WorkIOManager(dg.ConfigurableIOManager):
    """Pickles each step's output in the root run's work folder; loads it back for the next
    step. With `work_endpoint` (an endpoint of `endpoints_file`), also there, with its files."""

    data_dir: str
    endpoints_file: str = ""
    work_endpoint: str = ""
    _shared: Endpoint | None = PrivateAttr(default=None)

    def shared(self) -> Endpoint | None:
        """The endpoint the workers share the work data through, its secrets read now."""
        if self.work_endpoint and self._shared is None:
            from resources.endpoint_file import load_endpoints

            self._shared = load_endpoints(Path(self.endpoints_file)).get(self.work_endpoint).with_environment()
        return self._shared

    def _name(self, root: str, run_id: str, step_key: str, output: str) -> str:
        return f"{root}/outputs/{run_id}/{step_key}.{output}.pickle"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        root = root_run_id(context.step_context.dagster_run)
        name = self._name(root, context.run_id, context.step_key, context.name)
        path = work_dir(self.data_dir, root) / name.removeprefix(f"{root}/")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        partial.replace(path)
        if (shared := self.shared()) is not None:
            folder = work_dir(self.data_dir, root)
            for file in getattr(obj, "work_files", list)():
                remote = f"{root}/{file.relative_to(folder).as_posix()}"
                if file.exists() and not shared.exists(remote):  # an earlier step's files are there already
                    shared.deliver(file, remote)
            shared.deliver(path, name)  # last: an output is never there without its files
            self.drop_local(root)

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        assert upstream is not None and upstream.run_id is not None
        root = root_run_id(context.step_context.dagster_run)
        name = self._name(root, upstream.run_id, upstream.step_key, upstream.name)
        folder = work_dir(self.data_dir, root)
        path = folder / name.removeprefix(f"{root}/")
        shared = self.shared()
        if not path.exists() and shared is not None and shared.exists(name):
            shared.spool(name, path)
        if not path.exists():
            # Raised before the op body runs: the run's failure says it in one sentence.
            raise dg.Failure(
                description=(
                    f"the work data of run {upstream.run_id} ({upstream.step_key}'s output) was cleaned up "
                    "(CAMPAIGN_WORK_RETENTION) or never written: re-run the whole job; nothing was written."
                ),
                allow_retries=False,
            )
        value = pickle.loads(path.read_bytes())
        if shared is not None and hasattr(value, "rebased"):
            value = value.rebased(folder)  # written by a worker with another data folder, maybe
            for file in value.work_files():
                remote = f"{root}/{file.relative_to(folder).as_posix()}"
                if not file.exists() and shared.exists(remote):
                    shared.spool(remote, file)
        return value

    def drop_local(self, root: str) -> None:
        """With a shared work endpoint, this process's copy of the root run's work data is a
        cache for one step: gone once its output is shared, or when the step fails (the next
        step or try may run on another machine, which fetches what it needs)."""
        if self.shared() is not None:
            shutil.rmtree(work_dir(self.data_dir, root), ignore_errors=True)

    def remove_shared(self, root: str) -> None:
        """The root run's work data on the shared endpoint, if any."""
        if (shared := self.shared()) is not None:
            shared.remove_folder(root)

    def shared_roots(self) -> list[str]:
        """The root runs with work data on the shared endpoint."""
        shared = self.shared()
        return shared.folders() if shared is not None else []
