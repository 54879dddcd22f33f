"""`campaign-pipelines init` and `schema`: the data folders, and the database against the data model."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from campaign_pipelines.cli.common import EXIT_FAILED, EXIT_OK
from campaign_pipelines.settings import DATA_SUBDIRS, Settings, default_db_url


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    for sub in DATA_SUBDIRS:
        (settings.data_dir / sub).mkdir(parents=True, exist_ok=True)
    if args.samples:
        for sample in sorted(Path(args.samples).glob("*.csv")):
            shutil.copy(sample, settings.data_dir / "inbox" / sample.name)
            print(f"copied {sample} to {settings.data_dir / 'inbox' / sample.name}")
    print(f"data folders ready under {settings.data_dir}")
    return EXIT_OK


def _schema_engine(settings: Settings) -> sa.Engine:
    """The database as it is: `schema plan` must change nothing, not even on first use."""
    from resources.campaign_db import raw_engine

    return raw_engine(settings.db_url or default_db_url())


def _print_changes(changes: list[Any]) -> None:
    for change in changes:
        print(f"-- {change.summary}")
        for statement in change.ddl:
            print(f"{statement};")
        print()


def cmd_schema_plan(args: argparse.Namespace, settings: Settings) -> int:
    from schemas import migrate

    model = settings.data_model()
    planned = migrate.plan(_schema_engine(settings), model)
    _print_changes(planned.changes)
    if planned.empty:
        print("The database matches the data model.")
    for refusal in planned.refusals:
        print(f"refused: {refusal}", file=sys.stderr)
    for error in model.errors:
        print(f"invalid: {error}", file=sys.stderr)
    return EXIT_FAILED if planned.refusals or model.errors else EXIT_OK


def cmd_schema_apply(args: argparse.Namespace, settings: Settings) -> int:
    from schemas import migrate

    model = settings.data_model()
    if model.errors:
        for error in model.errors:
            print(f"invalid: {error}", file=sys.stderr)
        print("error: the data schemas above are invalid; fix them and apply again (nothing was changed).", file=sys.stderr)
        return EXIT_FAILED
    try:
        done = migrate.apply(_schema_engine(settings), model)
    except migrate.SchemaChangeRefused as exc:
        for refusal in exc.refusals:
            print(f"error: {refusal}", file=sys.stderr)
        return EXIT_FAILED
    _print_changes(done.changes)
    if done.changes:
        print(f"Applied {len(done.changes)} change(s) in one transaction; the database matches the data model.")
    else:
        print("The database matches the data model.")
    return EXIT_OK
