"""Multiple exports (issue 28, item 5) on SQLite and PostgreSQL: one template writes
several files, each with its own query, columns and format, from one consistent
snapshot; a part that fails leaves no file of any part; each part's differential keeps
its own watermark."""

from __future__ import annotations

import json
import threading

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from campaign_pipelines.errors import TemplateError
from campaign_pipelines.exporting import steps
from campaign_pipelines.templates import parse_template
from tests.test_export_links import shop, shop_model  # noqa: F401  (fixtures)


def multiple(parts: list[dict], name: str = "nightly") -> str:
    return yaml.safe_dump({"name": name, "kind": "export", "parts": parts}, sort_keys=False)


PARTS = [
    {"name": "customers", "source": {"schema": "recipient", "columns": [{"column": "email"}, {"column": "last_name"}], "order_by": ["email"]},
     "destination": {"path": "outbox/customers.csv", "delimiter": ";"}},
    {"name": "orders", "source": {"schema": "purchase", "columns": [{"column": "order_id"}, {"column": "amount"},
                                                                    {"column": "recipient.email", "label": "customer"}],
                                  "order_by": ["order_id"]},
     "destination": {"path": "outbox/orders.parquet", "format": "parquet"}},
    {"name": "skus", "source": {"schema": "purchase", "columns": [{"column": "sku"}, {"aggregate": "count", "label": "n"}],
                                "group_by": ["sku"], "order_by": ["sku"]},
     "destination": {"path": "outbox/skus.jsonl", "format": "jsonl"}},
]


def test_one_template_writes_each_file_in_its_own_format(shop):  # noqa: F811
    shop.template(multiple(PARTS))
    result = shop.run("nightly")
    assert result.success, result.error
    assert result.counts["rows_exported"] == 3 + 5 + 3
    assert {n: p["rows_exported"] for n, p in result.counts["parts"].items()} == {"customers": 3, "orders": 5, "skus": 3}
    out = shop.data_dir / "outbox"
    assert (out / "customers.csv").read_text().splitlines() == ["email;last_name", "ann@x.org;Lee", "bob@x.org;Ray", "cid@x.org;'=Kay"]
    assert [r["customer"] for r in pq.read_table(out / "orders.parquet").to_pylist()] == ["ann@x.org", "ann@x.org", "bob@x.org", None, "ann@x.org"]
    assert [json.loads(line) for line in (out / "skus.jsonl").read_text().splitlines()] == [
        {"sku": "A", "n": 2}, {"sku": "B", "n": 2}, {"sku": "C", "n": 1}]


def test_the_parts_read_one_snapshot_while_another_session_writes(shop, monkeypatch):  # noqa: F811
    """Between the first part's query and the second's, another session adds a customer
    and an order: neither file sees it, so the files agree with each other. PostgreSQL
    commits it at once (REPEATABLE READ hides it); SQLite's writer waits for the export's
    read transaction to end."""
    shop.template(multiple(PARTS[:2]))
    table = shop.model.table
    written = threading.Event()
    original = steps._write
    threads = []

    def write_then_interleave(conn, template, *args):
        result = original(conn, template, *args)
        if template.name == "nightly.customers":
            def other_session() -> None:
                with shop.engine.begin() as other:
                    other.execute(sa.insert(table("recipient").table).values(email="new@x.org", created_at=sa.func.now(), updated_at=sa.func.now()))
                    other.execute(sa.insert(table("purchase").table).values(order_id="P9", created_at=sa.func.now(), updated_at=sa.func.now()))
                written.set()
            thread = threading.Thread(target=other_session)  # another connection
            thread.start()
            threads.append(thread)
            if shop.dialect == "postgresql":
                thread.join()  # committed before the second query
                assert written.is_set()
        return result

    monkeypatch.setattr(steps, "_write", write_then_interleave)
    result = shop.run("nightly")
    assert result.success, result.error
    threads[0].join()
    assert written.is_set()
    assert result.counts["parts"]["customers"]["rows_exported"] == 3 and result.counts["parts"]["orders"]["rows_exported"] == 5
    assert "P9" not in [r["order_id"] for r in pq.read_table(shop.data_dir / "outbox/orders.parquet").to_pylist()]
    assert len(shop.rows("purchase", "order_id")) == 6  # it was committed: only the snapshot did not see it


def test_a_failing_part_leaves_no_file_of_any_part(shop):  # noqa: F811
    table = shop.model.table("purchase").table
    with shop.engine.begin() as conn:
        conn.execute(sa.update(table).where(table.c.order_id == "P2").values(sku="bell\x07"))
    parts = [PARTS[0], {"name": "orders", "source": {"schema": "purchase", "columns": [{"column": "order_id"}, {"column": "sku"}]},
                        "destination": {"path": "outbox/orders.xml", "format": "xml"}}]
    shop.template(multiple(parts))
    result = shop.run("nightly")
    assert not result.success
    assert "row 2, column 'sku': the value holds a control character, which XML 1.0 cannot carry." in result.error
    assert sorted(p.name for p in (shop.data_dir / "outbox").iterdir()) == []


def test_each_part_keeps_its_own_differential_watermark(shop):  # noqa: F811
    parts = [
        {"name": "orders", "source": {"schema": "purchase", "columns": [{"column": "order_id"}], "differential": {"column": "updated_at"}},
         "destination": {"path": "outbox/orders_{run_id}.csv"}},
        {"name": "people", "source": {"schema": "recipient", "columns": [{"column": "email"}]}, "destination": {"path": "outbox/people_{run_id}.csv"}},
    ]
    shop.template(multiple(parts))
    first = shop.run("nightly")
    assert first.success, first.error
    assert first.counts["parts"]["orders"]["rows_exported"] == 5
    second = shop.run("nightly")
    assert second.success, second.error
    assert second.counts["parts"]["orders"]["rows_exported"] == 0 and second.counts["parts"]["people"]["rows_exported"] == 3


def test_a_multiple_export_is_checked_part_by_part(shop_model):  # noqa: F811
    model = shop_model.model
    bad = [PARTS[0], {**PARTS[1], "source": {**PARTS[1]["source"], "columns": [{"column": "nope"}]}}]
    with pytest.raises(TemplateError, match=r"parts\[1\]\.source\.columns\[0\]\.column: purchase has no column 'nope'"):
        parse_template(multiple(bad), "nightly.yaml", model)
    with pytest.raises(TemplateError, match=r"parts: two parts have the destination\.path 'outbox/customers\.csv'"):
        parse_template(multiple([PARTS[0], {**PARTS[1], "destination": PARTS[0]["destination"]}]), "nightly.yaml", model)
    text = yaml.safe_load(multiple(PARTS))
    text["source"] = PARTS[0]["source"]
    with pytest.raises(TemplateError, match=r"remove the top-level ones"):
        parse_template(yaml.safe_dump(text), "nightly.yaml", model)
    with pytest.raises(TemplateError, match=r"give source and destination \(one file\), or parts"):
        parse_template(yaml.safe_dump({"name": "x", "kind": "export"}), "x.yaml", model)


def test_a_preview_shows_each_parts_first_rows(shop, capsys):  # noqa: F811
    from campaign_pipelines.cli import main

    shop.template(multiple(PARTS[:2]))
    assert main(["templates", "preview", "nightly", "--rows", "2"]) == 0
    out = capsys.readouterr().out
    assert "customers: outbox/customers.csv" in out and "orders: outbox/orders.parquet" in out
    assert "ann@x.org" in out and "P2" in out and "P3" not in out


def test_the_cli_says_each_parts_file(shop, capsys):  # noqa: F811
    from campaign_pipelines.cli import main

    shop.template(multiple(PARTS[:2]))
    assert main(["run", "nightly", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["status"] == "finished" and payload["rows_exported"] == 8
    assert payload["parts"]["orders"]["output_path"].endswith("outbox/orders.parquet")
    assert payload["parts"]["customers"]["rows_exported"] == 3 and len(payload["parts"]["customers"]["sha256"]) == 64
