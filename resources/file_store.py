"""The exchange file store: CAMPAIGN_DATA_DIR and its inbox/outbox/archive/rejects."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from resources.paths import DATA_SUBDIRS, resolve_data_path
from resources.work_io import work_dir


class FileStore(dg.ConfigurableResource):
    """Every file a job reads or writes resolves here; nothing may leave `data_dir`."""

    data_dir: str

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
