"""User data schemas as a model: each bad input is an error naming its file and key, the
other files still load, and custom checks registered through pandera's extension API run."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import polars as pl
import pytest

import schemas
from tests.helpers import STORE
from schemas.model import load_model
from campaign_pipelines.settings import Settings



def load(folder: Path, **files: str) -> schemas.DataModel:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    # The check modules as a deployment's settings name them (CAMPAIGN_CHECK_MODULES).
    return load_model(list(schemas.BUILTIN_TABLES), folder, Settings.from_env().check_modules)


BAD = {
    "unknown_kind": (
        "name: bad\nfields:\n  - {name: x, kind: string}\n  - {name: price, kind: money}\n",
        "fields[1].kind: unknown kind 'money'",
    ),
    "link_to_a_missing_table": (
        "name: bad\nfields:\n  - {name: x, kind: string}\nlinks:\n  - {name: shop, table: shop}\n",
        "links[0].table: no table named 'shop'",
    ),
    "link_via_a_non_unique_field": (
        "name: bad\nfields:\n  - {name: x, kind: string}\nlinks:\n  - {name: recipient, table: recipient, via: first_name}\n",
        "links[0].via: recipient.first_name is not unique",
    ),
    "duplicate_field": (
        "name: bad\nfields:\n  - {name: x, kind: string}\n  - {name: x, kind: integer}\n",
        "fields[1].name: 'x' is defined twice",
    ),
    "link_column_taken_by_a_field": (
        "name: bad\nfields:\n  - {name: recipient_id, kind: integer}\nlinks:\n  - {name: recipient, table: recipient}\n",
        "links[0].name: 'recipient_id' is defined twice",
    ),
    "extension_of_an_unknown_table": (
        "extends: customer\nfields:\n  - {name: x, kind: string}\n",
        "extends: no table named 'customer' can be extended",
    ),
    "extension_field_already_there": (
        "extends: recipient\nfields:\n  - {name: tier, kind: string}\n  - {name: email, kind: string}\n",
        "fields[1].name: recipient already has a field or link named 'email'",
    ),
    "table_name_not_an_identifier": (
        "name: Bad-Table\nfields:\n  - {name: x, kind: string}\n",
        "name: 'Bad-Table' is not a plain identifier",
    ),
    "field_name_not_an_identifier": (
        "name: bad\nfields:\n  - {name: 'unit price', kind: string}\n",
        "fields[0].name: 'unit price' is not a plain identifier",
    ),
    "table_name_reserved": (
        "name: order\nfields:\n  - {name: x, kind: string}\n",
        "name: 'order' is an SQL reserved word",
    ),
    "field_name_reserved": (
        "name: bad\nfields:\n  - {name: x, kind: string}\n  - {name: select, kind: string}\n",
        "fields[1].name: 'select' is an SQL reserved word",
    ),
    "decimal_precision_over_18": (
        "name: bad\nfields:\n  - {name: amount, kind: decimal, precision: 19, scale: 2}\n",
        "fields[0].precision: Input should be less than or equal to 18",
    ),
    "decimal_scale_over_precision": (
        "name: bad\nfields:\n  - {name: amount, kind: decimal, precision: 4, scale: 5}\n",
        "fields[0]: scale (5) cannot exceed precision (4)",
    ),
    "default_with_too_many_decimals": (
        "extends: recipient\nfields:\n  - {name: credit, kind: decimal, precision: 6, scale: 2, default: 1.234}\n",
        "fields[0].default: 1.234 has more than 2 digits after the point",
    ),
    "check_with_an_unknown_name": (
        "name: bad\nfields:\n  - {name: x, kind: string, checks: [{check: is_fancy, error: is not fancy}]}\n",
        "fields[0].checks[0]: unknown check 'is_fancy'",
    ),
    "check_missing_an_argument": (
        "name: bad\nfields:\n  - {name: n, kind: integer, checks: [{check: in_range, min_value: 0, error: out of range}]}\n",
        "fields[0].checks[0]: check 'in_range': in_range() missing required argument: 'max_value'",
    ),
    "check_with_an_unknown_argument": (
        "name: bad\nfields:\n  - {name: x, kind: string, checks: [{check: isin, allowed_values: [a], colour: red, error: not allowed}]}\n",
        "fields[0].checks[0]: check 'isin': isin() got an unexpected keyword argument 'colour'",
    ),
    "check_argument_of_the_wrong_type": (
        "name: bad\nfields:\n  - {name: n, kind: integer, checks: [{check: gt, min_value: ten, error: too small}]}\n",
        "fields[0].checks[0]: check 'gt': cannot compare string with numeric type",
    ),
    "extension_check_with_an_unknown_argument": (
        "extends: recipient\nfields:\n  - {name: tier, kind: string, checks: [{check: isin, allowed_values: [a], colour: red, error: not allowed}]}\n",
        "fields[0].checks[0]: check 'isin': isin() got an unexpected keyword argument 'colour'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_schema_file_is_named_with_its_key_and_the_others_still_load(case, tmp_path):
    text, expected = BAD[case]
    model = load(tmp_path / "schemas", store=STORE, **{case: text})
    bad = tmp_path / "schemas" / f"{case}.yaml"
    assert len(model.errors) == 1, model.errors
    assert model.errors[0].startswith(f"{bad}: "), model.errors
    assert expected in model.errors[0]
    # The other file loaded, the built-in tables are whole, and nothing of the bad file is in.
    assert "store" in model.tables and model.tables["store"].has("code")
    assert set(schemas.BUILTIN.tables) <= set(model.tables)
    assert model.tables["recipient"].field_names == schemas.BUILTIN.tables["recipient"].field_names
    assert "bad" not in model.tables


def test_a_table_linking_to_a_table_in_error_is_left_out_too(tmp_path):
    model = load(
        tmp_path / "schemas",
        store="name: store\nfields:\n  - {name: code, kind: money}\n",
        visit="name: visit\nfields:\n  - {name: day, kind: date}\nlinks:\n  - {name: store, table: store}\n",
    )
    assert "store" not in model.tables and "visit" not in model.tables
    assert any(e.startswith(f"{tmp_path / 'schemas' / 'visit.yaml'}: links[0].table:") for e in model.errors), model.errors


def test_a_valid_table_and_extension_load_into_one_model(tmp_path):
    model = load(
        tmp_path / "schemas",
        store=STORE,
        recipient_loyalty="""\
            extends: recipient
            fields:
              - {name: loyalty_tier, kind: string, max_length: 16, default: bronze}
              - {name: credit, kind: decimal, precision: 10, scale: 2}
            links:
              - {name: home_store, table: store, via: code, on_delete: set_null}
            """,
    )
    assert model.errors == []
    recipient = model.tables["recipient"]
    assert recipient.has("loyalty_tier") and recipient.has("home_store_id")
    assert recipient.field("credit").type_name == "decimal(10,2)"
    # Extension fields come before the managed timestamps, in the one metadata of the model.
    assert recipient.field_names[-2:] == ["created_at", "updated_at"]
    assert recipient.table.metadata is model.metadata
    assert recipient.table.c.home_store_id.foreign_keys


@pytest.fixture
def check_module(tmp_path, monkeypatch):
    """A module in the schemas folder, named by CAMPAIGN_CHECK_MODULES, that registers a
    vectorized polars check (unique names: pandera's registry is per process)."""
    suffix = uuid.uuid4().hex[:8]
    module, check = f"campaign_checks_{suffix}", f"starts_with_{suffix}"
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / f"{module}.py").write_text(textwrap.dedent(f"""\
        import polars as pl
        from pandera import extensions
        from pandera.api.polars.types import PolarsData


        @extensions.register_check_method(statistics=["prefix"])
        def {check}(data: PolarsData, *, prefix: str):
            # pandera's polars backend: a lazy frame and the column's key in, booleans out.
            return data.lazyframe.select(pl.col(data.key).str.starts_with(prefix))
        """), encoding="utf-8")
    monkeypatch.setenv("CAMPAIGN_CHECK_MODULES", module)
    return folder, check


def test_a_custom_check_registered_through_pandera_runs_with_its_error(check_module):
    folder, check = check_module
    model = load(folder, card=f"""\
        name: card
        fields:
          - name: code
            kind: string
            max_length: 12
            checks: [{{check: {check}, prefix: VIP, error: "must start with VIP"}}]
        """)
    assert model.errors == []
    import pandera.errors

    schema = model.tables["card"].pandera_schema(["code"])
    schema.validate(pl.DataFrame({"code": ["VIP-1", "VIP-2"]}))  # passes
    with pytest.raises(pandera.errors.SchemaErrors) as caught:
        schema.validate(pl.DataFrame({"code": ["VIP-1", "X-2", None]}), lazy=True)
    failures = caught.value.failure_cases
    assert failures.select("failure_case", "check").rows() == [("X-2", "must start with VIP")]


def test_a_custom_check_with_a_wrong_argument_is_an_error_naming_its_key(check_module):
    folder, check = check_module
    model = load(
        folder, store=STORE,
        card=f"name: card\nfields:\n  - {{name: code, kind: string, checks: [{{check: {check}, prefx: VIP, error: not allowed}}]}}\n",
    )
    assert "store" in model.tables and "card" not in model.tables
    assert len(model.errors) == 1
    assert model.errors[0].startswith(f"{folder / 'card.yaml'}: fields[0].checks[0]: check '{check}': ")
    assert "prefx" in model.errors[0]


def test_a_check_module_that_fails_to_import_is_reported_and_the_files_still_load(tmp_path, monkeypatch):
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "broken_checks.py").write_text("raise RuntimeError('no luck')\n", encoding="utf-8")
    monkeypatch.setenv("CAMPAIGN_CHECK_MODULES", f"broken_checks, missing_checks_{uuid.uuid4().hex[:8]}")
    model = load(folder, store=STORE)
    assert "store" in model.tables
    assert len(model.errors) == 2
    assert model.errors[0].startswith("CAMPAIGN_CHECK_MODULES: the check module 'broken_checks' failed to import (RuntimeError: no luck)")
    assert "missing_checks_" in model.errors[1]
