"""subscription: recipients subscribed to services."""

from schemas.base import Field, Link, TableSpec

LINKS = (
    Link("service", "service", "The service.", nullable=False),
    Link("recipient", "recipient", "The subscriber.", nullable=False),
)

TABLE = TableSpec(
    name="subscription",
    description="Recipients subscribed to services.",
    primary_key=("service_id", "recipient_id"),
    links=LINKS,
    fields=(
        *(link.as_field() for link in LINKS),
        Field("created_at", "timestamp", nullable=False, managed=True),
    ),
)
