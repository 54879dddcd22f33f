"""`campaign-pipelines templates`: list, show, create, duplicate, validate and preview job templates."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys
from pathlib import Path
from typing import Any

from campaign_pipelines.cli.common import EXIT_FAILED, EXIT_OK, UsageError, template_catalog, template_text
from campaign_pipelines.settings import Settings, default_db_url
from campaign_pipelines.templates import ExportTemplate, TemplateError, parse_template


def cmd_templates_list(args: argparse.Namespace, settings: Settings) -> int:
    catalog = template_catalog(settings)
    rows = [
        {
            "name": name,
            "kind": t.kind,
            "label": t.display_label,
            "builtin": name in catalog.builtin,
            "origin": catalog.origins[name],
        }
        for name, t in sorted(catalog.templates.items())
    ]
    if args.json:
        print(json.dumps({"templates": rows, "errors": catalog.errors}, indent=2))
    else:
        width = max((len(r["name"]) for r in rows), default=4)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['kind']:<6}  {'built-in' if r['builtin'] else 'user':<8}  {r['label']}")
        for error in catalog.errors:
            print(f"invalid: {error}", file=sys.stderr)
    return EXIT_OK


def cmd_templates_show(args: argparse.Namespace, settings: Settings) -> int:
    print(template_text(args.name, template_catalog(settings)), end="")
    return EXIT_OK


def cmd_templates_duplicate(args: argparse.Namespace, settings: Settings) -> int:
    from ruamel.yaml import YAML

    catalog = template_catalog(settings)
    source = catalog.get(args.source)
    if args.new_name in catalog.templates:
        raise UsageError(f"a template named {args.new_name!r} exists already ({catalog.origins[args.new_name]}).")
    # A round trip: the copy keeps the source's comments, order and flow style.
    round_trip = YAML()
    round_trip.preserve_quotes = True
    round_trip.width = 4096  # keep long lines as they were
    round_trip.indent(mapping=2, sequence=4, offset=2)  # "  - item", as the templates are written
    data = round_trip.load(template_text(args.source, catalog))
    data["name"] = args.new_name
    label = args.label or f"{source.display_label} (copy)"
    if "label" in data:
        data["label"] = label
    else:
        data.insert(list(data).index("name") + 1, "label", label)
    out = io.StringIO()
    round_trip.dump(data, out)
    text = f"# Duplicated from {args.source}.\n{out.getvalue()}"
    target = settings.templates_dir / f"{args.new_name}.yaml"
    parse_template(text, str(target), settings.data_model())  # the copy must load (the name must be valid)
    settings.templates_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(target)
    if args.reload:
        _reload_code_location(args.reload)
    return EXIT_OK


def _reload_code_location(url: str) -> None:
    """Ask a running webserver to reload the code location, so the new job shows at once."""
    from urllib.parse import urlparse

    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    from campaign_pipelines.launching import LOCATION_NAME

    parsed = urlparse(url if "//" in url else f"http://{url}")
    client = DagsterGraphQLClient(parsed.hostname or "127.0.0.1", port_number=parsed.port, use_https=parsed.scheme == "https")
    try:
        client.reload_repository_location(LOCATION_NAME)
    except (DagsterGraphQLClientError, OSError) as exc:
        raise UsageError(f"--reload {url}: the webserver did not reload {LOCATION_NAME} ({exc}); reload it from the UI.") from None
    print(f"reloaded {LOCATION_NAME} on {url}")


def cmd_templates_validate(args: argparse.Namespace, settings: Settings) -> int:
    if args.paths:
        errors = []
        for path in map(Path, args.paths):
            try:
                parse_template(path.read_text(encoding="utf-8"), str(path), settings.data_model())
                print(f"ok: {path}")
            except (TemplateError, OSError) as exc:
                errors.append(str(exc) if isinstance(exc, TemplateError) else f"{path}: {exc.strerror}")
    else:
        catalog = template_catalog(settings)
        for name in sorted(catalog.templates):
            print(f"ok: {catalog.origins[name]}")
        errors = catalog.errors
    for error in errors:
        print(f"invalid: {error}", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK


def cmd_templates_preview(args: argparse.Namespace, settings: Settings) -> int:
    """What a template would do, writing nothing: an export's first rows, or how the
    first lines of a file map and which of them would be rejected."""
    import polars as pl

    template = template_catalog(settings).get(args.name)
    with pl.Config(tbl_rows=args.rows, tbl_cols=-1, fmt_str_lengths=200, tbl_width_chars=10_000, tbl_hide_dataframe_shape=True):
        if isinstance(template, ExportTemplate):
            from campaign_pipelines.exporting.steps import preview_export
            from resources.campaign_db import get_engine

            engine = get_engine(settings.db_url or default_db_url(), template.model)
            for part in template.exports:
                if template.parts:
                    print(f"{part.name}: {part.destination.path}")
                print(preview_export(part, engine, args.rows))
            return EXIT_OK
        if template.parts:  # each part's file in the drop's folder, in load order
            launched = template.with_overrides({"drop": args.file} if args.file else {})
            folder = launched.drop.folder if launched.drop else ""
            manifest = launched.drop.manifest if launched.drop else None
            named = {}
            if manifest:
                from campaign_pipelines.settings import resolve_data_path
                from campaign_pipelines.templates.drops import manifest_files, part_path

                # As the run's read step finds it: inside the data folder, symbolic links too.
                where = resolve_data_path(settings.data_dir, part_path(folder, manifest), what="manifest")
                if not where.is_file():
                    raise UsageError(f"{template.name}: the drop {folder or '(the data folder)'} has no manifest {manifest}; give the drop's folder with --file.")
                named = manifest_files(where.read_text(encoding="utf-8"), str(where), [p.name for p in template.parts])
            for part in launched.imports:
                file = named.get(part.part_name) or part.source.path
                print(f"{part.part_name}: {file}")
                _preview_file(part, f"{folder}/{file}" if folder else file, settings, args.rows)
            return EXIT_OK
        template = template.with_overrides({"file": args.file, "limit": args.rows})
        file = template.file_for(dt.date.today())  # as a run today would read it
        if not file:
            raise UsageError(f"{template.name}: give the file to preview with --file.")
        _preview_file(template, file, settings, args.rows)
    return EXIT_OK


def _preview_file(template: Any, file: str, settings: Settings, rows: int) -> None:
    """How the first lines of `file` map and which of them would be rejected."""
    import tempfile

    import polars as pl

    from campaign_pipelines.importing import steps
    from campaign_pipelines.importing.fetch import fetch
    from campaign_pipelines.importing.rejects import read_rejects

    template = template.model_copy(update={"source": template.source.model_copy(update={"limit": rows})})
    with tempfile.TemporaryDirectory() as work:
        # As a run reads it: spooled from its endpoint, decrypted.
        remote = settings.endpoints().get(template.source.endpoint).with_environment() if template.source.endpoint else None
        path, _ = fetch(template, file, settings.data_dir, remote, Path(work))
        state = steps.validate_step(steps.map_step(steps.read_step(template, path, Path(work))))
        frames = list(steps.read_frames(state.data))
        # No valid line at all: no frame to show, the rejects say why.
        mapped = pl.concat(frames) if frames else pl.DataFrame()
        rejects = read_rejects(list(state.reject_files))
    print(f"{state.rows_read} line(s) read, {mapped.height} valid, {rejects.num_rows} rejected (before reconciliation)")
    if mapped.height:
        print(mapped.drop("__text", "__key", strict=False).rename({"__line": "line"}))
    if rejects.num_rows:
        print(pl.from_arrow(rejects.select(["line", "column", "reason"])))


def cmd_templates_new(args: argparse.Namespace, settings: Settings) -> int:
    """An import template draft from a sample file: detected format, guessed mapping; what
    the guess leaves open is a commented TODO in the draft, which is always written."""
    from campaign_pipelines.detect import detect
    from campaign_pipelines.drafts import draft_template
    from campaign_pipelines.settings import resolve_data_path

    catalog = template_catalog(settings)
    if args.name in catalog.templates:
        raise UsageError(f"a template named {args.name!r} exists already ({catalog.origins[args.name]}).")
    model = settings.data_model()
    if args.table not in model.importable:
        raise UsageError(f"--table {args.table!r}: imports can target {', '.join(model.importable)}.")
    path = resolve_data_path(settings.data_dir, args.from_file, what="--from-file")
    if not path.is_file():
        raise UsageError(f"--from-file {args.from_file}: no such file under {settings.data_dir}.")
    found = detect(path, args.table, model)
    relative = str(path.relative_to(settings.data_dir.resolve()))
    draft = draft_template(args.name, found, args.table, relative, args.from_file, model)
    target = settings.templates_dir / f"{args.name}.yaml"
    settings.templates_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(draft.text, encoding="utf-8")
    print(target)
    formats = ", ".join(f"{title}: {fmt}" for title, fmt in found.formats.items()) or "none"
    if found.format == "delimited":
        layout = f"encoding {found.encoding}, delimiter {found.delimiter!r}, quote {found.quote!r}, header {found.header}"
    else:
        layout = f"format {found.format}" + (f", records at {found.records!r}" if found.records else "") + (
            f", sheet {found.sheet!r}" if found.sheet else "")
    print(f"{layout}; "
          f"{len(found.mapping)} of {len(found.titles)} columns mapped; formats: {formats}; "
          f"not mapped: {', '.join(repr(t) for t in found.unmapped) or 'none'}")
    for todo in draft.todos:
        print(f"todo: {todo}", file=sys.stderr)
    if not draft.todos:
        parse_template(draft.text, str(target), model)  # a bug if a complete draft does not load
    if args.reload:
        _reload_code_location(args.reload)
    return EXIT_OK
