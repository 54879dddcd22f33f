"""import_reject: every line an import rejected, with its reason (the Rejects tab)."""

from schemas.base import Field, TableSpec

TABLE = TableSpec(
    name="import_reject",
    description="Lines rejected by imports, with their line number, text and reason.",
    primary_key=("run_id", "line_number"),
    fields=(
        Field("run_id", "string", "Dagster run id.", max_length=64, nullable=False),
        Field("template", "string", "Job template name.", max_length=128, nullable=False),
        Field("line_number", "integer", "1-based line number in the file.", nullable=False),
        Field("line", "string", "The original line."),
        Field("column_name", "string", "Column(s) at fault, comma separated.", max_length=512),
        Field("reason", "string", nullable=False),
        Field("created_at", "timestamp", nullable=False, managed=True),
    ),
)
