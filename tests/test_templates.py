"""The template model and catalog: errors name the file and key; bad ones don't hide others."""

from __future__ import annotations

import pytest

import schemas
from campaign_pipelines.errors import TemplateError
from campaign_pipelines.templates import load_catalog, parse_template
from tests.helpers import STORE, export_template, people_template

BUILTINS = {"new_text_import", "import_recipients", "import_denylist", "new_text_export"}


def error_of(text: str) -> str:
    with pytest.raises(TemplateError) as caught:
        parse_template(text, "my.yaml")
    return str(caught.value)


def test_builtins_load(tmp_path):
    catalog = load_catalog(tmp_path / "absent")
    assert set(catalog.templates) == BUILTINS
    assert catalog.builtin == BUILTINS and catalog.errors == []
    assert catalog.get("import_recipients").target.secondary_keys == ["crm_id"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": {"bogus": 1}}, "my.yaml: target.bogus: unknown key"),
        ({"source": {"delimiter": "ab"}}, "my.yaml: source.delimiter: delimiter must be one character, got 'ab'"),
        ({"source": {"encoding": "nope"}}, "source.encoding: unknown encoding 'nope'"),
        ({"source": {"compression": "rar"}}, "source.compression: Input should be 'auto', 'none', 'gzip' or 'zip'"),
        ({"source": {"format": "fixed_width"}}, "source: widths is required when format is fixed_width"),
        ({"target": {"schema": "orders"}}, "target.schema: unknown schema 'orders'"),
        ({"target": {"operation": "merge"}}, "target.operation: Input should be"),
        ({"target": {"keys": ["city"]}}, "target.keys: 'city' is not a mapped column"),
        ({"target": {"keys": []}}, "target.keys: List should have at least 1 item"),
        ({"errors": {"max_rejects": -1}}, "errors.max_rejects: Input should be greater than or equal to 0"),
        ({"name": "Bad-Name"}, "name: String should match pattern"),
        ({"columns": [{"source": "email", "target": "emial"}]}, "columns[0].target: recipient has no column 'emial'"),
        ({"columns": [{"source": "email", "target": "email", "case": "title"}]}, "columns[0].case: Input should be"),
        ({"columns": [{"target": "email"}]}, "columns[0]: give exactly one of source (a file column) or value (a constant)"),
        ({"columns": [{"source": "e", "target": "email"}, {"source": "c", "target": "created_at"}]}, "columns[1].target: recipient.created_at is set by the importer"),
        ({"columns": [{"source": "e", "target": "email", "on_error": "default"}]}, "a default value is required"),
        ({"columns": [{"source": "e", "target": "email", "format": "%d"}]}, "columns[0].format: a date format needs a date column"),
        ({"columns": [{"source": 2, "target": "email"}]}, "columns[0].source: with header: true, give the column's title"),
        ({"target": {"schema": "service", "keys": ["name"], "secondary_keys": [], "service": "news"},
          "columns": [{"source": "n", "target": "name"}]}, "target.list/target.service: lists and services hold recipients"),
    ],
)
def test_errors_point_at_the_key(change, message):
    import yaml

    data = yaml.safe_load(people_template())
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    assert message in error_of(yaml.safe_dump(data))


def test_not_yaml_or_not_a_mapping():
    assert "my.yaml: line 2 is not valid YAML" in error_of("name: x\n  bad: [\n")
    assert "a job template is a YAML mapping" in error_of("- a\n- b\n")
    assert "kind: must be 'import'" in error_of("name: x\nkind: banana\n")


def test_a_bad_template_does_not_hide_the_others(tmp_path):
    (tmp_path / "good.yaml").write_text(people_template(name="good"))
    (tmp_path / "broken.yaml").write_text(people_template(name="broken").replace("keys: [email]", "keys: [nope]").replace("- email\n  secondary", "- nope\n  secondary"))
    (tmp_path / "clash.yaml").write_text(people_template(name="import_recipients"))
    (tmp_path / "twin.yaml").write_text(people_template(name="good"))
    catalog = load_catalog(tmp_path)
    assert set(catalog.templates) == BUILTINS | {"good"}
    errors = "\n".join(catalog.errors)
    assert "broken.yaml: target.keys: 'nope' is not a mapped column" in errors
    assert "clash.yaml: name: 'import_recipients' is a built-in template's name" in errors
    assert "twin.yaml: name: 'good' is already used by" in errors


def test_launch_overrides_are_validated():
    template = parse_template(people_template(), "t")
    launched = template.with_overrides({"file": "inbox/b.csv", "delimiter": "\\t", "max_rejects": 3, "on_error": "stop"})
    assert (launched.source.path, launched.source.delimiter) == ("inbox/b.csv", "\t")
    assert (launched.errors.max_rejects, launched.errors.on_error) == (3, "stop")
    assert template.source.path == "inbox/people.csv"  # the template itself is untouched
    with pytest.raises(TemplateError, match=r"launch config for people: on_error='explode' \(errors.on_error\)"):
        template.with_overrides({"on_error": "explode"})


EXPORT = """
name: out
kind: export
source:
  schema: recipient
  columns: [{column: email}, {column: birth_date, format: "%d/%m/%Y"}]
  filter: {country_code: {in: [FR]}}
  order_by: [email]
destination: {path: outbox/out.csv}
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("schema: recipient", "schema: orders", "source.schema: unknown schema 'orders'"),
        ("{column: email}", "{column: mail}", "source.columns[0].column: recipient has no column 'mail'"),
        ("country_code: {in: [FR]}", "colour: red", "source.filter.colour: recipient has no column 'colour'"),
        ("country_code: {in: [FR]}", "birth_date: {ge: soon}", "source.filter.birth_date.ge: 'soon' is not a date (YYYY-MM-DD)"),
        ("country_code: {in: [FR]}", "denylisted: {eq: 1}", "source.filter.denylisted.eq: 1 is not true or false"),
        ("country_code: {in: [FR]}", "email: {matches: x}", "source.filter.email.matches: unknown operator"),
        ("order_by: [email]", "order_by: [mail]", "source.order_by: recipient has no column 'mail'"),
        ("{column: email}", "{column: email, format: {thousands: ' '}}", "a number format needs a number column"),
        ("path: outbox/out.csv", "path: 'outbox/{day}.csv'", "destination.path: only {date:…} and {run_id} can be filled in"),
        ("{path: outbox/out.csv}", "{path: x, format: fixed_width}", "source.columns[0].width: required for a fixed_width destination"),
        ("{column: email}", "{value: 1}", "source.columns[0]: a constant (value) needs a label"),
    ],
)
def test_export_template_errors(old, new, message):
    assert message in error_of(EXPORT.replace(old, new))


def test_export_distinct_orders_by_exported_columns_only():
    text = EXPORT.replace("order_by: [email]", "order_by: [last_name]\n  distinct: true")
    assert "source.order_by: with distinct, 'last_name' must be an exported column" in error_of(text)


def test_example_templates_load():
    from pathlib import Path

    folder = Path(__file__).parents[1] / "examples" / "crm_to_warehouse" / "job_templates"
    catalog = load_catalog(folder)
    assert catalog.errors == []
    assert {"crm_nightly_recipients", "warehouse_recipients_export"} <= set(catalog.templates)
    assert catalog.get("crm_nightly_recipients").collector.default_status == "running"


def test_a_template_holds_its_data_model_and_carries_it_to_another_process(tmp_path):
    """A step receives its template pickled (the work data): the model comes with it as
    the folder it was read from, read again there (here: the same process, the same
    object), never looked up from the environment."""
    import pickle

    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "store.yaml").write_text(STORE, encoding="utf-8")
    model = schemas.load(folder)
    template = parse_template(export_template(columns=[{"column": "code"}], source={"schema": "store", "order_by": ["code"]}), "out.yaml", model)
    assert template.model is model and template.table is model.table("store")
    again = pickle.loads(pickle.dumps(template))
    assert again.model is model and again == template
    with pytest.raises(TemplateError, match="unknown schema 'store'"):
        parse_template(export_template(columns=[{"column": "code"}], source={"schema": "store", "order_by": ["code"]}), "out.yaml")  # built-in tables only
