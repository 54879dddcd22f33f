"""recipient_list_member: which recipients belong to which list."""

from schemas.base import Link, TableSpec

LINKS = (
    Link("list", "recipient_list", "The list.", nullable=False),
    Link("recipient", "recipient", "The member.", nullable=False),
)

TABLE = TableSpec(
    name="recipient_list_member",
    description="Members of static recipient lists.",
    primary_key=("list_id", "recipient_id"),
    links=LINKS,
    fields=tuple(link.as_field() for link in LINKS),
)
