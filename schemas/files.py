"""User data schemas: YAML files in CAMPAIGN_SCHEMAS_DIR that define a table or extend
one (Campaign's schema extensions), read into the same `TableSpec` the built-in modules
use. Errors name the file and the key; a bad file does not hide the others.

    name: purchase                      # or: extends: recipient (new fields only)
    label: Purchase
    description: Purchases from the web shop.
    fields:
      - {name: order_id, kind: string, max_length: 32, nullable: false, unique: true}
      - {name: amount, kind: decimal, precision: 12, scale: 2}
      - {name: currency, kind: string, max_length: 3,
         checks: [{check: isin, allowed_values: [EUR, USD], error: "is not a known currency"}]}
    links:
      - {name: recipient, table: recipient, via: email, nullable: false}
    key: [order_id]                     # unique together: the natural key
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field as PydanticField, ValidationError, field_validator, model_validator
from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS as POSTGRESQL_RESERVED
from sqlalchemy.dialects.sqlite.base import SQLiteIdentifierPreparer

from schemas.base import KINDS, MAX_DECIMAL_PRECISION, Check, Field, Link, TableSpec
from schemas.messages import validation_message

# 63 is PostgreSQL's limit; a link's column adds "_id".
IDENTIFIER = r"^[a-z][a-z0-9_]{0,58}$"
RESERVED_WORDS = frozenset(POSTGRESQL_RESERVED) | frozenset(SQLiteIdentifierPreparer.reserved_words)
# Columns every user table gets, and the names the importer's own tables use.
MODEL_COLUMNS = ("id", "created_at", "updated_at")
IMPORTER_COLUMNS = ("line", "match_id", "action", "ref_line", "same", "matches", "pick", "kept")
# pandera's built-in checks (pandera.api.checks.Check); others must be registered.
BUILTIN_CHECKS = frozenset(
    """eq equal_to ne not_equal_to gt greater_than ge greater_than_or_equal_to lt less_than le
    less_than_or_equal_to in_range isin notin str_matches str_contains str_startswith str_endswith
    str_length unique_values_eq""".split()
)
CHECK_MODULES_ENV = "CAMPAIGN_CHECK_MODULES"


def plain_identifier(value: str, what: str = "name") -> str:
    if not re.match(IDENTIFIER, value or ""):
        raise ValueError(f"{value!r} is not a plain identifier (a-z, 0-9 and _, starting with a letter, at most 59)")
    if value.upper() in RESERVED_WORDS or value.lower() in RESERVED_WORDS:
        raise ValueError(f"{value!r} is an SQL reserved word; choose another {what}")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckFile(BaseModel):
    """`{check: in_range, min_value: 0, max_value: 100, error: "..."}`: a pandera check by
    name, its arguments by pandera's own keyword names."""

    model_config = ConfigDict(extra="allow", frozen=True)
    check: str
    error: Annotated[str, PydanticField(min_length=1)]

    @property
    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def as_check(self) -> Check:
        return Check(self.check, error=self.error, **self.arguments)


class FieldFile(_Model):
    name: str
    kind: str
    label: str | None = None
    description: str = ""
    max_length: Annotated[int, PydanticField(ge=1, le=10_485_760)] | None = None
    precision: Annotated[int, PydanticField(ge=1, le=MAX_DECIMAL_PRECISION)] | None = None
    scale: Annotated[int, PydanticField(ge=0)] | None = None
    nullable: bool = True
    unique: bool = False
    default: Any = None
    checks: list[CheckFile] = []

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        plain_identifier(v, "field name")
        if v in MODEL_COLUMNS:
            raise ValueError(f"{v!r} is a column every table has already")
        if v in IMPORTER_COLUMNS:
            raise ValueError(f"{v!r} is a name the importer uses for its own columns; choose another")
        return v

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in KINDS:
            raise ValueError(f"unknown kind {v!r}; use one of {', '.join(KINDS)}")
        return v

    @model_validator(mode="after")
    def _shape(self) -> "FieldFile":
        if self.kind == "decimal":
            if self.precision is None or self.scale is None:
                raise ValueError("a decimal needs precision (digits in all) and scale (digits after the point)")
            if self.scale > self.precision:
                raise ValueError(f"scale ({self.scale}) cannot exceed precision ({self.precision})")
        elif self.precision is not None or self.scale is not None:
            raise ValueError("precision and scale are only for kind: decimal")
        if self.max_length is not None and self.kind != "string":
            raise ValueError("max_length is only for kind: string")
        if self.unique and self.kind in ("float", "boolean"):
            raise ValueError(f"a {self.kind} cannot be unique")
        return self

    def as_field(self) -> Field:
        f = Field(
            self.name, self.kind, self.description or self.label or "", max_length=self.max_length,  # type: ignore[arg-type]
            nullable=self.nullable, unique=self.unique, precision=self.precision, scale=self.scale,
            checks=tuple(c.as_check() for c in self.checks),
        )
        if self.default is not None:
            try:
                return Field(**{**f.__dict__, "default": f.python_value(self.default)})
            except ValueError as exc:
                raise ValueError(f"default: {exc}") from None
        return f


class LinkFile(_Model):
    name: str
    table: str
    # The linked table's unique field a template resolves the link by, unless it says.
    via: str | None = None
    description: str = ""
    nullable: bool = True
    on_delete: Literal["cascade", "set_null", "restrict"] = "cascade"

    _check_name = field_validator("name")(lambda v: plain_identifier(v, "link name"))

    @model_validator(mode="after")
    def _delete_rule(self) -> "LinkFile":
        if self.on_delete == "set_null" and not self.nullable:
            raise ValueError("on_delete: set_null needs nullable: true")
        return self

    def as_link(self) -> Link:
        return Link(self.name, self.table, self.description, nullable=self.nullable, on_delete=self.on_delete, via=self.via)


class TableFile(_Model):
    name: str
    label: str | None = None
    description: str = ""
    importable: bool = True
    fields: list[FieldFile] = PydanticField(min_length=1)
    links: list[LinkFile] = []
    key: list[str] = []

    _check_name = field_validator("name")(lambda v: plain_identifier(v, "table name"))

    @model_validator(mode="after")
    def _names(self) -> "TableFile":
        _unique_names(self.fields, self.links)
        known = {f.name for f in self.fields} | {link.name for link in self.links}
        for name in self.key:
            if name not in known:
                raise ValueError(f"key: {name!r} is not a field or link of {self.name}")
        if len(set(self.key)) != len(self.key):
            raise ValueError("key: a name is given twice")
        return self


class ExtensionFile(_Model):
    extends: str
    fields: list[FieldFile] = []
    links: list[LinkFile] = []

    @model_validator(mode="after")
    def _names(self) -> "ExtensionFile":
        if not self.fields and not self.links:
            raise ValueError("an extension adds fields or links")
        _unique_names(self.fields, self.links)
        return self


def _unique_names(fields: list[FieldFile], links: list[LinkFile]) -> None:
    """A name given twice, named by the key of its second use (a link also takes <name>_id)."""
    names = [(f.name, f"fields[{i}].name") for i, f in enumerate(fields)]
    names += [(n, f"links[{i}].name") for i, link in enumerate(links) for n in (link.name, f"{link.name}_id")]
    seen: set[str] = set()
    for name, where in names:
        if name in seen:
            raise ValueError(f"{where}: {name!r} is defined twice")
        seen.add(name)


def parse_schema_file(path: Path) -> TableFile | ExtensionFile:
    """One file's model; ValueError naming the file and the key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ValueError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a data schema is a YAML mapping with name: (a new table) or extends: (an extension)")
    model = ExtensionFile if "extends" in data else TableFile
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: {validation_message(exc, model)}") from None


def _as_fields(fields: list[FieldFile]) -> list[Field]:
    """The fields; a default that is not of the field's kind is named by its key."""
    built = []
    for i, f in enumerate(fields):
        try:
            built.append(f.as_field())
        except ValueError as exc:
            raise ValueError(f"fields[{i}].{exc}") from None
    return built


def user_table(file: TableFile) -> TableSpec:
    """A new table: a generated id, its fields and links, and when it was created and changed."""
    links = tuple(link.as_link() for link in file.links)
    fields = [Field("id", "integer", "Generated identifier.", nullable=False, generated=True)]
    fields += _as_fields(file.fields)
    fields += [link.as_field() for link in links]
    fields += [Field("created_at", "timestamp", nullable=False, managed=True), Field("updated_at", "timestamp", nullable=False, managed=True)]
    columns = [f"{name}_id" if any(link.name == name for link in links) else name for name in file.key]
    unique_together: tuple[tuple[str, ...], ...] = ()
    if len(columns) == 1:
        fields = [Field(**{**f.__dict__, "unique": True}) if f.name == columns[0] else f for f in fields]
    elif columns:
        unique_together = (tuple(columns),)
    return TableSpec(
        name=file.name, label=file.label or "", description=file.description or file.label or "",
        fields=tuple(fields), primary_key=("id",), unique_together=unique_together,
        importable=file.importable, links=links,
    )


def extended(spec: TableSpec, file: ExtensionFile) -> TableSpec:
    """A table with an extension's fields and links added after its own."""
    links = tuple(link.as_link() for link in file.links)
    added = _as_fields(file.fields) + [link.as_field() for link in links]
    taken = set(spec.field_names) | {link.name for link in spec.links}
    for where, name in [*((f"fields[{i}].name", f.name) for i, f in enumerate(file.fields)),
                        *((f"links[{i}].name", link.name) for i, link in enumerate(links))]:
        if name in taken:
            raise ValueError(f"{where}: {spec.name} already has a field or link named {name!r}")
    managed = [f for f in spec.fields if f.managed]
    own = [f for f in spec.fields if not f.managed]
    return TableSpec(**{
        **{k: v for k, v in spec.__dict__.items() if k != "_table"},
        "fields": (*own, *added, *managed),
        "links": (*spec.links, *links),
    })


def import_check_modules(schemas_dir: Path, names: tuple[str, ...]) -> list[str]:
    """Import the modules that register custom checks with pandera's extension API
    (Settings.check_modules: CAMPAIGN_CHECK_MODULES); the schemas folder is on the path
    for them. Errors, one sentence each."""
    errors: list[str] = []
    if not names:
        return errors
    sys.path.insert(0, str(schemas_dir))
    try:
        for name in names:
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - a user's module: report it, load the rest
                errors.append(f"{CHECK_MODULES_ENV}: the check module {name!r} failed to import ({type(exc).__name__}: {exc})")
    finally:
        sys.path.remove(str(schemas_dir))
    return errors


def check_error(check: Check, field: Field | None = None) -> str | None:
    """Why pandera cannot build this check (unknown name, wrong arguments), or None. With
    the field, the check also runs once on no rows of its type: pandera only passes some
    arguments (an unknown keyword, a value of the wrong type) when a check runs."""
    import pandera.polars as pa

    if not hasattr(pa.Check, check.name):
        known = ", ".join(sorted(BUILTIN_CHECKS))
        return f"unknown check {check.name!r}; use one of pandera's ({known}) or register it in a module named by {CHECK_MODULES_ENV}"
    try:
        built = check.build()
    except Exception as exc:  # noqa: BLE001 - pandera's own message names the argument
        return f"check {check.name!r}: {exc}"
    if field is None:
        return None
    import polars as pl
    from pandera.errors import SchemaErrorReason, SchemaErrors

    schema = pa.DataFrameSchema({field.name: pa.Column(field.polars_dtype, checks=[built], nullable=True, coerce=False)})
    try:
        schema.validate(pl.DataFrame({field.name: pl.Series([], dtype=field.polars_dtype)}), lazy=True)
    except SchemaErrors as exc:
        for error in exc.schema_errors:
            if error.reason_code == SchemaErrorReason.CHECK_ERROR:
                # pandera wraps the check's own error as TypeError("...").
                text = str(error)
                match = re.fullmatch(r"\w+\((['\"])(.*)\1\)", text, re.DOTALL)
                return f"check {check.name!r}: {_first_line(match.group(2) if match else text)}"
    except Exception as exc:  # noqa: BLE001 - a user's check failing on no rows
        return f"check {check.name!r}: {_first_line(str(exc))}"
    return None


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else text


def checks_error(fields: list[FieldFile]) -> str | None:
    """The first check of these fields pandera cannot build or run, with its key."""
    for i, file_field in enumerate(fields):
        if not file_field.checks:
            continue  # pandera is only imported for files that have checks
        built = file_field.as_field()
        for j, check in enumerate(built.checks):
            if problem := check_error(check, built):
                return f"fields[{i}].checks[{j}]: {problem}"
    return None
