"""A data model: the built-in tables, extended and joined by the user's schema files,
each bound to one SQLAlchemy metadata. Everything that needs a table's shape reads it
from the model it is handed, never from a module directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
import yaml

from schemas import links
from schemas.base import TableSpec
from schemas.files import (
    ExtensionFile, TableFile, checks_error, extended, import_check_modules, parse_schema_file, user_table,
)
from schemas.messages import LoadError



@dataclass
class DataModel:
    tables: dict[str, TableSpec]
    metadata: sa.MetaData
    errors: list[LoadError] = field(default_factory=list)
    source: Path | None = None
    # How `schemas.load` read it (folder, check modules): a model travels to another
    # process (a step's pickled template) as these, and is read there again. None: the
    # built-in model, which is itself everywhere. A model built in memory (tests) has none.
    reload_args: tuple | None = field(default=None, repr=False, compare=False)

    def __reduce__(self) -> tuple:
        import schemas

        if self is schemas.BUILTIN:
            return (schemas._builtin, ())
        if self.reload_args is None:
            raise TypeError("a data model built in memory cannot be pickled; load it from its folder (schemas.load)")
        return (schemas.load, (Path(self.reload_args[0]), self.reload_args[1]))

    @property
    def importable(self) -> list[str]:
        return sorted(name for name, spec in self.tables.items() if spec.importable)

    def table(self, name: str) -> TableSpec:
        return self.tables[name]

    def links_to(self, name: str) -> list[tuple[TableSpec, str]]:
        """(table, link name) of every link that points at `name`: its collections."""
        return [(spec, link.name) for spec in self.tables.values() for link in spec.links if link.table == name]


def build_model(specs: list[TableSpec], errors: list[LoadError] | None = None, source: Path | None = None) -> DataModel:
    metadata = sa.MetaData()
    model = DataModel({s.name: s.bind(metadata) for s in specs}, metadata, list(errors or []), source)
    links.keep_with(model)
    return model


def _link_errors(spec: TableSpec, tables: dict[str, TableSpec], new_links: list[str] | None = None) -> str | None:
    for i, link in enumerate(spec.links):
        if new_links is not None and link.name not in new_links:
            continue
        where = f"links[{i}]" if new_links is None else f"links[{new_links.index(link.name)}]"
        target = tables.get(link.table)
        if target is None:
            return f"{where}.table: no table named {link.table!r} (known: {', '.join(sorted(tables))})"
        if link.via is not None:
            if not target.has(link.via):
                return f"{where}.via: {link.table} has no field {link.via!r}"
            f = target.field(link.via)
            if not (f.unique or f.name in target.primary_key):
                return f"{where}.via: {link.table}.{link.via} is not unique, so it cannot identify one record"
    return None


def load_model(builtin: list[TableSpec], schemas_dir: Path, check_modules: tuple[str, ...] = ()) -> DataModel:
    """The built-in tables plus every valid schema file in `schemas_dir` (sorted by name:
    new tables first, then extensions). A file in error is left out and reported."""
    tables = {spec.name: spec for spec in builtin}
    errors: list[LoadError] = []
    parsed: list[tuple[Path, TableFile | ExtensionFile]] = []
    files = sorted([*schemas_dir.glob("*.yaml"), *schemas_dir.glob("*.yml")]) if schemas_dir.is_dir() else []
    if any(files):
        errors += [LoadError(e, "CAMPAIGN_CHECK_MODULES") for e in import_check_modules(schemas_dir, check_modules)]
    for path in files:
        try:
            parsed.append((path, parse_schema_file(path)))
        except ValueError as exc:
            errors.append(LoadError(str(exc), str(path), _table_in(path)))
    definitions = [(p, f) for p, f in parsed if isinstance(f, TableFile)]
    extensions = [(p, f) for p, f in parsed if isinstance(f, ExtensionFile)]
    for path, file in definitions:
        if file.name in tables:
            origin = tables[file.name].origin
            errors.append(LoadError(f"{path}: name: {file.name!r} is already a table ({origin}); use extends: to add fields to it", str(path), file.name))
            continue
        try:
            spec = user_table(file)
        except ValueError as exc:
            errors.append(LoadError(f"{path}: {exc}", str(path), file.name))
            continue
        if problem := checks_error(file.fields):
            errors.append(LoadError(f"{path}: {problem}", str(path), file.name))
            continue
        tables[file.name] = TableSpec(**{**{k: v for k, v in spec.__dict__.items() if k != "_table"}, "origin": str(path)})
    for path, file in extensions:
        base = tables.get(file.extends)
        if base is None or not base.importable:
            known = ", ".join(sorted(n for n, s in tables.items() if s.importable))
            errors.append(LoadError(f"{path}: extends: no table named {file.extends!r} can be extended (known: {known})", str(path)))
            continue
        try:
            spec = extended(base, file)
        except ValueError as exc:
            errors.append(LoadError(f"{path}: {exc}", str(path), file.extends))
            continue
        problem = checks_error(file.fields) or _link_errors(spec, tables, [link.name for link in file.links])
        if problem:
            errors.append(LoadError(f"{path}: {problem}", str(path), file.extends))
            continue
        tables[file.extends] = TableSpec(**{**{k: v for k, v in spec.__dict__.items() if k != "_table"}, "origin": f"{base.origin}, {path}"})
    # Links are checked once every table is known; a table left out takes its dependants with it.
    while True:
        broken = {}
        for name, spec in tables.items():
            if spec.origin == "built-in":
                continue
            problem = _link_errors(spec, tables) if not spec.origin.startswith("built-in,") else None
            if problem:
                broken[name] = LoadError(f"{spec.origin}: {problem}", spec.origin, name)
        if not broken:
            break
        for name, message in broken.items():
            errors.append(message)
            del tables[name]
    return build_model(list(tables.values()), errors, schemas_dir)


def _table_in(path: Path) -> str | None:
    """The table a data schema file that does not validate names (`name:` or `extends:`), if it reads that far."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    table = (data.get("name") or data.get("extends")) if isinstance(data, dict) else None
    return table if isinstance(table, str) else None

