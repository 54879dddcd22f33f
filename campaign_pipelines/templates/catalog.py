"""Reading templates: parse one YAML file into its typed model, and the catalog of
built-in and user templates (a broken user template is reported, the others load)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Union

import yaml
from pydantic import ValidationError

from campaign_pipelines.errors import TemplateError
from campaign_pipelines.templates.common import format_validation_error
from campaign_pipelines.templates.exports import ExportTemplate
from campaign_pipelines.templates.imports import ImportTemplate
from schemas import BUILTIN, DataModel
from schemas.messages import LoadError, did_you_mean

BUILTIN_PACKAGE = "campaign_pipelines.job_templates"

Template = Union[ImportTemplate, ExportTemplate]


def parse_template(text: str, origin: str, model: DataModel = BUILTIN) -> Template:
    """One template file's text, validated against `model` (by default the built-in
    tables alone; a deployment passes its own, `Settings.data_model()`)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise TemplateError(f"{origin}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_data(data, origin, model)


def parse_data(data: object, origin: str, model: DataModel = BUILTIN) -> Template:
    """A template already read from YAML (a file's, or a component's attributes)."""
    if not isinstance(data, dict):
        raise TemplateError(f"{origin}: a job template is a YAML mapping of keys")
    kind = data.get("kind")
    kind_class = {"import": ImportTemplate, "export": ExportTemplate}.get(kind)
    if kind_class is None:
        raise TemplateError(f"{origin}: kind: must be 'import' or 'export', got {kind!r}")
    try:
        return kind_class.parse(data, model)
    except ValidationError as exc:
        raise TemplateError(f"{origin}: {format_validation_error(exc, kind_class)}") from None


@dataclass
class Catalog:
    """Every template found, by name, and the ones that failed to load."""

    templates: dict[str, Template] = field(default_factory=dict)
    builtin: set[str] = field(default_factory=set)
    origins: dict[str, str] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)

    def get(self, name: str) -> Template:
        try:
            return self.templates[name]
        except KeyError:
            broken = next((e for e in self.errors if e.subject == name), None)
            if broken is not None:
                raise TemplateError(f"the job template {name!r} cannot load: {broken}") from None
            known = ", ".join(sorted(self.templates)) or "none"
            raise TemplateError(f"no job template named {name!r}{did_you_mean(name, self.templates)} (known: {known})") from None


def endpoints_of(template: Template) -> list[tuple[str, str]]:
    """(key, endpoint name) of each endpoint the template names."""
    if isinstance(template, ExportTemplate) and template.parts:
        return [(f"parts[{i}].destination.endpoint", p.destination.endpoint) for i, p in enumerate(template.parts) if p.destination.endpoint]
    if isinstance(template, ExportTemplate):
        return [("destination.endpoint", template.destination.endpoint)] if template.destination.endpoint else []
    sources = [(f"parts[{i}].", p.source) for i, p in enumerate(template.parts)] or [("", template.source)]
    named = [(f"{where}source.endpoint", source.endpoint) for where, source in sources if source.endpoint]
    if template.errors.rejects_to is not None:
        named.append(("errors.rejects_to.endpoint", template.errors.rejects_to.endpoint))
    return named


def check_endpoints(catalog: Catalog, declared: Collection[str], origin: str) -> None:
    """A template naming an endpoint the deployment does not declare (`origin`, its
    endpoints file) cannot load: it moves to the catalog's errors and the others stay."""
    for name, template in list(catalog.templates.items()):
        for key, endpoint in endpoints_of(template):
            if endpoint not in declared:
                known = ", ".join(sorted(declared)) or "none"
                message = (
                    f"{catalog.origins[name]}: {key}: no endpoint named {endpoint!r}{did_you_mean(endpoint, declared)} "
                    f"in {origin or 'the endpoints file'} (declared: {known})"
                )
                catalog.errors.append(LoadError(message, catalog.origins[name], name))
                del catalog.templates[name]
                break


def builtin_sources() -> list[tuple[str, str]]:
    folder = resources.files(BUILTIN_PACKAGE)
    return sorted(
        (f"builtin:{entry.name}", entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )


def load_catalog(templates_dir: Path, model: DataModel = BUILTIN, placed: Sequence[tuple[str, object]] = ()) -> Catalog:
    """The built-in templates, those of `templates_dir` and those `placed` one by one
    ((origin, data) pairs: the JobTemplate components of a dg project's defs folder),
    validated against `model`."""
    catalog = Catalog()
    for origin, text in builtin_sources():
        template = parse_template(text, origin, model)  # a broken built-in is a bug: let it raise
        catalog.templates[template.name] = template
        catalog.builtin.add(template.name)
        catalog.origins[template.name] = origin
    if templates_dir.is_dir():
        for path in sorted([*templates_dir.glob("*.yaml"), *templates_dir.glob("*.yml")]):
            try:
                text = path.read_text(encoding="utf-8")
                template = parse_template(text, str(path), model)
            except (TemplateError, OSError, UnicodeDecodeError) as exc:
                message = str(exc) if isinstance(exc, TemplateError) else f"{path}: cannot be read ({exc})"
                catalog.errors.append(LoadError(message, str(path), _name_in(text) if isinstance(exc, TemplateError) else None))
                continue
            _add(catalog, template, str(path))
    for origin, data in placed:
        try:
            template = parse_data(data, origin, model)
        except TemplateError as exc:
            name = data.get("name") if isinstance(data, dict) else None
            catalog.errors.append(LoadError(str(exc), origin, name if isinstance(name, str) else None))
            continue
        _add(catalog, template, origin)
    return catalog


def _add(catalog: Catalog, template: Template, origin: str) -> None:
    """The template, unless its name is a built-in's or another file's (then its error)."""
    if template.name in catalog.builtin:
        message = f"{origin}: name: {template.name!r} is a built-in template's name; choose another"
        catalog.errors.append(LoadError(message, origin))
    elif template.name in catalog.templates:
        message = f"{origin}: name: {template.name!r} is already used by {catalog.origins[template.name]}"
        catalog.errors.append(LoadError(message, origin))
    else:
        catalog.templates[template.name] = template
        catalog.origins[template.name] = origin


def _name_in(text: str) -> str | None:
    """The `name:` a template file that does not validate gives itself, if it reads that far."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None
