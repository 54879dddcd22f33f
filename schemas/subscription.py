"""subscription: recipients subscribed to services."""

from schemas.base import Field, TableSpec

TABLE = TableSpec(
    name="subscription",
    description="Recipients subscribed to services.",
    primary_key=("service_id", "recipient_id"),
    fields=(
        Field("service_id", "integer", nullable=False, foreign_key="service.id"),
        Field("recipient_id", "integer", nullable=False, foreign_key="recipient.id"),
        Field("created_at", "timestamp", nullable=False, managed=True),
    ),
)
