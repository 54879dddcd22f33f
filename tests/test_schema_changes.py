"""Schema changes on an existing database, on SQLite and PostgreSQL: planned (DDL),
applied in one transaction, refused with one sentence naming table and field when they
could lose or break data (and then nothing changes), and checked when a run starts."""

from __future__ import annotations

import decimal
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.operations import Operations

from tests.helpers import STORE
from campaign_pipelines.cli import main
from resources import campaign_db
from resources.campaign_db import model_engine, raw_engine
from schemas import links, migrate
from tests.helpers import export_template, people_file, people_template

BASE = people_file("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray", "cid@x.org;C3;Cid;Moe")

LOYALTY = """\
extends: recipient
fields:
  - {name: loyalty_tier, kind: string, max_length: 16}
"""


# Every kind, a link with set_null, a composite key, defaults and a link from a built-in table.
EVERYTHING = {
    "store": STORE,
    "purchase": """\
        name: purchase
        description: Purchases from the web shop.
        fields:
          - {name: order_id, kind: string, max_length: 32, nullable: false}
          - {name: sku, kind: string, max_length: 32, nullable: false}
          - {name: amount, kind: decimal, precision: 12, scale: 2, default: 0}
          - {name: ratio, kind: float}
          - {name: note, kind: string, description: Free text.}
          - {name: quantity, kind: integer, default: 1, nullable: false}
          - {name: gift, kind: boolean, default: false, nullable: false}
          - {name: purchased_at, kind: timestamp}
          - {name: delivered_on, kind: date}
        links:
          - {name: recipient, table: recipient, via: email, nullable: false}
          - {name: store, table: store, via: code, on_delete: set_null}
        key: [order_id, sku]
        """,
    "recipient_loyalty": """\
        extends: recipient
        fields:
          - {name: loyalty_tier, kind: string, max_length: 16, default: bronze}
          - {name: loyalty_code, kind: string, max_length: 12, unique: true}
          - {name: credit, kind: decimal, precision: 10, scale: 2, default: 2.5}
          - {name: vip, kind: boolean, default: false, nullable: false}
        links:
          - {name: home_store, table: store, on_delete: set_null}
        """,
}


def start(campaign) -> None:
    """The database as the built-in model made it, with three recipients loaded by a run."""
    campaign.template(people_template())
    campaign.file("inbox/people.csv", BASE)
    result = campaign.run("people")
    assert result.status == "finished", result.error


def engine(campaign) -> sa.Engine:
    return raw_engine(campaign.db_url)


def planned(campaign) -> migrate.Plan:
    return migrate.plan(engine(campaign), campaign.model)


def apply(campaign) -> migrate.Plan:
    return migrate.apply(engine(campaign), campaign.model)


def state(campaign) -> dict[str, Any]:
    """Every table of the database: its reflected columns, indexes, uniques and links, and its rows."""
    result: dict[str, Any] = {}
    with engine(campaign).connect() as conn:
        inspector = sa.inspect(conn)
        for table in sorted(inspector.get_table_names()):
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).mappings().all()
            result[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)),
                "uniques": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
                "links": sorted((tuple(f["constrained_columns"]), f["referred_table"]) for f in inspector.get_foreign_keys(table)),
                "rows": sorted((dict(r) for r in rows), key=repr),
            }
    return result


def columns(campaign, table: str) -> list[str]:
    with engine(campaign).connect() as conn:
        return [c["name"] for c in sa.inspect(conn).get_columns(table)]


def recipients(campaign, *names: str) -> list[dict[str, Any]]:
    """Read through the model's table, so a decimal reads as one on both databases."""
    table = campaign.model.tables["recipient"].table
    with engine(campaign).connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(*(table.c[n] for n in names)).order_by(table.c.id)).mappings()]


def update_recipient(campaign, email: str, **values: Any) -> None:
    table = campaign.model.tables["recipient"].table
    with engine(campaign).begin() as conn:
        conn.execute(sa.update(table).where(table.c.email == email).values(**values))


# ---------------------------------------------------------------------------------------
# No spurious change


def test_a_database_created_from_the_model_needs_no_change(campaign):
    for name, text in EVERYTHING.items():
        campaign.schema(text, name)
    model = campaign.model
    assert model.errors == []
    model.metadata.create_all(engine(campaign))
    assert planned(campaign) == migrate.Plan(campaign.dialect)


def test_apply_creates_every_table_of_a_new_database_then_plans_nothing(campaign):
    for name, text in EVERYTHING.items():
        campaign.schema(text, name)
    first = planned(campaign)
    created = [c.summary for c in first.changes if c.summary.startswith("create table ")]
    indexes = [c.summary for c in first.changes if c.summary.startswith("index ")]
    checked = [c.summary for c in first.changes if c.summary.startswith("check link ")]
    assert len(created) + len(indexes) + len(checked) == len(first.changes)
    # PostgreSQL keeps each link by triggers (schemas/links.py), SQLite by its foreign key.
    model_links = {f"check link {l.table}.{l.column} to {l.linked} per statement" for l in links.rules(campaign.model)}
    assert set(checked) == (model_links if campaign.dialect == "postgresql" else set())
    assert "check link purchase.recipient_id to recipient per statement" in model_links
    assert all(s.startswith("create table ") for s in created)
    # Every link column gets its index (not the first column of a primary key: it has one).
    assert "index purchase.recipient_id" in indexes and "index recipient_list_member.recipient_id" in indexes
    assert "index recipient_list_member.list_id" not in indexes
    assert set(created) == {f"create table {t.name}" for t in campaign.model.metadata.sorted_tables}
    # Linked tables after the tables they link to.
    assert created.index("create table store") < created.index("create table recipient") < created.index("create table purchase")
    apply(campaign)
    assert planned(campaign).empty
    assert set(state(campaign)) == set(campaign.model.tables)


# ---------------------------------------------------------------------------------------
# Allowed changes


def test_a_new_table_is_created_with_its_link(campaign):
    start(campaign)
    campaign.schema(STORE, "store")
    campaign.schema(
        "name: visit\nfields:\n  - {name: day, kind: date}\nlinks:\n  - {name: recipient, table: recipient, via: email}\n", "visit",
    )
    plan = planned(campaign)
    pg = campaign.dialect == "postgresql"
    assert [c.summary for c in plan.changes] == ["create table store", "create table visit", "index visit.recipient_id"] + (
        ["check link visit.recipient_id to recipient per statement"] if pg else []
    )
    assert plan.ddl[0].startswith("CREATE TABLE store (")
    visit_ddl = next(s for s in plan.ddl if s.startswith("CREATE TABLE visit ("))
    assert ("REFERENCES recipient (id)" in visit_ddl) is not pg
    if pg:
        assert "CREATE OR REPLACE TRIGGER campaign_link_recipient_id_insert AFTER INSERT ON visit " \
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION campaign_link_check('recipient_id', 'recipient')" in plan.ddl
    before = state(campaign)
    apply(campaign)
    after = state(campaign)
    assert {t: after[t] for t in before} == before  # nothing else changed
    assert [c[0] for c in after["visit"]["columns"]] == ["id", "day", "recipient_id", "created_at", "updated_at"]
    visit = campaign.model.tables["visit"].table
    with engine(campaign).begin() as conn:
        ann = conn.execute(sa.text("SELECT id FROM recipient WHERE email = 'ann@x.org'")).scalar_one()
        conn.execute(sa.insert(visit).values(day=sa.func.current_date(), recipient_id=ann, created_at=sa.func.now(), updated_at=sa.func.now()))
    with pytest.raises(sa.exc.IntegrityError), engine(campaign).begin() as conn:
        conn.execute(sa.insert(visit).values(recipient_id=999_999, created_at=sa.func.now(), updated_at=sa.func.now()))
    assert planned(campaign).empty


def test_extension_fields_are_added_to_recipient_with_rows(campaign):
    start(campaign)
    before = recipients(campaign, "id", "email", "crm_id", "first_name", "last_name", "created_at", "updated_at")
    campaign.schema(
        """\
        extends: recipient
        fields:
          - {name: loyalty_tier, kind: string, max_length: 16, default: bronze}
          - {name: points, kind: integer}
          - {name: credit, kind: decimal, precision: 10, scale: 2, default: 2.5}
          - {name: vip, kind: boolean, default: false, nullable: false}
        """,
        "recipient_loyalty",
    )
    plan = planned(campaign)
    assert [c.summary for c in plan.changes] == [
        "add field recipient.loyalty_tier", "add field recipient.points", "add field recipient.credit", "add field recipient.vip",
    ]
    assert plan.ddl[0] == "ALTER TABLE recipient ADD COLUMN loyalty_tier VARCHAR(16) DEFAULT 'bronze'"
    assert not plan.refusals
    apply(campaign)
    assert recipients(campaign, "id", "email", "crm_id", "first_name", "last_name", "created_at", "updated_at") == before
    added = recipients(campaign, "loyalty_tier", "points", "credit", "vip")
    assert added == [{"loyalty_tier": "bronze", "points": None, "credit": decimal.Decimal("2.50"), "vip": False}] * 3
    assert planned(campaign).empty


def test_a_unique_field_is_added_then_enforced(campaign):
    start(campaign)
    campaign.schema("extends: recipient\nfields:\n  - {name: loyalty_code, kind: string, max_length: 12, unique: true}\n", "loyalty")
    plan = planned(campaign)
    assert plan.ddl == [
        "ALTER TABLE recipient ADD COLUMN loyalty_code VARCHAR(12)",
        "CREATE UNIQUE INDEX uq_recipient_loyalty_code ON recipient (loyalty_code)",
    ]
    apply(campaign)
    assert planned(campaign).empty
    update_recipient(campaign, "ann@x.org", loyalty_code="L-1")
    with pytest.raises(sa.exc.IntegrityError):
        update_recipient(campaign, "bob@x.org", loyalty_code="L-1")
    # Unique when present: the other rows stay empty.
    assert [r["loyalty_code"] for r in recipients(campaign, "loyalty_code")] == ["L-1", None, None]


def test_an_existing_field_becomes_unique_when_its_values_are(campaign):
    start(campaign)
    campaign.schema(LOYALTY, "loyalty")
    apply(campaign)
    update_recipient(campaign, "ann@x.org", loyalty_tier="gold")
    update_recipient(campaign, "bob@x.org", loyalty_tier="gold")
    campaign.schema("extends: recipient\nfields:\n  - {name: loyalty_tier, kind: string, max_length: 16, unique: true}\n", "loyalty")
    plan = planned(campaign)
    assert plan.refusals == [
        "recipient.loyalty_tier: the field would become unique but 1 value is stored more than once; nothing was changed."
    ]
    update_recipient(campaign, "bob@x.org", loyalty_tier="silver")
    assert [c.summary for c in planned(campaign).changes] == ["make recipient.loyalty_tier unique"]
    apply(campaign)
    assert planned(campaign).empty
    with pytest.raises(sa.exc.IntegrityError):
        update_recipient(campaign, "cid@x.org", loyalty_tier="gold")


def test_a_link_column_is_added_with_its_foreign_key(campaign):
    start(campaign)
    campaign.schema(STORE, "store")
    apply(campaign)
    campaign.schema(
        "extends: recipient\nlinks:\n  - {name: home_store, table: store, via: code, on_delete: set_null}\n", "recipient_store",
    )
    plan = planned(campaign)
    pg = campaign.dialect == "postgresql"
    assert [c.summary for c in plan.changes] == ["add field recipient.home_store_id", "index recipient.home_store_id"] + (
        ["check link recipient.home_store_id to store per statement"] if pg else []
    )
    assert plan.ddl[0].startswith("ALTER TABLE recipient ADD COLUMN home_store_id ")
    assert plan.ddl[0].endswith("REFERENCES store (id) ON DELETE SET NULL") is not pg
    if pg:
        assert any("campaign_link_on_delete('recipient', 'home_store_id', 'set_null')" in s for s in plan.ddl)
    apply(campaign)
    assert planned(campaign).empty
    store = campaign.model.tables["store"].table
    with engine(campaign).begin() as conn:
        store_id = conn.execute(
            sa.insert(store).values(code="S1", created_at=sa.func.now(), updated_at=sa.func.now()).returning(store.c.id)
        ).scalar_one()
    update_recipient(campaign, "ann@x.org", home_store_id=store_id)
    with pytest.raises(sa.exc.IntegrityError):
        update_recipient(campaign, "bob@x.org", home_store_id=store_id + 1000)
    with engine(campaign).begin() as conn:
        conn.execute(sa.delete(store))
    assert [r["home_store_id"] for r in recipients(campaign, "home_store_id")] == [None, None, None]  # on_delete: set_null


def test_a_string_length_widens_then_cannot_shrink_below_what_is_stored(campaign):
    start(campaign)
    campaign.schema(LOYALTY, "loyalty")
    apply(campaign)
    campaign.schema("extends: recipient\nfields:\n  - {name: loyalty_tier, kind: string, max_length: 40}\n", "loyalty")
    plan = planned(campaign)
    if campaign.dialect == "postgresql":
        assert plan.ddl == ["ALTER TABLE recipient ALTER COLUMN loyalty_tier TYPE VARCHAR(40)"]
    else:
        assert plan.empty  # SQLite stores no length: there is nothing to change
    apply(campaign)
    assert planned(campaign).empty
    update_recipient(campaign, "ann@x.org", loyalty_tier="platinum-plus-lifetime-member-2025")  # 34 characters
    # Shorter than the 34 characters stored: refused on both (SQLite's declared type still says 16).
    campaign.schema("extends: recipient\nfields:\n  - {name: loyalty_tier, kind: string, max_length: 20}\n", "loyalty")
    assert planned(campaign).refusals == [
        "recipient.loyalty_tier: the length would shrink to 20 characters but a stored value has 34; nothing was changed."
    ]


def test_making_a_field_optional(campaign):
    start(campaign)
    campaign.schema("extends: recipient\nfields:\n  - {name: tier, kind: string, max_length: 8, nullable: false, default: basic}\n", "tier")
    apply(campaign)
    campaign.schema("extends: recipient\nfields:\n  - {name: tier, kind: string, max_length: 8, default: basic}\n", "tier")
    plan = planned(campaign)
    if campaign.dialect == "postgresql":
        assert plan.ddl == ["ALTER TABLE recipient ALTER COLUMN tier DROP NOT NULL"]
        apply(campaign)
        assert planned(campaign).empty
    else:
        assert plan.refusals == [
            "recipient.tier: SQLite cannot make an existing field optional (nullable: true) without rebuilding its table; nothing was changed."
        ]


def test_other_tables_and_a_table_whose_file_was_removed_are_left_alone(campaign):
    start(campaign)
    campaign.schema(STORE, "store")
    apply(campaign)
    with engine(campaign).begin() as conn:
        conn.execute(sa.text("CREATE TABLE crm_sync_log (id INTEGER PRIMARY KEY, note VARCHAR(10))"))
        conn.execute(sa.text("INSERT INTO crm_sync_log (id, note) VALUES (1, 'kept')"))
        conn.execute(sa.text("INSERT INTO store (code, created_at, updated_at) VALUES ('S1', '2025-01-01', '2025-01-01')"))
    (campaign.schemas_dir / "store.yaml").unlink()
    before = state(campaign)
    assert planned(campaign).empty
    apply(campaign)
    assert state(campaign) == before
    assert [r["note"] for r in before["crm_sync_log"]["rows"]] == ["kept"] and len(before["store"]["rows"]) == 1


# ---------------------------------------------------------------------------------------
# Refused changes: one sentence naming table and field, and nothing changes


def _refusal_setup(campaign) -> None:
    """recipient.loyalty_tier (16) with a 14-character value and two NULLs."""
    start(campaign)
    campaign.schema(LOYALTY, "loyalty")
    apply(campaign)
    update_recipient(campaign, "ann@x.org", loyalty_tier="silver-premium")


def _refused_type(campaign) -> str:
    return {"sqlite": "INTEGER", "postgresql": "BIGINT"}[campaign.dialect]


REFUSED = {
    "type_change": (
        "  - {name: loyalty_tier, kind: integer}\n",
        lambda c: f"recipient.loyalty_tier: the type would change from VARCHAR(16) to {_refused_type(c)}; "
        "a type change could lose data, so nothing was changed.",
    ),
    "removed_field": (
        "",
        lambda c: "recipient.loyalty_tier: the field is in the database but not in the data model; "
        "removing it would lose its data, so nothing was changed.",
    ),
    "required_with_nulls": (
        "  - {name: loyalty_tier, kind: string, max_length: 16, nullable: false}\n",
        lambda c: "recipient.loyalty_tier: the field would become required (nullable: false) but 2 rows have no value; "
        "nothing was changed.",
    ),
    "shorter_than_stored": (
        "  - {name: loyalty_tier, kind: string, max_length: 8}\n",
        lambda c: "recipient.loyalty_tier: the length would shrink to 8 characters but a stored value has 14; nothing was changed.",
    ),
    "new_required_field_without_default": (
        "  - {name: loyalty_tier, kind: string, max_length: 16}\n  - {name: level, kind: integer, nullable: false}\n",
        lambda c: "recipient.level: a new required field (nullable: false) needs a default to fill the rows the table has; "
        "nothing was changed.",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_change_that_could_lose_data_is_refused_and_nothing_changes(campaign, case):
    _refusal_setup(campaign)
    fields, sentence = REFUSED[case]
    # The same files also hold safe changes (a field, a table): none of them is made either.
    campaign.schema(f"extends: recipient\nfields:\n{fields}  - {{name: nickname, kind: string, max_length: 32}}\n", "loyalty")
    campaign.schema(STORE, "store")
    plan = planned(campaign)
    assert plan.refusals == [sentence(campaign)]
    assert {"add field recipient.nickname", "create table store"} <= {c.summary for c in plan.changes}
    before = state(campaign)
    with pytest.raises(migrate.SchemaChangeRefused) as refused:
        apply(campaign)
    assert str(refused.value) == sentence(campaign)
    assert state(campaign) == before
    assert "store" not in before and "nickname" not in columns(campaign, "recipient")


def test_a_unique_field_or_key_made_with_the_table_then_dropped_from_the_model_is_refused(campaign):
    """CREATE TABLE made them unnamed constraints on SQLite, which Alembic does not compare:
    both databases see them, and refuse to drop them the same way."""
    start(campaign)
    campaign.schema(STORE.replace("city, kind: string, max_length: 64}", "city, kind: string, max_length: 64, unique: true}"), "store")
    apply(campaign)
    assert planned(campaign).empty
    campaign.schema(STORE.replace(", unique: true", "").replace("key: [code]\n", ""), "store")
    sentence = ("store.{}: the field is unique in the database but not in the data model; schema apply does not remove "
                "a unique constraint, so nothing was changed.")
    assert planned(campaign).refusals == [sentence.format("city"), sentence.format("code")]
    with pytest.raises(migrate.SchemaChangeRefused):
        apply(campaign)


def test_several_refusals_are_one_sentence_each(campaign):
    start(campaign)
    campaign.schema(LOYALTY + "  - {name: note, kind: string, max_length: 32}\n", "loyalty")
    apply(campaign)
    campaign.schema("extends: recipient\nfields:\n  - {name: loyalty_tier, kind: date}\n", "loyalty")
    sentences = [
        "recipient.loyalty_tier: the type would change from VARCHAR(16) to DATE; a type change could lose data, so nothing was changed.",
        "recipient.note: the field is in the database but not in the data model; removing it would lose its data, so nothing was changed.",
    ]
    assert planned(campaign).refusals == sentences
    with pytest.raises(migrate.SchemaChangeRefused) as refused:
        apply(campaign)
    assert refused.value.refusals == sentences and str(refused.value) == " ".join(sentences)


def test_apply_runs_every_change_in_one_transaction(campaign, monkeypatch):
    start(campaign)
    campaign.schema(STORE, "store")
    campaign.schema(LOYALTY, "loyalty")
    assert len(planned(campaign).changes) == 2
    before = state(campaign)
    invoke = Operations.invoke
    calls = []

    def failing_second(self, operation):
        if not self.migration_context.as_sql:
            calls.append(operation)
            if len(calls) == 2:
                raise RuntimeError("the server went away")
        return invoke(self, operation)

    monkeypatch.setattr(Operations, "invoke", failing_second)
    with pytest.raises(RuntimeError):
        apply(campaign)
    assert len(calls) == 2
    assert state(campaign) == before  # the table made first was rolled back with the rest


# ---------------------------------------------------------------------------------------
# When a run starts


def test_a_run_applies_a_safe_change_first(campaign):
    start(campaign)
    campaign.schema(
        "extends: recipient\nfields:\n  - {name: loyalty_tier, kind: string, max_length: 16, default: bronze}\n", "loyalty",
    )
    assert [c.summary for c in planned(campaign).changes] == ["add field recipient.loyalty_tier"]
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Annie;Lee", "dan@x.org;C4;Dan;Roe"))
    result = campaign.run("people")
    assert result.status == "finished", result.error
    assert (result.counts["rows_inserted"], result.counts["rows_updated"]) == (1, 1)
    assert planned(campaign).empty
    assert [r["loyalty_tier"] for r in recipients(campaign, "loyalty_tier")] == ["bronze"] * 4


def test_a_run_with_a_refused_change_fails_with_the_sentence_and_writes_nothing(campaign):
    _refusal_setup(campaign)
    campaign.schema("extends: recipient\nfields:\n  - {name: loyalty_tier, kind: integer}\n  - {name: y, kind: string}\n", "loyalty")
    sentence = REFUSED["type_change"][1](campaign)
    before, rows = state(campaign), campaign.snapshot()
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Annie;Lee", "dan@x.org;C4;Dan;Roe"))
    result = campaign.run("people")
    assert (result.success, result.status) == (False, "failed")
    assert result.error == sentence
    campaign.template(export_template())
    exported = campaign.run("out")
    assert (exported.success, exported.error) == (False, sentence)
    assert not (campaign.data_dir / "outbox" / "out.csv").exists()
    assert state(campaign) == before and campaign.snapshot() == rows


def test_the_check_runs_once_per_model_and_again_for_a_reloaded_one(campaign, monkeypatch):
    start(campaign)
    calls = []
    real = migrate.apply
    monkeypatch.setattr(migrate, "apply", lambda engine, model: calls.append(model) or real(engine, model))
    model = campaign.model  # unchanged files: the model the first run was checked against
    assert model is campaign.model
    model_engine(campaign.db_url, model)
    assert calls == []  # once per model and process: that run did
    campaign.schema(LOYALTY, "loyalty")  # a file changed: the model is read again
    reloaded = campaign.model
    assert reloaded is not model
    model_engine(campaign.db_url, reloaded)
    model_engine(campaign.db_url, reloaded)
    assert calls == [reloaded]
    assert "loyalty_tier" in columns(campaign, "recipient")
    assert (campaign.db_url, id(reloaded)) in campaign_db._checked


def test_the_resource_changes_the_database_only_when_a_step_calls_migrate(campaign, monkeypatch):
    """Migration is what a step does first (ops.py), never a side effect of the engine or
    the run's session."""
    start(campaign)
    campaign.schema(LOYALTY, "loyalty")
    monkeypatch.setattr(campaign_db, "_checked", {})  # as in a new process
    monkeypatch.setattr(campaign_db, "_prepared", {})
    resource = campaign_db.CampaignDatabase(url=campaign.db_url, schemas_dir=str(campaign.settings.schemas_dir))
    with resource.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    resource.session().execute(sa.text("SELECT 1"))
    resource.reset_session()
    assert "loyalty_tier" not in columns(campaign, "recipient")
    resource.migrate()
    assert "loyalty_tier" in columns(campaign, "recipient") and planned(campaign).empty


def test_a_plain_connection_first_used_creates_what_is_missing_and_leaves_refusals_to_runs(campaign, monkeypatch):
    _refusal_setup(campaign)
    with engine(campaign).begin() as conn:
        conn.execute(sa.text("DROP TABLE import_reject"))
    campaign.schema("extends: recipient\nfields:\n  - {name: loyalty_tier, kind: integer}\n", "loyalty")
    campaign.schema(STORE, "store")
    before = state(campaign)
    monkeypatch.setattr(campaign_db, "_prepared", {})  # as in a new process
    campaign_db.get_engine(campaign.db_url, campaign.model)  # does not raise: reading rejects must work
    after = state(campaign)
    assert set(after) - set(before) == {"import_reject"}  # the built-in table only, not store
    assert {t: after[t] for t in before} == before
    # Without the refusal, a first use brings the database to the model.
    campaign.schema(LOYALTY, "loyalty")
    monkeypatch.setattr(campaign_db, "_prepared", {})
    campaign_db.get_engine(campaign.db_url, campaign.model)
    assert "store" in state(campaign) and planned(campaign).empty


# ---------------------------------------------------------------------------------------
# The command line


def cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what the runs before printed
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_schema_plan_prints_the_ddl_and_apply_makes_it(campaign, capsys):
    start(campaign)
    campaign.schema(LOYALTY, "loyalty")
    code, out, err = cli(capsys, "schema", "plan")
    assert (code, err) == (0, "")
    assert "-- add field recipient.loyalty_tier\nALTER TABLE recipient ADD COLUMN loyalty_tier VARCHAR(16);\n" in out
    assert "loyalty_tier" not in columns(campaign, "recipient")  # plan changes nothing
    code, out, err = cli(capsys, "schema", "apply")
    assert (code, err) == (0, "")
    assert "ALTER TABLE recipient ADD COLUMN loyalty_tier VARCHAR(16);" in out
    assert out.strip().endswith("Applied 1 change(s) in one transaction; the database matches the data model.")
    assert "loyalty_tier" in columns(campaign, "recipient")
    assert cli(capsys, "schema", "plan") == (0, "The database matches the data model.\n", "")
    assert cli(capsys, "schema", "apply") == (0, "The database matches the data model.\n", "")


def test_schema_plan_and_apply_exit_1_on_a_refusal_and_change_nothing(campaign, capsys):
    _refusal_setup(campaign)
    campaign.schema("extends: recipient\nfields:\n  - {name: loyalty_tier, kind: integer}\n  - {name: y, kind: string}\n", "loyalty")
    sentence = REFUSED["type_change"][1](campaign)
    before = state(campaign)
    code, out, err = cli(capsys, "schema", "plan")
    assert code == 1
    assert "ALTER TABLE recipient ADD COLUMN y TEXT;" in out  # the safe part is still shown
    assert err == f"refused: {sentence}\n"
    code, out, err = cli(capsys, "schema", "apply")
    assert (code, out, err) == (1, "", f"error: {sentence}\n")
    assert state(campaign) == before


def test_schema_plan_reports_schema_file_errors(campaign, capsys):
    start(campaign)
    campaign.schema("name: bad\nfields:\n  - {name: x, kind: money}\n", "bad")
    campaign.schema(STORE, "store")
    code, out, err = cli(capsys, "schema", "plan")
    assert code == 1
    assert "-- create table store" in out
    assert err == f"invalid: {campaign.schemas_dir / 'bad.yaml'}: fields[0].kind: unknown kind 'money'; use one of string, integer, decimal, float, date, boolean, timestamp\n"
    code, out, err = cli(capsys, "schema", "apply")
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == "error: the data schemas above are invalid; fix them and apply again (nothing was changed)."
    assert "store" not in state(campaign)
