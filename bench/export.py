"""Export benchmark: our export job against psql's \\copy (SELECT ...) TO, same server.

For each row count, a fresh schema gets N deterministic recipients (SQL generate_series,
untimed). Then, side by side:
- the floor: `psql \\copy (SELECT <columns> FROM recipient WHERE <filter> ORDER BY ...) TO
  file (FORMAT csv, HEADER, DELIMITER ';')`, with the same columns, date format, filter
  and order as the template;
- ours: `campaign-pipelines run bench_export --output ... --json`, the real Dagster job;
- ours on an empty table (same tables, no row): the run's fixed cost.
Each round runs the three once (default 3 rounds, median reported). Wall seconds, peak
RSS of the process tree and the ratio to the floor are printed and
saved to bench/results/export.json and bench/results/export.md (included in RESULTS.md).
The two files must hold the same rows: the bench fails loudly if they differ.

    .venv/bin/python bench/export.py --rows 1000000 2000000 [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from run import TEMPLATES_DIR, VENV_BIN, fresh_pg_schema, machine, measure, pg_url, psql, save_section, server_window

EMPTY = "bench_export_empty"  # the same tables, no row: a run's fixed cost

TEMPLATE = "bench_export"
COLUMNS = "email, first_name, last_name, to_char(birth_date, 'DD/MM/YYYY') AS birth_date, postal_code, country_code"
FILTER = "country_code IN ('FR', 'BE') AND email_denylisted = false"
ORDER = "email NULLS LAST, id"  # the template's order_by, then the primary key as ours does


def populate(args: argparse.Namespace, schema: str, rows: int) -> int:
    fresh_pg_schema(args, schema, campaign_tables=True)
    psql(
        args,
        f"""INSERT INTO recipient (email, first_name, last_name, birth_date, postal_code, country_code,
                                   email_denylisted, created_at, updated_at)
            SELECT md5(i::text) || '@example.org', 'First ' || i, 'Last; "' || (i % 1000) || '"',
                   date '1940-01-01' + (i % 25000), lpad((i % 99999)::text, 5, '0'),
                   (ARRAY['FR', 'BE', 'FR', 'DE', 'FR', 'BE', 'FR', 'FR', 'BE', 'IT'])[1 + i % 10],
                   i % 100 = 0, now(), now()
            FROM generate_series(1, {rows}) AS i""",
        schema,
    )
    psql(args, "VACUUM (ANALYZE) recipient", schema)
    psql(args, "CHECKPOINT")
    return int(psql(args, f"SELECT count(*) FROM recipient WHERE {FILTER}", schema))


def median(values: list[float]) -> float:
    return sorted(values)[(len(values) - 1) // 2]


def run_case(args: argparse.Namespace, rows: int, work: Path) -> dict:
    schema = f"bench_export_{rows}"
    expected = populate(args, schema, rows)
    data_dir = work / "data"
    (data_dir / "outbox").mkdir(parents=True, exist_ok=True)
    floor_file = work / f"floor_{rows}.csv"
    env = {
        **os.environ,
        "CAMPAIGN_DB_URL": pg_url(args, schema),
        "CAMPAIGN_DATA_DIR": str(data_dir),
        "CAMPAIGN_TEMPLATES_DIR": str(TEMPLATES_DIR),
        "DAGSTER_HOME": str(work / "dagster_home"),
    }
    (work / "dagster_home").mkdir(exist_ok=True)
    ours_cmd = [str(VENV_BIN / "campaign-pipelines"), "run", TEMPLATE, "--json", "--output"]
    fresh_pg_schema(args, EMPTY, campaign_tables=True)
    empty_env = {**env, "CAMPAIGN_DB_URL": pg_url(args, EMPTY)}
    rounds: dict[str, list[dict]] = {"floor": [], "ours": [], "empty": []}
    for _ in range(args.repeat):  # interleaved, so a slow spell weighs on both alike
        floor = measure(
            ["psql", "-h", args.pg_host, "-p", str(args.pg_port), "-U", args.pg_user, "-d", args.pg_db, "-X", "-q", "-c",
             f"\\copy (SELECT {COLUMNS} FROM {schema}.recipient WHERE {FILTER} ORDER BY {ORDER}) "
             f"TO '{floor_file}' WITH (FORMAT csv, HEADER, DELIMITER ';')"],
            dict(os.environ), work / f"floor_{rows}", server=server_window(args),
        )
        ours = measure([*ours_cmd, f"outbox/ours_{rows}.csv"], env, work / f"ours_{rows}", server=server_window(args))
        # The same job on an empty table: what every run pays whatever its rows
        # (interpreter, imports, definitions, Dagster instance and run bookkeeping).
        empty = measure([*ours_cmd, f"outbox/empty_{rows}.csv"], empty_env, work / f"empty_{rows}", server=server_window(args))
        if ours["returncode"] or floor["returncode"] or empty["returncode"]:
            raise SystemExit(f"a case failed: see {ours['stderr']}, {empty['stderr']} and {floor['stderr']}")
        payload = json.loads(Path(ours["stdout"]).read_text())
        ours_file = Path(payload["output_path"])
        # Same rows, same order; only the floor's header differs (psql names expressions).
        with open(ours_file) as a, open(floor_file) as b:
            next(a), next(b)
            if any(x != y for x, y in zip(a, b, strict=True)):
                raise SystemExit(f"the exported files differ: {ours_file} vs {floor_file}")
        if payload["rows_exported"] != expected:
            raise SystemExit(f"rows_exported {payload['rows_exported']} != {expected} rows matching the filter")
        for name, m in (("floor", floor), ("ours", ours), ("empty", empty)):
            rounds[name].append(m)
        print(f"{rows:,} rows: floor {floor['seconds']:.2f} s, ours {ours['seconds']:.2f} s, "
              f"ours on an empty table {empty['seconds']:.2f} s", flush=True)
    psql(args, f"DROP SCHEMA {schema} CASCADE; DROP SCHEMA {EMPTY} CASCADE")
    summary = {
        name: {"seconds": median([m["seconds"] for m in ms]), "rounds": [m["seconds"] for m in ms],
               "peak_rss": max(m["peak_rss"] for m in ms),
               "cpu_s": median([m["cpu_s"] for m in ms]), "cpu_pg_s": median([m["cpu_pg_s"] for m in ms])}
        for name, ms in rounds.items()
    }
    summary["ours"]["bytes"] = payload["bytes"]
    return {"rows": rows, "exported": expected, **summary}


def render(data: dict) -> str:
    lines = [
        "## Export: our job against `psql \\copy (SELECT …) TO`",
        "",
        f"Run of {data['when']}, project commit {data['machine'].get('commit', 'unknown')}, load average at the end "
        f"{data['machine'].get('loadavg_at_end', 'unknown')}. Command: `{data['command']}`. Template "
        "`bench/templates/bench_export.yaml`: six columns (a date reformatted), a two-condition filter, ordered by "
        "e-mail; both files hold the same rows in the same order (checked). Seconds are the median of the rounds "
        "(range in brackets). *Empty* is the same job on the same tables holding no row: what every run pays "
        "whatever its rows (interpreter, imports, definitions, Dagster instance, run bookkeeping); *ours − empty* "
        "is what the rows themselves cost.",
        "",
        "| table rows | exported | floor s | ours s | × floor | empty s | ours − empty s | × floor | "
        "floor peak RSS MiB | ours peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(case: dict) -> str:
        rounds = case.get("rounds") or [case["seconds"]]
        return f"{case['seconds']:.2f}" + (f" ({min(rounds):.2f}–{max(rounds):.2f})" if len(rounds) > 1 else "")

    for c in data["cases"]:
        floor, ours = c["floor"]["seconds"], c["ours"]["seconds"]
        empty = c.get("empty")
        rows_only = ours - empty["seconds"] if empty else None
        lines.append(
            f"| {c['rows']:,} | {c['exported']:,} | {cell(c['floor'])} | {cell(c['ours'])} | {ours / floor:.2f} | "
            + (f"{cell(empty)} | {rows_only:.2f} | {rows_only / floor:.2f} | " if empty else "— | — | — | ")
            + f"{c['floor']['peak_rss'] / 2**20:,.0f} | {c['ours']['peak_rss'] / 2**20:,.0f} |"
        )
    lines += [
        "",
        "CPU seconds (medians; bench/figures.py), which the machine's other load moves less than wall time: "
        "the command's own process tree, and the PostgreSQL server's over the case.",
        "",
        "| table rows | floor: psql | floor: server | ours | ours: server | empty | empty: server | "
        "ours − empty, both / floor, both |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in data["cases"]:
        if "cpu_s" not in c["floor"]:
            continue  # saved before these figures were taken
        f, o, e = c["floor"], c["ours"], c["empty"]
        both = lambda m: m["cpu_s"] + m["cpu_pg_s"]  # noqa: E731
        lines.append(
            f"| {c['rows']:,} | {f['cpu_s']:.2f} | {f['cpu_pg_s']:.2f} | {o['cpu_s']:.2f} | {o['cpu_pg_s']:.2f} | "
            f"{e['cpu_s']:.2f} | {e['cpu_pg_s']:.2f} | {(both(o) - both(e)) / both(f):.2f} |"
        )
    lines += ["", "Targets: issue 4, ≤ 1.5 × the floor, peak RSS flat in the row count; issue 25, end to end ≤ 1.2 × "
              "the floor.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/campaign-bench/export"))
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--pg-db", default="test")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per row count; the median is reported")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cases = [run_case(args, rows, args.work) for rows in args.rows]
    import datetime as dt

    info = machine(args)
    info["loadavg_at_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    data = {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": ".venv/bin/python bench/export.py --rows " + " ".join(map(str, args.rows)) + f" --repeat {args.repeat}",
        "machine": info,
        "cases": cases,
    }
    save_section("export", data, render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
