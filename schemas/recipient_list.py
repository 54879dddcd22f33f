"""recipient_list: static lists of recipients (Campaign's groups)."""

from schemas.base import Field, TableSpec

TABLE = TableSpec(
    name="recipient_list",
    description="Static recipient lists (Campaign's groups).",
    primary_key=("id",),
    fields=(
        Field("id", "integer", nullable=False, generated=True),
        Field("name", "string", "Unique internal name.", max_length=64, nullable=False, unique=True),
        Field("label", "string", max_length=255),
        Field("created_at", "timestamp", nullable=False, managed=True),
    ),
)
