"""The workspace's code location (workspace.yaml, `[tool.dagster]`): `defs`, built from the
environment's settings when Dagster loads this module. The CLI builds what it runs with
`code_location.build_definitions` and does not import this module (one build per command)."""

from campaign_pipelines.code_location import build_definitions

defs = build_definitions()

__all__ = ["build_definitions", "defs"]
