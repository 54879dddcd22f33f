"""Files from real systems through the whole import job, on SQLite and PostgreSQL alike:
CR-only line ends, quoted line breaks, NUL bytes, a runaway line."""

from __future__ import annotations

from campaign_pipelines.importing.lines import MAX_LINE_CHARS
from tests.helpers import HEADER, people_template


def test_cr_only_line_ends_as_excel_for_mac_writes_them(campaign):
    campaign.template(people_template())
    campaign.file("inbox/people.csv", (HEADER + "ann@x.org;C1;Ann;Lee\nbob@x.org;C2;Bob;Ray\n").replace("\n", "\r").encode())
    result = campaign.run("people")
    assert result.status == "finished" and result.counts["rows_inserted"] == 2
    assert [r["last_name"] for r in campaign.rows("recipient", "last_name")] == ["Lee", "Ray"]


def test_a_quoted_line_break_is_part_of_the_value_and_an_unclosed_quote_rejects_one_line(campaign):
    campaign.template(people_template(source={"max_record_lines": 3}))
    campaign.file(
        "inbox/people.csv",
        HEADER + 'ann@x.org;C1;"Ann\r\nMarie";Lee\r\nbob@x.org;C2;"Bob;Ray\r\n'
        + "".join(f"p{i}@x.org;P{i};P;Q\r\n" for i in range(5)),
    )
    result = campaign.run("people")
    assert result.status == "finished_with_errors"
    assert (result.counts["rows_read"], result.counts["rows_inserted"], result.counts["rows_rejected"]) == (7, 6, 1)
    assert campaign.rows("recipient", "first_name")[0]["first_name"] == "Ann\nMarie"
    (reject,) = campaign.rows("import_reject", "line_number", "line", "reason", order_by="line_number")
    assert reject["line_number"] == 4 and reject["line"] == 'bob@x.org;C2;"Bob;Ray'
    assert "opened on line 4 is not closed within 3 lines" in reject["reason"]


def test_nul_bytes_are_rejected_naming_the_column_alike_on_both_databases(campaign):
    campaign.template(people_template())
    campaign.file("inbox/people.csv", (HEADER + "ann@x.org;C1;A\x00nn;Lee\nbob@x.org;C2;Bob;Ray\n").encode())
    result = campaign.run("people")
    assert result.status == "finished_with_errors" and result.counts["rows_inserted"] == 1
    (reject,) = campaign.rows("import_reject", "line_number", "column_name", "line", order_by="line_number")
    assert (reject["line_number"], reject["column_name"]) == (2, "first_name")
    assert reject["line"] == "ann@x.org;C1;A\u2400nn;Lee"  # PostgreSQL text cannot hold 0x00
    rejects_file = campaign.data_dir / "rejects" / "people" / f"{result.run_id}.csv"
    assert b"A\x00nn" in rejects_file.read_bytes()  # the file keeps the line as it was

    campaign.template(people_template(source={"nul_bytes": "strip"}))
    result = campaign.run("people")
    assert result.status == "finished" and result.counts["rows_inserted"] == 1 and result.counts["rows_unchanged"] == 1
    assert [r["first_name"] for r in campaign.rows("recipient", "first_name")] == ["Bob", "Ann"]


def test_a_runaway_line_longer_than_a_line_may_be_is_rejected_and_the_rest_loads(campaign):
    campaign.template(people_template())
    runaway = "x@x.org;C9;" + "y" * (MAX_LINE_CHARS + 1000) + ";Z"
    campaign.file("inbox/people.csv", f"{HEADER}ann@x.org;C1;Ann;Lee\n{runaway}\nbob@x.org;C2;Bob;Ray\n".encode())
    result = campaign.run("people")
    assert result.status == "finished_with_errors"
    assert (result.counts["rows_read"], result.counts["rows_inserted"], result.counts["rows_rejected"]) == (3, 2, 1)
    (reject,) = campaign.rows("import_reject", "line_number", "reason", order_by="line_number")
    assert reject["line_number"] == 3 and f"line is {len(runaway):,} characters long" in reject["reason"]
