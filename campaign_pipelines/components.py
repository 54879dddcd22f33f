"""Job templates as Dagster Components (`dg list components`, `dg scaffold defs`,
`dg check yaml`, `dg list defs`):

- `JobTemplates`: the deployment's exchanges, one instance per project
  (`defs/exchanges/defs.yaml`): the templates folder (CAMPAIGN_TEMPLATES_DIR, each file's
  YAML as the spec writes it) with the data model, the tables' assets and checks, the run
  status sensors, the work data cleanup and the deployment's resources and executor;
- `JobTemplate`: one template placed in a defs folder, its YAML under `attributes:`.

A placed template is built with the others, by `JobTemplates`: it is validated against the
same data model, its name may not be another template's, and its import is upstream of
its table's asset like every import. One that cannot load skips alone and shows as a job
that says why, as a broken file of the folder does (load_errors.py).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import BaseModel, ConfigDict

from campaign_pipelines.code_location import build_definitions
from campaign_pipelines.settings import Settings


class JobTemplates(dg.Component, dg.Model, dg.Resolvable):
    """The deployment's job templates and everything they run with. Both folders default to
    the environment's (CAMPAIGN_TEMPLATES_DIR, CAMPAIGN_SCHEMAS_DIR); a relative path is
    under the project's root. The data folder, the Campaign database and the executor are
    always the environment's: a deployment's settings (docs/configuration.md)."""

    templates_dir: str | None = None
    schemas_dir: str | None = None

    def settings(self, project_root: Path) -> Settings:
        settings = Settings.from_env()
        folders = {
            name: (project_root / value).absolute()
            for name, value in (("templates_dir", self.templates_dir), ("schemas_dir", self.schemas_dir))
            if value
        }
        return dataclasses.replace(settings, **folders)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        placed = [
            (template.origin, template.body)
            for template in context.component_tree.get_all_components(of_type=JobTemplate)
        ]
        return build_definitions(self.settings(context.project_root), placed)


class TemplateAttributes(BaseModel):
    """A placed template's attributes: its YAML, as a template file holds it. Loading takes
    any mapping, so that one broken template cannot stop the code location; the template
    catalog validates it against the data model. Its JSON schema (what `dg check yaml`
    checks a defs.yaml against, pointing at file and line) is the templates' own."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from campaign_pipelines.templates import ExportTemplate, ImportTemplate

        schemas = {kind: model.model_json_schema(by_alias=True) for kind, model in (("import", ImportTemplate), ("export", ExportTemplate))}
        definitions = {name: d for schema in schemas.values() for name, d in schema.pop("$defs", {}).items()}
        return {
            "type": "object",
            "required": ["name", "kind"],
            "properties": {"kind": {"enum": ["import", "export"]}},
            "if": {"properties": {"kind": {"const": "export"}}},
            "then": schemas["export"],
            "else": schemas["import"],
            "$defs": definitions,
        }


class TemplateDraftParams(BaseModel):
    kind: Literal["import", "export"] = "import"


class TemplateDraft(dg.Scaffolder[TemplateDraftParams]):
    """`dg scaffold defs campaign_pipelines.components.JobTemplate <name>` [`--kind export`]:
    a defs.yaml holding a draft of the template named after its folder, from the built-in
    blank template (new_text_import, new_text_export) with its comments."""

    @classmethod
    def get_scaffold_params(cls) -> type[TemplateDraftParams]:
        return TemplateDraftParams

    def scaffold(self, request: dg.ScaffoldRequest[TemplateDraftParams]) -> None:
        from importlib import resources

        from ruamel.yaml import YAML

        kind = request.params.kind if request.params else "import"
        name = request.target_path.name
        blank = resources.files("campaign_pipelines.job_templates").joinpath(f"new_text_{kind}.yaml").read_text(encoding="utf-8")
        # Its opening comment tells how to duplicate the built-in: not this file's.
        blank = "".join(line for line in blank.splitlines(keepends=True) if not line.startswith("#"))
        round_trip = YAML()
        round_trip.width = 4096
        round_trip.indent(mapping=2, sequence=4, offset=2)
        body = round_trip.load(blank)
        body["name"] = name
        body["label"] = f"{name} (draft)"
        body["description"] = f"Drafted from new_text_{kind}; map the columns, then remove this line."
        out = io.StringIO()
        round_trip.dump({"type": request.type_name, "attributes": body}, out)
        header = (
            f"# An {kind} job template (docs/{kind}-templates.md), drafted from the built-in new_text_{kind}:\n"
            "# finish it, then `dg check yaml` this folder and `dg list defs` (docs/components.md).\n"
        )
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(header + out.getvalue(), encoding="utf-8")


@dg.scaffold_with(TemplateDraft)
@dataclasses.dataclass
class JobTemplate(dg.Component):
    """One job template placed in a defs folder: its YAML under `attributes:`. The project's
    `JobTemplates` builds it with the folder's templates."""

    body: dict[str, Any]
    origin: str

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        return TemplateAttributes

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> JobTemplate:
        body = dict(attributes.model_extra or {}) if attributes is not None else {}
        return cls(body=body, origin=str(context.path / "defs.yaml"))

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        if not context.component_tree.get_all_components(of_type=JobTemplates):
            raise dg.DagsterInvalidDefinitionError(
                f"{self.origin}: a job template placed in a defs folder is built by the project's "
                "campaign_pipelines.components.JobTemplates component, and this project has none: "
                "add one (dg scaffold defs campaign_pipelines.components.JobTemplates exchanges)."
            )
        return dg.Definitions()
