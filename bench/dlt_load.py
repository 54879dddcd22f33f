"""dlt's side of the benchmark: load the generator's CSV into PostgreSQL with
write_disposition="merge" on email (run by bench/run.py in its own process).

    python bench/dlt_load.py FILE --dataset bench_dlt --pg postgresql://postgres:trust@127.0.0.1:5432/test

Kept simple and fast, as a data engineer would write it with dlt: pyarrow's streaming
CSV reader (every column as text, ragged lines skipped), the e-mail trimmed and
lower-cased (the merge key must be normalised as our template does), lines without an
e-mail dropped (dlt refuses a NULL primary key), Arrow tables yielded to dlt, and
dlt's `csv` loader file format (COPY) into PostgreSQL. dlt validates nothing else:
invalid addresses, dates, genders, country codes and long names load as text. dlt's
merge (delete-insert) keeps one line per e-mail. Prints one JSON object: the row count
of the loaded table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import COLUMNS  # noqa: E402

os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path)
    parser.add_argument("--dataset", required=True, help="PostgreSQL schema dlt loads into")
    parser.add_argument("--pg", default="postgresql://postgres:trust@127.0.0.1:5432/test",
                        help="dlt requires a password in the URL; with trust auth any one will do")
    parser.add_argument("--pipelines-dir", default=None)
    args = parser.parse_args()

    import dlt

    skipped = {"ragged": 0, "no_email": 0}

    def on_invalid(row: pacsv.InvalidRow) -> str:
        skipped["ragged"] += 1
        return "skip"

    @dlt.resource(name="recipient", write_disposition="merge", primary_key="email")
    def recipients():
        reader = pacsv.open_csv(
            args.file,
            read_options=pacsv.ReadOptions(block_size=16 << 20),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in COLUMNS}, strings_can_be_null=False),
        )
        for batch in reader:
            table = pa.Table.from_batches([batch])
            email = pc.utf8_lower(pc.utf8_trim_whitespace(table["email"]))
            table = table.set_column(0, "email", email)
            keep = pc.not_equal(email, "")
            skipped["no_email"] += len(table) - pc.sum(keep).as_py()
            yield table.filter(keep)

    pipelines_dir = args.pipelines_dir or tempfile.mkdtemp(prefix="bench_dlt_")
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{args.dataset}",
        destination=dlt.destinations.postgres(credentials=args.pg),
        dataset_name=args.dataset,
        pipelines_dir=pipelines_dir,
    )
    pipeline.run(recipients(), loader_file_format="csv")
    with pipeline.sql_client() as client:
        rows = client.execute_sql(f'SELECT count(*) FROM "{args.dataset}"."recipient"')[0][0]
    print(json.dumps({"table_rows": rows, "skipped": skipped}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
