"""Where things live, read from the environment (spec section 2)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from campaign_pipelines.errors import CampaignError

DATA_SUBDIRS = ("inbox", "outbox", "archive", "rejects")


@dataclass(frozen=True)
class Settings:
    db_url: str | None
    data_dir: Path
    templates_dir: Path
    schemas_dir: Path

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            db_url=os.environ.get("CAMPAIGN_DB_URL") or None,
            data_dir=Path(os.environ.get("CAMPAIGN_DATA_DIR", ".campaign/data")).absolute(),
            templates_dir=Path(os.environ.get("CAMPAIGN_TEMPLATES_DIR", "job_templates")).absolute(),
            schemas_dir=Path(os.environ.get("CAMPAIGN_SCHEMAS_DIR", "data_schemas")).absolute(),
        )


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
