"""Multiple imports (issue 28, item 4): the related files of one drop loaded in link order
in one transaction, on SQLite and PostgreSQL — links resolving within the load, rejects
and counts per part, all or nothing — and the collector starting a drop when it is whole.
The template and data schemas are the example's (examples/shop_drop)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, note
from hypothesis import strategies as st

from campaign_pipelines.errors import TemplateError
from campaign_pipelines.names import FILE_KEY_TAG, FILE_TAG, PART_KEYS_TAG
from campaign_pipelines.templates import parse_template
from tests.test_cli import run_cli
from tests.test_collector import Collector
from tests.test_endpoints import remote  # noqa: F401  (the remote fixture)
from tests.test_malformed_input import assert_one_sentence, budget
from tests.test_malformed_records import _mutate_bytes

EXAMPLE = Path(__file__).parent.parent / "examples" / "shop_drop"
TABLES = ("recipient", "shop_order", "order_line", "import_reject")
# Generated drops per database (derandomized); MALFORMED_EXAMPLES raises it, as for the files.
MALFORMED = max(4, int(os.environ.get("MALFORMED_EXAMPLES", "48")) // 4)

CUSTOMERS = "email,first_name,last_name\nada@example.com,Ada,Lovelace\n Grace@Example.com ,Grace,Hopper\n"
ORDERS = "order_ref,email,ordered_at\nA-1,ada@example.com,2026-12-06 09:15\nA-2,grace@example.com,2026-12-06 11:40\nA-3,nobody@example.com,2026-12-06 12:00\n"
LINES = "order_ref,line,sku,qty,amount\nA-1,1,bk-1,1,12.50\nA-1,2,pen-7,3,4.20\nA-2,1,bk-2,2,31.00\nA-3,1,bk-1,1,12.50\nA-2,2,kbd-9,0,89.90\n"


def shop_drop(campaign, **changes) -> None:
    """The example's schemas and template (as changed), in the deployment."""
    for schema in (EXAMPLE / "data_schemas").glob("*.yaml"):
        campaign.schema(schema.read_text(encoding="utf-8"), schema.stem)
    data = yaml.safe_load((EXAMPLE / "job_templates" / "shop_drop.yaml").read_text(encoding="utf-8"))
    data.pop("collector")
    data.update(changes)
    campaign.template(yaml.safe_dump(data, sort_keys=False), "shop_drop")


def drop(campaign, folder: str = "inbox/shop/d1", manifest: bool = True, **files: str) -> str:
    contents = {"customers.csv": CUSTOMERS, "orders.csv": ORDERS, "order_lines.csv": LINES} | files
    for name, text in contents.items():
        if text is not None:
            campaign.file(f"{folder}/{name}", text)
    if manifest:
        named = {"customers": "customers.csv", "orders": "orders.csv", "order_lines": "order_lines.csv"}
        campaign.file(f"{folder}/manifest.json", json.dumps(named))
    return folder


def table_rows(campaign) -> dict[str, list[dict]]:
    return {t: campaign.rows(t, order_by="run_id, line_number" if t == "import_reject" else "id") for t in TABLES}


def test_a_drop_loads_in_link_order_with_links_within_the_load_and_counts_per_part(campaign):
    shop_drop(campaign)
    result = campaign.run("shop_drop", drop=drop(campaign))

    assert result.success, result.error
    parts = result.counts["parts"]
    # Written orders_lines, orders, customers; loaded customers, orders, order lines.
    assert list(parts) == ["customers", "orders", "order_lines"]
    assert {n: (p["rows_read"], p["rows_inserted"], p["rows_rejected"]) for n, p in parts.items()} == {
        "customers": (2, 2, 0), "orders": (3, 2, 1), "order_lines": (5, 3, 2),
    }
    assert result.counts["rows_read"] == 10 and result.counts["rows_inserted"] == 7 and result.counts["rows_rejected"] == 3
    assert result.status == "finished_with_errors"
    # Each order found its customer of the same drop, each line its order of the same drop.
    emails = {r["id"]: r["email"] for r in campaign.rows("recipient", "id", "email")}
    orders = {r["order_ref"]: emails[r["recipient_id"]] for r in campaign.rows("shop_order", "order_ref", "recipient_id")}
    assert orders == {"A-1": "ada@example.com", "A-2": "grace@example.com"}
    refs = {r["id"]: r["order_ref"] for r in campaign.rows("shop_order", "id", "order_ref")}
    lines = sorted((refs[r["shop_order_id"]], r["line_no"], r["sku"]) for r in campaign.rows("order_line", "shop_order_id", "line_no", "sku"))
    assert lines == [("A-1", 1, "BK-1"), ("A-1", 2, "PEN-7"), ("A-2", 1, "BK-2")]
    # Rejects per part: in import_reject under <template>.<part>, and a rejects file each.
    rejects = {(r["template"], r["line_number"]): r["reason"] for r in campaign.rows("import_reject", "template", "line_number", "reason", order_by="template, line_number")}
    assert rejects == {
        ("shop_drop.orders", 4): "recipient: no recipient has email 'nobody@example.com' (on_missing_link: reject)",
        ("shop_drop.order_lines", 5): "shop_order: no shop_order has order_ref 'A-3' (on_missing_link: reject)",
        ("shop_drop.order_lines", 6): "quantity: '0' must be 1 or more",
    }
    folder = campaign.data_dir / "rejects" / "shop_drop"
    assert (folder / f"{result.run_id}.orders.csv").read_text().splitlines() == ["order_ref,email,ordered_at", "A-3,nobody@example.com,2026-12-06 12:00"]
    assert (folder / f"{result.run_id}.order_lines.csv").read_text().splitlines()[1:] == ["A-3,1,bk-1,1,12.50", "A-2,2,kbd-9,0,89.90"]
    assert parts["customers"]["rejects_path"] is None
    # The rejects asset's value: every part's, the part first.
    stored = pq.read_table(folder / "last_run.parquet")
    assert stored.column_names == ["part", "line", "column", "reason", "text"]
    assert sorted(zip(stored["part"].to_pylist(), stored["line"].to_pylist())) == [("order_lines", 5), ("order_lines", 6), ("orders", 4)]
    # The same drop again converges: nothing inserted, the rows unchanged.
    again = campaign.run("shop_drop", drop="inbox/shop/d1")
    assert again.success and again.counts["rows_inserted"] == 0 and again.counts["rows_unchanged"] == 7


def test_a_failing_second_part_leaves_every_table_unchanged(campaign):
    shop_drop(campaign)
    assert campaign.run("shop_drop", drop=drop(campaign, "inbox/shop/d1")).success
    before = table_rows(campaign)
    # A new customer, and orders whose customers mostly do not exist: 2 of 3 rejected
    # (errors.max_reject_rate is 40 %); the customer (first part) must not be written either.
    orders = "order_ref,email,ordered_at\nB-1,x@example.com,2026-12-06 09:15\nB-2,y@example.com,2026-12-06 09:15\nB-3,new@example.com,2026-12-06 09:15\n"
    failed = campaign.run("shop_drop", drop=drop(
        campaign, "inbox/shop/d2", **{"customers.csv": "email,first_name,last_name\nnew@example.com,New,Person\n",
                                      "orders.csv": orders, "order_lines.csv": "order_ref,line,sku,qty,amount\nB-3,1,a,1,1.00\n"}))

    assert not failed.success and failed.status == "failed"
    assert failed.error == (
        f"the part orders ({campaign.data_dir}/inbox/shop/d2/orders.csv): 2 of 3 lines rejected (66.7%), more than "
        "errors.max_reject_rate (40.0%); nothing of the drop was written (first: line 2: recipient: no recipient has "
        "email 'x@example.com' (on_missing_link: reject))."
    )
    assert table_rows(campaign) == before
    # Its rejects are kept for the sender, per part, though nothing was loaded.
    reasons = campaign.data_dir / "rejects" / "shop_drop" / f"{failed.run_id}.orders.reasons.csv"
    assert reasons.read_text().count("no recipient has email") == 2


def test_a_part_the_validation_fails_or_a_missing_part_writes_nothing(campaign):
    shop_drop(campaign, errors={"on_error": "stop"})
    before = table_rows(campaign)
    failed = campaign.run("shop_drop", drop=drop(campaign, "inbox/shop/d1", **{"order_lines.csv": LINES.replace("12.50", "12,5O")}))
    assert not failed.success and "line 2" in failed.error and "nothing was written" in failed.error
    assert table_rows(campaign) == before

    missing = campaign.run("shop_drop", drop=drop(campaign, "inbox/shop/d2", manifest=False, **{"orders.csv": None}))
    assert not missing.success
    assert missing.error == "the drop inbox/shop/d2 has no manifest manifest.json; nothing of the drop was loaded."
    shop_drop(campaign, drop={"folder": "inbox/shop/sample"})  # no manifest: the parts' own paths
    missing = campaign.run("shop_drop", drop="inbox/shop/d2")
    assert missing.error == "the drop inbox/shop/d2 lacks its part orders (inbox/shop/d2/orders.csv): nothing of the drop was loaded."
    assert table_rows(campaign) == before


def test_a_manifest_names_each_parts_file(campaign):
    shop_drop(campaign)
    folder = "inbox/shop/20261207"
    for name, text in (("c_20261207.csv", CUSTOMERS), ("o_20261207.csv", ORDERS), ("l_20261207.csv", LINES)):
        campaign.file(f"{folder}/{name}", text)
    campaign.file(f"{folder}/manifest.json", json.dumps({"customers": "c_20261207.csv", "orders": "o_20261207.csv", "order_lines": "l_20261207.csv"}))
    result = campaign.run("shop_drop", drop=folder)
    assert result.success and result.counts["rows_inserted"] == 7

    campaign.file(f"{folder}/manifest.json", json.dumps({"customers": "c_20261207.csv", "orders": "o_20261207.csv"}))
    result = campaign.run("shop_drop", drop=folder)
    assert result.error == (
        f"{folder}/manifest.json: the drop's manifest names no file for order_lines (the parts: order_lines, orders, customers); "
        "nothing of the drop was loaded."
    )
    campaign.file(f"{folder}/manifest.json", json.dumps({"customers": "../../../etc/passwd", "orders": "o", "order_lines": "l"}))
    assert "is not in the drop's folder" in campaign.run("shop_drop", drop=folder).error


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda d: d["parts"][1]["target"].update(schema="orders"), "parts[1].target.schema: unknown schema 'orders'; imports can target:"),
        (lambda d: d["parts"][2].update(name="orders"), "parts: two parts are named 'orders'"),
        (lambda d: d.update(target={"schema": "recipient", "keys": ["email"]}), "parts: a multiple import's target are its parts'"),
        (lambda d: d["parts"][0]["source"].update(path="{date:%Y}/l.csv"), "parts[0].source.path: a file in the drop's folder"),
        (lambda d: d["parts"][1]["source"].update(path="../o.csv"), "must be a relative path under CAMPAIGN_DATA_DIR"),
        (lambda d: d.update(partitions={"daily": {"start": "2026-01-01"}}), "parts: a multiple import's partitions are its parts'"),
        (lambda d: d["drop"].pop("manifest") and d["parts"][2]["source"].pop("path"), "parts[2].source.path: required"),
    ],
)
def test_a_multiple_import_template_says_what_is_wrong_in_one_sentence(campaign, change, error):
    shop_drop(campaign)
    data = yaml.safe_load((campaign.templates_dir / "shop_drop.yaml").read_text())
    change(data)
    with pytest.raises(TemplateError) as raised:
        parse_template(yaml.safe_dump(data), "shop_drop.yaml", campaign.model)
    assert error in str(raised.value)


def test_parts_that_link_to_each_other_have_no_load_order(campaign):
    shop_drop(campaign)
    campaign.schema("""
        name: voucher
        fields: [{name: code, kind: string, max_length: 16, unique: true}]
        links: [{name: owner, table: shop_order, via: order_ref}]
        key: [code]
    """, "voucher")
    campaign.schema((EXAMPLE / "data_schemas" / "shop_order.yaml").read_text().replace(
        "links:\n", "links:\n  - {name: voucher, table: voucher, via: code}\n"), "shop_order")
    data = yaml.safe_load((campaign.templates_dir / "shop_drop.yaml").read_text())
    data["parts"][1]["columns"].append({"source": "voucher", "target": "voucher", "link": {"via": "code"}})
    data["parts"].append({"name": "vouchers", "source": {"path": "v.csv"}, "target": {"schema": "voucher", "keys": ["code"]},
                          "columns": [{"source": "code", "target": "code"}, {"source": "order", "target": "owner", "link": {"via": "order_ref"}}]})
    with pytest.raises(TemplateError, match=r"parts: orders, vouchers link to each other's tables"):
        parse_template(yaml.safe_dump(data), "shop_drop.yaml", campaign.model)


COLLECTED = {"watch": "inbox/shop/*", "archive": "archive/shop", "error": "error/shop"}


def test_the_collector_starts_a_drop_once_its_manifest_is_there_and_archives_it_whole(deployment):
    shop_drop(deployment, collector=COLLECTED)
    collector = Collector(deployment, "shop_drop")
    drop(deployment, "inbox/shop/d1", manifest=False)
    assert collector.tick() == [] and collector.tick() == []  # no manifest: the sender is not done
    drop(deployment, "inbox/shop/d1")
    assert collector.tick() == []  # seen once: may still be growing
    (request,) = collector.tick()
    assert request.tags[FILE_TAG] == "inbox/shop/d1" and request.run_key == request.tags[FILE_KEY_TAG]
    assert set(json.loads(request.tags[PART_KEYS_TAG])) == {"customers", "orders", "order_lines"}
    (result,) = collector.run([request])
    assert result.success and result.counts["rows_inserted"] == 7

    assert collector.tick() == []
    archived = deployment.data_dir / "archive" / "shop" / f"d1.{result.run_id}"
    assert sorted(p.name for p in archived.iterdir()) == ["customers.csv", "manifest.json", "order_lines.csv", "orders.csv"]
    assert not (deployment.data_dir / "inbox" / "shop" / "d1").exists()
    # The same folder filled again with new content is a new drop.
    drop(deployment, "inbox/shop/d1", **{"order_lines.csv": LINES + "A-1,3,cup,1,2.00\n"})
    collector.tick()
    (again,) = collector.tick()
    assert again.run_key != request.run_key


def test_the_collector_waits_for_every_part_without_a_manifest_and_sets_a_bad_manifest_aside(deployment, capfd):
    shop_drop(deployment, collector=COLLECTED, drop={"folder": ""})
    collector = Collector(deployment, "shop_drop")
    drop(deployment, "inbox/shop/d1", manifest=False, **{"order_lines.csv": None})
    assert collector.tick() == [] and collector.tick() == []  # order_lines.csv has not come
    drop(deployment, "inbox/shop/d1", manifest=False)
    collector.tick()
    (request,) = collector.tick()
    # A part changed between the tick and the run: the run loads nothing.
    deployment.file("inbox/shop/d1/orders.csv", ORDERS + "A-9,ada@example.com,2026-12-06 13:00\n")
    (result,) = collector.run([request])
    assert not result.success and "changed since the collector found it complete" in result.error
    assert deployment.rows("recipient") == []

    shop_drop(deployment, collector=COLLECTED)  # with a manifest, which names a file not there
    drop(deployment, "inbox/shop/d2", **{"orders.csv": None})
    capfd.readouterr()
    assert collector.tick() == [] and collector.tick() == []
    # The sensor's log (the tick's in the UI, and stderr): once, not at every tick.
    said = [line for line in capfd.readouterr().err.splitlines() if "WARNING - shop_drop: skipped" in line]
    assert len(said) == 1 and "the drop inbox/shop/d2 lacks orders (orders.csv), which its manifest names" in said[0], said


def test_one_file_read_by_two_parts_loads_two_tables(campaign):
    """Campaign's "recipients and associated events": one file, a part per table."""
    shop_drop(campaign)
    data = yaml.safe_load((campaign.templates_dir / "shop_drop.yaml").read_text())
    data["drop"] = {"folder": "inbox/shop/one"}
    data["parts"] = [
        {"name": "orders", "source": {"path": "orders.csv"}, "target": {"schema": "shop_order", "keys": ["order_ref"]},
         "columns": [{"source": "order_ref", "target": "order_ref"}, {"source": "email", "target": "recipient", "link": {"via": "email"}},
                     {"source": "ordered_at", "target": "ordered_at", "format": "%Y-%m-%d %H:%M"}]},
        {"name": "customers", "source": {"path": "orders.csv"}, "target": {"schema": "recipient", "keys": ["email"]},
         "columns": [{"source": "email", "target": "email"}]},
    ]
    campaign.template(yaml.safe_dump(data, sort_keys=False), "shop_drop")
    campaign.file("inbox/shop/one/orders.csv", ORDERS)
    result = campaign.run("shop_drop")
    assert result.success and {n: p["rows_inserted"] for n, p in result.counts["parts"].items()} == {"customers": 3, "orders": 3}


def test_the_example_runs_as_the_readme_says():
    done = subprocess.run([sys.executable, str(EXAMPLE / "run.py")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "order_lines -> order_line: inserted 4, read 6, rejected 2" in done.stdout
    assert "failed: the part orders (" in done.stdout and "nothing of the drop was written" in done.stdout
    assert "customers 3 unchanged, 0 inserted" in done.stdout


# -- generated drops (issue 28, "Bad input": a drop that lacks one of its parts, a part that fails)

PARTS = {"customers": ("customers.csv", CUSTOMERS), "orders": ("orders.csv", ORDERS), "order_lines": ("order_lines.csv", LINES)}


@st.composite
def drops(draw: st.DrawFn) -> tuple[dict[str, bytes | None], bytes | None, dict]:
    """(each file's bytes or None when absent, the manifest's bytes or None, the errors policy)."""
    files: dict[str, bytes | None] = {}
    for part, (name, text) in PARTS.items():
        data = text.encode()
        kind = draw(st.sampled_from(["as is", "as is", "mutated", "mutated", "absent", "empty"]))
        if kind == "mutated":
            for _ in range(draw(st.integers(1, 3))):
                data = _mutate_bytes(draw, data)
        files[name] = None if kind == "absent" else b"" if kind == "empty" else data
    named = {part: name for part, (name, _) in PARTS.items()}
    manifest_kind = draw(st.sampled_from(["whole", "whole", "absent", "not json", "a part short", "outside"]))
    manifest = {
        "whole": json.dumps(named).encode(), "absent": None, "not json": b"{customers: ",
        "a part short": json.dumps({k: v for k, v in named.items() if k != "orders"}).encode(),
        "outside": json.dumps({**named, "orders": "../d0/orders.csv"}).encode(),
    }[manifest_kind]
    errors = draw(st.sampled_from([{}, {"max_reject_rate": 0.2}, {"on_error": "stop"}, {"max_rejects": 1}]))
    return files, manifest, errors


def test_generated_drops_load_whole_or_not_at_all(campaign):
    shop_drop(campaign)
    template = yaml.safe_load((campaign.templates_dir / "shop_drop.yaml").read_text())
    drop(campaign, "inbox/shop/d0")  # a first drop, so that a failed one has rows to leave alone
    assert campaign.run("shop_drop", drop="inbox/shop/d0").success
    counter = iter(range(1, 10_000))

    @budget(MALFORMED)
    @given(case=drops())
    def check(case):
        files, manifest, errors = case
        campaign.template(yaml.safe_dump({**template, "errors": errors}, sort_keys=False), "shop_drop")
        folder = f"inbox/shop/d{next(counter)}"
        for name, data in files.items():
            if data is not None:
                campaign.file(f"{folder}/{name}", data)
        if manifest is not None:
            campaign.file(f"{folder}/manifest.json", manifest)
        before = table_rows(campaign)
        result = campaign.run("shop_drop", drop=folder)
        note(f"{files} {manifest} {errors} {result.status} {result.counts} {result.error}")
        assert result.status in ("finished", "finished_with_errors", "failed"), result
        if not result.success:
            assert_one_sentence(result.error)
            assert table_rows(campaign) == before
            return
        after = table_rows(campaign)
        parts = result.counts["parts"]
        for part in parts.values():
            assert len(after[part["table"]]) == len(before[part["table"]]) + part["rows_inserted"], parts
        assert len(after["import_reject"]) - len(before["import_reject"]) == result.counts["rows_rejected"]

    check()


def test_the_cli_runs_previews_and_lists_rejects_of_a_drop(sqlite_campaign, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    shop_drop(sqlite_campaign)
    drop(sqlite_campaign, "inbox/shop/d1")

    code, out, err = run_cli(capsys, "run", "shop_drop", "--file", "inbox/shop/d1/orders.csv")
    assert code == 2 and "shop_drop loads the files of a drop's folder: give it with --set drop=FOLDER, not --file." in err
    code, out, _ = run_cli(capsys, "templates", "preview", "shop_drop", "--file", "inbox/shop/d1")
    assert code == 0
    # Each part in load order, its mapped lines and what it would reject before the merge.
    assert [line for line in out.splitlines() if line.endswith(".csv")] == ["customers: customers.csv", "orders: orders.csv", "order_lines: order_lines.csv"]
    assert "5 line(s) read, 4 valid, 1 rejected (before reconciliation)" in out  # qty 0
    # A manifest that links out of the data folder is refused, as the run's read step refuses it.
    drop(sqlite_campaign, "inbox/shop/d9", manifest=False)
    (tmp_path / "elsewhere.json").write_text('{"customers": "customers.csv"}')
    (sqlite_campaign.data_dir / "inbox/shop/d9/manifest.json").symlink_to(tmp_path / "elsewhere.json")
    code, out, err = run_cli(capsys, "templates", "preview", "shop_drop", "--file", "inbox/shop/d9")
    assert code != 0 and "manifest 'inbox/shop/d9/manifest.json' is outside CAMPAIGN_DATA_DIR" in err, err

    code, out, _ = run_cli(capsys, "run", "shop_drop", "--set", "drop=inbox/shop/d1", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["parts"]["order_lines"]["rows_rejected"] == 2 and payload["rows_inserted"] == 7
    assert payload["parts"]["orders"]["rejects_path"].endswith(f"{payload['run_id']}.orders.csv")
    code, out, _ = run_cli(capsys, "rejects", payload["run_id"][:8], "--csv")
    assert out.splitlines() == [
        "part,line,column,reason,text",
        "order_lines,5,order_ref,shop_order: no shop_order has order_ref 'A-3' (on_missing_link: reject),\"A-3,1,bk-1,1,12.50\"",
        "order_lines,6,qty,quantity: '0' must be 1 or more,\"A-2,2,kbd-9,0,89.90\"",
        "orders,4,email,recipient: no recipient has email 'nobody@example.com' (on_missing_link: reject),\"A-3,nobody@example.com,2026-12-06 12:00\"",
    ]


def test_on_the_multiprocess_executor_a_failed_merge_changes_nothing_and_its_re_execution_converges(tmp_path, db_url, monkeypatch):
    """Each part's steps in processes of their own, their work data in the part's folder
    (and, on PostgreSQL, its stage table); the merge of the drop fails at its last part
    (the database refuses order_line), then `rerun --from-failure` merges it once."""
    from tests.helpers import failing_writes, stage_tables, work_folders
    from tests.test_executors import cli, deployment as executor_deployment, step_pids

    campaign = executor_deployment(tmp_path / "multiprocess", db_url, monkeypatch, "multiprocess")
    shop_drop(campaign)
    code, first = cli("run", "shop_drop", "--set", f"drop={drop(campaign, 'inbox/shop/d1')}")
    assert code == 0 and first["rows_inserted"] == 7, first
    pids = step_pids(first["run_id"])
    assert {"shop_drop_steps.read_customers", "shop_drop_steps.validate_order_lines", "shop_drop_steps.reconcile"} <= set(pids)
    assert len(set(pids.values())) == len(pids)  # a process per step
    before = table_rows(campaign)

    new = "email,first_name,last_name\nnew@example.com,New,Person\n"
    orders = "order_ref,email,ordered_at\nC-1,new@example.com,2026-12-07 09:00\n"
    folder = drop(campaign, "inbox/shop/d2", **{"customers.csv": new, "orders.csv": orders,
                                                 "order_lines.csv": "order_ref,line,sku,qty,amount\nC-1,1,cup,1,2.00\n"})
    with failing_writes(campaign.engine, "order_line"):
        code, failed = cli("run", "shop_drop", "--set", f"drop={folder}")
    assert code == 1 and "disk on fire" in failed["error"], failed
    assert table_rows(campaign) == before  # the customer and the order went back with the lines
    assert failed["run_id"] in work_folders(campaign.data_dir)
    if campaign.dialect == "postgresql":  # one stage table per part, kept for the re-execution
        assert len([t for t in stage_tables(campaign.engine) if failed["run_id"].replace("-", "") in t]) == 3

    code, again = cli("rerun", failed["run_id"], "--from-failure")
    assert code == 0 and again["rows_inserted"] == 3, again
    assert set(step_pids(again["run_id"])) == {"shop_drop_steps.reconcile", "shop_drop_steps.report_drop"}
    assert work_folders(campaign.data_dir) == [] and stage_tables(campaign.engine) == []
    emails = {r["email"] for r in campaign.rows("recipient", "email")}
    assert "new@example.com" in emails and len(campaign.rows("order_line")) == 4


def test_a_drop_on_an_endpoint_is_collected_whole_and_archived_there(campaign, remote):
    """The parts' files on the real SFTP and S3 servers: the collector lists the drop
    folders there, the run reads each part from the endpoint, the drop moves there."""
    shop_drop(campaign, collector=COLLECTED)
    data = yaml.safe_load((campaign.templates_dir / "shop_drop.yaml").read_text())
    for part in data["parts"]:
        part["source"]["endpoint"] = "partner"
    campaign.template(yaml.safe_dump(data, sort_keys=False), "shop_drop")
    named = {"customers": "customers.csv", "orders": "orders.csv", "order_lines": "order_lines.csv"}
    for name, text in (("customers.csv", CUSTOMERS), ("orders.csv", ORDERS), ("order_lines.csv", LINES)):
        remote.put(f"inbox/shop/d1/{name}", text.encode())
    collector = Collector(campaign, "shop_drop")
    assert collector.tick() == []  # no manifest yet
    remote.put("inbox/shop/d1/manifest.json", json.dumps(named).encode())
    collector.tick()
    (request,) = collector.tick()
    assert request.tags[FILE_TAG] == remote.endpoint.uri("inbox/shop/d1")
    (result,) = collector.run([request])
    assert result.success, result.error
    assert {n: p["rows_inserted"] for n, p in result.counts["parts"].items()} == {"customers": 2, "orders": 2, "order_lines": 3}
    assert collector.tick() == []
    archived = f"archive/shop/d1.{result.run_id}"
    assert remote.names(archived) == ["customers.csv", "manifest.json", "order_lines.csv", "orders.csv"]
