"""Multiple import (issue 28, item 4): a drop of N customers and 3N order lines loaded by
one multiple import, against the two single imports run one after the other.

    .venv/bin/python bench/drop.py --customers 1000000 --rounds 3

The files (untimed, reused when present): `customers.csv` (email, first_name, last_name)
and `order_lines.csv` (line_ref, email of one of the customers, sku, qty, amount), in
one drop folder. The data model adds `bench_order_line` (bench/drop_schemas/: a unique
`line_ref`, a link to the recipient by e-mail, an exact decimal). The templates
(bench/drop_templates/) map the same columns: `bench_drop_customers` and
`bench_drop_lines` read one file each, `bench_drop` has the two as parts.

Each round, on PostgreSQL, in the order rotated by one each round:
  - singles: a fresh schema; `campaign-pipelines run bench_drop_customers`, then
    `… bench_drop_lines` (the lines' links find the customers the first run committed);
  - multiple: a fresh schema; `campaign-pipelines run bench_drop` (both parts, one
    transaction).
Each run is measured as bench/run.py measures ours (wall, CPU seconds of our process
tree, PostgreSQL's CPU, WAL and temporary bytes, peak RSS); the singles' figures are the
sums of their two runs (peak RSS: the larger). Both must insert every row and store the
same values (a hash of both tables). Reported: medians (range) and the ratio multiple /
singles of the medians and round by round. Saves bench/results/drop.json and drop.md, the
section of RESULTS.md (`--render` writes them again from the saved JSON).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import figures  # noqa: E402
import run  # noqa: E402
from purchases import code_fingerprint  # noqa: E402

SCHEMA = "bench_drop"
WORK = Path("/tmp/campaign-bench-drop")
TEMPLATES = BENCH / "drop_templates"
SCHEMAS = BENCH / "drop_schemas"
FIGURES = ("seconds", "cpu_s", "cpu_pg_s", "wal_bytes", "temp_bytes", "peak_rss")
SUMMED = ("seconds", "cpu_s", "cpu_pg_s", "wal_bytes", "temp_bytes", "machine_busy_s")
STORED = {
    "recipient": "SELECT count(*) || ':' || md5(string_agg(concat_ws('|', email, first_name, last_name), E'\\n' ORDER BY email)) FROM recipient",
    "bench_order_line": "SELECT count(*) || ':' || md5(string_agg(concat_ws('|', l.line_ref, r.email, l.sku, l.quantity, l.amount), E'\\n' "
                        "ORDER BY l.line_ref)) FROM bench_order_line l JOIN recipient r ON r.id = l.recipient_id",
}
FIRST = ["Ann", "Bob", "Zoé", "Łukasz", "Mia", "Noah", "Ava", "Liam"]
LAST = ["Lee", "Ray", "Diaz", "Nowak", "Smith", "Martin", "Rossi", "Kim"]


def write_files(folder: Path, customers: int) -> dict:
    """The drop's two files, deterministic for a size; reused when their manifest matches."""
    manifest_path = folder / "bench_manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("customers") == customers and all((folder / f).exists() for f in ("customers.csv", "order_lines.csv")):
            return manifest | {"reused": True}
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(28)
    with open(folder / "customers.csv", "w", encoding="utf-8", newline="") as out:
        out.write("email,first_name,last_name\n")
        out.writelines(f"c{i:08d}@example.com,{FIRST[i % 8]},{LAST[(i // 8) % 8]}\n" for i in range(customers))
    lines = 3 * customers
    with open(folder / "order_lines.csv", "w", encoding="utf-8", newline="") as out:
        out.write("line_ref,email,sku,qty,amount\n")
        for start in range(0, lines, 100_000):
            out.writelines(
                f"L{j:09d},c{rng.randrange(customers):08d}@example.com,SKU-{j % 997:04d},{1 + j % 5},{(j % 10_000) / 100:.2f}\n"
                for j in range(start, min(start + 100_000, lines))
            )
    manifest = {"customers": customers, "order_lines": lines,
                "bytes": sum((folder / f).stat().st_size for f in ("customers.csv", "order_lines.csv"))}
    manifest_path.write_text(json.dumps(manifest))
    return manifest | {"reused": False}


def one_run(args: argparse.Namespace, template: str, extra: list[str], label: str) -> dict:
    env = {
        **os.environ,
        "CAMPAIGN_DB_URL": run.pg_url(args, args.schema),
        "CAMPAIGN_DATA_DIR": str(args.work / "data"),
        "CAMPAIGN_TEMPLATES_DIR": str(TEMPLATES),
        "CAMPAIGN_SCHEMAS_DIR": str(SCHEMAS),
        "DAGSTER_HOME": str(args.home),
    }
    cmd = [str(run.VENV_BIN / "campaign-pipelines"), "run", template, *extra, "--json", "--verbose"]
    m = run.measure(cmd, env, args.work / "runs" / label, server=run.server_window(args))
    run.fail_if(m["returncode"] == 0, f"{template} ({label})", m)
    payload = json.loads(Path(m["stdout"]).read_text().strip().splitlines()[-1])
    m["counts"] = {k: payload.get(k, 0) for k in ("rows_read", "rows_inserted", "rows_rejected")}
    m["steps"] = run.step_durations(Path(m["stderr"]))
    m["events"] = figures.events_stored(payload["run_id"], env["DAGSTER_HOME"])
    return m


def fresh(args: argparse.Namespace) -> None:
    os.environ["CAMPAIGN_SCHEMAS_DIR"] = str(SCHEMAS)  # run.campaign_model(): the recipient and bench_order_line tables
    run.prepare_pg(args, args.schema, "first")


def stored(args: argparse.Namespace) -> dict[str, str]:
    return {table: run.psql(args, sql, args.schema) for table, sql in STORED.items()}


def run_singles(args: argparse.Namespace, r: int) -> dict:
    fresh(args)
    customers = one_run(args, "bench_drop_customers", ["--file", "drop/customers.csv"], f"singles_customers_r{r}")
    lines = one_run(args, "bench_drop_lines", ["--file", "drop/order_lines.csv"], f"singles_lines_r{r}")
    m = {k: customers.get(k, 0) + lines.get(k, 0) for k in SUMMED}
    m["peak_rss"] = max(customers["peak_rss"], lines["peak_rss"])
    m["inserted"] = customers["counts"]["rows_inserted"] + lines["counts"]["rows_inserted"]
    m["parts"] = {"customers": _slim(customers), "order_lines": _slim(lines)}
    m["stored"] = stored(args)
    return m


def run_multiple(args: argparse.Namespace, r: int) -> dict:
    fresh(args)
    drop = one_run(args, "bench_drop", ["--set", "drop=drop"], f"multiple_r{r}")
    m = {k: drop.get(k, 0) for k in SUMMED} | {"peak_rss": drop["peak_rss"], "inserted": drop["counts"]["rows_inserted"]}
    m["steps"] = drop["steps"]
    m["stored"] = stored(args)
    return m


def _slim(m: dict) -> dict:
    return {k: m[k] for k in (*FIGURES, "counts", "steps", "events") if k in m}


def summary(samples: dict[str, list[dict]]) -> dict:
    out: dict = {}
    for case, rounds in samples.items():
        out[case] = {name: {"median": statistics.median(v), "min": min(v), "max": max(v), "all": v}
                     for name in FIGURES if (v := [m[name] for m in rounds])}
    out["ratio"] = {
        name: {"of_medians": out["multiple"][name]["median"] / out["singles"][name]["median"],
               "rounds": [a[name] / b[name] for a, b in zip(samples["multiple"], samples["singles"]) if b[name]]}
        for name in FIGURES if out["singles"][name]["median"]
    }
    return out


def table(s: dict, args: argparse.Namespace) -> str:
    def cell(case: str, name: str, scale: float, digits: int) -> str:
        f = s[case][name]
        return f"{f['median'] / scale:,.{digits}f} ({f['min'] / scale:,.{digits}f}–{f['max'] / scale:,.{digits}f})"

    rows = [("wall s", "seconds", 1, 1), ("our CPU s", "cpu_s", 1, 1), ("server CPU s", "cpu_pg_s", 1, 1),
            ("WAL MiB", "wal_bytes", 2**20, 0), ("temp MiB", "temp_bytes", 2**20, 0), ("peak RSS MiB", "peak_rss", 2**20, 0)]
    lines = [f"{args.customers:,} customers + {3 * args.customers:,} order lines, {args.rounds} interleaved rounds, PostgreSQL:", "",
             "| figure | two single imports, one after the other | one multiple import | multiple / singles (rounds) |",
             "|---|---:|---:|---:|"]
    for label, name, scale, digits in rows:
        ratio = s["ratio"].get(name)
        shown = f"**{ratio['of_medians']:.2f}** ({', '.join(f'{x:.2f}' for x in ratio['rounds'])})" if ratio else "–"
        lines.append(f"| {label} | {cell('singles', name, scale, digits)} | {cell('multiple', name, scale, digits)} | {shown} |")
    return "\n".join(lines)


def section(data: dict) -> str:
    """RESULTS.md's section, from the saved results."""
    args = argparse.Namespace(customers=data["customers"], rounds=data["rounds"])
    return "\n".join([
        "## Multiple import (issue 28): one drop against two single imports, one after the other", "",
        f"`{data['command']}`, code {data['code']} (commit {data.get('commit', 'unknown')}), {data['when']}. Target: the multiple import at most 1.2 × the two single "
        "imports' wall time.", "",
        table(data["summary"], args), "",
        "Both insert every row (one customer and three lines each) and store the same values (a hash of both tables). "
        "The multiple import starts one process and one Dagster run where the singles start two (our CPU); its steps "
        "run one after the other on the in-process executor, as the singles' do, and its two merges are one "
        "transaction: the server writes the same bytes (WAL, temporary files).",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers (order lines: 3 ×; default 1000000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--schema", default=SCHEMA)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--render", action="store_true", help="measure nothing: drop.md and RESULTS.md from the saved drop.json")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--pg-db", default="test")
    args = parser.parse_args()
    args.work = args.work.absolute()
    saved = BENCH / "results" / "drop.json"
    if args.render:
        data = json.loads(saved.read_text())
        run.save_section("drop", data, section(data))
        return 0
    (args.work / "runs").mkdir(parents=True, exist_ok=True)
    print("writing the drop (untimed) ...", flush=True)
    manifest = write_files(args.work / "data" / "drop", args.customers)
    print(f"  {manifest['bytes'] / 2**20:,.0f} MiB" + (" (reused)" if manifest["reused"] else ""), flush=True)
    args.home = args.work / "dagster_home"
    shutil.rmtree(args.home, ignore_errors=True)
    args.home.mkdir(parents=True)
    (args.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    subprocess.run([sys.executable, "-c", "import dagster; dagster.DagsterInstance.get()"],
                   env={**os.environ, "DAGSTER_HOME": str(args.home)}, check=True)

    samples: dict[str, list[dict]] = {"singles": [], "multiple": []}
    cases = {"singles": run_singles, "multiple": run_multiple}
    try:
        for r in range(1, args.rounds + 1):
            order = ["singles", "multiple"] if r % 2 else ["multiple", "singles"]
            for case in order:
                print(f"round {r}: {case} ...", end=" ", flush=True)
                m = cases[case](args, r)
                m["round"] = r
                samples[case].append(m)
                print(f"{m['seconds']:.1f} s, cpu {m['cpu_s']:.1f} s, pg cpu {m['cpu_pg_s']:.1f} s, "
                      f"{m['peak_rss'] / 2**20:,.0f} MiB, inserted {m['inserted']:,}", flush=True)
    finally:
        run.psql(args, f"DROP SCHEMA IF EXISTS {args.schema} CASCADE")
    expected = 4 * args.customers
    hashes = {json.dumps(m["stored"], sort_keys=True) for ms in samples.values() for m in ms}
    problems = [f"{c} round {m['round']}: inserted {m['inserted']:,} != {expected:,}" for c, ms in samples.items() for m in ms
                if m["inserted"] != expected]
    if len(hashes) != 1:
        problems.append(f"the stored rows differ between runs: {sorted(hashes)}")
    s = summary(samples)
    print()
    print(table(s, args))
    if not args.no_save:
        data = {"command": " ".join([".venv/bin/python bench/drop.py", *sys.argv[1:]]), "code": code_fingerprint(),
                "commit": subprocess.run(["git", "-C", str(BENCH), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
                "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "customers": args.customers, "rounds": args.rounds,
                "summary": s, "samples": {c: [{k: v for k, v in m.items() if k != "stored"} for m in ms] for c, ms in samples.items()},
                "stored": sorted(hashes), "problems": problems}
        run.save_section("drop", data, section(data))
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
