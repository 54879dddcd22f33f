"""What the deployment fixes and a run config cannot move: the data folder, the Campaign
database, the executor. Each is a definition configured once, its run config schema empty,
so the Launchpad offers none of them and a run config that sets one is refused
(`unexpected config entry`) before a run is created."""

from __future__ import annotations

from typing import Any

from campaign_pipelines.settings import Settings
from resources.campaign_db import CampaignDatabase
from resources.endpoint_file import Declared
from resources.endpoints import KINDS
from resources.file_store import FileStore
from resources.rejects_io import RejectsIOManager
from resources.work_io import WorkIOManager


def fixed_by_deployment(definition: Any, config: dict[str, Any], **options: Any) -> Any:
    """`definition` (an executor, or a resource's definition) configured with `config`.
    A value `{"env": NAME}` is read from the environment when the run starts: a secret in
    it is never stored in the run's config nor shown."""
    return definition.configured(lambda _: config, config_schema={}, **options)


def deployment_resources(settings: Settings) -> dict[str, Any]:
    data_dir = {"data_dir": str(settings.data_dir)}
    # Through the environment, the URL (which may hold a password) is read at run time.
    database: dict[str, Any] = {"schemas_dir": str(settings.schemas_dir), "check_modules": list(settings.check_modules)}
    if settings.db_url:
        database["url"] = {"env": "CAMPAIGN_DB_URL"}
    files = {**data_dir, "endpoints_file": str(settings.endpoints_file or "")}
    work = dict(data_dir)
    if settings.work_endpoint:
        settings.endpoints().get(settings.work_endpoint)  # declared, else one sentence now
        work.update(endpoints_file=str(settings.endpoints_file), work_endpoint=settings.work_endpoint)
    return {
        "campaign_db": fixed_by_deployment(CampaignDatabase().get_resource_definition(), database),
        "file_store": fixed_by_deployment(FileStore(**files).get_resource_definition(), files),
        "rejects_io_manager": fixed_by_deployment(RejectsIOManager(**data_dir).get_resource_definition(), data_dir),
        "work_io_manager": fixed_by_deployment(WorkIOManager(**work).get_resource_definition(), work),
        **{declared.resource_key: endpoint_resource(declared) for declared in settings.endpoints().declared.values()},
    }


def endpoint_resource(declared: Declared) -> Any:
    """An endpoint of the endpoints file, fixed like the others: its secrets, `{"env": NAME}`,
    are read from the environment when a step starts (resources/endpoints.py)."""
    kind = KINDS[declared.kind]
    # The instance only gives the resource's type; its values are the configured ones.
    placeholder = {key: "" for key, info in kind.model_fields.items() if info.is_required() and key != "name"}
    return fixed_by_deployment(kind(name=declared.name, **placeholder).get_resource_definition(), {"name": declared.name, **declared.settings})
