"""File formats and column mapping, through real import runs on both databases."""

from __future__ import annotations

import gzip
import io
import zipfile

import pytest

from tests.helpers import people_file, people_template


def by_email(campaign) -> dict[str, dict]:
    return {r["email"]: r for r in campaign.rows("recipient")}


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-16"])
def test_any_encoding_with_launch_overrides(campaign, encoding):
    campaign.template(people_template())
    campaign.file("inbox/people.csv", people_file("zoé@x.org,C1,Zoé,Müller").replace(";", ","), encoding=encoding)
    result = campaign.run("people", file="inbox/people.csv", delimiter=",", encoding=encoding)
    assert result.counts["rows_inserted"] == 1
    assert by_email(campaign)["zoé@x.org"]["last_name"] == "Müller"


def test_utf8_bom_crlf_and_blank_lines(campaign):
    campaign.template(people_template())
    content = "\ufeff" + people_file("ann@x.org;C1;Ann;Lee", "", "bob@x.org;C2;Bob;Ray").replace("\n", "\r\n")
    campaign.file("inbox/people.csv", content.encode("utf-8"))
    result = campaign.run("people")
    assert (result.counts["rows_read"], result.counts["rows_inserted"]) == (2, 2)
    assert by_email(campaign)["bob@x.org"]["last_name"] == "Ray"  # no trailing \r


def test_no_header_columns_by_position_with_skip_lines_and_limit(campaign):
    campaign.template(
        people_template(
            source={"header": False, "skip_lines": 2, "limit": 2},
            columns=[{"source": 2, "target": "email"}, {"source": 1, "target": "crm_id"}, {"source": 3, "target": "first_name"}],
        )
    )
    campaign.file("inbox/people.csv", "exported 2025-01-01\nby CRM\nC1;ann@x.org;Ann\nC2;bob@x.org;Bob\nC3;cid@x.org;Cid\n")
    result = campaign.run("people")
    assert (result.counts["rows_read"], result.counts["rows_inserted"]) == (2, 2)
    assert {e: r["crm_id"] for e, r in by_email(campaign).items()} == {"ann@x.org": "C1", "bob@x.org": "C2"}


@pytest.mark.parametrize("kind", ["gzip", "zip"])
def test_compressed_files(campaign, kind):
    campaign.template(people_template(source={"path": f"inbox/people.csv.{'gz' if kind == 'gzip' else 'zip'}"}))
    raw = people_file("ann@x.org;C1;Ann;Lee").encode()
    if kind == "gzip":
        content = gzip.compress(raw)
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("people.csv", raw)
        content = buffer.getvalue()
    campaign.file(f"inbox/people.csv.{'gz' if kind == 'gzip' else 'zip'}", content)
    result = campaign.run("people")
    assert result.counts["rows_inserted"] == 1


def test_fixed_width_with_a_short_line_rejected(campaign):
    campaign.template(
        people_template(
            source={
                "format": "fixed_width",
                "header": False,
                "widths": [
                    {"name": "mail", "start": 1, "length": 12},
                    {"name": "crm", "start": 13, "length": 4},
                    {"name": "first", "start": 17, "length": 6},
                ],
            },
            columns=[
                {"source": "mail", "target": "email", "trim": True},
                {"source": "crm", "target": "crm_id", "trim": True},
                {"source": "first", "target": "first_name", "trim": True},
            ],
        )
    )
    campaign.file("inbox/people.csv", "ann@x.org   C1  Ann   \nbob@x.org   C2  Bob\nshort\n")
    result = campaign.run("people")
    assert (result.counts["rows_inserted"], result.counts["rows_rejected"]) == (2, 1)
    assert by_email(campaign)["bob@x.org"]["first_name"] == "Bob"
    (reject,) = campaign.rows("import_reject", order_by="line_number")
    assert reject["line_number"] == 3 and "5 characters long" in reject["reason"]


def test_quoted_values_tab_delimiter_and_no_quote(campaign):
    campaign.template(people_template(source={"delimiter": "\\t"}))
    campaign.file("inbox/people.csv", 'email\tcrm_id\tfirst_name\tlast_name\nann@x.org\tC1\t"Ann\tMarie"\t"O""Neil"\n')
    campaign.run("people")
    row = by_email(campaign)["ann@x.org"]
    assert (row["first_name"], row["last_name"]) == ("Ann\tMarie", 'O"Neil')
    campaign.template(people_template(name="raw", source={"quote": None}))
    campaign.file("inbox/people.csv", people_file('bob@x.org;C2;"Bob";Ray'))
    campaign.run("raw")
    assert by_email(campaign)["bob@x.org"]["first_name"] == '"Bob"'


def test_ragged_lines_and_unbalanced_quote_are_rejected_the_rest_loads(campaign):
    campaign.template(people_template())
    campaign.file(
        "inbox/people.csv",
        people_file("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob", 'cid@x.org;C3;"Cid;Moe', "dan@x.org;C4;Dan;Fox;extra", "eve@x.org;C5;Eve;Ito"),
    )
    result = campaign.run("people")
    assert (result.counts["rows_inserted"], result.counts["rows_rejected"]) == (2, 3)
    rejects = {r["line_number"]: r for r in campaign.rows("import_reject", order_by="line_number")}
    assert rejects[3]["reason"] == "line has 3 fields, expected 4"
    assert rejects[3]["line"] == "bob@x.org;C2;Bob"
    assert "unbalanced quote" in rejects[4]["reason"]
    assert rejects[5]["reason"] == "line has 5 fields, expected 4"
    assert sorted(by_email(campaign)) == ["ann@x.org", "eve@x.org"]


def test_trim_case_remap_constants(campaign):
    campaign.template(
        people_template(
            columns=[
                {"source": "email", "target": "email", "trim": True, "case": "lower"},
                {"source": "first_name", "target": "first_name", "case": "capitalize"},
                {"source": "last_name", "target": "last_name", "case": "upper"},
                {"source": "crm_id", "target": "gender", "remap": {"Male": "M", "Female": "F"}, "on_unmapped": "default", "default": "U"},
                {"target": "origin", "value": "crm"},
                {"target": "denylisted", "value": False},
            ],
            target={"secondary_keys": []},
        )
    )
    campaign.file("inbox/people.csv", people_file("  ANN@X.org ;Female;aNN;lee", "bob@x.org;Robot;BOB;ray", "cid@x.org;Male;cid;moe"))
    campaign.run("people")
    rows = by_email(campaign)
    assert (rows["ann@x.org"]["first_name"], rows["ann@x.org"]["last_name"], rows["ann@x.org"]["gender"]) == ("Ann", "LEE", "F")
    assert rows["bob@x.org"]["gender"] == "U"
    assert rows["cid@x.org"]["gender"] == "M"
    assert {r["origin"] for r in rows.values()} == {"crm"}


@pytest.mark.parametrize(("on_unmapped", "expected"), [("reject", None), ("keep", "X")])
def test_remap_on_unmapped_reject_or_keep(campaign, on_unmapped, expected):
    campaign.template(
        people_template(
            extra_columns=[{"source": "last_name", "target": "email_format", "remap": {"T": "text", "H": "html", "X": "undefined"} if expected is None else {"T": "text"}, "on_unmapped": on_unmapped}],
            columns=[{"source": "email", "target": "email"}],
            target={"secondary_keys": []},
        )
    )
    campaign.file("inbox/people.csv", people_file("ann@x.org;;;T", "bob@x.org;;;Q"))
    result = campaign.run("people")
    if on_unmapped == "reject":
        assert (result.counts["rows_inserted"], result.counts["rows_rejected"]) == (1, 1)
        (reject,) = campaign.rows("import_reject", order_by="line_number")
        assert reject["reason"] == "email_format: 'Q' is not a value of the remap list"
        assert reject["column_name"] == "last_name"
    else:
        # 'Q' is kept, then fails the column's own check (text, html or undefined).
        assert result.counts["rows_rejected"] == 1
        assert "must be one of text, html, undefined" in campaign.rows("import_reject", order_by="line_number")[0]["reason"]
    assert by_email(campaign)["ann@x.org"]["email_format"] == "text"


def test_date_number_and_boolean_formats(campaign):
    campaign.template(people_template())
    campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Ann;Lee"))
    campaign.run("people")
    ann_id = campaign.rows("recipient", "id")[0]["id"]
    campaign.template(
        people_template(
            name="by_id",
            source={"path": "inbox/by_id.csv"},
            target={"operation": "update", "keys": ["id"], "secondary_keys": []},
            columns=[
                {"source": "ID", "target": "id", "format": {"thousands": " "}},
                {"source": "Born", "target": "birth_date", "format": "%d/%m/%Y"},
                {"source": "Stop", "target": "denylisted"},
            ],
        )
    )
    big = f"{ann_id:,}".replace(",", " ")
    campaign.file("inbox/by_id.csv", f"ID;Born;Stop\n{big};07/11/1967;oui\nabc;07/11/1967;no\n{ann_id};1967-11-07;maybe\n")
    result = campaign.run("by_id")
    assert (result.counts["rows_updated"], result.counts["rows_rejected"]) == (1, 2)
    (row,) = campaign.rows("recipient")
    assert str(row["birth_date"]) == "1967-11-07" and bool(row["denylisted"]) is True
    reasons = [r["reason"] for r in campaign.rows("import_reject", order_by="line_number")]
    assert reasons[0] == "id: 'abc' is not a whole number"
    assert "birth_date: '1967-11-07' is not a date in the format %d/%m/%Y" in reasons[1]
    assert "denylisted: 'maybe' is not a yes/no value" in reasons[1]


def test_on_error_ignore_value_and_default(campaign):
    campaign.template(
        people_template(
            extra_columns=[
                {"source": "phone", "target": "mobile_phone", "on_error": "ignore_value"},
                {"source": "born", "target": "birth_date", "on_error": "default", "default": "1900-01-01"},
                {"source": "country", "target": "country_code", "on_error": "default", "default": "XX"},
            ]
        )
    )
    header = "email;crm_id;first_name;last_name;phone;born;country\n"
    campaign.file("inbox/people.csv", header + "ann@x.org;C1;Ann;Lee;+33 6 00;1980-01-02;FR\n")
    campaign.run("people")
    campaign.file("inbox/people.csv", header + "ann@x.org;C1;Ann;Lee;call me;not a date;France\nbob@x.org;C2;Bob;Ray;abc;2199-01-01;BE\n")
    result = campaign.run("people")
    assert result.status == "finished"
    rows = by_email(campaign)
    # ignore_value: the bad phone is dropped, the existing one kept (empty_values: keep).
    assert rows["ann@x.org"]["mobile_phone"] == "+33 6 00"
    assert rows["bob@x.org"]["mobile_phone"] is None
    # default: bad values take the column's default (a failed check too, like a future date).
    assert str(rows["ann@x.org"]["birth_date"]) == "1900-01-01"
    assert str(rows["bob@x.org"]["birth_date"]) == "1900-01-01"
    assert rows["ann@x.org"]["country_code"] == "XX" and rows["bob@x.org"]["country_code"] == "BE"


def test_schema_checks_reject_with_every_reason(campaign):
    campaign.template(
        people_template(
            extra_columns=[
                {"source": "g", "target": "gender"},
                {"source": "c", "target": "country_code"},
                {"source": "p", "target": "phone"},
            ]
        )
    )
    long = "x" * 65
    campaign.file("inbox/people.csv", f"email;crm_id;first_name;last_name;g;c;p\nnot-mail;C1;{long};Lee;Z;ZZ;12a\nok@x.org;C2;A;B;F;FR;+1 (555) 010-99\n")
    result = campaign.run("people")
    assert (result.counts["rows_inserted"], result.counts["rows_rejected"]) == (1, 1)
    (reject,) = campaign.rows("import_reject", order_by="line_number")
    for expected in (
        "email: 'not-mail' is not a valid e-mail address",
        "first_name: '" + long + "' is longer than 64 characters",
        "gender: 'Z' must be one of M, F, U",
        "country_code: 'ZZ' is not an ISO 3166-1 alpha-2 country code",
        "phone: '12a' may hold only digits",
    ):
        assert expected in reject["reason"]
    assert reject["column_name"] == "email, first_name, g, c, p"
