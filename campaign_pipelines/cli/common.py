"""What the commands share: exit codes, one-sentence usage errors, the template catalog, launch values, the Dagster instance."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import warnings
from pathlib import Path
from typing import Any

import yaml

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.settings import Settings
from campaign_pipelines.templates import Catalog, builtin_sources, check_endpoints, load_catalog

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(CampaignError):
    pass


def template_catalog(settings: Settings) -> Catalog:
    """The deployment's templates, as its code location loads them."""
    catalog = load_catalog(settings.templates_dir, settings.data_model())
    endpoints = settings.endpoints()
    check_endpoints(catalog, endpoints.declared, endpoints.origin)
    return catalog


def template_text(name: str, catalog: Catalog) -> str:
    catalog.get(name)
    origin = catalog.origins[name]
    if origin.startswith("builtin:"):
        return dict(builtin_sources())[origin]
    return Path(origin).read_text(encoding="utf-8")


TEXT_KEYS = ("delimiter", "quote", "encoding", "file", "output", "drop")


def parse_sets(pairs: list[str], keys: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in keys:
            raise UsageError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(keys)}.")
        values[key] = raw if key in TEXT_KEYS and raw != "null" else yaml.safe_load(raw)
    return values


def checked_launch(template: Any, launch: dict[str, Any]) -> dict[str, Any]:
    """The launch values as the template model reads them: a value of the wrong type or
    range is a usage error naming its key, before any run starts."""
    launched = template.with_overrides(launch)  # TemplateError: one sentence naming the key
    values = launched.launch_values()
    return {key: values[key] for key in launch}


def dagster_instance() -> Any:
    """The configured instance (DAGSTER_HOME), else a local one under .campaign/dagster."""
    import dagster as dg

    configured = os.environ.get("DAGSTER_HOME")
    if configured and not Path(configured).is_dir():
        raise UsageError(
            f"DAGSTER_HOME is {configured}, which is not a folder; create it, or unset DAGSTER_HOME "
            "to keep runs in .campaign/dagster."
        )
    if not configured:
        home = Path(".campaign/dagster").absolute()
        home.mkdir(parents=True, exist_ok=True)
        os.environ["DAGSTER_HOME"] = str(home)
    # The first runs on a new home create its storage; two at once would both try (the
    # loser fails in alembic), so they take turns.
    with open(Path(os.environ["DAGSTER_HOME"]) / ".campaign-pipelines.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return dg.DagsterInstance.get()


@contextlib.contextmanager
def quiet(verbose: bool) -> Any:
    """Dagster's own output (events, warnings, its first-run banner) on stderr only with
    --verbose: by default stderr holds the one-sentence error. The run's events are kept
    in the instance either way (the UI's run page)."""
    if verbose:
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
