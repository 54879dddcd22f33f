"""Endpoints benchmark (issue 27): the same 1M-line import read from the local data folder,
from the S3 server and from the SFTP server, and the same export written locally and
delivered to S3, side by side in one run.

    eval "$(.ci/test-servers start /tmp/campaign-test-servers)"
    .venv/bin/python bench/endpoints.py --rows 1000000 --repeat 3

Every case is a first load of bench/generate.py's file into a fresh PostgreSQL schema with
`campaign-pipelines run … --json` (the real Dagster job), rounds interleaved so the
machine's drift weighs on all alike. Reports per case the median wall seconds, CPU seconds
of our process tree, peak RSS, and each remote case's ratio to the local one; the counts
must be the same for all three (the bench fails loudly otherwise). Prints; saves nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from run import VENV_BIN, measure, pg_url, prepare_pg, psql, server_window

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import generate  # noqa: E402

IMPORT = (BENCH / "templates" / "bench_recipients.yaml").read_text()
EXPORT = (BENCH / "templates" / "bench_export.yaml").read_text()


def endpoints_file(folder: Path) -> Path:
    """The test servers' endpoints (.ci/test-servers), as a deployment declares them."""
    needed = ["CAMPAIGN_TEST_S3_URL", "CAMPAIGN_TEST_S3_KEY", "CAMPAIGN_TEST_S3_SECRET", "CAMPAIGN_TEST_SFTP_PORT",
              "CAMPAIGN_TEST_SFTP_USER", "CAMPAIGN_TEST_SFTP_KEY_FILE", "CAMPAIGN_TEST_SFTP_HOST_KEY_FILE", "CAMPAIGN_TEST_SFTP_ROOT"]
    missing = [n for n in needed if not os.environ.get(n)]
    if missing:
        raise SystemExit(f"{', '.join(missing)} not set: eval \"$(.ci/test-servers start DIR)\" first")
    os.environ["BENCH_SFTP_KEY"] = Path(os.environ["CAMPAIGN_TEST_SFTP_KEY_FILE"]).read_text()
    os.environ["BENCH_S3_KEY"], os.environ["BENCH_S3_SECRET"] = os.environ["CAMPAIGN_TEST_S3_KEY"], os.environ["CAMPAIGN_TEST_S3_SECRET"]
    host_key = Path(os.environ["CAMPAIGN_TEST_SFTP_HOST_KEY_FILE"]).read_text().strip()
    path = folder / "endpoints.yaml"
    path.write_text(
        f"""s3:
  type: s3
  endpoint_url: {os.environ['CAMPAIGN_TEST_S3_URL']}
  bucket: campaign-bench
  region: us-east-1
  access_key_id: {{env: BENCH_S3_KEY}}
  secret_access_key: {{env: BENCH_S3_SECRET}}
sftp:
  type: sftp
  host: 127.0.0.1
  port: {os.environ['CAMPAIGN_TEST_SFTP_PORT']}
  user: {os.environ['CAMPAIGN_TEST_SFTP_USER']}
  private_key: {{env: BENCH_SFTP_KEY}}
  known_host_key: "{host_key}"
  root: {os.environ['CAMPAIGN_TEST_SFTP_ROOT']}/bench
"""
    )
    return path


def templates(folder: Path) -> None:
    """The bench's import read from each place, and its export written to each."""
    folder.mkdir(parents=True, exist_ok=True)
    for where in ("local", "s3", "sftp"):
        text = IMPORT.replace("name: bench_recipients", f"name: import_{where}")
        if where != "local":
            text = text.replace("  path: inbox/recipients.csv", f"  path: inbox/recipients.csv\n  endpoint: {where}")
        (folder / f"import_{where}.yaml").write_text(text)
    for where in ("local", "s3"):
        text = EXPORT.replace("name: bench_export", f"name: export_{where}")
        if where != "local":
            text = text.replace("destination:\n", f"destination:\n  endpoint: {where}\n", 1)
        (folder / f"export_{where}.yaml").write_text(text)


def upload(csv: Path, endpoints: Path) -> None:
    from resources.endpoint_file import load_endpoints

    declared = load_endpoints(endpoints)
    for name in ("s3", "sftp"):
        endpoint = declared.get(name).with_environment()
        if name == "s3" and not endpoint.fs.exists("campaign-bench"):
            endpoint.fs.mkdir("campaign-bench")
        endpoint.fs.makedirs(endpoint._absolute("inbox"), exist_ok=True)
        endpoint.fs.put_file(str(csv), endpoint._absolute("inbox/recipients.csv"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "campaign-bench-endpoints")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--pg-db", default="test")
    args = parser.parse_args()
    work: Path = args.work
    shutil.rmtree(work, ignore_errors=True)
    (work / "data" / "inbox").mkdir(parents=True)
    csv = work / "data" / "inbox" / "recipients.csv"
    manifest = generate.generate(args.rows, csv)
    endpoints = endpoints_file(work)
    templates(work / "templates")
    upload(csv, endpoints)
    home = work / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    schema = "bench_endpoints"
    base_env = {**os.environ, "CAMPAIGN_DATA_DIR": str(work / "data"), "CAMPAIGN_TEMPLATES_DIR": str(work / "templates"),
                "CAMPAIGN_ENDPOINTS": str(endpoints), "DAGSTER_HOME": str(home), "CAMPAIGN_DB_URL": pg_url(args, schema)}
    cases: dict[str, list[dict]] = {}
    counts: dict[str, dict] = {}
    for round_ in range(args.repeat):
        order = ["local", "s3", "sftp"] if round_ % 2 == 0 else ["sftp", "s3", "local"]
        for where in order:
            prepare_pg(args, schema, "first")
            m = measure([str(VENV_BIN / "campaign-pipelines"), "run", f"import_{where}", "--json"], base_env,
                        work / f"import_{where}_{round_}", server=server_window(args))
            if m["returncode"]:
                raise SystemExit(f"import_{where} failed: see {m['stderr']}")
            payload = json.loads(Path(m["stdout"]).read_text().strip().splitlines()[-1])
            counts[where] = {k: payload[k] for k in ("rows_read", "rows_inserted", "rows_rejected")}
            cases.setdefault(f"import_{where}", []).append(m)
            print(f"round {round_ + 1} import {where}: {m['seconds']:.1f} s, cpu {m['cpu_s']:.1f} s", flush=True)
        for where in (["local", "s3"] if round_ % 2 == 0 else ["s3", "local"]):
            m = measure([str(VENV_BIN / "campaign-pipelines"), "run", f"export_{where}", "--json", "--output", f"outbox/e_{round_}.csv"],
                        base_env, work / f"export_{where}_{round_}", server=server_window(args))
            if m["returncode"]:
                raise SystemExit(f"export_{where} failed: see {m['stderr']}")
            cases.setdefault(f"export_{where}", []).append(m)
            print(f"round {round_ + 1} export {where}: {m['seconds']:.1f} s, cpu {m['cpu_s']:.1f} s", flush=True)
    if len({json.dumps(c, sort_keys=True) for c in counts.values()}) != 1:
        raise SystemExit(f"the counts differ: {counts}")
    psql(args, f"DROP SCHEMA {schema} CASCADE")
    print(f"\n{args.rows:,} lines ({manifest['bytes'] / 2**20:,.0f} MiB), {args.repeat} rounds; counts {counts['local']}")
    medians = {
        name: {k: statistics.median(m[k] for m in ms) for k in ("seconds", "cpu_s")} | {"peak_rss_mib": max(m["peak_rss"] for m in ms) / 2**20}
        for name, ms in cases.items()
    }
    for name, m in medians.items():
        base = medians[name.split("_")[0] + "_local"]
        print(f"{name:14} wall {m['seconds']:6.1f} s  cpu {m['cpu_s']:6.1f} s  peak RSS {m['peak_rss_mib']:5.0f} MiB  "
              f"wall ratio {m['seconds'] / base['seconds']:.2f}  cpu ratio {m['cpu_s'] / base['cpu_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
