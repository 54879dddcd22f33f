"""Grouped extractions (issue 28, item 6) on SQLite and PostgreSQL: export columns that
aggregate (count, count_distinct, sum, min, max, avg) over a group_by, across links,
with having; decimals exact; one SQL statement with bound values; the differential
watermark of a grouped export; and each mistake a template error naming its key."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from campaign_pipelines.errors import TemplateError
from campaign_pipelines.exporting.query import build_select
from campaign_pipelines.templates import parse_template
from tests.test_export_links import export, run_lines, shop, shop_model  # noqa: F401  (fixtures)

BY_COUNTRY = [
    {"column": "recipient.country_code", "label": "country"},
    {"aggregate": "count", "label": "purchases"},
    {"column": "amount", "aggregate": "sum", "label": "revenue"},
    {"column": "recipient.email", "aggregate": "count_distinct", "label": "buyers"},
    {"column": "amount", "aggregate": "avg", "label": "average"},
    {"column": "amount", "aggregate": "min", "label": "smallest"},
    {"column": "purchased_at", "aggregate": "max", "label": "last"},
    {"column": "paid_on", "aggregate": "count", "label": "paid"},
]


def test_aggregates_per_group_across_a_link_with_exact_decimals(shop):
    """P1 (19.90) P2 (5.00) P5 (no amount, no date) are Ann's (FR), P3 (-0.50) Bob's (BE),
    P4 (1234567890.12) nobody's: its group's country is empty, and sorts last."""
    lines = run_lines(shop, export("purchase", BY_COUNTRY, group_by=["recipient.country_code"]))
    assert lines == [
        "country;purchases;revenue;buyers;average;smallest;last;paid",
        "BE;1;-0.50;1;-0.50;-0.50;2024-06-30 00:00:01;1",
        "FR;3;24.90;1;12.45;5.00;2024-12-31 23:59:59;1",
        ";1;1234567890.12;0;1234567890.12;1234567890.12;2024-01-07 08:00:00;0",
    ]


def test_having_order_and_a_date_part_as_group(shop):
    columns = [
        {"column": "purchased_at", "part": "year", "label": "Year"},
        {"column": "sku"},
        {"aggregate": "count", "label": "n"},
        {"column": "amount", "aggregate": "sum", "label": "revenue"},
        {"column": "amount", "aggregate": "avg", "label": "average"},
    ]
    lines = run_lines(shop, export("purchase", columns, group_by=["Year", "sku"], order_by=["revenue"]))
    # Ordered by revenue (empty last), then by the group keys; P5 has no date: its own group.
    assert lines == ["Year;sku;n;revenue;average", "2024;A;2;4.50;2.25", "2024;B;1;19.90;19.90",
                     "2024;C;1;1234567890.12;1234567890.12", ";B;1;;"]
    having = {"revenue": {"ge": "4.50", "lt": 1000}, "n": {"in": [1, 2]}}
    lines = run_lines(shop, export("purchase", columns, group_by=["Year", "sku"], having=having))
    assert lines == ["Year;sku;n;revenue;average", "2024;A;2;4.50;2.25", "2024;B;1;19.90;19.90"]


def test_a_decimal_average_is_rounded_half_away_from_zero_at_its_scale(shop):
    with shop.engine.begin() as conn:
        now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        rows = [("Q", "0.01"), ("Q", "0.00"), ("R", "-0.01"), ("R", "0.00"), ("S", "0.01"), ("S", "0.01"), ("S", "0.00")]
        conn.execute(sa.insert(shop.model.table("purchase").table), [
            {"order_id": f"Q{i}", "sku": sku, "amount": decimal.Decimal(a), "created_at": now, "updated_at": now}
            for i, (sku, a) in enumerate(rows)
        ])
    columns = [{"column": "sku"}, {"column": "amount", "aggregate": "avg"}]
    lines = run_lines(shop, export("purchase", columns, group_by=["sku"], filter={"sku": {"in": ["Q", "R", "S"]}}))
    # 0.005 -> 0.01 and -0.005 -> -0.01 (not to even: 0.00); 0.02 / 3 = 0.00666… -> 0.01.
    assert lines == ["sku;amount", "Q;0.01", "R;-0.01", "S;0.01"]


def test_a_grouped_differential_export_moves_its_watermark_to_the_newest_row(shop):
    columns = [{"column": "sku"}, {"aggregate": "count", "label": "n"}]
    text = export("purchase", columns, group_by=["sku"], differential={"column": "updated_at"})
    assert run_lines(shop, text) == ["sku;n", "A;2", "B;2", "C;1"]
    assert run_lines(shop, text) == ["sku;n"]  # nothing newer than the watermark
    with shop.engine.begin() as conn:
        later = dt.datetime(2025, 2, 1, tzinfo=dt.UTC)
        conn.execute(sa.insert(shop.model.table("purchase").table), [
            {"order_id": "P6", "sku": "A", "created_at": later, "updated_at": later}])
    assert run_lines(shop, text) == ["sku;n", "A;1"]


def test_a_grouped_export_is_one_statement_with_bound_values(shop):
    template = parse_template(export("purchase", [
        {"column": "recipient.country_code"}, {"aggregate": "count", "label": "n"},
        {"column": "amount", "aggregate": "sum", "label": "revenue"},
    ], group_by=["recipient.country_code"], having={"n": {"ge": 424242}}, filter={"sku": "sku-value"}), "t.yaml", shop.model)
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        compiled = build_select(template).compile(dialect=dialect)
        sql = str(compiled)
        assert sql.count("SELECT") == 1 and sql.count("LEFT OUTER JOIN") == 1
        assert "GROUP BY" in sql and "HAVING count(*) >=" in sql
        assert "424242" not in sql and 424242 in compiled.params.values()
        assert "sku-value" not in sql and "sku-value" in compiled.params.values()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"columns": [{"column": "sku"}, {"aggregate": "count", "label": "n"}]},
         "source.columns[0]: 'sku' is neither aggregated nor in source.group_by; add 'sku' to group_by, or give it an aggregate"),
        ({"columns": [{"column": "sku", "aggregate": "sum"}]}, "source.columns[0].aggregate: sum needs a number column, sku is a string"),
        ({"columns": [{"column": "recipient.email_denylisted", "aggregate": "max"}]},
         "source.columns[0].aggregate: max of a yes/no column"),
        ({"columns": [{"column": "recipient.nme", "aggregate": "min"}]}, "source.columns[0].column: recipient has no column 'nme'"),
        ({"columns": [{"aggregate": "count"}]}, "source.columns[0]: a count of rows needs a label"),
        ({"columns": [{"aggregate": "sum", "label": "s"}]}, "source.columns[0]: aggregate goes with column"),
        ({"columns": [{"column": "purchased_at", "part": "month", "aggregate": "count"}]},
         "source.columns[0]: part does not go with aggregate"),
        ({"columns": [{"column": "sku", "aggregate": "median"}]}, "source.columns[0].aggregate: Input should be"),
        ({"columns": [{"column": "sku"}], "group_by": ["skus"]},
         "source.group_by: 'skus' is neither an exported column's title nor a column: purchase has no column 'skus'"),
        ({"columns": [{"column": "sku"}], "having": {"sku": "A"}},
         "source.having: filters aggregated columns, and no column has an aggregate; use source.filter"),
        ({"columns": [{"column": "sku"}, {"aggregate": "count", "label": "n"}], "group_by": ["sku"], "having": {"sku": "A"}},
         "source.having.sku: not an aggregated column (aggregated: n); filter the rows with source.filter"),
        ({"columns": [{"aggregate": "count", "label": "n"}], "having": {"n": {"ge": "many"}}},
         "source.having.n.ge: 'many' is not a whole number"),
        ({"columns": [{"column": "amount", "aggregate": "sum", "label": "s"}], "having": {"s": {"gt": "0.001"}}},
         "source.having.s.gt: '0.001' has more than 2 digits after the point"),
        ({"columns": [{"aggregate": "count", "label": "n"}], "having": {"n": {"most": 1}}}, "source.having.n.most: unknown operator"),
        ({"columns": [{"column": "sku"}, {"aggregate": "count", "label": "n"}], "group_by": ["sku"], "distinct": True},
         "source.distinct: the rows of a grouped export are distinct already"),
        ({"columns": [{"aggregate": "count", "label": "n"}], "order_by": ["sku"]},
         "source.order_by: 'sku'; a grouped export orders by its group_by columns and aggregated columns (n)"),
        ({"columns": [{"value": "{sku}!", "label": "x"}, {"aggregate": "count", "label": "n"}]},
         "source.columns[0]: 'x' is neither aggregated nor in source.group_by"),
    ],
)
def test_bad_grouped_exports_are_template_errors_naming_the_key(shop_model, source, message):
    with pytest.raises(TemplateError) as caught:
        parse_template(export("purchase", **source), "t.yaml", shop_model.model)
    assert message in str(caught.value)


def test_a_collection_in_a_grouped_export_is_refused(shop_model):
    with pytest.raises(TemplateError, match=r"source\.columns\[1\]\.collection: a collection cannot be exported by a grouped"):
        parse_template(export("recipient", [{"column": "country_code"}, {"collection": "purchase.sku"},
                                            {"aggregate": "count", "label": "n"}], group_by=["country_code"]),
                       "t.yaml", shop_model.model)


def test_a_calculated_value_of_grouped_columns_is_allowed(shop):
    columns = [{"value": "{sku}-{recipient.country_code}", "label": "key"}, {"aggregate": "count", "label": "n"}]
    lines = run_lines(shop, export("purchase", columns, group_by=["sku", "recipient.country_code"]))
    assert lines == ["key;n", "A-BE;1", "A-FR;1", "B-FR;2", "C-;1"]


def test_aggregates_without_group_by_are_one_row_and_a_group_need_not_be_exported(shop):
    columns = [{"aggregate": "count", "label": "n", "format": {"thousands": " "}}, {"column": "amount", "aggregate": "sum"}]
    assert run_lines(shop, export("purchase", columns)) == ["n;amount", "5;1234567914.52"]
    # One row per buyer (Ann 3, Bob 1, nobody 1), ordered by the e-mail it does not write.
    columns = [{"aggregate": "count", "label": "n"}]
    assert run_lines(shop, export("purchase", columns, group_by=["recipient.email"])) == ["n", "3", "1", "1"]
