"""An export's rows as an XML document: a root element holding one record element per
row, each column an attribute or a child element (`xml: attribute | element`), text
escaped, the encoding declared. Built column by column with polars string expressions,
not element by element. A character outside the declared encoding is written as a
character reference (&#283;); one XML 1.0 cannot hold at all (a control character) is
refused with its row and column. An empty value is left out (no attribute, no element),
which an XML import reads back as empty."""

from __future__ import annotations

import polars as pl

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.templates import Destination, ExportTemplate
from campaign_pipelines.templates.exports import declared_encoding

NOT_XML = "[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]"  # characters XML 1.0 cannot carry


def opening(destination: Destination) -> bytes:
    declaration = f'<?xml version="1.0" encoding="{declared_encoding(destination.encoding)}"?>\n<{destination.root}>\n'
    return declaration.encode(destination.encoding)


def closing(destination: Destination) -> bytes:
    return f"</{destination.root}>\n".encode(destination.encoding)


def _escaped(text: pl.Expr, attribute: bool) -> pl.Expr:
    text = text.str.replace_all("&", "&amp;", literal=True).str.replace_all("<", "&lt;", literal=True)
    text = text.str.replace_all(">", "&gt;", literal=True).str.replace_all("\r", "&#13;", literal=True)
    if attribute:  # an attribute's line breaks and tabs would be read back as spaces
        text = text.str.replace_all('"', "&quot;", literal=True).str.replace_all("\n", "&#10;", literal=True)
        text = text.str.replace_all("\t", "&#9;", literal=True)
    return text


def records(rows: pl.DataFrame, template: ExportTemplate, rows_before: int) -> bytes:
    """The record elements of formatted rows (`format_rows`), one per line."""
    record = template.destination.record
    for title in rows.columns:
        hit = rows.with_row_index("row").filter(pl.col(title).str.contains(NOT_XML).fill_null(False))
        if hit.height:
            raise CampaignError(
                f"row {rows_before + hit['row'][0] + 1}, column {title!r}: the value holds a control character, "
                "which XML 1.0 cannot carry."
            )
    attributes, elements = [], []
    for column in template.source.columns:
        value = pl.col(column.title)
        if column.xml == "attribute":
            part = pl.lit(f' {column.title}="') + _escaped(value, True) + pl.lit('"')
            attributes.append(pl.when(value.is_null()).then(pl.lit("")).otherwise(part))
        else:
            part = pl.lit(f"<{column.title}>") + _escaped(value, False) + pl.lit(f"</{column.title}>")
            elements.append(pl.when(value.is_null()).then(pl.lit("")).otherwise(part))
    line = pl.concat_str([pl.lit(f"  <{record}"), *attributes, pl.lit(">"), *elements, pl.lit(f"</{record}>\n")])
    text = "".join(rows.select(line.alias("line"))["line"].to_list())
    return text.encode(template.destination.encoding, "xmlcharrefreplace")
