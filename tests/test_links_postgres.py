"""Links on PostgreSQL, kept by statement-level triggers (schemas/links.py) instead of
foreign keys: each on_delete rule over a set of deleted records, a link to nothing
refused on insert and update, no orphan when a delete and a new link race (in either
order), and a database made with foreign keys converted in one apply."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from resources.campaign_db import raw_engine
from schemas import links, migrate
from tests.helpers import CARD, STORE, people_file, people_template

ORDER = """\
name: order_line
fields:
  - {name: order_id, kind: string, max_length: 32, nullable: false}
links:
  - {name: recipient, table: recipient, via: email, nullable: false}
  - {name: store, table: store, via: code, on_delete: set_null}
key: [order_id]
"""


@pytest.fixture
def shop(postgres_campaign):
    campaign = postgres_campaign
    campaign.template(people_template())
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray", "cid@x.org;C3;Cid;Moe"))
    assert campaign.run("people").status == "finished"
    for name, text in {"store": STORE, "order_line": ORDER, "loyalty_card": CARD}.items():
        campaign.schema(text, name)
    engine = raw_engine(campaign.db_url)
    migrate.apply(engine, campaign.model)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO store (code, created_at, updated_at) VALUES ('S1', now(), now()), ('S2', now(), now())"))
    return engine


def ids(conn, table: str, where: str = "") -> dict[str, int]:
    column = {"recipient": "email", "store": "code"}[table]
    return dict(conn.execute(sa.text(f"SELECT {column}, id FROM {table} {where}")).all())


def add_order(conn, order_id: str, recipient_id: int, store_id: int | None = None) -> None:
    conn.execute(sa.text(
        "INSERT INTO order_line (order_id, recipient_id, store_id, created_at, updated_at) VALUES (:o, :r, :s, now(), now())"
    ), {"o": order_id, "r": recipient_id, "s": store_id})


def orders(engine) -> dict[str, tuple[int | None, int | None]]:
    with engine.connect() as conn:
        return {o: (r, s) for o, r, s in conn.execute(sa.text("SELECT order_id, recipient_id, store_id FROM order_line"))}


def test_the_database_keeps_links_by_triggers_not_foreign_keys(shop, postgres_campaign):
    inspector = sa.inspect(shop)
    assert all(inspector.get_foreign_keys(t) == [] for t in postgres_campaign.model.tables)
    with shop.connect() as conn:
        triggers = links.present_triggers(conn)
        kept = links.kept_rules(triggers)
        assert links.missing_parts(links.present_functions(conn), triggers, links.rules(postgres_campaign.model)) == []
    assert kept[("order_line", "store_id")] == links.LinkRule("order_line", "store_id", "store", "set_null")
    assert kept[("loyalty_card", "recipient_id")].on_delete == "restrict"
    assert kept[("subscription", "recipient_id")] == links.LinkRule("subscription", "recipient_id", "recipient", "cascade")


def test_each_on_delete_rule_applies_to_every_deleted_record_at_once(shop):
    with shop.begin() as conn:
        people, stores = ids(conn, "recipient"), ids(conn, "store")
        add_order(conn, "o1", people["ann@x.org"], stores["S1"])
        add_order(conn, "o2", people["bob@x.org"], stores["S1"])
        add_order(conn, "o3", people["bob@x.org"], stores["S2"])
        conn.execute(sa.text("INSERT INTO loyalty_card (number, recipient_id, created_at, updated_at) VALUES ('L1', :r, now(), now())"),
                     {"r": people["cid@x.org"]})
    with shop.begin() as conn:
        conn.execute(sa.text("DELETE FROM store"))  # set_null
    assert orders(shop) == {"o1": (people["ann@x.org"], None), "o2": (people["bob@x.org"], None), "o3": (people["bob@x.org"], None)}
    with pytest.raises(sa.exc.IntegrityError, match=r"recipient \d+ is still linked from loyalty_card.recipient_id \(on_delete: restrict\)"):
        with shop.begin() as conn:
            conn.execute(sa.text("DELETE FROM recipient"))  # restrict: nothing goes, cascades included
    assert len(orders(shop)) == 3
    with shop.begin() as conn:
        conn.execute(sa.text("DELETE FROM recipient WHERE email IN ('ann@x.org', 'bob@x.org')"))  # cascade
        assert ids(conn, "recipient") == {"cid@x.org": people["cid@x.org"]}
    assert orders(shop) == {}


def test_a_link_to_no_record_is_refused_on_insert_and_on_update(shop):
    with shop.begin() as conn:
        ann = ids(conn, "recipient")["ann@x.org"]
        add_order(conn, "o1", ann)
    with pytest.raises(sa.exc.IntegrityError, match=r"order_line.recipient_id = 999999 links to no recipient record"):
        with shop.begin() as conn:
            add_order(conn, "o2", ann)
            add_order(conn, "o3", 999_999)
    with pytest.raises(sa.exc.IntegrityError, match=r"order_line.store_id = 77 links to no store record"):
        with shop.begin() as conn:
            conn.execute(sa.text("UPDATE order_line SET store_id = 77"))
    with pytest.raises(sa.exc.IntegrityError, match=r"recipient.id cannot be set by an UPDATE: other tables link to it"):
        with shop.begin() as conn:
            conn.execute(sa.text("UPDATE recipient SET id = id + 1000 WHERE email = 'ann@x.org'"))
    assert orders(shop) == {"o1": (ann, None)}


def waiting_for_a_lock(engine, pid: int) -> bool:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar()


def in_thread(engine, statement: str, params: dict) -> tuple[threading.Thread, dict]:
    """Run `statement` in its own transaction on another connection; its pid and outcome in the dict."""
    outcome: dict = {}
    started = threading.Event()

    def work() -> None:
        try:
            with engine.begin() as conn:
                outcome["pid"] = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
                started.set()
                conn.execute(sa.text(statement), params)
            outcome["done"] = True
        except sa.exc.DBAPIError as exc:
            outcome["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    started.wait(10)
    deadline = time.monotonic() + 10
    while not waiting_for_a_lock(engine, outcome["pid"]):
        assert time.monotonic() < deadline and thread.is_alive(), outcome
        time.sleep(0.05)
    return thread, outcome


def test_a_delete_racing_a_new_link_cascades_to_it(shop):
    with shop.connect() as conn:
        ann = ids(conn, "recipient")["ann@x.org"]
    with shop.begin() as writer:
        add_order(writer, "o1", ann)  # its trigger now holds SHARE on recipient
        thread, outcome = in_thread(shop, "DELETE FROM recipient WHERE id = :id", {"id": ann})  # waits
    thread.join(10)
    assert outcome.get("done"), outcome
    assert orders(shop) == {}  # cascaded to the link committed while the delete waited


def test_a_new_link_racing_a_delete_is_refused(shop):
    with shop.connect() as conn:
        ann = ids(conn, "recipient")["ann@x.org"]
    with shop.begin() as deleter:
        deleter.execute(sa.text("DELETE FROM recipient WHERE id = :id"), {"id": ann})
        thread, outcome = in_thread(
            shop, "INSERT INTO order_line (order_id, recipient_id, created_at, updated_at) VALUES ('o1', :r, now(), now())", {"r": ann},
        )  # waits for the delete's commit
    thread.join(10)
    assert isinstance(outcome.get("error"), sa.exc.IntegrityError), outcome
    assert "links to no recipient record" in str(outcome["error"])
    assert orders(shop) == {}


def as_foreign_keys(engine, rules: list[links.LinkRule]) -> None:
    """The database as an earlier version made it: each link a foreign key, no triggers."""
    with engine.begin() as conn:
        for (table, name), _ in links.present_triggers(conn).items():
            conn.execute(sa.text(f'DROP TRIGGER "{name}" ON "{table}"'))
        for rule in rules:
            action = rule.on_delete.replace("_", " ").upper()
            conn.execute(sa.text(
                f'ALTER TABLE "{rule.table}" ADD CONSTRAINT "{rule.table}_{rule.column}_fkey" FOREIGN KEY ("{rule.column}") '
                f'REFERENCES "{rule.linked}" (id) ON DELETE {action}'
            ))


def test_a_database_with_foreign_keys_gets_triggers_instead_in_one_apply(shop, postgres_campaign):
    with shop.begin() as conn:
        add_order(conn, "o1", ids(conn, "recipient")["ann@x.org"], ids(conn, "store")["S1"])
    model = postgres_campaign.model
    as_foreign_keys(shop, links.rules(model))
    assert sa.inspect(shop).get_foreign_keys("order_line")
    plan = migrate.plan(shop, model)
    assert not plan.refusals
    assert {c.summary for c in plan.changes} == {
        f"check (instead of a foreign key) link {r.table}.{r.column} to {r.linked} per statement" for r in links.rules(model)
    }
    assert "ALTER TABLE order_line DROP CONSTRAINT order_line_store_id_fkey" in plan.ddl
    before = orders(shop)
    migrate.apply(shop, model)
    assert migrate.plan(shop, model).empty
    assert orders(shop) == before
    assert all(sa.inspect(shop).get_foreign_keys(t) == [] for t in model.tables)
    with shop.begin() as conn:
        conn.execute(sa.text("DELETE FROM store"))
    assert list(orders(shop).values()) == [(before["o1"][0], None)]  # set_null, by the trigger now


def test_a_foreign_key_with_another_rule_is_refused_and_nothing_changes(shop, postgres_campaign):
    model = postgres_campaign.model
    rules = [r if r.column != "store_id" else links.LinkRule(r.table, r.column, r.linked, "cascade") for r in links.rules(model)]
    as_foreign_keys(shop, rules)
    plan = migrate.plan(shop, model)
    assert plan.refusals == [
        "order_line.store_id: the link would change (on_delete cascade to set_null); schema apply does not change an "
        "existing link, so nothing was changed."
    ]
    with pytest.raises(migrate.SchemaChangeRefused):
        migrate.apply(shop, model)
    assert sa.inspect(shop).get_foreign_keys("order_line")
    with shop.connect() as conn:
        assert links.present_triggers(conn) == {}
