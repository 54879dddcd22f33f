"""A data model of our own: purchases linked to recipients, and a field added to recipient.

`data_schemas/` holds a new table (`purchase`: order line, sku, an exact decimal amount,
currency, when, and a link to the buyer) and an extension of the built-in `recipient`
table (`loyalty_tier`). `job_templates/` holds the customers import, the purchases import
(each line's buyer found by e-mail; an unknown customer is rejected with its line) and
the export of November's purchases with the buyer's e-mail, name and tier.

Everything lives under examples/shop/.run (recreated at each run): the SQLite Campaign
database, the data folders and a Dagster instance. The tables are created by the first
run (`campaign-pipelines schema plan` shows what a database still needs).

    .venv/bin/python examples/shop/run.py
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
    if done.returncode not in (0,) and "--json" not in args:
        sys.exit(f"campaign-pipelines {' '.join(args)} failed: {done.stderr.strip()}")
    if "--json" in args:
        if not done.stdout.strip():
            sys.exit(f"campaign-pipelines {' '.join(args)} failed: {done.stderr.strip()}")
        return json.loads(done.stdout)
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
    inbox = DATA / "inbox" / "shop"
    inbox.mkdir(parents=True)
    for name in ("customers.csv", "purchases.csv"):
        shutil.copy(HERE / "files" / name, inbox / name)

    for template in ("shop_customers", "shop_purchases"):
        result = campaign("run", template, "--json")
        counts = ", ".join(f"{k.removeprefix('rows_')} {v}" for k, v in result.items() if k.startswith("rows_") and v)
        print(f"{template}: {result['status']} ({counts})")
        if result["status"] == "failed":
            sys.exit(1)
    print("\nrejected purchase lines:")
    campaign("rejects", result["run_id"])
    export = campaign("run", "shop_month_purchases", "--json")
    print(f"\nshop_month_purchases: {export['status']}, {export['rows_exported']} rows -> {export['output_path']}\n")
    print(Path(export["output_path"]).read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
