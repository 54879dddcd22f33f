"""Imports into the user's own tables and fields: links resolved by a unique field of the
linked table (each on_missing_link), keys holding links, exact decimals, per-field update
rules, the source filter and extensions of built-in tables. Both databases."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
import yaml

from campaign_pipelines.launching import run_outcome
from campaign_pipelines.templates import load_catalog
from tests.helpers import people_file, people_template

PURCHASE = """\
name: purchase
label: Purchase
description: Purchases from the web shop.
fields:
  - {name: order_id, kind: string, max_length: 32, nullable: false}
  - {name: sku, kind: string, max_length: 32, nullable: false}
  - {name: amount, kind: decimal, precision: 12, scale: 2, nullable: false}
  - {name: currency, kind: string, max_length: 3, default: EUR,
     checks: [{check: isin, allowed_values: [EUR, USD, GBP], error: "is not a currency we sell in"}]}
  - {name: purchased_at, kind: timestamp, nullable: false}
  - {name: channel, kind: string, max_length: 16}
  - {name: note, kind: string, max_length: 64}
links:
  - {name: recipient, table: recipient, via: email, nullable: false}
key: [order_id]
"""

LOYALTY = """\
extends: recipient
fields:
  - {name: loyalty_tier, kind: string, max_length: 16,
     checks: [{check: isin, allowed_values: [bronze, silver, gold], error: "is not a loyalty tier"}]}
  - {name: points, kind: integer, default: 0, nullable: false}
"""

HEADER = "order;sku;amount;currency;when;email;channel;note\n"


def purchases_template(**changes) -> str:
    data = {
        "name": "purchases",
        "kind": "import",
        "source": {"path": "inbox/purchases.csv", "delimiter": ";"},
        "target": {"schema": "purchase", "keys": ["order_id"]},
        "columns": [
            {"source": "order", "target": "order_id"},
            {"source": "sku", "target": "sku"},
            {"source": "amount", "target": "amount", "format": {"decimal": ","}},
            {"source": "currency", "target": "currency"},
            {"source": "when", "target": "purchased_at", "format": "%Y-%m-%d %H:%M"},
            {"source": "email", "target": "recipient", "link": {"via": "email"}, "case": "lower", "trim": True},
            {"source": "channel", "target": "channel"},
            {"source": "note", "target": "note"},
        ],
    }
    for section, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(section), dict):
            data[section].update(value)
        else:
            data[section] = value
    return yaml.safe_dump(data, sort_keys=False)


def column(template: str, target: str, **changes) -> str:
    """The template with one column's keys changed."""
    data = yaml.safe_load(template)
    for c in data["columns"]:
        if c["target"] == target:
            c.update(changes)
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
def shop(campaign):
    """Two recipients, and the purchase table."""
    campaign.schema(PURCHASE, "purchase")
    campaign.template(people_template())
    campaign.file("inbox/people.csv", people_file("ann@example.com;C1;Ann;Lee", "bob@example.com;C2;Bob;Ray"))
    assert campaign.run("people").status == "finished"
    return campaign


def import_metadata(result, template: str = "purchases") -> dict:
    """The metadata of the run's imports/<template> materialization (the report's counts)."""
    (event,) = [e for e in result.dagster.get_asset_materialization_events() if e.asset_key.path == ["imports", template]]
    return event.materialization.metadata


def ignored_causes(result, template: str = "purchases") -> dict[str, int]:
    """The report step's `ignored: <cause>` metadata."""
    metadata = import_metadata(result, template)
    return {k.removeprefix("ignored: "): v.value for k, v in metadata.items() if k.startswith("ignored: ")}


def purchases(*lines: str) -> str:
    return HEADER + "".join(line + "\n" for line in lines)


def test_a_link_resolves_by_email_and_an_unknown_customer_is_rejected_with_its_line(shop):
    shop.template(purchases_template())
    shop.file("inbox/purchases.csv", purchases(
        "A1;SKU-1;19,90;EUR;2026-11-02 10:00;ANN@example.com;web;",
        "A2;SKU-2;5;USD;2026-11-03 11:30;nobody@example.com;web;",
        "A3;SKU-1;1234567890,12;EUR;2026-11-04 09:15; bob@example.com ;shop;",
    ))
    result = shop.run("purchases")
    assert result.status == "finished_with_errors", result.error
    assert result.counts["rows_inserted"] == 2 and result.counts["rows_rejected"] == 1
    people = {r["email"]: r["id"] for r in shop.rows("recipient", "id", "email")}
    rows = shop.rows("purchase", "order_id", "recipient_id", "amount", "currency", "purchased_at", order_by="order_id")
    assert [(r["order_id"], r["recipient_id"]) for r in rows] == [("A1", people["ann@example.com"]), ("A3", people["bob@example.com"])]
    # Exact: no float rounding on either database.
    amounts = shop.rows("purchase", "order_id", order_by="order_id")
    assert len(amounts) == 2
    from sqlalchemy import select


    table = shop.model.table("purchase").table
    with shop.engine.connect() as conn:
        stored = dict(conn.execute(select(table.c.order_id, table.c.amount)).all())
    assert stored == {"A1": decimal.Decimal("19.90"), "A3": decimal.Decimal("1234567890.12")}
    rejects = shop.rows("import_reject", "line_number", "column_name", "reason", order_by="line_number")
    assert rejects == [{
        "line_number": 3, "column_name": "email",
        "reason": "recipient: no recipient has email 'nobody@example.com' (on_missing_link: reject)",
    }]


def test_on_missing_link_ignore_counts_the_line_as_ignored_with_its_cause(shop):
    shop.template(column(purchases_template(), "recipient", on_missing_link="ignore"))
    shop.file("inbox/purchases.csv", purchases(
        "A1;SKU-1;1;EUR;2026-11-02 10:00;ann@example.com;web;",
        "A2;SKU-2;2;EUR;2026-11-02 10:00;nobody@example.com;web;",
    ))
    result = shop.run("purchases")
    assert result.status == "finished"
    assert result.counts["rows_inserted"] == 1 and result.counts["rows_ignored"] == 1
    assert ignored_causes(result) == {"no recipient has this email (recipient, on_missing_link: ignore)": 1}
    assert [r["order_id"] for r in shop.rows("purchase", "order_id")] == ["A1"]


def test_on_missing_link_create_adds_the_linked_record_with_that_key(shop):
    shop.template(column(purchases_template(), "recipient", on_missing_link="create"))
    shop.file("inbox/purchases.csv", purchases(
        "A1;SKU-1;1;EUR;2026-11-02 10:00;new@example.com;web;",
        "A2;SKU-2;2;EUR;2026-11-02 10:00;NEW@example.com;web;",
        "A3;SKU-2;2;EUR;2026-11-02 10:00;ann@example.com;web;",
    ))
    result = shop.run("purchases")
    assert result.status == "finished" and result.counts["rows_inserted"] == 3
    assert import_metadata(result)["created by the recipient link"].value == 1
    # And in `run --json`, as {link: records created}.
    assert run_outcome(shop.instance, result.run_id, load_catalog(shop.templates_dir, shop.model).get("purchases"))["links_created"] == {"recipient": 1}
    people = {r["email"]: r["id"] for r in shop.rows("recipient", "id", "email")}
    assert set(people) == {"ann@example.com", "bob@example.com", "new@example.com"}  # created once
    rows = shop.rows("purchase", "order_id", "recipient_id", order_by="order_id")
    assert [r["recipient_id"] for r in rows] == [people["new@example.com"]] * 2 + [people["ann@example.com"]]


def test_a_key_holding_a_link_matches_the_record_and_a_rerun_converges(shop):
    template = purchases_template(target={"keys": ["recipient", "purchased_at", "sku"]})
    shop.template(template)
    lines = [
        "A1;SKU-1;10;EUR;2026-11-02 10:00;ann@example.com;web;",
        "A2;SKU-1;10;EUR;2026-11-02 10:00;bob@example.com;web;",
    ]
    shop.file("inbox/purchases.csv", purchases(*lines))
    assert shop.run("purchases").counts["rows_inserted"] == 2
    # Same recipient, time and sku: the same purchase, whatever its order id says.
    shop.file("inbox/purchases.csv", purchases("A9;SKU-1;12,50;EUR;2026-11-02 10:00;ann@example.com;web;", lines[1]))
    result = shop.run("purchases")
    assert (result.counts["rows_updated"], result.counts["rows_unchanged"], result.counts["rows_inserted"]) == (1, 1, 0)
    rows = shop.rows("purchase", "order_id", "amount", order_by="order_id")
    assert [r["order_id"] for r in rows] == ["A2", "A9"]
    again = shop.run("purchases")
    assert again.counts["rows_unchanged"] == 2 and again.counts["rows_updated"] == 0


def test_decimals_with_too_many_digits_are_rejected_naming_line_and_column_never_rounded(shop):
    shop.template(purchases_template())
    shop.file("inbox/purchases.csv", purchases(
        "A1;SKU-1;19,999;EUR;2026-11-02 10:00;ann@example.com;web;",
        "A2;SKU-1;12345678901,00;EUR;2026-11-02 10:00;ann@example.com;web;",
        "A3;SKU-1;1e3;EUR;2026-11-02 10:00;ann@example.com;web;",
        "A4;SKU-1;-0000012,5;EUR;2026-11-02 10:00;ann@example.com;web;",
        "A5;SKU-1;3;XYZ;2026-11-02 10:00;ann@example.com;web;",
        "A6;SKU-1;7,5000;EUR;2026-11-02 10:00;ann@example.com;web;",  # zeros past the scale: exactly 7.50
    ))
    result = shop.run("purchases")
    assert result.counts["rows_inserted"] == 2 and result.counts["rows_rejected"] == 4
    rejects = shop.rows("import_reject", "line_number", "column_name", "reason", order_by="line_number")
    assert [(r["line_number"], r["column_name"]) for r in rejects] == [(2, "amount"), (3, "amount"), (4, "amount"), (6, "currency")]
    assert "at most 10 digits before the point and 2 after" in rejects[0]["reason"]
    assert rejects[3]["reason"] == "currency: 'XYZ' is not a currency we sell in"
    from sqlalchemy import select


    table = shop.model.table("purchase").table
    with shop.engine.connect() as conn:
        amounts = conn.execute(select(table.c.order_id, table.c.amount).order_by(table.c.order_id)).all()
    assert [tuple(a) for a in amounts] == [("A4", decimal.Decimal("-12.50")), ("A6", decimal.Decimal("7.50"))]


def test_a_required_field_left_empty_rejects_the_insert(shop):
    shop.template(purchases_template())
    shop.file("inbox/purchases.csv", purchases(
        "A1;;1;EUR;2026-11-02 10:00;ann@example.com;web;",
        "A2;SKU-1;1;;2026-11-02 10:00;ann@example.com;web;",
    ))
    result = shop.run("purchases")
    assert result.counts["rows_inserted"] == 1 and result.counts["rows_rejected"] == 1
    (reject,) = shop.rows("import_reject", "line_number", "column_name", "reason", order_by="line_number")
    assert (reject["line_number"], reject["column_name"]) == (2, "sku")
    assert "purchase.sku cannot be empty" in reject["reason"]
    # An empty currency took the field's default.
    assert shop.rows("purchase", "currency") == [{"currency": "EUR"}]


def test_per_field_update_rules(shop):
    template = purchases_template()
    template = column(template, "channel", update="on_insert")
    template = column(template, "note", update="if_empty")
    template = column(template, "sku", empty_values="keep")
    template = yaml.safe_dump({**yaml.safe_load(template), "target": {"schema": "purchase", "keys": ["order_id"], "empty_values": "overwrite"}})
    shop.template(template)
    shop.file("inbox/purchases.csv", purchases("A1;SKU-1;1;USD;2026-11-02 10:00;ann@example.com;web;"))
    shop.run("purchases")
    # channel is set on insert only, note filled only while empty, sku keeps its value
    # when the line's is empty although the target says overwrite.
    shop.file("inbox/purchases.csv", purchases("A1;;2;GBP;2026-11-02 10:00;ann@example.com;shop;first"))
    assert shop.run("purchases").counts["rows_updated"] == 1
    shop.file("inbox/purchases.csv", purchases("A1;SKU-2;3;GBP;2026-11-02 10:00;ann@example.com;phone;second"))
    shop.run("purchases")
    (row,) = shop.rows("purchase", "sku", "channel", "note", "currency")
    assert row == {"sku": "SKU-2", "channel": "web", "note": "first", "currency": "GBP"}


def test_empty_values_overwrite_per_field_empties_only_that_field(shop):
    template = column(purchases_template(), "note", empty_values="overwrite")
    shop.template(template)
    shop.file("inbox/purchases.csv", purchases("A1;SKU-1;1;USD;2026-11-02 10:00;ann@example.com;web;a note"))
    shop.run("purchases")
    shop.file("inbox/purchases.csv", purchases("A1;SKU-1;1;USD;2026-11-02 10:00;ann@example.com;;"))
    assert shop.run("purchases").counts["rows_updated"] == 1
    assert shop.rows("purchase", "channel", "note") == [{"channel": "web", "note": None}]


def test_the_source_filter_ignores_lines_with_their_cause(campaign):
    campaign.template(people_template(
        source={"filter": {"folder": {"in": ["Prospect", "Customer"]}}},
        extra_columns=[{"source": "status", "target": "folder"}],
    ))
    campaign.file("inbox/people.csv", (
        "email;crm_id;first_name;last_name;status\n"
        "a@example.com;1;A;A;Prospect\n"
        "b@example.com;2;B;B;Partner\n"
        "c@example.com;3;C;C;Customer\n"
        "not-an-email;4;D;D;Supplier\n"
        "e@example.com;5;E;E;\n"
    ))
    result = campaign.run("people")
    # A line left out by the filter is ignored even when another of its values is bad.
    assert result.status == "finished"
    assert (result.counts["rows_inserted"], result.counts["rows_ignored"], result.counts["rows_rejected"]) == (2, 3, 0)
    assert [r["email"] for r in campaign.rows("recipient", "email")] == ["a@example.com", "c@example.com"]
    assert ignored_causes(result, "people") == {"not selected by source.filter": 3}


def test_an_extension_field_of_recipient_is_imported_and_checked(campaign):
    campaign.schema(LOYALTY, "recipient_loyalty")
    campaign.template(people_template(extra_columns=[{"source": "tier", "target": "loyalty_tier", "case": "lower"}]))
    campaign.file("inbox/people.csv", (
        "email;crm_id;first_name;last_name;tier\n"
        "a@example.com;1;A;A;Gold\n"
        "b@example.com;2;B;B;platinum\n"
    ))
    result = campaign.run("people")
    assert result.counts["rows_inserted"] == 1 and result.counts["rows_rejected"] == 1
    assert campaign.rows("recipient", "email", "loyalty_tier", "points") == [{"email": "a@example.com", "loyalty_tier": "gold", "points": 0}]
    (reject,) = campaign.rows("import_reject", "reason", order_by="line_number")
    assert reject["reason"] == "loyalty_tier: 'platinum' is not a loyalty tier"


def test_a_timestamp_without_offset_is_read_in_the_columns_time_zone(shop):
    template = column(purchases_template(), "purchased_at", timezone="Europe/Paris")
    shop.template(template)
    shop.file("inbox/purchases.csv", purchases("A1;SKU-1;1;EUR;2026-07-01 12:00;ann@example.com;web;"))
    shop.run("purchases")
    from sqlalchemy import select


    table = shop.model.table("purchase").table
    with shop.engine.connect() as conn:
        stored = conn.execute(select(table.c.purchased_at)).scalar_one()
    stored = stored if stored.tzinfo else stored.replace(tzinfo=dt.UTC)
    assert stored == dt.datetime(2026, 7, 1, 10, 0, tzinfo=dt.UTC)  # CEST is UTC+2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"link": {"via": "first_name"}}, "columns[5].link.via: 'first_name' is not a unique field of recipient"),
        ({"link": None}, ""),
        ({"on_missing_link": "create", "link": {"via": "id"}}, "columns[5].on_missing_link: create cannot add a recipient record from id alone"),
    ],
)
def test_link_mistakes_are_template_errors_naming_the_key(shop, change, message):
    from campaign_pipelines.templates import load_catalog

    shop.template(column(purchases_template(), "recipient", **change))
    catalog = load_catalog(shop.templates_dir, shop.model)
    if not message:  # the schema's own `via` serves
        assert "purchases" in catalog.templates, catalog.errors
        return
    assert any(message in e for e in catalog.errors), catalog.errors


def test_an_unmapped_required_field_is_a_template_error(shop):
    from campaign_pipelines.templates import load_catalog

    data = yaml.safe_load(purchases_template())
    data["columns"] = [c for c in data["columns"] if c["target"] != "sku"]
    shop.template(yaml.safe_dump(data))
    (error,) = load_catalog(shop.templates_dir, shop.model).errors
    assert "columns: purchase.sku cannot be empty (nullable: false) and is not mapped" in error


def test_an_exact_decimal_round_trip_import_export_reimport(shop):
    shop.template(purchases_template())
    amounts = ["0,01", "19,90", "9999999999,99", "-5,5", "1234567,89"]
    shop.file("inbox/purchases.csv", purchases(*(
        f"A{i};SKU-{i};{a};EUR;2026-11-0{i + 1} 10:00;ann@example.com;web;" for i, a in enumerate(amounts)
    )))
    assert shop.run("purchases").counts["rows_inserted"] == 5
    shop.template(yaml.safe_dump({
        "name": "purchases_out", "kind": "export",
        "source": {"schema": "purchase", "order_by": ["order_id"], "columns": [
            {"column": "order_id", "label": "order"}, {"column": "sku"}, {"column": "amount"},
            {"column": "currency"}, {"column": "purchased_at", "label": "when", "format": "%Y-%m-%d %H:%M"},
            {"column": "recipient.email", "label": "email"}, {"column": "channel"}, {"column": "note"},
        ]},
        "destination": {"path": "outbox/purchases.csv", "delimiter": ";"},
    }))
    exported = shop.run("purchases_out")
    assert exported.counts["rows_exported"] == 5
    text = (shop.data_dir / "outbox" / "purchases.csv").read_text()
    assert [line.split(";")[2] for line in text.splitlines()[1:]] == ["0.01", "19.90", "9999999999.99", "-5.50", "1234567.89"]
    # The exported file imports back onto the same rows, to the cent.
    shop.template(column(purchases_template(name="purchases_back"), "amount", format=None))
    result = shop.run("purchases_back", file="outbox/purchases.csv")
    assert result.counts["rows_unchanged"] == 5 and result.counts["rows_read"] == 5, result.counts


def test_user_tables_show_as_assets_with_their_column_schema(sqlite_campaign):
    from campaign_pipelines.code_location import build_definitions

    sqlite_campaign.schema(PURCHASE, "purchase")
    sqlite_campaign.schema(LOYALTY, "recipient_loyalty")
    defs = build_definitions(sqlite_campaign.settings)
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    columns = {c.name: c for c in specs["campaign/purchase"].metadata["dagster/column_schema"].columns}
    assert columns["amount"].type == "decimal(12,2)"
    assert columns["recipient_id"].type == "integer" and columns["order_id"].constraints.unique
    assert specs["campaign/purchase"].description == "Purchases from the web shop."
    recipient = [c.name for c in specs["campaign/recipient"].metadata["dagster/column_schema"].columns]
    assert recipient[-4:] == ["loyalty_tier", "points", "created_at", "updated_at"]


def test_a_schema_key_of_several_fields_rejects_a_line_that_would_break_it(campaign):
    campaign.schema(PURCHASE.replace("key: [order_id]", "key: [recipient, purchased_at, sku]"), "purchase")
    campaign.template(people_template())
    campaign.file("inbox/people.csv", people_file("ann@example.com;C1;Ann;Lee"))
    campaign.run("people")
    campaign.template(purchases_template())
    campaign.file("inbox/purchases.csv", purchases(
        "A1;SKU-1;1;EUR;2026-11-02 10:00;ann@example.com;web;",
        "A2;SKU-1;2;EUR;2026-11-02 10:00;ann@example.com;web;",
    ))
    first = campaign.run("purchases")
    assert (first.counts["rows_inserted"], first.counts["rows_rejected"]) == (1, 1)
    campaign.file("inbox/purchases.csv", purchases("A3;SKU-1;3;EUR;2026-11-02 10:00;ann@example.com;web;"))
    second = campaign.run("purchases")
    assert second.counts["rows_rejected"] == 1 and second.status == "finished_with_errors"
    reasons = [r["reason"] for r in campaign.rows("import_reject", "reason", order_by="created_at, line_number")]
    assert reasons == [
        "recipient, purchased_at, sku: 'ann@example.com', '2026-11-02 10:00:00+00:00', 'SKU-1' is also on line 2 "
        "(recipient, purchased_at, sku are unique together)",
        "recipient, purchased_at, sku: 'ann@example.com', '2026-11-02 10:00:00+00:00', 'SKU-1' is also on another "
        "purchase record (recipient, purchased_at, sku are unique together)",
    ]
    assert [r["order_id"] for r in campaign.rows("purchase", "order_id")] == ["A1"]


def test_a_float_field_takes_numbers_in_the_columns_format_and_rejects_others(campaign):
    campaign.schema("extends: recipient\nfields:\n  - {name: score, kind: float}\n", "recipient_score")
    campaign.template(people_template(extra_columns=[{"source": "score", "target": "score", "format": {"decimal": ",", "thousands": " "}}]))
    campaign.file("inbox/people.csv", (
        "email;crm_id;first_name;last_name;score\n"
        "a@example.com;1;A;A;1 234,5\n"
        "b@example.com;2;B;B;-0,25\n"
        "c@example.com;3;C;C;n/a\n"
        "d@example.com;4;D;D;inf\n"
    ))
    result = campaign.run("people")
    assert result.counts["rows_inserted"] == 2 and result.counts["rows_rejected"] == 2
    assert [r["score"] for r in campaign.rows("recipient", "score")] == [1234.5, -0.25]
    reasons = [r["reason"] for r in campaign.rows("import_reject", "reason", order_by="line_number")]
    assert reasons == ["score: 'n/a' is not a number", "score: 'inf' is not a number"]
