"""Validation backends: the same checks through pandera's polars and pandas backends.

    .venv/bin/python bench/validation.py --rows 1000000 [--repeat 3]

The benchmark file (bench/generate.py) is read and mapped by the import's own steps
(direct calls, no database), giving the mapped rows the validate step sees. Then the
recipient table's checks (`schemas/recipient.py`: e-mail pattern, phone pattern, date
range, allowed genders and country codes, maximum lengths) run lazily over all rows:

- **polars, built-in checks**: `TableSpec.pandera_schema`, what the import runs;
- **polars, the same checks element-wise**: each check a Python function per value
  (`element_wise=True`), the formulation a hand-written check often takes;
- **pandas, built-in checks**: the same pandera checks (`pandera.pandas`) on the rows
  converted to pandas, strings as Python objects, then with Arrow dtypes.

Every variant must find the same failures, row and column, so that each reject gets the
same reason; the bench fails loudly if one differs. The conversion to pandas is not
timed. Writes bench/results/validation.json and .md (included in RESULTS.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import polars as pl  # noqa: E402

import generate  # noqa: E402
from run import code_commit, save_section  # noqa: E402
from campaign_pipelines.importing import steps  # noqa: E402
from campaign_pipelines.importing.read import LINE, TEXT  # noqa: E402
from campaign_pipelines.importing.transform import REJECTED  # noqa: E402
from campaign_pipelines.templates import parse_template  # noqa: E402


def mapped_rows(rows: int, work: Path) -> tuple[pl.DataFrame, list[str], object]:
    csv = work / "data" / "inbox" / f"recipients_{rows}.csv"
    generate.generate(rows, csv)
    template = parse_template((BENCH / "templates" / "bench_recipients.yaml").read_text(), "bench_recipients.yaml")
    run_dir = work / "validation"
    shutil.rmtree(run_dir, ignore_errors=True)
    state = steps.map_step(steps.read_step(template, csv, run_dir))
    frame = pl.concat(list(steps.read_frames(state.data)))
    shutil.rmtree(run_dir, ignore_errors=True)
    columns = [m.target for m in template.columns]
    # What the validate step checks: the mapped values of the lines the mapping kept.
    frame = frame.filter(~pl.col(REJECTED)).drop(REJECTED, LINE, TEXT)
    return frame, columns, template.table


def element_wise(check) -> object:
    """The same check as a Python function of one value (None passes: nullable)."""
    import pandera.polars as pa

    name = check.name
    args = [a() if callable(a) else a for a in check.args]
    if name == "str_matches":
        pattern = re.compile(args[0])
        test = lambda v: v is None or pattern.match(v) is not None  # noqa: E731
    elif name == "isin":
        allowed = set(args[0])
        test = lambda v: v is None or v in allowed  # noqa: E731
    elif name == "in_range":
        low, high = args
        test = lambda v: v is None or low <= v <= high  # noqa: E731
    elif name == "str_length":
        low, high = args
        test = lambda v: v is None or ((low is None or len(v) >= low) and (high is None or len(v) <= high))  # noqa: E731
    else:
        raise SystemExit(f"no element-wise form for the check {name}")
    return pa.Check(test, element_wise=True, error=check.error)


def field_checks(spec, name: str) -> list:
    from schemas.base import Check

    field = spec.field(name)
    checks = list(field.checks)
    if field.max_length is not None:
        checks.insert(0, Check("str_length", None, field.max_length, error=f"is longer than {field.max_length} characters"))
    return checks


def polars_element_wise_schema(spec, columns: list[str]):
    import pandera.polars as pa

    return pa.DataFrameSchema(
        {c: pa.Column(spec.field(c).polars_dtype, checks=[element_wise(k) for k in field_checks(spec, c)], nullable=True)
         for c in columns},
        strict=False,
    )


def pandas_schema(spec, columns: list[str], arrow: bool):
    import pandas as pd
    import pandera.pandas as pa

    def built(check):
        args = [a() if callable(a) else a for a in check.args]
        if check.name == "in_range" and not arrow:  # dates reach pandas as datetime64, not date32
            args = [pd.Timestamp(a) for a in args]
        return getattr(pa.Check, check.name)(*args, error=check.error)

    return pa.DataFrameSchema(
        {c: pa.Column(None, checks=[built(k) for k in field_checks(spec, c)], nullable=True) for c in columns},
        strict=False,
    )


def failures(schema, frame) -> tuple[float, set[tuple[int, str]]]:
    from pandera.errors import SchemaErrors

    started = time.perf_counter()
    try:
        schema.validate(frame, lazy=True)
        cases = None
    except SchemaErrors as exc:
        cases = exc.failure_cases
    seconds = time.perf_counter() - started
    if cases is None:
        return seconds, set()
    if not isinstance(cases, pl.DataFrame):
        cases = pl.from_pandas(cases[["index", "column"]].astype({"index": "int64", "column": "string"}))
    found = {(int(i), str(c)) for i, c in cases.select("index", "column").iter_rows()}
    return seconds, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/campaign-bench"))
    args = parser.parse_args()
    commit = code_commit()

    frame, columns, spec = mapped_rows(args.rows, args.work)
    checked = [c for c in columns if field_checks(spec, c)]
    print(f"{frame.height:,} mapped rows; columns with checks: {', '.join(checked)}", flush=True)
    as_objects = frame.to_pandas()
    as_arrow = frame.to_pandas(use_pyarrow_extension_array=True)
    variants = [
        ("polars, built-in checks (the import's)", spec.pandera_schema(columns), frame),
        ("polars, the same checks element-wise", polars_element_wise_schema(spec, columns), frame),
        ("pandas, built-in checks, strings as objects", pandas_schema(spec, columns, arrow=False), as_objects),
        ("pandas, built-in checks, Arrow dtypes", pandas_schema(spec, columns, arrow=True), as_arrow),
    ]
    results, reference, problems = [], None, []
    for label, schema, data in variants:
        times, found = [], set()
        for _ in range(args.repeat):
            seconds, found = failures(schema, data)
            times.append(seconds)
        reference = found if reference is None else reference
        same = found == reference
        if not same:
            problems.append(f"{label}: {len(found ^ reference)} failures differ from the polars built-in checks")
        results.append({"variant": label, "seconds": statistics.median(times), "min": min(times), "max": max(times),
                        "failures": len(found), "rows_failing": len({r for r, _ in found}), "same_failures": same})
        print(f"{label}: {statistics.median(times):.2f} s ({min(times):.2f}–{max(times):.2f}), "
              f"{len(found):,} failures{'' if same else '  DIFFERENT FAILURES'}", flush=True)

    base = results[0]["seconds"]
    lines = [
        f"## Validation backends, {frame.height:,} mapped rows",
        "",
        f"Run of {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, project commit {commit}. Command: "
        f"`.venv/bin/python bench/validation.py --rows {args.rows} --repeat {args.repeat}`. The recipient "
        f"checks on {', '.join(f'`{c}`' for c in checked)}, lazy (every failure of every row), over all the "
        "rows at once; seconds are the median of the repeats (range in brackets), conversion to pandas untimed.",
        "",
        "| variant | s | × the import's | failures (row, column) | rows failing | same failures |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(f"| {r['variant']} | {r['seconds']:.2f} ({r['min']:.2f}–{r['max']:.2f}) | {r['seconds'] / base:.1f} | "
                     f"{r['failures']:,} | {r['rows_failing']:,} | {'yes' if r['same_failures'] else 'NO'} |")
    save_section("validation", {"rows": args.rows, "commit": commit, "results": results}, "\n".join(lines))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
