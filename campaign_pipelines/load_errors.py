"""A job template or data schema that cannot load shows in the console where a user looks
for what it defines, with its one sentence (file, key, reason, the closest valid key), and
never keeps the other templates from loading (docs/console.md, "When a template cannot load"):

- a template: a job of its name (or its file's) in the Jobs list, described by the error
  and tagged `campaign/load_error`; launching it fails at once with the same sentence;
- a data schema: its table's asset `campaign/<table>` carries the error in its description
  and metadata (an extension's on the table it extends; a new table's on a placeholder).
"""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg

from campaign_pipelines.names import LOAD_ERROR_TAG, TEMPLATE_TAG
from campaign_pipelines.templates import Catalog
from schemas.messages import LoadError

NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _file_name(origin: str) -> str:
    """A file's name as a job or table name: `Not Even YAML.yaml` -> `not_even_yaml`; a
    component's `defs.yaml` goes by its folder's (components.JobTemplate)."""
    path = Path(origin)
    stem = path.parent.name if path.name in ("defs.yaml", "defs.yml") else path.stem
    return re.sub(r"[^a-z0-9_]", "_", stem.lower())


def _job_name(error: LoadError, taken: set[str]) -> str | None:
    """The template's own name when it gives a free one, else its file's, else none."""
    stem = _file_name(error.origin)
    for name in (error.subject, stem, f"template_{stem}"):
        if name and NAME.match(name) and name not in taken:
            return name
    return None


def unloadable_template_job(name: str, error: LoadError) -> dg.JobDefinition:
    @dg.op(name=f"{name}_cannot_load", description="Fails at once: the job template cannot load.")
    def cannot_load() -> None:
        raise dg.Failure(description=f"the job template {name} cannot load: {error}", allow_retries=False)

    @dg.job(
        name=name,
        description=f"This job template cannot load: {error}",
        tags={TEMPLATE_TAG: name, LOAD_ERROR_TAG: "template"},
        metadata={"file": dg.MetadataValue.path(error.origin), "error": dg.MetadataValue.text(str(error))},
    )
    def unloadable() -> None:
        cannot_load()

    return unloadable


def unloadable_template_jobs(catalog: Catalog, taken: set[str]) -> list[dg.JobDefinition]:
    """A job for each template file that did not load, named so that no other job is hidden."""
    jobs = []
    taken = set(taken)
    for error in catalog.errors:
        name = _job_name(error, taken)
        if name is not None:
            taken.add(name)
            jobs.append(unloadable_template_job(name, error))
    return jobs


def table_load_errors(errors: list[LoadError]) -> dict[str, list[LoadError]]:
    """Each data schema error by the table it concerns: the table the file defines or
    extends, else a name from its file (a file that is not even valid YAML)."""
    by_table: dict[str, list[LoadError]] = {}
    for error in errors:
        if error.subject:
            table = error.subject
        elif error.origin.endswith((".yaml", ".yml")):
            table = _file_name(error.origin)
        else:
            continue  # not a file's (CAMPAIGN_CHECK_MODULES): the files it breaks say so
        by_table.setdefault(table, []).append(error)
    return by_table


def load_error_metadata(errors: list[LoadError]) -> dict[str, dg.MetadataValue]:
    return {
        "load_errors": dg.MetadataValue.md("\n".join(f"- {e}" for e in errors)),
        "load_error_files": dg.MetadataValue.text(", ".join(sorted({e.origin for e in errors}))),
    }
