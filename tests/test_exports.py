"""Export jobs on SQLite and PostgreSQL: every template key, the round trip, the
differential watermark, and files that appear whole or not at all."""

from __future__ import annotations

import gzip
import hashlib

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.helpers import export_template, people_template

SEED_HEADER = "email;crm_id;first_name;last_name;birth_date;postal_code;city;country;address\n"
SEED = SEED_HEADER + (
    'ann@x.org;C1;Ann;"Lee; ""the"" first";1980-01-02;01000;"Saint-Étienne\nCedex";FR;+33 6 00\n'
    "bob@x.org;C2;Bob;Ray;;75001;Paris;FR;\n"
    "cid@x.org;C3;Cid;=HYPERLINK(1);1999-12-31;1000;Bruxelles;BE;-12\n"
    "dan@x.org;C4;Dan;Ørsted;1975-05-05;0800;Ålborg;DK;@home\n"
)
SEED_COLUMNS = [
    {"source": "email", "target": "email"},
    {"source": "crm_id", "target": "crm_id"},
    {"source": "first_name", "target": "first_name"},
    {"source": "last_name", "target": "last_name"},
    {"source": "birth_date", "target": "birth_date"},
    {"source": "postal_code", "target": "postal_code"},
    {"source": "city", "target": "city"},
    {"source": "country", "target": "country_code"},
    {"source": "address", "target": "address"},
]


@pytest.fixture
def seeded(campaign):
    campaign.template(people_template(name="seed", source={"path": "inbox/seed.csv"}, columns=SEED_COLUMNS))
    campaign.file("inbox/seed.csv", SEED)
    assert campaign.run("seed").counts["rows_inserted"] == 4
    return campaign


def read_out(campaign, relative, encoding="utf-8") -> str:
    return (campaign.data_dir / relative).read_bytes().decode(encoding)


def test_columns_labels_case_formats_constants(seeded):
    seeded.template(
        export_template(
            columns=[
                {"column": "email"},
                {"column": "last_name", "label": "Nom", "case": "upper"},
                {"column": "birth_date", "format": "%d/%m/%Y"},
                {"column": "email_denylisted", "label": "Stop"},
                {"label": "Source", "value": "campaign"},
            ],
            source={"filter": {"country_code": {"in": ["FR", "BE"]}}, "order_by": ["last_name"]},
            destination={"delimiter": ";"},
        )
    )
    result = seeded.run("out")
    assert result.status == "finished" and result.counts["rows_exported"] == 3
    assert read_out(seeded, "outbox/out.csv") == (
        "email;Nom;birth_date;Stop;Source\n"
        "cid@x.org;'=HYPERLINK(1);31/12/1999;false;campaign\n"
        'ann@x.org;"LEE; ""THE"" FIRST";02/01/1980;false;campaign\n'
        "bob@x.org;RAY;;false;campaign\n"
    )


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"country_code": "FR"}, ["ann", "bob"]),
        ({"country_code": {"ne": "FR"}}, ["cid", "dan"]),
        ({"country_code": {"in": ["BE", "DK"]}}, ["cid", "dan"]),
        ({"country_code": {"not_in": ["BE", "DK"]}}, ["ann", "bob"]),
        ({"birth_date": {"lt": "1980-01-02"}}, ["dan"]),
        ({"birth_date": {"le": "1980-01-02"}}, ["ann", "dan"]),
        ({"birth_date": {"gt": "1980-01-02"}}, ["cid"]),
        ({"birth_date": {"ge": "1980-01-02"}}, ["ann", "cid"]),
        ({"city": {"like": "B%"}}, ["cid"]),
        ({"birth_date": {"is_null": True}}, ["bob"]),
        ({"birth_date": {"is_null": False}, "country_code": "FR"}, ["ann"]),
        ({"email_denylisted": False, "postal_code": {"like": "0%"}}, ["ann", "dan"]),
    ],
)
def test_filters(seeded, condition, expected):
    seeded.template(export_template(source={"filter": condition}))
    seeded.run("out")
    assert read_out(seeded, "outbox/out.csv").splitlines() == ["email"] + [f"{n}@x.org" for n in expected]


def test_filter_values_are_bound_parameters(seeded):
    # A value that would break SQL text is only ever a parameter.
    seeded.template(export_template(source={"filter": {"city": "x'; DROP TABLE recipient; --"}}))
    assert seeded.run("out").counts["rows_exported"] == 0
    assert len(seeded.rows("recipient")) == 4


def test_order_by_puts_empty_values_last_distinct_and_limit(seeded):
    seeded.template(export_template(columns=[{"column": "birth_date"}, {"column": "email"}], source={"order_by": ["birth_date", "email"]}))
    seeded.run("out")
    assert [l.split(",")[1] for l in read_out(seeded, "outbox/out.csv").splitlines()[1:]] == ["dan@x.org", "ann@x.org", "cid@x.org", "bob@x.org"]
    seeded.template(export_template(columns=[{"column": "country_code"}], source={"order_by": ["country_code"], "distinct": True, "limit": 2}))
    result = seeded.run("out")
    assert read_out(seeded, "outbox/out.csv").splitlines() == ["country_code", "BE", "DK"]
    assert result.counts["rows_exported"] == 2
    assert seeded.run("out", limit=1).counts["rows_exported"] == 1


def test_round_trip_exports_then_reimports_identically(seeded):
    columns = ["email", "crm_id", "first_name", "last_name", "birth_date", "postal_code", "city", "country_code", "address"]
    seeded.template(export_template(columns=[{"column": c} for c in columns], destination={"delimiter": ";", "neutralize_formulas": False}))
    before = seeded.rows("recipient", *columns, order_by="email")
    assert seeded.run("out").counts["rows_exported"] == 4
    with seeded.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM recipient"))
    # Default settings: quoted line breaks are part of the value (RFC 4180).
    seeded.template(people_template(name="back", source={"path": "outbox/out.csv"}, columns=[{"source": c, "target": c} for c in columns]))
    assert seeded.run("back").counts["rows_inserted"] == 4
    after = seeded.rows("recipient", *columns, order_by="email")
    assert after == before
    assert after[0]["city"] == "Saint-Étienne\nCedex" and after[0]["postal_code"] == "01000"
    assert after[0]["last_name"] == 'Lee; "the" first'


def test_differential_exports_only_changes_and_fails_without_moving(seeded):
    seeded.template(export_template(source={"differential": {"column": "updated_at"}}))
    assert seeded.run("out").counts["rows_exported"] == 4
    assert seeded.run("out").counts["rows_exported"] == 0
    assert read_out(seeded, "outbox/out.csv") == "email\n"
    seeded.file("inbox/seed.csv", SEED_HEADER + "bob@x.org;C2;Robert;Ray;;75001;Paris;FR;\n")
    seeded.run("seed")
    # A run that fails (its destination folder is a file) must not move the watermark.
    (seeded.data_dir / "blocked").write_text("a file, not a folder")
    failed = seeded.run("out", output="blocked/out.csv")
    assert failed.status == "failed" and "cannot write to" in failed.error
    changed = seeded.run("out")
    assert changed.counts["rows_exported"] == 1
    assert read_out(seeded, "outbox/out.csv") == "email\nbob@x.org\n"
    assert seeded.run("out").counts["rows_exported"] == 0


def test_unencodable_value_fails_naming_row_and_column_and_leaves_no_file(seeded):
    seeded.template(export_template(columns=[{"column": "email"}, {"column": "city"}], destination={"encoding": "ascii"}))
    result = seeded.run("out")
    assert result.status == "failed"
    assert "row 1, column 'city': 'É' cannot be written in ascii" in result.error
    assert list((seeded.data_dir / "outbox").iterdir()) == []


def test_formula_neutralisation_switch(seeded):
    columns = [{"column": "last_name"}, {"column": "address"}]
    seeded.template(export_template(columns=columns, source={"order_by": ["email"], "filter": {"country_code": {"in": ["BE", "DK"]}}}))
    seeded.run("out")
    assert read_out(seeded, "outbox/out.csv").splitlines()[1:] == ["'=HYPERLINK(1),'-12", "Ørsted,'@home"]
    seeded.template(export_template(columns=columns, source={"filter": {"country_code": {"in": ["BE", "DK"]}}}, destination={"neutralize_formulas": False}))
    seeded.run("out")
    assert read_out(seeded, "outbox/out.csv").splitlines()[1:] == ["=HYPERLINK(1),-12", "Ørsted,@home"]


def test_fixed_width_and_a_value_too_long(seeded):
    seeded.template(
        export_template(
            columns=[{"column": "crm_id", "width": 4}, {"column": "first_name", "width": 6}, {"column": "postal_code", "width": 5}],
            source={"order_by": ["crm_id"]},
            destination={"format": "fixed_width", "header": False},
        )
    )
    seeded.run("out")
    assert read_out(seeded, "outbox/out.csv").splitlines() == ["C1  Ann   01000", "C2  Bob   75001", "C3  Cid   1000 ", "C4  Dan   0800 "]
    seeded.template(export_template(columns=[{"column": "email", "width": 8}], destination={"format": "fixed_width"}))
    result = seeded.run("out")
    assert "row 1, column 'email': 'ann@x.org' is longer than its width (8)" in result.error


def test_gzip_metadata_path_pattern_and_observation(seeded):
    seeded.template(export_template(destination={"path": "outbox/{date:%Y}/r_{run_id}.csv.gz", "compression": "gzip"}))
    result = seeded.run("out")
    path = seeded.data_dir / "outbox" / result.counts["output_path"].split("/outbox/")[1]
    assert path.name == f"r_{result.run_id}.csv.gz" and path.parent.name.isdigit()
    raw = path.read_bytes()
    assert gzip.decompress(raw).decode() == "email\nann@x.org\nbob@x.org\ncid@x.org\ndan@x.org\n"
    assert result.counts["sha256"] == hashlib.sha256(raw).hexdigest() and result.counts["bytes"] == len(raw)
    observations = seeded.instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION)
    assert [o.dagster_event.asset_key.to_user_string() for o in observations] == ["campaign/recipient"]


def test_quote_null_refuses_a_value_with_the_delimiter(seeded):
    seeded.template(export_template(columns=[{"column": "last_name"}], destination={"quote": None, "delimiter": ";"}))
    result = seeded.run("out")
    assert "row 1, column 'last_name': the value contains the delimiter or a line break" in result.error
    assert list((seeded.data_dir / "outbox").iterdir()) == []


def test_output_outside_the_data_dir_is_refused(seeded):
    seeded.template(export_template())
    result = seeded.run("out", output="../escape.csv")
    assert result.status == "failed" and "output '../escape.csv' is outside CAMPAIGN_DATA_DIR" in result.error
    assert not (seeded.root / "escape.csv").exists()
