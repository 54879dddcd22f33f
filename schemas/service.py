"""service: subscription services (newsletters, SMS programmes...)."""

from schemas.base import Field, TableSpec

TABLE = TableSpec(
    name="service",
    description="Subscription services.",
    importable=True,
    primary_key=("id",),
    fields=(
        Field("id", "integer", nullable=False, generated=True),
        Field("name", "string", "Unique internal name.", max_length=64, nullable=False, unique=True),
        Field("label", "string", max_length=255),
        Field("channel", "string", "email, sms, ...", max_length=32),
    ),
)
