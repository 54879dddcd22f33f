"""Where our import's time goes, stage by stage (PostgreSQL).

    .venv/bin/python bench/profile_stages.py --rows 1000000

Calls the step functions of campaign_pipelines/importing/steps.py directly (read → map
→ validate → reconcile, as the Dagster ops do, without Dagster), on the benchmark file
(bench/generate.py), into a fresh schema: a first load, then a re-import of the same
file. Each step, and inside the steps each piece (the reader's line splitting and CSV
parsing, pandera, the Reconciler's statements, the reject bookkeeping), is timed by
wrapping it in this process only: the project code is not modified. A second pass
under cProfile (first load) lists the Python functions that take the time.

Writes bench/results/profile_<rows>.json and .md (bench/run.py puts the .md in RESULTS.md).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import functools
import io
import json
import pstats
import resource
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import sqlalchemy as sa  # noqa: E402
from psycopg.copy import QueuedLibpqWriter  # noqa: E402

import generate  # noqa: E402
from run import code_commit  # noqa: E402
import schemas  # noqa: E402
from campaign_pipelines.importing import merge, read, reconcile, steps, transform, validate  # noqa: E402
from campaign_pipelines.templates import parse_template  # noqa: E402

TIMES: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)
STACK: list[str] = []
STATEMENTS: list[tuple[str, str, float]] = []  # (innermost piece, statement head, seconds)
PLANS: list[str] = []  # auto_explain output of slow statements (explain passes only)


def timed(label: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        STACK.append(label)
        try:
            return fn(*args, **kwargs)
        finally:
            STACK.pop()
            TIMES[label] += time.perf_counter() - started
            CALLS[label] += 1

    return wrapper


def _statement_head(statement) -> str:
    text = statement if isinstance(statement, str) else str(statement)
    return " ".join(text.split())[:110]


def patch_statements() -> None:
    """Time every SQL statement run through SQLAlchemy while a reconcile piece runs."""
    for attr in ("execute", "exec_driver_sql"):
        original = getattr(sa.engine.Connection, attr)

        def wrapper(self, statement, *args, __original=original, **kwargs):
            if not STACK or not STACK[-1].startswith(("merge", "stage", "rejects")):
                return __original(self, statement, *args, **kwargs)
            started = time.perf_counter()
            try:
                return __original(self, statement, *args, **kwargs)
            finally:
                STATEMENTS.append((STACK[-1], _statement_head(statement), time.perf_counter() - started))

        setattr(sa.engine.Connection, attr, wrapper)


def timed_generator(label: str, fn):
    """Time spent producing the items of a generator (not consuming them)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        iterator = fn(*args, **kwargs)
        while True:
            started = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                TIMES[label] += time.perf_counter() - started
                return
            TIMES[label] += time.perf_counter() - started
            CALLS[label] += 1
            yield item

    return wrapper


# (module or class, attribute, label, generator?) — labels are "stage/piece".
PATCHES = [
    (steps, "read_step", "read", False),
    (read, "iter_line_blocks", "read/decode and split lines (iter_line_blocks)", True),
    (read.SourceReader, "_parse_delimited", "read/parse fields (pyarrow read_csv, per block)", False),
    (steps, "map_step", "map", False),
    (transform.Mapper, "map_frame", "map/Mapper.map_frame (polars)", False),
    (steps, "validate_step", "validate", False),
    (validate.Validator, "_failures", "validate/pandera schema.validate", False),
    (validate.Validator, "_require_keys", "validate/_require_keys", False),
    (steps, "early_failure", "validate/early_failure (reads the rejects so far)", False),
    (steps, "read_batches", "io/read Arrow IPC work files (read_batches)", True),
    (merge, "reconcile_step", "reconcile", False),
    (reconcile, "_csv", "stage/CSV encode of the valid rows (pyarrow, per frame)", False),
    (QueuedLibpqWriter, "finish", "stage/wait for the COPY to finish (the part not overlapped)", False),
    (reconcile.Reconciler, "merge", "merge", False),
    (reconcile.Reconciler, "_apply", "merge/_apply (UPDATE, DELETE, INSERT … SELECT from the stage)", False),
    (reconcile.Reconciler, "_link_list_and_service", "merge/_link_list_and_service", False),
    (reconcile.Reconciler, "_result", "merge/_result (counts, reject rows)", False),
    (merge, "read_rejects", "rejects/read_rejects (group + join reasons)", False),
    (merge, "_texts_for", "rejects/_texts_for (original text of merge rejects)", False),
    (merge, "reject_policy_failure", "rejects/reject_policy_failure", False),
    (merge, "_record_rejects", "rejects/_record_rejects (COPY into import_reject)", False),
    (merge, "write_rejects", "rejects/write_rejects (rejects file + reasons.csv)", False),
]


def install_patches() -> None:
    """Wrap each piece; a piece the project no longer has (renamed) is skipped with a note."""
    for owner, attrs, label, is_gen in PATCHES:
        for attr in (attrs,) if isinstance(attrs, str) else attrs:
            if hasattr(owner, attr):
                setattr(owner, attr, (timed_generator if is_gen else timed)(label, getattr(owner, attr)))
                break
        else:
            print(f"note: {owner.__name__} has no {attrs}; not timed", file=sys.stderr)


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                    "-c", sql], check=True)


def one_import(template, csv: Path, engine: sa.Engine, work: Path, label: str) -> dict:
    TIMES.clear()
    CALLS.clear()
    STATEMENTS.clear()
    run_dir = work / f"run_{label}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    started = time.perf_counter()
    with engine.connect() as session:  # as the ops share the run's session
        state = steps.read_step(template, csv, run_dir)
        state = steps.map_step(state)
        state = steps.validate_step(state, session)  # stages the valid rows as it goes
        failure = steps.early_failure(state)
        assert failure is None, failure
        outcome = merge.reconcile_step(state, session, f"profile-{label}", work / "rejects")
    total = time.perf_counter() - started
    return {"total": total, "times": dict(TIMES), "calls": dict(CALLS), "summary": outcome.summary(),
            "status": outcome.status, "statements": list(STATEMENTS)}


def stages(result: dict) -> dict[str, float]:
    t = result["times"]
    rejects = sum(v for k, v in t.items() if k.startswith("rejects/") and k != "rejects/read_rejects (group + join reasons)")
    # read_rejects also runs inside early_failure (counted in validate there).
    rejects += t.get("rejects/read_rejects (group + join reasons)", 0) - t.get("validate/early_failure (reads the rejects so far)", 0)
    reconcile_rest = t["reconcile"] - t["merge"] - (rejects - t.get("rejects/write_rejects (rejects file + reasons.csv)", 0))
    return {
        "read": t["read"],
        "map": t["map"],
        "validate, staging as it goes (COPY overlapped)": t["validate"] + t.get("validate/early_failure (reads the rejects so far)", 0),
        "merge": t["merge"],
        "rejects": rejects,
        "commit + count(*) + rest of reconcile_step": reconcile_rest,
    }


def markdown(rows: int, results: dict, cprofile_text: str, dagster_walls: dict) -> str:
    lines = [f"## Per-stage profile, {rows:,} rows (PostgreSQL)", "", f"Project commit measured: {COMMIT_AT_START}.", "",
             "From `bench/profile_stages.py`: the step functions called directly (no Dagster), each piece timed "
             "by a wrapper; seconds. Stage timings vary by a few seconds from run to run (the merge most).", ""]
    lines.append("| stage | first load s | share | re-import s | share |")
    lines.append("|---|---:|---:|---:|---:|")
    first, again = stages(results["first"]), stages(results["reimport"])
    tot_f, tot_r = results["first"]["total"], results["reimport"]["total"]
    rows_out = list(first)
    for k in rows_out:
        lines.append(f"| {k} | {first[k]:.1f} | {first[k] / tot_f:.0%} | {again[k]:.1f} | {again[k] / tot_r:.0%} |")
    lines.append(f"| **sum of stages (direct calls)** | **{tot_f:.1f}** | | **{tot_r:.1f}** | |")
    if dagster_walls:
        lines += ["", "The real Dagster runs (`campaign-pipelines run`, bench/run.py, same file): each op's duration "
                  "as Dagster logs it (STEP_SUCCESS), and the rest of the process's wall time (interpreter start, "
                  "imports, definitions and job build, run storage, event log writes): the Dagster overhead.", "",
                  "| load | wall s | read_file | map_columns | validate_rows | reconcile | report | Dagster overhead (wall − ops) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for load, run in dagster_walls.items():
            st = run["steps"]
            cells = " | ".join(f"{st.get(k, 0):.1f}" for k in ("read_file", "map_columns", "validate_rows", "reconcile", "report"))
            lines.append(f"| {load} | {run['seconds']:.1f} | {cells} | {run['seconds'] - sum(st.values()):.1f} |")
    lines += ["", "Pieces (cumulative seconds; a piece may run inside another, e.g. "
              "`read_batches` inside map/validate/reconcile):", "",
              "| piece | first load s | calls | re-import s |", "|---|---:|---:|---:|"]
    tf, tr = results["first"]["times"], results["reimport"]["times"]
    for _, _, label, _ in PATCHES:
        if label in ("read", "map", "validate", "reconcile", "merge"):
            continue
        lines.append(f"| {label} | {tf.get(label, 0):.2f} | {results['first']['calls'].get(label, 0)} | {tr.get(label, 0):.2f} |")
    for load in ("first", "reimport"):
        lines += ["", f"SQL statements of the reconcile step over 0.3 s, {load.replace('first', 'first load')} "
                  "(innermost piece, statement, seconds):", "", "| piece | statement | s |", "|---|---|---:|"]
        for piece, head, seconds in results[load]["statements"]:
            if seconds >= 0.3:
                lines.append(f"| {piece.split(' (')[0]} | `{head.replace('|', '/')}` | {seconds:.2f} |")
    lines += ["", "<details><summary>cProfile, first load: top functions by own time</summary>", "", "```",
              cprofile_text.strip(), "```", "", "</details>"]
    for load, plans in results.get("plans", {}).items():
        lines += ["", f"<details><summary>auto_explain (ANALYZE, no timing) of statements over 2 s, "
                  f"{load.replace('first', 'first load')} (separate pass)</summary>", "", "```"]
        lines += [p.strip() for p in plans] or ["(none)"]
        lines += ["```", "", "</details>"]
    return "\n".join(lines)


COMMIT_AT_START = "unknown"


def main() -> int:
    global COMMIT_AT_START
    COMMIT_AT_START = code_commit()  # the code this process imported
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/campaign-bench"))
    parser.add_argument("--schema", default="bench_profile")
    parser.add_argument("--no-cprofile", action="store_true")
    args = parser.parse_args()

    csv = args.work / "data" / "inbox" / f"recipients_{args.rows}.csv"
    manifest = generate.generate(args.rows, csv)
    template = parse_template((BENCH / "templates" / "bench_recipients.yaml").read_text(), "bench_recipients.yaml")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{args.schema}"
    work = args.work / "profile"
    install_patches()
    patch_statements()

    def fresh(explain: bool = False) -> sa.Engine:
        psql(f"DROP SCHEMA IF EXISTS {args.schema} CASCADE; CREATE SCHEMA {args.schema}")
        engine = sa.create_engine(url)
        if explain:  # plans of statements over 2 s, sent back to us as notices
            @sa.event.listens_for(engine, "connect")
            def _explain(dbapi_connection, _record):
                dbapi_connection.add_notice_handler(
                    lambda d: PLANS.append(d.message_primary or "") if "duration" in (d.message_primary or "") else None)
                with dbapi_connection.cursor() as cursor:
                    cursor.execute("LOAD 'auto_explain'")
                    cursor.execute("SET auto_explain.log_min_duration = '2s'")
                    cursor.execute("SET auto_explain.log_analyze = on")
                    cursor.execute("SET auto_explain.log_timing = off")
                    cursor.execute("SET client_min_messages = log")
                dbapi_connection.commit()
        schemas.BUILTIN.metadata.create_all(engine)
        return engine

    engine = fresh()
    psql("CHECKPOINT")
    results = {"first": one_import(template, csv, engine, work, "first")}
    print(f"first load: {results['first']['total']:.1f} s {results['first']['summary']}", flush=True)
    psql(f"VACUUM (ANALYZE) {args.schema}.recipient")
    psql("CHECKPOINT")
    results["reimport"] = one_import(template, csv, engine, work, "reimport")
    print(f"re-import: {results['reimport']['total']:.1f} s {results['reimport']['summary']}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    cprofile_text = "(skipped)"
    if not args.no_cprofile:
        # Extra passes: cProfile (first load), and auto_explain plans of slow statements (both loads).
        engine.dispose()
        engine = fresh(explain=True)
        profiler = cProfile.Profile()
        profiler.enable()
        one_import(template, csv, engine, work, "cprofile")
        profiler.disable()
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).strip_dirs().sort_stats("tottime").print_stats(25)
        text = buffer.getvalue()
        cprofile_text = text[text.index("   ncalls"):] if "   ncalls" in text else text
        first_plans = list(PLANS)
        PLANS.clear()
        psql(f"VACUUM (ANALYZE) {args.schema}.recipient")
        one_import(template, csv, engine, work, "explain-reimport")
        results["plans"] = {"first": first_plans, "reimport": list(PLANS)}
    engine.dispose()
    psql(f"DROP SCHEMA IF EXISTS {args.schema} CASCADE")
    shutil.rmtree(work, ignore_errors=True)

    dagster_walls = {}
    saved = BENCH / "results" / f"rows_{args.rows}.json"
    if saved.exists():
        for c in json.loads(saved.read_text())["cases"]:
            if c["system"] == "ours" and c["db"] == "pg":
                dagster_walls[c["load"]] = {"seconds": c["seconds"], "steps": c.get("steps", {})}
    out = {"rows": args.rows, "when": dt.datetime.now(dt.UTC).isoformat(), "manifest": manifest, "results": results,
           "stages": {k: stages(results[k]) for k in ("first", "reimport")}, "peak_rss_profile_process": peak,
           "dagster_walls": dagster_walls}
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / f"profile_{args.rows}.json").write_text(json.dumps(out, indent=2, default=str))
    md = markdown(args.rows, results, cprofile_text, dagster_walls)
    (BENCH / "results" / f"profile_{args.rows}.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
