"""A multiple import: the web shop's nightly drop of three related files, loaded as one.

`data_schemas/` holds two tables of our own: `shop_order` (linked to the recipient who
ordered) and `order_line` (linked to its order). `job_templates/shop_drop.yaml` loads a
drop folder's customers, orders and order lines in link order, in one transaction: an
order finds its customer of the same drop, a line its order. The sample drop
(`files/sample/`, with the manifest naming its files) loads with three rejects, kept per
part; then a second drop whose orders mostly name unknown customers fails its reject
policy, and nothing of it is written — not even its new customer.

Everything lives under examples/shop_drop/.run (recreated at each run): the SQLite
Campaign database, the data folders and a Dagster instance.

    .venv/bin/python examples/shop_drop/run.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLI = Path(sys.executable).parent / "campaign-pipelines"
ROOT = HERE / ".run"
DATA = ROOT / "data"


def campaign(*args: str) -> dict:
    done = subprocess.run([str(CLI), *args], capture_output=True, text=True, env=os.environ)
    if "--json" in args:
        if not done.stdout.strip():
            sys.exit(f"campaign-pipelines {' '.join(args)} failed: {done.stderr.strip()}")
        return json.loads(done.stdout)
    if done.returncode != 0:
        sys.exit(f"campaign-pipelines {' '.join(args)} failed: {done.stderr.strip()}")
    print(done.stdout.rstrip())
    return {}


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    (ROOT / "dagster").mkdir(parents=True)
    (ROOT / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ.update({
        "DAGSTER_HOME": str(ROOT / "dagster"),
        "CAMPAIGN_DB_URL": f"sqlite:///{ROOT / 'campaign.db'}",
        "CAMPAIGN_DATA_DIR": str(DATA),
        "CAMPAIGN_TEMPLATES_DIR": str(HERE / "job_templates"),
        "CAMPAIGN_SCHEMAS_DIR": str(HERE / "data_schemas"),
    })
    shutil.copytree(HERE / "files" / "sample", DATA / "inbox" / "shop" / "sample")

    result = campaign("run", "shop_drop", "--json")
    print(f"shop_drop: {result['status']}")
    for part, counts in result["parts"].items():
        shown = ", ".join(f"{k.removeprefix('rows_')} {v}" for k, v in counts.items() if k.startswith("rows_") and v)
        print(f"  {part} -> {counts['table']}: {shown}")
    print("\nrejected lines, by part:")
    campaign("rejects", result["run_id"])

    # A second drop: one new customer, and orders whose customers are mostly unknown.
    bad = DATA / "inbox" / "shop" / "20261207"
    bad.mkdir(parents=True)
    (bad / "customers.csv").write_text("email,first_name,last_name\nnew@example.com,New,Customer\n")
    (bad / "orders.csv").write_text(
        "order_ref,email,ordered_at\nB-1,x@example.com,2026-12-07 09:00\nB-2,y@example.com,2026-12-07 09:30\n"
        "B-3,new@example.com,2026-12-07 10:00\n"
    )
    (bad / "order_lines.csv").write_text("order_ref,line,sku,qty,amount\nB-3,1,bk-001,1,12.50\n")
    (bad / "manifest.json").write_text(json.dumps({"customers": "customers.csv", "orders": "orders.csv", "order_lines": "order_lines.csv"}))
    failed = campaign("run", "shop_drop", "--set", "drop=inbox/shop/20261207", "--json")
    print(f"\nshop_drop (drop 20261207): {failed['status']}: {failed['error']}")
    customers = campaign("run", "shop_drop", "--json")["parts"]["customers"]
    print(f"the sample drop again: customers {customers['rows_unchanged']} unchanged, {customers['rows_inserted']} inserted "
          "(new@example.com was not written)")


if __name__ == "__main__":
    main()
