"""Typed export formats (issue 28, item 3, the export side) on SQLite and PostgreSQL: JSON
Lines, JSON arrays and Parquet keep each value's type — numbers, yes/no, dates, timestamps
in UTC or their column's zone, decimals exact — read back here by json and pyarrow."""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from campaign_pipelines.errors import TemplateError
from campaign_pipelines.exporting import steps
from campaign_pipelines.templates import parse_template
from tests.helpers import export_template, people_file
from tests.test_endpoints import LINES, remote, remote_import  # noqa: F401  (the remote fixture)
from tests.test_export_links import export, shop, shop_model  # noqa: F401  (fixtures)

D = decimal.Decimal
COLUMNS = [
    {"column": "order_id"},
    {"column": "amount"},
    {"column": "purchased_at"},
    {"column": "purchased_at", "label": "paris", "timezone": "Europe/Paris"},
    {"column": "paid_on"},
    {"column": "paid_on", "label": "paid_text", "format": "%d/%m/%Y"},
    {"column": "purchased_at", "part": "month", "label": "month"},
    {"column": "recipient.email_denylisted", "label": "denylisted"},
    {"column": "recipient.last_name", "label": "last_name"},
    {"column": "recipient.gender", "labels": {"F": "Female"}, "label": "gender"},
    {"value": "shop", "label": "source"},
]
P1 = {"order_id": "P1", "amount": "19.90", "purchased_at": "2024-03-05T10:15:30+00:00",
      "paris": "2024-03-05T11:15:30+01:00", "paid_on": "2024-03-06", "paid_text": "06/03/2024", "month": 3,
      "denylisted": False, "last_name": "Lee", "gender": "Female", "source": "shop"}


def run_file(campaign, destination: dict, columns: list = COLUMNS, **source) -> bytes:
    text = yaml.safe_load(export("purchase", columns, order_by=["order_id"], **source))
    text["destination"] = destination
    campaign.template(yaml.safe_dump(text, sort_keys=False))
    result = campaign.run("out")
    assert result.success, result.error
    return (campaign.data_dir / destination["path"]).read_bytes()


def test_json_lines_keep_each_values_type_and_decimals_exact(shop):
    data = run_file(shop, {"path": "outbox/out.jsonl", "format": "jsonl"})
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    assert rows[0] == P1
    assert [r["order_id"] for r in rows] == ["P1", "P2", "P3", "P4", "P5"]
    assert rows[3]["amount"] == "1234567890.12" and rows[3]["denylisted"] is None  # P4: nobody's
    assert rows[4]["purchased_at"] is None and rows[4]["month"] is None  # P5: no date


def test_a_value_a_spreadsheet_would_run_is_written_as_it_is(shop):
    """Formula neutralisation is for spreadsheets: JSON keeps Cid's last name, =Kay."""
    text = yaml.safe_load(export("recipient", [{"column": "email"}, {"column": "last_name"}], order_by=["email"]))
    text["destination"] = {"path": "outbox/people.jsonl", "format": "jsonl"}
    shop.template(yaml.safe_dump(text, sort_keys=False))
    assert shop.run("out").success
    rows = [json.loads(line) for line in (shop.data_dir / "outbox/people.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows[2] == {"email": "cid@x.org", "last_name": "=Kay"}


def test_a_json_array_gzipped_and_an_empty_one(shop):
    data = run_file(shop, {"path": "outbox/out.json.gz", "format": "json", "compression": "gzip"})
    rows = json.loads(gzip.decompress(data))
    assert len(rows) == 5 and rows[0] == P1
    empty = run_file(shop, {"path": "outbox/none.json", "format": "json"}, filter={"sku": "none"})
    assert json.loads(empty) == []


def test_parquet_has_typed_columns_exact_decimals_and_a_schema_when_empty(shop):
    data = run_file(shop, {"path": "outbox/out.parquet", "format": "parquet"})
    table = pq.read_table(pa.BufferReader(data))
    types = {f.name: f.type for f in table.schema}
    assert types["amount"] == pa.decimal128(12, 2)
    assert types["purchased_at"] == pa.timestamp("us", "UTC") and types["paris"] == pa.timestamp("us", "Europe/Paris")
    assert types["paid_on"] == pa.date32() and types["month"] == pa.int64() and types["denylisted"] == pa.bool_()
    assert pa.types.is_string(types["paid_text"]) or pa.types.is_large_string(types["paid_text"])
    rows = table.to_pylist()
    assert [r["amount"] for r in rows] == [D("19.90"), D("5.00"), D("-0.50"), D("1234567890.12"), None]
    assert rows[0]["purchased_at"] == dt.datetime(2024, 3, 5, 10, 15, 30, tzinfo=dt.UTC)
    assert rows[0]["paid_on"] == dt.date(2024, 3, 6) and rows[0]["last_name"] == "Lee" and rows[0]["source"] == "shop"
    empty = pq.read_table(pa.BufferReader(run_file(shop, {"path": "outbox/none.parquet", "format": "parquet"}, filter={"sku": "none"})))
    assert empty.num_rows == 0 and empty.schema.field("amount").type == pa.decimal128(12, 2)


def test_a_grouped_export_to_parquet_keeps_its_sums_exact(shop):
    columns = [{"column": "sku"}, {"aggregate": "count", "label": "n"}, {"column": "amount", "aggregate": "sum", "label": "revenue"}]
    text = yaml.safe_load(export("purchase", columns, group_by=["sku"]))
    text["destination"] = {"path": "outbox/by_sku.parquet", "format": "parquet"}
    shop.template(yaml.safe_dump(text, sort_keys=False))
    assert shop.run("out").success
    table = pq.read_table(shop.data_dir / "outbox/by_sku.parquet")
    assert table.schema.field("revenue").type == pa.decimal128(18, 2)
    assert table.to_pylist() == [{"sku": "A", "n": 2, "revenue": D("4.50")}, {"sku": "B", "n": 2, "revenue": D("19.90")},
                                 {"sku": "C", "n": 1, "revenue": D("1234567890.12")}]


def test_rows_read_in_many_chunks_make_one_array_and_one_parquet_file(shop, monkeypatch):
    """A chunk per row or two (SQLite's cursor, PostgreSQL's COPY blocks): the JSON array's
    separators and the Parquet row groups join them into the same rows."""
    whole_json = json.loads(run_file(shop, {"path": "outbox/whole.json", "format": "json"}))
    whole_parquet = pq.read_table(shop.data_dir / run_parquet(shop, "whole.parquet")).to_pylist()
    monkeypatch.setattr(steps, "CHUNK_ROWS", 2)
    monkeypatch.setattr(steps, "_copy_blocks", functools.partial(steps._copy_blocks, block_bytes=1))
    assert json.loads(run_file(shop, {"path": "outbox/chunks.json", "format": "json"})) == whole_json
    chunked = pq.ParquetFile(shop.data_dir / run_parquet(shop, "chunks.parquet"))
    assert chunked.metadata.num_row_groups >= 3
    assert chunked.read().to_pylist() == whole_parquet


def run_parquet(campaign, name: str) -> str:
    run_file(campaign, {"path": f"outbox/{name}", "format": "parquet"})
    return f"outbox/{name}"


def test_a_parquet_export_is_delivered_whole_to_an_endpoint(campaign, remote):
    remote.put("inbox/people.csv", people_file(*LINES).encode())
    remote_import(campaign)
    assert campaign.run("people").success
    campaign.template(export_template(destination={"path": "outbox/emails.parquet", "endpoint": "partner", "format": "parquet"}))
    result = campaign.run("out")
    assert result.success, result.error
    table = pq.read_table(pa.BufferReader(remote.get("outbox/emails.parquet")))
    assert table.to_pylist() == [{"email": "ann@x.org"}, {"email": "cy@x.org"}]
    assert remote.names("outbox") == ["emails.parquet"]


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ({"format": "json", "encoding": "latin-1"}, "destination: encoding: JSON is written in UTF-8, not iso8859-1"),
        ({"format": "parquet", "compression": "gzip"}, "destination: compression: Parquet compresses its own pages (zstd)"),
        ({"format": "xlsx"}, "destination.format: Input should be"),
    ],
)
def test_typed_format_mistakes_are_template_errors(shop_model, destination, message):
    text = yaml.safe_load(export("purchase", [{"column": "order_id"}]))
    text["destination"] = {"path": "outbox/x", **destination}
    with pytest.raises(TemplateError) as caught:
        parse_template(yaml.safe_dump(text), "t.yaml", shop_model.model)
    assert message in str(caught.value)
