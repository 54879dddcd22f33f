"""Where things live, read from the environment (spec section 2)."""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from campaign_pipelines.errors import CampaignError
from resources.paths import DATA_SUBDIRS, default_db_url, resolve_data_path

if TYPE_CHECKING:
    import schemas
    from resources.endpoint_file import Endpoints

EXECUTORS = ("in_process", "multiprocess", "celery")
DEFAULT_WORK_RETENTION = "7d"
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")


def parse_duration(text: str, what: str = "CAMPAIGN_WORK_RETENTION") -> dt.timedelta:
    """`7d`, `12h`, `1d12h`, `30m`: days, hours and minutes."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise CampaignError(f"{what} '{text}' is not a duration such as 7d, 12h, 1d12h or 30m.")
    days, hours, minutes = (int(g or 0) for g in match.groups())
    return dt.timedelta(days=days, hours=hours, minutes=minutes)


@dataclass(frozen=True)
class Settings:
    db_url: str | None
    data_dir: Path
    templates_dir: Path
    schemas_dir: Path
    # How a run's steps execute (executors.py): a deployment's choice, not the templates'.
    executor: str = "in_process"
    # How long a run that did not succeed keeps its work data for a re-execution.
    work_retention: dt.timedelta = dt.timedelta(days=7)
    # Python modules that register custom pandera checks, imported before the data
    # schemas are read (docs/data-schemas.md).
    check_modules: tuple[str, ...] = ()
    # The endpoints file (resources/endpoint_file.py): SFTP servers and buckets by name.
    endpoints_file: Path | None = None
    # The endpoint (of the endpoints file) Celery workers with no shared folder share the
    # work data through (resources/work_io.py); none: the data folder holds it.
    work_endpoint: str | None = None

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            db_url=os.environ.get("CAMPAIGN_DB_URL") or None,
            data_dir=Path(os.environ.get("CAMPAIGN_DATA_DIR", ".campaign/data")).absolute(),
            templates_dir=Path(os.environ.get("CAMPAIGN_TEMPLATES_DIR", "job_templates")).absolute(),
            schemas_dir=Path(os.environ.get("CAMPAIGN_SCHEMAS_DIR", "data_schemas")).absolute(),
            executor=executor_from_env(),
            work_retention=parse_duration(os.environ.get("CAMPAIGN_WORK_RETENTION") or DEFAULT_WORK_RETENTION),
            check_modules=tuple(n.strip() for n in os.environ.get("CAMPAIGN_CHECK_MODULES", "").split(",") if n.strip()),
            endpoints_file=Path(os.environ.get("CAMPAIGN_ENDPOINTS", "endpoints.yaml")).absolute(),
            work_endpoint=os.environ.get("CAMPAIGN_WORK_ENDPOINT", "").strip() or None,
        )

    def data_model(self) -> "schemas.DataModel":
        """The deployment's data model: the built-in tables and the schemas folder's."""
        import schemas

        return schemas.load(self.schemas_dir, self.check_modules)

    def endpoints(self) -> "Endpoints":
        """The deployment's endpoints (none without an endpoints file)."""
        from resources.endpoint_file import load_endpoints

        return load_endpoints(self.endpoints_file)


def executor_from_env() -> str:
    name = (os.environ.get("CAMPAIGN_EXECUTOR") or "in_process").strip()
    if name not in EXECUTORS:
        raise CampaignError(f"CAMPAIGN_EXECUTOR '{name}' is not one of {', '.join(EXECUTORS)}.")
    return name


__all__ = ["Settings", "DATA_SUBDIRS", "EXECUTORS", "default_db_url", "resolve_data_path", "parse_duration", "executor_from_env"]
