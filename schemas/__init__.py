"""The Campaign data model: one module per built-in table, each the single source of
truth for its columns, SQL types, keys and checks, plus the user's schema files in
CAMPAIGN_SCHEMAS_DIR (new tables, extensions of built-in ones) read into the same
vocabulary. `current()` is the model in use; `load()` reads the files again."""

from __future__ import annotations

from pathlib import Path

from schemas import export_watermark, import_commit, import_reject, recipient, recipient_list, recipient_list_member, service, subscription
from schemas.base import Check, Field, Link, TableSpec
from schemas.model import DataModel, build_model, load_model, schemas_dir_from_env

BUILTIN_TABLES: tuple[TableSpec, ...] = (
    recipient.TABLE,
    recipient_list.TABLE,
    recipient_list_member.TABLE,
    service.TABLE,
    subscription.TABLE,
    import_reject.TABLE,
    import_commit.TABLE,
    export_watermark.TABLE,
)
# The built-in tables alone: what the importer's own bookkeeping (rejects, watermarks) uses.
BUILTIN = build_model(list(BUILTIN_TABLES))

_loaded: dict[Path, DataModel] = {}


def load(schemas_dir: Path | None = None) -> DataModel:
    """Read the schema files again (the code location does at each load) and make the
    result the model `current()` gives for that folder."""
    folder = (schemas_dir or schemas_dir_from_env()).absolute()
    _loaded[folder] = load_model(list(BUILTIN_TABLES), folder)
    return _loaded[folder]


def current() -> DataModel:
    """The model of CAMPAIGN_SCHEMAS_DIR, read on first use in this process."""
    folder = schemas_dir_from_env()
    return _loaded.get(folder) or load(folder)


def table(name: str) -> TableSpec:
    return current().tables[name]


__all__ = [
    "Check", "Field", "Link", "TableSpec", "DataModel", "BUILTIN", "BUILTIN_TABLES",
    "build_model", "current", "load", "table",
]
