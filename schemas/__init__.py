"""The Campaign data model: one module per built-in table, each the single source of
truth for its columns, SQL types, keys and checks, plus the user's schema files (new
tables, extensions of built-in ones) read into the same vocabulary.

`load(folder)` gives a deployment's model (`Settings.schemas_dir`), and whatever needs a
table is handed that object: a job template holds the model it was validated against,
and a step reads its tables from its template. Nothing looks the model up by itself."""

from __future__ import annotations

from pathlib import Path

from schemas import export_watermark, import_commit, import_reject, recipient, recipient_list, recipient_list_member, service, subscription
from schemas.base import MAX_DECIMAL_PRECISION, Check, Field, Link, TableSpec
from schemas.model import DataModel, build_model, load_model

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

# (folder, check modules) -> (what its files were, the model read from them)
_read: dict[tuple[Path, tuple[str, ...]], tuple[tuple, DataModel]] = {}


def load(schemas_dir: Path, check_modules: tuple[str, ...] = ()) -> DataModel:
    """The built-in tables and the data schema files of `schemas_dir`, with the custom
    checks registered by `check_modules`. Read again when a file changed; otherwise the
    model already read, so every part of a process (definitions, resources, the steps of
    a pickled template) shares one model object."""
    folder = Path(schemas_dir).absolute()
    key = (folder, tuple(check_modules))
    state = _files_state(folder)
    known = _read.get(key)
    if known is None or known[0] != state:
        model = load_model(list(BUILTIN_TABLES), folder, tuple(check_modules))
        model.reload_args = (str(folder), tuple(check_modules))
        known = _read[key] = (state, model)
    return known[1]


def _files_state(folder: Path) -> tuple:
    """Name, size and modification time of every file the model is read from."""
    if not folder.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()))


def _builtin() -> DataModel:
    return BUILTIN


__all__ = [
    "MAX_DECIMAL_PRECISION", "Check", "Field", "Link", "TableSpec", "DataModel", "BUILTIN", "BUILTIN_TABLES",
    "build_model", "load",
]
