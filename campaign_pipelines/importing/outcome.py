"""What an import's merge did: its counts, rejects and status (the report's input)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from campaign_pipelines.templates import ImportTemplate

COUNT_KEYS = ("rows_inserted", "rows_updated", "rows_unchanged", "rows_deleted", "rows_ignored", "rows_rejected")


@dataclass
class ImportOutcome:
    template: ImportTemplate
    counts: dict[str, int]
    ignored_by_cause: dict[str, int]
    rejects: pa.Table
    rejects_path: Path | None  # the reasons are beside it, in <run_id>.reasons.csv
    status: str
    table_rows: int
    rows_read: int = 0
    failure: str | None = None
    links_created: dict[str, int] = dataclasses.field(default_factory=dict)  # on_missing_link: create
    committed_by: str | None = None  # a re-executed merge: the run whose merge had committed
    rejects_uri: str | None = None  # the rejects file delivered to errors.rejects_to's endpoint

    def summary(self) -> dict[str, int]:
        return {"rows_read": self.rows_read, **{k: self.counts.get(k, 0) for k in COUNT_KEYS}}


@dataclass
class DropOutcome:
    """A multiple import's merge: each part's outcome, in load order; failed as a whole."""

    template: ImportTemplate
    parts: list[ImportOutcome]
    failure: str | None = None  # the part that failed, and why; nothing of the drop was written
    committed_by: str | None = None

    @property
    def status(self) -> str:
        if self.failure:
            return "failed"
        return "finished_with_errors" if any(p.status == "finished_with_errors" for p in self.parts) else "finished"

    def summary(self) -> dict[str, int]:
        """The parts' counts added up (each part's: `parts`)."""
        totals = dict.fromkeys(("rows_read", *COUNT_KEYS), 0)
        for part in self.parts:
            for key, value in part.summary().items():
                totals[key] += value
        return totals
