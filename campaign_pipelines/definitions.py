"""The code location: one job per valid job template with its schedule and file
collector, the run status sensors, the Campaign tables and each import's rejects as
assets, and the resources."""

from __future__ import annotations

import logging

import dagster as dg

import schemas
from campaign_pipelines.jobs import build_job
from campaign_pipelines.schedules import build_schedule
from campaign_pipelines.sensors import build_collector, cancelled_runs, failed_runs
from campaign_pipelines.settings import Settings
from campaign_pipelines.templates import Catalog, load_catalog
from resources import CampaignDatabase, FileStore

log = logging.getLogger(__name__)


def campaign_database(settings: Settings) -> CampaignDatabase:
    # Through EnvVar, the URL (which may hold a password) is read at run time and never shown.
    if settings.db_url:
        return CampaignDatabase(url=dg.EnvVar("CAMPAIGN_DB_URL"))
    return CampaignDatabase()


def asset_specs(catalog: Catalog, model: schemas.DataModel) -> list[dg.AssetSpec]:
    tables = [
        dg.AssetSpec(
            key=["campaign", spec.name],
            description=spec.description,
            group_name="campaign",
            kinds={"sql"},
            metadata={
                "dagster/column_schema": dg.TableSchema(
                    columns=[
                        dg.TableColumn(
                            f.name, f.type_name, description=f.description or None,
                            constraints=dg.TableColumnConstraints(nullable=f.nullable, unique=f.unique),
                        )
                        for f in spec.fields
                    ]
                ),
                "schema_origin": dg.MetadataValue.text(spec.origin),
            },
        )
        for spec in model.tables.values()
    ]
    rejects = [
        dg.AssetSpec(
            key=["rejects", name],
            description=f"Lines rejected by the {name} import, with their line number and reason.",
            group_name="rejects",
        )
        for name, template in sorted(catalog.templates.items())
        if template.kind == "import"
    ]
    return tables + rejects


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    model = schemas.load(settings.schemas_dir)
    for error in model.errors:
        log.warning("data schema skipped: %s", error)
    catalog = load_catalog(settings.templates_dir)
    for error in catalog.errors:
        log.warning("job template skipped: %s", error)
    jobs = {name: build_job(t) for name, t in catalog.templates.items()}
    return dg.Definitions(
        jobs=list(jobs.values()),
        schedules=[build_schedule(t, jobs[name]) for name, t in catalog.templates.items() if t.schedule],
        sensors=[
            *(build_collector(t, jobs[name]) for name, t in catalog.templates.items() if t.kind == "import" and t.collector),
            cancelled_runs,
            failed_runs,
        ],
        assets=asset_specs(catalog, model),
        resources={
            "campaign_db": campaign_database(settings),
            "file_store": FileStore(data_dir=str(settings.data_dir)),
        },
    )


defs = build_definitions()
