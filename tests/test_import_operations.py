"""Operations, keys, duplicates, lists and services, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.helpers import CARD, SERVICES, people_file, people_template

BASE = people_file("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray", "cid@x.org;C3;Cid;Moe")


def load_base(campaign, **changes):
    """The people template (with `changes`) run once on BASE: three recipients loaded."""
    campaign.template(people_template(**changes))
    campaign.file("inbox/people.csv", BASE)
    return campaign.run("people")


def names(campaign) -> dict[str, str]:
    return {r["email"]: r["first_name"] for r in campaign.rows("recipient", "email", "first_name")}


def test_insert_or_update_inserts_then_reimport_changes_nothing(campaign):
    first = load_base(campaign)
    assert first.status == "finished"
    assert first.counts["rows_inserted"] == 3
    before = campaign.rows("recipient")
    again = campaign.run("people")
    assert again.counts["rows_inserted"] == 0
    assert again.counts["rows_unchanged"] == 3
    assert again.counts["rows_updated"] == 0
    # Not rewritten: updated_at did not move.
    assert campaign.rows("recipient") == before


def test_postgresql_keeps_the_tuple_of_every_unchanged_row(postgres_campaign):
    """Not rewritten, not even with equal values: an unchanged row keeps its tuple (its
    xmin), so a nightly re-import does not bloat the table; a changed row gets a new one."""
    campaign = postgres_campaign
    load_base(campaign)

    def versions() -> dict[str, str]:
        return {r["email"]: r["version"] for r in campaign.rows("recipient", "email", "xmin::text AS version")}

    before = versions()
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Annie;Lee", "bob@x.org;C2;Bob;Ray", "cid@x.org;C3;Cid;Moe"))
    result = campaign.run("people")
    assert (result.counts["rows_updated"], result.counts["rows_unchanged"]) == (1, 2)
    after = versions()
    assert {e: after[e] == before[e] for e in before} == {"ann@x.org": False, "bob@x.org": True, "cid@x.org": True}


def test_update_rewrites_only_changed_rows(campaign):
    load_base(campaign)
    before = {r["email"]: r for r in campaign.rows("recipient")}
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Annie;Lee", "bob@x.org;C2;Bob;Ray", "cid@x.org;C3;Cid;Moe"))
    result = campaign.run("people")
    assert (result.counts["rows_updated"], result.counts["rows_unchanged"]) == (1, 2)
    after = {r["email"]: r for r in campaign.rows("recipient")}
    assert after["ann@x.org"]["first_name"] == "Annie"
    assert after["ann@x.org"]["updated_at"] != before["ann@x.org"]["updated_at"]
    assert after["ann@x.org"]["created_at"] == before["ann@x.org"]["created_at"]
    assert after["bob@x.org"] == before["bob@x.org"]


def test_insert_operation_ignores_existing_keys(campaign):
    load_base(campaign)
    campaign.template(people_template(name="people_insert", target={"operation": "insert"}))
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Changed;Lee", "dan@x.org;C4;Dan;Fox"))
    result = campaign.run("people_insert")
    assert (result.counts["rows_inserted"], result.counts["rows_ignored"]) == (1, 1)
    assert names(campaign)["ann@x.org"] == "Ann"
    assert names(campaign)["dan@x.org"] == "Dan"


def test_update_operation_ignores_unknown_keys(campaign):
    load_base(campaign)
    campaign.template(people_template(name="people_update", target={"operation": "update"}))
    campaign.file("inbox/people.csv", people_file("bob@x.org;C2;Robert;Ray", "new@x.org;C9;New;One"))
    result = campaign.run("people_update")
    assert (result.counts["rows_updated"], result.counts["rows_ignored"], result.counts["rows_inserted"]) == (1, 1, 0)
    assert names(campaign) == {"ann@x.org": "Ann", "bob@x.org": "Robert", "cid@x.org": "Cid"}


def test_reconcile_only_changes_no_field_and_feeds_the_list(campaign):
    load_base(campaign)
    before = campaign.rows("recipient")
    campaign.template(people_template(name="people_pick", target={"operation": "reconcile_only", "list": {"name": "picked"}}))
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Other;Name", "zed@x.org;C8;Zed;Zed"))
    result = campaign.run("people_pick")
    assert (result.counts["rows_unchanged"], result.counts["rows_ignored"], result.counts["rows_inserted"]) == (1, 1, 0)
    assert campaign.rows("recipient") == before
    members = campaign.rows("recipient_list_member", order_by="recipient_id")
    ann = next(r["id"] for r in before if r["email"] == "ann@x.org")
    assert [m["recipient_id"] for m in members] == [ann]


def test_delete_operation_removes_matches_and_their_links(campaign):
    load_base(campaign, target={"list": {"name": "all"}, "service": "news"})
    campaign.template(people_template(name="people_delete", target={"operation": "delete"}))
    campaign.file("inbox/people.csv", people_file("bob@x.org;;;", "ghost@x.org;;;"))
    result = campaign.run("people_delete")
    assert (result.counts["rows_deleted"], result.counts["rows_ignored"]) == (1, 1)
    assert sorted(names(campaign)) == ["ann@x.org", "cid@x.org"]
    assert len(campaign.rows("recipient_list_member", order_by="recipient_id")) == 2
    assert len(campaign.rows("subscription", order_by="recipient_id")) == 2


def test_secondary_key_reconciles_lines_without_key(campaign):
    load_base(campaign)
    campaign.file("inbox/people.csv", people_file(";C2;Bobby;", ";C7;Eve;New"))
    result = campaign.run("people")
    assert (result.counts["rows_updated"], result.counts["rows_inserted"]) == (1, 1)
    rows = {r["crm_id"]: r for r in campaign.rows("recipient")}
    assert rows["C2"]["first_name"] == "Bobby" and rows["C2"]["email"] == "bob@x.org"
    assert rows["C7"]["email"] is None and rows["C7"]["first_name"] == "Eve"


def test_line_without_any_key_is_rejected(campaign):
    campaign.template(people_template())
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Ann;Lee", ";;No;Key"))
    result = campaign.run("people")
    assert (result.counts["rows_inserted"], result.counts["rows_rejected"]) == (1, 1)
    (reject,) = campaign.rows("import_reject", order_by="line_number")
    assert reject["line_number"] == 3
    assert "no value for the reconciliation key email" in reject["reason"]


@pytest.mark.parametrize(
    ("rule", "first_name", "ignored", "rejected"),
    [("update", "Last", 2, 0), ("ignore", "First", 2, 0), ("reject", "First", 0, 2)],
)
def test_duplicates_in_file(campaign, rule, first_name, ignored, rejected):
    campaign.template(people_template(target={"duplicates_in_file": rule}))
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;First;A", "ANN@x.org;C1;Middle;A", "ann@x.org;C1;Last;A"))
    result = campaign.run("people")
    assert result.counts["rows_inserted"] == 1
    assert (result.counts["rows_ignored"], result.counts["rows_rejected"]) == (ignored, rejected)
    assert names(campaign) == {"ann@x.org": first_name}
    if rule == "reject":
        reasons = [r["reason"] for r in campaign.rows("import_reject", order_by="line_number")]
        assert reasons == ["duplicate of line 2 (same email)"] * 2


def test_existing_records_ignore_leaves_matches_alone(campaign):
    load_base(campaign)
    campaign.template(people_template(name="people_new_only", target={"existing_records": "ignore"}))
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Changed;X", "dan@x.org;C4;Dan;Fox"))
    result = campaign.run("people_new_only")
    assert (result.counts["rows_inserted"], result.counts["rows_ignored"]) == (1, 1)
    assert names(campaign)["ann@x.org"] == "Ann"


@pytest.mark.parametrize(("rule", "expected"), [("keep", "Lee"), ("overwrite", None)])
def test_empty_values(campaign, rule, expected):
    load_base(campaign, target={"empty_values": rule})
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Ann;"))
    result = campaign.run("people")
    row = next(r for r in campaign.rows("recipient") if r["email"] == "ann@x.org")
    assert row["last_name"] == expected
    assert result.counts["rows_updated" if rule == "overwrite" else "rows_unchanged"] == 1
    assert row["crm_id"] == "C1"


def test_list_append_then_replace(campaign):
    campaign.template(people_template(target={"list": {"name": "vip", "mode": "append"}}))
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray"))
    campaign.run("people")
    campaign.file("inbox/people.csv", people_file("cid@x.org;C3;Cid;Moe"))
    campaign.run("people")
    ids = {r["email"]: r["id"] for r in campaign.rows("recipient", "id", "email")}
    members = lambda: sorted(m["recipient_id"] for m in campaign.rows("recipient_list_member", order_by="recipient_id"))  # noqa: E731
    assert members() == sorted(ids.values())
    (vip,) = campaign.rows("recipient_list")
    assert vip["name"] == "vip"
    campaign.template(people_template(name="people_replace", target={"list": {"name": "vip", "mode": "replace"}}))
    campaign.file("inbox/people.csv", people_file("bob@x.org;C2;Bob;Ray"))
    campaign.run("people_replace")
    assert members() == [ids["bob@x.org"]]
    assert len(campaign.rows("recipient_list")) == 1


def test_service_subscription_once_per_recipient(campaign):
    load_base(campaign, target={"service": "newsletter"})
    campaign.run("people")
    (service,) = campaign.rows("service")
    assert service["name"] == "newsletter"
    subscribed = campaign.rows("subscription", order_by="recipient_id")
    assert sorted(s["recipient_id"] for s in subscribed) == sorted(r["id"] for r in campaign.rows("recipient", "id"))
    assert {s["service_id"] for s in subscribed} == {service["id"]}


def test_unique_value_of_another_record_is_rejected(campaign):
    load_base(campaign)
    # dan takes ann's crm_id; eve and fay share a new crm_id within the file.
    campaign.file(
        "inbox/people.csv",
        people_file("dan@x.org;C1;Dan;Fox", "eve@x.org;C5;Eve;Ito", "fay@x.org;C5;Fay;Oz", "gus@x.org;C6;Gus;Ng"),
    )
    result = campaign.run("people")
    assert (result.counts["rows_inserted"], result.counts["rows_rejected"]) == (2, 2)
    rejects = {r["line_number"]: r for r in campaign.rows("import_reject", order_by="line_number")}
    assert "crm_id: 'C1' is also on another recipient record" in rejects[2]["reason"]
    assert rejects[2]["column_name"] == "crm_id"
    assert "crm_id: 'C5' is also on line 3" in rejects[4]["reason"]
    assert sorted(names(campaign)) == ["ann@x.org", "bob@x.org", "cid@x.org", "eve@x.org", "gus@x.org"]


def test_key_matching_several_records_is_rejected(campaign):
    campaign.template(people_template())
    campaign.file("inbox/people.csv", people_file("a1@x.org;C1;Sam;Lee", "a2@x.org;C2;Sam;Lee", "a3@x.org;C3;Kim;Lee"))
    campaign.run("people")
    campaign.template(
        people_template(
            name="by_name",
            target={"operation": "update", "keys": ["first_name", "last_name"], "secondary_keys": []},
            columns=[
                {"source": "first_name", "target": "first_name"},
                {"source": "last_name", "target": "last_name"},
                {"source": "crm_id", "target": "folder"},
            ],
        )
    )
    campaign.file("inbox/people.csv", people_file(";F1;Sam;Lee", ";F2;Kim;Lee"))
    result = campaign.run("by_name")
    assert (result.counts["rows_updated"], result.counts["rows_rejected"]) == (1, 1)
    (reject,) = campaign.rows("import_reject", order_by="line_number")
    assert reject["line_number"] == 2 and "matches several recipient records" in reject["reason"]


def test_builtin_denylist_touches_only_the_flag(campaign):
    load_base(campaign)
    before = {r["email"]: r for r in campaign.rows("recipient")}
    campaign.file("inbox/denylist.csv", "email\nBOB@x.org\nnew@x.org\nbob@x.org\n")
    result = campaign.run("import_denylist")
    assert (result.counts["rows_updated"], result.counts["rows_inserted"], result.counts["rows_ignored"]) == (1, 1, 1)
    after = {r["email"]: r for r in campaign.rows("recipient")}
    assert after["bob@x.org"]["email_denylisted"] is True or after["bob@x.org"]["email_denylisted"] == 1
    assert {k: v for k, v in after["bob@x.org"].items() if k not in ("email_denylisted", "updated_at")} == {
        k: v for k, v in before["bob@x.org"].items() if k not in ("email_denylisted", "updated_at")
    }
    assert bool(after["new@x.org"]["email_denylisted"]) and after["new@x.org"]["first_name"] is None
    assert not bool(after["ann@x.org"]["email_denylisted"])
    assert not bool(after["new@x.org"]["denylisted"])


def test_builtin_import_recipients_on_the_sample(campaign):
    from pathlib import Path

    sample = Path(__file__).parent.parent / "examples" / "recipients.csv"
    campaign.file("inbox/recipients.csv", sample.read_bytes())
    result = campaign.run("import_recipients")
    assert result.status == "finished_with_errors"
    assert result.counts == result.counts | {"rows_read": 9, "rows_inserted": 5, "rows_ignored": 1, "rows_rejected": 3}
    rows = {r["crm_id"]: r for r in campaign.rows("recipient")}
    assert rows["CRM-0002"]["email"] == "albert.camus@example.org"  # trimmed and lower-cased
    assert rows["CRM-0002"]["postal_code"] == "01000"  # leading zero kept
    assert rows["CRM-0002"]["gender"] == "M"  # Male remapped
    assert rows["CRM-0001"]["last_name"] == "Curie-Sklodowska"  # the later duplicate wins
    assert rows["CRM-0003"]["email"] is None  # reconciled on crm_id
    assert str(rows["CRM-0004"]["birth_date"]) == "1969-04-08"
    assert rows["CRM-0001"]["origin"] == "import_recipients"


def test_services_are_importable_too(campaign):
    campaign.template(SERVICES)
    campaign.file("inbox/services.csv", "name;label;channel\nnews;Newsletter;email\nsms;SMS offers;sms\nnews;Weekly news;email\n")
    result = campaign.run("import_services")
    assert (result.counts["rows_inserted"], result.counts["rows_ignored"]) == (2, 1)  # the later 'news' line wins
    assert campaign.rows("service", "name", "label", "channel") == [
        {"name": "news", "label": "Weekly news", "channel": "email"},
        {"name": "sms", "label": "SMS offers", "channel": "sms"},
    ]
    assert campaign.run("import_services").counts["rows_unchanged"] == 2


def test_a_delete_kept_by_a_restrict_link_rejects_its_line_naming_the_linking_record(campaign):
    """A line whose record another table still links to (on_delete: restrict) is rejected,
    naming that table and one of its records; the other lines are deleted (both databases)."""
    campaign.schema(CARD, "loyalty_card")
    load_base(campaign)
    campaign.template(
        "name: cards\nkind: import\nsource: {path: inbox/cards.csv, delimiter: ';'}\n"
        "target: {schema: loyalty_card, keys: [number]}\n"
        "columns:\n  - {source: number, target: number}\n  - {source: email, target: recipient, link: {via: email}}\n"
    )
    campaign.file("inbox/cards.csv", "number;email\nN-7;bob@x.org\nN-8;bob@x.org\n")
    assert campaign.run("cards").counts["rows_inserted"] == 2
    campaign.template(people_template(name="people_delete", target={"operation": "delete"}))
    campaign.file("inbox/people.csv", people_file("bob@x.org;;;", "cid@x.org;;;"))
    result = campaign.run("people_delete")
    assert result.status == "finished_with_errors", result.error
    assert (result.counts["rows_deleted"], result.counts["rows_rejected"]) == (1, 1)
    assert sorted(names(campaign)) == ["ann@x.org", "bob@x.org"]
    (reject,) = campaign.rows("import_reject", order_by="line_number")
    assert reject["line_number"] == 2 and reject["column_name"] == "email"
    assert reject["reason"] == (
        "the recipient record is still linked from 2 loyalty_card records (first: number 'N-7'); "
        "loyalty_card.recipient has on_delete: restrict, so it was not deleted"
    )
