"""Validate mapped rows with the target table's pandera schema (polars backend).

Checks come from `schemas/`; a failing value follows its column's `on_error` (reject
the line, drop the value, or use the default). A line must also carry its
reconciliation key, or its secondary key when the key is empty.
"""

from __future__ import annotations

import polars as pl

from campaign_pipelines.importing.read import LINE, TEXT
from campaign_pipelines.text import shown
from campaign_pipelines.importing.rejects import RejectWriter
from campaign_pipelines.importing.transform import REJECTED, Mapper, source_label
from campaign_pipelines.templates import ImportTemplate
from schemas.base import pandera_schema

KEY_KIND = "__key"  # 'p': matched on keys, 's': on secondary keys


class Validator:
    def __init__(self, template: ImportTemplate, mapper: Mapper):
        self.template = template
        self.mapper = mapper
        self.schema = pandera_schema([mapper.fields[t] for t in mapper.targets])
        self.by_target = {m.target: m for m in template.columns}

    def _failures(self, frame: pl.DataFrame) -> pl.DataFrame | None:
        from pandera.errors import SchemaErrors  # loaded by the validate step only

        try:
            self.schema.validate(frame, lazy=True)
            return None
        except SchemaErrors as exc:
            cases = exc.failure_cases
            if cases["index"].null_count():
                # A schema-level failure (dtype, missing column) is a bug in the mapper.
                raise RuntimeError(f"pandera schema failure not tied to a row: {cases}") from exc
            return cases.select(
                pl.col("index").cast(pl.Int64), pl.col("column"), pl.col("check"), pl.col("failure_case")
            )

    def validate_batch(self, frame: pl.DataFrame, rejects: RejectWriter) -> pl.DataFrame:
        frame = self._apply_on_error(frame, rejects)
        frame = frame.filter(~pl.col(REJECTED)).drop(REJECTED)
        return self._require_keys(frame, rejects)

    def _apply_on_error(self, frame: pl.DataFrame, rejects: RejectWriter) -> pl.DataFrame:
        cases = self._failures(frame)
        if cases is None:
            return frame
        fixes = []
        for target in cases["column"].unique().to_list():
            mapping = self.by_target[target]
            if mapping.on_error == "reject_line":
                continue
            rows = cases.filter(pl.col("column") == target)["index"]
            value = self.mapper.defaults.get(target) if mapping.on_error == "default" else None
            dtype = self.mapper.fields[target].polars_dtype
            fixes.append(
                pl.when(pl.int_range(pl.len()).is_in(rows.implode()))
                .then(pl.lit(value, dtype=dtype))
                .otherwise(pl.col(target))
                .alias(target)
            )
        if fixes:
            frame = frame.with_columns(fixes)
            cases = self._failures(frame)  # a default must pass the checks too
            if cases is None:
                return frame
        failed = cases.join(
            frame.with_row_index("index").select(pl.col("index").cast(pl.Int64), LINE, TEXT), on="index"
        )
        for target, group in failed.group_by("column", maintain_order=True):
            mapping = self.by_target[target[0]]
            reasons = group.select(
                pl.format("{}: '{}' {}", pl.col("column"), shown(pl.col("failure_case").cast(pl.Utf8)), pl.col("check"))
            ).to_series()
            rejects.add(group[LINE].to_arrow(), group[TEXT].to_arrow(), source_label(mapping), reasons.to_arrow())
        bad_rows = failed["index"].unique()
        return frame.with_row_index("index").filter(~pl.col("index").cast(pl.Int64).is_in(bad_rows.implode())).drop("index")

    def _require_keys(self, frame: pl.DataFrame, rejects: RejectWriter) -> pl.DataFrame:
        keys, secondary = self.template.target.keys, self.template.target.secondary_keys
        has_key = pl.all_horizontal([pl.col(k).is_not_null() for k in keys])
        has_secondary = (
            pl.all_horizontal([pl.col(k).is_not_null() for k in secondary]) if secondary else pl.lit(False)
        )
        kind = pl.when(has_key).then(pl.lit("p")).when(has_secondary).then(pl.lit("s")).otherwise(None)
        frame = frame.with_columns(kind.alias(KEY_KIND))
        keyless = frame.filter(pl.col(KEY_KIND).is_null())
        if keyless.height:
            wanted = ", ".join(keys) + (f" (nor the secondary key {', '.join(secondary)})" if secondary else "")
            rejects.add(
                keyless[LINE].to_arrow(),
                keyless[TEXT].to_arrow(),
                ", ".join(source_label(self.by_target[k]) for k in keys),
                f"no value for the reconciliation key {wanted}",
            )
            frame = frame.filter(pl.col(KEY_KIND).is_not_null())
        return frame
