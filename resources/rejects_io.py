"""The rejects of an import's last run as a pandas DataFrame: `rejects/<template>`'s value.

Each run (loaded or failed by its reject policy) stores its rejected lines — line,
column, reason, original text — as `rejects/<template>/last_run.parquet` (one file per
day for a partitioned template) beside the rejects files a user fixes and re-imports.
`defs.load_asset_value(["rejects", "import_recipients"])`, or a downstream asset taking
the rejects as its input, reads them back as pandas.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from resources.paths import resolve_data_path

if TYPE_CHECKING:  # pandas loads with the rejects (to_pandas), not with every run: 0.3 s of CPU
    import pandas as pd

COLUMNS = ["line", "column", "reason", "text"]


def last_rejects_path(data_dir: Path | str, template: str, partition_key: str | None = None) -> Path:
    name = f"last_run.{partition_key}.parquet" if partition_key else "last_run.parquet"
    return resolve_data_path(data_dir, f"rejects/{template}/{name}", what="rejects")


def store_last_rejects(path: Path, rejects: pa.Table, run_id: str) -> None:
    """Written whole under a temporary name then renamed: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A multiple import's rejects name their part first.
    table = rejects.select([c for c in ("part", *COLUMNS) if c in rejects.column_names]).replace_schema_metadata({"run_id": run_id})
    partial = path.with_suffix(".partial")
    pq.write_table(table, partial)
    partial.replace(path)


class RejectsIOManager(dg.ConfigurableIOManager):
    """Stores the rejects a run's report hands over; loads the last run's as pandas."""

    data_dir: str

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        return last_rejects_path(self.data_dir, context.asset_key.path[-1], partition)

    def handle_output(self, context: dg.OutputContext, obj: pa.Table) -> None:
        store_last_rejects(self._path(context), obj, context.run_id)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        path = self._path(context)
        if not path.exists():
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()}: no import run has stored its rejects yet ({path} does not exist)."
            )
        table = pq.read_table(path)
        frame = table.to_pandas()
        frame.attrs["run_id"] = (table.schema.metadata or {}).get(b"run_id", b"").decode()
        return frame
