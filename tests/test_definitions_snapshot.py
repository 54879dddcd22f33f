"""Every definition the examples make — jobs, asset keys, checks, schedules, sensors and
resource keys — against a snapshot kept in tests/snapshots/, so that no refactor drops
or renames one silently. After an intended change, write the snapshot again:

    WRITE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_definitions_snapshot.py

and read its diff. The definitions are built from a `Settings` alone, with no CAMPAIGN_*
variable set: the folders it names are the only ones read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from campaign_pipelines.code_location import build_definitions
from campaign_pipelines.settings import Settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


def inventory(defs: dg.Definitions) -> dict[str, Any]:
    repository = defs.get_repository_def()
    jobs = sorted(repository.get_all_jobs(), key=lambda j: j.name)
    return {
        "jobs": {
            job.name: {
                "tags": {k: v for k, v in sorted(job.tags.items()) if k.startswith("campaign/")},
                "assets": sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys),
            }
            for job in jobs
            if not job.name.startswith("__")
        },
        "assets": sorted(spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()),
        "checks": sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in defs.resolve_asset_graph().asset_check_keys),
        "schedules": {s.name: {"job": s.job_name, "cron": s.cron_schedule} for s in sorted(repository.schedule_defs, key=lambda s: s.name)},
        "sensors": sorted(s.name for s in repository.sensor_defs),
        "resources": sorted(defs.resources or {}),
    }


@pytest.mark.parametrize("example", ["shop", "crm_to_warehouse", "shop_drop"])
def test_the_examples_definitions_match_their_snapshot(example, tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("CAMPAIGN_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # nothing found by accident in the working directory
    folder = EXAMPLES / example
    settings = Settings(
        db_url=None,
        data_dir=tmp_path / "data",
        templates_dir=folder / "job_templates",
        schemas_dir=folder / "data_schemas",
    )
    found = inventory(build_definitions(settings))
    snapshot = SNAPSHOTS / f"{example}_definitions.json"
    if os.environ.get("WRITE_SNAPSHOTS"):
        snapshot.write_text(json.dumps(found, indent=2) + "\n")
    assert found == json.loads(snapshot.read_text())
    # Every template of the folder made its job: none skipped for a model it was not given.
    templates = {p.stem for p in (folder / "job_templates").glob("*.yaml")}
    assert templates <= set(found["jobs"])
    assert not any(job["tags"].get("campaign/load_error") for job in found["jobs"].values())
