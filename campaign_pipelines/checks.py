"""Asset checks: what each import's validation found, and, on demand, whether a stored
table still holds its own rules on every row.

- `imports/<template>` `lines_accounted`: every line read was loaded, ignored or rejected;
- `imports/<template>` `reject_rate`: rejected / read at most `errors.warn_reject_rate`
  (default 0: any reject) -> WARN; a run failed by `errors.max_rejects`,
  `errors.max_reject_rate` or `on_error: stop` -> ERROR (logged by the step that failed);
- `campaign/<table>` `stored_rows`: the table's rules in SQL over every row (required
  fields, keys and unique fields, links, and the built-in checks SQL can say).
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import sqlalchemy as sa

import schemas
from campaign_pipelines.importing.outcome import COUNT_KEYS
from campaign_pipelines.names import imports_key
from campaign_pipelines.templates import ImportTemplate
from resources.campaign_db import CampaignDatabase

IMPORT_CHECKS = {
    "lines_accounted": "Every line read was inserted, updated, unchanged, deleted, ignored by a rule or rejected.",
    "reject_rate": "Rejected lines / lines read, against errors.warn_reject_rate (WARN) and the limits that fail a run (ERROR).",
}


def reject_rate(rows_rejected: int, rows_read: int) -> float:
    return rows_rejected / rows_read if rows_read else 0.0


def import_check_results(template: ImportTemplate, summary: dict[str, int]) -> list[dg.AssetCheckResult]:
    """The checks of a loaded run, in IMPORT_CHECKS order."""
    key = imports_key(template.asset_name)
    accounted = sum(summary.get(k, 0) for k in COUNT_KEYS)
    rate = reject_rate(summary["rows_rejected"], summary["rows_read"])
    warn = template.errors.warn_reject_rate
    return [
        dg.AssetCheckResult(
            asset_key=key,
            check_name="lines_accounted",
            passed=accounted == summary["rows_read"],
            metadata={"rows_read": summary["rows_read"], "rows_accounted": accounted},
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name="reject_rate",
            passed=rate <= warn,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{summary['rows_rejected']} of {summary['rows_read']} lines rejected ({rate:.2%}); "
            f"errors.warn_reject_rate is {warn:.2%}.",
            metadata={
                "reject_rate": dg.MetadataValue.float(rate),
                "rows_rejected": summary["rows_rejected"],
                "warn_reject_rate": dg.MetadataValue.float(warn),
            },
        ),
    ]


def failed_run_checks(template: ImportTemplate, rows_rejected: int, rows_read: int, failure: str) -> list[dg.AssetCheckEvaluation]:
    """The checks of a run the reject policy failed: reject_rate an ERROR; lines_accounted
    passes, as every line was rejected or held back (nothing was written)."""
    key = imports_key(template.asset_name)
    rate = reject_rate(rows_rejected, rows_read)
    return [
        dg.AssetCheckEvaluation(
            asset_key=key,
            check_name="lines_accounted",
            passed=True,
            description=f"{rows_read} lines read: {rows_rejected} rejected, the other {rows_read - rows_rejected} "
            "not written (the reject policy failed the run).",
            metadata={"rows_read": rows_read, "rows_rejected": rows_rejected, "rows_written": 0},
        ),
        dg.AssetCheckEvaluation(
            asset_key=key,
            check_name="reject_rate",
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=failure,
            metadata={"reject_rate": dg.MetadataValue.float(rate), "rows_rejected": rows_rejected},
        ),
    ]


# -- stored rows -------------------------------------------------------------------------

# Built-in checks SQL can say: their pandera parameters in order, and the condition a row
# breaking them meets (NULLs are never checked, as pandera's `nullable` leaves them).
_PARAMETERS = {
    "isin": ("allowed_values",), "notin": ("forbidden_values",),
    "equal_to": ("value",), "eq": ("value",), "not_equal_to": ("value",), "ne": ("value",),
    "greater_than": ("min_value",), "gt": ("min_value",),
    "greater_than_or_equal_to": ("min_value",), "ge": ("min_value",),
    "less_than": ("max_value",), "lt": ("max_value",),
    "less_than_or_equal_to": ("max_value",), "le": ("max_value",),
    "in_range": ("min_value", "max_value", "include_min", "include_max"),
    "between": ("min_value", "max_value", "include_min", "include_max"),
    "str_length": ("min_value", "max_value"),
}


def _check_violation(column: sa.ColumnElement[Any], check: schemas.Check) -> sa.ColumnElement[bool] | None:
    """A SQL condition true on a row that breaks a built-in check, or None when SQL cannot say it."""
    names = _PARAMETERS.get(check.name)
    if names is None:
        return None
    given = dict(zip(names, [a() if callable(a) else a for a in check.args])) | dict(check.kwargs)
    value = given.get(names[0])
    match check.name:
        case "isin":
            return column.not_in(list(value))
        case "notin":
            return column.in_(list(value))
        case "equal_to" | "eq":
            return column != value
        case "not_equal_to" | "ne":
            return column == value
        case "greater_than" | "gt":
            return column <= value
        case "greater_than_or_equal_to" | "ge":
            return column < value
        case "less_than" | "lt":
            return column >= given["max_value"]
        case "less_than_or_equal_to" | "le":
            return column > given["max_value"]
        case "in_range" | "between":
            low, high = given["min_value"], given["max_value"]
            below = column < low if given.get("include_min", True) else column <= low
            above = column > high if given.get("include_max", True) else column >= high
            return sa.or_(below, above)
        case _:  # str_length
            low, high = given.get("min_value"), given.get("max_value")
            conditions = [sa.func.length(column) < low] if low is not None else []
            conditions += [sa.func.length(column) > high] if high is not None else []
            return sa.or_(*conditions) if conditions else None


def stored_row_faults(conn: sa.Connection, spec: schemas.TableSpec, model: schemas.DataModel) -> tuple[dict[str, int], list[str]]:
    """Rows breaking each rule of the table (rule -> count), and the checks SQL cannot say."""
    table = spec.table
    faults: dict[str, int] = {}
    unchecked: list[str] = []

    def count(rule: str, where: sa.ColumnElement[bool]) -> None:
        faults[rule] = conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one()

    for field in spec.fields:
        column = table.c[field.name]
        if not field.nullable:
            count(f"{field.name} is empty", column.is_(None))
        for check in field.checks:
            violation = _check_violation(column, check)
            if violation is None:
                unchecked.append(f"{field.name}: {check.name}")
            else:
                count(f"{field.name}: {check.error}", sa.and_(column.is_not(None), violation))
        if field.max_length:
            count(f"{field.name} is longer than {field.max_length} characters", sa.func.length(column) > field.max_length)
    for key in [spec.primary_key, *spec.unique_together, *((f.name,) for f in spec.unique_fields)]:
        columns = [table.c[name] for name in key]
        duplicates = (
            sa.select(*columns).where(*(c.is_not(None) for c in columns)).group_by(*columns)
            .having(sa.func.count() > 1).subquery()
        )
        faults[f"({', '.join(key)}) held by several rows"] = conn.execute(
            sa.select(sa.func.count()).select_from(duplicates)
        ).scalar_one()
    for link in spec.links:
        linked = model.table(link.table).table
        column = table.c[link.column]
        orphans = sa.select(sa.func.count()).select_from(table.outerjoin(linked, column == linked.c.id)).where(
            column.is_not(None), linked.c.id.is_(None)
        )
        faults[f"{link.column} names no {link.table}"] = conn.execute(orphans).scalar_one()
    return faults, unchecked


def table_checks(spec: schemas.TableSpec, key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=key,
        name="stored_rows",
        description=f"Every stored row of {spec.name} holds the table's rules (required fields, keys, links, checks), in SQL.",
    )
    def stored_rows(campaign_db: CampaignDatabase) -> dg.AssetCheckResult:
        campaign_db.migrate()
        with campaign_db.engine.connect() as conn:
            model = campaign_db.model  # the run's: the files as they are now
            faults, unchecked = stored_row_faults(conn, model.table(spec.name), model)
        broken = {rule: n for rule, n in faults.items() if n}
        return dg.AssetCheckResult(
            passed=not broken,
            description="; ".join(f"{n} row(s): {rule}" for rule, n in broken.items()) or f"{len(faults)} rules hold.",
            metadata={
                "rules_checked": len(faults),
                "rows_breaking_rules": sum(broken.values()),
                "not_checkable_in_sql": dg.MetadataValue.text(", ".join(unchecked) or "none"),
            },
        )

    return stored_rows
