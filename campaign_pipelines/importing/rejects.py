"""Rejected lines: collected by every step, then kept three ways (spec 5): the
`import_reject` table, a file of the original lines in the input's own format (fix it and
re-import it with the same template), and a `.reasons.csv` beside it."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from resources.endpoints import Endpoint

REJECT_SCHEMA = pa.schema(
    [("line", pa.int64()), ("text", pa.string()), ("column", pa.string()), ("reason", pa.string())]
)


def _as_array(value: Any, length: int) -> pa.Array:
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        return pc.cast(value, pa.string()) if value.type != pa.string() else value
    return pa.array([value] * length, pa.string())


class RejectWriter:
    """Appends rejected lines to an Arrow IPC file as they are found, so memory holds one
    batch at a time whatever the number of rejects."""

    def __init__(self, path: Path):
        self.path = path
        self.count = 0  # reasons: a line may have several
        self._lines: list[pa.Array] = []  # their line numbers (8 bytes a reason), for `lines_rejected`
        self._writer: ipc.RecordBatchFileWriter | None = None

    def add(self, lines: pa.Array, texts: pa.Array, column: Any, reason: Any) -> None:
        n = len(lines)
        if not n:
            return
        batch = pa.RecordBatch.from_arrays(
            [pc.cast(lines, pa.int64()), _as_array(texts, n), _as_array(column, n), _as_array(reason, n)],
            schema=REJECT_SCHEMA,
        )
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = ipc.new_file(self.path, REJECT_SCHEMA)
        self._writer.write_batch(batch)
        self.count += n
        self._lines.append(batch.column(0))

    @property
    def lines_rejected(self) -> int:
        """Distinct lines among the reasons so far."""
        if not self._lines:
            return 0
        return len(pc.unique(pa.chunked_array(self._lines, pa.int64())))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "RejectWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_rejects(paths: list[Path]) -> pa.Table:
    """All rejects, one row per line (several failures on a line are joined), in line order."""
    tables = [ipc.open_file(p).read_all() for p in paths if p.exists()]
    if not tables:
        return REJECT_SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    grouped = table.group_by("line", use_threads=False).aggregate(
        [("text", "first"), ("column", "list"), ("reason", "list")]
    )
    columns = [_join_unique(v) for v in grouped["column_list"].to_pylist()]
    reasons = [_join_unique(v, "; ") for v in grouped["reason_list"].to_pylist()]
    result = pa.table(
        {
            "line": grouped["line"],
            "text": grouped["text_first"],
            "column": pa.array(columns, pa.string()),
            "reason": pa.array(reasons, pa.string()),
        },
        schema=REJECT_SCHEMA,
    )
    return result.sort_by("line")


def _join_unique(values: list[str | None], sep: str = ", ") -> str | None:
    seen = [v for v in dict.fromkeys(values) if v]
    return sep.join(seen) if seen else None


def write_reject_files(
    rejects: pa.Table, write_records: Callable[[list[str | None], Path], None], lines_path: Path, reasons_path: Path
) -> None:
    """The rejected records in the input's format (`write_records`: formats.py) and the reasons."""
    texts = rejects["text"].to_pylist()
    write_records(texts, lines_path)
    # The reasons with each line's text: what `campaign-pipelines rejects` shows of a run
    # whose rejects never reached the import_reject table (a failed run).
    with open(reasons_path, "w", encoding="utf-8", newline="", errors="replace") as out:
        writer = csv.writer(out)
        writer.writerow(["line", "column", "reason", "text"])
        for line, column, reason, text in zip(
            rejects["line"].to_pylist(), rejects["column"].to_pylist(), rejects["reason"].to_pylist(), texts
        ):
            writer.writerow([line, column or "", reason, text or ""])


def deliver_reject_files(lines_path: Path, endpoint: Endpoint, folder: str) -> str:
    """Put a run's rejects file and its reasons file (`<run_id>.reasons.csv`, beside it) in
    `folder` on `endpoint`, each whole; the rejects file's URI."""
    reasons = lines_path.with_name(f"{lines_path.stem}.reasons.csv")
    uri = endpoint.deliver(lines_path, f"{folder.rstrip('/')}/{lines_path.name}")
    endpoint.deliver(reasons, f"{folder.rstrip('/')}/{reasons.name}")
    return uri
