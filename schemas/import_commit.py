"""import_commit: the merge each root run committed, so a re-executed merge commits at most once."""

from schemas.base import Field, TableSpec

TABLE = TableSpec(
    name="import_commit",
    description=(
        "Imports' committed merges, one per root run (a run and its re-executions): a re-executed "
        "merge after a committed one changes nothing and reports these counts."
    ),
    primary_key=("root_run_id",),
    fields=(
        Field("root_run_id", "string", "The root run (the first of a run and its re-executions).", max_length=64, nullable=False),
        Field("run_id", "string", "The run whose merge committed.", max_length=64, nullable=False),
        Field("template", "string", "Job template name.", max_length=128, nullable=False),
        Field("outcome", "string", "The merge's counts, as JSON.", nullable=False),
        Field("committed_at", "timestamp", nullable=False, managed=True),
    ),
)
