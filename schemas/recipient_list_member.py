"""recipient_list_member: which recipients belong to which list."""

from schemas.base import Field, TableSpec

TABLE = TableSpec(
    name="recipient_list_member",
    description="Members of static recipient lists.",
    primary_key=("list_id", "recipient_id"),
    fields=(
        Field("list_id", "integer", nullable=False, foreign_key="recipient_list.id"),
        Field("recipient_id", "integer", nullable=False, foreign_key="recipient.id"),
    ),
)
