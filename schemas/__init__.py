"""The Campaign data model: one module per table, each the single source of truth for
its columns, SQL types, keys and checks. `TABLES` is the registry the rest reads."""

from schemas import export_watermark, import_reject, recipient, recipient_list, recipient_list_member, service, subscription
from schemas.base import Check, Field, TableSpec, metadata

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        recipient.TABLE,
        recipient_list.TABLE,
        recipient_list_member.TABLE,
        service.TABLE,
        subscription.TABLE,
        import_reject.TABLE,
        export_watermark.TABLE,
    )
}

# Register every table in the shared metadata (order matters for foreign keys).
for _spec in TABLES.values():
    _spec.table

IMPORTABLE = sorted(name for name, spec in TABLES.items() if spec.importable)

__all__ = ["Check", "Field", "TableSpec", "TABLES", "IMPORTABLE", "metadata"]
