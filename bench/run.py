"""The import benchmark (issue 3): our Dagster import vs the SQL floor vs dlt and Sling.

    .venv/bin/pip install -e ".[bench]"
    .venv/bin/python bench/run.py --rows 1000000 --repeat 3   # floor, ours, dlt (+ SQLite), median of 3 rounds
    .venv/bin/python bench/run.py --rows 10000000 --only ours # ours alone at 10M

Each case is one child process (psql, sqlite3, `campaign-pipelines run … --json`, or
bench/dlt_load.py), timed wall clock from spawn to exit; its peak RSS is the larger of
the child tree's ru_maxrss (wait4) and the sum of the tree's RSS polled every 50 ms.
Every PostgreSQL case loads into its own fresh schema on the same server; SQLite cases
into their own file. A first load (empty table) then a re-import of the same file.
With --repeat N, N rounds of every case in the same order; each case reports its median
round, and the range of its rounds (this machine's wall times drift by a third between
minutes; the rounds spread such a drift over every system alike).

Every line is accounted for: the generator reports its defective lines; our import must
report rows_read = N, rows_rejected = the defects, and loaded + rejected + ignored = N;
the floors report the same counts from SQL. A mismatch fails the run loudly (exit 1).

Results: printed, saved as bench/results/<rows>.json, and bench/RESULTS.md is written
again from every saved result (plus the per-stage profile, bench/profile_stages.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import figures  # noqa: E402
import floors  # noqa: E402
import generate  # noqa: E402
import schemas  # noqa: E402

VENV_BIN = Path(sys.executable).parent
TEMPLATE = "bench_recipients"
TEMPLATES_DIR = BENCH / "templates"
RESULTS_DIR = BENCH / "results"
PG_SQLALCHEMY = "postgresql+psycopg://postgres@{host}:{port}/{db}"


class AccountingError(RuntimeError):
    pass


# -- measuring -----------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot: /proc/stat's first line,
    every state but idle and iowait, summed over the cores (0.0 where there is none)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    except (OSError, ValueError, IndexError):
        return 0.0
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def measure(cmd: list[str], env: dict[str, str], out: Path, stdin: Path | None = None,
            server: figures.ServerWindow | None = None) -> dict:
    """Run one child; wall seconds, peak RSS (bytes), CPU seconds of its tree, exit code,
    stdout/stderr paths; with `server`, the PostgreSQL server's CPU and bytes written too.

    The child runs under /usr/bin/time, a small process: a child forked straight from
    this (large) Python process would report this process's RSS as its own high-water
    mark (Linux keeps the pre-exec RSS in ru_maxrss). Peak RSS is the larger of the
    command's ru_maxrss (the largest process of its tree, from /usr/bin/time) and the
    sum of the RSS of every process of the tree, polled every 50 ms."""
    stdout, stderr, rss_file = out.with_suffix(".out"), out.with_suffix(".err"), out.with_suffix(".rss")
    timed = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd] if Path("/usr/bin/time").exists() else cmd
    if server:
        server.start()
    with open(stdout, "wb") as so, open(stderr, "wb") as se, open(stdin or os.devnull, "rb") as si:
        busy_before = machine_busy_seconds()
        started = time.perf_counter()
        proc = subprocess.Popen(timed, env=env, stdout=so, stderr=se, stdin=si)
        peak_tree = 0
        done = threading.Event()

        def poll() -> None:
            nonlocal peak_tree
            try:
                root = psutil.Process(proc.pid)
            except psutil.NoSuchProcess:
                return
            while not done.is_set():
                total = 0
                try:
                    tree = root.children(recursive=True) if timed is not cmd else [root]
                except psutil.NoSuchProcess:
                    break
                for p in tree:
                    try:
                        total += p.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
                peak_tree = max(peak_tree, total)
                done.wait(0.05)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        busy = machine_busy_seconds() - busy_before
        done.set()
        poller.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    maxrss = usage.ru_maxrss * 1024
    if timed is not cmd:
        try:
            maxrss = int(rss_file.read_text().strip().splitlines()[-1]) * 1024
        except (OSError, ValueError, IndexError):
            maxrss = 0
    return {
        "seconds": seconds,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "machine_busy_s": busy,  # every core's busy CPU seconds from spawn to exit (/proc/stat)
        **(server.stop() if server else {}),
        "peak_rss": max(maxrss, peak_tree),
        "peak_rss_largest_process": maxrss,
        "peak_rss_tree_polled": peak_tree,
        "returncode": proc.returncode,
        "stdout": str(stdout),
        "stderr": str(stderr),
    }


def fail_if(rc_ok: bool, what: str, m: dict) -> None:
    if not rc_ok:
        tail = Path(m["stderr"]).read_text(errors="replace")[-3000:]
        raise SystemExit(f"{what} failed (exit {m['returncode']}); stderr tail:\n{tail}")


# -- PostgreSQL helpers --------------------------------------------------------------


def psql(args: argparse.Namespace, sql: str, schema: str | None = None) -> str:
    env = {**os.environ, **({"PGOPTIONS": f"-csearch_path={schema}"} if schema else {})}
    result = subprocess.run(
        ["psql", "-h", args.pg_host, "-p", str(args.pg_port), "-U", args.pg_user, "-d", args.pg_db, "-X", "-q", "-A", "-t",
         "-v", "ON_ERROR_STOP=1", "-c", sql],
        env=env, capture_output=True, text=True,
    )
    if result.returncode:
        raise SystemExit(f"psql failed: {sql}\n{result.stderr}")
    return result.stdout.strip()


def server_window(args: argparse.Namespace) -> figures.ServerWindow:
    return figures.ServerWindow(["psql", "-h", args.pg_host, "-p", str(args.pg_port), "-U", args.pg_user, "-d", args.pg_db])


def pg_url(args: argparse.Namespace, schema: str) -> str:
    return PG_SQLALCHEMY.format(host=args.pg_host, port=args.pg_port, db=args.pg_db) + f"?options=-csearch_path%3D{schema}"


def campaign_model() -> Any:
    """The data model as the environment's settings name it (CAMPAIGN_SCHEMAS_DIR: the
    shop's for bench/purchases.py). Older commits (bench/compare.py) looked it up
    themselves, or had one module-level model."""
    if hasattr(schemas, "current"):
        return schemas.current()
    if hasattr(schemas, "load"):
        from campaign_pipelines.settings import Settings

        return Settings.from_env().data_model()
    return schemas


def fresh_pg_schema(args: argparse.Namespace, schema: str, campaign_tables: bool) -> None:
    psql(args, f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
    if campaign_tables:  # the same DDL and indexes as our import's (schemas/)
        engine = sa.create_engine(pg_url(args, schema))
        campaign_model().metadata.create_all(engine)
        engine.dispose()


def between_loads_pg(args: argparse.Namespace, schema: str, table: str) -> None:
    """Outside the timings: what a database would have done by the next nightly run."""
    psql(args, f'VACUUM (ANALYZE) {schema}."{table}"')
    psql(args, "CHECKPOINT")


def postgres_storage_yaml(args: argparse.Namespace, database: str) -> str:
    """deploy/dagster.yaml's storage section, on a fresh `database` of this server (trust auth: no password)."""
    psql(args, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    psql(args, f"CREATE DATABASE {database}")
    return (
        "storage:\n  postgres:\n    postgres_db:\n"
        f"      hostname: {args.pg_host}\n      port: {args.pg_port}\n      username: {args.pg_user}\n"
        f"      db_name: {database}\n      scheme: postgresql+psycopg2\n"
    )


def dagster_storage_yaml(args: argparse.Namespace, work: Path) -> str:
    """The instance's storage: Dagster's SQLite files in the home (its default), or, as the
    production instance has it, a PostgreSQL database of its own for this work folder."""
    if args.dagster_storage == "sqlite":
        return ""
    return postgres_storage_yaml(args, "bench_dagster_" + re.sub(r"[^a-z0-9]+", "_", work.name.lower()))


def fresh_sqlite(path: Path) -> str:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    campaign_model().metadata.create_all(engine)
    engine.dispose()
    return url


# -- the cases -----------------------------------------------------------------------


def prepare_pg(args: argparse.Namespace, schema: str, load: str) -> None:
    """An empty recipient table for a first load, the loaded one for a re-import; then a
    checkpoint, so no case pays for the previous one's dirty pages."""
    if load == "first":
        fresh_pg_schema(args, schema, campaign_tables=True)
    else:
        between_loads_pg(args, schema, "recipient")
    psql(args, "CHECKPOINT")


def run_floor_pg(args, csv: Path, work: Path, load: str) -> dict:
    schema = "bench_floor"
    prepare_pg(args, schema, load)
    script = work / "floor_pg.sql"
    script.write_text(floors.pg_script(csv))
    env = {**os.environ, "PGOPTIONS": f"-csearch_path={schema}"}
    cmd = ["psql", "-h", args.pg_host, "-p", str(args.pg_port), "-U", args.pg_user, "-d", args.pg_db, "-X", "-A", "-t",
           "-F", ",", "-f", str(script)]
    m = measure(cmd, env, work / f"floor_pg_{load}", server=server_window(args))
    fail_if(m["returncode"] == 0, "floor (psql)", m)
    line = next(l for l in Path(m["stdout"]).read_text().splitlines() if l.startswith("FLOOR_COUNTS"))
    _, read, loaded, inserted, updated = line.split(",")
    read, loaded, inserted, updated = int(read), int(loaded), int(inserted), int(updated)
    m["counts"] = {"rows_read": read, "rows_inserted": inserted, "rows_updated": updated,
                   "rows_unchanged": loaded - inserted - updated, "rows_ignored": 0, "rows_rejected": read - loaded}
    return m


def run_floor_sqlite(args, csv: Path, work: Path, load: str) -> dict:
    db = work / "sqlite" / "floor.db"
    if load == "first":
        fresh_sqlite(db)
    script = work / "floor_sqlite.sql"
    script.write_text(floors.sqlite_script(csv))
    m = measure(["sqlite3", str(db)], dict(os.environ), work / f"floor_sqlite_{load}", stdin=script)
    fail_if(m["returncode"] == 0, "floor (sqlite3)", m)
    line = next(l for l in Path(m["stdout"]).read_text().splitlines() if l.startswith("FLOOR_COUNTS"))
    _, read, changed, table_rows = line.split("|")
    read, changed, table_rows = int(read), int(changed), int(table_rows)
    if load != "first":
        raise SystemExit("the SQLite floor is measured for a first load only")
    m["counts"] = {"rows_read": read, "rows_inserted": changed, "rows_updated": 0, "rows_unchanged": 0,
                   "rows_ignored": 0, "rows_rejected": read - table_rows}
    return m


STEP_LINE = re.compile(r'Finished execution of step "(?:\w+\.)?([a-z_]+)" in ([0-9hms. ]+?)\.?$', re.M)
DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)")


def step_durations(stderr: Path) -> dict[str, float]:
    """Dagster's STEP_SUCCESS durations: "58ms", "2.12s", "7m58s", "1h2m3s"."""
    steps: dict[str, float] = {}
    for name, text in STEP_LINE.findall(stderr.read_text(errors="replace")):
        unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        steps[name] = sum(float(v) * unit[u] for v, u in DURATION_PART.findall(text))
    return steps


def run_ours(args, csv: Path, work: Path, load: str, db: str) -> dict:
    if db == "pg":
        schema = "bench_ours"
        prepare_pg(args, schema, load)
        url = pg_url(args, schema)
    else:
        path = work / "sqlite" / "ours.db"
        url = fresh_sqlite(path) if load == "first" else f"sqlite:///{path}"
    env = {
        **os.environ,
        "CAMPAIGN_DB_URL": url,
        "CAMPAIGN_DATA_DIR": str(work / "data"),
        "CAMPAIGN_TEMPLATES_DIR": str(TEMPLATES_DIR),
        "DAGSTER_HOME": str(work / "dagster_home"),
    }
    # --verbose: the step durations below are read from Dagster's events on stderr.
    cmd = [str(VENV_BIN / "campaign-pipelines"), "run", TEMPLATE, "--file", str(csv.relative_to(work / "data")), "--json", "--verbose"]
    m = measure(cmd, env, work / f"ours_{db}_{load}", server=server_window(args) if db == "pg" else None)
    fail_if(m["returncode"] == 0, f"our import ({db}, {load})", m)
    payload = json.loads(Path(m["stdout"]).read_text().strip().splitlines()[-1])
    m["counts"] = {k: payload.get(k, 0) for k in
                   ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_ignored", "rows_rejected")}
    m["status"] = payload.get("status")
    m["steps"] = step_durations(Path(m["stderr"]))
    m["events"] = figures.events_stored(payload["run_id"], env["DAGSTER_HOME"])
    return m


def run_dlt(args, csv: Path, work: Path, load: str) -> dict:
    dataset = "bench_dlt"
    if load == "first":
        psql(args, f"DROP SCHEMA IF EXISTS {dataset} CASCADE; DROP SCHEMA IF EXISTS {dataset}_staging CASCADE")
        shutil.rmtree(work / "dlt_pipelines", ignore_errors=True)
    else:
        between_loads_pg(args, dataset, "recipient")
    psql(args, "CHECKPOINT")
    pg = f"postgresql://{args.pg_user}:trust@{args.pg_host}:{args.pg_port}/{args.pg_db}"
    cmd = [sys.executable, str(BENCH / "dlt_load.py"), str(csv), "--dataset", dataset, "--pg", pg,
           "--pipelines-dir", str(work / "dlt_pipelines")]
    m = measure(cmd, dict(os.environ), work / f"dlt_pg_{load}", server=server_window(args))
    fail_if(m["returncode"] == 0, "dlt", m)
    payload = json.loads(Path(m["stdout"]).read_text().strip().splitlines()[-1])
    m["table_rows"] = payload["table_rows"]
    m["dlt_skipped"] = payload["skipped"]
    return m


def sling_binary() -> str:
    import sling_linux_amd64

    binary = Path(sling_linux_amd64.SLING_BIN)
    if not os.access(binary, os.X_OK):  # the wheel installs it without the execute bit
        binary.chmod(binary.stat().st_mode | 0o111)
    return str(binary)


def run_sling(args, csv: Path, work: Path, load: str) -> dict:
    """Sling's CLI, file to PostgreSQL. A first load is `full-refresh`: its own text-typed
    table, every line kept (duplicate e-mails too), no unique index, nothing validated.
    Its incremental mode (`--primary-key email`) cannot take this file: it builds a unique
    index on its temporary table, which the file's repeated e-mails break. So its re-run
    is `full-refresh` again, which rewrites every row."""
    schema = "bench_sling"
    if load == "first":
        psql(args, f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
    psql(args, "CHECKPOINT")
    env = {
        **os.environ,
        "CAMPAIGN_BENCH_PG": f"postgresql://{args.pg_user}@{args.pg_host}:{args.pg_port}/{args.pg_db}?sslmode=disable",
        "SLING_HOME_DIR": str(work / "sling_home"),
        "SLING_DISABLE_TELEMETRY": "true",
    }
    cmd = [sling_binary(), "run", "--src-stream", f"file://{csv}", "--tgt-conn", "CAMPAIGN_BENCH_PG",
           "--tgt-object", f"{schema}.recipient", "--mode", "full-refresh"]
    m = measure(cmd, env, work / f"sling_pg_{load}", server=server_window(args))
    fail_if(m["returncode"] == 0, "sling", m)
    m["table_rows"] = int(psql(args, f"SELECT count(*) FROM {schema}.recipient").strip())
    return m


# -- accounting ----------------------------------------------------------------------


def check_accounting(case: dict, manifest: dict) -> list[str]:
    """Every line: rows_read = N, rejects = the generator's defects, sum = N."""
    n, expected = manifest["rows"], manifest["expected_rejects"]
    c = case.get("counts")
    if c is None:
        return []
    problems = []
    total = c["rows_inserted"] + c["rows_updated"] + c["rows_unchanged"] + c["rows_ignored"] + c["rows_rejected"]
    loaded = c["rows_inserted"] + c["rows_updated"] + c["rows_unchanged"]
    if c["rows_read"] != n:
        problems.append(f"rows_read {c['rows_read']} != N {n}")
    if c["rows_rejected"] != expected:
        problems.append(f"rows_rejected {c['rows_rejected']} != the generator's {expected} defective lines")
    if total != n:
        problems.append(f"loaded {loaded} + rejected {c['rows_rejected']} + ignored {c['rows_ignored']} = {total} != N {n}")
    if case["load"] == "first" and c["rows_inserted"] != manifest["expected_loaded"]:
        problems.append(f"first load inserted {c['rows_inserted']} != {manifest['expected_loaded']}")
    if case["load"] == "reimport" and (c["rows_inserted"] or c["rows_updated"]):
        problems.append(f"re-import wrote rows (inserted {c['rows_inserted']}, updated {c['rows_updated']}); "
                        "unchanged rows must be rows_unchanged")
    return problems


# -- machine and report --------------------------------------------------------------


def code_commit() -> str:
    """The last commit of the code measured, and whether it had local changes: commits of
    the bench or the docs since then do not make two results incomparable."""
    code = ["campaign_pipelines", "resources", "schemas", "pyproject.toml"]
    head = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h", "--", *code],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", *code],
                           capture_output=True, text=True).stdout.strip()
    return (head or "unknown") + (" + local changes" if dirty else "")


def machine(args: argparse.Namespace) -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        pg_version = psql(args, "SHOW server_version")
    except SystemExit:
        pg_version = "unavailable"
    sqlite_version = subprocess.run(["sqlite3", "--version"], capture_output=True, text=True).stdout.split(" ")[0] \
        if shutil.which("sqlite3") else "missing"
    import dagster
    import polars
    import pyarrow
    try:
        import dlt
        dlt_version = dlt.__version__
    except ImportError:
        dlt_version = "not installed"
    load = os.getloadavg()
    return {
        "commit": code_commit(),
        "loadavg_at_end": f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}",
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "sqlite3": sqlite_version,
        "dagster": dagster.__version__,
        "polars": polars.__version__,
        "pyarrow": pyarrow.__version__,
        "dlt": dlt_version,
    }


LABEL = {"floor": "floor", "ours": "ours (Dagster job)", "dlt": "dlt merge", "sling": "Sling full-refresh"}


def median_round(rounds: list[dict]) -> dict:
    """The case's median round (the whole measurement: its counts and step times go with
    its seconds), with every round's seconds and the highest peak RSS of all."""
    ordered = sorted(rounds, key=lambda m: m["seconds"])
    case = dict(ordered[(len(ordered) - 1) // 2])
    case["rounds"] = [m["seconds"] for m in rounds]
    case["peak_rss"] = max(m["peak_rss"] for m in rounds)
    # Each steady figure's own median over the rounds (they need not come from one round).
    for name in FIGURES:
        if all(name in m for m in rounds):
            case[name] = statistics.median(m[name] for m in rounds)
    return case


FIGURES = ("cpu_s", "cpu_pg_s", "wal_bytes", "temp_bytes", "events")


def figure_lines(cases: list[dict]) -> list[str]:
    """The work each case did (bench/figures.py), medians over the rounds."""
    lines = ["| case | db | load | CPU s, its processes | CPU s, PostgreSQL | WAL MiB | temp files MiB | Dagster events |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for c in cases:
        def cell(name: str, scale: float = 1.0, digits: int = 1) -> str:
            return f"{c[name] / scale:,.{digits}f}" if name in c else "—"
        lines.append(f"| {LABEL[c['system']]} | {c['db']} | {c['load']} | {cell('cpu_s')} | {cell('cpu_pg_s')} | "
                     f"{cell('wal_bytes', 2**20)} | {cell('temp_bytes', 2**20)} | {cell('events', digits=0)} |")
    return lines


def add_ratios(cases: list[dict]) -> None:
    floor = {(c["db"], c["load"]): c for c in cases if c["system"] == "floor"}
    for c in cases:
        f = floor.get((c["db"], c["load"]))
        c["ratio_time"] = c["seconds"] / f["seconds"] if f else None
        c["ratio_rss"] = c["peak_rss"] / f["peak_rss"] if f else None


def table_lines(cases: list[dict]) -> list[str]:
    head = "| case | db | load | rows | wall s (median; range) | rows/s | peak RSS MiB | time × floor | RSS × floor | loaded | rejected | ignored |"
    lines = [head, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in cases:
        counts = c.get("counts")
        loaded = (counts["rows_inserted"] + counts["rows_updated"] + counts["rows_unchanged"]) if counts else c.get("table_rows")
        detail = ""
        if counts and c["load"] == "reimport":
            detail = f" ({counts['rows_unchanged']} unchanged, {counts['rows_updated']} updated)"
        rt = f"{c['ratio_time']:.2f}" if c.get("ratio_time") is not None else "—"
        rr = f"{c['ratio_rss']:.1f}" if c.get("ratio_rss") is not None else "—"
        rounds = c.get("rounds") or [c["seconds"]]
        spread = f" ({min(rounds):.1f}–{max(rounds):.1f})" if len(rounds) > 1 else ""
        lines.append(
            f"| {LABEL[c['system']]} | {c['db']} | {c['load']} | {c['rows']:,} | {c['seconds']:.1f}{spread} | "
            f"{c['rows'] / c['seconds']:,.0f} | {c['peak_rss'] / 2**20:,.0f} | {rt} | {rr} | "
            f"{loaded if loaded is not None else '—'}{detail} | "
            f"{counts['rows_rejected'] if counts else '—'} | {counts['rows_ignored'] if counts else '—'} |"
        )
    return lines


def targets(all_results: dict[int, dict]) -> list[str]:
    out = []

    def find(rows, system, db, load):
        for c in all_results.get(rows, {}).get("cases", []):
            if (c["system"], c["db"], c["load"]) == (system, db, load):
                return c
        return None

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**NOT met**"

    def by_round(a: dict, b: dict) -> str:
        """The ratio within each round, beside the ratio of the medians the verdict uses."""
        ratios = sorted(x / y for x, y in zip(a.get("rounds", []), b.get("rounds", [])))
        if len(ratios) < 2:
            return ""
        return f" (round by round {ratios[0]:.2f}–{ratios[-1]:.2f}, median {ratios[(len(ratios) - 1) // 2]:.2f})"

    one_m = 1_000_000
    ours, floor = find(one_m, "ours", "pg", "first"), find(one_m, "floor", "pg", "first")
    if ours and floor:
        r = ours["seconds"] / floor["seconds"]
        out.append(f"- 1M first load ≤ 1.0 × floor: {ours['seconds']:.1f} s / {floor['seconds']:.1f} s = {r:.2f} ×{by_round(ours, floor)} — {verdict(r <= 1.0)}")
    ours_r, floor_r = find(one_m, "ours", "pg", "reimport"), find(one_m, "floor", "pg", "reimport")
    if ours_r and floor_r:
        r = ours_r["seconds"] / floor_r["seconds"]
        c = ours_r["counts"]
        unchanged_ok = c["rows_updated"] == 0 and c["rows_inserted"] == 0
        out.append(f"- 1M re-import ≤ 0.6 × floor's re-run: {ours_r['seconds']:.1f} s / {floor_r['seconds']:.1f} s = {r:.2f} ×{by_round(ours_r, floor_r)} — "
                   f"{verdict(r <= 0.6)}; unchanged rows counted rows_unchanged ({c['rows_unchanged']:,}), none rewritten "
                   f"(rows_updated {c['rows_updated']}) — {verdict(unchanged_ok)}")
    for peer in ("dlt", "sling"):
        if ours and (other := find(one_m, peer, "pg", "first")):
            out.append(f"- 1M first load beside {peer} (figure only): {ours['seconds']:.1f} s / {other['seconds']:.1f} s = "
                       f"{ours['seconds'] / other['seconds']:.2f} ×{by_round(ours, other)}")
    ten = find(10_000_000, "ours", "pg", "first")
    if ten:
        mem_ok = ten["peak_rss"] <= 2**30
        out.append(f"- 10M peak RSS ≤ 1 GiB: {ten['peak_rss'] / 2**20:,.0f} MiB — {verdict(mem_ok)}")
        if ours:
            r = ten["seconds"] / ours["seconds"]
            c10 = all_results[10_000_000]["machine"].get("commit", "?")
            c1 = all_results[one_m]["machine"].get("commit", "?")
            same = c10 == c1
            out.append(f"- 10M time ≤ 10 × the 1M time: {ten['seconds']:.1f} s / {ours['seconds']:.1f} s = {r:.1f} × — "
                       + (verdict(r <= 10) if same else f"not comparable: the two runs measured different code "
                          f"(1M: {c1.split(' (')[0]}; 10M: {c10.split(' (')[0]} + …); see the notes"))
        else:
            out.append("- 10M time ≤ 10 × the 1M time: no 1M result saved to compare with")
    sq, sqf = find(one_m, "ours", "sqlite", "first"), find(one_m, "floor", "sqlite", "first")
    if sq and sqf:
        r = sq["seconds"] / sqf["seconds"]
        out.append(f"- SQLite 1M first load ≤ 1.2 × its floor (sqlite3 `.import` + upsert): {sq['seconds']:.1f} s / "
                   f"{sqf['seconds']:.1f} s = {r:.2f} ×{by_round(sq, sqf)} — {verdict(r <= 1.2)}")
    return out


def write_results_md(path: Path) -> None:
    results = {}
    for f in sorted(RESULTS_DIR.glob("rows_*.json")):
        data = json.loads(f.read_text())
        results[data["rows"]] = data
    if not results:
        return
    any_result = next(iter(results.values()))
    m = any_result["machine"]
    lines = [
        "# Import benchmark results",
        "",
        "Written by `bench/run.py` from the saved results in `bench/results/` (see `bench/README.md` for what",
        "is measured and how). Commands:",
        "",
        "```sh",
        '.venv/bin/pip install -e ".[bench]"',
    ]
    for rows, data in sorted(results.items()):
        lines.append(data["command"])
    profile = RESULTS_DIR / "profile_1000000.md"
    if profile.exists():
        lines.append(".venv/bin/python bench/profile_stages.py --rows 1000000   # the per-stage profile below")
    for tuning, command in (("block_size.md", "bench/block_size.py --rows 1000000"), ("validation.md", "bench/validation.py --rows 1000000")):
        if (RESULTS_DIR / tuning).exists():
            lines.append(f".venv/bin/python {command}")
    if (RESULTS_DIR / "purchases.json").exists():  # each part's own command
        parts = json.loads((RESULTS_DIR / "purchases.json").read_text())
        lines += sorted({p["command"] for p in parts.values() if isinstance(p, dict) and p.get("command")})
    if (RESULTS_DIR / "drop.json").exists():  # bench/drop.py
        lines.append(json.loads((RESULTS_DIR / "drop.json").read_text())["command"])
    for saved in sorted(RESULTS_DIR.glob("formats_*.json")):  # bench/formats.py, one file per size
        command = json.loads(saved.read_text()).get("command")
        if command and command not in lines:
            lines.append(command)
    lines += [
        "```",
        "",
        "## Machine",
        "",
        f"- {m['nproc']} cores (`nproc`), CPU: {m['cpu']}, RAM: {m['ram_gib']} GiB, {m['os']}",
        f"- PostgreSQL {m['postgresql']} (same server, one fresh schema per case), sqlite3 {m['sqlite3']}",
        f"- Python {m['python']}, dagster {m['dagster']}, polars {m['polars']}, pyarrow {m['pyarrow']}, dlt {m['dlt']}",
        "",
    ]
    for rows, data in sorted(results.items()):
        lines += [f"## {rows:,} rows — run of {data['when']}", "",
                  f"Project commit: {data['machine'].get('commit', 'unknown')}; load average at the end of the run: "
                  f"{data['machine'].get('loadavg_at_end', 'unknown')} (1, 5, 15 min).", ""]
        man = data["manifest"]
        lines.append(f"File: {man['bytes'] / 2**20:,.0f} MiB, {rows:,} data lines, {man['expected_rejects']:,} defective "
                     f"({', '.join(f'{k} {v:,}' for k, v in man['defects'].items())}).")
        lines.append("")
        lines += table_lines(data["cases"])
        lines.append("")
        if any("cpu_s" in c for c in data["cases"]):
            lines += figure_lines(data["cases"]) + [""]
        for c in data["cases"]:
            if c["system"] == "ours" and c.get("steps"):
                steps = c["steps"]
                total = sum(steps.values())
                parts = ", ".join(f"{k} {v:.1f}" for k, v in steps.items())
                lines.append(f"- ours {c['db']} {c['load']}: Dagster steps (s): {parts}; outside the steps (process start, "
                             f"imports, job build, run storage): {c['seconds'] - total:.1f} s")
        lines.append("")
        lines.append(f"Accounting: {data['accounting']}")
        lines.append("")
    lines += ["## Targets", ""] + targets(results) + [""]
    if profile.exists():
        lines += [profile.read_text().strip(), ""]
    for tuning in ("block_size.md", "validation.md"):  # written by bench/block_size.py, bench/validation.py
        if (RESULTS_DIR / tuning).exists():
            lines += [(RESULTS_DIR / tuning).read_text().strip(), ""]
    for section in ("export.md", "purchases.md", "drop.md"):  # written by bench/export.py, bench/purchases.py, bench/drop.py
        if (RESULTS_DIR / section).exists():
            lines += [(RESULTS_DIR / section).read_text().strip(), ""]
    import formats  # bench/formats.py: its section, from every saved formats_*.json

    if section := formats.render_saved():
        lines += [section.strip(), ""]
    notes = BENCH / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    path.write_text("\n".join(lines))


def save_section(name: str, data: dict, markdown: str) -> None:
    """A side benchmark's results: bench/results/<name>.json and .md, then RESULTS.md again."""
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(data, indent=2, default=str))
    (RESULTS_DIR / f"{name}.md").write_text(markdown.rstrip("\n") + "\n")
    write_results_md(BENCH / "RESULTS.md")
    print(markdown)


# -- main ----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description="Import benchmark: ours vs the SQL floor vs dlt.")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", default="floor,ours,dlt,sling", help="comma-separated systems: floor, ours, dlt, sling")
    parser.add_argument("--db", default=None,
                        help="comma-separated: pg, sqlite (default: pg,sqlite up to 2M rows, pg above)")
    parser.add_argument("--loads", default=None,
                        help="comma-separated: first, reimport (default: both up to 2M rows, first above; "
                             "SQLite: first only)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/campaign-bench"))
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--pg-db", default="test")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of every case, interleaved; each case reports its median round (default 1)")
    parser.add_argument("--dagster-storage", choices=("sqlite", "postgres"), default="sqlite",
                        help="the Dagster instance's storage: its SQLite files (default) or a PostgreSQL database")
    parser.add_argument("--no-save", action="store_true", help="print only; do not write bench/results or RESULTS.md")
    args = parser.parse_args()

    systems = [s.strip() for s in args.only.split(",") if s.strip()]
    big = args.rows > 2_000_000
    dbs = [d.strip() for d in (args.db or ("pg" if big else "pg,sqlite")).split(",")]
    loads = [l.strip() for l in (args.loads or ("first" if big else "first,reimport")).split(",")]

    work = args.work
    (work / "data" / "inbox").mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work).free
    need = args.rows * 110 * 4  # the file, our Arrow work files, staging
    if free < need:
        raise SystemExit(f"{work}: {free / 2**30:.1f} GiB free, about {need / 2**30:.1f} GiB needed for {args.rows:,} rows.")
    csv = work / "data" / "inbox" / f"recipients_{args.rows}.csv"
    print(f"generating {csv} ...", flush=True)
    manifest = generate.generate(args.rows, csv)
    print(f"  {manifest['bytes'] / 2**20:,.0f} MiB, {manifest['expected_rejects']:,} defective lines "
          + ("(reused)" if manifest["reused"] else f"in {manifest['seconds']} s"), flush=True)

    # A Dagster instance that exists already, as in production (its storage is created once, untimed).
    home = work / "dagster_home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + dagster_storage_yaml(args, work))
    subprocess.run([sys.executable, "-c", "import dagster; dagster.DagsterInstance.get()"],
                   env={**os.environ, "DAGSTER_HOME": str(home)}, check=True)

    plan = []
    for db in dbs:
        for system in systems:
            if db == "sqlite" and system in ("dlt", "sling"):
                continue
            for load in loads:
                if db == "sqlite" and load != "first":
                    continue
                plan.append((system, db, load))

    # Rounds, each running every case once in the same order: a slow spell of the machine
    # (disk, neighbours) then weighs on every system alike, and the median round is kept.
    samples: dict[tuple, list[dict]] = {key: [] for key in plan}
    problems = []
    for round_number in range(1, args.repeat + 1):
        if args.repeat > 1:
            print(f"round {round_number} of {args.repeat}", flush=True)
        for system, db, load in plan:
            print(f"{system:>5} {db:<6} {load:<8} ...", end=" ", flush=True)
            if system == "floor":
                m = run_floor_pg(args, csv, work, load) if db == "pg" else run_floor_sqlite(args, csv, work, load)
            elif system == "ours":
                m = run_ours(args, csv, work, load, db)
            elif system == "sling":
                m = run_sling(args, csv, work, load)
            else:
                m = run_dlt(args, csv, work, load)
            m.update(system=system, db=db, load=load, rows=args.rows)
            if db == "pg":  # untimed: leave autovacuum nothing to do on this table during the next cases
                psql(args, f'VACUUM (ANALYZE) bench_{system}."recipient"')
            bad = check_accounting(m, manifest)
            problems += [f"{system} {db} {load}: {p}" for p in bad]
            samples[(system, db, load)].append(m)
            counts = m.get("counts") or {}
            print(f"{m['seconds']:.1f} s, {m['peak_rss'] / 2**20:,.0f} MiB"
                  + (f", read {counts['rows_read']:,} inserted {counts['rows_inserted']:,} updated {counts['rows_updated']:,} "
                     f"unchanged {counts['rows_unchanged']:,} ignored {counts['rows_ignored']:,} rejected {counts['rows_rejected']:,}"
                     if counts else f", table rows {m.get('table_rows')}")
                  + ("  ACCOUNTING MISMATCH" if bad else "")
                  + f"\n      figures: {figures.describe(m)}"
                  + ("\n      steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in m["steps"].items()) if m.get("steps") else ""),
                  flush=True)
    cases = [median_round(samples[key]) for key in plan]

    add_ratios(cases)
    print()
    print("\n".join(table_lines(cases)))
    print()
    print("\n".join(figure_lines(cases)))
    print()
    accounting = (
        f"N = {args.rows:,}; generator's defective lines = {manifest['expected_rejects']:,} "
        f"({manifest['defects']['repeated_email']:,} repeated e-mails, counted as rejects by duplicates_in_file: reject); "
        + ("every case with counts has loaded + rejected + ignored = N and rejected = the defects."
           if not problems else "MISMATCHES: " + "; ".join(problems))
    )
    print(accounting)
    if not args.no_save:
        RESULTS_DIR.mkdir(exist_ok=True)
        only = "" if args.only == "floor,ours,dlt,sling" else f" --only {args.only}"
        extra = (f" --db {args.db}" if args.db else "") + (f" --loads {args.loads}" if args.loads else "")
        extra += f" --repeat {args.repeat}" if args.repeat > 1 else ""
        extra += f" --dagster-storage {args.dagster_storage}" if args.dagster_storage != "sqlite" else ""
        data = {
            "rows": args.rows,
            "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": f".venv/bin/python bench/run.py --rows {args.rows}{only}{extra}",
            "machine": machine(args),
            "manifest": manifest,
            "cases": cases,
            "accounting": accounting,
        }
        (RESULTS_DIR / f"rows_{args.rows}.json").write_text(json.dumps(data, indent=2, default=str))
        write_results_md(BENCH / "RESULTS.md")
        all_results = {json.loads(f.read_text())["rows"]: json.loads(f.read_text()) for f in RESULTS_DIR.glob("rows_*.json")}
        print("\n".join(targets(all_results)))
        print(f"\nwrote {RESULTS_DIR / f'rows_{args.rows}.json'} and {BENCH / 'RESULTS.md'}")
    if problems:
        print("\nLINE ACCOUNTING FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
