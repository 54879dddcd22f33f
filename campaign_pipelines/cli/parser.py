"""The command line: every command and option with its help and an example."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from typing import Any

from campaign_pipelines.cli.admin import cmd_init, cmd_schema_apply, cmd_schema_plan
from campaign_pipelines.cli.runs import cmd_rejects, cmd_rerun, cmd_run
from campaign_pipelines.cli.templates import (
    cmd_templates_duplicate, cmd_templates_list, cmd_templates_new, cmd_templates_preview, cmd_templates_show,
    cmd_templates_validate,
)

DESCRIPTION = """\
Campaign Pipelines: import and export job templates (YAML) run as Dagster jobs, with
every rejected line kept and explained.

Settings come from the environment: CAMPAIGN_DATA_DIR (the exchange files, default
.campaign/data), CAMPAIGN_TEMPLATES_DIR (your templates, default ./job_templates),
CAMPAIGN_SCHEMAS_DIR (your tables and fields, default ./data_schemas), CAMPAIGN_DB_URL
(default: SQLite in .campaign/campaign.db), DAGSTER_HOME (runs and events, default
.campaign/dagster), CAMPAIGN_EXECUTOR (in_process, multiprocess or celery; default
in_process) and CAMPAIGN_WORK_RETENTION (how long a failed run keeps its work data for a
re-execution, default 7d).

Exit codes: 0 a run that finished (with or without rejects), 1 a failed run, 2 a usage
or template error. An error prints one sentence."""

EXAMPLES = """\
examples:
  campaign-pipelines init --samples examples
  campaign-pipelines run import_recipients --json
  campaign-pipelines rejects 3f2a9c1e"""


def _command(
    sub: Any, name: str, handler: Callable[..., int], summary: str, examples: list[str], description: str = ""
) -> argparse.ArgumentParser:
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    parser = sub.add_parser(
        name, help=summary, description=textwrap.fill(description or summary, 88), epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="campaign-pipelines", description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    templates = sub.add_parser(
        "templates", help="list, show, create, duplicate, validate and preview job templates",
        description="Job templates: the packaged ones and yours (CAMPAIGN_TEMPLATES_DIR).",
        epilog="examples:\n  campaign-pipelines templates list\n  campaign-pipelines templates duplicate import_recipients crm_daily",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tsub = templates.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = _command(tsub, "list", cmd_templates_list, "list the templates: name, kind, built-in or yours, label",
                 ["campaign-pipelines templates list", "campaign-pipelines templates list --json"])
    p.add_argument("--json", action="store_true", help="print the list and any invalid template's error as JSON")
    p = _command(tsub, "show", cmd_templates_show, "print a template's YAML as written",
                 ["campaign-pipelines templates show import_recipients"])
    p.add_argument("name", help="the template's name")
    p = _command(
        tsub, "duplicate", cmd_templates_duplicate, "copy a template under a new name, comments and layout kept",
        ["campaign-pipelines templates duplicate import_recipients crm_daily",
         "campaign-pipelines templates duplicate import_recipients crm_daily --label 'CRM daily' --reload 127.0.0.1:3000"],
        "Copy a template into CAMPAIGN_TEMPLATES_DIR under a new name, keeping its comments and layout; the copy gets "
        "its own label. A running UI shows the new job after a reload of the code location: --reload asks it for one.",
    )
    p.add_argument("source", help="the template to copy")
    p.add_argument("new_name", help="the copy's name: letters, digits and underscores")
    p.add_argument("--label", help="the copy's label (default: the source's label followed by '(copy)')")
    p.add_argument("--reload", metavar="HOST:PORT", help="a running dagster-webserver to reload, e.g. 127.0.0.1:3000")
    p = _command(
        tsub, "new", cmd_templates_new, "draft an import template from a sample file: format detected, mapping guessed",
        ["campaign-pipelines templates new crm_people --from-file inbox/crm/people.csv --table recipient",
         "campaign-pipelines templates new shop_orders --from-file inbox/orders.csv --table purchase --reload 127.0.0.1:3000"],
        "Write an import template draft: the file's encoding, delimiter, quote and header detected, each column "
        "mapped to the table field or link its title suggests, date and number formats guessed from most of the "
        "values. What the guess cannot settle (a key, a required field, a link) is a commented TODO in the draft. "
        "Check it with `templates preview` before running it.",
    )
    p.add_argument("name", help="the new template's name: letters, digits and underscores")
    p.add_argument("--from-file", required=True, metavar="PATH", help="a sample of the file, under CAMPAIGN_DATA_DIR")
    p.add_argument("--table", default="recipient", help="the table to import into (default: recipient)")
    p.add_argument("--reload", metavar="HOST:PORT", help="a running dagster-webserver to reload, e.g. 127.0.0.1:3000")
    p = _command(
        tsub, "preview", cmd_templates_preview, "an export's first rows, or how a file's first lines would import",
        ["campaign-pipelines templates preview new_text_export --rows 20",
         "campaign-pipelines templates preview import_recipients --file inbox/recipients.csv"],
    )
    p.add_argument("name", help="the template's name")
    p.add_argument("--rows", type=int, default=200, help="how many rows or lines (default: 200)")
    p.add_argument("--file", help="imports: the file to preview, under CAMPAIGN_DATA_DIR (default: the template's source.path)")
    p = _command(tsub, "validate", cmd_templates_validate, "check template files; exit code 1 if any is invalid",
                 ["campaign-pipelines templates validate", "campaign-pipelines templates validate job_templates/crm.yaml"])
    p.add_argument("paths", nargs="*", metavar="PATH", help="files to check (default: every template of the catalog)")

    p = _command(
        sub, "run", cmd_run, "run a template's job on the Dagster instance (DAGSTER_HOME) and print its counts",
        ["campaign-pipelines run import_recipients --file inbox/recipients.csv --json",
         "campaign-pipelines run import_recipients --set max_rejects=10 --set on_error=stop",
         "campaign-pipelines run crm_daily --partition 2025-01-02",
         "campaign-pipelines run new_text_export --output outbox/all.csv --no-wait"],
        "Run a template's job as the UI launches it: a run of the workspace's code location, shown on its job's "
        "page. With a run queue and a live dagster-daemon the run goes through the queue (per-table limits hold) "
        "and the command waits for its end; with no daemon, the command runs the job itself.",
    )
    p.add_argument("name", help="the template's name")
    p.add_argument("--file", help="imports: the file to read, relative to CAMPAIGN_DATA_DIR or a path inside it")
    p.add_argument("--output", help="exports: the file to write under CAMPAIGN_DATA_DIR ({date:%%Y%%m%%d} and {run_id} filled in)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help="a launch value, repeatable: delimiter, quote, encoding, skip_lines, limit, on_error, max_rejects, operation "
        "(imports); delimiter, quote, encoding, header, limit (exports)",
    )
    p.add_argument("--partition", metavar="YYYY-MM-DD", help="the day to run, for a template with daily partitions")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--no-wait", action="store_true", help="queue the run, print its id and return (needs a run queue)")
    p.add_argument("--progress", action="store_true", help="print progress lines on stderr even when it is not a terminal")
    p.add_argument("--verbose", action="store_true", help="also print Dagster's events and warnings on stderr")

    p = _command(
        sub, "rerun", cmd_rerun, "re-execute a run: every step, or from its failed step on the earlier steps' outputs",
        ["campaign-pipelines rerun 3f2a9c1e --from-failure", "campaign-pipelines rerun 3f2a9c1e --json"],
        "Re-execute a run as the UI's Re-execute does: with its config and tags, as a run of the same root run. "
        "--from-failure starts at the failed step, on the outputs the earlier steps kept (CAMPAIGN_WORK_RETENTION); "
        "an import's merge commits at most once per root run, so a re-execution after a committed merge changes "
        "nothing and reports the committed counts.",
    )
    p.add_argument("run_id", help="the run's id, or the start of it (8 characters are usually enough)")
    p.add_argument("--from-failure", action="store_true", help="re-execute only the failed step and the ones after it")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--no-wait", action="store_true", help="queue the run, print its id and return (needs a run queue)")
    p.add_argument("--progress", action="store_true", help="print progress lines on stderr even when it is not a terminal")
    p.add_argument("--verbose", action="store_true", help="also print Dagster's events and warnings on stderr")

    p = _command(sub, "rejects", cmd_rejects, "the lines a run rejected: line number, column, reason, original text",
                 ["campaign-pipelines rejects 3f2a9c1e", "campaign-pipelines rejects 3f2a9c1e --csv > rejects.csv"])
    p.add_argument("run_id", help="the run's id, or the start of it (8 characters are usually enough)")
    p.add_argument("--csv", action="store_true", help="print CSV instead of a table")

    schema = sub.add_parser(
        "schema", help="compare the Campaign database with the data model and change it",
        description="The data model: the built-in tables and your data schemas (CAMPAIGN_SCHEMAS_DIR).",
        epilog="examples:\n  campaign-pipelines schema plan\n  campaign-pipelines schema apply",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ssub = schema.add_subparsers(dest="action", required=True, metavar="ACTION")
    _command(ssub, "plan", cmd_schema_plan,
             "print the DDL the database needs, and the changes refused because they could lose data (exit code 1)",
             ["campaign-pipelines schema plan"])
    _command(ssub, "apply", cmd_schema_apply,
             "make the planned changes in one transaction; nothing changes when any is refused (exit code 1)",
             ["campaign-pipelines schema apply"])

    p = _command(sub, "init", cmd_init, "create the data folders (inbox, outbox, archive, rejects)",
                 ["campaign-pipelines init", "campaign-pipelines init --samples examples"])
    p.add_argument("--samples", metavar="DIR", help="also copy the *.csv files of DIR into the inbox")
    return parser
