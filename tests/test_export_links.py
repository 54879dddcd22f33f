"""Exports across links (issue 12, item 6) on SQLite and PostgreSQL: linked columns,
filters and order across links, collections (one-to-many and many-to-many), calculated
values, date parts, labels and exact decimals, all compiled to one SQL statement."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.dialects import postgresql, sqlite

from campaign_pipelines.errors import TemplateError
from campaign_pipelines.exporting.query import build_select
from campaign_pipelines.templates import parse_template

PURCHASE = """\
name: purchase
fields:
  - {name: order_id, kind: string, max_length: 32, nullable: false, unique: true}
  - {name: sku, kind: string, max_length: 32}
  - {name: amount, kind: decimal, precision: 12, scale: 2}
  - {name: purchased_at, kind: timestamp}
  - {name: paid_on, kind: date}
links:
  - {name: recipient, table: recipient, via: email}
"""
# Two links to recipient: a collection of referrals must say which one is the owner's.
REFERRAL = """\
name: referral
fields:
  - {name: code, kind: string, max_length: 16}
links:
  - {name: referrer, table: recipient}
  - {name: referred, table: recipient}
"""

UTC = dt.UTC
NOW = dt.datetime(2025, 1, 1, tzinfo=UTC)
D = decimal.Decimal


def ts(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.fixture
def shop(campaign):
    """Three recipients (cid in no list, with no purchase), their lists, services and
    purchases; P4 belongs to nobody."""
    campaign.schema(PURCHASE, "purchase")
    campaign.schema(REFERRAL, "referral")
    model = campaign.model
    model.metadata.create_all(campaign.engine)
    t = {name: model.table(name).table for name in model.tables}
    with campaign.engine.begin() as conn:
        people = [
            ("ann@x.org", "Ann", "Lee", "F", "FR"),
            ("bob@x.org", "Bob", "Ray", "M", "BE"),
            ("cid@x.org", "Cid", "=Kay", "U", "FR"),
        ]
        ids = {}
        for email, first, last, gender, country in people:
            ids[email[:3]] = conn.execute(
                sa.insert(t["recipient"]).values(
                    email=email, first_name=first, last_name=last, gender=gender, country_code=country,
                    created_at=NOW, updated_at=NOW,
                ).returning(t["recipient"].c.id)
            ).scalar_one()
        lists = {}
        for name in ("vip", "alpha"):  # inserted out of order: collections sort by value
            lists[name] = conn.execute(
                sa.insert(t["recipient_list"]).values(name=name, created_at=NOW).returning(t["recipient_list"].c.id)
            ).scalar_one()
        conn.execute(sa.insert(t["recipient_list_member"]), [
            {"list_id": lists["vip"], "recipient_id": ids["ann"]},
            {"list_id": lists["alpha"], "recipient_id": ids["ann"]},
            {"list_id": lists["vip"], "recipient_id": ids["bob"]},
        ])
        services = {}
        for name in ("sms", "email"):
            services[name] = conn.execute(sa.insert(t["service"]).values(name=name).returning(t["service"].c.id)).scalar_one()
        conn.execute(sa.insert(t["subscription"]), [
            {"service_id": services["sms"], "recipient_id": ids["ann"], "created_at": NOW},
            {"service_id": services["email"], "recipient_id": ids["ann"], "created_at": NOW},
        ])
        conn.execute(sa.insert(t["purchase"]), [
            {"order_id": "P1", "sku": "B", "amount": D("19.90"), "purchased_at": ts(2024, 3, 5, 10, 15, 30),
             "paid_on": dt.date(2024, 3, 6), "recipient_id": ids["ann"], "created_at": NOW, "updated_at": NOW},
            {"order_id": "P2", "sku": "A", "amount": D("5.00"), "purchased_at": ts(2024, 12, 31, 23, 59, 59),
             "paid_on": None, "recipient_id": ids["ann"], "created_at": NOW, "updated_at": NOW},
            {"order_id": "P3", "sku": "A", "amount": D("-0.50"), "purchased_at": ts(2024, 6, 30, 0, 0, 1),
             "paid_on": dt.date(2024, 7, 1), "recipient_id": ids["bob"], "created_at": NOW, "updated_at": NOW},
            {"order_id": "P4", "sku": "C", "amount": D("1234567890.12"), "purchased_at": ts(2024, 1, 7, 8, 0, 0),
             "paid_on": None, "recipient_id": None, "created_at": NOW, "updated_at": NOW},
            {"order_id": "P5", "sku": "B", "amount": None, "purchased_at": None,
             "paid_on": None, "recipient_id": ids["ann"], "created_at": NOW, "updated_at": NOW},
        ])
        conn.execute(sa.insert(t["referral"]), [
            {"code": "R1", "referrer_id": ids["ann"], "referred_id": ids["bob"], "created_at": NOW, "updated_at": NOW},
            {"code": "R2", "referrer_id": ids["ann"], "referred_id": ids["cid"], "created_at": NOW, "updated_at": NOW},
        ])
    return campaign


def export(schema: str, columns: list, name: str = "out", **source) -> str:
    return yaml.safe_dump({
        "name": name, "kind": "export",
        "source": {"schema": schema, "columns": columns, **source},
        "destination": {"path": f"outbox/{name}.csv", "delimiter": ";"},
    }, sort_keys=False, allow_unicode=True)


def run_lines(campaign, text: str) -> list[str]:
    campaign.template(text)
    result = campaign.run("out")
    assert result.success, result.error
    return (campaign.data_dir / "outbox" / "out.csv").read_text(encoding="utf-8").splitlines()


def test_linked_columns_order_by_a_link_and_a_record_without_link(shop):
    columns = [{"column": "order_id"}, {"column": "recipient.email", "label": "Email"},
               {"column": "recipient.last_name", "label": "Name", "case": "upper"}, {"column": "amount"},
               {"column": "recipient.created_at", "label": "Since", "format": "%Y-%m-%dT%H:%M"},
               {"column": "recipient.email_denylisted", "label": "Stop"}]
    lines = run_lines(shop, export("purchase", columns, order_by=["recipient.last_name", "order_id"]))
    # Lee before Ray; P4 has no recipient: still exported, its linked values empty, last.
    assert lines == [
        "order_id;Email;Name;amount;Since;Stop",
        "P1;ann@x.org;LEE;19.90;2025-01-01T00:00;false",
        "P2;ann@x.org;LEE;5.00;2025-01-01T00:00;false",
        "P5;ann@x.org;LEE;;2025-01-01T00:00;false",
        "P3;bob@x.org;RAY;-0.50;2025-01-01T00:00;false",
        "P4;;;1234567890.12;;",
    ]


def test_filters_on_linked_columns(shop):
    columns = [{"column": "order_id"}, {"column": "recipient.country_code"}]
    fr = run_lines(shop, export("purchase", columns, filter={"recipient.country_code": "FR"}, order_by=["order_id"]))
    assert fr == ["order_id;recipient.country_code", "P1;FR", "P2;FR", "P5;FR"]
    orphans = run_lines(shop, export("purchase", columns, filter={"recipient.email": {"is_null": True}, "sku": "C"}))
    assert orphans == ["order_id;recipient.country_code", "P4;"]
    # A linked filter the export does not show still joins; values stay bound.
    hidden = run_lines(shop, export("purchase", [{"column": "order_id"}], filter={"recipient.gender": {"in": ["M"]}}))
    assert hidden == ["order_id", "P3"]


def test_collections_many_to_many_and_one_to_many(shop):
    columns = [
        {"column": "email"},
        {"collection": "recipient_list_member.list.name", "separator": "|", "label": "Lists"},
        {"collection": "subscription.service.name", "label": "Services"},
        {"collection": "purchase.sku", "separator": " / ", "label": "Skus"},
        {"collection": "referral.referred.first_name", "link": "referrer", "label": "Referred"},
    ]
    lines = run_lines(shop, export("recipient", columns, order_by=["email"]))
    # Distinct (ann bought B twice), sorted (alpha was inserted after vip), empty when none.
    assert lines == [
        "email;Lists;Services;Skus;Referred",
        "ann@x.org;alpha|vip;email,sms;A / B;Bob,Cid",
        "bob@x.org;vip;;A;",
        "cid@x.org;;;;",
    ]


def test_a_collection_of_decimals_and_dates_is_exact_and_sorted_by_value(shop):
    columns = [{"column": "email"}, {"collection": "purchase.amount", "separator": " "},
               {"collection": "purchase.purchased_at", "separator": "|", "label": "When"}]
    lines = run_lines(shop, export("recipient", columns, order_by=["email"]))
    assert lines == [
        "email;purchase.amount;When",
        "ann@x.org;5.00 19.90;2024-03-05 10:15:30|2024-12-31 23:59:59",
        "bob@x.org;'-0.50;2024-06-30 00:00:01",  # a collection is text: a leading - is neutralised
        "cid@x.org;;",
    ]


def test_calculated_values_date_parts_and_labels(shop):
    columns = [
        {"column": "order_id"},
        {"value": "{recipient.last_name} {recipient.first_name}", "label": "Buyer"},
        {"value": "{{{order_id}}}:{amount}:{paid_on}", "label": "Ref"},
        {"value": "shop", "label": "Origin"},
        {"value": "{{not a placeholder}}", "label": "Braces"},
        {"column": "purchased_at", "part": "month", "label": "Month"},
        {"column": "purchased_at", "part": "dow", "label": "Dow"},
        {"column": "purchased_at", "part": "doy", "label": "Doy"},
        {"column": "purchased_at", "part": "quarter", "label": "Q"},
        {"column": "purchased_at", "part": "second", "label": "S"},
        {"column": "paid_on", "part": "day", "label": "Paid day"},
        {"column": "recipient.gender", "labels": {"M": "Male", "F": "Female"}, "label": "Gender"},
        {"column": "purchased_at", "part": "dow", "labels": {0: "Sun", 2: "Tue"}, "label": "Day"},
    ]
    lines = run_lines(shop, export("purchase", columns, order_by=["order_id"]))
    assert lines == [
        "order_id;Buyer;Ref;Origin;Braces;Month;Dow;Doy;Q;S;Paid day;Gender;Day",
        # 2024-03-05 was a Tuesday (dow 2, Sunday is 0), the 65th day of a leap year.
        "P1;Lee Ann;{P1}:19.90:2024-03-06;shop;{not a placeholder};3;2;65;1;30;6;Female;Tue",
        "P2;Lee Ann;{P2}:5.00:;shop;{not a placeholder};12;2;366;4;59;;Female;Tue",
        # 2024-06-30 was a Sunday.
        "P3;Ray Bob;{P3}:-0.50:2024-07-01;shop;{not a placeholder};6;0;182;2;1;1;Male;Sun",
        # No recipient: each empty field gives an empty string; no timestamp: no parts.
        "P4; ;{P4}:1234567890.12:;shop;{not a placeholder};1;0;7;1;0;;;Sun",
        "P5;Lee Ann;{P5}::;shop;{not a placeholder};;;;;;;Female;",
    ]


def test_unmapped_labels_pass_through_and_formulas_are_neutralised(shop):
    columns = [{"column": "email"}, {"column": "gender", "labels": {"M": "Male"}},
               {"value": "{last_name}!", "label": "Calc"}, {"column": "email_denylisted", "labels": {False: "ok"}, "label": "Stop"},
               {"column": "amount", "labels": {"19.90": "promo"}, "label": "A"}]
    lines = run_lines(shop, export("recipient", columns[:4], order_by=["email"]))
    assert lines == ["email;gender;Calc;Stop", "ann@x.org;F;Lee!;ok", "bob@x.org;Male;Ray!;ok", "cid@x.org;U;'=Kay!;ok"]
    lines = run_lines(shop, export("purchase", [{"column": "order_id"}, columns[4]], order_by=["order_id"]))
    # Labels on a decimal compare exactly (19.90 on SQLite is stored as 1990); others keep their digits.
    assert lines == ["order_id;A", "P1;promo", "P2;5.00", "P3;'-0.50", "P4;1234567890.12", "P5;"]


def test_distinct_differential_and_preview_across_links(shop):
    columns = [{"column": "recipient.country_code", "label": "Country"}]
    lines = run_lines(shop, export("purchase", columns, distinct=True, order_by=["recipient.country_code"]))
    # The row whose only value is empty is kept (PostgreSQL's COPY sends it as an empty line).
    assert lines == ["Country", "BE", "FR", ""]
    text = export("purchase", [{"column": "order_id"}, {"column": "recipient.email"}], order_by=["order_id"],
                  differential={"column": "updated_at"})
    assert len(run_lines(shop, text)) == 6
    assert run_lines(shop, text) == ["order_id;recipient.email"]  # the watermark moved


def test_compiled_sql_is_one_statement_with_joins_and_bound_values(shop):
    template = parse_template(export("purchase", [
        {"column": "order_id"},
        {"column": "recipient.email"},
        {"column": "recipient.gender", "labels": {"M": "Monsieur-label", "F": "Madame-label"}},
        {"value": "{recipient.last_name} -calc- {sku}", "label": "Calc"},
    ], filter={"recipient.city": "Paris-value"}), "t.yaml", shop.model)
    recipients = parse_template(export("recipient", [
        {"column": "email"}, {"collection": "recipient_list_member.list.name", "separator": "-sep-"},
        {"collection": "purchase.sku"},
    ]), "r.yaml", shop.model)
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        query = build_select(template)
        compiled = query.compile(dialect=dialect)
        sql = str(compiled)
        assert sql.count("SELECT") == 1 and ";" not in sql
        # One join for the recipient link, used by columns, labels, calculated values and filter.
        assert sql.count("LEFT OUTER JOIN") == 1
        for value in ("Monsieur-label", "Madame-label", "-calc-", "Paris-value"):
            assert value not in sql and any(value in str(v) for v in compiled.params.values())
        compiled = build_select(recipients).compile(dialect=dialect)
        sql = str(compiled)
        assert sql.count("LEFT OUTER JOIN") == 3  # two collections, one through its other link
        assert ("string_agg" if dialect.name == "postgresql" else "group_concat") in sql
        assert "-sep-" not in sql and "-sep-" in compiled.params.values()


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"column": "recipent.email"}, "source.columns[1].column: purchase has no link 'recipent' (its links: recipient)"),
        ({"column": "recipient.emial"}, "source.columns[1].column: recipient has no column 'emial'"),
        ({"column": "sku.x"}, "source.columns[1].column: purchase.sku is a column, not a link"),
        ({"column": "recipient"}, "purchase has no column 'recipient'; recipient is a link: name one of its columns"),
        ({"column": "recipient..email"}, "is not a column path"),
        ({"column": "amount", "part": "month"}, "source.columns[1].part: a date part needs a date or timestamp column, amount is a decimal"),
        ({"column": "paid_on", "part": "hour"}, "source.columns[1].part: paid_on is a date: it has no hour"),
        ({"column": "purchased_at", "part": "week"}, "source.columns[1].part: Input should be"),
        ({"column": "purchased_at", "part": "dow", "labels": {"Sun": "x"}}, "source.columns[1].labels: 'Sun' is not a whole number"),
        ({"column": "amount", "labels": {"1.234": "x"}}, "source.columns[1].labels: '1.234' has more than 2 digits after the point"),
        ({"column": "sku", "labels": {True: "x"}}, "source.columns[1].labels: a key was read as true (YAML reads yes, no"),
        ({"column": "sku", "separator": "|"}, "source.columns[1]: separator goes with collection"),
        ({"value": "{recipient.nme} x", "label": "N"}, "source.columns[1].value: {recipient.nme}: recipient has no column 'nme'"),
        ({"value": "{sku!r}", "label": "N"}, "source.columns[1].value: {sku!r}: a placeholder holds only a column path"),
        ({"value": "{sku", "label": "N"}, "source.columns[1].value: a single { or } must be written {{ or }}"),
        ({"value": "{sku}"}, "source.columns[1]: a calculated value needs a label"),
        ({"value": "{sku}", "label": "N", "format": "%Y"}, "source.columns[1].format: a date format needs a date column, N is text"),
        ({"column": "sku", "value": "x"}, "give exactly one of column"),
    ],
)
def test_bad_column_paths_are_template_errors_naming_the_key(shop_model, column, message):
    with pytest.raises(TemplateError) as caught:
        parse_template(export("purchase", [{"column": "order_id"}, column]), "t.yaml", shop_model.model)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"collection": "recipient_list_member.lst.name"}, "source.columns[1].collection: recipient_list_member has no link 'lst'"),
        ({"collection": "recipient_list_member.list.nme"}, "source.columns[1].collection: recipient_list has no column 'nme'"),
        ({"collection": "purchases.sku"}, ("source.columns[1].collection: no table named 'purchases' (tables linking to "
                                           "recipient: purchase, recipient_list_member, referral, subscription)")),
        ({"collection": "service.name"}, "source.columns[1].collection: service has no link to recipient"),
        ({"collection": "purchase"}, "source.columns[1].collection: 'purchase' is not <table>.<column>"),
        ({"collection": "referral.code"}, ("source.columns[1].collection: referral has 2 links to recipient "
                                           "(referrer, referred); say which one holds the exported record with link:")),
        ({"collection": "referral.code", "link": "code"}, "source.columns[1].link: referral has no link 'code' to recipient"),
        ({"column": "email", "link": "x"}, "source.columns[1]: link goes with collection"),
        ({"collection": "purchase.sku", "format": "%Y"}, "source.columns[1].format: a date format needs a date column"),
    ],
)
def test_bad_collections_are_template_errors_naming_the_key(shop_model, column, message):
    with pytest.raises(TemplateError) as caught:
        parse_template(export("recipient", [{"column": "email"}, column]), "t.yaml", shop_model.model)
    assert message in str(caught.value)


def test_linked_filters_and_order_are_checked(shop_model):
    def error(**source) -> str:
        with pytest.raises(TemplateError) as caught:
            parse_template(export("purchase", [{"column": "order_id"}], **source), "t.yaml", shop_model.model)
        return str(caught.value)

    assert "source.filter.recipient.country: recipient has no column 'country'" in error(filter={"recipient.country": "FR"})
    assert "source.filter.recipient.birth_date.ge: 'soon' is not a date" in error(filter={"recipient.birth_date": {"ge": "soon"}})
    assert "source.order_by: recipient has no column 'nme'" in error(order_by=["recipient.nme"])
    assert "source.order_by: with distinct, 'recipient.email' must be an exported column" in error(
        order_by=["recipient.email"], distinct=True)
    assert "source.differential.column: 'recipient.updated_at' must be a timestamp" in error(
        differential={"column": "recipient.updated_at"})


@pytest.fixture
def shop_model(sqlite_campaign):
    """The purchase and referral tables in the data model (templates only: no rows)."""
    sqlite_campaign.schema(PURCHASE, "purchase")
    sqlite_campaign.schema(REFERRAL, "referral")
    return sqlite_campaign


def test_a_timestamp_is_written_in_utc_or_in_its_columns_timezone(shop):
    columns = [{"column": "order_id"}, {"column": "purchased_at", "label": "UTC"},
               {"column": "purchased_at", "label": "Paris", "timezone": "Europe/Paris", "format": "%Y-%m-%d %H:%M %z"}]
    lines = run_lines(shop, export("purchase", columns, filter={"order_id": {"in": ["P1", "P3"]}}, order_by=["order_id"]))
    # Stored in UTC; Paris is UTC+1 in March and UTC+2 (summer time) in June.
    assert lines == ["order_id;UTC;Paris", "P1;2024-03-05 10:15:30;2024-03-05 11:15 +0100", "P3;2024-06-30 00:00:01;2024-06-30 02:00 +0200"]


def test_an_export_timezone_is_only_for_a_timestamp(shop):
    from campaign_pipelines.templates import TemplateError, parse_template

    with pytest.raises(TemplateError, match=r"source\.columns\[0\]\.timezone: only for a timestamp column written as a timestamp"):
        parse_template(export("purchase", [{"column": "order_id", "timezone": "Europe/Paris"}]), "out.yaml", shop.model)
    with pytest.raises(TemplateError, match=r"source\.columns\[0\]\.timezone: unknown timezone 'Mars/Olympus'"):
        parse_template(export("purchase", [{"column": "purchased_at", "timezone": "Mars/Olympus"}]), "out.yaml", shop.model)
