"""Input formats (issue 28): the same rows as CSV, JSON Lines, a JSON array and Parquet,
each imported end to end by our Dagster job into an empty recipient table.

    .venv/bin/python bench/formats.py --rows 1000000 --rounds 3
    .venv/bin/python bench/formats.py --rows 2000000 --rounds 1 --formats csv,jsonl,parquet
    .venv/bin/python bench/formats.py --rows 1000000 2000000 --rounds 3   # both sizes in one call
    .venv/bin/python bench/formats.py --render                            # RESULTS.md again from the saved results

The CSV is bench/generate.py's (same seed, shared with bench/run.py). Its rows are
converted, untimed, into `recipients_<N>.jsonl` (one object per line, every value the
CSV field's text as a JSON string, keys the header's titles), `recipients_<N>.json` (a
JSON array of the same objects, streamed out) and `recipients_<N>.parquet` (pyarrow,
the CSV read as all-string columns, row groups of 131,072 rows, snappy). The templates
(bench/templates/bench_recipients_{jsonl,json,parquet}.yaml) are bench_recipients.yaml
with `source.format` changed and the delimited-only keys removed: the same mapping.

A line with too few fields (one of the generator's defects) has no object form: in the
JSON files it is written as an array of its fields (a record that is not an object,
which the import rejects, as the CSV reader rejects the ragged line); a Parquet file
cannot hold it at all, so the conversion drops it (pyarrow's `invalid_row_handler`) and
that import reads and rejects that many records fewer. Every format must insert the
same rows (counts and a hash of the stored values are compared) and reject the same
others.

Then, per size, rounds 1..N, each running every format once, the order rotated by one
each round; each run is bench/run.py's "ours" first load: a fresh schema with the
tables (`create_all`), `CHECKPOINT`, `campaign-pipelines run <template> --file …
--json --verbose` measured by run.py's `measure` (wall, CPU seconds of our process
tree, peak RSS) with bench/figures.py's server window (PostgreSQL CPU, WAL and
temporary bytes), then `VACUUM (ANALYZE)` (untimed). Reported per format: median
(range) over the rounds and the ratio to CSV of the medians, and round by round.
Saves bench/results/formats_<N>.json; bench/run.py's RESULTS.md gets a section from
every saved formats_*.json (`render_saved`).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import figures  # noqa: E402
import generate  # noqa: E402
import run  # noqa: E402
from purchases import code_fingerprint  # noqa: E402

FORMATS = ("csv", "jsonl", "json", "parquet", "xml")
TEMPLATES = {"csv": "bench_recipients", "jsonl": "bench_recipients_jsonl", "json": "bench_recipients_json",
             "parquet": "bench_recipients_parquet", "xml": "bench_recipients_xml"}
LABEL = {"csv": "CSV", "jsonl": "JSON Lines", "json": "JSON array", "parquet": "Parquet", "xml": "XML"}
SCHEMA = "bench_formats"
ROW_GROUP = 131_072
CONVERT_VERSION = 1  # bump when the converted bytes change
WORK = Path("/tmp/campaign-bench")
BUSY_OTHER_CPU_S = 2.0  # other CPU s (the rest of the machine over a run) above which a round shared the cores
COUNT_KEYS = ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_ignored", "rows_rejected")
# The stored values every format must produce alike (not the generated id or the times).
STORED = ("email, first_name, last_name, birth_date, gender, mobile_phone, country_code, city, postal_code, "
          "email_denylisted, origin")


# -- the files (untimed) ---------------------------------------------------------------


def convert(csv_path: Path, manifest: dict, formats: list[str]) -> dict[str, dict]:
    """The CSV's rows as JSON Lines, a JSON array and Parquet (those of `formats` that are
    not CSV), beside it; an existing conversion of the same CSV bytes is reused."""
    out: dict[str, dict] = {"csv": {"file": str(csv_path), "bytes": csv_path.stat().st_size, "records": manifest["rows"],
                                    "not_objects": 0, "dropped": 0}}
    wanted = [f for f in formats if f != "csv"]

    def target(fmt: str) -> Path:
        return csv_path.with_suffix("." + fmt)

    def reusable(fmt: str) -> dict | None:
        path, meta = target(fmt), target(fmt).with_name(target(fmt).name + ".meta.json")
        if not (path.exists() and meta.exists()):
            return None
        info = json.loads(meta.read_text())
        same = info.get("version") == CONVERT_VERSION and info.get("csv_bytes") == manifest["bytes"] \
            and info.get("csv_rows") == manifest["rows"] and info.get("bytes") == path.stat().st_size
        return info if same else None

    todo = []
    for fmt in wanted:
        info = reusable(fmt)
        if info:
            out[fmt] = {**info, "reused": True}
        else:
            todo.append(fmt)
    json_todo = [f for f in todo if f in ("jsonl", "json")]
    if json_todo:
        out.update(_write_json(csv_path, {f: target(f) for f in json_todo}))
    if "parquet" in todo:
        out["parquet"] = _write_parquet(csv_path, target("parquet"))
    if "xml" in todo:
        out["xml"] = _write_xml(csv_path, target("xml"))
    for fmt in todo:
        info = {"version": CONVERT_VERSION, "csv_bytes": manifest["bytes"], "csv_rows": manifest["rows"],
                "file": str(target(fmt)), **out[fmt], "bytes": target(fmt).stat().st_size}
        target(fmt).with_name(target(fmt).name + ".meta.json").write_text(json.dumps(info, indent=2))
        out[fmt] = {**info, "reused": False}
    return out


def _write_json(csv_path: Path, targets: dict[str, Path]) -> dict[str, dict]:
    """One pass over the CSV: each row as one compact JSON object (header titles as keys,
    the fields' text as strings); a ragged row as the array of its fields. JSON Lines:
    one record a line; JSON: `[`, the records separated by `,` and a line break, `]`,
    written as they come (never the whole array in memory)."""
    tmp = {fmt: path.with_name(path.name + ".tmp") for fmt, path in targets.items()}
    files = {fmt: open(path, "w", encoding="utf-8", newline="\n") for fmt, path in tmp.items()}
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    records = not_objects = 0
    try:
        if "json" in files:
            files["json"].write("[\n")
        with open(csv_path, encoding="utf-8", newline="") as source:
            reader = csv.reader(source)
            header = next(reader)
            chunk: list[str] = []

            def flush(first: bool) -> None:
                if not chunk:
                    return
                if "jsonl" in files:
                    files["jsonl"].write("\n".join(chunk) + "\n")
                if "json" in files:
                    files["json"].write(("" if first else ",\n") + ",\n".join(chunk))

            for fields in reader:
                records += 1
                if len(fields) == len(header):
                    chunk.append(dumps(dict(zip(header, fields))))
                else:
                    not_objects += 1
                    chunk.append(dumps(fields))
                if len(chunk) == 50_000:
                    flush(records == len(chunk))
                    chunk.clear()
            flush(records == len(chunk))
        if "json" in files:
            files["json"].write("\n]\n")
    finally:
        for f in files.values():
            f.close()
    for fmt, path in targets.items():
        tmp[fmt].replace(path)
    return {fmt: {"records": records, "not_objects": not_objects, "dropped": 0} for fmt in targets}


def _write_xml(csv_path: Path, path: Path) -> dict:
    """`<recipients>`, one `<r>` per row, each field a child element named by its title, text
    escaped; a ragged row's fields as `<field>` elements (no e-mail: rejected, as the CSV
    reader rejects the ragged line)."""
    from xml.sax.saxutils import escape

    tmp = path.with_name(path.name + ".tmp")
    records = 0
    with open(csv_path, encoding="utf-8", newline="") as source, open(tmp, "w", encoding="utf-8") as out:
        reader = csv.reader(source)
        header = next(reader)
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<recipients>\n')
        for fields in reader:
            records += 1
            names = header if len(fields) == len(header) else ["field"] * len(fields)
            out.write("<r>" + "".join(f"<{n}>{escape(v)}</{n}>" for n, v in zip(names, fields)) + "</r>\n")
        out.write("</recipients>\n")
    tmp.replace(path)
    return {"records": records, "not_objects": 0, "dropped": 0}


def _write_parquet(csv_path: Path, path: Path) -> dict:
    """The CSV read by pyarrow as all-string columns (an empty field stays ""), ragged
    lines skipped and counted, written in row groups of ROW_GROUP rows, snappy."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    header = csv_path.open(encoding="utf-8").readline().rstrip("\r\n").split(",")
    dropped = 0

    def skip(_row) -> str:
        nonlocal dropped
        dropped += 1
        return "skip"

    reader = pacsv.open_csv(
        csv_path,
        read_options=pacsv.ReadOptions(block_size=16 << 20, use_threads=True),
        parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in header}, strings_can_be_null=False),
    )
    schema = pa.schema([(c, pa.string()) for c in header])
    tmp = path.with_name(path.name + ".tmp")
    row_groups = 0
    with pq.ParquetWriter(tmp, schema, compression="snappy") as writer:
        pending: list = []
        pending_rows = 0
        for batch in reader:
            pending.append(batch)
            pending_rows += batch.num_rows
            while pending_rows >= ROW_GROUP:
                table = pa.Table.from_batches(pending, schema)
                writer.write_table(table.slice(0, ROW_GROUP), row_group_size=ROW_GROUP)
                row_groups += 1
                rest = table.slice(ROW_GROUP)
                pending, pending_rows = rest.to_batches(), rest.num_rows
        if pending_rows:
            writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=ROW_GROUP)
            row_groups += 1
    records = pq.ParquetFile(tmp).metadata.num_rows
    tmp.replace(path)
    return {"records": records, "not_objects": 0, "dropped": dropped, "row_groups": row_groups}


# -- the runs --------------------------------------------------------------------------


def run_format(args: argparse.Namespace, fmt: str, path: Path, rows: int, round_number: int) -> dict:
    """bench/run.py's "ours" first load on PostgreSQL, with this format's template and file."""
    run.prepare_pg(args, args.schema, "first")
    env = {
        **os.environ,
        "CAMPAIGN_DB_URL": run.pg_url(args, args.schema),
        "CAMPAIGN_DATA_DIR": str(args.work / "data"),
        "CAMPAIGN_TEMPLATES_DIR": str(run.TEMPLATES_DIR),
        "DAGSTER_HOME": str(args.home),
    }
    cmd = [str(run.VENV_BIN / "campaign-pipelines"), "run", TEMPLATES[fmt], "--file",
           str(path.relative_to(args.work / "data")), "--json", "--verbose"]
    out = args.work / "formats" / f"{fmt}_{rows}_r{round_number}"
    m = run.measure(cmd, env, out, server=run.server_window(args))
    # The rest of the machine from spawn to exit: its busy CPU seconds less ours and the
    # server's (the server's window is a little longer; this bench's RSS polling is in it).
    # A test suite or another job on the same cores shows here.
    m["other_cpu_s"] = max(0.0, m["machine_busy_s"] - m["cpu_s"] - m.get("cpu_pg_s", 0.0))
    if m["returncode"] != 0:
        tail = Path(m["stderr"]).read_text(errors="replace")[-4000:]
        raise SystemExit(f"{LABEL[fmt]} import failed (exit {m['returncode']}).\ncommand: "
                         + " ".join(f"{k}={env[k]}" for k in ("CAMPAIGN_DB_URL", "CAMPAIGN_DATA_DIR",
                                                               "CAMPAIGN_TEMPLATES_DIR", "DAGSTER_HOME"))
                         + " " + " ".join(cmd) + f"\nstderr tail:\n{tail}")
    payload = json.loads(Path(m["stdout"]).read_text().strip().splitlines()[-1])
    m["counts"] = {k: payload.get(k, 0) for k in COUNT_KEYS}
    m["status"] = payload.get("status")
    m["steps"] = run.step_durations(Path(m["stderr"]))
    m["events"] = figures.events_stored(payload["run_id"], env["DAGSTER_HOME"])
    # Untimed: the stored values, to compare formats; then what run.py does after a case.
    m["stored_hash"] = run.psql(args, f"SELECT count(*) || ':' || md5(string_agg(concat_ws('|', {STORED}), E'\\n' "
                                      f"ORDER BY email)) FROM recipient", args.schema)
    run.psql(args, f'VACUUM (ANALYZE) {args.schema}."recipient"')
    return m


def check(fmt: str, m: dict, manifest: dict, conversion: dict) -> list[str]:
    """The line accounting of one run: every record read, the generator's defects
    rejected (less those the format cannot hold), every valid row inserted."""
    n, c = manifest["rows"] - conversion["dropped"], m["counts"]
    rejects = manifest["expected_rejects"] - conversion["dropped"]
    problems = []
    if c["rows_read"] != n:
        problems.append(f"rows_read {c['rows_read']:,} != {n:,} records")
    if c["rows_rejected"] != rejects:
        problems.append(f"rows_rejected {c['rows_rejected']:,} != {rejects:,} defective records")
    if c["rows_inserted"] != manifest["expected_loaded"]:
        problems.append(f"rows_inserted {c['rows_inserted']:,} != {manifest['expected_loaded']:,}")
    total = sum(c[k] for k in COUNT_KEYS if k != "rows_read")
    if total != n:
        problems.append(f"inserted + updated + unchanged + ignored + rejected = {total:,} != {n:,}")
    return [f"{LABEL[fmt]}: {p}" for p in problems]


FIGURES = ("seconds", "cpu_s", "cpu_pg_s", "other_cpu_s", "peak_rss", "wal_bytes", "temp_bytes", "events")


def summarize(samples: dict[str, list[dict]]) -> dict[str, dict]:
    """Per format: each figure's median and range over the rounds, the median round's
    steps, and the ratios to CSV (of the medians, and within each round)."""
    summary: dict[str, dict] = {}
    for fmt, rounds in samples.items():
        s: dict = {"rounds": len(rounds)}
        for name in FIGURES:
            values = [m[name] for m in rounds if name in m]
            if values:
                s[name] = {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}
        ordered = sorted(rounds, key=lambda m: m["seconds"])
        middle = ordered[(len(ordered) - 1) // 2]
        s["steps"] = middle.get("steps", {})
        s["counts"] = middle["counts"]
        s["stored_hash"] = middle.get("stored_hash")
        summary[fmt] = s
    base = samples.get("csv")
    for fmt, s in summary.items():
        if base is None or fmt == "csv":
            continue
        s["ratio"] = {}
        for name in ("seconds", "cpu_s", "cpu_pg_s", "peak_rss"):
            b, a = summary["csv"].get(name), s.get(name)
            if a and b:
                by_round = [x[name] / y[name] for x, y in zip(samples[fmt], base) if name in x and name in y]
                s["ratio"][name] = {"of_medians": a["median"] / b["median"], "rounds": by_round}
        read_b, read_a = summary["csv"]["steps"].get("read_file"), s["steps"].get("read_file")
        if read_a and read_b:
            s["ratio"]["read_step"] = {"of_medians": read_a / read_b, "rounds": []}
    return summary


def slim(m: dict) -> dict:
    keep = ("seconds", "cpu_s", "cpu_pg_s", "other_cpu_s", "machine_busy_s", "peak_rss", "peak_rss_largest_process", "peak_rss_tree_polled", "wal_bytes",
            "temp_bytes", "events", "counts", "status", "steps", "stored_hash", "round", "position")
    return {k: m[k] for k in keep if k in m}


# -- the report ------------------------------------------------------------------------


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def _cell(s: dict, name: str, scale: float = 1.0, digits: int = 1) -> str:
    f = s.get(name)
    if not f:
        return "—"
    if f["min"] == f["max"] or len(f["all"]) == 1:
        return f"{f['median'] / scale:,.{digits}f}"
    return f"{f['median'] / scale:,.{digits}f} ({f['min'] / scale:,.{digits}f}–{f['max'] / scale:,.{digits}f})"


def _ratio(s: dict, name: str) -> str:
    r = s.get("ratio", {}).get(name)
    if not r:
        return "—"
    rounds = sorted(r["rounds"])
    spread = f" ({rounds[0]:.2f}–{rounds[-1]:.2f})" if len(rounds) > 1 else ""
    return f"{r['of_medians']:.2f}{spread}"


def table_lines(data: dict) -> list[str]:
    lines = ["| format | file MiB | wall s | our CPU s | server CPU s | peak RSS MiB | wall × CSV | our CPU × CSV | "
             "server CPU × CSV | read step s (× CSV) | WAL / temp MiB | other CPU s | read | inserted | rejected |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for fmt, s in data["summary"].items():
        conv = data["conversions"][fmt]
        read_step = s["steps"].get("read_file")
        read_ratio = s.get("ratio", {}).get("read_step")
        read_cell = (f"{read_step:.1f}" + (f" ({read_ratio['of_medians']:.2f})" if read_ratio else "")) if read_step else "—"
        c = s["counts"]
        lines.append(
            f"| {LABEL[fmt]} | {_mib(conv['bytes'])} | {_cell(s, 'seconds')} | {_cell(s, 'cpu_s')} | {_cell(s, 'cpu_pg_s')} | "
            f"{_cell(s, 'peak_rss', 2**20, 0)} | {_ratio(s, 'seconds')} | {_ratio(s, 'cpu_s')} | {_ratio(s, 'cpu_pg_s')} | "
            f"{read_cell} | {s['wal_bytes']['median'] / 2**20:,.1f} / {s['temp_bytes']['median'] / 2**20:,.1f} | "
            f"{_cell(s, 'other_cpu_s')} | "
            f"{c['rows_read']:,} | {c['rows_inserted']:,} | {c['rows_rejected']:,} |"
        )
    return lines


def step_lines(data: dict) -> list[str]:
    out = []
    for fmt, s in data["summary"].items():
        steps = s["steps"]
        if steps:
            wall = sorted(s["seconds"]["all"])[(len(s["seconds"]["all"]) - 1) // 2]
            parts = ", ".join(f"{k} {v:.1f}" for k, v in steps.items())
            out.append(f"- {LABEL[fmt]}, median round: Dagster steps (s): {parts}; outside the steps "
                       f"{wall - sum(steps.values()):.1f} s")
    return out


def target_lines(saved: dict[int, dict]) -> list[str]:
    out = []

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**NOT met**"

    one = saved.get(1_000_000)
    if one:
        summary = one["summary"]
        for fmt, limit in (("jsonl", 1.5), ("parquet", 1.0), ("xml", 2.5)):
            r = summary.get(fmt, {}).get("ratio", {})
            if "seconds" in r and "cpu_s" in r:
                w, c = r["seconds"], r["cpu_s"]
                out.append(f"- 1M {LABEL[fmt]} ≤ {limit} × CSV: wall {w['of_medians']:.2f} × "
                           f"(rounds {', '.join(f'{x:.2f}' for x in w['rounds'])}) — {verdict(w['of_medians'] <= limit)}; "
                           f"our CPU {c['of_medians']:.2f} × (rounds {', '.join(f'{x:.2f}' for x in c['rounds'])}) — "
                           f"{verdict(c['of_medians'] <= limit)}")
        # A verdict on wall time means little while something else used the cores.
        busy = {f: summary[f]["other_cpu_s"]["median"] for f in summary if "other_cpu_s" in summary[f]}
        if busy and max(busy.values()) > BUSY_OTHER_CPU_S:
            out.append("- The machine was busy during these rounds (other CPU s, medians: "
                       + ", ".join(f"{LABEL[f]} {v:.1f}" for f, v in busy.items())
                       + "; about 0.4 on a quiet machine): the wall ratios are weak evidence, the CPU ratios less so.")
    sizes = sorted(saved)
    if len(sizes) > 1:
        formats = [f for f in FORMATS if any(f in saved[n]["summary"] for n in sizes)]
        out += ["", "Peak RSS (MiB, median over the run's rounds) by file size; flat: the largest size ≤ 1.10 × the smallest:", "",
                "| format | " + " | ".join(f"{n:,} rows" for n in sizes) + " | largest / smallest |",
                "|---|" + "---:|" * (len(sizes) + 1)]
        for fmt in formats:
            values = {n: saved[n]["summary"][fmt]["peak_rss"]["median"] for n in sizes if fmt in saved[n]["summary"]}
            cells = [(_mib(values[n]) if n in values else "—") for n in sizes]
            have = [n for n in sizes if n in values]
            ratio = values[have[-1]] / values[have[0]] if len(have) > 1 else None
            flat = f"{ratio:.2f} ({have[-1] / have[0]:g} × the rows) — {verdict(ratio <= 1.10)}" if ratio else "—"
            out.append(f"| {LABEL[fmt]} | " + " | ".join(cells) + f" | {flat} |")
    return out


def render_one(data: dict) -> list[str]:
    rows = data["rows"]
    conv = data["conversions"]
    lines = [f"### {rows:,} rows — run of {data['when']}, {data['rounds']} round(s)", "",
             f"`{data['command']}`. Project code: {data['machine'].get('commit', 'unknown')}, fingerprint "
             f"{data['code']['before']}" + (" (**changed during the run**: " + data["code"]["after"] + ")"
                                             if data["code"]["before"] != data["code"]["after"] else " (unchanged during the run)")
             + f"; load average at the end {data['machine'].get('loadavg_at_end', '?')}. Order of the formats per round: "
             + "; ".join(", ".join(LABEL[f] for f in order) for order in data["orders"]) + ".", ""]
    notes = []
    for fmt in data["summary"]:
        c = conv[fmt]
        if c.get("not_objects"):
            notes.append(f"{LABEL[fmt]}: {c['not_objects']:,} ragged lines written as arrays (rejected as not objects)")
        if c.get("dropped"):
            notes.append(f"{LABEL[fmt]}: {c['dropped']:,} ragged lines not representable, dropped by the conversion")
        if c.get("row_groups"):
            notes.append(f"{LABEL[fmt]}: {c['row_groups']} row groups, snappy")
    if notes:
        lines += ["Files: " + "; ".join(notes) + ".", ""]
    lines += table_lines(data) + [""] + step_lines(data) + [""]
    lines.append(f"Accounting: {data['accounting']}")
    return lines + [""]


def render_saved() -> str:
    """RESULTS.md's section, from every bench/results/formats_*.json ('' if none)."""
    saved = {}
    for f in sorted(run.RESULTS_DIR.glob("formats_*.json")):
        data = json.loads(f.read_text())
        saved[data["rows"]] = data
    if not saved:
        return ""
    lines = ["## Input formats (issue 28): the same rows as CSV, JSON Lines, a JSON array and Parquet", "",
             "Written by `bench/formats.py` (see its docstring and `bench/README.md`). Our import end to end "
             "(first load into an empty `recipient`, PostgreSQL), the same rows of `bench/generate.py` in each "
             "format, templates `bench_recipients{,_jsonl,_json,_parquet}.yaml` (one mapping). Figures: median "
             "(range) over the rounds; ratios: of the medians to CSV's, and (range) of the within-round ratios; "
             "rounds interleave the formats. CPU s = user + system of our process tree; server CPU = the "
             "PostgreSQL server's over the run (bench/figures.py); other CPU s = the rest of the machine's busy CPU "
             "seconds over the run (/proc/stat less ours and the server's): a test suite or another job on the "
             "same cores shows there, and weighs on wall time more than on CPU seconds.", ""]
    for rows in sorted(saved):
        lines += render_one(saved[rows])
    lines += ["### Targets (issue 28)", ""] + target_lines(saved)
    return "\n".join(lines).rstrip() + "\n"


def command_line() -> str:
    return " ".join([".venv/bin/python bench/formats.py", *sys.argv[1:]])


# -- main --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000], help="one or more sizes (default 1000000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per size, formats interleaved (default 3)")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated: csv, jsonl, json, parquet, xml")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--no-save", action="store_true", help="print only; do not write bench/results or RESULTS.md")
    parser.add_argument("--render", action="store_true", help="measure nothing: rewrite RESULTS.md from the saved results")
    parser.add_argument("--schema", default=SCHEMA, help=f"PostgreSQL schema of the runs, dropped at the end (default {SCHEMA}); "
                        "two benches at once need two schemas and two --work folders (the Dagster home is made afresh)")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--pg-db", default="test")
    args = parser.parse_args()
    args.work = args.work.absolute()
    if args.render:
        run.write_results_md(BENCH / "RESULTS.md")
        print(render_saved())
        return 0
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise SystemExit(f"--formats: unknown {unknown}; choose among {', '.join(FORMATS)}")

    inbox = args.work / "data" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    (args.work / "formats").mkdir(parents=True, exist_ok=True)
    need = sum(args.rows) * 110 * 8  # CSV, two JSON files (≈ 2.3 × the CSV), Parquet, our Arrow work files
    if shutil.disk_usage(args.work).free < need:
        raise SystemExit(f"{args.work}: about {need / 2**30:.1f} GiB needed.")

    # A Dagster instance that exists already (created once, untimed), as run.py's; its own
    # home, so that a run.py in the same work folder does not remove it.
    args.home = args.work / "formats" / "dagster_home"
    shutil.rmtree(args.home, ignore_errors=True)
    args.home.mkdir(parents=True)
    (args.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    subprocess.run([sys.executable, "-c", "import dagster; dagster.DagsterInstance.get()"],
                   env={**os.environ, "DAGSTER_HOME": str(args.home)}, check=True)

    problems: list[str] = []
    results = []
    try:
        for rows in args.rows:
            csv_path = inbox / f"recipients_{rows}.csv"
            print(f"generating {csv_path} ...", flush=True)
            manifest = generate.generate(rows, csv_path)
            print(f"  {manifest['bytes'] / 2**20:,.0f} MiB, {manifest['expected_rejects']:,} defective lines"
                  + (" (reused)" if manifest["reused"] else f" in {manifest['seconds']} s"), flush=True)
            print("converting (untimed) ...", flush=True)
            conversions = convert(csv_path, manifest, formats)
            for fmt in formats:
                c = conversions[fmt]
                print(f"  {LABEL[fmt]:<10} {c['bytes'] / 2**20:,.0f} MiB, {c['records']:,} records"
                      + (f", {c['not_objects']:,} not objects" if c.get("not_objects") else "")
                      + (f", {c['dropped']:,} dropped" if c.get("dropped") else "")
                      + (" (reused)" if c.get("reused") else ""), flush=True)
            paths = {fmt: Path(conversions[fmt]["file"]) for fmt in formats}

            fingerprint = code_fingerprint()
            samples: dict[str, list[dict]] = {fmt: [] for fmt in formats}
            orders = []
            for r in range(args.rounds):
                order = formats[r % len(formats):] + formats[:r % len(formats)]
                orders.append(order)
                print(f"{rows:,} rows, round {r + 1} of {args.rounds}: {', '.join(order)}", flush=True)
                for position, fmt in enumerate(order):
                    print(f"  {fmt:<8} ...", end=" ", flush=True)
                    m = run_format(args, fmt, paths[fmt], rows, r + 1)
                    m.update(round=r + 1, position=position)
                    bad = check(fmt, m, manifest, conversions[fmt])
                    problems += [f"{rows:,} rows, round {r + 1}: {p}" for p in bad]
                    samples[fmt].append(m)
                    c = m["counts"]
                    print(f"{m['seconds']:.1f} s, cpu {m['cpu_s']:.2f} s, pg cpu {m['cpu_pg_s']:.2f} s, "
                          f"other cpu {m['other_cpu_s']:.2f} s, "
                          f"{m['peak_rss'] / 2**20:,.0f} MiB; read {c['rows_read']:,} inserted {c['rows_inserted']:,} "
                          f"rejected {c['rows_rejected']:,}" + ("  ACCOUNTING MISMATCH" if bad else "")
                          + f"\n      figures: {figures.describe(m)}"
                          + "\n      steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in m["steps"].items()), flush=True)
            # The same rows in every format: inserted alike, rejected alike once the records a
            # format cannot hold are counted, and the same values stored.
            inserted = {f: {m["counts"]["rows_inserted"] for m in samples[f]} for f in formats}
            if len(set().union(*inserted.values())) != 1:
                problems.append(f"{rows:,} rows: inserted differs across formats: {inserted}")
            rejected = {f: {m["counts"]["rows_rejected"] + conversions[f]["dropped"] for m in samples[f]} for f in formats}
            if len(set().union(*rejected.values())) != 1:
                problems.append(f"{rows:,} rows: rejected (+ dropped by the conversion) differs across formats: {rejected}")
            hashes = {f: {m["stored_hash"] for m in samples[f]} for f in formats}
            if len(set().union(*hashes.values())) != 1:
                problems.append(f"{rows:,} rows: the stored values differ across formats: {hashes}")
            after = code_fingerprint()
            summary = summarize(samples)
            accounting = (f"N = {rows:,}; generator's defective lines = {manifest['expected_rejects']:,}; "
                          + ("every run read every record, rejected the defects (less those its file cannot hold) and "
                             "inserted the same rows, with the same stored values, in every format."
                             if not [p for p in problems if p.startswith(f"{rows:,} rows")] else
                             "MISMATCHES: " + "; ".join(p for p in problems if p.startswith(f"{rows:,} rows"))))
            data = {
                "rows": rows,
                "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "command": command_line(),
                "rounds": args.rounds,
                "formats": formats,
                "orders": orders,
                "machine": run.machine(args),
                "code": {"before": fingerprint, "after": after},
                "manifest": manifest,
                "conversions": conversions,
                "summary": summary,
                "runs": {f: [slim(m) for m in samples[f]] for f in formats},
                "accounting": accounting,
            }
            results.append(data)
            print()
            print("\n".join(render_one(data)))
            if not args.no_save:
                run.RESULTS_DIR.mkdir(exist_ok=True)
                (run.RESULTS_DIR / f"formats_{rows}.json").write_text(json.dumps(data, indent=2, default=str))
    finally:
        run.psql(args, f"DROP SCHEMA IF EXISTS {args.schema} CASCADE")
    if not args.no_save and results:
        run.write_results_md(BENCH / "RESULTS.md")
        print("\n".join(target_lines({json.loads(f.read_text())["rows"]: json.loads(f.read_text())
                                      for f in run.RESULTS_DIR.glob("formats_*.json")})))
        written = ", ".join(str(run.RESULTS_DIR / f"formats_{d['rows']}.json") for d in results)
        print(f"\nwrote {written} and {BENCH / 'RESULTS.md'}")
    elif results:
        print("\n".join(target_lines({d["rows"]: d for d in results})))
    if problems:
        print("\nACCOUNTING FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
