"""Multiple imports: the related files of one drop (customers, their orders, the order
lines), each a part with its own source, target and mapping, loaded in link order in one
transaction.

A part is checked as the one-file import it would be (its errors named `parts[i].…`), and
runs as one: `part_templates` gives each part's template, named `<template>.<part>`, its
`source.path` relative to the drop's folder. A launch names the folder (launch key
`drop`); a collector's run, each folder its `watch` matches (sensors.py). A manifest,
when the drop has one, names each part's file.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, ValidationError, field_validator

from campaign_pipelines.errors import CampaignError, TemplateError
from campaign_pipelines.templates.common import Model, _inside_data_dir, format_validation_error

if TYPE_CHECKING:
    from campaign_pipelines.templates.imports import ImportPart, ImportTemplate

# Flat launch keys of a multiple import (a part's file comes from the drop's folder).
DROP_LAUNCH_KEYS = ("drop", "limit", "on_error", "max_rejects")


class Drop(Model):
    # The drop's folder (under CAMPAIGN_DATA_DIR or the parts' endpoint) a launch reads
    # when it names none; a collector's run reads the folder it found.
    folder: str = ""
    # A file of the drop naming each part's file: {"customers": "customers_20261207.csv", …}.
    # A collector starts the drop once it is there (the sender writes it last).
    manifest: Annotated[str, Field(pattern=r"^[^/\\]+$")] | None = None

    _check_folder = field_validator("folder")(lambda v: _inside_data_dir(v) if v else v)


def check_multiple(template: ImportTemplate) -> None:
    """What holds for the parts together (each part was checked alone by whole_parts)."""
    if not template.parts:
        raise ValueError("drop: only for a multiple import (parts)")
    extra = [k for k in ("source", "target", "columns", "partitions") if k in template.model_fields_set]
    if extra:
        raise ValueError(f"parts: a multiple import's {' and '.join(extra)} are its parts'; remove the top-level {extra[0]}")
    names = [p.name for p in template.parts]
    if len(set(names)) != len(names):
        raise ValueError(f"parts: two parts are named {next(n for n in names if names.count(n) > 1)!r}")
    endpoints = {p.source.endpoint for p in template.parts}
    if len(endpoints) > 1:
        raise ValueError("parts: every part's file is in the drop's folder: give them one source.endpoint (or none)")
    manifest = template.drop.manifest if template.drop else None
    for i, part in enumerate(template.parts):
        path = part.source.path
        if path is None and manifest is None:
            raise ValueError(f"parts[{i}].source.path: required (the part's file in the drop's folder) unless drop.manifest names it")
        if path is not None:
            if "{" in path:
                raise ValueError(f"parts[{i}].source.path: a file in the drop's folder, with no {{...}} (the folder is the drop's)")
            _inside_data_dir(path)
            if template.collector is not None and "/" in path:
                raise ValueError(f"parts[{i}].source.path: a collected drop's files are in its folder: a file name, no '/'")
    link_order(template)


def link_order(template: ImportTemplate) -> list[ImportPart]:
    """The parts in the order their links need: a part whose table links to another
    part's table after it (an order after its customer); otherwise as written."""
    model = template.model
    parts = list(template.parts)
    tables = {p.name: p.target.table for p in parts}

    def needs(part: ImportPart) -> set[str]:
        spec = model.table(part.target.table)
        linked = {link.table for c in part.columns if (link := spec.link(c.target))}
        return {other for other, table in tables.items() if other != part.name and table in linked}

    ordered: list[ImportPart] = []
    waiting = parts
    while waiting:
        done = {p.name for p in ordered}
        ready = [p for p in waiting if needs(p) <= done]
        if not ready:
            # The parts in the cycle: left once the parts no other waiting part needs are.
            cycle_parts = list(waiting)
            while needed := [p for p in cycle_parts if any(p.name in needs(q) for q in cycle_parts)]:
                if len(needed) == len(cycle_parts):
                    break
                cycle_parts = needed
            cycle = ", ".join(p.name for p in cycle_parts)
            raise ValueError(f"parts: {cycle} link to each other's tables; no order loads each linked record first")
        ordered.append(ready[0])
        waiting = [p for p in waiting if p is not ready[0]]
    return ordered


def part_templates(template: ImportTemplate) -> list[ImportTemplate]:
    """The one-file imports a multiple import runs, in link order, each named
    <template>.<part> (its rejects and commit are recorded under that name)."""
    return [
        template.model_copy(update={
            "name": f"{template.name}.{p.name}", "source": p.source, "target": p.target, "columns": p.columns,
            "errors": p.errors or template.errors, "parts": [], "drop": None, "collector": None, "schedule": None,
        })
        for p in link_order(template)
    ]


def with_drop_overrides(template: ImportTemplate, overrides: Mapping[str, Any]) -> ImportTemplate:
    """A multiple import as launched: its drop's folder, and each part's limit and error policy."""
    unknown = [k for k in overrides if k not in DROP_LAUNCH_KEYS]
    if unknown:
        raise TemplateError(f"launch config for {template.name}: a multiple import takes {', '.join(DROP_LAUNCH_KEYS)}, not {', '.join(unknown)}")
    data = template.model_dump(by_alias=True, exclude_unset=True)
    if overrides.get("drop") is not None:
        data.setdefault("drop", {})["folder"] = overrides["drop"]
    for key in ("on_error", "max_rejects"):
        if key in overrides and (overrides[key] is not None or key == "max_rejects"):
            for holder in (data, *(p for p in data["parts"] if "errors" in p)):
                holder.setdefault("errors", {})[key] = overrides[key]
    if "limit" in overrides:
        for part in data["parts"]:
            part.setdefault("source", {})["limit"] = overrides["limit"]
    try:
        return type(template).parse(data, template.model)
    except ValidationError as exc:
        raise TemplateError(f"launch config for {template.name}: {format_validation_error(exc)}") from None


def drop_launch_values(template: ImportTemplate) -> dict[str, Any]:
    limits = {p.source.limit for p in template.parts}
    return {
        "drop": template.drop.folder if template.drop else "",
        "limit": limits.pop() if len(limits) == 1 else None,
        "on_error": template.errors.on_error,
        "max_rejects": template.errors.max_rejects,
    }


def manifest_files(text: str, where: str, parts: list[str]) -> dict[str, str]:
    """A manifest's part -> file name (in the drop's folder); a clear sentence if it is not one."""
    try:
        named = json.loads(text)
    except ValueError as exc:
        raise CampaignError(f"{where}: the drop's manifest is not JSON ({exc}); nothing of the drop was loaded.") from None
    if not isinstance(named, dict) or not all(isinstance(v, str) and v for v in named.values()):
        raise CampaignError(f"{where}: the drop's manifest must be a JSON object naming each part's file ({{\"{parts[0]}\": \"file.csv\"}}); nothing of the drop was loaded.")
    missing = [p for p in parts if p not in named]
    unknown = [k for k in named if k not in parts]
    if missing or unknown:
        said = f"names no file for {', '.join(missing)}" if missing else f"names {', '.join(unknown)}, not a part"
        raise CampaignError(f"{where}: the drop's manifest {said} (the parts: {', '.join(parts)}); nothing of the drop was loaded.")
    for part, name in named.items():
        if name.startswith("/") or ".." in name.split("/"):
            raise CampaignError(f"{where}: the manifest's file for {part}, {name!r}, is not in the drop's folder; nothing of the drop was loaded.")
    return named


def part_path(folder: str, file: str) -> str:
    """A part's file, relative to the data folder (or the endpoint's root)."""
    return posixpath.normpath(posixpath.join(folder, file)) if folder else file
