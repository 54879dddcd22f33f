"""The code location's definitions, built from settings: the exchanges as assets
(`assets.py`) and their checks, one job per valid job template with its schedule and
file collector (and the check that its file arrived: `expected.py`), the run status
sensors, the work data cleanup, and the resources."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import dagster as dg

from campaign_pipelines.assets import exchange_assets, exchange_checks
from campaign_pipelines.cleanup import cleanup_job, cleanup_schedule
from campaign_pipelines.deployment import deployment_resources
from campaign_pipelines.executors import executor_def
from campaign_pipelines.expected import expected_file_definitions
from campaign_pipelines.jobs import build_job
from campaign_pipelines.load_errors import unloadable_template_jobs
from campaign_pipelines.schedules import build_schedule
from campaign_pipelines.drop_collector import DropTick
from campaign_pipelines.sensors import CollectorTick, build_collector, cancelled_runs, failed_runs
from campaign_pipelines.settings import Settings
from campaign_pipelines.templates import ImportTemplate, check_endpoints, load_catalog

log = logging.getLogger(__name__)


def build_definitions(settings: Settings | None = None, placed: Sequence[tuple[str, object]] = ()) -> dg.Definitions:
    """The definitions of `settings`' deployment: its templates folder's templates and those
    `placed` in a dg project's defs folder ((origin, data): components.JobTemplate)."""
    settings = settings or Settings.from_env()
    model = settings.data_model()
    for error in model.errors:
        log.warning("data schema skipped: %s", error)
    catalog = load_catalog(settings.templates_dir, model, placed)
    endpoints = settings.endpoints()
    check_endpoints(catalog, endpoints.declared, endpoints.origin)
    for error in catalog.errors:
        log.warning("job template skipped: %s", error)
    jobs = {name: build_job(t, settings.executor) for name, t in catalog.templates.items()}
    # A template that cannot load shows as a job of its name that says why (load_errors.py).
    unloadable = unloadable_template_jobs(catalog, {*jobs, cleanup_job.name})
    imports = [t for t in catalog.templates.values() if isinstance(t, ImportTemplate)]
    exchanges = dg.Definitions(
        jobs=[*jobs.values(), *unloadable, cleanup_job],
        schedules=[*(build_schedule(t, jobs[name]) for name, t in catalog.templates.items() if t.schedule), cleanup_schedule],
        sensors=[
            *(build_collector(t, jobs[name], DropTick if t.parts else CollectorTick)
              for name, t in catalog.templates.items() if t.kind == "import" and t.collector),
            cancelled_runs,
            failed_runs,
        ],
        assets=exchange_assets(catalog, model),
        asset_checks=exchange_checks(model),
        resources=deployment_resources(settings),
        # Dagster's asset job (Materialize on an asset page, asset backfills) runs the
        # template's steps on the deployment's executor too.
        executor=executor_def(settings.executor),
    )
    return dg.Definitions.merge(exchanges, expected_file_definitions(imports))

