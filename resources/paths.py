"""Where a deployment's files and embedded database live, and the one check that keeps a
path inside its root. Below the pipelines: resources and the CLI use them alike."""

from __future__ import annotations

import os
from pathlib import Path

from schemas.errors import CampaignError

DATA_SUBDIRS = ("inbox", "outbox", "archive", "rejects")


def default_db_url() -> str:
    """The embedded SQLite database, under the working directory."""
    return f"sqlite:///{Path('.campaign/campaign.db').absolute()}"


def resolve_data_path(data_dir: Path | str, path: str | os.PathLike, *, what: str = "path") -> Path:
    """Resolve `path` (relative to the data dir, or absolute) and refuse anything that
    leaves the data dir, including through `..` or a symbolic link."""
    root = Path(data_dir).resolve()
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root):
        raise CampaignError(
            f"{what} '{path}' is outside CAMPAIGN_DATA_DIR ({root}); files must stay inside it."
        )
    return resolved
