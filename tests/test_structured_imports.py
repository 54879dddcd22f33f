"""JSON Lines, JSON arrays and Parquet imports (issue 28, item 3) on SQLite and PostgreSQL:
round trips with the exports of the same formats (decimals and timestamps exact), key
paths into nested records, typed Parquet columns, and every record either loaded or
rejected with its line or record number — the rejects file in the input's format."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from campaign_pipelines.errors import TemplateError
from campaign_pipelines.templates import parse_template
from tests.test_endpoints import remote  # noqa: F401  (the remote fixture)
from tests.test_export_links import export, shop, shop_model  # noqa: F401  (fixtures)

D = decimal.Decimal
UTC = dt.UTC
PURCHASE_COLUMNS = ["order_id", "sku", "amount", "purchased_at", "paid_on", "recipient_id"]


def import_yaml(path: str, fmt: str, columns: list[dict], table: str = "purchase", keys=("order_id",), **source) -> str:
    return yaml.safe_dump({
        "name": "load", "kind": "import",
        "source": {"path": path, "format": fmt, **source},
        "target": {"schema": table, "keys": list(keys)},
        "columns": columns,
    }, sort_keys=False, allow_unicode=True)


ROUND_TRIP = [
    {"source": "order_id", "target": "order_id"},
    {"source": "sku", "target": "sku"},
    {"source": "amount", "target": "amount"},
    {"source": "purchased_at", "target": "purchased_at"},
    {"source": "paid_on", "target": "paid_on"},
    {"source": "recipient", "target": "recipient", "link": {"via": "email"}},
]


def purchases(campaign) -> list[tuple]:
    table = campaign.model.table("purchase").table
    with campaign.engine.connect() as conn:
        rows = conn.execute(sa.select(*(table.c[c] for c in PURCHASE_COLUMNS)).order_by(table.c.order_id)).all()
    # SQLite hands back a timestamp written by the importer without its zone (UTC).
    return [tuple(v.replace(tzinfo=UTC) if isinstance(v, dt.datetime) else v for v in r) for r in rows]


def run_import(campaign, text: str):
    campaign.template(text)
    return campaign.run("load")


def reasons(campaign, result) -> dict[int, str]:
    rows = campaign.rows("import_reject", "run_id", "line_number", "reason", order_by="line_number")
    return {r["line_number"]: r["reason"] for r in rows if r["run_id"] == result.run_id}


def fails_in_one_sentence(campaign, message: str) -> None:
    """Run `load`: it fails with one sentence matching `message`, and the purchases are unchanged."""
    before = purchases(campaign)
    result = campaign.run("load")
    assert not result.success
    assert re.search(message, result.error), result.error
    assert "\n" not in result.error and "Traceback" not in result.error
    assert purchases(campaign) == before


def rejects_file(campaign, result):
    (path,) = [p for p in (campaign.data_dir / "rejects").rglob(f"{result.run_id}.*") if not p.name.endswith(".reasons.csv")]
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet"])
def test_an_export_reimports_to_identical_rows(shop, fmt):  # noqa: F811
    columns = [{"column": c} for c in ("order_id", "sku", "amount", "purchased_at", "paid_on")]
    columns.append({"column": "recipient.email", "label": "recipient"})
    text = yaml.safe_load(export("purchase", columns, order_by=["order_id"]))
    text["destination"] = {"path": f"outbox/out.{fmt}", "format": fmt}
    shop.template(yaml.safe_dump(text, sort_keys=False))
    assert shop.run("out").success
    before = purchases(shop)
    assert before[0][2] == D("19.90") and before[3][2] == D("1234567890.12")
    with shop.engine.begin() as conn:
        conn.execute(sa.delete(shop.model.table("purchase").table))
    result = run_import(shop, import_yaml(f"outbox/out.{fmt}", fmt, ROUND_TRIP))
    assert result.success, result.error
    assert result.counts["rows_inserted"] == 5 and result.counts["rows_rejected"] == 0
    assert purchases(shop) == before


def test_json_lines_read_key_paths_exact_numbers_and_reject_what_is_not_an_object(shop):  # noqa: F811
    lines = [
        '{"order": {"id": "J1", "sku": "A"}, "total": 19.90, "at": "2024-03-05T11:15:30+01:00", "who": {"email": "ann@x.org"}}',
        '{"order": {"id": "J2", "sku": "B"}, "total": 1234567890.12, "at": "2024-03-05T10:15:30.25Z"}',
        "",
        '{"order": {"id": "J3"}, "total": "12,5"}',
        '["not", "an", "object"]',
        '{"order": {"id": "J4"}, "total": 1',
        '{"order": {"id": "J5", "sku": "C"}, "total": null, "at": "2024-06-30T00:00:01", "who": {"email": "bob@x.org"}}',
    ]
    shop.file("in/orders.jsonl", "\n".join(lines) + "\n")
    columns = [
        {"source": "order.id", "target": "order_id"}, {"source": "order.sku", "target": "sku"},
        {"source": "total", "target": "amount"}, {"source": "at", "target": "purchased_at", "timezone": "Europe/Paris"},
        {"source": "who.email", "target": "recipient", "link": {"via": "email"}}, {"target": "paid_on", "value": "2024-01-01"},
    ]
    result = run_import(shop, import_yaml("in/orders.jsonl", "jsonl", columns))
    assert result.success, result.error
    assert result.counts["rows_read"] == 6 and result.counts["rows_inserted"] == 3 and result.counts["rows_rejected"] == 3
    stored = {r[0]: r for r in purchases(shop)}
    assert stored["J1"][2] == D("19.90") and stored["J1"][3] == dt.datetime(2024, 3, 5, 10, 15, 30, tzinfo=UTC)
    assert stored["J2"][2] == D("1234567890.12") and stored["J2"][3] == dt.datetime(2024, 3, 5, 10, 15, 30, 250000, tzinfo=UTC)
    # No offset: in the column's time zone (Paris, summer time), stored in UTC.
    assert stored["J5"][3] == dt.datetime(2024, 6, 29, 22, 0, 1, tzinfo=UTC) and stored["J5"][2] is None
    why = reasons(shop, result)
    assert why[4] == "amount: '12,5' is not a decimal number with at most 10 digits before the point and 2 after"
    assert why[5] == "the record is not a JSON object (it is an array)"
    assert why[6].startswith("the line is not valid JSON (Expecting ',' delimiter at character")
    # The rejects file holds the three lines as they were: fix them, import it again.
    rejected = rejects_file(shop, result).read_text(encoding="utf-8").splitlines()
    assert rejected == [lines[3], lines[4], lines[5]]


def test_a_json_array_under_a_key_path_with_its_rejects_file_in_the_same_shape(shop):  # noqa: F811
    document = {"meta": {"count": 3}, "data": {"items": [
        {"order_id": "A1", "amount": 5, "paid_on": "2024-07-01"},
        "not a record",
        {"order_id": "A2", "amount": 5.001, "paid_on": "2024-07-02"},
        {"order_id": "A3", "amount": "7.5", "paid_on": None},
    ]}}
    shop.file("in/orders.json", json.dumps(document))
    columns = [{"source": "order_id", "target": "order_id"}, {"source": "amount", "target": "amount"},
               {"source": "paid_on", "target": "paid_on"}]
    result = run_import(shop, import_yaml("in/orders.json", "json", columns, records="data.items"))
    assert result.success, result.error
    assert result.counts["rows_read"] == 4 and result.counts["rows_inserted"] == 2
    assert reasons(shop, result) == {
        2: "the record is not a JSON object (it is a string)",
        3: "amount: '5.001' is not a decimal number with at most 10 digits before the point and 2 after",
    }
    stored = {r[0]: r[2] for r in purchases(shop)}
    assert stored["A1"] == D("5.00") and stored["A3"] == D("7.50")
    again = json.loads(rejects_file(shop, result).read_text(encoding="utf-8"))
    assert again == {"data": {"items": ["not a record", {"order_id": "A2", "amount": "5.001", "paid_on": "2024-07-02"}]}}


@pytest.mark.parametrize(
    ("content", "records", "message"),
    [
        ('{"data": {"items": [{"order_id": "A1"}, {"order_id": ', "data.items",
         r"file .*orders\.json is not valid JSON after its record 1 \(.*\); nothing was loaded\."),
        ('{"data": {"rows": []}}', "data.items",
         r"file .*orders\.json has no array of records at 'data\.items' \(source\.records\): 'data' has the keys rows, not 'items'\."),
        ('{"items": [{"order_id": "A1"}]}', None,
         r"file .*orders\.json has no array of records at its root; set source\.records to the key path of the records' array \(its top-level keys: items\)\."),
        ('[{"order_id": "A1"}]', "items",
         r"file .*orders\.json: its root is an array, not an object with 'items'; remove source\.records"),
        ('{"data": {"items": [{"order_id": "A1"}]}}', "data",
         r"file .*orders\.json has no array of records at 'data' \(source\.records\): it holds an object, not an array \(its keys: items\)\."),
    ],
    ids=["truncated", "wrong-path", "object-root", "array-root", "path-to-an-object"],
)
def test_a_json_document_that_cannot_be_read_fails_in_one_sentence_and_loads_nothing(shop, content, records, message):  # noqa: F811
    shop.file("in/orders.json", content)
    source = {"records": records} if records else {}
    shop.template(import_yaml("in/orders.json", "json", [{"source": "order_id", "target": "order_id"}], **source))
    fails_in_one_sentence(shop, message)


def test_an_empty_json_array_is_an_empty_delta(shop):  # noqa: F811
    shop.file("in/orders.json", '{"data": {"items": []}}')
    result = run_import(shop, import_yaml("in/orders.json", "json", [{"source": "order_id", "target": "order_id"}], records="data.items"))
    assert result.success, result.error
    assert result.counts.get("rows_read", 0) == 0


def parquet_file(campaign, table: pa.Table, name: str = "in/orders.parquet") -> None:
    path = campaign.data_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_parquet_typed_columns_fill_fields_exactly_and_misfit_values_are_rejected_by_row(shop):  # noqa: F811
    table = pa.table({
        "id": pa.array(["Q1", "Q2", "Q3", "Q4"]),
        "price": pa.array([D("19.90"), D("123456789012.00"), D("0.5"), None], pa.decimal128(20, 2)),
        "at": pa.array([dt.datetime(2024, 3, 5, 11, 15, 30, 123456)] * 4, pa.timestamp("us")),
        "day": pa.array([dt.date(2024, 3, 6), None, dt.date(2024, 1, 1), dt.date(2024, 1, 2)], pa.date32()),
        "extra": pa.array([{"sku": "A"}, {"sku": "B"}, {"sku": None}, {"sku": "D"}]),
        "unused": pa.array([b"x"] * 4, pa.binary()),
    })
    parquet_file(shop, table)
    columns = [{"source": "id", "target": "order_id"}, {"source": "price", "target": "amount"},
               {"source": "at", "target": "purchased_at", "timezone": "Europe/Paris"}, {"source": "day", "target": "paid_on"},
               {"source": "extra.sku", "target": "sku"}]
    result = run_import(shop, import_yaml("in/orders.parquet", "parquet", columns))
    assert result.success, result.error
    assert result.counts["rows_inserted"] == 3
    assert reasons(shop, result) == {
        2: "amount: '123456789012.00' is not a decimal number with at most 10 digits before the point and 2 after"
    }
    stored = {r[0]: r for r in purchases(shop)}
    assert stored["Q1"][1:4] == ("A", D("19.90"), stored["Q1"][3])
    assert stored["Q1"][3] == dt.datetime(2024, 3, 5, 10, 15, 30, 123456, tzinfo=UTC)
    assert stored["Q3"][2] == D("0.50") and stored["Q3"][4] == dt.date(2024, 1, 1) and stored["Q4"][2] is None
    # The rejects file: a Parquet file of the rejected row, its mapped columns typed as read.
    rejected = pq.read_table(rejects_file(shop, result))
    assert rejected.schema.field("price").type == pa.decimal128(20, 2)
    assert rejected.to_pylist() == [{"id": "Q2", "price": D("123456789012.00"), "at": dt.datetime(2024, 3, 5, 11, 15, 30, 123456),
                                     "day": None, "extra": {"sku": "B"}}]


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (pa.array([dt.date(2024, 1, 1)]), r"file .*orders\.parquet: column 'v' holds date values \(date32\[day\]\), which cannot fill amount \(a decimal\) \(columns\[1\]\)\."),
        (pa.array([{"a": 1}]), r"column 'v' is a struct; map one of its fields by key path \(v\.a\)"),
    ],
    ids=["date-into-decimal", "struct"],
)
def test_a_parquet_column_that_cannot_fit_its_field_is_refused_in_one_sentence(shop, column, message):  # noqa: F811
    parquet_file(shop, pa.table({"id": ["Q1"], "v": column}))
    result = run_import(shop, import_yaml("in/orders.parquet", "parquet", [{"source": "id", "target": "order_id"}, {"source": "v", "target": "amount"}]))
    assert not result.success
    assert re.search(message, result.error), result.error


def test_a_corrupted_or_missing_parquet_column_is_one_sentence(shop):  # noqa: F811
    shop.file("in/orders.parquet", b"PAR1 this is not a parquet file")
    result = run_import(shop, import_yaml("in/orders.parquet", "parquet", [{"source": "id", "target": "order_id"}]))
    assert not result.success and "is not a Parquet file" in result.error and "\n" not in result.error
    parquet_file(shop, pa.table({"identifier": ["Q1"]}))
    result = run_import(shop, import_yaml("in/orders.parquet", "parquet", [{"source": "id", "target": "order_id"}]))
    assert not result.success
    assert "has no column 'id' (columns[0].source); its columns are: identifier." in result.error


def test_keyed_formats_refuse_positions_and_stray_keys(shop_model):  # noqa: F811
    with pytest.raises(TemplateError, match=r"columns\[0\]\.source: a jsonl field is named by its key path"):
        parse_template(import_yaml("in/x.jsonl", "jsonl", [{"source": 1, "target": "order_id"}]), "load.yaml", shop_model.model)
    with pytest.raises(TemplateError, match=r"records is only for format: json"):
        parse_template(import_yaml("in/x.jsonl", "jsonl", [{"source": "a", "target": "order_id"}], records="data"), "load.yaml", shop_model.model)
    with pytest.raises(TemplateError, match=r"a parquet file compresses its own content"):
        parse_template(import_yaml("in/x.parquet", "parquet", [{"source": "a", "target": "order_id"}], compression="gzip"), "load.yaml", shop_model.model)


def test_a_json_document_and_a_parquet_file_are_read_from_an_endpoint(campaign, remote):  # noqa: F811
    document = {"people": [{"email": "ann@x.org"}, {"email": "not-an-email"}]}
    remote.put("inbox/people.json", json.dumps(document).encode())
    email = [{"source": "email", "target": "email"}]
    campaign.template(import_yaml("inbox/people.json", "json", email, table="recipient", keys=("email",), records="people", endpoint="partner"))
    result = campaign.run("load")
    assert result.success, result.error
    assert (result.counts["rows_read"], result.counts["rows_inserted"], result.counts["rows_rejected"]) == (2, 1, 1)
    assert json.loads(rejects_file(campaign, result).read_text(encoding="utf-8")) == {"people": [{"email": "not-an-email"}]}
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table({"email": ["bob@x.org"]}), buffer)
    remote.put("inbox/people.parquet", buffer.getvalue().to_pybytes())
    campaign.template(import_yaml("inbox/people.parquet", "parquet", email, table="recipient", keys=("email",), endpoint="partner"))
    result = campaign.run("load")
    assert result.success, result.error
    assert [r["email"] for r in campaign.rows("recipient", "email", order_by="email")] == ["ann@x.org", "bob@x.org"]


def test_an_xml_document_and_a_workbook_are_read_from_an_endpoint(campaign, remote):  # noqa: F811
    import openpyxl

    remote.put("inbox/people.xml", b'<?xml version="1.0"?><people><p email="cy@x.org"/><p email="bad"/></people>')
    campaign.template(import_yaml("inbox/people.xml", "xml", [{"source": "@email", "target": "email"}], table="recipient",
                                  keys=("email",), records="people/p", endpoint="partner"))
    result = campaign.run("load")
    assert result.success, result.error
    assert (result.counts["rows_read"], result.counts["rows_inserted"], result.counts["rows_rejected"]) == (2, 1, 1)
    book = openpyxl.Workbook()
    book.active.append(["email"])
    book.active.append(["dee@x.org"])
    buffer = io.BytesIO()
    book.save(buffer)
    remote.put("inbox/people.xlsx", buffer.getvalue())
    campaign.template(import_yaml("inbox/people.xlsx", "xlsx", [{"source": "email", "target": "email"}], table="recipient",
                                  keys=("email",), endpoint="partner"))
    result = campaign.run("load")
    assert result.success, result.error
    assert [r["email"] for r in campaign.rows("recipient", "email", order_by="email")] == ["cy@x.org", "dee@x.org"]
