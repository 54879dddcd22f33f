"""export_watermark: how far each differential export has gone (advanced on success only)."""

from schemas.base import Field, TableSpec

TABLE = TableSpec(
    name="export_watermark",
    description="Differential exports: the last exported value of each template's change column.",
    primary_key=("template",),
    fields=(
        Field("template", "string", "Export template name.", max_length=128, nullable=False),
        Field("column_name", "string", "The change column (differential.column).", max_length=64, nullable=False),
        Field("value", "string", "Highest value exported so far, ISO text.", nullable=False),
        Field("run_id", "string", "The run that advanced it.", max_length=64, nullable=False),
        Field("updated_at", "timestamp", nullable=False, managed=True),
    ),
)
