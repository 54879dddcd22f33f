"""Block size: how much of the file the import reads, maps and validates at a time.

    .venv/bin/python bench/block_size.py --rows 1000000 [--sizes 1,4,8,16,32,64] [--repeat 3]

The reader decodes the file in blocks of `BLOCK_BYTES` (campaign_pipelines/importing/
read.py); each block becomes one Arrow batch that the map and validate steps then take
whole, so the block size sets both the per-block overhead and the memory held at once.
For each size (MiB), a child process runs the import's read, map and validate steps
(direct calls, no database) on the benchmark file (bench/generate.py) and reports each
step's seconds and its own peak RSS. Sizes run interleaved, `--repeat` rounds; each size
reports its median round. Writes bench/results/block_size.json and .md (in RESULTS.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import generate  # noqa: E402
from run import code_commit, save_section  # noqa: E402


def child(csv: Path, work: Path, block_mib: int) -> None:
    """One read → map → validate at one block size; prints a JSON object."""
    import pandera.polars  # noqa: F401  (imported before the clock starts: the same for every size)

    from campaign_pipelines.importing import formats, read, steps
    from campaign_pipelines.templates import parse_template

    formats.READERS["delimited"] = functools.partial(read.SourceReader, block_bytes=block_mib << 20)
    template = parse_template((BENCH / "templates" / "bench_recipients.yaml").read_text(), "bench_recipients.yaml")
    shutil.rmtree(work, ignore_errors=True)
    times = {}
    started = time.perf_counter()
    state = steps.read_step(template, csv, work)
    times["read"] = time.perf_counter() - started
    started = time.perf_counter()
    state = steps.map_step(state)
    times["map"] = time.perf_counter() - started
    started = time.perf_counter()
    state = steps.validate_step(state)
    times["validate"] = time.perf_counter() - started
    batches = sum(1 for _ in steps.read_batches(state.data))
    shutil.rmtree(work, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"times": times, "peak_rss": peak, "batches": batches}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sizes", default="1,4,8,16,32,64", help="block sizes in MiB, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/campaign-bench"))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    csv = args.work / "data" / "inbox" / f"recipients_{args.rows}.csv"
    work = args.work / "block_size"
    if args.child:
        child(csv, work, args.child)
        return 0

    from campaign_pipelines.importing.read import BLOCK_BYTES

    commit = code_commit()
    generate.generate(args.rows, csv)
    sizes = [int(s) for s in args.sizes.split(",")]
    samples: dict[int, list[dict]] = {s: [] for s in sizes}
    for round_number in range(1, args.repeat + 1):
        for size in sizes:
            out = subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--work", str(args.work),
                                  "--child", str(size)], capture_output=True, text=True, check=True)
            m = json.loads(out.stdout.strip().splitlines()[-1])
            m["seconds"] = sum(m["times"].values())
            samples[size].append(m)
            print(f"round {round_number}, {size} MiB: {m['seconds']:.2f} s, {m['peak_rss'] / 2**20:,.0f} MiB, "
                  f"{m['batches']} batches", flush=True)

    current = BLOCK_BYTES >> 20
    lines = [
        f"## Block size, {args.rows:,} rows",
        "",
        f"Run of {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, project commit {commit}. Command: "
        f"`.venv/bin/python bench/block_size.py --rows {args.rows} --sizes {args.sizes} --repeat {args.repeat}`. "
        "The import's read, map and validate steps (direct calls, no database) in a child process per size; "
        f"seconds of the median round (by their sum), range of the sums in brackets. The import uses {current} MiB.",
        "",
        "| block MiB | batches | read s | map s | validate s | read + map + validate s | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    results = []
    for size in sizes:
        runs = sorted(samples[size], key=lambda m: m["seconds"])
        median = runs[len(runs) // 2]
        sums = [m["seconds"] for m in runs]
        peak = statistics.median(m["peak_rss"] for m in runs)
        results.append({"block_mib": size, **median, "range": [min(sums), max(sums)], "peak_rss_median": peak})
        t = median["times"]
        mark = " (the import's)" if size == current else ""
        lines.append(f"| {size}{mark} | {median['batches']} | {t['read']:.2f} | {t['map']:.2f} | {t['validate']:.2f} | "
                     f"{median['seconds']:.2f} ({min(sums):.2f}–{max(sums):.2f}) | {peak / 2**20:,.0f} |")
    save_section("block_size", {"rows": args.rows, "commit": commit, "results": results}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
