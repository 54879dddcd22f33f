"""The workspace's code location (workspace.yaml, `[tool.dagster]`, `[tool.dg]`): `defs`, the
components of the project's defs folder (`campaign_pipelines/defs/`, components.py), built
from the environment's settings when Dagster loads this module. The CLI builds what it runs
with `code_location.build_definitions` and does not import this module (one build per
command)."""

from pathlib import Path

import dagster as dg

import campaign_pipelines.defs

defs = dg.load_defs(campaign_pipelines.defs, project_root=Path(__file__).parent.parent)

__all__ = ["defs"]
