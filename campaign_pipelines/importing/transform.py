"""Map file columns to target columns: trim, case, remap, parse, constants (spec 4).

Whole columns at a time with polars expressions. A value that cannot be converted to
its column's type follows the column's `on_error`: reject the line (with a reason),
ignore the value (empty: the field is left as is), or use the column's default.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.importing import typed as typed_columns
from campaign_pipelines.importing.filter import source_filter
from campaign_pipelines.importing.read import LINE, TEXT
from campaign_pipelines.importing.rejects import RejectWriter
from campaign_pipelines.templates import ColumnMapping, ImportTemplate, NumberFormat
from campaign_pipelines.text import cased, scalar_text, shown
from schemas.base import Field

TRUE_WORDS = ("true", "1", "yes", "y", "t", "oui")
FALSE_WORDS = ("false", "0", "no", "n", "f", "non")
DEFAULT_DATE_FORMAT = "%Y-%m-%d"
REJECTED = "__rejected"
DEFAULT_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
# A JSON record's timestamp with no format: ISO 8601, as JSON writers (and our exports)
# write it, a fraction and an offset optional.
ISO_8601 = "ISO 8601"


def source_label(mapping: ColumnMapping) -> str:
    """How a column is named in rejects: the file's title or position, else the target."""
    return mapping.target if mapping.is_constant else str(mapping.source)


def constant(value: Any, f: Field, where: str) -> Any:
    """A template value (constant or default) converted to the column's type."""
    if value is None:
        return None
    frame = pl.DataFrame({"v": [value if isinstance(value, str) else scalar_text(value)]})
    converted, bad = _convert(pl.col("v"), f, None)
    result = frame.select(converted.alias("v"), bad.alias("bad"))
    if result["bad"][0]:
        raise CampaignError(f"{where}: {value!r} is not a valid {f.kind} for {f.name}.")
    return result["v"][0]


def _decimal_pattern(f: Field) -> str:
    """A plain decimal with at most the field's digits (leading zeros, and zeros past the
    scale, already dropped): a value with more is rejected, never rounded."""
    whole, scale = (f.precision or 0) - (f.scale or 0), f.scale or 0
    point = rf"(\.\d{{0,{scale}}})?" if scale else r"\.?"
    fraction_only = rf"|\.\d{{1,{scale}}}" if scale else ""
    return rf"^[+-]?(\d{{1,{max(whole, 1)}}}{point}{fraction_only})$"


def _convert(text: pl.Expr, f: Field, fmt: str | NumberFormat | None, timezone: str | None = None) -> tuple[pl.Expr, pl.Expr]:
    """(typed value, conversion failed) for a text column already cleaned of empties."""
    if f.kind == "string":
        return text, pl.lit(False)
    stripped = text.str.strip_chars()
    if f.kind == "date":
        typed = stripped.str.strptime(pl.Date, fmt or DEFAULT_DATE_FORMAT, strict=False)
    elif f.kind == "timestamp" and fmt == ISO_8601:
        text = stripped.str.replace(r"Z$", "+00:00")
        offset = text.str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M:%S%.f%:z", strict=False)
        naive = text.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S%.f", strict=False)
        naive = naive.dt.replace_time_zone(timezone or "UTC", ambiguous="earliest", non_existent="null")
        typed = pl.coalesce(offset, naive.dt.convert_time_zone("UTC"))
    elif f.kind == "timestamp":
        fmt = fmt if isinstance(fmt, str) else DEFAULT_TIMESTAMP_FORMAT
        typed = stripped.str.strptime(pl.Datetime("us"), fmt, strict=False)
        if "%z" not in fmt and "%:z" not in fmt:  # an offset in the value wins over the column's zone
            typed = typed.dt.replace_time_zone(timezone or "UTC", ambiguous="earliest", non_existent="null")
        typed = typed.dt.convert_time_zone("UTC")
    elif f.kind in ("integer", "decimal", "float"):
        number = stripped
        if isinstance(fmt, NumberFormat):
            if fmt.thousands:
                number = number.str.replace_all(fmt.thousands, "", literal=True)
            if fmt.decimal != ".":
                number = number.str.replace_all(fmt.decimal, ".", literal=True)
        if f.kind == "decimal":
            number = number.str.replace(r"^([+-]?)0+(\d)", "${1}${2}")
            # Zeros past the scale change nothing (19.900 is 19.90 at scale 2): not a fault.
            scale = f.scale or 0
            number = number.str.replace(rf"(\.\d{{{scale}}})0+$", "${1}") if scale else number.str.replace(r"\.0+$", "")
            exact = number.str.contains(_decimal_pattern(f))
            typed = pl.when(exact).then(number).otherwise(None).cast(f.polars_dtype, strict=False)
        elif f.kind == "float":
            typed = number.cast(pl.Float64, strict=False)
            typed = pl.when(typed.is_finite()).then(typed)
        else:
            typed = number.cast(pl.Int64, strict=False)
    else:  # boolean
        words = {**{w: True for w in TRUE_WORDS}, **{w: False for w in FALSE_WORDS}}
        typed = stripped.str.to_lowercase().replace_strict(words, default=None, return_dtype=pl.Boolean)
    return typed, text.is_not_null() & typed.is_null()


def _expected(f: Field, fmt: str | NumberFormat | None) -> str:
    if f.kind == "date":
        return f"is not a date in the format {fmt or DEFAULT_DATE_FORMAT}"
    if f.kind == "timestamp" and fmt == ISO_8601:
        return "is not an ISO 8601 date and time (2024-03-05T10:15:30, an offset and a fraction optional)"
    if f.kind == "timestamp":
        return f"is not a date and time in the format {fmt or DEFAULT_TIMESTAMP_FORMAT}"
    if f.kind == "integer":
        return "is not a whole number"
    if f.kind == "decimal":
        whole = (f.precision or 0) - (f.scale or 0)
        return f"is not a decimal number with at most {whole} digits before the point and {f.scale} after"
    if f.kind == "float":
        return "is not a number"
    return f"is not a yes/no value ({', '.join(TRUE_WORDS)} / {', '.join(FALSE_WORDS)})"


class Mapper:
    """Turns text batches from the reader into typed target columns."""

    def __init__(self, template: ImportTemplate):
        self.template = template
        # What each mapped value is typed and checked as (a link's: its `via` field).
        self.fields = {m.target: template.value_field(m.target) for m in template.columns}
        self.defaults = {
            m.target: constant(m.default, self.fields[m.target], f"columns[{i}].default")
            for i, m in enumerate(template.columns)
            if "default" in m.model_fields_set
        }
        self.constants = {
            m.target: constant(m.value, self.fields[m.target], f"columns[{i}].value")
            for i, m in enumerate(template.columns)
            if m.is_constant
        }
        self.filter = source_filter(template)
        self.rows_filtered = 0

    @property
    def targets(self) -> list[str]:
        return [m.target for m in self.template.columns]

    def output_schema(self) -> dict[str, Any]:
        return {LINE: pl.Int64, TEXT: pl.Utf8, **{t: self.fields[t].polars_dtype for t in self.targets}}

    def _format(self, m: ColumnMapping, f: Field) -> str | NumberFormat | None:
        if m.format is None and f.kind == "timestamp" and self.template.source.format in ("jsonl", "json"):
            return ISO_8601
        return m.format

    def _on_error(self, m: ColumnMapping, f: Field, value: pl.Expr, bad: pl.Expr, text: pl.Expr, failures: list) -> pl.Expr:
        """The typed value, its failed conversions handled by the column's `on_error`."""
        if f.kind != "string":
            if m.on_error == "reject_line":
                failures.append((m, bad, pl.format("{}: '{}' {}", pl.lit(m.target), shown(text), pl.lit(_expected(f, self._format(m, f))))))
            elif m.on_error == "default":
                value = pl.when(bad).then(pl.lit(self.defaults[m.target], dtype=f.polars_dtype)).otherwise(value)
            # ignore_value: the failed conversion is already empty (null).
        return value.cast(f.polars_dtype).alias(m.target)

    def map_frame(self, frame: pl.DataFrame, rejects: RejectWriter) -> pl.DataFrame:
        values: list[pl.Expr] = []
        failures: list[tuple[ColumnMapping, pl.Expr, pl.Expr]] = []  # (mapping, mask, reason)
        for m in self.template.columns:
            f = self.fields[m.target]
            if m.is_constant:
                values.append(pl.lit(self.constants[m.target], dtype=f.polars_dtype).alias(m.target))
                continue
            raw = pl.col(str(m.source))
            dtype = frame.schema[str(m.source)]
            if dtype != pl.Utf8:  # a typed column (Parquet)
                if m.remap is None and typed_columns.direct(dtype, f):
                    value, bad = typed_columns.convert(raw, dtype, f, m.timezone)
                    values.append(self._on_error(m, f, value, bad, raw.cast(pl.Utf8), failures))
                    continue
                raw = raw.cast(pl.Utf8)  # exact text (12.30), then as any text value
            text = raw.str.strip_chars() if m.trim else raw
            text = cased(text, m.case)
            text = pl.when(text.str.strip_chars() == "").then(None).otherwise(text)
            if m.remap is not None:
                known = text.is_in(list(m.remap))
                mapped = text.replace_strict(m.remap, default=None, return_dtype=pl.Utf8)
                unmapped = text.is_not_null() & ~known
                if m.on_unmapped == "reject":
                    reason = pl.format("{}: '{}' is not a value of the remap list", pl.lit(m.target), shown(text))
                    failures.append((m, unmapped, reason))
                    text = mapped
                elif m.on_unmapped == "default":
                    text = pl.when(unmapped).then(pl.lit(scalar_text(m.default))).otherwise(mapped)
                else:
                    text = pl.when(unmapped).then(text).otherwise(mapped)
            value, bad = _convert(text, f, self._format(m, f), m.timezone)
            values.append(self._on_error(m, f, value, bad, text, failures))

        checks = [pl.col(LINE), pl.col(TEXT)] + [mask.fill_null(False).alias(f"__bad{i}") for i, (_, mask, _) in enumerate(failures)]
        mapped = frame.select(*checks, *values)
        if self.filter is not None:
            # Lines the filter leaves out are ignored, faults and all; a line whose filter
            # column failed to convert cannot be judged, and is rejected instead.
            judged = [pl.col(f"__bad{i}") for i, (m, _, _) in enumerate(failures) if m.target in self.template.source.filter]
            unjudged = pl.any_horizontal(judged) if judged else pl.lit(False)
            keep = mapped.select(self.filter | unjudged).to_series()
            self.rows_filtered += keep.len() - keep.sum()
            frame, mapped = frame.filter(keep), mapped.filter(keep)
        for i, (m, _, reason) in enumerate(failures):
            bad = mapped[f"__bad{i}"]
            if bad.any():
                # The reason is formatted for the failing lines only, not for every line.
                hit = frame.filter(bad)
                why = hit.select(reason.alias("why"))["why"]
                rejects.add(hit[LINE].to_arrow(), hit[TEXT].to_arrow(), source_label(m), why.to_arrow())
        # Rejected lines go on to validation (their failed values empty) so that one
        # reject lists every fault of its line; validation then drops them.
        rejected = pl.any_horizontal([pl.col(f"__bad{i}") for i in range(len(failures))]) if failures else pl.lit(False)
        return mapped.select(LINE, TEXT, *self.targets, rejected.alias(REJECTED))
