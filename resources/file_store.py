"""The exchange file store: CAMPAIGN_DATA_DIR and its inbox/outbox/archive/rejects."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from resources.endpoint_file import load_endpoints
from resources.endpoints import Endpoint
from resources.paths import DATA_SUBDIRS, resolve_data_path
from resources.work_io import work_dir


class FileStore(dg.ConfigurableResource):
    """Every file a job reads or writes resolves here; nothing may leave `data_dir`.
    `endpoints_file` names the endpoints a step reaches by a template's choice made after
    its op was defined (a table's merge delivering one template's rejects files)."""

    data_dir: str
    endpoints_file: str = ""

    def endpoint(self, name: str) -> Endpoint:
        """The declared endpoint `name`, its secrets read from the environment now."""
        return load_endpoints(Path(self.endpoints_file) if self.endpoints_file else None).get(name).with_environment()

    @property
    def root(self) -> Path:
        root = Path(self.data_dir).absolute()
        for sub in DATA_SUBDIRS:
            (root / sub).mkdir(parents=True, exist_ok=True)
        return root

    def resolve(self, path: str, *, what: str = "path") -> Path:
        return resolve_data_path(self.root, path, what=what)

    def rejects_dir(self, template: str) -> Path:
        return self.resolve(f"rejects/{template}")

    def work_dir(self, root_run_id: str) -> Path:
        """The work data of a run and its re-executions: the steps' Arrow files (resources/work_io.py)."""
        path = work_dir(self.root, root_run_id)
        path.mkdir(parents=True, exist_ok=True)
        return path
